"""A real WebSocket server that speaks the handshake and then sends what the test tells
it to.

Not a mock: the client connects over loopback and reads real frames. It exists to send
what the dev gateway never would (bad JSON, wrong types, huge or binary frames, a close
mid-frame, another protocol version, a garbled AUTH_RATE_LIMITED).

- `handshakes`: the frames of each connection's handshake, in order (connection 0 takes
  the first list, and so on; later connections get the default one). "AWAIT" waits for
  one message from the client (its `authenticate`). A handshake need not end in
  `authenticated`: the server then just reads until the client gives up on it.
- `respond(msg)`: called for every message the client sends; the frames it returns are
  sent back on that connection, so a test can answer requests (join_session, get_events,
  run_turn) as it likes.
- `send(frame)`: a frame (str, bytes or dict) for the current connection, or for the next
  one if none is up; "CLOSE_MID_FRAME" cuts the TCP connection in the middle of a frame.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

from apphelpers import free_port
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

WELCOME = {"type": "welcome", "protocolVersion": 1, "requiresAuth": False}
CONNECTED = {
    "type": "connected",
    "clientId": "c",
    "heartbeatIntervalMs": 30000,
    "ts": 1,
}
AUTHENTICATED = {
    "type": "authenticated",
    "identity": {"userId": "u", "email": "e@x", "tenantId": "t"},
}
DEFAULT_HANDSHAKE = [WELCOME, CONNECTED, AUTHENTICATED]


def _wire(frame: object) -> str | bytes:
    return json.dumps(frame) if isinstance(frame, (dict, list)) else frame  # type: ignore[return-value]


class MisbehavingGateway:
    def __init__(
        self,
        handshakes: list[list[object]] | None = None,
        respond: Callable[[dict], list[object]] | None = None,
    ):
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self.handshakes = list(handshakes or [])
        self.respond = respond
        self.connections = 0
        self.received: list[dict] = []
        self.received_at: list[
            float
        ] = []  # time.monotonic() of each of `received`, as it was read
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> MisbehavingGateway:
        self.thread.start()
        assert self.ready.wait(60), "the misbehaving gateway did not start listening"
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        # Created on the loop's thread: an asyncio.Queue, so a handler whose client has
        # gone can stop waiting on it without taking (and losing) an item meant for the
        # next connection.
        self.to_send: asyncio.Queue[object] = asyncio.Queue()
        async with serve(
            self._handler, "127.0.0.1", self.port, max_size=None, compression=None
        ) as server:
            self.server = server
            self.ready.set()
            await server.serve_forever()

    async def _handler(self, ws) -> None:
        try:
            await self._converse(ws)
        except ConnectionClosed:
            pass  # the client went away (a reconnect, the end of the test)

    async def _converse(self, ws) -> None:
        n = self.connections
        self.connections += 1
        script = self.handshakes[n] if n < len(self.handshakes) else DEFAULT_HANDSHAKE
        for frame in script:
            if frame == "AWAIT":
                self._note(await ws.recv())
            else:
                await ws.send(_wire(frame))
        reader = asyncio.create_task(self._read(ws))
        try:
            while True:
                getter = asyncio.create_task(self.to_send.get())
                await asyncio.wait(
                    {getter, reader}, return_when=asyncio.FIRST_COMPLETED
                )
                if not getter.done():
                    # the client is gone; the queue keeps what is waiting
                    getter.cancel()
                    return
                item = getter.result()
                if item == "CLOSE_MID_FRAME":
                    # A frame header promising 1000 bytes, then the TCP connection dies.
                    transport = ws.transport
                    transport.write(b"\x81\x7e\x03\xe8" + b"x" * 10)
                    transport.abort()
                    return
                await ws.send(_wire(item))
        finally:
            reader.cancel()

    def _note(self, raw: str | bytes) -> dict | None:
        try:
            msg = json.loads(raw)
        except ValueError:
            return None
        self.received.append(msg)
        self.received_at.append(time.monotonic())
        return msg

    async def _read(self, ws) -> None:
        try:
            async for raw in ws:
                msg = self._note(raw)
                if msg is not None and self.respond is not None:
                    for frame in self.respond(msg):
                        await ws.send(_wire(frame))
        except ConnectionClosed:
            pass

    def send(self, frame: object) -> None:
        self.loop.call_soon_threadsafe(self.to_send.put_nowait, frame)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)


class _GatewayProxy:
    """A TCP proxy on a free loopback port in front of a real gateway: each connection
    it accepts is opened on to the gateway and handed to `_connected`, which pumps the
    two ways."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"ws://127.0.0.1:{self.listener.getsockname()[1]}/ws"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            self._connected(
                client, socket.create_connection(("127.0.0.1", self.target_port))
            )

    def _connected(self, client: socket.socket, upstream: socket.socket) -> None:
        raise NotImplementedError


