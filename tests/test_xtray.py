"""The XEmbed tray icon (dim_actors/desktop/xtray.py) against a real X server and a docking tray:
it docks, draws, takes clicks, follows a tray that restarts, and never holds the server."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from apphelpers import ROOT, wait_until
from xhelpers import FakeSystemTray

from dim_actors.desktop.tray import COLOURS, icon_image
from dim_actors.desktop.xtray import XTrayIcon

WAIT = 60


def nearest_state(rgb: tuple[int, int, int]) -> str:
    return min(
        COLOURS, key=lambda k: sum((u - v) ** 2 for u, v in zip(COLOURS[k], rgb))
    )


@pytest.fixture
def tray(xvfb):
    t = FakeSystemTray(xvfb)
    yield t
    t.stop()


@pytest.fixture
def clicks():
    got: list[tuple[int, int, int]] = []
    seen = threading.Condition()

    def on_click(x: int, y: int, button: int) -> None:
        with seen:
            got.append((x, y, button))
            seen.notify_all()

    return got, on_click


def test_it_docks_draws_the_state_and_passes_both_buttons_on(xvfb, tray, clicks):
    got, on_click = clicks
    icon = XTrayIcon(
        icon_image("connected"), "Diminuendo: connected", on_click, display_name=xvfb
    )
    icon.start()
    try:
        wait_until(
            lambda: tray.docked and icon.docked.is_set(), WAIT, what="the icon to dock"
        )
        wait_until(
            lambda: nearest_state(tray.icon_pixel(37, 37)) == "connected",
            WAIT,
            what="the connected colour",
        )
        icon.set_image(icon_image("auth_failed"))
        wait_until(
            lambda: nearest_state(tray.icon_pixel(37, 37)) == "auth_failed",
            WAIT,
            what="the colour to follow set_image",
        )
        tray.click(20, 20, button=1)
        tray.click(21, 22, button=3)
        wait_until(lambda: len(got) == 2, WAIT, what="both clicks")
        assert [b for _, _, b in got] == [1, 3] and got[1][:2] == (21, 22)
    finally:
        icon.stop()
    assert not icon._thread.is_alive()


def test_it_waits_for_a_tray_and_docks_again_into_a_new_one(xvfb, clicks):
    _, on_click = clicks
    icon = XTrayIcon(
        icon_image("offline"), "Diminuendo: offline", on_click, display_name=xvfb
    )
    icon.start()  # no tray on the screen yet
    first = second = None
    try:
        assert not icon.docked.wait(0.5)
        first = FakeSystemTray(xvfb)  # announces itself with MANAGER
        wait_until(
            lambda: first.docked, WAIT, what="the icon to dock into the tray that came"
        )
        first.stop()  # the panel restarts: its window, and the icon's inside it, go
        wait_until(
            lambda: not icon.docked.is_set(), WAIT, what="the icon to see its tray go"
        )
        second = FakeSystemTray(xvfb)
        wait_until(
            lambda: second.docked, WAIT, what="the icon to dock into the new tray"
        )
        wait_until(
            lambda: nearest_state(second.icon_pixel(37, 37)) == "offline",
            WAIT,
            what="the icon drawn in the new tray",
        )
    finally:
        icon.stop()
        for t in (first, second):
            if t is not None:
                t.stop()


def test_no_deadlock_with_a_thread_holding_the_gil_across_x_round_trips(xvfb, tray):
    """What pystray's X11 backend did with the native window: it grabs the X server around each
    update and then needs the GIL, while PyQt holds the GIL across its own X round trips. The
    probe is a process of its own, since a deadlock there freezes every thread in it: run for
    5 s, the icon changing all the while, it must end by itself. (pystray 0.19.5 hung 3 times out
    of 3 in this probe.)"""
    try:
        out = subprocess.run(
            [sys.executable, str(ROOT / "tests" / "xgil_probe.py"), "xtray", xvfb, "5"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(
            "the X server stopped answering while the icon updated: a grab held across the GIL"
        )
    assert out.returncode == 0 and out.stdout.startswith("done: "), (
        out.stdout,
        out.stderr,
    )
    assert int(out.stdout.split()[1]) > 0
