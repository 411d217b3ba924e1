"""The journal actor: the durable record of every local and upstream change, and the sync engine.

It owns the sync commands (start_sync, stop_sync, sync_status, resolve_conflict) and, per synced
session, what is known of every path: the upstream iteration and hash last seen, and the hash of
the local file. From that it decides what each event means (docs/sync.md):

* an upstream Notification: already there (nothing), clean locally (the materializer writes it,
  checking the local file still is what we think), or the path has an unsent or in-flight local
  change, or is in conflict (a conflict: the upstream version goes beside the file);
* a local change from the watcher: equal to what we know (an echo, a touch: nothing), equal to
  upstream's current content (nothing to send), otherwise a pending write-back based on the
  upstream iteration the file on disk came from, recorded with it (and sent as is, even after a
  restart or a resync). Write-backs go one batch at a time per session; deletions wait a moment and
  are never sent if the sync folder is gone or emptied (the sync pauses instead);
* a write-back result: accepted (the path's iteration moves on), or rejected as a conflict;
* an item that cannot be synced (a name the disk or the workspace cannot hold, a full disk, a file
  over the size limit): listed in sync_status.failed with its reason; an upstream one is never
  acknowledged and is tried again (docs/sync.md §10). Below a floor of free space, sync pauses.

A link that reports ``readOnly`` (the mirror of a gateway without /replicate, connection/mirror.py)
gets no write-backs at all: local changes stay pending here (nothing lost, nothing overwritten),
upstream changes to locally edited files still go beside them as conflicts, and the status says
so (``mode: "mirror"``, ``modeNote``, ``localEdits``).

Everything is in SQLite (WAL) and written through in one transaction per message, so a crash
loses nothing: pending write-backs are sent after a restart (the gateway answers a resend with its
first answer), and replication resumes after the last sequence applied.
"""

from __future__ import annotations

import heapq
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from dim_actors.config.settings import Settings
from dim_actors.kernel.actor import DimActor
from dim_actors.messages import (
    AUTO_START,
    AckSequence,
    ForgetSession,
    InvokeResult,
    JournalRecord,
    LocalChanges,
    LocalFile,
    Materialize,
    Materialized,
    MaterializeItem,
    Msg,
    ReplicationState,
    ReplicationUpdate,
    SendWriteBack,
    StartReplication,
    StopReplication,
    SyncCommand,
    SyncTick,
    UiEvent,
    UnwatchFolder,
    WatcherIncident,
    WatchFolder,
    WriteBackItem,
    WriteBackOutcome,
    envelope,
)
from dim_actors.sync.defaults import default_folder
from dim_actors.sync.echoes import EchoSet
from dim_actors.sync.folders import make_user_folders
from dim_actors.sync.hashing import file_hash
from dim_actors.sync.ignore import GitIgnore, conflict_copy_name, is_noise
from dim_actors.sync.paths import (
    UnsafePath,
    check_relative,
    confined,
    display_path,
    folder_error_reason,
    local_failure_reason,
    local_name_problem,
    name_too_long,
    os_error_reason,
)
from dim_actors.wire import replication as wire

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    origin TEXT NOT NULL CHECK (origin IN ('local', 'upstream')),
    path TEXT NOT NULL,
    content_hash TEXT,
    is_deletion INTEGER NOT NULL DEFAULT 0,
    base_iteration INTEGER,
    recorded_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_by_path ON changes (session_id, path);
