"""The journal's SQLite database: its schema, its migrations (numbered, by PRAGMA
user_version), and reading and writing the records of state.py.

Everything is written through in the caller's transaction (`with store.db:`), one per
message."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from dim_actors.sync.state import Conflict, Entry, FileRec, Sync

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
# Columns `changes` gained after its first shape (the state of local entries, what was
# applied).
CHANGE_COLUMNS = {
    "state": "TEXT NOT NULL DEFAULT 'done'",
    "iteration": "INTEGER",
    "size": "INTEGER",
    "permissions": "INTEGER",
    "reason": "TEXT",
    "sequence": "INTEGER",
}


class StoreTooNew(RuntimeError):
    """The database was written by a newer version of dim-desktop: it is left as it is."""


def _current_shape(db: sqlite3.Connection) -> None:
    """Any database of user_version 0 (every shape written before versions were kept) to
    the shape of version 1. Idempotent: a database already in that shape is left as it
    is."""
    db.executescript(SCHEMA)
    have = {row[1] for row in db.execute("PRAGMA table_info(changes)")}
    for col, decl in CHANGE_COLUMNS.items():
        if col not in have:
            db.execute(f"ALTER TABLE changes ADD COLUMN {col} {decl}")
    db.execute("CREATE INDEX IF NOT EXISTS changes_open ON changes (session_id, state)")


# MIGRATIONS[i] brings a database from user_version i to i + 1. Append; never edit a
# step shipped.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_current_shape]
VERSION = len(MIGRATIONS)


def migrate(db: sqlite3.Connection) -> int:
    """Run the steps the database has not had; its version after them. A database from a
    newer version is refused before anything is written to it."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > VERSION:
        raise StoreTooNew(
            f"the sync journal has schema version {version}, newer than this dim-desktop knows "
            f"({VERSION}): it was written by a newer version; update dim-desktop (the journal is "
            "left as it is)"
        )
    for step in range(version, VERSION):
        MIGRATIONS[step](db)
        db.execute(f"PRAGMA user_version = {step + 1}")
        db.commit()
    return VERSION


class Store:
    """The journal's database, opened in the calling thread (sqlite3 connections belong
    to it)."""

    def __init__(self, path: Path, timeout: float) -> None:
        # The busy timeout is how long a write waits for the lock (see LOCK_WAIT_S in
        # journal.py).
        self.db = sqlite3.connect(path, timeout=timeout)
        try:
            migrate(self.db)  # before WAL: a database too new is not touched at all
            self.db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit survives a crash of the app
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.commit()
            self.recorded: int = self.db.execute(
                "SELECT COUNT(*) FROM changes"
            ).fetchone()[0]
        except BaseException:
            self.db.close()
            raise

    def close(self) -> None:
        self.db.close()

    # --- loading ----------------------------------------------------------------------

    def load(self) -> dict[str, Sync]:
        syncs: dict[str, Sync] = {}
        for (
            sid,
            local_dir,
            replica_id,
            state,
            error,
            last_seq,
            last_sync_at,
        ) in self.db.execute(
            "SELECT session_id, local_dir, replica_id, state, error, last_seq,"
            " last_sync_at FROM syncs"
        ):
            syncs[sid] = Sync(
                sid,
                local_dir,
                replica_id,
                state,
                error,
                last_seq,
                last_sync_at,
                max_seen=last_seq,
            )
        for sid, path, iteration, upstream_hash, local_hash, mode in self.db.execute(
            "SELECT session_id, path, upstream_iteration, upstream_hash, local_hash,"
            " permissions FROM files"
        ):
            if sid in syncs:
                syncs[sid].files[path] = FileRec(
                    iteration, upstream_hash, local_hash, mode
                )
        for (
            sid,
            path,
            local_hash,
            iteration,
            upstream_hash,
            copy,
            since,
        ) in self.db.execute(
            "SELECT session_id, path, local_hash, upstream_iteration, upstream_hash,"
            " upstream_copy, since FROM conflicts"
        ):
            if sid in syncs:
                syncs[sid].conflicts[path] = Conflict(
                    path, local_hash, iteration, upstream_hash, copy, since
                )
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
            "SELECT id, session_id, path, content_hash, is_deletion, state, size,"
            " permissions, recorded_at, base_iteration FROM changes"
            " WHERE origin = 'local' AND state IN ('pending', 'sent', 'held')"
            " ORDER BY id"
        ):
            s = syncs.get(sid)
            if s is not None:
                # sent before a crash and never answered: send again (the gateway
                # dedupes by localSeq)
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
        return syncs

    # --- writing ----------------------------------------------------------------------

    def save_sync(self, s: Sync) -> None:
        self.db.execute(
            "INSERT INTO syncs (session_id, local_dir, replica_id, state, error, last_seq,"
            " last_sync_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (session_id) DO UPDATE SET local_dir = excluded.local_dir,"
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

    def save_file(self, sid: str, path: str, f: FileRec) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)",
            (sid, path, f.iteration, f.upstream_hash, f.local_hash, f.mode),
        )

    def save_conflict(self, sid: str, c: Conflict) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO conflicts VALUES (?, ?, ?, ?, ?, ?, ?)",
            (sid, c.path, c.local_hash, c.iteration, c.upstream_hash, c.copy, c.since),
        )

    def delete_conflict(self, sid: str, path: str) -> None:
        self.db.execute(
            "DELETE FROM conflicts WHERE session_id = ? AND path = ?", (sid, path)
        )

    def forget_files(self, sid: str) -> None:
        """A new folder: what was known of the old one's files, conflicts and open
        changes goes."""
        for table in ("files", "conflicts"):
            self.db.execute(f"DELETE FROM {table} WHERE session_id = ?", (sid,))
        self.db.execute(
            "UPDATE changes SET state = 'discarded'"
            " WHERE session_id = ? AND state IN ('pending', 'sent', 'held')",
            (sid,),
        )

    def record(
        self,
        sid: str,
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
        """A row of the changes log; its id (a local change's localSeq)."""
        cur = self.db.execute(
            "INSERT INTO changes (session_id, origin, path, content_hash, is_deletion,"
            " base_iteration, recorded_at, state, iteration, size, permissions, reason,"
            " sequence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                sid,
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
        assert cur.lastrowid is not None
        return cur.lastrowid

    def record_plain(
        self,
        sid: str,
        origin: str,
        path: str,
        h: str | None,
        deletion: bool,
        base: int | None,
    ) -> None:
        """A row recorded for another actor (JournalRecord): the first columns only."""
        self.db.execute(
            "INSERT INTO changes (session_id, origin, path, content_hash, is_deletion,"
            " base_iteration, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (sid, origin, path, h, int(deletion), base, time.time()),
        )
        self.recorded += 1

    def entry_state(
        self,
        seq: int,
        state: str,
        *,
        iteration: int | None = None,
        reason: str | None = None,
        base: int | None = None,
    ) -> None:
        self.db.execute(
            "UPDATE changes SET state = ?, iteration = COALESCE(?, iteration),"
            " reason = COALESCE(?, reason), base_iteration = COALESCE(?, base_iteration)"
            " WHERE id = ?",
            (state, iteration, reason, base, seq),
        )
