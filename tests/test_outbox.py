"""Commands issued while the gateway is out of reach wait in a durable outbox."""

from __future__ import annotations

import json

import pytest
from apphelpers import App, GatewayProcess, InvokeError, wait_until
from gateway_helpers import authenticated_socket


def gateway_events(url: str, sid: str, token: str = "") -> list[dict]:
    ws = authenticated_socket(url, token)
    try:
        events, after = [], 0
        while True:
            ws.send(
                json.dumps({"type": "get_events", "sessionId": sid, "afterSeq": after})
            )
            while True:
                reply = json.loads(ws.recv())
                if reply["type"] == "event_list":
                    break
            events += reply["events"]
            if not reply["hasMore"] or not reply["events"]:
                return events
            after = reply["events"][-1]["seq"]
    finally:
        ws.close()


def go_offline(app: App) -> None:
    app.invoke("gateway_disconnect")
    wait_until(
        lambda: app.invoke("get_state")["connection"]["state"] == "offline",
        what="offline",
    )


def test_a_turn_queued_offline_is_sent_once_after_reconnecting(app: App):
    sid = app.invoke("create_session", agentType="echo")["session"]["id"]
    app.invoke("join_session", sessionId=sid)
    go_offline(app)
    queued = app.invoke("run_turn", sessionId=sid, text="sent later")
    assert queued["type"] == "queued" and queued["command"] == "run_turn"
    outbox = app.invoke("get_state")["outbox"]
    assert [i["id"] for i in outbox] == [queued["outboxId"]] and outbox[0][
        "state"
    ] == "pending"
    assert (
        outbox[0]["message"]["text"] == "sent later"
        and outbox[0]["message"]["clientTurnId"]
    )

    app.invoke("gateway_connect", url=app.runtime["gatewayUrl"])
    wait_until(
        lambda: any(
            t["status"] == "complete" and t["finalText"] == "sent later"
            for t in app.invoke("get_state")["chats"].get(sid, {}).get("turns", [])
        ),
        60,
        what="the queued turn to run",
    )
    wait_until(
        lambda: app.invoke("get_state")["outbox"] == [], what="the outbox to empty"
    )
    started = [
        e
        for e in gateway_events(
            app.runtime["gatewayUrl"], sid, app.runtime["gatewayToken"]
        )
        if e["type"] == "turn_started"
    ]
    assert len(started) == 1


def test_queued_commands_survive_an_app_restart_and_run_exactly_once(
    dim_home, tmp_path
):
    gw = GatewayProcess(tmp_path / "gw").start()
    try:
        app = App(dim_home, ["--gateway", gw.url])
        app.wait_connected()
        sid = app.invoke("create_session", agentType="echo")["session"]["id"]
        app.invoke("join_session", sessionId=sid)
        gw.kill()
        wait_until(
            lambda: app.invoke("get_state")["connection"]["state"] != "connected",
            60,
            what="the drop",
        )
        first = app.invoke("run_turn", sessionId=sid, text="one")
        second = app.invoke("run_turn", sessionId=sid, text="two")
        assert first["type"] == second["type"] == "queued"
        assert app.stop() == 0

        gw.start()
        app = App(dim_home, ["--gateway", gw.url])
        try:
            wait_until(
                lambda: app.invoke("get_state")["outbox"] == [],
                60,
                what="the outbox to drain",
            )
            wait_until(
                lambda: (
                    sum(
                        e["type"] == "turn_complete"
                        for e in gateway_events(gw.url, sid)
                    )
                    == 2
                ),
                60,
                what="both turns to complete",
            )
            started = [
                e["text"]
                for e in gateway_events(gw.url, sid)
                if e["type"] == "turn_started"
            ]
            assert started == ["one", "two"]  # in order, each once
        finally:
            app.stop()
    finally:
        gw.stop()


def test_a_queued_command_can_be_cancelled(app: App):
    sid = app.invoke("create_session", agentType="echo")["session"]["id"]
    go_offline(app)
    queued = app.invoke("run_turn", sessionId=sid, text="never mind")
    result = app.invoke("outbox_cancel", id=queued["outboxId"])
    assert result["outbox"] == []
    with pytest.raises(InvokeError) as e:
        app.invoke("outbox_cancel", id=queued["outboxId"])
    assert e.value.code == "NOT_FOUND"
    app.invoke("gateway_connect", url=app.runtime["gatewayUrl"])
    app.wait_connected()
    assert not [
        e
        for e in gateway_events(
            app.runtime["gatewayUrl"], sid, app.runtime["gatewayToken"]
        )
        if e["type"] == "turn_started"
    ]


