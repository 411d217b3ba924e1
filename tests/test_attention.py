"""Which sessions need the user (dim_actors/router/attention.py): a row per rule, each a
sequence of steps and the summary they leave; how a stores verdict becomes an outcome;
and mark_seen's arguments."""

from __future__ import annotations

import pytest

from dim_actors.router import commands
from dim_actors.router.attention import (
    STALE_AFTER_MS,
    Attention,
    AttentionSummary,
    Outcome,
    event_ts,
    outcome_of,
)

NOW = 1_800_000_000_000


def opened(sid: str, seq: int | None, turn: str = "t1") -> Outcome:
    return Outcome(sessionId=sid, seq=seq, opened=(turn,))


def closed(sid: str, seq: int | None, turn: str = "t1") -> Outcome:
    return Outcome(sessionId=sid, seq=seq, closed=(turn,))


def finished(sid: str, seq: int | None, turn: str = "t1") -> Outcome:
    return Outcome(sessionId=sid, seq=seq, closed=(turn,), finished=True)


# (rule, steps, the sessions left needing the user). A step is an Outcome, or
# ("look", sid | None), ("away", sid), ("seen", sid), ("forget", sid).
RULES = [
    ("a turn that ends unseen counts", [finished("a", 3)], {"a": "finished"}),
    ("an open question counts", [opened("a", 2)], {"a": "waiting"}),
    ("an answered question clears itself", [opened("a", 2), closed("a", 3)], {}),
    (
        "answered, after its turn had also ended: the end still counts",
        [opened("a", 2), finished("a", 3, "t0"), closed("a", 4)],
        {"a": "finished"},
    ),
    (
        "waiting is told over finished",
        [finished("a", 2, "t0"), opened("a", 3)],
        {"a": "waiting"},
    ),
    (
        "two questions: waiting until both are answered",
        [opened("a", 2, "t1"), opened("a", 3, "t2"), closed("a", 4, "t1")],
        {"a": "waiting"},
    ),
    ("looking at a session clears it", [finished("a", 3), ("look", "a")], {}),
    ("an open question seen is cleared too", [opened("a", 2), ("look", "a")], {}),
    (
        "what ends while the user looks never counts",
        [("look", "a"), finished("a", 3), opened("a", 4, "t2")],
        {},
    ),
    (
        "the session looked at alone is spared",
        [("look", "a"), finished("a", 3), finished("b", 3)],
        {"b": "finished"},
    ),
    (
        "looking away: ends count again",
        [("look", "a"), ("away", "a"), finished("a", 3)],
        {"a": "finished"},
    ),
    (
        "looking elsewhere: ends count again",
        [("look", "a"), ("look", "b"), finished("a", 3)],
        {"a": "finished"},
    ),
    (
        "a page looking away from a session another page now shows changes nothing",
        [("look", "a"), ("look", "b"), ("away", "a"), finished("b", 3)],
        {},
    ),
    ("seen (without looking) clears", [finished("a", 3), ("seen", "a")], {}),
    (
        "a replay (seq at or below the last) is ignored",
        [finished("a", 3), ("seen", "a"), finished("a", 3), opened("a", 2)],
        {},
    ),
    (
        "a newer seq after a replay counts",
        [finished("a", 3), ("seen", "a"), finished("a", 3), finished("a", 5, "t2")],
        {"a": "finished"},
    ),
    (
        "an outcome without seq (a snapshot's ended turns) closes waiting",
        [opened("a", 2), closed("a", None)],
        {},
    ),
    ("a deleted session is dropped", [opened("a", 2), ("forget", "a")], {}),
    (
        "a deleted session looked at is looked at no more",
        [("look", "a"), ("forget", "a"), finished("a", 1)],
        {"a": "finished"},
    ),
    (
        "several sessions",
        [finished("a", 3), opened("b", 2), finished("c", 9), ("look", "c")],
        {"a": "finished", "b": "waiting"},
    ),
]


def run(att: Attention, step: object) -> bool:
    match step:
        case Outcome():
            return att.apply(step)
        case ("look", sid):
            return att.looking(sid)
        case ("away", sid):
            return att.looked_away(sid)
        case ("seen", sid):
            return att.seen(sid)
        case ("forget", sid):
            return att.forget(sid)
    raise AssertionError(f"unknown step {step!r}")


