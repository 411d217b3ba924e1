"""The materializer actor: puts upstream states on disk, atomically, and nowhere else.

For each item the journal sends it checks the path (no absolute path, no '..', nothing through a
symlink that leads out, nothing in .git: ``_locate``, the same rules as ``paths.confined``), checks
the local file still holds what the journal believes (``expectedHash``; otherwise the user changed
it meanwhile: ``local_changed``, nothing is written), then puts the content in a temp file in the
target's folder, sets its permissions (portable: 0644, or 0755 when upstream's mode has an
executable bit) and renames it over the target. A write that fails (a full disk, permission
denied, a name too long) fails that item only, with its reason in words (paths.os_error_reason).
Every write and deletion is first registered in the echo set, so the watcher ignores exactly these
states and nothing else.

Content comes inline (small files), from a local file that already holds it (a rename, a copy), or
is fetched by hash: the connection process verifies it and leaves it in a spool file, which is then
moved (same filesystem) or copied into place. Results go back to the journal in one Materialized
message per handled message.

Per file this costs a handful of system calls (docs/performance.md, "sync"): the sync folder's real
path is resolved once per message, and a path is confined by an lstat of each of its folders (a
symlinked one is resolved and must stay inside) and of the target itself, which also tells what is
there now (for fetched content, once it is there, right before the write); folders are created only
when that walk found them missing. A spool file gets its
permissions before it enters the sync folder (one filesystem event fewer for the watcher), and the
echo set gets the file's (size, mtime, inode) before the rename, which keeps all three.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import secrets
import shutil
import stat as stat_
from pathlib import Path
from typing import Any, NamedTuple

from dim_actors.kernel.actor import DimActor
from dim_actors.messages import (
    ContentReady,
    FetchContent,
    ForgetSession,
    Materialize,
    Materialized,
    MaterializedItem,
    MaterializeItem,
    Msg,
)
from dim_actors.sync.echoes import EchoSet
from dim_actors.sync.folders import make_user_folder, make_user_folders
from dim_actors.sync.hashing import file_hash
from dim_actors.sync.paths import (
    UnsafePath,
    check_relative,
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
    """The content hash of a local file given its lstat: "" when there is none, "-" for something
    that is not a regular file (never what anyone expects)."""
    if st is None:
        return ""
    if not stat_.S_ISREG(st.st_mode):
        return "-"
    return file_hash(path) or ""


def current_hash(path: Path | str) -> str:
    """The content hash of a local file, "" when there is none."""
    p = os.fspath(path)
    return _hash_of(p, _lstat(p))


def _inside(real: str, real_root: str) -> bool:
    return real == real_root or real.startswith(real_root + os.sep)


class Loc(NamedTuple):
    """A confined target: its full path, its folder, the folders to create (outermost first), and
    its lstat when it was located (None: nothing there)."""

    full: str
    parent: str
    missing: tuple[str, ...]
    st: os.stat_result | None
    through_link: bool = False


class Materializer(DimActor):
    def on_start(self) -> None:
        super().on_start()
        self.echoes: EchoSet = self.ctx.extra.setdefault("echoes", EchoSet())
        # (sessionId, hash) -> [(localDir, item, its checked path or None)] waiting for fetched content
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
        self._tmp_prefix = f".dim-{secrets.token_hex(5)}"  # + a counter: a temp name per write, no syscall
        self._tmp_count = 0

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
            if isinstance(body, Materialize):
                for item in body.items:
                    self.apply(body.sessionId, body.localDir, item)
            elif isinstance(body, ContentReady):
                self.on_content(body)
            elif isinstance(body, ForgetSession):
                for key in [k for k in self.waiting if k[0] == body.sessionId]:
                    del self.waiting[key]
            else:
                raise TypeError(
                    f"materializer: unexpected message {type(body).__name__}"
                )
        finally:
            self._roots.clear()
        self._flush()

    def _flush(self) -> None:
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
        outcome: str,
        digest: str = "",
        detail: str = "",
    ) -> None:
        self._results.setdefault(sid, []).append(
            MaterializedItem(item.path, item.iteration, outcome, digest, detail)
        )

    # --- where ------------------------------------------------------------------------------------------

    def _real_root(self, local_dir: str) -> str | None:
        """The sync folder's real path, resolved once per handled message; None if it is no folder."""
        try:
            return self._roots[local_dir]
        except KeyError:
            real = os.path.realpath(local_dir)
            real = real if os.path.isdir(real) else None
            self._roots[local_dir] = real
            return real

    def _locate(self, local_dir: str, rel: str, clean: str | None = None) -> Loc:
        """The local path for workspace path `rel`, or UnsafePath if it would land outside the folder:
        the rules of paths.confined, checked with an lstat per folder of the path (only a symlinked
        folder is resolved, and must stay inside) and one of the target (it must not be a symlink).
        `clean`: check_relative(rel), when that was done already."""
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
                resolve = True  # what lies beyond is wherever it leads: resolve the whole folder below
                break
        full = os.path.join(local_dir, *parts)
        parent = os.path.dirname(full)
        if resolve:
            if real_root is None or not _inside(os.path.realpath(parent), real_root):
                raise UnsafePath(
                    f"path {rel!r} leads outside the sync folder through a symlink"
                )
            missing = [] if os.path.isdir(parent) else [parent]
        st = _lstat(full)
        if st is not None and stat_.S_ISLNK(st.st_mode):
            raise UnsafePath(f"path {rel!r} is a symlink; refusing to write through it")
        return Loc(full, parent, tuple(missing), st, resolve)

    def _make_folders(self, loc: Loc) -> None:
        """The target's missing folders, one by one below the sync folder (never the folder itself:
        a deleted sync folder is not brought back by a write)."""
        for folder in loc.missing:
            if loc.through_link:
                make_user_folders(
                    Path(folder)
                )  # below a symlinked folder that stays inside
                continue
            try:
                make_user_folder(folder)
            except FileExistsError:
                st = os.lstat(
                    folder
                )  # made meanwhile by someone else: it must be a real folder
                if not stat_.S_ISDIR(st.st_mode):
                    raise OSError(
                        errno.ENOTDIR,
                        f"{folder} appeared meanwhile and is not a folder",
                    ) from None

    # --- one item ---------------------------------------------------------------------------------------

    def apply(self, sid: str, local_dir: str, item: MaterializeItem) -> None:
        fetch = (
            item.content is None
            and not item.isDeletion
            and not item.renamedFrom
            and not item.sourcePath
            and not item.conflictCopy
        )
        try:
            if fetch:
                # only the path's own rules here: where it leads on disk is checked when the content
                # is there, right before it is written (on_content)
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
        except (
            OSError
        ) as e:  # a name too long for the disk, a folder we may not look into...
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
        """That item only: the journal lists it with the reason and tries it again later."""
        self.failed += 1
        # The journal warns once per failing item (not at each retry); the system's own words are here.
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
        self.echoes.add(full, "")
        try:
            os.unlink(full)
        except FileNotFoundError:
            self.echoes.discard(full, "")
        self.written += 1
        self._prune(local_dir, loc.parent)
        self._result(sid, item, "deleted", "")

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
        """A rename of a local file that still holds the content, or a copy of another one."""
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
            outcome = self._install(
                sid, local_dir, loc, item, src=src.full, move=move, local_src=True
            )
            if move and outcome == "written":
                self._prune(local_dir, src.parent)
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
    ) -> str:
        """Puts the content in place: "written" (with ``move``, `src` is gone: moved into place),
        "copied" (a conflict copy), "unchanged" or "local_changed" (`src` is where it was)."""
        ok, cur = self._expected_ok(loc, item)
        if not ok:
            self._result(sid, item, "local_changed", cur)
            return "local_changed"
        mode = portable_mode(item.permissions)
        target = loc.full
        if cur == item.contentHash and not item.conflictCopy:
            self._apply_mode(target, loc.st, mode)
            if move and local_src and src is not None and src != target:
                self.echoes.add(src, "")
                try:
                    os.unlink(src)
                except FileNotFoundError:
                    pass
            self._result(sid, item, "unchanged", cur)
            return "unchanged"
        self._make_folders(loc)
        self._tmp_count += 1
        tmp = os.path.join(loc.parent, f"{self._tmp_prefix}{self._tmp_count:x}.tmp")
        moved = False  # src is now at tmp
        try:
            if data is not None:
                if hashlib.sha256(data).hexdigest() != item.contentHash:
                    raise OSError(errno.EIO, "inline content does not match its hash")
                fd = os.open(
                    tmp,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                    mode,
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
            elif move:
                assert src is not None
                st = os.stat(src)
                if not local_src and stat_.S_IMODE(st.st_mode) != mode:
                    os.chmod(
                        src, mode
                    )  # while it is still in the spool: no event in the sync folder
                    st = os.stat(src)
                if local_src:
                    self.echoes.add(src, "")
                try:
                    os.rename(src, tmp)
                except OSError as e:
                    if e.errno != errno.EXDEV:
                        raise
                    shutil.copyfile(src, tmp)
                    os.unlink(src)
                    st = os.stat(tmp)
                moved = True
                if stat_.S_IMODE(st.st_mode) != mode:
                    os.chmod(tmp, mode)
            else:
                assert src is not None
                shutil.copyfile(src, tmp)
                st = os.stat(tmp)
                if stat_.S_IMODE(st.st_mode) != mode:
                    os.chmod(tmp, mode)
            # a rename keeps size, mtime and inode: the watcher will know the file without reading it
            self.echoes.add(
                target, item.contentHash, (st.st_size, st.st_mtime_ns, st.st_ino)
            )
            if not item.conflictCopy and item.expectedHash is not None:
                # last look before the rename: a save that landed meanwhile is never overwritten
                now = current_hash(target)
                if now != cur:
                    self.echoes.discard(target, item.contentHash)
                    if moved:
                        os.rename(tmp, src)  # put it back where it was
                        moved = False
                    self._result(sid, item, "local_changed", now)
                    return "local_changed"
            os.replace(tmp, target)
        except BaseException:
            if moved:
                try:
                    os.rename(
                        tmp, src
                    )  # a local file (a rename's source) is never lost to a failure
                except OSError:
                    pass
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self.written += 1
        if item.conflictCopy:
            self._result(sid, item, "copied", item.contentHash, item.conflictCopy)
            return "copied"
        self._result(sid, item, "written", item.contentHash)
        return "written"

    def _apply_mode(self, target: str, st: os.stat_result | None, mode: int) -> None:
        try:
            if st is None:
                st = os.stat(target)
            if stat_.S_IMODE(st.st_mode) & 0o777 != mode:
                os.chmod(target, mode)
        except OSError:
            pass

    # --- fetched content ------------------------------------------------------------------------------

    def on_content(self, msg: ContentReady) -> None:
        for c in msg.items:
            waiters = self.waiting.pop((msg.sessionId, c.contentHash), [])
            spool = c.spoolPath or None
            gone = False
            try:
                for i, (local_dir, item, clean) in enumerate(waiters):
                    if c.error or spool is None:
                        self.failed += 1
                        self._result(
                            msg.sessionId,
                            item,
                            "failed",
                            detail=c.error or "no content",
                        )
                        continue
                    try:
                        loc = self._locate(
                            local_dir, item.conflictCopy or item.path, clean
                        )
                    except UnsafePath as e:
                        self.rejected += 1
                        self._result(msg.sessionId, item, "rejected", detail=str(e))
                        continue
                    except OSError as e:
                        self._failed(msg.sessionId, item, e)
                        continue
                    last = i == len(waiters) - 1
                    try:
                        if self._real_root(local_dir) is None:
                            raise OSError(errno.ENOENT, f"{local_dir} is not a folder")
                        outcome = self._install(
                            msg.sessionId, local_dir, loc, item, src=spool, move=last
                        )
                        gone = last and outcome in ("written", "copied")
                        self.fetched += 1
                    except OSError as e:
                        self._failed(msg.sessionId, item, e)
            finally:
                if spool is not None and not gone:
                    try:
                        os.unlink(spool)
                    except OSError:
                        pass
