"""The tray icon (pystray, in the `desktop` extra), where the desktop has a system tray.

The icon shows the gateway connection's state (its colour and its title); its menu opens
the window, pauses or resumes sync, and quits. Where pystray would fall back to its
plain X11 backend (no AppIndicator or GTK), the icon is our own (`xtray.py`, which
cannot freeze the X server as that backend can): a left click opens the window and a
right click opens our own X11 menu (`xmenu.py`) with the same items. No tray (no
display, pystray missing, no system tray on the screen): nothing happens but one line in
the log.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dim_actors.desktop.badge import draw_badge
from dim_actors.desktop.window import INSTALL_HINT, has_display

if TYPE_CHECKING:
    from dim_actors.desktop.xmenu import XPopupMenu
    from dim_actors.desktop.xtray import XTrayIcon

log = logging.getLogger("dim.desktop.tray")

COLOURS = {
    "connected": (46, 157, 91),
    "connecting": (208, 138, 26),
    "reconnecting": (208, 138, 26),
    "auth_failed": (192, 57, 43),
    "offline": (128, 128, 128),
}


def icon_image(state: str, size: int = 64) -> Any:
    """The diminuendo wedge, with a dot in the connection state's colour."""
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    s = size / 64
    d.line(
        [(8 * s, 14 * s), (52 * s, 30 * s), (8 * s, 46 * s)],
        fill=(60, 110, 200, 255),
        width=int(7 * s),
        joint="curve",
    )
    colour = COLOURS.get(state, COLOURS["offline"])
    d.ellipse(
        [38 * s, 38 * s, 62 * s, 62 * s],
        fill=(*colour, 255),
        outline=(255, 255, 255, 255),
        width=int(3 * s),
    )
    return img


def badge_image(state: str, count: int, size: int = 64) -> Any:
    """The icon of `state` with the attention badge for `count` (none for 0)."""
    return draw_badge(icon_image(state, size), count)


def _x11_tray_owner() -> str | None:
    """None when an X11 system tray owns _NET_SYSTEM_TRAY_Sn; else why there is none."""
    try:
        from Xlib import X
        from Xlib import display as xdisplay
    except ImportError:
        return "python-xlib is missing"
    try:
        d = xdisplay.Display()
    except Exception as e:
        return f"cannot open the X display: {e}"
    try:
        atom = d.intern_atom(f"_NET_SYSTEM_TRAY_S{d.get_default_screen()}")
        owner = d.get_selection_owner(atom)
        return (
            None
            if owner != X.NONE
            else "no system tray on this screen (nothing owns _NET_SYSTEM_TRAY)"
        )
    finally:
        d.close()


def tray_support() -> str | None:
    if not has_display():
        return "no display"
    try:
        import pystray
    except ImportError:
        return f"pystray is not installed ({INSTALL_HINT})"
    except Exception as e:  # pystray picks its backend at import; it can fail there
        return f"pystray cannot start: {e}"
    backend = pystray.Icon.__module__.rsplit(".", 1)[-1]
    if backend == "_xorg":
        if not os.environ.get("DISPLAY"):
            return "plain X11 needs DISPLAY"
        return _x11_tray_owner()
    return None


