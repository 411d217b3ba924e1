"""The desktop's hooks, for the actors and the control socket that are started before
it.

The runtime starts first (the page's address is known only once the UI bridge listens),
the desktop (window, tray, notifications) after; until it is attached, there is nothing
to notify and no UI to show.
"""

from __future__ import annotations

import logging
import threading

from dim_actors.config.settings import Settings
from dim_actors.desktop import Desktop

log = logging.getLogger("dim.desktop")


class DesktopLink:
    def __init__(self) -> None:
        self._desktop: Desktop | None = None
        # The last count told, for a desktop attached after it; the lock keeps an
        # attach from handing on an older count after a newer one.
        self._attention = 0
        self._attention_lock = threading.Lock()

    def attach(self, desktop: Desktop) -> None:
        with self._attention_lock:
            self._desktop = desktop
            if self._attention:
                desktop.set_attention(self._attention)

    def notify(self, type_: str, raw: bytes, session_name: str | None) -> None:
        """On the router's thread: only queues."""
        desktop = self._desktop
        if desktop is not None:
            desktop.notifier.submit(type_, raw, session_name)

    def attention(self, count: int) -> None:
        """On the router's thread: how many sessions need the user. Only queues."""
        with self._attention_lock:
            self._attention = count
            desktop = self._desktop
            if desktop is not None:
                desktop.set_attention(count)

    def settings_changed(self, settings: Settings) -> None:
        desktop = self._desktop
        if desktop is not None:
            desktop.on_settings_changed(settings)

    def show(self, session_id: str | None) -> str:
        desktop = self._desktop
        if desktop is None:
            raise LookupError("this dim-desktop cannot open its UI yet")
        return desktop.show(session_id)

    def open_session_window(self, session_id: str) -> str:
        desktop = self._desktop
        if desktop is None:
            raise LookupError("this dim-desktop cannot open its UI yet")
        return desktop.open_session_window(session_id)

    def open_window_later(self, session_id: str) -> None:
        """On the router's thread (the page's `open_window`): opening may wait for the
        main window to come up, so it is done on a thread of its own."""
        if self._desktop is None:
            raise LookupError("this dim-desktop cannot open a window yet")
        threading.Thread(
            target=self._open_quietly,
            args=(session_id,),
            name="open-session-window",
            daemon=True,
        ).start()

    def _open_quietly(self, session_id: str) -> None:
        try:
            self.open_session_window(session_id)
        except Exception:
            log.exception("opening a window for session %s failed", session_id)
