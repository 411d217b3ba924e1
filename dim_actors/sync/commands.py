"""The page's sync commands: their arguments parsed and checked, and what start_sync is
to do with a folder. Each function is given the records (and looks at the disk where a
check must) and returns what to do, or raises a CommandError whose code and message go
back to the page as they are. The journal carries the result out: it is the one that
talks to the other actors and the database."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dim_actors.messages import AUTO_START
from dim_actors.sync.defaults import default_folder
from dim_actors.sync.folders import make_user_folders
from dim_actors.sync.paths import folder_error_reason
from dim_actors.sync.state import Sync

USER_PAUSE = "paused by the user"
# the start of `error` while sync is paused for want of space
LOW_SPACE = "not enough free space"


class CommandError(Exception):
    """A command refused: `code` and `message` are the page's error."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


# --- the commands, parsed -------------------------------------------------------------


@dataclass(frozen=True)
class PauseAll:
    """sync_pause / sync_resume: every sync at once (the tray's menu)."""

    pause: bool


@dataclass(frozen=True)
class AutoStart:
    """The page joined a session (sync_auto_start decides whether it syncs): never
    answered."""

    session_id: str
    name: str | None


@dataclass(frozen=True)
class StartSync:
    session_id: str
    local_dir: (
        object  # None: the default folder; anything else is checked by plan_start
    )
    confirm: bool
    name: str | None


@dataclass(frozen=True)
class StopSync:
    session_id: str


@dataclass(frozen=True)
class SyncStatus:
    session_id: str


@dataclass(frozen=True)
class AllStatuses:
    """Every synced session's status at once: what the page badges when it loads."""


@dataclass(frozen=True)
class SyncDefaults:
    session_id: str
    name: str | None


@dataclass(frozen=True)
class ResolveConflict:
    """Its path and resolution are checked against the session's conflicts
    (reconcile.resolve_refusal), after the session itself."""

    session_id: str
    path: object
    resolution: object


Command = (
    PauseAll
    | AutoStart
    | StartSync
    | StopSync
    | SyncStatus
    | AllStatuses
    | SyncDefaults
    | ResolveConflict
)


def parse(command: str, args: object) -> Command | None:
    """A SyncCommand's name and arguments as a Command (None: an auto-start with no
    session, ignored)."""
    a = args if isinstance(args, dict) else {}
    # from the router
    name = a.get("sessionName") if isinstance(a.get("sessionName"), str) else None
    sid = a.get("sessionId")
    if command == AUTO_START:
        return AutoStart(sid, name) if isinstance(sid, str) and sid else None
    if command in ("sync_pause", "sync_resume"):
        return PauseAll(command == "sync_pause")
    if command == "sync_statuses":
        return AllStatuses()
    if not isinstance(sid, str) or not sid:
        raise CommandError(
            "INVALID_ARGUMENTS", f"{command}: sessionId must be a non-empty string"
        )
    match command:
        case "start_sync":
            return StartSync(sid, a.get("localDir"), a.get("confirm") is True, name)
        case "stop_sync":
            return StopSync(sid)
        case "sync_status":
            return SyncStatus(sid)
        case "sync_defaults":
            return SyncDefaults(sid, name)
        case "resolve_conflict":
            return ResolveConflict(sid, a.get("path"), a.get("resolution"))
    raise CommandError("UNKNOWN_COMMAND", f"unknown sync command {command!r}")


def synced(syncs: Mapping[str, Sync], sid: str) -> Sync:
    s = syncs.get(sid)
    if s is None:
        raise CommandError(
            "NOT_FOUND", f"session {sid} is not synced to a folder (start_sync first)"
        )
    return s


# --- default folders (the sync_root and sync_auto_start settings) ---------------------


def folder_for(
    sync_root: str | None, syncs: Mapping[str, Sync], sid: str, name: str | None
) -> str | None:
    """<sync_root>/<session name or id>, unless another session's sync has that folder
    already."""
    if not sync_root:
        return None
    taken = {o.local_dir for o in syncs.values() if o.sid != sid}
    return str(default_folder(sync_root, sid, name, taken))


