"""The connection process's way out: events and state changes to the supervisor, over the pipe.

The socket thread only appends here and never waits, so a supervisor that stops draining the pipe
cannot stall the socket: the writer thread is the only one that blocks on it. Items leave in the
order they arrived, batched into one pipe frame when several are waiting.
"""

from __future__ import annotations

import collections
import threading
from multiprocessing.connection import Connection

from dim_actors.messages import Msg, PipeEvent, encode_batch, encode_up


class Uplink:
    def __init__(self, pipe: Connection, max_batch: int = 512):
        self.pipe = pipe
        self.max_batch = max_batch
        self.items: collections.deque[PipeEvent | Msg] = collections.deque()
        self.ready = threading.Condition()
        self.closed = False
        self.sent = 0

    def put_event(self, ev: PipeEvent) -> None:
        with self.ready:
            self.items.append(ev)
            self.ready.notify()

    def put_control(self, msg: Msg) -> None:
        self.put_event(msg)  # type: ignore[arg-type]

    def depth(self) -> int:
        return len(self.items)

    def close(self) -> None:
        with self.ready:
            self.closed = True
            self.ready.notify()

    def run(self) -> None:
        while True:
            with self.ready:
                self.ready.wait_for(lambda: self.items or self.closed)
                if not self.items and self.closed:
                    return
                n = min(len(self.items), self.max_batch)
                batch = [self.items.popleft() for _ in range(n)]
            frames = [encode_up(item) for item in batch]
            try:
                self.pipe.send_bytes(frames[0] if len(frames) == 1 else encode_batch(frames))
            except (OSError, ValueError):
                return  # the supervisor end is gone
            self.sent += n
