"""Faults inside the connection process: lock discipline, hung threads, odd gateway
input, a full disk."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
from collections.abc import Callable
from contextlib import contextmanager

import pytest
from apphelpers import App, GatewayProcess, InvokeError, wait_until
from diskhelpers import fill, small_disk
from test_bad_gateway_input import (
    a_turn,
    app_against,
    snapshot_of,
    still_up,
    stored_turn,
    wait_complete,
)


def turns_of(app: App, sid: str) -> list[dict]:
    return app.invoke("get_state")["chats"].get(sid, {}).get("turns", [])


def completed(app: App, sid: str, text: str) -> bool:
    return any(
        t["status"] == "complete" and t["finalText"] == text for t in turns_of(app, sid)
    )


# --- commands queued offline in two sessions ------------------------------------------


def test_commands_queued_offline_in_two_sessions_all_go_out_after_reconnecting(
    dim_home, tmp_path
):
    # The second session is not joined: sending its queued turn joins it, from inside
    # the handling of the first one's answer (the frame lock is held there).
    gw = GatewayProcess(tmp_path / "gw").start()
    app = App(dim_home, ["--gateway", gw.url])
    try:
        app.wait_connected()
        a = app.invoke("create_session", agentType="echo")["session"]["id"]
        b = app.invoke("create_session", agentType="echo")["session"]["id"]
        app.invoke("join_session", sessionId=a)
        gw.kill()
        wait_until(
            lambda: app.invoke("get_state")["connection"]["state"] != "connected",
            60,
            what="the drop",
        )
        assert app.invoke("run_turn", sessionId=a, text="for a")["type"] == "queued"
        assert app.invoke("run_turn", sessionId=b, text="for b")["type"] == "queued"

        gw.start()
        wait_until(
            lambda: completed(app, a, "for a") and completed(app, b, "for b"),
            60,
            what="both queued turns to run",
        )
        wait_until(
            lambda: app.invoke("get_state")["outbox"] == [], what="the outbox to empty"
        )
        # And the connection still serves commands, in the same process.
        answer = app.invoke("run_turn", sessionId=b, text="later", timeout=30)
        assert answer["type"] == "turn_started"
        wait_until(lambda: completed(app, b, "later"), 60, what="the later turn")
        assert app.status()["connection"]["restarts"] == 0
    finally:
        app.stop()
        gw.stop()


# --- a hung thread in the connection process ------------------------------------------


class DeafGateway:
    """A real WebSocket server (hand-written, over loopback) that does the handshake,
    then never reads again: the client's sends fill the socket buffers and block, as
    with a wedged gateway or network."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"ws://127.0.0.1:{self.listener.getsockname()[1]}/ws"
        self.conns: list = []
        threading.Thread(target=self._serve, daemon=True).start()

    @staticmethod
    def _frame(obj: dict) -> bytes:
        payload = json.dumps(obj).encode()
        assert len(payload) < 126
        return bytes([0x81, len(payload)]) + payload

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.conns.append(conn)
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(4096)
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(
            hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        )
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        conn.sendall(
            self._frame(
                {"type": "welcome", "protocolVersion": 1, "requiresAuth": False}
            )
        )
        conn.sendall(
            self._frame(
                {
                    "type": "connected",
                    "clientId": "c",
                    "heartbeatIntervalMs": 30000,
                    "ts": 1,
                }
            )
        )
        # ... and nothing is read from here on.

    def close(self) -> None:
        self.listener.close()
        for c in self.conns:
            c.close()


