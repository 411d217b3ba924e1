"""Start-up: from `Popen` of dim-desktop to (a) connected to the gateway, without a
window (`--gateway URL --no-browser`, as every UI test starts the app; and with the
embedded dev gateway, as a user does by default), and (b) its native window (pywebview
+ Qt, the `desktop` extra) mapped and painted on an X server of its own (Xvfb).

Connected: `dimctl status --json`'s connection row says `connected` (asked through the
control socket every 10 ms once runtime.json is there). Painted: the window, mapped,
shows more than its background colour (its pixels, read every 50 ms, hold at least
PAINTED_COLOURS distinct values: the page has drawn).

Then where the time goes: one traced start (bench/startup_trace.py: when each of the
supervisor's steps ended) and `python -X importtime` of the supervisor's imports and
of the connection process's.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.harness import PY, ROOT, DimApp, Gateway, Workdir, log, wait_until

RUNS = 5
PAINTED_COLOURS = 8


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2


def _summary(xs: list[float]) -> dict[str, Any]:
    if not xs:
        return {"p50": None, "max": None, "runs": []}
    return {
        "p50": round(_median(xs), 3),
        "max": round(max(xs), 3),
        "runs": [round(x, 3) for x in xs],
    }


def launch(
    home: Path,
    args: list[str],
    env: dict[str, str] | None = None,
    module: str = "dim_actors.app",
) -> DimApp:
    """One `dim-desktop` start with a DIM_HOME of its own, timed from its Popen (t0)."""
    return DimApp(home, args=args, env=env, module=module, wait=False)


def seconds_to_connected(app: DimApp, timeout: float = 120) -> float:
    """Seconds from the app's Popen to its status saying connected."""
    wait_until(app.connected, timeout, "dim-desktop connected to the gateway", 0.01)
    return time.time() - app.t0


def connected_once(gateway_url: str | None, env: dict[str, str] | None = None) -> float:
    """Popen -> connected, against `gateway_url`, or (None) with the embedded dev
    gateway."""
    args = ["--no-browser"] + (["--gateway", gateway_url] if gateway_url else [])
    with Workdir("startup") as wd:
        app = launch(wd / "home", args, env=env)
        try:
            return seconds_to_connected(app)
        finally:
            app.stop()


def connected_runs(gateway_url: str | None, runs: int) -> list[float]:
    out = []
    for i in range(runs):
        out.append(connected_once(gateway_url))
        log(f"  run {i + 1}: connected after {out[-1]:.3f}s")
    return out


def bytecode_runs(gateway_url: str, runs: int, cache: Path) -> dict[str, list[float]]:
    """With PYTHONDONTWRITEBYTECODE set (then every start compiles dim-desktop's modules
    again): launch -> connected as is, and with compiled modules at hand
    (PYTHONPYCACHEPREFIX, filled once), run for run."""
    env = {"PYTHONPYCACHEPREFIX": str(cache)}
    fill = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(
        [PY, "-c", "import dim_actors.app.main, dim_actors.connection.process.main"],
        cwd=ROOT,
        env={**fill, **env},
        check=True,
        timeout=120,
    )
    out: dict[str, list[float]] = {"as_is": [], "compiled": []}
    for i in range(runs):
        out["as_is"].append(connected_once(gateway_url))
        out["compiled"].append(connected_once(gateway_url, env))
        log(
            f"  run {i + 1}: as is {out['as_is'][-1]:.3f}s, "
            f"compiled {out['compiled'][-1]:.3f}s"
        )
    return out


def traced_steps(gateway_url: str) -> list[dict[str, Any]]:
    """One start under bench/startup_trace.py: seconds from Popen to the end of each
    step."""
    with Workdir("startup-trace") as wd:
        trace = wd / "trace.jsonl"
        app = launch(
            wd / "home",
            ["--no-browser", "--gateway", gateway_url],
            env={"DIM_BENCH_TRACE": str(trace)},
            module="bench.startup_trace",
        )
        try:
            end = seconds_to_connected(app)
        finally:
            app.stop()
        steps = [json.loads(line) for line in trace.read_text().splitlines()]
    out, seen = [], set()
    for s in steps:
        if s["step"] not in seen:  # the first time each ended
            seen.add(s["step"])
            out.append({"step": s["step"], "s": round(s["t"] - app.t0, 3)})
    out.append({"step": "connected (status says so)", "s": round(end, 3)})
    return out


