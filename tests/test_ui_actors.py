"""The Actors panel: live status, a Restart button per actor, a live message log with a type filter."""

from __future__ import annotations

from playwright.sync_api import expect


def test_actors_panel_restarts_an_actor_and_shows_its_live_log(page, app):
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=15000)
    rows = page.get_by_test_id("actor-row")
    expect(rows).to_have_count(6, timeout=10000)
    journal = page.locator("[data-testid='actor-row'][data-actor='journal']")
    expect(journal.get_by_test_id("actor-state")).to_have_text("running")
    expect(journal.get_by_test_id("actor-restarts")).to_have_text("0")
    journal.get_by_test_id("actor-restart").click()
    expect(journal.get_by_test_id("actor-restarts")).to_have_text("1", timeout=10000)
    assert app.status()["journal"]["restarts"] == 1

    router = page.locator("[data-testid='actor-row'][data-actor='router']")
    router.get_by_test_id("actor-logs").click()
    lines = page.get_by_test_id("actor-log-lines")
    expect(lines).to_contain_text("invoke", timeout=10000)
    page.get_by_test_id("actor-log-filter").fill("connection_state")
    page.get_by_test_id("actor-log-filter").press("Enter")
    expect(lines).not_to_contain_text(" invoke ", timeout=10000)
    expect(lines).to_contain_text("connection_state")
    # Live: a message the router receives now shows up without touching the page.
    page.get_by_test_id("actor-log-filter").fill("invoke")
    page.get_by_test_id("actor-log-filter").press("Enter")
    app.invoke("create_session", agentType="echo", name="log-me-live")
    expect(lines).to_contain_text("log-me-live", timeout=10000)
    assert page.page_errors == []
