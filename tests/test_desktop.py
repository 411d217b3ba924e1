"""dim-desktop on the desktop: reopening a running instance, native notifications, the
page's notifications in Chromium, the native window (pywebview + Qt) under Xvfb, the
tray's absence."""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest
from apphelpers import ROOT, App, DesktopApp, desktop_unavailable, wait_until
from playwright.sync_api import expect
from stopchecks import assert_stop_ends_everything, signal_now
from xhelpers import FakeSystemTray, XProbe, tray_menu, window_support_on

from dim_actors.desktop.notify import _Ev, describe

RECORDER = """#!/bin/sh
# Stands in for a program the app starts (the browser, notify-send): records its arguments.
printf '%s\\n' "$*" >> "{log}"
"""


def recorder(tmp: Path, name: str) -> tuple[Path, Path]:
    log = tmp / f"{name}.log"
    script = tmp / name
    script.write_text(RECORDER.format(log=log))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, log


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def opened_ui(home: Path, opened: str) -> str:
    """The browser is started on run/open.html, a page only the user can read that
    forwards to the UI, so the token is on no command line (test_security.py): the
    address it forwards to."""
    page = home / "run" / "open.html"
    assert opened == page.as_uri()
    return html.unescape(
        re.search(
            r'http-equiv="refresh" content="0;url=([^"]*)"', page.read_text()
        ).group(1)
    )


