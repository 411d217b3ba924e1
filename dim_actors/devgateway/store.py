"""SQLite persistence for the dev gateway: sessions, their events, turns, members.

One connection, used only from one worker thread, so every write and read is applied in
the order the event loop asked for it. Writes are group-committed: they queue on the
event loop, and whatever queued while the previous batch was being committed goes in the
next one. An idle gateway thus commits each event within about a millisecond, and a
stream of thousands of events a second costs one commit per batch, not one per event.
Reads flush the queue first, so they see every write that was asked for before them.

Events are sent before they are committed, so a crash can lose events that clients
already saw. Their seq numbers must never be handed out again (a client would take the
new event for one it already has), so after an unclean shutdown every session's seq
jumps ahead by RECOVERY_SEQ_GAP, more than the backlog that flow control allows
(BACKLOG_HIGH).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .workspace import SCHEMA as WORKSPACE_SCHEMA

log = logging.getLogger(__name__)
T = TypeVar("T")

BACKLOG_HIGH = 20_000  # uncommitted writes above which agents wait for the store
BACKLOG_LOW = 5_000
# > BACKLOG_HIGH plus what non-agent code emits: no seq is reused
RECOVERY_SEQ_GAP = 100_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    agent_type TEXT NOT NULL,
    status TEXT NOT NULL,
    archived INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    active_turn_id TEXT,
    seq_floor INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    json BLOB NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS turns (
    session_id TEXT NOT NULL,
    turn_id TEXT NOT NULL,
    client_turn_id TEXT,
    text TEXT NOT NULL,
    status TEXT NOT NULL,
    final_text TEXT,
    stop_reason TEXT,
    error_code TEXT,
    error_message TEXT,
    started_seq INTEGER NOT NULL,
    ended_seq INTEGER,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    PRIMARY KEY (session_id, turn_id)
);
CREATE INDEX IF NOT EXISTS turns_by_start ON turns (session_id, started_seq);
CREATE TABLE IF NOT EXISTS gateway_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS members (
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT 'member',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
"""

UPSERT_SESSION = """
INSERT INTO sessions (id, tenant_id, name, agent_type, status, archived, created_at,
    updated_at, active_turn_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET name = excluded.name, status = excluded.status,
    archived = excluded.archived, updated_at = excluded.updated_at,
    active_turn_id = excluded.active_turn_id
"""
INSERT_EVENT = "INSERT OR REPLACE INTO events (session_id, seq, json) VALUES (?, ?, ?)"
INSERT_TURN = """
INSERT INTO turns (session_id, turn_id, client_turn_id, text, status, started_seq, started_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""
END_TURN = """
UPDATE turns SET status = ?, final_text = ?, stop_reason = ?, error_code = ?, error_message = ?,
    ended_seq = ?, ended_at = ? WHERE session_id = ? AND turn_id = ?
