"""The pure rules of sync about names, modes, errors and space
(dim_actors/sync/paths.py, journal.py), by tables."""

from __future__ import annotations

import errno
import logging
import os

import pytest

from dim_actors.messages import LocalFile
from dim_actors.sync.ignore import is_noise
from dim_actors.sync.paths import (
    UnsafePath,
    check_relative,
    display_path,
    folder_error_reason,
    is_git_name,
    local_failure_reason,
    local_name_problem,
    name_too_long,
    os_error_reason,
    portable_mode,
)
from dim_actors.sync.reconcile import failure_log_level, free_space_floor, retry_delay
from dim_actors.sync.watcher import _outgoing, _unwire_rel, _wire_rel

MiB = 1 << 20


@pytest.mark.parametrize(
    "name, git",
    [
        (".git", True),
        (".GIT", True),
        (".Git", True),
        (".gIT", True),
        (".git.", True),
        (".git ", True),
        (".git. . ", True),
        (".GIT..", True),  # NTFS drops trailing dots and spaces
        ("git~1", True),
        ("GIT~1", True),
        ("git~1.", True),  # NTFS 8.3 short name
        (".g\u200cit", True),
        (".git\u200d", True),
        ("\ufeff.git", True),
        (".g\u206ait", True),  # HFS+ ignorables
        (".git::$INDEX_ALLOCATION", True),
        (".git:stream", True),  # NTFS alternate data streams
        (".github", False),
        (".gitignore", False),
        (".gitkeep", False),
        ("git", False),
        (".gi", False),
        ("git~2", False),
        ("my.git", False),
        (".git-x", False),
        (".gitx.", False),
        ("", False),
    ],
)
def test_is_git_name(name, git):
    assert is_git_name(name) is git


@pytest.mark.parametrize(
    "path",
    [
        ".GIT/hooks/pre-commit",
        "a/.Git./config",
        ".git /x",
        "GIT~1/config",
        ".g\u200cit/hooks/x",
        "x/.git::$INDEX_ALLOCATION/y",
        ".git",
    ],
)
def test_check_relative_refuses_every_git_spelling(path):
    with pytest.raises(UnsafePath, match=r"\.git"):
        check_relative(path)


@pytest.mark.parametrize(
    "path", [".github/workflows/ci.yml", ".gitignore", "src/git~2", "docs/.gitkeep"]
)
def test_check_relative_keeps_names_that_only_look_alike(path):
    assert check_relative(path) == path


@pytest.mark.parametrize(
    "rel, noise",
    [
        (".GIT/config", True),
        ("a/.git./x", True),
        (".gitignore", False),
        (".github/x.yml", False),
    ],
)
def test_local_git_spellings_are_never_synced(rel, noise):
    assert is_noise(rel) is noise


@pytest.mark.parametrize(
    "mode, portable",
    [
        (0o644, 0o644),
        (0o666, 0o644),
        (0o777, 0o755),
        (0o755, 0o755),
        (0o600, 0o644),
        (0o700, 0o755),
        (0o4755, 0o755),
        (0o2644, 0o644),
        (0o1777, 0o755),
        (0o100, 0o755),
        (0o010, 0o755),
        (0o001, 0o755),
        (0, 0o644),
        (0o100644, 0o644),
        (0o100755, 0o755),
    ],
)
def test_portable_mode(mode, portable):
    assert portable_mode(mode) == portable


@pytest.mark.parametrize(
    "rel, problem",
    [
        ("plain.txt", None),
        ("dir/café.txt", None),
        ("a b/ü.md", None),
        (os.fsdecode(b"caf\xe9.txt"), "utf8"),
        (os.fsdecode(b"d\xff/x"), "utf8"),
        ("line\nbreak.txt", "control"),
        ("tab\there", "control"),
        ("del\x7f", "control"),
        ("é\n", "control"),
        ("back\\slash.txt", "backslash"),
        ("é\\x", "backslash"),
    ],
)
def test_local_name_problem(rel, problem):
    assert local_name_problem(rel) == problem


@pytest.mark.parametrize(
    "rel, shown",
    [
        ("plain.txt", "plain.txt"),
        (os.fsdecode(b"caf\xe9.txt"), "caf\\xe9.txt"),
        ("a\nb", "a\\nb"),
        ("é\tx", "é\\tx"),
        ("back\\slash", "back\\slash"),
    ],
)
def test_display_path_is_valid_utf8(rel, shown):
    assert display_path(rel) == shown
    display_path(rel).encode("utf-8")


