"""The few fields the connection itself reads from gateway frames.

They are decoded as Any and checked by hand: a wrong type there must become a reported
bad frame, not a ValidationError that ends the socket thread. (The router decodes events
fully and keeps odd ones; here only routing matters.)"""

from __future__ import annotations

from typing import Any

import msgspec

# AUTH_RATE_LIMITED and catch-up refusals without a usable retryAfterMs wait this long;
# a value above the maximum is clamped, so a garbled number cannot park the connection
# for days.
RETRY_AFTER_DEFAULT_S = 1.0
RETRY_AFTER_MAX_S = 300.0

# A clientTurnId of the wrong type: matches no request of ours.
UNREADABLE = "\x00unreadable"


class _ErrorCodeStruct(msgspec.Struct):
    code: Any = ""


_error_code = msgspec.json.Decoder(_ErrorCodeStruct)


class _EventList(msgspec.Struct):
    # each event exactly as sent; only their envelopes are read here
    events: list[msgspec.Raw] = []
    hasMore: Any = False


_event_list = msgspec.json.Decoder(_EventList)


class _Snapshot(msgspec.Struct):
    lastSeq: Any = None


_snapshot = msgspec.json.Decoder(_Snapshot)


class Target(msgspec.Struct):
    sessionId: Any = None
    clientTurnId: Any = None


_target = msgspec.json.Decoder(Target)


def error_code(data: bytes) -> Any:
    """An error frame's code, as sent (a string, or anything else a gateway wrote
    there)."""
    return _error_code.decode(data).code


def target(data: bytes) -> Target:
    """The session and client turn id a frame names, as sent."""
    return _target.decode(data)


def str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def snapshot_last_seq(data: bytes) -> int | None:
    """state_snapshot.lastSeq (ours: a gateway may not send it), when it is a usable
    number."""
    value = _snapshot.decode(data).lastSeq
    return (
        value
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0
        else None
    )


def retry_after_s(value: Any, floor_s: float) -> float | None:
    """A gateway's retryAfterMs as seconds in [floor_s, RETRY_AFTER_MAX_S]; None when
    unusable."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value != value
        or value < 0
    ):
        return None  # missing, null, a string, NaN, negative
    return min(RETRY_AFTER_MAX_S, max(floor_s, value / 1000))


class Page(msgspec.Struct, frozen=True):
    """A catch-up page as read: its events (each as sent), whether more follow, and what
    was wrong with it (None when nothing)."""

    events: list[bytes]
    more: bool
    problem: str | None = None


def read_page(data: bytes) -> Page:
    """Anything unreadable is read as the last page, so a bad page ends the catch-up
    instead of repeating it."""
    try:
        page = _event_list.decode(data)
    except msgspec.ValidationError as e:
        return Page(
            [],
            False,
            f"a catch-up page that cannot be read ({e}): the catch-up ends here",
        )
    events = [bytes(raw) for raw in page.events]
    more = page.hasMore
    if not isinstance(more, bool):
        return Page(
            events,
            False,
            f"event_list.hasMore is not a boolean ({more!r}): taken as the last page",
        )
    return Page(events, more)
