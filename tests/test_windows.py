"""Several windows: a session opened in a native window of its own (dimctl show
--new-window, the page's "Open in new window"), one a session, that follows the session
live and closes alone; in a browser, a tab of the session's own."""

from __future__ import annotations

import html
import itertools
import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import websocket
from apphelpers import (
    ROOT,
    App,
    DesktopApp,
    desktop_unavailable,
    free_port,
    wait_until,
)
from playwright.sync_api import expect
from uihelpers import T, new_session, ready, send_turn
from xhelpers import XProbe, window_support_on

from dim_actors.desktop import sessionwindows

# --- where a session's window opens (pure) --------------------------------------------


@pytest.mark.parametrize(
    "has_window, loop_running, window_possible, step",
    [
        (True, True, True, "raise"),  # one window a session
        (True, False, True, "raise"),  # asked again before the loop came up
        (False, True, True, "open"),
        (False, False, True, "start-loop"),  # no window yet (--no-browser, closed)
        (False, False, False, "browser"),  # no display, no Qt: a tab of its own
    ],
)
def test_where_a_sessions_window_opens(has_window, loop_running, window_possible, step):
    assert (
        sessionwindows.plan(
            has_window=has_window,
            loop_running=loop_running,
            window_possible=window_possible,
        )
        == step
    )


def test_a_sessions_window_url_carries_the_session_quoted():
    base = "http://127.0.0.1:1/?token=t"
    assert (
        sessionwindows.session_url(base, "a b&c", native=True)
        == base + "&shell=window&window=session&session=a%20b%26c"
    )
    assert (
        sessionwindows.session_url(base, "s1", native=False)
        == base + "&window=session&session=s1"
    )


