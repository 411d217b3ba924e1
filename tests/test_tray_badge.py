"""The attention badge on the tray icon: the drawing itself (dim_actors/desktop/badge.py), and
the icon a docking tray shows under Xvfb as the count changes (the XEmbed icon, xtray.py)."""

from __future__ import annotations

import threading

import pytest
from apphelpers import wait_until
from xhelpers import FakeSystemTray

from dim_actors.desktop.badge import BADGE_RED, badge_text, with_count
from dim_actors.desktop.tray import COLOURS, Tray, badge_image, icon_image

WAIT = 60
SIDE = 48  # FakeSystemTray's icon window

Pixels = list[tuple[int, int, int]]


def rgb(image, size: int) -> Pixels:
    assert image.size == (size, size)
    raw = image.convert("RGB").tobytes()
    return [(raw[i], raw[i + 1], raw[i + 2]) for i in range(0, len(raw), 3)]


def near(a: tuple[int, ...], b: tuple[int, ...], slack: int = 60) -> bool:
    return sum((u - v) ** 2 for u, v in zip(a, b)) <= slack**2


def badge_counts(pixels: Pixels, size: int) -> tuple[int, int]:
    """(red pixels, white pixels) in the badge's corner: the top right 56%."""
    lo = round(size * 0.44)
    corner = [pixels[y * size + x] for y in range(size - lo) for x in range(lo, size)]
    red = sum(near(p, BADGE_RED) for p in corner)
    white = sum(min(p) > 220 for p in corner)
    return red, white


def dot_colour(pixels: Pixels, size: int) -> tuple[int, int, int]:
    """The connection state's dot, at its centre (50/64 of the side)."""
    c = round(size * 50 / 64)
    return pixels[c * size + c]


@pytest.mark.parametrize(
    ("count", "text"), [(0, ""), (1, "1"), (9, "9"), (10, "9+"), (250, "9+"), (-1, "")]
)
def test_badge_text(count: int, text: str):
    assert badge_text(count) == text


@pytest.mark.parametrize(
    ("title", "count", "want"),
    [
        ("Diminuendo", 0, "Diminuendo"),
        ("Diminuendo", 2, "(2) Diminuendo"),
        ("(2) Diminuendo", 3, "(3) Diminuendo"),
        ("(2) Diminuendo", 0, "Diminuendo"),
        ("(12) Notes — Diminuendo", 1, "(1) Notes — Diminuendo"),
        ("(draft) notes", 1, "(1) (draft) notes"),
    ],
)
def test_window_title_with_count(title: str, count: int, want: str):
    assert with_count(title, count) == want


@pytest.mark.parametrize("size", [22, 32, 64])
def test_badge_drawing_at_panel_sizes(size: int):
    plain = {s: rgb(icon_image(s, size), size) for s in COLOURS}
    images = {
        n: rgb(badge_image("connected", n, size), size) for n in (0, 1, 9, 10, 99)
    }
    assert images[0] == plain["connected"]  # no badge: the plain icon
    for n in (1, 9, 10):
        red, white = badge_counts(images[n], size)
        assert red >= size * size * 0.04, (n, red)  # a red disc...
        assert white >= 3, (n, white)  # ...with white text on it
        assert images[n] != images[0]
        # the state's colour is kept under the badge
        assert dot_colour(images[n], size) == dot_colour(plain["connected"], size)
    assert images[1] != images[9] != images[10]
    assert images[10] == images[99]  # "9+" from 10 on
    for state in COLOURS:
        drawn = rgb(badge_image(state, 3, size), size)
        assert dot_colour(drawn, size) == dot_colour(plain[state], size), state


def icon_pixels(tray: FakeSystemTray) -> Pixels:
    """Every pixel of the docked icon, as the X server shows it."""
    from Xlib import X
    from Xlib import display as xdisplay

    d = xdisplay.Display(tray.display)
    try:
        d.create_resource_object("window", tray.tray_window).configure(
            stack_mode=X.Above
        )
        d.sync()
        icon = d.create_resource_object("window", tray.docked[-1])
        raw = icon.get_image(0, 0, SIDE, SIDE, X.ZPixmap, 0xFFFFFFFF).data
    finally:
        d.close()
    # 24-bit TrueColor on Xvfb: B, G, R, pad
    return [(raw[i + 2], raw[i + 1], raw[i]) for i in range(0, len(raw), 4)]


def test_the_tray_icon_shows_the_badge_and_drops_it(xvfb, monkeypatch):
    monkeypatch.setenv("DISPLAY", xvfb)
    state = ["connected"]
    tray = Tray(
        on_open=lambda: None,
        on_quit=lambda: None,
        on_sync_paused=lambda _: None,
        connection_state=lambda: state[0],
    )
    system_tray = FakeSystemTray(xvfb)
    try:
        tray.state = state[0]
        # What Tray.start does on plain X11, without asking pystray which backend it
        # would pick (it decides once per process, at its import).
        tray._start_x11()
        threading.Thread(target=tray._watch, daemon=True).start()
        wait_until(lambda: system_tray.docked, WAIT, what="the icon to dock")

        def shows(pixels: Pixels) -> bool:
            return bool(system_tray.docked) and icon_pixels(system_tray) == pixels

        wait_until(
            lambda: near(
                dot_colour(icon_pixels(system_tray), SIDE), COLOURS["connected"]
            ),
            WAIT,
            what="the plain connected icon",
        )
        plain = icon_pixels(system_tray)
        assert badge_counts(plain, SIDE)[0] == 0

        tray.set_badge(3)
        wait_until(
            lambda: badge_counts(icon_pixels(system_tray), SIDE)[0] > 40,
            WAIT,
            what="the red badge",
        )
        badged = icon_pixels(system_tray)
        red, white = badge_counts(badged, SIDE)
        assert white >= 3, "no white count on the badge"
        assert dot_colour(badged, SIDE) == dot_colour(plain, SIDE)
        assert "3 sessions need you" in tray._title()

        state[0] = "auth_failed"  # the state changes under the badge: both shown
        wait_until(
            lambda: near(
                dot_colour(icon_pixels(system_tray), SIDE), COLOURS["auth_failed"]
            ),
            WAIT,
            what="the new state's colour",
        )
        assert badge_counts(icon_pixels(system_tray), SIDE)[0] > 40
        state[0] = "connected"

        tray.set_badge(0)
        wait_until(lambda: shows(plain), WAIT, what="the plain icon back")
    finally:
        tray.stop()
        system_tray.stop()
