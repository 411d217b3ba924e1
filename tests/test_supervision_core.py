"""The supervision core in-process, with real pykka actors: stable names, restarts,
message logs."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pykka
import pytest
from apphelpers import ROOT, wait_until
from treehelpers import Tree, supervised

from dim_actors.app.control import FOLLOW_BUFFER, ControlServer
from dim_actors.config.home import DimHome, RuntimeInfo
from dim_actors.kernel.actor import DimActor
from dim_actors.kernel.addresses import Addresses
from dim_actors.kernel.messagelog import MessageLogs
from dim_actors.kernel.supervisor import (
    CheckHealth,
    ChildSpec,
    RestartChild,
    Status,
)
from dim_actors.messages import Crash, JournalRecord


class Recorder(DimActor):
    """Records the paths of the JournalRecords it handles, slowly, so mailboxes fill up."""

    seen: list[str] = []
    lock = threading.Lock()

    def handle(self, sender, body):
        # the scenario, not a wait: a busy actor, so its mailbox fills up
        time.sleep(0.001)
        with Recorder.lock:
            Recorder.seen.append(body.path)


class Worker(DimActor):
    """Does what the path of a JournalRecord says: `quit` stops it (a normal exit),
    `block:K` blocks its handler until the test sets gate K (a real hang), anything else
    is recorded."""

    seen: list[tuple[str, str]] = []
    stopped: list[
        str
    ] = []  # names, in the order their instances stopped (normal stops only)
    threads: list[threading.Thread] = []  # each instance's thread, in start order
    gates: dict[str, threading.Event] = {}
    fail_start: set[str] = set()
    raise_after_block: set[str] = set()  # gates after which the handler raises

    @classmethod
    def reset(cls) -> None:
        cls.seen, cls.stopped, cls.threads, cls.gates, cls.fail_start = (
            [],
            [],
            [],
            {},
            set(),
        )
        cls.raise_after_block = set()

    def on_start(self) -> None:
        super().on_start()
        Worker.threads.append(threading.current_thread())
        if self.ctx.name in Worker.fail_start:
            raise RuntimeError(f"{self.ctx.name} cannot start")

    def on_stop(self) -> None:
        Worker.stopped.append(self.ctx.name)

    def handle(self, sender, body):
        if body.path == "quit":
            self.stop()
        elif body.path.startswith("block:"):
            Worker.gates.setdefault(body.path[6:], threading.Event()).wait(60)
            if body.path[6:] in Worker.raise_after_block:
                raise RuntimeError("the hung handler returned and then failed")
        else:
            Worker.seen.append((self.ctx.name, body.path))


@pytest.fixture
def make_system(tmp_path):
    """Build a supervisor over real pykka actors. Nothing checks health unless a test
    sends CheckHealth (the runtime's ticker sends it once a second)."""
    Recorder.seen = []
    Worker.reset()
    made = itertools.count()
    with contextlib.ExitStack() as trees:

        def make(
            specs: list[ChildSpec], period_s: float = 5.0, hang_timeout_s: float = 30.0
        ) -> Tree:
            root = tmp_path / f"tree{next(made)}"
            return trees.enter_context(
                supervised(
                    root, specs, period_s=period_s, hang_timeout_s=hang_timeout_s
                )
            )

        try:
            yield make
        finally:
            for gate in Worker.gates.values():
                gate.set()  # let hung handlers return before the trees stop


@pytest.fixture
def system(make_system):
    s = make_system([ChildSpec("rec", Recorder)])
    return s.sup, s.addresses, s.logs, s.gave_up


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
    wait_until(
        lambda: len(Recorder.seen) == 3000, 30, what="every message to be handled"
    )
    assert Recorder.seen == [str(i) for i in range(3000)]
    assert addresses["rec"].stats.restarts == 3


def test_a_crash_keeps_the_unhandled_inbox_for_the_successor(system):
    sup, addresses, _, _ = system
    for i in range(200):
        addresses.send("test", "rec", record(i))
    addresses.send("test", "rec", Crash(reason="boom"))
    for i in range(200, 400):
        addresses.send("test", "rec", record(i))
    wait_until(
        lambda: len(Recorder.seen) == 400, 30, what="all messages after the crash"
    )
    assert Recorder.seen == [str(i) for i in range(400)]
    rows = sup.ask(Status())
    assert rows[0]["restarts"] == 1 and "boom" in rows[0]["lastError"]


def test_restart_intensity_escalates_then_gives_up(make_system):
    # The intensity is 3 restarts in the period; the period is long here so that a
    # loaded machine cannot spread the crashes out past it (what counts is how many fall
    # within it, not how fast).
    s = make_system([ChildSpec("rec", Recorder)], period_s=120.0)
    addresses, gave_up = s.addresses, s.gave_up
    rec = addresses["rec"]
    # 3 restarts allowed in the period; the 4th crash restarts the whole tree
    for i in range(4):
        addresses.send("test", "rec", Crash(reason="again"))
        wait_until(
            lambda i=i: rec.stats.restarts == i + 1 and rec.state == "running",
            what=f"restart {i + 1} of rec",
        )
    assert not gave_up
    # the tree restart cleared the count: three more are single restarts...
    for i in range(3):
        addresses.send("test", "rec", Crash(reason="still failing"))
        wait_until(
            lambda i=i: rec.stats.restarts == 5 + i and rec.state == "running",
            what=f"restart {5 + i} of rec",
        )
    assert not gave_up
    # ...and the 4th, so soon after it, gives up
    addresses.send("test", "rec", Crash(reason="still failing"))
    wait_until(lambda: gave_up, what="the supervisor to give up")
    assert "kept failing" in gave_up[0] and "still failing" in gave_up[0]
    assert "\n" not in gave_up[0]  # dim-desktop prints it as its last line
    assert addresses["rec"].state == "stopped" and addresses["rec"].ref is None


def test_a_tree_restart_that_cannot_start_a_child_stops_every_child_in_reverse(
    make_system,
):
    # A long period: however slowly a loaded machine restarts, the 4 crashes fall within
    # it.
    s = make_system(
        [ChildSpec(n, Worker) for n in ("a", "b", "c", "d")], period_s=120.0
    )
    for i in range(3):
        s.addresses.send("test", "a", Crash(reason="again"))
        wait_until(
            lambda i=i: (
                s.addresses["a"].stats.restarts == i + 1
                and s.addresses["a"].state == "running"
            ),
            what=f"restart {i + 1} of a",
        )
    Worker.stopped.clear()
    Worker.fail_start.add("c")
    s.addresses.send("test", "d", record(1))  # d gets a message while the tree restarts
    # the 4th in the period: the whole tree restarts
    s.addresses.send("test", "a", Crash(reason="once more"))
    wait_until(lambda: s.gave_up, what="the supervisor to give up")
    reason = s.gave_up[0]
    assert (
        "actor c could not start" in reason
        and "RuntimeError: c cannot start" in reason
        and "\n" not in reason
    )
    # The tree restart stopped d, c, b (a had crashed), started a and b, then c failed:
    # it stopped b and a again, in reverse, and never started d rather than leave it
    # "restarting".
    assert Worker.stopped == ["d", "c", "b", "b", "a"]
    assert [s.addresses[n].state for n in "abcd"] == ["stopped"] * 4
    assert all(s.addresses[n].ref is None for n in "abcd")
    wait_until(
        lambda: not pykka.ActorRegistry.get_by_class(Worker),
        what="every Worker to stop",
    )
    assert not s.sup.ask(RestartChild("a"))  # given up: nothing is started again


def test_a_child_that_cannot_start_at_all_makes_the_supervisor_give_up(make_system):
    Worker.fail_start.add("b")
    s = make_system([ChildSpec(n, Worker) for n in ("a", "b", "c")])
    wait_until(lambda: s.gave_up, what="the supervisor to give up")
    assert s.gave_up == ["actor b could not start: RuntimeError: b cannot start"]
    assert (
        Worker.stopped == ["a"]
        and [s.addresses[n].state for n in "abc"] == ["stopped"] * 3
    )


@pytest.mark.parametrize(
    "restart,end,restarted",
    [
        ("permanent", "crash", True),
        ("permanent", "quit", True),
        ("transient", "crash", True),
        ("transient", "quit", False),
        ("temporary", "crash", False),
        ("temporary", "quit", False),
    ],
)
def test_restart_types(make_system, restart, end, restarted):
    """OTP's: permanent always restarted, transient only after an abnormal end,
    temporary never."""
    s = make_system([ChildSpec("w", Worker, restart)])
    w = s.addresses["w"]
    s.addresses.send("test", "w", record(1))
    s.addresses.send(
        "test",
        "w",
        Crash(reason="boom")
        if end == "crash"
        else JournalRecord(sessionId="s", origin="local", path="quit"),
    )
    if restarted:
        s.addresses.send("test", "w", record(2))
        wait_until(
            lambda: Worker.seen == [("w", "1"), ("w", "2")],
            what="the restarted instance to go on",
        )
        assert (
            w.stats.restarts == 1 and w.state == "running" and len(Worker.threads) == 2
        )
        return
    final = "failed" if end == "crash" else "stopped"
    # set by the supervisor's decision
    wait_until(lambda: w.state == final, what=f"w to be {final}")
    assert w.stats.restarts == 0 and w.ref is None and len(Worker.threads) == 1
    assert (
        ("boom" in w.stats.last_error) if end == "crash" else w.stats.last_error is None
    )
    s.addresses.send("test", "w", record(2))
    assert w.mailbox_depth() == 1 and Worker.seen == [("w", "1")]  # held, not lost
    # an explicit restart starts it again, and it gets what waited
    assert s.sup.ask(RestartChild("w"))
    wait_until(
        lambda: Worker.seen == [("w", "1"), ("w", "2")],
        what="the held message after a restart",
    )


@pytest.mark.parametrize("late", ["returns", "raises"])
def test_a_replaced_hung_instance_cannot_touch_its_successors_bookkeeping(
    make_system, late
):
    # Health is checked only while the test waits for the first instance to be judged
    # hung (the runtime's ticker does it once a second): the successor below is blocked
    # on purpose for longer than the hang timeout, and must not be replaced in turn
    # while the test looks at it, however slowly a loaded machine gets through the
    # checks.
    s = make_system([ChildSpec("w", Worker)], hang_timeout_s=1.0)
    w = s.addresses["w"]
    Worker.raise_after_block = {"old"} if late == "raises" else set()
    s.addresses.send(
        "test", "w", JournalRecord(sessionId="s", origin="local", path="block:old")
    )

    def replaced() -> bool:
        if w.stats.restarts == 1 and w.state == "running":
            return True
        s.sup.tell(CheckHealth())
        return False

    wait_until(replaced, interval=0.1, what="the hung instance to be replaced")
    # any CheckHealth still queued is handled now, before the successor is busy
    s.sup.ask(Status())
    assert "hung" in w.stats.last_error
    old_thread = Worker.threads[0]
    # a thread cannot be killed: it is still in its handler
    assert old_thread.is_alive()
    # The successor is in a handler of its own when the old one's handler finally
    # returns.
    s.addresses.send(
        "test", "w", JournalRecord(sessionId="s", origin="local", path="block:new")
    )
    wait_until(lambda: w.busy_since is not None, what="the successor to be busy")
    busy_since, handled, ref = w.busy_since, w.handled(), w.ref
    s.addresses.send("test", "w", record(1))  # waits in the successor's inbox
    Worker.gates.setdefault("old", threading.Event()).set()
    wait_until(lambda: not old_thread.is_alive(), what="the old instance to end")
    # whatever the old instance reported has reached the supervisor by now
    s.sup.ask(Status())
    # not cleared, not counted
    assert w.busy_since == busy_since and w.handled() == handled
    assert (
        w.ref is ref
        and w.state == "running"
        and w.stats.restarts == 1
        and w.mailbox_depth() == 1
    )
    Worker.gates.setdefault("new", threading.Event()).set()
    wait_until(lambda: Worker.seen == [("w", "1")], what="the successor to go on")
    wait_until(lambda: w.handled() == handled + 2, what="the successor's count")
    assert w.busy_since is None


def test_message_log_records_every_delivery_and_reads_back_filtered(system):
    _, addresses, logs, _ = system
    for i in range(50):
        addresses.send("test", "rec", record(i))
    addresses.send("test", "rec", Crash(reason="x"))
    lines = [msgspec.json.decode(line) for line in logs.read("rec")]
    assert [
        entry["body"]["path"] for entry in lines if entry["type"] == "journal_record"
    ] == [str(i) for i in range(50)]
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
    # keep=2 rotated + current
    assert 2 <= len(files) <= 3 and all(f.stat().st_size < 8192 for f in files)
    got = [msgspec.json.decode(line)["body"]["path"] for line in logs.read("a")]
    # the newest survive, in order
    assert got == [str(i) for i in range(500)][-len(got) :]
    logs.close()


def test_recent_lines_come_from_memory_newest_last(system):
    _, addresses, logs, _ = system
    for i in range(30):
        addresses.send("test", "rec", record(i))
    addresses.send("test", "rec", Crash(reason="y"))
    got = [
        msgspec.json.decode(line)
        for line in logs.recent("rec", types={"journal_record"}, limit=5)
    ]
    assert [g["body"]["path"] for g in got] == [str(i) for i in range(25, 30)]
    assert [
        msgspec.json.decode(line)["type"]
        for line in logs.recent("rec", types={"crash"})
    ] == ["crash"]


class LogsOnlyRuntime:
    """The part of SupervisorRuntime the control socket's `logs` command uses."""

    def __init__(self, addresses: Addresses, logs: MessageLogs):
        self.addresses, self.logs = addresses, logs


@pytest.fixture
def control(tmp_path):
    """A real control socket over real message logs (no actors: messages to `a` are only
    logged), and a DIM_HOME whose runtime.json points dimctl at it."""
    logs = MessageLogs(tmp_path / "logs")
    addresses = Addresses(["a"], logs)
    # short: a Unix socket path has ~100 bytes
    sock_dir = Path(tempfile.mkdtemp(prefix="dimctl-"))
    server = ControlServer(sock_dir / "c.sock", LogsOnlyRuntime(addresses, logs))
    server.start()
    home = DimHome(tmp_path / "home")
    home.ensure()
    home.write_runtime(
        RuntimeInfo(
            pid=1,
            uiUrl="http://127.0.0.1:1/",
            token="t",
            controlSocket=str(server.path),
            gatewayUrl="ws://127.0.0.1:1/ws",
        )
    )
    env = {**os.environ, "DIM_HOME": str(home.root)}
    yield SimpleNamespace(addresses=addresses, logs=logs, env=env)
    server.close()
    logs.close()
    shutil.rmtree(sock_dir, ignore_errors=True)


def test_logs_follow_notices_dimctl_gone_while_nothing_arrives(control):
    follower = subprocess.Popen(
        [sys.executable, "-m", "dim_actors.cli.dimctl", "logs", "a", "--follow"],
        env=control.env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(
            lambda: control.logs.follower_count() == 1, 60, what="dimctl to follow"
        )
        follower.send_signal(signal.SIGTERM)
        follower.wait(timeout=30)
        # No message arrives for `a`: the server notices the closed socket by itself.
        wait_until(
            lambda: control.logs.follower_count() == 0,
            what="the follower to be dropped",
        )
    finally:
        follower.kill()
        follower.wait()


def test_logs_follow_of_a_slow_reader_is_bounded_and_says_what_it_skipped(control):
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dim_actors.cli.dimctl",
            "logs",
            "a",
            "--follow",
            "--json",
        ],
        env=control.env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(
            lambda: control.logs.follower_count() == 1, 60, what="dimctl to follow"
        )
        # Nobody reads dimctl's stdout yet: its pipe fills, then the socket, then the
        # follow buffer.
        n = 4 * FOLLOW_BUFFER
        sent = [control.addresses.send("t", "a", record(i)).id for i in range(n)]
        got = []
        while not got or got[-1] != sent[-1]:
            line = follower.stdout.readline()
            assert line, f"dimctl ended early: {follower.stderr.read()!r}"
            got.append(json.loads(line)["id"])
    finally:
        follower.send_signal(signal.SIGTERM)
        follower.wait(timeout=30)
    notes = follower.stderr.read().decode().splitlines()
    skipped = [int(note.split()[1]) for note in notes if "messages skipped" in note]
    # every message either shown or counted
    assert skipped and len(got) + sum(skipped) == n
    assert got == sorted(got) and set(got) <= set(sent)
    assert len(got) < n - FOLLOW_BUFFER  # the buffer held at most FOLLOW_BUFFER of them


# --- batches: several messages as one mailbox item ------------------------------------


class Relay(DimActor):
    """Forwards every JournalRecord to `rec`, so a batch in shows as a batch out."""

    def handle(self, sender, body):
        self.ctx.send("rec", body)


def test_a_batch_is_handled_in_order_logged_item_by_item_and_counted_as_its_items(
    make_system,
):
    s = make_system([ChildSpec("rec", Recorder), ChildSpec("relay", Relay)])
    # Held while rec restarts: the batches wait, counted as their items, and reach the
    # new instance.
    s.addresses["rec"].detach()
    for b in range(10):
        s.addresses.send_batch(
            "test", "relay", [record(b * 100 + i) for i in range(100)]
        )
    wait_until(
        lambda: s.addresses["rec"].mailbox_depth() == 1000,
        what="the relay's batches to be held for rec",
    )
    # The relay made batches out of its batches: ten mailbox entries hold the thousand
    # messages.
    assert len(s.addresses["rec"].held) == 10
    s.sup.ask(RestartChild("rec"))
    wait_until(
        lambda: len(Recorder.seen) == 1000,
        30,
        what="every batched message to be handled",
    )
    assert Recorder.seen == [str(i) for i in range(1000)]
    assert (
        s.addresses["rec"].mailbox_depth() == 0
        and s.addresses["relay"].mailbox_depth() == 0
    )
    assert s.addresses["rec"].handled() == 1000
    # Each item is a message of its own in the log, with its own increasing id.
    s.logs.flush()
    lines = [json.loads(x) for x in s.logs.path("rec").read_text().splitlines()]
    assert [ln["body"]["path"] for ln in lines] == [str(i) for i in range(1000)]
    ids = [ln["id"] for ln in lines]
    assert ids == sorted(ids) and len(set(ids)) == 1000
    assert all(ln["sender"] == "relay" for ln in lines)


def test_a_failing_item_drops_only_itself_the_rest_of_its_batch_reaches_the_successor(
    make_system,
):
    s = make_system([ChildSpec("rec", Recorder), ChildSpec("relay", Relay)])
    s.addresses.send_batch(
        "test",
        "relay",
        [record(0), record(1), Crash(reason="mid-batch"), record(3), record(4)],
    )
    s.addresses.send_batch("test", "relay", [record(5), record(6)])
    wait_until(
        lambda: s.addresses["relay"].stats.restarts == 1, what="the relay to restart"
    )
    wait_until(lambda: len(Recorder.seen) == 6, what="everything but the failing item")
    assert Recorder.seen == ["0", "1", "3", "4", "5", "6"]
    assert "mid-batch" in s.addresses["relay"].stats.last_error
    assert s.addresses["relay"].mailbox_depth() == 0
