"""The native window: pywebview with its Qt backend (the `desktop` extra), on the main
thread.

Closing the main window hides it: the supervisor and the gateway connection keep
running, and the tray, a second `dim-desktop` or `dimctl show` bring it back. The main
window goes for good only when the app stops (`destroy`), which ends `run`. A session's
window (`open`, once the main window's GUI loop runs) is about one session: closing it
closes it for good, and the main window and the app go on.

`destroy` may be called from any thread at any moment, before the window is even shown:
it never waits. And once the GUI loop is over, nothing of pywebview's may wait for it:
pywebview runs a page's script injection on a non-daemon thread that waits, without a
timeout, for the GUI loop to return each script's result; if the window goes while a
page is loading, that loop never answers, and the process could not exit. `run` answers
those waits itself once the loop has ended.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from dim_actors.desktop.folderdialog import choose_folder as pick_folder

log = logging.getLogger("dim.desktop.window")

INSTALL_HINT = "pip install 'dim-desktop[desktop]'"
# A Qt application that cannot reach the display aborts its whole process (qFatal), so
# whether one can start here is asked of a throwaway process first.
_PROBE = (
    "import sys\n"
    "from qtpy.QtWidgets import QApplication\n"
    "from qtpy import QtWebEngineWidgets\n"
    "app = QApplication(sys.argv[:1])\n"
    "print('ok', flush=True)\n"
)


def has_display(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    if not sys.platform.startswith("linux") and not sys.platform.startswith(
        ("freebsd", "openbsd")
    ):
        return True
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def prepare_env() -> None:
    """Qt WebEngine (Chromium) refuses to run as root with its sandbox on."""
    if (
        hasattr(os, "geteuid")
        and os.geteuid() == 0
        and "QTWEBENGINE_DISABLE_SANDBOX" not in os.environ
    ):
        os.environ["QTWEBENGINE_DISABLE_SANDBOX"] = "1"


def window_support(timeout: float = 30.0) -> str | None:
    """None when a native window can open here; otherwise the reason it cannot (one
    line)."""
    if not has_display():
        return "no display (neither DISPLAY nor WAYLAND_DISPLAY is set)"
    try:
        import webview  # noqa: F401
    except ImportError:
        return f"pywebview is not installed ({INSTALL_HINT})"
    try:
        import qtpy  # noqa: F401
    except Exception as e:  # qtpy raises its own error when no Qt binding is installed
        return f"pywebview's Qt backend is not installed ({INSTALL_HINT}): {e}"
    prepare_env()
    try:
        r = subprocess.run(
            [sys.executable, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return f"Qt did not start within {timeout:.0f}s"
    if r.returncode != 0 or "ok" not in r.stdout:
        lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
        important = [
            ln for ln in lines if "needed" in ln or "Could not" in ln or "Error" in ln
        ] or lines[-2:]
        return "Qt cannot start here: " + " / ".join(important[:3])[:400]
    return None


WindowKind = Literal["main", "session"]


class NativeWindow:
    def __init__(
        self,
        url: str,
        title: str = "Diminuendo",
        stopping: Callable[[], bool] = lambda: False,
        *,
        kind: WindowKind = "main",
        hidden: bool = False,
        on_closed: Callable[[], None] | None = None,
        on_retitled: Callable[[NativeWindow], None] | None = None,
    ):
        """stopping: whether the app is stopping (a close is then refused: the stop
        destroys the window). kind: "main" hides on close; "session" closes for good,
        then calls on_closed, and takes its title from its page's (the session's
        name), then calls on_retitled (else shows that title). hidden: the main window
        starts hidden (its GUI loop is wanted for a session's window only)."""
        self.url = url
        self.title = title  # what the window is called; set_title may show more
        self.stopping = stopping
        self.kind = kind
        self.hidden = hidden
        self.on_closed = on_closed
        self.on_retitled = on_retitled
        self._following = False
        self.window: Any = None
        self.quitting = False
        self.started = threading.Event()
        self.loaded = threading.Event()
        self.visible = False

    def run(self, on_started: Callable[[], None] | None = None) -> None:
        """On the main thread: open the window and run the GUI loop until `destroy`."""
        prepare_env()
        import webview

        # Qt names the window's class (WM_CLASS) and the app after argv[0].
        sys.argv[:1] = ["dim-desktop"]
        self._create(webview)

        def started() -> None:
            self.started.set()
            if on_started is not None:
                on_started()
            if self.quitting:  # destroyed before it existed
                self.destroy()

        try:
            webview.start(started, gui="qt", private_mode=True)
        finally:
            self.visible = False
            self.quitting = True
            self._answer_script_waits_for_ever()
        log.info("window closed for good")

    def open(self) -> None:
        """Off the main thread, while the GUI loop runs: open this window in it.
        pywebview creates a window at once only when asked from another thread than
        the main one, and the main window's loop then shows it."""
        import webview

        self._create(webview)
        self.started.set()

    def _create(self, webview: Any) -> None:
        self.window = webview.create_window(
            self.title,
            self.url,
            width=1280 if self.kind == "main" else 1000,
            height=800,
            min_size=(800, 560) if self.kind == "main" else (480, 400),
            background_color="#1e1f22",
            hidden=self.hidden,
        )
        self.window.events.closing += self._on_closing
        self.window.events.closed += self._on_closed
        self.window.events.shown += self._on_shown
        self.window.events.loaded += self.loaded.set
        window = self.window

        # The page's "Choose…" (window.pywebview.api.choose_folder): a plain function,
        # since pywebview passes the page's arguments by the parameters it names.
        def choose_folder(start: str | None = None) -> str | None:
            return pick_folder(
                lambda d: window.create_file_dialog(
                    webview.FileDialog.FOLDER, directory=d
                ),
                start,
            )

        self.window.expose(choose_folder)

    def set_title(self, title: str) -> None:
        """From any thread: the title the window shows (its taskbar entry's too)."""
        window = self.window
        if window is None or self.quitting:
            return
        try:
            window.set_title(title)
        except Exception:
            log.exception("setting the window's title failed")

    def _follow_page_title(self) -> None:
        """A session's window is named as its page is (the session's name): several
        windows are then told apart in the taskbar and the window switcher."""
        webview = getattr(getattr(self.window, "native", None), "webview", None)
        if webview is None or self._following:
            return
        self._following = True  # shown again (brought to the front): once is enough

        def changed(title: str) -> None:
            if not title or title == self.title:
                return
            self.title = title
            if self.on_retitled is not None:
                self.on_retitled(self)
            else:
                self.set_title(title)

        from qtpy.QtCore import Qt

        # Direct: called on the GUI thread that emits it. This thread (pywebview's, for
        # the `shown` event) ends at once, and a queued call to it would never come.
        webview.titleChanged.connect(changed, Qt.ConnectionType.DirectConnection)

    def _answer_script_waits_for_ever(self) -> None:
        """The GUI loop is over: answer (with no result) every wait for a script's
        result, now and whenever one starts later, so no pywebview thread waits for ever
        on a loop that has ended."""
        try:
            results = getattr(getattr(self.window, "native", None), "_js_results", None)
        except Exception:  # the Qt object may be gone already
            return
        # pywebview's Qt backend keeps each wait as {id: {"semaphore": ..., "result":
        # ...}}.
        if not isinstance(results, dict):
            return

        def answer() -> None:
            ended = time.monotonic()
            while True:
                for waiting in list(results.values()):
                    try:
                        waiting["semaphore"].release()
                    except Exception:
                        pass
                # A wait begun as the loop ended registers within moments; later ones
                # cannot begin (no page loads any more), so after a while a slow look is
                # enough.
                time.sleep(0.05 if time.monotonic() - ended < 10 else 1.0)

        threading.Thread(target=answer, name="window-script-waits", daemon=True).start()

    def _on_shown(self) -> None:
        if self.hidden and not self.visible:
            return  # a hidden window counts as shown for pywebview: it is not
        self.visible = True
        if self.kind == "session":
            self._follow_page_title()
        log.info("%s window shown", self.kind)

    def _on_closed(self) -> None:
        self.visible = False
        self.quitting = True
        if self.on_closed is not None:
            self.on_closed()

    def _on_closing(self) -> bool:
        if self.quitting:
            return True
        if self.stopping():
            # The app is stopping and closes the window itself, once its UI bridge has
            # stopped.
            return False
        if self.kind == "session":
            return True  # about one session: it goes, the others and the app stay
        # Closing only hides: the app keeps running in the background (tray,
        # dim-desktop, dimctl show).
        self.visible = False
        threading.Thread(target=self._hide, name="window-hide", daemon=True).start()
        log.info(
            "window closed by the user: hidden, dim-desktop keeps running (dimctl stop ends it)"
        )
        return False

    def _hide(self) -> None:
        try:
            self.window.hide()
        except Exception:
            log.exception("hiding the window failed")

    def show(self, session_id: str | None = None) -> None:
        """From any thread: bring the window back (and select a session)."""
        if self.window is None:
            return
        self.hidden = False
        self.window.show()
        # raise it and give it the focus (show alone only maps it)
        self.window.restore()
        self.visible = True
        if session_id:
            threading.Thread(
                target=self._select,
                args=(session_id,),
                name="window-select",
                daemon=True,
            ).start()

    def _select(self, session_id: str) -> None:
        import json

        if not self.loaded.wait(30):
            return
        try:
            self.window.evaluate_js(
                "window.__dim && window.__dim.selectSession && "
                f"window.__dim.selectSession({json.dumps(session_id)})"
            )
        except Exception:
            log.exception("selecting session %s in the window failed", session_id)

    def focused(self) -> bool:
        if self.window is None or not self.visible:
            return False
        native = getattr(self.window, "native", None)
        try:
            return bool(
                native is not None and native.isVisible() and native.isActiveWindow()
            )
        except Exception:
            return False

    def destroy(self) -> None:
        """From any thread, without waiting: close the window for good, which ends
        `run`. A window not shown yet is closed as soon as it is (pywebview can close
        only a shown one)."""
        self.quitting = True
        window = self.window
        if window is None:
            return  # not created yet: `run` destroys it once the GUI loop has started
        if window.events.shown.is_set():
            self._destroy_now(window)
        else:
            threading.Thread(
                target=self._destroy_when_shown,
                args=(window,),
                name="window-destroy",
                daemon=True,
            ).start()

    def _destroy_when_shown(self, window: Any) -> None:
        window.events.shown.wait()
        self._destroy_now(window)

    def _destroy_now(self, window: Any) -> None:
        try:
            window.destroy()  # queued to the GUI loop, which closes the window and ends
        except Exception:
            log.exception("destroying the window failed")
