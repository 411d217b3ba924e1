"""A real WebSocket server that speaks the handshake and then sends what the test tells it to.

Not a mock: the client connects over loopback and reads real frames. It exists to send what the
dev gateway never would (bad JSON, wrong types, huge or binary frames, a close mid-frame).
"""

from __future__ import annotations

import asyncio
import json
import queue
import socket
import threading

from websockets.asyncio.server import serve

from apphelpers import free_port


class MisbehavingGateway:
    def __init__(self):
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self.to_send: "queue.SimpleQueue[object]" = queue.SimpleQueue()
        self.connections = 0
        self.received: list[dict] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "MisbehavingGateway":
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        async with serve(self._handler, "127.0.0.1", self.port, max_size=None, compression=None) as server:
            self.server = server
            self.ready.set()
            await server.serve_forever()

    async def _handler(self, ws) -> None:
        self.connections += 1
        await ws.send(json.dumps({"type": "welcome", "protocolVersion": 1, "requiresAuth": False}))
        await ws.send(json.dumps({"type": "connected", "clientId": "c", "heartbeatIntervalMs": 30000, "ts": 1}))
        await ws.send(json.dumps({"type": "authenticated",
                                  "identity": {"userId": "u", "email": "e@x", "tenantId": "t"}}))
        reader = asyncio.create_task(self._read(ws))
        try:
            while True:
                item = await self.loop.run_in_executor(None, self.to_send.get)
                if item is None:  # stop()
                    return
                if item == "CLOSE_MID_FRAME":
                    # A frame header promising 1000 bytes, then the TCP connection dies.
                    transport = ws.transport
                    transport.write(b"\x81\x7e\x03\xe8" + b"x" * 10)
                    transport.abort()
                    return
                await ws.send(item)
        finally:
            reader.cancel()

    async def _read(self, ws) -> None:
        async for msg in ws:
            try:
                self.received.append(json.loads(msg))
            except ValueError:
                pass

    def send(self, frame: object) -> None:
        self.to_send.put(frame)

    def stop(self) -> None:
        # Each connection's handler has had at most one blocking get in the executor: end them all,
        # or the interpreter waits for those threads at exit and the test run never ends.
        for _ in range(self.connections):
            self.to_send.put(None)
        self.loop.call_soon_threadsafe(self.server.close)
