"""A session's own window: where it opens (pure decisions; `Desktop` does them).

One window a session: asking again brings that one to the front. Session windows live
in the GUI loop the main window runs, so without that loop one is started with the main
window hidden (as if closed to the tray); where no native window can open, the session
opens in a new browser tab instead.
"""

from __future__ import annotations

import urllib.parse
from typing import Literal

Step = Literal["raise", "open", "start-loop", "browser"]


def plan(*, has_window: bool, loop_running: bool, window_possible: bool) -> Step:
    """has_window: the session has a window already (open, or about to be)."""
    if has_window:
        return "raise"
    if loop_running:
        return "open"
    if window_possible:
        return "start-loop"
    return "browser"


def session_url(ui_url: str, session_id: str, *, native: bool) -> str:
    """The page's URL for a session's window: `window=session` has the page show that
    session alone; `shell=window` has it leave notifications to the app (native)."""
    return (
        ui_url
        + ("&shell=window" if native else "")
        + "&window=session&session="
        + urllib.parse.quote(session_id, safe="")
    )
