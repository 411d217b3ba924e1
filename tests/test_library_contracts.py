"""Contracts with the private internals of the libraries dim-desktop relies on.

Where a library has no public way to do what we need, our code uses its internals. Each
test here checks exactly what one such use relies on, for real (a running actor, a
loopback WebSocket, an X server), and a failure names the library, its installed
version, the internal and where we use it: an upgrade that changed one reads as a
one-line diagnosis, not as a lost message in the supervisor.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import inspect
import queue
import select
import threading
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pykka
import pytest
import websocket

from dim_actors.connection.fastws import (
    READ_AHEAD,
    SAMPLE_BYTES,
    BufferedWebSocket,
    OversizedFrame,
)
from dim_actors.kernel.actor import DimActor

WAIT_S = 10  # how long a condition may take before it counts as never happening

PYKKA_INBOX = (
    "Actor._create_actor_inbox (the inbox factory pykka calls in Actor.__init__)",
    "DimActor._create_actor_inbox in dim_actors/kernel/actor.py",
)
PYKKA_STOP = (
    "Actor._stop (run for every requested stop, on the actor's thread, before the inbox "
    "is drained)",
    "DimActor._stop in dim_actors/kernel/actor.py (an actor that stopped itself)",
)
PYKKA_ENVELOPE = (
    "the inbox's envelopes (pykka._envelope.Envelope and its `.message`)",
    "Address.take_back_inbox in dim_actors/kernel/addresses.py, from DimActor.on_failure, "
    "DimActor._stop and Supervisor._check_health",
)
WS_RECV = (
    "WebSocket._recv (what frame_buffer reads the socket through)",
    "BufferedWebSocket._recv in dim_actors/connection/fastws.py (the read-ahead buffer)",
)
WS_FRAME_BUFFER = (
    "WebSocket.frame_buffer (header, length, recv_buffer, lock, needs_*/recv_* and recv_strict) "
    "and WebSocket.cont_frame (cont_data, recving_frames)",
    "BufferedWebSocket._whole_frame, recv_frame and _discard_payload in "
    "dim_actors/connection/fastws.py",
)
WS_SEND_FRAME = (
    "WebSocket.send_frame(frame): sets frame.get_mask_key, writes frame.format() under its lock",
    "_Frames in dim_actors/connection/replication.py (a batch of fetch requests in one write)",
)
WS_RECV_FRAME = (
    "recv_data -> recv_data_frame -> self.recv_frame (the frame read we override)",
    "BufferedWebSocket.recv_frame in dim_actors/connection/fastws.py (max_message_bytes)",
)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


@contextlib.contextmanager
def contract(dist: str, internal: tuple[str, str]) -> Iterator[None]:
    """Any failure inside, an assertion or an exception, is reported as this contract
    broken."""
    what, where = internal
    try:
        yield
    except Exception as e:
        pytest.fail(
            f"{dist} {_version(dist)}: {what} no longer works as we rely on it in {where}: "
            f"{type(e).__name__}: {e}"
        )


# --- pykka ----------------------------------------------------------------------------


class Stopped(NamedTuple):
    hook: str  # "_stop" or "on_failure"
    on_actor_thread: bool
    actor_stopped: bool
    left: list[Any]  # each envelope still in the inbox, as `.message` gives it


NO_MESSAGE = "<an envelope without .message>"


class Probe(pykka.ThreadingActor):
    """Overrides what DimActor overrides, with DimActor's own inbox factory, and records
    what our code would find: which thread, and what the inbox still holds."""

    use_daemon_thread = True
    _create_actor_inbox = DimActor.__dict__["_create_actor_inbox"]

    def __init__(self, gate: threading.Event, records: queue.SimpleQueue):
        super().__init__()
        self.gate, self.records = gate, records
        self.thread_id = 0

    def on_start(self) -> None:
        self.thread_id = threading.get_ident()

    def on_receive(self, message: Any) -> Any:
        if message == "wait for the gate":
            self.gate.wait(WAIT_S)
        elif message == "stop yourself":
            self.stop()
        elif message == "fail":
            raise RuntimeError("a handler failed (on purpose)")
        return message

    def _stop(self) -> None:
        super()._stop()
        self._record("_stop")

    def on_failure(self, exception_type, exception_value, traceback) -> None:
        self._record("on_failure")

    def _record(self, hook: str) -> None:
        left = []
        while not self.actor_inbox.empty():
            left.append(getattr(self.actor_inbox.get(), "message", NO_MESSAGE))
        self.records.put(
            Stopped(
                hook,
                threading.get_ident() == self.thread_id,
                self.actor_stopped.is_set(),
                left,
            )
        )


def _next_record(records: queue.SimpleQueue, hook: str) -> Stopped:
    try:
        record = records.get(timeout=WAIT_S)
    except queue.Empty:
        raise AssertionError(f"pykka never called {hook} within {WAIT_S}s") from None
    assert record.hook == hook, f"pykka called {record.hook}, not {hook}"
    return record


def test_pykka_still_has_the_methods_dimactor_overrides():
    with contract("pykka", PYKKA_INBOX):
        factory = inspect.getattr_static(
            pykka.ThreadingActor, "_create_actor_inbox", None
        )
        assert isinstance(factory, staticmethod), (
            f"ThreadingActor._create_actor_inbox is {factory!r}, not a staticmethod"
        )
        assert not inspect.signature(factory.__func__).parameters, (
            "_create_actor_inbox now takes arguments"
        )
    with contract("pykka", PYKKA_STOP):
        stop = inspect.getattr_static(pykka.Actor, "_stop", None)
        assert inspect.isfunction(stop), f"Actor._stop is {stop!r}, not a method"
        assert list(inspect.signature(stop).parameters) == ["self"], (
            f"Actor._stop{inspect.signature(stop)}"
        )


def test_pykka_builds_the_inbox_with_create_actor_inbox():
    with contract("pykka", PYKKA_INBOX):
        ref = Probe.start(threading.Event(), queue.SimpleQueue())
        try:
            assert type(ref.actor_inbox) is queue.SimpleQueue, (
                f"the inbox is a {type(ref.actor_inbox).__name__}, "
                "not the SimpleQueue _create_actor_inbox returns"
            )
            # The actor's loop reads the same queue the ref puts into, through
            # put/get/empty alone.
            assert ref.ask("echo", timeout=WAIT_S) == "echo", (
                "a message told into that inbox got no answer"
            )
        finally:
            assert ref.stop(timeout=WAIT_S), "the actor could not be stopped"


def test_pykka_calls_stop_on_a_requested_stop_with_the_later_messages_still_queued():
    gate, records = threading.Event(), queue.SimpleQueue()
    with contract("pykka", PYKKA_STOP):
        ref = Probe.start(gate, records)
        # holds the actor so that the stop and what follows queue up
        ref.tell("wait for the gate")
        stopping = ref.stop(block=False)
        ref.tell("after 1")
        ref.tell("after 2")
        gate.set()
        record = _next_record(records, "_stop")
        assert record.on_actor_thread, "_stop ran on another thread than the actor's"
        assert record.actor_stopped, (
            "actor_stopped is not set after Actor._stop: the loop would go on reading the inbox"
        )
        stopping.get(timeout=WAIT_S)
    with contract("pykka", PYKKA_ENVELOPE):
        assert record.left == ["after 1", "after 2"], (
            "the messages told after the stop, read back out of the inbox in _stop: "
            f"{record.left!r}"
        )


def test_pykka_calls_stop_when_an_actor_stops_itself():
    gate, records = threading.Event(), queue.SimpleQueue()
    gate.set()
    with contract("pykka", PYKKA_STOP):
        ref = Probe.start(gate, records)
        ref.tell("stop yourself")
        record = _next_record(records, "_stop")
        assert record.on_actor_thread, "_stop ran on another thread than the actor's"
        assert not ref.is_alive(), "the actor is still alive after _stop"


def test_pykka_leaves_the_envelopes_in_the_inbox_for_on_failure():
    gate, records = threading.Event(), queue.SimpleQueue()
    with contract("pykka", PYKKA_ENVELOPE):
        ref = Probe.start(gate, records)
        ref.tell("wait for the gate")
        ref.tell("fail")
        ref.tell("after 1")
        ref.tell("after 2")
        gate.set()
        record = _next_record(records, "on_failure")
        assert record.on_actor_thread, (
            "on_failure ran on another thread than the actor's"
        )
        assert record.left == ["after 1", "after 2"], (
            "the messages queued behind the failing one, read back out of the inbox in "
            f"on_failure: {record.left!r}"
        )


# --- websocket-client -----------------------------------------------------------------


def test_websocket_client_still_has_the_internals_fastws_uses():
    with contract("websocket-client", WS_FRAME_BUFFER):
        ws = websocket.WebSocket(skip_utf8_validation=True)
        fb, cont = getattr(ws, "frame_buffer", None), getattr(ws, "cont_frame", None)
        assert fb is not None and cont is not None, (
            "WebSocket.frame_buffer or WebSocket.cont_frame is gone"
        )
        problems = [
            f"{type(owner).__name__}.{name} is gone"
            for owner, names in (
                (
                    fb,
                    (
                        "header",
                        "length",
                        "recv_buffer",
                        "lock",
                        "clear",
                        "needs_header",
                        "recv_header",
                        "needs_length",
                        "recv_length",
                        "needs_mask",
                        "recv_mask",
                        "recv_strict",
                        "recv_frame",
                    ),
                ),
                (cont, ("cont_data", "recving_frames")),
            )
            for name in names
            if not hasattr(owner, name)
        ]
        for owner, name, params in (
            (websocket.WebSocket, "_recv", ["self", "bufsize"]),
            (websocket.WebSocket, "recv_data", ["self", "control_frame"]),
            (websocket.WebSocket, "recv_frame", ["self"]),
            (type(fb), "recv_strict", ["self", "bufsize"]),
        ):
            func = getattr(owner, name, None)
            if func is None:
                problems.append(f"{owner.__name__}.{name} is gone")
            elif list(inspect.signature(func).parameters) != params:
                problems.append(
                    f"{owner.__name__}.{name}{inspect.signature(func)}, not ({', '.join(params)})"
                )
        assert not problems, "; ".join(problems)


class Gateway:
    """A loopback WebSocket server (the `websockets` library, as the dev gateway uses)
    that plays one script per connection, then waits for the client to close."""

    def __init__(self) -> None:
        from websockets.sync.server import serve

        self.scripts: dict[str, Callable[[Any], None]] = {}
        self.server = serve(
            self._handle, "127.0.0.1", 0, compression=None, ping_interval=None
        )
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="contract-gateway", daemon=True
        )
        self.thread.start()

    def _handle(self, conn: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            self.scripts[conn.request.path](conn)
            conn.recv()
        except ConnectionClosed:
            pass

    def connect(
        self,
        script: Callable[[Any], None],
        fast: bool = True,
        cls: type[BufferedWebSocket] = BufferedWebSocket,
    ) -> Any:
        path = f"/{len(self.scripts)}"
        self.scripts[path] = script
        ws = cls(skip_utf8_validation=fast)
        ws.connect(f"ws://127.0.0.1:{self.port}{path}", timeout=WAIT_S)
        return ws

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(WAIT_S)


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    g = Gateway()
    yield g
    g.close()


class CountingWebSocket(BufferedWebSocket):
    """Counts the reads websocket-client's own parser makes (our fast path reads past
    this)."""

    parser_reads = 0

    def _recv(self, bufsize: int) -> bytes:
        self.parser_reads += 1
        return super()._recv(bufsize)


TEXT, BINARY = websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY
BURST = [f"event {i}" for i in range(300)]


def _mixed_traffic(conn: Any) -> None:
    conn.send("one text frame")
    conn.send(b"\x00\x01 one binary frame")
    conn.send(["frag", "mented ", "text"])
    conn.ping(b"between messages")
    # fragments wider than the read-ahead buffer
    conn.send([b"a" * 70_000, b"b" * 70_000])
    for text in BURST:
        conn.send(text)
    conn.send("x" * 200_000)  # one frame over several buffers


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "parser-only"])
def test_websocket_client_parses_frames_out_of_the_read_ahead_buffer(gateway, fast):
    expected = (
        [
            (TEXT, b"one text frame"),
            (BINARY, b"\x00\x01 one binary frame"),
            (TEXT, b"fragmented text"),
            (BINARY, b"a" * 70_000 + b"b" * 70_000),
        ]
        + [(TEXT, t.encode()) for t in BURST]
        + [(TEXT, b"x" * 200_000)]
    )
    with contract("websocket-client", WS_RECV):
        ws = gateway.connect(_mixed_traffic, fast, cls=CountingWebSocket)
        try:
            got = [ws.recv_data() for _ in expected]
        finally:
            ws.close()
        for i, ((op, data), (want_op, want)) in enumerate(zip(got, expected)):
            assert (op, data) == (want_op, want), (
                f"message {i}: opcode {op}, {len(data)} bytes {data[:40]!r}; "
                f"expected opcode {want_op}, "
                f"{len(want)} bytes {want[:40]!r}"
            )
        assert ws.parser_reads, (
            "websocket-client's parser never read through _recv: it bypasses the buffer"
        )


def _brief(result: Any) -> str:
    if isinstance(result, tuple):
        opcode, data = result
        return f"opcode {opcode}, {len(data)} bytes {data[:24]!r}"
    return repr(result)


def _oversized_traffic(conn: Any) -> None:
    conn.send("small 1")
    conn.send("y" * 5_000)
    conn.send("small 2")
    # over the limit at its second fragment
    conn.send(["f" * 600, "g" * 600, "h" * 600])
    conn.send("small 3")
    conn.send(b"z" * (2 * READ_AHEAD + 123))  # thrown away in several chunks
    conn.send("small 4")


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "parser-only"])
def test_websocket_client_frame_buffer_lets_an_oversized_message_be_skipped_unread(
    gateway, fast
):
    discarded = []
    with contract("websocket-client", WS_RECV_FRAME):
        ws = gateway.connect(_oversized_traffic, fast)
        ws.max_message_bytes = 1_000
        ws.on_discard = lambda: discarded.append(1)
        try:
            results = []
            for _ in range(7):
                try:
                    results.append(ws.recv_data())
                except OversizedFrame as e:
                    results.append(e)
        finally:
            ws.close()
        assert results[0] == (TEXT, b"small 1"), f"first message: {_brief(results[0])}"
        assert isinstance(results[1], OversizedFrame), (
            f"a 5000-byte frame over a 1000-byte limit gave {_brief(results[1])}"
        )
    with contract("websocket-client", WS_FRAME_BUFFER):
        assert (
            results[1].length == 5_000 and results[1].sample == b"y" * SAMPLE_BYTES
        ), (
            "the oversized frame's length and sample: "
            f"{results[1].length}, {results[1].sample[:20]!r}..."
        )
        assert results[2] == (TEXT, b"small 2"), (
            f"after the oversized frame: {_brief(results[2])}"
        )
        assert isinstance(results[3], OversizedFrame) and results[3].length == 1_200, (
            f"a fragmented message growing past the limit gave {_brief(results[3])}"
        )
        assert results[3].sample == b"f" * SAMPLE_BYTES, (
            f"its sample: {results[3].sample[:20]!r}..."
        )
        assert results[4] == (TEXT, b"small 3"), (
            f"after the oversized fragmented message (skipped to its end): {_brief(results[4])}"
        )
        assert (
            isinstance(results[5], OversizedFrame)
            and results[5].length == 2 * READ_AHEAD + 123
        ), f"an oversized binary frame gave {_brief(results[5])}"
        assert results[6] == (TEXT, b"small 4"), f"after it: {_brief(results[6])}"
        assert len(discarded) >= 3, (
            f"the oversized payloads were thrown away in {len(discarded)} chunks"
        )


def test_websocket_client_frame_buffer_marks_a_frame_it_has_half_read(gateway):
    """An exception in the middle of a frame (here: no more data on a non-blocking
    socket) leaves websocket-client's parser holding the frame's header and the payload
    read so far; the fast path must see that (frame_buffer.header) and let the parser
    finish, never parse payload bytes as a header."""
    payload = bytes(range(256)) * 40
    half = len(payload) // 2
    half_sent, rest_go = threading.Event(), threading.Event()

    def script(conn: Any) -> None:
        # FIN binary, 16-bit length
        header = bytes([0x82, 126]) + len(payload).to_bytes(2, "big")
        conn.socket.sendall(header + payload[:half])
        half_sent.set()
        rest_go.wait(WAIT_S)
        conn.socket.sendall(payload[half:])
        conn.send("after")

    with contract("websocket-client", WS_FRAME_BUFFER):
        ws = gateway.connect(script)
        try:
            assert half_sent.wait(WAIT_S), "the server never sent the first half"
            assert select.select([ws.sock], [], [], WAIT_S)[0], (
                "the first half never arrived"
            )
            ws.settimeout(0)
            with pytest.raises(BlockingIOError):
                ws.recv_data()
            assert ws.frame_buffer.header is not None, (
                "frame_buffer.header is None in the middle of a frame"
            )
            rest_go.set()
            ws.settimeout(WAIT_S)
            got = ws.recv_data()
            assert got == (BINARY, payload), (
                f"the frame finished after the interruption: opcode {got[0]}, "
                f"{len(got[1])} bytes {got[1][:16]!r}"
            )
            assert ws.recv_data() == (TEXT, b"after"), "the frame after it"
        finally:
            rest_go.set()
            ws.close()


def test_websocket_client_sends_what_a_frame_formats_masked_in_one_write(gateway):
    from dim_actors.connection.replication import _Frames

    got: list[Any] = []

    def receive_three(conn: Any) -> None:
        got.extend(conn.recv() for _ in range(3))
        conn.send("done")

    with contract("websocket-client", WS_SEND_FRAME):
        ws = gateway.connect(receive_three)
        try:
            ws.send_frame(_Frames([b"first", b"", b"\x00third" * 1000]))
            assert ws.recv() == "done"
        finally:
            ws.close()
        # each a frame of its own, each masked (the server unmasks, or refuses unmasked)
        assert got == [b"first", b"", b"\x00third" * 1000]


# --- pywebview ------------------------------------------------------------------------

PYWEBVIEW_QT_VIEW = (
    "the Qt backend's BrowserView.webview (the QWebEngineView, whose titleChanged a "
    "session's window follows) and BrowserView._js_results (the waits for a script's "
    "result, answered once the GUI loop is over)",
    "NativeWindow._follow_page_title and _answer_script_waits_for_ever in "
    "dim_actors/desktop/window.py",
)


def test_pywebview_qt_browser_view_still_has_the_webview_and_the_script_waits():
    # Read from the source: building a BrowserView needs a running Qt application and a
    # display, and the attributes are set in its constructor.
    with contract("pywebview", PYWEBVIEW_QT_VIEW):
        import webview.platforms.qt as qt

        init = inspect.getsource(qt.BrowserView.__init__)
        assert "self.webview = " in init, "BrowserView.__init__ sets no self.webview"
        assert "self._js_results = {}" in init, (
            "BrowserView.__init__ sets no self._js_results dict"
        )
        assert "titleChanged" in dir(qt.BrowserView.WebView), (
            "BrowserView.WebView has no titleChanged"
        )
