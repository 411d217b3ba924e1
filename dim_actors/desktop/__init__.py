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

from dim_actors.desktop import autostart, sessionwindows
from dim_actors.desktop.badge import with_count
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
        # Each session's own window, by session id (sessionwindows.py): one a session.
        self.session_windows: dict[str, NativeWindow] = {}
        self._windows_lock = threading.Lock()
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
        # How many sessions need the user, and its queue to the thread that shows it.
        self.attention = 0
        self._attention_q: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._attention_thread: threading.Thread | None = None
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

    def _main_window_up(self) -> NativeWindow | None:
        window = self.window
        if (
            window is not None
            and not self.window_running
            and not window.started.is_set()
        ):
            window.started.wait(20)  # the window is opening: show it once it is up
        return window

    def show(self, session_id: str | None = None) -> str:
        """Open the UI, or bring it to the front; select `session_id` if given. Returns
        how."""
        window = self._main_window_up()
        if window is not None and self.window_running:
            window.show(session_id)
            return "window"
        if self.window_unavailable() is None:
            self.requests.put(("window", session_id))  # the main thread opens it
            return "window"
        self.open_browser(session_id)
        return "browser"

    def open_session_window(self, session_id: str) -> str:
        """Off the main thread: open `session_id` in a window of its own, or bring the
        one it has to the front; in a new browser tab where no window can open. Returns
        how ("window" or "browser")."""
        self._main_window_up()
        possible = self.window_running or self.window_unavailable() is None
        with self._windows_lock:
            existing = self.session_windows.get(session_id)
            step = sessionwindows.plan(
                has_window=existing is not None,
                loop_running=self.window_running,
                window_possible=possible,
            )
            if step in ("open", "start-loop"):
                existing = self._session_window(session_id)
        match step:
            case "raise" | "open" if existing is not None:
                try:
                    if step == "raise":
                        existing.show()
                    else:
                        existing.open()
                except Exception:
                    log.exception("session %s: its window failed to open", session_id)
                    self._forget(session_id, existing)
                else:
                    log.info("session %s: in its own window (%s)", session_id, step)
                    return "window"
            case "start-loop":
                # The main thread starts the GUI loop, then opens the session's window.
                self.requests.put(("session", session_id))
                return "window"
        self.open_browser(session_id, alone=True)
        return "browser"

    def _session_window(self, session_id: str) -> NativeWindow:
        """Under _windows_lock: a session's window, registered, not open yet."""

        def closed() -> None:
            self._forget(session_id, window)
            log.info("session %s: its window closed", session_id)

        window = NativeWindow(
            sessionwindows.session_url(self.ui_url, session_id, native=True),
            stopping=self.stop_event.is_set,
            kind="session",
            on_closed=closed,
            # its page named it (the session's name): the attention count goes in front
            on_retitled=lambda w: w.set_title(with_count(w.title, self.attention)),
        )
        self.session_windows[session_id] = window
        return window

    def _forget(self, session_id: str, window: NativeWindow) -> None:
        with self._windows_lock:
            if self.session_windows.get(session_id) is window:
                del self.session_windows[session_id]

    def open_windows(self) -> list[NativeWindow]:
        """Every native window open now, the main one first (hidden ones included)."""
        with self._windows_lock:
            sessions = list(self.session_windows.values())
        main = [self.window] if self.window is not None and self.window_running else []
        return [w for w in main + sessions if w.window is not None and not w.quitting]

    def open_browser(
        self, session_id: str | None = None, *, alone: bool = False
    ) -> None:
        """alone: in a tab of its own showing that session only (a session's window)."""
        if session_id and alone:
            url = sessionwindows.session_url(self.ui_url, session_id, native=False)
        else:
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
            return any(w.focused() for w in self.open_windows())
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
        autostart.apply(settings.start_at_login)

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

    def set_attention(self, count: int) -> None:
        """From any thread (the router's): how many sessions need the user, shown on
        the tray icon's badge and in the native windows' titles. Only queues: setting a
        title waits for the window, which the router must never do."""
        self.attention = count
        with self._close_lock:
            if self._closed:
                return
            if self._attention_thread is None:
                self._attention_thread = threading.Thread(
                    target=self._show_attention, name="desktop-attention", daemon=True
                )
                self._attention_thread.start()
        self._attention_q.put(count)

    def _show_attention(self) -> None:
        while (count := self._attention_q.get()) is not None:
            while not self._attention_q.empty():  # only the newest count matters
                newer = self._attention_q.get()
                if newer is None:
                    return
                count = newer
            if self.tray is not None:
                self.tray.set_badge(count)
            for window in self.open_windows():
                window.set_title(with_count(window.title, count))

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
            if self.stop_event.is_set():
                continue
            if what == "window":
                self._run_window(session_id)
            elif what == "session":
                # A session's window needs the GUI loop: the main window runs it, hidden.
                self._run_window(None, hidden=True)

    def _run_window(self, session_id: str | None, *, hidden: bool = False) -> None:
        url = (
            self.ui_url
            + "&shell=window"
            + (f"&session={urllib.parse.quote(session_id)}" if session_id else "")
        )
        self.window = NativeWindow(url, stopping=self.stop_event.is_set, hidden=hidden)

        def started() -> None:
            # On a thread of pywebview's, the GUI loop running.
            self.window_running = True
            if self.closing.is_set() and self.window is not None:
                self.window.destroy()
                return
            with self._windows_lock:
                waiting = [w for w in self.session_windows.values() if w.window is None]
            for window in waiting:
                window.open()
            if self.attention and self.window is not None:  # counted before it opened
                self.window.set_title(with_count(self.window.title, self.attention))

        try:
            self.window.run(started)
        except Exception as e:
            log.exception("the native window failed")
            self._window_reason = f"the window failed: {e}"
            if not self.stop_event.is_set():
                self.open_browser(session_id)
        finally:
            self.window_running = False
            with self._windows_lock:  # the loop is over: no session window is left
                self.session_windows.clear()

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
        with self._windows_lock:
            sessions = list(self.session_windows.values())
        # The GUI loop ends once the last window is gone: the sessions' and the main one.
        for window in [*sessions, self.window]:
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
            tray.set_badge(self.attention)
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
        self._attention_q.put(None)
        self.notifier.close()