def test_a_connection_process_with_a_stuck_thread_ends_itself_with_a_clear_reason(
    tmp_path, capfd
):
    """The real connection process against a gateway that stops reading: a big command
    blocks its sender thread for good. The watchdog ends the process (the supervisor
    then starts a new one)."""
    import multiprocessing

    from dim_actors.connection import process
    from dim_actors.messages import (
        Connect,
        ConnectionState,
        SendFrame,
        decode_up,
        encode_down,
    )

    gw = DeafGateway()
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe(duplex=True)
    options = process.ConnectionOptions(
        ping_interval_s=60.0,
        stale_after_s=180.0,
        request_timeout_s=300.0,
        hung_after_s=2.0,
        hung_after_send_s=2.0,
    )
    child = ctx.Process(target=process.main, args=(theirs, options), daemon=True)
    child.start()
    theirs.close()
    try:
        ours.send_bytes(encode_down(Connect(url=gw.url)))

        def connected() -> bool:
            while ours.poll(0.1):
                if any(
                    isinstance(m, ConnectionState) and m.state == "connected"
                    for m in decode_up(ours.recv_bytes())
                ):
                    return True
            return False

        wait_until(connected, 60, what="the connection process to connect")
        big = json.dumps(
            {
                "type": "write_file",
                "sessionId": "s",
                "path": "big.txt",
                "content": "x" * (32 << 20),
            }
        ).encode()
        ours.send_bytes(
            encode_down(
                SendFrame(
                    reqId=1, type="write_file", frame=big, expect=["file_written"]
                )
            )
        )
        child.join(60)
        assert child.exitcode == process.EXIT_HUNG
        err = capfd.readouterr().err
        assert (
            "thread of the connection process has been stuck" in err
            and "ending the process" in err
        )
    finally:
        if child.is_alive():
            child.kill()
        gw.close()


@pytest.mark.parametrize(
    "busy, expected",
    [
        ({}, []),
        ({"socket": 95.0}, []),  # busy 5 s: fine
        ({"socket": 60.0}, [("socket", 40.0)]),  # busy 40 s: stuck
        ({"sender": 60.0}, []),  # the sender's bound is longer
        ({"sender": 0.0, "commands": 99.0}, [("sender", 100.0)]),
    ],
)
def test_stuck_loops(busy, expected):
    from dim_actors.connection.process.watch import stuck_loops

    assert (
        stuck_loops(busy, {"sender": 60.0}, now=100.0, default_bound=30.0) == expected
    )


# --- odd gateway input: deep nesting, lone surrogates, seq gaps and conflicting duplicates --------


DEEP = "DEEP_PLACEHOLDER"


def with_deep(frame: object, levels: int = 1200) -> str:
    """`frame` as JSON, its DEEP placeholder an array nested `levels` deep (json.dumps
    cannot)."""
    return json.dumps(frame).replace(json.dumps(DEEP), "[" * levels + "]" * levels)


def warnings_with(events, text: str, n: int = 1) -> list[dict]:
    return events.wait_for(
        lambda fs: (lambda ws: ws if len(ws) >= n else None)(
            [
                f["payload"]
                for f in fs
                if f["event"] == "gateway-warning" and text in f["payload"]["reason"]
            ]
        ),
        60,
        what=f"a gateway-warning saying {text!r}",
    )


def test_an_event_nested_too_deep_is_a_bad_frame_and_the_connection_goes_on(dim_home):
    with app_against(dim_home) as (gw, app):
        app.wait_connected()
        events = app.events()
        gw.send(
            with_deep(
                {
                    "type": "tool_call",
                    "sessionId": "s1",
                    "turnId": "t0",
                    "seq": 1,
                    "ts": 1,
                    "args": DEEP,
                }
            )
        )
        for frame in a_turn("s1", "t1", 2, ["still ", "here"]):
            gw.send(frame)
        warnings_with(events, "nested deeper than")
        wait_complete(app, "s1", "t1", "still here")
        assert still_up(app, gw)["badFrames"] >= 1


