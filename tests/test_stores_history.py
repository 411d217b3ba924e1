"""The router's stores and a `history` answer (get_history): the rule that fills what a
gateway without `get_events` could not give back (docs/protocol.md §11). A turn held as
open or `ended` that history says finished takes its end from history; a turn the chat
lacks is added, its text only (`fromHistory`); a finished turn held is left as it is.
Each case ends in what a page loaded afterwards gets (get_state, through the same JSON
encoding)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from dim_actors.messages import GatewayEvent
from dim_actors.router.stores import BadEvent, Stores, apply_history

SID = "s-1"


def event(
    type_: str, seq: int | None = None, sid: str | None = SID, **fields: Any
) -> GatewayEvent:
    """A frame as the connection process hands it over (the envelope read from the
    bytes)."""
    ev = {
        "type": type_,
        **({"sessionId": sid} if sid else {}),
        **({"seq": seq} if seq is not None else {}),
        **fields,
    }
    return GatewayEvent(raw=json.dumps(ev).encode(), type=type_, sessionId=sid, seq=seq)


def started(turn_id: str, seq: int, text: str = "hi") -> GatewayEvent:
    return event("turn_started", seq, turnId=turn_id, text=text)


def delta(turn_id: str, seq: int, text: str) -> GatewayEvent:
    return event("text_delta", seq, turnId=turn_id, text=text)


def complete(turn_id: str, seq: int, final: str) -> GatewayEvent:
    return event("turn_complete", seq, turnId=turn_id, finalText=final)


def snapshot(last_seq: int, active: str | None = None) -> GatewayEvent:
    """A state_snapshot (a rejoin): a held open turn it does not name becomes `ended`."""
    return event(
        "state_snapshot",
        sessionId=SID,
        session={"id": SID, "status": "ready"},
        lastSeq=last_seq,
        pendingRequests=[],
        **({"activeTurnId": active} if active else {}),
    )


def h(
    turn_id: str,
    status: str,
    started_seq: int,
    text: str = "hi",
    final: str | None = None,
    ended: int | None = None,
    error: dict | None = None,
) -> dict[str, Any]:
    """A HistoryTurn as the gateway sends it."""
    entry: dict[str, Any] = {
        "turnId": turn_id,
        "text": text,
        "status": status,
        "startedSeq": started_seq,
        "startedAt": 1_700_000_000_000,
    }
    if final is not None:
        entry["finalText"] = final
    if ended is not None:
        entry.update(endedSeq=ended, endedAt=1_700_000_000_500)
    if error is not None:
        entry["error"] = error
    return entry


def history(*turns: Any) -> GatewayEvent:
    """The answer to get_history: no seq, like every answer."""
    return event("history", turns=list(turns))


def run(*steps: GatewayEvent) -> Stores:
    stores = Stores()
    for step in steps:
        stores.apply(step)
    return stores


def reloaded(stores: Stores) -> dict[str, Any]:
    """What a page loaded now gets from get_state (encoded as the bridge encodes it)."""
    return json.loads(msgspec.json.encode(stores.snapshot()))


def turns_of(stores: Stores) -> list[tuple]:
    """(turnId, status, userText, text, finalText, error, fromHistory) of each turn, in
    the chat's order."""
    return [
        (
            t["turnId"],
            t["status"],
            t["userText"],
            t["text"],
            t["finalText"],
            t["error"],
            t["fromHistory"],
        )
        for t in reloaded(stores)["chats"][SID]["turns"]
    ]


BOOM = {"code": "AgentError", "message": "the agent crashed"}

