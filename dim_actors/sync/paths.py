"""Confining upstream paths to the sync folder, and what a name or a mode may be on this
disk.

Pure functions (tests/test_sync_names.py checks them by tables): which spellings are
.git, which local names cannot be synced and why, what an upstream mode becomes, and an
OSError in words.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import Literal

from dim_actors.wire.limits import NAME_MAX

# Code points HFS+ ignores when it compares names, so ".g\u200cit" is ".git" there
# (git's list).
_HFS_IGNORABLE = dict.fromkeys(
    [
        0x200C,
        0x200D,
        0x200E,
        0x200F,
        0x202A,
        0x202B,
        0x202C,
        0x202D,
        0x202E,
        0x206A,
        0x206B,
        0x206C,
        0x206D,
        0x206E,
        0x206F,
        0xFEFF,
    ]
)


class UnsafePath(ValueError):
    pass


def is_git_name(name: str) -> bool:
    """True for a name some file system takes for `.git`: any case (`.GIT`:
    case-insensitive disks), HFS+'s ignorable code points inside it, NTFS's trailing
    dots and spaces (`.git.`, `.git `), an
    alternate data stream (`.git::$INDEX_ALLOCATION`) and the 8.3 short name `git~1`."""
    low = name.translate(_HFS_IGNORABLE).lower()
    for stem in (".git", "git~1"):
        if low.startswith(stem):
            rest = low[len(stem) :].rstrip(". ")
            if not rest or rest.startswith(":"):
                return True
    return False


_CONTROL_OR_BACKSLASH = re.compile(r"[\x00-\x1f\\]")


def check_relative(rel: str) -> str:
    """A workspace path from upstream, as a clean relative POSIX path, or UnsafePath.

    Refused: empty, absolute, '..', backslashes, NUL and other control characters, and
    anything in .git however a file system spells it (a repository's hooks would run
    what upstream wrote).
    """
    if not isinstance(rel, str) or not rel or len(rel) > 4096:
        raise UnsafePath(f"invalid path {rel!r}")
    if _CONTROL_OR_BACKSLASH.search(rel):
        raise UnsafePath(f"path {rel!r} has control characters or backslashes")
    if rel.startswith("/"):
        raise UnsafePath(f"path {rel!r} is absolute")
    parts = [x for x in rel.split("/") if x not in ("", ".")]
    if ".." in parts:
        raise UnsafePath(f"path {rel!r} escapes the sync folder")
    if not parts:
        raise UnsafePath(f"path {rel!r} names no file")
    if any(is_git_name(x) for x in parts):
        raise UnsafePath(f"path {rel!r} is inside .git")
    return "/".join(parts)


def name_too_long(rel: str) -> str | None:
    """Why a clean relative path cannot be written on this disk for its length, or None."""
    for part in rel.split("/"):
        n = len(part.encode("utf-8", "surrogateescape"))
        if n > NAME_MAX:
            return (
                f"the name is too long for the disk ({n} bytes in one name; at most "
                f"{NAME_MAX}), so it cannot be written here; it arrives once upstream "
                "gives it a shorter name"
            )
    return None


def confined(root: Path, rel: str) -> Path:
    """The local path for workspace path `rel`, or UnsafePath if it would land outside
    `root`."""
    clean = check_relative(rel)
    # A symlinked folder inside the sync folder could still lead out: resolve what
    # exists.
    Confiner(root).check(clean)
    return Path(root).joinpath(*clean.split("/"))


def inside(real: str, real_root: str) -> bool:
    """Whether the resolved path `real` is the resolved folder `real_root` or in it."""
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


class Confiner:
    """`confined` for many clean paths (check_relative's) of one sync folder in a row,
    as the journal checks a message's notifications: the folder's real path, and each
    folder's on the way, is resolved once per Confiner (one message). What it lets pass
    is checked again right before it is written (the materializer's own walk)."""

    def __init__(self, root: Path | str):
        self.root = os.fspath(root)
        self._real_root: str | None = None
        self._inside: dict[str, bool] = {}  # a folder (relative) -> leads inside

    def check(self, clean: str) -> None:
        """UnsafePath if the clean relative path `clean` leads out of the folder
        through a symlink, or is one."""
        folder, _, _ = clean.rpartition("/")
        leads_in = self._inside.get(folder)
        if leads_in is None:
            if self._real_root is None:
                self._real_root = os.path.realpath(self.root)
            real = os.path.realpath(os.path.join(self.root, *folder.split("/")))
            self._inside[folder] = leads_in = inside(real, self._real_root)
        if not leads_in:
            raise UnsafePath(
                f"path {clean!r} leads outside the sync folder through a symlink"
            )
        if os.path.islink(os.path.join(self.root, *clean.split("/"))):
            raise UnsafePath(
                f"path {clean!r} is a symlink; refusing to write through it"
            )


def portable_mode(mode: int) -> int:
    """An upstream file's mode as written here: 0755 when any executable bit is set,
    else 0644. Nothing else upstream sends is taken (no world-writable file, no setuid,
    no sticky bit)."""
    return 0o755 if mode & 0o111 else 0o644


# --- local names that cannot be synced ------------------------------------------------

NameProblem = Literal["utf8", "control", "backslash"]


def local_name_problem(rel: str) -> NameProblem | None:
    """Why a local relative path (as os.fsdecode gives it: undecodable bytes as
    surrogates) cannot be a workspace path, or None."""
    if rel.isascii():
        if "\\" in rel:
            return "backslash"
        return "control" if any(ord(c) < 32 or c == "\x7f" for c in rel) else None
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return "utf8"
    if any(ord(c) < 32 or c == "\x7f" for c in rel):
        return "control"
    return "backslash" if "\\" in rel else None


def display_path(rel: str) -> str:
    """A local path as valid UTF-8 to show: bytes that are not UTF-8 as \\xNN, control
    characters as \\n, \\t, \\xNN."""
    if rel.isascii() and not any(ord(c) < 32 or c == "\x7f" for c in rel):
        return rel
    text = rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(
        c
        if ord(c) >= 32 and c != "\x7f"
        else c.encode("unicode_escape").decode("ascii")
        for c in text
    )


def local_failure_reason(code: str, size: int = 0, limit: int = 0) -> str:
    """The reason shown for a local file that is not synced."""
    match code:
        case "utf8":
            return "the name is not valid UTF-8, so it cannot be synced; rename it"
        case "control":
            return (
                "the name has a line break or another control character, so it cannot "
                "be synced; rename it"
            )
        case "backslash":
            return (
                "the name has a backslash, which the workspace does not allow in a "
                "name, so it cannot be synced; rename it"
            )
        case "too_large":
            return (
                f"too large ({size / (1 << 20):.1f} MiB, limit {limit / (1 << 20):.0f} "
                "MiB): not synced; it is looked at again when it changes"
            )
    return f"cannot be synced ({code})"


# --- OS errors in words ---------------------------------------------------------------

_ERRNO_WORDS = {
    errno.ENOSPC: "the disk is full (no space left on the device)",
    errno.EDQUOT: "the disk quota is used up",
    errno.EACCES: "permission denied",
    errno.EPERM: "the operation is not permitted",
    errno.EROFS: "the disk is read-only",
    errno.ENAMETOOLONG: "the name is too long for the disk",
    errno.ENOTDIR: "a file is in the way where a folder is needed",
    errno.EISDIR: "a folder is in the way where the file goes",
    errno.EIO: "an input/output error",
    errno.EMFILE: "too many open files",
}


def os_error_reason(e: OSError) -> str:
    """An OSError as the reason a file could not be written, in plain words, with the
    file's name and the system's own message kept for whoever digs further."""
    words = _ERRNO_WORDS.get(e.errno or 0)
    detail = e.strerror or str(e)
    if words is None:
        return detail
    return (
        f"{words} ({detail})"
        if detail and detail.lower() not in words.lower()
        else words
    )


def folder_error_reason(e: OSError) -> str:
    """Why a sync folder cannot be made or read, in plain words, with the path at fault
    (the folder itself or one above it)."""
    if e.errno == errno.EEXIST:  # mkdir -p met a file where one of the folders goes
        e = NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), e.filename)
    reason = os_error_reason(e)
    return (
        f"{reason}, at {os.fsdecode(e.filename)}"
        if isinstance(e.filename, (str, bytes))
        else reason
    )
