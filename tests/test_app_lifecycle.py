"""Starting and stopping dim-desktop as a user does: runtime.json, single instance,
dimctl."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from apphelpers import ROOT, App, GatewayProcess, free_port, wait_until
from stopchecks import assert_stop_ends_everything, gateway_pid, gone, signal_now


def test_status_lists_actors_and_the_connection_runs_in_its_own_process(app: App):
    rows = app.status()
    assert list(rows) == [
        "journal",
        "materializer",
        "watcher",
        "router",
        "connection",
        "uibridge",
    ]
    for row in rows.values():
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
    # With --no-browser it only reports the running one and fails; without, it opens
    # that one's UI and succeeds (tests/test_desktop.py).
    second = subprocess.run(
        [sys.executable, "-m", "dim_actors.app", "--no-browser"],
        cwd=ROOT,
        env=app.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1
    assert "already running" in second.stdout
    assert str(app.runtime["pid"]) in second.stdout
    assert app.proc.poll() is None


@pytest.mark.parametrize(
    "sig, group",
    [
        (
            signal.SIGINT,
            True,
        ),  # Ctrl-C in the terminal: the whole process group gets it
        (
            signal.SIGTERM,
            True,
        ),  # `kill -TERM -PGID`, or a session manager ending every process of the app
        (signal.SIGTERM, False),  # `kill PID`
    ],
    ids=["SIGINT-to-the-group", "SIGTERM-to-the-group", "SIGTERM-to-the-app"],
)
def test_a_stop_signal_ends_the_app_its_connection_and_its_gateway_in_time(
    dim_home, sig, group
):
    # Under setsid, the app leads a process group of its own, as in a terminal: the
    # connection process is in it (and gets the signal too); the dev gateway has a
    # session of its own.
    a = App(dim_home, prefix=["setsid"])
    try:
        a.wait_connected()
        send = (
            (lambda: os.killpg(a.proc.pid, sig))
            if group
            else (lambda: a.proc.send_signal(sig))
        )
        assert_stop_ends_everything(a, lambda: signal_now(send))
    finally:
        a.stop()


def test_dimctl_stop_ends_the_app(dim_home):
    a = App(dim_home)
    try:
        a.wait_connected()

        def stop() -> None:
            out = a.dimctl("stop")
            assert out.returncode == 0, out.stderr

        assert_stop_ends_everything(a, stop)
    finally:
        a.stop()


def test_dimctl_without_a_running_instance_exits_2(dim_home):
    env = {**os.environ, "DIM_HOME": str(dim_home)}
    r = subprocess.run(
        [sys.executable, "-m", "dim_actors.cli.dimctl", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2 and "no running dim-desktop" in r.stderr
    # A runtime.json left by a crash, pointing at a dead socket: a clear "stale" error.
    (dim_home / "run").mkdir(exist_ok=True)
    (dim_home / "run" / "runtime.json").write_text(
        json.dumps(
            {
                "pid": 999999,
                "uiUrl": "http://127.0.0.1:1/?token=x",
                "token": "x",
                "controlSocket": str(dim_home / "run" / "control.sock"),
                "gatewayUrl": "ws://127.0.0.1:1/ws",
            }
        )
    )
    r = subprocess.run(
        [sys.executable, "-m", "dim_actors.cli.dimctl", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2 and "stale" in r.stderr


class FakeControlSocket:
    """A real Unix socket where dim-desktop's control socket should be, with
    runtime.json pointing at it: it reads each request line, then sends `answer` and
    closes, or (None) never answers."""

    def __init__(self, home: Path, answer: bytes | None):
        (home / "run").mkdir(exist_ok=True)
        self.path = home / "run" / "control.sock"
        self.answer = answer
        self.conns: list[socket.socket] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(self.path))
        self.sock.listen()
        (home / "run" / "runtime.json").write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "uiUrl": "http://127.0.0.1:1/?token=x",
                    "token": "x",
                    "controlSocket": str(self.path),
                    "gatewayUrl": "ws://127.0.0.1:1/ws",
                }
            )
        )
        self.env = {**os.environ, "DIM_HOME": str(home)}
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            with conn.makefile("rb") as f:
                f.readline()
            if self.answer is not None:
                conn.sendall(self.answer)
                conn.close()

    def dimctl(
        self, *args: str, prefix: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*prefix, sys.executable, "-m", "dim_actors.cli.dimctl", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def assert_one_line_error(r: subprocess.CompletedProcess, text: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert (
        r.stderr.count("\n") == 1
        and r.stderr.startswith("dimctl: ")
        and text in r.stderr
    ), r.stderr


@pytest.mark.parametrize(
    "args,answer",
    [
        (["status"], b"this is not json\n"),
        (["status"], b'{"ok": "perhaps"}\n'),  # JSON, but not a reply
        (["status"], b"\xff\xfe\n"),
        (["logs", "router"], b'{"ok": true}\nnot an envelope\n'),
        (["logs", "router", "--json"], b'{"ok": true}\nnot an envelope\n'),
    ],
)
def test_dimctl_says_an_undecodable_answer_in_one_line(dim_home, args, answer):
    server = FakeControlSocket(dim_home, answer)
    try:
        assert_one_line_error(
            server.dimctl(*args), "undecodable reply from dim-desktop"
        )
    finally:
        server.close()


def test_dimctl_gives_up_on_a_control_socket_that_never_answers(dim_home):
    server = FakeControlSocket(dim_home, None)
    try:
        assert_one_line_error(
            server.dimctl("--timeout", "1", "status"), "did not answer within 1s"
        )
    finally:
        server.close()


def test_dimctl_without_permission_on_the_control_socket(dim_home):
    server = FakeControlSocket(dim_home, None)
    try:
        server.path.chmod(0)
        prefix: tuple[str, ...] = ()
        if os.geteuid() == 0:
            # Root passes any file mode through CAP_DAC_OVERRIDE: run dimctl as root
            # without it (and without CAP_DAC_READ_SEARCH), so the kernel checks the
            # socket's mode as for anyone else. setpriv is util-linux's, which Debian
            # (the test machine's system) always has.
            assert shutil.which("setpriv"), (
                "running as root without setpriv (util-linux): cannot drop CAP_DAC_OVERRIDE"
            )
            caps = "-dac_override,-dac_read_search"
            prefix = ("setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}")
        assert_one_line_error(
            server.dimctl("status", prefix=prefix),
            "permission denied on the control socket",
        )
    finally:
        server.close()


def test_dimctl_logs_shows_what_an_actor_received(app: App):
    sid = app.invoke("create_session", agentType="echo")["session"]["id"]
    app.invoke("join_session", sessionId=sid)
    app.invoke("run_turn", sessionId=sid, text="log me")
    wait_until(
        lambda: any(
            t["status"] == "complete"
            for t in app.invoke("get_state")["chats"][sid]["turns"]
        ),
        what="the turn to complete",
    )
    out = app.dimctl("logs", "router", "--json")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert lines and all(
        {"id", "ts", "sender", "recipient", "type", "body"} <= set(entry)
        for entry in lines
    )
    assert all(entry["recipient"] == "router" for entry in lines)
    ids = [entry["id"] for entry in lines]
    assert ids == sorted(ids)
    kinds = {entry["type"] for entry in lines}
    assert {"invoke", "gateway_event", "connection_state"} <= kinds
    deltas = [
        entry
        for entry in lines
        if entry["type"] == "gateway_event"
        and entry["body"]["raw"]["type"] == "text_delta"
    ]
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
        assert any(
            body.get("args", {}).get("name") == "before-the-restart" for body in bodies
        )
    finally:
        b.stop()


def children(pid: int) -> list[str]:
    """The command lines of `pid`'s live child processes."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(
                    (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                )
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            pass
    return found


