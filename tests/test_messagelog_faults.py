"""The message-log writer against bad records, a full disk and secrets, on real files."""

from __future__ import annotations

import base64
import os
import stat

import msgspec
import pytest
from apphelpers import wait_until

from dim_actors.cli.dimctl import log_lines
from dim_actors.kernel.messagelog import MessageLogs, redact, to_line
from dim_actors.messages import (
    Connect,
    Invoke,
    InvokeResult,
    JournalRecord,
    SendFrame,
    envelope,
)
from dim_actors.wire.protocol import build_client_message


def record(i: int) -> JournalRecord:
    return JournalRecord(sessionId="s", origin="local", path=str(i))


def paths_on_disk(logs: MessageLogs, actor: str) -> list[str]:
    return [msgspec.json.decode(line)["body"].get("path") for line in logs.read(actor)]


@pytest.fixture
def logs(tmp_path):
    logs = MessageLogs(tmp_path / "logs")
    yield logs
    logs.close()


def test_a_lone_surrogate_is_logged_as_unloggable_and_the_writer_goes_on(logs):
    logs.append(envelope("t", "a", record(0)))
    logs.append(
        envelope(
            "uibridge",
            "a",
            Invoke(reqId=1, command="run_turn", args={"text": "\ud83d"}),
        )
    )
    for i in range(1, 50):
        logs.append(envelope("t", "a", record(i)))
    logs.flush()
    lines = [msgspec.json.decode(line) for line in logs.read("a")]
    assert [
        ln["body"].get("path") for ln in lines if ln["type"] == "journal_record"
    ] == [str(i) for i in range(50)]
    bad = [ln for ln in lines if ln["type"] == "invoke"]
    assert len(bad) == 1 and "surrogates not allowed" in bad[0]["body"]["unloggable"]
    assert logs._writer.is_alive()
    assert logs.health().unloggable == 1 and logs.health().dropped == 0
    assert logs.health_of("a") == {"logUnloggable": 1} and logs.health_of("b") == {}
    # The in-memory view (dimctl logs --follow, the Actors panel) serves it too, without raising.
    assert b"unloggable" in logs.recent("a", types={"invoke"})[0]


def test_a_lone_surrogate_alone_in_its_batch(logs):
    logs.append(
        envelope("t", "a", InvokeResult(reqId=1, ok=True, result={"x": ["\udcff"]}))
    )
    logs.flush()
    logs.append(envelope("t", "a", record(1)))
    logs.flush()
    assert paths_on_disk(logs, "a")[-1] == "1" and logs._writer.is_alive()


@pytest.fixture
def full_file(tmp_path):
    """A log directory whose file for actor `a` is, for now, /dev/full (ENOSPC on every write)."""
    d = tmp_path / "logs"
    d.mkdir()
    (d / "a.log").symlink_to("/dev/full")
    mode = os.stat("/dev/full").st_mode
    yield d
    assert os.stat("/dev/full").st_mode == mode  # never chmod what the log points at


def test_a_full_disk_drops_and_counts_lines_keeps_draining_and_resumes(full_file):
    logs = MessageLogs(full_file)
    try:
        n = 3 * 2_048 + 17  # several batches
        for i in range(n):
            logs.append(envelope("t", "a", record(i)))
            # another actor's file is fine meanwhile
            logs.append(envelope("t", "b", record(i)))
        logs.flush(timeout=30)
        wait_until(lambda: logs._written == logs._queued, what="the queue drained")
        assert logs._writer.is_alive()
        h = logs.health()
        assert h.dropped == n and h.failing == ["a"] and "No space left" in h.lastError
        assert len(logs.read("b")) == n
        # What the supervisor's status rows carry, and `dimctl status` prints under its table.
        a = logs.health_of("a")
        assert (
            a["logDropped"] == n
            and "No space left" in a["logError"]
            and logs.health_of("b") == {}
        )
        assert log_lines([{"name": "a", **a}, {"name": "b"}]) == [
            f"message log of a: {n} messages not logged (the log file could not be written); "
            f"failing now: {a['logError']}"
        ]

        (
            full_file / "a.log"
        ).unlink()  # room again: the next batch opens the file afresh
        logs.append(envelope("t", "a", record(n)))
        logs.flush()
        assert paths_on_disk(logs, "a") == [str(n)]
        assert logs.health().failing == [] and logs.health().dropped == n
        assert logs.health_of("a") == {
            "logDropped": n
        }  # resumed: the loss stays counted
    finally:
        logs.close()