def test_a_catch_up_page_holding_an_event_nested_too_deep_skips_it_and_applies_the_rest(
    dim_home,
):
    good = a_turn("s1", "t1", 1, ["caught ", "up"])  # seqs 1..4
    bad = {
        "type": "tool_call",
        "sessionId": "s1",
        "turnId": "t1",
        "seq": 3,
        "ts": 1,
        "args": DEEP,
    }
    page = [*good[:2], bad, *good[2:]]
    page[3] = {**page[3], "seq": 4}
    page[4] = {**page[4], "seq": 5}

    def respond(msg: dict) -> list[object]:
        if msg["type"] == "join_session":
            return [snapshot_of("s1", 5)]
        if msg["type"] == "get_events":
            return [
                with_deep(
                    {
                        "type": "event_list",
                        "sessionId": "s1",
                        "events": page if msg["afterSeq"] == 0 else [],
                        "hasMore": False,
                    }
                )
            ]
        return []

    with app_against(dim_home, respond=respond) as (gw, app):
        app.wait_connected()
        events = app.events()
        app.invoke("join_session", sessionId="s1")
        warnings_with(events, "nested deeper than")
        wait_complete(app, "s1", "t1", "caught up")
        for frame in a_turn("s1", "t2", 6, ["live ", "again"]):
            gw.send(frame)
        wait_complete(app, "s1", "t2", "live again")
        still_up(app, gw)
        assert sum(m["type"] == "get_events" for m in gw.received) == 1


def test_a_lone_surrogate_in_a_text_delta_becomes_a_replacement_character_and_the_text_is_kept(
    dim_home,
):
    with app_against(dim_home) as (gw, app):
        app.wait_connected()
        events = app.events()
        frames = a_turn("s1", "t1", 1, ["before ", "PLACEHOLDER", " after"])
        frames[-1]["finalText"] = "before \ufffd! after"
        for frame in frames:
            # ASCII: the placeholder becomes a lone surrogate escape on the wire
            wire = json.dumps(frame)
            gw.send(wire.replace("PLACEHOLDER", "\\ud83d!"))
        warnings_with(events, "lone surrogate")
        t = wait_until(
            lambda: (lambda t: t if t and t["status"] == "complete" else None)(
                stored_turn(app, "s1", "t1")
            ),
            60,
            what="the turn to complete",
        )
        assert t["text"] == "before \ufffd! after"
        still_up(app, gw)


@contextmanager
def joined_app(dim_home):
    """(stored, gw, app): an app joined to s1 on a gateway where s1 exists (empty at
    first) and get_events answers from `stored`, once the join's first catch-up was
    asked."""
    stored: list[dict] = []

    def respond(msg: dict) -> list[object]:
        if msg["type"] == "join_session":
            return [snapshot_of("s1", 0)]
        if msg["type"] == "get_events":
            after = msg["afterSeq"]
            return [
                {
                    "type": "event_list",
                    "sessionId": "s1",
                    "events": [e for e in stored if e["seq"] > after],
                    "hasMore": False,
                }
            ]
        return []

    with app_against(dim_home, respond=respond) as (gw, app):
        app.wait_connected()
        app.invoke("join_session", sessionId="s1")
        wait_until(
            lambda: sum(m["type"] == "get_events" for m in gw.received) == 1,
            60,
            what="the first catch-up",
        )
        yield stored, gw, app


def test_a_seq_gap_in_live_events_is_refetched(dim_home):
    with joined_app(dim_home) as (stored, gw, app):
        turn = a_turn("s1", "t1", 1, ["one ", "two ", "three"])  # seqs 1..5
        stored.extend(turn)
        gw.send(turn[0])
        gw.send(turn[3])  # seqs 2 and 3 never come live
        gw.send(turn[4])
        wait_complete(app, "s1", "t1", "one two three")
        refetch = [m for m in gw.received if m["type"] == "get_events"][1:]
        assert [m["afterSeq"] for m in refetch] == [1]
        still_up(app, gw)


