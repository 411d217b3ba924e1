"""The catch-up's decisions about its pages (dim_actors/connection/process/catchup.py)."""

from __future__ import annotations

import pytest

from dim_actors.connection.process.catchup import (
    CATCHUP_PAGE_WAIT_S,
    CATCHUP_TAIL_EVENTS,
    CatchUp,
    Deliver,
    GapFilled,
    Skip,
    after_page,
    fills_gap,
    internal_outcome,
    page_overdue,
    page_steps,
    retry_refused,
    tail_start,
)
from dim_actors.connection.process.sender import SendSlot
from dim_actors.wire import protocol


@pytest.mark.parametrize(
    "more, last, after, expected",
    [
        (True, 120, 100, "next"),  # more after the last seq read: ask after it
        (
            True,
            100,
            100,
            "stuck",
        ),  # "more", but nothing new: asking again gets the same page
        (True, 90, 100, "stuck"),
        (True, None, 100, "done"),  # an empty page ends it whatever it says
        (False, 120, 100, "done"),
        (False, None, 0, "done"),
    ],
)
def test_what_follows_a_page(more, last, after, expected):
    assert after_page(more, last, after) == expected


@pytest.mark.parametrize(
    "gap, seq, expected",
    [
        ((10, 15), 11, True),
        ((10, 15), 14, True),
        ((10, 15), 10, False),  # the last delivered: not missing
        ((10, 15), 15, False),  # the live event that showed the gap: not missing either
        ((10, 15), None, False),
        (None, 12, False),  # not a gap refetch
    ],
)
def test_an_event_fills_a_gap_only_from_inside_it(gap, seq, expected):
    assert fills_gap(gap, seq) == expected


@pytest.mark.parametrize(
    "code, delay_s, began, now, expected",
    [
        ("RATE_LIMITED", 1.0, 100.0, 100.0, True),
        ("RATE_LIMITED", 1.0, 100.0, 108.9, True),
        ("RATE_LIMITED", 1.0, 100.0, 109.0, False),  # past its budget once retried
        ("RATE_LIMITED", 12.0, 100.0, 100.0, False),  # a retry beyond the budget
        ("INVALID_REQUEST", 1.0, 100.0, 100.0, False),  # not transient: ends it
        (None, 1.0, 100.0, 100.0, False),
    ],
)
def test_a_refused_page_is_asked_again_only_when_transient_and_within_budget(
    code, delay_s, began, now, expected
):
    assert retry_refused(code, delay_s, began, now) == expected


def a_catchup(due: float | None, sent_order: int, sent_at: float, slot=True) -> CatchUp:
    c = CatchUp()
    c.page_due = due
    if slot:
        c.page_slot = SendSlot(awaiting=True)
        c.page_slot.order, c.page_slot.at = sent_order, sent_at
    return c


W = CATCHUP_PAGE_WAIT_S


@pytest.mark.parametrize(
    "catchup, now, expected",
    [
        (a_catchup(None, 1, 0.0), 1000.0, False),  # no page in flight
        (a_catchup(100.0, 1, 90.0), 99.0, False),  # not due yet
        (a_catchup(100.0, 1, 90.0), 100.0, True),  # due, and sent a full wait ago
        (a_catchup(100.0, 0, 0.0), 500.0, False),  # still in the send queue
        (a_catchup(100.0, 3, 95.0), 100.0, False),  # sent late (the rate limit held it)
        (a_catchup(100.0, 3, 95.0), 95.0 + W, True),
        (
            a_catchup(100.0, 0, 0.0, slot=False),
            100.0,
            True,
        ),  # no slot known: due is due
    ],
)
def test_a_page_is_overdue_a_full_wait_after_it_went_out(catchup, now, expected):
    assert page_overdue(catchup, now) == expected


def ev(seq: int | None, extra: bytes = b"") -> bytes:
    seq_part = b"" if seq is None else b',"seq":' + str(seq).encode()
    return b'{"type":"text_delta","sessionId":"s1"' + seq_part + extra + b"}"


CUT = b',"x":' + protocol.TOO_DEEP_MARK


@pytest.mark.parametrize(
    "events, gap, kinds, last",
    [
        ([], None, [], None),
        ([ev(1), ev(2)], None, ["deliver", "deliver"], 2),
        ([ev(1), b"not json", ev(3)], None, ["deliver", "skip", "deliver"], 3),
        ([ev(1), ev(2, CUT)], None, ["deliver", "skip"], 2),  # a cut event still counts
        ([ev(1), ev(None)], None, ["deliver", "deliver"], 1),  # no seq: last stays
        # a gap refetch (after 10, before 14): only the first event inside it fills it
        (
            [ev(10), ev(11), ev(12)],
            (10, 14),
            ["deliver", "filled", "deliver", "deliver"],
            12,
        ),
        ([ev(14), ev(15)], (10, 14), ["deliver", "deliver"], 15),  # nothing was missing
        ([ev(11, CUT)], (10, 14), ["skip"], 11),  # a cut event fills nothing
    ],
)
def test_what_a_catch_up_pages_events_come_to(events, gap, kinds, last):
    steps, got_last = page_steps("s1", events, gap)
    names = {Deliver: "deliver", Skip: "skip", GapFilled: "filled"}
    assert [names[type(s)] for s in steps] == kinds
    assert got_last == last
    delivered = [s.data for s in steps if isinstance(s, Deliver)]
    assert all(e in events for e in delivered)


@pytest.mark.parametrize(
    "kind, head_type, code, catching_up, expected",
    [
        (None, "error", "SessionNotFound", True, "answered"),  # not ours: the router's
        ("catchup", "event_list", None, True, "answered"),
        ("join", "session_joined", None, False, "answered"),
        ("join", "error", "SessionNotFound", False, "session_gone"),
        ("catchup", "error", "SessionNotFound", True, "session_gone"),
        ("catchup", "error", "RATE_LIMITED", True, "catchup_refused"),
        ("catchup", "error", "RATE_LIMITED", False, "refused"),  # its catch-up is over
        ("history", "error", "INTERNAL", False, "refused"),
        ("join", "error", None, False, "refused"),
    ],
)
def test_what_an_answer_to_our_own_request_does(
    kind, head_type, code, catching_up, expected
):
    assert internal_outcome(kind, head_type, code, catching_up) == expected


@pytest.mark.parametrize(
    "last, start",
    [
        (None, 0),  # the snapshot did not say: from the first event, as ever
        (0, 0),
        (CATCHUP_TAIL_EVENTS, 0),
        (CATCHUP_TAIL_EVENTS + 1, 1),
        (1_000_000, 1_000_000 - CATCHUP_TAIL_EVENTS),
    ],
)
def test_a_first_catch_up_asks_for_the_newest_events_only(last, start):
    assert tail_start(last) == start
