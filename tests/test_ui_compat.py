"""What the page shows of a gateway that does less than ours: missed events it could not
fetch (a gap notice where they are missing), a session deleted while we were away (kept,
marked gone, not sendable), and the connection's warnings and what the gateway was seen
to support (the popover, and `dimctl status`).

Real flows, real headless Chromium: the dev gateway, in its reference profile where it
refuses `get_events`, or announcing protocol version 2. No sleeping: every wait is an
`expect(...)`.
"""

from __future__ import annotations

import re

import pytest
from apphelpers import App, GatewayProcess, wait_until
from gateway_helpers import Client
from playwright.sync_api import Page, expect
from test_ui_protocol import T, by_id, new_session, open_page, ready, send

from dim_actors.cli.dimctl import print_status

VERSION_WARNING = (
    "The gateway speaks protocol version 2; this client speaks version 1 and goes on with "
    "version 1 messages."
)
GONE_BANNER = (
    "This session no longer exists on the gateway (it was deleted elsewhere). Its transcript stays "
    "here; you can't send to it."
)
GAP_TEXT = re.compile(
    r"^Events (between #\d+ and #\d+|after #\d+) could not be fetched from this gateway "
    r"\(.*get_events.*\)\. What the agent did meanwhile may be missing here\.$"
)


@pytest.fixture
def app_on(tmp_path):
    """app_on(*args): an app on a dev gateway of its own, started with these arguments."""
    started: list[tuple[App, GatewayProcess]] = []

    def start(*args: str) -> tuple[App, GatewayProcess]:
        gw = GatewayProcess(
            tmp_path / "gw", args=[*args, "--rate-limit", "100000"]
        ).start()
        (tmp_path / "home").mkdir()
        try:
            app = App(tmp_path / "home", ["--gateway", gw.url])
        except BaseException:
            gw.stop()
            raise
        started.append((app, gw))
        app.wait_connected()
        return app, gw

    yield start
    for app, gw in started:
        app.stop()
        gw.stop()


def timeline(page: Page) -> list[str]:
    """The chat's turns and gap notices, in the order shown."""
    return page.eval_on_selector_all(
        "[data-testid='chat'] > [data-testid='turn'], "
        "[data-testid='chat'] > [data-testid='catchup-gap']",
        "els => els.map((e) => e.dataset.testid)",
    )


# --- a gap in the catch-up ------------------------------------------------------------


def test_events_that_could_not_be_fetched_are_a_gap_notice_where_they_are_missing(
    browser, app_on
):
    app, _ = app_on("--profile", "reference")
    page = open_page(browser, app)
    try:
        ready(page)
        sid = new_session(page).get_attribute("data-session-id")
        # The socket drops mid-turn; what the gateway sent meanwhile it will not give
        # back (get_events).
        send(page, "/stream 2000 2000\n/drop\n/stream 2000 2000")
        turns = page.get_by_test_id("turn")
        expect(turns).to_have_attribute("data-status", "complete", timeout=T)
        gaps = wait_until(
            lambda: app.invoke("get_state")["chats"][sid]["gaps"],
            what="the gap in the stores",
        )
        notices = page.get_by_test_id("catchup-gap")
        expect(notices).to_have_count(len(gaps), timeout=T)
        last = notices.last
        expect(last).to_have_text(GAP_TEXT)
        expect(last).to_have_attribute("data-after-seq", str(gaps[-1]["afterSeq"]))
        # Events sent after the gap come after it.
        send(page, "after the gap")
        expect(turns).to_have_count(2, timeout=T)
        expect(turns.nth(1)).to_have_attribute("data-status", "complete", timeout=T)
        assert timeline(page)[-3:] == ["turn", "catchup-gap", "turn"]
        shown = timeline(page)
        text = last.inner_text()

        # The popover says why: this gateway does not give missed events back.
        page.get_by_test_id("connection-state").click()
        expect(
            page.locator("[data-testid='conn-trait'][data-trait='getEvents']")
        ).to_have_text(
            "Missed-event catch-up: not supported — gaps are shown", timeout=T
        )

        # A reloaded page puts the gap where the live one did.
        page.reload()
        ready(page)
        by_id(page, sid).click()
        expect(page.get_by_test_id("turn")).to_have_count(2, timeout=T)
        expect(page.get_by_test_id("catchup-gap").last).to_have_text(text)
        assert timeline(page) == shown
        assert page.page_errors == []
    finally:
        page.context.close()


# --- a session deleted while we were away ---------------------------------------------