def test_memory_stays_bounded_while_the_disk_is_full(full_file, monkeypatch):
    # With a small backlog bound, senders outpacing a writer that can write nothing still return:
    # the writer drains (and drops) instead of dying and leaving the queue to grow.
    from dim_actors.kernel import messagelog

    monkeypatch.setattr(messagelog, "MAX_BACKLOG", 100)
    logs = MessageLogs(full_file)
    try:
        for i in range(5_000):
            logs.append(envelope("t", "a", record(i)))
        logs.flush(timeout=30)
        assert logs._queue.qsize() == 0 and logs.health().dropped == 5_000
    finally:
        logs.close()


def test_secrets_are_redacted_on_disk_and_in_memory(logs):
    logs.append(
        envelope(
            "uibridge",
            "router",
            Invoke(
                reqId=1,
                command="gateway_connect",
                args={"url": "ws://g/ws", "token": "tok-SECRET"},
            ),
        )
    )
    logs.append(
        envelope("router", "connection", Connect(url="ws://g/ws", token="tok-SECRET"))
    )
    logs.append(
        envelope(
            "router",
            "connection",
            SendFrame(
                reqId=2,
                type="authenticate",
                frame=build_client_message("authenticate", {"token": "tok-SECRET"}),
            ),
        )
    )
    logs.append(
        envelope(
            "router",
            "connection",
            SendFrame(reqId=3, type="x", frame=b'{"Token": "tok-SECRET", '),
        )
    )
    logs.append(
        envelope(
            "router",
            "uibridge",
            InvokeResult(
                reqId=1,
                ok=True,
                result={
                    "nested": [
                        {
                            "Authorization": "Bearer tok-SECRET",
                            "password": "pw-SECRET",
                            "keep": 1,
                        }
                    ]
                },
            ),
        )
    )
    logs.flush()
    for actor in ("router", "connection", "uibridge"):
        raw = logs.path(actor).read_bytes()
        assert b"SECRET" not in raw and b'"***"' in raw, raw
        assert all(b"SECRET" not in line for line in logs.recent(actor))
        # Frames are logged as base64: read them back.
        for line in logs.read(actor):
            body = msgspec.json.decode(line)["body"]
            if "frame" in body:
                assert b"SECRET" not in base64.b64decode(body["frame"]), body
        assert stat.S_IMODE(logs.path(actor).stat().st_mode) == 0o600
    body = msgspec.json.decode(logs.read("uibridge")[0])["body"]
    assert body["result"]["nested"][0] == {
        "Authorization": "***",
        "password": "***",
        "keep": 1,
    }


def test_an_existing_world_readable_log_is_made_private(tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    (d / "a.log").write_bytes(b"")
    os.chmod(d / "a.log", 0o644)
    logs = MessageLogs(d)
    logs.append(envelope("t", "a", record(1)))
    logs.flush()
    logs.close()
    assert stat.S_IMODE((d / "a.log").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "value, expected",
    [
        ({"token": "t"}, {"token": "***"}),
        ({"TOKEN": "t", "url": "u"}, {"TOKEN": "***", "url": "u"}),
        ({"token": None}, {"token": None}),
        ({"a": [{"secret": 1}, 2]}, {"a": [{"secret": "***"}, 2]}),
        ({"a": {"b": {"password": "p"}}}, {"a": {"b": {"password": "***"}}}),
        ({"tokens": 5, "text": "token"}, {"tokens": 5, "text": "token"}),
        (["x", {"authorization": "B"}], ["x", {"authorization": "***"}]),
        ("plain", "plain"),
    ],
)
def test_redact(value, expected):
    assert redact(value) == expected


def test_redact_copies_nothing_without_a_secret():
    args = {"text": "hi", "files": [{"path": "a"}]}
    assert redact(args) is args


def test_to_line_never_raises():
    line = to_line(
        envelope("t", "a", Invoke(reqId=1, command="x", args={"k": "\ud800"}))
    )
    assert msgspec.json.decode(line)["body"]["unloggable"].startswith(
        "UnicodeEncodeError"
    )
