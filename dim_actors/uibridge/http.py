"""The UI bridge's HTTP and WebSocket server (aiohttp), bound to loopback only.

Tauri's `invoke` and `listen("gateway-event")` over HTTP: POST /invoke/{command} and a
WebSocket at /events. A per-launch secret guards every request; Host and Origin must
name this server, so a web page elsewhere can neither call in nor read events (DNS
rebinding and CSRF).
"""

from __future__ import annotations

import asyncio
import collections
import errno
import hmac
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from dim_actors.kernel.requests import Allocator
from dim_actors.wire import protocol

log = logging.getLogger(__name__)

STATUS_FOR_CODE = {
    "UNKNOWN_COMMAND": 404,
    "INVALID_JSON": 400,
    "INVALID_ARGUMENTS": 400,
    "NOT_CONNECTED": 409,
    "GATEWAY_ERROR": 422,
    "TIMEOUT": 504,
    "BAD_ANSWER": 502,  # the gateway answered, in a form dim-desktop cannot read
    "STOPPING": 503,
    "INTERNAL": 500,
    # settings.toml cannot be read or saved: nothing the page sent is at fault
    "SETTINGS_FILE": 500,
}
COOKIE = "dim_token"
BATCH_MAX = 500
# A page that takes batches gets at most one WebSocket message per BATCH_WINDOW_S:
# frames arriving meanwhile join it. A browser pays per message (docs/ui.md,
# Performance): at 2,000 events/s this turns 2,000 messages a second into at most 250,
# for at most 4 ms more latency.
BATCH_WINDOW_S = 0.004
# frames buffered for one slow page before it is dropped and must reload
CLIENT_QUEUE_LIMIT = 100_000
# At stop: how long a page's WebSocket may take to answer our close, and how long
# aiohttp waits for requests still in flight. A page still loading (its window being
# destroyed) may never answer, and the whole app's stop has a deadline of a few seconds.
CLOSE_TIMEOUT_S = 1.0
# A page whose socket takes no data for this long is dropped (it reconnects and reloads
# its state): a page that reads, even a hidden tab's, never waits this long for one
# message to go out.
SEND_TIMEOUT_S = 30.0
# A restarted bridge binds the port the pages know; the old server may still be letting
# it go.
BIND_RETRY_S = 5.0
MAX_BODY_BYTES = 8 << 20
MAX_JSON_DEPTH = 64  # the deepest arguments any command takes are a few levels deep
STOPPING_ERROR = {"code": "STOPPING", "message": "dim-desktop is stopping"}


class BadBody(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def decode_args(raw: bytes) -> dict[str, Any]:
    """An invoke's body as its arguments: a JSON object, at most MAX_JSON_DEPTH levels
    deep, of valid text. BadBody says what is wrong (INVALID_JSON or INVALID_ARGUMENTS).
    """
    if not raw.strip():
        return {}
    too_deep = BadBody(
        "INVALID_JSON",
        f"the request body is nested more than {MAX_JSON_DEPTH} levels deep",
    )
    try:
        args = msgspec.json.decode(raw)
    except RecursionError:
        raise too_deep from None
    except msgspec.DecodeError as e:
        hint = ""
        if protocol.replace_lone_surrogates(raw)[1]:
            hint = " (a \\uD800-\\uDFFF escape is only text as one half of a surrogate pair)"
        raise BadBody(
            "INVALID_JSON", f"the request body is not valid JSON: {e}{hint}"
        ) from None
    if not isinstance(args, dict):
        raise BadBody(
            "INVALID_ARGUMENTS", "the request body must be a JSON object of arguments"
        )
    if protocol.too_deep(raw, MAX_JSON_DEPTH):
        raise too_deep
    return args


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {"ok": False, "error": {"code": code, "message": message}}, status=status
    )


