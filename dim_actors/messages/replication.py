"""Between the sync actors and the replication links in the connection process."""

from __future__ import annotations

from typing import Literal

import msgspec

from dim_actors.messages.base import Msg
from dim_actors.wire import replication as wire

# supervisor -> connection process


class StartReplication(Msg, tag="start_replication"):
    """Open (or keep) the replication socket of a session; resume after
    ``sinceSequence``."""

    sessionId: str
    replicaId: str
    sinceSequence: int
    spoolDir: str


class StopReplication(Msg, tag="stop_replication"):
    sessionId: str


class WriteBackItem(msgspec.Struct, omit_defaults=True):
    """A local change to send; the connection process reads ``localPath`` and checks its
    hash."""

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


ReplicaLinkState = Literal["connecting", "connected", "retrying", "refused", "stopped"]


class ReplicationState(Msg, tag="replication_state"):
    """A link's state. ``readOnly``: the link is the read-only mirror of a gateway
    without /replicate (connection/mirror.py); it takes no write-backs, so the journal
    sends none over it. Every state the mirror reports carries it; a two-way link's
    states never do."""

    sessionId: str
    state: ReplicaLinkState
    detail: str = ""
    readOnly: bool = False


class WriteBackOutcome(Msg, tag="write_back_outcome"):
    """The gateway's WriteBackResult; ``rejected`` reason ``changed`` / ``unreadable``
    come from the connection process itself (the file no longer had the hash to send).
    """

    sessionId: str
    accepted: list[wire.Accepted] = []
    rejected: list[wire.Rejected] = []


class ContentItem(msgspec.Struct, array_like=True):
    """Fetched content, verified, in a spool file (``error`` instead when it could not
    be had)."""

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
