"""The journal actor: a durable record of every local and upstream change (SQLite, WAL)."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from dim_actors.messages import JournalRecord, Msg
from dim_actors.supervisor.actor import DimActor

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
"""


class Journal(DimActor):
    def on_start(self) -> None:
        super().on_start()
        self.db_path = self.ctx.home.data_dir / "journal.sqlite"
        # Opened in the actor's own thread: sqlite3 connections belong to the thread that made them.
        self.db = sqlite3.connect(self.db_path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)
        self.recorded = self.db.execute("SELECT COUNT(*) FROM changes").fetchone()[0]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "changes": self.recorded}

    def handle(self, sender: str, body: Msg) -> None:
        if isinstance(body, JournalRecord):
            with self.db:
                self.db.execute(
                    "INSERT INTO changes (session_id, origin, path, content_hash, is_deletion, base_iteration,"
                    " recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (body.sessionId, body.origin, body.path, body.contentHash, int(body.isDeletion),
                     body.baseIteration, time.time()))
            self.recorded += 1
        else:
            raise TypeError(f"journal: unexpected message {type(body).__name__}")

    def on_stop(self) -> None:
        self.db.close()
