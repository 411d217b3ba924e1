"""The page's sync commands (dim_actors/sync/commands.py), by tables: every accepted form and every
refusal of their arguments, the default folders, and start_sync's folder checks on real folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dim_actors.messages import AUTO_START
from dim_actors.sync import commands
from dim_actors.sync.commands import (
    LOW_SPACE,
    USER_PAUSE,
    AllStatuses,
    AutoStart,
    CommandError,
    PauseAll,
    ResolveConflict,
    StartSync,
    StopSync,
    SyncDefaults,
    SyncStatus,
)
from dim_actors.sync.state import Sync

# --- parse ----------------------------------------------------------------------------------------

PARSED = [
    ("pause every sync", "sync_pause", {}, PauseAll(True)),
    ("resume them, whatever the arguments", "sync_resume", None, PauseAll(False)),
    (
        "an auto-start, with the router's session name",
        AUTO_START,
        {"sessionId": "s1", "sessionName": "Fix tests"},
        AutoStart("s1", "Fix tests"),
    ),
    ("an auto-start with no session is ignored", AUTO_START, {}, None),
    ("an auto-start with an empty session", AUTO_START, {"sessionId": ""}, None),
    (
        "an auto-start with a session that is no string",
        AUTO_START,
        {"sessionId": 1},
        None,
    ),
    (
        "start_sync into the default folder",
        "start_sync",
        {"sessionId": "s1"},
        StartSync("s1", None, False, None),
    ),
    (
        "start_sync into a folder, confirmed",
        "start_sync",
        {"sessionId": "s1", "localDir": "/x", "confirm": True, "sessionName": "n"},
        StartSync("s1", "/x", True, "n"),
    ),
    (
        "only confirm: true confirms",
        "start_sync",
        {"sessionId": "s1", "localDir": "/x", "confirm": "yes"},
        StartSync("s1", "/x", False, None),
    ),
    (
        "a session name that is no string is left out",
        "start_sync",
        {"sessionId": "s1", "sessionName": 5},
        StartSync("s1", None, False, None),
    ),
    (
        "a localDir of any type is kept for plan_start to judge",
        "start_sync",
        {"sessionId": "s1", "localDir": 3},
        StartSync("s1", 3, False, None),
    ),
    ("stop_sync", "stop_sync", {"sessionId": "s1"}, StopSync("s1")),
    ("sync_status", "sync_status", {"sessionId": "s1"}, SyncStatus("s1")),
    ("every status, no session needed", "sync_statuses", {}, AllStatuses()),
    (
        "sync_defaults",
        "sync_defaults",
        {"sessionId": "s1", "sessionName": "n"},
        SyncDefaults("s1", "n"),
    ),
    (
        "resolve_conflict keeps its path and resolution as given",
        "resolve_conflict",
        {"sessionId": "s1", "path": "a.txt", "resolution": "merged"},
        ResolveConflict("s1", "a.txt", "merged"),
    ),
    (
        "resolve_conflict with neither",
        "resolve_conflict",
        {"sessionId": "s1"},
        ResolveConflict("s1", None, None),
    ),
]


@pytest.mark.parametrize(
    "command,args,want", [r[1:] for r in PARSED], ids=[r[0] for r in PARSED]
)
def test_parse_accepts(command, args, want):
    assert commands.parse(command, args) == want


REFUSED = [
    (
        "no session",
        "stop_sync",
        {},
        "INVALID_ARGUMENTS",
        "stop_sync: sessionId must be a non-empty string",
    ),
    (
        "an empty session",
        "start_sync",
        {"sessionId": ""},
        "INVALID_ARGUMENTS",
        "start_sync: sessionId must be a non-empty string",
    ),
    (
        "a session that is no string",
        "sync_status",
        {"sessionId": ["s1"]},
        "INVALID_ARGUMENTS",
        "sync_status: sessionId must be a non-empty string",
    ),
    (
        "arguments that are no object",
        "resolve_conflict",
        ["s1"],
        "INVALID_ARGUMENTS",
        "resolve_conflict: sessionId must be a non-empty string",
    ),
    (
        "an unknown command",
        "sync_everything",
        {"sessionId": "s1"},
        "UNKNOWN_COMMAND",
        "unknown sync command 'sync_everything'",
    ),
    (
        "an unknown command with no session: the session is checked first",
        "sync_everything",
        {},
        "INVALID_ARGUMENTS",
        "sync_everything: sessionId must be a non-empty string",
    ),
]


@pytest.mark.parametrize(
    "command,args,code,message", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_parse_refuses(command, args, code, message):
    with pytest.raises(CommandError) as got:
        commands.parse(command, args)
    assert (got.value.code, got.value.message) == (code, message)


def test_a_session_not_synced_is_not_found():
    syncs = {"s1": Sync("s1", "/a", "r", "active")}
    assert commands.synced(syncs, "s1") is syncs["s1"]
    with pytest.raises(CommandError) as got:
        commands.synced(syncs, "s2")
    assert got.value.code == "NOT_FOUND"
    assert (
        got.value.message == "session s2 is not synced to a folder (start_sync first)"
    )


# --- default folders ------------------------------------------------------------------------------

FOLDERS = [
    # (what, sync_root, other syncs {sid: folder}, sid, name, folder_for, start_folder)
    ("no sync_root: no default", None, {}, "s1", "n", None, "INVALID_ARGUMENTS"),
    ("an empty sync_root: no default", "", {}, "s1", "n", None, "INVALID_ARGUMENTS"),
    ("the session's name", "/r", {}, "s1", "Fix tests", "/r/Fix tests", "/r/Fix tests"),
    (
        "no name: the id",
        "/r",
        {},
        "abcdef123456",
        None,
        "/r/abcdef123456",
        "/r/abcdef123456",
    ),
    (
        "the name's folder is another session's: the id's start is added",
        "/r",
        {"s2": "/r/n"},
        "s1234567890",
        "n",
        "/r/n-s1234567",
        "/r/n-s1234567",
    ),
    (
        "the session's own folder is no obstacle; start_sync takes its earlier folder",
        "/r",
        {"s1": "/elsewhere"},
        "s1",
        "n",
        "/r/n",
        "/elsewhere",
    ),
    (
        "an earlier folder without a sync_root",
        None,
        {"s1": "/elsewhere"},
        "s1",
        "n",
        None,
        "/elsewhere",
    ),
]


@pytest.mark.parametrize(
    "sync_root,others,sid,name,default,start",
    [r[1:] for r in FOLDERS],
    ids=[r[0] for r in FOLDERS],
)
def test_default_folders(sync_root, others, sid, name, default, start):
    syncs = {o: Sync(o, d, "r", "active") for o, d in others.items()}
    assert commands.folder_for(sync_root, syncs, sid, name) == default
    if start == "INVALID_ARGUMENTS":
        with pytest.raises(CommandError) as got:
            commands.start_folder(sync_root, syncs, sid, name)
        assert got.value.code == start
        assert "no sync_root is set" in got.value.message
    else:
        assert commands.start_folder(sync_root, syncs, sid, name) == start


# --- start_sync's folder --------------------------------------------------------------------------
# Under tmp_path: home/ (dim-desktop's own), empty/, full/ (a file in it), file.txt, other/ (another
# session's). `{t}` in a row stands for tmp_path.

START = [
    # (what, localDir, confirm, this session's sync (folder, state, error) or None,
    #  the other session's state, expected kind or error code)
    ("a folder path that is no string", 3, False, None, None, "INVALID_ARGUMENTS"),
    ("a blank folder path", "  ", False, None, None, "INVALID_ARGUMENTS"),
    ("a relative path", "rel/x", False, None, None, "INVALID_ARGUMENTS"),
    ("a file", "{t}/file.txt", False, None, None, "INVALID_ARGUMENTS"),
    ("dim-desktop's own data", "{t}/home/sub", False, None, None, "FOLDER_IN_USE"),
    ("a folder holding dim-desktop's data", "{t}", True, None, None, "FOLDER_IN_USE"),
    ("another session's folder", "{t}/other", False, None, "active", "FOLDER_IN_USE"),
    (
        "inside another session's folder",
        "{t}/other/x",
        False,
        None,
        "paused",
        "FOLDER_IN_USE",
    ),
    ("another session's folder, stopped", "{t}/other/x", False, None, "stopped", "new"),
    ("an empty folder", "{t}/empty", False, None, None, "new"),
    ("a missing folder is made", "{t}/new/deeper", False, None, None, "new"),
    ("a folder under a file", "{t}/file.txt/x", False, None, None, "FOLDER_UNUSABLE"),
    ("a non-empty folder", "{t}/full", False, None, None, "FOLDER_NOT_EMPTY"),
    ("a non-empty folder, confirmed", "{t}/full", True, None, None, "new"),
    (
        "the folder it syncs to now",
        "{t}/full",
        False,
        ("{t}/full", "active", None),
        None,
        "again",
    ),
    (
        "another folder while syncing",
        "{t}/empty",
        False,
        ("{t}/full", "active", None),
        None,
        "ALREADY_SYNCING",
    ),
    (
        "another folder while in error",
        "{t}/empty",
        True,
        ("{t}/full", "error", "x"),
        None,
        "ALREADY_SYNCING",
    ),
    (
        "another folder once stopped: a new folder",
        "{t}/empty",
        False,
        ("{t}/full", "stopped", None),
        None,
        "new",
    ),
    (
        "its own earlier folder, not empty, needs no confirm",
        "{t}/full",
        False,
        ("{t}/full", "stopped", None),
        None,
        "resume",
    ),
    (
        "paused by the user",
        "{t}/full",
        False,
        ("{t}/full", "paused", USER_PAUSE),
        None,
        "resume",
    ),
    (
        "paused for want of space",
        "{t}/full",
        False,
        ("{t}/full", "paused", f"{LOW_SPACE}: 1 MiB free"),
        None,
        "resume",
    ),
    (
        "paused as the folder was emptied: restored",
        "{t}/full",
        False,
        ("{t}/full", "paused", "the sync folder was emptied"),
        None,
        "restore",
    ),
    (
        "paused as the folder was deleted: made again and restored",
        "{t}/gone",
        False,
        ("{t}/gone", "paused", "the sync folder was deleted"),
        None,
        "restore",
    ),
]


@pytest.mark.parametrize(
    "local_dir,confirm,mine,other,want",
    [r[1:] for r in START],
    ids=[r[0] for r in START],
)
def test_plan_start(tmp_path, local_dir, confirm, mine, other, want):
    t = str(tmp_path)
    for d in ("home", "empty", "full", "other"):
        (tmp_path / d).mkdir()
    (tmp_path / "full" / "a.txt").write_text("a")
    (tmp_path / "file.txt").write_text("f")
    syncs = {}
    if mine is not None:
        folder, state, error = mine
        syncs["s1"] = Sync("s1", folder.format(t=t), "r1", state, error)
    if other is not None:
        syncs["s2"] = Sync("s2", f"{t}/other", "r2", other)
    if isinstance(local_dir, str):
        local_dir = local_dir.format(t=t)
    if want.isupper():
        with pytest.raises(CommandError) as got:
            commands.plan_start("s1", local_dir, confirm, tmp_path / "home", syncs)
        assert got.value.code == want
        assert got.value.message
        return
    plan = commands.plan_start("s1", local_dir, confirm, tmp_path / "home", syncs)
    assert plan.kind == want
    assert plan.folder == local_dir
    assert Path(local_dir).is_dir()


def test_plan_start_takes_the_real_path_of_a_link_and_expands_the_home(
    tmp_path, monkeypatch
):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    plan = commands.plan_start("s1", f"{tmp_path}/link", False, tmp_path / "home", {})
    assert plan.folder == os.path.realpath(tmp_path / "real")
    monkeypatch.setenv("HOME", str(tmp_path))
    plan = commands.plan_start("s1", " ~/made ", False, tmp_path / "home", {})
    assert (plan.kind, plan.folder) == ("new", os.path.realpath(tmp_path / "made"))
    assert (tmp_path / "made").is_dir()
