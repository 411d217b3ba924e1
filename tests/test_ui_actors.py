"""The Actors panel (in the Diagnostics view): live status, a Restart button per actor, a
live message log with a type filter; and the connection's state in the page, counting down
to the next attempt while reconnecting."""

from __future__ import annotations

import json
import re

import websocket
from apphelpers import GatewayProcess
from playwright.sync_api import expect

# ms: generous for 2 shared, busy cores (a CPU hog too); a passing run waits far less
T = 30_000


def test_actors_panel_restarts_an_actor_and_shows_its_live_log(page, app):
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=T)
    page.get_by_test_id("diagnostics-open").click()
    rows = page.get_by_test_id("actor-row")
    expect(rows).to_have_count(6, timeout=T)
    journal = page.locator("[data-testid='actor-row'][data-actor='journal']")
    expect(journal.get_by_test_id("actor-state")).to_have_text("running")
    expect(journal.get_by_test_id("actor-restarts")).to_have_text("0")
    journal.get_by_test_id("actor-restart").click()
    expect(journal.get_by_test_id("actor-restarts")).to_have_text("1", timeout=T)
    assert app.status()["journal"]["restarts"] == 1

    router = page.locator("[data-testid='actor-row'][data-actor='router']")
    router.get_by_test_id("actor-logs").click()
    lines = page.get_by_test_id("actor-log-lines")
    expect(lines).to_contain_text("invoke", timeout=T)
    page.get_by_test_id("actor-log-filter").fill("connection_state")
    page.get_by_test_id("actor-log-filter").press("Enter")
    expect(lines).not_to_contain_text(" invoke ", timeout=T)
    expect(lines).to_contain_text("connection_state")
    # Live: a message the router receives now shows up without touching the page.
    page.get_by_test_id("actor-log-filter").fill("invoke")
    page.get_by_test_id("actor-log-filter").press("Enter")
    app.invoke("create_session", agentType="echo", name="log-me-live")
    expect(lines).to_contain_text("log-me-live", timeout=T)
    assert page.page_errors == []


def test_actors_panel_shows_what_dimctl_status_shows(page, app):
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=T)
    page.get_by_test_id("diagnostics-open").click()
    row = lambda name: page.locator(f"[data-testid='actor-row'][data-actor='{name}']")  # noqa: E731
    # Messages handled, live: the router's count moves as it works.
    handled = row("router").get_by_test_id("actor-handled")
    expect(handled).to_have_text(re.compile(r"^\d+$"), timeout=T)
    before = int(handled.inner_text())
    for _ in range(3):
        app.invoke("list_sessions")
    expect(handled).not_to_have_text(str(before), timeout=T)
    assert int(handled.inner_text()) > before
    # The connection actor's connection state and its reconnects count; only that actor
    # has them.
    conn = row("connection").get_by_test_id("actor-connection")
    expect(conn).to_have_text("connected · 0 reconnects", timeout=T)
    expect(row("router").get_by_test_id("actor-connection")).to_have_text("")
    # The last error, and when it happened.
    out = app.dimctl("crash", "journal")
    assert out.returncode == 0, out.stderr
    expect(row("journal").get_by_test_id("actor-last-error")).to_contain_text(
        "fault injected", timeout=T
    )
    expect(row("journal").get_by_test_id("actor-last-error-at")).to_have_text(
        re.compile(r"^ at \d\d:\d\d:\d\d$")
    )
    status = app.status()["journal"]
    assert status["lastErrorAt"] and "fault injected" in status["lastError"]
    assert row("journal").get_by_test_id("actor-last-error-at").get_attribute(
        "data-at"
    ) == str(status["lastErrorAt"])
    assert page.page_errors == []


def test_reconnecting_counts_down_to_the_next_attempt(page, app, tmp_path):
    # AUTH_RATE_LIMITED tells the client how long to wait (tens of seconds here): a
    # countdown to see.
    gw = GatewayProcess(tmp_path / "gw", args=["--token", "right"]).start()
    try:
        # 5 failures fill the per-IP window; then every attempt is refused a while
        for _ in range(6):
            ws = websocket.create_connection(gw.url, timeout=30)
            ws.recv(), ws.recv()
            ws.send(json.dumps({"type": "authenticate", "token": "wrong"}))
            last = json.loads(ws.recv())
            ws.close()
        assert last["code"] == "AUTH_RATE_LIMITED" and last["retryAfterMs"] > 20_000
        expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=T)
        indicator = page.get_by_test_id("connection-state")
        indicator.click()
        page.get_by_test_id("gateway-url").fill(gw.url)
        page.get_by_test_id("gateway-token").fill("right")
        page.get_by_test_id("gateway-connect").click()
        expect(indicator).to_have_text(
            re.compile(r"^Reconnecting in \d+ s…$"), timeout=T
        )
        expect(indicator).to_have_attribute("data-state", "reconnecting")
        first = int(re.search(r"\d+", indicator.inner_text()).group())
        assert 1 < first <= 60
        # Counting down, without a new connection-state from the bridge: the next one
        # comes only with the next attempt, `first` seconds from now, so a lower number
        # seen before then is the page's.
        lower = "|".join(str(n) for n in range(1, first))
        expect(indicator).to_have_text(
            re.compile(rf"^Reconnecting in ({lower}) s…$"),
            timeout=min(T, (first - 1) * 1000),
        )
        connection = page.locator("[data-testid='actor-row'][data-actor='connection']")
        expect(connection.get_by_test_id("actor-connection")).to_have_text(
            re.compile(r"^reconnecting · [1-9]\d* reconnects?$"), timeout=T
        )
        assert page.page_errors == []
    finally:
        gw.stop()
