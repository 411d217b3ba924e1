"""The sync decisions, as pure functions: given a change (an upstream notification, a
local file the watcher found, a write-back's or a write's result) and what is known of
its path, what it means. No I/O, no actor, no SQLite: the journal gathers the facts
(reading the disk where it must) and carries the decision out. docs/sync.md describes
the rules; tests/test_sync_reconcile.py holds a row for every branch.

A path's record (state.FileRec) is the last agreed state: the upstream iteration and
hash seen, and the local file's hash. Its local changes not yet accepted upstream are
its entries."""

from __future__ import annotations

import logging
from collections.abc import Collection, Container
from dataclasses import dataclass
from typing import Literal

from dim_actors.messages import LocalFile
from dim_actors.sync.paths import (
    UnsafePath,
    check_relative,
    display_path,
    local_failure_reason,
    local_name_problem,
    name_too_long,
)
from dim_actors.sync.state import Conflict, Entry, Failure, FileRec
from dim_actors.wire import replication as wire

# --- an upstream notification ---------------------------------------------------------

PathKind = Literal["ok", "unsafe", "too_long"]


@dataclass(frozen=True)
class UpstreamPath:
    """Whether an upstream path can be a file here at all, before anything else is
    looked at."""

    kind: PathKind
    path: str  # the clean relative path ("" when unsafe)
    reason: str = ""


def upstream_path(n: wire.Notification) -> UpstreamPath:
    """unsafe: refused (recorded, never written); too_long: a name this disk cannot hold
    (only a newer state with a shorter name can change that)."""
    try:
        path = check_relative(n.filepath)
    except UnsafePath as e:
        return UpstreamPath("unsafe", "", str(e))
    too_long = name_too_long(path)
    if too_long is not None:
        return UpstreamPath("too_long", path, too_long)
    return UpstreamPath("ok", path)


@dataclass(frozen=True)
class PathFacts:
    """What the journal knows of one path when an upstream state of it comes."""

    file: FileRec
    entries: tuple[Entry, ...] = ()  # its local changes not yet accepted, oldest first
    conflict: Conflict | None = None
    copy_on_disk: bool = False  # the conflict's upstream copy is there beside the file
    writing: bool = False  # a materialization of the path is in flight
    read_only: bool = False  # the link is the read-only mirror


UpstreamKind = Literal[
    "invalid_hash",  # a state with no valid content hash: rejected, acknowledged
    "seen",  # an iteration already handled: acknowledged, nothing else
    "queue",  # a write of the path is in flight: this state waits behind it
    # the mirror offering again what is here as it stands: the iteration moves on
    "mirror_known",
    # upstream now holds exactly the local content of a conflict: it is settled
    "conflict_gone",
    # both sides changed: the local file stays, upstream's version goes beside it
    "conflict",
    "take",  # the local file already is that state: recorded as applied
    # our own write-back coming back: the iteration moves on, its result settles the
    # rest
    "own_echo",
    # offered again: the very state the unsent local change is based on
    "base_unchanged",
    "materialize",  # clean locally: the materializer writes it
]


@dataclass(frozen=True)
class UpstreamDecision:
    kind: UpstreamKind
    target: str = ""  # the upstream hash ("" a deletion)
    # the rename's other half: this (clean) path is deleted at n.renamedFromIteration,
    # after this
    renamed_from: str | None = None


def upstream_change(n: wire.Notification, facts: PathFacts) -> UpstreamDecision:
    """An upstream state of a path that passed upstream_path (and is confined to the
    folder)."""
    if not n.isDeletion and not wire.valid_hash(n.contentHash):
        return UpstreamDecision("invalid_hash")
    f, c, mine = facts.file, facts.conflict, facts.entries
    if n.iteration < f.iteration or (
        n.iteration == f.iteration
        and (f.local_hash == f.upstream_hash or c is not None)
    ):
        # seen already (a catch-up repeats what a crash left unacknowledged). The same
        # iteration again while the local file is not that state, outside a conflict
        # (after a restore: the file is missing, or edited with the edit waiting), is
        # looked at below.
        return UpstreamDecision("seen")
    if facts.writing:
        return UpstreamDecision("queue")
    target = "" if n.isDeletion else n.contentHash
    renamed_from = None
    if n.renamedFrom:
        try:
            renamed_from = check_relative(n.renamedFrom)
        except UnsafePath:
            renamed_from = None
    same_conflict = (
        c is not None
        and (c.iteration, c.upstream_hash) == (n.iteration, target)
        and (not target or bool(c.copy) and facts.copy_on_disk)
    )
    kind: UpstreamKind
    if facts.read_only and (
        same_conflict or f.local_hash == target == f.upstream_hash and not mine
    ):
        # The mirror offers everything again at each connect: what is already here as it
        # stands (the file, or a conflict and its copy) changes nothing, and is not
        # recorded again.
        kind = "mirror_known"
    elif c is not None:
        kind = "conflict_gone" if f.local_hash == target else "conflict"
    elif f.local_hash == target:
        kind = "take"
    elif any(e.hash == target and e.state == "sent" for e in mine):
        kind = "own_echo"
    elif (
        mine
        and target == f.upstream_hash
        and all(e.state != "held" and e.base == n.iteration for e in mine)
    ):
        # Upstream did not move (after a restore, a full resync, a catch-up): no
        # conflict, the change goes as it is (the gateway judges it against the head
        # anyway).
        kind = "base_unchanged"
    elif mine:
        kind = "conflict"
    else:
        kind = "materialize"
    return UpstreamDecision(kind, target, renamed_from)


