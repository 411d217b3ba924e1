"""The dev gateway, spoken to over loopback WebSockets exactly as a client would.

Every wait is a receive with a deadline; absence is shown by ordering (a later answer
arrives first), never by sleeping.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import websocket

from dim_actors.devgateway import BackgroundGateway
from dim_actors.devgateway.store import RECOVERY_SEQ_GAP
from dim_actors.wire.protocol import MAX_FRAME_BYTES

sys.path.insert(0, str(Path(__file__).parent))
from gateway_helpers import Client, text_of

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-token"
FAST = 100_000  # a rate limit no functional test reaches


@pytest.fixture(scope="module")
def gw():
    with BackgroundGateway(rate_limit=FAST) as g:
        yield g


@pytest.fixture(scope="module")
def token_gw():
    with BackgroundGateway(token=TOKEN, rate_limit=FAST) as g:
        yield g


@pytest.fixture
def client(gw):
    c = Client(gw.url)
    yield c
    c.close()


def error_only(ev):
    """Errors carry no envelope: no sessionId, seq or ts."""
    assert ev["type"] == "error", ev
    assert not {"sessionId", "seq", "ts", "turnId"} & set(ev), ev
    return ev


def seqs(events):
    return [e["seq"] for e in events if "seq" in e]


# --- handshake and authentication -----------------------------------------------------


def test_dev_mode_handshake(client):
    assert client.welcome == {
        "type": "welcome",
        "protocolVersion": 1,
        "requiresAuth": False,
    }
    c = client.connected
    assert set(c) == {"type", "clientId", "heartbeatIntervalMs", "ts"}
    assert uuid.UUID(c["clientId"]).version == 4
    assert c["heartbeatIntervalMs"] == 30000
    assert abs(c["ts"] - time.time() * 1000) < 60_000
    assert client.authenticated == {
        "type": "authenticated",
        "identity": {
            "userId": "dev-user-001",
            "email": "developer@example.com",
            "tenantId": "dev",
        },
    }
    # dev mode also accepts an explicit authenticate with any token
    assert (
        client.ok("authenticate", token="anything")["identity"]["userId"]
        == "dev-user-001"
    )


def test_token_mode_handshake_and_unauthenticated(token_gw):
    with Client(token_gw.url) as c:
        assert c.welcome == {
            "type": "welcome",
            "protocolVersion": 1,
            "requiresAuth": True,
        }
        assert c.connected["type"] == "connected"
        # Nothing is pushed after `connected`: the answer to this request is the very
        # next frame.
        c.send("list_sessions")
        err = error_only(c.next())
        assert err["code"] == "Unauthenticated"
        c.send("ping")
        assert c.next()["code"] == "Unauthenticated"
        auth = c.ok("authenticate", token=TOKEN)
        assert auth["identity"] == {
            "userId": "dev-user-001",
            "email": "developer@example.com",
            "tenantId": "dev",
        }
        assert c.ok("ping")["type"] == "pong"


def test_auth_failed_then_success(token_gw):
    with Client(token_gw.url) as c:
        err = error_only(c.request("authenticate", token="wrong"))
        assert err["code"] == "AUTH_FAILED" and err["message"]
        assert c.request("list_sessions")["code"] == "Unauthenticated"
        assert c.ok("authenticate", token=TOKEN)["type"] == "authenticated"


def test_auth_rate_limited_per_ip():
    with BackgroundGateway(token=TOKEN) as g, Client(g.url) as c:
        for _ in range(5):
            assert c.request("authenticate", token="nope")["code"] == "AUTH_FAILED"
        # even the right token waits
        limited = error_only(c.request("authenticate", token=TOKEN))
        assert limited["code"] == "AUTH_RATE_LIMITED"
        assert 0 < limited["retryAfterMs"] <= 60_000
        with Client(g.url) as other:  # the limit is per IP, not per connection
            assert (
                other.request("authenticate", token=TOKEN)["code"]
                == "AUTH_RATE_LIMITED"
            )


# --- inbound validation ---------------------------------------------------------------


def test_invalid_json(client):
    client.send_raw("{not json")
    err = error_only(client.next())
    assert err["code"] == "INVALID_JSON"
    assert client.ok("ping")["type"] == "pong"


@pytest.mark.parametrize(
    "raw,needle",
    [
        ('{"type":"teleport","sessionId":"x"}', "unknown message type"),
        ('{"type":"run_turn","sessionId":"x"}', "text"),
        ('{"type":"get_events","sessionId":"x","afterSeq":"zero"}', "afterSeq"),
        ('{"sessionId":"x"}', "type"),
        ("[1,2,3]", "object"),
    ],
)
def test_invalid_message(client, raw, needle):
    client.send_raw(raw)
    err = error_only(client.next())
    assert err["code"] == "INVALID_MESSAGE"
    assert needle in err["message"]


def test_binary_frame_is_invalid_message(client):
    client.send_raw(b'{"type":"ping"}', binary=True)
    assert error_only(client.next())["code"] == "INVALID_MESSAGE"
    assert client.ok("ping")["type"] == "pong"


def test_message_too_large_keeps_connection(client):
    base = '{"type":"ping","pad":""}'
    exact = base.replace('""', '"' + "x" * (MAX_FRAME_BYTES - len(base)) + '"')
    assert len(exact.encode()) == MAX_FRAME_BYTES
    client.send_raw(exact)  # at the limit: accepted (unknown fields are ignored)
    assert client.next()["type"] == "pong"
    client.send_raw(exact[:-2] + 'xx"}')  # one byte over
    err = error_only(client.next())
    assert err["code"] == "MESSAGE_TOO_LARGE"
    client.send_raw(
        '{"type":"run_turn","sessionId":"s","text":"'
        + "é" * (MAX_FRAME_BYTES // 2)
        + '"}'
    )
    # counted in UTF-8 bytes, not characters
    assert client.next()["code"] == "MESSAGE_TOO_LARGE"
    assert client.ok("ping")["type"] == "pong"


def test_rate_limited_at_the_default_60_per_10s():
    with BackgroundGateway() as g, Client(g.url) as c:
        for _ in range(61):
            c.send("ping")
        answers = [c.next() for _ in range(61)]
        assert [a["type"] for a in answers[:60]] == ["pong"] * 60
        err = error_only(answers[60])
        assert err["code"] == "RATE_LIMITED"
        assert 0 < err["retryAfterMs"] <= 10_000


def test_session_not_found(client):
    for type_, args in [
        ("join_session", {}),
        ("run_turn", {"text": "x"}),
        ("get_events", {"afterSeq": 0}),
        ("read_file", {"path": "a"}),
        ("rename_session", {"name": "n"}),
    ]:
        err = error_only(client.request(type_, sessionId="no-such-session", **args))
        assert (err["code"], err["message"]) == ("SessionNotFound", "Session not found")


def test_http_paths_other_than_ws_are_404(gw):
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{gw.port}/other", timeout=30)
    assert e.value.code == 404
    e.value.close()
    with pytest.raises(websocket.WebSocketBadStatusException):
        websocket.create_connection(f"ws://127.0.0.1:{gw.port}/api", timeout=30)


# --- sessions -------------------------------------------------------------------------


def test_session_lifecycle(client):
    created = client.ok("create_session", agentType="echo", name="Lifecycle")
    meta = created["session"]
    sid = meta["id"]
    assert created["sessionId"] == sid
    assert (
        meta["status"] == "inactive"
        and meta["name"] == "Lifecycle"
        and meta["archived"] is False
    )
    assert set(meta) == {
        "id",
        "name",
        "agentType",
        "status",
        "archived",
        "createdAt",
        "updatedAt",
        "lastSeq",
    }

    client.send("join_session", sessionId=sid)
    events = client.collect("state_snapshot")
    states = [
        (e["previousStatus"], e["status"])
        for e in events
        if e["type"] == "session_state"
    ]
    assert states == [("inactive", "activating"), ("activating", "ready")]
    snap = events[-1]
    assert snap["session"]["status"] == "ready" and snap["lastSeq"] == seqs(events)[-1]
    assert snap["pendingRequests"] == [] and "activeTurnId" not in snap

    renamed = client.ok("rename_session", sessionId=sid, name="Renamed")
    assert renamed["name"] == "Renamed" and renamed["seq"] > snap["lastSeq"]
    client.ok("archive_session", sessionId=sid)
    ids = lambda ev: [s["id"] for s in ev["sessions"]]  # noqa: E731
    assert sid not in ids(client.ok("list_sessions"))
    listed = client.ok("list_sessions", includeArchived=True)
    assert [s for s in listed["sessions"] if s["id"] == sid][0]["archived"] is True
    client.ok("unarchive_session", sessionId=sid)
    assert sid in ids(client.ok("list_sessions"))

    assert client.ok("leave_session", sessionId=sid) == {
        "type": "session_left",
        "sessionId": sid,
    }
    # Not joined any more: our own rename is still answered, and nothing else arrives.
    client.send("rename_session", sessionId=sid, name="Again")
    assert client.next()["type"] == "session_renamed"
    assert client.ok("ping")["type"] == "pong"

    assert client.ok("delete_session", sessionId=sid) == {
        "type": "session_deleted",
        "sessionId": sid,
    }
    assert client.request("join_session", sessionId=sid)["code"] == "SessionNotFound"
    assert sid not in ids(client.ok("list_sessions", includeArchived=True))


def test_unknown_agent_type(client):
    assert (
        client.request("create_session", agentType="nope")["code"] == "UnknownAgentType"
    )


def test_two_clients_both_receive_the_stream(gw):
    with Client(gw.url) as a, Client(gw.url) as b:
        sid = a.new_session("echo")
        b.ok("join_session", sessionId=sid)
        events_a = a.run(sid, "one two three")
        turn_id = events_a[0]["turnId"]
        events_b = b.collect(
            lambda e: e.get("turnId") == turn_id and e["type"] == "turn_complete"
        )
        turn_b = [e for e in events_b if e.get("turnId") == turn_id]
        assert turn_b == [e for e in events_a if e.get("turnId") == turn_id]
        assert text_of(turn_b) == "one two three"


def test_errors_go_only_to_the_offending_connection(gw):
    with Client(gw.url) as a, Client(gw.url) as b:
        sid = a.new_session("echo")
        b.ok("join_session", sessionId=sid)
        assert a.request("join_session", sessionId="missing")["type"] == "error"
        a.send_raw("garbage")
        assert a.next()["code"] == "INVALID_JSON"
        a.run(sid, "after the errors")
        # b receives everything a's turn produced, and nothing from before it but its
        # own answers.
        got = b.collect("turn_complete")
        assert "error" not in [e["type"] for e in got]


def test_run_turn_on_a_session_nobody_joined_activates_it(client):
    sid = client.new_session("echo", join=False)
    # the requester always gets its answer
    started = client.ok("run_turn", sessionId=sid, text="solo")
    assert started["type"] == "turn_started" and started["text"] == "solo"
    done = client.ok("get_events", sessionId=sid, afterSeq=0)
    while not any(e["type"] == "turn_complete" for e in done["events"]):
        # the turn is fast; poll its log
        done = client.ok("get_events", sessionId=sid, afterSeq=0)
    states = [e["status"] for e in done["events"] if e["type"] == "session_state"]
    assert states == ["activating", "ready", "running", "ready"]


# --- turns ----------------------------------------------------------------------------


def test_echo_turn(client):
    sid = client.new_session("echo")
    events = client.run(sid, "hello world")
    started, complete = events[0], events[-1]
    turn = [e for e in events if e.get("turnId") == started["turnId"]]
    deltas = [e["text"] for e in turn if e["type"] == "text_delta"]
    assert deltas == ["hello", " world"]
    assert complete["type"] == "turn_complete"
    assert complete["finalText"] == "hello world" == "".join(deltas)
    assert complete["stopReason"] == "end_turn"
    assert complete["usage"] == {"inputTokens": 2, "outputTokens": 2}
    numbers = seqs(events)
    # strictly increasing, no gaps
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    for e in events:
        assert e["sessionId"] == sid and isinstance(e["ts"], int)
    assert client.wait("session_state")["status"] == "ready"


def test_turn_in_progress(client):
    sid = client.new_session("coding-agent")
    client.ok("run_turn", sessionId=sid, text="/sleep 5000")
    assert (
        client.request("run_turn", sessionId=sid, text="second")["code"]
        == "TurnInProgress"
    )
    assert client.ok("stop_turn", sessionId=sid)["stopReason"] == "stopped"


def script(client, sid, text, timeout=60):
    events = client.run(sid, text, timeout=timeout)
    turn_id = events[0]["turnId"]
    return [e for e in events if e.get("turnId") == turn_id]


@pytest.fixture
def coding(client):
    return client, client.new_session("coding-agent")


def test_coding_agent_plain_text_and_think(coding):
    client, sid = coding
    turn = script(client, sid, "first line\n/think weighing options\nsecond")
    assert [e["type"] for e in turn] == [
        "turn_started",
        "text_delta",
        "text_delta",
        "thinking.start",
        "thinking.progress",
        "thinking.complete",
        "text_delta",
        "turn_complete",
    ]
    assert turn[4]["text"] == "weighing options"
    assert turn[-1]["finalText"] == "first line\nsecond" == text_of(turn)


def test_emit_inside_the_turn_outside_it_and_unsequenced(coding):
    client, sid = coding
    events = client.run(
        sid,
        '/emit plan.created {"planId": "p", "steps": []}\n'
        '/emit-session review.flagged {"why": "late"}\n'
        '/emit-unsequenced presence.changed {"who": ["ann"]}\nafter',
    )
    turn_id = events[0]["turnId"]
    by_type = {e["type"]: e for e in events}
    inside, outside, loose = (
        by_type["plan.created"],
        by_type["review.flagged"],
        by_type["presence.changed"],
    )
    assert inside["turnId"] == turn_id and inside["seq"] + 1 == outside["seq"]
    # Outside the turn: the session envelope without turnId, stored like any stream
    # event.
    assert (
        set(outside) == {"type", "sessionId", "seq", "ts", "why"}
        and outside["sessionId"] == sid
    )
    # Unsequenced: sessionId and the fields only, never stored.
    assert loose == {"type": "presence.changed", "sessionId": sid, "who": ["ann"]}
    stored = client.ok("get_events", sessionId=sid, afterSeq=0)["events"]
    assert outside in stored and not [
        e for e in stored if e["type"] == "presence.changed"
    ]
    assert events[-1]["type"] == "turn_complete" and events[-1]["finalText"] == "after"
    for bad in (
        "/emit-session turn_complete",
        '/emit-session x {"turnId": "t"}',
        "/emit-unsequenced x [1]",
    ):
        assert client.run(sid, bad)[-1]["code"] == "InvalidScript", bad


def test_coding_agent_tools(coding):
    client, sid = coding
    turn = script(
        client,
        sid,
        '/tool grep {"pattern": "TODO", "paths": ["src"]}\n/tool-error rm permission denied',
    )
    types = [e["type"] for e in turn[1:-1]]
    assert types == [
        "tool_call_start",
        "tool_call",
        "tool_result",
        "tool_call_start",
        "tool_call",
        "tool_error",
    ]
    start, call, result, start2, call2, error = turn[1:-1]
    assert start["toolName"] == call["toolName"] == "grep"
    assert (
        start["toolCallId"]
        == call["toolCallId"]
        == result["toolCallId"]
        != start2["toolCallId"]
    )
    assert call["args"] == {"pattern": "TODO", "paths": ["src"]}
    assert result["result"]["ok"] is True
    assert start2["toolName"] == "rm" and error["error"] == "permission denied"
    assert error["toolCallId"] == start2["toolCallId"] == call2["toolCallId"]
    assert turn[-1]["type"] == "turn_complete"


def test_coding_agent_terminal(coding):
    client, sid = coding
    turn = script(client, sid, "/terminal $ make\\nok\\ndone")
    lines = [e for e in turn if e["type"] == "terminal.stream"]
    assert [e["text"] for e in lines] == ["$ make\n", "ok\n", "done\n"]
    complete = [e for e in turn if e["type"] == "terminal.complete"]
    assert complete == [
        dict(complete[0], terminalId=lines[0]["terminalId"], exitCode=0)
    ]
    assert len({e["terminalId"] for e in lines}) == 1


def test_coding_agent_stream_fast_and_exact(coding):
    client, sid = coding
    turn = script(client, sid, "/stream 3000")
    deltas = [e["text"] for e in turn if e["type"] == "text_delta"]
    assert deltas == [f"{i} " for i in range(3000)]
    assert turn[-1]["finalText"] == "".join(deltas)
    numbers = seqs(turn)
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))


def test_coding_agent_stream_paced(coding):
    client, sid = coding
    turn = script(client, sid, "/stream 101 500")  # 100 intervals of 2 ms
    deltas = [e for e in turn if e["type"] == "text_delta"]
    assert [e["text"] for e in deltas] == [f"{i} " for i in range(101)]
    span = deltas[-1]["ts"] - deltas[0]["ts"]
    assert 190 <= span <= 600, span  # absolute schedule: ~200 ms, no per-event drift


def test_coding_agent_sleep(coding):
    client, sid = coding
    turn = script(client, sid, "/sleep 150\ndone")
    assert turn[-1]["ts"] - turn[0]["ts"] >= 150


def test_coding_agent_fail_and_reactivate(coding):
    client, sid = coding
    client.send(
        "run_turn",
        sessionId=sid,
        text="partial\n/fail QuotaExceeded out of credits\nnever",
    )
    events = client.collect(
        lambda e: e.get("type") == "session_state" and e["status"] == "inactive"
    )
    turn_id = [e for e in events if e["type"] == "turn_started"][0]["turnId"]
    kinds = [e["type"] for e in events if e.get("turnId") == turn_id]
    assert kinds[-1] == "turn_error" and "turn_complete" not in kinds
    err = [e for e in events if e["type"] == "turn_error"][0]
    assert (err["code"], err["message"]) == ("QuotaExceeded", "out of credits")
    states = [e["status"] for e in events if e["type"] == "session_state"]
    assert states[-3:] == ["error", "deactivating", "inactive"]
    assert "sandbox_removed" in [e["type"] for e in events]
    # the next run activates the session again
    client.send("run_turn", sessionId=sid, text="back")
    again = client.collect("turn_complete")
    states = [e["status"] for e in again if e["type"] == "session_state"]
    assert states == ["activating", "ready", "running"]
    assert again[-1]["finalText"] == "back"


def test_ask_waits_for_answer(coding):
    client, sid = coding
    client.send(
        "run_turn", sessionId=sid, text="/ask Which colour? | red | blue\nafter"
    )
    question = client.wait("question_requested")
    assert question["question"] == "Which colour?" and question["options"] == [
        "red",
        "blue",
    ]
    assert client.wait("session_state")["status"] == "waiting"
    snap = client.ok("join_session", sessionId=sid)  # a re-join shows the open question
    assert snap["session"]["status"] == "waiting"
    assert (
        snap["pendingRequests"] == [question]
        and snap["activeTurnId"] == question["turnId"]
    )
    assert (
        client.request(
            "answer_question", sessionId=sid, requestId="req_nope", answers=["x"]
        )["code"]
        == "RequestNotFound"
    )
    resolved = client.ok(
        "answer_question",
        sessionId=sid,
        requestId=question["requestId"],
        answers=["red"],
    )
    assert resolved == dict(
        resolved,
        type="approval_resolved",
        requestId=question["requestId"],
        answers=["red"],
        turnId=question["turnId"],
    )
    rest = client.collect("turn_complete")
    assert [e["status"] for e in rest if e["type"] == "session_state"] == ["running"]
    assert rest[-1]["finalText"] == "after"


def test_permission_waits_for_approval(coding):
    client, sid = coding
    client.send("run_turn", sessionId=sid, text="/permission run rm -rf build\nok")
    req = client.wait("permission_requested")
    assert req["action"] == "run rm -rf build"
    resolved = client.ok(
        "answer_question", sessionId=sid, requestId=req["requestId"], approved=True
    )
    assert resolved["approved"] is True
    assert client.wait("turn_complete")["finalText"] == "ok"


def test_stop_turn_while_streaming(coding):
    client, sid = coding
    client.send("run_turn", sessionId=sid, text="/stream 1000000 2000")
    started = client.wait("turn_started")
    client.wait("text_delta")
    sent = time.monotonic()
    client.send("stop_turn", sessionId=sid)
    rest = client.collect("turn_complete")
    assert time.monotonic() - sent < 0.5
    done = rest[-1]
    assert done["stopReason"] == "stopped" and done["turnId"] == started["turnId"]
    streamed = [
        e
        for e in client.seen
        if e.get("turnId") == started["turnId"] and e["type"] == "text_delta"
    ]
    assert done["finalText"] == "".join(e["text"] for e in streamed)
    assert client.wait("session_state")["status"] == "ready"
    # exactly one end per turn: nothing from that turn follows its turn_complete
    after = client.ok("get_events", sessionId=sid, afterSeq=done["seq"])["events"]
    assert not [e for e in after if e.get("turnId") == started["turnId"]]


def test_stop_turn_while_waiting_and_sleeping(coding):
    client, sid = coding
    client.send("run_turn", sessionId=sid, text="/ask Continue?")
    question = client.wait("question_requested")
    client.send("stop_turn", sessionId=sid)
    events = client.collect("turn_complete")
    dismissed = [e for e in events if e["type"] == "approval_resolved"]
    assert dismissed == [
        dict(dismissed[0], requestId=question["requestId"], dismissed=True)
    ]
    assert events[-1]["stopReason"] == "stopped"

    client.send("run_turn", sessionId=sid, text="/sleep 60000")
    turn_id = client.wait("turn_started")["turnId"]
    assert (
        client.request("stop_turn", sessionId=sid, turnId="turn_other")["code"]
        == "NoActiveTurn"
    )
    sent = time.monotonic()
    done = client.ok("stop_turn", sessionId=sid, turnId=turn_id)
    assert done["turnId"] == turn_id and time.monotonic() - sent < 0.5
    assert client.request("stop_turn", sessionId=sid)["code"] == "NoActiveTurn"


def test_steer_reaches_the_running_turn(coding):
    client, sid = coding
    client.send("run_turn", sessionId=sid, text="/sleep 60000")
    turn_id = client.wait("turn_started")["turnId"]
    steered = client.ok("steer", sessionId=sid, content="focus on the tests")
    assert (steered["content"], steered["turnId"]) == ("focus on the tests", turn_id)
    client.ok("stop_turn", sessionId=sid)
    assert (
        client.request("steer", sessionId=sid, content="late")["code"] == "NoActiveTurn"
    )


def test_client_turn_id_is_idempotent(coding):
    client, sid = coding
    first = client.run(sid, "/sleep 1", clientTurnId="click-1")[0]
    assert first["clientTurnId"] == "click-1"
    again = client.ok(
        "run_turn", sessionId=sid, text="/sleep 1", clientTurnId="click-1"
    )
    assert again == first  # the original answer, not a new turn
    # and no turn events came before the pong
    assert client.ok("ping")["type"] == "pong"
    assert not [
        e for e in client.seen[-2:] if e["type"] in ("turn_complete", "text_delta")
    ]
    # while a turn runs, its retry is answered the same way instead of TurnInProgress
    running = client.ok(
        "run_turn", sessionId=sid, text="/sleep 60000", clientTurnId="click-2"
    )
    assert (
        client.ok(
            "run_turn", sessionId=sid, text="/sleep 60000", clientTurnId="click-2"
        )
        == running
    )
    client.ok("stop_turn", sessionId=sid)


def test_get_history(coding):
    client, sid = coding
    script(client, sid, "one")
    script(client, sid, "/fail Boom it broke")
    turns = client.ok("get_history", sessionId=sid)["turns"]
    assert [(t["text"], t["status"]) for t in turns] == [
        ("one", "complete"),
        ("/fail Boom it broke", "error"),
    ]
    assert turns[0]["finalText"] == "one" and turns[1]["error"] == {
        "code": "Boom",
        "message": "it broke",
    }
    assert turns[0]["startedSeq"] < turns[0]["endedSeq"] < turns[1]["startedSeq"]


# --- replay ---------------------------------------------------------------------------


def test_get_events_pages_in_seq_order(coding):
    client, sid = coding
    script(client, sid, "/stream 250")
    client.wait("session_state")  # running -> ready closes the turn's part of the log
    live = [e for e in client.seen if e.get("sessionId") == sid and "seq" in e]
    last = live[-1]["seq"]
    replayed, after, pages = [], 0, 0
    while True:
        page = client.ok("get_events", sessionId=sid, afterSeq=after, limit=100)
        pages += 1
        assert len(page["events"]) <= 100
        replayed += page["events"]
        if not page["hasMore"]:
            break
        after = page["events"][-1]["seq"]
    assert pages == (last + 99) // 100
    assert seqs(replayed) == list(range(1, last + 1))
    # The session's events this client saw live are stored exactly as sent.
    by_seq = {e["seq"]: e for e in replayed}
    assert all(by_seq[e["seq"]] == e for e in live)
    page = client.ok("get_events", sessionId=sid, afterSeq=last)
    assert page["events"] == [] and page["hasMore"] is False
    assert (
        len(client.ok("get_events", sessionId=sid, afterSeq=0, limit=50_000)["events"])
        == last
    )  # capped, not refused


def test_persistence_across_restart(tmp_path):
    with BackgroundGateway(data_dir=tmp_path, rate_limit=FAST) as g, Client(g.url) as c:
        sid = c.new_session("coding-agent", name="Durable")
        script(c, sid, "/write notes/todo.md buy milk\nsaved")
        c.ok("rename_session", sessionId=sid, name="Durable 2")
        before = c.ok("get_events", sessionId=sid, afterSeq=0)["events"]
    with BackgroundGateway(data_dir=tmp_path, rate_limit=FAST) as g, Client(g.url) as c:
        meta = [s for s in c.ok("list_sessions")["sessions"] if s["id"] == sid][0]
        assert meta["name"] == "Durable 2" and meta["agentType"] == "coding-agent"
        after = c.ok("get_events", sessionId=sid, afterSeq=0)["events"]
        # every stored event, byte for byte the same JSON
        assert after[: len(before)] == before
        # the clean shutdown wound the session down, durably
        assert [
            e["status"] for e in after[len(before) :] if e["type"] == "session_state"
        ] == ["deactivating", "inactive"]
        assert (
            c.ok("read_file", sessionId=sid, path="notes/todo.md")["content"]
            == "buy milk"
        )
        assert c.ok("get_history", sessionId=sid)["turns"][0]["finalText"] == "saved"
        snap = c.ok("join_session", sessionId=sid)
        assert snap["lastSeq"] > after[-1]["seq"]  # seq goes on where it stopped
        assert seqs(c.ok("get_events", sessionId=sid, afterSeq=0)["events"]) == list(
            range(1, snap["lastSeq"] + 1)
        )


def test_recovery_after_a_crash_mid_turn(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dim_actors.devgateway",
            "--port",
            "0",
            "--data",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        url = proc.stdout.readline().split()[-1]
        with Client(url) as c:
            sid = c.new_session("coding-agent")
            turn_id = c.ok("run_turn", sessionId=sid, text="/sleep 60000")["turnId"]
            asking = c.new_session("coding-agent")
            c.ok("run_turn", sessionId=asking, text="/ask still there?")
            c.wait(
                lambda e: e.get("sessionId") == asking and e.get("status") == "waiting"
            )
            idle = c.new_session("echo")  # joined: ready
            # get_events reads after every queued write is committed: once it shows the
            # turn, it is on disk
            stored = c.ok("get_events", sessionId=sid, afterSeq=0)["events"]
            assert turn_id in [e.get("turnId") for e in stored]
            c.ok("get_events", sessionId=idle, afterSeq=0)
            other = c.ok(
                "create_session", agentType="echo", name="made just before the crash"
            )["session"]["id"]
    finally:
        # no clean shutdown: the turn never ends and the session stays "running"
        proc.kill()
        proc.wait()
        proc.stdout.close()
    with BackgroundGateway(data_dir=tmp_path, rate_limit=FAST) as g, Client(g.url) as c:
        metas = {s["id"]: s for s in c.ok("list_sessions")["sessions"]}
        assert {metas[s]["status"] for s in (sid, asking, idle)} == {"inactive"}
        events = c.ok("get_events", sessionId=sid, afterSeq=0)["events"]
        ends = [
            e
            for e in events
            if e.get("turnId") == turn_id
            and e["type"] in ("turn_complete", "turn_error")
        ]
        assert [(e["type"], e["code"]) for e in ends] == [
            ("turn_error", "GatewayRestarted")
        ]
        # Events sent but not yet stored at the crash may have been seen: their seqs are
        # never reused.
        assert events[: len(stored)] == stored
        assert ends[0]["seq"] == stored[-1]["seq"] + RECOVERY_SEQ_GAP + 1
        # an answered create_session was stored before it was answered
        assert other in metas

        # Down to inactive through the documented transitions only, as a failed turn
        # winds down.
        def recovery(session_id):
            evs = c.ok("get_events", sessionId=session_id, afterSeq=0)["events"]
            gap = next(
                i for i, e in enumerate(evs) if i and e["seq"] > evs[i - 1]["seq"] + 1
            )
            return [
                (e["previousStatus"], e["status"])
                if e["type"] == "session_state"
                else e["type"]
                for e in evs[gap:]
            ]

        wind_down = [
            ("running", "error"),
            ("error", "deactivating"),
            "sandbox_removed",
            ("deactivating", "inactive"),
        ]
        assert recovery(sid) == ["turn_error", *wind_down]
        assert recovery(asking) == [("waiting", "running"), "turn_error", *wind_down]
        assert recovery(idle) == [
            ("ready", "deactivating"),
            ("deactivating", "inactive"),
        ]  # echo: no sandbox
        assert c.ok("get_history", sessionId=sid)["turns"][0]["status"] == "error"
        c.ok("join_session", sessionId=sid)
        assert c.run(sid, "alive again")[-1]["finalText"] == "alive again"


# --- files ----------------------------------------------------------------------------


def test_file_history_and_iterations(coding):
    client, sid = coding
    turn = script(
        client,
        sid,
        "/write src/app.py v1\n/write src/app.py v2\\nline2\n/write src/app.py v2\\nline2"
        "\n/rename src/app.py src/main.py\n/write docs/readme.md hi\n/delete docs/readme.md",
    )
    changes = [
        (e["path"], e["iteration"], e.get("deleted", False), e.get("renamedFrom"))
        for e in turn
        if e["type"] == "file_changed"
    ]
    assert changes == [
        ("src/app.py", 1, False, None),
        ("src/app.py", 2, False, None),  # same content: no iteration
        ("src/app.py", 3, True, None),
        ("src/main.py", 1, False, "src/app.py"),
        ("docs/readme.md", 1, False, None),
        ("docs/readme.md", 2, True, None),
    ]
    hist = client.ok("file_history", sessionId=sid, path="src/app.py")["iterations"]
    assert [h["iteration"] for h in hist] == [1, 2, 3]
    assert hist[0]["hash"] == hashlib.sha256(b"v1").hexdigest() and hist[0]["size"] == 2
    assert hist[2]["deleted"] is True
    assert all(isinstance(h["timestamp"], int) for h in hist)
    v1 = client.ok("file_at_iteration", sessionId=sid, path="src/app.py", iteration=1)
    assert (v1["content"], v1["encoding"], v1["iteration"]) == ("v1", "utf-8", 1)
    v2 = client.ok("file_at_iteration", sessionId=sid, path="src/app.py", iteration=2)
    assert v2["content"] == "v2\nline2"
    assert (
        client.request(
            "file_at_iteration", sessionId=sid, path="src/app.py", iteration=3
        )["code"]
        == "FileNotFound"
    )
    assert (
        client.request(
            "file_at_iteration", sessionId=sid, path="src/app.py", iteration=9
        )["code"]
        == "IterationNotFound"
    )
    assert (
        client.request("read_file", sessionId=sid, path="src/app.py")["code"]
        == "FileNotFound"
    )
    main = client.ok("read_file", sessionId=sid, path="./src//main.py")
    assert (main["path"], main["content"]) == ("src/main.py", "v2\nline2")
    listing = client.ok("list_files", sessionId=sid)
    assert [(f["path"], f["type"]) for f in listing["files"]] == [
        ("src", "directory"),
        ("src/main.py", "file"),
    ]
    shallow = client.ok("list_files", sessionId=sid, path="", depth=1)["files"]
    assert [f["path"] for f in shallow] == ["src"]
    assert (
        client.ok("list_files", sessionId=sid, path="src")["files"][0]["hash"]
        == hashlib.sha256(b"v2\nline2").hexdigest()
    )


@pytest.mark.parametrize(
    "path", ["../etc/passwd", "/etc/passwd", "a/../../b", "a\x00b", "C:/x", "a\\b", ""]
)
def test_paths_are_confined(coding, path):
    client, sid = coding
    assert (
        client.request("read_file", sessionId=sid, path=path)["code"] == "InvalidPath"
    )
    assert (
        client.request("file_history", sessionId=sid, path=path)["code"]
        == "InvalidPath"
    )


def test_agent_writes_are_confined(coding):
    client, sid = coding
    turn = script(client, sid, "/write ../escape.txt x")
    assert turn[-1]["type"] == "turn_error" and turn[-1]["code"] == "InvalidPath"
    assert (
        client.request("list_files", sessionId=sid, path="../..")["code"]
        == "InvalidPath"
    )


# --- members --------------------------------------------------------------------------


def test_manage_members(client):
    members = client.ok("manage_members", action="list")["members"]
    assert [(m["userId"], m["role"]) for m in members] == [("dev-user-001", "owner")]
    client.ok("manage_members", action="add", userId="alice", role="admin")
    assert (
        client.request("manage_members", action="add", userId="alice")["code"]
        == "MemberExists"
    )
    listed = client.ok(
        "manage_members", action="set_role", userId="alice", role="viewer"
    )["members"]
    assert ("alice", "viewer") in [(m["userId"], m["role"]) for m in listed]
    assert (
        client.request("manage_members", action="remove", userId="dev-user-001")["code"]
        == "LastOwner"
    )
    assert (
        client.request(
            "manage_members", action="set_role", userId="dev-user-001", role="member"
        )["code"]
        == "LastOwner"
    )
    assert (
        client.request("manage_members", action="remove")["code"] == "INVALID_MESSAGE"
    )
    left = client.ok("manage_members", action="remove", userId="alice")["members"]
    assert "alice" not in [m["userId"] for m in left]


# --- heartbeat and process ------------------------------------------------------------


def test_heartbeat_goes_to_joined_connections():
    with (
        BackgroundGateway(heartbeat_ms=100, rate_limit=FAST) as g,
        Client(g.url) as joined,
        Client(g.url) as idle,
    ):
        assert joined.connected["heartbeatIntervalMs"] == 100
        joined.new_session("echo")
        beats = [joined.wait("heartbeat", timeout=30) for _ in range(2)]
        assert set(beats[0]) == {"type", "ts"} and beats[1]["ts"] >= beats[0]["ts"]
        # The idle connection joined nothing: its next frame is the answer to this ping,
        # not a heartbeat.
        idle.send("ping")
        assert idle.next()["type"] == "pong"


def test_cli_prints_listening_line_and_stops_on_sigterm(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dim_actors.devgateway",
            "--port",
            "0",
            "--data",
            str(tmp_path),
            "--heartbeat-ms",
            "1000",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        line = proc.stdout.readline().rstrip("\n")
        m = re.fullmatch(r"dim-gateway listening on (ws://127\.0\.0\.1:(\d+)/ws)", line)
        assert m, line
        with Client(m.group(1)) as c:
            assert c.connected["heartbeatIntervalMs"] == 1000
            c.new_session("echo")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert (tmp_path / "gateway.db").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_cli_help():
    out = subprocess.run(
        [sys.executable, "-m", "dim_actors.devgateway", "--help"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=30,
    )
    assert out.returncode == 0
    for flag in (
        "--port",
        "--token",
        "--data",
        "--heartbeat-ms",
        "--host",
        "--rate-limit",
    ):
        assert flag in out.stdout


def test_event_frames_are_compact_json(client):
    # one JSON object per text frame, camelCase, no pretty-printing (cheap to parse, as
    # the SDKs expect)
    sid = client.new_session("echo")
    client.send("run_turn", sessionId=sid, text="x")
    client.ws.settimeout(30)
    opcode, data = client.ws.recv_data()
    while b'"turn_started"' not in data:
        opcode, data = client.ws.recv_data()
    assert (
        opcode == websocket.ABNF.OPCODE_TEXT and b"\n" not in data and b": " not in data
    )
    assert json.loads(data)["sessionId"] == sid
