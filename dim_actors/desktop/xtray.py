"""A system tray icon on plain X11 (the freedesktop System Tray protocol, XEmbed), with
python-xlib.

This is what pystray's X11 backend does, written so that it cannot freeze the desktop:
that backend grabs the whole X server around each look at the tray's owner and then
needs the GIL to let go of it, while PyQt holds the GIL across the native window's own X
round trips. When the two meet (at start, or on any icon update), the app and every
other client of the display hang for good. Here nothing grabs the server, one thread
owns its own X connection and does every X call, and other threads only queue changes
for it.
"""

from __future__ import annotations

import logging
import queue
import select
import socket
import threading
from collections.abc import Callable
from typing import Any, Literal

log = logging.getLogger("dim.desktop.tray")

REQUEST_DOCK = 0  # SYSTEM_TRAY_REQUEST_DOCK, the System Tray protocol's opcode
XEMBED_VERSION = 0
XEMBED_MAPPED = 1
REDOCK_EVERY_S = 5.0  # without a tray on the screen, look for one again this often

# (x, y) are root coordinates of the pointer; button is X's number (1 left, 3 right).
ClickHandler = Callable[[int, int, int], None]
Change = tuple[Literal["image", "title"], Any]


def _flatten(image: Any, width: int, height: int) -> Any:
    """The icon scaled to the window and laid on black, as an RGB image X can take."""
    from PIL import Image

    out = Image.new("RGB", (width, height))
    scaled = image.convert("RGBA").resize((width, height), Image.Resampling.LANCZOS)
    out.paste(scaled, (0, 0), scaled)
    return out


