"""Which request a frame answers, and which have waited too long
(dim_actors/connection/process/correlation.py); answers() itself: test_connection_answers.py."""

from __future__ import annotations

import pytest
from test_connection_answers import a_pending

from dim_actors.connection.process.correlation import expired, first_answered


def pendings():
    # (name, pending): sent in the order given by `order` (0: still queued)
    return {
        "join-s1": a_pending("join_session", {"session_joined"}, 3),
        "turn-s1": a_pending("run_turn", {"turn_started"}, 1, "s1", "ct1"),
        "turn-s1-b": a_pending("run_turn", {"turn_started"}, 4, "s1", "ct2"),
        "turn-s2": a_pending("run_turn", {"turn_started"}, 2, "s2", "ct3"),
        "queued": a_pending("list_sessions", {"session_list"}, 0, None),
        "list": a_pending("list_sessions", {"session_list"}, 5, None),
    }


@pytest.mark.parametrize(
    "type_, sid, ctid, expected",
    [
        ("error", None, None, "turn-s1"),  # an error answers the oldest request sent
        ("turn_started", "s1", "ct1", "turn-s1"),
        ("turn_started", "s1", "ct2", "turn-s1-b"),  # our second turn, by its id
        ("turn_started", "s1", None, "turn-s1"),  # no echo: the oldest of the session
        ("turn_started", "s1", "other", None),  # another client's turn
        ("turn_started", "s2", "ct3", "turn-s2"),
        ("turn_started", "s3", None, None),
        ("session_joined", "s1", None, "join-s1"),
        ("session_list", None, None, "list"),  # the queued one cannot be answered yet
        ("text_delta", "s1", None, None),  # a broadcast: nobody's answer
    ],
)
def test_a_frame_answers_the_first_sent_request_it_can_answer(
    type_, sid, ctid, expected
):
    table = pendings()
    by_id = {id(p): name for name, p in table.items()}
    got = first_answered(table.values(), type_, sid, ctid)
    assert (by_id[id(got)] if got is not None else None) == expected


@pytest.mark.parametrize(
    "order, sent_at, now, timeout_s, late",
    [
        (1, 100.0, 129.0, 30.0, False),
        (1, 100.0, 130.5, 30.0, True),
        (
            0,
            0.0,
            1000.0,
            30.0,
            False,
        ),  # never sent: held by the rate limit, not waiting
        (7, 100.0, 100.0, 0.0, False),
    ],
)
def test_a_request_expires_a_timeout_after_it_went_out(
    order, sent_at, now, timeout_s, late
):
    p = a_pending("get_history", {"history"}, order)
    p.slot.at = sent_at
    assert (expired([p], now, timeout_s) == [p]) == late
