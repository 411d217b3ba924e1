"""Processes and probes shared by the benchmarks: the dev gateway and dim-desktop, each
in its own OS process (as in production), a headless Chromium page, and a plain gateway
client.

Nothing here asserts: the benchmarks measure and report, the tests (tests/) judge.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import websocket

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
CHROMIUM = os.environ.get("DIM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {
            "p50": float("nan"),
            "p99": float("nan"),
            "max": float("nan"),
            "count": 0,
        }
    s = sorted(values)

    def q(p: float) -> float:
        return s[min(len(s) - 1, max(0, int(round(p * len(s) + 0.5)) - 1))]

    return {
        "p50": round(q(0.50), 3),
        "p99": round(q(0.99), 3),
        "max": round(s[-1], 3),
        "count": len(s),
    }


# --- memory ---------------------------------------------------------------------------


def proc_status(pid: int, key: str) -> int:
    """A kB field of /proc/PID/status (VmRSS, VmHWM), 0 if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def peak_rss_mb(pid: int) -> float:
    return round(proc_status(pid, "VmHWM") / 1024, 1)


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0


def descendants(pid: int) -> list[int]:
    """Every process below pid (e.g. the Chromium processes Playwright started for us)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def comm(pid: int) -> str:
    """'node', 'chromium', 'chromium:renderer', ... (Chromium rewrites its command line
    into one space-separated string, so the whole line is searched)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            line = f.read().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""
    name = os.path.basename(line.split(" ", 1)[0])
    m = re.search(r"--type=(\S+)", line)
    return f"{name}:{m.group(1)}" if m else name


def browser_groups(
    exclude: Callable[[], list[int]],
) -> dict[str, Callable[[], list[int]]]:
    """The processes Playwright started for us, by kind: the node driver, the browser
    process, the renderer (where the page runs) and the rest of Chromium's helpers."""
    me = os.getpid()

    def pick(test: Callable[[str], bool]) -> Callable[[], list[int]]:
        return lambda: [
            p for p in descendants(me) if p not in exclude() and test(comm(p))
        ]

    return {
        "node (playwright)": pick(lambda c: c.startswith("node")),
        "chromium renderer": pick(lambda c: c.endswith(":renderer")),
        "chromium other": pick(
            lambda c: c.startswith("chromium") and not c.endswith(":renderer")
        ),
    }