def move_source(
    content_hash: str,
    old: FileRec | None,
    old_in_conflict: bool = False,
    old_has_entries: bool = False,
) -> bool:
    """A rename's new path is written by moving the old file when that file is exactly
    the content (and nothing local is pending on it, no conflict): no bytes to fetch,
    and no delete-then-write."""
    return (
        old is not None
        and old.local_hash == content_hash
        and not old_in_conflict
        and not old_has_entries
    )


# --- a local change from the watcher --------------------------------------------------


def local_problem(lf: LocalFile, max_file: int) -> tuple[str, str] | None:
    """(the path to show, the problem's code) for a local file that is not synced, else
    None. The watcher sends a name that is no workspace path as its display form with
    the hash "!code", and a file over the size limit as "!too_large"; a change it sent
    as an ordinary one is checked again here all the same."""
    if lf.hash.startswith("!"):
        return lf.path, lf.hash[1:]
    code = local_name_problem(lf.path)
    if code is not None:
        return display_path(lf.path), code
    if lf.hash and lf.size > max_file:
        return lf.path, "too_large"
    return None


UnsyncableKind = Literal[
    # the path's upstream state is failing too: it is listed (and held) as that
    "upstream_failing",
    "fail",  # listed as a local failure, with `reason` (new, or its reason changed)
    "listed",  # listed already with that reason
    "forget",  # a name that never synced is gone: its listing goes
    "nothing",  # gone, and never listed
]


@dataclass(frozen=True)
class Unsyncable:
    kind: UnsyncableKind
    reason: str = ""


def unsyncable(
    lf: LocalFile, code: str, listed: Failure | None, max_file: int
) -> Unsyncable:
    """A local file local_problem found (its failure as listed under the shown path, if
    any)."""
    if listed is not None and listed.direction == "upstream":
        return Unsyncable("upstream_failing")
    if lf.hash:
        reason = local_failure_reason(code, lf.size, max_file)
        if listed is None or listed.reason != reason:
            return Unsyncable("fail", reason)
        return Unsyncable("listed", reason)
    if listed is not None and listed.direction == "local":
        return Unsyncable("forget")
    return Unsyncable("nothing")


@dataclass(frozen=True)
class LocalFacts:
    """What the journal knows of one path when the watcher reports it."""

    file: FileRec | None  # None: never tracked
    entries: tuple[Entry, ...] = ()
    in_conflict: bool = False
    writing_hash: str | None = None  # the hash a materialization in flight writes there


LocalKind = Literal[
    "own_write",  # our own write on its way: nothing
    "untracked_gone",  # never tracked, and gone (a temp file): nothing
    "unchanged",  # what we know already (an echo, a touch): nothing
    "chmod",  # a mode change alone: kept, sent with the next change
    # the ones below: the record takes the new hash (and mode) first
    # an edit of a file in conflict: the conflict's local side moves on
    "conflict_edit",
    # the file now equals upstream's current content: nothing to send
    "equals_upstream",
    "record",  # a write-back based on the record's iteration (superseding pending ones)
]


def local_change(lf: LocalFile, facts: LocalFacts) -> LocalKind:
    """A local file (hash "" gone) that local_problem found no problem with."""
    h = lf.hash
    if facts.writing_hash is not None and facts.writing_hash == h:
        return "own_write"
    if facts.file is None and not h:
        return "untracked_gone"
    f = facts.file or FileRec()
    if h == f.local_hash:
        return "chmod" if lf.mode and f.mode != lf.mode and h else "unchanged"
    if facts.in_conflict:
        return "conflict_edit"
    if h == f.upstream_hash and not facts.entries:
        return "equals_upstream"
    return "record"


# --- results --------------------------------------------------------------------------

RejectedKind = Literal[
    "conflict",  # upstream moved past the base: a conflict now
    # held: the notification of that iteration is on its way and makes the conflict
    "await_conflict",
    "look_again",  # the file moved on since it was recorded: looked at afresh
    "retry",  # no link: pending again, sent when one is up
    "drop",  # refused for good: listed in rejected
]


