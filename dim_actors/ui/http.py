"""The UI bridge's HTTP and WebSocket server (aiohttp), bound to loopback only.

Tauri's `invoke` and `listen("gateway-event")` over HTTP: POST /invoke/{command} and a WebSocket at
/events. A per-launch secret guards every request; Host and Origin must name this server, so a web
page elsewhere can neither call in nor read events (DNS rebinding and CSRF).
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import itertools
import json
import logging
from pathlib import Path
from typing import Any, Callable

import msgspec
from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

STATUS_FOR_CODE = {
    "UNKNOWN_COMMAND": 404,
    "INVALID_JSON": 400,
    "INVALID_ARGUMENTS": 400,
    "NOT_CONNECTED": 409,
    "GATEWAY_ERROR": 422,
    "TIMEOUT": 504,
    "STOPPING": 503,
}
COOKIE = "dim_token"
BATCH_MAX = 500
# A page that takes batches gets at most one WebSocket message per BATCH_WINDOW_S: frames arriving
# meanwhile join it. A browser pays per message (docs/ui.md, Performance): at 2,000 events/s this
# turns 2,000 messages a second into at most 250, for at most 4 ms more latency.
BATCH_WINDOW_S = 0.004
CLIENT_QUEUE_LIMIT = 100_000  # frames buffered for one slow page before it is dropped and must reload
# At stop: how long a page's WebSocket may take to answer our close, and how long aiohttp waits for
# requests still in flight. A page still loading (its window being destroyed) may never answer, and
# the whole app's stop has a deadline of a few seconds.
CLOSE_TIMEOUT_S = 1.0
STOPPING_ERROR = {"code": "STOPPING", "message": "dim-desktop is stopping"}


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"ok": False, "error": {"code": code, "message": message}}, status=status)


class PageClient:
    """One connected page: frames queue here and a task sends them in order."""

    def __init__(self, ws: web.WebSocketResponse, batch: bool = False):
        self.ws = ws
        self.batch = batch  # the page asked for {"batch": [...]} frames (one message, many events)
        self.queue: collections.deque[str] = collections.deque()
        self.wakeup = asyncio.Event()
        self.overflowed = False
        self.last_send = 0.0  # loop time of the last message sent


class BridgeServer:
    def __init__(self, static_dir: Path, token: str, submit: Callable[[int, str, dict], None],
                 invoke_timeout_s: float = 30.0):
        self.static_dir = static_dir.resolve()
        self.token = token
        self.submit = submit
        self.invoke_timeout_s = invoke_timeout_s
        self.port = 0
        self.clients: set[PageClient] = set()
        self.pending: dict[int, asyncio.Future] = {}
        self.req_ids = itertools.count(1)
        self.runner: web.AppRunner | None = None
        self.stopping = False  # set by stop(): new requests and pages are refused
        self.queue_peak = 0  # the deepest any page's queue has been (frames), for dimctl status

    # --- lifecycle (runs on the bridge's event loop) -----------------------------------------------

    async def start(self, port: int) -> int:
        app = web.Application(middlewares=[self.guard], client_max_size=8 << 20)
        app.router.add_post("/invoke/{command}", self.invoke)
        app.router.add_get("/events", self.events)
        app.router.add_get("/", self.index)
        app.router.add_get("/{path:.+}", self.static)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=CLOSE_TIMEOUT_S)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port, reuse_address=True)
        await site.start()
        # Port 0 lets the OS pick; the one site, bound to 127.0.0.1 alone, has one address: (host, port).
        self.port = self.runner.addresses[0][1]
        return self.port

    async def stop(self) -> None:
        """Refuse new work, answer what is pending, close the pages: within a bounded time, since
        a page in a window that is going away may never answer its close."""
        self.stopping = True
        for fut in self.pending.values():
            if not fut.done():
                fut.set_result((False, None, STOPPING_ERROR))
        closes = [asyncio.wait_for(c.ws.close(), CLOSE_TIMEOUT_S) for c in list(self.clients)]
        for outcome in await asyncio.gather(*closes, return_exceptions=True):
            if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.TimeoutError):
                log.info("closing a page's event socket at stop failed: %r", outcome)
        if self.runner is not None:
            await self.runner.cleanup()

    # --- guards ----------------------------------------------------------------------------------------

    def _allowed_hosts(self) -> set[str]:
        return {f"127.0.0.1:{self.port}", f"localhost:{self.port}"}

    @web.middleware
    async def guard(self, request: web.Request, handler):
        if request.host not in self._allowed_hosts():
            return error_response(403, "FORBIDDEN", f"host {request.host!r} is not this bridge")
        origin = request.headers.get("Origin")
        if origin is not None and origin not in {f"http://{h}" for h in self._allowed_hosts()}:
            return error_response(403, "FORBIDDEN", f"origin {origin!r} may not use this bridge")
        return await handler(request)

    def _token_ok(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self.token.encode())

    def _bearer(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else None

    # --- static files --------------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        token = request.query.get("token") or request.cookies.get(COOKIE)
        if not self._token_ok(token):
            return error_response(401, "UNAUTHORIZED", "open the URL dim-desktop printed: it carries the token")
        resp = web.FileResponse(self.static_dir / "index.html", headers={"Cache-Control": "no-store"})
        # The module scripts the page loads carry no query string: a strict cookie authorises them.
        resp.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict", path="/")
        return resp

    async def static(self, request: web.Request) -> web.StreamResponse:
        if not self._token_ok(request.cookies.get(COOKIE) or request.query.get("token")):
            return error_response(401, "UNAUTHORIZED", "missing or wrong token")
        path = (self.static_dir / request.match_info["path"]).resolve()
        if not path.is_relative_to(self.static_dir) or not path.is_file():
            return error_response(404, "NOT_FOUND", "no such file")
        return web.FileResponse(path, headers={"Cache-Control": "no-store"})

    # --- invoke ----------------------------------------------------------------------------------------

    async def invoke(self, request: web.Request) -> web.Response:
        if not self._token_ok(self._bearer(request)):
            return error_response(401, "UNAUTHORIZED", "missing or wrong bearer token")
        command = request.match_info["command"]
        if self.stopping:
            return error_response(503, STOPPING_ERROR["code"], STOPPING_ERROR["message"])
        raw = await request.read()
        try:
            args = json.loads(raw) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError) as e:
            return error_response(400, "INVALID_JSON", f"the request body is not valid JSON: {e}")
        if not isinstance(args, dict):
            return error_response(400, "INVALID_ARGUMENTS", "the request body must be a JSON object of arguments")
        req_id = next(self.req_ids)
        fut = asyncio.get_running_loop().create_future()
        self.pending[req_id] = fut
        self.submit(req_id, command, args)
        try:
            ok, result, error = await asyncio.wait_for(fut, self.invoke_timeout_s)
        except asyncio.TimeoutError:
            return error_response(504, "TIMEOUT", f"{command}: no answer within {self.invoke_timeout_s:.0f}s")
        finally:
            self.pending.pop(req_id, None)
        if ok:
            body = b'{"ok":true,"result":' + msgspec.json.encode(result) + b"}"
            return web.Response(body=body, content_type="application/json")
        status = STATUS_FOR_CODE.get(error.get("code", ""), 400)
        return web.Response(body=msgspec.json.encode({"ok": False, "error": error}), status=status,
                            content_type="application/json")

    def resolve(self, req_id: int, ok: bool, result: Any, error: dict | None) -> None:
        fut = self.pending.get(req_id)
        if fut is not None and not fut.done():
            fut.set_result((ok, result, error))

    # --- events ----------------------------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.StreamResponse:
        if not self._token_ok(request.query.get("token")):
            return error_response(401, "UNAUTHORIZED", "missing or wrong token")
        if self.stopping:
            return error_response(503, STOPPING_ERROR["code"], STOPPING_ERROR["message"])
        ws = web.WebSocketResponse(heartbeat=20, compress=False)
        await ws.prepare(request)
        client = PageClient(ws, batch=request.query.get("batch") == "1")
        self.clients.add(client)
        sender = asyncio.create_task(self._send_loop(client))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break  # the page only listens here; anything it sends is ignored
        finally:
            self.clients.discard(client)
            sender.cancel()
        return ws

    async def _send_loop(self, client: PageClient) -> None:
        loop = asyncio.get_running_loop()
        while not client.ws.closed:
            await client.wakeup.wait()
            client.wakeup.clear()
            if client.batch:
                wait = client.last_send + BATCH_WINDOW_S - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)  # what arrives meanwhile goes in the same message
            while client.queue:
                if client.batch and len(client.queue) > 1:
                    # A browser pays per WebSocket message: at thousands of events a second, one
                    # message per animation frame's worth of events keeps the page responsive.
                    n = min(len(client.queue), BATCH_MAX)
                    frames = [client.queue.popleft() for _ in range(n)]
                    await client.ws.send_str('{"batch":[' + ",".join(frames) + "]}")
                else:
                    await client.ws.send_str(client.queue.popleft())
            client.last_send = loop.time()
            if client.overflowed:
                await client.ws.close(code=1013, message=b"too far behind; reload to resynchronise")
                return

    def broadcast(self, frame: str) -> None:
        for c in self.clients:
            if len(c.queue) >= CLIENT_QUEUE_LIMIT:
                c.overflowed = True
                continue
            c.queue.append(frame)
            if len(c.queue) > self.queue_peak:
                self.queue_peak = len(c.queue)
            c.wakeup.set()
