"""The watcher's figures the journal shows (echo counts, scan progress): told by message, and told
again when a (restarted) journal asks."""

from __future__ import annotations

from apphelpers import wait_until
from treehelpers import supervised, watching_folder

from dim_actors.kernel.supervisor import ChildSpec
from dim_actors.messages import (
    EchoCounts,
    EchoWrite,
    ScanProgress,
    WatcherFiguresWanted,
    WritesAbandoned,
    WritesAhead,
)
from dim_actors.sync import watcher as watcher_mod
from dim_actors.sync.wiring import WatcherMemory


def test_a_journal_that_asks_is_told_the_echo_counts_again(tmp_path):
    memory = WatcherMemory()  # what a restarted watcher finds: counts from before
    memory.echoes.count("s1", "echoesSuppressed")
    memory.echoes.count("s1", "echoesSuppressed")
    memory.echoes.count("s1", "echoesLeaked")
    with supervised(
        tmp_path,
        [ChildSpec("watcher", watcher_mod.Watcher, wiring=memory)],
        ["watcher", "journal"],
        period_s=30.0,
    ) as tree:
        tree.addresses.send("test", "watcher", WatcherFiguresWanted())
        journal = tree.addresses["journal"]
        told = wait_until(
            lambda: [e.body for e in list(journal.held) if type(e.body) is EchoCounts],
            10,
            what="the echo counts",
        )
    assert told[0] == EchoCounts(sessionId="s1", suppressed=2, leaked=1)


def test_the_first_scan_is_told_as_it_goes_and_when_it_ends(tmp_path, monkeypatch):
    monkeypatch.setattr(watcher_mod, "STEP_FILES", 5)
    folder = tmp_path / "f"
    folder.mkdir()
    for i in range(12):
        (folder / f"{i:02}.txt").write_text(str(i))
    with watching_folder(tmp_path, folder) as tree:
        journal = tree.addresses["journal"]
        told = wait_until(
            lambda: (
                (
                    p := [
                        e.body
                        for e in list(journal.held)
                        if type(e.body) is ScanProgress
                    ]
                )
                and p[-1].listed is None
                and p
            ),
            30,
            what="the scan's end",
        )
    listed = [p.listed for p in told]
    assert listed[0] == 0 and listed[-1] is None
    steps = [n for n in listed if n is not None]
    assert steps == sorted(steps) and steps[-1] >= 10, listed


def test_writes_told_ahead_are_the_watchers_and_abandoned_ones_go(tmp_path):
    memory = WatcherMemory()
    path = str(tmp_path / "a.txt")
    with supervised(
        tmp_path,
        [ChildSpec("watcher", watcher_mod.Watcher, wiring=memory)],
        ["watcher", "journal"],
        period_s=30.0,
    ) as tree:
        tree.addresses.send(
            "test",
            "watcher",
            WritesAhead(sessionId="s1", writes=[EchoWrite(path, "h1", (1, 2, 3))]),
        )
        wait_until(lambda: memory.echoes.pending(path), 10, what="the write told")
        assert memory.echoes.wrote(path, "h1")
        tree.addresses.send(
            "test",
            "watcher",
            WritesAbandoned(sessionId="s1", writes=[EchoWrite(path, "h1")]),
        )
        wait_until(
            lambda: not memory.echoes.pending(path), 10, what="the write abandoned"
        )
        assert not memory.echoes.wrote(path, "h1")
