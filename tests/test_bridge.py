"""The whole path over real sockets: dev gateway -> connection process -> router -> UI
bridge."""

from __future__ import annotations

import json
import os
import stat

import pytest
import websocket
from apphelpers import App, InvokeError, wait_until
from gateway_helpers import authenticated_socket


def test_echo_turn_streams_word_by_word_with_increasing_seq(app: App):
    events = app.events()
    session = app.invoke("create_session", agentType="echo", name="skeleton")["session"]
    sid = session["id"]
    snapshot = app.invoke("join_session", sessionId=sid)
    assert snapshot["type"] == "state_snapshot" and snapshot["sessionId"] == sid

    started = app.invoke("run_turn", sessionId=sid, text="hello brave new world")
    assert started["type"] == "turn_started"
    done = events.wait_event(
        "turn_complete", sid, where=lambda e: e["turnId"] == started["turnId"]
    )

    turn_events = [
        e for e in events.gateway_events(sid) if e.get("turnId") == started["turnId"]
    ]
    deltas = [e["text"] for e in turn_events if e["type"] == "text_delta"]
    assert len(deltas) == 4, deltas  # word by word
    assert "".join(deltas) == done["finalText"] == "hello brave new world"
    seqs = [e["seq"] for e in events.gateway_events(sid) if "seq" in e]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs

    # The stores hold the same turn, so a reloaded page can rebuild itself.
    state = app.invoke("get_state")
    turn = state["chats"][sid]["turns"][-1]
    assert turn["turnId"] == started["turnId"] and turn["status"] == "complete"
    assert turn["text"] == done["finalText"] and turn["deltaCount"] == 4
    assert any(s["id"] == sid for s in state["sessions"])


def test_events_reach_the_page_exactly_as_the_gateway_sent_them(app: App):
    events = app.events()
    sid = app.invoke("create_session", agentType="echo")["session"]["id"]
    app.invoke("join_session", sessionId=sid)
    # A second, plain client joined to the same session sees what the gateway sends.
    direct = authenticated_socket(
        app.runtime["gatewayUrl"], app.runtime["gatewayToken"]
    )
    direct.send(json.dumps({"type": "join_session", "sessionId": sid}))
    # Joined (its snapshot is here) before the turn starts, so it sees the whole turn.
    while not (
        (ev := json.loads(direct.recv()))["type"] == "state_snapshot"
        and ev.get("sessionId") == sid
    ):
        pass
    app.invoke("run_turn", sessionId=sid, text="exact bytes please")
    events.wait_event("turn_complete", sid)
    seen_direct = {}
    while True:
        ev = json.loads(direct.recv())
        if ev.get("sessionId") == sid and "seq" in ev:
            seen_direct[ev["seq"]] = ev
        if ev["type"] == "turn_complete":
            break
    direct.close()
    via_bridge = {e["seq"]: e for e in events.gateway_events(sid) if "seq" in e}
    common = set(seen_direct) & set(via_bridge)
    assert any(seen_direct[s]["type"] == "text_delta" for s in common)
    for s in common:
        assert via_bridge[s] == seen_direct[s]


def test_list_sessions_reflects_created_sessions(app: App):
    a = app.invoke("create_session", agentType="echo", name="first")["session"]["id"]
    b = app.invoke("create_session", agentType="echo", name="second")["session"]["id"]
    listed = app.invoke("list_sessions")
    assert listed["type"] == "session_list"
    assert {a, b} <= {s["id"] for s in listed["sessions"]}


def test_wrong_or_missing_token_is_401(app: App):
    body = b"{}"
    status, resp = app.request(
        "POST", "/invoke/get_state", body, {"Authorization": "Bearer nope"}
    )
    assert status == 401 and resp["error"]["code"] == "UNAUTHORIZED"
    status, resp = app.request("POST", "/invoke/get_state", body)
    assert status == 401
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        websocket.create_connection(
            app.base.replace("http", "ws") + "/events?token=wrong", timeout=30
        )
    assert e.value.status_code == 401
    status, _ = app.request("GET", "/")
    assert status == 401


def test_foreign_origin_or_host_is_403(app: App):
    auth = {"Authorization": f"Bearer {app.token}"}
    status, resp = app.request(
        "POST", "/invoke/get_state", b"{}", {**auth, "Origin": "http://evil.example"}
    )
    assert status == 403 and resp["error"]["code"] == "FORBIDDEN"
    status, resp = app.request(
        "POST", "/invoke/get_state", b"{}", {**auth, "Host": "evil.example"}
    )
    assert status == 403
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        websocket.create_connection(
            app.base.replace("http", "ws") + f"/events?token={app.token}",
            timeout=30,
            origin="http://evil.example",
        )
    assert e.value.status_code == 403


def test_unknown_command_is_a_clear_404(app: App):
    with pytest.raises(InvokeError) as e:
        app.invoke("launch_missiles")
    assert e.value.status == 404 and e.value.code == "UNKNOWN_COMMAND"
    assert "launch_missiles" in e.value.body["error"]["message"]


