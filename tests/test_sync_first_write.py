"""A new sync's first files are written before its folder is watched; the watch then
starts with one scan that knows those files by how they were left. What happens in the
folder meanwhile must still count: a user's edit is uploaded and never overwritten, a
file the agent changes meanwhile ends as its newest state, nothing written is sent back.

A real dim-desktop and a real dev gateway; the gateway's content answers are held (its
`content_lock`) to keep the first materialization from finishing while the test acts.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from apphelpers import App, wait_until
from synchelpers import history_of, new_session, status, upstream

from dim_actors.devgateway import BackgroundGateway
from dim_actors.sync.paths import Confiner, UnsafePath

BIG = 3 * 4096  # over the inline limit: fetched by hash


@pytest.fixture(scope="module")
def sapp(gw, tmp_path_factory):
    a = App(tmp_path_factory.mktemp("dim-home"), ["--gateway", gw.url])
    a.wait_connected()
    yield a
    a.stop()


def agent_write(gw: BackgroundGateway, sid: str, path: str, data: bytes) -> None:
    gw.call(lambda g: g.sessions[sid].workspace.write(path, data))


def hold_content(gw: BackgroundGateway) -> None:
    async def hold(g):
        await g.replication.content_lock.acquire()

    gw.call(hold)


def release_content(gw: BackgroundGateway) -> None:
    gw.call(lambda g: g.replication.content_lock.release())


def big(tag: str) -> bytes:
    return (tag * (BIG // len(tag) + 1)).encode()[:BIG]


def on_disk(path: Path, data: bytes) -> bool:
    try:
        return path.read_bytes() == data
    except OSError:
        return False


def test_what_happens_while_the_first_files_are_written_still_counts(
    sapp, gw, tmp_path
):
    folder = tmp_path / "sync"
    sid = new_session(sapp)
    for i in range(20):
        agent_write(gw, sid, f"big/f{i:02}.bin", big(f"big {i} "))
    agent_write(gw, sid, "small.txt", b"the agent's small file\n")
    agent_write(gw, sid, "agent.txt", b"agent v1\n")
    hold_content(gw)
    released = False
    try:
        sapp.invoke("start_sync", sessionId=sid, localDir=str(folder))
        # the inline files land; the fetched ones wait for the held content
        wait_until(
            lambda: (
                on_disk(folder / "small.txt", b"the agent's small file\n")
                and on_disk(folder / "agent.txt", b"agent v1\n")
                and status(sapp, sid)["filesTracked"] >= 2
            ),
            60,
            what="the inline files on disk",
        )
        assert not (folder / "big").exists()
        # the status says the folder is not watched yet
        assert status(sapp, sid)["watching"] is False
        # meanwhile: the user edits a written file and makes one of their own; the
        # agent changes another
        tmp = folder / ".small.txt.swp"
        tmp.write_bytes(b"the user's edit\n")
        os.replace(tmp, folder / "small.txt")
        (folder / "mine.txt").write_bytes(b"the user's own file\n")
        agent_write(gw, sid, "agent.txt", b"agent v2\n")
        wait_until(
            lambda: on_disk(folder / "agent.txt", b"agent v2\n"),
            60,
            what="the agent's second state on disk",
        )
        release_content(gw)
        released = True
    finally:
        if not released:
            release_content(gw)
    wait_until(
        lambda: all(
            on_disk(folder / f"big/f{i:02}.bin", big(f"big {i} ")) for i in range(20)
        ),
        60,
        what="the fetched files on disk",
    )
    wait_until(
        lambda: (
            upstream(sapp, sid, "small.txt") == "the user's edit\n"
            and upstream(sapp, sid, "mine.txt") == "the user's own file\n"
        ),
        60,
        what="the user's changes upstream",
    )
    wait_until(
        lambda: status(sapp, sid)["pendingWrites"] == 0, 60, what="nothing pending"
    )
    assert status(sapp, sid)["watching"] is True
    # the user's edit stands, here and upstream; the agent's newest state is here
    assert (folder / "small.txt").read_bytes() == b"the user's edit\n"
    assert (folder / "agent.txt").read_bytes() == b"agent v2\n"
    assert upstream(sapp, sid, "agent.txt") == "agent v2\n"
    # nothing written here went back up: two write-backs (the user's), no new
    # iteration of what the agent wrote, no echo leaked, no conflict
    st = status(sapp, sid)
    assert st["stats"]["writeBacksAccepted"] == 2, st["stats"]
    assert st["stats"]["echoesLeaked"] == 0
    assert st["stats"]["conflicts"] == 0
    assert len(history_of(sapp, sid, "agent.txt")) == 2
    assert len(history_of(sapp, sid, "big/f03.bin")) == 1
    assert st["filesTracked"] == 23


def test_a_file_changed_after_its_write_but_before_the_watch_is_uploaded(
    sapp, gw, tmp_path
):
    """The scan that starts the watch reads a file whose (size, mtime, inode) is not the
    one the materializer left, even when its size is the same."""
    folder = tmp_path / "sync"
    sid = new_session(sapp)
    agent_write(gw, sid, "a.bin", big("aaaa"))
    agent_write(gw, sid, "b.bin", big("bbbb"))
    agent_write(gw, sid, "c.txt", b"cccc\n")
    hold_content(gw)
    try:
        sapp.invoke("start_sync", sessionId=sid, localDir=str(folder))
        wait_until(
            lambda: (
                on_disk(folder / "c.txt", b"cccc\n")
                and status(sapp, sid)["filesTracked"] >= 1
            ),
            60,
            what="c.txt on disk",
        )
        # in place, same size: only its mtime (and content) tells
        with open(folder / "c.txt", "r+b") as f:
            f.write(b"CCCC\n")
        st = os.stat(folder / "c.txt")
        os.utime(folder / "c.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    finally:
        release_content(gw)
    wait_until(
        lambda: upstream(sapp, sid, "c.txt") == "CCCC\n", 60, what="c.txt's edit up"
    )
    assert on_disk(folder / "a.bin", big("aaaa"))
    assert on_disk(folder / "b.bin", big("bbbb"))


def test_confiner_refuses_what_leads_out_as_confined_does(tmp_path):
    root = tmp_path / "sync"
    (root / "in").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "out").symlink_to(tmp_path / "outside")
    (root / "inner").symlink_to(root / "in")
    (root / "in" / "link.txt").symlink_to(root / "in" / "x")
    c = Confiner(root)
    for ok in ("a.txt", "in/a.txt", "inner/a.txt", "new/deep/a.txt"):
        c.check(ok)
    for bad in ("out/a.txt", "out/deep/a.txt", "in/link.txt", "inner/link.txt"):
        with pytest.raises(UnsafePath):
            c.check(bad)
    # asked again (cached per folder): the same answers
    c.check("in/b.txt")
    with pytest.raises(UnsafePath):
        c.check("out/b.txt")
    # a sibling whose name starts with the folder's is not inside it
    (tmp_path / "sync2").mkdir()
    (root / "sib").symlink_to(tmp_path / "sync2")
    with pytest.raises(UnsafePath):
        Confiner(root).check("sib/a.txt")
