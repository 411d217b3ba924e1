"""Confining upstream paths to the sync folder."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath


class UnsafePath(ValueError):
    pass


def check_relative(rel: str) -> str:
    """A workspace path from upstream, as a clean relative POSIX path, or UnsafePath.

    Refused: empty, absolute, '..', backslashes, NUL and other control characters, and anything in
    .git (a repository's hooks would run what upstream wrote).
    """
    if not isinstance(rel, str) or not rel or len(rel) > 4096:
        raise UnsafePath(f"invalid path {rel!r}")
    if any(ord(c) < 32 for c in rel) or "\\" in rel:
        raise UnsafePath(f"path {rel!r} has control characters or backslashes")
    p = PurePosixPath(rel)
    if p.is_absolute() or rel.startswith("/"):
        raise UnsafePath(f"path {rel!r} is absolute")
    parts = [x for x in rel.split("/") if x not in ("", ".")]
    if ".." in parts:
        raise UnsafePath(f"path {rel!r} escapes the sync folder")
    if not parts:
        raise UnsafePath(f"path {rel!r} names no file")
    if ".git" in parts:
        raise UnsafePath(f"path {rel!r} is inside .git")
    return "/".join(parts)


def confined(root: Path, rel: str) -> Path:
    """The local path for workspace path `rel`, or UnsafePath if it would land outside `root`."""
    clean = check_relative(rel)
    target = Path(root).joinpath(*clean.split("/"))
    # A symlinked folder inside the sync folder could still lead out: resolve what exists.
    real_root = Path(os.path.realpath(root))
    real_parent = Path(os.path.realpath(target.parent))
    if not real_parent.is_relative_to(real_root):
        raise UnsafePath(f"path {rel!r} leads outside the sync folder through a symlink")
    if target.is_symlink():
        raise UnsafePath(f"path {rel!r} is a symlink; refusing to write through it")
    return target
