"""A long session the app never saw: its first join brings the newest events only (the
stores' window), and every older turn comes from the gateway through get_turns, whole and
in order, without the stores keeping it (docs/protocol.md §11, "A long past";
docs/contracts.md, `get_turns`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from apphelpers import App, InvokeError, wait_until

from dim_actors.connection.process.catchup import CATCHUP_TAIL_EVENTS
from dim_actors.devgateway.runner import BackgroundGateway
from dim_actors.devgateway.seed import seed_history

TURNS = 300
EVENTS = 30_000  # 100 per turn: a window of 10,000 events holds about 100 turns


@pytest.fixture(scope="module")
def long_session(tmp_path_factory):
    data = tmp_path_factory.mktemp("gateway")
    sid = seed_history(data, TURNS, EVENTS)
    with BackgroundGateway(rate_limit=100_000, data_dir=data) as g:
        yield g, sid


@pytest.fixture
def joined(long_session, dim_home: Path):
    g, sid = long_session
    app = App(dim_home, ["--gateway", g.url])
    try:
        app.wait_connected()
        last = app.invoke("join_session", sessionId=sid)["lastSeq"]
        wait_until(
            lambda: (
                app.invoke("get_state")["chats"].get(sid, {}).get("lastSeq") == last
            ),
            what="the session caught up to its last event",
        )
        yield app, sid, last
    finally:
        app.stop()


def _question(n: int) -> str:
    return f"Question {n}: what about part {n}?"


def test_a_first_join_holds_the_newest_events_each_turn_whole(joined):
    app, sid, last = joined
    chat = app.invoke("get_state")["chats"][sid]
    held = chat["olderTurns"] + len(chat["turns"])
    # The window: the newest 10,000 events, from the first turn begun in them.
    assert last - CATCHUP_TAIL_EVENTS < chat["olderAtGateway"]
    assert chat["olderAtGateway"] <= last - CATCHUP_TAIL_EVENTS + 102
    assert held < TURNS
    # every turn held is whole: its question, and its answer complete
    first_held = TURNS - held + 1
    newest = chat["turns"]
    assert newest[-1]["userText"] == _question(TURNS)
    older = (
        app.invoke(
            "get_turns",
            sessionId=sid,
            beforeTurnId=newest[0]["turnId"],
            limit=chat["olderTurns"],
        )["turns"]
        if chat["olderTurns"]
        else []
    )
    turns = older + newest
    assert [t["userText"] for t in turns] == [
        _question(n) for n in range(first_held, TURNS + 1)
    ]
    assert {t["status"] for t in turns} == {"complete"}
    assert turns[0]["firstSeq"] == chat["olderAtGateway"] + 1


def test_older_turns_come_from_the_gateway_back_to_the_first(joined):
    app, sid, _ = joined
    chat = app.invoke("get_state")["chats"][sid]
    before = chat["olderAtGateway"]
    fetched: list[dict] = []
    # the oldest turn held: past it, the gateway's
    at = chat["turns"][0]
    pages = 0
    while True:
        page = app.invoke(
            "get_turns",
            sessionId=sid,
            beforeTurnId=at["turnId"],
            beforeSeq=at["firstSeq"],
        )
        pages += 1
        assert page["olderTurns"] == 0
        fetched[:0] = page["turns"]
        if not page["olderAtGateway"]:
            break
        assert page["olderAtGateway"] == page["turns"][0]["firstSeq"] - 1
        at = page["turns"][0]
    assert pages > 1
    n = len(fetched)
    assert [t["userText"] for t in fetched] == [_question(i) for i in range(1, n + 1)]
    assert fetched[-1]["lastSeq"] == before
    assert {t["status"] for t in fetched} == {"complete"}
    # each answer whole: every delta of it, as its turn_complete says it ended
    assert all(t["text"] == t["finalText"] for t in fetched)
    assert all(f"of answer {i}:" in t["text"] for i, t in enumerate(fetched, 1))
    # Given, not kept: the stores' window is what it was.
    again = app.invoke("get_state")["chats"][sid]
    assert again["olderAtGateway"] == before
    assert again["olderTurns"] + len(again["turns"]) == TURNS - n


def test_a_turn_the_app_neither_holds_nor_was_given_is_not_found(joined):
    app, sid, _ = joined
    with pytest.raises(InvokeError) as e:
        app.invoke("get_turns", sessionId=sid, beforeTurnId="turn_nobody_has")
    assert e.value.body["error"]["code"] == "NOT_FOUND"


def test_a_search_says_the_turns_at_the_gateway_were_not_searched(joined):
    app, sid, _ = joined
    # the newest question is held; the first is the gateway's alone
    newest = app.invoke("search_sessions", query=_question(TURNS))
    assert [r["turnId"] for r in newest["results"]] == [f"turn_seed_{TURNS - 1:07d}"]
    assert newest["notSearched"] == 1
    first = app.invoke("search_sessions", query=_question(1))
    assert first["results"] == [] and first["notSearched"] == 1