def test_gateway_flag_with_dim_token_uses_that_gateway_and_starts_no_dev_gateway(
    tmp_path: Path,
):
    gw = GatewayProcess(tmp_path / "gw", args=["--token", "s3cret"]).start()
    home = tmp_path / "home"
    home.mkdir()
    app = App(home, ["--gateway", gw.url], env={"DIM_TOKEN": "s3cret"})
    try:
        app.wait_connected()  # authenticated with DIM_TOKEN: the gateway requires it
        assert app.runtime["gatewayUrl"] == gw.url
        assert app.invoke("get_state")["connection"]["identity"], (
            "authenticated with an identity"
        )
        kids = children(app.proc.pid)
        assert any("dim-connection" in k or "multiprocessing" in k for k in kids), kids
        assert not any("devgateway" in k for k in kids), kids
    finally:
        assert app.stop() == 0
        gw.stop()


def test_ui_port_flag_serves_the_ui_on_that_port(dim_home: Path):
    port = free_port()
    app = App(dim_home, ["--ui-port", str(port)])
    try:
        assert app.runtime["uiUrl"].startswith(f"http://127.0.0.1:{port}/?token=")
        with urllib.request.urlopen(app.runtime["uiUrl"], timeout=60) as resp:
            assert resp.status == 200 and b"<html" in resp.read().lower()
    finally:
        assert app.stop() == 0


def test_a_taken_ui_port_is_a_clear_error(dim_home: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "dim_actors.app",
                "--no-browser",
                "--ui-port",
                str(port),
            ],
            cwd=ROOT,
            env={**os.environ, "DIM_HOME": str(dim_home)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode != 0
    assert str(port) in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (dim_home / "run" / "runtime.json").exists()


def test_kill_9_of_the_app_ends_its_embedded_dev_gateway_too(dim_home: Path):
    app = App(dim_home)
    app.wait_connected()
    gw = gateway_pid(app)
    conn = app.status()["connection"]["pid"]
    app.proc.kill()
    app.proc.wait(10)
    app.log.close()
    # No orphan keeps the gateway's data: the next start on this DIM_HOME gets a gateway
    # of its own.
    wait_until(
        lambda: gone(gw),
        60,
        what="the embedded gateway to see its parent gone and stop",
    )
    wait_until(lambda: gone(conn), 60, what="the connection process to stop")
    (dim_home / "run" / "runtime.json").unlink()  # the killed instance's, left behind
    again = App(dim_home)
    try:
        again.wait_connected()
        assert gateway_pid(again) != gw
    finally:
        assert again.stop() == 0
