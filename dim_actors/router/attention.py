"""Which sessions need the user: the count on the tray icon and in the window's title.

A session needs the user while one of its turns waits on them (an open question or
permission request) or when one of its turns ended (complete, error, stopped) while they
were not looking at it. Looking at a session clears both; an answered request clears its
waiting by itself. Pure: the router feeds it the stores' verdicts (`outcome_of`) and the
page's `mark_seen`, and sends the summary on when it changes.

A replayed event (a restarted router rebuilds its stores from the gateway) must not
raise a session again: the tracker keeps each session's last seq and ignores anything
at or below it, and lives in RouterMemory so it outlives the router. A turn that ended
more than STALE_AFTER_MS ago (a first join's catch-up of an old session) is history,
not news: as the desktop notifications, it never counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import msgspec

Reason = Literal["waiting", "finished"]
# the same age past which a desktop notification is a replay (desktop/notify.py)
STALE_AFTER_MS = 600_000
_FINISHED = frozenset({"complete", "error", "stopped"})
ENDS = frozenset({"turn_complete", "turn_error"})


class AttentionSummary(msgspec.Struct, frozen=True):
    """The page's `attention` event and get_state's `attention`: how many sessions need
    the user, and why each does (a waiting one is told as waiting even if it also
    finished a turn)."""

    count: int = 0
    sessions: dict[str, Reason] = {}


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What one event did to a session's turns, as far as attention goes."""

    sessionId: str
    seq: int | None = None
    opened: tuple[str, ...] = ()  # turns now waiting on the user
    closed: tuple[str, ...] = ()  # turns no longer waiting on the user
    finished: bool = False  # a turn ended, live (not stale)


class _Stamp(msgspec.Struct):
    ts: Any = None


_stamp = msgspec.json.Decoder(_Stamp)


def event_ts(raw: bytes) -> int | None:
    """The event's `ts` (epoch ms), or None when it has none a number can be read from."""
    try:
        ts = _stamp.decode(raw).ts
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return ts if isinstance(ts, int) and not isinstance(ts, bool) else None


def outcome_of(
    event_type: str,
    session_id: str,
    seq: int | None,
    ts_ms: int | None,
    now_ms: int,
    turns: Iterable[Mapping[str, Any]],
) -> Outcome:
    """The outcome of an event whose verdict (stores `turn-state`) moved `turns`."""
    opened: list[str] = []
    closed: list[str] = []
    ended = False
    for t in turns:
        status = t.get("status")
        (opened if status == "waiting" else closed).append(str(t.get("turnId")))
        ended = ended or status in _FINISHED
    fresh = ts_ms is None or now_ms - ts_ms <= STALE_AFTER_MS
    return Outcome(
        sessionId=session_id,
        seq=seq,
        opened=tuple(opened),
        closed=tuple(closed),
        finished=ended and fresh and event_type in ENDS,
    )


class Attention:
    def __init__(self) -> None:
        self._open: dict[str, set[str]] = {}  # session -> its turns waiting on the user
        self._waiting: set[str] = set()  # sessions counted as waiting
        self._finished: set[str] = set()  # sessions counted as finished
        self._last_seq: dict[str, int] = {}
        self.looking_at: str | None = None
        self._summary = AttentionSummary()

    @property
    def summary(self) -> AttentionSummary:
        return self._summary

    def apply(self, o: Outcome) -> bool:
        """Whether the summary changed."""
        sid = o.sessionId
        if o.seq is not None:
            if o.seq <= self._last_seq.get(sid, 0):
                return False  # a replay: told before
            self._last_seq[sid] = o.seq
        open_turns = self._open.setdefault(sid, set())
        fresh = set(o.opened) - open_turns
        open_turns.update(fresh)
        open_turns.difference_update(o.closed)
        away = sid != self.looking_at
        if fresh and away:
            self._waiting.add(sid)
        if not open_turns:
            self._waiting.discard(sid)
            del self._open[sid]
        if o.finished and away:
            self._finished.add(sid)
        return self._update()

    def looking(self, session_id: str | None) -> bool:
        """The user looks at `session_id` (None: at none): it needs them no more, and
        nothing it does while they look does."""
        self.looking_at = session_id
        return self.seen(session_id) if session_id is not None else False

    def looked_away(self, session_id: str) -> bool:
        """The page no longer shows `session_id` to the user (hidden, unfocused). A page
        that says so of a session another page has since shown changes nothing."""
        if self.looking_at == session_id:
            self.looking_at = None
        return False

    def seen(self, session_id: str) -> bool:
        self._waiting.discard(session_id)
        self._finished.discard(session_id)
        return self._update()

    def forget(self, session_id: str) -> bool:
        """The session is deleted: nothing of it can be looked at any more."""
        self._open.pop(session_id, None)
        self._last_seq.pop(session_id, None)
        if self.looking_at == session_id:
            self.looking_at = None
        return self.seen(session_id)

    def _update(self) -> bool:
        sessions: dict[str, Reason] = dict.fromkeys(sorted(self._finished), "finished")
        sessions.update(dict.fromkeys(sorted(self._waiting), "waiting"))
        new = AttentionSummary(
            count=len(sessions), sessions=dict(sorted(sessions.items()))
        )
        changed = new != self._summary
        self._summary = new
        return changed
