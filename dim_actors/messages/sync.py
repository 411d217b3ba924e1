"""The local-sync actors: journal, materializer, watcher, and the sync commands."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from dim_actors.messages.base import Msg


class WatchFolder(Msg, tag="watch_folder"):
    sessionId: str
    localDir: str


class UnwatchFolder(Msg, tag="unwatch_folder"):
    sessionId: str


class FsEvent(Msg, tag="fs_event"):
    """Debounced paths from watchdog, posted to the watcher's own mailbox: files to look
    at, folders that went away (``gone``) and folders to walk (``scanDirs``), all
    relative."""

    sessionId: str
    paths: list[str] = []
    gone: list[str] = []
    scanDirs: list[str] = []


class LocalFile(msgspec.Struct, array_like=True):
    """A local file as the watcher found it: ``hash`` "" when it is gone."""

    path: str
    hash: str
    size: int = 0
    mode: int = 0


class LocalChanges(Msg, tag="local_changes"):
    """Watcher -> journal. ``scan``: a complete listing of the folder (what is not in it
    is gone)."""

    sessionId: str
    changes: list[LocalFile] = []
    scan: bool = False


class WatcherIncident(Msg, tag="watcher_incident"):
    """Something went wrong under the watcher (and what it did about it): handler_error,
    overflow, watch_limit, watch_unchecked, observer_died, root_gone."""

    sessionId: str
    incident: str
    detail: str = ""


class MaterializeItem(msgspec.Struct, omit_defaults=True):
    """One upstream state to put on disk. ``expectedHash``: what the local file must
    still hold ("" absent; None: do not check), else it is left alone and reported
    ``local_changed``. ``conflictCopy``: write the content there instead (the
    ``name.upstream-N.ext`` beside it)."""

    path: str
    iteration: int
    contentHash: str
    size: int = 0
    permissions: int = 0
    isDeletion: bool = False
    content: bytes | None = None
    expectedHash: str | None = None
    renamedFrom: str | None = None
    renamedFromHash: str | None = None
    conflictCopy: str | None = None
    # a local file that already holds contentHash (copied, not fetched)
    sourcePath: str | None = None


class Materialize(Msg, tag="materialize"):
    sessionId: str
    localDir: str
    items: list[MaterializeItem]


Outcome = Literal[
    "written",
    "deleted",
    "unchanged",
    "local_changed",
    "rejected",
    "failed",
    "copied",  # a conflict copy
]


class MaterializedItem(msgspec.Struct, array_like=True):
    path: str
    iteration: int
    outcome: Outcome
    hash: str = ""
    detail: str = ""


class Materialized(Msg, tag="materialized"):
    sessionId: str
    results: list[MaterializedItem]


class ForgetSession(Msg, tag="forget_session"):
    """Materializer: drop what waits for content of this session (its sync stopped)."""

    sessionId: str


# The page's commands the journal answers (the router forwards them as SyncCommand).
SYNC_COMMANDS = frozenset(
    {
        "start_sync",
        "stop_sync",
        "sync_status",
        "sync_statuses",
        "resolve_conflict",
        "sync_pause",
        "sync_resume",
        "sync_defaults",
    }
)
# Sent by the router when the page has joined a session (not a page command: it gets no
# answer).
AUTO_START = "sync_auto_start"


class EchoWrite(msgspec.Struct, array_like=True):
    """A state the materializer leaves on disk: the file at ``path`` (absolute, as the
    watcher joins it) holds ``contentHash`` ("" deleted). ``sig``: its (size, mtime_ns,
    inode) as written, when known, so the watcher recognises it without reading it."""

    path: str
    contentHash: str
    sig: tuple[int, int, int] | None = None


class WritesAhead(Msg, tag="writes_ahead"):
    """Materializer -> watcher, once per batch and before any of it is written: the
    states about to be written, which the watcher keeps in its echo set so their events
    are not sent back."""

    sessionId: str
    writes: list[EchoWrite]


class WritesAbandoned(Msg, tag="writes_abandoned"):
    """Materializer -> watcher: writes told ahead that did not happen (a failure, the
    user's save landed first, the file was gone already): no state may pass for them."""

    sessionId: str
    writes: list[EchoWrite]


class EchoCounts(Msg, tag="echo_counts"):
    """Watcher -> journal: how many events of our own writes in the session's folder it
    suppressed, and how many it failed to (sync_status stats). Sent when they changed:
    at a tick, and before the watcher reports a change (LocalChanges), so the journal's
    figures cover what came before it."""

    sessionId: str
    suppressed: int = 0
    leaked: int = 0

    def stats(self) -> dict[str, int]:
        return {"echoesSuppressed": self.suppressed, "echoesLeaked": self.leaked}


class ScanProgress(Msg, tag="scan_progress"):
    """Watcher -> journal: files listed so far by the first full scan of the session's
    folder (None: no such scan under way). Sent as it moves on, and again at each tick
    while it runs."""

    sessionId: str
    listed: int | None = None


class WatcherFiguresWanted(Msg, tag="watcher_figures_wanted"):
    """Journal -> watcher, when the journal starts: send the echo counts and scan
    progress again (a restarted journal has lost its copies)."""


class SyncCommand(Msg, tag="sync_command"):
    """Router -> journal: one of SYNC_COMMANDS or AUTO_START; answered with
    InvokeResult."""

    reqId: int
    command: str
    args: dict[str, Any] = {}


class SyncTick(Msg, tag="sync_tick"):
    """A sync actor's own timer (delivered straight to it, not through its message log)."""


class JournalRecord(Msg, tag="journal_record"):
    """A change recorded as it is, without sync logic (kept for tools and tests)."""

    sessionId: str
    origin: Literal["local", "upstream"]
    path: str
    contentHash: str | None = None
    isDeletion: bool = False
    baseIteration: int | None = None
