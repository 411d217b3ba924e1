"""The materializer actor: puts upstream states on disk, atomically, and nowhere else.

For each item the journal sends it checks the path (paths.confined: no absolute path, no '..',
nothing through a symlink that leads out, nothing in .git), checks the local file still holds what
the journal believes (``expectedHash``; otherwise the user changed it meanwhile: ``local_changed``,
nothing is written), then writes a temp file in the same folder, sets its permissions and renames
it over the target. Every write and deletion is first registered in the echo set, so the watcher
ignores exactly these states and nothing else.

Content comes inline (small files), from a local file that already holds it (a rename, a copy), or
is fetched by hash: the connection process verifies it and leaves it in a spool file, which is then
moved (same filesystem) or copied into place. Results go back to the journal in one Materialized
message per handled message.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

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
from dim_actors.supervisor.actor import DimActor
from dim_actors.sync.echoes import EchoSet
from dim_actors.sync.paths import UnsafePath, confined
from dim_actors.sync.watcher import file_hash

log = logging.getLogger(__name__)


def current_hash(path: Path) -> str:
    """The content hash of a local file, "" when there is none."""
    if not os.path.lexists(path):
        return ""
    if path.is_symlink() or not path.is_file():
        return "-"  # something that is not a regular file: never what anyone expects
    return file_hash(path) or ""


class Materializer(DimActor):
    def on_start(self) -> None:
        super().on_start()
        self.echoes: EchoSet = self.ctx.extra.setdefault("echoes", EchoSet())
        # (sessionId, hash) -> [(localDir, item)] waiting for fetched content
        self.waiting: dict[tuple[str, str], list[tuple[str, MaterializeItem]]] = {}
        self.written = 0
        self.rejected = 0
        self.failed = 0
        self.fetched = 0
        self._results: dict[str, list[MaterializedItem]] = {}
        self._fetch: dict[str, list[str]] = {}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "written": self.written, "rejected": self.rejected, "failed": self.failed,
                "fetched": self.fetched, "waiting": sum(len(v) for v in self.waiting.values())}

    def handle(self, sender: str, body: Msg) -> None:
        if isinstance(body, Materialize):
            for item in body.items:
                self.apply(body.sessionId, body.localDir, item)
        elif isinstance(body, ContentReady):
            self.on_content(body)
        elif isinstance(body, ForgetSession):
            for key in [k for k in self.waiting if k[0] == body.sessionId]:
                del self.waiting[key]
        else:
            raise TypeError(f"materializer: unexpected message {type(body).__name__}")
        self._flush()

    def _flush(self) -> None:
        for sid, hashes in self._fetch.items():
            self.ctx.send("connection", FetchContent(sessionId=sid, hashes=hashes))
        self._fetch = {}
        for sid, results in self._results.items():
            self.ctx.send("journal", Materialized(sessionId=sid, results=results))
        self._results = {}

    def _result(self, sid: str, item: MaterializeItem, outcome: str, digest: str = "", detail: str = "") -> None:
        self._results.setdefault(sid, []).append(MaterializedItem(item.path, item.iteration, outcome, digest, detail))

    # --- one item ---------------------------------------------------------------------------------------

    def apply(self, sid: str, local_dir: str, item: MaterializeItem) -> None:
        root = Path(local_dir)
        try:
            target = confined(root, item.conflictCopy or item.path)
            if item.conflictCopy:
                confined(root, item.path)
        except UnsafePath as e:
            self.rejected += 1
            log.warning("sync %s: refused an upstream change: %s", sid, e)
            self._result(sid, item, "rejected", detail=str(e))
            return
        if not root.is_dir():
            self._result(sid, item, "failed", detail=f"{root} is not a folder")
            return
        try:
            if item.isDeletion:
                self._delete(sid, root, target, item)
            elif item.content is not None:
                self._install(sid, target, item, data=item.content)
            elif not item.conflictCopy and self._from_local(sid, root, target, item):
                pass
            else:
                key = (sid, item.contentHash)
                waiters = self.waiting.setdefault(key, [])
                waiters.append((local_dir, item))
                if len(waiters) == 1:
                    self._fetch.setdefault(sid, []).append(item.contentHash)
        except OSError as e:
            self.failed += 1
            log.warning("sync %s: could not write %s: %s", sid, item.path, e)
            self._result(sid, item, "failed", detail=str(e))

    def _expected_ok(self, target: Path, item: MaterializeItem) -> tuple[bool, str]:
        cur = current_hash(target)
        if item.conflictCopy or item.expectedHash is None:
            return True, cur
        return cur == item.expectedHash or cur == (item.contentHash if not item.isDeletion else ""), cur

    def _delete(self, sid: str, root: Path, target: Path, item: MaterializeItem) -> None:
        ok, cur = self._expected_ok(target, item)
        if not ok:
            self._result(sid, item, "local_changed", cur)
            return
        if cur == "":
            self._result(sid, item, "unchanged", "")
            return
        full = str(target)
        self.echoes.add(full, "")
        try:
            target.unlink()
        except FileNotFoundError:
            self.echoes.discard(full, "")
        self.written += 1
        self._prune(root, target.parent)
        self._result(sid, item, "deleted", "")

    def _prune(self, root: Path, folder: Path) -> None:
        """Remove folders the deletion left empty (upstream has no folders of its own)."""
        real_root = os.path.realpath(root)
        while os.path.realpath(folder) != real_root and folder.is_relative_to(root):
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def _from_local(self, sid: str, root: Path, target: Path, item: MaterializeItem) -> bool:
        """A rename of a local file that still holds the content, or a copy of another one."""
        for rel, move in ((item.renamedFrom, True), (item.sourcePath, False)):
            if not rel:
                continue
            try:
                src = confined(root, rel)
            except UnsafePath:
                continue
            if not src.is_file() or src.is_symlink():
                continue
            if move and item.renamedFromHash and current_hash(src) != item.renamedFromHash:
                continue
            if current_hash(src) != item.contentHash:
                continue
            outcome = self._install(sid, target, item, src=src, move=move, local_src=True)
            if move and outcome == "written":
                self._prune(root, src.parent)
            return True
        return False

    def _install(self, sid: str, target: Path, item: MaterializeItem, data: bytes | None = None,
                 src: Path | None = None, move: bool = False, local_src: bool = False) -> str:
        ok, cur = self._expected_ok(target, item)
        if not ok:
            self._result(sid, item, "local_changed", cur)
            return "local_changed"
        if cur == item.contentHash and not item.conflictCopy:
            self._apply_mode(target, item)
            if move and local_src and src is not None and src != target:
                self.echoes.add(str(src), "")
                src.unlink(missing_ok=True)
            self._result(sid, item, "unchanged", cur)
            return "unchanged"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".dim-{secrets.token_hex(6)}.tmp"
        full = str(target)
        try:
            if data is not None:
                if hashlib.sha256(data).hexdigest() != item.contentHash:
                    raise OSError(errno.EIO, "inline content does not match its hash")
                with open(tmp, "xb") as f:
                    f.write(data)
            elif move:
                if local_src:
                    self.echoes.add(str(src), "")
                try:
                    os.rename(src, tmp)
                except OSError as e:
                    if e.errno != errno.EXDEV:
                        raise
                    shutil.copyfile(src, tmp)
                    os.unlink(src)
            else:
                shutil.copyfile(src, tmp)
            os.chmod(tmp, (item.permissions & 0o777) or 0o644)
            self.echoes.add(full, item.contentHash)
            if not item.conflictCopy and item.expectedHash is not None:
                # last look before the rename: a save that landed meanwhile is never overwritten
                now = current_hash(target)
                if now != cur:
                    self.echoes.discard(full, item.contentHash)
                    if move and src is not None:
                        os.rename(tmp, src)  # put it back where it was
                    self._result(sid, item, "local_changed", now)
                    return "local_changed"
            os.replace(tmp, target)
        except BaseException:
            if tmp.exists():
                tmp.unlink()
            raise
        st = os.stat(target)
        self.echoes.attach_sig(full, item.contentHash, (st.st_size, st.st_mtime_ns, st.st_ino))
        self.written += 1
        if item.conflictCopy:
            self._result(sid, item, "copied", item.contentHash, item.conflictCopy)
        else:
            self._result(sid, item, "written", item.contentHash)
        return "written"

    def _apply_mode(self, target: Path, item: MaterializeItem) -> None:
        mode = (item.permissions & 0o777) or 0o644
        try:
            if (os.stat(target).st_mode & 0o777) != mode:
                os.chmod(target, mode)
        except OSError:
            pass

    # --- fetched content ------------------------------------------------------------------------------

    def on_content(self, msg: ContentReady) -> None:
        for c in msg.items:
            waiters = self.waiting.pop((msg.sessionId, c.contentHash), [])
            spool = Path(c.spoolPath) if c.spoolPath else None
            try:
                for i, (local_dir, item) in enumerate(waiters):
                    if c.error or spool is None:
                        self.failed += 1
                        self._result(msg.sessionId, item, "failed", detail=c.error or "no content")
                        continue
                    try:
                        target = confined(Path(local_dir), item.conflictCopy or item.path)
                    except UnsafePath as e:
                        self.rejected += 1
                        self._result(msg.sessionId, item, "rejected", detail=str(e))
                        continue
                    last = i == len(waiters) - 1
                    try:
                        self._install(msg.sessionId, target, item, src=spool, move=last)
                        self.fetched += 1
                    except OSError as e:
                        self.failed += 1
                        self._result(msg.sessionId, item, "failed", detail=str(e))
            finally:
                if spool is not None:
                    spool.unlink(missing_ok=True)
