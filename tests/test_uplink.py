"""The connection process's way out (dim_actors/connection/uplink.py) over a real pipe, read
as the supervisor reads it (dim_actors/connection/pipeframes.py, messages/pipe.py): every
item, event or control message, arrives once and in order, whether it left batched in a
burst, alone at a steady pace, or spilled to disk and read back."""

from __future__ import annotations

import multiprocessing
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dim_actors.connection.pipeframes import PipeFrames
from dim_actors.connection.uplink import Uplink
from dim_actors.messages import (
    CatchupGap,
    ConnectionState,
    GatewayEvent,
    PipeEvent,
    decode_up,
)


def event(i: int, size: int = 0) -> PipeEvent:
    raw = b'{"type":"text_delta","seq":%d,"text":"%s"}' % (i, b"x" * size)
    return PipeEvent(raw, "text_delta", "s1", i, None, i)


def control(i: int) -> ConnectionState:
    return ConnectionState(state="connected", detail=str(i))


def key(item: object) -> tuple:
    """What identifies an item sent by these tests, as the supervisor decodes it."""
    if type(item) is GatewayEvent:
        return ("event", item.seq, bytes(item.raw))
    if type(item) is ConnectionState:
        return ("control", item.detail)
    return ("other", type(item).__name__)


def sent_key(item: PipeEvent | ConnectionState) -> tuple:
    if type(item) is PipeEvent:
        return ("event", item.seq, item.raw)
    return ("control", item.detail)


class Reader:
    """The supervisor's end: reads frames on a thread of its own once started."""

    def __init__(self, conn) -> None:
        self.frames = PipeFrames(conn)
        self.got: list = []
        self.frame_count = 0
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while True:
            try:
                data = self.frames.recv_bytes()
            except (EOFError, OSError):
                return
            items = decode_up(data)
            with self.cond:
                self.frame_count += 1
                self.got.extend(items)
                self.cond.notify_all()

    def wait_for(self, n: int, timeout: float = 30) -> list:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.got) >= n, timeout), (
                f"{len(self.got)} of {n} items arrived"
            )
            return list(self.got)


def wait_until(cond: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def pipe_with_small_buffer() -> tuple:
    ours, theirs = multiprocessing.Pipe(duplex=True)
    # a small send buffer on the uplink's end, so that the pipe fills quickly
    s = socket.socket(fileno=theirs.fileno())
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    finally:
        s.detach()
    return ours, theirs


def test_a_burst_of_events_and_controls_arrives_in_order_and_batched():
    ours, theirs = multiprocessing.Pipe(duplex=True)
    up = Uplink(theirs, max_batch=64)
    # everything is waiting before the writer starts: it leaves in batches
    sent = [control(i) if i % 7 == 3 else event(i) for i in range(1000)]
    for item in sent:
        up.put_event(item)
    reader = Reader(ours)
    reader.thread.start()
    writer = threading.Thread(target=up.run, daemon=True)
    writer.start()
    got = reader.wait_for(len(sent))
    assert [key(g) for g in got] == [sent_key(s) for s in sent]
    assert reader.frame_count < len(sent) // 10  # batched, not one frame each
    up.close()
    writer.join(10)
    assert up.sent == len(sent)
    ours.close()
    theirs.close()


@pytest.mark.parametrize("duplex", [True, False], ids=["two-way-pipe", "one-way-pipe"])
def test_items_put_one_at_a_time_while_the_writer_is_idle_arrive_in_order(duplex):
    ours, theirs = multiprocessing.Pipe(duplex=duplex)
    up = Uplink(theirs)
    reader = Reader(ours)
    reader.thread.start()
    writer = threading.Thread(target=up.run, daemon=True)
    writer.start()
    sent: list = []
    for i in range(300):
        wait_until(lambda: up.waiting)
        item = control(i) if i % 5 == 0 else event(i)
        if i % 50 == 7:
            item = event(i, 100_000)  # more than the pipe holds at once
        up.put_event(item)
        sent.append(item)
        reader.wait_for(len(sent))
    assert [key(g) for g in reader.got] == [sent_key(s) for s in sent]
    up.close()
    writer.join(10)
    assert up.sent == len(sent)
    ours.close()
    theirs.close()


def test_past_the_memory_bound_items_spill_to_disk_and_come_back_in_order(
    tmp_path: Path,
):
    ours, theirs = pipe_with_small_buffer()
    spill = tmp_path / "uplink-1.spill"
    up = Uplink(theirs, max_batch=16, memory_limit=20_000, spill_path=spill)
    writer = threading.Thread(target=up.run, daemon=True)
    writer.start()
    sent: list = []
    for i in range(600):
        item = (
            CatchupGap(sessionId="s1", afterSeq=i, beforeSeq=i + 1, reason="test")
            if i % 11 == 0
            else event(i, 300)
        )
        up.put_event(item)
        sent.append(item)
    # nobody has read: the writer is stuck on the full pipe, and the rest went to disk
    assert up.spill is not None and up.spill.total > 0
    assert spill.exists()
    reader = Reader(ours)
    reader.thread.start()
    got = reader.wait_for(len(sent))

    def sent_key_gap(s: object) -> tuple:
        if type(s) is CatchupGap:
            return ("other", "CatchupGap", s.afterSeq)
        return sent_key(s)  # type: ignore[arg-type]

    def key_gap(g: object) -> tuple:
        if type(g) is CatchupGap:
            return ("other", "CatchupGap", g.afterSeq)
        return key(g)

    assert [key_gap(g) for g in got] == [sent_key_gap(s) for s in sent]
    up.close()
    writer.join(10)
    assert not spill.exists()
    ours.close()
    theirs.close()
