"""The router's stores: connection, sessions, chat, and a generic slot for what we don't know.

Events are applied exactly once, in seq order per session: a seq at or below the session's last
one is a duplicate and is refused. Items are kept as the raw bytes the gateway sent, so a snapshot
shows the page exactly what a live event would have, fields we don't know included. Nothing is
dropped: an event we do not know goes to a generic slot (its turn's items, its chat's `other`, or
`unscoped`), and a known one whose fields have the wrong types to `invalid` (docs/contracts.md §3).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import msgspec

from dim_actors.messages import CatchupGap, ConnectionState, GatewayEvent, SessionGone
from dim_actors.wire import protocol

_TURN_END_STATUS = {"turn_complete": "complete", "turn_error": "error"}
_COMPACT_AT = (
    1024  # a turn's newest deltas are joined into one string this many at a time
)
_SLOT_LIMIT = 500  # each generic slot keeps this many of the newest events (per chat, or unscoped)
GAP_LIMIT = 50  # each chat keeps this many of its newest catch-up gaps
_OPEN = ("running", "waiting")
# A history turn in one of these states ended: a turn we hold as open (or `ended`) takes its end from it.
_FINISHED = ("complete", "error", "stopped")
_HISTORY_STATUSES = (*_OPEN, *_FINISHED)


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
    # Read for the connection panel and for stale turns. `Any`, checked where used: a field added
    # here must not turn events that were fine before into bad ones.
    lastSeq: Any = None
    activeTurnId: Any = None
    identity: Any = None
    protocolVersion: Any = None
    requiresAuth: Any = None
    clientId: Any = None
    heartbeatIntervalMs: Any = None
    ts: Any = None


class _History(msgspec.Struct):
    turns: list[
        Any
    ]  # each entry read on its own (_read_history_turn): one odd entry spoils no other


class _HistoryError(msgspec.Struct):
    code: str
    message: str = ""


class _HistoryTurn(msgspec.Struct):
    """The HistoryTurn fields the stores use (docs/protocol.md §5); the others are not needed here."""

    turnId: str
    text: str
    status: str
    startedSeq: int
    finalText: str | None = None
    error: _HistoryError | None = None
    endedSeq: int | None = None


_delta = msgspec.json.Decoder(_Delta)
_fields = msgspec.json.Decoder(_Fields)
_history = msgspec.json.Decoder(_History)


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
        out: dict[str, float | int] = {
            "count": self.count,
            "max": round(self.max_ns / 1e6, 3),
        }
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

    __slots__ = (
        "count",
        "first_recv_ns",
        "last_recv_ns",
        "first_apply_ns",
        "last_apply_ns",
    )

    def __init__(self) -> None:
        self.count = 0
        self.first_recv_ns = self.last_recv_ns = self.first_apply_ns = (
            self.last_apply_ns
        ) = 0

    def note(self, recv_ns: int) -> None:
        now = time.time_ns()
        if not self.count:
            self.first_recv_ns, self.first_apply_ns = recv_ns, now
        self.count += 1
        self.last_recv_ns, self.last_apply_ns = recv_ns, now

    def describe(self) -> dict[str, int]:
        return {
            "count": self.count,
            "firstRecvNs": self.first_recv_ns,
            "lastRecvNs": self.last_recv_ns,
            "firstApplyNs": self.first_apply_ns,
            "lastApplyNs": self.last_apply_ns,
        }


class Turn:
    __slots__ = (
        "turnId",
        "status",
        "userText",
        "parts",
        "chunks",
        "finalText",
        "error",
        "deltaCount",
        "firstSeq",
        "lastSeq",
        "items",
        "fromHistory",
    )

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
        # Built from a `history` answer, not from events: its text only (no tool calls, thinking, ...).
        self.fromHistory = False

    @property
    def text(self) -> str:
        if len(self.parts) > 1:
            self.parts = ["".join(self.parts)]
            self.chunks = 1
        return self.parts[0] if self.parts else ""

    def snapshot(self) -> dict[str, Any]:
        return {
            "turnId": self.turnId,
            "status": self.status,
            "userText": self.userText,
            "text": self.text,
            "finalText": self.finalText,
            "error": self.error,
            "deltaCount": self.deltaCount,
            "firstSeq": self.firstSeq,
            "lastSeq": self.lastSeq,
            "items": self.items,
            "fromHistory": self.fromHistory,
        }


class Chat:
    def __init__(self, session_id: str):
        self.sessionId = session_id
        self.lastSeq = 0
        self.status: str | None = None
        self.turns: list[Turn] = []
        self.by_id: dict[str, Turn] = {}
        self.other: list[msgspec.Raw] = []
        self.invalid: list[
            dict[str, Any]
        ] = []  # {reason, event}: known types with mistyped fields
        # Missed events the connection could not fetch: {afterSeq, beforeSeq, reason, atSeq}. atSeq
        # is this chat's lastSeq when the gap was told, so a reloaded page puts it where a live one did.
        self.gaps: list[dict[str, Any]] = []
        self.gone: dict[str, Any] | None = (
            None  # {reason}: the gateway no longer knows this session
        )

    def turn(self, turn_id: str | None, seq: int | None) -> Turn | None:
        if turn_id is None:
            return None
        t = self.by_id.get(turn_id)
        if t is None:  # joined mid-turn: the turn's start is older than what we hold
            t = self.by_id[turn_id] = Turn(turn_id, None, seq)
            self.turns.append(t)
        return t

    def snapshot(self) -> dict[str, Any]:
        return {
            "lastSeq": self.lastSeq,
            "status": self.status,
            "turns": [t.snapshot() for t in self.turns],
            "other": self.other,
            "invalid": self.invalid,
            "gaps": self.gaps,
            "gone": self.gone,
        }

    def add_gap(self, gap: CatchupGap) -> dict[str, Any]:
        """Keep a gap; one told again with the same afterSeq (its end now known, a second try that
        failed too) is the same hole and replaces the first, so the page shows it once."""
        entry = {
            "afterSeq": gap.afterSeq,
            "beforeSeq": gap.beforeSeq,
            "reason": gap.reason,
            "atSeq": self.lastSeq,
        }
        same = next((g for g in self.gaps if g["afterSeq"] == gap.afterSeq), None)
        if same is not None:
            entry["atSeq"] = same["atSeq"]  # it stays where it was first shown
            same.update(entry)
            return same
        self.gaps.append(entry)
        del self.gaps[:-GAP_LIMIT]
        return entry

    def settle_turns(self, active_turn_id: Any, last_seq: Any) -> None:
        """A state_snapshot says which turn runs now (activeTurnId, or none). A turn we hold as open
        that it does not name has ended at the gateway, and its end event has not reached us (lost
        in a disconnect, or still on its way in the catch-up): it is `ended` until that end arrives.
        Turns that went on past the snapshot's lastSeq are newer than what it describes."""
        active = active_turn_id if isinstance(active_turn_id, str) else None
        upto = last_seq if isinstance(last_seq, int) else None
        for t in self.turns:
            if (
                t.status in _OPEN
                and t.turnId != active
                and (upto is None or (t.lastSeq or 0) <= upto)
            ):
                t.status = "ended"


