"""Big histories: a session of 10,000 turns and 1,000,000 events (quick: 1,000 / 100,000).

The session is written into the dev gateway's store before it starts
(`dim-gateway --seed-history`, devgateway/seed.py); dim-desktop starts with no page. Then:

* open_s: a page opens, the user clicks the session, until the newest turn's answer is on
  screen and the message box takes input (the first open: the app catches the session up,
  its newest 10,000 events).
* reload_s: the page is reloaded, until the same (the app holds the session now).
* get_state_bytes: the size of one `get_state` answer (what a page loads at start).
* supervisor_rss_mb: the supervisor's RSS after the reload (VmRSS), and its peak (VmHWM).
* page_heap_mb: the page's JS heap after the reload.
* older_s / older_turns / older_bytes: one `get_turns` past the oldest turn the app holds (the
  app fetches them from the gateway, as when the user scrolls up to them), and its size.

Each wait is bounded (OPEN_LIMIT_S); a step that does not finish in it is reported as
such, with what the page showed, and the rest is still measured.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from bench.harness import (
    Chromium,
    DimApp,
    Gateway,
    Workdir,
    log,
    peak_rss_mb,
    proc_status,
    teardown,
)
from dim_actors.devgateway.seed import seed_history

OPEN_LIMIT_S = 300.0


def _interactive(page: Any, turns: int) -> str:
    """Wait until the newest turn's answer shows and the message box is enabled."""
    from playwright.sync_api import TimeoutError as PwTimeout

    last = page.get_by_test_id("turn").last.get_by_test_id("assistant-text")
    try:
        page.wait_for_selector("body[data-ready='1']", timeout=OPEN_LIMIT_S * 1000)
        last.filter(has_text=f"of answer {turns}:").wait_for(
            timeout=OPEN_LIMIT_S * 1000
        )
        page.wait_for_selector(
            "[data-testid='message-input']:enabled", timeout=OPEN_LIMIT_S * 1000
        )
    except PwTimeout:
        return "timeout"
    return "ok"


def _timed(
    page: Any, turns: int, step: Callable[[], Any], key: str, what: str
) -> dict[str, Any]:
    """`step`, then the wait until the page is interactive: `{key}_s` its seconds and
    `key` the wait's verdict."""
    t0 = time.monotonic()
    step()
    verdict = _interactive(page, turns)
    took = round(time.monotonic() - t0, 3)
    log(f"history: {what} {verdict} in {took}s")
    return {f"{key}_s": took, key: verdict}


def measure(turns: int, events: int) -> dict[str, Any]:
    with Workdir("history") as wd:
        t0 = time.monotonic()
        sid = seed_history(wd / "gateway-data", turns, events)
        seeded_s = time.monotonic() - t0
        log(f"history: seeded {turns:,} turns / {events:,} events in {seeded_s:.1f}s")
        gw = Gateway(wd)
        app = None
        chromium = None
        out: dict[str, Any] = {"turns": turns, "events": events}
        try:
            app = DimApp(wd / "home", gw.url)
            app.wait_connected()
            chromium = Chromium()
            page = chromium.context.new_page()
            page.goto(app.ui_url)
            page.wait_for_selector("body[data-ready='1']", timeout=60_000)
            item = page.locator(
                f"[data-testid='session-item'][data-session-id='{sid}']"
            )
            item.wait_for(timeout=60_000)
            out.update(_timed(page, turns, item.click, "open", "first open"))
            out.update(_timed(page, turns, page.reload, "reload", "reload"))
            out["turns_on_page"] = page.get_by_test_id("turn").count()
            heap = page.evaluate(
                "() => performance.memory ? performance.memory.usedJSHeapSize : null"
            )
            out["page_heap_mb"] = round(heap / 1e6, 1) if heap else None
            state = app.invoke_raw("get_state", OPEN_LIMIT_S)
            out["get_state_bytes"] = len(state)
            oldest = json.loads(state)["result"]["chats"][sid]["turns"][0]
            t0 = time.monotonic()
            older = app.invoke_raw(
                "get_turns",
                OPEN_LIMIT_S,
                sessionId=sid,
                beforeTurnId=oldest["turnId"],
                limit=100,
            )
            out["older_s"] = round(time.monotonic() - t0, 3)
            out["older_turns"] = len(json.loads(older)["result"]["turns"])
            out["older_bytes"] = len(older)
            out["supervisor_rss_mb"] = round(proc_status(app.pid, "VmRSS") / 1024, 1)
            out["supervisor_peak_rss_mb"] = peak_rss_mb(app.pid)
        finally:
            teardown(chromium, app, gw)
        return out


def run(quick: bool) -> dict[str, Any]:
    turns, events = (1_000, 100_000) if quick else (10_000, 1_000_000)
    return measure(turns, events)


if __name__ == "__main__":
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=2))
