"""The watcher actor: local edits in sync folders become LocalChanges for the journal
(watchdog).

* One watchdog observer per synced folder. Its handler only records paths with the debouncer; it
  never raises (an exception would silently end watchdog's thread) and never touches actor state:
  what it (and _OverflowSpotter, in watchdog's log) has to tell goes to the actor's mailbox as a
  WatchdogNote, handled on the actor's thread like any message.
* The debouncer hands a path over once it has been quiet for QUIET_S (at most MAX_WAIT_S after its
  first event), so an editor's save (write a temp file, rename over, delete the backup) is looked
  at once, when it is over: the file is there with new content, one change. A path whose writer
  is done by the events goes SETTLE_S after it instead: renamed into place, or closed after
  writing unless it was created meanwhile (a temp file about to be renamed away: pending_after).
  A file that changes while it is read to be hashed is not reported; it is looked at again.
* The actor looks at each path: ignored (editor noise, .git, .gitignore, the sync_extra_ignore
  setting) -> nothing; unchanged (size, mtime, inode as last seen) -> nothing; our own write (the
  echo set) -> nothing; else it is hashed and reported. A path found missing is looked at once more
  ABSENT_CONFIRM_S later, so a delete-then-create is never reported as a deletion. A change to a
  .gitignore rescans its folder, so files it no longer ignores are reported without being touched.
* A change about to be reported that is the materializer's own last write all the same (the echo
  set failed to suppress it) is counted per session as echoesLeaked (sync_status stats).
* Failures watchdog keeps quiet about are detected and answered with a full rescan, and reported to
  the journal (WatcherIncident): a dead observer or emitter thread (restarted), an inotify queue
  overflow (an EventsLostEvent from watchdog >= 7.1.1, only a log line before: _OverflowSpotter),
  folders that are not watched.
* The inotify watch limit (fs.inotify.max_user_watches) shows in one of two ways, depending on the
  watchdog version and on which watch fails: scheduling raises OSError(ENOSPC) (a failed root
  watch; from 7.1.1 any failed watch while the tree is first walked, which then leaves no watch at
  all), or a subfolder's failed watch is swallowed (7.1.0 always; 7.1.1 once the tree is watched:
  new folders, the rebuild after an overflow).
  For the second, after every scheduling (and overflow), and for every new folder, each folder of
  the tree is looked up in the kernel's list of the observer's watches in /proc/self/fdinfo. Either
  way the folder is polled (rescanned every POLL_S), a watch_limit incident carries the same
  warning (unwatched_warning: what happened, and the sysctl that fixes it), and the tree is
  scheduled again every RETRY_WATCH_S in case the limit was raised.
* The echo set is its own: the materializer tells it by message what it is about to write
  (WritesAhead, before the write) and what it then did not write (WritesAbandoned). It tells the
  journal the per-session echo counts (EchoCounts, when they changed: at a tick, and before it
  reports a change) and how far the
  first scan of a folder has come (ScanProgress, per step and at each tick while it runs), and
  tells both again when the journal asks (WatcherFiguresWanted: a restarted journal).
* The folders, the stat cache and the echo set live in its restart memory (WatcherMemory), so a
  restarted watcher rescans what it watched and still knows the writes it was told of.
"""

from __future__ import annotations

import collections
import errno
import importlib.metadata
import logging
import math
import os
import stat
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pykka
import watchdog.events
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from dim_actors.config.settings import Settings
from dim_actors.kernel.actor import ActorContext, DimActor
from dim_actors.messages import (
    EchoCounts,
    EchoWrite,
    FsEvent,
    LocalChanges,
    LocalFile,
    Msg,
    ScanProgress,
    SyncTick,
    UnwatchFolder,
    WatcherFiguresWanted,
    WatcherIncident,
    WatchFolder,
    WritesAbandoned,
    WritesAhead,
    envelope,
)
from dim_actors.sync.echoes import EchoSet
from dim_actors.sync.hashing import file_hash
from dim_actors.sync.ignore import GitIgnore, is_noise
from dim_actors.sync.paths import display_path, local_name_problem
from dim_actors.sync.wiring import WatcherMemory

log = logging.getLogger(__name__)

QUIET_S = 0.05
# A path whose writer is done by the events (closed after writing, renamed into place) is
# looked at this soon: enough to take the rest of a burst (a save's other events, the
# next file of a tool) in one look, not enough to be felt.
SETTLE_S = 0.002
MAX_WAIT_S = 2.0
ABSENT_CONFIRM_S = 0.15
POLL_S = 2.0
# while polling for want of watches: schedule again this often (the limit may be raised)
RETRY_WATCH_S = 30.0
# a failed observer is stopped this long after its failure (start_observer)
DISCARD_S = 2.0
BATCH = 2000  # paths per FsEvent / LocalChanges
# A full scan looks at most this many files, or for this long, per message, then sends
# itself a
# ScanStep: a folder of 100,000 files never holds the actor near the hang timeout, and
# events and ticks are handled between steps.
STEP_FILES = 2000
STEP_S = 0.5
HAVE_FDINFO = os.path.isdir("/proc/self/fdinfo")
try:
    # named in warnings about its internals
    WATCHDOG_VERSION = importlib.metadata.version("watchdog")
except importlib.metadata.PackageNotFoundError:
    WATCHDOG_VERSION = "?"
# watchdog >= 7.1.1 tells of an inotify queue overflow with an event to the handler;
# before, only with the log lines below, which _OverflowSpotter watches for
# (tests/test_watchdog_contract.py checks that the installed watchdog still gives the
# signal relied on).
EVENTS_LOST: str | None = getattr(watchdog.events, "EVENT_TYPE_EVENTS_LOST", None)
OVERFLOW_LOG_LINES = (
    "Inotify queue overflowed",
    "Unable to rebuild recursive inotify watches",
)
WATCHDOG_LOGGERS = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")


class IfKnown(Msg, tag="watcher_if_known"):
    """From the debouncer (straight to the instance, never logged): files created and
    closed after writing, which the watcher looks at now where it knows a file at that
    path (an editor's save that writes the file anew), claiming them from the debouncer;
    the others wait out the quiet period (a temp file, maybe, about to be renamed away:
    pending_after)."""

    sessionId: str
    paths: list[str]


class ScanStep(Msg, tag="watcher_scan_step"):
    """The watcher's own continuation of a full scan (straight to the instance, never
    logged)."""

    sessionId: str


class WatchdogNote(Msg, tag="watcher_watchdog_note"):
    """What watchdog's threads tell the watcher (straight to the instance, never
    logged): an incident of one folder (its event handler's), or, `sessionId` None, an
    overflow spotted in watchdog's log, which names no folder. The actor's mailbox is
    the only way their news crosses into the actor's thread."""

    sessionId: str | None
    incident: str
    detail: str


class ScanJob:
    """A walk under way: a full scan (`listing`: every file's state goes to the journal
    at the end) or the walk of one folder (a folder moved in, changed .gitignore rules:
    changes go as found)."""

    def __init__(self, f: Folder, rel: str = "", listing: bool = True):
        self.f = f
        self.listing = listing
        self.stack = [rel]
        self.entries: list[
            tuple[str, os.DirEntry]
        ] = []  # the rest of the folder being walked
        self.seen: list[str] = []
        self.present_before = set(f.cache) if listing else set()
        # another rescan was asked for meanwhile: start over when this one ends
        self.again = False
        # the first look at the folder (since it was watched): only its progress is
        # shown, not the rescans that follow (polling, health checks), which would keep
        # the panel "looking" forever
        self.first = listing and not f.listed


