"""The sync decisions (dim_actors/sync/reconcile.py), one row per branch: a change, what
is known of its path (base = the last agreed upstream state, local = the file's hash),
and what it means."""

from __future__ import annotations

import pytest

from dim_actors.messages import LocalFile
from dim_actors.sync import reconcile
from dim_actors.sync.reconcile import LocalFacts, PathFacts
from dim_actors.sync.state import Conflict, Entry, Failure, FileRec
from dim_actors.wire import replication as wire

A, B, C = "a" * 64, "b" * 64, "c" * 64  # three contents, as sha256 hex digests
MB = 1 << 20


def note(
    iteration: int,
    content: str = "",
    *,
    path: str = "f.txt",
    deleted: bool = False,
    renamed_from: str | None = None,
) -> wire.Notification:
    return wire.Notification(
        sequence=7,
        filepath=path,
        contentHash=content,
        size=1,
        permissions=0o644,
        isDeletion=deleted,
        iteration=iteration,
        renamedFrom=renamed_from,
        renamedFromIteration=1 if renamed_from else None,
    )


def rec(iteration: int, upstream: str, local: str, mode: int = 0o644) -> FileRec:
    return FileRec(iteration, upstream, local, mode)


def entry(h: str, state: str = "pending", base: int | None = 1) -> Entry:
    return Entry(1, "f.txt", h, 1, 0o644, not h, state, 0.0, base)


def conflict(
    iteration: int, upstream: str, copy: str | None = "f (upstream 2).txt"
) -> Conflict:
    return Conflict("f.txt", B, iteration, upstream, copy, 0.0)


# --- which upstream paths can be files here -------------------------------------------

PATHS = [
    ("a clean relative path", "docs/f.txt", "ok", "docs/f.txt"),
    (
        "a path with ./ and doubled slashes is cleaned",
        "./docs//f.txt",
        "ok",
        "docs/f.txt",
    ),
    ("a path that climbs out with ..", "../etc/passwd", "unsafe", ""),
    ("an absolute path", "/etc/passwd", "unsafe", ""),
    ("a path inside .git", "src/.git/hooks/pre-commit", "unsafe", ""),
    (
        "a name longer than the disk holds",
        "d/" + "x" * 300,
        "too_long",
        "d/" + "x" * 300,
    ),
]


@pytest.mark.parametrize(
    ("case", "filepath", "kind", "path"), PATHS, ids=[r[0] for r in PATHS]
)
def test_upstream_path(case, filepath, kind, path):
    verdict = reconcile.upstream_path(note(2, A, path=filepath))
    assert (verdict.kind, verdict.path) == (kind, path)
    assert bool(verdict.reason) == (kind != "ok")


# --- an upstream notification ---------------------------------------------------------

