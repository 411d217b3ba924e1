"""Local changes on their way upstream (dim_actors/sync/outbox.py), by tables: which write-backs go
now, when deletions may go (real folders under tmp_path), what goes again, what a complete scan
implies, and the files that cannot go."""

from __future__ import annotations

import pytest

from dim_actors.messages import LocalFile
from dim_actors.sync import outbox
from dim_actors.sync.paths import local_failure_reason
from dim_actors.sync.state import Entry, Failure, FileRec, Sync, Writing

A, B = "a" * 64, "b" * 64


def entry(
    seq: int, path: str, h: str = A, state: str = "pending", recorded=0.0
) -> Entry:
    return Entry(seq, path, h, 1, 0o644, not h, state, recorded, 3)


def sync(root: str = "/nowhere", **changed) -> Sync:
    s = Sync("s1", root, "r", "active")
    s.link = "connected"
    for k, v in changed.items():
        setattr(s, k, v)
    return s


# --- next_batch -----------------------------------------------------------------------------------

BATCHES = [
    # (what, Sync changes, entries, expected seqs)
    ("pending changes go in journal order", {}, [entry(1, "a"), entry(2, "b")], [1, 2]),
    ("one per path", {}, [entry(1, "a"), entry(2, "a", B)], [1]),
    ("none while a batch is in flight", {"inflight": {9}}, [entry(1, "a")], []),
    ("none while the link is down", {"link": "connecting"}, [entry(1, "a")], []),
    ("none to the read-only mirror", {"read_only": True}, [entry(1, "a")], []),
    ("none while paused", {"state": "paused"}, [entry(1, "a")], []),
    ("a fresh deletion waits", {}, [entry(1, "a", "", recorded=99.9)], []),
    ("an older deletion goes", {}, [entry(1, "a", "", recorded=99.0)], [1]),
    (
        "not a path in conflict",
        {"conflicts": {"a": None}},
        [entry(1, "a"), entry(2, "b")],
        [2],
    ),
]


@pytest.mark.parametrize(
    "changed,entries,want", [r[1:] for r in BATCHES], ids=[r[0] for r in BATCHES]
)
def test_next_batch(changed, entries, want):
    s = sync(**changed)
    for e in entries:
        s.entries[e.seq] = e
    assert [e.seq for e in outbox.next_batch(s, 100.0)] == want


# --- deletion_guard -------------------------------------------------------------------------------

GUARD = [
    # (what, folder contents (None: no folder), entries, the batch's seqs, expected reason's start)
    ("no deletion: nothing to look at", None, [entry(1, "a")], [1], None),
    (
        "the folder is gone",
        None,
        [entry(1, "a", "")],
        [1],
        "the sync folder {root} was deleted or moved away",
    ),
    ("one deletion in a folder with files", ["b.txt"], [entry(1, "a", "")], [1], None),
    (
        "one deletion in an empty folder: a single file deleted is no emptied folder",
        [],
        [entry(1, "a", "")],
        [1],
        None,
    ),
    (
        "two deletions waiting and nothing left",
        [],
        [entry(1, "a", ""), entry(2, "b", "")],
        [1],
        "the sync folder {root} was emptied",
    ),
    (
        "only editor noise left counts as empty",
        [".a.txt.swp", "sub/.DS_Store"],
        [entry(1, "a", ""), entry(2, "b", "")],
        [1, 2],
        "the sync folder {root} was emptied",
    ),
    (
        "a file inside .git does not count",
        [".git/config"],
        [entry(1, "a", ""), entry(2, "b", "")],
        [1, 2],
        "the sync folder {root} was emptied",
    ),
    (
        "a file in a subfolder is a file",
        ["sub/c.txt"],
        [entry(1, "a", ""), entry(2, "b", "")],
        [1, 2],
        None,
    ),
]


@pytest.mark.parametrize(
    "contents,entries,batch,want", [r[1:] for r in GUARD], ids=[r[0] for r in GUARD]
)
def test_deletion_guard(tmp_path, contents, entries, batch, want):
    root = tmp_path / "folder"
    if contents is not None:
        root.mkdir()
        for name in contents:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text("x")
    s = sync(str(root))
    for e in entries:
        s.entries[e.seq] = e
    why = outbox.deletion_guard(s, [s.entries[seq] for seq in batch])
    if want is None:
        assert why is None
    else:
        assert why is not None and why.startswith(want.format(root=root))
        assert "nothing was deleted upstream" in why


# --- sending, and sending again -------------------------------------------------------------------


def test_send_marks_the_entry_sent_and_fills_in_a_missing_base():
    s = sync()
    s.files["a"] = FileRec(5, A, A, 0o600)
    e = entry(1, "a", B)
    e.base = None
    s.entries[1] = e
    item = outbox.send(s, e)
    assert (e.state, e.base, s.inflight) == ("sent", 5, {1})
    assert (item.localSeq, item.path, item.contentHash, item.baseIteration) == (
        1,
        "a",
        B,
        5,
    )
    assert (item.permissions, item.isDeletion, item.localPath) == (
        0o600,
        False,
        "/nowhere/a",
    )


