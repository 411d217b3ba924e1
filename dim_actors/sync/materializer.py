"""The materializer actor: puts upstream states on disk, atomically, and nowhere else.

For each item the journal sends it checks the path (no absolute path, no '..', nothing
through a symlink that leads out, nothing in .git: ``_locate``, the same rules as
``paths.confined``), checks the local file still holds what the journal believes
(``expectedHash``; otherwise the user changed it meanwhile: ``local_changed``, nothing
is written), then puts the content in a temp file in the target's folder, sets its
permissions (portable: 0644, or 0755 when upstream's mode has an executable bit) and
renames it over the target. A write that fails (a full disk, permission denied, a name
too long) fails that item only, with its reason in words (paths.os_error_reason). Every
write and deletion is told to the watcher before it happens (WritesAhead, once per
handled message), so the watcher ignores exactly these states and nothing else: the
message's contents are first staged in temp files (noise to the watcher) and checked,
then the watcher is told every state they will leave, with the (size, mtime, inode) each
rename keeps, and only then are the renames and deletions done, in the items' order
(``_settle``). An item that reads or writes a path an earlier one of the message is
about to write has those settled first, so each item sees what the ones before it left.
What was told but then not written goes to the watcher too (WritesAbandoned).

Content comes inline (small files), from a local file that already holds it (a rename, a
copy), or is fetched by hash: the connection process verifies it and leaves it in a
spool file, which is then moved (same filesystem) or copied into place. Results go back
to the journal in one Materialized message per handled message.

Per file this costs a handful of system calls (docs/performance.md, "sync"): the sync
folder's real path is resolved once per message, and a path is confined by an lstat of
each of its folders (a symlinked one is resolved and must stay inside) and of the target
itself, which also tells what is there now (for fetched content, once it is there, right
before the write); folders are created only when that walk found them missing. A spool
file gets its permissions before it enters the sync folder (one filesystem event fewer
for the watcher), and the watcher is told the file's (size, mtime, inode) before the
rename, which keeps all three.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import secrets
import shutil
import stat as stat_
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from dim_actors.kernel.actor import ActorContext, DimActor
from dim_actors.messages import (
    ContentReady,
    EchoWrite,
    FetchContent,
    ForgetSession,
    Materialize,
    Materialized,
    MaterializedItem,
    MaterializeItem,
    Msg,
    Outcome,
    WritesAbandoned,
    WritesAhead,
)
from dim_actors.sync.folders import make_user_folder, make_user_folders
from dim_actors.sync.hashing import file_hash
from dim_actors.sync.paths import (
    UnsafePath,
    check_relative,
    inside,
    os_error_reason,
    portable_mode,
)

log = logging.getLogger(__name__)


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _hash_of(path: str, st: os.stat_result | None) -> str:
    """The content hash of a local file given its lstat: "" when there is none, "-" for
    something that is not a regular file (never what anyone expects)."""
    if st is None:
        return ""
    if not stat_.S_ISREG(st.st_mode):
        return "-"
    return file_hash(path) or ""


def current_hash(path: Path | str) -> str:
    """The content hash of a local file, "" when there is none."""
    p = os.fspath(path)
    return _hash_of(p, _lstat(p))


def _write_new(path: str, data: bytes, content_hash: str, mode: int) -> os.stat_result:
    """A new file at `path` holding `data`, checked against its hash, with `mode`; its
    stat."""
    if hashlib.sha256(data).hexdigest() != content_hash:
        raise OSError(errno.EIO, "inline content does not match its hash")
    fd = os.open(
        path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode
    )
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        st = os.fstat(fd)
        if stat_.S_IMODE(st.st_mode) != mode:  # the umask took bits away
            os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return st


def _copy_to(src: str, path: str, mode: int) -> os.stat_result:
    shutil.copyfile(src, path)
    st = os.stat(path)
    _set_mode(path, st, mode)
    return st


def _set_mode(path: str, st: os.stat_result, mode: int) -> None:
    if stat_.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)


def _saved_meanwhile(target: str, cur: str, item: MaterializeItem) -> str | None:
    """The last look before the rename: the target's hash if a save landed there since
    `cur` was read (it is never overwritten), else None. A conflict copy, or an item
    that does not say what it expects, is not checked."""
    if item.conflictCopy or item.expectedHash is None:
        return None
    now = current_hash(target)
    return now if now != cur else None


def _abandon(tmp: str, moved_from: str | None) -> None:
    """A write that failed: the temp file goes, or back where it came from (a local
    file, which is never deleted: if it cannot go back, it stays as the temp file)."""
    try:
        if moved_from is not None:
            os.rename(tmp, moved_from)
        else:
            os.unlink(tmp)
    except OSError:
        pass


class Loc(NamedTuple):
    """A confined target: its full path, its folder, the folders to create (outermost
    first), and its lstat when it was located (None: nothing there)."""

    full: str
    parent: str
    missing: tuple[str, ...]
    st: os.stat_result | None
    through_link: bool = False


def _joined(local_dir: str, rel: str) -> str:
    """Where `rel` is, as _locate joins it (a path it refuses may come out otherwise)."""
    return os.path.join(local_dir, *(x for x in rel.split("/") if x not in ("", ".")))


class Pending(NamedTuple):
    """A write of the message being handled, staged: the states it will leave (told to
    the watcher before any of the message's writes is done), `commit`, which does it and
    returns the states it did not leave after all, and `abandon`, which undoes the
    staging if it is never committed."""

    sid: str
    item: MaterializeItem
    writes: list[EchoWrite]
    commit: Callable[[], list[EchoWrite]]
    abandon: Callable[[], None] = lambda: None


class Materializer(DimActor):
    def __init__(self, ctx: ActorContext):
        super().__init__(ctx)
        self._pending: list[Pending] = []
        self._pending_paths: set[str] = set()  # the paths they write
        self._abandoned: dict[str, list[EchoWrite]] = {}  # sid -> told, not written
        # (sessionId, hash) -> [(localDir, item, its checked path or None)] waiting for
        # fetched content
        self.waiting: dict[
            tuple[str, str], list[tuple[str, MaterializeItem, str | None]]
        ] = {}
        self.written = 0
        self.rejected = 0
        self.failed = 0
        self.fetched = 0
        self._results: dict[str, list[MaterializedItem]] = {}
        self._fetch: dict[str, list[str]] = {}
        self._roots: dict[
            str, str | None
        ] = {}  # localDir -> its real path (None: not a folder), per message
        # + a counter: a temp name per write, no syscall
        self._tmp_prefix = f".dim-{secrets.token_hex(5)}"
        self._tmp_count = 0
        # spool files of the message being handled that are in place now: nothing left
        # to remove (on_content)
        self._placed: set[str] = set()

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "written": self.written,
            "rejected": self.rejected,
            "failed": self.failed,
            "fetched": self.fetched,
            "waiting": sum(len(v) for v in self.waiting.values()),
        }

    def handle(self, sender: str, body: Msg) -> None:
        try:
            match body:
                case Materialize():
                    for item in body.items:
                        self.apply(body.sessionId, body.localDir, item)
                    self._settle()
                case ContentReady():
                    self.on_content(body)
                case ForgetSession():
                    for key in [k for k in self.waiting if k[0] == body.sessionId]:
                        del self.waiting[key]
                case _:
                    raise TypeError(
                        f"materializer: unexpected message {type(body).__name__}"
                    )
        finally:
            self._drop_pending()
            self._roots.clear()
        self._flush()

    # --- the message's writes: told ahead, then done ----------------------------------

    def _stage(self, p: Pending) -> None:
        self._pending.append(p)
        self._pending_paths.update(w.path for w in p.writes)

    def _settle_before(self, paths: list[str]) -> None:
        """About to read or write `paths`: an earlier item's staged write to one of them
        is done first."""
        if self._pending_paths and not self._pending_paths.isdisjoint(paths):
            self._settle()

    def _settle(self) -> None:
        """The staged writes: the watcher is told every state they will leave, then they
        are done, in order. The watcher learns of a write before its file's event can
        reach it."""
        pending, self._pending, self._pending_paths = self._pending, [], set()
        ahead: dict[str, list[EchoWrite]] = {}
        for p in pending:
            ahead.setdefault(p.sid, []).extend(p.writes)
        for sid, writes in ahead.items():
            # Into the watcher's mailbox before the writes, even inside a Batch.
            self.ctx.send_now("watcher", WritesAhead(sessionId=sid, writes=writes))
        for i, p in enumerate(pending):
            try:
                undone = p.commit()
            except OSError as e:
                self._failed(p.sid, p.item, e)
                undone = p.writes
            except BaseException:
                self._pending = pending[i + 1 :]  # their temp files go (_drop_pending)
                raise
            if undone:
                self._abandoned.setdefault(p.sid, []).extend(undone)

    def _drop_pending(self) -> None:
        """Staged writes never done (the handler failed): their temp files go, or back
        where they came from."""
        pending, self._pending, self._pending_paths = self._pending, [], set()
        for p in pending:
            p.abandon()

    def _flush(self) -> None:
        for sid, writes in self._abandoned.items():
            self.ctx.send("watcher", WritesAbandoned(sessionId=sid, writes=writes))
        self._abandoned = {}
        for sid, hashes in self._fetch.items():
            self.ctx.send("connection", FetchContent(sessionId=sid, hashes=hashes))
        self._fetch = {}
        for sid, results in self._results.items():
            self.ctx.send("journal", Materialized(sessionId=sid, results=results))
        self._results = {}

    def _result(
        self,
        sid: str,
        item: MaterializeItem,
        outcome: Outcome,
        digest: str = "",
        detail: str = "",
    ) -> None:
        self._results.setdefault(sid, []).append(
            MaterializedItem(item.path, item.iteration, outcome, digest, detail)
        )

    # --- where ------------------------------------------------------------------------

    def _real_root(self, local_dir: str) -> str | None:
        """The sync folder's real path, resolved once per handled message; None if it is
        no folder."""
        try:
            return self._roots[local_dir]
        except KeyError:
            path = os.path.realpath(local_dir)
            real = path if os.path.isdir(path) else None
            self._roots[local_dir] = real
            return real

    def _locate(self, local_dir: str, rel: str, clean: str | None = None) -> Loc:
        """The local path for workspace path `rel`, or UnsafePath if it would land
        outside the folder: the rules of paths.confined, checked with an lstat per
        folder of the path (only a symlinked folder is resolved, and must stay inside)
        and one of the target (it must not be a symlink). `clean`: check_relative(rel),
        when that was done already."""
        if clean is None:
            clean = check_relative(rel)
        parts = clean.split("/")
        real_root = self._real_root(local_dir)
        folder = local_dir
        missing: list[str] = []
        resolve = False
        for name in parts[:-1]:
            folder = os.path.join(folder, name)
            if missing:
                missing.append(folder)
                continue
            st = _lstat(folder)
            if st is None:
                missing.append(folder)
            elif stat_.S_ISLNK(st.st_mode):
                # what lies beyond is wherever it leads: resolve the whole folder below
                resolve = True
                break
        full = os.path.join(local_dir, *parts)
        parent = os.path.dirname(full)
        if resolve:
            if real_root is None or not inside(os.path.realpath(parent), real_root):
                raise UnsafePath(
                    f"path {rel!r} leads outside the sync folder through a symlink"
                )
            missing = [] if os.path.isdir(parent) else [parent]
        st = _lstat(full)
        if st is not None and stat_.S_ISLNK(st.st_mode):
            raise UnsafePath(f"path {rel!r} is a symlink; refusing to write through it")
        return Loc(full, parent, tuple(missing), st, resolve)

    def _make_folders_ahead(
        self, sid: str, loc: Loc, item: MaterializeItem
    ) -> list[EchoWrite]:
        """The target's missing folders, made before its temp file is written, so the
        temp file is written in the target's own folder: a rename into a folder that is
        not watched yet is half a move to watchdog, which then holds every later event of
        the tree for half a second (its move grouping). The watcher walks a new folder as
        soon as it sees it, so it is told of the file first: its content now, its
        (size, mtime, inode) with the message's other writes."""
        told = [EchoWrite(loc.full, item.contentHash)]
        self.ctx.send_now("watcher", WritesAhead(sessionId=sid, writes=told))
        try:
            self._make_folders(loc)
        except OSError:
            self.ctx.send_now("watcher", WritesAbandoned(sessionId=sid, writes=told))
            raise
        return told

    def _make_folders(self, loc: Loc) -> None:
        """The target's missing folders, one by one below the sync folder (never the
        folder itself: a deleted sync folder is not brought back by a write)."""
        for folder in loc.missing:
            if loc.through_link:
                # below a symlinked folder that stays inside
                make_user_folders(Path(folder))
                continue
            try:
                make_user_folder(folder)
            except FileExistsError:
                # made meanwhile by someone else: it must be a real folder
                st = os.lstat(folder)
                if not stat_.S_ISDIR(st.st_mode):
                    raise OSError(
                        errno.ENOTDIR,
                        f"{folder} appeared meanwhile and is not a folder",
                    ) from None

    # --- one item ---------------------------------------------------------------------

    def apply(self, sid: str, local_dir: str, item: MaterializeItem) -> None:
        fetch = (
            item.content is None
            and not item.isDeletion
            and not item.renamedFrom
            and not item.sourcePath
            and not item.conflictCopy
        )
        if self._pending_paths and not fetch:
            rels = (item.path, item.conflictCopy, item.renamedFrom, item.sourcePath)
            self._settle_before([_joined(local_dir, rel) for rel in rels if rel])
        try:
            if fetch:
                # only the path's own rules here: where it leads on disk is checked when
                # the content is there, right before it is written (on_content)
                clean = check_relative(item.path)
            else:
                loc = self._locate(local_dir, item.conflictCopy or item.path)
                if item.conflictCopy:
                    self._locate(local_dir, item.path)
        except UnsafePath as e:
            self.rejected += 1
            log.warning("sync %s: refused an upstream change: %s", sid, e)
            self._result(sid, item, "rejected", detail=str(e))
            return
        except OSError as e:
            # a name too long for the disk, a folder we may not look into...
            self._failed(sid, item, e)
            return
        if self._real_root(local_dir) is None:
            self._result(sid, item, "failed", detail=f"{local_dir} is not a folder")
            return
        try:
            if fetch:
                self._wait_for(sid, local_dir, item, clean)
            elif item.isDeletion:
                self._delete(sid, local_dir, loc, item)
            elif item.content is not None:
                self._install(sid, local_dir, loc, item, data=item.content)
            elif not item.conflictCopy and self._from_local(sid, local_dir, loc, item):
                pass
            else:
                self._wait_for(sid, local_dir, item, None)
        except OSError as e:
            self._failed(sid, item, e)

    def _failed(self, sid: str, item: MaterializeItem, e: OSError) -> None:
        """That item only: the journal lists it with the reason and tries it again
        later."""
        self.failed += 1
        # The journal warns once per failing item (not at each retry); the system's own
        # words are here.
        log.debug("sync %s: could not write %s: %s", sid, item.path, e)
        self._result(sid, item, "failed", detail=os_error_reason(e))

    def _wait_for(
        self, sid: str, local_dir: str, item: MaterializeItem, clean: str | None
    ) -> None:
        """Fetched content, one fetch per hash however many items wait for it."""
        waiters = self.waiting.setdefault((sid, item.contentHash), [])
        waiters.append((local_dir, item, clean))
        if len(waiters) == 1:
            self._fetch.setdefault(sid, []).append(item.contentHash)

    def _expected_ok(self, loc: Loc, item: MaterializeItem) -> tuple[bool, str]:
        cur = _hash_of(loc.full, loc.st)
        if item.conflictCopy or item.expectedHash is None:
            return True, cur
        return cur == item.expectedHash or cur == (
            item.contentHash if not item.isDeletion else ""
        ), cur

    def _delete(
        self, sid: str, local_dir: str, loc: Loc, item: MaterializeItem
    ) -> None:
        ok, cur = self._expected_ok(loc, item)
        if not ok:
            self._result(sid, item, "local_changed", cur)
            return
        if cur == "":
            self._result(sid, item, "unchanged", "")
            return
        full = loc.full
        writes = [EchoWrite(full, "")]

        def commit() -> list[EchoWrite]:
            undone: list[EchoWrite] = []
            try:
                os.unlink(full)
            except FileNotFoundError:
                undone = writes
            self.written += 1
            self._prune(local_dir, loc.parent)
            self._result(sid, item, "deleted", "")
            return undone

        self._stage(Pending(sid, item, writes, commit))

    def _prune(self, local_dir: str, folder: str) -> None:
        """Remove folders the deletion left empty (upstream has no folders of its own)."""
        real_root = self._real_root(local_dir)
        root = os.path.normpath(local_dir)
        while (
            folder != root
            and folder.startswith(root + os.sep)
            and os.path.realpath(folder) != real_root
        ):
            try:
                os.rmdir(folder)
            except OSError:
                return
            folder = os.path.dirname(folder)

    def _from_local(
        self, sid: str, local_dir: str, loc: Loc, item: MaterializeItem
    ) -> bool:
        """A rename of a local file that still holds the content, or a copy of another
        one."""
        for rel, move in ((item.renamedFrom, True), (item.sourcePath, False)):
            if not rel:
                continue
            try:
                src = self._locate(local_dir, rel)
            except UnsafePath:
                continue
            if src.st is None or not stat_.S_ISREG(src.st.st_mode):
                continue
            h = _hash_of(src.full, src.st)
            if move and item.renamedFromHash and h != item.renamedFromHash:
                continue
            if h != item.contentHash:
                continue
            self._install(
                sid, local_dir, loc, item, src=src.full, move=move, local_src=True
            )
            return True
        return False

    def _install(
        self,
        sid: str,
        local_dir: str,
        loc: Loc,
        item: MaterializeItem,
        data: bytes | None = None,
        src: str | None = None,
        move: bool = False,
        local_src: bool = False,
    ) -> None:
        """Stages the content for its place (written when the message's writes are
        settled: with ``move``, `src` is then gone, moved into place), or answers
        "unchanged" or "local_changed" at once (`src` is where it was)."""
        ok, cur = self._expected_ok(loc, item)
        if not ok:
            self._result(sid, item, "local_changed", cur)
            return
        mode = portable_mode(item.permissions)
        target = loc.full
        if cur == item.contentHash and not item.conflictCopy:
            self._apply_mode(target, loc.st, mode)
            if move and local_src and src is not None and src != target:
                self._remove_source(sid, item, src, cur)
            else:
                self._result(sid, item, "unchanged", cur)
            return
        told = self._make_folders_ahead(sid, loc, item) if loc.missing else []
        self._tmp_count += 1
        tmp = os.path.join(loc.parent, f"{self._tmp_prefix}{self._tmp_count:x}.tmp")
        try:
            st, moved_from = self._into_tmp(tmp, item, mode, data, src, move, local_src)
        except OSError:
            if told:
                self.ctx.send_now(
                    "watcher", WritesAbandoned(sessionId=sid, writes=told)
                )
            raise
        # a rename keeps size, mtime and inode: the watcher will know the file without
        # reading it
        writes = [
            EchoWrite(target, item.contentHash, (st.st_size, st.st_mtime_ns, st.st_ino))
        ]
        if move and local_src:
            assert src is not None
            writes.append(EchoWrite(src, ""))
        prune = os.path.dirname(src) if move and local_src and src else None

        def commit() -> list[EchoWrite]:
            nonlocal moved_from
            try:
                if move and local_src:
                    assert src is not None
                    moved = self._move_to(src, tmp, mode, local_src)
                    moved_from = src
                    _set_mode(tmp, moved, mode)
                now = _saved_meanwhile(target, cur, item)
                if now is not None:
                    if moved_from is not None:
                        os.rename(tmp, moved_from)  # put it back where it was
                        moved_from = None
                    else:
                        os.unlink(tmp)  # the user's save stands: ours goes
                    self._result(sid, item, "local_changed", now)
                    return writes
                os.replace(tmp, target)
            except BaseException:
                # a local file (a rename's source) is never lost to a failure
                _abandon(tmp, moved_from)
                raise
            if moved_from is not None and not local_src:
                self._placed.add(moved_from)
            self.written += 1
            if item.conflictCopy:
                self._result(sid, item, "copied", item.contentHash, item.conflictCopy)
                return []
            self._result(sid, item, "written", item.contentHash)
            if prune is not None:
                self._prune(local_dir, prune)
            return []

        self._stage(
            Pending(sid, item, writes, commit, lambda: _abandon(tmp, moved_from))
        )

    def _into_tmp(
        self,
        tmp: str,
        item: MaterializeItem,
        mode: int,
        data: bytes | None,
        src: str | None,
        move: bool,
        local_src: bool,
    ) -> tuple[os.stat_result, str | None]:
        """The content at `tmp`: the stat the file will have in place, and `src` when it
        was moved there. A local file to move stays where it is until the writes are
        settled (its leaving is told ahead too): its own stat, then."""
        moved_from: str | None = None
        try:
            if data is not None:
                return _write_new(tmp, data, item.contentHash, mode), None
            assert src is not None
            if move and local_src:
                return os.stat(src), None
            if move:
                st = self._move_to(src, tmp, mode, local_src)
                moved_from = src
                _set_mode(tmp, st, mode)
                return st, src
            return _copy_to(src, tmp, mode), None
        except BaseException:
            _abandon(tmp, moved_from)
            raise

    def _remove_source(
        self, sid: str, item: MaterializeItem, src: str, cur: str
    ) -> None:
        """A rename's local source whose content is at the target already: it goes with
        the message's writes."""

        def commit() -> list[EchoWrite]:
            try:
                os.unlink(src)
            except FileNotFoundError:
                pass
            self._result(sid, item, "unchanged", cur)
            return []

        self._stage(Pending(sid, item, [EchoWrite(src, "")], commit))

    def _move_to(
        self, src: str, tmp: str, mode: int, local_src: bool
    ) -> os.stat_result:
        """`src` moved to `tmp` (copied and removed across file systems); its stat."""
        st = os.stat(src)
        if not local_src and stat_.S_IMODE(st.st_mode) != mode:
            # while it is still in the spool: no event in the sync folder
            os.chmod(src, mode)
            st = os.stat(src)
        try:
            os.rename(src, tmp)
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
            shutil.copyfile(src, tmp)
            os.unlink(src)
            st = os.stat(tmp)
        return st

    def _apply_mode(self, target: str, st: os.stat_result | None, mode: int) -> None:
        try:
            if st is None:
                st = os.stat(target)
            if stat_.S_IMODE(st.st_mode) & 0o777 != mode:
                os.chmod(target, mode)
        except OSError:
            pass

    # --- fetched content --------------------------------------------------------------

    def on_content(self, msg: ContentReady) -> None:
        spools: list[str] = []
        try:
            for c in msg.items:
                spool = c.spoolPath or None
                if spool is not None:
                    spools.append(spool)
                self._content(msg.sessionId, c.contentHash, c.error, spool)
            self._settle()
        finally:
            self._drop_pending()
            # what was not moved into place (or was put back) goes
            placed, self._placed = self._placed, set()
            for spool in spools:
                if spool in placed:
                    continue
                try:
                    os.unlink(spool)
                except OSError:
                    pass

    def _content(
        self, sid: str, content_hash: str, error: str | None, spool: str | None
    ) -> None:
        """The items waiting for this content: each gets a copy of the spool file, the
        last one the file itself."""
        waiters = self.waiting.pop((sid, content_hash), [])
        for i, (local_dir, item, clean) in enumerate(waiters):
            if error or spool is None:
                self.failed += 1
                self._result(sid, item, "failed", detail=error or "no content")
                continue
            target = item.conflictCopy or item.path
            if self._pending_paths:
                joined = _joined(local_dir, target)
                self._settle_before(
                    [joined, _joined(local_dir, item.path)]
                    if item.conflictCopy
                    else [joined]
                )
            try:
                loc = self._locate(local_dir, target, clean)
            except UnsafePath as e:
                self.rejected += 1
                self._result(sid, item, "rejected", detail=str(e))
                continue
            except OSError as e:
                self._failed(sid, item, e)
                continue
            last = i == len(waiters) - 1
            try:
                if self._real_root(local_dir) is None:
                    raise OSError(errno.ENOENT, f"{local_dir} is not a folder")
                self._install(sid, local_dir, loc, item, src=spool, move=last)
                self.fetched += 1
            except OSError as e:
                self._failed(sid, item, e)
