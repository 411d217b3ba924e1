"""The supervision core in-process, with real pykka actors: stable names, restarts, message logs."""

from __future__ import annotations

import threading
import time

import msgspec
import pytest

from dim_actors.home import DimHome
from dim_actors.messages import Crash, JournalRecord
from dim_actors.settings import Settings
from dim_actors.supervisor.actor import ActorContext, DimActor
from dim_actors.supervisor.addresses import Addresses
from dim_actors.supervisor.messagelog import MessageLogs
from dim_actors.supervisor.supervisor import ChildSpec, RestartChild, Status, StopAll, Supervisor

from apphelpers import wait_until


class Recorder(DimActor):
    """Records the paths of the JournalRecords it handles, slowly, so mailboxes fill up."""

    seen: list[str] = []
    lock = threading.Lock()

    def handle(self, sender, body):
        time.sleep(0.001)
        with Recorder.lock:
            Recorder.seen.append(body.path)


@pytest.fixture
def system(tmp_path):
    Recorder.seen = []
    logs = MessageLogs(tmp_path / "logs")
    addresses = Addresses(["rec"], logs)
    gave_up: list[str] = []
    home = DimHome(tmp_path)
    settings = Settings()
    sup_ref = None

    def ctx(name):
        return ActorContext(name, addresses, home, settings,
                            lambda n, e: sup_ref.tell(__import__("dim_actors.supervisor.supervisor",
                                                                 fromlist=["ChildFailed"]).ChildFailed(n, e)), {})

    sup_ref = Supervisor.start([ChildSpec("rec", Recorder)], addresses, ctx, 3, 5.0, gave_up.append)
    sup_ref.ask(Status())
    yield sup_ref, addresses, logs, gave_up
    sup_ref.ask(StopAll())
    sup_ref.stop()
    logs.close()


def record(i: int) -> JournalRecord:
    return JournalRecord(sessionId="s", origin="local", path=str(i))


def test_messages_sent_during_a_restart_arrive_in_order_exactly_once(system):
    sup, addresses, _, _ = system
    stop = threading.Event()

    def sender():
        i = 0
        while not stop.is_set() and i < 3000:
            addresses.send("test", "rec", record(i))
            i += 1
        return i

    t = threading.Thread(target=sender)
    t.start()
    for _ in range(3):
        sup.ask(RestartChild("rec"))
    t.join()
    wait_until(lambda: len(Recorder.seen) == 3000, 30, what="every message to be handled")
    assert Recorder.seen == [str(i) for i in range(3000)]
    assert addresses["rec"].stats.restarts == 3


def test_a_crash_keeps_the_unhandled_inbox_for_the_successor(system):
    sup, addresses, _, _ = system
    for i in range(200):
        addresses.send("test", "rec", record(i))
    addresses.send("test", "rec", Crash(reason="boom"))
    for i in range(200, 400):
        addresses.send("test", "rec", record(i))
    wait_until(lambda: len(Recorder.seen) == 400, 30, what="all messages after the crash")
    assert Recorder.seen == [str(i) for i in range(400)]
    rows = sup.ask(Status())
    assert rows[0]["restarts"] == 1 and "boom" in rows[0]["lastError"]


def test_restart_intensity_escalates_then_gives_up(system):
    sup, addresses, _, gave_up = system
    for _ in range(4):  # 3 restarts allowed in 5 s; the 4th crash restarts the whole tree
        addresses.send("test", "rec", Crash(reason="again"))
        time.sleep(0.05)
    wait_until(lambda: addresses["rec"].stats.restarts >= 4, 10, what="the tree restart")
    assert not gave_up
    for _ in range(4):
        addresses.send("test", "rec", Crash(reason="still failing"))
        time.sleep(0.05)
    wait_until(lambda: gave_up, 10, what="the supervisor to give up")
    assert "kept failing" in gave_up[0] and "still failing" in gave_up[0]


def test_message_log_records_every_delivery_and_reads_back_filtered(system):
    _, addresses, logs, _ = system
    for i in range(50):
        addresses.send("test", "rec", record(i))
    addresses.send("test", "rec", Crash(reason="x"))
    lines = [msgspec.json.decode(l) for l in logs.read("rec")]
    assert [l["body"]["path"] for l in lines if l["type"] == "journal_record"] == [str(i) for i in range(50)]
    only = logs.read("rec", types={"crash"})
    assert len(only) == 1
    assert logs.read("rec", since=time.time() + 60) == []
    assert len(logs.read("rec", limit=5)) == 5


def test_message_log_files_rotate(tmp_path):
    logs = MessageLogs(tmp_path, max_bytes=4096, keep=2)
    addresses = Addresses(["a"], logs)
    addresses["a"].state = "stopped"  # nobody home: messages are only held and logged
    for i in range(500):
        addresses.send("t", "a", record(i))
    logs.flush()
    files = logs.files("a")
    assert 2 <= len(files) <= 3 and all(f.stat().st_size < 8192 for f in files)  # keep=2 rotated + current
    got = [msgspec.json.decode(l)["body"]["path"] for l in logs.read("a")]
    assert got == [str(i) for i in range(500)][-len(got):]  # the newest survive, in order
    logs.close()


def test_recent_lines_come_from_memory_newest_last(system):
    _, addresses, logs, _ = system
    for i in range(30):
        addresses.send("test", "rec", record(i))
    addresses.send("test", "rec", Crash(reason="y"))
    got = [msgspec.json.decode(l) for l in logs.recent("rec", types={"journal_record"}, limit=5)]
    assert [g["body"]["path"] for g in got] == [str(i) for i in range(25, 30)]
    assert [msgspec.json.decode(l)["type"] for l in logs.recent("rec", types={"crash"})] == ["crash"]
