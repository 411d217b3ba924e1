"""A Chronicle-style versioned workspace per session, stored in SQLite.

Every change to a path (write, delete, either side of a rename) is an immutable
*iteration*: a per-path counter, a timestamp in epoch ms, the size, the sha256 of the
content, and the content. ``file_heads`` keeps the latest iteration of each path so
listing and reading are one lookup.

``Workspace`` is synchronous and works on a sqlite3 connection; it is meant to run on
the store's worker thread. ``AsyncWorkspace`` is the event-loop facade the gateway (and
later the replication endpoint) uses: it runs each operation on that thread and reports
every change to a callback.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import msgspec

from dim_actors.wire.protocol import FileEntry, IterationMeta

T = TypeVar("T")


class SqlRunner(Protocol):
    """Where a workspace's calls run: the store's worker thread, in order
    (store.Database)."""

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]: ...


SCHEMA = """
CREATE TABLE IF NOT EXISTS file_iterations (
    session_id TEXT NOT NULL,
    path TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    size INTEGER NOT NULL,
    hash TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    renamed_from TEXT,
    content BLOB,
    UNIQUE (session_id, path, iteration)
);
CREATE TABLE IF NOT EXISTS file_heads (
    session_id TEXT NOT NULL,
    path TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    size INTEGER NOT NULL,
    hash TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, path)
) WITHOUT ROWID;
"""

MAX_PATH = 4096


class WorkspaceError(Exception):
    """A refused file operation; ``code`` is the wire error code (InvalidPath,
    FileNotFound, ...)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class FileChange(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One new iteration, as ``file_changed`` reports it."""

    path: str
    iteration: int
    timestamp: int
    size: int
    hash: str  # "" for a deletion
    deleted: bool | None = None
    renamedFrom: str | None = None


class FileVersion(msgspec.Struct, kw_only=True):
    path: str
    iteration: int
    timestamp: int
    size: int
    hash: str
    content: bytes


def normalize_path(path: str, *, allow_root: bool = False) -> str:
    """A workspace-relative POSIX path, or WorkspaceError("InvalidPath").

    Refuses what could name something outside the workspace or differently on another
    OS: absolute paths, drive letters, ``..``, backslashes, NUL and other control
    characters.
    """
    if not isinstance(path, str) or len(path) > MAX_PATH:
        raise WorkspaceError(
            "InvalidPath", "path must be a string of at most 4096 characters"
        )
    if any(ord(c) < 32 for c in path):
        raise WorkspaceError(
            "InvalidPath", "path must not contain NUL or control characters"
        )
    if "\\" in path:
        raise WorkspaceError("InvalidPath", "path must use '/' separators")
    if path.startswith("/") or (
        len(path) >= 2 and path[1] == ":" and path[0].isalpha()
    ):
        raise WorkspaceError(
            "InvalidPath", f"path must be relative to the workspace: {path!r}"
        )
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise WorkspaceError("InvalidPath", f"path must not contain '..': {path!r}")
    if not parts and not allow_root:
        raise WorkspaceError("InvalidPath", "path must name a file")
    return "/".join(parts)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Workspace:
    """The versioned files of one session (synchronous; one thread at a time)."""

    def __init__(self, conn: sqlite3.Connection, session_id: str):
        self.conn = conn
        self.session_id = session_id

    # --- changes ----------------------------------------------------------------------

    def write(self, path: str, data: bytes) -> FileChange | None:
        """Store ``data`` as the next iteration; None when it equals the current
        content."""
        path = normalize_path(path)
        data = bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        head = self._head(path)
        if head is not None and not head[3] and head[2] == digest:
            return None  # an unchanged write is no change: no iteration, no event
        with _transaction(self.conn):
            return self._append(path, head, data, digest, renamed_from=None)

    def delete(self, path: str) -> FileChange:
        path = normalize_path(path)
        head = self._live_head(path)
        with _transaction(self.conn):
            return self._append(path, head, None, "", renamed_from=None)

    def rename(self, old: str, new: str) -> list[FileChange]:
        """Two iterations: ``old`` deleted, ``new`` created with old's content
        (``renamedFrom``)."""
        old, new = normalize_path(old), normalize_path(new)
        if old == new:
            raise WorkspaceError("InvalidPath", "rename needs two different paths")
        self._live_head(old)
        content = self._content(old)
        digest = hashlib.sha256(content).hexdigest()
        with _transaction(self.conn):
            gone = self._append(old, self._head(old), None, "", renamed_from=None)
            made = self._append(new, self._head(new), content, digest, renamed_from=old)
        return [gone, made]

    # --- queries ----------------------------------------------------------------------

    def read(self, path: str) -> FileVersion:
        path = normalize_path(path)
        head = self._live_head(path)
        return self.at_iteration(path, head[0])

    def history(self, path: str) -> list[IterationMeta]:
        path = normalize_path(path)
        rows = self.conn.execute(
            "SELECT iteration, timestamp, size, hash, deleted, renamed_from FROM file_iterations"
            " WHERE session_id = ? AND path = ? ORDER BY iteration",
            (self.session_id, path),
        ).fetchall()
        if not rows:
            raise WorkspaceError("FileNotFound", f"no such file: {path}")
        return [
            IterationMeta(
                iteration=r[0],
                timestamp=r[1],
                size=r[2],
                hash=r[3],
                deleted=True if r[4] else None,
                renamedFrom=r[5],
            )
            for r in rows
        ]

    def at_iteration(self, path: str, iteration: int) -> FileVersion:
        path = normalize_path(path)
        row = self.conn.execute(
            "SELECT timestamp, size, hash, deleted, content FROM file_iterations"
            " WHERE session_id = ? AND path = ? AND iteration = ?",
            (self.session_id, path, iteration),
        ).fetchone()
        if row is None:
            if self._head(path) is None:
                raise WorkspaceError("FileNotFound", f"no such file: {path}")
            raise WorkspaceError(
                "IterationNotFound", f"{path} has no iteration {iteration}"
            )
        if row[3]:
            raise WorkspaceError(
                "FileNotFound", f"{path} was deleted at iteration {iteration}"
            )
        return FileVersion(
            path=path,
            iteration=iteration,
            timestamp=row[0],
            size=row[1],
            hash=row[2],
            content=bytes(row[4]),
        )

    def list(self, path: str = "", depth: int | None = None) -> list[FileEntry]:
        """Files and directories under ``path`` (the root when empty), ``depth`` levels
        deep (all when None)."""
        prefix = normalize_path(path, allow_root=True)
        rows = self.conn.execute(
            "SELECT path, iteration, timestamp, size, hash FROM file_heads"
            " WHERE session_id = ? AND deleted = 0 ORDER BY path",
            (self.session_id,),
        ).fetchall()
        entries: dict[str, FileEntry] = {}
        found = not prefix
        for fpath, iteration, ts, size, digest in rows:
            if prefix and fpath == prefix:
                return [
                    FileEntry(
                        path=fpath,
                        name=fpath.rsplit("/", 1)[-1],
                        type="file",
                        size=size,
                        iteration=iteration,
                        hash=digest,
                        modifiedAt=ts,
                    )
                ]
            if prefix and not fpath.startswith(prefix + "/"):
                continue
            found = True
            rel = fpath[len(prefix) + 1 :] if prefix else fpath
            parts = rel.split("/")
            limit = len(parts) if depth is None else min(depth, len(parts))
            for i in range(1, limit + 1):
                sub = "/".join(parts[:i])
                full = f"{prefix}/{sub}" if prefix else sub
                if i == len(parts):
                    entries[full] = FileEntry(
                        path=full,
                        name=parts[i - 1],
                        type="file",
                        size=size,
                        iteration=iteration,
                        hash=digest,
                        modifiedAt=ts,
                    )
                elif full not in entries:
                    entries[full] = FileEntry(
                        path=full, name=parts[i - 1], type="directory"
                    )
        if not found:
            raise WorkspaceError("FileNotFound", f"no such file or directory: {prefix}")
        return [entries[k] for k in sorted(entries)]

    # --- internals --------------------------------------------------------------------

    def _head(self, path: str) -> tuple | None:
        return self.conn.execute(
            "SELECT iteration, size, hash, deleted FROM file_heads"
            " WHERE session_id = ? AND path = ?",
            (self.session_id, path),
        ).fetchone()

    def _live_head(self, path: str) -> tuple:
        head = self._head(path)
        if head is None or head[3]:
            raise WorkspaceError("FileNotFound", f"no such file: {path}")
        return head

    def _content(self, path: str) -> bytes:
        head = self._live_head(path)
        row = self.conn.execute(
            "SELECT content FROM file_iterations"
            " WHERE session_id = ? AND path = ? AND iteration = ?",
            (self.session_id, path, head[0]),
        ).fetchone()
        return bytes(row[0])

    def _append(
        self,
        path: str,
        head: tuple | None,
        data: bytes | None,
        digest: str,
        renamed_from: str | None,
    ) -> FileChange:
        iteration = (head[0] if head else 0) + 1
        ts = _now_ms()
        deleted = data is None
        size = 0 if data is None else len(data)
        self.conn.execute(
            "INSERT INTO file_iterations (session_id, path, iteration, timestamp, size,"
            " hash, deleted, renamed_from, content) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self.session_id,
                path,
                iteration,
                ts,
                size,
                digest,
                int(deleted),
                renamed_from,
                data,
            ),
        )
        self.conn.execute(
            "INSERT INTO file_heads (session_id, path, iteration, timestamp, size, hash, deleted)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (session_id, path) DO UPDATE SET"
            " iteration = excluded.iteration, timestamp = excluded.timestamp, size = excluded.size,"
            " hash = excluded.hash, deleted = excluded.deleted",
            (self.session_id, path, iteration, ts, size, digest, int(deleted)),
        )
        return FileChange(
            path=path,
            iteration=iteration,
            timestamp=ts,
            size=size,
            hash=digest,
            deleted=True if deleted else None,
            renamedFrom=renamed_from,
        )


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT on an autocommit connection (ROLLBACK on error)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


class AsyncWorkspace:
    """The event-loop side of a session's workspace.

    Each call runs on the store's worker thread, after every write queued before it.
    Changes are reported to ``on_change`` from a done-callback, so a change that
    happened is reported even if the task that asked for it was cancelled meanwhile (a
    stopped turn).
    """

    def __init__(
        self,
        db: SqlRunner,
        session_id: str,
        on_change: Callable[[FileChange], None] | None = None,
    ):
        self.db = db
        self.session_id = session_id
        self.on_change = on_change

    def _run(self, method: str, *args):
        sid = self.session_id
        return self.db.run(lambda conn: getattr(Workspace(conn, sid), method)(*args))

    def _changing(self, method: str, *args) -> asyncio.Future:
        fut = self._run(method, *args)
        if self.on_change is not None:
            fut.add_done_callback(self._report)
        return fut

    def _report(self, fut: asyncio.Future) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        result = fut.result()
        changes = (
            result
            if isinstance(result, list)
            else [result]
            if result is not None
            else []
        )
        for change in changes:
            self.on_change(change)  # type: ignore[misc]

    # shield: cancelling the caller must not cancel the future whose callback reports
    # the change
    async def write(self, path: str, data: bytes) -> FileChange | None:
        return await asyncio.shield(self._changing("write", path, data))

    async def delete(self, path: str) -> FileChange:
        return await asyncio.shield(self._changing("delete", path))

    async def rename(self, old: str, new: str) -> list[FileChange]:
        return await asyncio.shield(self._changing("rename", old, new))

    async def read(self, path: str) -> FileVersion:
        return await self._run("read", path)

    async def history(self, path: str) -> list[IterationMeta]:
        return await self._run("history", path)

    async def at_iteration(self, path: str, iteration: int) -> FileVersion:
        return await self._run("at_iteration", path, iteration)

    async def list(self, path: str = "", depth: int | None = None) -> list[FileEntry]:
        return await self._run("list", path, depth)
