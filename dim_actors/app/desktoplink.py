"""The desktop's hooks, for the actors and the control socket that are started before
it.

The runtime starts first (the page's address is known only once the UI bridge listens),
the desktop (window, tray, notifications) after; until it is attached, there is nothing
to notify and no UI to show.
"""

from __future__ import annotations

from dim_actors.config.settings import Settings
from dim_actors.desktop import Desktop


class DesktopLink:
    def __init__(self) -> None:
        self._desktop: Desktop | None = None

    def attach(self, desktop: Desktop) -> None:
        self._desktop = desktop

    def notify(self, type_: str, raw: bytes, session_name: str | None) -> None:
        """On the router's thread: only queues."""
        desktop = self._desktop
        if desktop is not None:
            desktop.notifier.submit(type_, raw, session_name)

    def settings_changed(self, settings: Settings) -> None:
        desktop = self._desktop
        if desktop is not None:
            desktop.on_settings_changed(settings)

    def show(self, session_id: str | None) -> str:
        desktop = self._desktop
        if desktop is None:
            raise LookupError("this dim-desktop cannot open its UI yet")
        return desktop.show(session_id)
