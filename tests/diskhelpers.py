"""A disk that really fills up: a small tmpfs mounted for one test (mounting needs root,
as CI has)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_disk(
    folder: Path, size: str = "4m", read_only: bool = False
) -> Iterator[Path]:
    """`folder` (made if missing) as a tmpfs of `size`, private (0700), read-only if
    asked, unmounted afterwards."""
    folder.mkdir(mode=0o700, exist_ok=True)
    options = f"size={size},mode=0700" + (",ro" if read_only else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.fail(
            "the disk tests mount a small tmpfs, which needs root (CI runs the suite as root): "
            f"{mounted.stderr.strip()}"
        )
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(disk: Path, name: str = "filler", leave: int = 0) -> Path:
    """A file that takes the disk's free space, leaving about `leave` bytes."""
    p = disk / name
    with open(p, "ab", buffering=0) as f:
        while True:
            st = os.statvfs(disk)
            free = st.f_bavail * st.f_frsize
            if free <= leave:
                break
            try:  # unbuffered: a write the disk takes only in part returns what it took
                f.write(b"\0" * min(65536, max(4096, free - leave)))
            except OSError:  # ENOSPC: full
                break
    return p


@contextmanager
def immutable(path: Path) -> Iterator[Path]:
    """`path` with the immutable attribute (EPERM on any change, for root too:
    permission bits do not stop root, which the suite runs as), cleared afterwards."""
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
