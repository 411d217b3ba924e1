"""The connection process's way out: events and state changes to the supervisor, over
the pipe.

The socket thread only appends here and never waits, so a supervisor that stops draining
the pipe cannot stall the socket: the writer thread is the only one that blocks on it.
Items leave in the order they arrived, batched into one pipe frame when several are
waiting. Events wait as they are and are encoded by the writer, a batch in one call
(control messages, rare, are encoded as they arrive).

Memory is bounded: past `memory_limit` bytes, items are spilled to a file under DIM_HOME
and read back, still in order, once the supervisor drains again.
"""

from __future__ import annotations

import collections
import logging
import os
import struct
import threading
from multiprocessing.connection import Connection
from pathlib import Path

from dim_actors.messages import Msg, PipeEvent, encode_batch, encode_up
from dim_actors.messages.pipe import encode_control, encode_items

log = logging.getLogger("dim.connection.uplink")
_LEN = struct.Struct("<I")
# What a waiting event counts against the memory bound beside its bytes (about its
# encoding's overhead; the objects themselves take more, which the bound's margin covers)
_EVENT_OVERHEAD = 64


class Spill:
    """An append-only file of length-prefixed frames, read back from the front."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Both stay open while the spill is in use; close() closes them.
        self.writer = open(path, "wb")  # noqa: SIM115
        self.reader = open(path, "rb")  # noqa: SIM115
        self.count = 0  # frames written and not yet read
        self.total = 0

    def append(self, frame: bytes) -> None:
        self.writer.write(_LEN.pack(len(frame)))
        self.writer.write(frame)
        self.count += 1
        self.total += 1

    def read(self, max_frames: int) -> list[bytes]:
        self.writer.flush()
        out: list[bytes] = []
        while len(out) < max_frames and self.count:
            n = _LEN.unpack(self.reader.read(4))[0]
            out.append(self.reader.read(n))
            self.count -= 1
        return out

    def reset(self) -> None:
        """Empty again: start over at the beginning of the file."""
        self.writer.seek(0)
        self.writer.truncate()
        self.reader.seek(0)

    def close(self) -> None:
        self.writer.close()
        self.reader.close()
        self.path.unlink(missing_ok=True)


class Uplink:
    def __init__(
        self,
        pipe: Connection,
        max_batch: int = 512,
        memory_limit: int = 64 << 20,
        spill_path: Path | None = None,
    ):
        self.pipe = pipe
        self.max_batch = max_batch
        self.memory_limit = memory_limit
        self.spill_path = spill_path
        # events, and control messages already encoded, in order; and the bytes each
        # counts against memory_limit
        self.items: collections.deque[PipeEvent | bytes] = collections.deque()
        self.sizes: collections.deque[int] = collections.deque()
        self.buffered_bytes = 0
        self.spill: Spill | None = None
        self.ready = threading.Condition()
        self.closed = False
        self.sent = 0
        self.peak_bytes = 0
        # whether the writer waits on `ready` (read and written under it): only then is
        # it notified, once, rather than on every item of a burst
        self.waiting = False
        self.taken = 0  # items in the frame the writer is sending

    def put_event(self, ev: PipeEvent | Msg) -> None:
        if not isinstance(ev, PipeEvent):
            self.put_control(ev)
            return
        self._put(ev, len(ev.raw) + _EVENT_OVERHEAD)

    def put_control(self, msg: Msg) -> None:
        item = encode_control(msg)
        self._put(item, len(item))

    def _put(self, item: PipeEvent | bytes, size: int) -> None:
        with self.ready:
            if self.spill is not None and self.spill.count:
                # once spilling, everything newer goes behind the spill
                self.spill.append(encode_up(item))
            elif (
                self.buffered_bytes + size > self.memory_limit
                and self.spill_path is not None
            ):
                if self.spill is None:
                    self.spill = Spill(self.spill_path)
                if self.spill.total == 0:
                    log.warning(
                        "the supervisor is not draining events: %d bytes buffered, spilling to %s",
                        self.buffered_bytes,
                        self.spill_path,
                    )
                self.spill.append(encode_up(item))
            else:
                self.items.append(item)
                self.sizes.append(size)
                self.buffered_bytes += size
                if self.buffered_bytes > self.peak_bytes:
                    self.peak_bytes = self.buffered_bytes
            if self.waiting:
                self.waiting = False
                self.ready.notify()

    def depth(self) -> int:
        return len(self.items) + (self.spill.count if self.spill else 0)

    def close(self) -> None:
        with self.ready:
            self.closed = True
            self.waiting = False
            self.ready.notify()

    def _take(self) -> bytes | bytearray | None:
        """The next pipe frame, or None once closed and empty."""
        with self.ready:
            while not (
                self.items
                or (self.spill is not None and self.spill.count)
                or self.closed
            ):
                self.waiting = True
                self.ready.wait()
            self.waiting = False
            if self.items:
                n = min(len(self.items), self.max_batch)
                pop, pop_size = self.items.popleft, self.sizes.popleft
                batch = [pop() for _ in range(n)]
                self.buffered_bytes -= sum([pop_size() for _ in range(n)])
            elif self.spill is not None and self.spill.count:
                frames = self.spill.read(self.max_batch)
                if not self.spill.count:
                    log.info(
                        "spill drained: %d events went through %s",
                        self.spill.total,
                        self.spill_path,
                    )
                    self.spill.reset()
                    self.spill.total = 0
                self.taken = len(frames)
                return encode_batch(frames)
            else:
                return None  # closed and empty
        self.taken = n
        # encoded outside the lock: the socket thread goes on appending meanwhile
        return encode_items(batch)

    def run(self) -> None:
        while True:
            frame = self._take()
            if frame is None:
                break
            try:
                self.pipe.send_bytes(frame)
            except (OSError, ValueError):
                break  # the supervisor end is gone
            self.sent += self.taken
        if self.spill is not None:
            self.spill.close()


def spill_file(directory: Path) -> Path:
    return directory / f"uplink-{os.getpid()}.spill"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: not ours to judge
    return True


def remove_stale_spills(directory: Path) -> list[Path]:
    """Delete spill files left by connection processes that no longer exist (killed
    while spilling).

    Their events were bound for a pipe that died with the process; the new connection
    process resumes each session by seq from the gateway, so nothing in them is needed.
    A pid that has since been reused by another process keeps its file until a later
    start finds it gone."""
    removed = []
    for path in directory.glob("uplink-*.spill"):
        try:
            pid = int(path.stem.removeprefix("uplink-"))
        except ValueError:
            continue  # not a name we write
        if pid == os.getpid() or _alive(pid):
            continue
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        log.info(
            "removed %s (%d bytes) left by connection process %d, which no longer exists",
            path,
            size,
            pid,
        )
        removed.append(path)
    return removed
