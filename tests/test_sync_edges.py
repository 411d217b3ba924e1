"""Sync at its edges: a folder that cannot be made, an accept_upstream that cannot be
written (end to end: a real dim-desktop, a real dev gateway, real folders, a read-only
tmpfs, the immutable attribute; root, as CI has), and the watcher's scan steps over big
files and its progress (in-process: the real watcher under a real supervisor)."""

from __future__ import annotations

import time

import pytest
from apphelpers import App, InvokeError, wait_until
from diskhelpers import immutable, small_disk
from faulty_watcher import FaultyWatcher, WatcherFaults
from synchelpers import failed, new_session, start, status, upstream
from treehelpers import supervised, watching_folder

from dim_actors.devgateway import BackgroundGateway
from dim_actors.kernel.supervisor import ChildSpec
from dim_actors.messages import LocalChanges, WatchFolder
from dim_actors.sync import watcher as watcher_mod
from dim_actors.sync.hashing import file_hash
from dim_actors.sync.wiring import WatcherMemory


@pytest.fixture
def app(gw_app):
    return gw_app  # against the module's dev gateway (conftest.gw), not an embedded one


@pytest.fixture
def read_only_disk(tmp_path):
    with small_disk(tmp_path / "ro", size="1m", read_only=True) as folder:
        yield folder


def refusal(app: App, sid: str, folder: str) -> dict:
    with pytest.raises(InvokeError) as e:
        app.invoke("start_sync", sessionId=sid, localDir=folder, timeout=30)
    return e.value.body["error"]


# --- start_sync on a folder that cannot be made or read -------------------------------


def test_start_sync_on_a_folder_that_cannot_be_made_is_refused_in_words(
    app, tmp_path, read_only_disk
):
    sid = new_session(app)
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    cases = [
        (str(a_file / "sync"), "a file is in the way"),
        (str(read_only_disk / "sync"), "the disk is read-only"),
    ]
    for folder, words in cases:
        # a second ask gets its answer too: nothing crashed in between
        for _ in range(2):
            err = refusal(app, sid, folder)
            assert err["code"] == "FOLDER_UNUSABLE", err
            assert folder in err["message"] and words in err["message"], err
    assert app.status()["journal"]["restarts"] == 0


# --- accept_upstream whose write fails ------------------------------------------------


def agent_write(gw: BackgroundGateway, sid: str, path: str, data: bytes) -> None:
    gw.call(lambda g: g.sessions[sid].workspace.write(path, data))


def conflicts(app: App, sid: str) -> list[str]:
    return [c["path"] for c in status(app, sid)["conflicts"]]


def test_accept_upstream_that_cannot_be_written_keeps_the_conflict_across_a_restart(
    gw, tmp_path
):
    # We run as root, which permission bits do not stop: the immutable attribute does
    # (EPERM).
    home = tmp_path / "home"
    home.mkdir()
    folder = tmp_path / "sync"
    locked = folder / "locked"
    app = App(home, ["--gateway", gw.url])
    try:
        app.wait_connected()
        sid = new_session(app)
        agent_write(gw, sid, "locked/notes.md", b"v1\n")
        start(app, sid, folder)
        wait_until(lambda: (locked / "notes.md").is_file(), 60, what="the first file")
        app.invoke("stop_sync", sessionId=sid)
        (locked / "notes.md").write_text("local notes\n")
        agent_write(gw, sid, "locked/notes.md", b"agent notes\n")
        start(app, sid, folder)
        wait_until(
            lambda: (locked / "notes.upstream-2.md").is_file(),
            60,
            what="the conflict copy",
        )
        wait_until(
            lambda: conflicts(app, sid) == ["locked/notes.md"], 30, what="the conflict"
        )
        with immutable(locked):
            app.invoke(
                "resolve_conflict",
                sessionId=sid,
                path="locked/notes.md",
                resolution="accept_upstream",
            )
            fl = wait_until(
                lambda: failed(app, sid).get("locked/notes.md"),
                30,
                what="the refused write listed",
            )
            assert "not permitted" in fl["reason"] and "choose again" in fl["reason"], (
                fl
            )
            assert conflicts(app, sid) == [
                "locked/notes.md"
            ]  # the choice is still open, not lost
            app.stop()
            app = App(home, ["--gateway", gw.url])
            wait_until(
                lambda: status(app, sid)["link"] == "connected",
                60,
                what="the sync link after the restart",
            )
            assert conflicts(app, sid) == ["locked/notes.md"]
            assert (locked / "notes.md").read_text() == "local notes\n"
        # the user chooses again, and now it is written; the local content never went
        # upstream
        app.invoke(
            "resolve_conflict",
            sessionId=sid,
            path="locked/notes.md",
            resolution="accept_upstream",
        )
        wait_until(
            lambda: (locked / "notes.md").read_text() == "agent notes\n",
            60,
            what="upstream accepted",
        )
        wait_until(
            lambda: not conflicts(app, sid) and not failed(app, sid),
            30,
            what="the conflict settled",
        )
        assert not (locked / "notes.upstream-2.md").exists()
        assert upstream(app, sid, "locked/notes.md") == "agent notes\n"
        assert status(app, sid)["heldWrites"] == 0
    finally:
        app.stop()


