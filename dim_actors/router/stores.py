"""The router's stores: connection, sessions, chat, and a generic slot for what we don't
know.

Events are applied exactly once, in seq order per session: a seq at or below the
session's last one is a duplicate and is refused. Items are kept as the raw bytes the
gateway sent, so a snapshot shows the page exactly what a live event would have, fields
we don't know included. Nothing is dropped: an event we do not know goes to a generic
slot (its turn's items, its chat's `other`, or `unscoped`), and a known one whose fields
have the wrong types to `invalid` (docs/contracts.md §3).

The stores own the turn rules (docs/architecture.md, Turn semantics); the page only
renders what they decide: a reloaded page from `get_state`, a live one from the
`turn-state` frame the router sends after each event that changed a turn
(Stores.take_turn_state). Each rule, a row of tests/test_turn_rules.py:

- A turn begins at its `turn_started`, or at the first event of it that we hold (joined mid-turn:
  its user text unknown). It is `running`.
- `turn_started`: the user's text, `running`.
- `text_delta`: text appended, counted; the status is left alone.
- `turn_complete`: `stopped` when its stopReason says the turn was stopped (STOP_REASONS, any case),
  else `complete`; its finalText when it has one.
- `turn_error`: `error`, with its code and message ("" when absent).
- `question_requested` / `permission_requested`: the request is open; a `running` turn is `waiting`.
- `approval_resolved`: the request (in the turn it names, else whichever turn holds it) is closed;
  that turn (without a turnId: the one holding the request) is `running` again once none of its
  requests is open. Without a turnId it joins the holding turn's items, where it renders.
- `state_snapshot`: an open turn it does not name as active, which went no further than its lastSeq,
  ended without its end reaching us: `ended` (Chat.settle_turns). The chat takes its session status.
- `history`: apply_history.
- The chat's `activeTurnId` is the turn that began last (a `turn_started`, the first event held of a
  turn, or an open turn history added) until it is no longer open.
- Every event of a turn but `text_delta` is kept, in order, in its items: thinking, tool calls,
  requests and the rest are the page's rendering of them.
- The window: a chat keeps its newest WINDOW_TURNS turns; a first join brings the newest events
  only, and the window starts at a turn (Chat.left_at_gateway). `olderAtGateway` says up to which
  seq the gateway holds what the chat does not (router/older.py fetches it on demand).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import msgspec

from dim_actors.messages import CatchupGap, ConnectionState, GatewayEvent, SessionGone
from dim_actors.wire import protocol

# a turn's newest deltas are joined into one string this many at a time
_COMPACT_AT = 1024
# each generic slot keeps this many of the newest events (per chat, or unscoped)
_SLOT_LIMIT = 500
GAP_LIMIT = 50  # each chat keeps this many of its newest catch-up gaps
# get_state carries each chat's newest turns only: a page lays out the newest few anyway, and
# a session of 10,000 turns must not make every page load megabytes. Older ones come by
# get_turns, as the user scrolls up to them.
SNAPSHOT_TURNS = 100
# The stores' window: a chat keeps this many turns at most. Older ones are the gateway's
# (get_turns fetches them, router/older.py), so a session running for weeks costs the
# supervisor the same memory as one of an hour. Trimmed a batch at a time.
WINDOW_TURNS = 1000
_TRIM_BATCH = 100
_OPEN = ("running", "waiting")
# A history turn in one of these states ended: a turn we hold as open (or `ended`) takes
# its end from it.
_FINISHED = ("complete", "error", "stopped")
_HISTORY_STATUSES = (*_OPEN, *_FINISHED)
# A turn_complete whose stopReason is one of these (any case) was stopped, not
# completed.
STOP_REASONS = frozenset(
    {
        "stopped",
        "stop",
        "stop_turn",
        "user_stop",
        "user",
        "cancelled",
        "canceled",
        "interrupted",
        "aborted",
    }
)


def _reader(cls: type[msgspec.Struct], *used: str) -> msgspec.json.Decoder[Any]:
    """Events of `cls` as the stores read them: the fields they use must have their
    type, any field may be absent (docs/contracts.md §3)."""
    return msgspec.json.Decoder(protocol.tolerant(cls, ("turnId", *used)))


_READERS: dict[str, msgspec.json.Decoder[Any]] = {
    name: _reader(cls) for name, cls in protocol.SERVER_EVENTS.items()
}
_READERS.update(
    {
        "text_delta": _reader(protocol.TextDelta, "text", "sentNs"),
        "turn_started": _reader(protocol.TurnStarted, "text"),
        "turn_complete": _reader(protocol.TurnComplete, "finalText", "stopReason"),
        "turn_error": _reader(protocol.TurnError, "code", "message"),
        "question_requested": _reader(protocol.QuestionRequested, "requestId"),
        "permission_requested": _reader(protocol.PermissionRequested, "requestId"),
        "approval_resolved": _reader(protocol.ApprovalResolved, "requestId"),
        "session_list": _reader(protocol.SessionList, "sessions"),
        "session_created": _reader(protocol.SessionCreated, "session"),
        "session_renamed": _reader(protocol.SessionRenamed, "name"),
        "session_state": _reader(protocol.SessionStateChanged, "status"),
        "state_snapshot": _reader(
            protocol.StateSnapshot, "session", "lastSeq", "activeTurnId"
        ),
        "welcome": _reader(protocol.Welcome, "protocolVersion", "requiresAuth"),
        "connected": _reader(protocol.Connected, "clientId", "heartbeatIntervalMs"),
        "authenticated": _reader(protocol.Authenticated, "identity"),
        "heartbeat": _reader(protocol.Heartbeat, "ts"),
    }
)
# An event type we have no Struct for: its envelope, to find its turn.
_UNKNOWN = _reader(protocol.EventHead)
# One HistoryTurn, read on its own (an odd entry spoils no other).
_HistoryTurn = protocol.tolerant(
    protocol.HistoryTurn,
    ("turnId", "text", "status", "startedSeq", "finalText", "error", "endedSeq"),
)


def read_event(ev: GatewayEvent) -> msgspec.Struct:
    """The event as its protocol Struct (read tolerantly: see protocol.tolerant), or its
    envelope (protocol.EventHead) when the type is not one we know."""
    return _READERS.get(ev.type, _UNKNOWN).decode(ev.raw)


def _meta(session: protocol.SessionMeta) -> dict[str, Any]:
    """A session's meta as the stores keep it and the page gets it: the fields the
    gateway sent."""
    out: dict[str, Any] = msgspec.to_builtins(session)
    return out


class BadEvent(ValueError):
    pass


class LatencyStats:
    """A histogram of durations with 1 us buckets below 10 ms and 1 ms buckets above, so
    memory stays bounded."""

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


class SendLatency:
    """Gateway send -> applied here, for deltas that carry `sentNs` (benchmarks only), and
    its two legs: send -> received by the connection process (the gateway, the network
    and the receiving thread's wake-up) and received -> applied (the process boundary:
    the pipe, the hand-over to the router, the stores)."""

    __slots__ = ("crossing", "received", "total")

    def __init__(self) -> None:
        self.total = LatencyStats()
        self.received = LatencyStats()
        self.crossing = LatencyStats()

    @property
    def count(self) -> int:
        return self.total.count

    def record(self, recv_ns: int, sent_ns: int) -> None:
        now = time.time_ns()
        self.total.record(now - sent_ns)
        self.received.record(recv_ns - sent_ns)
        self.crossing.record(now - recv_ns)

    def summary(self) -> dict[str, Any]:
        return {
            **self.total.summary(),
            "received": self.received.summary(),
            "crossing": self.crossing.summary(),
        }


class DeltaMeter:
    """When text deltas were received by the connection process and applied here
    (benchmarks)."""

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


def _utf16_len(text: str) -> int:
    """The length of `text` as JavaScript counts it: characters outside the BMP are two."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


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
        "textAt",
        "textLen",
        "fromHistory",
        "requests",
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
        # Parallel to items: how much delta text had streamed when each item came, so a
        # reloaded page puts each card where it was among the text. Counted in UTF-16
        # code units, as the page measures its strings.
        self.textAt: list[int] = []
        self.textLen = 0
        # Built from a `history` answer, not from events: its text only (no tool calls,
        # thinking, ...).
        self.fromHistory = False
        # requestId -> still open, for the questions and permissions this turn asked.
        self.requests: dict[str, bool] = {}

    def state(self) -> dict[str, Any]:
        """What the rules decided about this turn, as the page's `turn-state` frame
        carries it: its text only for a turn built from history (a live turn's text is
        its deltas, which the page has)."""
        out = {
            "turnId": self.turnId,
            "status": self.status,
            "userText": self.userText,
            "finalText": self.finalText,
            "error": self.error,
            "firstSeq": self.firstSeq,
            "lastSeq": self.lastSeq,
            "fromHistory": self.fromHistory,
        }
        if self.fromHistory:
            out["text"] = self.text
        return out

    @property
    def text(self) -> str:
        if len(self.parts) > 1:
            self.parts = ["".join(self.parts)]
            self.chunks = 1
        return self.parts[0] if self.parts else ""

    @property
    def open(self) -> bool:
        return self.status in _OPEN

    def append_text(self, text: str, seq: int | None) -> None:
        parts = self.parts
        parts.append(text)
        self.textLen += _utf16_len(text)
        if len(parts) - self.chunks >= _COMPACT_AT:
            # Fold the newest deltas into one string: a long stream costs its text, not
            # a
            # Python object per delta (1M deltas: ~8 MB rather than ~60 MB).
            parts[self.chunks :] = ["".join(parts[self.chunks :])]
            self.chunks += 1
        self.deltaCount += 1
        self.lastSeq = seq

    def add_item(self, raw: msgspec.Raw) -> None:
        self.items.append(raw)
        self.textAt.append(self.textLen)

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
            "textAt": self.textAt,
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
        # Missed events the connection could not fetch: {afterSeq, beforeSeq, reason,
        # atSeq}. atSeq is this chat's lastSeq when the gap was told, so a reloaded page
        # puts it where a live one did.
        self.gaps: list[dict[str, Any]] = []
        # {reason}: the gateway no longer knows this session
        self.gone: dict[str, Any] | None = None
        self.active: Turn | None = None  # the turn that began last, while it is open
        # Turns whose state the rules changed since the page was last told
        # (Stores.take_turn_state).
        self.moved: dict[str, Turn] = {}
        # The gateway holds this session's events up to this seq, and this chat does
        # not (its first catch-up brought the newest only): get_turns fetches them.
        self.before = 0
        # While set: the lastSeq of the snapshot that came before this chat held any
        # event, and the turn it named as running. Up to that seq, a turn whose start
        # is older than what the chat holds stays at the gateway with the rest of the
        # past (a window starts at a turn, not in one), the running one excepted.
        self.window_end: int | None = None
        self.window_active: str | None = None

    def turn(self, turn_id: str, seq: int | None) -> Turn:
        t = self.by_id.get(turn_id)
        if t is None:  # joined mid-turn: the turn's start is older than what we hold
            t = self.by_id[turn_id] = Turn(turn_id, None, seq)
            self.add_turn(t)
            self.active = t
            self.moved[turn_id] = t
        return t

    def add_turn(self, t: Turn) -> None:
        self.turns.append(t)
        if len(self.turns) > WINDOW_TURNS:
            self.trim()

    def trim(self) -> None:
        """Leave the oldest turns to the gateway, down to the window's size less a
        batch: finished ones, in order, up to the first still open (its requests may
        yet be answered)."""
        cut = 0
        limit = len(self.turns) - WINDOW_TURNS + _TRIM_BATCH
        while cut < limit and not self.turns[cut].open:
            cut += 1
        for t in self.turns[:cut]:
            del self.by_id[t.turnId]
            self.moved.pop(t.turnId, None)
            self.before = max(self.before, t.lastSeq or 0)
        del self.turns[:cut]

    @property
    def active_turn_id(self) -> str | None:
        """The turn a stop stops: the one that began last, while it is open."""
        return (
            self.active.turnId if self.active is not None and self.active.open else None
        )

    def closed(self, t: Turn) -> None:
        """`t` is no longer open: no longer the active turn either."""
        if self.active is t:
            self.active = None

    def snapshot(self, turns: int = SNAPSHOT_TURNS) -> dict[str, Any]:
        """The chat with its newest `turns` turns; olderTurns counts the ones left out."""
        shown = self.turns[-turns:] if turns > 0 else []
        return {
            "lastSeq": self.lastSeq,
            "status": self.status,
            "activeTurnId": self.active_turn_id,
            "turns": [t.snapshot() for t in shown],
            "olderTurns": len(self.turns) - len(shown),
            "olderAtGateway": self.before,
            "other": self.other,
            "invalid": self.invalid,
            "gaps": self.gaps,
            "gone": self.gone,
        }

    def older(
        self, before_turn_id: str, limit: int, from_turn_id: str | None = None
    ) -> dict[str, Any] | None:
        """The `limit` turns before `before_turn_id` (from `from_turn_id` on, when it is
        one of those), oldest first, and how many are before those; None when this chat
        holds no such turn."""
        t = self.by_id.get(before_turn_id)
        if t is None:
            return None
        end = self.turns.index(t)
        start = max(0, end - limit)
        first = self.by_id.get(from_turn_id) if from_turn_id is not None else None
        if first is not None:
            start = max(start, min(self.turns.index(first), end))
        return {
            "sessionId": self.sessionId,
            "turns": [x.snapshot() for x in self.turns[start:end]],
            "olderTurns": start,
            "olderAtGateway": self.before,
        }

    def left_at_gateway(self, seq: int, turn_id: str | None, started: bool) -> bool:
        """Whether an event of the window's first catch-up belongs to a turn that began
        before the window: it stays at the gateway (`before` moves past it), and the
        turn comes whole with the older ones."""
        end = self.window_end
        if end is None:
            return False
        if seq > end:
            self.window_end = None
            return False
        if (
            turn_id is None
            or started
            or turn_id in self.by_id
            or turn_id == self.window_active
        ):
            return False
        self.before = max(self.before, seq)
        return True

    def add_gap(self, gap: CatchupGap) -> dict[str, Any]:
        """Keep a gap; one told again with the same afterSeq (its end now known, a
        second try that failed too) is the same hole and replaces the first, so the page
        shows it once."""
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

    # --- the turn rules (the module's docstring) --------------------------------------

    def start_turn(self, ev: protocol.TurnStarted, seq: int | None) -> Turn:
        t = self.by_id.get(ev.turnId or "")
        if t is None:
            t = self.by_id[ev.turnId or ""] = Turn(ev.turnId or "", ev.text, seq)
            self.add_turn(t)
        if ev.text is not None:
            t.userText = ev.text
        t.status = "running"
        self.active = t
        self.moved[t.turnId] = t
        return t

    def end_turn(self, t: Turn, ev: protocol.TurnComplete | protocol.TurnError) -> None:
        match ev:
            case protocol.TurnComplete(finalText=final, stopReason=reason):
                stopped = isinstance(reason, str) and reason.lower() in STOP_REASONS
                t.status = "stopped" if stopped else "complete"
                if final is not None:
                    t.finalText = final
            case protocol.TurnError(code=code, message=message):
                t.status = "error"
                t.error = {"code": code or "", "message": message or ""}
        self.closed(t)
        self.moved[t.turnId] = t

    def ask(self, t: Turn, request_id: str | None) -> None:
        if request_id is not None:
            t.requests[request_id] = True
        if t.status == "running":
            t.status = "waiting"
            self.moved[t.turnId] = t

    def holder(self, request_id: str | None, first: Turn | None = None) -> Turn | None:
        """The turn that asked `request_id`: `first` when it did, else the first turn
        that did."""
        if request_id is None:
            return None
        if first is not None and request_id in first.requests:
            return first
        return next((t for t in self.turns if request_id in t.requests), None)

    def resolve(self, t: Turn | None, request_id: str | None) -> Turn | None:
        """An approval_resolved of turn `t` (None: it named no turn). Returns the turn
        whose status the answer may change: `t` itself, or the turn holding the request
        when `t` is None."""
        held = self.holder(request_id, t)
        if held is not None and request_id is not None:
            held.requests[request_id] = False
        moved = t if t is not None else held
        if (
            moved is not None
            and moved.status == "waiting"
            and not any(moved.requests.values())
        ):
            moved.status = "running"
            self.moved[moved.turnId] = moved
        return held

    def settle_turns(self, active_turn_id: str | None, last_seq: int | None) -> None:
        """A state_snapshot says which turn runs now (activeTurnId, or none). A turn we
        hold as open that it does not name has ended at the gateway, and its end event
        has not reached us (lost in a disconnect, or still on its way in the catch-up):
        it is `ended` until that end arrives. Turns that went on past the snapshot's
        lastSeq are newer than what it describes."""
        for t in self.turns:
            if (
                t.open
                and t.turnId != active_turn_id
                and (last_seq is None or (t.lastSeq or 0) <= last_seq)
            ):
                t.status = "ended"
                self.closed(t)
                self.moved[t.turnId] = t

    def turn_state(self) -> dict[str, Any]:
        """The page's `turn-state` frame: the turns the rules changed, and the active
        one. atSeq is the chat's lastSeq when they decided, so a page that already shows
        a later state (a snapshot taken after) knows this one is older."""
        return {
            "sessionId": self.sessionId,
            "atSeq": self.lastSeq,
            "activeTurnId": self.active_turn_id,
            "turns": [t.state() for t in self.moved.values()],
        }


