"""Where a session's first catch-up starts, against gateways that answer the join in each
way the docs leave open: with the session's lastSeq (its newest events only), without it
(from its first event, as before), with an error (at once from its first event, which the
gateway then refuses the same way). docs/protocol.md §11."""

from __future__ import annotations

import threading

import pytest
from apphelpers import InvokeError, wait_until, write_settings
from test_bad_gateway_input import a_turn, app_against, snapshot_of, wait_complete
from test_connection_faults import warnings_with

from dim_actors.connection.process.catchup import CATCHUP_TAIL_EVENTS


def gateway(snapshot: dict | None, turn_at: int, older: list[dict] = ()):  # type: ignore[assignment]
    """A scripted gateway: the join answered with `snapshot` (None: an error), one turn
    stored from seq `turn_at` (and the `older` events before it), given to any
    get_events asking after a seq before them."""
    stored = [*older, *a_turn("s1", "t1", turn_at, ["caught ", "up"])]

    def respond(msg: dict) -> list[object]:
        if msg["type"] == "list_sessions":
            # answered, so the join's error is not taken for this one's (§9)
            return [{"type": "session_list", "sessions": []}]
        if msg["type"] == "join_session":
            if snapshot is None:
                return [
                    {
                        "type": "error",
                        "sessionId": "s1",
                        "code": "NOT_NOW",
                        "message": "try later",
                    }
                ]
            return [snapshot]
        if msg["type"] == "get_events":
            after = msg["afterSeq"]
            events, at = [], 0
            for e in stored:
                # an event with an unreadable seq goes where it stands, after the last
                at = e["seq"] if isinstance(e["seq"], int) else at
                if at > after:
                    events.append(e)
            return [
                {
                    "type": "event_list",
                    "sessionId": "s1",
                    "events": events,
                    "hasMore": False,
                }
            ]
        return []

    return respond


def asked_after(gw) -> list[int]:
    return [m["afterSeq"] for m in gw.received if m["type"] == "get_events"]


def test_a_snapshot_with_its_last_seq_brings_the_newest_events_only(dim_home):
    last = 25_000
    with app_against(dim_home, respond=gateway(snapshot_of("s1", last), last - 3)) as (
        gw,
        app,
    ):
        app.wait_connected()
        app.invoke("join_session", sessionId="s1")
        wait_complete(app, "s1", "t1", "caught up")
        assert asked_after(gw) == [last - CATCHUP_TAIL_EVENTS]
        chat = app.invoke("get_state")["chats"]["s1"]
        assert chat["olderAtGateway"] == last - 4


def test_a_snapshot_without_a_last_seq_is_caught_up_from_the_first_event(dim_home):
    snap = snapshot_of("s1", 4)
    del snap["lastSeq"]
    with app_against(dim_home, respond=gateway(snap, 1)) as (gw, app):
        app.wait_connected()
        app.invoke("join_session", sessionId="s1")
        wait_complete(app, "s1", "t1", "caught up")
        assert asked_after(gw) == [0]
        assert app.invoke("get_state")["chats"]["s1"]["olderAtGateway"] == 0


def test_a_join_answered_with_an_error_is_caught_up_from_the_first_event_at_once(
    dim_home,
):
    with app_against(dim_home, respond=gateway(None, 1)) as (gw, app):
        app.wait_connected()
        with pytest.raises(InvokeError) as refused:  # the page is told
            app.invoke("join_session", sessionId="s1")
        assert refused.value.code == "GATEWAY_ERROR"
        # and the catch-up does not wait for a snapshot that will not come
        wait_until(lambda: asked_after(gw) == [0], what="a catch-up from seq 0")
        wait_complete(app, "s1", "t1", "caught up")


