"""Upstream changes on their way to disk (dim_actors/sync/delivery.py), by tables: the
materializer's batches, the acknowledgement cursor, failed states held back and retried, and the
writes a decision leads to."""

from __future__ import annotations

import pytest

from dim_actors.messages import MaterializeItem
from dim_actors.sync import delivery
from dim_actors.sync.state import Conflict, Entry, Failure, FileRec, Sync, Writing
from dim_actors.wire import replication as wire

A, B = "a" * 64, "b" * 64


def note(
    seq: int, path: str = "f.txt", h: str = A, renamed: str | None = None
) -> wire.Notification:
    return wire.Notification(
        sequence=seq,
        filepath=path,
        contentHash=h,
        size=3,
        permissions=0o600,
        isDeletion=not h,
        iteration=4,
        renamedFrom=renamed,
        renamedFromIteration=2 if renamed else None,
    )


def sync(root: str = "/nowhere") -> Sync:
    return Sync("s1", root, "r", "active")


# --- batches --------------------------------------------------------------------------------------

BATCHES = [
    # (what, the items' inline sizes, expected batch lengths)
    ("nothing: no batch", [], []),
    ("a few small items: one batch", [0, 10, 0], [3]),
    (
        "at MAX_BATCH items a batch is cut",
        [0] * (delivery.MAX_BATCH + 1),
        [delivery.MAX_BATCH, 1],
    ),
    ("at a MiB of content a batch is cut", [600 << 10, 600 << 10, 1], [2, 1]),
    ("one big item is a batch of its own", [2 << 20, 1], [1, 1]),
]


@pytest.mark.parametrize(
    "sizes,want", [r[1:] for r in BATCHES], ids=[r[0] for r in BATCHES]
)
def test_batches(sizes, want):
    items = [
        MaterializeItem(
            path=f"p{i}", iteration=1, contentHash=A, content=b"x" * n or None
        )
        for i, n in enumerate(sizes)
    ]
    got = delivery.batches(items)
    assert [len(b) for b in got] == want
    assert [i for b in got for i in b] == items  # in order, none lost


# --- the acknowledgement cursor -------------------------------------------------------------------

CURSOR = [
    # (what, steps (("expect" | "done", seq)...), last acknowledged, expected cursor)
    ("nothing outstanding, nothing seen", [], 0, None),
    ("one item done", [("expect", 3), ("done", 3)], 0, 3),
    (
        "an item of 3 still outstanding: up to 2",
        [("expect", 3), ("expect", 3), ("done", 3)],
        0,
        2,
    ),
    (
        "an earlier sequence outstanding holds a later one back",
        [("expect", 3), ("expect", 5), ("done", 5)],
        0,
        2,
    ),
    ("not past what was acknowledged", [("expect", 3), ("done", 3)], 3, None),
    ("a sequence done with nothing expected still moves max_seen", [("done", 7)], 2, 7),
]


@pytest.mark.parametrize(
    "steps,last,want", [r[1:] for r in CURSOR], ids=[r[0] for r in CURSOR]
)
def test_ack_cursor(steps, last, want):
    s = sync()
    s.last_seq = s.max_seen = last
    for op, seq in steps:
        getattr(delivery, op)(s, seq)
    assert delivery.ack_cursor(s) == want


def test_forget_sequences_uncounts_the_failures():
    s = sync()
    s.outstanding = {3: 1}
    s.failed = {
        "f.txt": Failure("f.txt", "r", "upstream", 0.0, note=note(3), counted=True)
    }
    s.notes = {"f.txt": note(3)}
    s.tries = {"f.txt": (0.0, 1, "r")}
    delivery.forget_sequences(s)
    assert (s.outstanding, s.notes, s.tries) == ({}, {}, {})
    assert s.failed["f.txt"].counted is False


# --- failures -------------------------------------------------------------------------------------

UNFAIL = [
    # (what, the failure listed (direction, its note's sequence, counted) or None,
    #  expected: still listed, its try carried on, sequence 3 still outstanding)
    ("nothing listed", None, (False, False, True)),
    ("a local failure is not this one's", ("local", None, False), (True, False, True)),
    (
        "a newer state replaces it; its sequence is done",
        ("upstream", 2, True),
        (False, False, True),
    ),
    (
        "the same state again carries its tries on",
        ("upstream", 3, True),
        (False, True, False),
    ),
    ("not counted: nothing to make done", ("upstream", 3, False), (False, True, True)),
]


