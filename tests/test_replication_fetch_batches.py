"""Fetched content in bursts: the dev gateway answers a burst whole and in order while
it reads it in growing trips, and a Link hands its files up small first, then in bigger
batches (over real sockets, the dev gateway, real spool files)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import test_sync_replication
from test_sync_mirror import Controls, start_link
from test_sync_replication import WAIT_S, Replica

from dim_actors.connection.replication import FIRST_READY_BATCH, READY_BATCH
from dim_actors.devgateway.replication import FIRST_FETCH_BYTES, FIRST_PAGE
from dim_actors.messages import ContentReady, FetchContent
from dim_actors.wire import replication as wire

FILE_BYTES = 20_000  # over the inline limit: fetched by hash

# fixtures: the dev gateway of this module, and an authenticated client of it
gw = test_sync_replication.gw
client = test_sync_replication.client


def workspace(gw, client, files: int) -> tuple[str, dict[str, bytes]]:
    """A new session whose workspace holds `files` distinct files; its id and their
    contents by hash."""
    sid = client.new_session("coding-agent")
    contents = {}
    for i in range(files):
        data = os.urandom(FILE_BYTES)
        contents[hashlib.sha256(data).hexdigest()] = data
        gw.call(lambda g, i=i, d=data: g.sessions[sid].workspace.write(f"f{i}.bin", d))
    return sid, contents


def test_a_burst_of_fetches_is_answered_whole_and_in_order(gw, client):
    # far more than the first trip's budget: the answers span many growing trips, the
    # rest of each batch going back first in line
    sid, contents = workspace(gw, client, 300)
    assert 300 * FILE_BYTES > 8 * FIRST_FETCH_BYTES
    r = Replica(gw.url, sid, token="sekrit")
    try:
        wanted = list(contents)
        for h in wanted:
            r.send(wire.ContentFetchRequest(contentHash=h))
        got = []
        while len(got) < len(wanted):
            m = r.recv()
            if isinstance(m, wire.ContentFetchResponse):
                assert m.offset == 0 and m.last
                got.append(m)
        assert [m.contentHash for m in got] == wanted
        assert all(m.data == contents[m.contentHash] for m in got)
    finally:
        r.close()


def test_a_long_catch_up_comes_in_growing_pages_each_closed_by_a_heartbeat(gw, client):
    sid = client.new_session("coding-agent")
    files = FIRST_PAGE + 300
    for i in range(files):
        gw.call(lambda g, i=i: g.sessions[sid].workspace.write(f"s{i}.txt", b"x%d" % i))
    r = Replica(gw.url, sid, token="sekrit")
    try:
        r.send(wire.CatchupRequest(sinceSequence=0))
        msgs = []
        while not msgs or not (
            isinstance(msgs[-1], wire.Heartbeat)
            and len([m for m in msgs if isinstance(m, wire.Notification)]) == files
        ):
            msgs.append(r.recv())
        notes = [m for m in msgs if isinstance(m, wire.Notification)]
        assert [n.filepath for n in notes] == [f"s{i}.txt" for i in range(files)]
        assert [n.sequence for n in notes] == sorted(n.sequence for n in notes)
        # the first page is closed (the replica can start on it) before the rest comes
        beats = [
            (i, m.sequence)
            for i, m in enumerate(msgs)
            if isinstance(m, wire.Heartbeat) and m.sequence
        ]
        assert beats[0] == (FIRST_PAGE, notes[FIRST_PAGE - 1].sequence)
        assert beats[-1][1] == notes[-1].sequence
    finally:
        r.close()


def wait_ready(controls: Controls, files: int) -> list[ContentReady]:
    """The ContentReady messages a Link handed up, once they hold `files` files in all."""

    def ready(items: list) -> list[ContentReady]:
        return [m for m in items if isinstance(m, ContentReady)]

    return ready(
        controls.wait(
            lambda items: sum(len(m.items) for m in ready(items)) >= files and items,
            f"{files} fetched files handed up",
            WAIT_S,
        )
    )


def test_a_links_fetched_files_come_up_small_first_then_in_bigger_batches(
    gw, client, tmp_path: Path
):
    sid, contents = workspace(gw, client, 200)
    link, controls = start_link(gw, sid, tmp_path, "sekrit")
    try:
        hashes = list(contents)
        link.put(FetchContent(sessionId=sid, hashes=hashes))
        first = wait_ready(controls, 200)
        sizes = [len(m.items) for m in first]
        # the first files go up at once, each next batch twice the last, the rest when
        # nothing more is wanted
        assert sizes == [8, 16, 32, 64, 64, 16]
        assert sizes[0] == FIRST_READY_BATCH and max(sizes) == READY_BATCH
        items = [it for m in first for it in m.items]
        assert [it.contentHash for it in items] == hashes
        for it in items:
            assert it.error == "" and it.size == FILE_BYTES
            assert Path(it.spoolPath).read_bytes() == contents[it.contentHash]
            # read, verified and put in place by the materializer (here: by the test)
            os.unlink(it.spoolPath)

        # a new burst starts small again
        more = hashes[:10]
        link.put(FetchContent(sessionId=sid, hashes=more))
        second = wait_ready(controls, 210)[len(first) :]
        assert [len(m.items) for m in second] == [8, 2]
        assert [it.contentHash for m in second for it in m.items] == more
    finally:
        link.stop()
