"""Reading the connection process's pipe frames with one system call for many.

`multiprocessing.Connection.recv_bytes` reads each frame with two `read`s (its length,
then its bytes), each a system call and a release and retake of the GIL that the
supervisor's actors share. This reads up to 64 KiB at a time and cuts the same frames
out of the buffer: in a burst one read holds many frames, and a lone event costs one
read instead of two.

The framing is multiprocessing's own (what `send_bytes` writes on POSIX): a 4-byte
big-endian signed length, or -1 and an 8-byte length for a frame past 2 GiB, then the
bytes.
"""

from __future__ import annotations

import os
import struct
from multiprocessing.connection import Connection

READ_AHEAD = 64 << 10
_LEN = struct.Struct("!i")
_BIG = struct.Struct("!Q")


class PipeFrames:
    """Frames read from a multiprocessing Connection, in order; its only reader."""

    __slots__ = ("conn", "buf", "pos")

    def __init__(self, conn: Connection):
        self.conn = conn
        self.buf = b""
        self.pos = 0

    def _fill(self, need: int) -> None:
        """At least `need` bytes past pos in buf; EOFError when the pipe ends first."""
        buf, pos = self.buf, self.pos
        have = len(buf) - pos
        if have >= need:
            return
        parts = [buf[pos:]] if have else []
        while have < need:
            # fileno() per read, as Connection does: OSError once it is closed
            chunk = os.read(self.conn.fileno(), max(READ_AHEAD, need - have))
            if not chunk:
                raise EOFError
            parts.append(chunk)
            have += len(chunk)
        self.buf = parts[0] if len(parts) == 1 else b"".join(parts)
        self.pos = 0

    def recv_bytes(self) -> bytes:
        """The next whole frame (blocking); EOFError when the pipe has ended."""
        self._fill(4)
        (size,) = _LEN.unpack_from(self.buf, self.pos)
        self.pos += 4
        if size == -1:
            self._fill(8)
            (size,) = _BIG.unpack_from(self.buf, self.pos)
            self.pos += 8
        self._fill(size)
        start = self.pos
        self.pos = start + size
        if start == 0 and size == len(self.buf):
            return self.buf  # the whole buffer: no copy
        return self.buf[start : self.pos]

    def buffered(self) -> int:
        """Bytes read and not yet handed out."""
        return len(self.buf) - self.pos
