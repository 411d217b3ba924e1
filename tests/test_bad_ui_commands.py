"""Bad input from the page cannot crash an actor: every local command's arguments are
validated into a Struct (a clear 400 naming the field), and a restart of the UI bridge
cannot be held up by a page that does not read its event socket."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import websocket
from apphelpers import WAIT, App, GatewayProcess, wait_until
from diskhelpers import fill, small_disk
from treehelpers import supervised

from dim_actors.connection.actor import (
    ConnectionActor,
    ConnectionMemory,
    ConnectionWiring,
)
from dim_actors.kernel.actor import DimActor
from dim_actors.kernel.supervisor import ChildSpec, Status
from dim_actors.messages import CancelQueued, CommandFailed, Invoke, InvokeResult
from dim_actors.router.router import Router, RouterMemory, RouterWiring
from dim_actors.uibridge import http as bridge_http

BIG = 2**70

# Ten malformed invokes, each with a fragment its answer must hold (the field it names).
MALFORMED = [
    ("restart_actor", {"name": ["x"]}, "name: Expected `str`, got `array`"),
    ("restart_actor", {"name": {}}, "name: Expected `str`, got `object`"),
    ("actor_logs", {"name": ["x"]}, "name: Expected `str`, got `array`"),
    ("actor_logs", {"name": {}}, "name: Expected `str`, got `object`"),
    ("actor_logs", {"name": "router", "types": [{}]}, "types[0]: Expected `str`"),
    (
        "actor_logs",
        {"name": "router", "types": [["invoke"]]},
        "types[0]: Expected `str`",
    ),
    ("actor_logs", {"name": "router", "since": "x"}, "since: Expected `float | null`"),
    ("outbox_cancel", {"id": BIG}, "id: Expected `int` <= 9223372036854775807"),
    ("outbox_cancel", {"id": "1"}, "id: Expected `int`, got `str`"),
    (
        "start_sync",
        {"sessionId": "s", "localDir": "/tmp/" + "x" * 300},
        "localDir has a name longer than 255 bytes",
    ),
]


def post(app: App, command: str, body: bytes) -> tuple[int, dict]:
    return app.request(
        "POST", f"/invoke/{command}", body, {"Authorization": f"Bearer {app.token}"}
    )


@pytest.fixture(scope="module")
def local_app(tmp_path_factory):
    """No gateway needed: these commands are answered inside dim-desktop."""
    home = tmp_path_factory.mktemp("bad-ui") / "dim-home"
    home.mkdir()
    a = App(home)
    yield a
    a.stop()


def restarts(app: App) -> dict[str, int]:
    return {row["name"]: row["restarts"] for row in app.invoke("actor_status")}


def test_ten_malformed_invokes_at_once_each_get_a_clear_400_and_nothing_restarts(
    local_app: App,
):
    app = local_app
    answers: dict[int, tuple[int, dict]] = {}
    start = threading.Barrier(len(MALFORMED))

    def call(i: int, command: str, args: dict) -> None:
        start.wait()
        answers[i] = post(app, command, json.dumps(args).encode())

    threads = [
        threading.Thread(target=call, args=(i, c, a))
        for i, (c, a, _) in enumerate(MALFORMED)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 2)
    for i, (command, args, fragment) in enumerate(MALFORMED):
        status, body = answers[i]
        assert status == 400, (command, args, status, body)
        assert body["error"]["code"] == "INVALID_ARGUMENTS", body
        assert (
            body["error"]["message"].startswith(f"{command}: ")
            and fragment in body["error"]["message"]
        ), body
    assert app.proc.poll() is None, app.output()
    assert restarts(app)["router"] == 0 and restarts(app)["connection"] == 0, (
        app.invoke("actor_status")
    )
    # `actor X failed: ...` is how a crash is logged
    assert "failed:" not in app.output(), app.output()
    # Still serving: the same commands with good arguments work.
    assert app.invoke("actor_logs", name="router", types=["invoke"], limit=3)
    assert app.invoke("get_state")["connection"]


def test_bodies_too_deep_too_large_or_not_text_get_a_clear_answer(local_app: App):
    app = local_app
    status, body = post(app, "get_state", b"[" * 100_000 + b"]" * 100_000)
    assert status == 400 and body["error"]["code"] == "INVALID_JSON", body
    assert "nested more than" in body["error"]["message"]
    status, body = post(
        app, "set_settings", b'{"changes": {"x": ' + b"[" * 1000 + b"]" * 1000 + b"}}"
    )
    assert status == 400 and "nested more than" in body["error"]["message"], body
    status, body = post(app, "set_settings", b'{"changes": {"gateway_url": "\\ud83d"}}')
    assert (
        status == 400
        and body["error"]["code"] == "INVALID_JSON"
        and "surrogate" in body["error"]["message"]
    )
    status, body = post(
        app, "run_turn", b'{"sessionId": "s", "text": "' + b"x" * (9 << 20) + b'"}'
    )
    assert status == 413 and body["error"]["code"] == "TOO_LARGE", body
    assert app.proc.poll() is None
    assert restarts(app)["router"] == 0 and restarts(app)["uibridge"] == 0


def test_a_settings_file_that_cannot_be_read_is_answered_clearly_and_the_router_goes_on(
    local_app: App,
):
    """The settings file turned into a folder under the running app: nothing validation
    can see. That command gets a clear error naming the file, and the router goes on."""
    app = local_app
    settings = app.home / "config" / "settings.toml"
    saved = settings.read_bytes() if settings.is_file() else None
    settings.unlink(missing_ok=True)
    settings.mkdir()
    try:
        status, body = post(app, "get_settings", b"{}")
        assert status == 500 and body["error"]["code"] == "SETTINGS_FILE", body
        assert (
            body["error"]["message"]
            == f"get_settings: {settings}: cannot be read: Is a directory"
        ), body
    finally:
        settings.rmdir()
        if saved is not None:
            settings.write_bytes(saved)
    assert app.invoke("get_settings")["values"]
    assert restarts(app)["router"] == 0 and app.proc.poll() is None


def test_settings_that_cannot_be_saved_are_answered_clearly_and_nothing_changes(
    local_app: App,
):
    """A full disk under config/: set_settings says so, naming the file, and the
    settings stay as they were."""
    app = local_app
    before = app.invoke("get_settings")["values"]
    with small_disk(app.home / "config", size="64k") as config:
        fill(config)
        status, body = post(app, "set_settings", b'{"changes": {"tray": false}}')
        assert status == 500 and body["error"]["code"] == "SETTINGS_FILE", body
        assert body["error"]["message"] == (
            f"set_settings: {config / 'settings.toml'}: cannot be saved: "
            "No space left on device"
        ), body
        assert sorted(p.name for p in config.iterdir()) == [
            "filler"
        ]  # no temporary file left behind
    assert app.invoke("get_settings")["values"] == before
    assert restarts(app)["router"] == 0 and app.proc.poll() is None


# --- a page that does not read --------------------------------------------------------


def silent_page(port: int, token: str) -> socket.socket:
    """A WebSocket on /events that never reads what it is sent: a small receive buffer,
    so the bridge's side fills after a few hundred KiB."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(WAIT)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET /events?token={token} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)  # byte by byte: nothing past the headers is read
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def dropped(s: socket.socket, timeout: float) -> bool:
    """Read what is buffered until the server ends the connection (True) or `timeout`
    passes."""
    s.settimeout(0.5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not s.recv(1 << 20):
                return True
        except TimeoutError:
            continue
        except OSError:  # reset: dropped too
            return True
    return False


def test_restarting_the_bridge_with_a_page_that_does_not_read(tmp_path: Path):
    gw = GatewayProcess(tmp_path / "gw").start()
    home = tmp_path / "dim-home"
    home.mkdir()
    app = App(home, ["--gateway", gw.url])
    try:
        app.wait_connected()
        port = int(app.base.rsplit(":", 1)[1])
        page = silent_page(port, app.token)
        sid = app.invoke("create_session", agentType="echo", name="big")["session"][
            "id"
        ]
        app.invoke("join_session", sessionId=sid)

        def stuck() -> bool:
            # One word of 400 KB: each turn sends the page ~1 MB; frames then wait
            # behind the full socket.
            app.invoke("run_turn", sessionId=sid, text="x" * 400_000)
            return app.status()["uibridge"].get("pageQueue", 0) > 0

        wait_until(
            stuck, WAIT * 2, interval=0.2, what="the silent page's socket to fill"
        )

        started = time.monotonic()
        out = app.dimctl("restart", "uibridge")
        took = time.monotonic() - started
        assert out.returncode == 0, (out.stdout, out.stderr, app.output())
        assert took < 15, f"the restart took {took:.1f} s"
        # The same port (app.base), serving; the silent page was dropped (so a real one
        # reconnects).
        assert app.invoke("get_state")["connection"]["state"] == "connected"
        assert dropped(page, WAIT), (
            "the page that did not read is still connected to the old server"
        )
        page.close()
        assert app.status()["uibridge"]["restarts"] == 1 and app.proc.poll() is None
        events = app.events()  # a page connecting now gets events again
        app.invoke("run_turn", sessionId=sid, text="after the restart")
        events.wait_event(
            "turn_complete",
            sid,
            where=lambda e: e.get("finalText") == "after the restart",
        )
        events.close()
    finally:
        app.stop()
        gw.stop()


# --- the bridge's server alone, on real sockets ---------------------------------------


class LoopThread:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = WAIT):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn, *args) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)