# --- the watcher's steps when files are big -------------------------------------------


class TimedWatcher(watcher_mod.Watcher):
    """The real watcher, each of whose scan steps is timed."""

    steps: list[float] = []

    def _scan_step(self, sid: str) -> None:
        t = time.monotonic()
        try:
            super()._scan_step(sid)
        finally:
            TimedWatcher.steps.append(time.monotonic() - t)


def test_a_scan_step_of_big_files_ends_near_its_deadline(tmp_path, monkeypatch):
    step_s = 0.05
    monkeypatch.setattr(watcher_mod, "STEP_S", step_s)
    folder = tmp_path / "f"
    folder.mkdir()
    for i in range(40):  # sparse: 16 MiB each to read and hash, nothing on disk
        with open(folder / f"big{i:02}.bin", "wb") as fh:
            fh.truncate(16 << 20)
    one = max(_timed(lambda: file_hash(folder / "big00.bin")) for _ in range(3))
    TimedWatcher.steps = []
    with watching_folder(tmp_path, folder, TimedWatcher) as tree:
        journal = tree.addresses["journal"]
        listing = wait_until(
            lambda: next(
                (
                    env.body.changes
                    for env in list(journal.held)
                    if isinstance(env.body, LocalChanges) and env.body.scan
                ),
                None,
            ),
            60,
            what="the scan's listing",
        )
    assert len(listing) == 40
    # A step ends at the first file read past its deadline: over it by one file's hash
    # at most (a few allowed for a loaded machine), not by the whole folder's (40 of
    # them).
    assert max(TimedWatcher.steps) < step_s + 5 * one + 0.1, (TimedWatcher.steps, one)


def _timed(fn) -> float:
    t = time.monotonic()
    fn()
    return time.monotonic() - t


# --- the scan's progress is the first look's only -------------------------------------


class ProgressWatcher(FaultyWatcher):
    """The real watcher, noting at each scan step how many listings it has sent and
    whether a scan's progress is shown; a folder named sub counts as unwatched."""

    faults = WatcherFaults(unwatched="sub")

    seen: list[tuple[int, bool]] = []
    listings = 0

    def _scan_step(self, sid: str) -> None:
        ProgressWatcher.seen.append(
            (ProgressWatcher.listings, sid in self.scan_progress)
        )
        super()._scan_step(sid)

    def _report(self, f, changes, scan: bool = False) -> None:
        super()._report(f, changes, scan=scan)
        ProgressWatcher.listings += scan


def test_only_the_first_look_at_a_folder_shows_scan_progress(tmp_path, monkeypatch):
    # A folder polled (a folder counts as unwatched) is rescanned at every poll: those
    # rescans are not the first look, and the panel does not show them as one.
    monkeypatch.setattr(watcher_mod, "STEP_FILES", 5)
    monkeypatch.setattr(watcher_mod, "POLL_S", 0.1)
    folder = tmp_path / "f"
    (folder / "sub").mkdir(parents=True)
    for i in range(40):
        (folder / f"f{i:02}.txt").write_text(str(i))
    ProgressWatcher.seen, ProgressWatcher.listings = [], 0
    with supervised(
        tmp_path,
        [ChildSpec("watcher", ProgressWatcher, wiring=WatcherMemory())],
        ["watcher", "journal"],
        period_s=30.0,
    ) as tree:
        tree.addresses.send(
            "test", "watcher", WatchFolder(sessionId="s1", localDir=str(folder))
        )
        wait_until(
            lambda: ProgressWatcher.listings >= 3,
            60,
            what="two rescans after the first look",
        )
    first = [shown for n, shown in ProgressWatcher.seen if n == 0]
    later = [shown for n, shown in ProgressWatcher.seen if n in (1, 2)]
    assert first and all(first), ProgressWatcher.seen
    assert later and not any(later), ProgressWatcher.seen
