"""Local sync benchmark: prints its figures (it is not a timed test).

    .venv/bin/python bench/sync_bench.py [--quick] [--json FILE]

The dev gateway and dim-desktop each run in their own process, as in production; this
script talks to the gateway as a plain client (to have the agent write and to see
file_changed) and to the app through its bridge, and watches the synced folder itself.

* save_to_upstream_ms: an editor-style save (temp file + rename over) -> the gateway's file_changed
  for it, received by this client (includes the watcher's 50 ms quiet period).
* agent_write_to_disk_ms: the gateway's file_changed received here -> the new content on disk.
* materialize_10k: start_sync of a workspace of 10,000 files / 200 MB (--quick: 1,000 / 20 MB)
  into an empty folder, until sync_status counts every file (polled sparingly: `wait_tracked`),
  against the best of three `cp -r` of the same tree on the same disk (`sync` before each).
* echo_leaked: the watcher's echoesLeaked (sync_status stats): local changes it reported that were
  the materializer's own last write all the same, i.e. echoes the echo set failed to suppress,
  counted before the journal's own hash checks could hide them: must be 0.

`run(quick) -> dict` returns the figures under a "sync" key, for bin/bench.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import websocket

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import wait_until as harness_wait_until  # noqa: E402
from dim_actors.devgateway.workspace import Workspace  # noqa: E402
from dim_actors.wire import protocol  # noqa: E402

PY = sys.executable


def log(msg: str) -> None:
    print(
        f"[sync-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True
    )


def wait_until(
    pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.001
) -> Any:
    # Polled every millisecond: the latencies measured here are a few milliseconds long.
    return harness_wait_until(pred, timeout, what, interval)


def pct(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    if not s:
        return {"p50": float("nan"), "p99": float("nan"), "count": 0}

    def at(q: float) -> float:
        return round(s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))], 2)

    return {"p50": at(0.50), "p99": at(0.99), "max": round(s[-1], 2), "count": len(s)}


class Gateway:
    def __init__(self, data: Path):
        self.data = data
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> Gateway:
        self.proc = subprocess.Popen(
            [
                PY,
                "-m",
                "dim_actors.devgateway",
                "--port",
                "0",
                "--data",
                str(self.data),
                "--rate-limit",
                "1000000",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if "listening on" not in line:
            raise RuntimeError(f"the dev gateway did not start: {line!r}")
        self.url = line.split()[-1]
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def stop_all(*things: App | Client | Gateway | None) -> None:
    """A benchmark's teardown: each part stopped, whatever became of the others."""
    for thing in things:
        if thing is not None:
            try:
                thing.stop() if not isinstance(thing, Client) else thing.close()
            except Exception:
                pass


def new_session(gateway_url: str, name: str) -> str:
    """A coding-agent session created on the gateway by a client of its own; its id."""
    client = Client(gateway_url)
    try:
        client.send("create_session", agentType="coding-agent", name=name)
        return client.wait(lambda e: e.get("type") == "session_created", 10)["session"][
            "id"
        ]
    finally:
        client.close()


