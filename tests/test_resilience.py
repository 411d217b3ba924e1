"""The connection survives a gateway that crashes, drops the socket or goes silent,
losing nothing."""

from __future__ import annotations

import os
import subprocess

import pytest
from apphelpers import App, GatewayProcess, wait_until, write_settings
from test_outbox import gateway_events
from test_supervision import turn


def stream_text(*counts: int) -> str:
    return "".join("".join(f"{i} " for i in range(n)) for n in counts)


def run_script(app: App, script: str) -> tuple[str, str]:
    sid = app.invoke("create_session", agentType="coding-agent")["session"]["id"]
    app.invoke("join_session", sessionId=sid)
    return sid, app.invoke("run_turn", sessionId=sid, text=script)["turnId"]


# A turn's final statuses in the stores. Not `ended` (docs/contracts.md §3): that one
# only says a state_snapshot (the re-join after a reconnect) found the turn no longer
# running before its real end event arrived, and it lasts only until the catch-up brings
# that `turn_complete` / `turn_error`.
FINAL = ("complete", "error", "stopped")


def finished(app: App, sid: str, turn_id: str, timeout: float) -> dict:
    return wait_until(
        lambda: (lambda t: t if t and t["status"] in FINAL else None)(
            turn(app, sid, turn_id)
        ),
        timeout,
        interval=0.2,
        what="the turn's end event to reach the stores",
    )


@pytest.fixture
def gateway(tmp_path):
    gw = GatewayProcess(tmp_path / "gateway-data").start()
    yield gw
    gw.stop()


@pytest.fixture
def app_on(dim_home, gateway):
    a = App(dim_home, ["--gateway", gateway.url])
    a.wait_connected()
    yield a
    a.stop()


def test_the_gateway_dropping_the_socket_mid_turn_loses_nothing(app_on: App):
    sid, turn_id = run_script(app_on, "/stream 3000 3000\n/drop\n/stream 3000 3000")
    t = finished(app_on, sid, turn_id, 60)
    assert t["status"] == "complete"
    assert (
        t["deltaCount"] == 6000
        and t["text"] == stream_text(3000, 3000) == t["finalText"]
    )
    assert app_on.status()["connection"]["reconnects"] >= 1


def test_the_gateway_going_silent_is_detected_and_nothing_is_lost(
    dim_home, gateway: GatewayProcess
):
    # Past a staleness limit set in the settings (it wins over the one derived from the
    # gateway's heartbeat): the client must notice on its own (no close, no error).
    write_settings(dim_home, "stale_after_s = 20.0\nping_interval_s = 5.0\n")
    app_on = App(dim_home, ["--gateway", gateway.url])
    try:
        app_on.wait_connected()
        assert (
            app_on.invoke("get_state")["connection"]["traits"]["staleAfterMs"] == 20000
        )
        sid, turn_id = run_script(
            app_on, "/stream 1000 2000\n/silence 30000\n/stream 1000 2000"
        )
        # (If the staleness were not noticed before the silence ends, the stream would
        # resume on the same socket and this would time out: the generous wait cannot
        # hide a missed detection.)
        wait_until(
            lambda: app_on.invoke("get_state")["connection"]["state"] != "connected",
            90,
            interval=0.5,
            what="the stale connection to be noticed",
        )
        t = finished(app_on, sid, turn_id, 60)
        assert t["status"] == "complete"
        assert t["deltaCount"] == 2000 and t["text"] == stream_text(1000, 1000)
        assert app_on.status()["connection"]["reconnects"] >= 1
    finally:
        app_on.stop()