class XTrayIcon:
    def __init__(
        self,
        image: Any,
        title: str,
        on_click: ClickHandler,
        display_name: str | None = None,
    ):
        self.image = image
        self.title = title
        self.on_click = on_click
        self.display_name = display_name
        self.docked = threading.Event()
        self._changes: queue.SimpleQueue[Change] = queue.SimpleQueue()
        self._stopping = threading.Event()
        # objects, not fds: no reuse after a close
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None
        self._d: Any = None
        self._window: Any = None
        self._gc: Any = None
        self._manager: Any = None
        self._atoms: dict[str, int] = {}
        self._selection = 0
        self._size = (24, 24)
        # the flattened image at its size, kept until either changes
        self._drawn: Any = None

    # --- any thread -------------------------------------------------------------------

    def start(self) -> None:
        """Connect and start the icon's thread; raises when X cannot be reached."""
        from Xlib import display as xdisplay

        self._d = xdisplay.Display(self.display_name)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="tray-x11", daemon=True)
        self._thread.start()

    def set_image(self, image: Any) -> None:
        self._post(("image", image))

    def set_title(self, title: str) -> None:
        self._post(("title", title))

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _post(self, change: Change) -> None:
        self._changes.put(change)
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # full (a wake is pending anyway) or closed (the thread has ended)

    # --- the icon's thread ------------------------------------------------------------

    def _run(self) -> None:
        from Xlib import X, error

        d = self._d
        try:
            screen = d.screen()
            self._atoms = {
                name: d.intern_atom(name)
                for name in (
                    f"_NET_SYSTEM_TRAY_S{d.get_default_screen()}",
                    "_NET_SYSTEM_TRAY_OPCODE",
                    "_XEMBED_INFO",
                    "MANAGER",
                    "_NET_WM_NAME",
                    "UTF8_STRING",
                )
            }
            self._selection = self._atoms[f"_NET_SYSTEM_TRAY_S{d.get_default_screen()}"]
            # A tray that starts later announces itself with a MANAGER message to the
            # root window.
            screen.root.change_attributes(event_mask=X.StructureNotifyMask)
            d.set_error_handler(
                lambda err, *_: log.debug("X error from the tray icon: %s", err)
            )
            while not self._stopping.is_set():
                self._apply_changes()
                if self._manager is None:
                    self._dock()
                # also what the requests above read on their way
                while d.pending_events():
                    self._handle(d.next_event())
                d.flush()
                ready, _, _ = select.select(
                    [d.fileno(), self._wake_r],
                    [],
                    [],
                    None if self._manager is not None else REDOCK_EVERY_S,
                )
                if self._wake_r in ready:
                    self._wake_r.recv(4096)
        except (error.ConnectionClosedError, error.DisplayError, OSError) as e:
            if not self._stopping.is_set():
                log.warning("the tray icon lost its X connection: %s", e)
        except Exception:
            log.exception("the tray icon failed")
        finally:
            self.docked.clear()
            self._close()

    def _close(self) -> None:
        try:
            if self._window is not None:
                self._window.destroy()
            self._d.close()
        except Exception:
            pass
        self._wake_r.close()
        self._wake_w.close()

    def _create_window(self) -> None:
        from Xlib import X, Xutil

        screen = self._d.screen()
        self._window = screen.root.create_window(
            -1,
            -1,
            *self._size,
            0,
            screen.root_depth,
            window_class=X.InputOutput,
            event_mask=X.ExposureMask | X.StructureNotifyMask | X.ButtonPressMask,
        )
        self._window.set_wm_class("dim-desktop", "dim-desktop")
        self._window.set_wm_normal_hints(
            flags=Xutil.PSize | Xutil.PMinSize, min_width=16, min_height=16
        )
        self._set_title()
        xembed = self._atoms["_XEMBED_INFO"]
        self._window.change_property(
            xembed, xembed, 32, [XEMBED_VERSION, XEMBED_MAPPED]
        )
        self._gc = self._window.create_gc()

    def _dock(self) -> None:
        """Ask the tray that owns the selection to take the icon; nothing when there is
        none yet."""
        from Xlib import X, error
        from Xlib.protocol import event

        owner = self._d.get_selection_owner(self._selection)
        if owner == X.NONE:
            return
        if self._window is None:
            self._create_window()
        try:
            # Told when this tray goes, to dock into the next one.
            owner.change_attributes(event_mask=X.StructureNotifyMask)
            owner.send_event(
                event.ClientMessage(
                    window=owner,
                    client_type=self._atoms["_NET_SYSTEM_TRAY_OPCODE"],
                    data=(32, [X.CurrentTime, REQUEST_DOCK, self._window.id, 0, 0]),
                ),
                event_mask=X.NoEventMask,
            )
            self._d.sync()
        except error.XError as e:
            # the tray went between the look and the request: try again later
            log.debug("docking the tray icon failed: %s", e)
            return
        self._manager = owner
        self.docked.set()
        log.debug("tray icon docked (tray window 0x%x)", owner.id)

    def _undock(self) -> None:
        """The tray went away. It may have taken our window with it: start from a fresh
        one."""
        self._manager = None
        self.docked.clear()
        window, self._window = self._window, None
        if window is not None:
            try:
                window.destroy()
            except Exception:
                pass

    def _handle(self, ev: Any) -> None:
        from Xlib import X

        window_id = self._window.id if self._window is not None else None
        match ev.type:
            case X.Expose if ev.window.id == window_id and ev.count == 0:
                self._draw()
            case X.ConfigureNotify if ev.window.id == window_id:
                if (ev.width, ev.height) != self._size:
                    self._size = (ev.width, ev.height)
                    self._draw()
            case X.ButtonPress if ev.window.id == window_id:
                try:
                    self.on_click(ev.root_x, ev.root_y, ev.detail)
                except Exception:
                    log.exception("the tray icon's click handler failed")
            case X.DestroyNotify if (
                self._manager is not None and ev.window.id == self._manager.id
            ):
                self._undock()
            case X.DestroyNotify if ev.window.id == window_id:
                self._window = None  # destroyed with the tray that held it
                self._undock()
            case X.ClientMessage if (
                ev.client_type == self._atoms["MANAGER"] and self._manager is None
            ):
                self._dock()

    def _apply_changes(self) -> None:
        redraw = False
        while True:
            try:
                what, value = self._changes.get_nowait()
            except queue.Empty:
                break
            if what == "image":
                self.image, self._drawn, redraw = value, None, True
            else:
                self.title = value
                self._set_title()
        if redraw:
            self._draw()

    def _set_title(self) -> None:
        if self._window is None:
            return
        self._window.set_wm_name(self.title)
        self._window.change_property(
            self._atoms["_NET_WM_NAME"],
            self._atoms["UTF8_STRING"],
            8,
            self.title.encode(),
        )

    def _draw(self) -> None:
        if self._window is None or self._manager is None:
            return
        if self._drawn is None or self._drawn.size != self._size:
            self._drawn = _flatten(self.image, *self._size)
        self._window.put_pil_image(self._gc, 0, 0, self._drawn)
