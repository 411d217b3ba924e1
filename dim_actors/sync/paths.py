"""Confining upstream paths to the sync folder."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath


class UnsafePath(ValueError):
    pass


def confined(root: Path, rel: str) -> Path:
    """The local path for workspace path `rel`, or UnsafePath if it would land outside `root`."""
    if not rel or "\x00" in rel:
        raise UnsafePath(f"invalid path {rel!r}")
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts:
        raise UnsafePath(f"path {rel!r} escapes the sync folder")
    target = root.joinpath(*p.parts)
    # A symlinked directory inside the folder could still lead out: resolve what exists.
    real_root = Path(os.path.realpath(root))
    real_parent = Path(os.path.realpath(target.parent))
    if not real_parent.is_relative_to(real_root):
        raise UnsafePath(f"path {rel!r} leads outside the sync folder through a symlink")
    if target.is_symlink():
        raise UnsafePath(f"path {rel!r} is a symlink; refusing to write through it")
    return target