def test_a_page_that_stops_reading_is_dropped_while_others_are_served(
    tmp_path: Path, monkeypatch
):
    monkeypatch.setattr(bridge_http, "SEND_TIMEOUT_S", 1.0)
    lt = LoopThread()
    server = bridge_http.BridgeServer(tmp_path, "t0k", lambda *a: None)
    port = lt.run(server.start(0))
    try:
        page = silent_page(port, "t0k")
        reader = websocket.create_connection(
            f"ws://127.0.0.1:{port}/events?token=t0k", timeout=WAIT
        )
        wait_until(lambda: len(server.clients) == 2, what="both pages to connect")
        received: list[int] = []
        threading.Thread(
            target=lambda: received.extend(len(reader.recv()) for _ in range(100)),
            daemon=True,
        ).start()
        frame = json.dumps({"event": "x", "payload": "y" * 100_000})
        for _ in range(100):  # ~10 MB: far past what the socket buffers hold
            lt.call(server.broadcast, frame)
        wait_until(
            lambda: len(received) == 100, what="the reading page to get every frame"
        )
        reader.close()
        # Not read meanwhile: reading is what a live page does, and it would be kept.
        wait_until(
            lambda: server.pages_dropped == 1 and not server.clients,
            what="the silent page to be dropped",
        )
        assert dropped(page, WAIT), (
            "the bridge forgot the page but its connection is still open"
        )
    finally:
        lt.run(server.stop())
        lt.close()


