"""What the page tests do first: wait for the page to be ready and connected, and open a
new session the way a user does (the agent picker, then New session)."""

from __future__ import annotations

from playwright.sync_api import Page, expect

T = 60_000  # ms: generous for 2 shared, busy cores; a passing run waits far less


def ready(page: Page) -> None:
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=T)
    expect(page.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", "connected", timeout=T
    )


def new_session(page: Page, agent: str = "coding-agent") -> str:
    """A new session of `agent`, selected and ready; its id."""
    before = page.get_by_test_id("session-item").count()
    page.get_by_test_id("agent-type").select_option(agent)
    page.get_by_test_id("new-session").click()
    expect(page.get_by_test_id("session-item")).to_have_count(before + 1, timeout=T)
    item = page.locator("[data-testid='session-item'][aria-selected='true']")
    expect(item).to_have_attribute("data-status", "ready", timeout=T)
    return item.get_attribute("data-session-id") or ""


def run_turn(page: Page, script: str) -> None:
    """Send `script` from the message box and wait for its turn to complete."""
    turns = page.get_by_test_id("turn").count()
    box = page.get_by_test_id("message-input")
    box.fill(script)
    box.press("Enter")
    expect(page.get_by_test_id("turn")).to_have_count(turns + 1, timeout=T)
    expect(page.get_by_test_id("turn").last).to_have_attribute(
        "data-status", "complete", timeout=T
    )