CREATE TABLE IF NOT EXISTS syncs (
    session_id TEXT PRIMARY KEY,
    local_dir TEXT NOT NULL,
    replica_id TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    last_seq INTEGER NOT NULL DEFAULT 0,
    last_sync_at INTEGER,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    session_id TEXT NOT NULL,
    path TEXT NOT NULL,
    upstream_iteration INTEGER NOT NULL,
    upstream_hash TEXT NOT NULL,
    local_hash TEXT NOT NULL,
    permissions INTEGER NOT NULL DEFAULT 420,
    PRIMARY KEY (session_id, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS conflicts (
    session_id TEXT NOT NULL,
    path TEXT NOT NULL,
    local_hash TEXT NOT NULL,
    upstream_iteration INTEGER NOT NULL,
    upstream_hash TEXT NOT NULL,
    upstream_copy TEXT,
    since REAL NOT NULL,
    PRIMARY KEY (session_id, path)
) WITHOUT ROWID;
"""
# Columns added to `changes` since its first version (state of local entries, what was applied).
CHANGE_COLUMNS = {
    "state": "TEXT NOT NULL DEFAULT 'done'",
    "iteration": "INTEGER",
    "size": "INTEGER",
    "permissions": "INTEGER",
    "reason": "TEXT",
    "sequence": "INTEGER",
}

TICK_S = 0.5
DELETE_HOLD_S = (
    0.3  # local deletions wait this long, then the folder is checked before sending
)
INFLIGHT_TIMEOUT_S = 15.0
LINK_SILENT_S = (
    10.0  # no word from a replication link this long: ask the connection again
)
MAX_BATCH = 512
TEXT_LIMIT = 256 << 10
USER_PAUSE = "paused by the user"
RESOLUTIONS = ("keep_local", "accept_upstream", "merged")
COUNTS = (
    "localChanges",
    "upstreamApplied",
    "writeBacksAccepted",
    "conflicts",
)  # stats kept by the journal
MIRROR_NOTE = (
    "This gateway has no replication endpoint: the agent's files are mirrored here, but your local edits "
    "stay on this computer and are not sent to the agent."
)
LOCAL_EDITS_SHOWN = 100
FAILED_SHOWN = (
    100  # sync_status.failed lists at most this many (failedCount has them all)
)
RETRY_FIRST_S = 2.0  # a failed upstream change is tried again after this, doubling up to RETRY_MAX_S
RETRY_MAX_S = 60.0
SPACE_CHECK_S = 2.0  # the sync folder's free space is looked at this often
SPACE_FREED = (
    1 << 20
)  # this much more free space than at the last look: failed writes are tried at once
# A LocalChanges bigger than this (a first scan of a big folder) is handled in steps of at most this
# many files or STEP_S, one transaction each, the journal sending itself a JournalStep between them:
# other messages (sync_status) are answered in between, and no message comes near the hang timeout.
STEP_FILES = 2000
STEP_S = 0.5
# How long a new journal waits for the database's write lock (held by an instance just replaced,
# until its next step boundary) before it gives up with a clear error. Below the 10 s and more the
# supervisor gives an on_start (shutdown_timeout_s + 10), so the error is this one, not a timeout.
LOCK_WAIT_S = 10.0
LOW_SPACE = "not enough free space"  # the start of `error` while sync is paused for want of space


def free_space_floor(total: int, setting_mb: int | None) -> int:
    """Below this many free bytes on the sync folder's disk, sync pauses: the sync_min_free_mb
    setting (0: never), else 64 MiB or 1% of the disk, whichever is smaller (a small disk is not
    paused for good)."""
    if setting_mb is not None:
        return max(0, setting_mb) << 20
    return min(64 << 20, total // 100)


def failure_log_level(reason: str, last: str | None) -> int:
    """A failure is worth a warning when it is new or its reason changed; its retries failing the
    same way (each item, again and again, while a folder stays read-only) are not."""
    return logging.WARNING if reason != last else logging.DEBUG


def retry_delay(retries: int) -> float:
    """How long a failed upstream change waits before its next try."""
    return min(RETRY_MAX_S, RETRY_FIRST_S * (2 ** min(retries, 16)))


class JournalStep(Msg, tag="journal_step"):
    """The journal's own continuation: the next step of a backlog of local changes (never logged:
    it goes straight to the instance that sent it, so a replaced instance's steps die with it)."""


class Superseded(RuntimeError):
    """This instance was replaced (declared hung): it must not write the successor's database."""


class CommandError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class FileRec:
    u: int = 0  # upstream iteration last seen
    uh: str = ""  # its hash ("" deleted or never existed)
    lh: str = ""  # the local file's hash as last seen ("" absent)
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
    state: str  # pending | sent | held
    recorded: float
    # the upstream iteration the local file was based on when the change was recorded (None: rows
    # journaled before it was recorded; they are sent based on the path's iteration at send time)
    base: int | None = 0


@dataclass
class Failure:
    """One item that could not be synced, and why. Upstream (`note`): not acknowledged while it is
    `counted` in the outstanding sequences, tried again at `next_at` when `retry`, replaced by any
    newer state of the path. Local: until the file changes, is renamed or goes."""

    path: str
    reason: str
    direction: str  # upstream | local
    since: float
    retries: int = 0
    note: wire.Notification | None = None
    retry: bool = True
    next_at: float = 0.0
    counted: bool = (
        False  # its sequence is outstanding (it holds the acknowledgement back)
    )


@dataclass
class Conflict:
    path: str
    lh: str
    u: int
    uh: str
    copy: str | None
    since: float


class Entries(dict):
    """Local changes by journal id, with an index by path: a 100,000-file scan looks up each path's
    changes, and a scan of every entry per path would be quadratic."""

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

    def pop(self, seq: int, *default: Any) -> Any:  # type: ignore[override]
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
    """A LocalChanges too big for one message, handled STEP_FILES at a time (see Journal._step)."""

    changes: list[LocalFile]
    scan: bool
    done: int = 0


@dataclass
class Sync:
    sid: str
    local_dir: str
    replica_id: str
    state: str
    error: str | None = None
    last_seq: int = 0
    last_sync_at: int | None = None
    warning: str | None = (
        None  # syncing, but not as it should (folders polled for want of watches)
    )
    ignore: GitIgnore | None = None
    files: dict[str, FileRec] = field(default_factory=dict)
    entries: Entries = field(default_factory=Entries)
    conflicts: dict[str, Conflict] = field(default_factory=dict)
    materializing: dict[str, tuple[int, str, int]] = field(
        default_factory=dict
    )  # path -> (iteration, hash, seq)
    # accept_upstream writes in flight: the conflict (and its held changes) stays until the write lands
    accepting: set[str] = field(default_factory=set)
    queued: dict[str, wire.Notification] = field(
        default_factory=dict
    )  # newer notes behind a materialization
    outstanding: dict[int, int] = field(
        default_factory=dict
    )  # seq -> items not yet applied
    max_seen: int = 0
    inflight: set[int] = field(default_factory=set)
    sent_at: float = 0.0
    link: str = "connecting"
    link_detail: str = ""
    # The link is the read-only mirror: set by its states, cleared only when a two-way link connects
    # (so it holds while a restarted link probes /replicate again, and nothing is sent meanwhile).
    read_only: bool = False
    heard_at: float = field(default_factory=time.monotonic)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    dirty: bool = True
    pushed_at: float = 0.0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    failed: dict[str, Failure] = field(
        default_factory=dict
    )  # path -> what could not be synced
    notes: dict[str, wire.Notification] = field(
        default_factory=dict
    )  # path -> the state being materialized
    # path -> (failed since, retries, last reason) while retried
    tries: dict[str, tuple[float, int, str | None]] = field(default_factory=dict)
    space_at: float = 0.0  # when the free space was last looked at
    free: int | None = None  # free bytes then
    floor: int | None = None  # and the floor below which sync pauses
    backlog: deque[ScanWork] = field(
        default_factory=deque
    )  # local changes still to handle, in order

    @property
    def root(self) -> Path:
        return Path(self.local_dir)


class Journal(DimActor):
    def on_start(self) -> None:
        super().on_start()
        self.db_path = self.ctx.home.data_dir / "journal.sqlite"
        # Opened in the actor's own thread: sqlite3 connections belong to the thread that made them.
        # The busy timeout is how long a write waits for the lock: an instance declared hung and replaced
        # lets go of it at its next step boundary (well under a second), so waiting LOCK_WAIT_S and
        # then failing with a clear error beats failing at once and being restarted in a loop.
        self.db = sqlite3.connect(self.db_path, timeout=LOCK_WAIT_S)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(
                "PRAGMA synchronous=NORMAL"
            )  # WAL + NORMAL: a commit survives a crash of the app
            self.db.executescript(SCHEMA)
            have = {row[1] for row in self.db.execute("PRAGMA table_info(changes)")}
            for col, decl in CHANGE_COLUMNS.items():
                if col not in have:
                    self.db.execute(f"ALTER TABLE changes ADD COLUMN {col} {decl}")
            self.db.execute(
                "CREATE INDEX IF NOT EXISTS changes_open ON changes (session_id, state)"
            )
            self.db.commit()
        except sqlite3.OperationalError as e:
            self.db.close()
            if "locked" in str(e):
                raise RuntimeError(
                    f"the sync journal {self.db_path} stayed locked for {LOCK_WAIT_S:g} s by another "
                    "writer (an earlier instance of the journal that has not let go of it); sync "
                    "waits until it does"
                ) from e
            raise
        # a step stays well inside the hang timeout, however low it is set
        self.step_s = min(STEP_S, (self.ctx.settings or Settings()).hang_timeout_s / 4)
        self.step_queued = False
        self.closed = False  # let go after being replaced (see handle)
        # sid -> files the watcher has listed so far in a full scan under way (shared, see scan_view)
        self.scan_progress: dict[str, int] = self.ctx.extra.setdefault(
            "scan_progress", {}
        )
        self.recorded = self.db.execute("SELECT COUNT(*) FROM changes").fetchone()[0]
        self.spool_root = self.ctx.home.data_dir / "sync-spool"
        self.echoes: EchoSet = self.ctx.extra.setdefault(
            "echoes", EchoSet()
        )  # its per-session counts
        settings = self.ctx.settings
        self.sync_root: str | None = settings.sync_root if settings else None
        self.auto_start: bool = bool(settings and settings.sync_auto_start)
        self.extra_ignore: list[str] = (
            list(settings.sync_extra_ignore) if settings else []
        )
        self.max_file: int = (settings or Settings()).sync_max_file_mb << 20
        self.floor_mb: int | None = settings.sync_min_free_mb if settings else None
        # sessions whose sync_auto_start was refused (a non-empty folder...): shown by sync_status
        self.refused: dict[str, dict[str, Any]] = {}
        self.syncs: dict[str, Sync] = {}
        self._load()
        self.stop_ticks = threading.Event()
        threading.Thread(
            target=self._ticker, name="journal-ticker", daemon=True
        ).start()
        for s in self.syncs.values():
            if s.state in ("active", "error"):
                self._begin(s, reset_link=True)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "changes": self.recorded,
            "syncs": {sid: s.state for sid, s in list(self.syncs.items())},
        }

    def _ticker(self) -> None:
        ref = self.actor_ref
        while not self.stop_ticks.wait(TICK_S):
            try:
                ref.tell(envelope(self.ctx.name, self.ctx.name, SyncTick()))
            except Exception:
                return

    def on_stop(self) -> None:
        self.stop_ticks.set()
        self.db.close()

    def on_failure(self, exception_type, exception_value, traceback) -> None:
        self.stop_ticks.set()
        # pykka runs no on_stop after a failure: the connection (rolled back by the failed message's
        # transaction) is closed here, so nothing of this instance stays in the successor's way.
        try:
            self.db.close()
        except Exception:
            pass
        super().on_failure(exception_type, exception_value, traceback)

    def _check_current(self) -> None:
        """At a step boundary: an instance the supervisor has replaced stops here, its transaction
        rolled back, instead of writing on beside its successor."""
        if self.superseded():
            raise Superseded(
                "replaced by a new instance of the journal; stopping at a step boundary"
            )

    # --- loading --------------------------------------------------------------------------------------

    def _load(self) -> None:
        for (
            sid,
            local_dir,
            replica_id,
            state,
            error,
            last_seq,
            last_sync_at,
        ) in self.db.execute(
            "SELECT session_id, local_dir, replica_id, state, error, last_seq, last_sync_at FROM syncs"
        ):
            s = Sync(
                sid,
                local_dir,
                replica_id,
                state,
                error,
                last_seq,
                last_sync_at,
                max_seen=last_seq,
            )
            self.syncs[sid] = s
        for sid, path, u, uh, lh, mode in self.db.execute(
            "SELECT session_id, path, upstream_iteration, upstream_hash, local_hash, permissions FROM files"
        ):
            if sid in self.syncs:
                self.syncs[sid].files[path] = FileRec(u, uh, lh, mode)
        for sid, path, lh, u, uh, copy, since in self.db.execute(
            "SELECT session_id, path, local_hash, upstream_iteration, upstream_hash, upstream_copy, since"
            " FROM conflicts"
        ):
            if sid in self.syncs:
                self.syncs[sid].conflicts[path] = Conflict(path, lh, u, uh, copy, since)
        for (
            seq,
            sid,
            path,
            h,
            deletion,
            state,
            size,
            mode,
            recorded,
            base,
        ) in self.db.execute(
            "SELECT id, session_id, path, content_hash, is_deletion, state, size, permissions, recorded_at,"
            " base_iteration FROM changes WHERE origin = 'local' AND state IN ('pending', 'sent', 'held')"
            " ORDER BY id"
        ):
            s = self.syncs.get(sid)
            if s is not None:
                # sent before a crash and never answered: send again (the gateway dedupes by localSeq)
                s.entries[seq] = Entry(
                    seq,
                    path,
                    h or "",
                    size or 0,
                    mode or 0o644,
                    bool(deletion),
                    "pending" if state == "sent" else state,
                    recorded,
                    base,
                )

    # --- persistence helpers ----------------------------------------------------------------------------

    def _save_sync(self, s: Sync) -> None:
        self.db.execute(
            "INSERT INTO syncs (session_id, local_dir, replica_id, state, error, last_seq, last_sync_at, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (session_id) DO UPDATE SET local_dir = excluded.local_dir,"
            " replica_id = excluded.replica_id, state = excluded.state, error = excluded.error,"
            " last_seq = excluded.last_seq, last_sync_at = excluded.last_sync_at",
            (
                s.sid,
                s.local_dir,
                s.replica_id,
                s.state,
                s.error,
                s.last_seq,
                s.last_sync_at,
                time.time(),
            ),
        )
        s.dirty = True

    def _save_file(self, s: Sync, path: str) -> None:
        f = s.files[path]
        self.db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)",
            (s.sid, path, f.u, f.uh, f.lh, f.mode),
        )

    def _record(
        self,
        s: Sync,
        origin: str,
        path: str,
        h: str,
        deletion: bool,
        state: str,
        *,
        base: int | None = None,
        iteration: int | None = None,
        size: int = 0,
        mode: int = 0,
        reason: str | None = None,
        sequence: int | None = None,
    ) -> int:
        cur = self.db.execute(
            "INSERT INTO changes (session_id, origin, path, content_hash, is_deletion, base_iteration, recorded_at,"
            " state, iteration, size, permissions, reason, sequence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                s.sid,
                origin,
                path,
                h,
                int(deletion),
                base,
                time.time(),
                state,
                iteration,
                size,
                mode,
                reason,
                sequence,
            ),
        )
        self.recorded += 1
        return cur.lastrowid

    def _entry_state(
        self,
        e: Entry,
        state: str,
        *,
        iteration: int | None = None,
        reason: str | None = None,
        base: int | None = None,
    ) -> None:
        self.db.execute(
            "UPDATE changes SET state = ?, iteration = COALESCE(?, iteration), reason = COALESCE(?, reason),"
            " base_iteration = COALESCE(?, base_iteration) WHERE id = ?",
            (state, iteration, reason, base, e.seq),
        )

    def _file(self, s: Sync, path: str) -> FileRec:
        f = s.files.get(path)
        if f is None:
            f = s.files[path] = FileRec()
        return f

    # --- messages -----------------------------------------------------------------------------------------

    def handle(self, sender: str, body: Msg) -> None:
        if self.closed:
            return
        # Its own timers and steps reach an instance straight, not through its address: once it is
        # replaced they are the only way it could still write, so it stops at the first of them.
        if isinstance(body, (SyncTick, JournalStep)) and self.superseded():
            self._let_go()
            return
        try:
            self._handle(body)
        except Superseded:
            self._let_go()  # the step's transaction was rolled back on the way out

    def _let_go(self) -> None:
        log.warning(
            "journal: this instance was replaced; it stops here and closes its database"
        )
        self.closed = True
        self.stop_ticks.set()
        self.db.close()

    def _handle(self, body: Msg) -> None:
        space = (
            self._look_at_space(time.monotonic()) if isinstance(body, SyncTick) else {}
        )
        with (
            self.db
        ):  # one transaction per message: all of it or, after a crash, none of it
            if isinstance(body, SyncTick):
                self.on_tick(space)
            elif isinstance(body, JournalStep):
                self.step_queued = False
                self._step()
            elif isinstance(body, SyncCommand):
                self.on_command(body)
            elif isinstance(body, ReplicationUpdate):
                self.on_update(body)
            elif isinstance(body, Materialized):
                self.on_materialized(body)
            elif isinstance(body, LocalChanges):
                self.on_local(body)
            elif isinstance(body, WriteBackOutcome):
                self.on_outcome(body)
            elif isinstance(body, ReplicationState):
                self.on_link(body)
            elif isinstance(body, WatcherIncident):
                self.on_incident(body)
            elif isinstance(body, JournalRecord):
                self.db.execute(
                    "INSERT INTO changes (session_id, origin, path, content_hash, is_deletion, base_iteration,"
                    " recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        body.sessionId,
                        body.origin,
                        body.path,
                        body.contentHash,
                        int(body.isDeletion),
                        body.baseIteration,
                        time.time(),
                    ),
                )
                self.recorded += 1
            else:
                raise TypeError(f"journal: unexpected message {type(body).__name__}")
        self._push_statuses(throttle=not isinstance(body, SyncTick))

    # --- commands -----------------------------------------------------------------------------------------

    def on_command(self, cmd: SyncCommand) -> None:
        args = cmd.args if isinstance(cmd.args, dict) else {}
        name = (
            args.get("sessionName")
            if isinstance(args.get("sessionName"), str)
            else None
        )  # from the router
        if cmd.command == AUTO_START:
            if isinstance(args.get("sessionId"), str) and args["sessionId"]:
                self.auto_start_sync(args["sessionId"], name)
            return
        try:
            if cmd.command in (
                "sync_pause",
                "sync_resume",
            ):  # every sync at once (the tray's menu)
                result = self.pause_all(cmd.command == "sync_pause")
                self.ctx.send(
                    "uibridge", InvokeResult(reqId=cmd.reqId, ok=True, result=result)
                )
                return
            sid = args.get("sessionId")
            if not isinstance(sid, str) or not sid:
                raise CommandError(
                    "INVALID_ARGUMENTS",
                    f"{cmd.command}: sessionId must be a non-empty string",
                )
            if cmd.command == "start_sync":
                local_dir = args.get("localDir")
                if local_dir is None:
                    local_dir = self._default_dir(sid, name)
                result = self.start_sync(sid, local_dir, args.get("confirm") is True)
            elif cmd.command == "stop_sync":
                result = self.stop_sync(sid)
            elif cmd.command == "sync_status":
                result = (
                    self.refused[sid]
                    if sid not in self.syncs and sid in self.refused
                    else self.status(self._sync(sid))
                )
            elif cmd.command == "sync_defaults":
                s = self.syncs.get(sid)
                result = {
                    "localDir": s.local_dir if s else self._folder_for(sid, name),
                    "syncRoot": self.sync_root,
                    "autoStart": self.auto_start,
                }
            elif cmd.command == "resolve_conflict":
                result = self.resolve(sid, args.get("path"), args.get("resolution"))
            else:
                raise CommandError(
                    "UNKNOWN_COMMAND", f"unknown sync command {cmd.command!r}"
                )
        except CommandError as e:
            self.ctx.send(
                "uibridge",
                InvokeResult(
                    reqId=cmd.reqId,
                    ok=False,
                    error={"code": e.code, "message": e.message},
                ),
            )
            return
        self.ctx.send("uibridge", InvokeResult(reqId=cmd.reqId, ok=True, result=result))

    def _sync(self, sid: str) -> Sync:
        s = self.syncs.get(sid)
        if s is None:
            raise CommandError(
                "NOT_FOUND",
                f"session {sid} is not synced to a folder (start_sync first)",
            )
        return s

    # --- default folders (the sync_root and sync_auto_start settings) --------------------------------------

    def _folder_for(self, sid: str, name: str | None) -> str | None:
        """<sync_root>/<session name or id>, unless another session's sync has that folder already."""
        if not self.sync_root:
            return None
        taken = {o.local_dir for o in self.syncs.values() if o.sid != sid}
        return str(default_folder(self.sync_root, sid, name, taken))

    def _default_dir(self, sid: str, name: str | None) -> str:
        """start_sync without localDir: the session's earlier folder, else the one under sync_root."""
        s = self.syncs.get(sid)
        if s is not None:
            return s.local_dir
        folder = self._folder_for(sid, name)
        if folder is None:
            raise CommandError(
                "INVALID_ARGUMENTS",
                "start_sync: localDir is needed: no sync_root is set in the "
                "settings to make a default folder under",
            )
        return folder

    def auto_start_sync(self, sid: str, name: str | None) -> None:
        """The page joined a session: with sync_auto_start (and a sync_root), a session never synced
        starts syncing into its default folder. One the user stopped or paused stays so; a refusal
        (a foreign non-empty folder above all) is never confirmed here: sync_status shows it."""
        if not (self.auto_start and self.sync_root) or sid in self.syncs:
            return
        local_dir = self._folder_for(sid, name)
        try:
            self.start_sync(sid, local_dir, confirm=False)
        except CommandError as e:
            log.warning(
                "sync %s: sync_auto_start into %s refused: %s",
                sid,
                local_dir,
                e.message,
            )
            self.refused[sid] = self._refused_status(sid, local_dir, e)
            self.ctx.send(
                "uibridge",
                UiEvent(
                    event="sync-status",
                    payload=msgspec.Raw(msgspec.json.encode(self.refused[sid])),
                ),
            )

    def _refused_status(
        self, sid: str, local_dir: str | None, e: CommandError
    ) -> dict[str, Any]:
        """The status of a sync that never started: nothing runs; `error` says why, `errorCode` is
        start_sync's error code (FOLDER_NOT_EMPTY: start_sync again with confirm to go ahead)."""
        return {
            "sessionId": sid,
            "state": "stopped",
            "localDir": local_dir,
            "error": f"sync_auto_start: {e.message}",
            "errorCode": e.code,
            "warning": None,
            "filesTracked": 0,
            "lastSyncAt": None,
            "pendingWrites": 0,
            "heldWrites": 0,
            "conflicts": [],
            "mode": "two-way",
            "modeNote": None,
            "localEdits": [],
            "link": "stopped",
            "linkDetail": "",
            "lastSequence": 0,
            "incidents": [],
            "rejected": [],
            "failed": [],
            "failedCount": 0,
            "maxFileSize": self.max_file,
            "freeSpace": None,
            "minFreeSpace": None,
            "scan": None,
            "stats": {**dict.fromkeys(COUNTS, 0), **self.echoes.counts(sid)},
        }

    def start_sync(self, sid: str, local_dir: Any, confirm: bool) -> dict[str, Any]:
        if not isinstance(local_dir, str) or not local_dir.strip():
            raise CommandError(
                "INVALID_ARGUMENTS", "start_sync: localDir must be a folder path"
            )
        path = Path(os.path.expanduser(local_dir.strip()))
        if not path.is_absolute():
            raise CommandError(
                "INVALID_ARGUMENTS",
                f"start_sync: localDir must be an absolute path, not {local_dir!r}",
            )
        path = Path(os.path.realpath(path))
        try:
            not_a_folder = path.exists() and not path.is_dir()
        except OSError as e:  # a folder above it we may not look into
            raise _unusable(path, e) from e
        if not_a_folder:
            raise CommandError(
                "INVALID_ARGUMENTS", f"start_sync: {path} is not a folder"
            )
        home = Path(os.path.realpath(self.ctx.home.root))
        if path == home or path.is_relative_to(home) or home.is_relative_to(path):
            raise CommandError(
                "FOLDER_IN_USE",
                f"start_sync: {path} overlaps dim-desktop's own data ({home})",
            )
        for other in self.syncs.values():
            if other.sid != sid and other.state != "stopped":
                o = Path(other.local_dir)
                if path == o or path.is_relative_to(o) or o.is_relative_to(path):
                    raise CommandError(
                        "FOLDER_IN_USE",
                        f"start_sync: {path} overlaps the sync folder of session "
                        f"{other.sid} ({o})",
                    )
        s = self.syncs.get(sid)
        same_folder = s is not None and s.local_dir == str(path)
        if s is not None and s.state == "active" and same_folder:
            self._begin(s, reset_link=False)
            return self.status(s)
        if s is not None and s.state in ("active", "error") and not same_folder:
            raise CommandError(
                "ALREADY_SYNCING",
                f"session {sid} already syncs to {s.local_dir}; stop_sync first",
            )
        try:
            if (
                path.is_dir()
                and any(True for _ in os.scandir(path))
                and not same_folder
                and not confirm
            ):
                raise CommandError(
                    "FOLDER_NOT_EMPTY",
                    f"{path} is not empty and is not an earlier sync of this session. Its files would "
                    "be merged with the workspace (conflicts kept side by side); call start_sync again "
                    "with confirm: true to go ahead",
                )
            make_user_folders(path)
        except (
            OSError
        ) as e:  # a path under a file, a read-only disk, a folder we may not read
            raise _unusable(path, e) from e
        if s is None or not same_folder:
            # a new folder: nothing of what we knew about a local copy holds
            self._forget_files(sid)
            s = self.syncs[sid] = Sync(
                sid, str(path), s.replica_id if s else uuid.uuid4().hex, "active"
            )
        elif (
            s.state == "paused"
            and s.error != USER_PAUSE
            and not (s.error or "").startswith(LOW_SPACE)
        ):
            self._restore(s)
        s.state, s.error, s.warning = "active", None, None
        s.incidents.clear()
        self.refused.pop(sid, None)
        self._save_sync(s)
        self._begin(s, reset_link=True)
        return self.status(s)

    def _forget_files(self, sid: str) -> None:
        for table in ("files", "conflicts"):
            self.db.execute(f"DELETE FROM {table} WHERE session_id = ?", (sid,))
        self.db.execute(
            "UPDATE changes SET state = 'discarded' WHERE session_id = ? AND state IN ('pending', 'sent', 'held')",
            (sid,),
        )

    def _restore(self, s: Sync) -> None:
        """Resume after the folder was deleted or emptied: upstream's files come back; local
        deletions that were held are dropped (edits that were pending stay)."""
        for e in list(s.entries.values()):
            if e.deletion:
                self._entry_state(e, "discarded")
                del s.entries[e.seq]
        for path, f in s.files.items():
            if f.lh and not os.path.lexists(s.root / path):
                f.lh = ""
                self._save_file(s, path)
        # Everything is offered again (from sequence 0). The iterations stay what they are: they are
        # what the files on disk, and the edits waiting, are based on. A path whose file is what
        # upstream has is skipped; a missing one is written again (_notification).
        s.last_seq = s.max_seen = 0
        s.outstanding.clear()

    def _begin(self, s: Sync, reset_link: bool) -> None:
        s.heard_at = time.monotonic()
        self.ctx.send("watcher", WatchFolder(sessionId=s.sid, localDir=s.local_dir))
        spool = self.spool_root / s.sid
        if reset_link:
            self.ctx.send("connection", StopReplication(sessionId=s.sid))
        self.ctx.send(
            "connection",
            StartReplication(
                sessionId=s.sid,
                replicaId=s.replica_id,
                sinceSequence=s.last_seq,
                spoolDir=str(spool),
            ),
        )
        s.dirty = True

    def pause_all(self, pause: bool) -> dict[str, Any]:
        """Pause every active sync (nothing watched or replicated; local edits are found by the
        rescan on resume), or resume those paused that way."""
        done = []
        for s in self.syncs.values():
            if pause and s.state == "active":
                self._halt(s, "paused", USER_PAUSE)
                done.append(s.sid)
            elif not pause and s.state == "paused" and s.error == USER_PAUSE:
                s.state, s.error = "active", None
                self._save_sync(s)
                self._begin(s, reset_link=True)
                done.append(s.sid)
        return {"paused" if pause else "resumed": done}

    def stop_sync(self, sid: str) -> dict[str, Any]:
        s = self._sync(sid)
        self._halt(s, "stopped", None)
        return self.status(s)

    def _halt(self, s: Sync, state: str, error: str | None) -> None:
        s.state, s.error = state, error
        self.ctx.send("watcher", UnwatchFolder(sessionId=s.sid))
        self.ctx.send("connection", StopReplication(sessionId=s.sid))
        self.ctx.send("materializer", ForgetSession(sessionId=s.sid))
        s.materializing.clear()
        s.accepting.clear()  # the conflict is still there: the user chooses again
        s.queued.clear()
        s.outstanding.clear()
        s.backlog.clear()  # the rescan at the next start lists every file again
        self._uncount_failures(s)
        s.max_seen = s.last_seq
        for seq in s.inflight:
            e = s.entries.get(seq)
            if e is not None and e.state == "sent":
                e.state = "pending"
                self._entry_state(e, "pending")
        s.inflight.clear()
        s.link = "stopped"
        self._save_sync(s)
        self._push(s)

    # --- status ---------------------------------------------------------------------------------------------

    def status(self, s: Sync, texts: bool = True) -> dict[str, Any]:
        pending = sum(1 for e in s.entries.values() if e.state in ("pending", "sent"))
        # a link the gateway refuses (bad token, unknown session) is an error until it connects
        state = "error" if s.state == "active" and s.link == "refused" else s.state
        return {
            "sessionId": s.sid,
            "state": state,
            "localDir": s.local_dir,
            "error": s.error,
            "warning": s.warning,
            "filesTracked": sum(1 for f in s.files.values() if f.lh),
            "lastSyncAt": s.last_sync_at,
            "pendingWrites": pending,
            "heldWrites": sum(1 for e in s.entries.values() if e.state == "held"),
            "conflicts": [
                self._conflict_view(s, c, texts)
                for c in sorted(s.conflicts.values(), key=lambda c: c.path)
            ],
            # mirror: read-only (the gateway has no /replicate); pendingWrites are then kept here, unsent
            "mode": "mirror" if s.read_only else "two-way",
            "modeNote": MIRROR_NOTE if s.read_only else None,
            "localEdits": self._local_edits(s),
            "link": s.link,
            "linkDetail": s.link_detail,
            "lastSequence": s.last_seq,
            "incidents": s.incidents[-10:],
            "rejected": s.rejected[-20:],
            # items that could not be synced, each with its reason (not acknowledged upstream; retried)
            "failed": self._failed_view(s),
            "failedCount": len(s.failed),
            "maxFileSize": self.max_file,
            "freeSpace": s.free,
            "minFreeSpace": s.floor,
            # echoesSuppressed / echoesLeaked: counted by the watcher, in the echo set it shares with us
            "stats": {**s.counts, **self.echoes.counts(s.sid)},
            "scan": self.scan_view(s),
        }

    def _failed_view(self, s: Sync) -> list[dict[str, Any]]:
        shown = sorted(s.failed.values(), key=lambda fl: (fl.since, fl.path))[
            :FAILED_SHOWN
        ]
        return [
            {
                "path": fl.path,
                "reason": fl.reason,
                "direction": fl.direction,
                "since": int(fl.since * 1000),
                "retries": fl.retries,
                "sequence": fl.note.sequence if fl.note is not None else None,
            }
            for fl in shown
        ]

    def _local_edits(self, s: Sync) -> list[dict[str, Any]]:
        """Local changes not yet accepted upstream (conflicts apart), by path: the newest per path,
        at most LOCAL_EDITS_SHOWN. In a mirror they are what stays on this computer."""
        latest: dict[str, Entry] = {}
        for e in s.entries.values():
            if e.state in ("pending", "sent") and e.path not in s.conflicts:
                latest[e.path] = e
        # the first few of up to 100,000 paths (a big folder's first upload): no need to sort them all
        return [
            {"path": p, "deleted": latest[p].deletion}
            for p in heapq.nsmallest(LOCAL_EDITS_SHOWN, latest)
        ]

    def _conflict_view(self, s: Sync, c: Conflict, texts: bool) -> dict[str, Any]:
        view: dict[str, Any] = {
            "path": c.path,
            "upstreamIteration": c.u,
            "upstreamHash": c.uh,
            "upstreamDeleted": not c.uh,
            "localHash": c.lh,
            "localDeleted": not c.lh,
            "upstreamCopy": c.copy,
            "since": int(c.since * 1000),
        }
        if texts:
            view["local"] = _text(s.root, c.path)
            view["upstream"] = (
                _text(s.root, c.copy) if c.copy else ("" if not c.uh else None)
            )
            view["binary"] = bool(
                (c.lh and view["local"] is None)
                or (c.uh and c.copy and view["upstream"] is None)
            )
        return view

    def _push(self, s: Sync) -> None:
        s.dirty = False
        s.pushed_at = time.monotonic()
        payload = msgspec.json.encode(self.status(s))
        self.ctx.send(
            "uibridge", UiEvent(event="sync-status", payload=msgspec.Raw(payload))
        )

    def _push_statuses(self, throttle: bool) -> None:
        now = time.monotonic()
        for s in self.syncs.values():
            if s.dirty and (not throttle or now - s.pushed_at >= 0.25):
                self._push(s)

    # --- upstream -------------------------------------------------------------------------------------------

    def on_update(self, u: ReplicationUpdate) -> None:
        s = self.syncs.get(u.sessionId)
        if s is None or s.state != "active":
            return
        s.heard_at = time.monotonic()
        if s.link != "connected":
            s.link, s.link_detail, s.dirty = "connected", "", True
        if u.fullResync is not None:
            if (
                not s.read_only
            ):  # the mirror resyncs at every connect: its ordinary start, no incident
                self._incident(s, "full_resync", u.fullResync)
            self._forget_upstream(s)
        items: list[MaterializeItem] = []
        for n in u.notifications:
            s.outstanding[n.sequence] = s.outstanding.get(n.sequence, 0) + 1
            self._notification(s, n, items)
        if u.sequence is not None:
            s.max_seen = max(s.max_seen, u.sequence)
        self._send_items(s, items)
        self._advance(s)

    def _forget_upstream(self, s: Sync) -> None:
        """A new upstream (a full resync): its iterations and sequences mean nothing here. Everything
        is offered again from sequence 0; what is already here is skipped by hash."""
        for path, f in s.files.items():
            f.u = 0
            self._save_file(s, path)
        s.outstanding.clear()
        self._uncount_failures(s)
        s.last_seq = s.max_seen = 0
        self._save_sync(s)

    def _uncount_failures(self, s: Sync) -> None:
        """The outstanding sequences are forgotten (a stop, a full resync): the catch-up that follows
        offers the failed states again (they were never acknowledged), and that replaces them."""
        for fl in s.failed.values():
            fl.counted = False
        s.notes.clear()
        s.tries.clear()

    def _done(self, s: Sync, seq: int) -> None:
        left = s.outstanding.get(seq, 0) - 1
        if left > 0:
            s.outstanding[seq] = left
        else:
            s.outstanding.pop(seq, None)
        s.max_seen = max(s.max_seen, seq)

    def _advance(self, s: Sync) -> None:
        cursor = (min(s.outstanding) - 1) if s.outstanding else s.max_seen
        if cursor > s.last_seq:
            s.last_seq = cursor
            self._save_sync(s)
            self.ctx.send(
                "connection", AckSequence(sessionId=s.sid, upToSequence=cursor)
            )

    def _send_items(self, s: Sync, items: list[MaterializeItem]) -> None:
        batch: list[MaterializeItem] = []
        size = 0
        for item in items:
            batch.append(item)
            size += len(item.content or b"")
            if len(batch) >= MAX_BATCH or size >= (1 << 20):
                self.ctx.send(
                    "materializer",
                    Materialize(sessionId=s.sid, localDir=s.local_dir, items=batch),
                )
                batch, size = [], 0
        if batch:
            self.ctx.send(
                "materializer",
                Materialize(sessionId=s.sid, localDir=s.local_dir, items=batch),
            )

    def _refuse(self, s: Sync, n: wire.Notification, e: UnsafePath) -> None:
        log.warning("sync %s: refused an upstream change: %s", s.sid, e)
        s.rejected.append(
            {
                "path": str(n.filepath)[:300],
                "reason": str(e),
                "at": int(time.time() * 1000),
            }
        )
        self._record(
            s,
            "upstream",
            str(n.filepath)[:4096],
            n.contentHash,
            n.isDeletion,
            "rejected",
            iteration=n.iteration,
            reason=str(e),
            sequence=n.sequence,
        )
        s.dirty = True
        self._done(s, n.sequence)

    def _unfail(self, s: Sync, path: str, n: wire.Notification) -> None:
        """A state of `path` comes from upstream (again, after a reconnect, or a newer one): it
        replaces the failed one, whose delivery is done (this one is counted on its own); its
        outcome decides what happens next. (A retry takes the failure off before it comes here.)"""
        old = s.failed.get(path)
        if old is None or old.direction != "upstream":
            return
        del s.failed[path]
        s.dirty = True
        if old.note is not None and old.note.sequence == n.sequence:
            s.tries[path] = (old.since, old.retries, old.reason)
        if old.counted and old.note is not None:
            self._done(s, old.note.sequence)

    def _fail_upstream(
        self,
        s: Sync,
        path: str,
        n: wire.Notification | None,
        reason: str,
        retry: bool,
        counted: bool = True,
    ) -> None:
        """An upstream state that could not be written: listed with its reason, its sequence left
        outstanding (never acknowledged), tried again later (`retry`) or when a newer state comes."""
        since, retries, last = s.tries.pop(path, (time.time(), -1, None))
        retries += 1
        log.log(
            failure_log_level(reason, last),
            "sync %s: could not write %s (try %d): %s",
            s.sid,
            path,
            retries + 1,
            reason,
        )
        if n is not None and n.renamedFrom:
            n = msgspec.structs.replace(
                n, renamedFrom=None, renamedFromIteration=None
            )  # that half is handled
        s.failed[path] = Failure(
            path,
            reason,
            "upstream",
            since,
            retries,
            n,
            retry and n is not None,
            time.monotonic() + retry_delay(retries),
            counted and n is not None,
        )
        s.dirty = True

    def _notification(
        self, s: Sync, n: wire.Notification, items: list[MaterializeItem]
    ) -> None:
        try:
            path = check_relative(n.filepath)
        except UnsafePath as e:
            self._refuse(s, n, e)
            return
        self._unfail(s, path, n)
        too_long = name_too_long(path)
        if too_long is not None:
            if n.isDeletion:  # it was never written here either
                self._done(s, n.sequence)
            else:  # only a newer state (a shorter name) can change that: not tried again meanwhile
                self._fail_upstream(s, path, n, too_long, retry=False)
            return
        try:
            confined(s.root, path)
        except UnsafePath as e:
            self._refuse(s, n, e)
            return
        except OSError as e:
            self._fail_upstream(s, path, n, os_error_reason(e), retry=True)
            return
        if not n.isDeletion and not wire.valid_hash(n.contentHash):
            s.rejected.append(
                {
                    "path": path,
                    "reason": "invalid content hash",
                    "at": int(time.time() * 1000),
                }
            )
            self._done(s, n.sequence)
            return
        f = self._file(s, path)
        if n.iteration < f.u or (
            n.iteration == f.u and (f.lh == f.uh or path in s.conflicts)
        ):
            # seen already (a catch-up repeats what a crash left unacknowledged). The same iteration
            # again while the local file is not that state, outside a conflict: after _restore (the
            # file is missing, or edited with the edit waiting): looked at below.
            self._done(s, n.sequence)
            return
        if path in s.materializing:
            older = s.queued.get(path)
            if older is not None:
                self._done(s, older.sequence)
            s.queued[path] = n  # after the write in flight
            return
        target = "" if n.isDeletion else n.contentHash
        mine = s.entries.of_path(path)
        if n.renamedFrom:
            # the rename's other half: the old path is deleted at renamedFromIteration
            try:
                old = check_relative(n.renamedFrom)
            except UnsafePath:
                old = None
        else:
            old = None
        c0 = s.conflicts.get(path)
        same_conflict = (
            c0 is not None
            and (c0.u, c0.uh) == (n.iteration, target)
            and (not target or bool(c0.copy) and os.path.lexists(s.root / c0.copy))
        )
        if s.read_only and (same_conflict or f.lh == target == f.uh and not mine):
            # The mirror offers everything again at each connect: what is already here as it stands
            # (the file, or a conflict and its copy) changes nothing, and is not recorded again.
            f.u = n.iteration
            self._save_file(s, path)
            self._done(s, n.sequence)
        elif path in s.conflicts and f.lh == target:
            # upstream now holds exactly the local content: nothing is left to choose
            c = s.conflicts.pop(path)
            self.db.execute(
                "DELETE FROM conflicts WHERE session_id = ? AND path = ?", (s.sid, path)
            )
            if c.copy:
                self._remove_copy(s, c.copy)
            for e in s.entries.of_path(path):
                self._drop(s, e, "superseded")
            f.u, f.uh = n.iteration, target
            self._save_file(s, path)
            self._record(
                s,
                "upstream",
                path,
                target,
                n.isDeletion,
                "applied",
                iteration=n.iteration,
                sequence=n.sequence,
            )
            s.dirty = True
            self._done(s, n.sequence)
        elif path in s.conflicts:
            self._conflict(s, path, n.iteration, target, n, items)
        elif f.lh == target:
            f.u, f.uh, f.mode = n.iteration, target, n.permissions or f.mode
            for e in mine:
                if e.state == "pending" and e.hash == target:
                    self._drop(s, e, "superseded")
            self._save_file(s, path)
            self._record(
                s,
                "upstream",
                path,
                target,
                n.isDeletion,
                "applied",
                iteration=n.iteration,
                sequence=n.sequence,
            )
            self._done(s, n.sequence)
        elif any(e.hash == target and e.state == "sent" for e in mine):
            # our own write-back coming back: the result will say the same
            f.u, f.uh = n.iteration, target
            self._save_file(s, path)
            self._done(s, n.sequence)
        elif (
            mine
            and target == f.uh
            and all(e.state != "held" and e.base == n.iteration for e in mine)
        ):
            # Offered again (after _restore, a full resync, a catch-up): the very state the unsent
            # local change was based on, so upstream did not move: no conflict, the change goes as
            # it is (the gateway judges it against the head anyway).
            f.u = n.iteration
            self._save_file(s, path)
            self._done(s, n.sequence)
        elif mine:
            self._conflict(s, path, n.iteration, target, n, items)
        else:
            item = MaterializeItem(
                path=path,
                iteration=n.iteration,
                contentHash=target,
                size=n.size,
                permissions=n.permissions,
                isDeletion=n.isDeletion,
                content=n.inlineContent,
                expectedHash=f.lh,
            )
            if old is not None and old in s.files:
                of = s.files[old]
                if (
                    of.lh == n.contentHash
                    and old not in s.conflicts
                    and not s.entries.has_path(old)
                ):
                    item.renamedFrom, item.renamedFromHash = old, of.lh
            s.materializing[path] = (n.iteration, target, n.sequence)
            s.notes[path] = n
            items.append(item)
        if old is not None and n.renamedFromIteration is not None:
            s.outstanding[n.sequence] = s.outstanding.get(n.sequence, 0) + 1
            self._notification(
                s,
                wire.Notification(
                    sequence=n.sequence,
                    filepath=old,
                    contentHash="",
                    size=0,
                    permissions=0,
                    isDeletion=True,
                    iteration=n.renamedFromIteration,
                ),
                items,
            )

    def _conflict(
        self,
        s: Sync,
        path: str,
        iteration: int,
        target: str,
        n: wire.Notification | None,
        items: list[MaterializeItem],
    ) -> None:
        """Upstream moved while the local file has changes of its own: keep both."""
        f = self._file(s, path)
        old = s.conflicts.get(path)
        if old is not None and old.copy:
            self._remove_copy(s, old.copy)
        lh = f.lh
        if not lh and os.path.lexists(s.root / path):
            lh = file_hash(s.root / path) or ""
        c = s.conflicts[path] = Conflict(
            path, lh, iteration, target, None, old.since if old else time.time()
        )
        f.u, f.uh = iteration, target
        if n is not None:
            f.mode = n.permissions or f.mode
        self._save_file(s, path)
        for e in s.entries.of_path(path):
            if e.state == "pending":
                e.state = "held"
                self._entry_state(e, "held")
        self._save_conflict(s, c)
        self._record(
            s,
            "upstream",
            path,
            target,
            not target,
            "conflict",
            iteration=iteration,
            sequence=n.sequence if n else None,
        )
        if target:
            copy = conflict_copy_name(path, iteration)
            s.materializing[path] = (iteration, target, n.sequence if n else 0)
            if n is not None:
                s.notes[path] = n
            items.append(
                MaterializeItem(
                    path=path,
                    iteration=iteration,
                    contentHash=target,
                    size=n.size if n else 0,
                    permissions=f.mode,
                    content=n.inlineContent if n else None,
                    conflictCopy=copy,
                )
            )
        elif n is not None:
            self._done(s, n.sequence)
        self._incident(
            s, "conflict", f"{path}: upstream iteration {iteration} and a local change"
        )
        s.counts["conflicts"] += 1

    def _save_conflict(self, s: Sync, c: Conflict) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO conflicts VALUES (?, ?, ?, ?, ?, ?, ?)",
            (s.sid, c.path, c.lh, c.u, c.uh, c.copy, c.since),
        )
        s.dirty = True

    def _remove_copy(self, s: Sync, copy: str) -> None:
        try:
            p = confined(s.root, copy)
            p.unlink(missing_ok=True)
        except (UnsafePath, OSError):
            pass

    def on_materialized(self, m: Materialized) -> None:
        s = self.syncs.get(m.sessionId)
        if s is None or s.state != "active":
            return
        items: list[MaterializeItem] = []
        now_ms = int(time.time() * 1000)
        for r in m.results:
            pending = s.materializing.get(r.path)
            seq = None
            note = None
            accepted = False
            if pending is not None and pending[0] == r.iteration:
                del s.materializing[r.path]
                seq = pending[2]
                note = s.notes.pop(r.path, None)
                if r.path in s.accepting:
                    s.accepting.discard(r.path)
                    if r.outcome == "failed":
                        # The choice is not lost: the conflict, its copy and the held changes stay
                        # as they were (in the database too), and the user can choose again.
                        self._fail_upstream(
                            s,
                            r.path,
                            None,
                            f"{r.detail or 'could not be written'}; the conflict "
                            "stays: choose again once the file can be written",
                            retry=False,
                        )
                        self._next_queued(s, r.path, items)
                        continue
                    accepted = r.outcome in ("written", "unchanged", "deleted")
            if r.outcome != "failed":
                s.tries.pop(r.path, None)
            f = self._file(s, r.path)
            if r.outcome in ("written", "unchanged", "deleted"):
                target = pending[1] if pending else r.hash
                f.u, f.uh = max(f.u, r.iteration), target
                f.lh = r.hash if r.outcome != "deleted" else ""
                self._save_file(s, r.path)
                for e in s.entries.of_path(r.path):
                    # a save recorded while this write was in flight: it came after the write (else
                    # the materializer would have found the file changed), so it is based on it
                    if e.state == "pending" and e.base != f.u:
                        e.base = f.u
                        self._entry_state(e, "pending", base=f.u)
                self._record(
                    s,
                    "upstream",
                    r.path,
                    target,
                    r.outcome == "deleted",
                    "applied",
                    iteration=r.iteration,
                    sequence=seq,
                )
                s.last_sync_at = now_ms
                s.counts["upstreamApplied"] += 1
            elif r.outcome == "copied":
                c = s.conflicts.get(r.path)
                if c is not None and c.u == r.iteration:
                    c.copy = r.detail
                    self._save_conflict(s, c)
            elif r.outcome == "local_changed":
                # the user saved over it meanwhile: nothing was overwritten; a conflict
                target = pending[1] if pending else ""
                f.lh = r.hash if r.hash != "-" else f.lh
                n = wire.Notification(
                    sequence=seq or 0,
                    filepath=r.path,
                    contentHash=target,
                    size=0,
                    permissions=f.mode,
                    isDeletion=not target,
                    iteration=r.iteration,
                )
                if seq is not None:
                    s.outstanding[seq] = s.outstanding.get(seq, 0) + 1
                self._conflict(s, r.path, r.iteration, target, n, items)
            elif r.outcome == "rejected":
                s.rejected.append({"path": r.path, "reason": r.detail, "at": now_ms})
                self._record(
                    s,
                    "upstream",
                    r.path,
                    "",
                    False,
                    "rejected",
                    iteration=r.iteration,
                    reason=r.detail,
                    sequence=seq,
                )
            else:  # failed: that item only; its change stays unacknowledged and is tried again
                if note is None and pending is not None:
                    # not from a notification (its note was forgotten): tried again all the same, as a
                    # state with no sequence to hold back
                    note = wire.Notification(
                        sequence=0,
                        filepath=r.path,
                        contentHash=pending[1],
                        size=0,
                        permissions=f.mode,
                        isDeletion=not pending[1],
                        iteration=r.iteration,
                    )
                self._fail_upstream(
                    s,
                    r.path,
                    note,
                    r.detail or "could not be written",
                    retry=True,
                    counted=bool(seq),
                )
                if note is not None and seq:
                    seq = None
            if accepted:
                self._settle_accept(s, r.path)
            if seq is not None:
                self._done(s, seq)
            self._next_queued(s, r.path, items)
        s.dirty = True
        self._send_items(s, items)
        self._advance(s)
        self._send_pending(s)

    # --- local ---------------------------------------------------------------------------------------------

    def on_local(self, msg: LocalChanges) -> None:
        s = self.syncs.get(msg.sessionId)
        if s is None or s.state != "active":
            return
        if s.backlog or len(msg.changes) > STEP_FILES:
            # in steps; a later change waits behind the backlog, so the order of a path's states holds
            s.backlog.append(ScanWork(list(msg.changes), msg.scan))
            s.dirty = True
            self._continue()
            return
        for lf in msg.changes:
            self._local(s, lf)
        if msg.scan:
            self._scan_end(s, msg.changes)
        self._send_pending(s)

    def _continue(self) -> None:
        if not self.step_queued:
            self.step_queued = True
            self.actor_ref.tell(envelope(self.ctx.name, self.ctx.name, JournalStep()))

    def _step(self) -> None:
        """One step of every backlog: at most STEP_FILES files or STEP_S seconds in all."""
        deadline = time.monotonic() + self.step_s
        budget = STEP_FILES
        for s in list(self.syncs.values()):
            if not s.backlog:
                continue
            if s.state != "active":
                s.backlog.clear()  # stopped or paused meanwhile: a rescan follows any resume
                continue
            while s.backlog and budget > 0 and time.monotonic() < deadline:
                w = s.backlog[0]
                end = min(len(w.changes), w.done + budget)
                while w.done < end:
                    self._local(s, w.changes[w.done])
                    w.done += 1
                    budget -= 1
                    if w.done % 128 == 0:
                        self._check_current()
                        if time.monotonic() >= deadline:
                            break
                if w.done >= len(w.changes):
                    s.backlog.popleft()
                    if w.scan:
                        self._scan_end(s, w.changes)
            s.dirty = True
            self._send_pending(s)
        if any(s.backlog for s in self.syncs.values()):
            self._continue()

    def scan_view(self, s: Sync) -> dict[str, Any] | None:
        """sync_status.scan: how far the first look at a folder's files has come, or None.
        listing: the watcher walks the folder (total not known yet); indexing: the journal records
        what it found, `done` of `total` files."""
        if s.backlog:
            return {
                "phase": "indexing",
                "done": sum(w.done for w in s.backlog),
                "total": sum(len(w.changes) for w in s.backlog),
            }
        listed = self.scan_progress.get(s.sid)
        if listed is not None and s.state == "active":
            return {"phase": "listing", "done": listed, "total": None}
        return None

    def _scan_end(self, s: Sync, changes: list[LocalFile]) -> None:
        """The end of a complete listing: what it does not hold and is gone from disk was deleted."""
        listed = {lf.path for lf in changes}
        for path in [
            p
            for p, fl in s.failed.items()
            if fl.direction == "local" and p not in listed
        ]:
            del s.failed[path]  # gone, or renamed to a name that syncs
            s.dirty = True
        if s.ignore is None:
            s.ignore = GitIgnore(s.root, self.extra_ignore)
        for path, f in list(s.files.items()):
            # a file the rules ignore is not in the listing: gone from disk, it is not a deletion
            # to send, as the watcher never reports one for it either (docs/sync.md §4)
            if (
                f.lh
                and path not in listed
                and path not in s.materializing
                and not is_noise(path)
                and not os.path.lexists(s.root / path)
                and not s.ignore.ignored(path)
            ):
                self._local(s, LocalFile(path, "", 0, 0))

    def _local_problem(self, lf: LocalFile) -> tuple[str, str] | None:
        """(the path to show, the problem's code) for a local file that is not synced, else None.
        The watcher sends a name that is no workspace path as its display form with the hash
        "!code", and a file over the size limit as "!too_large"; a change it sent as an ordinary
        one is checked again here all the same."""
        if lf.hash.startswith("!"):
            return lf.path, lf.hash[1:]
        code = local_name_problem(lf.path)
        if code is not None:
            return display_path(lf.path), code
        if lf.hash and lf.size > self.max_file:
            return lf.path, "too_large"
        return None

    def _local(self, s: Sync, lf: LocalFile) -> None:
        problem = self._local_problem(lf)
        if problem is not None:
            shown, code = problem
            old = s.failed.get(shown)
            if old is not None and old.direction == "upstream":
                return  # that path's upstream state is failing too: it is listed (and held) as that
            if lf.hash:
                reason = local_failure_reason(code, lf.size, self.max_file)
                if old is None or old.reason != reason:
                    log.warning("sync %s: not syncing %s: %s", s.sid, shown, reason)
                    s.failed[shown] = Failure(
                        shown,
                        reason,
                        "local",
                        old.since if old else time.time(),
                        (old.retries + 1) if old else 0,
                        retry=False,
                    )
                    s.dirty = True
                return
            if old is not None and old.direction == "local":
                del s.failed[
                    shown
                ]  # a name that never synced is gone: nothing else to do
                s.dirty = True
            return
        if lf.path in s.failed and s.failed[lf.path].direction == "local":
            del s.failed[lf.path]  # it can be synced now (smaller again, or gone)
            s.dirty = True
        path, h = lf.path, lf.hash
        m = s.materializing.get(path)
        if m is not None and m[1] == h:
            return  # our own write on its way
        f = s.files.get(path)
        if f is None:
            if not h:
                return  # never tracked, and gone: a temp file
            f = self._file(s, path)
        if h == f.lh:
            if lf.mode and f.mode != lf.mode and h:
                f.mode = lf.mode  # a chmod alone: sent with the next change
                self._save_file(s, path)
            return
        f.lh = h
        if lf.mode:
            f.mode = lf.mode
        self._save_file(s, path)
        s.dirty = True
        c = s.conflicts.get(path)
        if c is not None:
            c.lh = h
            self._save_conflict(s, c)
            return
        mine = s.entries.of_path(path)
        if h == f.uh and not mine:
            return  # local now equals upstream's current content: nothing to send
        for e in mine:
            if e.state == "pending":
                self._drop(s, e, "superseded")
        # The file on disk came from upstream iteration f.u (0: none). While a materialization of the
        # path is in flight, the result moves that on (on_materialized) if our write did land first.
        seq = self._record(
            s, "local", path, h, not h, "pending", base=f.u, size=lf.size, mode=f.mode
        )
        s.entries[seq] = Entry(
            seq, path, h, lf.size, f.mode, not h, "pending", time.time(), f.u
        )
        s.counts["localChanges"] += 1

    def _drop(self, s: Sync, e: Entry, state: str) -> None:
        self._entry_state(e, state)
        s.entries.pop(e.seq, None)
        s.inflight.discard(e.seq)

    def _send_pending(self, s: Sync) -> None:
        if s.state != "active" or s.link != "connected" or s.inflight or s.read_only:
            return  # read-only: the gateway takes no writes; local changes stay pending here
        now = time.time()
        busy = {e.path for e in s.entries.values() if e.state == "sent"}
        batch: list[Entry] = []
        deletions = 0
        for e in (
            s.entries.values()
        ):  # in journal order: ids only grow, and are added in order
            if (
                e.state != "pending"
                or e.path in busy
                or e.path in s.conflicts
                or e.path in s.materializing
            ):
                continue
            if e.deletion and now - e.recorded < DELETE_HOLD_S:
                continue
            busy.add(e.path)
            batch.append(e)
            deletions += e.deletion
            if len(batch) >= MAX_BATCH:
                break
        if not batch:
            return
        # Count every deletion waiting, not only this batch's: an rmtree's deletions are recorded a
        # few milliseconds apart, and the first one alone must not slip out before the rest is seen.
        waiting = sum(
            1 for e in s.entries.values() if e.deletion and e.state == "pending"
        )
        if deletions and self._folder_gone_or_emptied(s, waiting):
            return
        items = []
        for e in batch:
            f = self._file(s, e.path)
            if e.base is None:  # journaled by a version that did not record it
                e.base = f.u
            e.state = "sent"
            self._entry_state(e, "sent", base=e.base)
            s.inflight.add(e.seq)
            items.append(
                WriteBackItem(
                    localSeq=e.seq,
                    path=e.path,
                    contentHash=e.hash,
                    baseIteration=e.base,
                    localPath=str(s.root / e.path),
                    size=e.size,
                    permissions=f.mode,
                    isDeletion=e.deletion,
                )
            )
        s.sent_at = time.monotonic()
        self.ctx.send("connection", SendWriteBack(sessionId=s.sid, entries=items))

    def _folder_gone_or_emptied(self, s: Sync, deletions: int) -> bool:
        root = s.root
        why = None
        if not root.is_dir():
            why = f"the sync folder {root} was deleted or moved away"
        elif deletions >= 2 and not _has_files(root):
            why = f"the sync folder {root} was emptied"
        if why is None:
            return False
        self._pause(
            s,
            f"{why}; sync is paused and nothing was deleted upstream. start_sync again to restore "
            "the files from upstream",
        )
        return True

    def _pause(self, s: Sync, why: str) -> None:
        log.warning("sync %s paused: %s", s.sid, why)
        self._incident(s, "paused", why)
        self._halt(s, "paused", why)

    def on_outcome(self, o: WriteBackOutcome) -> None:
        s = self.syncs.get(o.sessionId)
        if s is None:
            return
        now_ms = int(time.time() * 1000)
        items: list[MaterializeItem] = []
        for a in o.accepted:
            s.inflight.discard(a.localSeq)
            e = s.entries.pop(a.localSeq, None)
            if e is None:
                continue
            self._entry_state(e, "accepted", iteration=a.iteration)
            s.counts["writeBacksAccepted"] += 1
            f = self._file(s, e.path)
            if a.iteration >= f.u:
                f.u, f.uh = a.iteration, e.hash
                self._save_file(s, e.path)
            s.last_sync_at = now_ms
        for r in o.rejected:
            s.inflight.discard(r.localSeq)
            e = s.entries.get(r.localSeq)
            if e is None:
                continue
            if r.reason == "conflict":
                e.state = "held"
                self._entry_state(e, "held", reason=r.message)
                f = self._file(s, e.path)
                if (
                    r.currentIteration <= f.u
                    and e.path not in s.conflicts
                    and e.path not in s.materializing
                ):
                    self._conflict(s, e.path, f.u, f.uh, None, items)
                # else: the Notification of that iteration is on its way and makes the conflict
            elif r.reason in ("changed", "unreadable", "content_missing"):
                # the file moved on since it was recorded: look at it again
                self._drop(s, e, "superseded")
                full = s.root / e.path
                h = file_hash(full) if full.is_file() else ""
                f = self._file(s, e.path)
                if (h or "") != f.lh or not s.entries.has_path(e.path):
                    f.lh = "\0"  # force a fresh look
                    self._local(
                        s,
                        LocalFile(
                            e.path, h or "", full.stat().st_size if h else 0, f.mode
                        ),
                    )
            elif r.reason == "no_link":
                e.state = "pending"
                self._entry_state(e, "pending")
            else:
                self._drop(s, e, "rejected")
                s.rejected.append(
                    {"path": e.path, "reason": f"{r.reason}: {r.message}", "at": now_ms}
                )
        s.dirty = True
        self._send_items(s, items)
        self._send_pending(s)

    def on_link(self, st: ReplicationState) -> None:
        s = self.syncs.get(st.sessionId)
        if s is None or s.state != "active":
            return
        s.heard_at = time.monotonic()
        was = s.link
        s.link, s.link_detail, s.dirty = st.state, st.detail, True
        if st.readOnly:
            s.read_only = True
        elif st.state == "connected" and s.read_only:
            # A two-way link after a mirror (another gateway, or this one gained /replicate): what
            # waited goes now. The mirror's sequences mean nothing to /replicate: catch up from 0.
            s.read_only = False
            self._incident(
                s,
                "two_way",
                "the gateway has a replication endpoint: two-way sync resumes",
            )
            self._forget_upstream(s)
            self.ctx.send(
                "connection",
                StartReplication(
                    sessionId=s.sid,
                    replicaId=s.replica_id,
                    sinceSequence=0,
                    spoolDir=str(self.spool_root / s.sid),
                ),
            )
        if st.state == "connected" and was != "connected":
            # what was in flight on the old socket goes again; the gateway answers resends once
            for seq in list(s.inflight):
                e = s.entries.get(seq)
                if e is not None:
                    e.state = "pending"
            s.inflight.clear()
            self._send_pending(s)
        if st.state == "refused":
            s.error = f"replication refused: {st.detail}"
        elif (
            st.state == "connected"
            and s.error
            and s.error.startswith("replication refused")
        ):
            s.error = None

    def on_incident(self, i: WatcherIncident) -> None:
        s = self.syncs.get(i.sessionId)
        if s is None or s.state != "active":
            return
        if i.incident == "root_gone":
            self._pause(
                s,
                f"the sync folder {s.local_dir} was deleted or moved away; sync is paused and nothing "
                "was deleted upstream. start_sync again to restore the files from upstream",
            )
            return
        if i.incident == "watch_limit":
            s.warning = i.detail  # until the watcher says every folder is watched again
        elif i.incident == "watch_restored":
            s.warning = None
        self._incident(s, i.incident, i.detail)

    def _incident(self, s: Sync, kind: str, detail: str) -> None:
        s.incidents.append(
            {"kind": kind, "detail": detail, "at": int(time.time() * 1000)}
        )
        del s.incidents[:-20]
        s.dirty = True

    # --- conflicts ------------------------------------------------------------------------------------------

    def resolve(self, sid: str, path: Any, resolution: Any) -> dict[str, Any]:
        s = self._sync(sid)
        if resolution not in RESOLUTIONS:
            raise CommandError(
                "INVALID_ARGUMENTS",
                f"resolve_conflict: resolution must be one of {', '.join(RESOLUTIONS)}",
            )
        if not isinstance(path, str) or path not in s.conflicts:
            raise CommandError(
                "NOT_FOUND",
                f"resolve_conflict: no conflict on {path!r} in session {sid}",
            )
        if s.state != "active":
            raise CommandError(
                "NOT_ACTIVE",
                f"resolve_conflict: the sync of session {sid} is {s.state}",
            )
        if path in s.accepting:
            raise CommandError(
                "NOT_ACTIVE",
                f"resolve_conflict: the upstream version of {path!r} is being written "
                "(accept_upstream); try again in a moment",
            )
        fl = s.failed.get(path)
        if (
            fl is not None and fl.note is None
        ):  # an earlier choice that could not be written: this one replaces it
            del s.failed[path]
        f = self._file(s, path)
        if resolution == "accept_upstream":
            # The conflict stays until the write lands (_settle_accept): if it fails, nothing the
            # user chose is lost, and the local file is not later sent upstream as if it were kept.
            c = s.conflicts[path]
            item = MaterializeItem(
                path=path,
                iteration=c.u,
                contentHash=c.uh,
                permissions=f.mode,
                isDeletion=not c.uh,
                expectedHash=None,
                renamedFrom=c.copy,
                renamedFromHash=c.uh if c.copy else None,
            )
            s.materializing[path] = (c.u, c.uh, 0)
            s.accepting.add(path)
            s.dirty = True
            self._send_items(s, [item])
            return {
                "path": path,
                "resolution": resolution,
                "status": self.status(s, texts=False),
            }
        c = s.conflicts.pop(path)
        self.db.execute(
            "DELETE FROM conflicts WHERE session_id = ? AND path = ?", (sid, path)
        )
        held = s.entries.of_path(path)
        # keep_local, merged: the local file (as it is now) becomes the next upstream iteration
        if c.copy:
            self._remove_copy(s, c.copy)
        for e in held:
            self._drop(s, e, "superseded")
        full = s.root / path
        h = (file_hash(full) or "") if full.is_file() else ""
        f.lh = h
        self._save_file(s, path)
        if h != f.uh:
            seq = self._record(
                s,
                "local",
                path,
                h,
                not h,
                "pending",
                base=f.u,
                size=full.stat().st_size if h else 0,
                mode=f.mode,
                reason=resolution,
            )
            s.entries[seq] = Entry(
                seq,
                path,
                h,
                full.stat().st_size if h else 0,
                f.mode,
                not h,
                "pending",
                0.0,
                f.u,
            )  # recorded "long ago": a kept deletion goes at once
        self._record(
            s,
            "local",
            path,
            f.lh,
            not f.lh,
            "resolved",
            iteration=c.u,
            reason=resolution,
        )
        s.dirty = True
        self._send_pending(s)
        return {
            "path": path,
            "resolution": resolution,
            "status": self.status(s, texts=False),
        }

    # --- time -----------------------------------------------------------------------------------------------

    def _next_queued(self, s: Sync, path: str, items: list[MaterializeItem]) -> None:
        nxt = s.queued.pop(path, None)
        if nxt is not None and path not in s.materializing:
            self._notification(s, nxt, items)

    def _settle_accept(self, s: Sync, path: str) -> None:
        """accept_upstream's write landed: now the conflict goes, and the local changes it held."""
        c = s.conflicts.pop(path, None)
        self.db.execute(
            "DELETE FROM conflicts WHERE session_id = ? AND path = ?", (s.sid, path)
        )
        fl = s.failed.get(path)
        if (
            fl is not None and fl.note is None
        ):  # an earlier try of this choice that failed
            del s.failed[path]
        for e in s.entries.of_path(path):
            self._drop(s, e, "discarded")
        f = self._file(s, path)
        self._record(
            s,
            "local",
            path,
            f.lh,
            not f.lh,
            "resolved",
            iteration=c.u if c else None,
            reason="accept_upstream",
        )

    def _look_at_space(self, now: float) -> dict[str, os.statvfs_result]:
        """The disks of the syncs due a look, by session. Outside the tick's transaction: a stalled
        network folder then keeps the journal waiting, but not the database's write lock with it."""
        found: dict[str, os.statvfs_result] = {}
        for s in list(self.syncs.values()):
            low_paused = s.state == "paused" and (s.error or "").startswith(LOW_SPACE)
            if (
                not (s.state == "active" or low_paused)
                or now - s.space_at < SPACE_CHECK_S
            ):
                continue
            s.space_at = now
            try:
                found[s.sid] = os.statvfs(s.local_dir)
            except OSError:
                pass  # a folder that went: the watcher and the deletion guard deal with that
        return found

    def _check_space(self, s: Sync, st: os.statvfs_result | None) -> None:
        """Pause when the sync folder's disk is below the floor; resume once it is not. Space freed
        since the last look: failed writes are tried again at once."""
        low_paused = s.state == "paused" and (s.error or "").startswith(LOW_SPACE)
        if st is None or not (s.state == "active" or low_paused):
            return
        free, floor = (
            st.f_bavail * st.f_frsize,
            free_space_floor(st.f_blocks * st.f_frsize, self.floor_mb),
        )
        before, s.free, s.floor = s.free, free, floor
        if before is None or abs(free - before) >= SPACE_FREED:
            s.dirty = True  # shown in the status; small moves are not worth a push
        if s.state == "active" and free < floor:
            self._pause(
                s,
                f"{LOW_SPACE}: the disk of the sync folder {s.local_dir} has {_mib(free)} free, below "
                f"the floor of {_mib(floor)}. Sync is paused and resumes by itself once space is freed",
            )
        elif low_paused and free >= floor:
            log.info("sync %s: free space is back (%s); resuming", s.sid, _mib(free))
            s.state, s.error = "active", None
            self._incident(s, "space_back", f"{_mib(free)} free again: sync resumed")
            self._save_sync(s)
            self._begin(s, reset_link=True)
        elif (
            s.state == "active" and before is not None and free >= before + SPACE_FREED
        ):
            for fl in s.failed.values():
                fl.next_at = 0.0

    def _retry_failed(self, s: Sync, now: float) -> None:
        # Not counted (after a stop or a full resync): the catch-up offers it again; retried here it
        # could be done before what the catch-up brings ahead of it. A state with no sequence is.
        due = [
            fl
            for fl in s.failed.values()
            if fl.direction == "upstream"
            and fl.retry
            and fl.note is not None
            and (fl.counted or fl.note.sequence == 0)
            and fl.next_at <= now
            and fl.path not in s.materializing
        ]
        if not due:
            return
        items: list[MaterializeItem] = []
        for fl in due[:MAX_BATCH]:
            n = fl.note
            assert n is not None
            # its delivery is still outstanding: this try's outcome is what makes it done
            del s.failed[fl.path]
            s.tries[fl.path] = (fl.since, fl.retries, fl.reason)
            if (
                fl.path in s.conflicts
            ):  # the conflict copy could not be written: write it again
                self._conflict(
                    s,
                    fl.path,
                    n.iteration,
                    "" if n.isDeletion else n.contentHash,
                    n,
                    items,
                )
            else:
                self._notification(s, n, items)
        s.dirty = True
        self._send_items(s, items)
        self._advance(s)

    def on_tick(self, space: dict[str, os.statvfs_result]) -> None:
        now = time.monotonic()
        for s in list(self.syncs.values()):
            self._check_space(s, space.get(s.sid))
            if s.state != "active":
                continue
            self._retry_failed(s, now)
            if s.sid in self.scan_progress:
                s.dirty = (
                    True  # the watcher's listing moves on: the panel shows how far
                )
            if s.inflight and now - s.sent_at > INFLIGHT_TIMEOUT_S:
                for seq in list(s.inflight):
                    e = s.entries.get(seq)
                    if e is not None:
                        e.state = "pending"
                s.inflight.clear()
            if now - s.heard_at > LINK_SILENT_S:
                # the connection process may have been restarted: it knows no links then
                s.heard_at = now
                self.ctx.send(
                    "connection",
                    StartReplication(
                        sessionId=s.sid,
                        replicaId=s.replica_id,
                        sinceSequence=s.last_seq,
                        spoolDir=str(self.spool_root / s.sid),
                    ),
                )
            self._send_pending(s)


def _unusable(path: Path, e: OSError) -> CommandError:
    return CommandError(
        "FOLDER_UNUSABLE",
        f"start_sync: cannot sync into {path}: {folder_error_reason(e)}",
    )


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _has_files(root: Path) -> bool:
    """Any file (not editor noise) anywhere under root."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        rel = os.path.relpath(dirpath, root)
        for name in filenames:
            if not is_noise(name if rel == "." else f"{rel}/{name}"):
                return True
    return False


def _text(root: Path, rel: str | None) -> str | None:
    """A file's text for the conflict view: None when absent, binary or too large."""
    if not rel:
        return None
    try:
        p = confined(root, rel)
        if not p.is_file() or p.stat().st_size > TEXT_LIMIT:
            return None
        data = p.read_bytes()
        if b"\0" in data:
            return None
        return data.decode("utf-8")
    except (UnsafePath, OSError, UnicodeDecodeError):
        return None