class CpuMeter:
    """CPU seconds each named process (or group of processes) spends between start() and
    stop()."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]):
        self.groups = groups
        self.before: dict[str, dict[int, float]] = {}

    def _sample(self) -> dict[str, dict[int, float]]:
        return {
            name: {pid: cpu_seconds(pid) for pid in pids()}
            for name, pids in self.groups.items()
        }

    def start(self) -> None:
        self.before = self._sample()

    def stop(self) -> dict[str, float]:
        after = self._sample()
        return {
            name: round(
                sum(
                    t - self.before.get(name, {}).get(pid, 0.0)
                    for pid, t in after[name].items()
                ),
                2,
            )
            for name in self.groups
        }


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kb = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kb = int(line.split()[1])
    except OSError:
        pass
    import platform

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memGB": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


# --- the dev gateway, in its own process ----------------------------------------------


class Gateway:
    def __init__(
        self,
        workdir: Path,
        stats: bool = False,
        ping_probe_ms: int = 0,
        allow_origins: tuple[str, ...] = (),
    ):
        self.workdir = workdir
        self.data = workdir / "gateway-data"
        self.stats_path = workdir / "gateway-stats.jsonl" if stats else None
        args = [
            PY,
            "-m",
            "dim_actors.devgateway",
            "--port",
            "0",
            "--data",
            str(self.data),
            "--rate-limit",
            "100000",
        ]
        for origin in allow_origins:  # a browser page served from elsewhere
            args += ["--allow-origin", origin]
        if self.stats_path is not None:
            args += [
                "--stats-file",
                str(self.stats_path),
                "--ping-probe-ms",
                str(ping_probe_ms),
            ]
        self.proc = subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if "listening on" not in line:
            raise RuntimeError(f"the dev gateway did not start: {line!r}")
        self.url = line.split()[-1]
        self.pid = self.proc.pid

    def stats(self) -> list[dict[str, Any]]:
        if self.stats_path is None or not self.stats_path.exists():
            return []
        out = []
        for line in self.stats_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- dim-desktop, in its own process --------------------------------------------------


class InvokeError(Exception):
    pass


class DimApp:
    """`dim-desktop --gateway URL --no-browser` with its own DIM_HOME (`args`, `module`
    and `env` change what is started; `wait=False` returns at once after the Popen, whose
    time is `t0`: then `wait_runtime()` or `connected()`)."""

    def __init__(
        self,
        home: Path,
        gateway_url: str | None = None,
        settings: dict[str, Any] | None = None,
        *,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        module: str = "dim_actors.app",
        wait: bool = True,
    ):
        self.home = home
        (home / "config").mkdir(parents=True, exist_ok=True)
        if settings:
            lines = [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
            (home / "config" / "settings.toml").write_text("\n".join(lines) + "\n")
        self.env = {**os.environ, "DIM_HOME": str(home), **(env or {})}
        self.env.pop("DIM_TOKEN", None)
        self.output_path = home / "app-output.log"
        if args is None:
            assert gateway_url is not None, (
                "a gateway URL, or the arguments to start with"
            )
            args = ["--gateway", gateway_url, "--no-browser"]
        # the child writes here until stop() closes it
        self._out = open(self.output_path, "ab")  # noqa: SIM115
        self.t0 = time.time()
        self.proc = subprocess.Popen(
            [PY, "-m", module, *args],
            cwd=ROOT,
            env=self.env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.proc.pid
        self.runtime: dict[str, Any] = {}
        if wait:
            self.wait_runtime()

    def wait_runtime(self, timeout: float = 60) -> None:
        self.runtime = wait_until(
            self._read_runtime, timeout, "dim-desktop's runtime.json"
        )
        self.base = self.runtime["uiUrl"].split("/?")[0]
        self.token = self.runtime["token"]
        self.ui_url = self.runtime["uiUrl"]

    def connected(self) -> bool:
        """Has the app said (runtime.json, then its status) that its gateway is connected?"""
        if not self.runtime:
            found = self._read_runtime()
            if found is None:
                return False
            self.runtime = found
        return any(r.get("connection") == "connected" for r in self.status().values())

    def _read_runtime(self) -> dict | None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"dim-desktop exited with {self.proc.returncode}: {self.output()[-2000:]}"
            )
        try:
            return json.loads((self.home / "run" / "runtime.json").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def invoke_raw(self, command: str, timeout: float = 60, **args: Any) -> bytes:
        """The bridge's answer as it came (its size is what a page loads)."""
        req = urllib.request.Request(
            self.base + f"/invoke/{command}",
            data=json.dumps(args).encode(),
            method="POST",
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as e:
            raise InvokeError(f"{command}: {e.code} {e.read()[:300]!r}") from None

    def invoke(self, command: str, timeout: float = 60, **args: Any) -> Any:
        body = json.loads(self.invoke_raw(command, timeout, **args))
        if not body.get("ok"):
            raise InvokeError(f"{command}: {body}")
        return body["result"]

    def status(self) -> dict[str, dict[str, Any]]:
        """`dimctl status --json`, through the control socket directly (no subprocess
        per poll)."""
        from dim_actors.app.control import request
        from dim_actors.messages import ControlReply, ControlRequest

        with (
            request(
                Path(self.runtime["controlSocket"]), ControlRequest(cmd="status"), 30
            ) as s,
            s.makefile("rb") as f,
        ):
            reply = msgspec.json.decode(f.readline(), type=ControlReply)
        return {row["name"]: row for row in reply.result}

    def dimctl(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
        return subprocess.run(
            [PY, "-m", "dim_actors.cli.dimctl", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def wait_connected(self, timeout: float = 30) -> None:
        wait_until(
            lambda: self.invoke("get_state")["connection"]["state"] == "connected",
            timeout,
            "the gateway connection",
        )

    def start_stream(self, script: str) -> tuple[str, str]:
        sid = self.invoke("create_session", agentType="coding-agent")["session"]["id"]
        self.invoke("join_session", sessionId=sid)
        return sid, self.run_turn(sid, script)

    def run_turn(self, sid: str, script: str) -> str:
        return self.invoke("run_turn", sessionId=sid, text=script)["turnId"]

    def turn(self, sid: str, turn_id: str) -> dict | None:
        chat = self.invoke("get_state")["chats"].get(sid)
        if not chat:
            return None
        return next((t for t in chat["turns"] if t["turnId"] == turn_id), None)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


def check_text(text: str, n: int) -> dict[str, int]:
    """Lost / duplicated / out-of-order deltas in a stream's text ("0 1 2 ... n-1 ")."""
    got = [int(x) for x in text.split()]
    lost = n - len(set(got) & set(range(n)))
    dup = len(got) - len(set(got))
    ooo = sum(1 for a, b in zip(got, got[1:]) if b < a)
    return {"received": len(got), "lost": lost, "duplicated": dup, "outOfOrder": ooo}


# --- a plain gateway client (websocket-client), for the raw loops and stream setup ----


class _Head(msgspec.Struct):
    type: str
    session: dict | None = None
    turnId: str | None = None


_head = msgspec.json.Decoder(_Head)


class PlainClient:
    def __init__(
        self, url: str, skip_utf8_validation: bool = True, buffered: bool = False
    ):
        from dim_actors.connection.fastws import BufferedWebSocket

        cls = BufferedWebSocket if buffered else websocket.WebSocket
        self.ws = cls(skip_utf8_validation=skip_utf8_validation)
        self.ws.connect(url, timeout=30, suppress_origin=True)
        while self._next().type != "authenticated":
            pass

    def _next(self) -> _Head:
        return _head.decode(self.ws.recv_data()[1])

    def send(self, obj: dict) -> None:
        self.ws.send(json.dumps(obj))

    def create_session(self) -> str:
        self.send({"type": "create_session", "agentType": "coding-agent"})
        while True:
            h = self._next()
            if h.type == "session_created" and h.session:
                return h.session["id"]

    def join(self, sid: str) -> None:
        self.send({"type": "join_session", "sessionId": sid})
        while self._next().type != "state_snapshot":
            pass

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except Exception:
            pass


# --- a headless Chromium page on the real UI ------------------------------------------

# Injected before the page's own scripts: it sees every frame the page parses off its
# events WebSocket (the page calls JSON.parse once per message) and keeps counts, order
# and latency.
PAGE_PROBE = r"""
(() => {
  const B = window.__bench = {frames: 0, events: 0, deltas: 0, firstMs: 0, lastMs: 0, lastSeq: {},
                              dup: 0, ooo: 0, gaps: 0, lat: [], turnEnds: 0, maxBatch: 0};
  const parse = JSON.parse;
  const now = () => performance.timeOrigin + performance.now();
  function onEvent(f) {
    if (!f || f.event !== "gateway-event" || !f.payload) return;
    const p = f.payload;
    B.events++;
    if (p.sessionId && typeof p.seq === "number") {
      const last = B.lastSeq[p.sessionId] || 0;
      if (p.seq === last) B.dup++;
      else if (p.seq < last) B.ooo++;
      else {
        if (last && p.seq !== last + 1) B.gaps += p.seq - last - 1;
        B.lastSeq[p.sessionId] = p.seq;
      }
    }
    if (p.type === "text_delta") {
      const t = now();
      if (!B.deltas) B.firstMs = t;
      B.deltas++;
      B.lastMs = t;
      if (typeof p.sentNs === "number") B.lat.push(t - p.sentNs / 1e6);
    } else if (p.type === "turn_complete" || p.type === "turn_error") B.turnEnds++;
  }
  JSON.parse = function (text, reviver) {
    const r = parse.call(this, text, reviver);
    if (r && typeof r === "object") {
      if (Array.isArray(r.batch)) {
        B.frames++;
        if (r.batch.length > B.maxBatch) B.maxBatch = r.batch.length;
        for (const f of r.batch) onEvent(f);
      } else if (typeof r.event === "string") { B.frames++; onEvent(r); }
    }
    return r;
  };
})();
"""


class Chromium:
    """What every page of the benchmarks runs in: a fresh context of headless Debian
    Chromium, launched here through Playwright, or of `browser` when given (a test's,
    which may not start a second Playwright beside its own)."""

    def __init__(self, browser: Any = None):
        self._pw = None
        self._owned = browser is None
        if browser is None:
            from playwright.sync_api import sync_playwright

            self._pw = sync_playwright().start()
            browser = self._pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
        self.browser = browser
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})

    def close(self) -> None:
        steps = [self.context.close]
        if self._owned:
            steps += [self.browser.close, self._pw.stop]  # type: ignore[union-attr]
        for step in steps:
            try:
                step()
            except Exception:
                pass


# Keeps the page's main thread about half busy: 8 ms of work every 16 ms (one frame),
# the same for every page it is put on.
BUSY_LOOP = r"""
(() => {
  if (window.__busy) return;
  window.__busy = setInterval(() => {
    const end = performance.now() + 8;
    while (performance.now() < end) {}
  }, 16);
})()
"""

# Generous for 2 shared, busy cores; a passing run waits far less.
PAGE_TIMEOUT_MS = 60_000


class Page:
    """The real dim-desktop page in headless Chromium, with PAGE_PROBE injected."""

    def __init__(
        self, ui_url: str, init_scripts: tuple[str, ...] = (), browser: Any = None
    ):
        self.chromium = Chromium(browser)
        self.context = self.chromium.context
        for script in (PAGE_PROBE, *init_scripts):
            self.context.add_init_script(script)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(ui_url)
        # As the page tests do (tests/uihelpers.py): the snapshot is in and the page
        # shows the gateway connected.
        self.wait_for("body[data-ready='1']", "the page's first snapshot")
        self.wait_for(
            '[data-testid="connection-state"][data-state="connected"]',
            "the page to show the gateway connected",
        )

    def wait_for(self, selector: str, what: str) -> None:
        """Wait for `selector`; on timeout, say what was awaited and what the page shows."""
        from playwright.sync_api import TimeoutError as PwTimeout

        try:
            self.page.locator(selector).first.wait_for(timeout=PAGE_TIMEOUT_MS)
        except PwTimeout:
            raise TimeoutError(
                f"timed out after {PAGE_TIMEOUT_MS / 1000:.0f}s waiting for {what} "
                f"({selector}); the page shows: {self._shows()}"
            ) from None

    def _shows(self) -> dict[str, Any]:
        try:
            return self.page.evaluate(
                """() => ({
                ready: document.body.dataset.ready || null,
                connection: document.querySelector('[data-testid="connection-state"]')
                  ?.dataset.state || null,
                sessions: [...document.querySelectorAll('[data-testid="session-item"]')]
                  .map((e) => e.dataset.sessionId),
                probe: Boolean(window.__bench)})"""
            ) | {"pageErrors": self.errors[:3]}
        except Exception as e:
            return {"unreadable": repr(e)}

    def select(self, sid: str) -> None:
        """Click session `sid` in the list and wait until it is the selected one.

        The session must have been created before the page was opened. The page lists
        sessions from its snapshot, from session events and from the answers to its own
        `list_sessions` (asked once connected); an answer the gateway gave before a
        session was created replaces the list when it arrives, and it can arrive after
        the session's `session_created` event (the answer comes over HTTP, the event
        over the events socket), dropping the new session from the list until the next
        refresh. A session created first is in every list the page asks for."""
        item = f'[data-testid="session-item"][data-session-id="{sid}"]'
        self.wait_for(item, f"session {sid} in the page's list")
        self.page.locator(item).click()
        self.wait_for(
            f'{item}[aria-selected="true"]', f"session {sid} selected on the page"
        )

    def probe(self, with_latency: bool = False) -> dict[str, Any]:
        expr = "(() => { const B = window.__bench; return {...B, lat: %s}; })()" % (
            "B.lat" if with_latency else "[]"
        )
        return self.page.evaluate(expr)

    def text_of(self, turn_id: str) -> str:
        return self.page.evaluate(
            """(id) => {
            const turn = `[data-testid="turn"][data-turn-id="${id}"]`;
            const el = document.querySelector(`${turn} [data-testid="assistant-text"]`);
            return el ? el.textContent : ""; }""",
            turn_id,
        )

    def close(self) -> None:
        self.chromium.close()


def wait_turn_ends(page: Any, n: int, timeout: float, what: str) -> None:
    """Until `page`'s probe (dim-desktop's page or the baseline's) has seen `n` turns
    end: `what` names the wait in its timeout."""
    wait_until(lambda: page.probe()["turnEnds"] >= n, timeout, what, 0.2)


def teardown(*parts: Page | Chromium | DimApp | Gateway | None) -> None:
    """A benchmark's `finally:`: each part closed or stopped in the order given (the
    reverse of the order they were started in), None standing for one that never
    started."""
    for part in parts:
        if isinstance(part, (Page, Chromium)):
            part.close()
        elif part is not None:
            part.stop()


class Workdir:
    """A temporary directory per benchmark, removed afterwards unless DIM_BENCH_KEEP is
    set."""

    def __init__(self, name: str):
        self.path = Path(tempfile.mkdtemp(prefix=f"dim-bench-{name}-"))

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        if not os.environ.get("DIM_BENCH_KEEP"):
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            log(f"kept {self.path}")