def import_times(module: str, top: int = 12) -> dict[str, Any]:
    """`python -X importtime -c 'import MODULE'`: the total, and the packages (first
    two dotted parts) that cost most, by their own import time summed."""
    r = subprocess.run(
        [PY, "-X", "importtime", "-c", f"import {module}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    own: dict[str, int] = {}
    total = 0
    for line in r.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if not m:
            continue
        self_us, cum_us, indent, name = int(m[1]), int(m[2]), m[3], m[4]
        if len(indent) == 1:  # a top-level import: its cumulative time counts once
            total += cum_us
        key = ".".join(name.split(".")[:2])
        own[key] = own.get(key, 0) + self_us
    ranked = sorted(own.items(), key=lambda kv: -kv[1])[:top]
    return {
        "total_ms": round(total / 1000, 1),
        "top_self_ms": {k: round(v / 1000, 1) for k, v in ranked},
    }


# --- the native window under Xvfb ------------------------------------------------------


class Xvfb:
    def __init__(self) -> None:
        read_fd, write_fd = os.pipe()
        self.proc = subprocess.Popen(
            [
                "Xvfb",
                "-displayfd",
                str(write_fd),
                "-screen",
                "0",
                "1280x800x24",
                "-nolisten",
                "tcp",
                "-noreset",
            ],
            pass_fds=(write_fd,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(write_fd)
        with os.fdopen(read_fd) as ready:
            number = ready.readline().strip()  # once Xvfb is ready; "" if it died
        if not number:
            self.proc.wait(60)
            raise RuntimeError(
                f"Xvfb did not start (exit status {self.proc.returncode})"
            )
        self.display = f":{number}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


class WindowProbe:
    """The app's top-level window on the X server: mapped, and what its pixels show."""

    def __init__(self, display: str, title: str = "Diminuendo"):
        from Xlib import display as xdisplay

        self.d = xdisplay.Display(display)
        self.title = title

    def window(self) -> Any:
        from Xlib import X

        for w in self.d.screen().root.query_tree().children:
            try:  # a window may go between the tree query and this look at it
                if (
                    w.get_wm_name() == self.title
                    and w.get_attributes().map_state == X.IsViewable
                ):
                    return w
            except Exception:
                pass
        return None

    def colours(self, w: Any) -> int:
        """Distinct pixel values in a sample (every 7th pixel) of the screen where the
        window is: read from the root window, since the window itself may reach past
        the screen's edge (then X refuses to read it)."""
        from Xlib import X

        try:
            root = self.d.screen().root
            g = w.get_geometry()
            at = w.translate_coords(root, 0, 0)  # the root's origin, in the window's
            wx, wy = -at.x, -at.y
            screen = root.get_geometry()
            x, y = max(0, wx), max(0, wy)
            width = min(wx + g.width, screen.width) - x
            height = min(wy + g.height, screen.height) - y
            if width <= 0 or height <= 0:
                return 0
            raw = root.get_image(x, y, width, height, X.ZPixmap, 0xFFFFFFFF).data
        except Exception:
            return 0
        px = memoryview(raw)[: len(raw) // 4 * 4].cast("I")
        return len(set(px[::7]))

    def close(self) -> None:
        self.d.close()


def _painted(probe: WindowProbe, w: Any) -> bool:
    return probe.colours(w) >= PAINTED_COLOURS


def window_support(display: str) -> str | None:
    code = "from dim_actors.desktop.window import window_support; print(window_support() or '')"
    r = subprocess.run(
        [PY, "-c", code],
        env={**os.environ, "DISPLAY": display},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return r.stdout.strip() or None


def window_runs(gateway_url: str, runs: int) -> dict[str, Any]:
    """Popen -> the window mapped, and -> painted, `runs` times, each on a fresh X
    server."""
    mapped, painted = [], []
    x = Xvfb()
    try:
        why = window_support(x.display)
        if why:
            return {"available": False, "reason": why}
    finally:
        x.stop()
    browser = shutil.which("true") or "/bin/true"  # in case the window falls back
    for i in range(runs):
        x = Xvfb()
        probe = WindowProbe(x.display)
        try:
            with Workdir("startup-window") as wd:
                app = launch(
                    wd / "home",
                    ["--gateway", gateway_url],
                    env={"DISPLAY": x.display, "BROWSER": f"{browser} %s"},
                )
                try:
                    w = wait_until(probe.window, 120, "the native window mapped", 0.02)
                    mapped.append(time.time() - app.t0)
                    wait_until(
                        functools.partial(_painted, probe, w),
                        120,
                        "the native window painted (more than its background)",
                        0.05,
                    )
                    painted.append(time.time() - app.t0)
                finally:
                    app.stop()
        finally:
            probe.close()
            x.stop()
        log(
            f"  run {i + 1}: window mapped {mapped[-1]:.3f}s, painted {painted[-1]:.3f}s"
        )
    return {"mapped_s": _summary(mapped), "painted_s": _summary(painted)}


def run(quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": RUNS}
    with Workdir("startup-gw") as wd:
        gw = Gateway(wd)
        try:
            log(
                f"startup: launch -> connected, --gateway URL --no-browser, {RUNS} runs"
            )
            out["connected_s"] = _summary(connected_runs(gw.url, RUNS))
            log(f"startup: launch -> connected, embedded dev gateway, {RUNS} runs")
            out["connected_embedded_s"] = _summary(connected_runs(None, RUNS))
            log(f"startup: launch -> native window painted (Xvfb), {RUNS} runs")
            if shutil.which("Xvfb"):
                out["window"] = window_runs(gw.url, RUNS)
            else:
                out["window"] = {"available": False, "reason": "Xvfb is not installed"}
            if os.environ.get("PYTHONDONTWRITEBYTECODE"):
                log(
                    "startup: PYTHONDONTWRITEBYTECODE is set: as is / compiled, run for run"
                )
                b = bytecode_runs(gw.url, RUNS, wd / "pycache")
                out["bytecode"] = {k: _summary(v) for k, v in b.items()}
            log("startup: where the time goes")
            out["steps"] = traced_steps(gw.url)
        finally:
            gw.stop()
    out["imports"] = {
        "supervisor": import_times("dim_actors.app.main"),
        "connection process": import_times("dim_actors.connection.actor"),
    }
    win = out["window"]
    out["summary"] = {
        "connected_s": out["connected_s"]["p50"],
        "connected": out["connected_s"],
        "connected_embedded": out["connected_embedded_s"],
        "window_painted_s": (win.get("painted_s") or {}).get("p50"),
        "window_painted": win.get("painted_s") or win,
        "window_mapped": win.get("mapped_s"),
        "bytecode": out.get("bytecode"),
    }
    return out


if __name__ == "__main__":
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=2))