UPSTREAM = [
    # (case, notification, facts, decision kind, target)
    (
        "a content that is no sha256 digest is rejected",
        note(2, "nothex"),
        PathFacts(rec(1, A, A)),
        "invalid_hash",
        "",
    ),
    (
        "a deletion needs no content hash",
        note(2, deleted=True),
        PathFacts(rec(1, A, A)),
        "materialize",
        "",
    ),
    (
        "an older iteration than the base is seen already",
        note(1, B),
        PathFacts(rec(2, A, A)),
        "seen",
        "",
    ),
    (
        "the base iteration again, the file as agreed: seen already",
        note(2, A),
        PathFacts(rec(2, A, A)),
        "seen",
        "",
    ),
    (
        "the base iteration again, in conflict: seen already",
        note(2, A),
        PathFacts(rec(2, A, B), conflict=conflict(2, A)),
        "seen",
        "",
    ),
    (
        "the base iteration again, the file missing after a restore: written again",
        note(2, A),
        PathFacts(rec(2, A, "")),
        "materialize",
        A,
    ),
    (
        "a write of the path in flight: queued behind it",
        note(3, B),
        PathFacts(rec(2, A, A), writing=True),
        "queue",
        "",
    ),
    (
        "clean locally: the materializer writes it",
        note(2, B),
        PathFacts(rec(1, A, A)),
        "materialize",
        B,
    ),
    (
        "a new file upstream, never seen here",
        note(1, A),
        PathFacts(FileRec()),
        "materialize",
        A,
    ),
    (
        "deleted upstream, clean locally: the file is deleted",
        note(2, deleted=True),
        PathFacts(rec(1, A, A)),
        "materialize",
        "",
    ),
    (
        "upstream equal to the local file: no conflict, taken as applied",
        note(2, B),
        PathFacts(rec(1, A, B), entries=(entry(B),)),
        "take",
        B,
    ),
    (
        "deleted on both sides: taken",
        note(2, deleted=True),
        PathFacts(rec(1, A, ""), entries=(entry(""),)),
        "take",
        "",
    ),
    (
        "our own write-back coming back",
        note(2, B),
        PathFacts(rec(1, A, C), entries=(entry(B, "sent"), entry(C))),
        "own_echo",
        B,
    ),
    (
        "offered again: the state the pending change is based on",
        note(1, A),
        PathFacts(rec(0, A, B), entries=(entry(B, base=1),)),
        "base_unchanged",
        A,
    ),
    (
        "offered again, but a change is held: a conflict",
        note(1, A),
        PathFacts(rec(0, A, B), entries=(entry(B, "held", base=1),)),
        "conflict",
        A,
    ),
    (
        "offered again, the change based on another iteration: a conflict",
        note(1, A),
        PathFacts(rec(0, A, B), entries=(entry(B, base=0),)),
        "conflict",
        A,
    ),
    (
        "edited here and upstream: a conflict",
        note(2, C),
        PathFacts(rec(1, A, B), entries=(entry(B),)),
        "conflict",
        C,
    ),
    (
        "edited here, deleted upstream: a conflict",
        note(2, deleted=True),
        PathFacts(rec(1, A, B), entries=(entry(B),)),
        "conflict",
        "",
    ),
    (
        "deleted here, edited upstream: a conflict",
        note(2, C),
        PathFacts(rec(1, A, ""), entries=(entry(""),)),
        "conflict",
        C,
    ),
    (
        "in conflict, upstream moves on again: the conflict follows",
        note(3, C),
        PathFacts(rec(2, A, B), conflict=conflict(2, A)),
        "conflict",
        C,
    ),
    (
        "in conflict, upstream now holds the local content: settled",
        note(3, B),
        PathFacts(rec(2, A, B), conflict=conflict(2, A)),
        "conflict_gone",
        B,
    ),
    (
        "mirror: the file offered again as it stands",
        note(3, A),
        PathFacts(rec(2, A, A), read_only=True),
        "mirror_known",
        A,
    ),
    (
        "mirror: the same conflict with its copy on disk",
        note(2, C),
        PathFacts(
            rec(1, A, B), conflict=conflict(2, C), copy_on_disk=True, read_only=True
        ),
        "mirror_known",
        C,
    ),
    (
        "mirror: the same conflict, its copy gone: written again",
        note(2, C),
        PathFacts(rec(1, A, B), conflict=conflict(2, C), read_only=True),
        "conflict",
        C,
    ),
    (
        "mirror: the same conflict on a deletion needs no copy",
        note(2, deleted=True),
        PathFacts(rec(1, A, B), conflict=conflict(2, "", None), read_only=True),
        "mirror_known",
        "",
    ),
    (
        "mirror: a local edit waiting, upstream moved: a conflict",
        note(3, C),
        PathFacts(rec(2, A, B), entries=(entry(B),), read_only=True),
        "conflict",
        C,
    ),
    (
        "mirror: clean locally, a new state: written",
        note(3, C),
        PathFacts(rec(2, A, A), read_only=True),
        "materialize",
        C,
    ),
]


@pytest.mark.parametrize(
    ("case", "n", "facts", "kind", "target"), UPSTREAM, ids=[r[0] for r in UPSTREAM]
)
def test_upstream_change(case, n, facts, kind, target):
    d = reconcile.upstream_change(n, facts)
    assert (d.kind, d.target) == (kind, target)


RENAMES = [
    (
        "a rename names its old path for the deletion",
        note(2, A, renamed_from="old.txt"),
        "old.txt",
    ),
    (
        "a rename from an unsafe path: no old path",
        note(2, A, renamed_from="../old.txt"),
        None,
    ),
    ("no rename", note(2, A), None),
]


@pytest.mark.parametrize(("case", "n", "old"), RENAMES, ids=[r[0] for r in RENAMES])
def test_upstream_rename_names_the_old_path(case, n, old):
    assert reconcile.upstream_change(n, PathFacts(rec(1, B, B))).renamed_from == old


