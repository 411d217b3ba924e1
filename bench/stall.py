"""Stall immunity (issue 5): a session streams 2,000 events/s (`/stream N 2000`). The UI
is blocked for 10 s, later the supervisor process is stopped (SIGSTOP) past the
staleness limit and continued.

dim-desktop: `dimctl crash uibridge --hang 10` (the hang timeout is 30 s: no restart),
then SIGSTOP of the supervisor process for 40 s (past the 35 s `stale_after_s`), then
SIGCONT. The connection process is not stopped: it keeps reading, answering pings and
spilling to disk.

Side by side, the single-process client (bench/single.py: the same connection code and
stores, the events applied in the socket's thread): SIGUSR1 blocks its event handling
for 10 s (its UI, in the same thread as its socket), then SIGSTOP of the whole process
for the same time, then SIGCONT.

The gateway (own process, `--stats-file --ping-probe-ms 100`) logs every connection's
open and close and a WebSocket ping round trip every 100 ms. Reported: disconnects seen
by the gateway, ping round trips before and during each stall, events lost / duplicated
/ out of order (in the stores, and for dim-desktop also on a /events reader standing in
for the page), reconnects, peak RSS.

--quick: the SIGSTOP lasts 15 s, past a staleness limit lowered to 12 s (ping every 5
s), instead of 40 s past 35 s; the run says so in its output.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from typing import Any

import websocket

from bench.harness import (
    PY,
    ROOT,
    DimApp,
    Gateway,
    Workdir,
    check_text,
    log,
    peak_rss_mb,
    percentiles,
    wait_until,
)

RATE = 2000
PRE_S, HANG_S, MID_S, POST_S = 3.0, 10.0, 3.0, 4.0


def plan(quick: bool) -> dict[str, float]:
    if quick:
        return {"stop_s": 15.0, "stale_after_s": 12.0, "ping_interval_s": 5.0}
    return {"stop_s": 40.0, "stale_after_s": 35.0, "ping_interval_s": 30.0}


class PageReader:
    """Stands in for the page: the bridge's /events socket, checked for order, loss and
    duplicates."""

    def __init__(self, url: str):
        self.ws = websocket.create_connection(
            url, timeout=30, skip_utf8_validation=True
        )
        self.deltas = 0
        self.last_seq: dict[str, int] = {}
        self.lost = self.dup = self.ooo = 0
        self.closed = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        self.ws.settimeout(None)
        try:
            while True:
                data = self.ws.recv()
                if not data:
                    break
                frame = json.loads(data)
                for f in frame.get("batch") or [frame]:
                    p = f.get("payload") if f.get("event") == "gateway-event" else None
                    if (
                        not isinstance(p, dict)
                        or p.get("seq") is None
                        or not p.get("sessionId")
                    ):
                        continue
                    last = self.last_seq.get(p["sessionId"], 0)
                    if p["seq"] == last:
                        self.dup += 1
                    elif p["seq"] < last:
                        self.ooo += 1
                    else:
                        if last and p["seq"] != last + 1:
                            self.lost += p["seq"] - last - 1
                        self.last_seq[p["sessionId"]] = p["seq"]
                        if p.get("type") == "text_delta":
                            self.deltas += 1
        except (websocket.WebSocketException, OSError, ValueError):
            pass
        self.closed = True


def gateway_view(gw: Gateway, marks: dict[str, float], until: float) -> dict[str, Any]:
    lines = gw.stats()
    pings = [line for line in lines if line["ev"] == "ping"]

    def rtt(a: float, b: float) -> dict[str, Any]:
        window = [p for p in pings if a <= p["sent"] < b]
        out: dict[str, Any] = percentiles(
            [p["rttMs"] for p in window if p["rttMs"] is not None]
        )
        unanswered = [p["unansweredMs"] for p in window if p["rttMs"] is None]
        if unanswered:  # the connection ended with this ping in flight
            out["unanswered"] = len(unanswered)
            out["unansweredWaitedMs"] = round(max(unanswered), 1)
        return out

    return {
        "disconnects": sum(
            1
            for line in lines
            if line["ev"] == "close" and line["disconnect"] and line["t"] < until
        ),
        "connections": sum(
            1 for line in lines if line["ev"] == "open" and line["t"] < until
        ),
        "pingMs": {
            "before": rtt(marks["start"], marks["hang"]),
            "uiBlocked": rtt(marks["hang"], marks["hang"] + HANG_S),
            "stopped": rtt(marks["stop"], marks["cont"]),
        },
        "maxPingMs": round(
            max((p["rttMs"] or p.get("unansweredMs", 0) for p in pings), default=0.0), 1
        ),
    }


def dim_desktop(quick: bool) -> dict[str, Any]:
    p = plan(quick)
    n = int(RATE * (PRE_S + HANG_S + MID_S + p["stop_s"] + POST_S))
    marks: dict[str, float] = {}
    with Workdir("stall") as wd:
        gw = Gateway(wd, stats=True, ping_probe_ms=100)
        app = reader = None
        try:
            app = DimApp(
                wd / "home",
                gw.url,
                settings={
                    "stale_after_s": p["stale_after_s"],
                    "ping_interval_s": p["ping_interval_s"],
                },
            )
            app.wait_connected()
            reader = PageReader(
                app.base.replace("http://", "ws://")
                + f"/events?token={app.token}&batch=1"
            )
            conn_pid = app.status()["connection"]["pid"]
            marks["start"] = time.time()
            sid, turn_id = app.start_stream(f"/stream {n} {RATE}")
            time.sleep(PRE_S)
            marks["hang"] = time.time()
            out = app.dimctl("crash", "uibridge", "--hang", str(HANG_S))
            if out.returncode != 0:
                raise RuntimeError(f"dimctl crash: {out.stderr}")
            time.sleep(HANG_S + MID_S)
            marks["stop"] = time.time()
            os.kill(app.pid, signal.SIGSTOP)
            time.sleep(p["stop_s"])
            os.kill(app.pid, signal.SIGCONT)
            marks["cont"] = time.time()
            wait_until(
                lambda: app.status()["router"]["deltas"]["count"] >= n,
                300,
                "the stream in the stores",
                0.5,
            )
            wait_until(
                lambda: reader.deltas >= n or reader.closed,
                120,
                "the stream on the page socket",
                0.5,
            )
            marks["end"] = time.time()
            status = app.status()
            turn = app.turn(sid, turn_id) or {}
            rss = {
                "connection": peak_rss_mb(conn_pid),
                "supervisor": peak_rss_mb(app.pid),
            }
            spilled = "spilling to" in app.output()
        finally:
            if reader is not None:
                try:
                    reader.ws.close()
                except Exception:
                    pass
            if app is not None:
                app.stop()
            gw.stop()
        view = gateway_view(gw, marks, marks["end"])
    return {
        "n": n,
        **view,
        "stores": check_text(turn.get("text", ""), n),
        "page": {
            "deltas": reader.deltas,
            "lost": reader.lost,
            "duplicated": reader.dup,
            "outOfOrder": reader.ooo,
        },
        "reconnects": status["connection"].get("reconnects"),
        "restarts": {k: v["restarts"] for k, v in status.items()},
        "connectionPid": "unchanged"
        if status["connection"]["pid"] == conn_pid
        else "changed",
        "peakRssMb": rss,
        "spilled": spilled,
        "catchUpS": round(marks["end"] - marks["cont"], 1),
    }


def single_process(quick: bool) -> dict[str, Any]:
    p = plan(quick)
    n = int(RATE * (PRE_S + HANG_S + MID_S + p["stop_s"] + POST_S))
    marks: dict[str, float] = {}
    with Workdir("stall-single") as wd:
        gw = Gateway(wd, stats=True, ping_probe_ms=100)
        proc = None
        try:
            out = wd / "single.json"
            proc = subprocess.Popen(
                [
                    PY,
                    "-m",
                    "bench.single",
                    "--url",
                    gw.url,
                    "--script",
                    f"/stream {n} {RATE}",
                    "--n",
                    str(n),
                    "--out",
                    str(out),
                    "--hang-s",
                    str(HANG_S),
                    "--stale-after-s",
                    str(p["stale_after_s"]),
                    "--ping-interval-s",
                    str(p["ping_interval_s"]),
                    "--timeout-s",
                    "600",
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            marks["start"] = time.time()
            if proc.stdout.readline().strip() != "streaming":  # type: ignore[union-attr]
                raise RuntimeError("the single-process client did not start its stream")
            time.sleep(PRE_S)
            marks["hang"] = time.time()
            os.kill(proc.pid, signal.SIGUSR1)
            time.sleep(HANG_S + MID_S)
            marks["stop"] = time.time()
            os.kill(proc.pid, signal.SIGSTOP)
            time.sleep(p["stop_s"])
            os.kill(proc.pid, signal.SIGCONT)
            marks["cont"] = time.time()
            proc.stdout.readline()  # type: ignore[union-attr]  # "done"
            marks["end"] = time.time()
            proc.wait(timeout=60)
            r = json.loads(out.read_text())
        finally:
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
            gw.stop()
        view = gateway_view(gw, marks, marks["end"])
    return {
        "n": n,
        **view,
        "stores": r["check"],
        "reconnects": r["reconnects"],
        "states": [s[1] + (f" ({s[2]})" if s[2] else "") for s in r["states"]],
        "peakRssMb": {"process": r.get("peakRssMb")},
        "catchUpS": round(marks["end"] - marks["cont"], 1),
    }


def run(quick: bool) -> dict[str, Any]:
    p = plan(quick)
    note = (
        f"quick: SIGSTOP {p['stop_s']:.0f} s past a staleness limit lowered to "
        f"{p['stale_after_s']:.0f} s "
        f"(ping every {p['ping_interval_s']:.0f} s)"
        if quick
        else f"SIGSTOP {p['stop_s']:.0f} s past the {p['stale_after_s']:.0f} s staleness limit"
    )
    log(f"stall: dim-desktop ({note}, UI blocked {HANG_S:.0f} s)")
    dim = dim_desktop(quick)
    log(f"  {dim}")
    log("stall: single-process client, same scenario")
    single = single_process(quick)
    log(f"  {single}")
    return {"note": note, "dim": dim, "single": single}


if __name__ == "__main__":
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=2))