def second_instance(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dim_actors.app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def app_log(home: Path) -> str:
    return (home / "logs" / "dim-desktop.log").read_text(errors="replace")


# --- a second dim-desktop reopens the running one -------------------------------------


def test_a_second_dim_desktop_opens_the_running_ones_ui_and_exits_0(
    dim_home: Path, tmp_path: Path
):
    browser, opened = recorder(tmp_path, "browser")
    # --no-browser: nothing opened at start
    app = App(dim_home, env={"BROWSER": f"{browser} %s"})
    try:
        app.wait_connected()
        assert lines(opened) == []
        second = second_instance(app.env)
        assert second.returncode == 0, second.stderr
        assert (
            "already running" in second.stdout
            and str(app.runtime["pid"]) in second.stdout
        )
        # no display here: the browser
        assert "showing its UI in the browser" in second.stdout
        wait_until(
            lambda: lines(opened), 60, what="the running instance to open the browser"
        )
        assert [opened_ui(dim_home, ln) for ln in lines(opened)] == [
            app.runtime["uiUrl"]
        ]
        # dimctl show does the same, and can select a session.
        out = app.dimctl("show", "--session", "abc")
        assert out.returncode == 0, out.stderr
        wait_until(
            lambda: len(lines(opened)) == 2, 60, what="dimctl show to open the browser"
        )
        assert (
            opened_ui(dim_home, lines(opened)[1])
            == app.runtime["uiUrl"] + "&session=abc"
        )
        # Flags a second instance cannot apply are named, not silently dropped.
        third = second_instance(app.env, "--gateway", "ws://127.0.0.1:9/ws")
        assert third.returncode == 0 and "--gateway" in third.stderr
        assert app.proc.poll() is None
    finally:
        assert app.stop() == 0


def test_without_a_display_dim_desktop_opens_the_browser(
    dim_home: Path, tmp_path: Path
):
    browser, opened = recorder(tmp_path, "browser")
    env = {"BROWSER": f"{browser} %s", "DISPLAY": "", "WAYLAND_DISPLAY": ""}
    app = DesktopApp(dim_home, env=env)  # no --no-browser: a user's plain `dim-desktop`
    try:
        wait_until(lambda: lines(opened), 60, what="the browser to be opened")
        assert [opened_ui(dim_home, ln) for ln in lines(opened)] == [
            app.runtime["uiUrl"]
        ]
        assert "UI opened in the default browser" in app.output()
    finally:
        assert app.stop() == 0


# --- native notifications from the supervisor -----------------------------------------

FAKE_NOTIFY_SEND = """#!/bin/sh
# A stand-in for libnotify's notify-send 0.8: records each notification; "clicks" the ones that
# mention CLICK by printing the action, as notify-send --wait does.
if [ "$1" = "--help" ]; then echo "  -A, --action=[NAME=]Text...   -w, --wait"; exit 0; fi
printf '%s\\n' "$*" >> "{log}"
case "$*" in *CLICK*) echo default ;; esac
"""


def test_native_notifications_for_the_four_events_and_a_click_opens_the_session(
    dim_home: Path, tmp_path: Path
):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    notes = tmp_path / "notify.log"
    (bindir / "notify-send").write_text(FAKE_NOTIFY_SEND.format(log=notes))
    (bindir / "notify-send").chmod(0o755)
    browser, opened = recorder(tmp_path, "browser")
    env = {
        "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
        "BROWSER": f"{browser} %s",
    }
    app = App(dim_home, env=env)
    try:
        app.wait_connected()
        # No page is open (an open page shows its own notifications): the app notifies
        # natively.
        sid = app.invoke("create_session", agentType="coding-agent", name="notify me")[
            "session"
        ]["id"]
        app.invoke("join_session", sessionId=sid)

        def last_turn() -> dict:
            turns = app.invoke("get_state")["chats"].get(sid, {}).get("turns", [])
            return turns[-1] if turns else {}

        def notified(title: str) -> None:
            wait_until(
                lambda: any(title in ln for ln in lines(notes)),
                60,
                what=f"a {title!r} notification",
            )

        app.invoke("run_turn", sessionId=sid, text="all done")
        notified("Turn complete")
        app.invoke(
            "run_turn", sessionId=sid, text="/ask Which CLICK color? | red | blue"
        )
        notified("Question from the agent")
        q = last_turn()["items"][-1]
        assert q["type"] == "question_requested"
        app.invoke(
            "answer_question", sessionId=sid, requestId=q["requestId"], answers=["red"]
        )
        wait_until(
            lambda: last_turn().get("status") == "complete",
            60,
            what="the answered turn to complete",
        )
        app.invoke("run_turn", sessionId=sid, text="/permission rm -rf build")
        notified("Permission requested")
        p = last_turn()["items"][-1]
        app.invoke(
            "answer_question", sessionId=sid, requestId=p["requestId"], approved=True
        )
        wait_until(
            lambda: last_turn().get("status") == "complete",
            60,
            what="the approved turn to complete",
        )
        app.invoke("run_turn", sessionId=sid, text="/fail Boom it broke")
        notified("Turn failed")

        sent = lines(notes)
        assert all(
            "--app-name=dim-desktop" in ln and "--action=default=Open" in ln
            for ln in sent
        )
        assert any(
            "Turn failed" in ln and "notify me: Boom it broke" in ln for ln in sent
        ), sent
        assert any(
            "Permission requested" in ln and "rm -rf build" in ln for ln in sent
        ), sent
        # The question's notification was "clicked": the app opened its UI on that
        # session.
        wait_until(lambda: lines(opened), 60, what="the click to open the UI")
        assert [opened_ui(dim_home, ln) for ln in lines(opened)] == [
            f"{app.runtime['uiUrl']}&session={sid}"
        ]
        # Only the four event types notify, each once: 3 turn_complete, question,
        # permission, turn_error. The notifier handles events in order, so once a later
        # turn's notification is there, any extra one for the events above would be
        # there too.
        app.invoke("run_turn", sessionId=sid, text="sentinel one")
        notified("sentinel one")
        assert len(lines(notes)) == 7, lines(notes)
        assert "native notifications through notify-send" in app_log(dim_home)

        # While a page is open, the page notifies (Notification API), not the app.
        events = app.events()
        wait_until(
            lambda: app.status()["uibridge"].get("pages") == 1,
            60,
            what="the page to count",
        )
        app.invoke("run_turn", sessionId=sid, text="quiet please")
        events.wait_event(
            "turn_complete", sid, where=lambda e: e.get("finalText") == "quiet please"
        )
        events.close()
        # The page gone, the app notifies again; in order, so "quiet please" would have
        # come first.
        wait_until(
            lambda: app.status()["uibridge"].get("pages") == 0,
            60,
            what="the page to go",
        )
        app.invoke("run_turn", sessionId=sid, text="sentinel two")
        notified("sentinel two")
        assert len(lines(notes)) == 8 and not any(
            "quiet please" in ln for ln in lines(notes)
        ), lines(notes)
    finally:
        assert app.stop() == 0


@pytest.fixture
def session_bus(tmp_path: Path):
    """A real D-Bus session bus (dbus-daemon, which bin/ensure-desktop installs) of this
    test's own."""
    if not shutil.which("dbus-daemon"):
        desktop_unavailable(
            "dbus-daemon is not installed (bin/ensure-desktop installs it with apt-get)"
        )
    proc = subprocess.Popen(
        [
            "dbus-daemon",
            "--session",
            "--nofork",
            "--nopidfile",
            f"--address=unix:path={tmp_path / 'bus'}",
            "--print-address=1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    address = proc.stdout.readline().strip()
    assert address.startswith("unix:"), (
        f"dbus-daemon did not start (exit {proc.poll()})"
    )
    yield address
    proc.terminate()
    proc.wait(10)


def test_native_notifications_through_gdbus_on_a_real_session_bus(
    dim_home: Path, tmp_path: Path, session_bus: str
):
    gdbus = shutil.which("gdbus")
    if not gdbus:
        desktop_unavailable(
            "gdbus is not installed (bin/ensure-desktop installs libglib2.0-bin with apt-get)"
        )
    # A PATH with gdbus and no notify-send, so the app takes its D-Bus path.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "gdbus").symlink_to(gdbus)
    notes = tmp_path / "notifications.jsonl"
    env = {"DBUS_SESSION_BUS_ADDRESS": session_bus, "PATH": str(bindir)}
    service = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "notification_service.py"), str(notes)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        text=True,
    )
    browser, opened = recorder(tmp_path, "browser")
    app = None
    try:
        assert service.stdout.readline().strip() == "ready"
        app = App(dim_home, env={**env, "BROWSER": f"{browser} %s"})
        app.wait_connected()
        sid = app.invoke("create_session", agentType="coding-agent", name="on the bus")[
            "session"
        ]["id"]
        app.invoke("join_session", sessionId=sid)

        def shown() -> list[dict]:
            return [json.loads(ln) for ln in lines(notes)]

        app.invoke("run_turn", sessionId=sid, text="done over dbus")
        wait_until(
            lambda: any(n["summary"] == "Turn complete" for n in shown()),
            60,
            what="Turn complete on the bus",
        )
        n = shown()[0]
        assert (
            n["appName"] == "dim-desktop" and n["body"] == "on the bus: done over dbus"
        )
        assert n["actions"] == ["default", "Open"]
        assert "native notifications through gdbus" in app_log(dim_home)

        # The service "clicks" this one: ActionInvoked reaches the app, which opens that
        # session.
        app.invoke("run_turn", sessionId=sid, text="/ask CLICK which one? | a | b")
        wait_until(lambda: lines(opened), 60, what="the click to open the UI")
        assert [opened_ui(dim_home, ln) for ln in lines(opened)] == [
            f"{app.runtime['uiUrl']}&session={sid}"
        ]
        assert [n["summary"] for n in shown()] == [
            "Turn complete",
            "Question from the agent",
        ]
    finally:
        if app is not None:
            assert app.stop() == 0
        service.terminate()
        service.wait(10)


def test_notification_texts():
    ev = _Ev(type="turn_complete", sessionId="s1", finalText="\n  first line\nsecond")
    assert describe(ev, "proj") == ("Turn complete", "proj: first line")
    assert (
        describe(_Ev(type="turn_complete", stopReason="stopped"), None)[0]
        == "Turn stopped"
    )
    assert describe(
        _Ev(type="permission_requested", action={"command": "ls"}), "p"
    ) == ("Permission requested", "p: ls")


def test_without_a_notification_service_it_says_so_once(app: App):
    sid = app.invoke("create_session", agentType="echo")["session"]["id"]
    app.invoke("join_session", sessionId=sid)
    events = app.events()
    for text in ("one", "two"):
        app.invoke("run_turn", sessionId=sid, text=text)
        events.wait_event(
            "turn_complete", sid, where=lambda e, t=text: e.get("finalText") == t
        )
    wait_until(
        lambda: "native notifications are off" in app_log(app.home),
        60,
        what="the log line",
    )
    log = app_log(app.home)
    assert log.count("native notifications are off") == 1
    # --no-browser (mode "none") tries no tray at all: there is nothing for it to open.
    assert "tray icon" not in log
    events.close()


# --- the page's notifications in Chromium ---------------------------------------------

RECORD_NOTIFICATIONS = """
(() => {
  // Records what the page shows, through the browser's real Notification class.
  const Real = window.Notification;
  window.__notes = [];
  window.__focused = true;
  class Recorded extends Real {
    constructor(title, options) {
      super(title, options);
      window.__notes.push({
        title,
        body: (options && options.body) || "",
        tag: (options && options.tag) || "",
      });
      window.__lastNote = this;
    }
  }
  window.Notification = Recorded;
  document.hasFocus = () => window.__focused;
})();
"""


def test_page_notifications_fire_while_unfocused_and_a_click_selects_the_session(
    browser, app: App
):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.grant_permissions(["notifications"], origin=app.base)
    context.add_init_script(RECORD_NOTIFICATIONS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(app.runtime["uiUrl"])
        expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=15000)
        assert page.evaluate("Notification.permission") == "granted"
        other = app.invoke("create_session", agentType="echo", name="other")["session"][
            "id"
        ]
        sid = app.invoke("create_session", agentType="coding-agent", name="watched")[
            "session"
        ]["id"]
        for s in (other, sid):
            app.invoke("join_session", sessionId=s)
        page.locator(f"[data-testid='session-item'][data-session-id='{other}']").click()
        expect(page.get_by_test_id("chat-title")).to_have_text("other")
        notes = lambda: page.evaluate("window.__notes")  # noqa: E731

        # Focused: nothing (checked below, once a later turn's notification has arrived:
        # the page handles events in order).
        app.invoke("run_turn", sessionId=sid, text="while focused")
        page.wait_for_function(
            """sid => { const c = window.__dim.store.chats.get(sid);
                        return c && [...c.turns.values()]
                          .some(t => t.finalText === "while focused"); }""",
            arg=sid,
            timeout=10000,
        )

        page.evaluate(
            "window.__focused = false; window.dispatchEvent(new Event('blur'))"
        )
        app.invoke("run_turn", sessionId=sid, text="finished while away")
        wait_until(
            lambda: any(n["title"] == "Turn complete" for n in notes()),
            60,
            what="Turn complete",
        )
        assert [n["body"] for n in notes()] == ["finished while away"], notes()
        app.invoke("run_turn", sessionId=sid, text="/ask Pick one | a | b")
        wait_until(
            lambda: any(n["title"] == "Question from the agent" for n in notes()),
            60,
            what="a question",
        )
        q = page.evaluate(
            "window.__notes.find(n => n.title === 'Question from the agent')"
        )
        assert q["body"] == "Pick one" and q["tag"] == f"dim-{sid}"
        rid = app.invoke("get_state")["chats"][sid]["turns"][-1]["items"][-1][
            "requestId"
        ]
        app.invoke("answer_question", sessionId=sid, requestId=rid, dismissed=True)
        app.invoke("run_turn", sessionId=sid, text="/permission deploy")
        wait_until(
            lambda: any(n["title"] == "Permission requested" for n in notes()),
            60,
            what="a permission",
        )
        rid = app.invoke("get_state")["chats"][sid]["turns"][-1]["items"][-1][
            "requestId"
        ]
        app.invoke("answer_question", sessionId=sid, requestId=rid, approved=False)
        app.invoke("run_turn", sessionId=sid, text="/fail Oops went wrong")
        wait_until(
            lambda: any(n["title"] == "Turn failed" for n in notes()),
            60,
            what="Turn failed",
        )
        failed = page.evaluate("window.__notes.find(n => n.title === 'Turn failed')")
        assert "Oops" in failed["body"] and "went wrong" in failed["body"]

        # Clicking the last notification selects its session.
        page.evaluate("window.__lastNote.dispatchEvent(new Event('click'))")
        expect(page.get_by_test_id("chat-title")).to_have_text("watched", timeout=60000)
        expect(
            page.locator(f"[data-testid='session-item'][data-session-id='{sid}']")
        ).to_have_attribute("aria-selected", "true")
        assert errors == []
    finally:
        context.close()


# --- the native window under Xvfb -----------------------------------------------------


@pytest.fixture
def xprobe(xvfb):
    probe = XProbe(xvfb)
    yield probe
    probe.close()


def test_the_native_window_opens_hides_on_close_reopens_and_stops_with_dimctl(
    dim_home: Path, tmp_path: Path, xvfb, xprobe
):
    why = window_support_on(xvfb)
    if why:
        desktop_unavailable(f"no native window here: {why}")
    browser, opened = recorder(tmp_path, "browser")
    app = DesktopApp(dim_home, env={"DISPLAY": xvfb, "BROWSER": f"{browser} %s"})
    try:
        app.wait_connected()
        pages = lambda: app.status()["uibridge"].get("pages", 0)  # noqa: E731
        wait_until(
            lambda: xprobe.mapped("Diminuendo"),
            40,
            interval=0.1,
            what="the window to be mapped",
        )
        wait_until(
            lambda: pages() >= 1, 40, what="the window's page to connect to the bridge"
        )
        assert "native window" in app.output()

        assert xprobe.close_window("Diminuendo") == 1
        wait_until(
            lambda: not xprobe.mapped("Diminuendo"),
            60,
            interval=0.1,
            what="the window to hide",
        )
        wait_until(
            lambda: "window closed by the user" in app_log(dim_home),
            60,
            what="the close to be logged",
        )
        # The close has been handled (logged) and the app still answers, connected.
        assert (
            app.proc.poll() is None
            and app.status()["connection"]["connection"] == "connected"
        )

        second = second_instance(app.env)
        assert second.returncode == 0 and "showing its window" in second.stdout, (
            second.stdout,
            second.stderr,
        )
        wait_until(
            lambda: xprobe.mapped("Diminuendo"),
            60,
            interval=0.1,
            what="the window to come back",
        )
        # No tray manager on this screen: said once in the log, and nothing else
        # happens.
        wait_until(
            lambda: "no tray icon" in app_log(dim_home), 60, what="the tray's log line"
        )
        assert app_log(dim_home).count("no tray icon") == 1
        # Still shown after all that, and it was not closed again on the way.
        assert (
            xprobe.mapped("Diminuendo")
            and app_log(dim_home).count("window closed by the user") == 1
        )
        assert "_NET_SYSTEM_TRAY" in app_log(dim_home)

        out = app.dimctl("stop")
        assert out.returncode == 0, out.stderr
        assert app.proc.wait(timeout=60) == 0
        assert lines(opened) == []  # the browser was never used
    finally:
        app.stop()


@pytest.mark.parametrize(
    "sig, group",
    [
        (signal.SIGTERM, False),  # `kill PID`
        (
            signal.SIGINT,
            True,
        ),  # Ctrl-C in the terminal: the whole process group (pywebview's Qt backend
        # installs a SIGINT handler of its own, which quits the GUI loop)
    ],
    ids=["SIGTERM-to-the-app", "SIGINT-to-the-group"],
)
def test_sigterm_stops_the_app_while_the_window_loop_runs(
    dim_home: Path, xvfb, xprobe, sig, group
):
    """The stop of tests/test_app_lifecycle.py, with the native window's GUI loop on the
    main thread: within the same bound, nothing failing or restarting, nothing left
    running."""
    why = window_support_on(xvfb)
    if why:
        desktop_unavailable(f"no native window here: {why}")
    app = DesktopApp(dim_home, env={"DISPLAY": xvfb}, prefix=["setsid"])
    try:
        wait_until(
            lambda: xprobe.mapped("Diminuendo"),
            60,
            interval=0.1,
            what="the window to be mapped",
        )
        # The page is up and connected to the bridge: the window as it is used.
        wait_until(
            lambda: app.status()["uibridge"].get("pages", 0) >= 1,
            60,
            what="the window's page to connect",
        )
        send = (
            (lambda: os.killpg(app.proc.pid, sig))
            if group
            else (lambda: app.proc.send_signal(sig))
        )
        assert_stop_ends_everything(app, lambda: signal_now(send))
        log = app_log(dim_home)
        # the GUI loop ended: the stop did not have to give up on it
        assert "window closed for good" in log
        # nothing of pywebview's held the exit
        assert "not waiting for threads" not in log
    finally:
        app.stop()


class _FakeScriptWaits:
    """pywebview's Qt backend as NativeWindow sees it once the GUI loop is over: its
    BrowserView keeps each wait for a script's result as {id: {"semaphore": ...}} and
    waits without a timeout."""

    def __init__(self):
        self._js_results: dict[str, dict] = {}

    def evaluate_js(self, key: str) -> None:
        waiting = threading.Semaphore(0)
        self._js_results[key] = {"semaphore": waiting, "result": ""}
        waiting.acquire()  # what pywebview does: no timeout
        del self._js_results[key]


def test_no_wait_for_a_script_result_outlives_the_window_loop():
    """pywebview injects its scripts into a loaded page on a non-daemon thread that
    waits, without a timeout, for the GUI loop to return each result. A window destroyed
    while a page loads left that thread waiting for ever, and Python waited for it at
    exit: SIGTERM did not end the app. Once the loop is over, NativeWindow answers every
    such wait, and any that starts later."""
    from dim_actors.desktop.window import NativeWindow

    native = _FakeScriptWaits()
    window = NativeWindow("http://127.0.0.1:1/")
    window.window = types.SimpleNamespace(native=native)
    before = threading.Thread(target=native.evaluate_js, args=("before",), daemon=True)
    before.start()
    wait_until(lambda: "before" in native._js_results, what="the wait to begin")
    window._answer_script_waits_for_ever()
    after = threading.Thread(target=native.evaluate_js, args=("after",), daemon=True)
    after.start()
    before.join(30)
    after.join(30)
    assert not before.is_alive() and not after.is_alive()


def test_pywebview_qt_keeps_script_waits_as_the_window_expects():
    """What _FakeScriptWaits stands for, checked against the installed pywebview (its
    source, not imported: importing Qt without a display could abort the test run)."""
    spec = importlib.util.find_spec("webview")
    assert spec is not None and spec.origin is not None, (
        "pywebview is not installed (bin/test installs the desktop extra)"
    )
    source = (Path(spec.origin).parent / "platforms" / "qt.py").read_text()
    evaluate = source[source.index("    def evaluate_js(self") :]
    evaluate = evaluate[: evaluate.index("\n    def ", 10)]
    assert (
        "self._js_results[unique_id]" in evaluate
        and "'semaphore': result_semaphore" in evaluate
    )
    assert "result_semaphore.acquire()" in evaluate


@pytest.fixture
def tray_app(dim_home: Path, xvfb):
    """A docking system tray on the Xvfb screen, then dim-desktop with its window there."""
    why = window_support_on(xvfb)
    if why:
        desktop_unavailable(f"no native window here: {why}")
    tray = FakeSystemTray(xvfb)
    app = DesktopApp(dim_home, env={"DISPLAY": xvfb})
    try:
        yield tray, app
    finally:
        app.stop()
        tray.stop()


def test_the_tray_icon_docks_and_a_click_brings_the_window_back(
    dim_home: Path, tray_app, xprobe
):
    tray, app = tray_app
    wait_until(
        lambda: xprobe.mapped("Diminuendo"),
        40,
        interval=0.1,
        what="the window to be mapped",
    )
    wait_until(lambda: tray.docked, 60, what="the tray icon to dock")
    # logged once start() returns, which can be a moment after the icon docked
    wait_until(
        lambda: "tray icon shown (xorg" in app_log(dim_home),
        30,
        what="the log to say which tray icon it is",
    )
    assert xprobe.close_window("Diminuendo") == 1
    wait_until(
        lambda: not xprobe.mapped("Diminuendo"),
        60,
        interval=0.1,
        what="the window to hide",
    )
    tray.click()
    wait_until(
        lambda: xprobe.mapped("Diminuendo"),
        60,
        interval=0.1,
        what="a click on the tray icon to bring the window back",
    )
    out = app.dimctl("stop")
    assert out.returncode == 0, out.stderr
    assert app.proc.wait(timeout=60) == 0


def test_the_tray_shows_the_connection_state_and_its_menu_pauses_sync_and_quits(
    dim_home: Path, tmp_path: Path, tray_app, xprobe
):
    from dim_actors.desktop.tray import COLOURS
    from dim_actors.desktop.xmenu import ITEM_HEIGHT

    tray, app = tray_app
    app.wait_connected()
    wait_until(lambda: tray.docked, 30, what="the tray icon to dock")
    # logged once start() returns, which can be a moment after the icon docked
    wait_until(
        lambda: "its own X11 menu on a right click" in app_log(dim_home),
        30,
        what="the log to say which tray icon it is",
    )

    # The dot at the icon's lower right has the connection state's colour (64 px scaled
    # to 48, so compare with the nearest of the state colours, not exactly).
    def shows() -> str:
        r, g, b = tray.icon_pixel(37, 37)
        return min(
            COLOURS,
            key=lambda k: sum((u - v) ** 2 for u, v in zip(COLOURS[k], (r, g, b))),
        )

    wait_until(
        lambda: shows() == "connected",
        60,
        what=f"the connected colour ({tray.icon_pixel(37, 37)})",
    )
    app.invoke("gateway_disconnect")
    wait_until(lambda: shows() == "offline", 60, what="the offline colour")
    app.invoke("gateway_connect", url=app.runtime["gatewayUrl"])
    wait_until(lambda: shows() == "connected", 60, what="the colour to come back")

    def pick(label: str) -> None:
        tray.click(button=3)
        items, (x, y) = wait_until(
            lambda: tray_menu(xprobe), 60, interval=0.1, what="the tray menu"
        )
        tray.click(x + 20, y + items.index(label) * ITEM_HEIGHT + ITEM_HEIGHT // 2)
        wait_until(
            lambda: tray_menu(xprobe) is None,
            60,
            interval=0.1,
            what="the menu to close",
        )

    sid = app.invoke("create_session", agentType="coding-agent", name="tray sync")[
        "session"
    ]["id"]
    app.invoke("start_sync", sessionId=sid, localDir=str(tmp_path / "synced"))
    state = lambda: app.invoke("sync_status", sessionId=sid)["state"]  # noqa: E731
    wait_until(lambda: state() == "active", 60, what="sync to start")
    pick("Pause sync")
    wait_until(lambda: state() == "paused", 60, what="the tray's Pause to pause sync")
    assert app.invoke("sync_status", sessionId=sid)["error"] == "paused by the user"
    tray.click(button=3)
    items, (x, y) = wait_until(
        lambda: tray_menu(xprobe), 60, interval=0.1, what="the tray menu again"
    )
    assert items == ["Open Diminuendo", "Resume sync", "Quit"]
    tray.click(x + 20, y + items.index("Resume sync") * ITEM_HEIGHT + ITEM_HEIGHT // 2)
    wait_until(lambda: state() == "active", 60, what="the tray's Resume to resume sync")
    # The menu's window goes when its X connection closes, which a loaded X server
    # handles after the action may already have run: the next right click is for the
    # tray icon, not for it.
    wait_until(
        lambda: tray_menu(xprobe) is None, 60, interval=0.1, what="the menu to close"
    )

    # A click outside the menu dismisses it and does nothing.
    tray.click(button=3)
    wait_until(lambda: tray_menu(xprobe), 60, interval=0.1, what="the menu")
    tray.click(900, 700)
    wait_until(
        lambda: tray_menu(xprobe) is None,
        60,
        interval=0.1,
        what="the menu to be dismissed",
    )
    assert app.proc.poll() is None

    pick("Quit")
    assert app.proc.wait(timeout=60) == 0
    assert "Quit from the tray" in app_log(dim_home)
