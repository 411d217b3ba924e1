"""Supervision with real processes and real signals: nothing lost, nothing duplicated."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest
from apphelpers import ROOT, App, wait_until, write_settings
from stopchecks import gateway_pid, gone

N = 20000
EXPECTED = "".join(f"{i} " for i in range(N))


def start_stream(app: App, n: int = N, rate: int | None = None) -> tuple[str, str]:
    sid = app.invoke("create_session", agentType="coding-agent")["session"]["id"]
    app.invoke("join_session", sessionId=sid)
    script = f"/stream {n}" + (f" {rate}" if rate else "")
    turn_id = app.invoke("run_turn", sessionId=sid, text=script)["turnId"]
    return sid, turn_id


def turn(app: App, sid: str, turn_id: str) -> dict | None:
    chat = app.invoke("get_state")["chats"].get(sid)
    if not chat:
        return None
    return next((t for t in chat["turns"] if t["turnId"] == turn_id), None)


def delta_count(app: App, sid: str, turn_id: str) -> int:
    t = turn(app, sid, turn_id)
    return t["deltaCount"] if t else 0


def assert_exact(
    app: App, sid: str, turn_id: str, n: int = N, timeout: float = 90
) -> dict:
    t = wait_until(
        lambda: (lambda t: t if t and t["status"] == "complete" else None)(
            turn(app, sid, turn_id)
        ),
        timeout,
        interval=0.2,
        what="the turn to complete in the stores",
    )
    expected = "".join(f"{i} " for i in range(n))
    assert t["deltaCount"] == n, f"{t['deltaCount']} deltas, expected {n}"
    assert t["text"] == expected  # every delta exactly once, in order
    assert t["finalText"] == expected
    return t


def test_kill_9_of_the_connection_process_mid_stream_loses_nothing(app: App):
    old_pid = app.status()["connection"]["pid"]
    sid, turn_id = start_stream(app, N, 4000)
    wait_until(
        lambda: delta_count(app, sid, turn_id) > 1500,
        30,
        what="the stream to be under way",
    )
    os.kill(old_pid, signal.SIGKILL)
    assert_exact(app, sid, turn_id)
    row = app.status()["connection"]
    assert row["pid"] != old_pid and row["restarts"] == 1 and row["state"] == "running"
    assert "exited" in row["lastError"]


def test_a_fault_injected_into_the_router_mid_stream_loses_nothing(app: App):
    sid, turn_id = start_stream(app, N, 4000)
    wait_until(
        lambda: delta_count(app, sid, turn_id) > 1500,
        30,
        what="the stream to be under way",
    )
    out = app.dimctl("crash", "router")
    assert out.returncode == 0, out.stderr
    assert_exact(app, sid, turn_id)
    row = app.status()["router"]
    assert row["restarts"] == 1 and "fault injected" in row["lastError"]
    assert row["duplicatesDropped"] >= 0


@pytest.mark.parametrize(
    "actor", ["journal", "materializer", "watcher", "router", "connection", "uibridge"]
)
def test_dimctl_restart_of_each_actor_mid_stream(dim_home, actor):
    app = App(dim_home)
    try:
        app.wait_connected()
        sid, turn_id = start_stream(app, 8000, 4000)
        wait_until(
            lambda: delta_count(app, sid, turn_id) > 1000,
            30,
            what="the stream to be under way",
        )
        out = app.dimctl("restart", actor)
        assert out.returncode == 0, out.stderr
        assert f"{actor}: restarted" in out.stdout
        assert_exact(app, sid, turn_id, 8000)
        rows = app.status()
        assert rows[actor]["restarts"] == 1 and rows[actor]["state"] == "running"
    finally:
        app.stop()


def test_restart_of_an_unknown_actor_is_a_clear_error(app: App):
    out = app.dimctl("restart", "nosuch")
    assert out.returncode == 2 and "unknown actor 'nosuch'" in out.stderr


def test_restart_intensity_exceeded_escalates_then_stops_non_zero(dim_home):
    # The intensity is max_restarts (3) in restart_period_s. Each crash below is a
    # dimctl process of its own, so on a loaded machine four of them can take longer
    # than the default 5 s: the period is made long enough that they all fall within it
    # (what is tested is the count, not the speed).
    write_settings(dim_home, "restart_period_s = 120.0\n")
    app = App(dim_home)
    app.wait_connected()
    gw_pid = gateway_pid(app)
    # More than 3 crashes in the period: the whole tree restarts once.
    for _ in range(4):
        assert app.dimctl("crash", "journal").returncode == 0
    wait_until(
        lambda: app.status()["router"]["restarts"] >= 1,
        60,
        what="the whole tree to restart",
    )
    assert app.proc.poll() is None
    # Failing again right after: the supervisor gives up, stops cleanly and exits
    # non-zero.
    for _ in range(4):
        r = app.dimctl("crash", "journal")
        if r.returncode != 0:
            break
    code = app.proc.wait(timeout=60)
    assert code == 3
    last = app.output().strip().splitlines()[-1]  # one line says why
    assert last.startswith("dim-desktop: stopped: actor journal kept failing"), last
    assert not (dim_home / "run" / "runtime.json").exists()
    wait_until(lambda: gone(gw_pid), what="the dev gateway to exit")


def test_logs_follow_type_and_since(app: App):
    # The stream starts while dimctl may still be starting: its deltas reach it from the
    # history (--since counts back from when dimctl starts, so the window must reach
    # back to the stream however slowly a loaded machine starts dimctl; this app has
    # logged no other text_delta) or live, each once.
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dim_actors.cli.dimctl",
            "logs",
            "router",
            "--follow",
            "--json",
            "--type",
            "text_delta",
            "--since",
            "10m",
        ],
        env=app.env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in follower.stdout:
            lines.put(line)
        lines.put(None)  # the end of dimctl's output

    threading.Thread(target=read, daemon=True).start()
    try:
        sid, turn_id = start_stream(app, 50)
        got = []
        while len(got) < 50:
            try:
                line = lines.get(timeout=60)
            except queue.Empty:
                raise AssertionError(
                    f"dimctl logs --follow showed {len(got)} of the 50 deltas"
                ) from None
            assert line is not None, "dimctl logs --follow ended early"
            got.append(json.loads(line))
        assert all(g["body"]["type"] == "text_delta" for g in got)
        assert "".join(g["body"]["raw"]["text"] for g in got) == "".join(
            f"{i} " for i in range(50)
        )
    finally:
        follower.terminate()
        follower.wait(timeout=30)
    everything = app.dimctl("logs", "router", "--json", "--type", "text_delta")
    assert len(everything.stdout.splitlines()) == 50
    recent = app.dimctl("logs", "router", "--json", "--type", "invoke", "--limit", "2")
    assert len(recent.stdout.splitlines()) == 2


def test_logs_since_type_and_limit_filter_what_is_shown(app: App):
    window = 5.0
    for i in range(3):
        app.invoke("create_session", agentType="echo", name=f"old-{i}")
    mark = time.time()
    # A condition on the wall clock, not a sleep: everything above is now older than the
    # window.
    wait_until(
        lambda: time.time() > mark + window + 0.5,
        window + 10,
        interval=0.1,
        what="the window to pass",
    )
    for i in range(3):
        app.invoke("create_session", agentType="echo", name=f"new-{i}")

    def logs(*args: str) -> list[dict]:
        out = app.dimctl("logs", "router", "--json", *args)
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines()]

    def created(lines: list[dict]) -> list[str]:
        return [
            entry["body"]["args"]["name"]
            for entry in lines
            if entry["type"] == "invoke"
            and entry["body"]["command"] == "create_session"
        ]

    everything = logs()
    assert created(everything) == ["old-0", "old-1", "old-2", "new-0", "new-1", "new-2"]
    assert {"invoke", "connection_state"} <= {entry["type"] for entry in everything}
    # A window reaching back to the mark from when dimctl starts: none of the old ones,
    # all of the new ones (made `window` s after the mark) as long as dimctl starts
    # within that time, however long the calls above took on a loaded machine.
    recent = logs("--since", f"{time.time() - mark:.3f}s")
    assert created(recent) == ["new-0", "new-1", "new-2"] and all(
        entry["ts"] > mark for entry in recent
    )
    invokes = logs("--type", "invoke")
    assert {entry["type"] for entry in invokes} == {"invoke"} and created(
        invokes
    ) == created(everything)
    assert created(logs("--type", "invoke", "--limit", "2")) == [
        "new-1",
        "new-2",
    ]  # the newest, oldest first
    last3 = [entry["id"] for entry in logs("--limit", "3")]
    assert (
        len(last3) == 3 and last3 == sorted(last3) and last3[0] >= everything[-3]["id"]
    )  # (more may arrive)


def test_a_hung_actor_is_detected_and_replaced_without_losing_messages(dim_home):
    write_settings(dim_home, "hang_timeout_s = 2.0\n")
    app = App(dim_home)
    try:
        app.wait_connected()
        sid, turn_id = start_stream(app, 4000, 2000)
        wait_until(
            lambda: delta_count(app, sid, turn_id) > 500,
            30,
            what="the stream to be under way",
        )
        assert app.dimctl("crash", "router", "--hang", "30").returncode == 0
        wait_until(
            lambda: app.status()["router"]["restarts"] == 1,
            60,
            what="the hung router to be replaced",
        )
        assert "hung" in app.status()["router"]["lastError"]
        assert_exact(app, sid, turn_id, 4000)
    finally:
        app.stop()


def test_actor_commands_from_the_ui(app: App):
    rows = app.invoke("actor_status")
    assert [r["name"] for r in rows] == [
        "journal",
        "materializer",
        "watcher",
        "router",
        "connection",
        "uibridge",
    ]
    assert app.invoke("restart_actor", name="journal") == {"restarting": "journal"}
    wait_until(
        lambda: app.status()["journal"]["restarts"] == 1, 60, what="the journal restart"
    )
    logs = app.invoke("actor_logs", name="router", types=["invoke"], limit=3)
    assert 1 <= len(logs) <= 3 and all(entry["type"] == "invoke" for entry in logs)
    from apphelpers import InvokeError

    with pytest.raises(InvokeError) as e:
        app.invoke("restart_actor", name="nope")
    assert e.value.code == "INVALID_ARGUMENTS"
    events = app.events()
    frame = events.wait_for(
        lambda fs: next((f for f in fs if f["event"] == "actor-status"), None),
        what="a live actor-status event",
    )
    assert {r["name"] for r in frame["payload"]} >= {"router", "connection"}
