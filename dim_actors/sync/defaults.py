"""Default sync folders: <sync_root>/<the session's name (or id), made into a safe
folder name>."""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

# well under every filesystem's 255, room left for a "-<id>" suffix
NAME_MAX_BYTES = 120
# Path separators, control characters, and what Windows and macOS file managers refuse:
# a session named "fix: a/b" must not become a path with a folder in it, or a name other
# tools choke on.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')


def folder_name(text: str | None) -> str:
    """A session name as one safe folder name ("" when nothing usable is left)."""
    name = unicodedata.normalize("NFC", text or "")
    name = _UNSAFE.sub("-", name)
    # no hidden folder, no "." or "..", no trailing dot
    name = re.sub(r"\s+", " ", name).strip(" .-")
    while len(name.encode("utf-8")) > NAME_MAX_BYTES:
        name = name[:-1].rstrip(" .-")
    return name


def default_folder(
    sync_root: str, session_id: str, session_name: str | None, taken: set[str]
) -> Path:
    """Where a session syncs by default. Sessions often share a name ("New session"):
    when the name's folder is another session's sync folder already, the id's first 8
    characters are added."""
    root = Path(os.path.expanduser(sync_root))
    ident = folder_name(session_id) or "session"
    name = folder_name(session_name)
    candidates = [name, f"{name}-{ident[:8]}"] if name else [ident]
    for candidate in candidates:
        path = root / candidate
        if str(path) not in taken and os.path.realpath(path) not in taken:
            return path
    return root / f"{name}-{ident}"
