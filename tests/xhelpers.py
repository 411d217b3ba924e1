"""X11 pieces the desktop tests share: a probe of the screen's windows, a system tray
that docks icons as a panel's notification area does, and a look at the tray icon's
right-click menu."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The attention count a window's title may carry in front (dim_actors/desktop/badge.py).
BADGE = re.compile(r"^\(\d+\+?\) ")


def window_support_on(display: str) -> str | None:
    """Why no native window can open on `display` (None: one can), asked of a fresh
    interpreter as the app asks it."""
    code = "from dim_actors.desktop.window import window_support; print(window_support() or '')"
    r = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "DISPLAY": display},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return r.stdout.strip() or None


ROUND_TRIP_S = 15.0


def _walk(d) -> list[tuple[object, str]]:
    from Xlib import X

    name, utf8 = d.intern_atom("_NET_WM_NAME"), d.intern_atom("UTF8_STRING")
    found = []
    for w in d.screen().root.query_tree().children:
        try:  # a window may go away between the tree query and this look at it
            if w.get_attributes().map_state != X.IsViewable:
                continue
            prop = w.get_full_property(name, utf8)
            title = prop.value.decode() if prop is not None else w.get_wm_name()
            if isinstance(title, str):
                found.append((w, BADGE.sub("", title)))
        except Exception:
            pass
    return found


class XProbe:
    """One X connection the tests read window state through. Polling on a fresh
    connection each time (dozens a second) is what a loaded CI machine once answered
    with a failed connection setup; one connection, reopened after any X error, does not
    depend on that."""

    def __init__(self, display: str):
        self.display = display
        self.d = None
        self.stalls = 0  # round trips given up on (see _shown)

    def _conn(self):
        from Xlib import display as xdisplay

        if self.d is None:
            self.d = xdisplay.Display(self.display)
        return self.d

    def _reset(self) -> None:
        if self.d is not None:
            try:
                self.d.close()
            except Exception:
                pass
        self.d = None

    def _shown(self) -> list[tuple[object, str]]:
        """(window, title) of the top-level windows shown: the title from _NET_WM_NAME
        (UTF-8, as Qt sets it), else WM_NAME, without the attention count in front.

        Bounded: python-xlib waits for a reply for ever, and a round trip of this probe
        once went unanswered for minutes while the app's windows went on. A walk that
        takes longer than ROUND_TRIP_S is left to its thread, its connection dropped,
        and the next poll starts on a new one; a server that answers nobody then shows
        as the caller's wait running out, with what it waited for."""
        d = self._conn()
        out: list[list[tuple[object, str]]] = []
        failed: list[BaseException] = []

        def walk() -> None:
            try:
                out.append(_walk(d))
            except BaseException as e:  # raised on the caller's thread
                failed.append(e)

        walker = threading.Thread(target=walk, daemon=True)
        walker.start()
        walker.join(ROUND_TRIP_S)
        if failed:
            raise failed[0]
        if not out:
            self.stalls += 1
            self.d = None  # still in use by the stuck walk: dropped, not closed
            print(
                f"X probe: {self.display} did not answer in {ROUND_TRIP_S:g} s; "
                "polling on a new connection",
                file=sys.stderr,
            )
            return []
        return out[0]

    def _viewable(self, title: str) -> list:
        return [w for w, t in self._shown() if t == title]

    def titles(self) -> list[str]:
        """The titles of the top-level windows shown, without the attention count."""
        return [t for _, t in self._shown()]

    def mapped(self, title: str) -> bool:
        from Xlib.error import ConnectionClosedError, DisplayError

        try:
            return bool(self._viewable(title))
        except (ConnectionClosedError, DisplayError, OSError):
            # next poll reconnects; a dead Xvfb shows as the wait timing out
            self._reset()
            return False

    def close_window(self, title: str) -> int:
        """What the window manager does when the user clicks the close button:
        WM_DELETE_WINDOW."""
        from Xlib import X
        from Xlib.protocol import event

        d = self._conn()
        protocols = d.intern_atom("WM_PROTOCOLS")
        delete = d.intern_atom("WM_DELETE_WINDOW")
        windows = self._viewable(title)
        for w in windows:
            w.send_event(
                event.ClientMessage(
                    window=w,
                    client_type=protocols,
                    data=(32, [delete, X.CurrentTime, 0, 0, 0]),
                ),
                event_mask=X.NoEventMask,
            )
        d.sync()
        return len(windows)

    def close(self) -> None:
        self._reset()


