"""Plain words where a user reads: the chat header's session state and following badge, the
connection indicator, the commands waiting for the gateway, and one way of saying when."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.apphelpers import App

T = 60_000

STATE_WORDS = {
    "inactive": "Idle",
    "activating": "Starting…",
    "ready": "Ready",
    "running": "Agent working…",
    "waiting": "Waiting for your answer",
    "error": "Error",
    "deactivating": "Stopping…",
}


def ready(page: Page) -> None:
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=T)
    expect(page.get_by_test_id("connection-state")).to_have_text("Connected", timeout=T)


def new_session(page: Page, existing: int = 0) -> str:
    page.get_by_test_id("agent-type").select_option("echo")
    page.get_by_test_id("new-session").click()
    expect(page.get_by_test_id("session-item")).to_have_count(existing + 1, timeout=T)
    item = page.locator("[data-testid='session-item'][aria-selected='true']")
    expect(item).to_have_count(1, timeout=T)
    expect(page.get_by_test_id("session-joined")).to_have_text(
        "Following live", timeout=T
    )
    return item.get_attribute("data-session-id")


def test_the_header_says_one_state_in_words_and_following_never_live_while_offline(
    page: Page, app: App
):
    ready(page)
    new_session(page)
    header = page.locator("#chat-header")
    status = page.get_by_test_id("selected-session-status")
    page.get_by_test_id("message-input").fill("hello")
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("turn").last).to_have_attribute(
        "data-status", "complete", timeout=T
    )
    # One state, in words, whatever the state machine says now; its raw name is an attribute.
    raw = status.get_attribute("data-status")
    expect(status).to_have_text(STATE_WORDS[raw], timeout=T)
    lines = [line.strip() for line in header.inner_text().splitlines()]
    for raw_word in ("inactive", "live", "not joined", "Leave", "Join"):
        assert raw_word not in lines, (raw_word, lines)
    follow = page.get_by_test_id("session-follow")
    expect(follow).to_have_text("Stop following")
    follow.click()
    expect(page.get_by_test_id("session-joined")).to_have_text(
        "Not following", timeout=T
    )
    expect(follow).to_have_text("Follow")
    follow.click()
    expect(page.get_by_test_id("session-joined")).to_have_text(
        "Following live", timeout=T
    )

    # The gateway gone: the indicator says Offline, and so does the badge, never "live".
    app.invoke("gateway_disconnect")
    expect(page.get_by_test_id("connection-state")).to_have_text("Offline", timeout=T)
    expect(page.get_by_test_id("session-joined")).to_have_text("Offline", timeout=T)
    app.invoke("gateway_connect", url=app.runtime["gatewayUrl"])
    expect(page.get_by_test_id("connection-state")).to_have_text("Connected", timeout=T)
    expect(page.get_by_test_id("session-joined")).to_have_text(
        "Following live", timeout=T
    )
    assert page.page_errors == []


def test_the_offline_queue_says_what_waits_in_words(page: Page, app: App):
    ready(page)
    first = new_session(page)
    name = (
        page.locator(f"[data-testid='session-item'][data-session-id='{first}']")
        .get_by_test_id("session-name")
        .inner_text()
        .strip()
    )
    new_session(page, existing=1)
    page.locator(f"[data-testid='session-item'][data-session-id='{first}']").click()
    expect(page.locator("#chat-header [data-testid='session-joined']")).to_have_text(
        "Following live", timeout=T
    )
    app.invoke("gateway_disconnect")
    expect(page.get_by_test_id("connection-state")).to_have_text("Offline", timeout=T)
    page.get_by_test_id("message-input").fill("fix the parser")
    page.get_by_test_id("send").click()
    items = page.get_by_test_id("outbox-item")
    expect(items.first).to_be_visible(timeout=T)
    expect(items.first.locator(".what")).to_have_text(
        "Message “fix the parser” — waiting for the gateway"
    )
    expect(page.get_by_test_id("outbox")).not_to_contain_text("run_turn")
    # Seen from another session, it says which session it goes to.
    other = page.locator(
        f"[data-testid='session-item']:not([data-session-id='{first}'])"
    )
    other.click()
    expect(items.first.locator(".what")).to_have_text(
        f"Message “fix the parser” to {name} — waiting for the gateway", timeout=T
    )
    expect(page.get_by_test_id("outbox-cancel").first).to_have_attribute(
        "aria-label", "Cancel: Message “fix the parser”"
    )
    app.invoke("gateway_connect", url=app.runtime["gatewayUrl"])
    expect(items).to_have_count(0, timeout=T)
    assert page.page_errors == []


def test_times_are_said_one_way_relative_when_recent_with_the_exact_time_on_hover(
    page: Page, app: App
):
    ready(page)
    got = page.evaluate(
        """async () => {
          const { formatWhen, formatTime, timeEl } = await import("/js/dom.js");
          const now = new Date(2026, 11, 6, 15, 30, 0).getTime();
          const at = (d, h, m) => new Date(2026, 11, d, h, m, 0).getTime();
          const el = timeEl(at(1, 9, 5));
          return {
            now: formatWhen(now - 10_000, now),
            min: formatWhen(now - 5 * 60_000, now),
            today: formatWhen(at(6, 14, 2), now),
            yesterday: formatWhen(at(5, 14, 2), now),
            older: formatWhen(at(1, 9, 5), now),
            legacy: formatTime(Date.now() - 1000),
            title: el.title,
            datetime: el.getAttribute("datetime"),
            tag: el.tagName,
          };
        }"""
    )
    assert got["now"] == "just now" and got["legacy"] == "just now"
    assert got["min"] == "5 min ago"
    assert re.fullmatch(r"today 0?2:02\sPM|today 14:02", got["today"]), got
    assert re.fullmatch(r"yesterday 0?2:02\sPM|yesterday 14:02", got["yesterday"]), got
    assert "2026" in got["older"] and "Dec" in got["older"], got
    assert got["tag"] == "TIME" and got["title"] == got["datetime"]
    assert re.fullmatch(r"2026-12-0[01]T\d\d:05:00\.000Z", got["title"]), got
    assert page.page_errors == []
