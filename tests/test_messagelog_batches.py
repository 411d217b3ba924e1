"""A batch's messages are logged by reference (MessageLogs.append_many, from
Addresses.send_batch): each is still a line of its own on disk and in the ring, with its
own id, in order, across rotations."""

from __future__ import annotations

import msgspec

from dim_actors.kernel.addresses import Addresses
from dim_actors.kernel.messagelog import MessageLogs
from dim_actors.messages import JournalRecord


def record(i: int) -> JournalRecord:
    return JournalRecord(sessionId="s", origin="local", path=str(i))


def test_every_message_of_a_batch_is_a_line_in_order_across_rotations(tmp_path):
    logs = MessageLogs(tmp_path, max_bytes=4096, keep=50)
    addresses = Addresses(["a"], logs)
    addresses["a"].state = "stopped"  # nobody home: messages are only held and logged
    n = 0
    for size in (1, 7, 300, 2, 512, 40):
        addresses.send_batch("t", "a", [record(n + i) for i in range(size)])
        n += size
    logs.flush()
    lines = [msgspec.json.decode(line) for line in logs.read("a")]
    assert [line["body"]["path"] for line in lines] == [str(i) for i in range(n)]
    assert all(line["type"] == "journal_record" for line in lines)
    ids = [line["id"] for line in lines]
    assert ids == sorted(ids) and len(set(ids)) == n
    # whole lines only; a file ends at the first line that takes it to max_bytes
    files = logs.files("a")
    assert len(files) > 3
    for f in files:
        data = f.read_bytes()
        assert data.endswith(b"\n")
        last = data[:-1].rfind(b"\n") + 1
        assert last < 4096
    # the ring holds each message as sent
    recent = [msgspec.json.decode(line) for line in logs.recent("a", limit=n)]
    assert [r["body"]["path"] for r in recent] == [str(i) for i in range(n)]
    logs.close()


def test_a_burst_of_single_messages_is_logged_whole_and_in_order(tmp_path):
    logs = MessageLogs(tmp_path)
    addresses = Addresses(["a"], logs)
    addresses["a"].state = "stopped"
    for i in range(5_000):
        addresses.send("t", "a", record(i))
    logs.flush()
    got = [msgspec.json.decode(line)["body"]["path"] for line in logs.read("a")]
    assert got == [str(i) for i in range(5_000)]
    logs.close()