class FakeSystemTray:
    """A minimal XEmbed system tray (what a panel's notification area does): owns
    _NET_SYSTEM_TRAY_Sn, and docks icons that ask, by reparenting them into its window.
    """

    def __init__(self, display: str):
        self.display = display
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.docked: list[int] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(60), "the tray did not start"

    def _run(self) -> None:
        from Xlib import X
        from Xlib import display as xdisplay
        from Xlib.protocol import event

        d = xdisplay.Display(self.display)
        screen = d.screen()
        tray = screen.root.create_window(
            0, 0, 48, 48, 0, screen.root_depth, event_mask=X.StructureNotifyMask
        )
        tray.map()
        self.tray_window = tray.id
        opcode = d.intern_atom("_NET_SYSTEM_TRAY_OPCODE")
        selection = d.intern_atom(f"_NET_SYSTEM_TRAY_S{d.get_default_screen()}")
        tray.set_selection_owner(selection, X.CurrentTime)
        # What a tray that starts tells the icons already waiting (the System Tray
        # protocol).
        screen.root.send_event(
            event.ClientMessage(
                window=screen.root,
                client_type=d.intern_atom("MANAGER"),
                data=(32, [X.CurrentTime, selection, tray.id, 0, 0]),
            ),
            event_mask=X.StructureNotifyMask,
        )
        d.sync()
        self.ready.set()
        while not self.stopping.is_set():
            if not d.pending_events():
                # woken by X, or to see `stopping`
                select.select([d.fileno()], [], [], 0.1)
                continue
            ev = d.next_event()
            if (
                ev.type == X.ClientMessage
                and ev.client_type == opcode
                and ev.data[1][1] == 0
            ):  # REQUEST_DOCK
                icon = d.create_resource_object("window", ev.data[1][2])
                icon.reparent(tray, 0, 0)
                icon.configure(x=0, y=0, width=48, height=48)
                icon.map()
                d.sync()
                self.docked.append(icon.id)
        d.close()

    def click(self, x: int = 20, y: int = 20, button: int = 1) -> None:
        from Xlib import X
        from Xlib import display as xdisplay
        from Xlib.ext import xtest

        d = xdisplay.Display(self.display)
        xtest.fake_input(d, X.MotionNotify, x=x, y=y)
        xtest.fake_input(d, X.ButtonPress, button)
        xtest.fake_input(d, X.ButtonRelease, button)
        d.sync()
        d.close()

    def icon_pixel(self, x: int, y: int) -> tuple[int, int, int]:
        """The colour the docked icon shows at (x, y) of its 48x48 window."""
        from Xlib import X
        from Xlib import display as xdisplay

        d = xdisplay.Display(self.display)
        try:
            # The app's window may lie over the tray (no window manager here to keep a
            # panel on top), and X keeps no pixels of a covered window: raise the tray;
            # the icon redraws on Expose.
            d.create_resource_object("window", self.tray_window).configure(
                stack_mode=X.Above
            )
            d.sync()
            icon = d.create_resource_object("window", self.docked[-1])
            raw = icon.get_image(x, y, 1, 1, X.ZPixmap, 0xFFFFFFFF).data
            return raw[2], raw[1], raw[0]  # 24-bit TrueColor on Xvfb: B, G, R, pad
        finally:
            d.close()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)


def tray_menu(xprobe: XProbe) -> tuple[list[str], tuple[int, int]] | None:
    """The tray menu's items and its top-left corner, once it is shown."""
    from Xlib import X, Xatom

    d = xprobe._conn()
    for w in d.screen().root.query_tree().children:
        try:
            if (
                w.get_wm_name() != "dim-desktop menu"
                or w.get_attributes().map_state != X.IsViewable
            ):
                continue
            prop = w.get_full_property(d.intern_atom("_DIM_MENU_ITEMS"), Xatom.STRING)
            g = w.get_geometry()
            return prop.value.decode().split("\n"), (g.x, g.y)
        except Exception:
            pass
    return None