def test_the_gateway_killed_and_restarted_mid_turn(
    app_on: App, gateway: GatewayProcess
):
    sid, turn_id = run_script(app_on, "/stream 20000 4000")
    wait_until(
        lambda: (turn(app_on, sid, turn_id) or {}).get("deltaCount", 0) > 2000,
        30,
        what="the stream to be under way",
    )
    gateway.kill()
    wait_until(
        lambda: app_on.invoke("get_state")["connection"]["state"] != "connected",
        60,
        what="the drop",
    )
    gateway.start()
    app_on.wait_connected(60)
    # The gateway lost the turn with its process and, restarted, failed it (`turn_error`
    # GatewayRestarted), unless the stream had already completed before the kill.
    # Whichever it was, the stores end the turn exactly as the gateway did: the
    # re-join's snapshot may mark it `ended` first, but the catch-up must still bring
    # the real end event (a turn stuck at `ended` times out).
    t = finished(app_on, sid, turn_id, 60)
    stored = [e for e in gateway_events(gateway.url, sid) if e.get("turnId") == turn_id]
    final = stored[-1]
    assert final["type"] in ("turn_error", "turn_complete")
    if final["type"] == "turn_error":
        assert t["status"] == "error" and t["error"] == {
            "code": final["code"],
            "message": final["message"],
        }
    else:
        assert t["status"] == "complete" and t["finalText"] == final["finalText"]
    # What did arrive arrived once, in order, and every delta the gateway kept is in the
    # stores (the stores may hold more: deltas sent before the crash but never stored
    # there).
    n = t["deltaCount"]
    assert n > 2000 and t["text"] == stream_text(n)
    assert n >= sum(e["type"] == "text_delta" for e in stored)
    assert app_on.invoke("get_state")["connection"]["state"] == "connected"
    # And the session works again.
    again = app_on.invoke("run_turn", sessionId=sid, text="after the crash")
    done = finished(app_on, sid, again["turnId"], 60)
    assert done["status"] == "complete" and done["text"] == "after the crash"


def test_connection_state_and_reconnects_are_visible(
    app_on: App, gateway: GatewayProcess
):
    events = app_on.events()
    gateway.kill()
    frame = events.wait_for(
        lambda fs: next(
            (
                f
                for f in fs
                if f["event"] == "connection-state"
                and f["payload"]["state"] == "reconnecting"
            ),
            None,
        ),
        60,
        what="a reconnecting state",
    )
    assert frame["payload"]["retryInMs"] is not None and frame["payload"]["detail"]
    assert app_on.status()["connection"]["connection"] in ("reconnecting", "connecting")
    gateway.start()
    app_on.wait_connected(60)
    assert app_on.status()["connection"]["reconnects"] >= 1


def test_joining_a_long_session_and_running_a_turn_at_once_loses_nothing(
    dim_home, tmp_path, gateway
):
    first = App(dim_home, ["--gateway", gateway.url])
    try:
        first.wait_connected()
        sid, turn_id = run_script(first, "/stream 30000")
        finished(first, sid, turn_id, 120)
    finally:
        first.stop()
    other_home = tmp_path / "other-home"
    other_home.mkdir()
    second = App(other_home, ["--gateway", gateway.url])
    try:
        second.wait_connected()
        # The join's catch-up (30,000 events) and a new turn's answer race: the answer
        # must wait.
        second.invoke("join_session", sessionId=sid)
        new_turn = second.invoke("run_turn", sessionId=sid, text="/stream 500")[
            "turnId"
        ]
        new = finished(second, sid, new_turn, 120)
        assert new["deltaCount"] == 500 and new["text"] == stream_text(500)
        # The first join brought the newest 10,000 events, all of the old turn's: begun
        # before them, it stays at the gateway, and comes from there whole.
        chat = second.invoke("get_state")["chats"][sid]
        assert [t["turnId"] for t in chat["turns"]] == [new_turn]
        assert chat["olderAtGateway"] > 0
        older = second.invoke("get_turns", sessionId=sid, beforeTurnId=new_turn)
        assert [t["turnId"] for t in older["turns"]] == [turn_id]
        old = older["turns"][0]
        assert old["deltaCount"] == 30000 and old["text"] == stream_text(30000)
        assert old["status"] == "complete" and older["olderAtGateway"] == 0
    finally:
        second.stop()


def test_spill_files_of_dead_connection_processes_are_removed_at_start(dim_home):
    # What a connection process killed while spilling leaves behind. Its events were
    # bound for a pipe that died with it; the new process resumes by seq from the
    # gateway, so the file is only litter.
    spill_dir = dim_home / "data" / "spill"
    spill_dir.mkdir(parents=True)
    gone = subprocess.Popen(["true"])
    gone.wait()  # reaped: that pid no longer exists
    stale = spill_dir / f"uplink-{gone.pid}.spill"
    stale.write_bytes(b"\x05\x00\x00\x00hello" * 1000)
    # A live process's file is not touched, whoever it belongs to (here: this test's own
    # pid).
    live = spill_dir / f"uplink-{os.getpid()}.spill"
    live.write_bytes(b"in use")
    app = App(dim_home)
    try:
        app.wait_connected()  # the connection process cleans up before it connects
        assert not stale.exists()
        assert live.read_bytes() == b"in use"
    finally:
        app.stop()
