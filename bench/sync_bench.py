"""Local sync benchmark: prints its figures (it is not a timed test).

    .venv/bin/python bench/sync_bench.py [--quick] [--json FILE]

The dev gateway and dim-desktop each run in their own process, as in production; this
script talks to the gateway as a plain client (to have the agent write and to see
file_changed) and to the app through its bridge, and watches the synced folder itself.

* save_to_upstream_ms: an editor-style save (temp file + rename over) -> the gateway's file_changed
  for it, received by this client (includes the watcher's 50 ms quiet period).
* agent_write_to_disk_ms: the gateway's file_changed received here -> the new content on disk.
* materialize_1k, materialize_10k: start_sync of a workspace of 1,000 files / 20 MB and of
  10,000 files / 200 MB (each with its own gateway and app; 10,000 in the full run only) into
  an empty folder, until sync_status counts every file (polled sparingly: `wait_tracked`),
  against the best of three `cp -r` of the same tree on the same disk (`sync` before each);
  with the CPU seconds the app (supervisor and connection process) and the gateway used
  meanwhile.
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
    progress so far (at least 10 ms, at most 1 s apart): about 20 polls instead of 300
    for 10,000 files, 10 ms apart near the end (a 1,000-file run takes a tenth of a
    second or two: 50 ms steps were a third of it). Never more than a sixth of the time
    so far: the first files come after a fixed start (the link's connect, the first
    content), so a few files counted early foretell far too long a wait."""
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
        time.sleep(min(1.0, max(0.01, min(left / 4, elapsed / 6))))