"""
UPSERT_MEMBER = """
INSERT INTO members (tenant_id, user_id, role, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = excluded.role,
    updated_at = excluded.updated_at
"""
DELETE_MEMBER = "DELETE FROM members WHERE tenant_id = ? AND user_id = ?"


@dataclass
class StoredSession:
    id: str
    tenant_id: str
    name: str
    agent_type: str
    status: str
    archived: bool
    created_at: int
    updated_at: int
    active_turn_id: str | None
    last_seq: int = 0
    # clientTurnId -> the turn_started frame that answered it (idempotent run_turn
    # across restarts)
    client_turns: dict[str, bytes] = field(default_factory=dict)


class Database:
    """The gateway's SQLite file, with group-committed writes on a single worker thread."""

    def __init__(self, path: Path, *, max_batch: int = 10_000):
        self.path = Path(path)
        self.max_batch = max_batch
        self.crashed = False  # the previous run did not shut down cleanly
        self.backlog = 0  # writes queued or being committed
        self._conn: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="dim-gateway-db"
        )
        self._ops: list[tuple[str, tuple]] = []
        self._scheduled = False
        self._committing = 0  # batches handed to the worker and not yet done
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight: set[asyncio.Future] = set()
        self._caught_up = asyncio.Event()
        self._caught_up.set()
        self._closed = False

    # --- lifecycle --------------------------------------------------------------------

    def open(self) -> list[StoredSession]:
        """Open (creating if needed) and load every session. Call before serving."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash; only a power loss may drop the
        # last commits.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(SCHEMA + WORKSPACE_SCHEMA)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(sessions)")}
        if "seq_floor" not in columns:  # a data dir from before the column existed
            conn.execute(
                "ALTER TABLE sessions ADD COLUMN seq_floor INTEGER NOT NULL DEFAULT 0"
            )
        row = conn.execute(
            "SELECT value FROM gateway_meta WHERE key = 'clean_shutdown'"
        ).fetchone()
        self.crashed = row is not None and row[0] != "1"
        self._conn = conn
        sessions = self._load_sessions()
        conn.execute("BEGIN")
        if self.crashed:
            for st in sessions:
                st.last_seq += RECOVERY_SEQ_GAP
                conn.execute(
                    "UPDATE sessions SET seq_floor = ? WHERE id = ?",
                    (st.last_seq, st.id),
                )
        conn.execute(
            "INSERT OR REPLACE INTO gateway_meta (key, value) VALUES ('clean_shutdown', '0')"
        )
        conn.execute("COMMIT")
        return sessions

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    async def close(self) -> None:
        while self._ops:
            self._submit_ops()
        self._closed = True
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(
            self._executor, self._close_conn
        )
        self._executor.shutdown(wait=True)

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.execute(
                "INSERT OR REPLACE INTO gateway_meta (key, value) VALUES ('clean_shutdown', '1')"
            )
            self._conn.close()
            self._conn = None

    # --- writes -----------------------------------------------------------------------

    def write(self, sql: str, params: tuple) -> None:
        """Queue a write; it is committed with the next batch."""
        if self._closed:
            log.warning(
                "dev gateway: write after the store closed, dropped: %s",
                sql.split("(")[0].strip(),
            )
            return
        self._ops.append((sql, params))
        self.backlog += 1
        if self.backlog > BACKLOG_HIGH:
            self._caught_up.clear()
        if not self._scheduled and not self._committing:
            # End of this loop iteration: what one callback emits goes in one batch.
            self._scheduled = True
            (self._loop or asyncio.get_running_loop()).call_soon(self.flush)

    def append_event(self, session_id: str, seq: int, frame: bytes) -> None:
        self.write(INSERT_EVENT, (session_id, seq, frame))

    def flush(self) -> None:
        """Start a batch unless one is being committed (its completion starts the next)."""
        self._scheduled = False
        if not self._committing:
            self._submit_ops()

    async def commit(self) -> None:
        """Return once every write queued so far is committed (for answers that promise
        it)."""
        await self.run(lambda conn: None)

    async def wait_caught_up(self) -> None:
        """Wait while more than BACKLOG_HIGH writes are uncommitted (down to
        BACKLOG_LOW)."""
        await self._caught_up.wait()

    def _submit_ops(self) -> None:
        if not self._ops:
            return
        ops, self._ops = self._ops[: self.max_batch], self._ops[self.max_batch :]
        self._committing += 1
        fut = asyncio.ensure_future(
            self._submit(self._write_batch, ops), loop=self._loop
        )
        self._inflight.add(fut)
        fut.add_done_callback(functools.partial(self._batch_done, count=len(ops)))

    def _batch_done(self, fut: asyncio.Future, count: int) -> None:
        self._inflight.discard(fut)
        self._committing -= 1
        self.backlog -= count
        if self.backlog <= BACKLOG_LOW:
            self._caught_up.set()
        if not self._committing:
            self._submit_ops()

    def _write_batch(self, ops: list[tuple[str, tuple]]) -> None:
        conn = self._conn
        assert conn is not None
        try:
            conn.execute("BEGIN")
            i = 0
            while i < len(ops):
                sql = ops[i][0]
                j = i
                while j < len(ops) and ops[j][0] == sql:
                    j += 1
                conn.executemany(sql, [p for _, p in ops[i:j]])
                i = j
            conn.execute("COMMIT")
        except Exception:
            log.exception(
                "dev gateway: a write batch of %d operations failed", len(ops)
            )
            if conn.in_transaction:
                conn.execute("ROLLBACK")

    # --- reads and other work on the worker thread ------------------------------------

    def _submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        loop = self._loop or asyncio.get_running_loop()
        return loop.run_in_executor(self._executor, fn, *args)

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(conn, *args)`` on the worker thread after every write queued so far.

        Returns a future at once (not a coroutine), so a caller can attach a
        done-callback that fires even if the task awaiting it is cancelled.
        """
        while self._ops:  # the worker runs jobs in order: queued writes go first
            self._submit_ops()
        return self._submit(self._call, fn, args)

    def _call(self, fn: Callable[..., T], args: tuple) -> T:
        assert self._conn is not None
        return fn(self._conn, *args)

    # --- queries (run them through run()) ---------------------------------------------

    @staticmethod
    def events_after(
        conn: sqlite3.Connection, session_id: str, after_seq: int, limit: int
    ) -> tuple[list[bytes], bool]:
        rows = conn.execute(
            "SELECT json FROM events WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (session_id, after_seq, limit + 1),
        ).fetchall()
        return [r[0] for r in rows[:limit]], len(rows) > limit

    @staticmethod
    def history(conn: sqlite3.Connection, session_id: str) -> list[tuple]:
        return conn.execute(
            "SELECT turn_id, client_turn_id, text, status, final_text, stop_reason,"
            " error_code, error_message, started_seq, ended_seq, started_at, ended_at"
            " FROM turns WHERE session_id = ? ORDER BY started_seq",
            (session_id,),
        ).fetchall()

    @staticmethod
    def members(conn: sqlite3.Connection, tenant_id: str) -> list[tuple]:
        return conn.execute(
            "SELECT user_id, role, created_at, updated_at FROM members"
            " WHERE tenant_id = ? ORDER BY created_at, user_id",
            (tenant_id,),
        ).fetchall()

    @staticmethod
    def delete_session(conn: sqlite3.Connection, session_id: str) -> None:
        conn.execute("BEGIN")
        for table in ("events", "turns", "file_iterations", "file_heads"):
            conn.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))
        conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
        conn.execute("COMMIT")

    def load_members(self) -> dict[str, list[tuple]]:
        """Every tenant's members as (user_id, role, created_at, updated_at), before
        serving."""
        assert self._conn is not None
        members: dict[str, list[tuple]] = {}
        for tenant, *row in self._conn.execute(
            "SELECT tenant_id, user_id, role, created_at, updated_at FROM members"
            " ORDER BY created_at, user_id"
        ):
            members.setdefault(tenant, []).append(tuple(row))
        return members

    def _load_sessions(self) -> list[StoredSession]:
        conn = self._conn
        assert conn is not None
        sessions = {
            r[0]: StoredSession(
                r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7], r[8], r[9]
            )
            for r in conn.execute(
                "SELECT id, tenant_id, name, agent_type, status, archived, created_at,"
                " updated_at, active_turn_id, seq_floor"
                " FROM sessions ORDER BY created_at, id"
            )
        }
        for sid, last in conn.execute(
            "SELECT session_id, MAX(seq) FROM events GROUP BY session_id"
        ):
            if sid in sessions:
                sessions[sid].last_seq = max(last, sessions[sid].last_seq)
        for sid, client_turn_id, frame in conn.execute(
            "SELECT t.session_id, t.client_turn_id, e.json FROM turns t JOIN events e"
            " ON e.session_id = t.session_id AND e.seq = t.started_seq"
            " WHERE t.client_turn_id IS NOT NULL"
        ):
            if sid in sessions:
                sessions[sid].client_turns[client_turn_id] = bytes(frame)
        return list(sessions.values())
