"""What the journal knows of each synced session, in memory: the records it decides from
and keeps in SQLite (store.py). The column names on disk are older and terser; these
names say what they mean."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from dim_actors.messages import LocalFile
from dim_actors.sync.ignore import GitIgnore
from dim_actors.wire import replication as wire

EntryState = Literal["pending", "sent", "held"]
Direction = Literal["upstream", "local"]

COUNTS = (
    "localChanges",
    "upstreamApplied",
    "writeBacksAccepted",
    "conflicts",
)  # stats kept by the journal


@dataclass
class FileRec:
    """One path as last agreed: the upstream state seen and the local file's hash."""

    iteration: int = 0  # upstream iteration last seen
    upstream_hash: str = ""  # its hash ("" deleted or never existed)
    local_hash: str = ""  # the local file's hash as last seen ("" absent)
    mode: int = 0o644


@dataclass
class Entry:
    """A local change to write back (its id is the localSeq)."""

    seq: int
    path: str
    hash: str
    size: int
    mode: int
    deletion: bool
    state: str  # an EntryState
    recorded: float
    # the upstream iteration the local file was based on when the change was recorded
    # (None: rows journaled before it was recorded; they are sent based on the path's
    # iteration at send time)
    base: int | None = 0


@dataclass
class Failure:
    """One item that could not be synced, and why. Upstream (`note`): not acknowledged
    while it is `counted` in the outstanding sequences, tried again at `next_at` when
    `retry`, replaced by any newer state of the path. Local: until the file changes, is
    renamed or goes."""

    path: str
    reason: str
    direction: str  # a Direction
    since: float
    retries: int = 0
    note: wire.Notification | None = None
    retry: bool = True
    next_at: float = 0.0
    # its sequence is outstanding (it holds the acknowledgement back)
    counted: bool = False


@dataclass
class Conflict:
    """A path changed on both sides: the local file stays, upstream's version goes
    beside it."""

    path: str
    local_hash: str
    iteration: int  # the upstream iteration in conflict
    upstream_hash: str  # its hash ("" a deletion)
    copy: str | None  # the conflict copy's path, once written
    since: float


class Writing(NamedTuple):
    """An upstream state the materializer is writing: the path's result settles it."""

    iteration: int
    target: str  # the hash written ("" a deletion)
    sequence: int  # its notification's sequence (0: none, e.g. accept_upstream)


class Entries(dict[int, Entry]):
    """Local changes by journal id, with an index by path: a 100,000-file scan looks up
    each path's changes, and a scan of every entry per path would be quadratic."""

    def __init__(self) -> None:
        super().__init__()
        self.by_path: dict[str, dict[int, Entry]] = {}

    def __setitem__(self, seq: int, e: Entry) -> None:
        old = self.get(seq)
        if old is not None:
            self._unindex(old)
        super().__setitem__(seq, e)
        self.by_path.setdefault(e.path, {})[seq] = e

    def __delitem__(self, seq: int) -> None:
        self._unindex(self[seq])
        super().__delitem__(seq)

    def pop(self, seq: int, *default: Any) -> Any:
        e = super().pop(seq, *default)
        if isinstance(e, Entry) and e.seq == seq:
            self._unindex(e)
        return e

    def clear(self) -> None:
        super().clear()
        self.by_path.clear()

    def _unindex(self, e: Entry) -> None:
        mine = self.by_path.get(e.path)
        if mine is not None:
            mine.pop(e.seq, None)
            if not mine:
                del self.by_path[e.path]

    def of_path(self, path: str) -> list[Entry]:
        """This path's changes, oldest first."""
        return sorted(self.by_path.get(path, {}).values(), key=lambda e: e.seq)

    def has_path(self, path: str) -> bool:
        return path in self.by_path


@dataclass
class ScanWork:
    """A LocalChanges too big for one message, handled a step at a time (see
    Journal._step)."""

    changes: list[LocalFile]
    scan: bool
    done: int = 0


@dataclass
class Sync:
    """One synced session: its folder, its state, and what is known of every path."""

    sid: str
    local_dir: str
    replica_id: str
    state: str
    error: str | None = None
    last_seq: int = 0
    last_sync_at: int | None = None
    # syncing, but not as it should (folders polled for want of watches)
    warning: str | None = None
    ignore: GitIgnore | None = None
    files: dict[str, FileRec] = field(default_factory=dict)
    entries: Entries = field(default_factory=Entries)
    conflicts: dict[str, Conflict] = field(default_factory=dict)
    materializing: dict[str, Writing] = field(default_factory=dict)
    # accept_upstream writes in flight: the conflict (and its held changes) stays until
    # the write lands
    accepting: set[str] = field(default_factory=set)
    # newer notes behind a materialization
    queued: dict[str, wire.Notification] = field(default_factory=dict)
    # seq -> items not yet applied
    outstanding: dict[int, int] = field(default_factory=dict)
    max_seen: int = 0
    inflight: set[int] = field(default_factory=set)
    sent_at: float = 0.0
    link: str = "connecting"
    link_detail: str = ""
    # The link is the read-only mirror: set by its states, cleared only when a two-way
    # link connects (so it holds while a restarted link probes /replicate again, and
    # nothing is sent meanwhile).
    read_only: bool = False
    heard_at: float = field(default_factory=time.monotonic)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    dirty: bool = True
    pushed_at: float = 0.0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    # path -> what could not be synced
    failed: dict[str, Failure] = field(default_factory=dict)
    # path -> the state being materialized
    notes: dict[str, wire.Notification] = field(default_factory=dict)
    # path -> (failed since, retries, last reason) while retried
    tries: dict[str, tuple[float, int, str | None]] = field(default_factory=dict)
    space_at: float = 0.0  # when the free space was last looked at
    free: int | None = None  # free bytes then
    floor: int | None = None  # and the floor below which sync pauses
    # local changes still to handle, in order
    backlog: deque[ScanWork] = field(default_factory=deque)

    @property
    def root(self) -> Path:
        return Path(self.local_dir)

    def file(self, path: str) -> FileRec:
        """The path's record, made (blank) if it has none."""
        f = self.files.get(path)
        if f is None:
            f = self.files[path] = FileRec()
        return f