def test_malformed_json_body_is_a_clear_400(app: App):
    status, resp = app.request(
        "POST",
        "/invoke/list_sessions",
        b"{not json",
        {"Authorization": f"Bearer {app.token}"},
    )
    assert status == 400 and resp["error"]["code"] == "INVALID_JSON"
    status, resp = app.request(
        "POST",
        "/invoke/list_sessions",
        b"[1, 2]",
        {"Authorization": f"Bearer {app.token}"},
    )
    assert status == 400 and resp["error"]["code"] == "INVALID_ARGUMENTS"


def test_invalid_arguments_are_refused_before_reaching_the_gateway(app: App):
    with pytest.raises(InvokeError) as e:
        app.invoke("run_turn", sessionId=42, text="x")
    assert e.value.status == 400 and e.value.code == "INVALID_ARGUMENTS"
    with pytest.raises(InvokeError) as e:
        app.invoke("create_session")
    assert (
        e.value.code == "INVALID_ARGUMENTS"
        and "agentType" in e.value.body["error"]["message"]
    )


def test_gateway_errors_come_back_as_invoke_errors(app: App):
    with pytest.raises(InvokeError) as e:
        app.invoke("join_session", sessionId="no-such-session")
    assert e.value.status == 422 and e.value.code == "GATEWAY_ERROR"
    assert e.value.body["error"]["gatewayCode"] == "SessionNotFound"


def test_not_connected_is_reported(app: App):
    app.invoke("gateway_disconnect")
    wait_until(
        lambda: app.invoke("get_state")["connection"]["state"] == "offline",
        what="offline state",
    )
    with pytest.raises(InvokeError) as e:
        app.invoke("list_sessions")
    assert e.value.status == 409 and e.value.code == "NOT_CONNECTED"
    app.invoke("gateway_connect", url=app.runtime["gatewayUrl"])
    app.wait_connected()
    assert app.invoke("list_sessions")["type"] == "session_list"


def test_runtime_file_and_control_socket(app: App):
    rt = app.runtime
    assert set(rt) == {
        "pid",
        "uiUrl",
        "token",
        "controlSocket",
        "gatewayUrl",
        "gatewayToken",
    }
    assert len(rt["gatewayToken"]) >= 32  # the embedded gateway's per-launch token
    assert rt["pid"] == app.proc.pid
    assert rt["gatewayUrl"].startswith("ws://127.0.0.1:") and rt["gatewayUrl"].endswith(
        "/ws"
    )
    assert rt["token"] in rt["uiUrl"] and rt["uiUrl"].startswith("http://127.0.0.1:")
    mode = stat.S_IMODE(os.stat(rt["controlSocket"]).st_mode)
    assert mode == 0o600


def test_static_files_are_served_to_the_page(app: App):
    import urllib.request

    with urllib.request.urlopen(app.runtime["uiUrl"], timeout=30) as resp:
        assert resp.status == 200
        cookie = resp.headers["Set-Cookie"].split(";")[0]
        assert b"<html" in resp.read().lower()
    req = urllib.request.Request(app.base + "/js/bridge.js", headers={"Cookie": cookie})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200
    status, _ = app.request("GET", "/js/bridge.js")
    assert status == 401
    status, _ = app.request("GET", "/../setup.cfg?token=" + app.token)
    assert status in (401, 404)


def test_events_can_be_batched_for_the_page(app: App):
    sid = app.invoke("create_session", agentType="coding-agent")["session"]["id"]
    app.invoke("join_session", sessionId=sid)
    ws = websocket.create_connection(
        app.base.replace("http", "ws") + f"/events?token={app.token}&batch=1",
        timeout=60,
    )
    app.invoke("run_turn", sessionId=sid, text="/stream 3000")
    texts, batched = [], 0
    while True:
        frame = json.loads(ws.recv())
        frames = frame.get("batch", [frame])
        batched += "batch" in frame
        events = [
            f["payload"]
            for f in frames
            if f["event"] == "gateway-event" and f["payload"].get("sessionId") == sid
        ]
        texts += [e["text"] for e in events if e["type"] == "text_delta"]
        if any(e["type"] == "turn_complete" for e in events):
            break
    ws.close()
    assert "".join(texts) == "".join(f"{i} " for i in range(3000))
    assert batched > 0


def test_a_command_in_flight_at_stop_gets_a_clear_answer_and_later_ones_are_refused(
    tmp_path,
):
    """At stop the bridge answers what is still waiting (503 STOPPING, which the page
    shows as an error it can retry after a restart) instead of dropping the connection,
    and refuses new work."""
    import asyncio
    import threading
    import urllib.error
    import urllib.request

    from dim_actors.uibridge.http import BridgeServer

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    submitted = threading.Event()
    server = BridgeServer(
        tmp_path, "t0k", lambda req_id, command, args: submitted.set()
    )  # never answers
    port = asyncio.run_coroutine_threadsafe(server.start(0), loop).result(30)

    def invoke() -> tuple[int, dict]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/invoke/list_sessions",
            data=b"{}",
            headers={"Authorization": "Bearer t0k"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    answers: list[tuple[int, dict]] = []
    caller = threading.Thread(target=lambda: answers.append(invoke()))
    caller.start()
    try:
        assert submitted.wait(30), "the command never reached the bridge's submit"
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(30)
        caller.join(60)
        assert answers == [
            (
                503,
                {
                    "ok": False,
                    "error": {"code": "STOPPING", "message": "dim-desktop is stopping"},
                },
            )
        ]
    finally:
        loop.call_soon_threadsafe(loop.stop)
