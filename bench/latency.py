"""Latency at a steady rate: `/stream N 2000 stamp`, every delta carrying the gateway's send time
(`sentNs`, time.time_ns() when the gateway emits it). Gateway send -> applied in the router's
stores (the router's histogram, `dimctl status --json`), and gateway send -> parsed by the page
(the probe injected into the real page; the browser's clock is performance.timeOrigin + now(),
coarsened by Chromium to 0.1 ms). Same machine, same wall clock. Side by side: the single-process
client (send -> applied in its receiving thread), against its own gateway.
"""

from __future__ import annotations

import json
from typing import Any

from bench.harness import (
    BUSY_LOOP,
    CpuMeter,
    DimApp,
    Gateway,
    Page,
    Workdir,
    browser_groups,
    log,
    percentiles,
    teardown,
    wait_turn_ends,
    wait_until,
)
from bench.throughput import single_process


def dim_desktop(
    rate: int, seconds: float, busy: bool = False, with_page: bool = True
) -> dict[str, Any]:
    """One run of dim-desktop with its page (or without one: what the page's share of
    the two cores costs the stores); `busy`: the page's main thread kept half busy
    (harness.BUSY_LOOP) from before the stamped stream to its end."""
    n = int(rate * seconds)
    with Workdir("latency") as wd:
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
                page.select(sid)
            # Warm-up (not stamped, so not measured): imports, caches, the page's first renders.
            app.run_turn(sid, f"/stream {rate} {rate}")
            wait_until(
                lambda: app.status()["router"]["deltas"]["count"] >= rate,
                60,
                f"the {rate} warm-up deltas in the stores",
                0.2,
            )
            if page is not None:
                wait_turn_ends(page, 1, 60, "the warm-up's turn_complete on the page")
                if busy:
                    page.page.evaluate(BUSY_LOOP)
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
            app.run_turn(sid, f"/stream {n} {rate} stamp")
            wait_until(
                lambda: (
                    app.status()["router"].get("latencyMs", {}).get("count", 0) >= n
                ),
                seconds * 4 + 60,
                "the stamped stream in the stores",
                0.5,
            )
            if page is not None:
                wait_turn_ends(
                    page,
                    2,
                    seconds * 4 + 60,
                    "the stamped stream's turn_complete on the page",
                )
            cpu_s = cpu.stop()
            stores = app.status()["router"]["latencyMs"]
            probe = page.probe(with_latency=True) if page is not None else None
        finally:
            teardown(page, app, gw)
    out: dict[str, Any] = {
        "n": n,
        "rate": rate,
        "busy": busy,
        "stores": {k: stores[k] for k in ("p50", "p99", "max", "count")},
        # send -> received by the connection process, and received -> applied
        "storesReceived": {k: stores["received"][k] for k in ("p50", "p99", "max")},
        "storesCrossing": {k: stores["crossing"][k] for k in ("p50", "p99", "max")},
        "cpuSeconds": cpu_s,
    }
    if probe is not None:
        out |= {
            "page": percentiles(probe["lat"]),
            "pageLost": probe["gaps"],
            "pageDuplicated": probe["dup"],
            "pageOutOfOrder": probe["ooo"],
        }
    return out


def run(quick: bool) -> dict[str, Any]:
    rate = 2000
    seconds = 10 if quick else 30
    log(f"latency: dim-desktop, /stream {rate * seconds} {rate} stamp")
    dim = dim_desktop(rate, seconds)
    log(f"  stores {dim['stores']}, page {dim['page']}")
    log(f"latency: dim-desktop without a page, /stream {rate * seconds} {rate} stamp")
    no_page = dim_desktop(rate, seconds, with_page=False)
    log(f"  stores {no_page['stores']}")
    log("latency: single-process client, same stream")
    n = rate * seconds
    single = single_process(n, f"/stream {n} {rate} stamp", timeout=seconds * 4 + 60)
    log(f"  {single['latencyMs']}")
    return {
        "dim": dim,
        "dimNoPage": no_page,
        "single": {"stores": single["latencyMs"], "check": single["check"]},
    }


if __name__ == "__main__":
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=2))
