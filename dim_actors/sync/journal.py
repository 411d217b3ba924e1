"""The journal actor: the durable record of every local and upstream change, and the
sync engine.

It owns the sync commands (start_sync, stop_sync, sync_status, resolve_conflict) and,
per synced session, what is known of every path (state.py), kept in SQLite (store.py).
What each event means is decided in reconcile.py (docs/sync.md); the journal gathers the
facts, carries the decision out and tells the other actors:

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

A link that reports ``readOnly`` (the mirror of a gateway without /replicate,
connection/mirror.py) gets no write-backs at all: local changes stay pending here
(nothing lost, nothing overwritten), upstream changes to locally edited files still go
beside them as conflicts, and the status says so (``mode: "mirror"``, ``modeNote``,
``localEdits``).

Everything is written through in one transaction per message, so a crash loses nothing:
pending write-backs are sent after a restart (the gateway answers a resend with its
first answer), and replication resumes after the last sequence applied.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import uuid
from collections import deque
from typing import Any

import msgspec

from dim_actors.config.settings import Settings
from dim_actors.kernel.actor import DimActor
from dim_actors.messages import (
    AckSequence,
    EchoCounts,
    ForgetSession,
    InvokeResult,
    JournalRecord,
    LocalChanges,
    LocalFile,
    Materialize,
    Materialized,
    MaterializedItem,
    MaterializeItem,
    Msg,
    ReplicationState,
    ReplicationUpdate,
    ScanProgress,
    SendWriteBack,
    StartReplication,
    StopReplication,
    SyncCommand,
    SyncTick,
    UiEvent,
    UnwatchFolder,
    WatcherFiguresWanted,
    WatcherIncident,
    WatchFolder,
    WriteBackOutcome,
    envelope,
)
from dim_actors.sync import commands, delivery, outbox, reconcile
from dim_actors.sync.commands import LOW_SPACE, USER_PAUSE, CommandError
from dim_actors.sync.hashing import file_hash
from dim_actors.sync.paths import Confiner, UnsafePath, os_error_reason
from dim_actors.sync.reconcile import SPACE_FREED, free_space_floor
from dim_actors.sync.state import (
    Conflict,
    Entries,
    Entry,
    FileRec,
    ScanWork,
    Sync,
)
from dim_actors.sync.status import RECENT_UPLOADS_SHOWN, refused_status, status_view
from dim_actors.sync.store import Store
from dim_actors.wire import replication as wire

__all__ = ["Entries", "Entry", "FileRec", "Journal", "JournalStep"]

log = logging.getLogger(__name__)

TICK_S = 0.5
# no word from a replication link this long: ask the connection again
LINK_SILENT_S = 10.0
SPACE_CHECK_S = 2.0  # the sync folder's free space is looked at this often
# A LocalChanges bigger than this (a first scan of a big folder) is handled in steps of
# at most this many files or STEP_S, one transaction each, the journal sending itself a
# JournalStep between them: other messages (sync_status) are answered in between, and no
# message comes near the hang timeout.
STEP_FILES = 2000
STEP_S = 0.5
# How long a new journal waits for the database's write lock (held by an instance just
# replaced, until its next step boundary) before it gives up with a clear error. Below
# the 10 s and more the supervisor gives an on_start (shutdown_timeout_s + 10), so the
# error is this one, not a timeout.
LOCK_WAIT_S = 10.0
# A new sync into an empty folder is written before the folder is watched (see
# _hold_watch), at most this long: then it is watched whatever is still on its way.
HOLD_WATCH_MAX_S = 60.0


class JournalStep(Msg, tag="journal_step"):
    """The journal's own continuation: the next step of a backlog of local changes
    (never logged: it goes straight to the instance that sent it, so a replaced
    instance's steps die with it)."""


class Superseded(RuntimeError):
    """This instance was replaced (declared hung): it must not write the successor's
    database."""


class Journal(DimActor):
    def on_start(self) -> None:
        super().on_start()
        self.db_path = self.ctx.home.data_dir / "journal.sqlite"
        # sessionId -> the newest write-backs upstream accepted (sync_status's
        # recentUploads: the page tells a local edit from the agent's by them)
        self.uploads: dict[str, deque[dict[str, Any]]] = {}
        # Opened in the actor's own thread: sqlite3 connections belong to the thread
        # that made them. The busy timeout is how long a write waits for the lock: an
        # instance declared hung and replaced lets go of it at its next step boundary
        # (well under a second), so waiting LOCK_WAIT_S and then failing with a clear
        # error beats failing at once and being restarted in a loop.
        try:
            self.store = Store(self.db_path, LOCK_WAIT_S)
        except sqlite3.OperationalError as e:
            if "locked" in str(e):
                raise RuntimeError(
                    f"the sync journal {self.db_path} stayed locked for "
                    f"{LOCK_WAIT_S:g} s by another writer (an earlier instance of the "
                    "journal that has not let go of it); sync waits until it does"
                ) from e
            raise
        # a step stays well inside the hang timeout, however low it is set
        self.step_s = min(STEP_S, (self.ctx.settings or Settings()).hang_timeout_s / 4)
        self.step_queued = False
        self.closed = False  # let go after being replaced (see handle)
        # The watcher's figures, as it last told them (ScanProgress, EchoCounts); asked
        # for again now, since a restarted journal has lost them. sid -> files the
        # watcher has listed so far in a first full scan under way (see
        # status.scan_view)
        self.scan_progress: dict[str, int] = {}
        # sid -> the echoes of our own writes the watcher suppressed, and leaked
        self.echo_counts: dict[str, EchoCounts] = {}
        self.ctx.send("watcher", WatcherFiguresWanted())
        self.spool_root = self.ctx.home.data_dir / "sync-spool"
        settings = self.ctx.settings
        self.sync_root: str | None = settings.sync_root if settings else None
        self.auto_start: bool = bool(settings and settings.sync_auto_start)
        self.extra_ignore: list[str] = (
            list(settings.sync_extra_ignore) if settings else []
        )
        self.max_file: int = (settings or Settings()).sync_max_file_mb << 20
        self.floor_mb: int | None = settings.sync_min_free_mb if settings else None
        # sessions whose sync_auto_start was refused (a non-empty folder...): shown by
        # sync_status
        self.refused: dict[str, dict[str, Any]] = {}
        self.syncs: dict[str, Sync] = self.store.load()
        # sid -> (since when, a heartbeat came since): new syncs whose folder is not
        # watched yet (_hold_watch)
        self.held: dict[str, tuple[float, bool]] = {}
        # sid -> the message's path checks (paths.Confiner), for this message only
        self.confiners: dict[str, Confiner] = {}
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
            "changes": self.store.recorded,
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
        self.store.close()

    def on_failure(self, exception_type, exception_value, traceback) -> None:
        self.stop_ticks.set()
        # pykka runs no on_stop after a failure: the connection (rolled back by the
        # failed message's transaction) is closed here, so nothing of this instance
        # stays in the successor's way.
        try:
            self.store.close()
        except Exception:
            pass
        super().on_failure(exception_type, exception_value, traceback)

    def _check_current(self) -> None:
        """At a step boundary: an instance the supervisor has replaced stops here, its
        transaction rolled back, instead of writing on beside its successor."""
        if self.superseded():
            raise Superseded(
                "replaced by a new instance of the journal; stopping at a step boundary"
            )

    # --- persistence ------------------------------------------------------------------

    def _save_sync(self, s: Sync) -> None:
        self.store.save_sync(s)
        s.dirty = True

    def _save_file(self, s: Sync, path: str) -> None:
        self.store.save_file(s.sid, path, s.files[path])

    def _save_conflict(self, s: Sync, c: Conflict) -> None:
        self.store.save_conflict(s.sid, c)
        s.dirty = True

    def _applied(
        self, s: Sync, path: str, target: str, deletion: bool, it: int, seq: int | None
    ) -> None:
        """An upstream state recorded as applied: written here, or here already."""
        self.store.record(
            s.sid,
            "upstream",
            path,
            target,
            deletion,
            "applied",
            iteration=it,
            sequence=seq,
        )

    # --- messages ---------------------------------------------------------------------

    def handle(self, sender: str, body: Msg) -> None:
        if self.closed:
            return
        # Its own timers and steps reach an instance straight, not through its address:
        # once it is replaced they are the only way it could still write, so it stops at
        # the first of them.
        if isinstance(body, (SyncTick, JournalStep)) and self.superseded():
            self._let_go()
            return
        try:
            self._handle(body)
        except Superseded:
            self._let_go()  # the step's transaction was rolled back on the way out
        finally:
            self.confiners.clear()

    def _let_go(self) -> None:
        log.warning(
            "journal: this instance was replaced; it stops here and closes its database"
        )
        self.closed = True
        self.stop_ticks.set()
        self.store.close()

    def _handle(self, body: Msg) -> None:
        space = (
            self._look_at_space(time.monotonic()) if isinstance(body, SyncTick) else {}
        )
        # one transaction per message: all of it or, after a crash, none of it
        with self.store.db:
            match body:
                case SyncTick():
                    self.on_tick(space)
                case JournalStep():
                    self.step_queued = False
                    self._step()
                case SyncCommand():
                    self.on_command(body)
                case ReplicationUpdate():
                    self.on_update(body)
                case Materialized():
                    self.on_materialized(body)
                case LocalChanges():
                    self.on_local(body)
                case WriteBackOutcome():
                    self.on_outcome(body)
                case ReplicationState():
                    self.on_link(body)
                case WatcherIncident():
                    self.on_incident(body)
                case ScanProgress(sessionId=sid, listed=None):
                    self.scan_progress.pop(sid, None)
                case ScanProgress(sessionId=sid, listed=int(listed)):
                    self.scan_progress[sid] = listed
                case EchoCounts():
                    self.echo_counts[body.sessionId] = body
                case JournalRecord():
                    self.store.record_plain(
                        body.sessionId,
                        body.origin,
                        body.path,
                        body.contentHash,
                        body.isDeletion,
                        body.baseIteration,
                    )
                case _:
                    raise TypeError(
                        f"journal: unexpected message {type(body).__name__}"
                    )
        self._push_statuses(throttle=not isinstance(body, SyncTick))

    # --- commands ---------------------------------------------------------------------

    def on_command(self, cmd: SyncCommand) -> None:
        try:
            c = commands.parse(cmd.command, cmd.args)
            result = None if c is None else self._run(c)
        except CommandError as e:
            error = {"code": e.code, "message": e.message}
            self.ctx.send(
                "uibridge", InvokeResult(reqId=cmd.reqId, ok=False, error=error)
            )
            return
        if result is not None:  # None: an auto-start, which nobody waits for
            self.ctx.send(
                "uibridge", InvokeResult(reqId=cmd.reqId, ok=True, result=result)
            )

    def _run(self, c: commands.Command) -> dict[str, Any] | None:
        match c:
            case commands.AutoStart(session_id=sid, name=name):
                self.auto_start_sync(sid, name)
                return None
            case commands.PauseAll(pause=pause):
                return self.pause_all(pause)
            case commands.StartSync(session_id=sid, local_dir=local_dir, name=name):
                if local_dir is None:
                    local_dir = commands.start_folder(
                        self.sync_root, self.syncs, sid, name
                    )
                return self.start_sync(sid, local_dir, c.confirm)
            case commands.StopSync(session_id=sid):
                s = commands.synced(self.syncs, sid)
                self._halt(s, "stopped", None)
                return self.status(s)
            case commands.SyncStatus(session_id=sid):
                if sid not in self.syncs and sid in self.refused:
                    return self.refused[sid]
                return self.status(commands.synced(self.syncs, sid))
            case commands.AllStatuses():
                return {"statuses": [self.status(s) for s in self.syncs.values()]}
            case commands.SyncDefaults(session_id=sid, name=name):
                known = self.syncs.get(sid)
                return {
                    "localDir": known.local_dir
                    if known
                    else commands.folder_for(self.sync_root, self.syncs, sid, name),
                    "syncRoot": self.sync_root,
                    "autoStart": self.auto_start,
                }
            case commands.ResolveConflict(session_id=sid, path=path, resolution=res):
                return self.resolve(sid, path, res)

    def auto_start_sync(self, sid: str, name: str | None) -> None:
        """The page joined a session: with sync_auto_start (and a sync_root), a session
        never synced starts syncing into its default folder. One the user stopped or
        paused stays so; a refusal (a foreign non-empty folder above all) is never
        confirmed here: sync_status shows it."""
        if not (self.auto_start and self.sync_root) or sid in self.syncs:
            return
        local_dir = commands.folder_for(self.sync_root, self.syncs, sid, name)
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
            self._show(self.refused[sid])

    def _refused_status(
        self, sid: str, local_dir: str | None, e: CommandError
    ) -> dict[str, Any]:
        return refused_status(
            sid,
            local_dir,
            e.code,
            e.message,
            max_file=self.max_file,
            echo_counts=self.echo_counts.get(sid, EchoCounts(sid)).stats(),
        )

    def start_sync(self, sid: str, local_dir: object, confirm: bool) -> dict[str, Any]:
        plan = commands.plan_start(
            sid, local_dir, confirm, self.ctx.home.root, self.syncs
        )
        s = self.syncs.get(sid)
        if s is None or plan.kind == "new":
            # a new folder: nothing of what we knew about a local copy holds
            self.store.forget_files(sid)
            replica_id = s.replica_id if s else uuid.uuid4().hex
            s = self.syncs[sid] = Sync(sid, plan.folder, replica_id, "active")
        elif plan.kind == "again":
            self._begin(s, reset_link=False)
            return self.status(s)
        elif plan.kind == "restore":
            self._restore(s)
        s.state, s.error, s.warning = "active", None, None
        s.incidents.clear()
        self.refused.pop(sid, None)
        self._save_sync(s)
        self._begin(s, reset_link=True, hold=plan.kind == "new" and _empty(s.root))
        return self.status(s)

    def _restore(self, s: Sync) -> None:
        """Resume after the folder was deleted or emptied: upstream's files come back;
        local deletions that were held are dropped (edits that were pending stay)."""
        for e in list(s.entries.values()):
            if e.deletion:
                self.store.entry_state(e.seq, "discarded")
                del s.entries[e.seq]
        for path, f in s.files.items():
            if f.local_hash and not os.path.lexists(s.root / path):
                f.local_hash = ""
                self._save_file(s, path)
        # Everything is offered again (from sequence 0). The iterations stay what they
        # are: they are what the files on disk, and the edits waiting, are based on. A
        # path whose file is what upstream has is skipped; a missing one is written
        # again (_notification).
        s.last_seq = s.max_seen = 0
        s.outstanding.clear()

    def _begin(self, s: Sync, reset_link: bool, hold: bool = False) -> None:
        s.heard_at = time.monotonic()
        if hold:
            self.held[s.sid] = (s.heard_at, False)
        else:
            self._watch(s)
        if reset_link:
            self.ctx.send("connection", StopReplication(sessionId=s.sid))
        self._start_link(s, s.last_seq)
        s.dirty = True

    def _watch(self, s: Sync) -> None:
        self.held.pop(s.sid, None)
        self.ctx.send("watcher", WatchFolder(sessionId=s.sid, localDir=s.local_dir))

    def _hold_watch(self, s: Sync, heartbeat: bool = False) -> None:
        """A new sync into an empty folder: its first files are written before the folder
        is watched, so the watcher (and watchdog's threads) see none of those writes one
        by one; once they are done, the watch starts with a full scan, which knows the
        materializer's files by the (size, mtime, inode) it left them with (told ahead,
        WritesAhead) and finds anything else, such as the user's edit made meanwhile.
        Written means: a heartbeat came (a catch-up page is in: a gateway that pages a
        long catch-up may send more, written while the folder is watched, told ahead as
        any write is) and nothing is being written or waits to be. The watch starts
        anyway when the link fails (retrying, refused: seen at a tick), or after
        HOLD_WATCH_MAX_S."""
        held = self.held.get(s.sid)
        if held is None:
            return
        since, beat = held
        if heartbeat and not beat:
            self.held[s.sid] = since, beat = since, True
        if (beat and not s.materializing and not s.queued) or (
            time.monotonic() - since > HOLD_WATCH_MAX_S
        ):
            self._watch(s)

    def _start_link(self, s: Sync, since: int) -> None:
        self.ctx.send(
            "connection",
            StartReplication(
                sessionId=s.sid,
                replicaId=s.replica_id,
                sinceSequence=since,
                spoolDir=str(self.spool_root / s.sid),
            ),
        )

    def pause_all(self, pause: bool) -> dict[str, Any]:
        """Pause every active sync (nothing watched or replicated; local edits are found
        by the rescan on resume), or resume those paused that way."""
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

    def _halt(self, s: Sync, state: str, error: str | None) -> None:
        s.state, s.error = state, error
        self.held.pop(s.sid, None)
        self.ctx.send("watcher", UnwatchFolder(sessionId=s.sid))
        self.ctx.send("connection", StopReplication(sessionId=s.sid))
        self.ctx.send("materializer", ForgetSession(sessionId=s.sid))
        s.materializing.clear()
        s.accepting.clear()  # the conflict is still there: the user chooses again
        s.queued.clear()
        s.backlog.clear()  # the rescan at the next start lists every file again
        delivery.forget_sequences(s)
        s.max_seen = s.last_seq
        for e in outbox.requeue(s):
            self.store.entry_state(e.seq, "pending")
        s.link = "stopped"
        self._save_sync(s)
        self._push(s)

    # --- status -----------------------------------------------------------------------

    def status(self, s: Sync, texts: bool = True) -> dict[str, Any]:
        return status_view(
            s,
            max_file=self.max_file,
            echo_counts=self.echo_counts.get(s.sid, EchoCounts(s.sid)).stats(),
            listed=self.scan_progress.get(s.sid),
            texts=texts,
            uploads=list(self.uploads.get(s.sid, ())),
            watching=s.sid not in self.held,
        )

    def _show(self, status: dict[str, Any]) -> None:
        payload = msgspec.Raw(msgspec.json.encode(status))
        self.ctx.send("uibridge", UiEvent(event="sync-status", payload=payload))

    def _push(self, s: Sync) -> None:
        s.dirty = False
        s.pushed_at = time.monotonic()
        self._show(self.status(s))

    def _push_statuses(self, throttle: bool) -> None:
        now = time.monotonic()
        for s in self.syncs.values():
            if s.dirty and (not throttle or now - s.pushed_at >= 0.25):
                self._push(s)

    # --- upstream ---------------------------------------------------------------------

    def on_update(self, u: ReplicationUpdate) -> None:
        s = self.syncs.get(u.sessionId)
        if s is None or s.state != "active":
            return
        s.heard_at = time.monotonic()
        if s.link != "connected":
            s.link, s.link_detail, s.dirty = "connected", "", True
        if u.fullResync is not None:
            # the mirror resyncs at every connect: its ordinary start, no incident
            if not s.read_only:
                self._incident(s, "full_resync", u.fullResync)
            self._forget_upstream(s)
        items: list[MaterializeItem] = []
        for n in u.notifications:
            delivery.expect(s, n.sequence)
            self._notification(s, n, items)
        if u.sequence is not None:
            s.max_seen = max(s.max_seen, u.sequence)
        self._send_items(s, items)
        self._advance(s)
        self._hold_watch(s, heartbeat=u.sequence is not None)

    def _forget_upstream(self, s: Sync) -> None:
        """A new upstream (a full resync): its iterations and sequences mean nothing
        here. Everything is offered again from sequence 0; what is already here is
        skipped by hash."""
        for path, f in s.files.items():
            f.iteration = 0
            self._save_file(s, path)
        delivery.forget_sequences(s)
        s.last_seq = s.max_seen = 0
        self._save_sync(s)

    def _advance(self, s: Sync) -> None:
        cursor = delivery.ack_cursor(s)
        if cursor is not None:
            s.last_seq = cursor
            self._save_sync(s)
            self.ctx.send(
                "connection", AckSequence(sessionId=s.sid, upToSequence=cursor)
            )

    def _send_items(self, s: Sync, items: list[MaterializeItem]) -> None:
        for batch in delivery.batches(items):
            self.ctx.send(
                "materializer",
                Materialize(sessionId=s.sid, localDir=s.local_dir, items=batch),
            )

    def _refuse(self, s: Sync, n: wire.Notification, reason: str) -> None:
        log.warning("sync %s: refused an upstream change: %s", s.sid, reason)
        s.rejected.append(
            {
                "path": str(n.filepath)[:300],
                "reason": reason,
                "at": int(time.time() * 1000),
            }
        )
        self.store.record(
            s.sid,
            "upstream",
            str(n.filepath)[:4096],
            n.contentHash,
            n.isDeletion,
            "rejected",
            iteration=n.iteration,
            reason=reason,
            sequence=n.sequence,
        )
        s.dirty = True
        delivery.done(s, n.sequence)

    def _notification(
        self, s: Sync, n: wire.Notification, items: list[MaterializeItem]
    ) -> None:
        where = reconcile.upstream_path(n)
        if where.kind == "unsafe":
            self._refuse(s, n, where.reason)
            return
        path = where.path
        delivery.unfail(s, path, n)
        if where.kind == "too_long":
            if n.isDeletion:  # it was never written here either
                delivery.done(s, n.sequence)
            # only a newer state (a shorter name) can change that: not tried again
            # meanwhile
            else:
                delivery.fail(s, path, n, where.reason, retry=False)
            return
        try:
            confiner = self.confiners.get(s.sid)
            if confiner is None:
                confiner = self.confiners[s.sid] = Confiner(s.root)
            confiner.check(path)
        except UnsafePath as e:
            self._refuse(s, n, str(e))
            return
        except OSError as e:
            delivery.fail(s, path, n, os_error_reason(e), retry=True)
            return
        c = s.conflicts.get(path)
        facts = reconcile.PathFacts(
            file=s.files.get(path) or FileRec(),
            entries=tuple(s.entries.of_path(path)),
            conflict=c,
            copy_on_disk=bool(c and c.copy and os.path.lexists(s.root / c.copy)),
            writing=path in s.materializing,
            read_only=s.read_only,
        )
        d = reconcile.upstream_change(n, facts)
        # a state that names the path: it has a record from now on
        if d.kind != "invalid_hash":
            s.files.setdefault(path, facts.file)
        self._carry_out(s, n, path, d, items)
        if d.kind in ("invalid_hash", "seen", "queue"):
            return
        if d.renamed_from is not None and n.renamedFromIteration is not None:
            delivery.expect(s, n.sequence)
            self._notification(
                s,
                wire.Notification(
                    sequence=n.sequence,
                    filepath=d.renamed_from,
                    contentHash="",
                    size=0,
                    permissions=0,
                    isDeletion=True,
                    iteration=n.renamedFromIteration,
                ),
                items,
            )

    def _carry_out(
        self,
        s: Sync,
        n: wire.Notification,
        path: str,
        d: reconcile.UpstreamDecision,
        items: list[MaterializeItem],
    ) -> None:
        """An upstream notification's decision (reconcile.upstream_change), done."""
        f, target = s.files.get(path) or FileRec(), d.target
        match d.kind:
            case "invalid_hash":
                at = int(time.time() * 1000)
                s.rejected.append(
                    {"path": path, "reason": "invalid content hash", "at": at}
                )
            case "seen":
                pass
            case "queue":
                older = s.queued.get(path)
                if older is not None:
                    delivery.done(s, older.sequence)
                s.queued[path] = n  # after the write in flight
                return
            case "mirror_known" | "base_unchanged":
                f.iteration = n.iteration
                self._save_file(s, path)
            case "conflict_gone":
                c = s.conflicts.pop(path)
                self.store.delete_conflict(s.sid, path)
                if c.copy:
                    delivery.remove_copy(s, c.copy)
                for e in s.entries.of_path(path):
                    self._drop(s, e, "superseded")
                f.iteration, f.upstream_hash = n.iteration, target
                self._save_file(s, path)
                self._applied(s, path, target, n.isDeletion, n.iteration, n.sequence)
                s.dirty = True
            case "conflict":
                self._conflict(s, path, n.iteration, target, n, items)
                return
            case "take":
                f.iteration, f.upstream_hash = n.iteration, target
                f.mode = n.permissions or f.mode
                for e in s.entries.of_path(path):
                    if e.state == "pending" and e.hash == target:
                        self._drop(s, e, "superseded")
                self._save_file(s, path)
                self._applied(s, path, target, n.isDeletion, n.iteration, n.sequence)
            case "own_echo":
                f.iteration, f.upstream_hash = n.iteration, target
                self._save_file(s, path)
            case "materialize":
                items.append(delivery.write(s, n, path, target, d.renamed_from))
                return
        delivery.done(s, n.sequence)

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
        f = s.file(path)
        old = s.conflicts.get(path)
        if old is not None and old.copy:
            delivery.remove_copy(s, old.copy)
        lh = f.local_hash
        if not lh and os.path.lexists(s.root / path):
            lh = file_hash(s.root / path) or ""
        c = s.conflicts[path] = Conflict(
            path, lh, iteration, target, None, old.since if old else time.time()
        )
        f.iteration, f.upstream_hash = iteration, target
        if n is not None:
            f.mode = n.permissions or f.mode
        self._save_file(s, path)
        for e in s.entries.of_path(path):
            if e.state == "pending":
                e.state = "held"
                self.store.entry_state(e.seq, "held")
        self._save_conflict(s, c)
        self.store.record(
            s.sid,
            "upstream",
            path,
            target,
            not target,
            "conflict",
            iteration=iteration,
            sequence=n.sequence if n else None,
        )
        item = delivery.write_copy(s, path, iteration, target, n)
        if item is not None:
            items.append(item)
        self._incident(
            s, "conflict", f"{path}: upstream iteration {iteration} and a local change"
        )
        s.counts["conflicts"] += 1

    def on_materialized(self, m: Materialized) -> None:
        s = self.syncs.get(m.sessionId)
        if s is None or s.state != "active":
            return
        items: list[MaterializeItem] = []
        now_ms = int(time.time() * 1000)
        for r in m.results:
            self._written(s, r, items, now_ms)
            # a newer state that waited behind this write
            nxt = s.queued.pop(r.path, None)
            if nxt is not None and r.path not in s.materializing:
                self._notification(s, nxt, items)
        s.dirty = True
        self._send_items(s, items)
        self._advance(s)
        self._send_pending(s)
        self._hold_watch(s)

    def _written(
        self, s: Sync, r: MaterializedItem, items: list[MaterializeItem], now_ms: int
    ) -> None:
        """One write's result (reconcile.materialized), done."""
        pending = s.materializing.get(r.path)
        seq = note = None
        accepting = False
        if pending is not None and pending.iteration == r.iteration:
            del s.materializing[r.path]
            seq = pending.sequence
            note = s.notes.pop(r.path, None)
            accepting = r.path in s.accepting
            s.accepting.discard(r.path)
        kind = reconcile.materialized(r.outcome, accepting)
        if kind == "accept_failed":
            # The choice is not lost: the conflict, its copy and the held changes stay
            # as they were (in the database too), and the user can choose again.
            delivery.fail(
                s,
                r.path,
                None,
                f"{r.detail or 'could not be written'}; the conflict "
                "stays: choose again once the file can be written",
                retry=False,
            )
            return
        if kind != "failed":
            s.tries.pop(r.path, None)
        f = s.file(r.path)
        match kind:
            case "applied":
                target = pending.target if pending else r.hash
                self._write_applied(s, r, target, seq, now_ms)
                if accepting:
                    self._settle_accept(s, r.path)
            case "copied":
                c = s.conflicts.get(r.path)
                if c is not None and c.iteration == r.iteration:
                    c.copy = r.detail
                    self._save_conflict(s, c)
            case "local_changed":
                # the user saved over it meanwhile: nothing was overwritten; a conflict
                target = pending.target if pending else ""
                f.local_hash = r.hash if r.hash != "-" else f.local_hash
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
                    delivery.expect(s, seq)
                self._conflict(s, r.path, r.iteration, target, n, items)
            case "rejected":
                s.rejected.append({"path": r.path, "reason": r.detail, "at": now_ms})
                self.store.record(
                    s.sid,
                    "upstream",
                    r.path,
                    "",
                    False,
                    "rejected",
                    iteration=r.iteration,
                    reason=r.detail,
                    sequence=seq,
                )
            case "failed":
                # that item only; its change stays unacknowledged and is tried again
                reason = r.detail or "could not be written"
                if delivery.write_failed(
                    s, r.path, r.iteration, reason, pending, note, bool(seq)
                ):
                    seq = None
        if seq is not None:
            delivery.done(s, seq)

    def _write_applied(
        self, s: Sync, r: MaterializedItem, target: str, seq: int | None, now_ms: int
    ) -> None:
        f = s.file(r.path)
        f.iteration, f.upstream_hash = max(f.iteration, r.iteration), target
        f.local_hash = r.hash if r.outcome != "deleted" else ""
        self._save_file(s, r.path)
        # a save recorded while this write was in flight: it came after the write (else
        # the materializer would have found the file changed), so it is based on it
        self._rebase_pending(s, r.path, f.iteration)
        deleted = r.outcome == "deleted"
        self._applied(s, r.path, target, deleted, r.iteration, seq)
        s.last_sync_at = now_ms
        s.counts["upstreamApplied"] += 1

    # --- local ------------------------------------------------------------------------

    def _rebase_pending(
        self, s: Sync, path: str, iteration: int, after: Entry | None = None
    ) -> None:
        """The pending saves of `path` are based on `iteration` now: one just written or
        accepted that they came after. With `after`: only those recorded after it on
        its base (the saves made on top of it)."""
        for e in s.entries.of_path(path):
            if (
                e.state == "pending"
                and e.base != iteration
                and (after is None or (e.seq > after.seq and e.base == after.base))
            ):
                e.base = iteration
                self.store.entry_state(e.seq, "pending", base=iteration)

    def on_local(self, msg: LocalChanges) -> None:
        s = self.syncs.get(msg.sessionId)
        if s is None or s.state != "active":
            return
        if s.backlog or len(msg.changes) > STEP_FILES:
            # in steps; a later change waits behind the backlog, so the order of a
            # path's states holds
            s.backlog.append(ScanWork(list(msg.changes), msg.scan))
            s.dirty = True
            self._continue()
            return
        for lf in msg.changes:
            self._local(s, lf)
        if msg.scan:
            self._deleted(s, outbox.scan_end(s, msg.changes, self.extra_ignore))
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
                # stopped or paused meanwhile: a rescan follows any resume
                s.backlog.clear()
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
                        self._deleted(
                            s, outbox.scan_end(s, w.changes, self.extra_ignore)
                        )
            s.dirty = True
            self._send_pending(s)
        if any(s.backlog for s in self.syncs.values()):
            self._continue()

    def _deleted(self, s: Sync, paths: list[str]) -> None:
        for path in paths:
            self._local(s, LocalFile(path, "", 0, 0))

    def _local(self, s: Sync, lf: LocalFile) -> None:
        problem = reconcile.local_problem(lf, self.max_file)
        if problem is not None:
            outbox.unsyncable(s, lf, *problem, self.max_file)
            return
        outbox.syncable(s, lf.path)
        path, h = lf.path, lf.hash
        writing = s.materializing.get(path)
        facts = reconcile.LocalFacts(
            file=s.files.get(path),
            entries=tuple(s.entries.of_path(path)),
            in_conflict=path in s.conflicts,
            writing_hash=writing.target if writing is not None else None,
        )
        kind = reconcile.local_change(lf, facts)
        if kind in ("own_write", "untracked_gone", "unchanged"):
            return
        f = s.file(path)
        if kind == "chmod":
            f.mode = lf.mode  # sent with the next change
            self._save_file(s, path)
            return
        f.local_hash = h
        if lf.mode:
            f.mode = lf.mode
        self._save_file(s, path)
        s.dirty = True
        if kind == "conflict_edit":
            c = s.conflicts[path]
            c.local_hash = h
            self._save_conflict(s, c)
            return
        if kind == "equals_upstream":
            return
        for e in facts.entries:
            if e.state == "pending":
                self._drop(s, e, "superseded")
        # The file on disk came from upstream iteration f.iteration (0: none). While a
        # materialization of the path is in flight, the result moves that on
        # (on_materialized) if our write did land first.
        self._record_local(s, path, h, lf.size, time.time())
        s.counts["localChanges"] += 1

    def _record_local(
        self,
        s: Sync,
        path: str,
        h: str,
        size: int,
        recorded: float,
        reason: str | None = None,
    ) -> None:
        """A pending write-back of `path`'s file as it is (hash `h`, "" gone), based on
        its record."""
        f = s.file(path)
        seq = self.store.record(
            s.sid,
            "local",
            path,
            h,
            not h,
            "pending",
            base=f.iteration,
            size=size,
            mode=f.mode,
            reason=reason,
        )
        s.entries[seq] = Entry(
            seq, path, h, size, f.mode, not h, "pending", recorded, f.iteration
        )

    def _drop(self, s: Sync, e: Entry, state: str) -> None:
        self.store.entry_state(e.seq, state)
        s.entries.pop(e.seq, None)
        s.inflight.discard(e.seq)

    def _send_pending(self, s: Sync) -> None:
        batch = outbox.next_batch(s, time.time())
        if not batch:
            return
        why = outbox.deletion_guard(s, batch)
        if why is not None:
            self._pause(s, why)
            return
        items = []
        for e in batch:
            items.append(outbox.send(s, e))
            self.store.entry_state(e.seq, "sent", base=e.base)
        s.sent_at = time.monotonic()
        self.ctx.send("connection", SendWriteBack(sessionId=s.sid, entries=items))

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
            self.store.entry_state(e.seq, "accepted", iteration=a.iteration)
            s.counts["writeBacksAccepted"] += 1
            self.uploads.setdefault(s.sid, deque(maxlen=RECENT_UPLOADS_SHOWN)).append(
                {
                    "path": e.path,
                    "iteration": a.iteration,
                    "deleted": e.deletion,
                    "at": now_ms,
                }
            )
            f = s.file(e.path)
            if a.iteration >= f.iteration:
                f.iteration, f.upstream_hash = a.iteration, e.hash
                self._save_file(s, e.path)
            # A save recorded while this one was on its way was made on top of it: it is
            # based on what was just accepted, not on what this one was based on (else a
            # second save within a round trip would be taken for a conflict).
            self._rebase_pending(s, e.path, a.iteration, after=e)
            s.last_sync_at = now_ms
        for r in o.rejected:
            s.inflight.discard(r.localSeq)
            e = s.entries.get(r.localSeq)
            if e is None:
                continue
            kind = reconcile.write_back_rejected(
                r.reason,
                r.currentIteration,
                s.files.get(e.path) or FileRec(),
                e.path in s.conflicts,
                e.path in s.materializing,
            )
            match kind:
                case "conflict" | "await_conflict":
                    e.state = "held"
                    self.store.entry_state(e.seq, "held", reason=r.message)
                    f = s.file(e.path)
                    if kind == "conflict":
                        self._conflict(
                            s, e.path, f.iteration, f.upstream_hash, None, items
                        )
                case "look_again":
                    self._drop(s, e, "superseded")
                    full = s.root / e.path
                    h = file_hash(full) if full.is_file() else ""
                    f = s.file(e.path)
                    if (h or "") != f.local_hash or not s.entries.has_path(e.path):
                        f.local_hash = "\0"  # force a fresh look
                        size = full.stat().st_size if h else 0
                        self._local(s, LocalFile(e.path, h or "", size, f.mode))
                case "retry":
                    e.state = "pending"
                    self.store.entry_state(e.seq, "pending")
                case "drop":
                    self._drop(s, e, "rejected")
                    reason = f"{r.reason}: {r.message}"
                    s.rejected.append({"path": e.path, "reason": reason, "at": now_ms})
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
            # A two-way link after a mirror (another gateway, or this one gained
            # /replicate): what waited goes now. The mirror's sequences mean nothing to
            # /replicate: catch up from 0.
            s.read_only = False
            self._incident(
                s,
                "two_way",
                "the gateway has a replication endpoint: two-way sync resumes",
            )
            self._forget_upstream(s)
            self._start_link(s, 0)
        if st.state == "connected" and was != "connected":
            outbox.requeue(s)  # what was in flight on the old socket goes again
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
                f"the sync folder {s.local_dir} was deleted or moved away; sync is "
                "paused and nothing was deleted upstream. start_sync again to restore "
                "the files from upstream",
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

    # --- conflicts --------------------------------------------------------------------

    def resolve(self, sid: str, path: Any, resolution: Any) -> dict[str, Any]:
        s = commands.synced(self.syncs, sid)
        refusal = reconcile.resolve_refusal(
            sid, path, resolution, s.state, s.conflicts, s.accepting
        )
        if refusal is not None:
            raise CommandError(*refusal)
        fl = s.failed.get(path)
        if fl is not None and fl.note is None:
            # an earlier choice that could not be written: this one replaces it
            del s.failed[path]
        f = s.file(path)
        if resolution == "accept_upstream":
            # the conflict stays until the write lands (_settle_accept)
            self._send_items(s, [delivery.accept(s, path)])
            return {
                "path": path,
                "resolution": resolution,
                "status": self.status(s, texts=False),
            }
        c = s.conflicts.pop(path)
        self.store.delete_conflict(sid, path)
        held = s.entries.of_path(path)
        # keep_local, merged: the local file (as it is now) becomes the next upstream
        # iteration
        if c.copy:
            delivery.remove_copy(s, c.copy)
        for e in held:
            self._drop(s, e, "superseded")
        full = s.root / path
        h = (file_hash(full) or "") if full.is_file() else ""
        f.local_hash = h
        self._save_file(s, path)
        if h != f.upstream_hash:
            size = full.stat().st_size if h else 0
            # recorded "long ago": a kept deletion goes at once
            self._record_local(s, path, h, size, 0.0, reason=resolution)
        self.store.record(
            s.sid,
            "local",
            path,
            f.local_hash,
            not f.local_hash,
            "resolved",
            iteration=c.iteration,
            reason=resolution,
        )
        s.dirty = True
        self._send_pending(s)
        return {
            "path": path,
            "resolution": resolution,
            "status": self.status(s, texts=False),
        }

    def _settle_accept(self, s: Sync, path: str) -> None:
        """accept_upstream's write landed: now the conflict goes, and the local changes
        it held."""
        c = s.conflicts.pop(path, None)
        self.store.delete_conflict(s.sid, path)
        fl = s.failed.get(path)
        if fl is not None and fl.note is None:
            # an earlier try of this choice that failed
            del s.failed[path]
        for e in s.entries.of_path(path):
            self._drop(s, e, "discarded")
        f = s.file(path)
        self.store.record(
            s.sid,
            "local",
            path,
            f.local_hash,
            not f.local_hash,
            "resolved",
            iteration=c.iteration if c else None,
            reason="accept_upstream",
        )

    # --- time -------------------------------------------------------------------------

    def _look_at_space(self, now: float) -> dict[str, os.statvfs_result]:
        """The disks of the syncs due a look, by session. Outside the tick's
        transaction: a stalled network folder then keeps the journal waiting, but not
        the database's write lock with it."""
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
                # a folder that went: the watcher and the deletion guard deal with that
                pass
        return found

    def _check_space(self, s: Sync, st: os.statvfs_result | None) -> None:
        """Pause when the sync folder's disk is below the floor; resume once it is not.
        Space freed since the last look: failed writes are tried again at once."""
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
        match reconcile.space_verdict(s.state, low_paused, free, floor, before):
            case "pause":
                self._pause(
                    s,
                    f"{LOW_SPACE}: the disk of the sync folder {s.local_dir} has "
                    f"{_mib(free)} free, below the floor of {_mib(floor)}. Sync is "
                    "paused and resumes by itself once space is freed",
                )
            case "resume":
                log.info(
                    "sync %s: free space is back (%s); resuming", s.sid, _mib(free)
                )
                s.state, s.error = "active", None
                self._incident(
                    s, "space_back", f"{_mib(free)} free again: sync resumed"
                )
                self._save_sync(s)
                self._begin(s, reset_link=True)
            case "retry_now":
                for fl in s.failed.values():
                    fl.next_at = 0.0

    def _retry_failed(self, s: Sync, now: float) -> None:
        due = delivery.take_due(s, now)
        if not due:
            return
        items: list[MaterializeItem] = []
        for fl in due:
            n = fl.note
            assert n is not None
            if fl.path in s.conflicts:
                # the conflict copy could not be written: write it again
                target = "" if n.isDeletion else n.contentHash
                self._conflict(s, fl.path, n.iteration, target, n, items)
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
            if s.sid in self.held and s.link in ("retrying", "refused"):
                self._watch(s)  # nothing comes for now
            self._hold_watch(s)
            self._retry_failed(s, now)
            if s.sid in self.scan_progress:
                # the watcher's listing moves on: the panel shows how far
                s.dirty = True
            if outbox.timed_out(s, now):
                outbox.requeue(s)
            if now - s.heard_at > LINK_SILENT_S:
                # the connection process may have been restarted: it knows no links then
                s.heard_at = now
                self._start_link(s, s.last_seq)
            self._send_pending(s)


def _empty(folder: str | os.PathLike[str]) -> bool:
    try:
        with os.scandir(folder) as it:
            return next(it, None) is None
    except OSError:
        return False


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"
