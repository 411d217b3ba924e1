"""The router's stores: connection, sessions, chat, and a generic slot for what we don't know.

Events are applied exactly once, in seq order per session: a seq at or below the session's last
one is a duplicate and is refused. Items are kept as the raw bytes the gateway sent, so a snapshot
shows the page exactly what a live event would have, fields we don't know included.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from dim_actors.messages import ConnectionState, GatewayEvent

_TURN_END_STATUS = {"turn_complete": "complete", "turn_error": "error"}
_COMPACT_AT = 1024  # a turn's newest deltas are joined into one string this many at a time


class _Delta(msgspec.Struct):
    text: str = ""
    turnId: str | None = None
    sentNs: int | None = None  # only in benchmark streams (`/stream N RATE stamp`)


class _Fields(msgspec.Struct):
    turnId: str | None = None
    text: str | None = None
    finalText: str | None = None
    stopReason: str | None = None
    code: str | None = None
    message: str | None = None
    status: str | None = None
    name: str | None = None
    session: dict[str, Any] | None = None
    sessions: list[dict[str, Any]] | None = None


_delta = msgspec.json.Decoder(_Delta)
_fields = msgspec.json.Decoder(_Fields)


class BadEvent(ValueError):
    pass


class LatencyStats:
    """Gateway send -> applied here, for deltas that carry `sentNs` (benchmarks only): a histogram
    with 1 us buckets below 10 ms and 1 ms buckets above, so memory stays bounded."""

    __slots__ = ("buckets", "count", "max_ns")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.max_ns = 0

    def record(self, ns: int) -> None:
        us = ns // 1000
        key = us if us < 10_000 else us - us % 1000
        self.buckets[key] = self.buckets.get(key, 0) + 1
        self.count += 1
        if ns > self.max_ns:
            self.max_ns = ns

    def summary(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {"count": self.count, "max": round(self.max_ns / 1e6, 3)}
        items = sorted(dict(self.buckets).items())
        for name, q in (("p50", 0.50), ("p99", 0.99), ("p999", 0.999)):
            rank, seen = q * self.count, 0
            for key, n in items:
                seen += n
                if seen >= rank:
                    out[name] = round(key / 1000, 3)
                    break
        return out


class DeltaMeter:
    """When text deltas were received by the connection process and applied here (benchmarks)."""

    __slots__ = ("count", "first_recv_ns", "last_recv_ns", "first_apply_ns", "last_apply_ns")

    def __init__(self) -> None:
        self.count = 0
        self.first_recv_ns = self.last_recv_ns = self.first_apply_ns = self.last_apply_ns = 0

    def note(self, recv_ns: int) -> None:
        now = time.time_ns()
        if not self.count:
            self.first_recv_ns, self.first_apply_ns = recv_ns, now
        self.count += 1
        self.last_recv_ns, self.last_apply_ns = recv_ns, now

    def describe(self) -> dict[str, int]:
        return {"count": self.count, "firstRecvNs": self.first_recv_ns, "lastRecvNs": self.last_recv_ns,
                "firstApplyNs": self.first_apply_ns, "lastApplyNs": self.last_apply_ns}


class Turn:
    __slots__ = ("turnId", "status", "userText", "parts", "chunks", "finalText", "error", "deltaCount",
                 "firstSeq", "lastSeq", "items")

    def __init__(self, turn_id: str, user_text: str | None, seq: int | None):
        self.turnId = turn_id
        self.status = "running"
        self.userText = user_text
        self.parts: list[str] = []
        self.chunks = 0  # parts[:chunks] are already joined runs of deltas
        self.finalText: str | None = None
        self.error: dict[str, Any] | None = None
        self.deltaCount = 0
        self.firstSeq = seq
        self.lastSeq = seq
        self.items: list[msgspec.Raw] = []

    @property
    def text(self) -> str:
        if len(self.parts) > 1:
            self.parts = ["".join(self.parts)]
            self.chunks = 1
        return self.parts[0] if self.parts else ""

    def snapshot(self) -> dict[str, Any]:
        return {
            "turnId": self.turnId, "status": self.status, "userText": self.userText, "text": self.text,
            "finalText": self.finalText, "error": self.error, "deltaCount": self.deltaCount,
            "firstSeq": self.firstSeq, "lastSeq": self.lastSeq, "items": self.items,
        }


class Chat:
    def __init__(self, session_id: str):
        self.sessionId = session_id
        self.lastSeq = 0
        self.status: str | None = None
        self.turns: list[Turn] = []
        self.by_id: dict[str, Turn] = {}
        self.other: list[msgspec.Raw] = []

    def turn(self, turn_id: str | None, seq: int | None) -> Turn | None:
        if turn_id is None:
            return None
        t = self.by_id.get(turn_id)
        if t is None:  # joined mid-turn: the turn's start is older than what we hold
            t = self.by_id[turn_id] = Turn(turn_id, None, seq)
            self.turns.append(t)
        return t

    def snapshot(self) -> dict[str, Any]:
        return {"lastSeq": self.lastSeq, "status": self.status,
                "turns": [t.snapshot() for t in self.turns], "other": self.other}


class Stores:
    def __init__(self) -> None:
        self.connection: dict[str, Any] = {"state": "offline", "url": "", "detail": "", "reconnects": 0,
                                           "identity": None}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.chats: dict[str, Chat] = {}
        self.unscoped: list[msgspec.Raw] = []  # events with no session we don't otherwise know
        self.outbox: list[dict[str, Any]] = []  # commands waiting for the connection
        self.events_applied = 0
        self.duplicates = 0
        self.bad_events = 0
        self.latency = LatencyStats()
        self.deltas = DeltaMeter()

    def chat(self, sid: str) -> Chat:
        c = self.chats.get(sid)
        if c is None:
            c = self.chats[sid] = Chat(sid)
        return c

    def set_connection(self, st: ConnectionState) -> None:
        self.connection = {"state": st.state, "url": st.url, "detail": st.detail, "reconnects": st.reconnects,
                           "retryInMs": st.retryInMs, "identity": st.identity}

    def apply(self, ev: GatewayEvent) -> bool:
        """Apply one event; False when it is a duplicate (already applied) and must go no further.

        BadEvent when a known event type carries fields of the wrong type: it is kept in the generic
        slot, never dropped, and never allowed to break the stores."""
        try:
            return self._apply(ev)
        except (msgspec.ValidationError, msgspec.DecodeError, TypeError, KeyError, AttributeError) as e:
            self.bad_events += 1
            self.unscoped.append(ev.raw)
            del self.unscoped[:-500]
            raise BadEvent(f"{ev.type} event with unexpected fields: {e}") from None

    def _apply(self, ev: GatewayEvent) -> bool:
        sid, seq, type_ = ev.sessionId, ev.seq, ev.type
        chat = None
        if sid is not None:
            chat = self.chat(sid)
            if seq is not None:
                if seq <= chat.lastSeq:
                    self.duplicates += 1
                    return False
                chat.lastSeq = seq
        self.events_applied += 1
        if type_ == "text_delta" and chat is not None:
            d = _delta.decode(ev.raw)
            self.deltas.note(ev.recvNs)
            if d.sentNs is not None:
                self.latency.record(time.time_ns() - d.sentNs)
            t = chat.turn(d.turnId, seq)
            if t is not None:
                parts = t.parts
                parts.append(d.text)
                if len(parts) - t.chunks >= _COMPACT_AT:
                    # Fold the newest deltas into one string: a long stream costs its text, not a
                    # Python object per delta (1M deltas: ~8 MB rather than ~60 MB).
                    parts[t.chunks:] = ["".join(parts[t.chunks:])]
                    t.chunks += 1
                t.deltaCount += 1
                t.lastSeq = seq
                return True
        f = _fields.decode(ev.raw)
        if chat is None:
            self._apply_unscoped(type_, f, ev)
            return True
        self._apply_session(chat, type_, f, ev, seq)
        return True

    def _apply_unscoped(self, type_: str, f: _Fields, ev: GatewayEvent) -> None:
        if type_ == "session_list" and f.sessions is not None:
            self.sessions = {s["id"]: s for s in f.sessions if "id" in s}
        elif type_ == "session_created" and f.session and "id" in f.session:
            self.sessions[f.session["id"]] = f.session
        elif type_ not in ("welcome", "connected", "authenticated", "heartbeat", "pong", "error"):
            self.unscoped.append(ev.raw)
            del self.unscoped[:-500]  # keep the generic slot bounded

    def _apply_session(self, chat: Chat, type_: str, f: _Fields, ev: GatewayEvent, seq: int | None) -> None:
        sid = chat.sessionId
        meta = self.sessions.get(sid)
        if type_ == "session_created" and f.session:
            self.sessions[sid] = f.session
        elif type_ == "state_snapshot":
            if f.session:
                self.sessions[sid] = f.session
                chat.status = f.session.get("status", chat.status)
        elif type_ == "session_state" and f.status:
            chat.status = f.status
            if meta is not None:
                meta["status"] = f.status
        elif type_ == "session_renamed" and meta is not None:
            meta["name"] = f.name
        elif type_ in ("session_archived", "session_unarchived") and meta is not None:
            meta["archived"] = type_ == "session_archived"
        elif type_ == "session_deleted":
            self.sessions.pop(sid, None)
        elif type_ == "turn_started" and f.turnId:
            t = chat.by_id.get(f.turnId)
            if t is None:
                t = chat.by_id[f.turnId] = Turn(f.turnId, f.text, seq)
                chat.turns.append(t)
            t.userText = f.text
            t.items.append(ev.raw)
        elif f.turnId is not None:
            t = chat.turn(f.turnId, seq)
            assert t is not None
            t.lastSeq = seq
            if type_ in _TURN_END_STATUS:
                t.status = "stopped" if f.stopReason == "stopped" else _TURN_END_STATUS[type_]
                if type_ == "turn_complete":
                    t.finalText = f.finalText
                else:
                    t.error = {"code": f.code, "message": f.message}
            elif type_ in ("question_requested", "permission_requested"):
                t.status = "waiting"
            elif type_ == "approval_resolved" and t.status == "waiting":
                t.status = "running"
            t.items.append(ev.raw)
        elif seq is not None:
            # A session event we don't know: kept for the page's generic card. (Answers without a
            # seq, such as event_list or file_content, went to whoever asked; they are not history.)
            chat.other.append(ev.raw)
            del chat.other[:-500]

    def snapshot(self, joined: list[str] | None = None) -> dict[str, Any]:
        return {
            "connection": self.connection,
            "joined": joined or [],
            "sessions": list(self.sessions.values()),
            "chats": {sid: c.snapshot() for sid, c in self.chats.items()},
            "unscoped": self.unscoped,
            "outbox": self.outbox,
        }
