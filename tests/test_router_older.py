"""router/older.py: which get_events requests a fetch of older turns makes, and the turns it
gives, against a gateway's store played back here (the end-to-end case against the dev gateway:
tests/test_history_window.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dim_actors.router.older import OLDER_PAGE, OlderFetch

SID = "s1"


def session(turns: list[int], start: int = 1, step: int = 1) -> list[dict[str, Any]]:
    """A session's stored events: turn i has `turns[i]` deltas between its start and end;
    seqs from `start`, `step` apart (a gateway whose seqs have holes: step > 1)."""
    out = []
    seq = start
    for i, deltas in enumerate(turns):
        tid = f"t{i}"
        body = [("turn_started", {"text": f"q{i}"})]
        body += [("text_delta", {"text": "x"})] * deltas
        body += [("turn_complete", {"finalText": "x" * deltas})]
        for type_, fields in body:
            out.append(
                {"type": type_, "sessionId": SID, "seq": seq, "turnId": tid, **fields}
            )
            seq += step
    return out


def answer(store: list[dict[str, Any]], req: dict[str, Any]) -> bytes:
    """The gateway's event_list for `req` (afterSeq, limit; at most 10,000)."""
    after, limit = req["afterSeq"], min(req["limit"], 10_000)
    events = [e for e in store if e["seq"] > after]
    return json.dumps(
        {"type": "event_list", "events": events[:limit], "hasMore": len(events) > limit}
    ).encode()


def run(store, before: int, held=frozenset()) -> tuple[dict[str, Any], list[int]]:
    fetch = OlderFetch(SID, before, frozenset(held))
    asked = []
    while True:
        req = fetch.request()
        asked.append(req["afterSeq"])
        if not fetch.on_page(answer(store, req)):
            return fetch.result(), asked


def ids(result) -> list[str]:
    return [t["turnId"] for t in result["turns"]]


CASES = [
    # 100 turns of 98 deltas (100 events each): the 50 whole turns in the last 5,000 before
    # seq 9,000 (turns 40..89); turn 39 began before them and waits for the next fetch
    pytest.param(
        session([98] * 100),
        9000,
        [f"t{i}" for i in range(40, 90)],
        4000,
        [4000],
        id="dense-seqs-one-request",
    ),
    pytest.param(
        session([3] * 10),
        25,
        ["t0", "t1", "t2", "t3", "t4"],
        0,
        [0],
        id="reaching-the-first-event-every-turn-counts",
    ),
    # one turn of 12,000 deltas fills the range: reach further back for its start (here
    # to the first event, and a page at a time up to where the first request began)
    pytest.param(
        session([5, 12_000, 5]),
        12_009,
        ["t0", "t1"],
        0,
        [12_009 - OLDER_PAGE, 0, OLDER_PAGE],
        id="a-long-turn-is-fetched-back-to-its-start",
    ),
    # seqs 10 apart: a page of 5,000 events covers 50,000 seqs; asked after 4,000 it
    # brings more than enough in one request
    pytest.param(
        session([8] * 100, start=10, step=10),
        5000,
        [f"t{i}" for i in range(50)],
        0,
        [0],
        id="seqs-with-holes",
    ),
]


@pytest.mark.parametrize("store, before, turns, older, asked", CASES)
def test_older_turns_are_whole_and_in_order(store, before, turns, older, asked):
    result, requests = run(store, before)
    assert ids(result) == turns
    assert result["olderAtGateway"] == older
    assert requests == asked
    for t in result["turns"]:
        assert t["userText"] == f"q{t['turnId'][1:]}"
        assert t["text"] == t["finalText"] and t["status"] == "complete"
        assert t["lastSeq"] <= before


def test_turns_the_stores_hold_are_left_out():
    result, _ = run(session([3] * 10), 50, held={"t8", "t9"})
    assert ids(result) == [f"t{i}" for i in range(8)]


def test_a_page_that_stops_short_is_followed_by_the_next():
    # the gateway gives 10,000 at most: a fetch whose range holds more asks on after them
    store = session([98] * 200)
    fetch = OlderFetch(SID, 20_000, frozenset())
    req = fetch.request()
    short = json.loads(answer(store, req))
    short["events"], short["hasMore"] = short["events"][:1000], True
    assert fetch.on_page(json.dumps(short).encode())
    assert fetch.request()["afterSeq"] == short["events"][-1]["seq"]
    assert not fetch.on_page(answer(store, fetch.request()))
    assert ids(fetch.result()) == [f"t{i}" for i in range(150, 200)]


def test_an_unreadable_event_is_counted_and_left_out_and_the_rest_is_given():
    store = session([3] * 4)
    fetch = OlderFetch(SID, 20, frozenset())
    page = json.loads(answer(store, fetch.request()))
    page["events"].insert(3, {"type": "text_delta", "sessionId": SID, "seq": "7?"})
    page["events"].insert(5, ["not", "an", "event"])
    assert not fetch.on_page(json.dumps(page).encode())
    assert fetch.unreadable == 2
    result = fetch.result()
    assert ids(result) == ["t0", "t1", "t2", "t3"]
    assert result["turns"][0]["text"] == "xxx"