class PageClient:
    """One connected page: frames queue here and a task sends them in order."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        batch: bool = False,
    ):
        self.ws = ws
        # to drop a page that does not read: closing would wait for it
        self.transport = transport
        # the page asked for {"batch": [...]} frames (one message, many events)
        self.batch = batch
        self.queue: collections.deque[str] = collections.deque()
        self.wakeup = asyncio.Event()
        self.overflowed = False
        self.last_send = 0.0  # loop time of the last message sent


class BridgeServer:
    def __init__(
        self,
        static_dir: Path,
        token: str,
        submit: Callable[[int, str, dict], None],
        invoke_timeout_s: float = 30.0,
    ):
        self.static_dir = static_dir.resolve()
        self.token = token
        self.submit = submit
        self.invoke_timeout_s = invoke_timeout_s
        self.port = 0
        self.clients: set[PageClient] = set()
        self.pending: dict[int, asyncio.Future] = {}
        self.req_ids = Allocator("page")
        self.runner: web.AppRunner | None = None
        self.stopping = False  # set by stop(): new requests and pages are refused
        # the deepest any page's queue has been (frames), for dimctl status
        self.queue_peak = 0
        self.pages_dropped = 0  # pages dropped for not reading (they reconnect)

    # --- lifecycle (runs on the bridge's event loop) ----------------------------------

    async def start(self, port: int, fallback: bool = False) -> int:
        """Listen on `port` (0: any free one). `fallback`: a port that cannot be had
        (another program holds it) means any free one instead."""
        app = web.Application(middlewares=[self.guard], client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/invoke/{command}", self.invoke)
        app.router.add_get("/events", self.events)
        app.router.add_get("/hello", self.hello)
        app.router.add_get("/", self.index)
        app.router.add_get("/{path:.+}", self.static)
        self.runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=CLOSE_TIMEOUT_S
        )
        await self.runner.setup()
        await self._bind(port, fallback)
        # Port 0 lets the OS pick; the one site, bound to 127.0.0.1 alone, has one
        # address: (host, port).
        self.port = self.runner.addresses[0][1]
        return self.port

    async def _bind(self, port: int, fallback: bool = False) -> None:
        """Listen on `port`. SO_REUSEADDR lets it be bound while connections of an
        earlier server on it are still closing; a listener not yet closed is waited for,
        a short while."""
        assert self.runner is not None
        deadline = asyncio.get_running_loop().time() + BIND_RETRY_S
        while True:
            site = web.TCPSite(self.runner, "127.0.0.1", port, reuse_address=True)
            try:
                await site.start()
                return
            except OSError as e:
                # a site that failed to start is still registered with the runner
                await site.stop()
                if fallback and port != 0:
                    log.info("port %d is taken (%s): using a free one", port, e)
                    port = 0
                    continue
                if (
                    e.errno != errno.EADDRINUSE
                    or port == 0
                    or asyncio.get_running_loop().time() > deadline
                ):
                    raise
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Let the port go, refuse new work, answer what is pending, close the pages:
        within a bounded time, since a page may never answer its close (a window going
        away, a page that does not read). A page that does not take its close in time is
        dropped."""
        self.stopping = True
        if self.runner is not None:
            for site in self.runner.sites:  # first, so a successor can listen at once
                await site.stop()
        for fut in self.pending.values():
            if not fut.done():
                fut.set_result((False, None, STOPPING_ERROR))
        await asyncio.gather(*(self._close_page(c) for c in list(self.clients)))
        if self.runner is not None:
            await self.runner.cleanup()
        # any left (a page that came in meanwhile) goes now
        for c in list(self.clients):
            self._drop(c)

    async def _close_page(self, client: PageClient) -> None:
        try:
            await asyncio.wait_for(
                client.ws.close(code=1001, message=b"dim-desktop is stopping"),
                CLOSE_TIMEOUT_S,
            )
        except TimeoutError:
            pass
        except Exception as e:
            log.info("closing a page's event socket at stop failed: %r", e)
        # A close frame stuck behind unread data would keep the socket open until the
        # page reads.
        self._drop(client)

    def _drop(self, client: PageClient) -> None:
        """Close a page's connection now, whatever it has not read (a reset: it
        reconnects)."""
        t = client.transport
        if t is not None and not (t.is_closing() and t.get_write_buffer_size() == 0):
            t.abort()

    # --- guards -----------------------------------------------------------------------

    def _allowed_hosts(self) -> set[str]:
        return {f"127.0.0.1:{self.port}", f"localhost:{self.port}"}

    @web.middleware
    async def guard(self, request: web.Request, handler):
        if request.host not in self._allowed_hosts():
            return error_response(
                403, "FORBIDDEN", f"host {request.host!r} is not this bridge"
            )
        origin = request.headers.get("Origin")
        if origin is not None and origin not in {
            f"http://{h}" for h in self._allowed_hosts()
        }:
            return error_response(
                403, "FORBIDDEN", f"origin {origin!r} may not use this bridge"
            )
        return await handler(request)

    def _cookie_value(self) -> str:
        # The cookie authorises the UI's files alone, and a browser sends it to every
        # port of 127.0.0.1: so it is not the token, only derived from it.
        return hmac.new(
            self.token.encode(), b"dim-desktop ui files", "sha256"
        ).hexdigest()

    def _cookie_ok(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(
            candidate.encode(), self._cookie_value().encode()
        )

    async def hello(self, request: web.Request) -> web.Response:
        """Proof that this server knows the token, bound to the port it listens on: a page
        that lost its bridge checks it before it sends the token again, so a program
        that took the port meanwhile learns nothing (docs/security.md)."""
        nonce = request.query.get("nonce", "")
        if not 16 <= len(nonce) <= 128 or not nonce.isalnum():
            return error_response(
                400, "INVALID_ARGUMENTS", "nonce: 16 to 128 letters or digits"
            )
        proof = hmac.new(
            self.token.encode(), f"dim-desktop {self.port} {nonce}".encode(), "sha256"
        ).hexdigest()
        return web.json_response(
            {"ok": True, "result": {"proof": proof}},
            headers={"Cache-Control": "no-store"},
        )

    def _token_ok(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(
            candidate.encode(), self.token.encode()
        )

    def _bearer(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else None

    # --- static files -----------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        if not (
            self._token_ok(request.query.get("token"))
            or self._cookie_ok(request.cookies.get(COOKIE))
        ):
            return error_response(
                401,
                "UNAUTHORIZED",
                "open the URL dim-desktop printed: it carries the token",
            )
        resp = web.FileResponse(
            self.static_dir / "index.html", headers={"Cache-Control": "no-store"}
        )
        # The module scripts the page loads carry no query string: a strict cookie
        # authorises them.
        resp.set_cookie(
            COOKIE, self._cookie_value(), httponly=True, samesite="Strict", path="/"
        )
        return resp

    async def static(self, request: web.Request) -> web.StreamResponse:
        if not (
            self._cookie_ok(request.cookies.get(COOKIE))
            or self._token_ok(request.query.get("token"))
        ):
            return error_response(401, "UNAUTHORIZED", "missing or wrong token")
        path = (self.static_dir / request.match_info["path"]).resolve()
        if not path.is_relative_to(self.static_dir) or not path.is_file():
            return error_response(404, "NOT_FOUND", "no such file")
        return web.FileResponse(path, headers={"Cache-Control": "no-store"})

    # --- invoke -----------------------------------------------------------------------

    async def invoke(self, request: web.Request) -> web.Response:
        if not self._token_ok(self._bearer(request)):
            return error_response(401, "UNAUTHORIZED", "missing or wrong bearer token")
        command = request.match_info["command"]
        if self.stopping:
            return error_response(
                503, STOPPING_ERROR["code"], STOPPING_ERROR["message"]
            )
        try:
            args = decode_args(await request.read())
        except web.HTTPRequestEntityTooLarge:
            return error_response(
                413,
                "TOO_LARGE",
                f"the request body is larger than {MAX_BODY_BYTES} bytes",
            )
        except BadBody as e:
            return error_response(400, e.code, e.message)
        req_id = next(self.req_ids)
        fut = asyncio.get_running_loop().create_future()
        self.pending[req_id] = fut
        self.submit(req_id, command, args)
        try:
            ok, result, error = await asyncio.wait_for(fut, self.invoke_timeout_s)
        except TimeoutError:
            return error_response(
                504,
                "TIMEOUT",
                f"{command}: no answer within {self.invoke_timeout_s:.0f}s",
            )
        finally:
            self.pending.pop(req_id, None)
        if ok:
            body = b'{"ok":true,"result":' + msgspec.json.encode(result) + b"}"
            return web.Response(body=body, content_type="application/json")
        status = STATUS_FOR_CODE.get(error.get("code", ""), 400)
        return web.Response(
            body=msgspec.json.encode({"ok": False, "error": error}),
            status=status,
            content_type="application/json",
        )

    def resolve(self, req_id: int, ok: bool, result: Any, error: dict | None) -> None:
        fut = self.pending.get(req_id)
        if fut is not None and not fut.done():
            fut.set_result((ok, result, error))

    # --- events -----------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.StreamResponse:
        if not self._token_ok(request.query.get("token")):
            return error_response(401, "UNAUTHORIZED", "missing or wrong token")
        if self.stopping:
            return error_response(
                503, STOPPING_ERROR["code"], STOPPING_ERROR["message"]
            )
        ws = web.WebSocketResponse(heartbeat=20, compress=False)
        await ws.prepare(request)
        client = PageClient(
            ws, request.transport, batch=request.query.get("batch") == "1"
        )
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
        try:
            await self._send_frames(client)
        except TimeoutError:
            log.warning(
                "dropping a page that took no data for %.0f s (it reconnects)",
                SEND_TIMEOUT_S,
            )
            self.pages_dropped += 1
            self._drop(client)

    async def _send_frames(self, client: PageClient) -> None:
        loop = asyncio.get_running_loop()

        async def send(text: str) -> None:
            # a timer, not a task: this is the hot path
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await client.ws.send_str(text)

        while not client.ws.closed:
            await client.wakeup.wait()
            client.wakeup.clear()
            if client.batch:
                wait = client.last_send + BATCH_WINDOW_S - loop.time()
                if wait > 0:
                    # what arrives meanwhile goes in the same message
                    await asyncio.sleep(wait)
            while client.queue:
                if client.batch and len(client.queue) > 1:
                    # A browser pays per WebSocket message: at thousands of events a
                    # second, one message per animation frame's worth of events keeps
                    # the page responsive.
                    n = min(len(client.queue), BATCH_MAX)
                    frames = [client.queue.popleft() for _ in range(n)]
                    await send('{"batch":[' + ",".join(frames) + "]}")
                else:
                    await send(client.queue.popleft())
            client.last_send = loop.time()
            if client.overflowed:
                self.pages_dropped += 1
                try:
                    await asyncio.wait_for(
                        client.ws.close(
                            code=1013,
                            message=b"too far behind; reload to resynchronise",
                        ),
                        CLOSE_TIMEOUT_S,
                    )
                except TimeoutError:
                    self._drop(client)
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