@dataclass
class HistoryOutcome:
    """What a `history` answer changed in a chat: turns added, turns whose lost end it brought, and
    entries skipped because they could not be read."""

    added: list[str] = field(default_factory=list)
    settled: list[str] = field(default_factory=list)
    skipped: int = 0


def _read_history_turn(entry: Any) -> _HistoryTurn | None:
    """A well-formed HistoryTurn, or None for an entry that is not one."""
    try:
        h = msgspec.convert(entry, _HistoryTurn)
    except msgspec.ValidationError:
        return None
    if (
        not h.turnId
        or h.status not in _HISTORY_STATUSES
        or h.startedSeq < 0
        or (h.endedSeq is not None and h.endedSeq < h.startedSeq)
    ):
        return None
    return h


def _history_error(h: _HistoryTurn) -> dict[str, Any] | None:
    return (
        {"code": h.error.code, "message": h.error.message}
        if h.error is not None
        else None
    )


def _turn_from_history(h: _HistoryTurn) -> Turn:
    t = Turn(h.turnId, h.text, h.startedSeq)
    t.status = h.status
    if h.finalText:
        t.parts, t.chunks = [h.finalText], 1
    t.finalText = h.finalText
    t.error = _history_error(h)
    t.lastSeq = h.endedSeq if h.endedSeq is not None else h.startedSeq
    t.fromHistory = True
    return t


def _insert_by_first_seq(turns: list[Turn], t: Turn) -> None:
    """Before the first turn that started later, so the chat's turns stay in the order they ran."""
    at = next(
        (
            i
            for i, other in enumerate(turns)
            if other.firstSeq is not None
            and t.firstSeq is not None
            and other.firstSeq > t.firstSeq
        ),
        len(turns),
    )
    turns.insert(at, t)


