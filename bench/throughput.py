"""Throughput: the dev gateway streams N text deltas as fast as it can (`/stream N`).

Events per second reaching (a) the connection process, (b) the router's stores and (c)
the real page in headless Chromium, in one run of dim-desktop; and, each against its own
fresh gateway, a plain websocket-client receive loop (with and without UTF-8 validation:
the ceiling for this stack) and the single-process client (bench/single.py) doing the
same routing in its receiving thread.

Every rate is deltas / (time the last delta reached that stage - time the first delta
reached the receiving socket), all on this machine's wall clock.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from bench.harness import (
    PY,
    ROOT,
    CpuMeter,
    DimApp,
    Gateway,
    Page,
    PlainClient,
    Workdir,
    browser_groups,
    check_text,
    log,
    teardown,
    wait_until,
)


def raw_loop(
    n: int, skip_utf8_validation: bool, buffered: bool = False
) -> dict[str, Any]:
    """The ceiling: websocket-client's recv_data in a loop, counting text_delta frames."""
    with Workdir("raw") as wd:
        gw = Gateway(wd)
        try:
            c = PlainClient(
                gw.url, skip_utf8_validation=skip_utf8_validation, buffered=buffered
            )
            sid = c.create_session()
            c.join(sid)
            c.send({"type": "run_turn", "sessionId": sid, "text": f"/stream {n}"})
            recv = c.ws.recv_data
            count, first, last = 0, 0, 0
            cpu0 = time.process_time()
            while True:
                _, data = recv()
                if data[9:19] == b"text_delta":
                    if not count:
                        first = time.time_ns()
                    count += 1
                    if count == n:
                        last = time.time_ns()
                        break
            cpu_us = (time.process_time() - cpu0) / count * 1e6
            c.close()
        finally:
            gw.stop()
    return {
        "deltas": count,
        "seconds": round((last - first) / 1e9, 3),
        "eps": round(count / ((last - first) / 1e9)),
        "cpuUsPerEvent": round(cpu_us, 2),
    }


def single_process(
    n: int, script: str | None = None, timeout: float = 600
) -> dict[str, Any]:
    """bench/single.py against its own gateway; rate at its stores (applied in the
    socket thread)."""
    with Workdir("single") as wd:
        gw = Gateway(wd)
        try:
            out = wd / "single.json"
            subprocess.run(
                [
                    PY,
                    "-m",
                    "bench.single",
                    "--url",
                    gw.url,
                    "--script",
                    script or f"/stream {n}",
                    "--n",
                    str(n),
                    "--out",
                    str(out),
                    "--timeout-s",
                    str(timeout),
                ],
                cwd=ROOT,
                check=True,
                stdout=subprocess.DEVNULL,
                timeout=timeout + 60,
            )
            r = json.loads(out.read_text())
        finally:
            gw.stop()
    d = r["deltas"]
    span = (d["lastApplyNs"] - d["firstRecvNs"]) / 1e9
    return {
        "deltas": d["count"],
        "seconds": round(span, 3),
        "eps": round(d["count"] / span),
        "check": r["check"],
        "latencyMs": r.get("latencyMs"),
        "peakRssMb": r.get("peakRssMb"),
    }


def dim_desktop(n: int, with_page: bool = True, timeout: float = 600) -> dict[str, Any]:
    """One run of dim-desktop (own process) with the real page: rates at each stage."""
    with Workdir("dim") as wd:
        gw = Gateway(wd)
        app = page = None
        try:
            app = DimApp(wd / "home", gw.url)
            app.wait_connected()
            # The session first, then the page (Page.select says why).
            sid = app.invoke("create_session", agentType="coding-agent")["session"][
                "id"
            ]
            app.invoke("join_session", sessionId=sid)
            if with_page:
                page = Page(app.ui_url)
                # the page joins and shows the session, as a user would
                page.select(sid)
            conn_pid = app.status()["connection"]["pid"]
            cpu = CpuMeter(
                {
                    "gateway": lambda: [gw.pid],
                    "connection": lambda: [conn_pid],
                    "supervisor": lambda: [app.pid],
                    **browser_groups(lambda: [gw.pid, app.pid, conn_pid]),
                }
            )
            cpu.start()
            t0 = time.monotonic()
            turn_id = app.run_turn(sid, f"/stream {n}")
            wait_until(
                lambda: app.status()["router"]["deltas"]["count"] >= n,
                timeout,
                f"the {n} deltas in the stores",
                0.25,
            )
            stores_done = time.monotonic() - t0
            if page is not None:
                # The turn's end follows its last delta on the page's socket: it comes
                # even when deltas were lost (then reported as lost, not waited for).
                wait_until(
                    lambda: (lambda b: b["deltas"] >= n or b["turnEnds"] >= 1)(
                        page.probe()
                    ),
                    timeout,
                    f"the {n} deltas (or their turn's end) on the page",
                    0.25,
                )
            cpu_s = cpu.stop()
            status = app.status()
            turn = app.turn(sid, turn_id) or {}
            probe = page.probe() if page is not None else None
        finally:
            teardown(page, app, gw)
    d = status["router"]["deltas"]
    first = d["firstRecvNs"]
    out: dict[str, Any] = {
        "deltas": d["count"],
        "connection": {
            "seconds": round((d["lastRecvNs"] - first) / 1e9, 3),
            "eps": round(d["count"] / ((d["lastRecvNs"] - first) / 1e9)),
        },
        "stores": {
            "seconds": round((d["lastApplyNs"] - first) / 1e9, 3),
            "eps": round(d["count"] / ((d["lastApplyNs"] - first) / 1e9)),
        },
        "storesCheck": check_text(turn.get("text", ""), n),
        "storesWaitS": round(stores_done, 1),
        "cpuSeconds": cpu_s,
    }
    if probe is not None:
        span = (probe["lastMs"] * 1e6 - first) / 1e9
        out["page"] = {
            "seconds": round(span, 3),
            "eps": round(probe["deltas"] / span),
            "deltas": probe["deltas"],
            "frames": probe["frames"],
            "maxBatch": probe["maxBatch"],
            "lost": probe["gaps"],
            "duplicated": probe["dup"],
            "outOfOrder": probe["ooo"],
            "bridgeQueuePeak": status["uibridge"].get("pageQueuePeak"),
            "errors": page.errors[:3] if page else [],
        }
    return out


def run(quick: bool) -> dict[str, Any]:
    n = 200_000
    out: dict[str, Any] = {"n": n}
    steps = [
        (
            "raw",
            "plain websocket-client loop, skip_utf8_validation=True",
            lambda: raw_loop(n, True),
        ),
        ("rawUtf8", "plain loop with UTF-8 validation", lambda: raw_loop(n, False)),
        (
            "rawBuffered",
            "plain loop, read-ahead buffer (dim_actors/connection/fastws.py)",
            lambda: raw_loop(n, True, buffered=True),
        ),
        ("single", "single-process client", lambda: single_process(n)),
        (
            "dim",
            "dim-desktop with the page in headless Chromium",
            lambda: dim_desktop(n),
        ),
        (
            "dimNoPage",
            "dim-desktop without a page",
            lambda: dim_desktop(n, with_page=False),
        ),
    ]
    for key, what, fn in steps:
        log(f"throughput: {what}, {n} deltas")
        out[key] = fn()
        log(f"  {out[key]}")
    return out


if __name__ == "__main__":
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=2))