MOVES = [
    ("the old file is exactly the content: moved", rec(1, A, A), False, False, True),
    (
        "the old file was edited here: fetched instead",
        rec(1, A, B),
        False,
        False,
        False,
    ),
    ("the old file is in conflict: fetched instead", rec(1, A, A), True, False, False),
    (
        "the old file has a local change pending: fetched instead",
        rec(1, A, A),
        False,
        True,
        False,
    ),
    ("the old path was never seen here: fetched", None, False, False, False),
]


@pytest.mark.parametrize(
    ("case", "old", "in_conflict", "has_entries", "move"),
    MOVES,
    ids=[r[0] for r in MOVES],
)
def test_move_source(case, old, in_conflict, has_entries, move):
    assert reconcile.move_source(A, old, in_conflict, has_entries) is move


# --- a local change from the watcher --------------------------------------------------

PROBLEMS = [
    ("an ordinary file", LocalFile("f.txt", A, 10), None),
    (
        "the watcher's mark for a name that is not UTF-8",
        LocalFile("bad\\xff", "!utf8", 1),
        ("bad\\xff", "utf8"),
    ),
    ("a name with a control character", LocalFile("a\nb", A, 1), ("a\\nb", "control")),
    ("a name with a backslash", LocalFile("a\\b", A, 1), ("a\\b", "backslash")),
    (
        "a file over the size limit",
        LocalFile("big.bin", A, 2 * MB),
        ("big.bin", "too_large"),
    ),
    ("a deletion is never too large", LocalFile("big.bin", "", 2 * MB), None),
]


@pytest.mark.parametrize(
    ("case", "lf", "problem"), PROBLEMS, ids=[r[0] for r in PROBLEMS]
)
def test_local_problem(case, lf, problem):
    assert reconcile.local_problem(lf, MB) == problem


def failure(direction: str, reason: str) -> Failure:
    return Failure("big.bin", reason, direction, 0.0)


TOO_LARGE = reconcile.local_failure_reason("too_large", 2 * MB, MB)
UNSYNCABLE = [
    ("a new file too large: listed", LocalFile("big.bin", A, 2 * MB), None, "fail"),
    (
        "listed already with that reason",
        LocalFile("big.bin", A, 2 * MB),
        failure("local", TOO_LARGE),
        "listed",
    ),
    (
        "listed with another reason (it grew): listed again",
        LocalFile("big.bin", A, 2 * MB),
        failure("local", "older"),
        "fail",
    ),
    (
        "its upstream state is failing: listed as that",
        LocalFile("big.bin", A, 2 * MB),
        failure("upstream", "disk full"),
        "upstream_failing",
    ),
    (
        "a listed name that is gone: unlisted",
        LocalFile("big.bin", "", 0),
        failure("local", TOO_LARGE),
        "forget",
    ),
    (
        "an unlisted name that is gone: nothing",
        LocalFile("big.bin", "", 0),
        None,
        "nothing",
    ),
]


@pytest.mark.parametrize(
    ("case", "lf", "listed", "kind"), UNSYNCABLE, ids=[r[0] for r in UNSYNCABLE]
)
def test_unsyncable(case, lf, listed, kind):
    d = reconcile.unsyncable(lf, "too_large", listed, MB)
    assert d.kind == kind
    if kind == "fail":
        assert d.reason == TOO_LARGE


