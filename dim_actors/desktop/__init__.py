"""dim-desktop on the desktop: how the UI is shown (native window, browser, or not at
all), the tray icon, and native notifications. `Desktop.run` is the main thread's loop
(pywebview needs the main thread); everything else may be called from any thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import urllib.parse
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dim_actors.desktop.notify import Notifier
from dim_actors.desktop.tray import Tray
from dim_actors.desktop.window import NativeWindow, window_support
from dim_actors.kernel.requests import Allocator
from dim_actors.messages import Invoke

log = logging.getLogger("dim.desktop")

MODES = ("window", "browser", "none")


class Desktop:
    def __init__(
        self,
        runtime: Any,
        ui_url: str,
        mode: str,
        *,
        open_page: Callable[[str], Path],
        tray: bool = True,
        notifications: bool = True,
        window_probe: Callable[[], str | None] = window_support,
    ):
        """mode: what to open at start. "auto" and "window" fall back to the browser
        where no window can open ("window" says so as a warning). open_page(url) writes
        a private page forwarding to `url` and returns it: the browser is given that
        file, never the tokened URL, since a browser started with the URL as an argument
        shows the token to every user of the machine (`ps`, /proc/PID/cmdline), and with
        it the whole bridge. The native window needs no such care: pywebview loads its
        URL inside this process."""
        self.runtime = runtime
        self.ui_url = ui_url
        self.open_page = open_page
        self.stop_event: threading.Event = runtime.stop_requested
        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        self.window: NativeWindow | None = None
        self.window_running = False
        self.notifications_on = notifications
        self._probe = window_probe
        self._window_reason: str | None = None
        self._probed = False
        self._probe_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._closed = False
        self.closing = threading.Event()  # close_window(): the window goes for good
        self.sync_ids = Allocator("desktop")
        self.want_tray = tray
        self.tray: Tray | None = None
        self.notifier = Notifier(
            on_click=lambda sid: self.show(sid), should_notify=self._should_notify
        )
        self.start_mode = self._resolve(mode)

    # --- what can be shown ------------------------------------------------------------

    def window_unavailable(self) -> str | None:
        with self._probe_lock:
            if not self._probed:
                self._window_reason = self._probe()
                self._probed = True
                if self._window_reason:
                    log.info("no native window: %s", self._window_reason)
            return self._window_reason

    def _resolve(self, mode: str) -> str:
        if mode in ("auto", "window"):
            why = self.window_unavailable()
            if why is None:
                return "window"
            if mode == "window":
                log.warning(
                    "cannot open a native window (%s): opening the browser instead", why
                )
            return "browser"
        return mode if mode in MODES else "browser"

    # --- from any thread --------------------------------------------------------------

    def show(self, session_id: str | None = None) -> str:
        """Open the UI, or bring it to the front; select `session_id` if given. Returns
        how."""
        window = self.window
        if (
            window is not None
            and not self.window_running
            and not window.started.is_set()
        ):
            window.started.wait(20)  # the window is opening: show it once it is up
        if window is not None and self.window_running:
            window.show(session_id)
            return "window"
        if self.window_unavailable() is None:
            self.requests.put(("window", session_id))  # the main thread opens it
            return "window"
        self.open_browser(session_id)
        return "browser"

    def open_browser(self, session_id: str | None = None) -> None:
        url = self.ui_url + (
            f"&session={urllib.parse.quote(session_id)}" if session_id else ""
        )
        try:
            page = self.open_page(url)
        except OSError as e:
            log.error(
                "cannot open the browser: writing the page that opens the UI failed: %s",
                e,
            )
            return
        threading.Thread(
            target=webbrowser.open,
            args=(page.as_uri(),),
            name="open-browser",
            daemon=True,
        ).start()

    def ui_focused(self) -> bool:
        if self.window is not None and self.window_running:
            return self.window.focused()
        # A page in a browser shows its own notifications (the Notification API) while
        # open.
        try:
            describe = self.runtime.addresses["uibridge"].describe
            return bool(describe and describe().get("pages"))
        except Exception:
            return False

    def _should_notify(self) -> bool:
        return self.notifications_on and not self.ui_focused()

    def on_settings_changed(self, settings: Any) -> None:
        self.notifications_on = bool(settings.native_notifications)

    def connection_state(self) -> str:
        for row in self.runtime.status():
            if row["name"] == "connection":
                return row.get("connection") or "offline"
        return "offline"

    def set_sync_paused(self, paused: bool) -> None:
        """The tray's Pause/Resume sync: the router's `sync_pause` / `sync_resume`
        commands."""
        self.runtime.addresses.send(
            "tray",
            "router",
            Invoke(
                reqId=next(self.sync_ids),
                command="sync_pause" if paused else "sync_resume",
            ),
        )
        log.info("sync %s from the tray", "paused" if paused else "resumed")

    def quit(self) -> None:
        self.runtime.request_stop("Quit from the tray")

    # --- the main thread --------------------------------------------------------------

    def run(self) -> None:
        """Block until the app stops: run the window when there is one, else wait for
        requests."""
        threading.Thread(
            target=self._close_on_stop, name="desktop-stop", daemon=True
        ).start()
        if self.want_tray:
            threading.Thread(
                target=self._start_tray, name="tray-start", daemon=True
            ).start()
        if self.stop_event.is_set():
            return  # stopped before anything opened: open nothing
        if self.start_mode == "window":
            self._run_window(None)
        elif self.start_mode == "browser":
            self.open_browser()
        while not self.stop_event.is_set():
            try:
                what, session_id = self.requests.get(timeout=0.5)
            except queue.Empty:
                continue
            if what == "window" and not self.stop_event.is_set():
                self._run_window(session_id)

    def _run_window(self, session_id: str | None) -> None:
        url = (
            self.ui_url
            + "&shell=window"
            + (f"&session={urllib.parse.quote(session_id)}" if session_id else "")
        )
        self.window = NativeWindow(url, stopping=self.stop_event.is_set)

        def started() -> None:
            self.window_running = True
            if self.closing.is_set() and self.window is not None:
                self.window.destroy()

        try:
            self.window.run(started)
        except Exception as e:
            log.exception("the native window failed")
            self._window_reason = f"the window failed: {e}"
            if not self.stop_event.is_set():
                self.open_browser(session_id)
        finally:
            self.window_running = False

    def _close_on_stop(self) -> None:
        """The stop is requested: end the main thread's loop when there is no window."""
        self.stop_event.wait()
        self.requests.put(("stop", None))

    def close_window(self) -> None:
        """From the app's stop, once the UI bridge has stopped: destroy the window,
        which ends the main thread's GUI loop, without waiting. Not before: a page still
        connected to the bridge answers its close only while the GUI loop runs (once the
        loop is over, its WebSocket stays open, unanswered, until the bridge gives up on
        it). Until then a close of the window during the stop (pywebview quits the GUI
        loop on SIGINT) is refused."""
        self.closing.set()
        window = self.window
        if window is not None:
            window.destroy()

    def _start_tray(self) -> None:
        def open_ui() -> None:
            self.show()

        tray = Tray(
            on_open=open_ui,
            on_quit=self.quit,
            on_sync_paused=self.set_sync_paused,
            connection_state=self.connection_state,
        )
        if tray.start():
            with self._close_lock:
                self.tray = tray
                closed = self._closed
            if closed:  # the app stopped while the tray was starting
                tray.stop()

    def close(self) -> None:
        """The tray and the notifier (any thread; once is enough, twice is harmless)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if self.tray is not None:
            self.tray.stop()
        self.notifier.close()
