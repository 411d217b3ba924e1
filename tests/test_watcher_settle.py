"""When the watcher hands a local change over: at once when its writer is done (the file was
renamed into place, or closed after writing), only after the quiet period while it is still
being written, and never half-written. A real watcher on a real folder; the journal only holds
what it is told.

The quiet period is set far beyond any wait here, so what is reported before it has passed was
handed over because its writer was done, and what must wait is seen still waiting. The last
step of each test waits on a rename-save of another file (a barrier): events are handled in
the order they happen, so by then every earlier event of the folder has been looked at.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from apphelpers import wait_until
from treehelpers import watching_folder
from watchdog.events import FileSystemEvent, FileSystemEventHandler

from dim_actors.messages import FsEvent, LocalChanges
from dim_actors.sync import watcher as watcher_mod
from dim_actors.sync.watcher import SETTLE_S, Pending, pending_after

QUIET = 600.0  # the quiet period, and the longest wait: never pass in a test
WAIT = 60.0


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Folder:
    def __init__(self, root: Path, tree):
        self.root = root
        self.tree = tree
        self.journal = tree.addresses["journal"]
        self.barriers = itertools.count()

    def reported(self, rel: str) -> list[str]:
        """The hashes of `rel` reported as changes (not in a scan's listing), in order."""
        return [
            lf.hash
            for e in list(self.journal.held)
            if type(e.body) is LocalChanges and not e.body.scan
            for lf in e.body.changes
            if lf.path == rel
        ]

    def wait_reported(self, rel: str, data: bytes) -> None:
        wait_until(
            lambda: sha(data) in self.reported(rel), WAIT, what=f"{rel} reported"
        )

    def save(self, rel: str, data: bytes) -> None:
        """As an editor saves: a temp file, renamed over the file."""
        tmp = self.root / f".{rel}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, self.root / rel)

    def barrier(self) -> None:
        """Every event before this one has been looked at."""
        data = f"barrier {next(self.barriers)}".encode()
        self.save("barrier.txt", data)
        self.wait_reported("barrier.txt", data)


@contextlib.contextmanager
def watching(tmp_path: Path, monkeypatch, files: dict[str, bytes]) -> Iterator[Folder]:
    monkeypatch.setattr(watcher_mod, "QUIET_S", QUIET)
    monkeypatch.setattr(watcher_mod, "MAX_WAIT_S", QUIET)
    root = tmp_path / "f"
    root.mkdir()
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    with watching_folder(tmp_path, root) as tree:
        folder = Folder(root, tree)
        wait_until(
            lambda: any(
                type(e.body) is LocalChanges and e.body.scan
                for e in list(folder.journal.held)
            ),
            WAIT,
            what="the first scan",
        )
        folder.barrier()  # watched
        yield folder


def test_a_save_by_rename_goes_at_once_while_a_file_still_open_waits(
    tmp_path, monkeypatch
):
    with watching(tmp_path, monkeypatch, {"a.txt": b"a0", "b.txt": b"b0"}) as f:
        with open(f.root / "b.txt", "r+b") as b:
            b.truncate(0)
            b.write(b"b1, the first half")
            b.flush()
            f.save("a.txt", b"a1")
            f.wait_reported("a.txt", b"a1")
            f.barrier()
            # still open, quiet for less than the quiet period: not looked at yet
            assert f.reported("b.txt") == []
            b.write(b", and the second")
        f.wait_reported("b.txt", b"b1, the first half, and the second")
        f.barrier()
        assert f.reported("b.txt") == [sha(b"b1, the first half, and the second")]
        assert f.reported("a.txt") == [sha(b"a1")]
        assert f.reported(".a.txt.tmp") == []


def test_a_file_written_slowly_in_chunks_is_reported_only_whole(tmp_path, monkeypatch):
    chunks = [bytes([65 + i]) * 10_000 for i in range(5)]
    with watching(tmp_path, monkeypatch, {"slow.bin": b"old"}) as f:
        with open(f.root / "slow.bin", "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                out.flush()
                f.barrier()  # a pause while the writer is not done
        whole = b"".join(chunks)
        f.wait_reported("slow.bin", whole)
        f.barrier()
        assert f.reported("slow.bin") == [sha(whole)]


def test_an_editor_that_truncates_then_writes_in_place_is_never_reported_empty(
    tmp_path, monkeypatch
):
    with watching(tmp_path, monkeypatch, {"doc.txt": b"the old text\n"}) as f:
        with open(f.root / "doc.txt", "r+b") as doc:
            doc.truncate(0)
            doc.flush()
            f.barrier()
            doc.write(b"the new text\n")
        f.wait_reported("doc.txt", b"the new text\n")
        # the same with the truncation done by open (O_TRUNC)
        with open(f.root / "doc.txt", "wb") as doc:
            f.barrier()
            doc.write(b"newer still\n")
        f.wait_reported("doc.txt", b"newer still\n")
        f.barrier()
        assert f.reported("doc.txt") == [sha(b"the new text\n"), sha(b"newer still\n")]


def test_a_temp_file_closed_then_renamed_into_place_is_never_reported(
    tmp_path, monkeypatch
):
    with watching(tmp_path, monkeypatch, {"target.txt": b"old"}) as f:
        tmp = f.root / "target.txt.part"  # no editor-noise name: only its events tell
        tmp.write_bytes(b"new")  # created, written, closed
        f.barrier()
        assert f.reported("target.txt.part") == []
        os.replace(tmp, f.root / "target.txt")
        f.wait_reported("target.txt", b"new")
        f.barrier()
        assert f.reported("target.txt.part") == []
        assert f.reported("target.txt") == [sha(b"new")]


def test_a_file_written_to_while_it_is_read_is_looked_at_again_not_reported_half(
    tmp_path, monkeypatch
):
    hash_of = watcher_mod.file_hash
    torn: list[str] = []

    def written_while_read(path):
        digest = hash_of(path)
        if os.path.basename(path) == "log.txt" and not torn:
            torn.append(digest)
            with open(path, "ab") as out:  # another writer, while it was read
                out.write(b" and more")
        return digest

    monkeypatch.setattr(watcher_mod, "file_hash", written_while_read)
    with watching(tmp_path, monkeypatch, {}) as f:
        f.save("log.txt", b"some")
        f.wait_reported("log.txt", b"some and more")
        f.barrier()
        assert torn == [sha(b"some")]
        assert f.reported("log.txt") == [sha(b"some and more")]


def test_a_path_handed_over_is_not_looked_at_while_new_events_of_it_wait(
    tmp_path, monkeypatch
):
    """Between a path's hand-over and the watcher's look, a tool may write its temp file
    again: it is there for a moment, with events waiting. The look waits for them."""
    with watching(tmp_path, monkeypatch, {}) as f:
        (f.root / "out.part").write_bytes(b"half")  # created, closed: waits
        f.barrier()
        # as if its previous wait had just ended, with these events come since
        f.tree.addresses.send(
            "test", "watcher", FsEvent(sessionId="s1", paths=["out.part"])
        )
        f.barrier()
        assert f.reported("out.part") == []
        os.replace(f.root / "out.part", f.root / "out.bin")
        f.wait_reported("out.bin", b"half")


def test_a_save_that_writes_a_known_file_anew_goes_at_once(tmp_path, monkeypatch):
    """vim's and emacs's save: the file is moved to a backup, written anew, closed; the
    backup goes. Created and closed like a temp file, but where the watcher knows one."""
    with watching(tmp_path, monkeypatch, {"vim.txt": b"old\n"}) as f:
        os.rename(f.root / "vim.txt", f.root / "vim.txt~")
        with open(f.root / "vim.txt", "xb") as out:
            out.write(b"new\n")
        (f.root / "vim.txt~").unlink()
        f.wait_reported("vim.txt", b"new\n")
        # a file it does not know, made the same way, waits (a temp file, maybe)
        with open(f.root / "other.txt", "xb") as out:
            out.write(b"other\n")
        f.barrier()
        assert f.reported("vim.txt") == [sha(b"new\n")]
        assert f.reported("other.txt") == []


@pytest.mark.parametrize(
    "case, events, due, early",
    [
        ("a change waits the quiet period", [("change", 0.0)], 5.0, None),
        ("so does a file created", [("created", 0.0)], 5.0, None),
        (
            "a close after writing settles",
            [("change", 0.0), ("closed", 1.0)],
            1.0 + SETTLE_S,
            None,
        ),
        (
            "a rename into place settles",
            [("change", 0.0), ("moved_in", 1.0)],
            1.0 + SETTLE_S,
            None,
        ),
        (
            "a change after the close waits again",
            [("closed", 0.0), ("change", 1.0)],
            1.0 + 5.0,
            None,
        ),
        (
            "a file created then closed waits, or goes early where one is known",
            [("created", 0.0), ("change", 0.5), ("closed", 1.0)],
            1.0 + 5.0,
            1.0 + SETTLE_S,
        ),
        (
            "not after a change that follows",
            [("created", 0.0), ("closed", 1.0), ("change", 2.0)],
            2.0 + 5.0,
            None,
        ),
        (
            "created then renamed over: whole",
            [("created", 0.0), ("closed", 0.5), ("moved_in", 1.0)],
            1.0 + SETTLE_S,
            None,
        ),
    ],
)
def test_pending_after(case, events, due, early):
    p: Pending | None = None
    for kind, at in events:
        p = pending_after(p, kind, at, delay=5.0)
    assert p is not None
    assert p.due == pytest.approx(due), case
    assert p.early == (None if early is None else pytest.approx(early)), case
    assert p.first == events[0][1] and p.last == events[-1][1], case


def test_a_file_gone_starts_the_longest_wait_again():
    """A temp file written and renamed away over and over is never looked at by the
    longest wait (MAX_WAIT_S) in the middle of a round, while it is there."""
    p = None
    for at, kind in [
        (0.0, "created"),
        (0.1, "closed"),
        (0.2, "gone"),
        (0.3, "created"),
    ]:
        p = pending_after(p, kind, at, delay=5.0)
    assert p is not None and p.first == 0.2 and p.created and p.due == 5.3


class Recorder(FileSystemEventHandler):
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def dispatch(self, event: FileSystemEvent) -> None:
        self.events.append(
            (
                event.event_type,
                os.path.basename(os.fsdecode(event.src_path)),
                os.path.basename(os.fsdecode(getattr(event, "dest_path", "") or "")),
            )
        )


def test_watchdog_tells_a_close_after_writing_from_one_after_reading(tmp_path):
    """The contract the early hand-over rests on (pending_after): watchdog gives "closed"
    (inotify's IN_CLOSE_WRITE) only when a file open for writing is closed, never when a
    reader closes it (the watcher's own hashing reads every file it looks at), and a
    rename as "moved" naming where to. Else the installed watchdog would let a file
    still being written be looked at before its writer is done."""
    rec = Recorder()
    observer, _ = watcher_mod.start_observer(str(tmp_path), rec)
    try:
        (tmp_path / "probe").write_bytes(b"p")
        wait_until(lambda: ("closed", "probe", "") in rec.events, WAIT, what="probe")
        (tmp_path / "probe").read_bytes()
        (tmp_path / "w").write_bytes(b"w")
        os.replace(tmp_path / "w", tmp_path / "x")
        (tmp_path / "end").write_bytes(b"e")
        wait_until(lambda: ("closed", "end", "") in rec.events, WAIT, what="end")
    finally:
        observer.stop()
        observer.join(timeout=5)
    wd = f"watchdog {watcher_mod.WATCHDOG_VERSION}"
    after = rec.events[rec.events.index(("closed", "probe", "")) + 1 :]
    closed = [name for kind, name, _ in after if kind == "closed"]
    assert closed == ["w", "end"], f"{wd}: closes seen {after}"
    assert ("moved", "w", "x") in after, f"{wd}: no rename seen in {after}"


@pytest.mark.parametrize(
    "kinds, anew",
    [
        (["change"], False),
        (["change", "closed", "change"], False),  # a log written to for ever
        (["created"], True),  # a temp file written again
        (["change", "gone"], True),
        (["gone", "moved_in"], True),
    ],
)
def test_only_a_path_created_or_removed_since_its_hand_over_waits_for_its_look(
    kinds, anew
):
    """A path handed over whose new events only wrote to it is looked at all the same:
    a file written to without end is reported every MAX_WAIT_S, not when it stops."""
    debouncer = watcher_mod.Debouncer(lambda msg: None)
    try:
        for kind in kinds:
            debouncer.event("s1", "out.log", kind, delay=60.0)
        assert debouncer.written_anew("s1", "out.log") is anew
        assert not debouncer.written_anew("s1", "other.log")
    finally:
        debouncer.stop()
