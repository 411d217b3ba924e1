"""Sync of a big folder: long work goes in bounded steps, and what is declared hung lets
go.

* end to end: a real dim-desktop with a low hang timeout syncs a folder of 10,000 files
  to a real dev gateway; every file arrives, no actor is restarted, and sync_status
  answers while the scan runs, showing how far it has come;
* in-process: a real supervisor and the real journal on a real SQLite file; the first
  instance stalls in the middle of a step while it holds the database's write lock, is
  declared hung and replaced; its successor is not blocked by it (it writes once the old
  one reaches its next step boundary).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from apphelpers import App, wait_until, write_settings
from synchelpers import make_tree
from treehelpers import supervised

from dim_actors.devgateway import BackgroundGateway
from dim_actors.kernel.supervisor import CheckHealth, ChildSpec, Status
from dim_actors.messages import JournalRecord, LocalChanges, LocalFile, SyncCommand
from dim_actors.sync import journal as journal_mod
from dim_actors.sync import watcher as watcher_mod
from dim_actors.sync.wiring import WatcherMemory

FILES = 10_000


def test_a_big_folder_syncs_in_steps_without_a_hang(tmp_path):
    folder = tmp_path / "big"
    make_tree(folder, FILES)
    home = tmp_path / "home"
    # Low enough that the whole scan in one message is declared hung on this machine (it
    # was: the watcher's, over 2 s for 10,000 files), high enough for any one step.
    write_settings(home, "hang_timeout_s = 2.0\n")
    with BackgroundGateway(rate_limit=100_000, data_dir=tmp_path / "gateway") as gw:
        app = App(home, ["--gateway", gw.url])
        try:
            app.wait_connected()
            sid = app.invoke("create_session", agentType="coding-agent")["session"][
                "id"
            ]
            seen: list[dict] = []
            slowest = [0.0]
            done = threading.Event()

            def probe() -> None:
                while not done.is_set():
                    t = time.monotonic()
                    try:
                        st = app.invoke("sync_status", sessionId=sid, timeout=30)
                    except Exception:
                        st = {}
                    slowest[0] = max(slowest[0], time.monotonic() - t)
                    if st.get("scan"):
                        seen.append(st["scan"])
                    done.wait(0.1)

            app.invoke("start_sync", sessionId=sid, localDir=str(folder), confirm=True)
            prober = threading.Thread(target=probe, daemon=True)
            prober.start()

            def arrived() -> bool:
                st = app.invoke("sync_status", sessionId=sid)
                return (
                    st["filesTracked"] == FILES
                    and st["pendingWrites"] == 0
                    and not st.get("scan")
                )

            wait_until(
                arrived,
                120,
                interval=0.5,
                what="every file journaled and accepted upstream",
            )
            done.set()
            prober.join(30)
            files = app.invoke("list_files", sessionId=sid)["files"]
            assert sum(1 for f in files if f["type"] == "file") == FILES
            rows = app.invoke("actor_status")
            assert {r["name"]: r["restarts"] for r in rows if r["restarts"]} == {}, rows
            assert not [r for r in rows if "hung" in (r.get("lastError") or "")], rows
            # progress was visible while the scan ran, and sync_status never waited
            # behind it
            assert seen, "sync_status never showed the scan under way"
            assert {s["phase"] for s in seen} <= {"listing", "indexing"}
            indexing = [s for s in seen if s["phase"] == "indexing"]
            assert all(
                s["total"] == FILES and 0 <= s["done"] <= FILES for s in indexing
            ), indexing
            assert slowest[0] < 2.0, f"a sync_status took {slowest[0]:.2f}s"
        finally:
            app.stop()


# --- a superseded journal and its successor -------------------------------------------


class StallingJournal(journal_mod.Journal):
    """The real journal, whose first instance stalls on a gate in the middle of its
    first step: at that point it has written rows in that step's transaction, so it
    holds the write lock."""

    gate = threading.Event()
    stalled = threading.Event()
    threads: list[threading.Thread] = []
    calls = 0

    def on_start(self) -> None:
        StallingJournal.threads.append(threading.current_thread())
        super().on_start()

    def _local(self, s, lf) -> None:
        super()._local(s, lf)
        if len(StallingJournal.threads) == 1:
            StallingJournal.calls += 1
            if StallingJournal.calls == 300:
                StallingJournal.stalled.set()
                StallingJournal.gate.wait(60)


@pytest.fixture
def journal_system(tmp_path):
    StallingJournal.gate.clear()
    StallingJournal.stalled.clear()
    StallingJournal.threads, StallingJournal.calls = [], 0
    # The others only receive (held).
    with supervised(
        tmp_path,
        [ChildSpec("journal", StallingJournal)],
        ["journal", "watcher", "connection", "uibridge"],
        period_s=30.0,
        hang_timeout_s=0.5,
    ) as tree:
        try:
            yield tree.sup, tree.addresses, tree.home
        finally:
            StallingJournal.gate.set()


def test_a_superseded_journal_does_not_block_its_successor(journal_system, tmp_path):
    sup, addresses, home = journal_system
    j = addresses["journal"]
    folder = tmp_path / "folder"
    folder.mkdir()
    addresses.send(
        "test",
        "journal",
        SyncCommand(
            reqId=1,
            command="start_sync",
            args={"sessionId": "s1", "localDir": str(folder)},
        ),
    )
    # a first scan's listing: more than one step's worth of files
    changes = [
        LocalFile(f"f{i:05}.txt", f"{i:064x}", 10, 0o644)
        for i in range(3 * journal_mod.STEP_FILES)
    ]
    addresses.send(
        "test", "journal", LocalChanges(sessionId="s1", changes=changes, scan=True)
    )
    assert StallingJournal.stalled.wait(30), "the journal never reached the stall"
    db = home.data_dir / "journal.sqlite"

    def replaced() -> bool:
        if j.stats.restarts == 1 and j.state == "running":
            return True
        sup.tell(CheckHealth())
        return False

    wait_until(
        replaced,
        30,
        interval=0.1,
        what="the stalled journal to be declared hung and replaced",
    )
    assert "hung" in j.stats.last_error
    old = StallingJournal.threads[0]
    assert old.is_alive()
    # The successor writes while the old instance still holds the write lock: it waits
    # (the busy timeout), and gets the lock once the old one, let go of, reaches its
    # next step boundary.
    addresses.send(
        "test",
        "journal",
        JournalRecord(sessionId="s1", origin="local", path="after-the-hang"),
    )
    # the scenario, not a wait: the successor is now waiting for the lock
    time.sleep(0.3)
    StallingJournal.gate.set()
    wait_until(lambda: not old.is_alive(), 30, what="the old instance to stop")

    def written() -> bool:
        with sqlite3.connect(db, timeout=30) as conn:
            return (
                conn.execute(
                    "SELECT COUNT(*) FROM changes WHERE path = 'after-the-hang'"
                ).fetchone()[0]
                == 1
            )

    wait_until(written, 30, what="the successor's write")
    sup.ask(Status())
    # no crash loop
    assert j.stats.restarts == 1 and j.state == "running", j.stats.last_error
    with sqlite3.connect(db, timeout=30) as conn:
        # the stalled step was rolled back: none of its files were recorded by the old
        # instance
        assert (
            conn.execute(
                "SELECT COUNT(*) FROM changes WHERE path LIKE 'f%'"
            ).fetchone()[0]
            == 0
        )


@pytest.mark.parametrize(
    "case",
    [
        # (files in the folder, most files a step may look at): the steps cover every
        # file exactly once
        (0, 2000),
        (1, 2000),
        (1999, 2000),
        (2000, 2000),
        (4001, 2000),
        (250, 64),
    ],
)
def test_watcher_scan_steps_list_every_file_once(tmp_path, case, monkeypatch):
    files, step = case
    monkeypatch.setattr(watcher_mod, "STEP_FILES", step)
    folder = tmp_path / "f"
    folder.mkdir()
    make_tree(folder, files)
    got = _scan_listing(folder)
    assert sorted(lf.path for lf in got) == sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()
    )


def test_a_restarted_watcher_rescans_in_steps(tmp_path, monkeypatch):
    # A new watcher rescans every folder it was watching. That whole scan ran inside
    # on_start, which the supervisor gives 15 s: a big folder's made every new watcher
    # "not started", again and again. Now on_start does one step at most.
    monkeypatch.setattr(watcher_mod, "STEP_FILES", 50)
    folder = tmp_path / "f"
    folder.mkdir()
    make_tree(folder, 2000)
    handled: list[int] = []
    got = _scan_listing(folder, restarted=True, handled=handled)
    assert len(got) == 2000
    # a ScanStep for each step after the one in on_start
    assert handled[0] >= 2000 // 50 - 1


def _scan_listing(
    folder: Path, restarted: bool = False, handled: list[int] | None = None
) -> list[LocalFile]:
    """Run a real Watcher under a real supervisor and return the listing its full scan
    sends: asked with WatchFolder, or (restarted) as a new watcher finds the folder in
    what its predecessor watched."""
    wanted = {"s1": str(folder)} if restarted else {}
    wiring = WatcherMemory(folders=wanted)
    from dim_actors.messages import WatchFolder

    with supervised(
        folder.parent,
        [ChildSpec("watcher", watcher_mod.Watcher, wiring=wiring)],
        ["watcher", "journal"],
        period_s=30.0,
    ) as tree:
        addresses = tree.addresses
        if not restarted:
            addresses.send(
                "test", "watcher", WatchFolder(sessionId="s1", localDir=str(folder))
            )
        journal = addresses["journal"]

        def listing():
            for env in list(journal.held):
                if isinstance(env.body, LocalChanges) and env.body.scan:
                    return (env.body.changes,)  # truthy even when empty
            return None

        got = wait_until(listing, 60, what="the scan's listing")[0]
        if handled is not None:
            handled.append(addresses["watcher"].handled())
        return got


@pytest.mark.parametrize(
    "ops",
    [
        # (op, seq, path): "set" adds or replaces, "del" / "pop" remove, "clear" empties
        [("set", 1, "a"), ("set", 2, "a"), ("set", 3, "b")],
        [
            ("set", 1, "a"),
            ("set", 1, "b"),
        ],  # replaced under the same id: indexed under its new path only
        [
            ("set", 1, "a"),
            ("set", 2, "a"),
            ("del", 1, ""),
            ("pop", 2, ""),
            ("pop", 9, ""),
        ],
        [("set", 1, "a"), ("set", 2, "b"), ("clear", 0, ""), ("set", 3, "a")],
    ],
)
def test_entries_index_by_path_matches_a_scan_of_every_entry(ops):
    entries = journal_mod.Entries()
    for op, seq, path in ops:
        if op == "set":
            entries[seq] = journal_mod.Entry(
                seq, path, "h", 0, 0o644, False, "pending", 0.0, 0
            )
        elif op == "del":
            del entries[seq]
        elif op == "pop":
            entries.pop(seq, None)
        else:
            entries.clear()
    for path in ("a", "b", "c"):
        assert entries.of_path(path) == [e for e in entries.values() if e.path == path]
        assert entries.has_path(path) == any(e.path == path for e in entries.values())
