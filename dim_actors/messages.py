"""Every message exchanged between actors, and across the pipe to the connection process.

One place for all of them, as the design asks: actors import their message types from here and
nothing else defines a message. Bodies are tagged on `kind` so a log line or a pipe frame names
its type. Gateway frames travel as the bytes the gateway sent (`raw`), never re-encoded, so the
page receives every event exactly as it arrived.
"""

from __future__ import annotations

import itertools
import time
from typing import Any, Literal, Union

import msgspec

from dim_actors.wire import replication as wire

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


# What a gateway was seen to support (docs/protocol.md §11): "unknown" until it showed either way.
Support = Literal["unknown", "yes", "no"]


class GatewayTraits(msgspec.Struct):
    """Learned from what the gateway does, per connection; none of these is promised by the docs."""

    protocolVersion: int | None = None
    pushesAuthenticated: Support = (
        "unknown"  # `authenticated` without an `authenticate`
    )
    getEvents: Support = (
        "unknown"  # `get_events` answered with an `event_list` we can read
    )
    pong: Support = "unknown"  # `ping` answered with `pong`
    clientTurnIdEcho: Support = "unknown"  # `turn_started.clientTurnId` echoed
    denseSeqs: Support = "unknown"  # a live seq gap held missing events ("no": it skips seqs, gaps not refetched)
    heartbeatIntervalMs: int | None = None  # from `connected`
    staleAfterMs: int | None = (
        None  # the silence after which the connection is taken as dead
    )


class ConnectionState(Msg, tag="connection_state"):
    state: str  # connecting | connected | reconnecting | auth_failed | offline
    url: str = ""
    detail: str = ""
    reconnects: int = 0
    retryInMs: int | None = None
    identity: dict[str, Any] | None = None
    # Plain-words warnings about this gateway (a newer protocol version, ...), shown with the state.
    warnings: list[str] = []
    traits: GatewayTraits = msgspec.field(default_factory=GatewayTraits)


class CatchupGap(Msg, tag="catchup_gap"):
    """A session's events after ``afterSeq`` and before ``beforeSeq`` (None: up to whatever comes
    next) could not be fetched; live events after them were released anyway."""

    sessionId: str
    afterSeq: int
    beforeSeq: int | None
    reason: str


class SessionGone(Msg, tag="session_gone"):
    """The gateway no longer knows a joined session (deleted meanwhile): it is no longer joined."""

    sessionId: str
    reason: str


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


# The outbox's ids are SQLite integers (signed 64-bit): a larger one would raise in the connection
# process, or fail to encode for the pipe, instead of being answered.
OUTBOX_ID_MAX = (1 << 63) - 1


class CancelQueued(Msg, tag="cancel_queued"):
    reqId: int
    outboxId: int  # 1..OUTBOX_ID_MAX; the router checks it, the connection actor again (any sender)


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


# --- sync ------------------------------------------------------------------------------------------
# The local-sync actors (journal, materializer, watcher), the sync commands, and the replication
# link in the connection process (docs/sync.md). Replication wire frames are in dim_actors/wire/replication.py.


class WatchFolder(Msg, tag="watch_folder"):
    sessionId: str
    localDir: str


class UnwatchFolder(Msg, tag="unwatch_folder"):
    sessionId: str


class FsEvent(Msg, tag="fs_event"):
    """Debounced paths from watchdog, posted to the watcher's own mailbox: files to look at,
    folders that went away (``gone``) and folders to walk (``scanDirs``), all relative."""

    sessionId: str
    paths: list[str] = []
    gone: list[str] = []
    scanDirs: list[str] = []


class LocalFile(msgspec.Struct, array_like=True):
    """A local file as the watcher found it: ``hash`` "" when it is gone."""

    path: str
    hash: str
    size: int = 0
    mode: int = 0


class LocalChanges(Msg, tag="local_changes"):
    """Watcher -> journal. ``scan``: a complete listing of the folder (what is not in it is gone)."""

    sessionId: str
    changes: list[LocalFile] = []
    scan: bool = False


