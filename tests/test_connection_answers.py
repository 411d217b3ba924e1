"""How the connection process takes answers: which request a frame answers, an answer
nested too deep, seq gaps from a gateway that skips seqs and cannot catch up, the rejoin
order's memory, the hung-thread bounds."""

from __future__ import annotations

import time

import pytest
from apphelpers import InvokeError, wait_until
from test_bad_gateway_input import a_turn, app_against, still_up, wait_complete
from test_connection_faults import DEEP, REFUSED, session_s1_gateway, with_deep


def test_a_gateway_skipping_seqs_and_refusing_get_events_costs_boundedly_many_history_asks(
    dim_home,
):
    """get_events is refused (getEvents = "no"), so no gap can be refetched: each
    skipped seq used to cost a get_history and a gap notice, for ever. Three such gaps
    and the gateway is taken to skip seqs."""
    respond = session_s1_gateway(lambda _msg: [REFUSED])

    with app_against(dim_home, respond=respond) as (gw, app):
        app.wait_connected()
        events = app.events()
        app.invoke("join_session", sessionId="s1")
        wait_until(
            lambda: (
                app.invoke("get_state")["connection"]["traits"]["getEvents"] == "no"
            ),
            60,
            what="get_events to be known refused",
        )
        # 20 events, sent as seqs 1, 3, 5, ... 39
        turn = a_turn("s1", "t1", 1, [str(i) for i in range(18)])
        for i, frame in enumerate(turn):
            frame["seq"] = 1 + 2 * i
            gw.send(frame)
        wait_complete(app, "s1", "t1", "".join(str(i) for i in range(18)))
        # A request sent after all that: once the gateway has it, every get_history
        # before it is in.
        app.invoke("list_sessions")
        history = [m for m in gw.received if m["type"] == "get_history"]
        # the join's, then 3 gaps
        assert len(history) == 1 + 3, f"{len(history)} get_history for 19 skipped seqs"
        gaps = [
            f
            for f in events.frames
            if f["event"] == "catchup-gap" and f["payload"].get("afterSeq", 0) > 0
        ]
        assert len(gaps) <= 3
        assert app.invoke("get_state")["connection"]["traits"]["denseSeqs"] == "no"
        still_up(app, gw)


@pytest.mark.parametrize(
    "command, args, answer",
    [
        (
            "list_sessions",
            {},
            {"type": "session_list", "sessions": [{"id": "s1", "x": DEEP}]},
        ),
        (
            "get_history",
            {"sessionId": "s1"},
            {"type": "history", "sessionId": "s1", "turns": [{"x": DEEP}]},
        ),
    ],
)
def test_an_answer_nested_too_deep_fails_its_request_at_once(
    dim_home, command, args, answer
):
    asked: list[dict] = []

    def respond(msg: dict) -> list[object]:
        if msg["type"] == "list_sessions" and not asked:
            asked.append(msg)  # the app's own, on connecting: answered as usual
            return [{"type": "session_list", "sessions": []}]
        if msg["type"] == command:
            return [with_deep(answer)]
        return []

    with app_against(dim_home, respond=respond) as (gw, app):
        app.wait_connected()
        wait_until(lambda: asked, 60, what="the app's own list_sessions")
        began = time.monotonic()
        with pytest.raises(InvokeError) as e:
            app.invoke(command, **args, timeout=60)
        took = time.monotonic() - began
        assert (
            "the gateway's answer is nested deeper than 100 levels"
            in e.value.body["error"]["message"]
        )
        assert e.value.code != "TIMEOUT" and took < 10, (e.value.code, took)
        still_up(app, gw)
        # The next request is answered as usual: nothing else was taken for this answer.
        gw.respond = lambda msg: (
            [{"type": "session_list", "sessions": []}]
            if msg["type"] == "list_sessions"
            else []
        )
        assert app.invoke("list_sessions")["type"] == "session_list"


def a_pending(
    type_: str,
    expect: set[str],
    order: int,
    sid: str | None = "s1",
    client_turn_id: str | None = None,
):
    from dim_actors.connection.process.correlation import Pending
    from dim_actors.wire import protocol

    args = {
        k: v
        for k, v in (("sessionId", sid), ("clientTurnId", client_turn_id))
        if v is not None
    }
    if type_ == "run_turn":
        args["text"] = "go"
    p = Pending(
        order, type_, frozenset(expect), protocol.build_client_message(type_, args)
    )
    p.slot.order = order
    return p


@pytest.mark.parametrize(
    "pending, type_, sid, ctid, expected",
    [
        (
            ("run_turn", {"turn_started"}, "s1", "c1"),
            "error",
            None,
            None,
            True,
        ),  # an error answers any
        (("run_turn", {"turn_started"}, "s1", "c1"), "turn_started", "s1", "c1", True),
        (
            ("run_turn", {"turn_started"}, "s1", "c1"),
            "turn_started",
            "s1",
            None,
            True,
        ),  # no echo: ours all the same
        (
            ("run_turn", {"turn_started"}, "s1", "c1"),
            "turn_started",
            "s1",
            "c2",
            False,
        ),  # another client's turn
        (
            ("run_turn", {"turn_started"}, "s1", "c1"),
            "turn_started",
            "s2",
            "c1",
            False,
        ),  # another session
        (("run_turn", {"turn_started"}, "s1", "c1"), "text_delta", "s1", None, False),
        (
            ("list_sessions", {"session_list"}, None, None),
            "session_list",
            None,
            None,
            True,
        ),
        (
            ("get_history", {"history"}, "s1", None),
            "history",
            None,
            None,
            True,
        ),  # no session named: may be
    ],
)
def test_answers(pending, type_, sid, ctid, expected):
    from dim_actors.connection.process.correlation import answers

    type0, expect, psid, pctid = pending
    assert (
        answers(a_pending(type0, expect, 1, psid, pctid), type_, sid, ctid) == expected
    )


def test_only_joined_sessions_are_remembered_for_the_rejoin_order_and_a_gone_one_is_forgotten():
    import multiprocessing

    from dim_actors.connection.process import GatewayConnection
    from dim_actors.connection.uplink import Uplink

    ours, theirs = multiprocessing.Pipe()
    conn = GatewayConnection(Uplink(theirs), 15.0, 45.0, 30.0, resume={"a": 3, "b": 5})
    for sid in ("a", "b", "never-joined"):
        conn._used(sid)
    assert set(conn.last_used) == {"a", "b"}
    with conn.frame_lock:
        conn._session_gone("a", "deleted")
    assert set(conn.last_used) == {"b"} and set(conn.joined) == {"b"}
    ours.close()
    theirs.close()


def test_a_default_thread_watch_gives_the_sender_its_longer_bound():
    from dim_actors.connection.process.watch import (
        HUNG_AFTER_S,
        HUNG_AFTER_SEND_S,
        ThreadWatch,
    )

    watch = ThreadWatch()
    watch.busy = {
        "sender": 100.0 - HUNG_AFTER_S - 1,
        "socket": 100.0 - HUNG_AFTER_S - 1,
    }
    assert [name for name, _ in watch.stuck(100.0)] == ["socket"]
    watch.busy["sender"] = 100.0 - HUNG_AFTER_SEND_S - 1
    assert [name for name, _ in watch.stuck(100.0)] == ["sender", "socket"]