def start_folder(
    sync_root: str | None, syncs: Mapping[str, Sync], sid: str, name: str | None
) -> str:
    """start_sync without localDir: the session's earlier folder, else the one under
    sync_root."""
    s = syncs.get(sid)
    if s is not None:
        return s.local_dir
    folder = folder_for(sync_root, syncs, sid, name)
    if folder is None:
        raise CommandError(
            "INVALID_ARGUMENTS",
            "start_sync: localDir is needed: no sync_root is set in the "
            "settings to make a default folder under",
        )
    return folder


# --- start_sync -----------------------------------------------------------------------

StartKind = Literal[
    # already syncing into that folder: the watch and the link are asked for again
    "again",
    "new",  # a new folder (or a first sync): nothing known of a local copy holds
    # the same folder after it was deleted or emptied: upstream's files come back
    "restore",
    "resume",  # the same folder, stopped or paused: it goes on where it was
]


@dataclass(frozen=True)
class StartPlan:
    kind: StartKind
    folder: str  # the folder's real path


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def _unusable(path: Path, e: OSError) -> CommandError:
    return CommandError(
        "FOLDER_UNUSABLE",
        f"start_sync: cannot sync into {path}: {folder_error_reason(e)}",
    )


def plan_start(
    sid: str, local_dir: object, confirm: bool, home: Path, syncs: Mapping[str, Sync]
) -> StartPlan:
    """start_sync's checks, in order, and what it is to do. A folder to sync into is
    made (with its missing parents) here, as the last check: one that cannot be made is
    refused like the rest."""
    if not isinstance(local_dir, str) or not local_dir.strip():
        raise CommandError(
            "INVALID_ARGUMENTS", "start_sync: localDir must be a folder path"
        )
    path = Path(os.path.expanduser(local_dir.strip()))
    if not path.is_absolute():
        raise CommandError(
            "INVALID_ARGUMENTS",
            f"start_sync: localDir must be an absolute path, not {local_dir!r}",
        )
    path = Path(os.path.realpath(path))
    try:
        not_a_folder = path.exists() and not path.is_dir()
    except OSError as e:  # a folder above it we may not look into
        raise _unusable(path, e) from e
    if not_a_folder:
        raise CommandError("INVALID_ARGUMENTS", f"start_sync: {path} is not a folder")
    own = Path(os.path.realpath(home))
    if _overlaps(path, own):
        raise CommandError(
            "FOLDER_IN_USE",
            f"start_sync: {path} overlaps dim-desktop's own data ({own})",
        )
    for other in syncs.values():
        if (
            other.sid != sid
            and other.state != "stopped"
            and _overlaps(path, other.root)
        ):
            raise CommandError(
                "FOLDER_IN_USE",
                f"start_sync: {path} overlaps the sync folder of session "
                f"{other.sid} ({other.root})",
            )
    s = syncs.get(sid)
    same_folder = s is not None and s.local_dir == str(path)
    if s is not None and s.state == "active" and same_folder:
        return StartPlan("again", str(path))
    if s is not None and s.state in ("active", "error") and not same_folder:
        raise CommandError(
            "ALREADY_SYNCING",
            f"session {sid} already syncs to {s.local_dir}; stop_sync first",
        )
    try:
        if (
            path.is_dir()
            and any(True for _ in os.scandir(path))
            and not same_folder
            and not confirm
        ):
            raise CommandError(
                "FOLDER_NOT_EMPTY",
                f"{path} is not empty and is not an earlier sync of this session. If you "
                "sync into it anyway, the files already there are kept and compared with "
                "the workspace's; where both have a file that differs, both versions are "
                "kept side by side. To sync into it anyway, start again with confirm set.",
            )
        make_user_folders(path)
    except OSError as e:
        # a path under a file, a read-only disk, a folder we may not read
        raise _unusable(path, e) from e
    if s is None or not same_folder:
        return StartPlan("new", str(path))
    if (
        s.state == "paused"
        and s.error != USER_PAUSE
        and not (s.error or "").startswith(LOW_SPACE)
    ):
        return StartPlan("restore", str(path))
    return StartPlan("resume", str(path))
