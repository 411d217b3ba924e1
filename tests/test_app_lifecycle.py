"""Starting and stopping dim-desktop as a user does: runtime.json, single instance, dimctl."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from apphelpers import ROOT, App, wait_until


def test_status_lists_actors_and_the_connection_runs_in_its_own_process(app: App):
    rows = app.status()
    assert list(rows) == ["journal", "materializer", "watcher", "router", "connection", "uibridge"]
    for name, row in rows.items():
        assert row["state"] == "running", row
        assert row["restarts"] == 0 and isinstance(row["pid"], int)
    supervisor_pid = app.runtime["pid"]
    assert rows["router"]["pid"] == supervisor_pid
    assert rows["connection"]["pid"] != supervisor_pid
    assert rows["connection"]["connection"] == "connected"
    os.kill(rows["connection"]["pid"], 0)  # a real, live process

    text = app.dimctl("status")
    assert text.returncode == 0
    assert "connection" in text.stdout and "RESTARTS" in text.stdout


def test_second_instance_on_the_same_home_says_so_and_starts_nothing(app: App):
    # With --no-browser it only reports the running one and fails; without, it opens that one's UI
    # and succeeds (tests/test_desktop.py).
    second = subprocess.run([sys.executable, "-m", "dim_actors.app", "--no-browser"], cwd=ROOT,
                            env=app.env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert "already running" in second.stdout
    assert str(app.runtime["pid"]) in second.stdout
    assert app.proc.poll() is None


def test_clean_stop_removes_runtime_json_and_stops_every_process(dim_home):
    a = App(dim_home)
    a.wait_connected()
    conn_pid = a.status()["connection"]["pid"]
    assert a.stop() == 0
    assert not (dim_home / "run" / "runtime.json").exists()
    assert "stopped" in a.output()

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_until(lambda: gone(conn_pid), 10, what="the connection process to exit")


def test_dimctl_stop_ends_the_app(dim_home):
    a = App(dim_home)
    out = a.dimctl("stop")
    assert out.returncode == 0, out.stderr
    assert a.proc.wait(timeout=40) == 0
    assert not (dim_home / "run" / "runtime.json").exists()


def test_dimctl_without_a_running_instance_exits_2(dim_home):
    out = App.__new__(App)
    env = {**os.environ, "DIM_HOME": str(dim_home)}
    r = subprocess.run([sys.executable, "-m", "dim_actors.cli.dimctl", "status"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "no running dim-desktop" in r.stderr
    # A runtime.json left by a crash, pointing at a dead socket: a clear "stale" error.
    (dim_home / "run").mkdir(exist_ok=True)
    (dim_home / "run" / "runtime.json").write_text(json.dumps({
        "pid": 999999, "uiUrl": "http://127.0.0.1:1/?token=x", "token": "x",
        "controlSocket": str(dim_home / "run" / "control.sock"), "gatewayUrl": "ws://127.0.0.1:1/ws"}))
    r = subprocess.run([sys.executable, "-m", "dim_actors.cli.dimctl", "status"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "stale" in r.stderr


def test_dimctl_logs_shows_what_an_actor_received(app: App):
    sid = app.invoke("create_session", agentType="echo")["session"]["id"]
    app.invoke("join_session", sessionId=sid)
    app.invoke("run_turn", sessionId=sid, text="log me")
    wait_until(lambda: any(t["status"] == "complete" for t in app.invoke("get_state")["chats"][sid]["turns"]),
               what="the turn to complete")
    out = app.dimctl("logs", "router", "--json")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert lines and all({"id", "ts", "sender", "recipient", "type", "body"} <= set(l) for l in lines)
    assert all(l["recipient"] == "router" for l in lines)
    ids = [l["id"] for l in lines]
    assert ids == sorted(ids)
    kinds = {l["type"] for l in lines}
    assert {"invoke", "gateway_event", "connection_state"} <= kinds
    deltas = [l for l in lines if l["type"] == "gateway_event" and l["body"]["raw"]["type"] == "text_delta"]
    assert "".join(d["body"]["raw"]["text"] for d in deltas).endswith("log me")

    human = app.dimctl("logs", "uibridge")
    assert human.returncode == 0 and "router -> uibridge" in human.stdout

    bad = app.dimctl("logs", "nosuchactor")
    assert bad.returncode == 2 and "unknown actor" in bad.stderr


def test_message_logs_survive_a_restart_of_the_app(dim_home):
    a = App(dim_home)
    a.wait_connected()
    a.invoke("create_session", agentType="echo", name="before-the-restart")
    assert a.stop() == 0
    b = App(dim_home)
    try:
        b.wait_connected()
        out = b.dimctl("logs", "router", "--type", "invoke", "--json")
        bodies = [json.loads(line)["body"] for line in out.stdout.splitlines()]
        assert any(body.get("args", {}).get("name") == "before-the-restart" for body in bodies)
    finally:
        b.stop()
