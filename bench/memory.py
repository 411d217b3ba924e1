"""Memory under a burst: `/stream 1000000` as fast as the gateway can, with the UI stalled.

Two stalls, each with a fresh gateway and dim-desktop:
- ui-hung: the UI bridge actor is blocked (`dimctl crash uibridge --hang S`, with the hang
  timeout raised so supervision leaves it be) for the whole burst;
- supervisor-stopped: the whole supervisor process is stopped (SIGSTOP) for most of the burst,
  so only the connection process reads, and spills past its memory bound.
Reported: peak RSS (VmHWM) of the dev gateway, the connection process and the supervisor process,
whether the connection process spilled, and whether every delta then reached the stores in order.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import Any

from bench.harness import (
    DimApp,
    Gateway,
    Workdir,
    check_text,
    log,
    peak_rss_mb,
    proc_status,
    wait_until,
)


def burst(n: int, mode: str, stall_s: float) -> dict[str, Any]:
    with Workdir("memory") as wd:
        gw = Gateway(wd)
        app = None
        try:
            app = DimApp(wd / "home", gw.url, settings={"hang_timeout_s": 3600.0})
            app.wait_connected()
            sid = app.invoke("create_session", agentType="coding-agent")["session"][
                "id"
            ]
            app.invoke("join_session", sessionId=sid)
            conn_pid = app.status()["connection"]["pid"]
            pids = {"gateway": gw.pid, "connection": conn_pid, "supervisor": app.pid}
            peaks = dict.fromkeys(pids, 0)
            stop_sampling = threading.Event()

            def sample() -> None:  # VmRSS over time, besides VmHWM at the end
                while not stop_sampling.wait(0.2):
                    for k, pid in pids.items():
                        peaks[k] = max(peaks[k], proc_status(pid, "VmRSS"))

            threading.Thread(target=sample, daemon=True).start()
            t0 = time.monotonic()
            turn_id = app.run_turn(sid, f"/stream {n}")
            if mode == "ui-hung":
                out = app.dimctl("crash", "uibridge", "--hang", str(stall_s))
                if out.returncode != 0:
                    raise RuntimeError(out.stderr)
            else:
                os.kill(app.pid, signal.SIGSTOP)
                time.sleep(stall_s)
                os.kill(app.pid, signal.SIGCONT)
            wait_until(
                lambda: app.status()["router"]["deltas"]["count"] >= n,
                900,
                "the burst in the stores",
                0.5,
            )
            seconds = time.monotonic() - t0
            stop_sampling.set()
            # let the bridge wake up and drain before the app is stopped
            if mode == "ui-hung":
                wait_until(
                    lambda: app.status()["uibridge"]["mailbox"] == 0,
                    stall_s + 120,
                    "the bridge",
                    0.5,
                )
            hwm = {k: peak_rss_mb(pid) for k, pid in pids.items()}
            status = app.status()
            turn = app.turn(sid, turn_id) or {}
            spilled = "spilling to" in app.output()
        finally:
            if app is not None:
                app.stop()
            gw.stop()
    return {
        "mode": mode,
        "n": n,
        "stallS": stall_s,
        "seconds": round(seconds, 1),
        "peakRssMb": hwm,
        "sampledPeakRssMb": {k: round(v / 1024, 1) for k, v in peaks.items()},
        "spilled": spilled,
        "check": check_text(turn.get("text", ""), n),
        "reconnects": status["connection"].get("reconnects"),
        "restarts": {k: v["restarts"] for k, v in status.items() if v.get("restarts")},
    }


def run(quick: bool) -> dict[str, Any]:
    n = 1_000_000
    out = {}
    for mode, stall in (
        ("ui-hung", 20.0 if quick else 60.0),
        ("supervisor-stopped", 10.0 if quick else 30.0),
    ):
        log(f"memory: {n} deltas, {mode} for {stall:.0f}s")
        out[mode] = burst(n, mode, stall)
        log(f"  {out[mode]}")
    return out


if __name__ == "__main__":
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=2))
