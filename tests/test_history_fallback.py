"""What a gateway without `get_events` still gives back: its turn history
(`get_history`). The stores and the page fill in what the missed events would have said,
text only (docs/protocol.md §11): a turn whose end was lost in a disconnect ends as the
gateway recorded it, and a session whose past the app never saw shows its turns, with a
notice that only their text could be fetched.

The whole app against the dev gateway's reference profile (it refuses `get_events`),
real sockets, real headless Chromium for the page. No sleeping: every wait is a
condition or an `expect(...)`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from apphelpers import App, GatewayProcess, wait_until
from gateway_helpers import Client
from playwright.sync_api import Page, expect
from test_ui_protocol import T, by_id, new_session, open_page, ready, send

REFERENCE = ["--profile", "reference"]
FINAL = ("complete", "error", "stopped")
HISTORY_GAP = (
    "Events after #0 could not be fetched from this gateway (it did not answer "
    "get_events; the turns below come from its history, text only). What the agent did "
    "meanwhile may be missing here."
)
ANY_GAP = re.compile(
    r"^Events (between #\d+ and #\d+|after #\d+) could not be fetched from this gateway "
    r"\(.*get_events.*\)\. What the agent did meanwhile may be missing here\.$"
)
MARK = "from the gateway's history"

# Every error toast the page ever shows, also one that went away before the test looked.
WATCH_ERROR_TOASTS = """() => {
  window.__errorToasts = [];
  const seen = new WeakSet();
  const toasts = "[data-testid='toast'][data-level='error']";
  const scan = () => document.querySelectorAll(toasts).forEach((t) => {
    if (!seen.has(t)) { seen.add(t); window.__errorToasts.push(t.textContent); }
  });
  new MutationObserver(scan).observe(document.body, { childList: true, subtree: true });
  scan();
}"""


@pytest.fixture
def gateway(tmp_path: Path):
    """gateway(*args): a dev gateway of the test's own, stopped at the end."""
    started: list[GatewayProcess] = []

    def start(*args: str) -> GatewayProcess:
        gw = GatewayProcess(
            tmp_path / "gw", args=[*args, "--rate-limit", "100000"]
        ).start()
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture
def app_for(tmp_path: Path):
    """app_for(gw): the app on that gateway, connected; stopped at the end."""
    started: list[App] = []

    def start(gw: GatewayProcess) -> App:
        home = tmp_path / "home"
        home.mkdir()
        app = App(home, ["--gateway", gw.url])
        started.append(app)
        app.wait_connected()
        return app

    yield start
    for app in started:
        app.stop()


def stored_turn(app: App, sid: str, turn_id: str) -> dict | None:
    chat = app.invoke("get_state")["chats"].get(sid) or {}
    return next((t for t in chat.get("turns", []) if t["turnId"] == turn_id), None)


def ran_elsewhere(gw: GatewayProcess, *texts: str) -> str:
    """A session another client made and ran echo turns in, each to its end, before this
    app came."""
    with Client(gw.url, expect_authenticated=False) as other:
        sid = other.new_session("echo", name="made elsewhere")
        for text in texts:
            events = other.run(sid, text)
            assert events[-1]["type"] == "turn_complete", events[-1]
    return sid


def watch_error_toasts(page: Page) -> None:
    page.evaluate(WATCH_ERROR_TOASTS)


def error_toasts(page: Page) -> list[str]:
    return page.evaluate("window.__errorToasts")


# --- (a) a turn whose end was lost in a disconnect ------------------------------------


def test_a_turn_whose_end_was_lost_ends_as_the_gateways_history_says(
    browser, gateway, app_for
):
    app = app_for(gateway(*REFERENCE))
    page = open_page(browser, app)
    try:
        ready(page)
        sid = new_session(page).get_attribute("data-session-id")
        # The gateway cuts every socket, then finishes the turn while we reconnect; it
        # will not give the missed events back (get_events), so only its history says
        # how the turn ended.
        send(page, "/drop\nafter the drop")
        turn_id = wait_until(
            lambda: (app.invoke("get_state")["chats"].get(sid) or {}).get("turns"),
            what="the turn in the stores",
        )[0]["turnId"]
        t = wait_until(
            lambda: (lambda t: t if t and t["status"] in FINAL else None)(
                stored_turn(app, sid, turn_id)
            ),
            90,
            interval=0.1,
            what="the turn's end",
        )
        assert (t["status"], t["finalText"]) == ("complete", "after the drop")
        # its start was seen live: only its end came from history
        assert t["fromHistory"] is False

        turn = page.get_by_test_id("turn")
        expect(turn).to_have_attribute("data-status", "complete", timeout=T)
        expect(turn.get_by_test_id("assistant-text")).to_have_text("after the drop")
        expect(turn.get_by_test_id("from-history")).to_have_count(0)

        page.reload()  # a reloaded page agrees with the live one
        ready(page)
        by_id(page, sid).click()
        expect(page.get_by_test_id("turn")).to_have_attribute(
            "data-status", "complete", timeout=T
        )
        expect(page.get_by_test_id("assistant-text")).to_have_text("after the drop")
        assert page.page_errors == []
    finally:
        page.context.close()


