"""list_folders: the sub-folders of one folder, for the page's folder picker in a browser
(dim-desktop's own window uses the native dialog instead).

Confined: only the user's home folder and the sync_root setting's folder, and what lies
below them, can be listed. A path is refused when it is relative, has a `..` in it, or
is (or leads, through a symbolic link) outside those roots; a link inside that leads
out is left out of a listing. Pure but for reading the disk: tests/test_folder_lister.py
checks it by tables.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# a folder with more sub-folders than this is listed in part (`truncated`)
MAX_FOLDERS = 2000


class FolderError(Exception):
    """A refused listing: `code` and `message` are the page's error."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def roots_for(home: str | None, sync_root: str | None) -> list[Path]:
    """The folders the picker may show, as real paths: home, then sync_root when it is
    set and not inside home already."""
    out: list[Path] = []
    for raw in (home, sync_root):
        if not raw:
            continue
        real = Path(os.path.realpath(os.path.expanduser(raw)))
        if not any(real == r or real.is_relative_to(r) for r in out):
            out.append(real)
    return out


def _root_of(path: Path, roots: Sequence[Path]) -> Path | None:
    for r in roots:
        if path == r or path.is_relative_to(r):
            return r
    return None


def _label(root: Path, roots: Sequence[Path]) -> str:
    return "Home" if root == roots[0] else "Sync folder"


def list_folders(
    path: str | None, roots: Sequence[Path], show_hidden: bool = False
) -> dict[str, Any]:
    """`path` (None: the first root) and its sub-folders, or FolderError:
    INVALID_ARGUMENTS (relative, `..`, not a folder), FORBIDDEN (outside the roots, or
    not readable), NOT_FOUND (no such folder)."""
    if not roots:
        raise FolderError(
            "FORBIDDEN", "list_folders: there is no home folder to browse"
        )
    if path is None or not path.strip():
        target = roots[0]
    else:
        raw = os.path.expanduser(path.strip())
        if not os.path.isabs(raw):
            raise FolderError(
                "INVALID_ARGUMENTS",
                f"list_folders: path must be an absolute folder path, not {path!r}",
            )
        if ".." in raw.split("/"):
            raise FolderError(
                "INVALID_ARGUMENTS",
                f"list_folders: path must not contain '..' ({path})",
            )
        target = Path(os.path.realpath(raw))
    root = _root_of(target, roots)
    if root is None:
        where = " or the sync folder" if len(roots) > 1 else ""
        raise FolderError(
            "FORBIDDEN",
            f"list_folders: {path} is outside your home folder{where}",
        )
    try:
        if not target.is_dir():
            if target.exists():
                raise FolderError(
                    "INVALID_ARGUMENTS", f"list_folders: {target} is not a folder"
                )
            raise FolderError("NOT_FOUND", f"list_folders: {target} does not exist")
        folders, truncated = _sub_folders(target, roots, show_hidden)
    except PermissionError as e:
        raise FolderError(
            "FORBIDDEN", f"list_folders: {target} cannot be read (permission denied)"
        ) from e
    except OSError as e:
        raise FolderError(
            "NOT_FOUND", f"list_folders: {target} cannot be read ({e.strerror})"
        ) from e
    return {
        "path": str(target),
        "parent": None if target == root else str(target.parent),
        "root": str(root),
        "roots": [{"path": str(r), "label": _label(r, roots)} for r in roots],
        "folders": folders,
        "truncated": truncated,
    }


def _sub_folders(
    target: Path, roots: Sequence[Path], show_hidden: bool
) -> tuple[list[dict[str, Any]], bool]:
    found: list[dict[str, Any]] = []
    with os.scandir(target) as it:
        for entry in it:
            if not show_hidden and entry.name.startswith("."):
                continue
            try:
                if not entry.is_dir(follow_symlinks=True):
                    continue
                link = entry.is_symlink()
            except OSError:
                continue
            full = target / entry.name
            if link and _root_of(Path(os.path.realpath(full)), roots) is None:
                continue  # a link that leads out of the roots
            found.append({"name": entry.name, "path": str(full), "link": link})
    found.sort(key=lambda f: (f["name"].casefold(), f["name"]))
    return found[:MAX_FOLDERS], len(found) > MAX_FOLDERS