def test_a_restarted_bridge_waits_for_its_port_to_be_let_go(tmp_path: Path):
    lt = LoopThread()
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    threading.Timer(
        0.5, holder.close
    ).start()  # an old server still letting go of the port
    server = bridge_http.BridgeServer(tmp_path, "t0k", lambda *a: None)
    try:
        assert lt.run(server.start(port)) == port
    finally:
        lt.run(server.stop())
        lt.close()


# --- the connection actor, with its real process --------------------------------------


class Inbox(DimActor):
    """Stands in for the router: keeps what the connection actor sends it."""

    got: list = []

    def handle(self, sender, body):
        Inbox.got.append(body)


def test_the_connection_actor_answers_an_outbox_id_it_cannot_send_and_keeps_running(
    tmp_path: Path,
):
    Inbox.got = []
    specs = [
        ChildSpec("router", Inbox),
        ChildSpec("uibridge", Inbox),
        ChildSpec(
            "connection", ConnectionActor, wiring=ConnectionWiring(ConnectionMemory())
        ),
    ]
    with supervised(tmp_path, specs) as tree:
        sup, addresses = tree.sup, tree.addresses
        # Beyond what the pipe can encode, beyond what SQLite holds, the wrong type;
        # then a good one.
        for req_id, outbox_id in [(1, 2**70), (2, 2**63), (3, "7"), (4, True), (5, 7)]:
            addresses.send(
                "router", "connection", CancelQueued(reqId=req_id, outboxId=outbox_id)
            )

        def answers() -> dict[int, CommandFailed]:
            return {m.reqId: m for m in list(Inbox.got) if isinstance(m, CommandFailed)}

        wait_until(lambda: len(answers()) == 5, what="an answer to each outbox_cancel")
        got = answers()
        for req_id in (1, 2, 3, 4):
            assert (
                got[req_id].code == "INVALID_ARGUMENTS"
                and "outbox_cancel: outbox id" in got[req_id].message
            )
        # the process itself answered: it is alive and well
        assert got[5].code == "NOT_FOUND"
        row = next(r for r in sup.ask(Status()) if r["name"] == "connection")
        assert row["restarts"] == 0 and row["state"] == "running", row