@pytest.mark.parametrize(
    ("steps", "left"), [r[1:] for r in RULES], ids=[r[0] for r in RULES]
)
def test_rule(steps: list, left: dict[str, str]):
    att = Attention()
    for step in steps:
        run(att, step)
    assert att.summary == AttentionSummary(count=len(left), sessions=left)


def test_changed_is_said_only_when_the_summary_changes():
    att = Attention()
    assert att.apply(finished("a", 1)) is True
    assert att.apply(finished("a", 2, "t2")) is False  # still "finished"
    assert att.apply(opened("a", 3)) is True  # now "waiting"
    assert att.apply(Outcome(sessionId="a", seq=4)) is False
    assert att.looking("b") is False
    assert att.looking("a") is True
    assert att.looked_away("a") is False
    assert att.looking(None) is False


# (case, event type, ts, verdict turns, expected opened, closed, finished)
OUTCOMES = [
    ("turn_complete", "turn_complete", NOW, [("t1", "complete")], (), ("t1",), True),
    ("turn_error", "turn_error", NOW, [("t1", "error")], (), ("t1",), True),
    ("stopped", "turn_complete", NOW, [("t1", "stopped")], (), ("t1",), True),
    ("no ts: counts", "turn_complete", None, [("t1", "complete")], (), ("t1",), True),
    (
        "older than 10 minutes: history, not news",
        "turn_complete",
        NOW - STALE_AFTER_MS - 1,
        [("t1", "complete")],
        (),
        ("t1",),
        False,
    ),
    (
        "just within 10 minutes",
        "turn_complete",
        NOW - STALE_AFTER_MS,
        [("t1", "complete")],
        (),
        ("t1",),
        True,
    ),
    ("a question", "question_requested", NOW, [("t1", "waiting")], ("t1",), (), False),
    ("answered", "approval_resolved", NOW, [("t1", "running")], (), ("t1",), False),
    (
        "a snapshot's ended turns close, never finish",
        "state_snapshot",
        NOW,
        [("t1", "ended"), ("t2", "ended")],
        (),
        ("t1", "t2"),
        False,
    ),
    (
        "history that settles a turn is not news",
        "history",
        NOW,
        [("t1", "complete")],
        (),
        ("t1",),
        False,
    ),
    ("a turn starting", "turn_started", NOW, [("t1", "running")], (), ("t1",), False),
]


@pytest.mark.parametrize(
    ("etype", "ts", "turns", "want_opened", "want_closed", "want_finished"),
    [r[1:] for r in OUTCOMES],
    ids=[r[0] for r in OUTCOMES],
)
def test_outcome_of_a_verdict(
    etype, ts, turns, want_opened, want_closed, want_finished
):
    verdict = [{"turnId": t, "status": s} for t, s in turns]
    got = outcome_of(etype, "s1", 7, ts, NOW, verdict)
    assert got == Outcome(
        sessionId="s1",
        seq=7,
        opened=want_opened,
        closed=want_closed,
        finished=want_finished,
    )


@pytest.mark.parametrize(
    ("raw", "ts"),
    [
        (b'{"type":"turn_complete","ts":1700000000000}', 1700000000000),
        (b'{"type":"turn_complete"}', None),
        (b'{"type":"turn_complete","ts":"soon"}', None),
        (b'{"type":"turn_complete","ts":true}', None),
        (b"not json", None),
    ],
)
def test_event_ts(raw: bytes, ts: int | None):
    assert event_ts(raw) == ts


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ({"sessionId": "s1", "looking": True}, None),
        ({"sessionId": "s1", "looking": False}, None),
        ({"looking": True}, "mark_seen: Object missing required field `sessionId`"),
        ({"sessionId": "s1"}, "mark_seen: Object missing required field `looking`"),
        ({"sessionId": "", "looking": True}, "mark_seen: sessionId: Expected `str`"),
        (
            {"sessionId": "s1", "looking": "yes"},
            "mark_seen: looking: Expected `bool`, got `str`",
        ),
        (
            {"sessionId": "s1", "looking": 1},
            "mark_seen: looking: Expected `bool`, got `int`",
        ),
        (
            {"sessionId": "s1", "looking": True, "seen": 1},
            "mark_seen: Object contains unknown field `seen`",
        ),
    ],
)
def test_mark_seen_arguments(args: dict, problem: str | None):
    got = commands.validate("mark_seen", args)
    if problem is None:
        assert isinstance(got, commands.MarkSeen)
        assert (got.sessionId, got.looking) == (args["sessionId"], args["looking"])
    else:
        assert isinstance(got, str) and got.startswith(problem), got