def test_reads_are_refused_not_queued_while_offline(app: App):
    go_offline(app)
    with pytest.raises(InvokeError) as e:
        app.invoke("list_files", sessionId="whatever")
    assert e.value.status == 409 and e.value.code == "NOT_CONNECTED"
    assert app.invoke("get_state")["outbox"] == []


@pytest.mark.parametrize(
    "late", [False, True], ids=["prompt gateway", "gateway reading the burst late"]
)
def test_the_client_paces_itself_under_the_gateways_rate_limit(
    dim_home, tmp_path, late
):
    """The gateway allows 8 messages in 10 s; the client is told the same and must never exceed it.
    The gateway counts a frame when it reads it, and a loaded one reads a burst late: paced by our
    send times alone, the 9th request reached it while the 1st still counted there (RATE_LIMITED).
    A request's place in the window runs from its answer."""
    import concurrent.futures

    from apphelpers import write_settings
    from misbehaving_gateway import LateReadingProxy

    gw = GatewayProcess(tmp_path / "gw", args=["--rate-limit", "8"]).start()
    proxy = LateReadingProxy(gw.port) if late else None
    write_settings(
        dim_home,
        "send_rate_limit = 8\nsend_rate_window_s = 10.0\nrequest_timeout_s = 60.0\n",
    )
    app = App(dim_home, ["--gateway", proxy.url if proxy else gw.url])
    try:
        app.wait_connected()
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            results = list(
                pool.map(lambda i: app.invoke("list_sessions", timeout=90), range(12))
            )
        # none refused as RATE_LIMITED
        assert all(r["type"] == "session_list" for r in results)
    finally:
        app.stop()
        if proxy:
            proxy.close()
        gw.stop()


@pytest.mark.parametrize("killed", ["before the answer", "after the answer"])
def test_a_queued_turn_resent_after_kill_9_of_the_connection_process_runs_once(
    dim_home, tmp_path, killed
):
    import os
    import signal

    from misbehaving_gateway import HoldingProxy

    gw = GatewayProcess(tmp_path / "gw").start()
    proxy = HoldingProxy(gw.port)
    app = App(dim_home, ["--gateway", proxy.url])
    try:
        app.wait_connected()
        sid = app.invoke("create_session", agentType="echo")["session"]["id"]
        app.invoke("join_session", sessionId=sid)
        go_offline(app)
        queued = app.invoke("run_turn", sessionId=sid, text="exactly once")
        assert queued["type"] == "queued"
        # The next connection is watched: once the outbox's run_turn has reached the gateway (and,
        # in the second case, the gateway's turn_started has been passed back), nothing more reaches
        # the client. So the process dies with the turn run and its item still in the outbox
        # (certainly before the answer; maybe just after it in the second case).
        if killed == "before the answer":
            proxy.hold_after(b'"type":"run_turn"', "up")
        else:
            proxy.hold_after(b'"type":"turn_started"', "down")
        pid = app.status()["connection"]["pid"]
        app.invoke("gateway_connect", url=proxy.url)
        assert proxy.held.wait(60), "the outbox never sent the run_turn"
        os.kill(pid, signal.SIGKILL)
        # The supervisor restarts the connection process; it resends what is still in the outbox,
        # with the same clientTurnId, and the gateway answers with the turn it already ran.
        wait_until(
            lambda: app.status()["connection"]["pid"] != pid,
            60,
            what="the connection process to restart",
        )
        app.wait_connected()
        wait_until(
            lambda: app.invoke("get_state")["outbox"] == [],
            60,
            what="the outbox to empty",
        )
        turns = wait_until(
            lambda: (
                lambda ts: (
                    ts if ts and all(t["status"] == "complete" for t in ts) else None
                )
            )(app.invoke("get_state")["chats"].get(sid, {}).get("turns", [])),
            60,
            what="the turn to complete",
        )
        assert [(t["userText"], t["text"]) for t in turns] == [
            ("exactly once", "exactly once")
        ]
        started = [
            e for e in gateway_events(gw.url, sid) if e["type"] == "turn_started"
        ]
        assert [e["text"] for e in started] == [
            "exactly once"
        ]  # run by the gateway once, not twice
        sent = [json.loads(f) for f in proxy.client_frames if b'"type":"run_turn"' in f]
        # every send carried the same client id
        assert len({m["clientTurnId"] for m in sent}) == 1
        if killed == "before the answer":
            # sent, then sent again by the new process: the case under test
            assert len(sent) == 2
        else:
            assert len(sent) in (
                1,
                2,
            )  # the answer may have been taken in just before the kill
        assert app.status()["connection"]["restarts"] == 1
    finally:
        app.stop()
        proxy.close()
        gw.stop()