def _fdinfo_watches(fd: int | str) -> set[tuple[int, int]] | None:
    """(device, inode) of every watch of inotify instance `fd` of this process; None if
    unreadable."""
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            text = f.read()
    except OSError:
        return None
    out: set[tuple[int, int]] = set()
    for line in text.splitlines():
        if line.startswith("inotify wd:"):
            fields = dict(tok.split(":", 1) for tok in line.split()[1:] if ":" in tok)
            out.add((int(fields["sdev"], 16), int(fields["ino"], 16)))
    return out


def inotify_watches(fd: int) -> set[tuple[int, int]] | None:
    """(device, inode) of every watch of inotify instance `fd` of this process, from
    /proc/self/fdinfo; None where that cannot be read (not Linux, or the fd is closed).
    """
    return _fdinfo_watches(fd) if HAVE_FDINFO else None


def inotify_fd_watching(
    key: tuple[int, int], taken: Collection[int] = ()
) -> int | None:
    """The one inotify instance of this process, not among `taken`, with a watch on
    folder `key`; None when there is none, or more than one (they cannot be told apart).
    """
    if not HAVE_FDINFO:
        return None
    try:
        fds = [int(n) for n in os.listdir("/proc/self/fdinfo")]
    except OSError:
        return None
    found = [fd for fd in fds if fd not in taken and key in (_fdinfo_watches(fd) or ())]
    return found[0] if len(found) == 1 else None


def watch_key(st: os.stat_result) -> tuple[int, int]:
    """A folder as /proc's inotify lines name it: the kernel's dev_t (major << 20 |
    minor, not stat's encoding) and the inode."""
    return (os.major(st.st_dev) << 20) | os.minor(st.st_dev), st.st_ino


def observer_fd(observer: Any) -> int | None:
    """The inotify instance of a watchdog 7 InotifyObserver (each observer has its own),
    once a watch is scheduled. watchdog has no public way to it: this reads a private
    attribute, so a watchdog that changes it gives None, and the caller falls back on
    inotify_fd_watching (tests/test_watchdog_contract.py fails naming the watchdog
    version when that happens)."""
    fd = getattr(getattr(observer, "_inotify_fd", None), "_inotify_fd", None)
    return fd if isinstance(fd, int) else None


def _discard(observer: Any) -> None:
    try:
        observer.stop()
    except Exception:
        log.exception("watcher: stopping a failed observer failed")


def start_observer(root: str, handler: FileSystemEventHandler) -> tuple[Any, Any]:
    """A started observer watching the tree at `root`, and its watch. Raises OSError
    when watchdog cannot watch it (unwatched_warning says what that means to the user).
    A failed observer is stopped DISCARD_S later, not at once: stopping watchdog's
    inotify reader before its thread has begun reading leaves its inotify instance open
    (watchdog 7.1.1), and each one left open counts against the user's
    fs.inotify.max_user_instances, retry after retry."""
    observer = Observer()
    try:
        watch = observer.schedule(handler, root, recursive=True)
        observer.start()
    except BaseException:
        timer = threading.Timer(DISCARD_S, _discard, (observer,))
        timer.daemon = True
        timer.start()
        raise
    return observer, watch


def inotify_limit(name: str) -> int | None:
    """The limit in force for this process: fs.inotify.max_user_`name` ("watches",
    "instances"), or the lower one of the user namespace it runs in (a container, a
    sandbox); None if unreadable."""
    values = []
    for path in (
        f"/proc/sys/fs/inotify/max_user_{name}",
        f"/proc/sys/user/max_inotify_{name}",
    ):
        try:
            values.append(int(Path(path).read_text()))
        except (OSError, ValueError):
            continue
    return min(values, default=None)


def unwatched_warning(
    root: Path | str,
    error: OSError | None = None,
    folders: Collection[str] = (),
    limit: int | None = None,
) -> str:
    """sync_status.warning for a sync folder that is not (wholly) watched, in the user's
    words: what happened, what it means, what to do. `error`: watchdog could not watch
    the tree at all (from 7.1.1 that is also what a subfolder's failed watch does); else
    `folders` (paths relative to the root, "" the root) were found without a watch,
    which watchdog does not tell. `limit`: the current value of the limit concerned
    (inotify_limit), so the fix suggested is above it."""
    sysctl = None
    if error is None:
        names = sorted(r or "." for r in folders)
        listed = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        n = len(names)
        what = (
            f"{n} folder{'s' if n != 1 else ''} of {root} could not be watched for "
            f"changes ({listed})"
        )
        cause, sysctl = (
            "the inotify watch limit (fs.inotify.max_user_watches) is most likely reached",
            "watches",
        )
    elif error.errno == errno.ENOSPC:
        what = f"{root} could not be watched for changes"
        cause, sysctl = (
            "the inotify watch limit (fs.inotify.max_user_watches) is reached",
            "watches",
        )
    elif error.errno == errno.EMFILE:
        what = f"{root} could not be watched for changes"
        cause = (
            "the inotify instance limit (fs.inotify.max_user_instances) or the "
            "open-file limit is reached"
        )
        sysctl = "instances"
    else:
        what = f"{root} could not be watched for changes"
        cause = f"{error.strerror or error}"
    text = (
        f"{what}: {cause}. Changes there are picked up by a rescan every {POLL_S:g} s instead, and "
        f"watching is tried again every {RETRY_WATCH_S:g} s."
    )
    if sysctl:
        usual = 524288 if sysctl == "watches" else 1024
        now = f" (now {limit})" if limit is not None else ""
        text += (
            f" To fix it, raise the limit{now}: sudo sysctl "
            f"fs.inotify.max_user_{sysctl}={max(usual, 2 * (limit or 0))} (and the "
            "same setting in a file in /etc/sysctl.d/ to keep it after a reboot)."
        )
    return text


@dataclass(frozen=True)
class NotesPlan:
    """What a tick does with the notes watchdog's threads left (plan_notes)."""

    rescan: set[str]
    # (sid, detail): an overflow in watchdog's log, told to the journal for each folder
    report: list[tuple[str, str]]
    # folders whose tree watchdog re-watched after an overflow: their watches are
    # checked again
    rewatched: set[str]


def plan_notes(
    notes: list[tuple[str | None, str]], watched: Iterable[str]
) -> NotesPlan:
    """`notes`: (sid, incident) from a folder's event handler, or (None, log line) an
    overflow in watchdog's log, which names no folder: every folder in `watched` is
    rescanned then, and told of it once (the handler tells the journal of its own)."""
    rescan: set[str] = set()
    overflowed: dict[str, str] = {}  # sid -> the log line; "" where the handler told it
    report: list[tuple[str, str]] = []
    watched = list(watched)
    for sid, what in notes:
        if sid is not None:
            rescan.add(sid)
            if what == "overflow":
                overflowed.setdefault(sid, "")
            continue
        for other in watched:
            if other not in overflowed:
                overflowed[other] = what
                report.append((other, what))
    return NotesPlan(rescan | set(overflowed), report, set(overflowed))


PollingDue = Literal["retry_watch", "poll"]


