"""The dev gateway's WebSocket server: handshake, inbound validation, dispatch,
heartbeats.

Inbound frames go through the same checks, in the same order, as the reference
gateway's: size (before parsing), rate, JSON, schema, authentication. Every refusal is
an ``error`` event to that connection only, and the connection stays open.

Before the upgrade, as the reference gateway does with its allow-list, the ``Origin``
header is checked: a browser sends one on every WebSocket, and browsers apply no
same-origin rule to WebSockets, so any page the user opens could otherwise drive this
gateway. No Origin (a program, not a browser) or a loopback ``http://`` origin on this
gateway's own port passes; anything else (or an origin given with ``allowed_origins``)
is refused with 403.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import shutil
import socket
import tempfile
from collections.abc import Iterable
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from dim_actors.wire import protocol as p
from dim_actors.wire.limits import MAX_SOCKET_FRAME

from .agents import AGENTS, CodingAgent
from .connection import Connection
from .errors import GatewayError
from .faults import Faults
from .handlers import RequestHandlers
from .limits import AuthLimiter
from .profile import DEV, GatewayProfile
from .replication import REPLICATE_PATH, ReplicationHub
from .seed import seed_history
from .sessions import Agent, SessionRuntime, now_ms
from .stats import GatewayStats
from .store import Database
from .vocabulary import ClientDecoder
from .workspace import WorkspaceError

log = logging.getLogger(__name__)

DEV_IDENTITY = p.Identity(
    userId="dev-user-001", email="developer@example.com", tenantId="dev"
)


class DevGateway:
    """A Diminuendo v1 gateway for development and tests, served on
    ``ws://host:port/ws``.

    ``await start()`` binds (``port=0`` picks a free port, then ``self.port`` is the
    real one); ``await stop()`` ends running turns, winds sessions down, flushes storage
    and closes.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        data_dir: str | Path | None = None,
        heartbeat_ms: int = 30000,
        rate_limit: int = 60,
        rate_window_ms: int = 10000,
        auth_max_failures: int = 5,
        auth_window_ms: int = 60000,
        max_frame_bytes: int = p.MAX_FRAME_BYTES,
        stats_file: str | Path | None = None,
        ping_probe_ms: int = 0,
        profile: GatewayProfile = DEV,
        allowed_origins: Iterable[str] = (),
        lockout_spares_token: bool = False,
        sock: socket.socket | None = None,
        seed: tuple[int, int] | None = None,
    ):
        self.profile = profile
        # A listening socket made by whoever started us (dim-desktop keeps its port
        # while we restart).
        self.sock = sock
        if sock is not None:
            host, port = sock.getsockname()[:2]
        self.allowed_origins = frozenset(o.rstrip("/") for o in allowed_origins)
        self.host = host
        self.port = port
        self.token = token or None
        # The right token passes even while its IP is locked out for failed attempts:
        # for a token made per launch (the embedded gateway's, too long to guess), where
        # the lockout would only let another local user, sharing 127.0.0.1, keep the app
        # out by failing on purpose.
        self.lockout_spares_token = lockout_spares_token
        self.data_dir = Path(data_dir) if data_dir else None
        self.heartbeat_ms = heartbeat_ms
        self.rate_limit = rate_limit
        self.rate_window = rate_window_ms / 1000
        self.max_frame_bytes = max_frame_bytes
        self.auth_limiter = AuthLimiter(auth_max_failures, auth_window_ms / 1000)
        self.identity = DEV_IDENTITY
        self.faults = Faults()
        self.agents: dict[str, Agent] = dict(AGENTS)
        self.agents["coding-agent"] = CodingAgent(faults=self.faults)
        self.sessions: dict[str, SessionRuntime] = {}
        self.connections: set[Connection] = set()
        self.faults.connections = self.connections
        # the schema stage: which fields this gateway reads
        self.decoder = ClientDecoder(profile)
        self.handlers = RequestHandlers(self)
        self.replication = ReplicationHub(self)  # /replicate (docs/sync.md)
        self._db: Database | None = None
        self._members: dict[str, dict[str, p.Member]] = {}
        self._server: Server | None = None
        self._heartbeat_task: asyncio.Task | None = None
        self._own_data_dir = False
        self._stopped = False
        # (turns, events) of a long session to write into the store before serving
        self.seed = seed
        self.seeded_session: str | None = None
        self.stats = GatewayStats(stats_file, ping_probe_ms) if stats_file else None

    @property
    def db(self) -> Database:
        """The store, open from ``start()`` on."""
        if self._db is None:
            raise RuntimeError("the dev gateway is not started")
        return self._db

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}/ws"

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="dim-gateway-"))
            self._own_data_dir = True
        if self.seed is not None:
            self.seeded_session = seed_history(self.data_dir, *self.seed)
        self._db = Database(self.data_dir / "gateway.db")
        stored = self.db.open()
        for tenant, rows in self.db.load_members().items():
            self._members[tenant] = {
                r[0]: p.Member(userId=r[0], role=r[1], createdAt=r[2], updatedAt=r[3])
                for r in rows
            }
        self.db.attach(asyncio.get_running_loop())
        for st in stored:
            session = SessionRuntime(
                self.db, self.agents.get(st.agent_type, self.agents["echo"]), st
            )
            session.recover()
            self.sessions[session.id] = session
        where = (
            {"sock": self.sock}
            if self.sock is not None
            else {"host": self.host, "port": self.port}
        )
        self._server = await serve(
            self._serve_connection,
            **where,
            process_request=self._only_ws_path,
            max_size=MAX_SOCKET_FRAME,
            compression=None,  # the reference disables permessage-deflate for latency
            ping_interval=30,
            ping_timeout=60,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._heartbeat_task = asyncio.create_task(
            self._heartbeats(), name="dev gateway heartbeats"
        )
        log.info("dev gateway listening on %s (data in %s)", self.url, self.data_dir)

    async def stop(self) -> None:
        if self._stopped or self._server is None:
            return
        self._stopped = True
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
        turn_tasks = []
        for s in self.sessions.values():
            if s.turn is not None:
                if s.turn.task is not None:
                    turn_tasks.append(s.turn.task)
                s.end_turn(
                    s.turn,
                    error=("GatewayShutdown", "The gateway is shutting down"),
                    wind_down=True,
                )
            elif s.status == "ready":
                s.wind_down()
        if turn_tasks:
            await asyncio.gather(*turn_tasks, return_exceptions=True)
        # Let what is queued reach the clients before the close frames.
        pending = [c.outbox.idle.wait() for c in self.connections]
        if pending:
            await asyncio.wait([asyncio.ensure_future(w) for w in pending], timeout=1.0)
        self._server.close()
        await self._server.wait_closed()
        await self.db.close()
        if self.stats is not None:
            self.stats.close()
        if self._own_data_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    # --- members (kept in memory, written through) ------------------------------------

    def members_of(self, tenant: str) -> dict[str, p.Member]:
        members = self._members.setdefault(tenant, {})
        if not members and self.identity.tenantId == tenant:
            # The first user of a tenant owns it.
            now = now_ms()
            members[self.identity.userId] = p.Member(
                userId=self.identity.userId, role="owner", createdAt=now, updatedAt=now
            )
        return members

    # --- connections ------------------------------------------------------------------

    def _only_ws_path(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        origins = request.headers.get_all("Origin")
        if origins and (
            len(origins) > 1
            or not origin_allowed(origins[0], self.port, self.allowed_origins)
        ):
            log.warning(
                "dev gateway: refused a connection from origin %r",
                ", ".join(origins)[:200],
            )
            return connection.respond(HTTPStatus.FORBIDDEN, "Origin not allowed\n")
        if request.path.split("?", 1)[0] == REPLICATE_PATH and self.profile.replicate:
            return self.replication.check_request(connection, request)
        if request.path.split("?", 1)[0] != "/ws":
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        return None

    async def _serve_connection(self, ws: ServerConnection) -> None:
        assert ws.request is not None  # a handler runs after the handshake
        if ws.request.path.split("?", 1)[0] == REPLICATE_PATH:
            await self.replication.serve(ws)
            return
        conn = Connection(
            ws,
            rate_limit=self.rate_limit,
            rate_window=self.rate_window,
            faults=self.faults,
        )
        self.connections.add(conn)
        self.faults.on_new_connection(conn)
        writer = asyncio.create_task(conn.outbox.run(), name=f"writer {conn.client_id}")
        probe = (
            self.stats.opened_connection(conn.client_id, ws)
            if self.stats is not None
            else None
        )
        conn.send(
            p.Welcome(
                protocolVersion=self.profile.protocol_version,
                requiresAuth=self.token is not None,
            )
        )
        conn.send(
            p.Connected(
                clientId=conn.client_id,
                heartbeatIntervalMs=self.heartbeat_ms,
                ts=now_ms(),
            )
        )
        if self.token is None:
            # Dev mode authenticates every connection; whether it says so unasked is the
            # profile's choice.
            conn.identity = self.identity
            if self.profile.push_authenticated:
                conn.send(p.Authenticated(identity=self.identity))
        try:
            async for message in ws:
                await self._on_frame(conn, message)
        except ConnectionClosed:
            pass
        finally:
            for sid in list(conn.sessions):
                session = self.sessions.get(sid)
                if session is not None:
                    session.unsubscribe(conn)
            self.connections.discard(conn)
            self.faults.disconnects += 1
            conn.outbox.close()
            writer.cancel()
            if self.stats is not None:
                if probe is not None:
                    probe.cancel()
                self.stats.closed_connection(conn.client_id, ws, self._stopped)

    async def _on_frame(self, conn: Connection, message: str | bytes) -> None:
        if _too_large(message, self.max_frame_bytes):
            conn.error(
                "MESSAGE_TOO_LARGE",
                f"Message exceeds the {self.max_frame_bytes}-byte limit",
            )
            return
        if isinstance(message, bytes):
            conn.error(
                "INVALID_MESSAGE",
                "Binary frames are not used: send one JSON object per text frame",
            )
            return
        if not conn.rate.allow():
            conn.error(
                "RATE_LIMITED",
                f"More than {self.rate_limit} messages in {self.rate_window:g} s; slow down",
                conn.rate.retry_after_ms(),
            )
            return
        try:
            msg = self.decoder.decode(message)
        except p.ProtocolError as e:
            conn.error(e.code, e.message)
            return
        if conn.identity is None and not isinstance(msg, p.Authenticate):
            conn.error(
                "Unauthenticated", "Authenticate first: send authenticate {token}"
            )
            return
        try:
            await self.handlers.table[type(msg)](conn, msg)
        except (GatewayError, WorkspaceError) as e:
            conn.error(e.code, e.message, getattr(e, "retry_after_ms", None))
        except Exception:
            log.exception("dev gateway: %s failed", type(msg).__name__)
            conn.error("InternalError", "The gateway failed to handle this message")

    async def _heartbeats(self) -> None:
        interval = self.heartbeat_ms / 1000
        while True:
            await asyncio.sleep(interval)
            frame = p.encode(p.Heartbeat(ts=now_ms()))
            for conn in self.connections:
                # heartbeats travel on session topics: joined connections only
                if conn.sessions:
                    conn.send_frame(frame)


def origin_allowed(
    origin: str, own_port: int, allowed: frozenset[str] = frozenset()
) -> bool:
    """May a client whose request carries this Origin header connect? Only this
    gateway's own loopback http origins, and those listed in `allowed` ("null", sent by
    sandboxed pages and file:// documents, never passes unless listed)."""
    if origin.rstrip("/") in allowed:
        return True
    try:
        u = urlsplit(origin)
        port = u.port or 80
    except ValueError:
        return False
    if (
        u.scheme != "http"
        or port != own_port
        or u.path not in ("", "/")
        or u.query
        or u.username
        or u.password
    ):
        return False
    host = u.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _too_large(message: str | bytes, limit: int) -> bool:
    n = len(message)
    if n > limit:
        return True
    if isinstance(message, bytes) or n * 4 <= limit:
        return False
    return len(message.encode("utf-8")) > limit
