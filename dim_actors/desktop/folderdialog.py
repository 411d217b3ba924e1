"""The native window's folder picker: the page's "Choose…" calls `choose_folder`
through pywebview's js_api (`window.pywebview.api.choose_folder(start)`), which opens
the system's folder dialog. In a browser the page uses the bridge's `list_folders`
instead (dim_actors/router/folders.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

# opens the dialog at a folder; the folders chosen, or None when cancelled
Dialog = Callable[[str], Sequence[str] | str | None]


def start_folder(start: object) -> str:
    """Where the dialog opens: `start` when it names an existing folder (or the nearest
    existing folder above it), else the home folder."""
    home = os.path.expanduser("~")
    if not isinstance(start, str) or not start.strip() or "\0" in start:
        return home
    path = os.path.expanduser(start.strip())
    if not os.path.isabs(path):
        return home
    while path and not os.path.isdir(path):
        parent = os.path.dirname(path)
        if parent == path:
            return home
        path = parent
    return path or home


def choose_folder(dialog: Dialog, start: object = None) -> str | None:
    """The folder the user picked in `dialog`, as an absolute path; None when they
    cancelled."""
    picked = dialog(start_folder(start))
    if picked is None:
        return None
    if isinstance(picked, str):
        picked = [picked]
    for p in picked:
        if isinstance(p, str) and p:
            return os.path.abspath(p)
    return None