class Tray:
    def __init__(
        self,
        on_open: Callable[[], None],
        on_quit: Callable[[], None],
        on_sync_paused: Callable[[bool], None],
        connection_state: Callable[[], str],
    ):
        self.on_open = on_open
        self.on_quit = on_quit
        self.on_sync_paused = on_sync_paused
        self.connection_state = connection_state
        self.icon: Any = None  # a pystray Icon
        self.x_icon: XTrayIcon | None = None  # or our own, on plain X11
        self.sync_paused = False
        self.state = ""
        self.badge = 0  # sessions that need the user (router/attention.py)
        self.stopped = threading.Event()
        # set_badge and stop wake the tray's thread at once
        self._poke = threading.Event()
        self.has_menu = False
        self.x_menu: XPopupMenu | None = None

    def start(self) -> bool:
        why = tray_support()
        if why is not None:
            log.info("no tray icon: %s", why)
            return False
        import pystray

        self.state = self.connection_state() or "offline"
        try:
            if pystray.Icon.__module__ == "pystray._xorg":
                self._start_x11()
            else:
                self._start_pystray()
        except Exception as e:
            log.info("no tray icon: %s", e)
            self.icon = self.x_icon = None
            return False
        threading.Thread(target=self._watch, name="tray-state", daemon=True).start()
        log.info("tray icon shown (%s)", self._kind())
        return True

    def _kind(self) -> str:
        if self.x_icon is not None:
            return "xorg, its own X11 menu on a right click"
        backend = type(self.icon).__module__.rsplit(".", 1)[-1].lstrip("_")
        return (
            backend
            if self.has_menu
            else f"{backend}, no menu: a click opens the window"
        )

    def _start_pystray(self) -> None:
        import pystray

        item = pystray.MenuItem
        menu = pystray.Menu(
            item("Open Diminuendo", lambda: self.on_open(), default=True),
            item(
                lambda _: "Resume sync" if self.sync_paused else "Pause sync",
                self._toggle_sync,
            ),
            pystray.Menu.SEPARATOR,
            item("Quit", lambda: self.on_quit()),
        )
        self.icon = pystray.Icon(
            "dim-desktop", badge_image(self.state, self.badge), self._title(), menu
        )
        self.has_menu = bool(getattr(self.icon, "HAS_MENU", False))
        self.icon.run_detached()

    def _start_x11(self) -> None:
        # X11 only: loaded where it is used, so the tray imports on any platform
        from dim_actors.desktop.xmenu import XPopupMenu
        from dim_actors.desktop.xtray import XTrayIcon

        self.x_menu = XPopupMenu()
        self.x_icon = XTrayIcon(
            badge_image(self.state, self.badge), self._title(), self._on_x_click
        )
        self.x_icon.start()

    def menu_items(self) -> list[tuple[str, Callable[[], None]]]:
        return [
            ("Open Diminuendo", lambda: self.on_open()),
            ("Resume sync" if self.sync_paused else "Pause sync", self._toggle_sync),
            ("Quit", lambda: self.on_quit()),
        ]

    def _on_x_click(self, x: int, y: int, button: int) -> None:
        # Runs on the icon's X thread: only hand over, never block it.
        if button == 1:
            self.on_open()
        elif button == 3 and self.x_menu is not None:
            self.x_menu.popup(x, y, self.menu_items())

    def _title(self) -> str:
        need = self.badge
        return (
            f"Diminuendo: {self.state.replace('_', ' ')}"
            + (" (sync paused)" if self.sync_paused else "")
            + ("" if not need else ", 1 session needs you" if need == 1 else "")
            + (f", {need} sessions need you" if need > 1 else "")
        )

    def set_badge(self, count: int) -> None:
        """From any thread: how many sessions need the user (0: none). Only hands it
        to the tray's thread, which redraws the icon."""
        self.badge = max(0, count)
        self._poke.set()

    def _toggle_sync(self) -> None:
        self.sync_paused = not self.sync_paused
        self.on_sync_paused(self.sync_paused)
        self._refresh(force=True)

    def _watch(self) -> None:
        while not self.stopped.is_set():
            poked = self._poke.wait(1.0)
            self._poke.clear()
            if not self.stopped.is_set():
                self._refresh(force=poked)

    def _refresh(self, force: bool = False) -> None:
        try:
            state = self.connection_state() or "offline"
        except Exception:
            return
        if state == self.state and not force:
            return
        self.state = state
        try:
            if self.x_icon is not None:
                self.x_icon.set_image(badge_image(state, self.badge))
                self.x_icon.set_title(self._title())
            elif self.icon is not None:
                self.icon.icon = badge_image(state, self.badge)
                self.icon.title = self._title()
                if self.has_menu:
                    self.icon.update_menu()
        except Exception:
            log.debug("tray update failed", exc_info=True)

    def stop(self) -> None:
        self.stopped.set()
        self._poke.set()
        try:
            if self.x_icon is not None:
                self.x_icon.stop()
            elif self.icon is not None:
                self.icon.stop()
        except Exception:
            log.debug("tray stop failed", exc_info=True)
