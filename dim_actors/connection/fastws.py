"""websocket-client with a read-ahead buffer and a fast path for whole data frames.

websocket-client reads each frame with separate socket reads sized to what it needs next (the
2-byte header, the length, the payload): two or three recv() system calls per frame, each one
releasing and re-taking the GIL, and builds an ABNF object and a continuation-frame record per
frame. Under a burst of small frames that, not JSON, bounds the receive rate. Here the socket is
read 64 KiB at a time, and a complete, final, unmasked text or binary frame found in that buffer
is returned directly (the common case: every gateway event is one such frame). Anything else
(control frames, fragments, a frame cut by the buffer's end) goes through websocket-client's own
parser, which reads from the same buffer, so nothing is skipped or reordered. The HTTP upgrade
reads the socket directly, before the buffer is first used, so nothing is read ahead of it.

The fast path is only taken with skip_utf8_validation=True (the connection process validates
nothing it only forwards; websocket-client's pure-Python UTF-8 check costs ~4x the receive rate).
"""

from __future__ import annotations

import websocket

READ_AHEAD = 64 << 10
_TEXT, _BINARY = websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY


class BufferedWebSocket(websocket.WebSocket):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._fast = bool(kwargs.get("skip_utf8_validation"))

    def _recv(self, bufsize: int) -> bytes:
        buf, pos = self._rbuf, self._rpos
        if pos >= len(buf):
            buf = super()._recv(max(bufsize, READ_AHEAD))  # raises when the connection is closed
            pos = 0
            if len(buf) <= bufsize:
                self._rbuf, self._rpos = b"", 0
                return buf
        end = pos + bufsize
        self._rbuf, self._rpos = buf, end
        return buf[pos:end]

    def recv_data(self, control_frame: bool = False) -> tuple[int, bytes]:
        if self._fast and not control_frame:
            got = self._whole_frame()
            if got is not None:
                return got
        return super().recv_data(control_frame)

    def _whole_frame(self) -> tuple[int, bytes] | None:
        """A complete FIN text/binary frame at the front of the buffer, or None (then the caller
        uses websocket-client's parser)."""
        fb, cont = self.frame_buffer, self.cont_frame
        if fb.header is not None or fb.recv_buffer or cont.recving_frames or cont.cont_data:
            return None  # websocket-client is in the middle of something: let it finish
        buf, pos = self._rbuf, self._rpos
        if pos >= len(buf):
            buf, pos = super()._recv(READ_AHEAD), 0
            self._rbuf, self._rpos = buf, 0
        if len(buf) - pos < 2:
            return None
        b0, length = buf[pos], buf[pos + 1]
        opcode = b0 & 0x0F
        if b0 & 0xF0 != 0x80 or length & 0x80 or (opcode != _TEXT and opcode != _BINARY):
            return None  # not final, reserved bits, masked, or a control frame
        start = pos + 2
        if length == 126:
            start = pos + 4
            length = int.from_bytes(buf[pos + 2:start], "big")
        elif length == 127:
            start = pos + 10
            length = int.from_bytes(buf[pos + 2:start], "big")
        end = start + length
        if end > len(buf):
            return None  # cut by the end of the buffer
        self._rpos = end
        return opcode, buf[start:end]