def polling_due(
    polling: bool, now: float, scheduled_at: float, last_poll: float
) -> set[PollingDue]:
    """For a folder polled for want of watches: is a new try at watching it due (every
    RETRY_WATCH_S), a rescan (every POLL_S)?"""
    due: set[PollingDue] = set()
    if polling and now - scheduled_at >= RETRY_WATCH_S:
        due.add("retry_watch")
    if polling and now - last_poll >= POLL_S:
        due.add("poll")
    return due


class _OverflowSpotter(logging.Handler):
    """Before watchdog 7.1.1 its only sign of an inotify queue overflow (or of a failed
    re-watch after one) is a log line (OVERFLOW_LOG_LINES), which names no sync folder.
    """

    def __init__(self, flag: Callable[[str], None]):
        super().__init__(logging.WARNING)
        self.flag = flag

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith(OVERFLOW_LOG_LINES):
            self.flag(msg)


# how an event bears on its path's wait (pending_after)
EventKind = Literal["change", "created", "closed", "moved_in", "gone"]


@dataclass(slots=True)
class Pending:
    """A path waiting to be looked at: the time of its first event and of its last, when
    it is due, whether it was created meanwhile, and from when it may go early if the
    watcher knows a file there (None: not so; `offered`: the watcher has been asked)."""

    first: float
    last: float
    due: float
    created: bool = False
    early: float | None = None
    offered: bool = False
    # created or removed within this wait: a file there anew (Debouncer.written_anew)
    anew: bool = False


def pending_after(
    p: Pending | None, kind: EventKind, now: float, delay: float | None = None
) -> Pending:
    """The path's wait after an event of `kind` at `now` (`p`: its wait so far).

    A file still being written shows only changes (modified, created): it is looked at
    once they have stopped for `delay`. Its writer is done when the file is renamed into
    place (moved_in: it appears whole at once) or closed after writing (closed): it is
    looked at SETTLE_S later, sooner than any change before it asked. Not so for a file
    created within the same wait: a tool's temp file is closed a moment before it is
    renamed away, and looked at then it would pass for a new file of the user's (sent
    upstream, then deleted). It waits out the quiet period as a change does, unless the
    watcher knows a file at that path (`early`): an editor that saves by writing the file
    anew (vim and emacs move the old one to a backup first). A change after the close
    (another writer) asks the quiet period again.

    A file gone (deleted, moved away) starts the longest wait (MAX_WAIT_S) again: what
    was written to it before is moot. A temp file a tool writes and renames away again
    and again faster than the quiet period is so never looked at in the middle, while it
    is there, half-written maybe; it is once the tool stops. `delay`: QUIET_S unless
    given."""
    if delay is None:
        delay = QUIET_S
    if p is None:
        p = Pending(now, now, now)
    p.last = now
    p.early, p.offered = None, False
    if kind == "created":
        p.created = p.anew = True
    elif kind == "gone":
        p.first, p.created, p.anew = now, False, True
    if kind == "moved_in" or (kind == "closed" and not p.created):
        p.due = now + SETTLE_S
        return p
    p.due = max(p.due, now + delay)
    if kind == "closed":
        p.early = now + SETTLE_S
    return p


class Debouncer:
    """Per-path waits (pending_after), on its own thread, which sleeps until the next
    path is due; hands over FsEvents to the watcher's mailbox."""

    def __init__(self, post: Callable[[Msg], None]):
        self.post = post
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.pending: dict[tuple[str, str], Pending] = {}  # (sid, rel) -> its wait
        self.gone: dict[str, set[str]] = {}
        self.scans: dict[str, set[str]] = {}
        # when the thread wakes next; -inf while it is awake (it looks at every wait
        # before it sleeps again, so an event then needs no wake-up)
        self.wake_at = -math.inf
        self.stopped = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name="watcher-debounce", daemon=True
        )
        self.thread.start()

    def touch(self, sid: str, rel: str, delay: float | None = None) -> None:
        self.event(sid, rel, "change", delay)

    def event(
        self, sid: str, rel: str, kind: EventKind, delay: float | None = None
    ) -> None:
        now = time.monotonic()
        with self.lock:
            p = pending_after(self.pending.get((sid, rel)), kind, now, delay)
            self.pending[(sid, rel)] = p
            early = math.inf if p.early is None else p.early
            if min(p.due, p.first + MAX_WAIT_S, early) < self.wake_at:
                self.cond.notify()

    def dir_gone(self, sid: str, rel: str) -> None:
        with self.lock:
            self.gone.setdefault(sid, set()).add(rel)
        self.touch(sid, "\0gone")

    def scan_dir(self, sid: str, rel: str) -> None:
        with self.lock:
            self.scans.setdefault(sid, set()).add(rel)
        self.touch(sid, "\0scan")

    def forget(self, sid: str) -> None:
        with self.lock:
            for k in [k for k in self.pending if k[0] == sid]:
                del self.pending[k]
            self.gone.pop(sid, None)
            self.scans.pop(sid, None)

    def stop(self) -> None:
        self.stopped.set()
        with self.lock:
            self.cond.notify()

    def _run(self) -> None:
        while True:
            with self.lock:
                if self.stopped.is_set():
                    return
                now = time.monotonic()
                out, wake = self._take_due(now)
                if not out:
                    self.wake_at = wake
                    # bounded: a stop that missed its notify is seen all the same
                    self.cond.wait(min(wake - now, 1.0))
                    self.wake_at = -math.inf
                    continue
            for ev in out:
                try:
                    self.post(ev)
                except Exception:
                    log.exception("watcher: could not hand over file events")

    def written_anew(self, sid: str, rel: str) -> bool:
        """Has the path been created or removed since it was handed over (a tool's temp
        file written again)? A file only written to since is not: one written to for
        ever is still looked at every MAX_WAIT_S."""
        with self.lock:
            p = self.pending.get((sid, rel))
            return p is not None and p.anew

    def claim(self, sid: str, rel: str) -> bool:
        """The watcher knows a file at `rel`, offered early (IfKnown): may it look now?
        Not if an event of the path came since (it waits as that asks); else the path's
        wait ends here."""
        with self.lock:
            p = self.pending.get((sid, rel))
            if p is None or not p.offered:
                return False
            del self.pending[(sid, rel)]
            return True

    def _take_due(self, now: float) -> tuple[list[Msg], float]:
        """The paths due (taken from the waits) and those to offer early (IfKnown), by
        folder; and when the next one left is due (inf: none). Under the lock."""
        out: dict[str, FsEvent] = {}
        offers: dict[str, IfKnown] = {}
        wake = math.inf
        due = []
        for k, p in self.pending.items():
            at = min(p.due, p.first + MAX_WAIT_S)
            if now >= at:
                due.append(k)
                continue
            if p.early is not None and not p.offered:
                if now >= p.early:
                    p.offered = True
                    offer = offers.get(k[0])
                    if offer is None:
                        offer = offers[k[0]] = IfKnown(sessionId=k[0], paths=[])
                    offer.paths.append(k[1])
                else:
                    at = min(at, p.early)
            wake = min(wake, at)
        for k in due:
            del self.pending[k]
            sid, rel = k
            ev = out.get(sid)
            if ev is None:
                ev = out[sid] = FsEvent(sessionId=sid, paths=[])
            if rel == "\0gone":
                ev.gone = sorted(self.gone.pop(sid, ()))
            elif rel == "\0scan":
                ev.scanDirs = sorted(self.scans.pop(sid, ()))
            else:
                ev.paths.append(rel)
        return [*out.values(), *offers.values()], wake