@dataclass
class HistoryOutcome:
    """What a `history` answer changed in a chat: turns added, turns whose lost end it
    brought, and entries skipped because they could not be read."""

    added: list[str] = field(default_factory=list)
    settled: list[str] = field(default_factory=list)
    skipped: int = 0


def _read_history_turn(entry: Any) -> protocol.HistoryTurn | None:
    """A well-formed HistoryTurn, or None for an entry that is not one."""
    try:
        h = msgspec.convert(entry, _HistoryTurn)
    except msgspec.ValidationError:
        return None
    if (
        not h.turnId
        or h.text is None
        or h.status not in _HISTORY_STATUSES
        or h.startedSeq is None
        or h.startedSeq < 0
        or (h.endedSeq is not None and h.endedSeq < h.startedSeq)
        or (h.error is not None and h.error.code is None)
    ):
        return None
    return h


def _history_error(h: protocol.HistoryTurn) -> dict[str, Any] | None:
    return (
        {"code": h.error.code, "message": h.error.message or ""}
        if h.error is not None
        else None
    )


def _turn_from_history(h: protocol.HistoryTurn) -> Turn:
    t = Turn(h.turnId, h.text, h.startedSeq)
    t.status = h.status
    if h.finalText:
        t.parts, t.chunks = [h.finalText], 1
        t.textLen = _utf16_len(h.finalText)
    t.finalText = h.finalText
    t.error = _history_error(h)
    t.lastSeq = h.endedSeq if h.endedSeq is not None else h.startedSeq
    t.fromHistory = True
    return t


