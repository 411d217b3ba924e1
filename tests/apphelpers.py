"""Test helpers: a real dim-desktop in a subprocess, driven only through its public
interfaces."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest
import websocket

ROOT = Path(__file__).resolve().parents[1]

# Every wait here is a condition polled until it holds, so a generous timeout costs a
# fast machine nothing; it only gives a loaded one (2 shared cores, a CPU hog, other
# suites running) the time it needs to start processes and answer over sockets. The
# timeout is how long to wait before calling it a failure, never how long anything is
# expected to take.
# s: the default for a condition (a state reached, an event arrived, a file written)
WAIT = 30.0
# s: a process started (dim-desktop: its gateway, connection process and bridge)
START = 90.0


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = WAIT,
    interval: float = 0.02,
    what: str = "condition",
):
    """Poll `predicate` until it returns something truthy; fail with `what` after
    `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def write_settings(home: Path, toml: str) -> None:
    """Settings for an App started afterwards on `home`."""
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "settings.toml").write_text(toml)


def desktop_unavailable(reason: str) -> NoReturn:
    """A desktop test that cannot run here. A skip only where bin/ensure-desktop could
    not install what it needs (no apt-get, no root); under bin/test with every package
    installed it is a failure, since then it means a broken machine or a regression, not
    a missing tool."""
    if os.environ.get("DIM_DESKTOP_TOOLS") == "installed":
        pytest.fail(
            f"{reason}, although bin/ensure-desktop installed every package the desktop tests need"
        )
    pytest.skip(reason)


class InvokeError(Exception):
    def __init__(self, status: int, body: dict):
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.code = (body.get("error") or {}).get("code")


class EventStream:
    """The bridge's /events WebSocket, collected on a thread; tests wait on conditions
    over it."""

    def __init__(self, url: str):
        self.ws = websocket.create_connection(
            url, timeout=WAIT, skip_utf8_validation=True
        )
        self.frames: list[dict] = []
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        self.ws.settimeout(None)
        try:
            while True:
                data = self.ws.recv()
                if not data:
                    break
                frame = json.loads(data)
                with self.cond:
                    self.frames.append(frame)
                    self.cond.notify_all()
        except (websocket.WebSocketException, OSError):
            pass
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def gateway_events(self, session_id: str | None = None) -> list[dict]:
        with self.cond:
            evs = [f["payload"] for f in self.frames if f["event"] == "gateway-event"]
        return [
            e for e in evs if session_id is None or e.get("sessionId") == session_id
        ]

    def wait_for(
        self,
        predicate: Callable[[list[dict]], Any],
        timeout: float = WAIT,
        what: str = "events",
    ):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                value = predicate(self.frames)
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closed:
                    raise AssertionError(
                        f"timed out waiting for {what}; last frames: {self.frames[-5:]}"
                    )
                self.cond.wait(min(remaining, 0.5))

    def wait_event(
        self,
        type_: str,
        session_id: str | None = None,
        timeout: float = WAIT,
        where: Callable[[dict], bool] = lambda e: True,
    ) -> dict:
        def find(frames):
            for f in frames:
                p = f.get("payload")
                if (
                    f["event"] == "gateway-event"
                    and p.get("type") == type_
                    and (session_id is None or p.get("sessionId") == session_id)
                    and where(p)
                ):
                    return p
            return None

        return self.wait_for(find, timeout, what=f"a {type_} event")

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass


class App:
    """One dim-desktop process with its own DIM_HOME."""

    # Nothing opened at start: a test reads the page through the bridge or its own browser.
    START_FLAGS: tuple[str, ...] = ("--no-browser",)

    def __init__(
        self,
        home: Path,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
        module: str = "dim_actors.app",
        command: list[str] | None = None,
    ):
        """`prefix`: a command the app runs under (e.g. `unshare ...`), which must exec
        it. `module`: what `python -m` runs; one of tests/ (faulty_app) is found on PYTHONPATH.
        `command`: what runs instead of `python -m module` (an installed dim-desktop), from
        DIM_HOME rather than the checkout, so nothing of the checkout is imported."""
        self.home = home
        # The caller's own DIM_TOKEN must not leak in; one given in `env` is meant.
        self.env = {k: v for k, v in os.environ.items() if k != "DIM_TOKEN"}
        self.env.update({"DIM_HOME": str(home), **(env or {})})
        if module != "dim_actors.app":
            tests = str(Path(__file__).resolve().parent)
            self.env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [tests, self.env.get("PYTHONPATH")])
            )
        # the child writes here until stop() closes it
        self.log = open(home / "app-output.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                *(prefix or []),
                *(command or [sys.executable, "-m", module]),
                *self.START_FLAGS,
                *(args or []),
            ],
            cwd=home if command else ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.runtime = wait_until(self._read_runtime, START, what="runtime.json")
        self.base = self.runtime["uiUrl"].split("/?")[0]
        self.token = self.runtime["token"]

    def _read_runtime(self) -> dict | None:
        if self.proc.poll() is not None:
            raise AssertionError(
                f"dim-desktop exited with {self.proc.returncode}: {self.output()}"
            )
        try:
            return json.loads((self.home / "run" / "runtime.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def output(self) -> str:
        return (self.home / "app-output.log").read_text(errors="replace")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict | None = None,
        timeout: float = 60,
    ) -> tuple[int, dict]:
        req = urllib.request.Request(
            self.base + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def invoke(self, command: str, timeout: float = 60, **args: Any) -> Any:
        status, body = self.request(
            "POST",
            f"/invoke/{command}",
            json.dumps(args).encode(),
            {
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
            },
            timeout,
        )
        if status != 200 or not body.get("ok"):
            raise InvokeError(status, body)
        return body["result"]

    def events(self) -> EventStream:
        return EventStream(
            self.base.replace("http://", "ws://") + f"/events?token={self.token}"
        )

    def dimctl(self, *args: str, timeout: float = 150) -> subprocess.CompletedProcess:
        # Longer than dimctl's own longest wait for an answer (`restart`: 90 s), so
        # dimctl reports.
        return subprocess.run(
            [sys.executable, "-m", "dim_actors.cli.dimctl", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def status(self) -> dict[str, dict]:
        out = self.dimctl("status", "--json")
        assert out.returncode == 0, out.stderr
        return {row["name"]: row for row in json.loads(out.stdout)}

    def wait_connected(self, timeout: float = 60) -> None:
        wait_until(
            lambda: self.invoke("get_state")["connection"]["state"] == "connected",
            timeout,
            what="the gateway connection",
        )

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=START)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GatewayProcess:
    """A dev gateway the test controls: it can be killed and started again on the same
    port and data."""

    def __init__(
        self,
        data: Path,
        port: int | None = None,
        args: list[str] | None = None,
        stderr: bool = False,
    ):
        self.data = data
        self.port = port or free_port()
        self.args = args or []
        # kept for the test to read (what the gateway says before it listens); else dropped
        self.stderr = stderr
        self.proc: subprocess.Popen | None = None
        self.url = f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> GatewayProcess:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dim_actors.devgateway",
                "--port",
                str(self.port),
                "--data",
                str(self.data),
                *self.args,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if self.stderr else subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline()
        assert "listening on" in line, f"gateway did not start: {line!r}"
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=WAIT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def watch_limited(watches: int) -> list[str]:
    """A command prefix that runs the command in a user namespace of its own whose
    inotify watch limit is `watches` (/proc/sys/user/max_inotify_watches is per user
    namespace, checked at every level up to the machine's), so lowering it there leaves
    every other process alone."""
    script = f'echo {watches} > /proc/sys/user/max_inotify_watches && exec "$@"'
    return ["unshare", "--user", "--map-root-user", "sh", "-c", script, "sh"]


def userns_watch_limit_works() -> bool:
    """Whether watch_limited can work here (the kernel or a container may forbid user
    namespaces)."""
    try:
        r = subprocess.run([*watch_limited(3), "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


class DesktopApp(App):
    """dim-desktop as a user starts it: without --no-browser."""

    START_FLAGS = ()
