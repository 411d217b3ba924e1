"""The benchmarks' own parts (bench/), on short runs: what they measure arrives whole and
in order, and what they wait for comes. No timing is judged here: bench/run.py reports
the figures."""

from __future__ import annotations

import json
from pathlib import Path

from bench import run as bench_run
from bench import startup
from bench.harness import (
    DimApp,
    Gateway,
    Page,
    check_text,
    teardown,
    wait_turn_ends,
    wait_until,
)
from bench.webbaseline import BaselinePage, _Serve


def test_the_baseline_page_applies_every_event_of_a_stream_in_order(
    tmp_path: Path, browser
) -> None:
    served = _Serve()
    gw = Gateway(tmp_path, allow_origins=(served.origin,))
    page = None
    try:
        page = BaselinePage(served.origin, gw.url, browser)
        assert page.session_id
        page.run("/stream 300 3000 stamp")
        wait_turn_ends(page, 1, 120, "the turn's end on the page")
        probe = page.probe(with_latency=True)
        assert (probe["gaps"], probe["dup"], probe["ooo"]) == (0, 0, 0)
        assert probe["deltas"] == 300
        assert len(probe["lat"]) == 300  # every delta carried its send time
        assert check_text(page.texts()[0], 300) == {
            "received": 300,
            "lost": 0,
            "duplicated": 0,
            "outOfOrder": 0,
        }
        assert page.errors == []
    finally:
        if page is not None:
            page.close()
        gw.stop()
        served.close()


# Holds the answer to the page's own list_sessions until a session_created event has
# been parsed: the order in which, now and then, a list the gateway gave before the
# session existed reached the page after the session's event (and dropped it).
LATE_LIST = r"""
(() => {
  let created = false;
  const release = [];
  const parse = JSON.parse;
  JSON.parse = function (text, reviver) {
    const r = parse.call(this, text, reviver);
    const frames = r && Array.isArray(r.batch) ? r.batch : [r];
    for (const f of frames) {
      if (f && f.payload && f.payload.type === "session_created") {
        created = true;
        release.splice(0).forEach((go) => go());
      }
    }
    return r;
  };
  const fetch0 = window.fetch;
  window.fetch = async function (url, opts) {
    const answer = await fetch0.call(this, url, opts);
    if (String(url).includes("list_sessions") && !created)
      await new Promise((go) => { release.push(go); setTimeout(go, 3000); });
    return answer;
  };
})();
"""


def test_the_bench_page_selects_a_session_made_before_it_opened(
    tmp_path: Path, browser
) -> None:
    gw = Gateway(tmp_path)
    app = page = None
    try:
        app = DimApp(tmp_path / "home", gw.url)
        app.wait_connected()
        sid = app.invoke("create_session", agentType="coding-agent")["session"]["id"]
        app.invoke("join_session", sessionId=sid)
        page = Page(app.ui_url, init_scripts=(LATE_LIST,), browser=browser)
        page.select(sid)
        turn = app.run_turn(sid, "/stream 50")
        wait_turn_ends(page, 1, 120, "the turn on the page")
        wait_until(
            lambda: check_text(page.text_of(turn), 50)["received"] == 50,
            120,
            "the turn's text on the page",
        )
    finally:
        teardown(page, app, gw)


def test_startup_ranks_import_times() -> None:
    imports = startup.import_times("dim_actors.wire.protocol", top=3)
    assert imports["total_ms"] > 0
    assert 0 < len(imports["top_self_ms"]) <= 3


def test_the_summary_and_table_show_the_new_figures() -> None:
    pct = {"p50": 1.0, "p99": 2.0, "max": 3.0}
    raw = {
        "web_baseline": {
            "summary": {
                "web_baseline": {"idle": pct, "busy": pct},
                "page_beside_baseline": {"idle": pct, "busy": pct},
                "page_20k": pct,
                "web_baseline_20k": pct,
                "page_p99_vs_baseline_idle": {"idle": 1.0, "busy": 1.0},
            }
        },
        "startup": {
            "summary": {
                "connected_s": 0.9,
                "connected": {"p50": 0.9, "max": 1.1},
                "connected_embedded": {"p50": 1.2, "max": 1.3},
                "window_painted_s": 1.8,
                "window_painted": {"p50": 1.8, "max": 2.0},
                "window_mapped": {"p50": 1.5, "max": 1.6},
            }
        },
    }
    s = bench_run.summary(raw)
    assert s["latency_ms"]["web_baseline"]["idle"] == pct
    assert s["latency_ms"]["page_beside_baseline"]["busy"] == pct
    assert s["startup"]["window_painted_s"] == 1.8
    text = bench_run.table(raw, s)
    assert "WEB BASELINE" in text and "START-UP" in text
    json.dumps(s)


def test_the_stores_time_each_leg_of_a_stamped_stream(tmp_path: Path) -> None:
    gw = Gateway(tmp_path)
    app = None
    try:
        app = DimApp(tmp_path / "home", gw.url)
        app.wait_connected()
        sid = app.invoke("create_session", agentType="coding-agent")["session"]["id"]
        app.invoke("join_session", sessionId=sid)
        # not stamped: not timed
        app.run_turn(sid, "/stream 20")
        wait_until(
            lambda: app.status()["router"]["deltas"]["count"] >= 20, 60, "20 deltas"
        )
        assert "latencyMs" not in app.status()["router"]
        app.run_turn(sid, "/stream 300 3000 stamp")
        wait_until(
            lambda: app.status()["router"].get("latencyMs", {}).get("count") == 300,
            60,
            "the 300 stamped deltas timed in the stores",
        )
        lat = app.status()["router"]["latencyMs"]
    finally:
        teardown(app, gw)
    for leg in ("received", "crossing"):
        assert lat[leg]["count"] == 300
        # each leg is a part of the whole, event by event
        assert lat[leg]["max"] <= lat["max"]
        assert lat[leg]["p50"] <= lat["p50"]


def test_the_latency_summary_and_table_show_each_leg() -> None:
    def pct(p99: float) -> dict[str, float]:
        return {"p50": 0.5, "p99": p99, "max": 9.0}

    raw = {
        "latency": {
            "dim": {
                "stores": pct(4.0),
                "storesReceived": pct(2.5),
                "storesCrossing": pct(3.5),
                "page": pct(20.0),
            },
            "dimNoPage": {
                "stores": pct(1.25),
                "storesReceived": pct(0.75),
                "storesCrossing": pct(0.625),
            },
            "single": {"stores": pct(0.5)},
        }
    }
    s = bench_run.summary(raw)
    lat = s["latency_ms"]
    assert lat["stores"]["p99"] == 4.0
    assert lat["stores_received"]["p99"] == 2.5
    assert lat["stores_crossing"]["p99"] == 3.5
    assert lat["stores_no_page"]["p99"] == 1.25
    assert lat["stores_no_page_received"]["p99"] == 0.75
    assert lat["stores_no_page_crossing"]["p99"] == 0.625
    text = bench_run.table(raw, s)
    assert "gateway send -> stores, no page" in text
    assert "0.5/2.5/9 | 0.5/3.5/9" in text
    json.dumps(s)