@pytest.mark.parametrize(
    "listed,want", [r[1:] for r in UNFAIL], ids=[r[0] for r in UNFAIL]
)
def test_unfail(listed, want):
    s = sync()
    s.outstanding = {2: 1, 3: 1}
    if listed is not None:
        direction, seq, counted = listed
        n = note(seq) if seq is not None else None
        s.failed["f.txt"] = Failure("f.txt", "r", direction, 1.0, 2, n, counted=counted)
    delivery.unfail(s, "f.txt", note(3))
    got = ("f.txt" in s.failed, "f.txt" in s.tries, 3 in s.outstanding)
    assert got == want
    if listed is not None and listed[0] == "upstream" and listed[2]:
        assert listed[1] not in s.outstanding  # its delivery is done


FAIL = [
    # (what, note?, retry, counted, tries before, expected (retries, retry, counted, renamed kept))
    ("a first failure", True, True, True, None, (0, True, True, False)),
    ("not to be retried", True, False, True, None, (0, False, True, False)),
    (
        "no note: nothing to retry or hold back",
        False,
        True,
        True,
        None,
        (0, False, False, False),
    ),
    (
        "a retry that failed again",
        True,
        True,
        True,
        (5.0, 2, "r"),
        (3, True, True, False),
    ),
    ("not counted", True, True, False, None, (0, True, False, False)),
]


@pytest.mark.parametrize(
    "has_note,retry,counted,tries,want", [r[1:] for r in FAIL], ids=[r[0] for r in FAIL]
)
def test_fail(has_note, retry, counted, tries, want):
    s = sync()
    if tries is not None:
        s.tries["f.txt"] = tries
    n = note(3, renamed="old.txt") if has_note else None
    delivery.fail(s, "f.txt", n, "disk full", retry, counted)
    fl = s.failed["f.txt"]
    renamed_kept = fl.note is not None and fl.note.renamedFrom is not None
    assert (fl.retries, fl.retry, fl.counted, renamed_kept) == want
    assert (fl.reason, fl.direction, s.dirty) == ("disk full", "upstream", True)
    assert "f.txt" not in s.tries
    if tries is not None:
        assert fl.since == tries[0]


WRITE_FAILED = [
    # (what, the write awaited, its note, counted, expected (holds the delivery, note's sequence))
    ("from a notification, counted", Writing(4, A, 3), note(3), True, (True, 3)),
    ("from a notification, not counted", Writing(4, A, 3), note(3), False, (False, 3)),
    (
        "its note forgotten: a state with no sequence",
        Writing(4, A, 0),
        None,
        True,
        (True, 0),
    ),
    ("a deletion's note made up", Writing(4, "", 0), None, False, (False, 0)),
]


@pytest.mark.parametrize(
    "pending,n,counted,want",
    [r[1:] for r in WRITE_FAILED],
    ids=[r[0] for r in WRITE_FAILED],
)
def test_write_failed(pending, n, counted, want):
    s = sync()
    holds = delivery.write_failed(s, "f.txt", 4, "read-only", pending, n, counted)
    fl = s.failed["f.txt"]
    assert fl.note is not None
    assert (holds, fl.note.sequence) == want
    assert fl.note.isDeletion == (not pending.target)


DUE = [
    # (what, the failure's changes, expected due)
    ("due", {}, True),
    ("not yet", {"next_at": 200.0}, False),
    ("not to be retried", {"retry": False}, False),
    ("a local failure", {"direction": "local"}, False),
    ("not counted: the catch-up offers it", {"counted": False}, False),
    ("not counted but with no sequence", {"counted": False, "note": note(0)}, True),
    ("being written", {"writing": True}, False),
]


@pytest.mark.parametrize("changed,due", [r[1:] for r in DUE], ids=[r[0] for r in DUE])
def test_take_due(changed, due):
    s = sync()
    changed = dict(changed)
    if changed.pop("writing", False):
        s.materializing["f.txt"] = Writing(4, A, 3)
    fl = Failure("f.txt", "r", "upstream", 1.0, 2, note(3), True, 50.0, True)
    for k, v in changed.items():
        setattr(fl, k, v)
    s.failed["f.txt"] = fl
    got = delivery.take_due(s, 100.0)
    assert (got == [fl]) is due
    assert ("f.txt" in s.failed) is not due
    assert (s.tries.get("f.txt") == (1.0, 2, "r")) is due