def test_a_gateway_that_skips_seqs_is_refetched_three_times_then_taken_as_it_is(
    dim_home,
):
    with joined_app(dim_home) as (stored, gw, app):
        # 7 events, sent as seqs 1, 3, 5, ... 13
        turn = a_turn("s1", "t1", 1, ["a", "b", "c", "d", "e"])
        for i, frame in enumerate(turn):
            seq = frame["seq"] = 1 + 2 * i
            stored.append(frame)
            gw.send(frame)
            wait_until(
                lambda seq=seq: (
                    app.invoke("get_state")["chats"]["s1"]["lastSeq"] == seq
                ),
                60,
                what=f"seq {frame['seq']} to arrive",
            )
        wait_complete(app, "s1", "t1", "abcde")
        assert sum(m["type"] == "get_events" for m in gw.received) == 1 + 3
        assert app.invoke("get_state")["connection"]["traits"]["denseSeqs"] == "no"
        still_up(app, gw)


REFUSED = {"type": "error", "code": "INTERNAL_ERROR", "message": "no events for you"}


def session_s1_gateway(
    get_events: Callable[[dict], list[object]],
) -> Callable[[dict], list[object]]:
    """Answers for a gateway holding one empty session, s1, whose get_events answers are
    `get_events`'s."""

    def respond(msg: dict) -> list[object]:
        match msg["type"]:
            case "list_sessions":  # answered, so an error can only answer a get_events
                return [{"type": "session_list", "sessions": []}]
            case "join_session":
                return [snapshot_of("s1", 0)]
            case "get_events":
                return get_events(msg)
            case "get_history":
                return [{"type": "history", "sessionId": "s1", "turns": []}]
        return []

    return respond


def test_a_seq_gap_a_gateway_cannot_refetch_is_shown_as_a_gap_and_events_go_on(
    dim_home,
):
    """The gap's get_events is refused: the catch-up's fallbacks (get_history, a
    CatchupGap notice) take over, and the event that showed the gap is delivered all the
    same."""
    asked: list[dict] = []

    def get_events(msg: dict) -> list[object]:
        asked.append(msg)
        if msg["afterSeq"] == 0:
            return [
                {
                    "type": "event_list",
                    "sessionId": "s1",
                    "events": [],
                    "hasMore": False,
                }
            ]
        return [REFUSED]

    respond = session_s1_gateway(get_events)

    with app_against(dim_home, respond=respond) as (gw, app):
        app.wait_connected()
        events = app.events()
        app.invoke("join_session", sessionId="s1")
        wait_until(lambda: len(asked) == 1, 60, what="the first catch-up")
        turn = a_turn("s1", "t1", 1, ["one ", "two ", "three"])  # seqs 1..5
        gw.send(turn[0])
        gw.send(turn[3])  # seqs 2 and 3 never come
        gw.send(turn[4])
        gap = events.wait_for(
            lambda fs: next(
                (f["payload"] for f in fs if f["event"] == "catchup-gap"), None
            ),
            60,
            what="the gap notice",
        )
        assert (gap["afterSeq"], gap["beforeSeq"]) == (1, 4)
        t = wait_until(
            lambda: (lambda t: t if t and t["status"] == "complete" else None)(
                stored_turn(app, "s1", "t1")
            ),
            60,
            what="the turn to complete",
        )
        assert t["finalText"] == "one two three"
        assert [m["afterSeq"] for m in asked] == [0, 1]
        assert any(m["type"] == "get_history" for m in gw.received)
        still_up(app, gw)


def test_a_duplicate_seq_with_other_content_is_reported_and_the_first_kept(dim_home):
    with joined_app(dim_home) as (stored, gw, app):
        events = app.events()
        turn = a_turn("s1", "t1", 1, ["first ", "copy"])
        gw.send(turn[0])
        gw.send(turn[1])
        # the same event written otherwise: no warning
        gw.send(json.dumps(turn[1], indent=1, sort_keys=True))
        gw.send({**turn[1], "text": "OTHER "})  # seq 2 again, other content
        gw.send(turn[2])
        gw.send(turn[3])
        warnings_with(events, "seq 2 came again with other content")
        wait_complete(app, "s1", "t1", "first copy")
        row = still_up(app, gw)
        assert row["badFrames"] == 1