REQUEUE = [
    # (what, in flight, entries present, expected requeued)
    ("nothing in flight", set(), [], []),
    ("what is in flight goes again", {1, 2}, [1, 2], [1, 2]),
    ("an entry settled meanwhile is skipped", {1, 2}, [2], [2]),
]


@pytest.mark.parametrize(
    "inflight,present,want", [r[1:] for r in REQUEUE], ids=[r[0] for r in REQUEUE]
)
def test_requeue(inflight, present, want):
    s = sync(inflight=set(inflight))
    for seq in present:
        s.entries[seq] = entry(seq, f"p{seq}", state="sent")
    again = outbox.requeue(s)
    assert sorted(e.seq for e in again) == want
    assert all(s.entries[seq].state == "pending" for seq in present)
    assert s.inflight == set()


TIMEOUTS = [
    ("nothing in flight never times out", set(), 0.0, 100.0, False),
    ("in flight, recently sent", {1}, 90.0, 100.0, False),
    ("in flight too long", {1}, 80.0, 100.0, True),
]


@pytest.mark.parametrize(
    "inflight,sent_at,now,want", [r[1:] for r in TIMEOUTS], ids=[r[0] for r in TIMEOUTS]
)
def test_timed_out(inflight, sent_at, now, want):
    assert outbox.timed_out(sync(inflight=inflight, sent_at=sent_at), now) is want


# --- a complete scan ------------------------------------------------------------------------------

SCAN = [
    # (what, tracked {path: local hash}, on disk, listed, materializing, expected deletions)
    ("listed: not deleted", {"a": A}, ["a"], ["a"], [], []),
    ("not listed and gone: deleted", {"a": A}, [], [], [], ["a"]),
    ("not listed but on disk: not deleted", {"a": A}, ["a"], [], [], []),
    ("never had a local file", {"a": ""}, [], [], [], []),
    ("being written", {"a": A}, [], [], ["a"], []),
    ("editor noise", {".a.swp": A}, [], [], [], []),
    (
        "ignored by .gitignore",
        {"build/x": A, ".gitignore": A},
        [".gitignore"],
        [".gitignore"],
        [],
        [],
    ),
]


@pytest.mark.parametrize(
    "tracked,disk,listed,writing,want", [r[1:] for r in SCAN], ids=[r[0] for r in SCAN]
)
def test_scan_end_finds_the_deletions(tmp_path, tracked, disk, listed, writing, want):
    for name in disk:
        (tmp_path / name).write_text("build/\n" if name == ".gitignore" else "x")
    s = sync(str(tmp_path))
    s.files = {p: FileRec(1, A, h) for p, h in tracked.items()}
    s.materializing = {p: Writing(1, A, 1) for p in writing}
    changes = [LocalFile(p, A, 1, 0o644) for p in listed]
    assert outbox.scan_end(s, changes, []) == want


def test_scan_end_forgets_local_failures_it_does_not_list(tmp_path):
    s = sync(str(tmp_path))
    s.failed = {
        "kept": Failure("kept", "r", "local", 0.0),
        "gone": Failure("gone", "r", "local", 0.0),
        "up": Failure("up", "r", "upstream", 0.0),
    }
    s.dirty = False
    outbox.scan_end(s, [LocalFile("kept", "!too_large", 1, 0)], [])
    assert sorted(s.failed) == ["kept", "up"] and s.dirty


# --- files that cannot go -------------------------------------------------------------------------

UNSYNCABLE = [
    # (what, listed before (direction, reason) or None, the file's hash,
    #  expected (direction, retries))
    ("a new failure is listed", None, A, ("local", 0)),
    (
        "its reason changed: listed again, one more try",
        ("local", "old"),
        A,
        ("local", 1),
    ),
    ("listed with that reason already: as it was", ("local", "same"), A, ("local", 0)),
    ("gone: its listing goes", ("local", "old"), "", None),
    ("gone, never listed: nothing", None, "", None),
    (
        "an upstream failure of the path stays",
        ("upstream", "disk full"),
        A,
        ("upstream", 0),
    ),
]


@pytest.mark.parametrize(
    "before,h,want", [r[1:] for r in UNSYNCABLE], ids=[r[0] for r in UNSYNCABLE]
)
def test_unsyncable(before, h, want):
    s = sync()
    reason_now = local_failure_reason("backslash")
    if before is not None:
        direction, reason = before
        s.failed["n"] = Failure(
            "n", reason_now if reason == "same" else reason, direction, 0.0
        )
    outbox.unsyncable(s, LocalFile("n", h, 1, 0o644), "n", "backslash", 1 << 20)
    fl = s.failed.get("n")
    assert (None if fl is None else (fl.direction, fl.retries)) == want


SYNCABLE = [
    ("a local failure goes", "local", False),
    ("an upstream failure stays", "upstream", True),
]


@pytest.mark.parametrize(
    "direction,stays", [r[1:] for r in SYNCABLE], ids=[r[0] for r in SYNCABLE]
)
def test_syncable(direction, stays):
    s = sync(failed={"n": Failure("n", "r", direction, 0.0)})
    outbox.syncable(s, "n")
    outbox.syncable(s, "other")
    assert ("n" in s.failed) is stays