def count_files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def _proc_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by these processes, all threads."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def _threads_cpu(pids: list[int]) -> dict[str, float]:
    """CPU seconds per thread name (comm) of these processes, and per process user and
    system time."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                name = f"{pid}:{(task / 'comm').read_text().strip()}"
                fields = (task / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            out[name] = out.get(name, 0) + (int(fields[11]) + int(fields[12])) / tick
            for kind, i in (("user", 11), ("sys", 12)):
                key = f"{pid} {kind}"
                out[key] = out.get(key, 0) + int(fields[i]) / tick
    return out


def _family(pid: int) -> list[int]:
    """`pid` and its children (the app's connection process)."""
    out = [pid]
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            kids = (task / "children").read_text().split()
            out.extend(int(k) for k in kids)
    except OSError:
        pass
    return out


class Setup:
    """A gateway holding a workspace of `files` files / `total` bytes (and the same tree
    on disk, for cp -r), a plain client joined to its session, and dim-desktop."""

    def __init__(self, work: Path, files: int, total: int):
        self.work, self.files = work, files
        self.gw: Gateway | None = None
        self.app: App | None = None
        self.client: Client | None = None
        data = work / "gateway-data"
        self.gw = Gateway(data).start()
        self.sid = new_session(self.gw.url, "sync-bench")
        self.gw.stop()
        log(
            f"writing a workspace of {files} files / {total >> 20} MB into the gateway's store"
        )
        self.nbytes, self.tree = populate(data / "gateway.db", self.sid, files, total)
        self.gw = Gateway(data).start()
        self.client = Client(self.gw.url)
        self.client.send("join_session", sessionId=self.sid)
        self.client.wait(lambda e: e.get("type") == "state_snapshot", 10)
        home = work / "dim-home"
        home.mkdir()
        self.app = App(home, self.gw.url)
        self.folder = work / "synced"

    def materialize(self) -> dict[str, Any]:
        """start_sync into an empty folder until every file is tracked, against the best
        of three cp -r of the same tree; each starts with nothing dirty left to write
        back."""
        assert self.app is not None and self.gw is not None and self.gw.proc
        app, files = self.app, self.files
        pids = _family(app.proc.pid)
        subprocess.run(["sync"], check=False)
        cpu0 = _proc_cpu(pids), _proc_cpu([self.gw.proc.pid])
        threads0 = _threads_cpu(pids) if os.environ.get("SYNC_BENCH_THREADS") else {}
        t0 = time.perf_counter()
        app.invoke("start_sync", sessionId=self.sid, localDir=str(self.folder))
        polls = wait_tracked(app, self.sid, files, t0, 900)
        materialize_s = time.perf_counter() - t0
        cpu1 = _proc_cpu(pids), _proc_cpu([self.gw.proc.pid])
        # settled: the watcher has looked at what was written (the echoes of the
        # writes, or the scan that starts a new sync's watch once its first files are
        # written) and the journal has taken in what it listed: the watcher's figures
        # (told at its 1 s ticks) still for 2.5 s
        settled_cpu = self._settle(pids) - cpu0[0]
        if threads0:
            # SYNC_BENCH_THREADS=1: CPU per thread (named only where the threads' OS
            # names are set, e.g. by a sitecustomize calling prctl(PR_SET_NAME))
            threads1 = _threads_cpu(pids)
            used = {k: v - threads0.get(k, 0) for k, v in threads1.items()}
            for k, v in sorted(used.items(), key=lambda kv: -kv[1]):
                if v >= 0.01:
                    log(f"  {k:40} {v:6.2f} s")
        assert count_files(self.folder) == files
        # this machine's file creation time varies several-fold from minute to minute:
        # the best of three copies (the ratio errs against the materialization)
        cp_runs = []
        for i in range(3):
            subprocess.run(["sync"], check=False)
            t0 = time.perf_counter()
            subprocess.run(
                ["cp", "-r", str(self.tree), str(self.work / f"cp-copy-{i}")],
                check=True,
            )
            cp_runs.append(time.perf_counter() - t0)
            shutil.rmtree(self.work / f"cp-copy-{i}", ignore_errors=True)
        cp_s = min(cp_runs)
        log(
            f"materialized {files} files in {materialize_s:.2f} s; cp -r took {cp_s:.3f} s "
            f"(best of {', '.join(f'{x:.3f}' for x in cp_runs)}); app CPU "
            f"{cpu1[0] - cpu0[0]:.2f} s, gateway CPU {cpu1[1] - cpu0[1]:.2f} s; app CPU "
            f"until settled (+2.5 s idle) {settled_cpu:.2f} s"
        )
        return {
            "seconds": round(materialize_s, 2),
            "cp_r_seconds": round(cp_s, 3),
            "ratio": round(materialize_s / cp_s, 1) if cp_s else None,
            "files": files,
            "bytes": self.nbytes,
            "app_cpu_s": round(cpu1[0] - cpu0[0], 2),
            "settled_app_cpu_s": round(settled_cpu, 2),
            "gateway_cpu_s": round(cpu1[1] - cpu0[1], 2),
            "polls": polls,
        }

    def _settle(self, pids: list[int]) -> float:
        """Waits until the app is done with the materialization; its CPU seconds then."""
        assert self.app is not None
        last, since = None, time.monotonic()
        deadline = since + 120
        while time.monotonic() < deadline:
            st = self.app.invoke("sync_status", sessionId=self.sid)
            now = (st["stats"]["echoesSuppressed"], st["scan"] is None)
            if now != last:
                last, since = now, time.monotonic()
            elif now[1] and time.monotonic() - since >= 2.5:
                break
            time.sleep(0.1)
        return _proc_cpu(pids)

    def stop(self) -> None:
        stop_all(self.app, self.client, self.gw)


def materialization(files: int, total: int) -> dict[str, Any]:
    """One initial materialization of `files` files / `total` bytes, in a setup of its
    own."""
    work = Path(tempfile.mkdtemp(prefix="dim-sync-bench-"))
    setup = None
    try:
        setup = Setup(work, files, total)
        return setup.materialize()
    finally:
        if setup is not None:
            setup.stop()
        shutil.rmtree(work, ignore_errors=True)


def run(quick: bool) -> dict[str, Any]:
    edits = 50 if quick else 200
    # the 10,000-file run takes over a minute (most of it writing the workspace into
    # the gateway's store and the tree for cp -r): the full run's
    big: dict[str, Any] = (
        {"skipped": "quick run: 10,000 files in the full run only"}
        if quick
        else materialization(10_000, 200 << 20)
    )
    work = Path(tempfile.mkdtemp(prefix="dim-sync-bench-"))
    setup = None
    try:
        setup = Setup(work, 1_000, 20 << 20)
        small = setup.materialize()
        app, client, sid, folder = setup.app, setup.client, setup.sid, setup.folder
        assert app is not None and client is not None
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
                "materialize_1k": small,
                "materialize_10k": big,
                "echo_leaked": leaked,
                "edits": edits,
                "quick": quick,
            }
        }
    finally:
        if setup is not None:
            setup.stop()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="50 edits and 1,000 files / 20 MB instead of 200 and 10,000 / 200 MB",
    )
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    ap.add_argument(
        "--materialize",
        metavar="FILES",
        type=int,
        help="only one initial materialization of FILES files (~21 KB each)",
    )
    args = ap.parse_args(argv)
    if args.materialize:
        n = args.materialize
        result = {"sync": {"materialize": materialization(n, n * (20 << 20) // 1000)}}
    else:
        result = run(args.quick)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
