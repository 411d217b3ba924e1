"""One client connection: its identity, its joined sessions, its limits and its outbound
queue.

Everything sent to a client goes through ``send``, which only appends to a queue; one
writer task per connection drains it onto the socket. Sending therefore never awaits, so
the order in which the gateway decides to send (a snapshot, then the events after it) is
exactly the order on the wire, and a slow client never blocks the code that produces
events for everyone else.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from dim_actors.wire.protocol import ErrorEvent, Identity, encode

from .limits import SlidingWindow

log = logging.getLogger(__name__)

BATCH_BYTES = 256 << 10  # frames joined into one socket write at most


class Outbox:
    """An unbounded-by-count, bounded-by-bytes queue of frames with one writer task.

    Above ``high`` bytes the connection is *congested*: agents wait (``drained``) before
    producing more, so memory stays bounded by the slowest reader rather than by the
    burst. Above ``hard`` bytes the client is cut off, since nothing else would bound
    it.
    """

    def __init__(
        self,
        ws: ServerConnection,
        *,
        high: int = 4 << 20,
        low: int = 1 << 20,
        hard: int = 512 << 20,
        faults=None,
    ):
        self.ws = ws
        self.faults = faults  # while the gateway is made silent, nothing is sent
        self.high, self.low, self.hard = high, low, hard
        self.frames: deque[bytes] = deque()
        self.bytes = 0
        self.closed = False
        self._wake = asyncio.Event()
        self.drained = asyncio.Event()
        self.drained.set()
        # nothing queued: lets a shutdown send what is left first
        self.idle = asyncio.Event()
        self.idle.set()

    @property
    def congested(self) -> bool:
        return self.bytes > self.high

    def push(self, frame: bytes) -> None:
        if self.closed:
            return
        self.frames.append(frame)
        self.bytes += len(frame)
        self._wake.set()
        self.idle.clear()
        if self.bytes > self.high:
            self.drained.clear()
            if self.bytes > self.hard:
                log.warning(
                    "dev gateway: client too slow, %d bytes queued: closing it",
                    self.bytes,
                )
                self.close()
                asyncio.ensure_future(self.ws.close(1008, "outbound queue overflow"))

    def close(self) -> None:
        self.closed = True
        self.frames.clear()
        self.bytes = 0
        self.drained.set()
        self.idle.set()
        self._wake.set()

    async def run(self) -> None:
        send = self._send_batch if _can_batch(self.ws) else self._send_each
        try:
            while not self.closed:
                while self.frames:
                    batch, size = [], 0
                    while self.frames and size < BATCH_BYTES:
                        frame = self.frames.popleft()
                        batch.append(frame)
                        size += len(frame)
                    self.bytes -= size
                    if self.faults is not None and self.faults.silent:
                        await self.faults.clear.wait()
                    await send(batch)
                    if self.bytes <= self.low and not self.drained.is_set():
                        self.drained.set()
                self.idle.set()
                self._wake.clear()
                await self._wake.wait()
        except ConnectionClosed:
            pass
        finally:
            self.close()

    async def _send_each(self, batch: list[bytes]) -> None:
        for frame in batch:
            await self.ws.send(frame, text=True)

    async def _send_batch(self, batch: list[bytes]) -> None:
        # One socket write for many frames: a burst of small deltas would otherwise cost
        # a syscall each. Framing and the open-state check stay websockets' own
        # (send_context and the sans-I/O protocol); only the serialized frames are
        # joined before the write.
        ws = self.ws
        async with ws.send_context():
            for frame in batch:
                ws.protocol.send_text(frame)
            ws.transport.write(b"".join(ws.protocol.data_to_send()))


def _can_batch(ws: ServerConnection) -> bool:
    return all(hasattr(ws, a) for a in ("send_context", "protocol", "transport"))


class Connection:
    def __init__(
        self, ws: ServerConnection, *, rate_limit: int, rate_window: float, faults=None
    ):
        self.ws = ws
        self.client_id = str(uuid.uuid4())
        self.outbox = Outbox(ws, faults=faults)
        self.identity: Identity | None = None
        self.sessions: set[str] = set()  # joined session ids
        self.rate = SlidingWindow(rate_limit, rate_window)
        remote = ws.remote_address
        self.ip = str(remote[0]) if remote else "unknown"

    def send(self, event: Any) -> None:
        """Queue an event (a Struct) for this connection."""
        self.outbox.push(encode(event))

    def send_frame(self, frame: bytes) -> None:
        self.outbox.push(frame)

    def error(self, code: str, message: str, retry_after_ms: int | None = None) -> None:
        self.send(ErrorEvent(code=code, message=message, retryAfterMs=retry_after_ms))

    def __repr__(self) -> str:
        return f"<Connection {self.client_id} {self.ip}>"