class Client:
    """A plain gateway client on its own reader thread: file_changed receive times by
    path."""

    def __init__(self, url: str):
        self.ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.cond = threading.Condition()
        self.changed: dict[str, list[tuple[float, int, str]]] = {}
        self.events: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.wait(lambda e: e.get("type") == "authenticated", 10)

    def _read(self) -> None:
        try:
            while True:
                data = self.ws.recv()
                now = time.perf_counter()
                if not data:
                    return
                ev = json.loads(data)
                with self.cond:
                    if ev.get("type") == "file_changed":
                        self.changed.setdefault(ev["path"], []).append(
                            (now, ev["iteration"], ev.get("hash", ""))
                        )
                    else:
                        self.events.append(ev)
                    self.cond.notify_all()
        except (websocket.WebSocketException, OSError, ValueError):
            pass

    def send(self, type_: str, **args: Any) -> None:
        self.ws.send(protocol.build_client_message(type_, args))

    def wait(self, pred: Callable[[dict], bool], timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i, ev in enumerate(self.events):
                    if pred(ev):
                        del self.events[i]
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no matching gateway event")
                self.cond.wait(left)

    def wait_changed(self, path: str, digest: str, timeout: float = 30) -> float:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for t, _, h in self.changed.get(path, []):
                    if h == digest:
                        return t
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no file_changed for {path}")
                self.cond.wait(left)

    def close(self) -> None:
        self.ws.close()


class App:
    def __init__(self, home: Path, gateway_url: str):
        self.home = home
        env = {**os.environ, "DIM_HOME": str(home)}
        env.pop("DIM_TOKEN", None)
        # the child writes here until stop() closes it
        self.log = open(home / "app-output.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [PY, "-m", "dim_actors.app", "--no-browser", "--gateway", gateway_url],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        rt = wait_until(self._runtime, 60, "dim-desktop's runtime.json", 0.05)
        self.base = rt["uiUrl"].split("/?")[0]
        self.token = rt["token"]
        wait_until(
            lambda: self.invoke("get_state")["connection"]["state"] == "connected",
            30,
            "connected",
            0.05,
        )

    def _runtime(self) -> dict | None:
        if self.proc.poll() is not None:
            raise RuntimeError("dim-desktop exited during start")
        try:
            return json.loads((self.home / "run" / "runtime.json").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def invoke(self, command: str, **args: Any) -> Any:
        req = urllib.request.Request(
            f"{self.base}/invoke/{command}",
            data=json.dumps(args).encode(),
            method="POST",
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:
            body = json.loads(e.read() or b"{}")
        if not body.get("ok"):
            raise RuntimeError(f"{command}: {body.get('error')}")
        return body["result"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def populate(db_path: Path, sid: str, files: int, total_bytes: int) -> tuple[int, Path]:
    """Write the workspace straight into the stopped gateway's store; also lay the tree
    out on disk (for cp -r). Returns the byte count and the tree."""
    size = total_bytes // files
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    ws = Workspace(conn, sid)
    tree = db_path.parent.parent / "tree"
    written = 0
    for i in range(files):
        path = f"d{i // 100:03}/f{i:05}.bin"
        # varied sizes around the mean; random, so nothing compresses or dedupes
        data = os.urandom(max(1, int(size * (0.5 + (i % 11) / 10))))
        ws.write(path, data)
        target = tree / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written += len(data)
    conn.close()
    return written, tree


def wait_tracked(app: App, sid: str, files: int, t0: float, timeout: float) -> int:
    """Until sync_status counts `files` tracked files; returns the number of polls.

    A sync_status costs the app about 5 ms of CPU at 10,000 files (it counts every
    tracked file, and crosses the bridge, the router and the journal), taken from the
    materialization it measures: at every 50 ms that was 10-15 % of the supervisor's
    CPU. So polls are spaced by a quarter of the time left, as estimated from the
    progress so far (at least 50 ms, at most 1 s apart): about 20 polls instead of 300
    for 10,000 files, 50 ms apart again near the end."""
    polls = 0
    while True:
        tracked = app.invoke("sync_status", sessionId=sid)["filesTracked"]
        polls += 1
        elapsed = time.perf_counter() - t0
        if tracked >= files:
            return polls
        if elapsed > timeout:
            raise TimeoutError(
                f"timed out after {timeout:.0f}s waiting for the initial materialization"
            )
        left = (files - tracked) * elapsed / tracked if tracked else 0.2
        time.sleep(min(1.0, max(0.05, left / 4)))


def count_files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def run(quick: bool) -> dict[str, Any]:
    edits = 50 if quick else 200
    files, total = (1_000, 20 << 20) if quick else (10_000, 200 << 20)
    work = Path(tempfile.mkdtemp(prefix="dim-sync-bench-"))
    gw = app = client = None
    try:
        data = work / "gateway-data"
        gw = Gateway(data).start()
        sid = new_session(gw.url, "sync-bench")
        gw.stop()
        log(
            f"writing a workspace of {files} files / {total >> 20} MB into the gateway's store"
        )
        nbytes, tree = populate(data / "gateway.db", sid, files, total)
        gw = Gateway(data).start()
        client = Client(gw.url)
        client.send("join_session", sessionId=sid)
        client.wait(lambda e: e.get("type") == "state_snapshot", 10)
        home = work / "dim-home"
        home.mkdir()
        app = App(home, gw.url)
        folder = work / "synced"

        # 1. initial materialization against cp -r; each starts with nothing dirty left
        #    to write back
        subprocess.run(["sync"], check=False)
        t0 = time.perf_counter()
        app.invoke("start_sync", sessionId=sid, localDir=str(folder))
        wait_tracked(app, sid, files, t0, 900)
        materialize_s = time.perf_counter() - t0
        assert count_files(folder) == files
        # this machine's file creation time varies several-fold from minute to minute:
        # the best of three copies (the ratio errs against the materialization)
        cp_runs = []
        for i in range(3):
            subprocess.run(["sync"], check=False)
            t0 = time.perf_counter()
            subprocess.run(
                ["cp", "-r", str(tree), str(work / f"cp-copy-{i}")], check=True
            )
            cp_runs.append(time.perf_counter() - t0)
        cp_s = min(cp_runs)
        log(
            f"materialized {files} files in {materialize_s:.2f} s; cp -r took {cp_s:.2f} s "
            f"(best of {', '.join(f'{x:.2f}' for x in cp_runs)})"
        )
        st = app.invoke("sync_status", sessionId=sid)
        leaked = st["stats"]["echoesLeaked"]

        # 2. agent write -> file on disk
        agent_ms = []
        target = folder / "bench" / "agent.txt"
        for i in range(edits):
            content = f"agent write {i}\n"
            digest = hashlib.sha256(content.encode()).hexdigest()
            client.send(
                "run_turn",
                sessionId=sid,
                text=f"/write bench/agent.txt {content.strip()}\\n",
            )
            t_evt = client.wait_changed("bench/agent.txt", digest)
            wait_until(
                lambda content=content: (
                    target.is_file() and target.read_text() == content
                ),
                30,
                "the agent's write on disk",
            )
            agent_ms.append((time.perf_counter() - t_evt) * 1000)
            client.wait(lambda e: e.get("type") in ("turn_complete", "turn_error"), 10)
        st = app.invoke("sync_status", sessionId=sid)
        leaked = st["stats"]["echoesLeaked"]  # cumulative since the app started
        log(f"agent write -> disk: {pct(agent_ms)}")

        # 3. editor save -> accepted upstream
        save_ms = []
        path = folder / "bench" / "edited.txt"
        for i in range(edits):
            content = f"user edit {i}\n".encode()
            tmp = path.with_name(".edited.txt.tmp")
            tmp.write_bytes(content)
            t0 = time.perf_counter()
            os.replace(tmp, path)
            t1 = client.wait_changed(
                "bench/edited.txt", hashlib.sha256(content).hexdigest()
            )
            save_ms.append((t1 - t0) * 1000)
        wait_until(
            lambda: app.invoke("sync_status", sessionId=sid)["pendingWrites"] == 0,
            30,
            "no pending writes",
            0.05,
        )
        st = app.invoke("sync_status", sessionId=sid)
        leaked = st["stats"]["echoesLeaked"]
        log(
            f"save -> upstream: {pct(save_ms)}; slowest: {sorted(round(x) for x in save_ms)[-5:]}"
        )
        return {
            "sync": {
                "save_to_upstream_ms": pct(save_ms),
                "agent_write_to_disk_ms": pct(agent_ms),
                "materialize_10k": {
                    "seconds": round(materialize_s, 2),
                    "cp_r_seconds": round(cp_s, 3),
                    "ratio": round(materialize_s / cp_s, 1) if cp_s else None,
                    "files": files,
                    "bytes": nbytes,
                },
                "echo_leaked": leaked,
                "edits": edits,
                "quick": quick,
            }
        }
    finally:
        stop_all(app, client, gw)
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="50 edits and 1,000 files / 20 MB instead of 200 and 10,000 / 200 MB",
    )
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = ap.parse_args(argv)
    result = run(args.quick)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