def test_a_session_deleted_while_away_stays_with_its_transcript_marked_gone(
    page: Page, app: App
):
    ready(page)
    item = new_session(page, "echo")
    sid = item.get_attribute("data-session-id")
    send(page, "said before it went")
    turn = page.get_by_test_id("turn")
    expect(turn).to_have_attribute("data-status", "complete", timeout=T)
    # titled from its first message
    name = "said before it went"
    expect(item.get_by_test_id("session-name")).to_have_text(name, timeout=T)

    app.invoke("gateway_disconnect")
    indicator = page.get_by_test_id("connection-state")
    expect(indicator).to_have_text("Offline", timeout=T)
    with Client(app.runtime["gatewayUrl"], token=app.runtime["gatewayToken"]) as other:
        other.ok("delete_session", sessionId=sid)
    app.invoke("gateway_connect", url=app.runtime["gatewayUrl"])
    expect(indicator).to_have_text("Connected", timeout=T)

    def shows_it_gone() -> None:
        expect(page.get_by_test_id("session-gone")).to_have_text(GONE_BANNER, timeout=T)
        expect(page.get_by_test_id("selected-session-status")).to_have_text(
            "Deleted elsewhere"
        )
        gone = by_id(page, sid)
        expect(gone).to_have_attribute("data-gone", "1")
        expect(gone.get_by_test_id("session-status")).to_have_attribute(
            "data-status", "gone"
        )
        # still known by its name
        expect(gone.get_by_test_id("session-name")).to_have_text(name)
        expect(page.get_by_test_id("message-input")).to_be_disabled()
        expect(page.get_by_test_id("send")).to_be_disabled()
        expect(
            page.get_by_test_id("session-follow")
        ).to_be_hidden()  # nothing left to join
        expect(page.get_by_test_id("session-joined")).to_have_text("Not following")
        expect(
            page.get_by_test_id("turn").get_by_test_id("assistant-text")
        ).to_have_text("said before it went")

    shows_it_gone()
    state = app.invoke("get_state")
    assert sid not in state["joined"] and state["chats"][sid]["gone"]["reason"]

    page.reload()
    ready(page)
    # the selection is kept
    expect(by_id(page, sid)).to_have_attribute("aria-selected", "true", timeout=T)
    shows_it_gone()
    # Not joined again: a join would only be refused, as an error toast.
    expect(page.locator("[data-testid='toast'][data-level='error']")).to_have_count(0)
    assert page.page_errors == []


# --- the gateway's warnings and traits ------------------------------------------------


def test_the_popover_and_dimctl_status_show_the_gateways_warnings_and_traits(
    browser, app_on
):
    app, gw = app_on("--protocol-version", "2")
    page = open_page(browser, app)
    try:
        ready(page)
        indicator = page.get_by_test_id("connection-state")
        expect(indicator).to_have_attribute("data-warnings", "1", timeout=T)
        # the mark is not part of the state's text
        expect(indicator).to_have_text("Connected")
        mark = page.evaluate(
            "getComputedStyle(document.querySelector(\"[data-testid='connection-state']\"), "
            "'::after').content"
        )
        assert mark == '"⚠"'
        indicator.click()
        expect(page.get_by_test_id("conn-warning")).to_have_text([VERSION_WARNING])
        traits = page.get_by_test_id("conn-traits")
        expect(traits).to_contain_text("This gateway")

        def trait(name):
            return traits.locator(f"[data-testid='conn-trait'][data-trait='{name}']")

        expect(trait("heartbeat")).to_have_text(
            re.compile(r"^Heartbeat every 30 s; taken as lost after \d+ s of silence$")
        )
        expect(trait("pushesAuthenticated")).to_have_text(
            "Sign-in confirmation: sent on connect"
        )
        # Learned when it happens: a ping answered.
        page.get_by_test_id("conn-ping").click()
        expect(trait("pong")).to_have_text("Ping: answered", timeout=T)

        out = app.dimctl("status")
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[-2:] == [
            f"gateway: connected {gw.url}",
            f"warning: {VERSION_WARNING}",
        ]
        assert page.page_errors == []
    finally:
        page.context.close()


def test_a_gateway_with_nothing_to_warn_about_shows_no_mark(page: Page, app: App):
    ready(page)
    indicator = page.get_by_test_id("connection-state")
    indicator.click()
    # the heartbeat is known at once
    expect(page.get_by_test_id("conn-traits")).to_be_visible(timeout=T)
    expect(page.get_by_test_id("conn-warnings")).to_be_hidden()
    expect(indicator).not_to_have_attribute("data-warnings", re.compile(".*"))
    out = app.dimctl("status")
    assert out.returncode == 0, out.stderr
    assert (
        out.stdout.splitlines()[-1] == f"gateway: connected {app.runtime['gatewayUrl']}"
    )
    assert page.page_errors == []


ROW = {
    "pid": 1,
    "state": "running",
    "restarts": 0,
    "uptime": 3.0,
    "mailbox": 0,
    "handled": 5,
}

STATUS_CASES = [
    pytest.param(
        {"connection": "connected", "url": "ws://127.0.0.1:8080/ws", "warnings": []},
        ["gateway: connected ws://127.0.0.1:8080/ws"],
        id="connected",
    ),
    pytest.param(
        {
            "connection": "connected",
            "url": "ws://g/ws",
            "warnings": [VERSION_WARNING, "another"],
        },
        [
            "gateway: connected ws://g/ws",
            f"warning: {VERSION_WARNING}",
            "warning: another",
        ],
        id="with-warnings",
    ),
    pytest.param(
        {
            "connection": "reconnecting",
            "url": "ws://g/ws",
            "detail": "connection refused",
            "retryInMs": 2000,
        },
        ["gateway: reconnecting ws://g/ws (connection refused)"],
        id="why-not-connected",
    ),
    pytest.param(
        {"connection": "offline", "url": ""},
        ["gateway: offline (no URL)"],
        id="never-connected",
    ),
    pytest.param({}, [], id="connection-actor-not-running"),
]


@pytest.mark.parametrize("connection_row, lines", STATUS_CASES)
def test_dimctl_status_ends_with_the_gateway_and_its_warnings(
    capsys, connection_row, lines
):
    rows = [{"name": "router", **ROW}, {"name": "connection", **ROW, **connection_row}]
    print_status(rows)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("NAME") and [line.split()[0] for line in out[1:3]] == [
        "router",
        "connection",
    ]
    assert out[3:] == lines