# watchdog's event types as they bear on a file's wait (a moved file's source is gone
# from there)
_EVENT_KINDS: dict[str, EventKind] = {
    "created": "created",
    "closed": "closed",
    "deleted": "gone",
    "moved": "gone",
}


def _same_file(full: str, sig: tuple[int, int, int]) -> bool:
    """Is the file at `full` still as (size, mtime_ns, inode) `sig` says?"""
    try:
        st = os.lstat(full)
    except OSError:
        return False
    return (st.st_size, st.st_mtime_ns, st.st_ino) == sig


def _wire_rel(rel: str) -> str:
    """A path as FsEvent carries it: valid UTF-8 for every message and log on the way; a
    name that is not UTF-8 (held as surrogates) as a NUL, "x" and its bytes in hex (no
    name holds a NUL), which _unwire_rel undoes."""
    if rel.isascii():
        return rel
    try:
        rel.encode("utf-8")
        return rel
    except UnicodeEncodeError:
        return "\0x" + os.fsencode(rel).hex()


def _unwire_rel(rel: str) -> str:
    return os.fsdecode(bytes.fromhex(rel[2:])) if rel.startswith("\0x") else rel


def _outgoing(lf: LocalFile) -> LocalFile:
    """What the journal gets: a name that is no workspace path (not UTF-8, a control
    character, a backslash) goes as its display form, valid UTF-8 for every message and
    log on the way, and, when the file is there, the hash "!code" (the journal lists it
    as failed, with the reason)."""
    code = local_name_problem(lf.path)
    if code is None:
        return lf
    h = lf.hash if lf.hash.startswith("!") or not lf.hash else "!" + code
    return LocalFile(display_path(lf.path), h, lf.size, lf.mode)


class EventHandler(FileSystemEventHandler):
    """Runs on watchdog's thread: records paths with the debouncer (which has its own
    lock), and tells the actor of incidents by message (`note`). It holds copies of what
    it needs of its folder, so no state of the actor's is read or written from
    watchdog's thread."""

    def __init__(
        self,
        folder: Folder,
        debouncer: Debouncer,
        note: Callable[[WatchdogNote], None],
    ):
        self.sid = folder.sid
        self.root = folder.root
        self.root_str = folder.root_str
        self.debouncer = debouncer
        self.note = note

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            self.on_event(event)
        # never let it reach watchdog: its thread would die without a word
        except Exception as e:
            log.exception("watcher: the event handler failed on %r", event)
            self.tell("handler_error", f"{type(e).__name__}: {e}")

    def tell(self, incident: str, detail: str) -> None:
        self.note(WatchdogNote(sessionId=self.sid, incident=incident, detail=detail))

    def _rel(self, path: str | bytes) -> str | None:
        p = os.fsdecode(path)
        root = self.root_str
        if p == root:
            return ""
        if not p.startswith(root + os.sep):
            return None
        return _wire_rel(p[len(root) + 1 :].replace(os.sep, "/"))

    def on_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write"):
            return
        if kind == EVENTS_LOST:
            # watchdog has re-watched the tree already; what changed meanwhile is
            # unknown
            self.tell(
                "overflow",
                f"the inotify queue overflowed: events under {self.root} were lost; rescanning",
            )
            return
        self.on_change(event)

    def on_change(self, event: FileSystemEvent) -> None:
        """An event that may change what is in the folder: its paths go to the
        debouncer."""
        kind = event.event_type
        src = self._rel(event.src_path)
        dest = self._rel(event.dest_path) if getattr(event, "dest_path", "") else None
        if event.is_directory:
            self._on_folder(kind, src, dest)
            return
        if src and not is_noise(src):
            self.debouncer.event(self.sid, src, _EVENT_KINDS.get(kind, "change"))
        if dest and not is_noise(dest):
            self.debouncer.event(self.sid, dest, "moved_in")

    def _on_folder(self, kind: str, src: str | None, dest: str | None) -> None:
        if src == "" and kind in ("deleted", "moved"):
            self.tell("root_gone", "the sync folder was deleted or moved away")
            return
        if src and kind in ("deleted", "moved"):
            self.debouncer.dir_gone(self.sid, src)
        target = dest if kind == "moved" else src
        if target and kind in ("created", "moved") and not is_noise(target):
            self.debouncer.scan_dir(self.sid, target)


def _entries_of(f: Folder, d: str) -> list[tuple[str, os.DirEntry[str]]]:
    """The entries of folder `d` of `f` ("" the root), last first (a walk pops them from
    the end, so in the folder's order); none if it cannot be read."""
    try:
        entries = [
            (d, e) for e in os.scandir(os.path.join(f.root_str, d) if d else f.root_str)
        ]
    except OSError:
        return []
    entries.reverse()
    return entries


def _observer_alive(observer: Any, watch: Any) -> bool:
    """Are the observer's thread and its emitter threads for `watch` all running?"""
    emitters = [e for e in observer.emitters if e.watch == watch]
    return bool(
        observer.is_alive() and emitters and all(e.is_alive() for e in emitters)
    )


class Folder:
    """One synced folder: its observer, ignore rules and what its files looked like
    last."""

    def __init__(
        self, sid: str, root: Path, cache: dict[str, tuple], extra_ignore: list[str]
    ):
        self.sid = sid
        self.root = root
        self.root_str = str(root)
        self.ignore = GitIgnore(root, extra_ignore)
        self.cache = cache  # rel -> (size, mtime_ns, ino, hash, mode)
        self.observer: Any = None
        self.watch: Any = None
        self.fd: int | None = None  # the observer's inotify instance
        # not every folder is watched: the tree is rescanned every POLL_S
        self.polling = False
        # while polling: "tree" (watchdog raised) or "part" (found unwatched)
        self.unwatched: str | None = None
        # its observer's inotify instance is unknown: unwatched folders go unnoticed
        self.unchecked = False
        self.root_gone = False
        self.listed = False  # a full scan of it has ended
        self.absent_once: set[str] = set()
        self.last_poll = time.monotonic()
        self.scheduled_at = 0.0
        # Folders whose watches are to be checked: the whole tree after a scheduling,
        # else new ones. One found unwatched is checked again at the next tick (watchdog
        # adds a new folder's watch on its own thread, a moment after the folder
        # appears) and only then counts as unwatched.
        self.verify_all = False
        self.verify_dirs: set[str] = set()
        self.suspects: set[tuple[int, int]] = set()
        # the suspects are what is left of a check of the whole tree
        self.whole_check = False

    def ignored(self, rel: str, is_dir: bool = False) -> bool:
        return is_noise(rel) or self.ignore.ignored(rel, is_dir)


