"""The page in a real headless Chromium (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

from playwright.sync_api import expect


def test_create_a_session_by_clicking_send_hello_and_see_the_reply_stream_in(page, app):
    expect(page.locator("body[data-ready='1']")).to_have_count(1)
    expect(page.get_by_test_id("connection-state")).to_have_text("Connected")
    page.get_by_test_id("new-session").click()
    expect(page.get_by_test_id("session-item")).to_have_count(1)
    box = page.get_by_test_id("message-input")
    box.fill("hello there from the page")
    box.press("Enter")
    turn = page.get_by_test_id("turn").last
    expect(turn.get_by_test_id("user-text")).to_have_text("hello there from the page")
    expect(turn.get_by_test_id("assistant-text")).to_have_text(
        "hello there from the page"
    )
    expect(turn).to_have_attribute("data-status", "complete")
    assert page.page_errors == []


def test_a_reloaded_page_rebuilds_itself_from_get_state(page, app):
    sid = app.invoke("create_session", agentType="echo", name="from the api")[
        "session"
    ]["id"]
    app.invoke("join_session", sessionId=sid)
    app.invoke("run_turn", sessionId=sid, text="remember me")
    page.reload()
    expect(page.locator("body[data-ready='1']")).to_have_count(1)
    item = page.locator(f"[data-testid='session-item'][data-session-id='{sid}']")
    expect(item).to_have_count(1)
    item.click()
    expect(page.get_by_test_id("assistant-text").last).to_have_text("remember me")
