"""Every message exchanged between actors, and across the pipe to the connection process.

One place for all of them, as the design asks: actors import their message types from here and
nothing else defines a message. Bodies are tagged on `kind` so a log line or a pipe frame names
its type. Gateway frames travel as the bytes the gateway sent (`raw`), never re-encoded, so the
page receives every event exactly as it arrived.
"""

from __future__ import annotations

import itertools
import time
from typing import Any, Union

import msgspec

ACTOR_NAMES = ("journal", "materializer", "watcher", "router", "connection", "uibridge")


class Msg(msgspec.Struct, tag_field="kind", omit_defaults=True):
    """Base of every inter-actor message body."""


# --- connection process -> supervisor (over the pipe) and connection -> router -------------------


class GatewayEvent(Msg, tag="gateway_event"):
    """One frame from the gateway, as received. `replyTo` names the request it answers."""

    raw: msgspec.Raw
    type: str
    sessionId: str | None = None
    seq: int | None = None
    replyTo: int | None = None
    recvNs: int = 0


class ConnectionState(Msg, tag="connection_state"):
    state: str  # connecting | connected | reconnecting | auth_failed | offline
    url: str = ""
    detail: str = ""
    reconnects: int = 0
    retryInMs: int | None = None
    identity: dict[str, Any] | None = None


class CommandFailed(Msg, tag="command_failed"):
    """A request the connection could not send or that the gateway never answered."""

    reqId: int
    code: str
    message: str


class Queued(Msg, tag="queued"):
    """A command kept in the outbox because the gateway is out of reach; it is sent on reconnect."""

    reqId: int
    outboxId: int


class OutboxChanged(Msg, tag="outbox_changed"):
    items: list[dict[str, Any]]
    reqId: int | None = None


class BadFrame(Msg, tag="bad_frame"):
    """A frame from the gateway that could not be read; kept so nothing is silently lost."""

    reason: str
    sample: str
    count: int


# --- supervisor -> connection process ------------------------------------------------------------


class Connect(Msg, tag="connect"):
    url: str
    token: str | None = None


class Disconnect(Msg, tag="disconnect"):
    pass


class SendFrame(Msg, tag="send_frame"):
    """A validated client frame. `expect` lists the event types that answer it (see protocol.RESPONSES)."""

    reqId: int
    type: str
    frame: bytes
    expect: list[str] = []


class Shutdown(Msg, tag="shutdown"):
    pass


class CancelQueued(Msg, tag="cancel_queued"):
    reqId: int
    outboxId: int


class Resync(Msg, tag="resync"):
    """From a restarted router: replay every joined session from its first event."""


class ResyncStarted(Msg, tag="resync_started"):
    """Marks the point in the event stream after which a resync's replay follows, in order."""


# --- UI bridge <-> router ------------------------------------------------------------------------


class Invoke(Msg, tag="invoke"):
    reqId: int
    command: str
    args: dict[str, Any] = {}


class InvokeResult(Msg, tag="invoke_result"):
    reqId: int
    ok: bool
    result: Any = None
    error: dict[str, Any] | None = None


class UiEvent(Msg, tag="ui_event"):
    """One frame for the page: `payload` is raw JSON (a gateway event as sent, or our own object)."""

    event: str
    payload: msgspec.Raw


# --- sync actors -----------------------------------------------------------------------------------


class WatchFolder(Msg, tag="watch_folder"):
    sessionId: str
    localDir: str


class UnwatchFolder(Msg, tag="unwatch_folder"):
    sessionId: str


class FsEvent(Msg, tag="fs_event"):
    """A raw filesystem notification from watchdog, posted to the watcher's own mailbox."""

    sessionId: str
    path: str


class MaterializeFile(Msg, tag="materialize_file"):
    sessionId: str
    localDir: str
    path: str
    content: bytes = b""
    isDeletion: bool = False
    permissions: int | None = None


class JournalRecord(Msg, tag="journal_record"):
    sessionId: str
    origin: str  # local | upstream
    path: str
    contentHash: str | None = None
    isDeletion: bool = False
    baseIteration: int | None = None


# --- supervision -----------------------------------------------------------------------------------