class Watcher(DimActor):
    def __init__(self, ctx: ActorContext, memory: WatcherMemory):
        super().__init__(ctx)
        self.memory = memory

    def on_start(self) -> None:
        super().on_start()
        self.echoes: EchoSet = self.memory.echoes
        self.wanted = self.memory.folders  # sid -> localDir
        self.caches = self.memory.stat_caches
        # sid -> (echoesSuppressed, echoesLeaked) as last told to the journal
        self.told_counts: dict[str, tuple[int, int]] = {}
        self.folders: dict[str, Folder] = {}
        self.changes = 0
        self.incidents = 0
        # (sid, what) told by watchdog's threads (WatchdogNote), read on the next tick:
        # an incident of that folder, or (None, log line) an overflow spotted in
        # watchdog's log
        self.overflowed: list[tuple[str | None, str]] = []
        self.fd_fallback_logged = False
        # in a full scan: its listing is every file's state, not changes
        self.scanning = False
        # files read to hash them: each may take long (up to sync_max_file_mb)
        self.hashed = 0
        # a step stays well inside the hang timeout, however low it is set
        self.step_s = min(STEP_S, (self.ctx.settings or Settings()).hang_timeout_s / 4)
        self.jobs: dict[
            str, collections.deque[ScanJob]
        ] = {}  # sid -> walks to do, in order
        self.stepping: set[str] = set()  # sids with a ScanStep on its way
        # sid -> files listed so far by a first full scan under way; told to the
        # journal, which shows it in sync_status (ScanProgress)
        self.scan_progress: dict[str, int] = {}
        # sid -> {absolute path: (hash, (size, mtime_ns, inode))}: the materializer's
        # writes into a folder not watched yet (a new sync's first files, written before
        # its watch starts), known to the folder's first full scan without reading them
        self.unwatched_writes: dict[str, dict[str, tuple[str, tuple]]] = {}
        # sync_extra_ignore: on top of every folder's .gitignore files (docs/sync.md §4)
        self.extra_ignore = (
            list(self.ctx.settings.sync_extra_ignore) if self.ctx.settings else []
        )
        # a file above this is not read at all: the journal lists it as too large
        self.max_file = (self.ctx.settings or Settings()).sync_max_file_mb << 20
        self.debouncer = Debouncer(self._from_debouncer)
        self.spotter = _OverflowSpotter(
            lambda line: self._tell_self(
                WatchdogNote(sessionId=None, incident="overflow", detail=line)
            )
        )
        if not EVENTS_LOST:
            for name in WATCHDOG_LOGGERS:
                logging.getLogger(name).addHandler(self.spotter)
        self.stop_ticks = threading.Event()
        threading.Thread(
            target=self._ticker, name="watcher-ticker", daemon=True
        ).start()
        # after a restart: watch and rescan again
        for sid, local_dir in list(self.wanted.items()):
            self._watch(sid, local_dir)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "folders": len(self.folders),
            "changes": self.changes,
            "incidents": self.incidents,
            "echoesSuppressed": self.echoes.suppressed,
            "echoesLeaked": self.echoes.leaked,
            "polling": sum(f.polling for f in list(self.folders.values())),
            "unchecked": sum(f.unchecked for f in list(self.folders.values())),
        }

    def _ticker(self) -> None:
        ref = self.actor_ref
        while not self.stop_ticks.wait(1.0):
            try:
                ref.tell(envelope(self.ctx.name, self.ctx.name, SyncTick()))
            except Exception:
                return

    def _from_debouncer(self, msg: Msg) -> None:
        if isinstance(msg, FsEvent):
            self.ctx.send(self.ctx.name, msg)
        else:
            self._tell_self(msg)

    def _tell_self(self, msg: Msg) -> None:
        """From any thread: `msg` into this instance's mailbox, where the actor's thread
        takes it."""
        try:
            self.actor_ref.tell(envelope(self.ctx.name, self.ctx.name, msg))
        except pykka.ActorDeadError:
            pass  # stopped meanwhile: its folders are not watched any more

    def on_watchdog_note(self, note: WatchdogNote) -> None:
        if note.sessionId is None:
            self.overflowed.append((None, note.detail))  # read on the next tick
        else:
            self._incident(note.sessionId, note.incident, note.detail)

    def _incident(self, sid: str, incident: str, detail: str) -> None:
        """Tell the journal, and rescan the folder on the next tick."""
        self.incidents += 1
        self.ctx.send(
            "journal", WatcherIncident(sessionId=sid, incident=incident, detail=detail)
        )
        if incident == "root_gone":
            f = self.folders.get(sid)
            if f is not None:
                f.root_gone = True
        else:
            self.overflowed.append((sid, incident))

    # --- messages ---------------------------------------------------------------------

    def handle(self, sender: str, body: Msg) -> None:
        match body:
            case FsEvent():
                self.on_fs_event(body)
            case SyncTick():
                self.on_tick()
            case ScanStep():
                self.stepping.discard(body.sessionId)
                if not self.superseded():  # a replaced instance's walks end here
                    self._scan_step(body.sessionId)
            case WatchdogNote():
                self.on_watchdog_note(body)
            case IfKnown():
                self.on_if_known(body)
            case WritesAhead():
                self.on_writes_ahead(body)
            case WritesAbandoned():
                unwatched = self.unwatched_writes.get(body.sessionId)
                for w in body.writes:
                    self.echoes.discard(w.path, w.contentHash)
                    if unwatched and unwatched.get(w.path, ("",))[0] == w.contentHash:
                        del unwatched[w.path]
            case WatcherFiguresWanted():
                self.told_counts.clear()
                self._tell_figures()
            case WatchFolder():
                self.wanted[body.sessionId] = body.localDir
                # a (re)start: report every file once
                self.caches.pop(body.sessionId, None)
                self._watch(body.sessionId, body.localDir)
            case UnwatchFolder():
                self.unwatched_writes.pop(body.sessionId, None)
                self.wanted.pop(body.sessionId, None)
                self.caches.pop(body.sessionId, None)
                self._unwatch(body.sessionId)
            case _:
                raise TypeError(f"watcher: unexpected message {type(body).__name__}")

    def on_writes_ahead(self, body: WritesAhead) -> None:
        if body.sessionId not in self.folders:
            self._written_unwatched(body.sessionId, body.writes)
        for w in body.writes:
            # the look of a write told ahead by its content (a new folder's)
            if w.sig is None or not self.echoes.attach_sig(
                w.path, w.contentHash, w.sig
            ):
                self.echoes.add(w.path, w.contentHash, w.sig)

    def _written_unwatched(self, sid: str, writes: list[EchoWrite]) -> None:
        """Writes told ahead for a folder not watched yet: no event of theirs comes; the
        first full scan finds each file as it was left (or, changed since, reads it)."""
        known = self.unwatched_writes.setdefault(sid, {})
        for w in writes:
            if not w.contentHash:
                known.pop(w.path, None)
            elif w.sig is not None:
                known[w.path] = (w.contentHash, w.sig)

    def _known_unwatched(self, f: Folder, full: str, sig: tuple) -> str | None:
        """The hash the materializer wrote to `full` before the folder was watched, if
        the file is still as it left it."""
        known = self.unwatched_writes.get(f.sid)
        w = known.get(full) if known else None
        return w[0] if w is not None and w[1] == sig else None

    def _watch(self, sid: str, local_dir: str) -> None:
        self._unwatch(sid)
        root = Path(local_dir).resolve()
        f = Folder(sid, root, self.caches.setdefault(sid, {}), self.extra_ignore)
        self.folders[sid] = f
        if not root.is_dir():
            f.root_gone = True
            self.ctx.send(
                "journal",
                WatcherIncident(
                    sessionId=sid,
                    incident="root_gone",
                    detail=f"{root} is not a folder",
                ),
            )
            return
        self._schedule(f)
        self.full_scan(f)

    # --- where a test's subclass injects faults (tests/faulty_watcher.py) -------------

    def new_handler(self, f: Folder) -> EventHandler:
        """The event handler of the folder's observer, run on watchdog's thread."""
        return EventHandler(f, self.debouncer, self._tell_self)

    def folder_watched(
        self, rel: str, key: tuple[int, int], watches: Collection[tuple[int, int]]
    ) -> bool:
        """Is folder `rel` (`key`: watch_key) among the observer's inotify `watches`?"""
        return key in watches

    def echo_by_stat(self, full: str, sig: tuple[int, int, int]) -> str | None:
        """The hash of our own write if `full` is as the materializer left it
        (consumed)."""
        return self.echoes.consume_sig(full, sig)

    def echo_by_content(self, full: str, digest: str) -> bool:
        """Is this state of `full` ("" absent) our own write (consumed)?"""
        return self.echoes.consume(full, digest)

    def _schedule(self, f: Folder) -> None:
        """Watch the folder's tree with a new observer. Whether watchdog got a watch on
        each folder is checked at the next tick (_verify) where it does not raise (see
        the module's docstring)."""
        f.scheduled_at = time.monotonic()
        try:
            f.observer, f.watch = start_observer(f.root_str, self.new_handler(f))
        except OSError as e:
            f.observer, f.fd = None, None
            which = "instances" if e.errno == errno.EMFILE else "watches"
            self._unwatched(
                f,
                "tree",
                unwatched_warning(f.root, error=e, limit=inotify_limit(which)),
            )
            return
        f.fd = self._observer_fd(f)
        f.verify_all, f.suspects, f.whole_check = True, set(), False

    def _observer_fd(self, f: Folder) -> int | None:
        """The inotify instance of the folder's observer, for _verify. Where watchdog's
        private attribute is gone, it is found as the one instance with a watch on the
        root (an instance watching the root for another sync folder's observer is ruled
        out); where that fails too, the check is off for this folder, and the journal
        and the log say so."""
        fd = observer_fd(f.observer)
        if fd is not None or not HAVE_FDINFO:
            f.unchecked = False
            return fd
        if not self.fd_fallback_logged:
            self.fd_fallback_logged = True
            log.warning(
                "watcher: watchdog %s has no InotifyObserver._inotify_fd._inotify_fd; finding each "
                "observer's inotify instance by the watch on its root instead",
                WATCHDOG_VERSION,
            )
        try:
            key = watch_key(os.stat(f.root_str))
        except OSError:
            return None  # the root is gone: the next tick says so
        taken = {g.fd for g in self.folders.values() if g is not f and g.fd is not None}
        fd = inotify_fd_watching(key, taken)
        if fd is None and not f.unchecked:
            detail = (
                f"the check for folders of {f.root} that watchdog {WATCHDOG_VERSION} "
                "could not watch (the inotify watch limit) is off: its inotify "
                "instance cannot be found. Changes in such folders would go unsynced "
                "until a full rescan (at the latest the next start of dim-desktop)"
            )
            log.warning("watcher: %s", detail)
            self.incidents += 1
            self.ctx.send(
                "journal",
                WatcherIncident(
                    sessionId=f.sid, incident="watch_unchecked", detail=detail
                ),
            )
        f.unchecked = fd is None
        return fd

    def _unwatched(self, f: Folder, scope: str, warning: str) -> bool:
        """Some or all of the folder is not watched: poll it, and tell the journal (once
        per kind of failure, not at every retry). Returns whether this is news."""
        if f.polling and f.unwatched == scope:
            return False
        if not f.polling:
            f.polling, f.last_poll = True, time.monotonic()
        f.unwatched = scope
        self.incidents += 1
        self.ctx.send(
            "journal",
            WatcherIncident(sessionId=f.sid, incident="watch_limit", detail=warning),
        )
        return True

    def _unwatch(self, sid: str) -> None:
        self.jobs.pop(sid, None)
        self._progress(sid, None)
        f = self.folders.pop(sid, None)
        self.debouncer.forget(sid)
        if f is not None and f.observer is not None:
            try:
                f.observer.stop()
                f.observer.join(timeout=5)
            except Exception:
                log.exception("watcher: stopping the observer of %s failed", f.root)

    # --- looking at paths -------------------------------------------------------------

    def on_fs_event(self, ev: FsEvent) -> None:
        f = self.folders.get(ev.sessionId)
        if f is None or f.root_gone:
            return
        out: list[LocalFile] = []
        for prefix in map(_unwire_rel, ev.gone):
            pre = prefix + "/"
            for rel in [r for r in f.cache if r == prefix or r.startswith(pre)]:
                self._look(f, rel, out)
        for rel in map(_unwire_rel, ev.scanDirs):
            if not f.ignored(rel, is_dir=True):
                # a folder moved in may hold 100,000 files
                self._queue(ScanJob(f, rel, listing=False))
                f.verify_dirs.add(rel)
        rules_changed: set[str] = set()
        for wired in ev.paths:
            rel = _unwire_rel(wired)
            if self.debouncer.written_anew(f.sid, wired):
                # created or removed again since it was handed over: it is looked at when
                # that is quiet, not now, in its midst (a temp file written again, there
                # for a moment, would pass for a new file)
                continue
            self._look(f, rel, out)
            if rel == ".gitignore" or rel.endswith("/.gitignore"):
                rules_changed.add(rel.rpartition("/")[0])
        for d in rules_changed:
            # what the changed rules no longer ignore is reported now, not when it is
            # next touched (files they now ignore stay as they are, here and upstream,
            # as git leaves them tracked)
            if any(
                o != d and (o == "" or d.startswith(o + "/")) for o in rules_changed
            ):
                continue  # a folder around it is rescanned anyway
            if not (d and f.ignored(d, is_dir=True)):
                self._queue(ScanJob(f, d, listing=False))
        self._report(f, out)

    def on_if_known(self, msg: IfKnown) -> None:
        f = self.folders.get(msg.sessionId)
        if f is None or f.root_gone:
            return
        out: list[LocalFile] = []
        for wired in msg.paths:
            rel = _unwire_rel(wired)
            if rel in f.cache and self.debouncer.claim(f.sid, wired):
                self._look(f, rel, out)
        self._report(f, out)

    def _report(self, f: Folder, out: list[LocalFile], scan: bool = False) -> None:
        if not out and not scan:
            return
        out = [_outgoing(lf) for lf in out]
        self.changes += len(out)
        self._tell_counts()
        if scan:
            self.ctx.send(
                "journal", LocalChanges(sessionId=f.sid, changes=out, scan=True)
            )
            return
        for i in range(0, len(out), BATCH):
            self.ctx.send(
                "journal", LocalChanges(sessionId=f.sid, changes=out[i : i + BATCH])
            )

    def _look(
        self,
        f: Folder,
        rel: str,
        out: list[LocalFile],
        st: os.stat_result | None = None,
    ) -> None:
        if f.ignored(rel):
            return
        full = os.path.join(f.root_str, rel)
        try:
            st = st or os.lstat(full)
        except (FileNotFoundError, NotADirectoryError):
            self._absent(f, rel, out)
            return
        except OSError:
            return
        if stat.S_ISDIR(st.st_mode):
            if not f.ignored(rel, is_dir=True):
                self._walk(f, rel, out)
            return
        if not stat.S_ISREG(st.st_mode):
            return  # symlinks, fifos, sockets: not synced
        f.absent_once.discard(rel)
        sig = (st.st_size, st.st_mtime_ns, st.st_ino)
        mode = stat.S_IMODE(st.st_mode)
        cached = f.cache.get(rel)
        if cached is not None and cached[:3] == sig and cached[4] == mode:
            return
        echo = self.echo_by_stat(full, sig) or self._known_unwatched(f, full, sig)
        if echo is not None:
            f.cache[rel] = (*sig, echo, mode)
            self.echoes.count(f.sid, "echoesSuppressed")
            return
        problem = local_name_problem(rel) or (
            "too_large" if st.st_size > self.max_file else None
        )
        if problem is not None:
            # not read at all (it cannot be synced): the journal lists it with the
            # reason
            f.cache[rel] = (*sig, "!" + problem, mode)
            out.append(LocalFile(rel, "!" + problem, st.st_size, mode))
            return
        self.hashed += 1
        digest = file_hash(full)
        if digest is None:
            self._absent(f, rel, out)
            return
        if not _same_file(full, sig):
            # written to while it was read: what was read may be half of it. Looked at
            # again once it is quiet (its writer's events ask the same).
            self.debouncer.touch(f.sid, _wire_rel(rel))
            return
        if cached is not None and cached[3] == digest and cached[4] == mode:
            f.cache[rel] = (*sig, digest, mode)  # touched, same content
            return
        f.cache[rel] = (*sig, digest, mode)
        if self.echo_by_content(full, digest):
            self.echoes.count(f.sid, "echoesSuppressed")
            return
        self._reporting(f, full, digest)
        out.append(LocalFile(rel, digest, st.st_size, mode))

    def _reporting(self, f: Folder, full: str, digest: str) -> None:
        """A state of `full` is about to be reported as a local change."""
        if not self.scanning and self.echoes.wrote(full, digest):
            # the materializer's own last write all the same: the echo set should have
            # caught it
            log.warning(
                "watcher: an echo of our own write of %s was not suppressed", full
            )
            self.echoes.count(f.sid, "echoesLeaked")
        # not our write: whatever we wrote there before is gone, so no later state may
        # pass for it
        self.echoes.forget(full)

    def _absent(self, f: Folder, rel: str, out: list[LocalFile]) -> None:
        if rel not in f.absent_once:
            # look again shortly: a save may be halfway through a rename
            f.absent_once.add(rel)
            self.debouncer.touch(f.sid, _wire_rel(rel), delay=ABSENT_CONFIRM_S)
            return
        f.absent_once.discard(rel)
        f.cache.pop(rel, None)
        full = os.path.join(f.root_str, rel)
        if self.echo_by_content(full, ""):
            self.echoes.count(f.sid, "echoesSuppressed")
            return
        self._reporting(f, full, "")
        # the journal ignores paths it never tracked
        out.append(LocalFile(rel, "", 0, 0))

    def _walk(self, f: Folder, rel: str, out: list[LocalFile]) -> None:
        """Every file under `rel` ("" the root), looked at."""
        stack = [rel]
        while stack:
            d = stack.pop()
            try:
                entries = list(
                    os.scandir(os.path.join(f.root_str, d) if d else f.root_str)
                )
            except OSError:
                continue
            for e in entries:
                self._visit(f, d, e, out, stack)

    def _visit(
        self,
        f: Folder,
        d: str,
        e: os.DirEntry[str],
        out: list[LocalFile],
        stack: list[str],
    ) -> str | None:
        """One entry of a walk of folder `d`: a folder not ignored goes on `stack`, a
        file is looked at. The file's path when it was one (and could be read), else
        None."""
        child = f"{d}/{e.name}" if d else e.name
        try:
            if e.is_dir(follow_symlinks=False):
                if not f.ignored(child, is_dir=True):
                    stack.append(child)
                return None
            if not e.is_file(follow_symlinks=False) or f.ignored(child):
                return None
            self._look(f, child, out, e.stat(follow_symlinks=False))
        except OSError:
            return None
        return child

    def full_scan(self, f: Folder) -> None:
        """Walk the whole folder; the journal gets a complete listing (what is missing
        is gone). In steps (_scan_step): a rescan asked for while one is under way runs
        when that one ends."""
        for job in self.jobs.get(f.sid, ()):
            if job.listing and job.f is f:
                job.again = True
                return
        job = ScanJob(f)
        if job.first:
            self._progress(f.sid, 0)
        self._queue(job)

    def _queue(self, job: ScanJob) -> None:
        """Walks run one step per message, in the order asked. The first step of a walk
        with none ahead of it runs at once: a small folder is done before anything else
        is looked at."""
        sid = job.f.sid
        q = self.jobs.setdefault(sid, collections.deque())
        q.append(job)
        if len(q) == 1 and sid not in self.stepping:
            self._scan_step(sid)
        else:
            self._kick(sid)

    def _kick(self, sid: str) -> None:
        if sid not in self.stepping:
            self.stepping.add(sid)
            self.actor_ref.tell(
                envelope(self.ctx.name, self.ctx.name, ScanStep(sessionId=sid))
            )

    def _scan_step(self, sid: str) -> None:
        """One step of the folder's first walk in line; the next one is asked for by
        message."""
        q = self.jobs.get(sid)
        if not q:
            return
        job = q[0]
        if self.folders.get(sid) is not job.f:
            # watched again meanwhile: that queued walks of its own
            q.popleft()
            if q:
                self._kick(sid)
            return
        changed = self._walk_step(job)
        if not job.listing:
            self._report(job.f, changed)
        if job.entries or job.stack:
            if job.first:
                self._progress(sid, len(job.seen))
            self._kick(sid)
            return
        q.popleft()
        if q:
            self._kick(sid)
        if job.listing:
            self._end_full_scan(job, q)

    def _walk_step(self, job: ScanJob) -> list[LocalFile]:
        """Looks at up to STEP_FILES files of the walk, or for step_s. What a folder's
        walk finds changed (a full scan notes the files it lists in job.seen instead).
        """
        f = job.f
        deadline = time.monotonic() + self.step_s
        looked = visited = 0
        hashed = self.hashed
        out: list[LocalFile] = []
        self.scanning = job.listing
        try:
            while looked < STEP_FILES:
                visited += 1  # folders and skipped entries count against the time too
                # a file read in this step may have taken long: from then on, the clock
                # is read each time
                if (
                    visited % 64 == 0 or self.hashed != hashed
                ) and time.monotonic() >= deadline:
                    break
                if not job.entries:
                    if not job.stack:
                        break
                    job.entries = _entries_of(f, job.stack.pop())
                    continue
                d, e = job.entries.pop()
                child = self._visit(f, d, e, out, job.stack)
                if child is None:
                    continue
                looked += 1
                if job.listing and child in f.cache:
                    job.seen.append(child)
        finally:
            self.scanning = False
        return out

    def _end_full_scan(self, job: ScanJob, q: collections.deque[ScanJob]) -> None:
        """The walk is over: the journal gets every file's state (what is missing is
        gone)."""
        f, sid = job.f, job.f.sid
        f.listed = True
        self.unwatched_writes.pop(sid, None)
        if not any(j.first for j in q):
            self._progress(sid, None)
        seen = set(job.seen)
        for rel in job.present_before - seen:
            f.cache.pop(rel, None)
        # each file's state as it is now: an event handled between two steps may have
        # moved it on
        listing = [
            LocalFile(rel, c[3], c[0], c[4])
            for rel in job.seen
            if (c := f.cache.get(rel)) is not None
        ]
        self._report(f, listing, scan=True)
        if job.again:
            self.full_scan(f)

    def _progress(self, sid: str, listed: int | None) -> None:
        """The first scan of the folder has listed `listed` files so far (None: it is
        over)."""
        if self.scan_progress.get(sid) == listed:
            return
        if listed is None:
            del self.scan_progress[sid]
        else:
            self.scan_progress[sid] = listed
        self.ctx.send("journal", ScanProgress(sessionId=sid, listed=listed))

    def _tell_figures(self) -> None:
        """The journal's copies of our figures: the echo counts that changed since it
        was last told, and the progress of scans under way (again: a restarted journal
        knows none)."""
        self._tell_counts()
        for sid, listed in self.scan_progress.items():
            self.ctx.send("journal", ScanProgress(sessionId=sid, listed=listed))

    def _tell_counts(self) -> None:
        """The echo counts that changed since the journal was last told: at a tick, and
        before any change is reported, so the journal's figures cover every event
        handled before it."""
        for sid, (suppressed, leaked) in self.echoes.counted().items():
            if self.told_counts.get(sid) != (suppressed, leaked):
                self.told_counts[sid] = (suppressed, leaked)
                self.ctx.send(
                    "journal",
                    EchoCounts(sessionId=sid, suppressed=suppressed, leaked=leaked),
                )

    # --- health -----------------------------------------------------------------------

    def on_tick(self) -> None:
        self._tell_figures()
        now = time.monotonic()
        rescan = self._take_notes()
        for sid, f in list(self.folders.items()):
            if not f.root_gone and self._check_folder(f, now):
                rescan.add(sid)
        for sid in rescan:
            g = self.folders.get(sid)
            if g is not None and not g.root_gone:
                self.full_scan(g)

    def _take_notes(self) -> set[str]:
        """What watchdog's threads told since the last tick: the folders to rescan."""
        if not self.overflowed:
            return set()
        notes, self.overflowed = self.overflowed, []
        plan = plan_notes(notes, list(self.folders))
        for sid, detail in plan.report:
            self.ctx.send(
                "journal",
                WatcherIncident(sessionId=sid, incident="overflow", detail=detail),
            )
        for sid in plan.rewatched:
            f = self.folders.get(sid)
            if f is not None and f.observer is not None:
                # watchdog has re-watched the tree: maybe not every folder of it
                f.verify_all = True
        return plan.rescan

    def _check_folder(self, f: Folder, now: float) -> bool:
        """The folder's health at a tick: is its root there, its observer alive, every
        folder of it watched, is a poll or a new try at watching it due? Whether to
        rescan it now."""
        if not f.root.is_dir():
            f.root_gone = True
            self._incident(f.sid, "root_gone", f"{f.root} is gone")
            return False
        rescan = False
        if f.observer is not None and not _observer_alive(f.observer, f.watch):
            self._observer_died(f)
            rescan = True
        due = polling_due(f.polling, now, f.scheduled_at, f.last_poll)
        if "retry_watch" in due:
            # the limit may have been raised; a partial observer goes first, to free its
            # watches for the new one (each try takes what watches are left, so not more
            # often than this)
            if f.observer is not None:
                self._stop_observer(f)
            self._schedule(f)
            rescan = True
        if "poll" in due:
            f.last_poll = now
            rescan = True
        if (
            f.observer is not None
            and (f.verify_all or f.verify_dirs or f.suspects)
            and self._verify(f)
        ):
            rescan = True
        return rescan

    def _observer_died(self, f: Folder) -> None:
        self.ctx.send(
            "journal",
            WatcherIncident(
                sessionId=f.sid,
                incident="observer_died",
                detail="watchdog's thread ended; watching again",
            ),
        )
        self.incidents += 1
        self._stop_observer(f)
        self._schedule(f)

    def _stop_observer(self, f: Folder) -> None:
        try:
            f.observer.stop()
            f.observer.join(timeout=5)
        except Exception:
            pass
        f.observer, f.fd = None, None

    def _verify(self, f: Folder) -> bool:
        """Is every folder of the tree (after a scheduling) or every new one among the
        observer's watches? Ones that are not, twice in a row, mean the tree is polled
        from now on (returns True: rescan now, changes in them may have been missed).
        All of them again ends polling."""
        watches = inotify_watches(f.fd) if f.fd is not None else None
        if watches is None:
            f.verify_all, f.verify_dirs, f.suspects = False, set(), set()
            # not Linux, or the observer's instance is unknown (_observer_fd has said
            # so)
            return False
        roots = [""] if f.verify_all else sorted(f.verify_dirs)
        whole = f.verify_all or f.whole_check
        f.verify_all, f.verify_dirs = False, set()
        found: dict[tuple[int, int], str] = {}
        for rel, st in self._folders_below(f, roots):
            key = watch_key(st)
            if not self.folder_watched(rel, key, watches):
                found[key] = rel
        confirmed = {k: r for k, r in found.items() if k in f.suspects}
        # the others: new, or checked too early (watchdog may not have added them yet);
        # once more next tick
        f.suspects = set(found) - set(confirmed)
        f.verify_dirs |= {found[k] for k in f.suspects}
        f.whole_check = whole and bool(f.suspects)
        if confirmed:
            # True: newly polled, rescan now; else known, and still polling
            warning = unwatched_warning(
                f.root, folders=list(confirmed.values()), limit=inotify_limit("watches")
            )
            return self._unwatched(f, "part", warning)
        if whole and not found and f.polling:
            f.polling, f.unwatched = False, None
            self.ctx.send(
                "journal",
                WatcherIncident(
                    sessionId=f.sid,
                    incident="watch_restored",
                    detail=f"every folder of {f.root} is watched again",
                ),
            )
        return False

    def _folders_below(self, f: Folder, roots: list[str]):
        """(rel, stat) of each synced (not ignored) folder at and below `roots`, as
        watchdog walks them (symlinks not followed)."""
        for top in roots:
            stack = [top]
            while stack:
                d = stack.pop()
                full = os.path.join(f.root_str, d) if d else f.root_str
                try:
                    st = os.stat(full, follow_symlinks=False)
                    entries = list(os.scandir(full))
                except OSError:
                    continue  # gone meanwhile
                if not stat.S_ISDIR(st.st_mode):
                    continue
                yield d, st
                for e in entries:
                    child = f"{d}/{e.name}" if d else e.name
                    try:
                        if e.is_dir(follow_symlinks=False) and not f.ignored(
                            child, is_dir=True
                        ):
                            stack.append(child)
                    except OSError:
                        continue

    def on_stop(self) -> None:
        self.stop_ticks.set()
        self.debouncer.stop()
        for name in WATCHDOG_LOGGERS:
            logging.getLogger(name).removeHandler(self.spotter)
        for sid in list(self.folders):
            self._unwatch(sid)

    def on_failure(self, exception_type, exception_value, traceback) -> None:
        self.on_stop()
        super().on_failure(exception_type, exception_value, traceback)