LOCAL = [
    # (case, local file, facts, decision)
    (
        "our own write arriving",
        LocalFile("f.txt", B, 1),
        LocalFacts(rec(1, A, A), writing_hash=B),
        "own_write",
    ),
    (
        "a save during our write, with other content: a change",
        LocalFile("f.txt", C, 1),
        LocalFacts(rec(1, A, A), writing_hash=B),
        "record",
    ),
    (
        "never tracked and gone (a temp file)",
        LocalFile("f.txt", "", 0),
        LocalFacts(None),
        "untracked_gone",
    ),
    ("a new file", LocalFile("f.txt", A, 1), LocalFacts(None), "record"),
    (
        "the hash we know (an echo, a touch)",
        LocalFile("f.txt", A, 1, 0o644),
        LocalFacts(rec(1, A, A)),
        "unchanged",
    ),
    (
        "the hash we know, no mode reported",
        LocalFile("f.txt", A, 1, 0),
        LocalFacts(rec(1, A, A)),
        "unchanged",
    ),
    (
        "a chmod alone",
        LocalFile("f.txt", A, 1, 0o755),
        LocalFacts(rec(1, A, A)),
        "chmod",
    ),
    (
        "a file already gone, gone again",
        LocalFile("f.txt", "", 0, 0o755),
        LocalFacts(rec(1, A, "")),
        "unchanged",
    ),
    ("an edit", LocalFile("f.txt", B, 1), LocalFacts(rec(1, A, A)), "record"),
    ("a deletion", LocalFile("f.txt", "", 0), LocalFacts(rec(1, A, A)), "record"),
    (
        "an edit of a file in conflict",
        LocalFile("f.txt", C, 1),
        LocalFacts(rec(2, A, B), in_conflict=True),
        "conflict_edit",
    ),
    (
        "edited back to upstream's content, nothing pending",
        LocalFile("f.txt", A, 1),
        LocalFacts(rec(1, A, B)),
        "equals_upstream",
    ),
    (
        "edited back to upstream's content, a change pending: sent",
        LocalFile("f.txt", A, 1),
        LocalFacts(rec(1, A, B), entries=(entry(B),)),
        "record",
    ),
    (
        "a second edit while the first waits",
        LocalFile("f.txt", C, 1),
        LocalFacts(rec(1, A, B), entries=(entry(B),)),
        "record",
    ),
]


@pytest.mark.parametrize(
    ("case", "lf", "facts", "kind"), LOCAL, ids=[r[0] for r in LOCAL]
)
def test_local_change(case, lf, facts, kind):
    assert reconcile.local_change(lf, facts) == kind


# --- results --------------------------------------------------------------------------

REJECTED = [
    # (case, reason, the gateway's head, in conflict, a write in flight, decision)
    (
        "a conflict at an iteration seen here: a conflict now",
        "conflict",
        2,
        False,
        False,
        "conflict",
    ),
    (
        "a conflict at a newer iteration: its notification makes it",
        "conflict",
        3,
        False,
        False,
        "await_conflict",
    ),
    (
        "a conflict on a path in conflict already",
        "conflict",
        2,
        True,
        False,
        "await_conflict",
    ),
    (
        "a conflict while a write of the path is in flight",
        "conflict",
        2,
        False,
        True,
        "await_conflict",
    ),
    (
        "the file changed since it was recorded",
        "changed",
        0,
        False,
        False,
        "look_again",
    ),
    ("the file could not be read", "unreadable", 0, False, False, "look_again"),
    (
        "the content was not found to send",
        "content_missing",
        0,
        False,
        False,
        "look_again",
    ),
    ("no link to send it on", "no_link", 0, False, False, "retry"),
    (
        "refused for good (a path the gateway will not take)",
        "invalid_path",
        0,
        False,
        False,
        "drop",
    ),
]


@pytest.mark.parametrize(
    ("case", "reason", "head", "in_conflict", "writing", "kind"),
    REJECTED,
    ids=[r[0] for r in REJECTED],
)
def test_write_back_rejected(case, reason, head, in_conflict, writing, kind):
    assert (
        reconcile.write_back_rejected(reason, head, rec(2, A, B), in_conflict, writing)
        == kind
    )


WRITTEN = [
    ("written", "written", False, "applied"),
    ("already there", "unchanged", False, "applied"),
    ("deleted", "deleted", False, "applied"),
    ("accept_upstream written", "written", True, "applied"),
    (
        "accept_upstream could not be written: the conflict stays",
        "failed",
        True,
        "accept_failed",
    ),
    ("a conflict copy written", "copied", False, "copied"),
    ("saved over meanwhile", "local_changed", False, "local_changed"),
    ("refused by the materializer", "rejected", False, "rejected"),
    ("a write that failed", "failed", False, "failed"),
]


@pytest.mark.parametrize(
    ("case", "outcome", "accepting", "kind"), WRITTEN, ids=[r[0] for r in WRITTEN]
)
def test_materialized(case, outcome, accepting, kind):
    assert reconcile.materialized(outcome, accepting) == kind


# --- write-backs, resolve_conflict, free space ----------------------------------------


