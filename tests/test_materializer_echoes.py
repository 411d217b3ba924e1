"""What the materializer tells the watcher of its writes (WritesAhead): every state a message
leaves, before it is written, with the (size, mtime, inode) the file has once in place."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import pytest
from apphelpers import wait_until
from treehelpers import supervised

from dim_actors.kernel.supervisor import ChildSpec
from dim_actors.messages import (
    Materialize,
    Materialized,
    MaterializeItem,
    WritesAbandoned,
    WritesAhead,
)
from dim_actors.sync.materializer import Materializer


def h(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(path: str, data: bytes, expected: str | None = "") -> MaterializeItem:
    return MaterializeItem(
        path, 1, h(data), len(data), content=data, expectedHash=expected
    )


@dataclass
class Case:
    name: str
    before: dict[str, bytes]
    items: list[MaterializeItem]
    told: list[tuple[str, str]]  # (path, hash) in the order told; "" a deletion
    outcomes: list[str]
    after: dict[str, bytes | None] = field(default_factory=dict)  # None: absent
    messages: int = 1  # WritesAhead sent
    content_only: int = 0  # writes told before their folders were made
    # symlinked folders: name -> target
    links: dict[str, str] = field(default_factory=dict)


CASES = [
    Case(
        "a new file in a new folder: told by its content before the folder is made",
        {},
        [write("src/a.py", b"print(1)\n")],
        [("src/a.py", h(b"print(1)\n")), ("src/a.py", h(b"print(1)\n"))],
        ["written"],
        {"src/a.py": b"print(1)\n"},
        messages=2,
        content_only=1,
    ),
    Case(
        "a deletion",
        {"old.txt": b"old"},
        [MaterializeItem("old.txt", 2, "", isDeletion=True, expectedHash=h(b"old"))],
        [("old.txt", "")],
        ["deleted"],
        {"old.txt": None},
    ),
    Case(
        "a rename of a local file: the target's state and the source's leaving",
        {"a.txt": b"moved"},
        [
            MaterializeItem(
                "b.txt",
                2,
                h(b"moved"),
                expectedHash="",
                renamedFrom="a.txt",
                renamedFromHash=h(b"moved"),
            )
        ],
        [("b.txt", h(b"moved")), ("a.txt", "")],
        ["written"],
        {"b.txt": b"moved", "a.txt": None},
    ),
    Case(
        "the content is there already: nothing to tell",
        {"same.txt": b"same"},
        [write("same.txt", b"same", expected=h(b"same"))],
        [],
        ["unchanged"],
        {"same.txt": b"same"},
        messages=0,
    ),
    Case(
        "the user changed the file: nothing written, nothing told",
        {"e.txt": b"the user's"},
        [write("e.txt", b"upstream's", expected=h(b"what we knew"))],
        [],
        ["local_changed"],
        {"e.txt": b"the user's"},
        messages=0,
    ),
    Case(
        "two writes to one path: the second waits for the first, each told before it",
        {},
        [write("p.txt", b"one"), write("p.txt", b"two", expected=h(b"one"))],
        [("p.txt", h(b"one")), ("p.txt", h(b"two"))],
        ["written", "written"],
        {"p.txt": b"two"},
        messages=2,
    ),
    Case(
        "several files: one message for all of them",
        {"gone.txt": b"x"},
        [
            write("d/1.txt", b"1"),
            write("d/2.txt", b"2"),
            MaterializeItem("gone.txt", 2, "", isDeletion=True, expectedHash=h(b"x")),
        ],
        # d/ is new: its first file is told ahead of the folder, the second finds it
        [
            ("d/1.txt", h(b"1")),
            ("d/1.txt", h(b"1")),
            ("d/2.txt", h(b"2")),
            ("gone.txt", ""),
        ],
        ["written", "written", "deleted"],
        {"d/1.txt": b"1", "d/2.txt": b"2", "gone.txt": None},
        messages=2,
        content_only=1,
    ),
    Case(
        "new folders below a symlinked folder that stays inside",
        {"real/keep.txt": b"k"},
        [write("link/new/x.txt", b"x")],
        [("link/new/x.txt", h(b"x")), ("link/new/x.txt", h(b"x"))],
        ["written"],
        {"real/new/x.txt": b"x", "link/new/x.txt": b"x"},
        messages=2,
        content_only=1,
        links={"link": "real"},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_watcher_is_told_every_write_before_it_is_made(tmp_path, case: Case):
    folder = os.path.realpath(tmp_path / "f")
    os.makedirs(folder)
    for rel, data in case.before.items():
        os.makedirs(os.path.dirname(os.path.join(folder, rel)), exist_ok=True)
        with open(os.path.join(folder, rel), "wb") as fh:
            fh.write(data)
    for name, target in case.links.items():
        os.symlink(target, os.path.join(folder, name))
    with supervised(
        tmp_path,
        [ChildSpec("materializer", Materializer)],
        ["materializer", "watcher", "journal", "connection"],
        period_s=30.0,
    ) as tree:
        tree.addresses.send(
            "test",
            "materializer",
            Materialize(sessionId="s1", localDir=folder, items=case.items),
        )
        journal, watcher = tree.addresses["journal"], tree.addresses["watcher"]
        results = wait_until(
            lambda: [
                r
                for env in list(journal.held)
                if isinstance(env.body, Materialized)
                for r in env.body.results
            ],
            30,
            what="the results",
        )
        told = [env.body for env in list(watcher.held)]
    assert [r.outcome for r in results] == case.outcomes
    ahead = [m for m in told if isinstance(m, WritesAhead)]
    assert len(ahead) == case.messages
    assert not [m for m in told if isinstance(m, WritesAbandoned)]
    writes = [w for m in ahead for w in m.writes]
    # Told ahead of a new folder by its content alone, its look follows later; every
    # other write is told with its look (a deletion has none).
    content_only = [i for i, w in enumerate(writes) if w.contentHash and w.sig is None]
    assert len(content_only) == case.content_only
    for i in content_only:
        w = writes[i]
        assert any(
            (v.path, v.contentHash) == (w.path, w.contentHash) and v.sig is not None
            for v in writes[i + 1 :]
        ), w
    assert [(os.path.relpath(w.path, folder), w.contentHash) for w in writes] == (
        case.told
    )
    for rel, data in case.after.items():
        full = os.path.join(folder, rel)
        if data is None:
            assert not os.path.lexists(full), rel
            continue
        with open(full, "rb") as fh:
            assert fh.read() == data, rel
        st = os.stat(full)
        # the watcher knows a file we wrote, as it is, without reading it
        for w in [w for w in writes if w.path == full][-1:]:
            assert w.sig == (st.st_size, st.st_mtime_ns, st.st_ino), rel
    assert not [
        n for _, _, names in os.walk(folder) for n in names if n.endswith(".tmp")
    ]


class SavedMeanwhile(Materializer):
    """The user saves each staged target in the window between the staging of our write
    and its rename (the writes are settled once the message is handled)."""

    def _settle(self) -> None:
        for p in self._pending:
            for w in p.writes:
                if w.contentHash:
                    with open(w.path, "wb") as fh:
                        fh.write(b"the user's save")
        super()._settle()


@pytest.mark.parametrize(
    "item",
    [
        write("e.txt", b"upstream's", expected=h(b"old")),
        MaterializeItem(
            "b.txt",
            2,
            h(b"moved"),
            expectedHash="",
            renamedFrom="a.txt",
            renamedFromHash=h(b"moved"),
        ),
    ],
    ids=["inline content", "a rename of a local file"],
)
def test_a_save_in_the_window_before_the_rename_stands_and_leaves_no_temp_file(
    tmp_path, item: MaterializeItem
):
    folder = os.path.realpath(tmp_path / "f")
    os.makedirs(folder)
    for rel, data in {"e.txt": b"old", "a.txt": b"moved"}.items():
        with open(os.path.join(folder, rel), "wb") as fh:
            fh.write(data)
    with supervised(
        tmp_path,
        [ChildSpec("materializer", SavedMeanwhile)],
        ["materializer", "watcher", "journal", "connection"],
        period_s=30.0,
    ) as tree:
        tree.addresses.send(
            "test",
            "materializer",
            Materialize(sessionId="s1", localDir=folder, items=[item]),
        )
        journal, watcher = tree.addresses["journal"], tree.addresses["watcher"]
        results = wait_until(
            lambda: [
                r
                for env in list(journal.held)
                if isinstance(env.body, Materialized)
                for r in env.body.results
            ],
            30,
            what="the results",
        )
        abandoned = wait_until(
            lambda: [
                w
                for env in list(watcher.held)
                if isinstance(env.body, WritesAbandoned)
                for w in env.body.writes
            ],
            30,
            what="the untold write",
        )
    assert [r.outcome for r in results] == ["local_changed"]
    target = os.path.join(folder, item.path)
    with open(target, "rb") as fh:
        assert fh.read() == b"the user's save"
    assert target in [w.path for w in abandoned]
    assert not [n for n in os.listdir(folder) if n.endswith(".tmp")], os.listdir(folder)
    if item.renamedFrom:  # the local file that was to move is where it was
        with open(os.path.join(folder, "a.txt"), "rb") as fh:
            assert fh.read() == b"moved"