class WatcherIncident(Msg, tag="watcher_incident"):
    """Something went wrong under the watcher (and what it did about it): handler_error, overflow,
    watch_limit, watch_unchecked, observer_died, root_gone."""

    sessionId: str
    incident: str
    detail: str = ""


class MaterializeItem(msgspec.Struct, omit_defaults=True):
    """One upstream state to put on disk. ``expectedHash``: what the local file must still hold
    ("" absent; None: do not check), else it is left alone and reported ``local_changed``.
    ``conflictCopy``: write the content there instead (the ``name.upstream-N.ext`` beside it)."""

    path: str
    iteration: int
    contentHash: str
    size: int = 0
    permissions: int = 0
    isDeletion: bool = False
    content: bytes | None = None
    expectedHash: str | None = None
    renamedFrom: str | None = None
    renamedFromHash: str | None = None
    conflictCopy: str | None = None
    sourcePath: str | None = (
        None  # a local file that already holds contentHash (copied, not fetched)
    )


class Materialize(Msg, tag="materialize"):
    sessionId: str
    localDir: str
    items: list[MaterializeItem]


class MaterializedItem(msgspec.Struct, array_like=True):
    """outcome: written | deleted | unchanged | local_changed | rejected | failed | copied (a conflict copy)."""

    path: str
    iteration: int
    outcome: str
    hash: str = ""
    detail: str = ""


class Materialized(Msg, tag="materialized"):
    sessionId: str
    results: list[MaterializedItem]


class ForgetSession(Msg, tag="forget_session"):
    """Materializer: drop what waits for content of this session (its sync stopped)."""

    sessionId: str


class GatewayState(msgspec.Struct):
    """How the embedded dev gateway process is doing: for `dimctl status` and the Actors panel."""

    state: Literal["stopped", "running", "restarting", "failed"]
    url: str
    pid: int | None
    restarts: int
    lastExitCode: int | None
    lastError: str = ""


# The page's commands the journal answers (the router forwards them as SyncCommand).
SYNC_COMMANDS = frozenset(
    {
        "start_sync",
        "stop_sync",
        "sync_status",
        "resolve_conflict",
        "sync_pause",
        "sync_resume",
        "sync_defaults",
    }
)
# Sent by the router when the page has joined a session (not a page command: it gets no answer).
AUTO_START = "sync_auto_start"


class SyncCommand(Msg, tag="sync_command"):
    """Router -> journal: one of SYNC_COMMANDS or AUTO_START; answered with InvokeResult."""

    reqId: int
    command: str
    args: dict[str, Any] = {}


class SyncTick(Msg, tag="sync_tick"):
    """A sync actor's own timer (delivered straight to it, not through its message log)."""


class JournalRecord(Msg, tag="journal_record"):
    """A change recorded as it is, without sync logic (kept for tools and tests)."""

    sessionId: str
    origin: str  # local | upstream
    path: str
    contentHash: str | None = None
    isDeletion: bool = False
    baseIteration: int | None = None


# supervisor -> connection process


class StartReplication(Msg, tag="start_replication"):
    """Open (or keep) the replication socket of a session; resume after ``sinceSequence``."""

    sessionId: str
    replicaId: str
    sinceSequence: int
    spoolDir: str


class StopReplication(Msg, tag="stop_replication"):
    sessionId: str


class WriteBackItem(msgspec.Struct, omit_defaults=True):
    """A local change to send; the connection process reads ``localPath`` and checks its hash."""

    localSeq: int
    path: str
    contentHash: str
    baseIteration: int
    localPath: str = ""
    size: int = 0
    permissions: int = 0
    isDeletion: bool = False


class SendWriteBack(Msg, tag="send_write_back"):
    sessionId: str
    entries: list[WriteBackItem]


class FetchContent(Msg, tag="fetch_content"):
    sessionId: str
    hashes: list[str]


class AckSequence(Msg, tag="ack_sequence"):
    sessionId: str
    upToSequence: int


# connection process -> supervisor


class ReplicationUpdate(Msg, tag="replication_update"):
    """Notifications received, then (``sequence``) the heartbeat that closed the batch."""

    sessionId: str
    notifications: list[wire.Notification] = []
    sequence: int | None = None
    fullResync: str | None = None


