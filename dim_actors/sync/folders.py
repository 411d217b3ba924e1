"""Folders made for the user, in and up to a sync folder.

The app runs with umask 077 so that DIM_HOME stays private (dim_actors/config/home.py);
a sync folder is the user's own, opened in their editor and shared with their tools, so
what we make there takes the mode the user's own umask gives (0755 under the usual 022),
as their shell would.
"""

from __future__ import annotations

import os
from pathlib import Path

from dim_actors.config.home import user_umask


def user_folder_mode() -> int:
    return 0o777 & ~user_umask()


def make_user_folder(folder: str | os.PathLike[str]) -> None:
    """mkdir with the user's mode; FileExistsError as os.mkdir raises it."""
    os.mkdir(folder)
    os.chmod(folder, user_folder_mode())


def make_user_folders(path: Path) -> None:
    """`path` and its missing parents, each with the user's mode (mkdir -p)."""
    missing = []
    for p in (path, *path.parents):
        if p.is_dir():
            break
        missing.append(p)
    for p in reversed(missing):
        try:
            make_user_folder(p)
        except FileExistsError:
            if not p.is_dir():
                raise
