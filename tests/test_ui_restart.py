"""A tab left open while dim-desktop stops and starts again (same DIM_HOME): it says the app
is not running and what to do, makes commands unusable, shows the actors as unknown, and
once the app is back it reconnects by itself (same port, same token) and can send a turn.
A stranger on the old port while the app is down learns nothing."""

from __future__ import annotations

import http.server
import os
import stat
import threading
import time
import urllib.request

from playwright.sync_api import Page, expect

from tests.apphelpers import App

T = 60_000
LONG_MS = 30_000  # ui/js/appstatus.js: unreachable this long, the banner says more
BANNER = (
    "dim-desktop is not running — start it again (run `dim-desktop`, or open it from "
    "your applications menu); this page reconnects by itself."
)
LATER = (
    "If dim-desktop is running again, open it from its window or tray, or the address it "
    "printed."
)


def open_page(browser, app: App, clock: bool = False) -> Page:
    """`clock`: the page's timers run on Playwright's clock, so a test can move it on
    (it runs at the real pace until then)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    if clock:
        context.clock.install()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.page_errors = errors  # type: ignore[attr-defined]
    page.goto(app.runtime["uiUrl"])
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=T)
    expect(page.get_by_test_id("connection-state")).to_have_text("Connected", timeout=T)
    return page


def send_and_see(page: Page, text: str, count: int) -> None:
    page.get_by_test_id("message-input").fill(text)
    page.get_by_test_id("send").click()
    turns = page.get_by_test_id("turn")
    expect(turns).to_have_count(count, timeout=T)
    expect(turns.last.get_by_test_id("assistant-text")).to_have_text(text, timeout=T)
    expect(turns.last).to_have_attribute("data-status", "complete", timeout=T)


def shows_the_app_stopped(page: Page) -> None:
    banner = page.get_by_test_id("app-unreachable")
    expect(banner).to_be_visible(timeout=T)
    expect(banner.locator(".app-unreachable-text")).to_have_text(BANNER)
    expect(page.locator("body[data-app='unreachable']")).to_have_count(1)
    indicator = page.get_by_test_id("connection-state")
    expect(indicator).to_have_text("dim-desktop not running")
    expect(indicator).to_have_attribute("data-bridge", "closed")
    expect(page.get_by_test_id("send")).to_be_disabled()
    expect(page.get_by_test_id("new-session")).to_be_disabled()
    # what the app last said about its actors no longer holds
    rows = page.get_by_test_id("actor-row")
    expect(rows.first).to_be_attached()
    assert rows.count() > 3
    for i in range(rows.count()):
        expect(rows.nth(i).get_by_test_id("actor-state")).to_have_text("unknown")
    expect(
        page.locator("[data-testid='actor-state']", has_text="running")
    ).to_have_count(0)


def test_a_tab_open_across_a_restart_says_the_app_stopped_then_recovers_and_sends(
    browser, dim_home
):
    a = App(dim_home)
    try:
        a.wait_connected()
        page = open_page(browser, a, clock=True)
        page.get_by_test_id("agent-type").select_option("echo")
        page.get_by_test_id("new-session").click()
        expect(page.get_by_test_id("session-item")).to_have_count(1, timeout=T)
        send_and_see(page, "before the restart", 1)
        expect(
            page.locator("[data-testid='actor-row'] [data-testid='actor-state']").first
        ).to_have_text("running", timeout=T)
    finally:
        a.stop()

    shows_the_app_stopped(page)
    # The port might have changed: after a while the banner says where to look.
    more = page.get_by_test_id("app-unreachable-more")
    expect(more).to_be_hidden()
    page.clock.fast_forward(LONG_MS + 1000)
    expect(more).to_be_visible(timeout=T)
    expect(more).to_have_text(LATER)

    b = App(dim_home)
    try:
        # the same address and token: the tab finds the app by itself
        assert (b.base, b.token) == (a.base, a.token)
        b.wait_connected()
        expect(page.get_by_test_id("app-unreachable")).to_be_hidden(timeout=T)
        expect(page.get_by_test_id("connection-state")).to_have_text(
            "Connected", timeout=T
        )
        expect(page.locator("body[data-app='unreachable']")).to_have_count(0)
        expect(
            page.locator("[data-testid='actor-row'] [data-testid='actor-state']").first
        ).to_have_text("running", timeout=T)
        # the session on screen is joined again once the new app is connected: its past is back,
        # and that the first join found no gateway yet is not an error to show
        expect(page.get_by_test_id("turn")).to_have_count(1, timeout=T)
        expect(page.locator("[data-testid='toast'][data-level='error']")).to_have_count(
            0
        )
        send_and_see(page, "after the restart", 2)
        assert page.page_errors == []
    finally:
        page.context.close()
        b.stop()


def test_the_token_is_kept_private_and_a_taken_port_falls_back_to_a_free_one(dim_home):
    a = App(dim_home)
    a.stop()
    token_file = dim_home / "run" / "ui-token"
    st = token_file.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
    assert token_file.read_text().strip() == a.token
    # The cookie the page gets is not the token (a browser sends it to every port).
    port = int(a.base.rsplit(":", 1)[1])
    holder = http.server.HTTPServer(
        ("127.0.0.1", port), http.server.BaseHTTPRequestHandler
    )
    try:
        b = App(dim_home)
        try:
            assert b.token == a.token and b.base != a.base
            with urllib.request.urlopen(b.runtime["uiUrl"], timeout=30) as resp:
                cookie = resp.headers["Set-Cookie"].split(";")[0]
            assert a.token not in cookie
        finally:
            b.stop()
    finally:
        holder.server_close()
    # A token file that is not one (damaged, say) is not used: a new token, saved 0600.
    token_file.write_text("not a token\n")
    c = App(dim_home)
    try:
        assert c.token != a.token and len(c.token) == 43
        assert token_file.read_text().strip() == c.token
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    finally:
        c.stop()
    # An old one is renewed.
    month_ago = time.time() - 31 * 86400
    os.utime(token_file, (month_ago, month_ago))
    d = App(dim_home)
    try:
        assert d.token != c.token
    finally:
        d.stop()


def test_a_stranger_on_the_old_port_gets_no_token_from_the_open_tab(browser, dim_home):
    a = App(dim_home)
    try:
        a.wait_connected()
        page = open_page(browser, a)
    finally:
        a.stop()
    shows_the_app_stopped(page)
    seen: list[str] = []
    hello = threading.Event()

    class Stranger(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(f"{self.path}\n{self.headers}")
            if self.path.startswith("/hello"):
                hello.set()
            body = b'{"ok": true, "result": {"proof": "00"}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *args):
            pass

    port = int(a.base.rsplit(":", 1)[1])
    stranger = http.server.ThreadingHTTPServer(("127.0.0.1", port), Stranger)
    thread = threading.Thread(target=stranger.serve_forever, daemon=True)
    thread.start()
    try:
        assert hello.wait(60), "the page never tried the port again"
        # and again, later: still nothing but the question
        hello.clear()
        assert hello.wait(60)
        shows_the_app_stopped(page)
    finally:
        stranger.shutdown()
        stranger.server_close()
        page.context.close()
    assert seen and all(p.startswith("/hello?nonce=") for p in seen), seen
    assert not [p for p in seen if a.token in p], "the token went to a stranger"
