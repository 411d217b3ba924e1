"""The handshake with the gateway, as the reference SDK does it: ready on
`authenticated`, or, when `welcome` says no authentication is needed, at `connected` (an
`authenticated` after that fills in the identity, connection.py). The version is
checked, `heartbeatIntervalMs` read.

Each field read here is checked: a wrong type is a reported bad frame with a safe
reading, never an exception that ends the socket thread. The checks are pure functions
(tests/test_connection_handshake.py); `Handshake` reads the frames and collects what it
learned, which the connection applies whether the handshake ends in `ready` or in an
exception."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import websocket

from dim_actors.connection import staleness
from dim_actors.connection.process.reading import RETRY_AFTER_DEFAULT_S, retry_after_s
from dim_actors.messages import PipeEvent
from dim_actors.wire import protocol

log = logging.getLogger("dim.connection")

# After `welcome {requiresAuth: false}` the connection is ready at `connected` (the
# reference SDK resolves there); if no `connected` comes within this, it is ready all
# the same.
CONNECTED_WAIT_S = 2.0
# Warnings about the gateway's version start so: a new welcome replaces them.
VERSION_WARNING = "The gateway"


class AuthFailed(Exception):
    pass


class ProtocolVersionMismatch(Exception):
    """The gateway speaks another major version of the protocol: retrying cannot help."""


class RetryLater(Exception):
    def __init__(self, delay_s: float, why: str):
        super().__init__(why)
        self.delay_s = delay_s


class VersionCheck(msgspec.Struct, frozen=True):
    protocol_version: int | None
    warning: str | None = None  # for the user, shown with the state
    bad: str | None = None  # why the frame is a bad one
    newer: bool = False  # a newer major version than ours (logged)


def check_version(version: Any) -> VersionCheck:
    """v1 works; a newer version gets v1 messages and a warning, since only the gateway
    can say it will not take them (an error or a close then ends the connection as any
    other would)."""
    ours = protocol.PROTOCOL_VERSION
    if (
        isinstance(version, bool)
        or not isinstance(version, (int, float))
        or version != version
    ):
        return VersionCheck(
            None,
            f"{VERSION_WARNING} did not say which protocol version it speaks; "
            f"this client goes on with version {ours} messages.",
            f"welcome.protocolVersion is not a number ({version!r})",
        )
    if version < ours:
        raise ProtocolVersionMismatch(
            f"gateway speaks protocol v{version:g}, this client speaks {ours}"
        )
    if version >= ours + 1:
        return VersionCheck(
            int(min(version, 1 << 31)),
            f"{VERSION_WARNING} speaks protocol version {version:g}; this client speaks "
            f"version {ours} and goes on with version {ours} messages.",
            newer=True,
        )
    return VersionCheck(int(min(version, 1 << 31)))


def requires_auth(value: Any) -> tuple[bool, str | None]:
    """Whether to authenticate after `welcome`, and why its field is bad (None when it
    is not). Only an explicit false skips it; an authenticate the gateway did not need
    is harmless."""
    bad = (
        None
        if isinstance(value, bool)
        else f"welcome.requiresAuth is not a boolean ({value!r}): authenticating"
    )
    return value is not False, bad


def heartbeat(interval: Any) -> tuple[int | None, str | None]:
    """`connected.heartbeatIntervalMs` when usable, and why it is bad (None when it is
    not)."""
    heartbeat_ms = staleness.heartbeat_ms_of(interval)
    if heartbeat_ms is not None:
        return heartbeat_ms, None
    return None, (
        f"connected.heartbeatIntervalMs is not a positive number ({interval!r}): "
        f"taking {staleness.DEFAULT_HEARTBEAT_MS} ms"
    )


def identity_of(value: Any) -> tuple[dict[str, Any] | None, str | None]:
    """`authenticated.identity` when it is an object (or absent), and why it is bad."""
    if value is None or isinstance(value, dict):
        return value, None
    return None, f"authenticated.identity is not an object ({type(value).__name__})"


def refusal(msg: dict[str, Any]) -> tuple[Exception, str | None]:
    """What a handshake `error` ends the attempt with, and why the frame is bad (None
    when not)."""
    code, message = msg.get("code"), msg.get("message")
    message = message if isinstance(message, str) else ""
    if code == "AUTH_FAILED":
        return AuthFailed(message or "authentication failed"), None
    if code == "AUTH_RATE_LIMITED":
        delay = retry_after_s(msg.get("retryAfterMs"), 0.1)
        bad = None
        if delay is None:
            delay = RETRY_AFTER_DEFAULT_S
            bad = (
                f"AUTH_RATE_LIMITED without a usable retryAfterMs "
                f"({msg.get('retryAfterMs')!r}): retrying in {delay:.1f}s"
            )
        return RetryLater(delay, f"AUTH_RATE_LIMITED: {message}"), bad
    bad = None
    if not isinstance(code, str):
        bad = f"a handshake error whose code is not a string ({code!r})"
        code = ""
    return protocol.ProtocolError(
        code or "HANDSHAKE", message or "handshake failed"
    ), bad


@dataclass
class Handshake:
    """One handshake on a fresh socket. What it learned stays here for the connection to
    apply, also when it ends in an exception (the state published then shows the version
    warning)."""

    token: str | None
    ping_interval_s: float
    stale_override_s: float  # 0: derived from the gateway's heartbeatIntervalMs
    bad_frame: Callable[[str, bytes], None]
    put_event: Callable[[PipeEvent], None]
    identity: dict[str, Any] | None = None
    traits: dict[str, Any] = field(default_factory=dict)  # GatewayTraits fields learned
    # None: no welcome read, the old ones stand
    version_warnings: list[str] | None = None
    keepalive: staleness.Keepalive | None = None  # None: no `connected` read

    def _bad(self, reason: str | None, data: bytes) -> None:
        if reason is not None:
            self.bad_frame(reason, data)

    def run(self, ws: websocket.WebSocket) -> None:
        """Returns once ready; raises AuthFailed, ProtocolVersionMismatch, RetryLater,
        ProtocolError or a socket error otherwise."""
        ws.settimeout(10)
        sent_authenticate = False
        # once welcome said no auth: the latest moment to be ready
        ready_by: float | None = None
        while True:
            if ready_by is not None:
                left = ready_by - time.monotonic()
                if left <= 0:
                    # no `connected` (promised by the docs, yet): ready all the same
                    return
                ws.settimeout(left)
            try:
                opcode, data = ws.recv_data()
            except websocket.WebSocketTimeoutException:
                if ready_by is not None:
                    return
                raise
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                raise websocket.WebSocketConnectionClosedException(
                    "closed during the handshake"
                )
            if opcode != websocket.ABNF.OPCODE_TEXT:
                self.bad_frame("binary frame on the event socket", data)
                continue
            # not an event at all: ProtocolError, a reconnect
            head = protocol.decode_head(data)
            self.put_event(
                PipeEvent(
                    data, head.type, head.sessionId, head.seq, None, time.time_ns()
                )
            )
            msg = msgspec.json.decode(data)  # an object: decode_head checked that
            if head.type == "welcome":
                self.welcome(msg, data)
                authenticate, bad = requires_auth(msg.get("requiresAuth"))
                self._bad(bad, data)
                if authenticate:
                    ws.send(
                        protocol.build_client_message(
                            "authenticate", {"token": self.token or ""}
                        )
                    )
                    sent_authenticate = True
                else:
                    ready_by = time.monotonic() + CONNECTED_WAIT_S
            elif head.type == "connected":
                self.connected(msg.get("heartbeatIntervalMs"), data)
                if ready_by is not None:
                    return
            elif head.type == "authenticated":
                self.authenticated(
                    msg.get("identity"), data, pushed=not sent_authenticate
                )
                return
            elif head.type == "error":
                error, bad = refusal(msg)
                self._bad(bad, data)
                raise error

    def welcome(self, msg: dict[str, Any], data: bytes) -> None:
        self.version_warnings = []
        version = msg.get("protocolVersion")
        check = check_version(version)
        self._bad(check.bad, data)
        if check.newer:
            log.warning(
                "the gateway speaks protocol v%g: going on with v%d messages",
                version,
                protocol.PROTOCOL_VERSION,
            )
        if check.warning is not None:
            self.version_warnings.append(check.warning)
        self.traits["protocolVersion"] = check.protocol_version

    def connected(self, interval: Any, data: bytes) -> None:
        heartbeat_ms, bad = heartbeat(interval)
        self._bad(bad, data)
        ka = self.keepalive = staleness.keepalive(
            heartbeat_ms, self.ping_interval_s, self.stale_override_s
        )
        self.traits["heartbeatIntervalMs"] = ka.heartbeat_ms
        self.traits["staleAfterMs"] = round(ka.stale_after_s * 1000)

    def authenticated(self, identity: Any, data: bytes, pushed: bool) -> None:
        self.identity, bad = identity_of(identity)
        self._bad(bad, data)
        if pushed:
            self.traits["pushesAuthenticated"] = "yes"