def test_a_first_catch_up_cut_off_before_its_first_page_starts_at_the_window_again(
    dim_home,
):
    last = 25_000
    respond = gateway(snapshot_of("s1", last), last - 3)
    cut = []

    def unanswered_once(msg: dict) -> list[object]:
        if msg["type"] == "get_events" and not cut:
            cut.append(msg)
            return []
        return respond(msg)

    with app_against(dim_home, respond=unanswered_once) as (gw, app):
        app.wait_connected()
        app.invoke("join_session", sessionId="s1")
        wait_until(lambda: cut, what="the first catch-up page asked")
        gw.send("CLOSE_MID_FRAME")  # the connection is lost before its answer
        wait_complete(app, "s1", "t1", "caught up")
        # not from seq 0 after the reconnect: nothing had been delivered, not everything
        assert asked_after(gw) == [last - CATCHUP_TAIL_EVENTS] * 2


def test_an_unreadable_event_among_older_turns_is_told_and_the_turns_still_come(
    dim_home,
):
    last = 25_000
    older = [
        *a_turn("s1", "old", 100, ["long ", "ago"]),
        {"type": "text_delta", "sessionId": "s1", "seq": "104?", "turnId": "old"},
    ]
    with app_against(
        dim_home, respond=gateway(snapshot_of("s1", last), last - 3, older)
    ) as (gw, app):
        app.wait_connected()
        events = app.events()
        app.invoke("join_session", sessionId="s1")
        wait_complete(app, "s1", "t1", "caught up")
        got = app.invoke("get_turns", sessionId="s1", beforeTurnId="t1")
        assert [(t["turnId"], t["text"]) for t in got["turns"]] == [("old", "long ago")]
        assert got["olderAtGateway"] == 0
        warnings_with(events, "earlier messages could not be read")


def _older_asked(msg: dict, last: int) -> bool:
    """A get_events of a fetch of older turns: from before the first join's window."""
    return msg["type"] == "get_events" and msg["afterSeq"] < last - CATCHUP_TAIL_EVENTS


def _get_turns_failure(app, **args) -> list[InvokeError]:
    """get_turns on a thread of its own: what it fails with lands in the list."""
    failed: list[InvokeError] = []

    def ask() -> None:
        try:
            app.invoke("get_turns", sessionId="s1", beforeTurnId="t1", **args)
        except InvokeError as e:
            failed.append(e)

    asker = threading.Thread(target=ask, daemon=True)
    asker.start()
    return failed


@pytest.mark.parametrize(
    ("how", "code", "why"),
    [
        # the connection is lost while the gateway has not answered
        ("lost", "NOT_CONNECTED", "connection to the gateway was lost"),
        # the gateway never answers: the connection's request timeout (2 s here)
        ("silent", "TIMEOUT", "did not answer get_events within 2s"),
        # the gateway answers with an error whose code is not a string
        ("odd error", "GATEWAY_ERROR", "error could not be read"),
    ],
)
def test_a_fetch_of_older_turns_that_gets_no_answer_fails_with_why_and_is_let_go(
    dim_home, how: str, code: str, why: str
):
    last = 25_000
    respond = gateway(
        snapshot_of("s1", last), last - 3, a_turn("s1", "old", 100, ["x"])
    )
    asked: list[dict] = []

    def older_unanswered(msg: dict) -> list[object]:
        if _older_asked(msg, last) and not asked:
            asked.append(msg)
            if how == "odd error":
                return [{"type": "error", "sessionId": "s1", "code": 42}]
            return []
        return respond(msg)

    write_settings(dim_home, "request_timeout_s = 2.0\n")
    with app_against(dim_home, respond=older_unanswered) as (gw, app):
        app.wait_connected()
        app.invoke("join_session", sessionId="s1")
        wait_complete(app, "s1", "t1", "caught up")
        failed = _get_turns_failure(app)
        wait_until(lambda: asked, what="the older turns asked of the gateway")
        if how == "lost":
            gw.send("CLOSE_MID_FRAME")
        # well before the UI bridge's own limit (the request timeout + 5 s)
        wait_until(lambda: failed, timeout=30, what="get_turns failing")
        assert failed[0].code == code
        assert why in failed[0].body["error"]["message"]
        assert app.status()["router"]["olderFetches"] == 0
        # asked again, the fetch goes through
        app.wait_connected()
        got = app.invoke("get_turns", sessionId="s1", beforeTurnId="t1")
        assert [t["turnId"] for t in got["turns"]] == ["old"]
