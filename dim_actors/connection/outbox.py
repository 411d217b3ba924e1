"""The outbox: commands issued while the gateway is out of reach, kept on disk until
sent.

They survive a restart of the app, leave in the order they were issued once the
connection is back, and can be cancelled until then. A queued run_turn carries a
clientTurnId, so sending it again after a crash cannot run the turn twice.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import msgspec

# Commands that make sense later; a read (list_files, get_history, ...) is refused at
# once instead.
QUEUEABLE = frozenset({"run_turn", "answer_question", "steer", "stop_turn"})


class Outbox:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Used from the connection process's threads one at a time, always under its
        # lock.
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("""CREATE TABLE IF NOT EXISTS outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, frame BLOB NOT NULL,
            session_id TEXT, queued_at REAL NOT NULL, sent_at REAL)""")

    def add(self, type_: str, frame: bytes) -> int:
        sid = msgspec.json.decode(frame).get("sessionId")
        cur = self.db.execute(
            "INSERT INTO outbox (type, frame, session_id, queued_at) VALUES (?, ?, ?, ?)",
            (type_, frame, sid, time.time()),
        )
        row_id = cur.lastrowid
        assert row_id is not None  # set by every INSERT
        return row_id

    def pending(self) -> list[tuple[int, str, bytes]]:
        return self.db.execute(
            "SELECT id, type, frame FROM outbox ORDER BY id"
        ).fetchall()

    def mark_sent(self, item_id: int) -> None:
        self.db.execute(
            "UPDATE outbox SET sent_at = ? WHERE id = ?", (time.time(), item_id)
        )

    def remove(self, item_id: int) -> bool:
        return (
            self.db.execute("DELETE FROM outbox WHERE id = ?", (item_id,)).rowcount > 0
        )

    def items(self) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT id, type, frame, session_id, queued_at, sent_at FROM outbox ORDER BY id"
        )
        return [
            {
                "id": r[0],
                "type": r[1],
                "message": msgspec.json.decode(r[2]),
                "sessionId": r[3],
                "queuedAt": r[4],
                "state": "sending" if r[5] else "pending",
            }
            for r in rows
        ]

    def close(self) -> None:
        self.db.close()