# --- (b) a session whose past this app never saw --------------------------------------


def open_with_both_turns(page: Page, sid: str, from_history: bool) -> None:
    """The page, once ready and watched for error toasts, opens the session and shows
    its two turns."""
    ready(page)
    watch_error_toasts(page)
    by_id(page, sid).click()
    shows_both_turns(page, from_history)


def shows_both_turns(page: Page, from_history: bool) -> None:
    turns = page.get_by_test_id("turn")
    expect(turns).to_have_count(2, timeout=T)
    expect(turns.get_by_test_id("user-text")).to_have_text(
        ["first message", "second message"]
    )
    expect(turns.get_by_test_id("assistant-text")).to_have_text(
        ["first message", "second message"]
    )
    expect(turns.nth(0)).to_have_attribute("data-status", "complete")
    expect(turns.nth(1)).to_have_attribute("data-status", "complete")
    expect(turns.get_by_test_id("from-history")).to_have_text(
        [MARK, MARK] if from_history else []
    )


def test_a_past_the_app_never_saw_comes_from_the_gateways_history(
    browser, gateway, app_for
):
    gw = gateway(*REFERENCE)
    sid = ran_elsewhere(gw, "first message", "second message")
    app = app_for(gw)
    page = open_page(browser, app)
    try:
        open_with_both_turns(page, sid, from_history=True)
        gap = page.get_by_test_id("catchup-gap")
        expect(gap).to_have_count(1, timeout=T)
        expect(gap).to_have_text(ANY_GAP)
        expect(gap).to_have_attribute("data-after-seq", "0")
        # Said first: the turns below it are what the history holds.
        assert page.eval_on_selector_all(
            "[data-testid='chat'] > *:not([hidden])",
            "els => els.map((e) => e.dataset.testid)",
        ) == ["catchup-gap", "turn", "turn"]
        expect(gap).to_have_text(HISTORY_GAP)
        assert error_toasts(page) == []

        # The stores filled the same in (a reload finds them there), flagged.
        chat = app.invoke("get_state")["chats"][sid]
        assert [
            (t["userText"], t["finalText"], t["status"], t["fromHistory"])
            for t in chat["turns"]
        ] == [
            ("first message", "first message", "complete", True),
            ("second message", "second message", "complete", True),
        ]
        assert app.invoke("get_state")["connection"]["traits"]["getEvents"] == "no"

        page.reload()
        open_with_both_turns(page, sid, from_history=True)
        # One notice still. This rejoin let the bridge date its own gap (after #0,
        # before the snapshot's end): the same hole, so it is the one shown, in the
        # bridge's words.
        gap = page.get_by_test_id("catchup-gap")
        expect(gap).to_have_count(1, timeout=T)
        expect(gap).to_have_text(ANY_GAP)
        expect(gap).to_have_attribute("data-after-seq", "0")
        assert error_toasts(page) == []
        assert page.page_errors == []
    finally:
        page.context.close()


def test_with_get_events_the_whole_past_is_fetched_and_no_gap_is_shown(
    browser, gateway, app_for
):
    gw = gateway()  # the dev profile: get_events answers
    sid = ran_elsewhere(gw, "first message", "second message")
    app = app_for(gw)
    page = open_page(browser, app)
    try:
        open_with_both_turns(page, sid, from_history=False)
        expect(page.get_by_test_id("catchup-gap")).to_have_count(0)
        chat = app.invoke("get_state")["chats"][sid]
        assert [
            (t["userText"], t["fromHistory"], t["deltaCount"] > 0)
            for t in chat["turns"]
        ] == [("first message", False, True), ("second message", False, True)]
        assert error_toasts(page) == []
        assert page.page_errors == []
    finally:
        page.context.close()
