"""A long session written straight into the store, for trying and measuring big histories.

``dim-gateway --seed-history TURNS[:EVENTS]`` adds, before serving, one session of TURNS
finished turns holding EVENTS durable events in all (default 100 per turn): each turn a
``turn_started``, text deltas and a ``turn_complete``, exactly as the echo agent's turns
are stored, so every read path (join, get_events, get_history) serves them as it serves
any other. Streaming a million events through an agent would take minutes; this takes
seconds.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from dim_actors.wire.protocol import TextDelta, TurnComplete, TurnStarted, encode

from .store import SCHEMA, UPSERT_SESSION

_BATCH = 20_000
_INSERT_EVENT = "INSERT INTO events (session_id, seq, json) VALUES (?, ?, ?)"
_INSERT_TURN = """
INSERT INTO turns (session_id, turn_id, client_turn_id, text, status, final_text,
    stop_reason, started_seq, ended_seq, started_at, ended_at)
VALUES (?, ?, NULL, ?, 'complete', ?, 'end_turn', ?, ?, ?, ?)
"""


def parse_spec(spec: str) -> tuple[int, int]:
    """``TURNS`` or ``TURNS:EVENTS`` -> (turns, events); a clear ValueError otherwise."""
    head, _, tail = spec.partition(":")
    try:
        turns = int(head)
        events = int(tail) if tail else turns * 100
    except ValueError:
        raise ValueError(
            f"--seed-history takes TURNS or TURNS:EVENTS, whole numbers (not {spec!r})"
        ) from None
    if turns < 1 or events < 3 * turns:
        raise ValueError(
            "--seed-history needs at least 1 turn and 3 events per turn "
            f"(a start, a delta and an end), not {turns} turns and {events} events"
        )
    return turns, events


def _deltas_per_turn(turns: int, events: int) -> Iterator[int]:
    """How many deltas each turn gets, so that the events add up exactly."""
    deltas = events - 2 * turns
    base, extra = divmod(deltas, turns)
    for i in range(turns):
        yield base + (1 if i < extra else 0)


def seed_history(
    data: Path,
    turns: int,
    events: int,
    *,
    name: str = "Long history",
    tenant_id: str = "dev",
    agent_type: str = "echo",
) -> str:
    """Write the session into ``data``'s store (created if need be); returns its id."""
    data.mkdir(parents=True, exist_ok=True)
    sid = str(uuid.uuid4())
    now = int(time.time() * 1000)
    # Spread over the last `turns` minutes, oldest first, as a long conversation would be.
    start = now - turns * 60_000
    conn = sqlite3.connect(data / "gateway.db")
    try:
        conn.executescript(SCHEMA)
        # One file written once, before anyone reads it: nothing to protect by a journal
        # or by syncing (each would write it all a second time). The gateway sets its
        # own journal mode when it opens the file.
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute(
            UPSERT_SESSION,
            (sid, tenant_id, name, agent_type, "ready", 0, start, now, None),
        )
        rows: list[tuple[str, int, bytes]] = []
        seq = 0

        def put(frame: bytes) -> None:
            nonlocal seq
            rows.append((sid, seq, frame))
            if len(rows) >= _BATCH:
                conn.executemany(_INSERT_EVENT, rows)
                rows.clear()

        for i, count in enumerate(_deltas_per_turn(turns, events)):
            turn_id = f"turn_seed_{i:07d}"
            at = start + i * 60_000
            text = f"Question {i + 1}: what about part {i + 1}?"
            seq += 1
            first = seq
            put(
                encode(
                    TurnStarted(
                        sessionId=sid, seq=seq, ts=at, turnId=turn_id, text=text
                    )
                )
            )
            pieces = []
            for k in range(count):
                piece = (
                    f"word{k} "
                    if k % 12
                    else f"\nLine {k // 12 + 1} of answer {i + 1}: "
                )
                pieces.append(piece)
                seq += 1
                put(
                    encode(
                        TextDelta(
                            sessionId=sid, seq=seq, ts=at, turnId=turn_id, text=piece
                        )
                    )
                )
            final = "".join(pieces)
            seq += 1
            put(
                encode(
                    TurnComplete(
                        sessionId=sid,
                        seq=seq,
                        ts=at + 1_000,
                        turnId=turn_id,
                        finalText=final,
                        stopReason="end_turn",
                    )
                )
            )
            conn.execute(
                _INSERT_TURN, (sid, turn_id, text, final, first, seq, at, at + 1_000)
            )
        if rows:
            conn.executemany(_INSERT_EVENT, rows)
        conn.commit()
    finally:
        conn.close()
    return sid