RULE_CASES = [
    # --- a turn held as open or ended, whose end event was lost: history brings it
    pytest.param(
        [started("t1", 1), delta("t1", 2, "par"), snapshot(9)],
        [h("t1", "complete", 1, final="partial", ended=8)],
        [("t1", "complete", "hi", "par", "partial", None, False)],
        id="ended-takes-complete-and-final-text",
    ),
    pytest.param(
        [started("t1", 1)],
        [h("t1", "complete", 1, final="done", ended=3)],
        [("t1", "complete", "hi", "", "done", None, False)],
        id="running-takes-complete",
    ),
    pytest.param(
        [
            started("t1", 1),
            event("question_requested", 2, turnId="t1", requestId="r", question="?"),
        ],
        [h("t1", "stopped", 1, final="", ended=4)],
        [("t1", "stopped", "hi", "", "", None, False)],
        id="waiting-takes-stopped",
    ),
    pytest.param(
        [started("t1", 1), snapshot(5)],
        [h("t1", "error", 1, ended=3, error=BOOM)],
        [("t1", "error", "hi", "", None, BOOM, False)],
        id="ended-takes-error",
    ),
    # --- a turn held as open that history says still runs: nothing to take
    pytest.param(
        [started("t1", 1), delta("t1", 2, "so far")],
        [h("t1", "running", 1)],
        [("t1", "running", "hi", "so far", None, None, False)],
        id="running-stays-running",
    ),
    pytest.param(
        [started("t1", 1), snapshot(5)],
        [h("t1", "waiting", 1)],
        [("t1", "ended", "hi", "", None, None, False)],
        id="ended-is-not-reopened",
    ),
    # --- a finished turn held: its events say more than history
    pytest.param(
        [started("t1", 1), delta("t1", 2, "streamed"), complete("t1", 3, "streamed")],
        [h("t1", "error", 1, final="other", ended=3, error=BOOM)],
        [("t1", "complete", "hi", "streamed", "streamed", None, False)],
        id="finished-is-left-as-it-is",
    ),
    # --- a turn the chat lacks: added, its text only, in the order the turns ran
    pytest.param(
        [],
        [
            h("t1", "complete", 3, text="first", final="one", ended=5),
            h("t2", "error", 6, text="second", ended=7, error=BOOM),
        ],
        [
            ("t1", "complete", "first", "one", "one", None, True),
            ("t2", "error", "second", "", None, BOOM, True),
        ],
        id="lacking-turns-are-added",
    ),
    pytest.param(
        [started("t3", 20, "third"), complete("t3", 21, "three")],
        [
            h("t1", "complete", 3, text="first", final="one", ended=5),
            h("t2", "complete", 10, text="second", final="two", ended=12),
            h("t3", "complete", 20, text="third", final="three", ended=21),
        ],
        [
            ("t1", "complete", "first", "one", "one", None, True),
            ("t2", "complete", "second", "two", "two", None, True),
            ("t3", "complete", "third", "", "three", None, False),
        ],
        id="added-before-the-turns-that-ran-later",
    ),
    pytest.param(
        [
            started("t1", 1),
            complete("t1", 2, "a"),
            started("t3", 9),
            complete("t3", 10, "c"),
        ],
        [h("t2", "complete", 5, final="b", ended=6)],
        [
            ("t1", "complete", "hi", "", "a", None, False),
            ("t2", "complete", "hi", "b", "b", None, True),
            ("t3", "complete", "hi", "", "c", None, False),
        ],
        id="added-between",
    ),
    pytest.param(
        [],
        [h("t1", "running", 4, text="now")],
        [("t1", "running", "now", "", None, None, True)],
        id="a-running-turn-we-lack-is-added-running",
    ),
    # --- odd entries are skipped, the others applied
    pytest.param(
        [],
        [
            "junk",
            None,
            7,
            [],
            {"turnId": "x"},
            h("", "complete", 1),
            h("t0", "done", 1),
            h("t0", "complete", -1),
            {**h("t0", "complete", 1), "startedSeq": True},
            {**h("t0", "complete", 1), "finalText": 3},
            h("t0", "error", 1, error={"message": "no code"}),
            h("t0", "complete", 5, ended=4),
            h("t1", "complete", 1, final="ok", ended=2),
        ],
        [("t1", "complete", "hi", "ok", "ok", None, True)],
        id="odd-entries-are-skipped",
    ),
]


@pytest.mark.parametrize("steps, entries, expected", RULE_CASES)
def test_the_history_rule(steps, entries, expected):
    stores = run(*steps, history(*entries))
    assert turns_of(stores) == expected


@pytest.mark.parametrize("steps, entries, expected", RULE_CASES)
def test_the_history_rule_applied_twice_changes_nothing_more(steps, entries, expected):
    once = run(*steps, history(*entries))
    twice = run(*steps, history(*entries), history(*entries))
    assert reloaded(twice) == reloaded(once)