def test_dimctl_show_new_window_without_a_session_is_a_usage_error(dim_home: Path):
    out = subprocess.run(
        [sys.executable, "-m", "dim_actors.cli.dimctl", "show", "--new-window"],
        env={**os.environ, "DIM_HOME": str(dim_home)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "--new-window" in out.stderr and "add --session ID" in out.stderr


# --- native windows under Xvfb --------------------------------------------------------


def window_app(
    home: Path, display: str, devtools_port: int, args: tuple[str, ...] = ()
) -> DesktopApp:
    """dim-desktop as a user starts it, with its window, and Qt WebEngine's DevTools on
    `devtools_port`: how the test reads the pages inside the native windows."""
    return DesktopApp(
        home,
        list(args),
        env={
            "DISPLAY": display,
            "QTWEBENGINE_REMOTE_DEBUGGING": f"127.0.0.1:{devtools_port}",
        },
    )


class DevTools:
    """The pages of the app's native windows, through Qt WebEngine's DevTools."""

    def __init__(self, port: int):
        self.port = port
        self.ids = itertools.count(1)

    def pages(self) -> list[dict]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/json/list", timeout=10
            ) as r:
                return [p for p in json.loads(r.read()) if p.get("type") == "page"]
        except OSError:
            return []

    def page(self, url_part: str) -> dict | None:
        return next((p for p in self.pages() if url_part in p["url"]), None)

    def evaluate(self, page: dict, expression: str):
        ws = websocket.create_connection(
            page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True
        )
        try:
            call_id = next(self.ids)
            ws.send(
                json.dumps(
                    {
                        "id": call_id,
                        "method": "Runtime.evaluate",
                        "params": {"expression": expression, "returnByValue": True},
                    }
                )
            )
            while True:
                answer = json.loads(ws.recv())
                if answer.get("id") == call_id:
                    return answer["result"]["result"].get("value")
        finally:
            ws.close()


# In a page: the turns shown, whether the session list is shown, the chat's title.
PAGE_STATE = """({
  turns: document.querySelectorAll("[data-testid='turn']").length,
  list: getComputedStyle(document.querySelector(".sidebar")).display !== "none",
  title: document.title,
  ready: document.body.dataset.ready === "1",
})"""


def test_a_session_opens_in_a_native_window_of_its_own_follows_it_and_closes_alone(
    dim_home: Path, xvfb
):
    why = window_support_on(xvfb)
    if why:
        desktop_unavailable(f"no native window here: {why}")
    devtools = DevTools(free_port())
    app = window_app(dim_home, xvfb, devtools.port)
    xprobe = XProbe(xvfb)
    try:
        app.wait_connected()
        wait_until(lambda: "Diminuendo" in xprobe.titles(), 60, what="the main window")
        session = app.invoke("create_session", agentType="coding-agent")["session"]
        sid, name = session["id"], session["name"]

        out = app.dimctl("show", "--session", sid, "--new-window")
        assert out.returncode == 0, out.stderr
        assert "session window opened (window)" in out.stdout
        own = f"{name} — Diminuendo"
        wait_until(lambda: own in xprobe.titles(), 60, what="the session's own window")
        assert "Diminuendo" in xprobe.titles()  # the main window is still there
        page = wait_until(
            lambda: devtools.page(f"window=session&session={sid}"),
            60,
            what="the session window's page",
        )
        state = wait_until(
            lambda: (s := devtools.evaluate(page, PAGE_STATE)) and s["ready"] and s,
            60,
            what="the session window's page to be ready",
        )
        assert state["list"] is False and state["turns"] == 0

        # A turn sent elsewhere (here through the bridge) streams into that window; the
        # gateway's automatic title follows too.
        app.invoke("run_turn", sessionId=sid, text="Check the window title")
        wait_until(
            lambda: devtools.evaluate(page, PAGE_STATE)["turns"] == 1,
            60,
            what="the turn to show in the session's window",
        )
        own = "Check the window title — Diminuendo"
        wait_until(lambda: own in xprobe.titles(), 60, what="the window to be renamed")

        # Asked again: that window comes to the front, no other opens.
        out = app.dimctl("show", "--session", sid, "--new-window")
        assert out.returncode == 0, out.stderr
        wait_until(
            lambda: "(raise)" in app_log(dim_home), 60, what="the raise to be logged"
        )
        assert sorted(xprobe.titles()) == sorted(["Diminuendo", own])
        assert len(devtools.pages()) == 2

        # The page's "Open in new window", chosen in the main window's page.
        other = app.invoke("create_session", agentType="coding-agent")["session"]
        main = next(p for p in devtools.pages() if "window=session" not in p["url"])
        row = f"[data-session-id='{other['id']}']"
        wait_until(
            lambda: devtools.evaluate(main, f'!!document.querySelector("{row}")'),
            60,
            what="the new session in the main window's list",
        )
        devtools.evaluate(
            main,
            f"""document.querySelector("{row}").dispatchEvent(
                  new MouseEvent("contextmenu", {{bubbles: true, clientX: 50, clientY: 50}}));
                document.querySelector("[data-testid='session-menu-item']"
                  + "[data-action='new-window']").click()""",
        )
        theirs = f"{other['name']} — Diminuendo"
        wait_until(
            lambda: theirs in xprobe.titles(),
            60,
            what="the window opened from the page's menu",
        )

        # Closing a session's window (the window manager's close) closes that one only.
        assert xprobe.close_window(own) == 1
        wait_until(
            lambda: own not in xprobe.titles(),
            60,
            what="the session window to close",
        )
        wait_until(
            lambda: "its window closed" in app_log(dim_home), 60, what="the close log"
        )
        # closed, not hidden: its page is gone
        assert devtools.page(f"window=session&session={sid}") is None
        assert sorted(xprobe.titles()) == sorted(["Diminuendo", theirs])
        assert app.proc.poll() is None
        assert app.status()["connection"]["connection"] == "connected"
        # and the session can have a window again
        out = app.dimctl("show", "--session", sid, "--new-window")
        assert out.returncode == 0, out.stderr
        wait_until(
            lambda: own in xprobe.titles(), 60, what="the session's window again"
        )

        out = app.dimctl("stop")
        assert out.returncode == 0, out.stderr
        assert app.proc.wait(timeout=60) == 0
    finally:
        xprobe.close()
        app.stop()


def app_log(home: Path) -> str:
    return (home / "logs" / "dim-desktop.log").read_text(errors="replace")


# --- in a browser: a tab of the session's own -----------------------------------------


def test_in_a_browser_open_in_new_window_opens_a_tab_of_the_sessions_own(page, app):
    ready(page)
    sid = new_session(page)
    name = page.get_by_test_id("chat-title").inner_text()
    row = page.locator(f"[data-testid='session-item'][data-session-id='{sid}']")
    row.click(button="right")
    item = page.locator("[data-testid='session-menu-item'][data-action='new-window']")
    expect(item).to_have_text("Open in new window")
    with page.context.expect_page() as opened:
        item.click()
    solo = opened.value
    assert f"window=session&session={sid}" in solo.url
    ready(solo)
    expect(solo.locator(".sidebar")).to_be_hidden()
    expect(solo.get_by_test_id("chat-title")).to_have_text(name, timeout=T)
    expect(solo).to_have_title(f"{name} — Diminuendo", timeout=T)
    # It follows the session: a turn sent from the main page shows there.
    send_turn(page, "hello from the main tab")
    expect(solo.get_by_test_id("turn")).to_have_count(1, timeout=T)
    expect(page).to_have_title("Diminuendo")

    # The keyboard path: Shift+Enter on the row.
    row.focus()
    with page.context.expect_page() as again:
        row.press("Shift+Enter")
    assert f"window=session&session={sid}" in again.value.url

    # The command the page uses in dim-desktop's window refuses bad arguments clearly.
    status, body = app.request(
        "POST",
        "/invoke/open_window",
        json.dumps({"sessionId": ["x"]}).encode(),
        {"Authorization": f"Bearer {app.token}"},
    )
    assert status == 400 and body["error"]["code"] == "INVALID_ARGUMENTS"
    assert body["error"]["message"].startswith("open_window: sessionId: Expected `str`")
    status, body = app.request(
        "POST",
        "/invoke/open_window",
        b"{}",
        {"Authorization": f"Bearer {app.token}"},
    )
    assert status == 400 and "sessionId" in body["error"]["message"], body


def test_without_its_main_window_the_app_opens_a_sessions_window_alone(
    dim_home: Path, xvfb
):
    """--no-browser: no GUI loop runs yet. It starts with the main window hidden (as if
    closed to the tray), which `dimctl show` then brings up."""
    why = window_support_on(xvfb)
    if why:
        desktop_unavailable(f"no native window here: {why}")
    app = window_app(dim_home, xvfb, free_port(), ("--no-browser",))
    xprobe = XProbe(xvfb)
    try:
        app.wait_connected()
        session = app.invoke("create_session", agentType="coding-agent")["session"]
        out = app.dimctl("show", "--session", session["id"], "--new-window")
        assert out.returncode == 0, out.stderr
        own = f"{session['name']} — Diminuendo"
        wait_until(lambda: own in xprobe.titles(), 60, what="the session's own window")
        assert xprobe.titles() == [own]
        assert app.dimctl("show").returncode == 0
        wait_until(
            lambda: sorted(xprobe.titles()) == sorted([own, "Diminuendo"]),
            60,
            what="the main window to show",
        )
    finally:
        xprobe.close()
        assert app.stop() == 0


RECORDER = """#!/bin/sh
# Stands in for the browser: records what it is asked to open.
printf '%s\\n' "$*" >> "{log}"
"""


def test_without_a_display_dimctl_new_window_opens_a_browser_tab_of_the_session(
    dim_home: Path, tmp_path: Path
):
    """Through the private page that forwards to the UI: no token on a command line."""
    opened = tmp_path / "browser.log"
    browser = tmp_path / "browser"
    browser.write_text(RECORDER.format(log=opened))
    browser.chmod(0o755)
    env = {"BROWSER": f"{browser} %s", "DISPLAY": "", "WAYLAND_DISPLAY": ""}
    app = App(dim_home, env=env)
    try:
        out = app.dimctl("show", "--session", "s 1", "--new-window")
        assert out.returncode == 0, out.stderr
        assert "session window opened (browser)" in out.stdout
        wait_until(opened.exists, 60, what="the browser to be started")
        forward = dim_home / "run" / "open.html"
        assert opened.read_text().split() == [forward.as_uri()]
        assert app.token not in opened.read_text()
        target = re.search(r'content="0;url=([^"]*)"', forward.read_text())
        assert target is not None
        assert html.unescape(target.group(1)) == (
            app.runtime["uiUrl"] + "&window=session&session=s%201"
        )
    finally:
        assert app.stop() == 0