def apply_history(chat: Chat, entries: list[Any]) -> HistoryOutcome:
    """The gateway's own record of a session's turns (`get_history`), used where missed events could
    not be fetched. A turn we hold as open or `ended` that history says finished takes its end from
    history (its end event was lost); a turn we lack is added, its text only. A turn we hold that
    finished is left as it is: its events say more than history does. Applying it twice changes
    nothing the second time. Same rule as the page's reducer (ui/js/state.js applyHistory)."""
    out = HistoryOutcome()
    for entry in entries:
        h = _read_history_turn(entry)
        if h is None:
            out.skipped += 1
            continue
        t = chat.by_id.get(h.turnId)
        if t is None:
            t = chat.by_id[h.turnId] = _turn_from_history(h)
            _insert_by_first_seq(chat.turns, t)
            out.added.append(h.turnId)
        elif (t.status in _OPEN or t.status == "ended") and h.status in _FINISHED:
            t.status, t.finalText, t.error = h.status, h.finalText, _history_error(h)
            out.settled.append(h.turnId)
    return out


class Stores:
    def __init__(self) -> None:
        self.connection: dict[str, Any] = {
            "state": "offline",
            "url": "",
            "detail": "",
            "reconnects": 0,
            "identity": None,
        }
        self.sessions: dict[str, dict[str, Any]] = {}
        # Metas a session_list dropped, of sessions we hold a chat for: a SessionGone told after the
        # list (a reconnect refreshes both) still finds the session's name.
        self.unlisted: dict[str, dict[str, Any]] = {}
        self.chats: dict[str, Chat] = {}
        self.unscoped: list[
            msgspec.Raw
        ] = []  # events with no session we don't otherwise know
        self.invalid: list[
            dict[str, Any]
        ] = []  # {reason, event}: mistyped known events with no session
        # What the handshake and heartbeats told us about this connection (the page's connection panel).
        self.link: dict[str, Any] = {}
        self.bad_input = 0  # bad frames (connection process) and bad events (here): one count for the page
        self.outbox: list[dict[str, Any]] = []  # commands waiting for the connection
        self.events_applied = 0
        self.duplicates = 0
        self.bad_events = 0
        self.history_skipped = (
            0  # entries of `history` answers that were not HistoryTurns
        )
        self.latency = LatencyStats()
        self.deltas = DeltaMeter()

    def chat(self, sid: str) -> Chat:
        c = self.chats.get(sid)
        if c is None:
            c = self.chats[sid] = Chat(sid)
        return c

    def set_connection(self, st: ConnectionState) -> None:
        # retryAt: when the next attempt is due, so a page loaded later still counts down correctly.
        retry_at = (
            time.time_ns() // 1_000_000 + st.retryInMs
            if st.retryInMs is not None
            else None
        )
        self.connection = {
            "state": st.state,
            "url": st.url,
            "detail": st.detail,
            "reconnects": st.reconnects,
            "retryInMs": st.retryInMs,
            "retryAt": retry_at,
            "identity": st.identity,
            "warnings": list(st.warnings),
            "traits": msgspec.to_builtins(st.traits),
            **self.link,
        }

    def add_gap(self, gap: CatchupGap) -> dict[str, Any]:
        """A session's missed events could not be fetched: kept with its chat; the page's payload."""
        return {"sessionId": gap.sessionId, **self.chat(gap.sessionId).add_gap(gap)}

    def mark_gone(self, msg: SessionGone) -> dict[str, Any]:
        """The gateway no longer knows the session: its transcript and list entry stay, marked gone."""
        sid = msg.sessionId
        chat = self.chat(sid)
        chat.gone = {"reason": msg.reason}
        if sid not in self.sessions:
            self.sessions[sid] = self.unlisted.pop(sid, None) or {"id": sid}
        return {"sessionId": sid, "reason": msg.reason}

    def gone_ids(self) -> set[str]:
        return {sid for sid, chat in self.chats.items() if chat.gone is not None}

    def _set_link(self, **fields: Any) -> None:
        self.link.update(fields)
        self.connection.update(fields)

    def apply(self, ev: GatewayEvent) -> bool:
        """Apply one event; False when it is a duplicate (already applied) and must go no further.

        BadEvent when a known event type carries fields of the wrong type: it is kept in the generic
        slot, never dropped, and never allowed to break the stores."""
        try:
            return self._apply(ev)
        except (
            msgspec.ValidationError,
            msgspec.DecodeError,
            TypeError,
            KeyError,
            AttributeError,
        ) as e:
            self.bad_events += 1
            self.bad_input += 1
            reason = f"{ev.type} event with unexpected fields: {e}"
            slot = (
                self.chat(ev.sessionId).invalid
                if ev.sessionId is not None
                else self.invalid
            )
            slot.append({"reason": reason, "event": ev.raw})
            del slot[:-_SLOT_LIMIT]
            raise BadEvent(reason) from None

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
                    parts[t.chunks :] = ["".join(parts[t.chunks :])]
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
            self._set_sessions({s["id"]: s for s in f.sessions if "id" in s})
        elif type_ == "session_created" and f.session and "id" in f.session:
            self.sessions[f.session["id"]] = f.session
        elif (
            type_ == "welcome"
        ):  # a new connection: what the last one said no longer holds
            self.link = {}
            self._set_link(
                protocolVersion=f.protocolVersion,
                requiresAuth=f.requiresAuth,
                clientId=None,
                heartbeatIntervalMs=None,
                lastHeartbeatAt=None,
            )
        elif type_ == "connected":
            self._set_link(
                clientId=f.clientId, heartbeatIntervalMs=f.heartbeatIntervalMs
            )
        elif type_ == "authenticated":
            self.connection["identity"] = (
                f.identity
            )  # also after an `authenticate` command
        elif type_ == "heartbeat":
            self._set_link(lastHeartbeatAt=f.ts)
        elif type_ not in protocol.SERVER_EVENTS:
            self.unscoped.append(ev.raw)
            del self.unscoped[:-_SLOT_LIMIT]  # keep the generic slot bounded

    def _set_sessions(self, listed: dict[str, dict[str, Any]]) -> None:
        """The gateway's list. A gone session is in it no more, but stays in ours, marked gone."""
        gone = self.gone_ids()
        for sid, meta in self.sessions.items():
            if sid not in listed and sid in self.chats and sid not in gone:
                self.unlisted[sid] = meta
        for sid in listed:
            self.unlisted.pop(sid, None)
        kept = {sid: self.sessions[sid] for sid in gone if sid in self.sessions}
        self.sessions = {**kept, **listed}

    def _apply_session(
        self, chat: Chat, type_: str, f: _Fields, ev: GatewayEvent, seq: int | None
    ) -> None:
        sid = chat.sessionId
        meta = self.sessions.get(sid)
        if type_ == "session_created" and f.session:
            self.sessions[sid] = f.session
        elif type_ == "state_snapshot":
            chat.gone = None  # joined again: the gateway knows it after all
            if f.session:
                self.sessions[sid] = f.session
                chat.status = f.session.get("status", chat.status)
            chat.settle_turns(f.activeTurnId, f.lastSeq)
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
        elif type_ == "history":
            self.history_skipped += apply_history(
                chat, _history.decode(ev.raw).turns
            ).skipped
        elif f.turnId is not None:
            t = chat.turn(f.turnId, seq)
            assert t is not None
            t.lastSeq = seq
            if type_ in _TURN_END_STATUS:
                t.status = (
                    "stopped" if f.stopReason == "stopped" else _TURN_END_STATUS[type_]
                )
                if type_ == "turn_complete":
                    t.finalText = f.finalText
                else:
                    t.error = {"code": f.code, "message": f.message}
            elif type_ in ("question_requested", "permission_requested"):
                t.status = "waiting"
            elif type_ == "approval_resolved" and t.status == "waiting":
                t.status = "running"
            t.items.append(ev.raw)
        elif seq is not None or type_ not in protocol.SERVER_EVENTS:
            # A session event outside a turn that we don't otherwise apply, and any event type we
            # don't know even without a seq: kept for the page's generic card, newest 500 per chat.
            # (Known answers without a seq, such as event_list or file_content, went to whoever
            # asked; they are not history.)
            chat.other.append(ev.raw)
            del chat.other[:-_SLOT_LIMIT]

    def snapshot(self, joined: list[str] | None = None) -> dict[str, Any]:
        return {
            "connection": self.connection,
            "joined": joined or [],
            "sessions": list(self.sessions.values()),
            "chats": {sid: c.snapshot() for sid, c in self.chats.items()},
            "unscoped": self.unscoped,
            "invalid": self.invalid,
            "outbox": self.outbox,
        }