def test_take_due_takes_at_most_a_batch():
    s = sync()
    for i in range(delivery.MAX_BATCH + 3):
        s.failed[f"p{i}"] = Failure(
            f"p{i}", "r", "upstream", 0.0, 0, note(3, f"p{i}"), counted=True
        )
    assert len(delivery.take_due(s, 100.0)) == delivery.MAX_BATCH
    assert len(s.failed) == 3


# --- writes ---------------------------------------------------------------------------------------

MOVES = [
    # (what, the old path's record, in conflict, has entries, expected renamedFrom)
    ("the old file is the content: moved", FileRec(2, A, A), False, False, "old.txt"),
    ("the old file differs: written", FileRec(2, B, B), False, False, None),
    ("the old path is in conflict", FileRec(2, A, A), True, False, None),
    ("the old path has local changes", FileRec(2, A, A), False, True, None),
    ("no record of the old path", None, False, False, None),
]


@pytest.mark.parametrize(
    "old,in_conflict,has_entries,want",
    [r[1:] for r in MOVES],
    ids=[r[0] for r in MOVES],
)
def test_write(old, in_conflict, has_entries, want):
    s = sync()
    s.files["f.txt"] = FileRec(1, B, B)
    if old is not None:
        s.files["old.txt"] = old
    if in_conflict:
        s.conflicts["old.txt"] = Conflict("old.txt", A, 2, B, None, 0.0)
    if has_entries:
        s.entries[1] = Entry(1, "old.txt", B, 1, 0o644, False, "pending", 0.0, 2)
    n = note(3, renamed="old.txt")
    item = delivery.write(s, n, "f.txt", A, "old.txt")
    assert item.renamedFrom == want
    assert (item.expectedHash, item.contentHash, item.permissions) == (B, A, 0o600)
    assert s.materializing["f.txt"] == Writing(4, A, 3) and s.notes["f.txt"] is n


COPIES = [
    # (what, target, note?, expected (an item, sequence 3 outstanding))
    ("upstream's version goes beside the file", A, True, (True, True)),
    ("a deletion: nothing to write, its delivery is done", "", True, (False, False)),
    ("from a rejected write-back: no note", A, False, (True, True)),
]


@pytest.mark.parametrize(
    "target,has_note,want", [r[1:] for r in COPIES], ids=[r[0] for r in COPIES]
)
def test_write_copy(target, has_note, want):
    s = sync()
    s.outstanding = {3: 1}
    item = delivery.write_copy(
        s, "f.txt", 4, target, note(3, h=target) if has_note else None
    )
    assert (item is not None, 3 in s.outstanding) == want
    if item is not None:
        assert item.conflictCopy is not None and item.conflictCopy != "f.txt"
        assert s.materializing["f.txt"] == Writing(4, target, 3 if has_note else 0)


ACCEPT = [
    (
        "with its copy: moved from the copy",
        "f (upstream 4).txt",
        A,
        ("f (upstream 4).txt", A),
    ),
    ("no copy yet: written", None, A, (None, None)),
    ("upstream deleted it", None, "", (None, None)),
]


@pytest.mark.parametrize(
    "copy,upstream,want", [r[1:] for r in ACCEPT], ids=[r[0] for r in ACCEPT]
)
def test_accept(copy, upstream, want):
    s = sync()
    s.conflicts["f.txt"] = Conflict("f.txt", B, 4, upstream, copy, 0.0)
    item = delivery.accept(s, "f.txt")
    assert (item.renamedFrom, item.renamedFromHash) == want
    assert (item.isDeletion, item.expectedHash) == (not upstream, None)
    assert "f.txt" in s.accepting and s.materializing["f.txt"] == Writing(
        4, upstream, 0
    )
    assert "f.txt" in s.conflicts  # until the write lands


REMOVE = [
    ("a copy there goes", "copy.txt", True),
    ("a copy already gone is fine", "copy.txt", False),
    ("a path outside the folder is left alone", "../outside.txt", False),
]


@pytest.mark.parametrize(
    "copy,present", [r[1:] for r in REMOVE], ids=[r[0] for r in REMOVE]
)
def test_remove_copy(tmp_path, copy, present):
    root = tmp_path / "folder"
    root.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("mine")
    if present:
        (root / copy).write_text("x")
    delivery.remove_copy(sync(str(root)), copy)
    assert not (root / "copy.txt").exists()
    assert outside.read_text() == "mine"