# --- a full disk under the outbox -----------------------------------------------------


@pytest.fixture
def small_data_dir(dim_home):
    """DIM_HOME's data folder on a 4 MiB tmpfs of its own."""
    with small_disk(dim_home / "data") as data:
        yield data


def test_a_command_the_full_outbox_cannot_store_is_refused_clearly_and_the_connection_lives_on(
    dim_home, small_data_dir
):
    with app_against(dim_home) as (gw, app):
        app.wait_connected()
        app.invoke("gateway_disconnect")
        wait_until(
            lambda: app.invoke("get_state")["connection"]["state"] == "offline",
            what="offline",
        )
        filler = fill(small_data_dir)
        with pytest.raises(InvokeError) as e:
            app.invoke("run_turn", sessionId="s1", text="my words", timeout=30)
        assert e.value.code == "DISK_FULL"
        message = e.value.body["error"]["message"]
        assert (
            "disk full" in message
            and str(small_data_dir) in message
            and "free space" in message
        )
        assert app.invoke("get_state")["outbox"] == []
        filler.unlink()
        # space freed: queued as usual
        queued = app.invoke("run_turn", sessionId="s1", text="my words")
        assert queued["type"] == "queued"
        row = app.status()["connection"]
        assert row["restarts"] == 0


def test_a_connection_process_starting_on_a_full_disk_runs_and_opens_its_outbox_once_there_is_room(
    dim_home, small_data_dir
):
    """The real connection process, its outbox on a full disk from the start: it runs
    (no restart loop), refuses a command it cannot queue, and queues once space is
    freed."""
    import multiprocessing

    from dim_actors.connection import process
    from dim_actors.messages import (
        CommandFailed,
        Connect,
        Queued,
        SendFrame,
        decode_up,
        encode_down,
    )

    filler = fill(small_data_dir)
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe(duplex=True)
    options = process.ConnectionOptions(
        ping_interval_s=60.0,
        stale_after_s=180.0,
        request_timeout_s=30.0,
        outbox_path=small_data_dir / "outbox.sqlite",
    )
    child = ctx.Process(target=process.main, args=(theirs, options), daemon=True)
    child.start()
    theirs.close()
    received: list = []

    def answer_to(req_id: int):
        def find():
            while ours.poll(0.1):
                received.extend(decode_up(ours.recv_bytes()))
            return next(
                (
                    m
                    for m in received
                    if isinstance(m, (CommandFailed, Queued)) and m.reqId == req_id
                ),
                None,
            )

        return find

    try:
        # a port nobody answers on: offline
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        listener.close()
        ours.send_bytes(encode_down(Connect(url=f"ws://127.0.0.1:{port}/ws")))
        run_turn = json.dumps(
            {"type": "run_turn", "sessionId": "s1", "text": "my words"}
        ).encode()
        ours.send_bytes(
            encode_down(
                SendFrame(
                    reqId=1, type="run_turn", frame=run_turn, expect=["turn_started"]
                )
            )
        )
        refused = wait_until(answer_to(1), 60, what="the answer to the first run_turn")
        assert isinstance(refused, CommandFailed) and refused.code == "DISK_FULL", (
            refused
        )
        assert "free space and send again" in refused.message
        filler.unlink()
        ours.send_bytes(
            encode_down(
                SendFrame(
                    reqId=2, type="run_turn", frame=run_turn, expect=["turn_started"]
                )
            )
        )
        queued = wait_until(answer_to(2), 60, what="the answer to the second run_turn")
        assert isinstance(queued, Queued), queued
        assert child.is_alive()
    finally:
        child.kill()
        child.join(30)
