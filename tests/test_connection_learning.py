"""The pure decisions of the connection's fallbacks (docs/protocol.md §11): which form
of a request to send (dialect.py) and how long silence is tolerated (staleness.py).
Table-driven; the end-to-end behaviour against the dev gateway's reference profile is in
test_reference_gateway.py."""

from __future__ import annotations

import json

import pytest

from dim_actors.connection import staleness
from dim_actors.connection.dialect import Dialect
from dim_actors.wire.protocol import build_client_message


def frame(type_: str, **args) -> bytes:
    return build_client_message(type_, args)


@pytest.mark.parametrize(
    ("type_", "args", "code", "expected"),
    [
        (
            "steer",
            {"sessionId": "s", "content": "tabs"},
            "INVALID_MESSAGE",
            {"type": "steer", "sessionId": "s", "text": "tabs"},
        ),
        (
            "answer_question",
            {"sessionId": "s", "requestId": "r", "answers": ["a", "b"]},
            "INVALID_MESSAGE",
            {
                "type": "answer_question",
                "sessionId": "s",
                "requestId": "r",
                "answer": "a, b",
            },
        ),
        (
            "answer_question",
            {"sessionId": "s", "requestId": "r", "approved": False},
            "INVALID_MESSAGE",
            {
                "type": "answer_question",
                "sessionId": "s",
                "requestId": "r",
                "approved": False,
            },
        ),
        (
            "answer_question",
            {"sessionId": "s", "requestId": "r", "dismissed": True},
            "INVALID_MESSAGE",
            None,
        ),
        (
            "run_turn",
            {"sessionId": "s", "text": "hi", "clientTurnId": "c"},
            "INVALID_MESSAGE",
            {"type": "run_turn", "sessionId": "s", "text": "hi"},
        ),
        (
            "run_turn",
            {"sessionId": "s", "text": "hi"},
            "INVALID_MESSAGE",
            None,
        ),  # nothing else to try
        (
            "steer",
            {"sessionId": "s", "content": "tabs"},
            "NoActiveTurn",
            None,
        ),  # an answer, not a form refusal
        ("steer", {"sessionId": "s", "content": "tabs"}, "RATE_LIMITED", None),
        ("list_sessions", {}, "INVALID_MESSAGE", None),  # one form only
    ],
)
def test_the_next_form_after_a_refusal(type_, args, code, expected):
    got = Dialect().refused(type_, frame(type_, **args), 0, code)
    assert (json.loads(got[1]) if got else None) == expected
    if got:
        assert got[0] == 1


def test_a_form_that_worked_is_used_first_from_then_on_and_forgotten_for_another_gateway():
    d = Dialect()
    ours = frame("steer", sessionId="s", content="x")
    assert d.first("steer", ours) == (0, ours)
    d.answered("steer", 1)
    form, sent = d.first("steer", ours)
    assert form == 1 and json.loads(sent) == {
        "type": "steer",
        "sessionId": "s",
        "text": "x",
    }
    assert d.describe() == {"steer": "text"}
    # A request the learned form cannot say goes in ours.
    d.answered("answer_question", 1)
    dismiss = frame("answer_question", sessionId="s", requestId="r", dismissed=True)
    assert d.first("answer_question", dismiss) == (0, dismiss)
    d.reset()
    assert d.first("steer", ours) == (0, ours)


def test_the_last_form_refused_ends_the_tries():
    d = Dialect()
    assert (
        d.refused(
            "steer", frame("steer", sessionId="s", content="x"), 1, "INVALID_MESSAGE"
        )
        is None
    )


@pytest.mark.parametrize(
    ("advertised", "ping_s", "override_s", "stale_s", "ping_every_s", "heartbeat_ms"),
    [
        (30000, 30.0, 0.0, 45.0, 15.0, 30000),  # the docs' default heartbeat
        (4000, 30.0, 0.0, 10.0, 10 / 3, 4000),  # the floor
        (20000, 5.0, 0.0, 30.0, 5.0, 20000),  # a shorter ping setting wins
        (10**9, 30.0, 0.0, 180.0, 30.0, 10**9),  # the ceiling
        (30000, 30.0, 50.0, 50.0, 50 / 3, 30000),  # the setting overrides
        (None, 30.0, 0.0, 45.0, 15.0, 30000),  # unusable: the default
    ],
)
def test_the_silence_window_comes_from_the_heartbeat(
    advertised, ping_s, override_s, stale_s, ping_every_s, heartbeat_ms
):
    ka = staleness.keepalive(advertised, ping_s, override_s)
    assert ka.stale_after_s == pytest.approx(
        stale_s
    ) and ka.ping_every_s == pytest.approx(ping_every_s)
    assert ka.heartbeat_ms == heartbeat_ms


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (30000, 30000),
        (2500.0, 2500),
        (0, None),
        (-5, None),
        (True, None),
        ("30000", None),
        (None, None),
        (float("inf"), None),
        (float("nan"), None),
    ],
)
def test_a_usable_heartbeat_interval(value, expected):
    assert staleness.heartbeat_ms_of(value) == expected
