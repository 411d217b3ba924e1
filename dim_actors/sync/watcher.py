"""The watcher actor: local edits in sync folders become LocalChanges for the journal (watchdog).

* One watchdog observer per synced folder. Its handler only records paths with the debouncer; it
  never raises (an exception would silently end watchdog's thread) and never touches actor state.
* The debouncer hands a path over once it has been quiet for QUIET_S (at most MAX_WAIT_S after its
  first event), so an editor's save (write a temp file, rename over, delete the backup) is looked
  at once, when it is over: the file is there with new content, one change.
* The actor looks at each path: ignored (editor noise, .git, .gitignore, the sync_extra_ignore
  setting) -> nothing; unchanged (size, mtime, inode as last seen) -> nothing; our own write (the
  echo set) -> nothing; else it is hashed and reported. A path found missing is looked at once more
  ABSENT_CONFIRM_S later, so a delete-then-create is never reported as a deletion. A change to a
  .gitignore rescans its folder, so files it no longer ignores are reported without being touched.
* A change about to be reported that is the materializer's own last write all the same (the echo
  set failed to suppress it) is counted per session as echoesLeaked (sync_status stats).
* Failures watchdog keeps quiet about are detected and answered with a full rescan, and reported to
  the journal (WatcherIncident): a dead observer or emitter thread (restarted), an inotify queue
  overflow (watchdog logs it), folders that are not watched (watchdog 7 swallows a failed watch on a
  subfolder, which is what the inotify watch limit does: after every scheduling, and for every new
  folder, each folder of the tree is looked up in the kernel's list of the observer's watches in
  /proc/self/fdinfo; when some are missing the folder is polled, and watched again every
  RETRY_WATCH_S in case the limit was raised).
* The folders and the stat cache live in ctx.extra, so a restarted watcher rescans what it watched.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any, Callable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from dim_actors.messages import (
    FsEvent,
    LocalChanges,
    LocalFile,
    Msg,
    SyncTick,
    UnwatchFolder,
    WatchFolder,
    WatcherIncident,
    envelope,
)
from dim_actors.supervisor.actor import DimActor
from dim_actors.sync.echoes import EchoSet
from dim_actors.sync.ignore import GitIgnore, is_noise

log = logging.getLogger(__name__)

QUIET_S = 0.05
MAX_WAIT_S = 2.0
ABSENT_CONFIRM_S = 0.15
POLL_S = 2.0
RETRY_WATCH_S = 30.0  # while polling for want of watches: schedule again this often (the limit may be raised)
BATCH = 2000  # paths per FsEvent / LocalChanges
HAVE_FDINFO = os.path.isdir("/proc/self/fdinfo")


def _faults() -> dict[str, str]:
    """DIM_SYNC_FAULTS=handler_error=NAME,overflow=NAME,unwatched=NAME,echo_miss=NAME (tests only):
    a file event whose name contains NAME raises in the handler / drops events like an overflow; a
    folder named NAME counts as unwatched; a file whose name contains NAME is not looked up in the
    echo set (as if its entry had expired: a leak, for the counter to count)."""
    out = {}
    for item in filter(None, os.environ.get("DIM_SYNC_FAULTS", "").split(",")):
        k, _, v = item.partition("=")
        out[k.strip()] = v.strip()
    return out


def file_hash(path: Path | str) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return None
    return h.hexdigest()


def inotify_watches(fd: int | None) -> set[tuple[int, int]] | None:
    """(device, inode) of every watch of inotify instance `fd` of this process (of every instance
    when fd is None), from /proc/self/fdinfo; None where that cannot be read (not Linux)."""
    if not HAVE_FDINFO:
        return None
    try:
        fds = [str(fd)] if fd is not None else os.listdir("/proc/self/fdinfo")
    except OSError:
        return None
    out: set[tuple[int, int]] = set()
    for n in fds:
        try:
            with open(f"/proc/self/fdinfo/{n}") as f:
                text = f.read()
        except OSError:
            if fd is not None:
                return None
            continue
        for line in text.splitlines():
            if line.startswith("inotify wd:"):
                fields = dict(tok.split(":", 1) for tok in line.split()[1:] if ":" in tok)
                out.add((int(fields["sdev"], 16), int(fields["ino"], 16)))
    return out


def watch_key(st: os.stat_result) -> tuple[int, int]:
    """A folder as /proc's inotify lines name it: the kernel's dev_t (major << 20 | minor, not
    stat's encoding) and the inode."""
    return (os.major(st.st_dev) << 20) | os.minor(st.st_dev), st.st_ino


def observer_fd(observer: Any) -> int | None:
    """The inotify instance of a watchdog 7 InotifyObserver (each observer has its own)."""
    fd = getattr(getattr(observer, "_inotify_fd", None), "_inotify_fd", None)
    return fd if isinstance(fd, int) else None


class _OverflowSpotter(logging.Handler):
    """watchdog's only sign of an inotify queue overflow (or a failed re-watch) is a log line."""

    def __init__(self, flag: Callable[[str], None]):
        super().__init__(logging.WARNING)
        self.flag = flag

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if "overflow" in msg.lower() or "Unable to rebuild" in msg:
            self.flag(msg)


class Debouncer:
    """Per-path quiet periods, on its own thread; hands over FsEvents to the watcher's mailbox."""

    def __init__(self, post: Callable[[FsEvent], None]):
        self.post = post
        self.lock = threading.Lock()
        self.pending: dict[tuple[str, str], list[float]] = {}  # (sid, rel) -> [first, last, due]
        self.gone: dict[str, set[str]] = {}
        self.scans: dict[str, set[str]] = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="watcher-debounce", daemon=True)
        self.thread.start()

    def touch(self, sid: str, rel: str, delay: float = QUIET_S) -> None:
        now = time.monotonic()
        with self.lock:
            e = self.pending.get((sid, rel))
            if e is None:
                self.pending[(sid, rel)] = [now, now, now + delay]
            else:
                e[1] = now
                e[2] = max(e[2], now + delay)

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

    def _run(self) -> None:
        while not self.stopped.wait(0.01):
            now = time.monotonic()
            out: dict[str, FsEvent] = {}
            with self.lock:
                due = [k for k, (first, last, at) in self.pending.items() if now >= at or now - first >= MAX_WAIT_S]
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
            for ev in out.values():
                try:
                    self.post(ev)
                except Exception:
                    log.exception("watcher: could not hand over file events")