class HoldingProxy(_GatewayProxy):
    """A TCP proxy in front of a real gateway that can stop passing the gateway's frames
    on.

    Armed with `hold_after(pattern, direction)`, it watches the WebSocket frames of the
    next connection and, once a frame containing `pattern` has passed in `direction`
    ("up": client to gateway, "down": gateway to client), forwards nothing more from the
    gateway on that connection and sets `held`. The test then knows exactly what the
    client has and has not been sent, e.g. a run_turn the gateway has run whose answer
    the client never got. Later connections pass freely."""

    def __init__(self, target_port: int):
        self.held = threading.Event()
        self.armed: tuple[bytes, str] | None = None
        self.client_frames: list[
            bytes
        ] = []  # every frame a client sent, unmasked, in order
        super().__init__(target_port)

    def hold_after(self, pattern: bytes, direction: str) -> None:
        self.held.clear()
        self.armed = (pattern, direction)

    def _connected(self, client: socket.socket, upstream: socket.socket) -> None:
        watch, self.armed = self.armed, None
        hold = threading.Event()
        for src, dst, direction in (
            (client, upstream, "up"),
            (upstream, client, "down"),
        ):
            threading.Thread(
                target=self._pump, args=(src, dst, direction, watch, hold), daemon=True
            ).start()

    def _pump(
        self,
        src: socket.socket,
        dst: socket.socket,
        direction: str,
        watch: tuple[bytes, str] | None,
        hold: threading.Event,
    ) -> None:
        try:
            for raw, payload in websocket_frames(src, dst):
                if direction == "up":
                    self.client_frames.append(payload)
                elif hold.is_set():
                    continue  # held: the gateway's frames stop here
                seen = (
                    watch is not None and watch[1] == direction and watch[0] in payload
                )
                if seen:
                    # Set before the frame goes on, so no answer to it can slip through
                    # first.
                    hold.set()
                dst.sendall(raw)
                if seen:
                    self.held.set()
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _split_frame(buf: bytes) -> tuple[bytes, bytes] | None:
    """The first whole WebSocket frame in `buf` and its unmasked payload, or None."""
    if len(buf) < 2:
        return None
    masked, length, pos = buf[1] & 0x80, buf[1] & 0x7F, 2
    if length == 126:
        if len(buf) < 4:
            return None
        length, pos = int.from_bytes(buf[2:4], "big"), 4
    elif length == 127:
        if len(buf) < 10:
            return None
        length, pos = int.from_bytes(buf[2:10], "big"), 10
    key = b""
    if masked:
        key, pos = buf[pos : pos + 4], pos + 4
    if len(buf) < pos + length:
        return None
    payload = buf[pos : pos + length]
    if masked:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return buf[: pos + length], payload


class LateReadingProxy(_GatewayProxy):
    """A TCP proxy in front of a real gateway that, for the first `first_s` of each
    connection, passes each client frame on `delay_s` late: the gateway reads (and
    rate-counts) a burst well after the client sent it, as a loaded gateway does. The
    delay is the scenario, not a wait."""

    def __init__(self, target_port: int, delay_s: float = 0.04, first_s: float = 2.0):
        self.delay_s, self.first_s = delay_s, first_s
        super().__init__(target_port)

    def _connected(self, client: socket.socket, upstream: socket.socket) -> None:
        threading.Thread(
            target=self._up, args=(client, upstream, time.monotonic()), daemon=True
        ).start()
        threading.Thread(
            target=self._down, args=(upstream, client), daemon=True
        ).start()

    @staticmethod
    def _down(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass

    def _up(self, src: socket.socket, dst: socket.socket, opened: float) -> None:
        try:
            for raw, _ in websocket_frames(src, dst):
                if time.monotonic() - opened < self.first_s:
                    time.sleep(self.delay_s)
                dst.sendall(raw)
        except OSError:
            pass


def websocket_frames(
    src: socket.socket, dst: socket.socket
) -> Iterator[tuple[bytes, bytes]]:
    """Read one direction of a proxied WebSocket connection: the HTTP upgrade is passed
    on to `dst` as it is, then each whole frame is yielded (as sent, and its unmasked
    payload) for the caller to pass on, hold or delay. Ends at EOF."""
    buf, in_frames = b"", False
    while data := src.recv(65536):
        buf += data
        if not in_frames:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                continue
            dst.sendall(buf[: end + 4])
            buf, in_frames = buf[end + 4 :], True
        while (frame := _split_frame(buf)) is not None:
            raw, payload = frame
            buf = buf[len(raw) :]
            yield raw, payload