def test_what_the_rule_did_is_told():
    stores = run(started("t1", 1), snapshot(4))
    chat = stores.chats[SID]
    out = apply_history(
        chat,
        [
            h("t1", "complete", 1, final="x", ended=3),
            h("t2", "complete", 5, ended=6),
            "junk",
            h("", "complete", 1),
        ],
    )
    assert (out.added, out.settled, out.skipped) == (["t2"], ["t1"], 2)
    again = apply_history(
        chat,
        [h("t1", "complete", 1, final="x", ended=3), h("t2", "complete", 5, ended=6)],
    )
    assert (again.added, again.settled, again.skipped) == ([], [], 0)


def test_odd_entries_are_counted():
    stores = run(history("junk", h("t1", "complete", 1)), history({"turnId": 3}))
    assert stores.history_skipped == 2
    # the answer was readable; only some of its entries were not
    assert stores.bad_events == 0


def test_a_turn_from_history_has_its_seqs_and_no_items():
    stores = run(
        history(h("t1", "complete", 3, final="one", ended=7), h("t2", "running", 9))
    )
    t1, t2 = reloaded(stores)["chats"][SID]["turns"]
    assert (t1["firstSeq"], t1["lastSeq"], t1["items"], t1["deltaCount"]) == (
        3,
        7,
        [],
        0,
    )
    assert (t2["firstSeq"], t2["lastSeq"]) == (
        9,
        9,
    )  # no end yet: it ran last at its start


def test_history_moves_no_seq():
    # History comes without a seq: live events after it are neither refused nor taken as
    # duplicates.
    stores = run(
        started("t1", 1),
        history(h("t1", "running", 1), h("t0", "complete", 0, ended=0)),
    )
    chat = stores.chats[SID]
    assert chat.lastSeq == 1 and stores.duplicates == 0
    assert stores.apply(delta("t1", 2, "more")) is True


def test_live_events_go_on_in_a_running_turn_from_history():
    stores = run(
        history(h("t1", "running", 4, text="now")),
        delta("t1", 5, "a"),
        delta("t1", 6, "b"),
        complete("t1", 7, "ab"),
    )
    assert turns_of(stores) == [("t1", "complete", "now", "ab", "ab", None, True)]


def test_a_turn_from_history_is_settled_by_a_later_snapshot_like_any_open_turn():
    stores = run(history(h("t1", "running", 4)), snapshot(9))
    assert turns_of(stores)[0][1] == "ended"
    stores.apply(history(h("t1", "complete", 4, final="late", ended=8)))
    assert turns_of(stores) == [
        ("t1", "complete", "hi", "", "late", None, True)
    ]  # its text: the final text


def test_a_history_whose_turns_cannot_be_read_is_a_bad_event():
    stores = Stores()
    with pytest.raises(BadEvent):
        stores.apply(event("history", turns="not a list"))
    state = reloaded(stores)["chats"][SID]
    assert state["turns"] == [] and len(state["invalid"]) == 1
    assert stores.bad_events == 1


def test_a_history_without_a_session_changes_no_chat():
    stores = run(event("history", sid=None, turns=[h("t1", "complete", 1)]))
    assert reloaded(stores)["chats"] == {}


def test_other_sessions_are_left_alone():
    stores = run(
        started("t1", 1),
        event("history", sid="s-2", turns=[h("t1", "complete", 1, final="x", ended=2)]),
    )
    assert turns_of(stores) == [("t1", "running", "hi", "", None, None, False)]
    assert [t["turnId"] for t in reloaded(stores)["chats"]["s-2"]["turns"]] == ["t1"]


def test_every_turn_says_whether_it_came_from_history():
    stores = run(
        started("t1", 1),
        complete("t1", 2, "x"),
        history(h("t0", "complete", 0, final="y", ended=0)),
    )
    # (startedSeq 0 is odd for a gateway, but it shows the order: before the turn that
    # started at 1)
    turns = reloaded(stores)["chats"][SID]["turns"]
    assert [(t["turnId"], t["fromHistory"]) for t in turns] == [
        ("t0", True),
        ("t1", False),
    ]
