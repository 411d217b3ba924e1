"""Between the connection actor, its process (across the pipe) and the router."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from dim_actors.messages.base import Msg


class GatewayEvent(Msg, tag="gateway_event"):
    """One frame from the gateway, as received. `replyTo` names the request it answers."""

    raw: msgspec.Raw
    type: str
    sessionId: str | None = None
    seq: int | None = None
    replyTo: int | None = None
    recvNs: int = 0


# What a gateway was seen to support (docs/protocol.md §11): "unknown" until it showed
# either way.
Support = Literal["unknown", "yes", "no"]


class GatewayTraits(msgspec.Struct):
    """Learned from what the gateway does, per connection; none of these is promised by
    the docs."""

    protocolVersion: int | None = None
    # `authenticated` without an `authenticate`
    pushesAuthenticated: Support = "unknown"
    # `get_events` answered with an `event_list` we can read
    getEvents: Support = "unknown"
    pong: Support = "unknown"  # `ping` answered with `pong`
    clientTurnIdEcho: Support = "unknown"  # `turn_started.clientTurnId` echoed
    # a live seq gap held missing events ("no": it skips seqs, gaps not refetched)
    denseSeqs: Support = "unknown"
    heartbeatIntervalMs: int | None = None  # from `connected`
    # the silence after which the connection is taken as dead
    staleAfterMs: int | None = None


LinkState = Literal["connecting", "connected", "reconnecting", "auth_failed", "offline"]


class ConnectionState(Msg, tag="connection_state"):
    state: LinkState
    url: str = ""
    detail: str = ""
    reconnects: int = 0
    retryInMs: int | None = None
    identity: dict[str, Any] | None = None
    # Plain-words warnings about this gateway (a newer protocol version, ...), shown
    # with the state.
    warnings: list[str] = []
    traits: GatewayTraits = msgspec.field(default_factory=GatewayTraits)


class CatchupGap(Msg, tag="catchup_gap"):
    """A session's events after ``afterSeq`` and before ``beforeSeq`` (None: up to
    whatever comes next) could not be fetched; live events after them were released
    anyway."""

    sessionId: str
    afterSeq: int
    beforeSeq: int | None
    reason: str


class SessionGone(Msg, tag="session_gone"):
    """The gateway no longer knows a joined session (deleted meanwhile): it is no longer
    joined."""

    sessionId: str
    reason: str


class CommandFailed(Msg, tag="command_failed"):
    """A request the connection could not send or that the gateway never answered."""

    reqId: int
    code: str
    message: str


class Queued(Msg, tag="queued"):
    """A command kept in the outbox because the gateway is out of reach; it is sent on
    reconnect."""

    reqId: int
    outboxId: int


class OutboxChanged(Msg, tag="outbox_changed"):
    items: list[dict[str, Any]]
    reqId: int | None = None


class BadFrame(Msg, tag="bad_frame"):
    """A frame from the gateway that could not be read; kept so nothing is silently
    lost."""

    reason: str
    sample: str
    count: int


class Connect(Msg, tag="connect"):
    url: str
    token: str | None = None


class Disconnect(Msg, tag="disconnect"):
    pass


class SendFrame(Msg, tag="send_frame"):
    """A validated client frame. `expect` lists the event types that answer it (see
    protocol.RESPONSES)."""

    reqId: int
    type: str
    frame: bytes
    expect: list[str] = []


class Shutdown(Msg, tag="shutdown"):
    pass


# The outbox's ids are SQLite integers (signed 64-bit): a larger one would raise in the
# connection process, or fail to encode for the pipe, instead of being answered.
OUTBOX_ID_MAX = (1 << 63) - 1


class CancelQueued(Msg, tag="cancel_queued"):
    reqId: int
    # 1..OUTBOX_ID_MAX; the router checks it, the connection actor again (any sender)
    outboxId: int


class Resync(Msg, tag="resync"):
    """From a restarted router: replay every joined session from its first event."""


class ResyncStarted(Msg, tag="resync_started"):
    """Marks the point in the event stream after which a resync's replay follows, in
    order."""


class GatewayState(msgspec.Struct):
    """How the embedded dev gateway process is doing: for `dimctl status` and the Actors
    panel."""

    state: Literal["stopped", "running", "restarting", "failed"]
    url: str
    pid: int | None
    restarts: int
    lastExitCode: int | None
    lastError: str = ""


class JoinedSessions(Msg, tag="joined_sessions"):
    """Connection -> router: the sessions the connection keeps joined (and rejoins after
    a reconnect or a restart of its process), whenever that set changes."""

    sessionIds: list[str]
