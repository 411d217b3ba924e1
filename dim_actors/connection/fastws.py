"""websocket-client with a read-ahead buffer and a fast path for whole data frames.

websocket-client reads each frame with separate socket reads sized to what it needs next
(the 2-byte header, the length, the payload): two or three recv() system calls per
frame, each one releasing and re-taking the GIL, and builds an ABNF object and a
continuation-frame record per frame. Under a burst of small frames that, not JSON,
bounds the receive rate. Here the socket is read 64 KiB at a time, and a complete,
final, unmasked text or binary frame found in that buffer is returned directly (the
common case: every gateway event is one such frame). Anything else (control frames,
fragments, a frame cut by the buffer's end) goes through websocket-client's own parser,
which reads from the same buffer, so nothing is skipped or reordered. The HTTP upgrade
reads the socket directly, before the buffer is first used, so nothing is read ahead of
it.

The fast path is only taken with skip_utf8_validation=True (the connection process
validates nothing it only forwards; websocket-client's pure-Python UTF-8 check costs ~4x
the receive rate).

`max_message_bytes` bounds what one message may cost: the length in a frame's header is
checked before its payload is read, and an oversized frame (or a fragmented message
growing past the bound) is read and thrown away in READ_AHEAD-sized chunks, never held
whole, then reported by raising OversizedFrame. The stream stays in sync, so the caller
can go on reading.

All this leans on websocket-client internals no public API offers: `_recv` (what its
frame parser reads through), `frame_buffer` (the parser's state and its
header/length/payload steps) and `cont_frame` (a fragmented message so far).
tests/test_library_contracts.py checks each against the installed version, over a real
socket.
"""

from __future__ import annotations

from collections.abc import Callable

import websocket

READ_AHEAD = 64 << 10
SAMPLE_BYTES = 200
_TEXT, _BINARY, _CONT = (
    websocket.ABNF.OPCODE_TEXT,
    websocket.ABNF.OPCODE_BINARY,
    websocket.ABNF.OPCODE_CONT,
)


class OversizedFrame(websocket.WebSocketException):
    """A message over `max_message_bytes`, already skipped: the socket is positioned
    after it.

    A WebSocketException, so a caller that does not expect it (the handshake)
    reconnects."""

    def __init__(
        self, length: int, limit: int, sample: bytes, fragmented: bool = False
    ):
        what = (
            f"a fragmented message of at least {length} bytes"
            if fragmented
            else f"a frame of {length} bytes"
        )
        super().__init__(f"{what} is over the {limit}-byte limit")
        self.length, self.limit, self.sample = length, limit, sample


class BufferedWebSocket(websocket.WebSocket):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._fast = bool(kwargs.get("skip_utf8_validation"))
        self.max_message_bytes: int | None = None
        # Called for each chunk of an oversized frame thrown away: bytes are arriving,
        # so a caller watching for a silent gateway can tell a slow, huge frame from a
        # dead link.
        self.on_discard: Callable[[], None] | None = None
        # dropping the continuation frames of an oversized message
        self._skipping = False

    def _recv(self, bufsize: int) -> bytes:
        buf, pos = self._rbuf, self._rpos
        if pos >= len(buf):
            # raises when the connection is closed
            buf = super()._recv(max(bufsize, READ_AHEAD))
            pos = 0
            if len(buf) <= bufsize:
                self._rbuf, self._rpos = b"", 0
                return buf
        end = pos + bufsize
        self._rbuf, self._rpos = buf, end
        return buf[pos:end]

    def recv_data(self, control_frame: bool = False) -> tuple[int, bytes]:
        # the fast path takes only whole text/binary frames; control frames go below
        if self._fast:
            got = self._whole_frame()
            if got is not None:
                return got
        return super().recv_data(control_frame)

    def _whole_frame(self) -> tuple[int, bytes] | None:
        """A complete FIN text/binary frame at the front of the buffer, or None (then
        the caller uses websocket-client's parser)."""
        fb, cont = self.frame_buffer, self.cont_frame
        if (
            fb.header is not None
            or fb.recv_buffer
            or cont.recving_frames
            or cont.cont_data
        ):
            return None  # websocket-client is in the middle of something: let it finish
        buf, pos = self._rbuf, self._rpos
        if pos >= len(buf):
            buf, pos = super()._recv(READ_AHEAD), 0
            self._rbuf, self._rpos = buf, 0
        if len(buf) - pos < 2:
            return None
        b0, length = buf[pos], buf[pos + 1]
        opcode = b0 & 0x0F
        if (
            b0 & 0xF0 != 0x80
            or length & 0x80
            or (opcode != _TEXT and opcode != _BINARY)
        ):
            return None  # not final, reserved bits, masked, or a control frame
        start = pos + 2
        if length == 126:
            start = pos + 4
            length = int.from_bytes(buf[pos + 2 : start], "big")
        elif length == 127:
            start = pos + 10
            length = int.from_bytes(buf[pos + 2 : start], "big")
        end = start + length
        if end > len(buf) or (
            self.max_message_bytes is not None and length > self.max_message_bytes
        ):
            # cut by the end of the buffer, or too big: the slow path deals with it
            return None
        self._rpos = end
        return opcode, buf[start:end]

    def recv_frame(self) -> websocket.ABNF:
        """websocket-client's frame reader, with the payload length checked before the
        payload is read."""
        fb, limit = self.frame_buffer, self.max_message_bytes
        if limit is None:
            return fb.recv_frame()
        while True:
            with fb.lock:
                if fb.needs_header():
                    fb.recv_header()
                if fb.needs_length():
                    fb.recv_length()
                header, length = fb.header, fb.length
                assert header is not None and length is not None  # read just above
                fin, opcode = header[0], header[4]
                if opcode == _CONT and self._skipping:
                    # the rest of a message already reported as oversized
                    self._discard_payload()
                    self._skipping = not fin
                    continue
                if opcode in (_TEXT, _BINARY):
                    self._skipping = False
                cont = self.cont_frame
                so_far = len(cont.cont_data[1]) if cont.cont_data else 0
                if opcode in (_TEXT, _BINARY, _CONT) and so_far + length > limit:
                    sample = (
                        bytes(cont.cont_data[1][:SAMPLE_BYTES])
                        if cont.cont_data
                        else b""
                    )
                    sample += self._discard_payload(SAMPLE_BYTES - len(sample))
                    # Forget the fragments kept so far; later continuations of this
                    # message are skipped.
                    cont.cont_data, cont.recving_frames = None, None
                    self._skipping = not fin
                    raise OversizedFrame(
                        so_far + length,
                        limit,
                        sample,
                        fragmented=bool(so_far) or not fin,
                    )
            # takes the lock again and reads the payload (header already parsed)
            return fb.recv_frame()

    def _discard_payload(self, keep: int = 0) -> bytes:
        """Read the current frame's payload in bounded chunks, keeping only its first
        `keep` bytes."""
        fb = self.frame_buffer
        if fb.needs_mask():
            fb.recv_mask()
        remaining, kept = fb.length, b""
        while remaining:
            chunk = fb.recv_strict(min(remaining, READ_AHEAD))
            remaining -= len(chunk)
            if len(kept) < keep:
                kept += chunk[: keep - len(kept)]
            if self.on_discard is not None:
                self.on_discard()
        fb.clear()
        return kept
