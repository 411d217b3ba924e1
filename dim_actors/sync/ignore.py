"""Which local paths are editor noise and never synced."""

from __future__ import annotations

import fnmatch
from pathlib import PurePosixPath

# Editors write these around a save; syncing them would be noise at best, a loop at worst.
EDITOR_NOISE = (
    "*.swp", "*.swo", "*.swx", ".*.sw?", "4913", "*~", ".#*", "#*#", "*___jb_tmp___", "*___jb_old___",
    "sed??????", ".goutputstream-*", ".DS_Store", ".dim-*.tmp", "*.upstream-*",
)
IGNORED_DIRS = (".git",)


def is_ignored(rel: str, extra_patterns: tuple[str, ...] = ()) -> bool:
    p = PurePosixPath(rel)
    if any(part in IGNORED_DIRS for part in p.parts):
        return True
    name = p.name
    return any(fnmatch.fnmatchcase(name, pat) for pat in (*EDITOR_NOISE, *extra_patterns))