class ReplicationState(Msg, tag="replication_state"):
    """A link's state. ``readOnly``: the link is the read-only mirror of a gateway without
    /replicate (connection/mirror.py); it takes no write-backs, so the journal sends none over it.
    Every state the mirror reports carries it; a two-way link's states never do."""

    sessionId: str
    state: str  # connecting | connected | retrying | refused | stopped
    detail: str = ""
    readOnly: bool = False


class WriteBackOutcome(Msg, tag="write_back_outcome"):
    """The gateway's WriteBackResult; ``rejected`` reason ``changed`` / ``unreadable`` come from the
    connection process itself (the file no longer had the hash to send)."""

    sessionId: str
    accepted: list[wire.Accepted] = []
    rejected: list[wire.Rejected] = []


class ContentItem(msgspec.Struct, array_like=True):
    """Fetched content, verified, in a spool file (``error`` instead when it could not be had)."""

    contentHash: str
    spoolPath: str
    size: int
    error: str = ""


class ContentReady(Msg, tag="content_ready"):
    sessionId: str
    items: list[ContentItem]


REPLICATION_DOWN = (
    StartReplication,
    StopReplication,
    SendWriteBack,
    FetchContent,
    AckSequence,
)
REPLICATION_UP = (ReplicationUpdate, ReplicationState, WriteBackOutcome, ContentReady)


def replication_recipient(msg: Msg) -> str:
    """Where the connection actor routes a replication message from its process."""
    return "materializer" if isinstance(msg, ContentReady) else "journal"


# --- supervision -----------------------------------------------------------------------------------


class Crash(Msg, tag="crash"):
    """Injected fault: the receiving actor raises (or, with hangSeconds, blocks), so supervision
    can be exercised for real."""

    reason: str = "injected fault"
    hangSeconds: float | None = None


class Ping(Msg, tag="ping"):
    """Liveness probe; answered by every actor."""


class Batch(Msg, tag="batch"):
    """Several messages for one recipient, delivered as one mailbox item and handled in order.

    The hot path's unit: the events of one pipe frame (connection -> router), and the page frames
    they make (router -> uibridge). Batching changes only how messages travel, not what they are:
    each item is logged as a message of its own (Addresses.send_batch), `dimctl status` counts
    items in the mailbox, and the recipient's `handle` sees the items one by one."""

    items: list[Any]


Body = Union[
    GatewayEvent,
    ConnectionState,
    CatchupGap,
    SessionGone,
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
    LocalChanges,
    WatcherIncident,
    Materialize,
    Materialized,
    ForgetSession,
    SyncCommand,
    SyncTick,
    JournalRecord,
    StartReplication,
    StopReplication,
    SendWriteBack,
    FetchContent,
    AckSequence,
    ReplicationUpdate,
    ReplicationState,
    WriteBackOutcome,
    ContentReady,
    Crash,
    Ping,
    Batch,
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
    return Envelope(
        id=next(_ids), ts=time.time(), sender=sender, recipient=recipient, body=body
    )


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


_UpControl = Union[
    ConnectionState,
    CommandFailed,
    Queued,
    OutboxChanged,
    BadFrame,
    ResyncStarted,
    CatchupGap,
    SessionGone,
    ReplicationUpdate,
    ReplicationState,
    WriteBackOutcome,
    ContentReady,
]
PipeDown = Union[
    Connect,
    Disconnect,
    SendFrame,
    CancelQueued,
    Shutdown,
    Resync,
    StartReplication,
    StopReplication,
    SendWriteBack,
    FetchContent,
    AckSequence,
]

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
    cmd: str  # status | restart | stop | logs | crash | show
    actor: str | None = None
    types: list[str] = []
    since: float | None = None
    limit: int | None = None
    follow: bool = False
    hangSeconds: float | None = None
    sessionId: str | None = None  # show: the session to open


class ControlReply(msgspec.Struct, omit_defaults=True):
    ok: bool
    result: Any = None
    error: str | None = None
