"""The control socket: a Unix socket (0600) under DIM_HOME/run through which dimctl
drives the app.

One request a connection, one JSON object a line. `logs --follow` keeps the connection
and streams envelopes as the recipient receives them until dimctl goes away. A follower
that reads slower than the actor receives gets at most FOLLOW_BUFFER envelopes queued
for it: the oldest are dropped, and a `{"skipped": N}` line says how many fell out,
where they fell out.
"""

from __future__ import annotations

import collections
import logging
import os
import select
import socket
import socketserver
import threading
from pathlib import Path
from typing import Any, Protocol

import msgspec

from dim_actors.kernel.addresses import Addresses
from dim_actors.kernel.messagelog import MessageLogs, envelope_matches, to_line
from dim_actors.messages import ControlReply, ControlRequest, Crash


class Controlled(Protocol):
    """What the control socket asks of the runtime (app/runtime.py's SupervisorRuntime)."""

    addresses: Addresses
    logs: MessageLogs

    def status(self) -> list[dict[str, Any]]: ...

    def restart(self, name: str) -> None: ...

    def request_stop(self, reason: str) -> None: ...

    def show_ui(self, session_id: str | None) -> str: ...

    def open_session_window(self, session_id: str) -> str: ...


log = logging.getLogger(__name__)
_decoder = msgspec.json.Decoder(ControlRequest)
_encoder = msgspec.json.Encoder()

# Envelopes queued for one `logs --follow` before the oldest are dropped: appends run on
# every sender's thread, so they must never wait for a slow (or stopped) dimctl, nor
# grow without bound.
FOLLOW_BUFFER = 10_000
# While nothing arrives, how often a follower checks that dimctl is still there (EOF on
# its socket).
FOLLOW_IDLE_CHECK_S = 0.25


class _FollowQueue:
    """What one follower has yet to be sent: bounded, dropping the oldest, counting what
    it dropped."""

    def __init__(self, limit: int):
        self.lock = threading.Lock()
        self.pending: collections.deque = collections.deque()
        self.limit = limit
        self.skipped = 0
        self.ready = threading.Event()

    def put(self, env) -> None:
        with self.lock:
            if len(self.pending) >= self.limit:
                self.pending.popleft()
                self.skipped += 1
            self.pending.append(env)
        self.ready.set()

    def take(self) -> tuple[int, list]:
        with self.lock:
            envs, self.pending = list(self.pending), collections.deque()
            skipped, self.skipped = self.skipped, 0
            self.ready.clear()
        return skipped, envs


class _Handler(socketserver.StreamRequestHandler):
    server: ControlServer

    def reply(self, reply: ControlReply) -> None:
        self.wfile.write(_encoder.encode(reply) + b"\n")
        self.wfile.flush()

    def handle(self) -> None:
        line = self.rfile.readline(1 << 16)
        try:
            req = _decoder.decode(line)
        except msgspec.DecodeError as e:
            self.reply(ControlReply(ok=False, error=f"bad request: {e}"))
            return
        rt = self.server.runtime
        try:
            if req.actor is not None and req.actor not in rt.addresses:
                raise LookupError(
                    f"unknown actor {req.actor!r}; actors: {', '.join(rt.addresses.names())}"
                )
            match req.cmd:
                case "status":
                    self.reply(ControlReply(ok=True, result=rt.status()))
                case "restart":
                    rt.restart(req.actor or "")
                    self.reply(ControlReply(ok=True, result={"restarted": req.actor}))
                case "crash":
                    reason = (
                        "hang injected by dimctl"
                        if req.hangSeconds
                        else "fault injected by dimctl"
                    )
                    rt.addresses.send(
                        "dimctl",
                        req.actor or "",
                        Crash(reason=reason, hangSeconds=req.hangSeconds),
                    )
                    self.reply(ControlReply(ok=True, result={"crashed": req.actor}))
                case "stop":
                    self.reply(ControlReply(ok=True, result={"stopping": True}))
                    rt.request_stop("dimctl stop")
                case "logs":
                    self.logs(req)
                case "show" if req.newWindow:
                    if not req.sessionId:
                        raise ValueError(
                            "show --new-window needs a session: add --session ID"
                        )
                    shown = rt.open_session_window(req.sessionId)
                    self.reply(ControlReply(ok=True, result={"shown": shown}))
                case "show":
                    # Open (or bring to the front) the UI: a second `dim-desktop`,
                    # `dimctl show`.
                    shown = rt.show_ui(req.sessionId)
                    self.reply(ControlReply(ok=True, result={"shown": shown}))
                case _:
                    self.reply(
                        ControlReply(ok=False, error=f"unknown command {req.cmd!r}")
                    )
        except (LookupError, ValueError) as e:
            self.reply(ControlReply(ok=False, error=str(e).strip("'\"")))
        except (BrokenPipeError, ConnectionResetError):
            pass

    def logs(self, req: ControlRequest) -> None:
        rt = self.server.runtime
        actor = req.actor or ""
        if not actor:
            raise LookupError("logs needs an actor name")
        types = set(req.types) or None
        live = _FollowQueue(FOLLOW_BUFFER)
        cancel = None
        if req.follow:
            # Subscribe before reading history so nothing falls between the two.
            def on_append(env):
                if env.recipient == actor and envelope_matches(env, types, req.since):
                    live.put(env)

            cancel = rt.logs.follow(on_append)
        try:
            history = rt.logs.read(actor, types, req.since, req.limit)
            self.reply(ControlReply(ok=True))
            last_id = 0
            for raw in history:
                self.wfile.write(raw + b"\n")
                last_id = max(last_id, msgspec.json.decode(raw, type=_Id).id)
            self.wfile.flush()
            while req.follow:
                if not live.ready.wait(FOLLOW_IDLE_CHECK_S):
                    if self._peer_gone():
                        return
                    continue
                skipped, envs = live.take()
                out = [b'{"skipped":%d}\n' % skipped] if skipped else []
                out.extend(to_line(env) for env in envs if env.id > last_id)
                if out:
                    self.wfile.write(b"".join(out))
                    self.wfile.flush()
        finally:
            if cancel:
                cancel()

    def _peer_gone(self) -> bool:
        """dimctl sends nothing after its request: a readable socket means it closed
        (EOF)."""
        sock = self.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(4096) == b""
        except OSError:  # reset, or already closed
            return True


class _Id(msgspec.Struct):
    id: int


class ControlServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """socketserver.UnixStreamServer, which is a TCPServer on AF_UNIX, spelled out:
    Windows's socketserver has no UnixStreamServer, and this module must import there."""

    daemon_threads = True

    def __init__(self, path: Path, runtime: Controlled):
        if not hasattr(socket, "AF_UNIX"):
            raise OSError(
                "the control socket needs Unix sockets, which this system lacks"
            )
        self.address_family = socket.AF_UNIX
        self.runtime = runtime
        path.unlink(missing_ok=True)
        # the socket is born 0600: no window where others could connect
        old = os.umask(0o177)
        try:
            # typeshed knows TCPServer's address only as (host, port); on AF_UNIX it is
            # a path, as UnixStreamServer's is
            super().__init__(str(path), _Handler)  # type: ignore[arg-type]
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self.path = path

    def start(self) -> None:
        # close() waits for serve_forever to notice, up to one poll interval: keep the
        # app's stop quick.
        threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="control-socket",
            daemon=True,
        ).start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self.path.unlink(missing_ok=True)


def request(
    path: Path, req: ControlRequest, timeout: float | None = 10.0
) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(path))
    s.sendall(_encoder.encode(req) + b"\n")
    return s
