"""The dev gateway's replication endpoint (/replicate), over a real socket, speaking the
wire protocol."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import threading

import pytest
import websocket
from gateway_helpers import Client

from dim_actors.connection.replication import Link
from dim_actors.devgateway import BackgroundGateway
from dim_actors.messages import ReplicationState, StartReplication
from dim_actors.wire import replication as wire

# A socket's timeout here is how long to wait for the gateway's next frame (a
# condition), not how long it should take: generous, for a loaded machine (2 shared
# cores, other suites running).
WAIT_S = 60


class Replica:
    """A bare replication client: msgpack frames in and out, nothing else."""

    def __init__(
        self, gw_url: str, sid: str, replica_id: str = "r1", token: str | None = None
    ):
        base = gw_url.rsplit("/", 1)[0]
        url = f"{base}/replicate?sessionId={sid}&replicaId={replica_id}" + (
            f"&token={token}" if token else ""
        )
        self.ws = websocket.create_connection(url, timeout=WAIT_S, suppress_origin=True)

    def send(self, msg: wire.WireMsg) -> None:
        self.ws.send_binary(wire.encode(msg))

    def recv(self) -> wire.WireMsg:
        op, data = self.ws.recv_data()
        assert op == websocket.ABNF.OPCODE_BINARY
        return wire.decode_to_replica(data)

    def until(self, cls, where=lambda m: True) -> list[wire.WireMsg]:
        out = []
        while True:
            m = self.recv()
            out.append(m)
            if isinstance(m, cls) and where(m):
                return out

    def catchup(self, since: int = 0) -> tuple[list[wire.Notification], int]:
        self.send(wire.CatchupRequest(sinceSequence=since))
        msgs = self.until(wire.Heartbeat)
        return [m for m in msgs if isinstance(m, wire.Notification)], msgs[-1].sequence

    def close(self) -> None:
        self.ws.close()


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    with BackgroundGateway(
        token="sekrit", rate_limit=100_000, data_dir=tmp_path_factory.mktemp("gw")
    ) as g:
        yield g


@pytest.fixture
def client(gw):
    c = Client(gw.url, handshake=True)
    c.ok("authenticate", token="sekrit")
    yield c
    c.close()


def agent(c: Client, sid: str, script: str) -> None:
    events = c.run(sid, script)
    assert events[-1]["type"] == "turn_complete", events[-1]


def test_refuses_bad_token_unknown_session_and_bad_replica_id(gw, client):
    sid = client.new_session("coding-agent")
    base = gw.url.rsplit("/", 1)[0]
    for query, status in (
        (f"sessionId={sid}&replicaId=r", 401),
        (f"sessionId={sid}&replicaId=r&token=nope", 401),
        ("sessionId=nope&replicaId=r&token=sekrit", 404),
        (f"sessionId={sid}&replicaId=a/b&token=sekrit", 400),
    ):
        with pytest.raises(websocket.WebSocketBadStatusException) as e:
            websocket.create_connection(f"{base}/replicate?{query}", timeout=WAIT_S)
        assert e.value.status_code == status


def test_catchup_live_notifications_and_content_fetch(gw, client):
    sid = client.new_session("coding-agent")
    agent(client, sid, "/write a.txt hello\n/write dir/b.txt one\n/write dir/b.txt two")
    r = Replica(gw.url, sid, token="sekrit")
    notes, seq = r.catchup(0)
    assert [(n.filepath, n.iteration, n.inlineContent) for n in notes] == [
        ("a.txt", 1, b"hello"),
        ("dir/b.txt", 2, b"two"),
    ]
    assert all(
        n.permissions == 0o644 and n.contentHash == sha(n.inlineContent) for n in notes
    )
    assert notes[0].sequence < notes[1].sequence == seq

    # live: a big file comes without content; fetched by hash, in pieces
    big = os.urandom(wire.CHUNK_SIZE + 1000).hex().encode()[: wire.CHUNK_SIZE * 2 + 77]
    gw.call(lambda g: g.sessions[sid].workspace.write("big.bin", big))
    note = r.until(wire.Notification)[-1]
    assert (
        note.filepath == "big.bin"
        and note.inlineContent is None
        and note.size == len(big)
        and note.sequence > seq
    )
    r.send(wire.ContentFetchRequest(contentHash=note.contentHash))
    pieces = r.until(wire.ContentFetchResponse, lambda m: m.last)
    data = b"".join(p.data for p in pieces if isinstance(p, wire.ContentFetchResponse))
    assert (
        data == big
        and len([p for p in pieces if isinstance(p, wire.ContentFetchResponse)]) == 3
    )
    r.send(wire.ContentFetchRequest(contentHash="0" * 64))
    assert isinstance(r.until(wire.ContentNotFound)[-1], wire.ContentNotFound)

    # a rename is one notification; a resume from the last sequence sees only what came
    # after
    agent(client, sid, "/rename a.txt c.txt")
    renamed = r.until(wire.Notification)[-1]
    assert (renamed.filepath, renamed.renamedFrom, renamed.renamedFromIteration) == (
        "c.txt",
        "a.txt",
        2,
    )
    r.close()
    r2 = Replica(gw.url, sid, token="sekrit")
    notes, _ = r2.catchup(note.sequence)
    assert [(n.filepath, n.renamedFrom) for n in notes] == [("c.txt", "a.txt")]
    r2.send(wire.CatchupRequest(sinceSequence=10**9))
    assert isinstance(r2.until(wire.FullResyncRequired)[-1], wire.FullResyncRequired)
    r2.close()


def test_writeback_accepted_conflict_idempotent_and_upload(gw, client):
    sid = client.new_session("coding-agent")
    agent(client, sid, "/write src/x.py v1")
    r = Replica(gw.url, sid, "laptop", token="sekrit")
    notes, _ = r.catchup(0)
    base = notes[0].iteration

    entry = wire.WriteBackEntry(
        localSeq=1,
        filepath="src/x.py",
        contentHash=sha(b"v2-local"),
        size=8,
        permissions=0o755,
        baseIteration=base,
        content=b"v2-local",
    )
    r.send(wire.WriteBack(entries=[entry]))
    result = r.until(wire.WriteBackResult)[-1]
    assert result.accepted == [wire.Accepted(1, 2)] and result.rejected == []
    seen = client.wait(
        lambda e: (
            e.get("type") == "file_changed"
            and e.get("path") == "src/x.py"
            and e["iteration"] == 2
        )
    )
    assert seen["hash"] == sha(b"v2-local")
    assert (
        client.ok("read_file", sessionId=sid, path="src/x.py")["content"] == "v2-local"
    )
    assert [
        i["iteration"]
        for i in client.ok("file_history", sessionId=sid, path="src/x.py")["iterations"]
    ] == [1, 2]
    note = r.until(wire.Notification, lambda n: n.filepath == "src/x.py")[-1]
    assert note.iteration == 2 and note.permissions == 0o755

    # the same entry again (a resend after a crash): the first answer, no new iteration
    r.send(wire.WriteBack(entries=[entry]))
    assert r.until(wire.WriteBackResult)[-1].accepted == [wire.Accepted(1, 2)]
    # based on an older iteration: a conflict, nothing written
    stale = wire.WriteBackEntry(
        localSeq=2,
        filepath="src/x.py",
        contentHash=sha(b"other"),
        size=5,
        permissions=0o644,
        baseIteration=1,
        content=b"other",
    )
    bad = wire.WriteBackEntry(
        localSeq=3,
        filepath="../etc/passwd",
        contentHash=sha(b"x"),
        size=1,
        permissions=0o644,
        baseIteration=0,
        content=b"x",
    )
    lie = wire.WriteBackEntry(
        localSeq=4,
        filepath="y",
        contentHash=sha(b"x"),
        size=1,
        permissions=0o644,
        baseIteration=0,
        content=b"not x",
    )
    r.send(wire.WriteBack(entries=[stale, bad, lie]))
    res = r.until(wire.WriteBackResult)[-1]
    assert [(x.localSeq, x.reason, x.currentIteration) for x in res.rejected] == [
        (2, "conflict", 2),
        (3, "invalid_path", 0),
        (4, "hash_mismatch", 0),
    ]
    assert (
        len(client.ok("file_history", sessionId=sid, path="src/x.py")["iterations"])
        == 2
    )

    # a large write-back goes ahead in pieces; a deletion based on the head is accepted
    big = b"z" * (wire.CHUNK_SIZE + 10)
    h = sha(big)
    r.send(
        wire.ContentUpload(
            contentHash=h, offset=0, totalSize=len(big), data=big[: wire.CHUNK_SIZE]
        )
    )
    r.send(
        wire.ContentUpload(
            contentHash=h,
            offset=wire.CHUNK_SIZE,
            totalSize=len(big),
            data=big[wire.CHUNK_SIZE :],
        )
    )
    r.send(
        wire.WriteBack(
            entries=[
                wire.WriteBackEntry(
                    localSeq=5,
                    filepath="big",
                    contentHash=h,
                    size=len(big),
                    permissions=0o644,
                    baseIteration=0,
                ),
                wire.WriteBackEntry(
                    localSeq=6,
                    filepath="src/x.py",
                    contentHash="",
                    size=0,
                    permissions=0,
                    baseIteration=2,
                    isDeletion=True,
                ),
            ]
        )
    )
    res = r.until(wire.WriteBackResult)[-1]
    assert res.accepted == [wire.Accepted(5, 1), wire.Accepted(6, 3)], res
    assert client.ok("file_history", sessionId=sid, path="big")["iterations"][0][
        "size"
    ] == len(big)
    r.close()


def test_every_replica_sees_agent_writes_and_each_others_write_backs(gw, client):
    sid = client.new_session("coding-agent")
    a, b = (
        Replica(gw.url, sid, "a", token="sekrit"),
        Replica(gw.url, sid, "b", token="sekrit"),
    )
    a.catchup(0)
    b.catchup(0)
    agent(client, sid, "/write shared.txt from the agent")
    for r in (a, b):
        n = r.until(wire.Notification)[-1]
        assert (n.filepath, n.inlineContent, n.iteration) == (
            "shared.txt",
            b"from the agent",
            1,
        )
    a.send(
        wire.WriteBack(
            entries=[
                wire.WriteBackEntry(
                    localSeq=7,
                    filepath="shared.txt",
                    contentHash=sha(b"from a"),
                    size=6,
                    permissions=0o644,
                    baseIteration=1,
                    content=b"from a",
                )
            ]
        )
    )
    assert a.until(wire.WriteBackResult)[-1].accepted == [wire.Accepted(7, 2)]
    n = b.until(wire.Notification)[-1]
    assert (n.filepath, n.inlineContent, n.iteration) == ("shared.txt", b"from a", 2)
    # b's write based on iteration 1 now loses: a conflict for b, nothing written
    b.send(
        wire.WriteBack(
            entries=[
                wire.WriteBackEntry(
                    localSeq=7,
                    filepath="shared.txt",
                    contentHash=sha(b"from b"),
                    size=6,
                    permissions=0o644,
                    baseIteration=1,
                    content=b"from b",
                )
            ]
        )
    )
    res = b.until(wire.WriteBackResult)[-1]
    assert [(x.localSeq, x.reason, x.currentIteration) for x in res.rejected] == [
        (7, "conflict", 2)
    ]
    a.close()
    b.close()


# --- the connection process's side: a Link --------------------------------------------


class Controls:
    """An Uplink stand-in: what a Link hands up, in order."""

    def __init__(self):
        self.items: list = []

    def put_control(self, msg) -> None:
        self.items.append(msg)

    def states(self) -> list[str]:
        return [m.state for m in list(self.items) if isinstance(m, ReplicationState)]


def test_a_stopped_link_whose_connect_completes_late_reports_nothing_more(tmp_path):
    """StopReplication while the link's handshake is under way (start_sync stops and
    starts a session's link; a loaded gateway answers the handshake late): the old
    link's reader finishes the connect after the stop, and must not report "connected"
    (or anything) over the new link's state."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    got_request = threading.Event()
    answer = threading.Event()
    closed = threading.Event()

    def serve():
        conn, _ = server.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            got_request.set()
            answer.wait(WAIT_S)
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
            conn.settimeout(WAIT_S)
            try:
                # the CatchupRequest, then the close: the reader is done
                while conn.recv(4096):
                    pass
            except OSError:
                pass
            closed.set()

    threading.Thread(target=serve, daemon=True).start()
    controls = Controls()
    link = Link(
        StartReplication(
            sessionId="s1",
            replicaId="r1",
            sinceSequence=0,
            spoolDir=str(tmp_path / "spool"),
        ),
        controls,
        lambda: (f"ws://127.0.0.1:{port}/ws", None),
    )  # type: ignore[arg-type]
    link.start()
    try:
        assert got_request.wait(WAIT_S), "the link never connected"
        link.stop()
        answer.set()
        assert closed.wait(WAIT_S), "the stopped link kept its socket open"
        link.reader.join(WAIT_S)
        assert not link.reader.is_alive()
        assert controls.states() == ["connecting", "stopped"]
    finally:
        answer.set()
        link.stop()
        server.close()
