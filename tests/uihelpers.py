"""What the page tests do first: wait for the page to be ready and connected, and open a
new session the way a user does (the agent picker, then New session)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


def send_turn(page: Page, text: str) -> None:
    """Send `text` from the message box and wait for its turn to show."""
    turns = page.get_by_test_id("turn").count()
    box = page.get_by_test_id("message-input")
    box.fill(text)
    box.press("Enter")
    expect(page.get_by_test_id("turn")).to_have_count(turns + 1, timeout=T)


def run_turn(page: Page, script: str) -> None:
    """Send `script` from the message box and wait for its turn to complete."""
    send_turn(page, script)
    expect(page.get_by_test_id("turn").last).to_have_attribute(
        "data-status", "complete", timeout=T
    )


@contextmanager
def seeded_gateway(data: Path, turns: int, events: int) -> Iterator[Any]:
    """A dev gateway whose store holds one long session (`--seed-history`): `.seeded` is
    its id."""
    from dim_actors.devgateway import BackgroundGateway
    from dim_actors.devgateway.seed import seed_history

    sid = seed_history(data, turns, events)
    with BackgroundGateway(rate_limit=100_000, data_dir=data) as g:
        g.seeded = sid
        yield g


@contextmanager
def seeded_session_open(
    browser: Any, gw: Any, dim_home: Path, turns: int
) -> Iterator[tuple[Page, Any]]:
    """dim-desktop against `gw` (seeded_gateway), its page showing the seeded session's
    newest turn; (page, app). No page error may have been raised by the end."""
    from apphelpers import App

    app = App(dim_home, ["--gateway", gw.url])
    context = None
    try:
        app.wait_connected()
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(app.runtime["uiUrl"])
        ready(page)
        page.locator(
            f"[data-testid='session-item'][data-session-id='{gw.seeded}']"
        ).click()
        # its newest seeded turn (a test may add one after it: the gateway is a module's)
        newest = page.locator(f"[data-turn-id='turn_seed_{turns - 1:07d}']")
        expect(newest).to_contain_text(f"of answer {turns}:", timeout=T)
        yield page, app
        assert errors == []
    finally:
        if context is not None:
            context.close()
        app.stop()