@pytest.mark.parametrize(
    "code, words",
    [
        ("utf8", "not valid UTF-8"),
        ("control", "line break"),
        ("backslash", "backslash"),
    ],
)
def test_local_failure_reason_names_the_problem_and_the_fix(code, words):
    reason = local_failure_reason(code)
    assert words in reason and "rename it" in reason


def test_local_failure_reason_too_large_gives_size_and_limit():
    assert local_failure_reason("too_large", 2048 * MiB, 100 * MiB).startswith(
        "too large (2048.0 MiB, limit 100 MiB)"
    )


@pytest.mark.parametrize(
    "rel, long",
    [
        ("a" * 255, False),
        ("a" * 256, True),
        ("d/" + "a" * 256 + "/x", True),
        ("é" * 127, False),
        ("é" * 128, True),  # 256 bytes in UTF-8
    ],
)
def test_name_too_long(rel, long):
    reason = name_too_long(rel)
    assert (reason is not None) is long
    if long:
        assert "too long" in reason and "at most 255" in reason


@pytest.mark.parametrize(
    "err, words",
    [
        (errno.ENOSPC, "the disk is full"),
        (errno.EACCES, "permission denied"),
        (errno.EROFS, "read-only"),
        (errno.ENAMETOOLONG, "too long"),
        (errno.EDQUOT, "quota"),
        (errno.ENOTDIR, "a file is in the way"),
        (errno.EXDEV, "cross-device"),
    ],
)
def test_os_error_reason(err, words):
    assert (
        words in os_error_reason(OSError(err, os.strerror(err), "/some/file")).lower()
    )


@pytest.mark.parametrize(
    "err, filename, reason",
    [
        (
            errno.EEXIST,
            "/etc/passwd",
            "a file is in the way where a folder is needed (Not a directory), at /etc/passwd",
        ),
        (
            errno.EROFS,
            "/mnt/ro/sync",
            "the disk is read-only (Read-only file system), at /mnt/ro/sync",
        ),
        (errno.EACCES, None, "permission denied"),
    ],
)
def test_folder_error_reason(err, filename, reason):
    assert folder_error_reason(OSError(err, os.strerror(err), filename)) == reason


@pytest.mark.parametrize(
    "total, setting, floor",
    [
        (100 * 1024 * MiB, None, 64 * MiB),
        (1024 * MiB, None, 1024 * MiB // 100),
        (4 * MiB, None, 4 * MiB // 100),
        (100 * 1024 * MiB, 10, 10 * MiB),
        (4 * MiB, 0, 0),
        (4 * MiB, -3, 0),
    ],
)
def test_free_space_floor(total, setting, floor):
    assert free_space_floor(total, setting) == floor


@pytest.mark.parametrize(
    "reason, last, level",
    [
        ("the disk is full", None, logging.WARNING),  # new
        (
            "the disk is full",
            "the disk is full",
            logging.DEBUG,
        ),  # a retry failing the same way
        (
            "permission denied",
            "the disk is full",
            logging.WARNING,
        ),  # the reason changed
    ],
)
def test_failure_log_level(reason, last, level):
    assert failure_log_level(reason, last) == level


@pytest.mark.parametrize(
    "retries, delay", [(0, 2), (1, 4), (2, 8), (4, 32), (5, 60), (50, 60)]
)
def test_retry_delay(retries, delay):
    assert retry_delay(retries) == delay


@pytest.mark.parametrize(
    "rel", ["plain", "é/ü", os.fsdecode(b"caf\xe9"), os.fsdecode(b"d\xff/\xfe x")]
)
def test_watcher_paths_cross_messages_as_utf8_and_come_back(rel):
    wired = _wire_rel(rel)
    wired.encode("utf-8")
    assert _unwire_rel(wired) == rel


@pytest.mark.parametrize(
    "lf, out",
    [
        (
            LocalFile("ok.txt", "ab" * 32, 3, 0o644),
            LocalFile("ok.txt", "ab" * 32, 3, 0o644),
        ),
        (
            LocalFile(os.fsdecode(b"caf\xe9"), "ab" * 32, 3, 0o644),
            LocalFile("caf\\xe9", "!utf8", 3, 0o644),
        ),
        (LocalFile(os.fsdecode(b"caf\xe9"), "", 0, 0), LocalFile("caf\\xe9", "", 0, 0)),
        (
            LocalFile("a\nb", "!too_large", 9, 0o644),
            LocalFile("a\\nb", "!too_large", 9, 0o644),
        ),
        (
            LocalFile("a\\b", "ab" * 32, 1, 0o644),
            LocalFile("a\\b", "!backslash", 1, 0o644),
        ),
    ],
)
def test_watcher_reports_unsyncable_names_as_failures(lf, out):
    assert _outgoing(lf) == out