def pending(
    seq: int, path: str, h: str = A, state: str = "pending", recorded: float = 0.0
) -> Entry:
    return Entry(seq, path, h, 1, 0o644, not h, state, recorded, 1)


BATCHES = [
    # (case, entries, paths in conflict, paths being written, the seqs sent)
    (
        "pending changes go in journal order",
        [pending(1, "a"), pending(2, "b")],
        (),
        (),
        [1, 2],
    ),
    (
        "one change per path per batch",
        [pending(1, "a"), pending(2, "a", B)],
        (),
        (),
        [1],
    ),
    (
        "nothing for a path with a write-back in flight",
        [pending(1, "a", state="sent"), pending(2, "a", B), pending(3, "b")],
        (),
        (),
        [3],
    ),
    (
        "held changes wait for the conflict's resolution",
        [pending(1, "a", state="held"), pending(2, "b")],
        (),
        (),
        [2],
    ),
    ("nothing for a path in conflict", [pending(1, "a")], ("a",), (), []),
    ("nothing for a path being written", [pending(1, "a")], (), ("a",), []),
    (
        "a fresh deletion waits a moment",
        [pending(1, "a", "", recorded=99.9)],
        (),
        (),
        [],
    ),
    ("an older deletion goes", [pending(1, "a", "", recorded=99.0)], (), (), [1]),
    (
        "at most a batch's worth",
        [pending(i, f"p{i}") for i in range(5)],
        (),
        (),
        [0, 1, 2],
    ),
]


@pytest.mark.parametrize(
    ("case", "entries", "conflicts", "writing", "seqs"),
    BATCHES,
    ids=[r[0] for r in BATCHES],
)
def test_writeback_batch(case, entries, conflicts, writing, seqs):
    batch = reconcile.writeback_batch(entries, conflicts, writing, 100.0, 0.3, 3)
    assert [e.seq for e in batch] == seqs


RESOLVE = [
    # (case, path, resolution, sync state, paths being accepted, error code or None)
    ("keep the local file", "f.txt", "keep_local", "active", (), None),
    ("take upstream's version", "f.txt", "accept_upstream", "active", (), None),
    ("a merge the user made", "f.txt", "merged", "active", (), None),
    ("an unknown resolution", "f.txt", "both", "active", (), "INVALID_ARGUMENTS"),
    ("a path with no conflict", "g.txt", "keep_local", "active", (), "NOT_FOUND"),
    ("a path that is no string", 3, "keep_local", "active", (), "NOT_FOUND"),
    ("a sync that is paused", "f.txt", "keep_local", "paused", (), "NOT_ACTIVE"),
    (
        "upstream's version is being written already",
        "f.txt",
        "keep_local",
        "active",
        ("f.txt",),
        "NOT_ACTIVE",
    ),
]


@pytest.mark.parametrize(
    ("case", "path", "resolution", "state", "accepting", "code"),
    RESOLVE,
    ids=[r[0] for r in RESOLVE],
)
def test_resolve_refusal(case, path, resolution, state, accepting, code):
    refusal = reconcile.resolve_refusal(
        "s1", path, resolution, state, {"f.txt"}, accepting
    )
    assert (refusal[0] if refusal else None) == code


SPACE = [
    # (case, sync state, paused for want of space, free, floor, free at the last look,
    # verdict)
    ("below the floor: paused", "active", False, 10, 64, 100, "pause"),
    (
        "paused for space, above the floor again: resumed",
        "paused",
        True,
        64,
        64,
        10,
        "resume",
    ),
    ("paused for space, still below: stays", "paused", True, 63, 64, 10, "steady"),
    (
        "space freed since the last look: failed writes at once",
        "active",
        False,
        100 + MB,
        64,
        100,
        "retry_now",
    ),
    ("a little more space: nothing", "active", False, 100 + MB - 1, 64, 100, "steady"),
    (
        "the first look: nothing to compare",
        "active",
        False,
        100 + MB,
        64,
        None,
        "steady",
    ),
]


@pytest.mark.parametrize(
    ("case", "state", "low", "free", "floor", "before", "kind"),
    SPACE,
    ids=[r[0] for r in SPACE],
)
def test_space_verdict(case, state, low, free, floor, before, kind):
    assert reconcile.space_verdict(state, low, free, floor, before) == kind