class UnreachableTree:
    """An ActorAdmin whose every question fails."""

    def names(self) -> list[str]:
        raise RuntimeError("the supervision tree is unreachable")

    def status_later(self, reply: object, fail: object) -> None:
        raise RuntimeError("the supervision tree is unreachable")

    def restart_later(self, name: str) -> None:
        raise RuntimeError("the supervision tree is unreachable")

    def recent_logs(self, *args: object) -> list[bytes]:
        raise RuntimeError("the supervision tree is unreachable")


def test_a_command_that_fails_inside_the_router_is_answered_and_the_router_goes_on(
    tmp_path: Path,
):
    """Defence in depth behind validation: a router whose view of the supervision tree
    fails (nothing a page can cause) fails on actor_status. That command is answered
    INTERNAL; the router is not restarted and answers the next command."""
    Inbox.got = []
    wiring = RouterWiring(RouterMemory(), admin=UnreachableTree())
    specs = [
        ChildSpec("router", Router, wiring=wiring),
        *(ChildSpec(n, Inbox) for n in ("uibridge", "connection", "journal")),
    ]
    with supervised(tmp_path, specs) as tree:
        sup, addresses = tree.sup, tree.addresses
        addresses.send("uibridge", "router", Invoke(reqId=1, command="actor_status"))
        addresses.send("uibridge", "router", Invoke(reqId=2, command="get_state"))

        def answers() -> dict[int, InvokeResult]:
            return {m.reqId: m for m in list(Inbox.got) if isinstance(m, InvokeResult)}

        wait_until(lambda: len(answers()) == 2, what="an answer to each command")
        failed, fine = answers()[1], answers()[2]
        assert not failed.ok and failed.error["code"] == "INTERNAL", failed
        assert failed.error["message"].startswith(
            "actor_status failed inside dim-desktop: RuntimeError"
        ), failed
        assert fine.ok and "chats" in fine.result, fine
        row = next(r for r in sup.ask(Status()) if r["name"] == "router")
        assert row["restarts"] == 0 and row["state"] == "running", row


class SilentSupervisor(UnreachableTree):
    """An ActorAdmin whose supervisor never answers a status request in time."""

    def status_later(self, reply: object, fail: Callable[[str], None]) -> None:
        fail("the supervisor did not answer within 15 s (it may be stopping)")


def test_actor_status_the_supervisor_does_not_answer_is_a_timeout_not_a_hang(
    tmp_path: Path,
):
    """The router never waits on the supervisor: the answer comes when the supervisor
    answers, or says it did not."""
    Inbox.got = []
    wiring = RouterWiring(RouterMemory(), admin=SilentSupervisor())
    specs = [
        ChildSpec("router", Router, wiring=wiring),
        *(ChildSpec(n, Inbox) for n in ("uibridge", "connection", "journal")),
    ]
    with supervised(tmp_path, specs) as tree:
        tree.addresses.send(
            "uibridge", "router", Invoke(reqId=1, command="actor_status")
        )

        def answer() -> InvokeResult | None:
            got = [m for m in list(Inbox.got) if isinstance(m, InvokeResult)]
            return got[0] if got else None

        result = wait_until(answer, what="an answer to actor_status")
        assert not result.ok and result.error["code"] == "TIMEOUT", result
        assert "did not answer within 15 s" in result.error["message"]
