"""The envelope every message travels in, and the union of every body."""

from __future__ import annotations

import itertools
import time

import msgspec

from dim_actors.messages.base import Msg
from dim_actors.messages.connection import (
    BadFrame,
    CancelQueued,
    CatchupGap,
    CommandFailed,
    Connect,
    ConnectionState,
    Disconnect,
    GatewayEvent,
    JoinedSessions,
    OutboxChanged,
    Queued,
    Resync,
    ResyncStarted,
    SendFrame,
    SessionGone,
    Shutdown,
)
from dim_actors.messages.replication import (
    AckSequence,
    ContentReady,
    FetchContent,
    ReplicationState,
    ReplicationUpdate,
    SendWriteBack,
    StartReplication,
    StopReplication,
    WriteBackOutcome,
)
from dim_actors.messages.supervision import (
    Batch,
    Crash,
    Ping,
)
from dim_actors.messages.sync import (
    EchoCounts,
    ForgetSession,
    FsEvent,
    JournalRecord,
    LocalChanges,
    Materialize,
    Materialized,
    ScanProgress,
    SyncCommand,
    SyncTick,
    UnwatchFolder,
    WatcherFiguresWanted,
    WatcherIncident,
    WatchFolder,
    WritesAbandoned,
    WritesAhead,
)
from dim_actors.messages.ui import (
    Invoke,
    InvokeResult,
    UiEvent,
)

Body = (
    GatewayEvent
    | ConnectionState
    | JoinedSessions
    | CatchupGap
    | SessionGone
    | CommandFailed
    | Queued
    | OutboxChanged
    | BadFrame
    | Connect
    | Disconnect
    | SendFrame
    | CancelQueued
    | Shutdown
    | Resync
    | ResyncStarted
    | Invoke
    | InvokeResult
    | UiEvent
    | WatchFolder
    | UnwatchFolder
    | FsEvent
    | LocalChanges
    | WatcherIncident
    | Materialize
    | Materialized
    | ForgetSession
    | WritesAhead
    | WritesAbandoned
    | EchoCounts
    | ScanProgress
    | WatcherFiguresWanted
    | SyncCommand
    | SyncTick
    | JournalRecord
    | StartReplication
    | StopReplication
    | SendWriteBack
    | FetchContent
    | AckSequence
    | ReplicationUpdate
    | ReplicationState
    | WriteBackOutcome
    | ContentReady
    | Crash
    | Ping
    | Batch
)


class Envelope(msgspec.Struct, omit_defaults=True):
    """What actually travels between actors: the body plus who, to whom, when, and a
    global order."""

    id: int
    ts: float
    sender: str
    recipient: str
    body: Body


_ids = itertools.count(1)
# The next envelope id, for building many envelopes at once (a batch's): the same
# sequence as envelope()'s, one global order across threads.
next_envelope_id = _ids.__next__


def envelope(sender: str, recipient: str, body: Msg) -> Envelope:
    # itertools.count is atomic under the GIL, so ids increase monotonically across
    # threads.
    return Envelope(
        id=next(_ids),
        ts=time.time(),
        sender=sender,
        recipient=recipient,
        body=body,  # type: ignore[arg-type]  # every Msg subclass is in Body
    )


def kind_of(body: Msg) -> str:
    return str(body.__struct_config__.tag)
