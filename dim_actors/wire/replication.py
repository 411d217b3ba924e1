"""The replication wire protocol: msgpack in binary WebSocket frames, modelled on
Chronicle's WireMessage.

One frame holds one message, a msgspec Struct tagged on ``type`` with Chronicle's
variant names and camelCase fields. Both ends import this module: the dev gateway's
replication endpoint (``devgateway/replication.py``) and the replication client in the
connection process (``connection/replication.py``). ``docs/sync.md`` is the catalogue.

Sequences are the gateway's replication sequence for the session (strictly increasing,
one per stored iteration); iterations are per path, as ``file_history`` shows them.
"""

from __future__ import annotations

import re
from typing import TypeGuard

import msgspec

# content rides in the Notification below this size (Chronicle: "< 4 KB")
INLINE_LIMIT = 4096
CHUNK_SIZE = 1 << 20  # ContentFetchResponse / ContentUpload pieces
# larger write-back content goes ahead as ContentUpload chunks
WRITEBACK_INLINE_LIMIT = 4 << 20

_HASH = re.compile(r"[0-9a-f]{64}")


def valid_hash(h: object) -> TypeGuard[str]:
    """A sha256 hex digest: the only hashes either side accepts (they also name spool
    files)."""
    return isinstance(h, str) and _HASH.fullmatch(h) is not None


class WireMsg(msgspec.Struct, tag_field="type", omit_defaults=True):
    pass


# --- gateway -> replica ---------------------------------------------------------------


class Notification(WireMsg, tag="Notification"):
    """One path's new state. ``inlineContent`` for files under INLINE_LIMIT bytes;
    otherwise fetch it by hash. ``iteration``, ``renamedFrom`` and
    ``renamedFromIteration`` are ours (Chronicle's Notification has neither; the replica
    needs the iteration as the base of its own writes)."""

    sequence: int
    filepath: str
    contentHash: str
    size: int
    permissions: int
    isDeletion: bool = False
    inlineContent: bytes | None = None
    iteration: int = 0
    renamedFrom: str | None = None
    renamedFromIteration: int | None = None


class Heartbeat(WireMsg, tag="Heartbeat"):
    """Everything up to ``sequence`` has been sent to this replica (after each batch,
    and every few seconds while idle)."""

    sequence: int


class Accepted(msgspec.Struct, array_like=True):
    localSeq: int
    iteration: int


class Rejected(msgspec.Struct, array_like=True):
    localSeq: int
    reason: str  # conflict | invalid_path | hash_mismatch | content_missing | not_found
    message: str = ""
    currentIteration: int = 0


class WriteBackResult(WireMsg, tag="WriteBackResult"):
    accepted: list[Accepted] = []
    rejected: list[Rejected] = []


class ContentFetchResponse(WireMsg, tag="ContentFetchResponse"):
    """One piece of a file's content; ``last`` on the final piece (offset + len(data) ==
    totalSize)."""

    contentHash: str
    offset: int
    totalSize: int
    data: bytes
    last: bool = True


class ContentNotFound(WireMsg, tag="ContentNotFound"):
    contentHash: str


class FullResyncRequired(WireMsg, tag="FullResyncRequired"):
    reason: str
    currentSequence: int


class ReplicationError(WireMsg, tag="ReplicationError"):
    """A frame the gateway could not read (ours); the connection stays open."""

    code: str
    message: str


# --- replica -> gateway ---------------------------------------------------------------


class CatchupRequest(WireMsg, tag="CatchupRequest"):
    """Send me every path whose latest change is after ``sinceSequence`` (0:
    everything), then live."""

    sinceSequence: int


class Ack(WireMsg, tag="Ack"):
    upToSequence: int


class WriteBackEntry(msgspec.Struct, omit_defaults=True):
    localSeq: int
    filepath: str
    contentHash: str  # "" for a deletion
    size: int
    permissions: int
    baseIteration: (
        int  # the path's upstream iteration this write was based on (0: none)
    )
    isDeletion: bool = False
    # None when it went ahead as ContentUpload (or a deletion)
    content: bytes | None = None


class WriteBack(WireMsg, tag="WriteBack"):
    entries: list[WriteBackEntry]


class ContentFetchRequest(WireMsg, tag="ContentFetchRequest"):
    contentHash: str
    offset: int = 0


class ContentUpload(WireMsg, tag="ContentUpload"):
    """A piece of a large write-back's content, ahead of the WriteBack that names its
    hash (ours)."""

    contentHash: str
    offset: int
    totalSize: int
    data: bytes


ToReplica = (
    Notification
    | Heartbeat
    | WriteBackResult
    | ContentFetchResponse
    | ContentNotFound
    | FullResyncRequired
    | ReplicationError
)
ToGateway = CatchupRequest | Ack | WriteBack | ContentFetchRequest | ContentUpload

_encoder = msgspec.msgpack.Encoder()
_to_replica = msgspec.msgpack.Decoder(ToReplica)
_to_gateway = msgspec.msgpack.Decoder(ToGateway)


def encode(msg: WireMsg) -> bytes:
    return _encoder.encode(msg)


def decode_to_replica(data: bytes) -> WireMsg:
    return _to_replica.decode(data)


def decode_to_gateway(data: bytes) -> WireMsg:
    return _to_gateway.decode(data)