def write_back_rejected(
    reason: str,
    current_iteration: int,
    file: FileRec,
    in_conflict: bool,
    writing: bool,
) -> RejectedKind:
    """A write-back the gateway rejected with `reason` (its head at
    `current_iteration`)."""
    match reason:
        case "conflict":
            if current_iteration <= file.iteration and not in_conflict and not writing:
                return "conflict"
            return "await_conflict"
        case "changed" | "unreadable" | "content_missing":
            return "look_again"
        case "no_link":
            return "retry"
        case _:
            return "drop"


WrittenKind = Literal[
    # accept_upstream's write failed: the conflict stays, the user chooses again
    "accept_failed",
    "applied",  # written, already there, or deleted: the record moves on
    "copied",  # a conflict copy written beside the file
    # the user saved over it meanwhile: nothing overwritten, a conflict
    "local_changed",
    "rejected",  # the materializer refused the path
    "failed",  # that item only: tried again, its change unacknowledged
]
APPLIED = ("written", "unchanged", "deleted")


def materialized(outcome: str, accepting: bool) -> WrittenKind:
    """A write's result; `accepting`: it was accept_upstream's write (and is the one
    awaited)."""
    if accepting and outcome == "failed":
        return "accept_failed"
    if outcome in APPLIED:
        return "applied"
    if outcome in ("copied", "local_changed", "rejected"):
        return outcome  # type: ignore[return-value]
    return "failed"


# --- write-backs ----------------------------------------------------------------------


def writeback_batch(
    entries: Collection[Entry],
    conflicts: Container[str],
    writing: Container[str],
    now: float,
    hold_s: float,
    max_batch: int,
) -> list[Entry]:
    """The next write-backs to send, in journal order: pending ones, one per path, none
    for a path with one in flight, in conflict or being written; a deletion only once it
    is `hold_s` old (an rmtree's deletions come a few milliseconds apart: the folder is
    looked at before they go)."""
    busy = {e.path for e in entries if e.state == "sent"}
    batch: list[Entry] = []
    for e in entries:
        if (
            e.state != "pending"
            or e.path in busy
            or e.path in conflicts
            or e.path in writing
        ):
            continue
        if e.deletion and now - e.recorded < hold_s:
            continue
        busy.add(e.path)
        batch.append(e)
        if len(batch) >= max_batch:
            break
    return batch


Resolution = Literal["keep_local", "accept_upstream", "merged"]
RESOLUTIONS: tuple[Resolution, ...] = ("keep_local", "accept_upstream", "merged")


def resolve_refusal(
    sid: str,
    path: object,
    resolution: object,
    state: str,
    conflicts: Container[str],
    accepting: Container[str],
) -> tuple[str, str] | None:
    """Why resolve_conflict cannot be done now, as (error code, message), or None."""
    if resolution not in RESOLUTIONS:
        return (
            "INVALID_ARGUMENTS",
            f"resolve_conflict: resolution must be one of {', '.join(RESOLUTIONS)}",
        )
    if not isinstance(path, str) or path not in conflicts:
        return (
            "NOT_FOUND",
            f"resolve_conflict: no conflict on {path!r} in session {sid}",
        )
    if state != "active":
        return ("NOT_ACTIVE", f"resolve_conflict: the sync of session {sid} is {state}")
    if path in accepting:
        return (
            "NOT_ACTIVE",
            f"resolve_conflict: the upstream version of {path!r} is being written "
            "(accept_upstream); try again in a moment",
        )
    return None


# --- failures and free space ----------------------------------------------------------

# a failed upstream change is tried again after this, doubling up to RETRY_MAX_S
RETRY_FIRST_S = 2.0
RETRY_MAX_S = 60.0
# this much more free space than at the last look: failed writes are tried at once
SPACE_FREED = 1 << 20


def retry_delay(retries: int) -> float:
    """How long a failed upstream change waits before its next try."""
    return min(RETRY_MAX_S, RETRY_FIRST_S * (2 ** min(retries, 16)))


def failure_log_level(reason: str, last: str | None) -> int:
    """A failure is worth a warning when it is new or its reason changed; its retries
    failing the same way (each item, again and again, while a folder stays read-only)
    are not."""
    return logging.WARNING if reason != last else logging.DEBUG


def free_space_floor(total: int, setting_mb: int | None) -> int:
    """Below this many free bytes on the sync folder's disk, sync pauses: the
    sync_min_free_mb setting (0: never), else 64 MiB or 1% of the disk, whichever is
    smaller (a small disk is not paused for good)."""
    if setting_mb is not None:
        return max(0, setting_mb) << 20
    return min(64 << 20, total // 100)


SpaceKind = Literal["pause", "resume", "retry_now", "steady"]


def space_verdict(
    state: str, low_paused: bool, free: int, floor: int, before: int | None
) -> SpaceKind:
    """The sync folder's disk looked at: pause below the floor, resume a pause for want
    of space once above it, and try failed writes at once when space was freed since the
    last look."""
    if state == "active" and free < floor:
        return "pause"
    if low_paused and free >= floor:
        return "resume"
    if state == "active" and before is not None and free >= before + SPACE_FREED:
        return "retry_now"
    return "steady"
