"""The router's stores fed real frames from a real dev gateway, one by one, in order.

End to end, a turn whose end falls outside the catch-up range is hard to arrange; here the frames a
reconnect would lose are simply not applied, and what the stores make of the rest is checked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import msgspec
import pytest

from dim_actors.devgateway import BackgroundGateway
from dim_actors.messages import GatewayEvent
from dim_actors.router.stores import WINDOW_TURNS, BadEvent, Stores

sys.path.insert(0, str(Path(__file__).parent))
from gateway_helpers import Client


def frame(ev: dict) -> GatewayEvent:
    """A frame as the connection process hands it over (the envelope read from the bytes)."""
    raw = json.dumps(ev, separators=(",", ":")).encode()
    return GatewayEvent(
        raw=raw, type=ev["type"], sessionId=ev.get("sessionId"), seq=ev.get("seq")
    )


@pytest.fixture(scope="module")
def gw():
    with BackgroundGateway(rate_limit=100_000) as g:
        yield g


def turn_status(stores: Stores, sid: str, turn_id: str) -> str:
    return next(t for t in stores.chats[sid].turns if t.turnId == turn_id).status


def test_a_snapshot_without_the_running_turn_ends_it_until_its_real_end_arrives(gw):
    stores = Stores()
    with Client(gw.url) as a, Client(gw.url) as b:
        sid = a.new_session("coding-agent")
        turn_id = a.ok("run_turn", sessionId=sid, text="/sleep 60000")["turnId"]
        a.ok("ping")  # everything of the turn so far has reached this client
        for ev in a.seen:
            stores.apply(frame(ev))
        assert turn_status(stores, sid, turn_id) == "running"

        # The turn is stopped while "we" are away: none of its end reaches the stores.
        stopped = b.ok("stop_turn", sessionId=sid)
        snap = b.ok("join_session", sessionId=sid)
        assert "activeTurnId" not in snap and snap["lastSeq"] > stopped["seq"]
        stores.apply(frame(snap))
        assert turn_status(stores, sid, turn_id) == "ended"  # not "running" any more
        assert stores.snapshot()["chats"][sid]["turns"][-1]["status"] == "ended"

        # The catch-up then brings the real end.
        for ev in b.ok("get_events", sessionId=sid, afterSeq=stores.chats[sid].lastSeq)[
            "events"
        ]:
            stores.apply(frame(ev))
        assert turn_status(stores, sid, turn_id) == "stopped"


def test_a_snapshot_naming_another_turn_ends_the_stale_one_and_keeps_its_own(gw):
    stores = Stores()
    with Client(gw.url) as a, Client(gw.url) as b:
        sid = a.new_session("coding-agent")
        first = a.ok("run_turn", sessionId=sid, text="/sleep 60000")["turnId"]
        a.ok("ping")
        for ev in a.seen:
            stores.apply(frame(ev))
        b.ok("stop_turn", sessionId=sid)
        second = b.ok("run_turn", sessionId=sid, text="/sleep 60000")["turnId"]
        snap = b.ok("join_session", sessionId=sid)
        assert snap["activeTurnId"] == second
        stores.apply(frame(snap))
        assert turn_status(stores, sid, first) == "ended"

        # Once the second turn's start is applied, a snapshot naming it leaves it running.
        for ev in b.ok("get_events", sessionId=sid, afterSeq=stores.chats[sid].lastSeq)[
            "events"
        ]:
            stores.apply(frame(ev))
        assert (turn_status(stores, sid, first), turn_status(stores, sid, second)) == (
            "stopped",
            "running",
        )
        stores.apply(frame(b.ok("join_session", sessionId=sid)))
        assert turn_status(stores, sid, second) == "running"
        b.ok("stop_turn", sessionId=sid)


def test_unknown_events_without_a_seq_are_kept_and_bad_ones_go_to_invalid(gw):
    stores = Stores()
    with Client(gw.url) as a:
        sid = a.new_session("coding-agent")
        events = a.run(
            sid,
            '/emit-unsequenced presence.changed {"who": ["ann"]}\n'
            '/emit-session session_renamed {"name": 5}\n'
            '/emit-session future.notice {"n": 1}',
        )
        loose = next(e for e in a.seen if e["type"] == "presence.changed")
        bad = next(e for e in events if e["type"] == "session_renamed")
        for ev in a.seen:
            try:
                stores.apply(frame(ev))
            except BadEvent:
                assert ev is bad
        chat = stores.snapshot()["chats"][sid]
        others = [json.loads(bytes(r)) for r in chat["other"]]
        assert loose in others and [
            o["type"] for o in others if o["type"] == "future.notice"
        ] == ["future.notice"]
        assert [
            (json.loads(bytes(i["event"])), "name" in i["reason"])
            for i in chat["invalid"]
        ] == [(bad, True)]
        assert stores.bad_input == 1


# --- textAt: where each of a turn's items came among its streamed text, for the page to lay
# its cards out among the text after a reload as it did live (docs/ui.md, "The turn view").

SID_T = "s-text-at"


def turn_ev(type_: str, seq: int, **fields) -> GatewayEvent:
    return frame(
        {"type": type_, "sessionId": SID_T, "seq": seq, "turnId": "t1", **fields}
    )


def text(seq: int, s: str) -> GatewayEvent:
    return turn_ev("text_delta", seq, text=s)


def tool(seq: int) -> GatewayEvent:
    return turn_ev("tool_call_start", seq, toolCallId=f"c{seq}", toolName="read")


# Each case: the events after turn_started, then textAt of turn_started, of each item, and of
# turn_complete.
TEXT_AT_CASES = [
    pytest.param([], [0, 0], id="start-only"),
    pytest.param([tool(2)], [0, 0, 0], id="card-before-any-text"),
    pytest.param(
        [text(2, "Before I change anything, a question."), tool(3), text(4, "\nDone.")],
        [0, 37, 43],
        id="text-card-text",
    ),
    pytest.param(
        [text(2, "ab"), tool(3), tool(4), text(5, "c")],
        [0, 2, 2, 3],
        id="cards-at-one-offset",
    ),
    # The page counts as JavaScript does: UTF-16 code units (an emoji outside the BMP is two).
    pytest.param(
        [text(2, "é😀"), tool(3), text(4, "日本")], [0, 3, 5], id="utf16-lengths"
    ),
    pytest.param(
        [text(2, "x"), turn_ev("text_delta", 2, text="dup"), tool(3)],
        [0, 1, 1],
        id="a-duplicate-delta-counts-nothing",
    ),
]


@pytest.mark.parametrize("after, text_at", TEXT_AT_CASES)
def test_each_item_records_how_much_text_had_streamed(after, text_at):
    stores = Stores()
    stores.apply(frame({"type": "session_created", "session": {"id": SID_T}}))
    for ev in [turn_ev("turn_started", 1, text="hi"), *after]:
        stores.apply(ev)
    stores.apply(turn_ev("turn_complete", 99, finalText=""))
    snap = json.loads(msgspec.json.encode(stores.snapshot()))
    turn = snap["chats"][SID_T]["turns"][0]
    assert turn["textAt"] == text_at
    assert len(turn["textAt"]) == len(turn["items"])


def stores_with_turns(n: int) -> Stores:
    stores = Stores()
    stores.apply(frame({"type": "session_created", "session": {"id": SID_T}}))
    seq = 0
    for i in range(n):
        for type_, fields in (
            ("turn_started", {"text": f"q{i}"}),
            ("turn_complete", {"finalText": f"a{i}"}),
        ):
            seq += 1
            stores.apply(
                frame(
                    {
                        "type": type_,
                        "sessionId": SID_T,
                        "seq": seq,
                        "turnId": f"t{i}",
                        **fields,
                    }
                )
            )
    return stores


@pytest.mark.parametrize(
    "held, shown, older",
    [(0, [], 0), (3, ["t0", "t1", "t2"], 0), (100, None, 0), (250, None, 150)],
)
def test_get_state_carries_the_newest_turns_and_counts_the_rest(held, shown, older):
    snap = json.loads(msgspec.json.encode(stores_with_turns(held).snapshot()))
    chat = snap["chats"][SID_T] if held else {"turns": [], "olderTurns": 0}
    ids = [t["turnId"] for t in chat["turns"]]
    expected = (
        shown
        if shown is not None
        else [f"t{i}" for i in range(held - min(held, 100), held)]
    )
    assert ids == expected
    assert chat["olderTurns"] == older


@pytest.mark.parametrize(
    "before, limit, first, ids, older",
    [
        ("t150", 100, None, [f"t{i}" for i in range(50, 150)], 50),
        ("t50", 100, None, [f"t{i}" for i in range(50)], 0),
        ("t3", 2, None, ["t1", "t2"], 1),
        ("t0", 100, None, [], 0),
        # from a turn on (a search result far back), still within the limit
        ("t150", 10_000, "t7", [f"t{i}" for i in range(7, 150)], 7),
        ("t150", 100, "t7", [f"t{i}" for i in range(50, 150)], 50),
        ("t150", 100, "t149", ["t149"], 149),
        # a `from` at or after `before` gives nothing; an unknown one is left out
        ("t10", 3, "t200", [], 10),
        ("t10", 3, "nope", ["t7", "t8", "t9"], 7),
    ],
)
def test_older_turns_come_before_the_one_named_oldest_first(
    before, limit, first, ids, older
):
    chat = stores_with_turns(250).chats[SID_T]
    got = json.loads(msgspec.json.encode(chat.older(before, limit, first)))
    assert [t["turnId"] for t in got["turns"]] == ids
    assert got["olderTurns"] == older
    assert got["sessionId"] == SID_T


def test_older_turns_of_an_unknown_turn_are_none():
    assert stores_with_turns(3).chats[SID_T].older("nope", 10) is None


def test_a_chat_keeps_a_window_of_its_newest_turns_and_leaves_the_rest_to_the_gateway():
    n = WINDOW_TURNS + 150
    chat = stores_with_turns(n).chats[SID_T]
    ids = [t.turnId for t in chat.turns]
    assert WINDOW_TURNS - 100 <= len(ids) <= WINDOW_TURNS
    first = n - len(ids)
    assert ids == [f"t{i}" for i in range(first, n)]
    # turn i is seqs 2i+1 and 2i+2: the gateway holds everything up to the first kept
    assert chat.before == 2 * first
    assert set(chat.by_id) == set(ids)
    assert chat.snapshot()["olderAtGateway"] == chat.before


def test_an_open_turn_is_never_trimmed_nor_anything_after_it():
    stores = stores_with_turns(0)
    stores.apply(
        frame(
            {
                "type": "turn_started",
                "sessionId": SID_T,
                "seq": 1,
                "turnId": "open",
                "text": "still running",
            }
        )
    )
    seq = 1
    for i in range(WINDOW_TURNS + 10):
        for type_ in ("turn_started", "turn_complete"):
            seq += 1
            stores.apply(
                frame(
                    {"type": type_, "sessionId": SID_T, "seq": seq, "turnId": f"t{i}"}
                )
            )
    chat = stores.chats[SID_T]
    assert len(chat.turns) == WINDOW_TURNS + 11
    assert chat.turns[0].turnId == "open" and chat.before == 0


def ev(type_: str, seq: int, turn: str | None = None, **fields) -> GatewayEvent:
    body = {"type": type_, "sessionId": SID_T, "seq": seq, **fields}
    if turn is not None:
        body["turnId"] = turn
    return frame(body)


# A first join's window: the snapshot (lastSeq 20, turn "run" running), then the newest
# events. Each case: the events, the turns held after, and `before`.
WINDOW_CASES = [
    pytest.param(
        [
            ev("text_delta", 11, "a", text="x"),
            ev("turn_complete", 12, "a"),
            ev("turn_started", 13, "b", text="q"),
            ev("turn_complete", 14, "b"),
        ],
        ["b"],
        12,
        id="a-turn-begun-before-the-window-stays-at-the-gateway",
    ),
    pytest.param(
        [
            ev("turn_started", 11, "a", text="q"),
            ev("text_delta", 12, "a", text="x"),
        ],
        ["a"],
        10,
        id="a-window-that-starts-at-a-turn-keeps-it",
    ),
    pytest.param(
        [ev("text_delta", 11, "run", text="x"), ev("text_delta", 12, "run", text="y")],
        ["run"],
        10,
        id="the-running-turn-is-kept-without-its-start",
    ),
    pytest.param(
        [ev("session_state", 11, status="ready"), ev("turn_started", 12, "b")],
        ["b"],
        10,
        id="a-session-event-stays-in-the-window",
    ),
    pytest.param(
        [ev("turn_started", 11, "b"), ev("text_delta", 21, "late", text="x")],
        ["b", "late"],
        10,
        id="past-the-snapshot-every-event-is-kept",
    ),
]


@pytest.mark.parametrize("events, held, before", WINDOW_CASES)
def test_a_first_joins_window_starts_at_a_turn(events, held, before):
    stores = stores_with_turns(0)
    stores.apply(
        frame(
            {
                "type": "state_snapshot",
                "sessionId": SID_T,
                "session": {"id": SID_T, "status": "running"},
                "lastSeq": 20,
                "activeTurnId": "run",
            }
        )
    )
    for e in events:
        stores.apply(e)
    chat = stores.chats[SID_T]
    assert [t.turnId for t in chat.turns] == held
    assert chat.before == before
    assert chat.lastSeq == events[-1].seq
