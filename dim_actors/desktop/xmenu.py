"""A popup menu drawn with plain X11 (python-xlib), for the tray icon on pystray's X11
backend.

That backend (what a pip install gets without PyGObject) has no menu at all, which would
leave a user with no way to pause sync or quit from the tray. This is the smallest menu
that does the job: an override-redirect window of text items under the pointer, a
pointer and keyboard grab so a click elsewhere or Escape dismisses it, the item under
the pointer highlighted.

The item labels are also put in the `_DIM_MENU_ITEMS` property (one per line), so tests
and accessibility tools can read what the menu offers without reading pixels.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("dim.desktop.tray")

TITLE = "dim-desktop menu"
ITEM_HEIGHT = 24
WIDTH = 180
PAD_X = 10
OPEN_WAIT_S = 10.0

MenuItem = tuple[str, Callable[[], None]]


def _geometry(
    x: int, y: int, count: int, screen_w: int, screen_h: int
) -> tuple[int, int, int]:
    """Where the menu goes: at the pointer, flipped up or left where it would leave the
    screen."""
    height = count * ITEM_HEIGHT
    if x + WIDTH > screen_w:
        x = max(0, x - WIDTH)
    if y + height > screen_h:
        y = max(0, y - height)
    return x, y, height


class XPopupMenu:
    def __init__(self, display_name: str | None = None):
        self.display_name = display_name
        self.open = threading.Lock()  # one menu at a time

    def popup(self, x: int, y: int, items: list[MenuItem]) -> None:
        """Show the menu at root coordinates (x, y), on its own thread."""
        threading.Thread(
            target=self._run, args=(x, y, items), name="tray-menu", daemon=True
        ).start()

    def _run(self, x: int, y: int, items: list[MenuItem]) -> None:
        # While a menu is up, its pointer grab keeps clicks from the icon, so a popup
        # that finds one open comes from a click just as it closed: wait for it rather
        # than lose the click.
        if not self.open.acquire(timeout=OPEN_WAIT_S):
            log.warning(
                "a tray menu is still open after %.0f s; this right click shows none",
                OPEN_WAIT_S,
            )
            return
        chosen: Callable[[], None] | None = None
        try:
            chosen = self._show(x, y, items)
        except Exception:
            log.warning("the tray menu failed", exc_info=True)
        finally:
            self.open.release()
        if chosen is not None:
            try:
                # after the menu is gone and its grab released: Quit may end the process
                chosen()
            except Exception:
                log.warning("a tray menu action failed", exc_info=True)

    def _show(self, x: int, y: int, items: list[MenuItem]) -> Callable[[], None] | None:
        from Xlib import XK, X, Xatom
        from Xlib import display as xdisplay

        d = xdisplay.Display(self.display_name)
        try:
            screen = d.screen()
            x, y, height = _geometry(
                x, y, len(items), screen.width_in_pixels, screen.height_in_pixels
            )
            mask = (
                X.ExposureMask
                | X.ButtonPressMask
                | X.ButtonReleaseMask
                | X.PointerMotionMask
                | X.KeyPressMask
            )
            win = screen.root.create_window(
                x,
                y,
                WIDTH,
                height,
                1,
                screen.root_depth,
                background_pixel=screen.white_pixel,
                border_pixel=screen.black_pixel,
                override_redirect=True,
                event_mask=mask,
            )
            win.set_wm_name(TITLE)
            win.change_property(
                d.intern_atom("_DIM_MENU_ITEMS"),
                Xatom.STRING,
                8,
                "\n".join(label for label, _ in items).encode(),
            )
            font = d.open_font("fixed")
            normal = win.create_gc(
                foreground=screen.black_pixel, background=screen.white_pixel, font=font
            )
            inverse = win.create_gc(
                foreground=screen.white_pixel, background=screen.black_pixel, font=font
            )
            win.map()
            d.sync()
            grab_mask = X.ButtonPressMask | X.ButtonReleaseMask | X.PointerMotionMask
            win.grab_pointer(
                False,
                grab_mask,
                X.GrabModeAsync,
                X.GrabModeAsync,
                X.NONE,
                X.NONE,
                X.CurrentTime,
            )
            win.grab_keyboard(False, X.GrabModeAsync, X.GrabModeAsync, X.CurrentTime)
            escape = d.keysym_to_keycode(XK.string_to_keysym("Escape"))
            hot = -1

            def draw() -> None:
                for i, (label, _) in enumerate(items):
                    top = i * ITEM_HEIGHT
                    if i == hot:
                        win.fill_rectangle(normal, 0, top, WIDTH, ITEM_HEIGHT)
                    else:
                        win.clear_area(0, top, WIDTH, ITEM_HEIGHT)
                    win.draw_text(
                        inverse if i == hot else normal,
                        PAD_X,
                        top + ITEM_HEIGHT // 2 + 4,
                        label.encode(),
                    )
                d.flush()

            def item_at(ex: int, ey: int) -> int:
                return ey // ITEM_HEIGHT if 0 <= ex < WIDTH and 0 <= ey < height else -1

            while True:
                ev = d.next_event()
                if ev.type == X.Expose:
                    draw()
                elif ev.type == X.MotionNotify:
                    now = item_at(ev.event_x, ev.event_y)
                    if now != hot:
                        hot = now
                        draw()
                elif ev.type == X.ButtonPress:
                    # A press inside picks an item; anywhere else dismisses, as menus
                    # do.
                    i = item_at(ev.event_x, ev.event_y)
                    return items[i][1] if i >= 0 else None
                elif ev.type == X.KeyPress and ev.detail == escape:
                    return None
        finally:
            try:
                d.ungrab_pointer(X.CurrentTime)
                d.ungrab_keyboard(X.CurrentTime)
                d.sync()
            finally:
                d.close()