class Crash(Msg, tag="crash"):
    """Injected fault: the receiving actor raises (or, with hangSeconds, blocks), so supervision
    can be exercised for real."""

    reason: str = "injected fault"
    hangSeconds: float | None = None


class Ping(Msg, tag="ping"):
    """Liveness probe; answered by every actor."""


Body = Union[
    GatewayEvent,
    ConnectionState,
    CommandFailed,
    Queued,
    OutboxChanged,
    BadFrame,
    Connect,
    Disconnect,
    SendFrame,
    CancelQueued,
    Shutdown,
    Resync,
    ResyncStarted,
    Invoke,
    InvokeResult,
    UiEvent,
    WatchFolder,
    UnwatchFolder,
    FsEvent,
    MaterializeFile,
    JournalRecord,
    Crash,
    Ping,
]


class Envelope(msgspec.Struct, omit_defaults=True):
    """What actually travels between actors: the body plus who, to whom, when, and a global order."""

    id: int
    ts: float
    sender: str
    recipient: str
    body: Body


_ids = itertools.count(1)


def envelope(sender: str, recipient: str, body: Msg) -> Envelope:
    # itertools.count is atomic under the GIL, so ids increase monotonically across threads.
    return Envelope(id=next(_ids), ts=time.time(), sender=sender, recipient=recipient, body=body)


def kind_of(body: Msg) -> str:
    return body.__struct_config__.tag  # type: ignore[attr-defined]


# --- pipe framing ----------------------------------------------------------------------------------
# Raw is not msgpack-encodable as JSON text, so gateway events cross the pipe as PipeEvent with
# plain bytes and become GatewayEvent (Raw, zero-copy) on the supervisor side.


class PipeEvent(msgspec.Struct, array_like=True):
    raw: bytes
    type: str
    sessionId: str | None
    seq: int | None
    replyTo: int | None
    recvNs: int


_UpControl = Union[ConnectionState, CommandFailed, Queued, OutboxChanged, BadFrame, ResyncStarted]
PipeDown = Union[Connect, Disconnect, SendFrame, CancelQueued, Shutdown, Resync]

_pipe_encoder = msgspec.msgpack.Encoder()
_up_decoder = msgspec.msgpack.Decoder(_UpControl)
_event_decoder = msgspec.msgpack.Decoder(PipeEvent)
_down_decoder = msgspec.msgpack.Decoder(PipeDown)


def encode_up(msg: PipeEvent | Msg) -> bytes:
    # One leading byte tells an event (the hot path, array-encoded) from a control message.
    if isinstance(msg, PipeEvent):
        return b"E" + _pipe_encoder.encode(msg)
    return b"C" + _pipe_encoder.encode(msg)


def encode_batch(frames: list[bytes]) -> bytes:
    return b"B" + _pipe_encoder.encode(frames)


_batch_decoder = msgspec.msgpack.Decoder(list[bytes])


def decode_up(data: bytes) -> list[GatewayEvent | Msg]:
    """One pipe frame holds one item or a batch of them, in order."""
    if data[:1] == b"B":
        return [_decode_one(f) for f in _batch_decoder.decode(memoryview(data)[1:])]
    return [_decode_one(data)]


def _decode_one(data: bytes) -> GatewayEvent | Msg:
    if data[:1] == b"E":
        ev = _event_decoder.decode(memoryview(data)[1:])
        return GatewayEvent(
            raw=msgspec.Raw(ev.raw),
            type=ev.type,
            sessionId=ev.sessionId,
            seq=ev.seq,
            replyTo=ev.replyTo,
            recvNs=ev.recvNs,
        )
    return _up_decoder.decode(memoryview(data)[1:])


def encode_down(msg: Msg) -> bytes:
    return _pipe_encoder.encode(msg)


def decode_down(data: bytes) -> Msg:
    return _down_decoder.decode(data)


# --- control socket (dimctl <-> supervisor process), one JSON object a line -------------------------


class ControlRequest(msgspec.Struct, omit_defaults=True):
    cmd: str  # status | restart | stop | logs | crash
    actor: str | None = None
    types: list[str] = []
    since: float | None = None
    limit: int | None = None
    follow: bool = False
    hangSeconds: float | None = None


class ControlReply(msgspec.Struct, omit_defaults=True):
    ok: bool
    result: Any = None
    error: str | None = None