class _Handler(FileSystemEventHandler):
    """Runs on watchdog's thread: records paths with the debouncer and nothing else."""

    def __init__(self, folder: "Folder", debouncer: Debouncer, incident: Callable[[str, str, str], None]):
        self.folder = folder
        self.debouncer = debouncer
        self.incident = incident
        self.faults = _faults()
        self.drop_until = 0.0

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            self._on(event)
        except Exception as e:  # never let it reach watchdog: its thread would die without a word
            log.exception("watcher: the event handler failed on %r", event)
            self.incident(self.folder.sid, "handler_error", f"{type(e).__name__}: {e}")

    def _rel(self, path: str | bytes) -> str | None:
        p = os.fsdecode(path)
        root = self.folder.root_str
        if p == root:
            return ""
        if not p.startswith(root + os.sep):
            return None
        return p[len(root) + 1:].replace(os.sep, "/")

    def _on(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write"):
            return
        src = self._rel(event.src_path)
        dest = self._rel(event.dest_path) if getattr(event, "dest_path", "") else None
        f = self.faults
        if f:
            name = os.path.basename(os.fsdecode(event.src_path))
            if f.get("handler_error") and f["handler_error"] in name:
                raise RuntimeError(f"injected handler fault on {name}")
            if f.get("overflow") and f["overflow"] in name and time.monotonic() > self.drop_until:
                self.drop_until = time.monotonic() + 0.5  # events are lost, as in a real overflow
                logging.getLogger("watchdog.observers.inotify_c").warning(
                    "Inotify queue overflowed; filesystem events were lost (injected)")
            if time.monotonic() < self.drop_until:
                return
        sid = self.folder.sid
        if event.is_directory:
            if src == "" and kind in ("deleted", "moved"):
                self.incident(sid, "root_gone", "the sync folder was deleted or moved away")
                return
            if src and kind in ("deleted", "moved"):
                self.debouncer.dir_gone(sid, src)
            target = dest if kind == "moved" else src
            if target and kind in ("created", "moved") and not is_noise(target):
                self.debouncer.scan_dir(sid, target)
            return
        for rel in (src, dest):
            if rel and not is_noise(rel):
                self.debouncer.touch(sid, rel)


class Folder:
    """One synced folder: its observer, ignore rules and what its files looked like last."""

    def __init__(self, sid: str, root: Path, cache: dict[str, tuple], extra_ignore: list[str]):
        self.sid = sid
        self.root = root
        self.root_str = str(root)
        self.ignore = GitIgnore(root, extra_ignore)
        self.cache = cache  # rel -> (size, mtime_ns, ino, hash, mode)
        self.observer: Any = None
        self.watch: Any = None
        self.fd: int | None = None  # the observer's inotify instance
        self.polling = False  # not every folder is watched: the tree is rescanned every POLL_S
        self.root_gone = False
        self.absent_once: set[str] = set()
        self.last_poll = time.monotonic()
        self.scheduled_at = 0.0
        # Folders whose watches are to be checked: the whole tree after a scheduling, else new ones.
        # One found unwatched is checked again at the next tick (watchdog adds a new folder's watch
        # on its own thread, a moment after the folder appears) and only then counts as unwatched.
        self.verify_all = False
        self.verify_dirs: set[str] = set()
        self.suspects: set[tuple[int, int]] = set()
        self.whole_check = False  # the suspects are what is left of a check of the whole tree

    def ignored(self, rel: str, is_dir: bool = False) -> bool:
        return is_noise(rel) or self.ignore.ignored(rel, is_dir)


class Watcher(DimActor):
    def on_start(self) -> None:
        super().on_start()
        extra = self.ctx.extra
        self.echoes: EchoSet = extra.setdefault("echoes", EchoSet())
        self.wanted: dict[str, str] = extra.setdefault("sync_folders", {})  # sid -> localDir
        self.caches: dict[str, dict] = extra.setdefault("sync_stat_cache", {})
        self.folders: dict[str, Folder] = {}
        self.changes = 0
        self.incidents = 0
        self.faults = _faults()
        self.overflowed: list[str] = []
        self.scanning = False  # in a full scan: its listing is every file's state, not changes
        # sync_extra_ignore: on top of every folder's .gitignore files (docs/sync.md §4)
        self.extra_ignore = list(self.ctx.settings.sync_extra_ignore) if self.ctx.settings else []
        self.debouncer = Debouncer(lambda ev: self.ctx.send(self.ctx.name, ev))
        self.spotter = _OverflowSpotter(self._flag_overflow)
        for name in ("watchdog.observers.inotify_c", "watchdog.observers.inotify"):
            logging.getLogger(name).addHandler(self.spotter)
        self.stop_ticks = threading.Event()
        threading.Thread(target=self._ticker, name="watcher-ticker", daemon=True).start()
        for sid, local_dir in list(self.wanted.items()):  # after a restart: watch and rescan again
            self._watch(sid, local_dir)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "folders": len(self.folders), "changes": self.changes,
                "incidents": self.incidents, "echoesSuppressed": self.echoes.suppressed,
                "echoesLeaked": self.echoes.leaked, "polling": sum(f.polling for f in list(self.folders.values()))}

    def _ticker(self) -> None:
        ref = self.actor_ref
        while not self.stop_ticks.wait(1.0):
            try:
                ref.tell(envelope(self.ctx.name, self.ctx.name, SyncTick()))
            except Exception:
                return

    def _flag_overflow(self, msg: str) -> None:
        self.overflowed.append(msg)  # read on the next tick, in the actor

    def _incident(self, sid: str, incident: str, detail: str) -> None:
        """From any thread: tell the journal, and make the actor rescan on its next tick."""
        self.incidents += 1
        self.ctx.send("journal", WatcherIncident(sessionId=sid, incident=incident, detail=detail))
        if incident == "root_gone":
            f = self.folders.get(sid)
            if f is not None:
                f.root_gone = True
        else:
            self.overflowed.append(f"{incident}:{sid}")

    # --- messages -------------------------------------------------------------------------------------

    def handle(self, sender: str, body: Msg) -> None:
        if isinstance(body, FsEvent):
            self.on_fs_event(body)
        elif isinstance(body, SyncTick):
            self.on_tick()
        elif isinstance(body, WatchFolder):
            self.wanted[body.sessionId] = body.localDir
            self.caches.pop(body.sessionId, None)  # a (re)start: report every file once
            self._watch(body.sessionId, body.localDir)
        elif isinstance(body, UnwatchFolder):
            self.wanted.pop(body.sessionId, None)
            self.caches.pop(body.sessionId, None)
            self._unwatch(body.sessionId)
        else:
            raise TypeError(f"watcher: unexpected message {type(body).__name__}")

    def _watch(self, sid: str, local_dir: str) -> None:
        self._unwatch(sid)
        root = Path(local_dir).resolve()
        f = Folder(sid, root, self.caches.setdefault(sid, {}), self.extra_ignore)
        self.folders[sid] = f
        if not root.is_dir():
            f.root_gone = True
            self.ctx.send("journal", WatcherIncident(sessionId=sid, incident="root_gone",
                                                     detail=f"{root} is not a folder"))
            return
        self._schedule(f)
        self.full_scan(f)

    def _schedule(self, f: Folder) -> None:
        """Watch the folder's tree with a new observer. Its watches are added in observer.start()
        (watchdog's emitter walks the tree there); whether each folder got one is checked at the
        next tick (_verify), since watchdog only raises when the root itself cannot be watched."""
        observer = None
        f.scheduled_at = time.monotonic()
        try:
            observer = Observer()
            f.watch = observer.schedule(_Handler(f, self.debouncer, self._incident), f.root_str, recursive=True)
            observer.start()
            f.observer, f.fd = observer, observer_fd(observer)
            f.verify_all, f.suspects, f.whole_check = True, set(), False
        except OSError as e:
            # ENOSPC: the inotify watch limit (fs.inotify.max_user_watches); EMFILE: instance limit
            f.observer, f.fd = None, None
            self.incidents += 1
            if not f.polling:
                self.ctx.send("journal", WatcherIncident(
                    sessionId=f.sid, incident="watch_limit",
                    detail=f"could not watch {f.root}: {e}; polling every {POLL_S:g} s instead"))
            f.polling = True
            try:
                if observer is not None:
                    observer.stop()
            except Exception:
                pass

    def _unwatch(self, sid: str) -> None:
        f = self.folders.pop(sid, None)
        self.debouncer.forget(sid)
        if f is not None and f.observer is not None:
            try:
                f.observer.stop()
                f.observer.join(timeout=5)
            except Exception:
                log.exception("watcher: stopping the observer of %s failed", f.root)

    # --- looking at paths -------------------------------------------------------------------------------

    def on_fs_event(self, ev: FsEvent) -> None:
        f = self.folders.get(ev.sessionId)
        if f is None or f.root_gone:
            return
        out: list[LocalFile] = []
        for prefix in ev.gone:
            pre = prefix + "/"
            for rel in [r for r in f.cache if r == prefix or r.startswith(pre)]:
                self._look(f, rel, out)
        for rel in ev.scanDirs:
            if not f.ignored(rel, is_dir=True):
                self._walk(f, rel, out, listing=None)
                f.verify_dirs.add(rel)
        rules_changed: set[str] = set()
        for rel in ev.paths:
            self._look(f, rel, out)
            if rel == ".gitignore" or rel.endswith("/.gitignore"):
                rules_changed.add(rel.rpartition("/")[0])
        for d in rules_changed:
            # what the changed rules no longer ignore is reported now, not when it is next touched
            # (files they now ignore stay as they are, here and upstream, as git leaves them tracked)
            if any(o != d and (o == "" or d.startswith(o + "/")) for o in rules_changed):
                continue  # a folder around it is rescanned anyway
            if not (d and f.ignored(d, is_dir=True)):
                self._walk(f, d, out, listing=None)
        self._report(f, out)

    def _report(self, f: Folder, out: list[LocalFile], scan: bool = False) -> None:
        if not out and not scan:
            return
        self.changes += len(out)
        if scan:
            self.ctx.send("journal", LocalChanges(sessionId=f.sid, changes=out, scan=True))
            return
        for i in range(0, len(out), BATCH):
            self.ctx.send("journal", LocalChanges(sessionId=f.sid, changes=out[i:i + BATCH]))

    def _look(self, f: Folder, rel: str, out: list[LocalFile], st: os.stat_result | None = None) -> None:
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
                self._walk(f, rel, out, listing=None)
            return
        if not stat.S_ISREG(st.st_mode):
            return  # symlinks, fifos, sockets: not synced
        f.absent_once.discard(rel)
        sig = (st.st_size, st.st_mtime_ns, st.st_ino)
        mode = stat.S_IMODE(st.st_mode)
        cached = f.cache.get(rel)
        if cached is not None and cached[:3] == sig and cached[4] == mode:
            return
        miss = self.faults.get("echo_miss")
        miss = bool(miss) and miss in rel.rpartition("/")[2]
        echo = self.echoes.consume_sig(full, sig) if not miss else None
        if echo is not None:
            f.cache[rel] = (*sig, echo, mode)
            self.echoes.count(f.sid, "echoesSuppressed")
            return
        digest = file_hash(full)
        if digest is None:
            self._absent(f, rel, out)
            return
        if cached is not None and cached[3] == digest and cached[4] == mode:
            f.cache[rel] = (*sig, digest, mode)  # touched, same content
            return
        f.cache[rel] = (*sig, digest, mode)
        if not miss and self.echoes.consume(full, digest):
            self.echoes.count(f.sid, "echoesSuppressed")
            return
        self._reporting(f, full, digest)
        out.append(LocalFile(rel, digest, st.st_size, mode))

    def _reporting(self, f: Folder, full: str, digest: str) -> None:
        """A state of `full` is about to be reported as a local change."""
        if not self.scanning and self.echoes.wrote(full, digest):
            # the materializer's own last write all the same: the echo set should have caught it
            log.warning("watcher: an echo of our own write of %s was not suppressed", full)
            self.echoes.count(f.sid, "echoesLeaked")
        # not our write: whatever we wrote there before is gone, so no later state may pass for it
        self.echoes.forget(full)

    def _absent(self, f: Folder, rel: str, out: list[LocalFile]) -> None:
        if rel not in f.absent_once:
            f.absent_once.add(rel)  # look again shortly: a save may be halfway through a rename
            self.debouncer.touch(f.sid, rel, delay=ABSENT_CONFIRM_S)
            return
        f.absent_once.discard(rel)
        f.cache.pop(rel, None)
        full = os.path.join(f.root_str, rel)
        if self.echoes.consume(full, ""):
            self.echoes.count(f.sid, "echoesSuppressed")
            return
        self._reporting(f, full, "")
        out.append(LocalFile(rel, "", 0, 0))  # the journal ignores paths it never tracked

    def _walk(self, f: Folder, rel: str, out: list[LocalFile], listing: list[LocalFile] | None) -> None:
        """Every file under `rel` ("" the root): looked at, and (listing) each one's current state."""
        stack = [rel]
        while stack:
            d = stack.pop()
            try:
                entries = list(os.scandir(os.path.join(f.root_str, d) if d else f.root_str))
            except OSError:
                continue
            for e in entries:
                child = f"{d}/{e.name}" if d else e.name
                try:
                    if e.is_dir(follow_symlinks=False):
                        if not f.ignored(child, is_dir=True):
                            stack.append(child)
                        continue
                    if not e.is_file(follow_symlinks=False) or f.ignored(child):
                        continue
                    self._look(f, child, out, e.stat(follow_symlinks=False))
                except OSError:
                    continue
                if listing is not None and child in f.cache:
                    c = f.cache[child]
                    listing.append(LocalFile(child, c[3], c[0], c[4]))

    def full_scan(self, f: Folder) -> None:
        """Walk the whole folder; the journal gets a complete listing (what is missing is gone)."""
        listing: list[LocalFile] = []
        changed: list[LocalFile] = []
        present_before = set(f.cache)
        self.scanning = True
        try:
            self._walk(f, "", changed, listing)
        finally:
            self.scanning = False
        seen = {x.path for x in listing}
        for rel in present_before - seen:
            f.cache.pop(rel, None)
        self._report(f, listing, scan=True)

    # --- health -------------------------------------------------------------------------------------------

    def on_tick(self) -> None:
        now = time.monotonic()
        rescan: set[str] = set()
        if self.overflowed:
            notes, self.overflowed = self.overflowed, []
            for note in notes:
                if note.startswith(("handler_error:", "observer_died:")):
                    rescan.add(note.split(":", 1)[1])
                else:  # an overflow names no session we can trust: rescan them all
                    for sid in self.folders:
                        rescan.add(sid)
                        self.ctx.send("journal", WatcherIncident(sessionId=sid, incident="overflow", detail=note))
        for sid, f in list(self.folders.items()):
            if f.root_gone:
                continue
            if not f.root.is_dir():
                f.root_gone = True
                self._incident(sid, "root_gone", f"{f.root} is gone")
                continue
            if f.observer is not None:
                emitters = [e for e in f.observer.emitters if e.watch == f.watch]
                if not f.observer.is_alive() or not emitters or not all(e.is_alive() for e in emitters):
                    self.ctx.send("journal", WatcherIncident(
                        sessionId=sid, incident="observer_died", detail="watchdog's thread ended; watching again"))
                    self.incidents += 1
                    self._stop_observer(f)
                    self._schedule(f)
                    rescan.add(sid)
            if f.polling and f.observer is not None and now - f.scheduled_at >= RETRY_WATCH_S:
                self._stop_observer(f)  # frees its watches: the new one may get them all
                self._schedule(f)
                rescan.add(sid)
            if f.polling and now - f.last_poll >= POLL_S:
                f.last_poll = now
                if f.observer is None:
                    self._schedule(f)  # the limit may have been raised meanwhile
                rescan.add(sid)
            if f.observer is not None and (f.verify_all or f.verify_dirs or f.suspects) and self._verify(f):
                rescan.add(sid)
        for sid in rescan:
            f = self.folders.get(sid)
            if f is not None and not f.root_gone:
                self.full_scan(f)

    def _stop_observer(self, f: Folder) -> None:
        try:
            f.observer.stop()
            f.observer.join(timeout=5)
        except Exception:
            pass
        f.observer, f.fd = None, None

    def _verify(self, f: Folder) -> bool:
        """Is every folder of the tree (after a scheduling) or every new one among the observer's
        watches? Ones that are not, twice in a row, mean the tree is polled from now on (returns
        True: rescan now, changes in them may have been missed). All of them again ends polling."""
        watches = inotify_watches(f.fd)
        if watches is None:
            f.verify_all, f.verify_dirs, f.suspects = False, set(), set()
            return False  # (not Linux, or not watchdog's inotify observer: the kernel's list cannot be read)
        roots = [""] if f.verify_all else sorted(f.verify_dirs)
        whole = f.verify_all or f.whole_check
        f.verify_all, f.verify_dirs = False, set()
        unwatched_name = self.faults.get("unwatched")
        found: dict[tuple[int, int], str] = {}
        for rel, st in self._folders_below(f, roots):
            key = watch_key(st)
            if key not in watches or (unwatched_name and rel.rpartition("/")[2] == unwatched_name):
                found[key] = rel
        confirmed = {k: r for k, r in found.items() if k in f.suspects}
        # the others: new, or checked too early (watchdog may not have added them yet); once more next tick
        f.suspects = set(found) - set(confirmed)
        f.verify_dirs |= {found[k] for k in f.suspects}
        f.whole_check = whole and bool(f.suspects)
        if confirmed:
            if f.polling:
                return False  # known; still polling
            f.polling = True  # keep the observer for the rest; the rescans cover the unwatched folders
            f.last_poll = time.monotonic()
            self.incidents += 1
            names = ", ".join(sorted(r or "." for r in confirmed.values())[:5])
            self.ctx.send("journal", WatcherIncident(
                sessionId=f.sid, incident="watch_limit",
                detail=f"{len(confirmed)} folder{'s' if len(confirmed) != 1 else ''} of {f.root} could not be "
                       f"watched ({names}{', ...' if len(confirmed) > 5 else ''}): the inotify watch limit "
                       f"(fs.inotify.max_user_watches) is likely reached; rescanning every {POLL_S:g} s"))
            return True
        if whole and not found and f.polling:
            f.polling = False
            self.ctx.send("journal", WatcherIncident(
                sessionId=f.sid, incident="watch_restored", detail=f"every folder of {f.root} is watched again"))
        return False

    def _folders_below(self, f: Folder, roots: list[str]):
        """(rel, stat) of each synced (not ignored) folder at and below `roots`, as watchdog walks them
        (symlinks not followed)."""
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
                        if e.is_dir(follow_symlinks=False) and not f.ignored(child, is_dir=True):
                            stack.append(child)
                    except OSError:
                        continue

    def on_stop(self) -> None:
        self.stop_ticks.set()
        self.debouncer.stopped.set()
        for name in ("watchdog.observers.inotify_c", "watchdog.observers.inotify"):
            logging.getLogger(name).removeHandler(self.spotter)
        for sid in list(self.folders):
            self._unwatch(sid)

    def on_failure(self, exception_type, exception_value, traceback) -> None:
        self.on_stop()
        super().on_failure(exception_type, exception_value, traceback)