def _insert_by_first_seq(turns: list[Turn], t: Turn) -> None:
    """Before the first turn that started later, so the chat's turns stay in the order
    they ran."""
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
    """The gateway's own record of a session's turns (`get_history`), used where missed
    events could not be fetched. A turn we hold as open or `ended` that history says
    finished takes its end from history (its end event was lost); a turn we lack is
    added, its text only. A turn we hold that finished is left as it is: its events say
    more than history does. Applying it twice changes nothing the second time."""
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
            if t.open:
                chat.active = t
            chat.moved[t.turnId] = t
            out.added.append(h.turnId)
        elif (t.open or t.status == "ended") and h.status in _FINISHED:
            t.status, t.finalText, t.error = h.status, h.finalText, _history_error(h)
            chat.closed(t)
            chat.moved[t.turnId] = t
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
        # Metas a session_list dropped, of sessions we hold a chat for: a SessionGone
        # told after the list (a reconnect refreshes both) still finds the session's
        # name.
        self.unlisted: dict[str, dict[str, Any]] = {}
        self.chats: dict[str, Chat] = {}
        self.unscoped: list[
            msgspec.Raw
        ] = []  # events with no session we don't otherwise know
        self.invalid: list[
            dict[str, Any]
        ] = []  # {reason, event}: mistyped known events with no session
        # What the handshake and heartbeats told us about this connection (the page's
        # connection panel).
        self.link: dict[str, Any] = {}
        # bad frames (connection process) and bad events (here): one count for the page
        self.bad_input = 0
        self.outbox: list[dict[str, Any]] = []  # commands waiting for the connection
        self.events_applied = 0
        self.duplicates = 0
        # events of a turn begun before a window's start (Chat.left_at_gateway)
        self.left_at_gateway = 0
        self.bad_events = 0
        # entries of `history` answers that were not HistoryTurns
        self.history_skipped = 0
        self.latency = SendLatency()
        self.deltas = DeltaMeter()
        # The chat whose turns the last event applied changed, until take_turn_state
        # tells them.
        self.moved: Chat | None = None

    def chat(self, sid: str) -> Chat:
        c = self.chats.get(sid)
        if c is None:
            c = self.chats[sid] = Chat(sid)
        return c

    def set_connection(self, st: ConnectionState) -> None:
        # retryAt: when the next attempt is due, so a page loaded later still counts
        # down correctly.
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
        """A session's missed events could not be fetched: kept with its chat; the
        page's payload."""
        return {"sessionId": gap.sessionId, **self.chat(gap.sessionId).add_gap(gap)}

    def mark_gone(self, msg: SessionGone) -> dict[str, Any]:
        """The gateway no longer knows the session: its transcript and list entry stay,
        marked gone."""
        sid = msg.sessionId
        chat = self.chat(sid)
        chat.gone = {"reason": msg.reason}
        if sid not in self.sessions:
            self.sessions[sid] = self.unlisted.pop(sid, {}) or {"id": sid}
        return {"sessionId": sid, "reason": msg.reason}

    def take_turn_state(self) -> dict[str, Any] | None:
        """The `turn-state` frame for what the last event applied changed in its
        session's turns, or None when it changed none. `moved` says beforehand whether
        there is one, so the hot path (a text delta of a turn we hold) costs the caller
        one attribute read."""
        chat, self.moved = self.moved, None
        if chat is None or not chat.moved:
            return None
        frame = chat.turn_state()
        chat.moved = {}
        return frame

    def gone_ids(self) -> set[str]:
        return {sid for sid, chat in self.chats.items() if chat.gone is not None}

    def _set_link(self, **fields: Any) -> None:
        self.link.update(fields)
        self.connection.update(fields)

    def apply(self, ev: GatewayEvent) -> bool:
        """Apply one event; False when it is a duplicate (already applied) and must go
        no further.

        BadEvent when a known event type carries fields of the wrong type: it is kept in
        the generic slot, never dropped, and never allowed to break the stores."""
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
        sid, seq = ev.sessionId, ev.seq
        chat = None
        if sid is not None:
            chat = self.chat(sid)
            if seq is not None:
                if seq <= chat.lastSeq:
                    self.duplicates += 1
                    return False
                if chat.lastSeq == 0 and seq > 1:
                    chat.before = seq - 1  # caught up from a window: older ones wait
                chat.lastSeq = seq
        read = read_event(ev)
        if (
            chat is not None
            and seq is not None
            and chat.window_end is not None
            and chat.left_at_gateway(
                seq,
                getattr(read, "turnId", None),
                isinstance(read, protocol.TurnStarted),
            )
        ):
            self.left_at_gateway += 1
            return False
        self.events_applied += 1
        if chat is None:
            self._apply_unscoped(read, ev)
        elif isinstance(read, protocol.TextDelta) and read.turnId is not None:
            # The hot path: one event in every few of a long stream is anything else.
            self.deltas.note(ev.recvNs)
            if read.sentNs is not None:
                self.latency.record(ev.recvNs, read.sentNs)
            t = chat.by_id.get(read.turnId)
            if t is None:
                t = chat.turn(read.turnId, seq)
                self.moved = chat
            t.append_text(read.text or "", seq)
        else:
            self._apply_session(chat, read, ev, seq)
            if chat.moved:
                self.moved = chat
        return True

    def _apply_unscoped(self, read: msgspec.Struct, ev: GatewayEvent) -> None:
        match read:
            case protocol.SessionList(sessions=listed) if listed is not None:
                self._set_sessions({m.id: _meta(m) for m in listed if m.id})
            case protocol.SessionCreated(session=meta) if meta is not None and meta.id:
                self.sessions[meta.id] = _meta(meta)
            case protocol.Welcome(protocolVersion=version, requiresAuth=auth):
                # A new connection: what the last one said no longer holds.
                self.link = {}
                self._set_link(
                    protocolVersion=version,
                    requiresAuth=auth,
                    clientId=None,
                    heartbeatIntervalMs=None,
                    lastHeartbeatAt=None,
                )
            case protocol.Connected(clientId=client, heartbeatIntervalMs=interval):
                self._set_link(clientId=client, heartbeatIntervalMs=interval)
            case protocol.Authenticated(identity=identity):
                # also after an `authenticate` command
                self.connection["identity"] = (
                    None if identity is None else msgspec.to_builtins(identity)
                )
            case protocol.Heartbeat(ts=ts):
                self._set_link(lastHeartbeatAt=ts)
            case _ if ev.type not in protocol.SERVER_EVENTS:
                self.unscoped.append(ev.raw)
                del self.unscoped[:-_SLOT_LIMIT]  # keep the generic slot bounded

    def _set_sessions(self, listed: dict[str, dict[str, Any]]) -> None:
        """The gateway's list. A gone session is in it no more, but stays in ours,
        marked gone."""
        gone = self.gone_ids()
        for sid, meta in self.sessions.items():
            if sid not in listed and sid in self.chats and sid not in gone:
                self.unlisted[sid] = meta
        for sid in listed:
            self.unlisted.pop(sid, None)
        kept = {sid: self.sessions[sid] for sid in gone if sid in self.sessions}
        self.sessions = {**kept, **listed}

    def _apply_session(
        self, chat: Chat, read: msgspec.Struct, ev: GatewayEvent, seq: int | None
    ) -> None:
        if self._apply_meta(chat, read):
            return
        turn_id: str | None = getattr(read, "turnId", None)
        match read:
            case protocol.TurnStarted() if turn_id:
                chat.start_turn(read, seq).add_item(ev.raw)
            case protocol.History(turns=entries):
                if not isinstance(entries, list):
                    raise TypeError("history: `turns` is not a list")
                self.history_skipped += apply_history(chat, entries).skipped
            case protocol.ApprovalResolved(requestId=request_id) if turn_id is None:
                # Outside a turn: it answers whichever turn asked, and renders there.
                held = chat.resolve(None, request_id)
                if held is not None:
                    held.add_item(ev.raw)
                else:
                    self._keep_other(chat, ev, seq)
            case _ if turn_id is not None:
                self._apply_turn_item(chat.turn(turn_id, seq), chat, read, seq)
                chat.by_id[turn_id].add_item(ev.raw)
            case _:
                self._keep_other(chat, ev, seq)

    def _apply_meta(self, chat: Chat, read: msgspec.Struct) -> bool:
        """A session event that changes the session's meta (the list) or its chat's
        status; False when it is none, or says too little to apply (then it is kept like
        any other event)."""
        sid = chat.sessionId
        meta = self.sessions.get(sid)
        match read:
            case protocol.SessionCreated(session=session) if session is not None:
                self.sessions[sid] = _meta(session)
            case protocol.StateSnapshot(
                session=session, activeTurnId=active, lastSeq=last_seq
            ):
                chat.gone = None  # joined again: the gateway knows it after all
                if chat.lastSeq == 0 and isinstance(last_seq, int):
                    chat.window_end, chat.window_active = last_seq, active
                if session is not None:
                    self.sessions[sid] = _meta(session)
                    if session.status is not None:
                        chat.status = session.status
                chat.settle_turns(active, last_seq)
            case protocol.SessionStateChanged(status=status) if status:
                chat.status = status
                if meta is not None:
                    meta["status"] = status
            case protocol.SessionRenamed(name=name) if meta is not None:
                meta["name"] = name
            case protocol.SessionArchived() if meta is not None:
                meta["archived"] = True
            case protocol.SessionUnarchived() if meta is not None:
                meta["archived"] = False
            case protocol.SessionDeleted():
                self.sessions.pop(sid, None)
            case _:
                return False
        return True

    @staticmethod
    def _apply_turn_item(
        t: Turn, chat: Chat, read: msgspec.Struct, seq: int | None
    ) -> None:
        t.lastSeq = seq
        match read:
            case protocol.TurnComplete() | protocol.TurnError():
                chat.end_turn(t, read)
            case (
                protocol.QuestionRequested(requestId=request_id)
                | protocol.PermissionRequested(requestId=request_id)
            ):
                chat.ask(t, request_id)
            case protocol.ApprovalResolved(requestId=request_id):
                chat.resolve(t, request_id)

    @staticmethod
    def _keep_other(chat: Chat, ev: GatewayEvent, seq: int | None) -> None:
        # A session event outside a turn that we don't otherwise apply, and any event
        # type we don't know even without a seq: kept for the page's generic card,
        # newest 500 per chat. (Known answers without a seq, such as event_list or
        # file_content, went to whoever asked; they are not history.)
        if seq is not None or ev.type not in protocol.SERVER_EVENTS:
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
