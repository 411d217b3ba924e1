"""The watcher's pure decisions (dim_actors/sync/watcher.py), one row per case: what a tick makes
of the notes watchdog's threads left, when a polled folder is looked at or watched again, and the
warning for a folder that is not watched; and the fault spec the test app reads."""

from __future__ import annotations

import errno

import pytest
from faulty_app import split_faults
from faulty_watcher import WatcherFaults

from dim_actors.sync import watcher
from dim_actors.sync.watcher import NotesPlan, plan_notes, polling_due

LINE = "Inotify queue overflowed"

NOTES = [
    # (case, notes, watched folders, plan)
    ("nothing told", [], ["a", "b"], NotesPlan(set(), [], set())),
    (
        "a handler's overflow: rescanned and re-checked, told by the handler",
        [("a", "overflow")],
        ["a", "b"],
        NotesPlan({"a"}, [], {"a"}),
    ),
    (
        "a handler error: rescanned only",
        [("a", "handler_error")],
        ["a", "b"],
        NotesPlan({"a"}, [], set()),
    ),
    (
        "an overflow in watchdog's log: every folder, each told once",
        [(None, LINE)],
        ["a", "b"],
        NotesPlan({"a", "b"}, [("a", LINE), ("b", LINE)], {"a", "b"}),
    ),
    (
        "two log lines: still told once per folder",
        [(None, LINE), (None, "Unable to rebuild")],
        ["a"],
        NotesPlan({"a"}, [("a", LINE)], {"a"}),
    ),
    (
        "a log line after the handler's overflow: not told again for that folder",
        [("a", "overflow"), (None, LINE)],
        ["a", "b"],
        NotesPlan({"a", "b"}, [("b", LINE)], {"a", "b"}),
    ),
    (
        "the handler's overflow after a log line: that folder was told already",
        [(None, LINE), ("a", "overflow")],
        ["a"],
        NotesPlan({"a"}, [("a", LINE)], {"a"}),
    ),
    (
        "a note of a folder unwatched since: rescanned if watched (the tick checks)",
        [("gone", "handler_error")],
        ["a"],
        NotesPlan({"gone"}, [], set()),
    ),
    (
        "a log line with no folder watched: nothing",
        [(None, LINE)],
        [],
        NotesPlan(set(), [], set()),
    ),
]


@pytest.mark.parametrize(
    ("case", "notes", "watched", "plan"), NOTES, ids=[r[0] for r in NOTES]
)
def test_plan_notes(case, notes, watched, plan):
    assert plan_notes(notes, watched) == plan


R, P = watcher.RETRY_WATCH_S, watcher.POLL_S
DUE = [
    # (case, polling, now, scheduled_at, last_poll, due)
    ("watched: never", False, 1000.0, 0.0, 0.0, set()),
    ("polled, nothing due yet", True, 100.0, 100.0 - R / 2, 100.0 - P / 2, set()),
    ("polled, a poll due", True, 100.0, 100.0 - R / 2, 100.0 - P, {"poll"}),
    ("polled, a new try due", True, 100.0, 100.0 - R, 100.0, {"retry_watch"}),
    ("polled, both due", True, 100.0, 0.0, 0.0, {"retry_watch", "poll"}),
]


@pytest.mark.parametrize(
    ("case", "polling", "now", "scheduled_at", "last_poll", "due"),
    DUE,
    ids=[r[0] for r in DUE],
)
def test_polling_due(case, polling, now, scheduled_at, last_poll, due):
    assert polling_due(polling, now, scheduled_at, last_poll) == due


WARNINGS = [
    # (case, kwargs, words the warning holds, whether it gives the sysctl that fixes it)
    (
        "folders found unwatched",
        {"folders": ["", "a/b"], "limit": 8192},
        [
            "2 folders of /s could not be watched for changes (., a/b)",
            "max_user_watches) is most likely reached",
            "raise the limit (now 8192): sudo sysctl fs.inotify.max_user_watches=524288",
        ],
        True,
    ),
    (
        "many folders: five named",
        {"folders": [f"d{i}" for i in range(7)]},
        ["7 folders", "(d0, d1, d2, d3, d4, ...)", "raise the limit: sudo"],
        True,
    ),
    (
        "ENOSPC: the watch limit, twice its value when that is higher",
        {"error": OSError(errno.ENOSPC, "No space"), "limit": 600000},
        ["/s could not be watched for changes: ", "max_user_watches=1200000"],
        True,
    ),
    (
        "EMFILE: the instance limit",
        {"error": OSError(errno.EMFILE, "Too many"), "limit": 128},
        ["(fs.inotify.max_user_instances)", "fs.inotify.max_user_instances=1024"],
        True,
    ),
    (
        "another error: its words, no sysctl",
        {"error": OSError(errno.EACCES, "Permission denied")},
        ["/s could not be watched for changes: Permission denied."],
        False,
    ),
]


@pytest.mark.parametrize(
    ("case", "kwargs", "words", "sysctl"), WARNINGS, ids=[r[0] for r in WARNINGS]
)
def test_unwatched_warning(case, kwargs, words, sysctl):
    text = watcher.unwatched_warning("/s", **kwargs)
    for w in words:
        assert w in text, (w, text)
    assert ("sudo sysctl" in text) == sysctl
    assert f"every {watcher.POLL_S:g} s" in text


SPECS = [
    # (case, argv, faults, the rest)
    ("none", ["--gateway", "ws://x"], WatcherFaults(), ["--gateway", "ws://x"]),
    (
        "every fault, anywhere in argv",
        [
            "--no-browser",
            "--watcher-faults",
            "handler_error=c,overflow=o,unwatched=u,echo_miss=l",
            "--gateway",
            "ws://x",
        ],
        WatcherFaults(handler_error="c", overflow="o", unwatched="u", echo_miss="l"),
        ["--no-browser", "--gateway", "ws://x"],
    ),
    (
        "one fault, spaces around",
        ["--watcher-faults", " unwatched = sub "],
        WatcherFaults(unwatched="sub"),
        [],
    ),
]


@pytest.mark.parametrize(
    ("case", "argv", "faults", "rest"), SPECS, ids=[r[0] for r in SPECS]
)
def test_split_faults(case, argv, faults, rest):
    assert split_faults(argv) == (faults, rest)


def test_an_unknown_fault_is_an_error():
    with pytest.raises(TypeError):
        WatcherFaults.parse("handler_eror=x")
