"""Every client message and every error code of Diminuendo v1, through the UI bridge
only.

dev gateway (its own process) -> connection process -> router -> UI bridge (HTTP invoke
+ /events). Each of the 21 client messages has a test that checks the answering event's
type and fields (RESPONSES in dim_actors/wire/protocol.py, docs/protocol.md);
`authenticate` is both what an app started with --token does on every connect and a
bridge command of its own. The transport errors a well-behaved client cannot produce
(INVALID_JSON, MESSAGE_TOO_LARGE, binary frames, unknown types) are tested at the
gateway in test_devgateway.py; here is what reaches the bridge. Absence is shown by
ordering (a later event arrives first), never by sleeping.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path

import pytest
import websocket
from apphelpers import App, EventStream, GatewayProcess, InvokeError, wait_until

from dim_actors.wire.protocol import RESPONSES

TOKEN = "e2e-token"
DEV_IDENTITY = {
    "userId": "dev-user-001",
    "email": "developer@example.com",
    "tenantId": "dev",
}
META_KEYS = {
    "id",
    "name",
    "agentType",
    "status",
    "archived",
    "createdAt",
    "updatedAt",
    "lastSeq",
}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- fixtures: one gateway and one app for the module --------------------------------
# (starting an app costs about a second)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    # The functional tests here send far more than 60 messages in 10 s over one
    # connection.
    g = GatewayProcess(
        tmp_path_factory.mktemp("gw"), args=["--rate-limit", "100000"]
    ).start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def app(gateway, tmp_path_factory):
    a = App(tmp_path_factory.mktemp("home"), ["--gateway", gateway.url])
    a.wait_connected()
    yield a
    a.stop()


@pytest.fixture
def events(app):
    stream = app.events()
    yield stream
    stream.close()


def new_session(
    app: App, agent: str = "echo", name: str | None = None, join: bool = True
) -> str:
    args = {"agentType": agent} if name is None else {"agentType": agent, "name": name}
    sid = app.invoke("create_session", **args)["session"]["id"]
    if join:
        app.invoke("join_session", sessionId=sid)
    return sid


def turn_events(events: EventStream, turn_id: str) -> list[dict]:
    return [e for e in events.gateway_events() if e.get("turnId") == turn_id]


def wait_turn_end(
    events: EventStream, sid: str, turn_id: str, timeout: float = 60
) -> dict:
    return events.wait_for(
        lambda frames: next(
            (
                f["payload"]
                for f in frames
                if f["event"] == "gateway-event"
                and f["payload"].get("turnId") == turn_id
                and f["payload"]["type"] in ("turn_complete", "turn_error")
            ),
            None,
        ),
        timeout,
        what=f"the end of {turn_id}",
    )


def envelope(ev: dict, sid: str, turn_id: str | None = None) -> None:
    """A stream event: sessionId, a positive seq, a ts of now, and the turn's id when in
    a turn."""
    assert ev["sessionId"] == sid
    assert isinstance(ev["seq"], int) and ev["seq"] >= 1
    assert abs(ev["ts"] - now_ms()) < 60_000
    if turn_id is not None:
        assert ev["turnId"] == turn_id


def gateway_error(exc: pytest.ExceptionInfo, gateway_code: str) -> dict:
    err = exc.value.body["error"]
    assert (exc.value.status, exc.value.code, err["gatewayCode"]) == (
        422,
        "GATEWAY_ERROR",
        gateway_code,
    ), err
    return err


def test_the_tests_cover_every_client_message():
    here = Path(__file__).read_text()
    for type_ in RESPONSES:
        assert f"def test_{type_}" in here, f"no test for {type_}"


# --- authenticate, heartbeat: an app against a gateway that requires a token ----------


@pytest.fixture(scope="module")
def token_gateway(tmp_path_factory):
    g = GatewayProcess(
        tmp_path_factory.mktemp("gw-token"),
        args=["--token", TOKEN, "--heartbeat-ms", "150", "--rate-limit", "100000"],
    ).start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def token_app(token_gateway, tmp_path_factory):
    a = App(
        tmp_path_factory.mktemp("home-token"),
        ["--gateway", token_gateway.url, "--token", TOKEN],
    )
    a.wait_connected()
    yield a
    a.stop()


def test_authenticate(token_app: App):
    conn = token_app.invoke("get_state")["connection"]
    assert conn["state"] == "connected" and conn["identity"] == DEV_IDENTITY
    # The connection process sent `authenticate {token}`; the answer went through the
    # router.
    logged = token_app.invoke("actor_logs", name="router", types=["authenticated"])
    assert logged[-1]["body"]["raw"] == {
        "type": "authenticated",
        "identity": DEV_IDENTITY,
    }
    # authenticated: requests pass
    assert token_app.invoke("list_sessions")["type"] == "session_list"

    # As a bridge command, on the current connection: the right token is answered
    # `authenticated`...
    assert token_app.invoke("authenticate", token=TOKEN) == {
        "type": "authenticated",
        "identity": DEV_IDENTITY,
    }
    # ...a wrong one with the gateway's AUTH_FAILED, as a 4xx of that command only.
    with pytest.raises(InvokeError) as e:
        token_app.invoke("authenticate", token="not-the-token")
    assert gateway_error(e, "AUTH_FAILED")["message"] == "Invalid token"
    with pytest.raises(InvokeError) as e:
        token_app.invoke("authenticate", tokn=TOKEN)
    assert (e.value.status, e.value.code) == (400, "INVALID_ARGUMENTS")
    # The refused attempt leaves the connection as it was, authenticated...
    assert token_app.invoke("get_state")["connection"]["state"] == "connected"
    assert token_app.invoke("ping")["type"] == "pong"

    # ...and does not become the token reconnects use: a restarted connection process
    # still gets in.
    def authentications():
        return len(
            token_app.invoke(
                "actor_logs", name="router", types=["authenticated"], limit=1000
            )
        )

    before = authentications()
    token_app.invoke("restart_actor", name="connection")
    wait_until(
        lambda: authentications() > before,
        60,
        what="the restarted connection to authenticate",
    )
    token_app.wait_connected()
    assert token_app.invoke("get_state")["connection"]["identity"] == DEV_IDENTITY


def test_heartbeats_reach_a_joined_client(token_app: App):
    events = token_app.events()
    try:
        new_session(token_app)

        def two_beats(frames):
            beats = [
                f["payload"]
                for f in frames
                if f["event"] == "gateway-event" and f["payload"]["type"] == "heartbeat"
            ]
            return beats[:2] if len(beats) >= 2 else None

        beats = events.wait_for(two_beats, what="two heartbeats")
        assert all(set(b) == {"type", "ts"} for b in beats)
        assert (
            beats[0]["ts"] <= beats[1]["ts"] and abs(beats[1]["ts"] - now_ms()) < 60_000
        )
    finally:
        events.close()


# --- session management ---------------------------------------------------------------


def test_list_sessions(app: App):
    shown = new_session(app, name="listed", join=False)
    hidden = new_session(app, name="to archive", join=False)
    app.invoke("archive_session", sessionId=hidden)
    listed = app.invoke("list_sessions")
    assert listed["type"] == "session_list" and set(listed) == {"type", "sessions"}
    by_id = {s["id"]: s for s in listed["sessions"]}
    assert shown in by_id and hidden not in by_id
    assert set(by_id[shown]) == META_KEYS and by_id[shown]["name"] == "listed"
    everything = {
        s["id"]: s
        for s in app.invoke("list_sessions", includeArchived=True)["sessions"]
    }
    assert (
        everything[hidden]["archived"] is True
        and everything[shown]["archived"] is False
    )


def test_create_session(app: App):
    before = now_ms()
    created = app.invoke("create_session", agentType="coding-agent", name="made here")
    assert created["type"] == "session_created"
    meta = created["session"]
    assert created["sessionId"] == meta["id"] and set(meta) == META_KEYS
    assert (
        meta["name"],
        meta["agentType"],
        meta["status"],
        meta["archived"],
        meta["lastSeq"],
    ) == ("made here", "coding-agent", "inactive", False, 0)
    assert before - 5000 <= meta["createdAt"] <= meta["updatedAt"] <= now_ms() + 5000
    uuid.UUID(meta["id"])
    assert meta["id"] in {
        s["id"] for s in app.invoke("get_state")["sessions"]
    }  # in the router's store
    default = app.invoke("create_session", agentType="echo")["session"]
    assert default["name"]  # a name is chosen when none is given


def test_rename_session(app: App, events: EventStream):
    sid = new_session(app, name="before")
    renamed = app.invoke("rename_session", sessionId=sid, name="after")
    assert renamed["type"] == "session_renamed" and renamed["name"] == "after"
    envelope(renamed, sid)
    # broadcast to the joined client too
    assert events.wait_event("session_renamed", sid) == renamed
    assert {s["id"]: s for s in app.invoke("list_sessions")["sessions"]}[sid][
        "name"
    ] == "after"
    assert {s["id"]: s for s in app.invoke("get_state")["sessions"]}[sid][
        "name"
    ] == "after"


def test_archive_session(app: App):
    sid = new_session(app, join=False)
    archived = app.invoke("archive_session", sessionId=sid)
    assert archived["type"] == "session_archived"
    envelope(archived, sid)  # answered even though this client has not joined
    assert sid not in {s["id"] for s in app.invoke("list_sessions")["sessions"]}
    assert {
        s["id"]: s
        for s in app.invoke("list_sessions", includeArchived=True)["sessions"]
    }[sid]["archived"]


def test_unarchive_session(app: App):
    sid = new_session(app, join=False)
    app.invoke("archive_session", sessionId=sid)
    back = app.invoke("unarchive_session", sessionId=sid)
    assert back["type"] == "session_unarchived"
    envelope(back, sid)
    assert {s["id"]: s for s in app.invoke("list_sessions")["sessions"]}[sid][
        "archived"
    ] is False


def test_delete_session(app: App, events: EventStream):
    sid = new_session(app, "coding-agent")
    deleted = app.invoke("delete_session", sessionId=sid)
    assert deleted == {"type": "session_deleted", "sessionId": sid}
    events.wait_event("session_deleted", sid)
    assert sid not in {
        s["id"] for s in app.invoke("list_sessions", includeArchived=True)["sessions"]
    }
    assert sid not in {s["id"] for s in app.invoke("get_state")["sessions"]}
    with pytest.raises(InvokeError) as e:
        app.invoke("join_session", sessionId=sid)
    gateway_error(e, "SessionNotFound")


def test_join_session(app: App, events: EventStream):
    sid = new_session(app, "coding-agent", join=False)
    snap = app.invoke("join_session", sessionId=sid)
    assert snap["type"] == "state_snapshot" and snap["sessionId"] == sid
    assert set(snap["session"]) == META_KEYS and snap["session"]["status"] == "ready"
    assert snap["pendingRequests"] == [] and "activeTurnId" not in snap
    # Activation happened for this join, and the joined client sees every step of it.
    ready = events.wait_event(
        "session_state", sid, where=lambda e: e["status"] == "ready"
    )
    assert snap["lastSeq"] == ready["seq"] == snap["session"]["lastSeq"]
    stream = [e for e in events.gateway_events(sid) if "seq" in e]
    assert [e["type"] for e in stream] == [
        "session_state",
        "sandbox_init",
        "sandbox_provisioning",
        "sandbox_ready",
        "session_state",
    ]
    assert [e["seq"] for e in stream] == list(range(1, 6))
    assert stream[1]["provider"] == "local" and stream[2]["phase"] == "starting"
    for e in stream:
        envelope(e, sid)
    # Joining again is idempotent: the same snapshot, no second activation.
    again = app.invoke("join_session", sessionId=sid)
    assert again["lastSeq"] == snap["lastSeq"] and again["session"]["status"] == "ready"


def test_leave_session(app: App, events: EventStream):
    sid = new_session(app)
    assert sid in app.invoke("get_state")["joined"]
    left = app.invoke("leave_session", sessionId=sid)
    assert left == {"type": "session_left", "sessionId": sid}
    assert sid not in app.invoke("get_state")["joined"]
    # the requester still gets its answer
    started = app.invoke("run_turn", sessionId=sid, text="nobody listens")
    wait_until(
        lambda: (
            app.invoke("get_history", sessionId=sid)["turns"][-1]["status"]
            == "complete"
        ),
        what="the turn to finish",
    )
    pong = app.invoke("ping")
    events.wait_for(
        lambda frames: any(
            f["payload"] == pong for f in frames if f["event"] == "gateway-event"
        ),
        what="the pong",
    )
    # Everything the gateway sent this connection before the pong has reached the page
    # by now: of that turn, only the answer to run_turn.
    assert [e["type"] for e in turn_events(events, started["turnId"])] == [
        "turn_started"
    ]


# --- turns ----------------------------------------------------------------------------


def test_run_turn(app: App, events: EventStream):
    sid = new_session(app)
    started = app.invoke("run_turn", sessionId=sid, text="hello brave world")
    assert started["type"] == "turn_started" and started["text"] == "hello brave world"
    envelope(started, sid, started["turnId"])
    assert len(started["clientTurnId"]) == 32  # the bridge gives every turn a client id
    done = events.wait_event(
        "turn_complete", sid, where=lambda e: e["turnId"] == started["turnId"]
    )
    deltas = [
        e["text"]
        for e in turn_events(events, started["turnId"])
        if e["type"] == "text_delta"
    ]
    assert deltas == ["hello", " brave", " world"]
    assert done["finalText"] == "hello brave world" and done["stopReason"] == "end_turn"
    assert done["usage"] == {"inputTokens": 3, "outputTokens": 3}
    # A clientTurnId runs at most once: the repeat is answered with the original frame.
    first = app.invoke("run_turn", sessionId=sid, text="once", clientTurnId="ct-e2e-1")
    events.wait_event(
        "turn_complete", sid, where=lambda e: e["turnId"] == first["turnId"]
    )
    assert (
        app.invoke("run_turn", sessionId=sid, text="once", clientTurnId="ct-e2e-1")
        == first
    )
    turns = app.invoke("get_history", sessionId=sid)["turns"]
    assert [t.get("clientTurnId") for t in turns].count("ct-e2e-1") == 1


def test_stop_turn(app: App, events: EventStream):
    sid = new_session(app, "coding-agent")
    started = app.invoke("run_turn", sessionId=sid, text="/stream 100000 200")
    turn_id = started["turnId"]
    events.wait_for(
        lambda frames: (
            sum(
                f["event"] == "gateway-event"
                and f["payload"].get("turnId") == turn_id
                and f["payload"]["type"] == "text_delta"
                for f in frames
            )
            >= 3
        ),
        what="three deltas",
    )
    t0 = time.monotonic()
    stopped = app.invoke("stop_turn", sessionId=sid, turnId=turn_id)
    # Answered on the spot, not after the stream: its 100,000 deltas at 200/s were due
    # over 500 s. The bound leaves a loaded machine room for the round trip and is still
    # far from the stream's end.
    assert time.monotonic() - t0 < 30.0
    assert stopped["type"] == "turn_complete" and stopped["stopReason"] == "stopped"
    envelope(stopped, sid, turn_id)
    events.wait_event(
        "session_state",
        sid,
        where=lambda e: e["seq"] > stopped["seq"] and e["status"] == "ready",
    )
    pong = app.invoke("ping")
    events.wait_for(
        lambda frames: any(
            f["payload"] == pong for f in frames if f["event"] == "gateway-event"
        ),
        what="the pong",
    )
    mine = turn_events(events, turn_id)
    assert mine[-1] == stopped  # nothing of the turn after its turn_complete
    assert stopped["finalText"] == "".join(
        e["text"] for e in mine if e["type"] == "text_delta"
    )
    assert stopped["finalText"].startswith("0 1 2 ")
    assert app.invoke("get_history", sessionId=sid)["turns"][-1]["status"] == "stopped"


def test_steer(app: App, events: EventStream):
    sid = new_session(app, "coding-agent")
    turn_id = app.invoke("run_turn", sessionId=sid, text="/sleep 30000\nnever said")[
        "turnId"
    ]
    steered = app.invoke("steer", sessionId=sid, content="try the other file")
    assert (
        steered["type"] == "steer_received"
        and steered["content"] == "try the other file"
    )
    envelope(steered, sid, turn_id)  # inside the running turn
    assert events.wait_event("steer_received", sid) == steered
    app.invoke("stop_turn", sessionId=sid)
    assert app.invoke("get_state")["chats"][sid]["turns"][-1]["status"] == "stopped"


def test_answer_question(app: App, events: EventStream):
    sid = new_session(app, "coding-agent")
    turn_id = app.invoke(
        "run_turn",
        sessionId=sid,
        text="/ask Pick a colour | red | blue\n/permission rm -rf build\nAll done.",
    )["turnId"]
    question = events.wait_event("question_requested", sid)
    envelope(question, sid, turn_id)
    assert (question["question"], question["options"]) == (
        "Pick a colour",
        ["red", "blue"],
    )
    events.wait_event("session_state", sid, where=lambda e: e["status"] == "waiting")
    # Open requests are part of the snapshot, exactly as sent.
    assert app.invoke("join_session", sessionId=sid)["pendingRequests"] == [question]
    answered = app.invoke(
        "answer_question",
        sessionId=sid,
        requestId=question["requestId"],
        answers=["blue"],
    )
    assert answered["type"] == "approval_resolved"
    assert (answered["requestId"], answered["answers"]) == (
        question["requestId"],
        ["blue"],
    )
    envelope(answered, sid, turn_id)
    permission = events.wait_event("permission_requested", sid)
    assert permission["action"] == "rm -rf build"
    allowed = app.invoke(
        "answer_question",
        sessionId=sid,
        requestId=permission["requestId"],
        approved=True,
    )
    assert (allowed["type"], allowed["requestId"], allowed["approved"]) == (
        "approval_resolved",
        permission["requestId"],
        True,
    )
    done = wait_turn_end(events, sid, turn_id)
    assert done["type"] == "turn_complete" and done["finalText"] == "All done."
    events.wait_event("session_state", sid, where=lambda e: e["seq"] > done["seq"])
    states = [
        (e["previousStatus"], e["status"])
        for e in events.gateway_events(sid)
        if e["type"] == "session_state"
    ]
    assert states[2:] == [
        ("ready", "running"),
        ("running", "waiting"),
        ("waiting", "running"),
        ("running", "waiting"),
        ("waiting", "running"),
        ("running", "ready"),
    ]


# --- data retrieval -------------------------------------------------------------------


def test_get_history(app: App, events: EventStream):
    sid = new_session(app)
    started = app.invoke("run_turn", sessionId=sid, text="remember this")
    done = events.wait_event("turn_complete", sid)
    history = app.invoke("get_history", sessionId=sid)
    assert history["type"] == "history" and history["sessionId"] == sid
    (turn,) = history["turns"]
    assert turn["turnId"] == started["turnId"] and turn["text"] == "remember this"
    assert (turn["status"], turn["finalText"], turn["stopReason"]) == (
        "complete",
        "remember this",
        "end_turn",
    )
    assert turn["clientTurnId"] == started["clientTurnId"]
    assert (turn["startedSeq"], turn["endedSeq"]) == (started["seq"], done["seq"])
    assert turn["startedAt"] <= turn["endedAt"]


def test_get_events(app: App, events: EventStream):
    # named, so the first message does not title it (an event of its own)
    sid = new_session(app, name="get events")
    app.invoke("run_turn", sessionId=sid, text="one two three")
    done = events.wait_event("turn_complete", sid)
    last = events.wait_event(
        "session_state", sid, where=lambda e: e["seq"] > done["seq"]
    )  # -> ready
    everything = app.invoke("get_events", sessionId=sid, afterSeq=0)
    assert everything["type"] == "event_list" and everything["sessionId"] == sid
    assert everything["hasMore"] is False
    stored = everything["events"]
    assert [e["seq"] for e in stored] == list(range(1, last["seq"] + 1))
    # Durable means replayed exactly as it was sent live.
    live = {e["seq"]: e for e in events.gateway_events(sid) if "seq" in e}
    assert {e["seq"]: e for e in stored} == live
    page = app.invoke("get_events", sessionId=sid, afterSeq=2, limit=3)
    assert [e["seq"] for e in page["events"]] == [3, 4, 5] and page["hasMore"] is True


def test_ping(app: App):
    before = now_ms()
    pong = app.invoke("ping")
    assert set(pong) == {"type", "ts"} and pong["type"] == "pong"
    assert before - 5000 <= pong["ts"] <= now_ms() + 5000


# --- files ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(app: App):
    """A session whose agent wrote src/app.py twice and README.md once."""
    stream = app.events()
    sid = new_session(app, "coding-agent")
    turn_id = app.invoke(
        "run_turn",
        sessionId=sid,
        text="/write src/app.py print(1)\n/write src/app.py print(2)\n/write README.md hi",
    )["turnId"]
    assert wait_turn_end(stream, sid, turn_id)["type"] == "turn_complete"
    changes = [e for e in turn_events(stream, turn_id) if e["type"] == "file_changed"]
    stream.close()
    return sid, changes


def test_list_files(app: App, workspace):
    sid, changes = workspace
    assert [(c["path"], c["iteration"]) for c in changes] == [
        ("src/app.py", 1),
        ("src/app.py", 2),
        ("README.md", 1),
    ]
    listed = app.invoke("list_files", sessionId=sid)
    assert (
        listed["type"] == "file_list"
        and listed["sessionId"] == sid
        and listed["path"] == ""
    )
    entries = {f["path"]: f for f in listed["files"]}
    assert set(entries) == {"README.md", "src", "src/app.py"}
    assert entries["src"]["type"] == "directory"
    app_py = entries["src/app.py"]
    assert (app_py["type"], app_py["name"], app_py["iteration"], app_py["size"]) == (
        "file",
        "app.py",
        2,
        8,
    )
    assert app_py["hash"] == hashlib.sha256(b"print(2)").hexdigest()
    top = app.invoke("list_files", sessionId=sid, depth=1)
    assert {f["path"] for f in top["files"]} == {"README.md", "src"}
    inside = app.invoke("list_files", sessionId=sid, path="src")
    assert inside["path"] == "src" and [f["path"] for f in inside["files"]] == [
        "src/app.py"
    ]


def test_read_file(app: App, workspace):
    sid, _ = workspace
    content = app.invoke("read_file", sessionId=sid, path="src/app.py")
    assert content == {
        "type": "file_content",
        "sessionId": sid,
        "path": "src/app.py",
        "iteration": 2,
        "content": "print(2)",
        "encoding": "utf-8",
    }


def test_file_history(app: App, workspace):
    sid, changes = workspace
    hist = app.invoke("file_history", sessionId=sid, path="src/app.py")
    assert hist["type"] == "file_history_list" and (
        hist["sessionId"],
        hist["path"],
    ) == (sid, "src/app.py")
    its = hist["iterations"]
    assert [i["iteration"] for i in its] == [1, 2]
    assert [i["hash"] for i in its] == [
        hashlib.sha256(b"print(1)").hexdigest(),
        hashlib.sha256(b"print(2)").hexdigest(),
    ]
    assert [i["hash"] for i in its] == [c["hash"] for c in changes[:2]]
    assert all(i["size"] == 8 and i["timestamp"] > 0 for i in its)


def test_file_at_iteration(app: App, workspace):
    sid, _ = workspace
    old = app.invoke("file_at_iteration", sessionId=sid, path="src/app.py", iteration=1)
    assert old == {
        "type": "file_content",
        "sessionId": sid,
        "path": "src/app.py",
        "iteration": 1,
        "content": "print(1)",
        "encoding": "utf-8",
    }


# --- members --------------------------------------------------------------------------


def test_manage_members(app: App):
    listed = app.invoke("manage_members", action="list")
    assert listed["type"] == "member_list"
    assert [(m["userId"], m["role"]) for m in listed["members"]] == [
        ("dev-user-001", "owner")
    ]
    assert set(listed["members"][0]) == {"userId", "role", "createdAt", "updatedAt"}
    added = app.invoke("manage_members", action="add", userId="bob")
    assert ("bob", "member") in [(m["userId"], m["role"]) for m in added["members"]]
    changed = app.invoke(
        "manage_members", action="set_role", userId="bob", role="admin"
    )
    assert ("bob", "admin") in [(m["userId"], m["role"]) for m in changed["members"]]
    with pytest.raises(InvokeError) as e:
        app.invoke("manage_members", action="remove", userId="dev-user-001")
    gateway_error(e, "LastOwner")
    removed = app.invoke("manage_members", action="remove", userId="bob")
    assert "bob" not in [m["userId"] for m in removed["members"]]


# --- what several clients and the state machine look like through the bridge ----------


def test_several_clients_joined_to_one_session_all_receive_its_events(
    app: App, gateway, events, tmp_path
):
    (tmp_path / "other-home").mkdir()
    other = App(tmp_path / "other-home", ["--gateway", gateway.url])
    try:
        other.wait_connected()
        other_events = other.events()
        # named, so the first message does not title it (an event of its own)
        sid = new_session(app, "coding-agent", name="shared")
        other.invoke("join_session", sessionId=sid)
        turn_id = app.invoke(
            "run_turn", sessionId=sid, text="/think hm\n/stream 50\n/tool ls {}"
        )["turnId"]
        wait_turn_end(events, sid, turn_id)
        wait_turn_end(other_events, sid, turn_id)
        renamed = other.invoke(
            "rename_session", sessionId=sid, name="renamed by the other client"
        )
        assert events.wait_event("session_renamed", sid) == renamed
        assert other_events.wait_event("session_renamed", sid) == renamed
        mine = {e["seq"]: e for e in events.gateway_events(sid) if "seq" in e}
        theirs = {e["seq"]: e for e in other_events.gateway_events(sid) if "seq" in e}
        # The other app joined after the activation and caught up: both have every
        # event, identical.
        assert sorted(theirs) == list(range(1, renamed["seq"] + 1))
        assert theirs == mine
        other_events.close()
    finally:
        other.stop()


def test_session_state_machine_is_visible(app: App, events: EventStream):
    sid = new_session(app, "coding-agent")
    t1 = app.invoke("run_turn", sessionId=sid, text="/ask ok?")["turnId"]
    q = events.wait_event("question_requested", sid)
    app.invoke(
        "answer_question", sessionId=sid, requestId=q["requestId"], dismissed=True
    )
    wait_turn_end(events, sid, t1)
    t2 = app.invoke("run_turn", sessionId=sid, text="/fail Boom it broke")["turnId"]
    failed = wait_turn_end(events, sid, t2)
    assert (failed["type"], failed["code"], failed["message"]) == (
        "turn_error",
        "Boom",
        "it broke",
    )
    events.wait_event(
        "session_state",
        sid,
        where=lambda e: e["seq"] > failed["seq"] and e["status"] == "inactive",
    )
    assert {s["id"]: s for s in app.invoke("list_sessions")["sessions"]}[sid][
        "status"
    ] == "inactive"
    t3 = app.invoke("run_turn", sessionId=sid, text="again")[
        "turnId"
    ]  # an inactive session activates first
    end3 = wait_turn_end(events, sid, t3)
    # -> ready
    events.wait_event("session_state", sid, where=lambda e: e["seq"] > end3["seq"])
    stream = [
        e
        for e in events.gateway_events(sid)
        if e["type"] in ("session_state", "sandbox_removed")
    ]
    assert [(e.get("previousStatus"), e.get("status", e["type"])) for e in stream] == [
        ("inactive", "activating"),
        ("activating", "ready"),  # join
        ("ready", "running"),
        ("running", "waiting"),
        ("waiting", "running"),  # /ask, answered
        ("running", "ready"),
        ("ready", "running"),
        ("running", "error"),
        ("error", "deactivating"),  # /fail
        (None, "sandbox_removed"),
        ("deactivating", "inactive"),
        ("inactive", "activating"),
        ("activating", "ready"),
        ("ready", "running"),
        ("running", "ready"),
    ]
    assert app.invoke("get_state")["chats"][sid]["status"] == "ready"


def test_emitted_events_of_any_type_are_durable_and_reach_the_bridge(
    app: App, events: EventStream
):
    sid = new_session(app, "coding-agent")
    turn_id = app.invoke(
        "run_turn",
        sessionId=sid,
        text='/emit plan.created {"steps": ["a", "b"], "odd-key": null}\n'
        '/emit usage_update {"inputTokens": 7, "outputTokens": 9}\n'
        "/emit sandbox_ready",
    )["turnId"]
    wait_turn_end(events, sid, turn_id)
    emitted = [
        e
        for e in turn_events(events, turn_id)
        if e["type"] in ("plan.created", "usage_update", "sandbox_ready")
    ]
    assert [e["type"] for e in emitted] == [
        "plan.created",
        "usage_update",
        "sandbox_ready",
    ]
    for e in emitted:
        envelope(e, sid, turn_id)
    assert (emitted[0]["steps"], emitted[0]["odd-key"]) == (["a", "b"], None)
    assert (emitted[1]["inputTokens"], emitted[1]["outputTokens"]) == (7, 9)
    stored = {
        e["seq"]: e
        for e in app.invoke("get_events", sessionId=sid, afterSeq=0)["events"]
    }
    assert all(stored[e["seq"]] == e for e in emitted)
    items = app.invoke("get_state")["chats"][sid]["turns"][-1][
        "items"
    ]  # kept for a reloaded page
    assert [i for i in items if i["type"] == "plan.created"] == [emitted[0]]
    bad = app.invoke("run_turn", sessionId=sid, text='/emit x {"seq": 1}')["turnId"]
    refused = wait_turn_end(events, sid, bad)
    assert (refused["type"], refused["code"]) == ("turn_error", "InvalidScript")


# --- errors ---------------------------------------------------------------------------

SESSION_COMMANDS = {
    "rename_session": {"name": "n"},
    "archive_session": {},
    "unarchive_session": {},
    "delete_session": {},
    "join_session": {},
    "leave_session": {},
    "run_turn": {"text": "x"},
    "stop_turn": {},
    "steer": {"content": "x"},
    "answer_question": {"requestId": "r", "answers": ["a"]},
    "get_history": {},
    "get_events": {"afterSeq": 0},
    "list_files": {},
    "read_file": {"path": "a"},
    "file_history": {"path": "a"},
    "file_at_iteration": {"path": "a", "iteration": 1},
}


def test_session_not_found_for_every_session_command(app: App):
    assert set(SESSION_COMMANDS) == {
        t
        for t in RESPONSES
        if t
        not in (
            "authenticate",
            "list_sessions",
            "create_session",
            "ping",
            "manage_members",
        )
    }
    for command, args in SESSION_COMMANDS.items():
        with pytest.raises(InvokeError) as e:
            app.invoke(command, sessionId="no-such-session", **args)
        err = gateway_error(e, "SessionNotFound")
        assert err["message"] == "Session not found", command


@pytest.mark.parametrize(
    "command,args,needle",
    [
        ("run_turn", {"sessionId": 42, "text": "x"}, "sessionId"),  # mistyped
        ("get_events", {"sessionId": "s", "afterSeq": "zero"}, "afterSeq"),
        ("get_events", {"sessionId": "s", "afterSeq": -1}, "afterSeq"),
        ("list_sessions", {"includeArchived": "yes"}, "includeArchived"),
        (
            "answer_question",
            {"sessionId": "s", "requestId": "r", "answers": "blue"},
            "answers",
        ),
        (
            "file_at_iteration",
            {"sessionId": "s", "path": "a", "iteration": 0},
            "iteration",
        ),
        ("manage_members", {"action": "explode"}, "action"),
        ("manage_members", {"action": "add", "userId": "u", "role": "king"}, "role"),
        ("join_session", {"sessionId": ""}, "sessionId"),  # an id must not be empty
        ("run_turn", {"sessionId": "s"}, "text"),  # missing
        ("create_session", {}, "agentType"),
        ("rename_session", {"sessionId": "s"}, "name"),
        ("read_file", {"sessionId": "s"}, "path"),
        ("get_events", {"sessionId": "s"}, "afterSeq"),
        (
            "steer",
            {"sessionId": "s", "contents": "typo"},
            "contents",
        ),  # misspelt: refused, not dropped
    ],
)
def test_invalid_arguments_are_refused_by_the_bridge(app: App, command, args, needle):
    def last_sent():
        return app.invoke(
            "actor_logs", name="connection", types=["send_frame"], limit=1
        )[-1]["id"]

    app.invoke("ping")
    sent_before = last_sent()
    with pytest.raises(InvokeError) as e:
        app.invoke(command, **args)
    assert (e.value.status, e.value.code) == (400, "INVALID_ARGUMENTS")
    assert needle in e.value.body["error"]["message"]
    # Refused before sending: the connection actor was given nothing to send.
    assert last_sent() == sent_before


def test_invalid_message_from_the_gateway_reaches_the_bridge(app: App):
    # Schema-valid for the bridge, refused by the gateway's own rules.
    sid = new_session(app)
    with pytest.raises(InvokeError) as e:
        # none of answers/approved/dismissed
        app.invoke("answer_question", sessionId=sid, requestId="r")
    gateway_error(e, "INVALID_MESSAGE")
    with pytest.raises(InvokeError) as e:
        app.invoke("manage_members", action="remove")  # remove needs userId
    gateway_error(e, "INVALID_MESSAGE")


def test_domain_errors_reach_the_bridge(app: App, events: EventStream):
    sid = new_session(app, "coding-agent")
    cases = [
        ("create_session", {"agentType": "nope"}, "UnknownAgentType"),
        ("stop_turn", {"sessionId": sid}, "NoActiveTurn"),
        ("steer", {"sessionId": sid, "content": "x"}, "NoActiveTurn"),
        (
            "answer_question",
            {"sessionId": sid, "requestId": "req_x", "dismissed": True},
            "RequestNotFound",
        ),
        ("read_file", {"sessionId": sid, "path": "../etc/passwd"}, "InvalidPath"),
        ("read_file", {"sessionId": sid, "path": "missing.txt"}, "FileNotFound"),
    ]
    for command, args, code in cases:
        with pytest.raises(InvokeError) as e:
            app.invoke(command, **args)
        gateway_error(e, code)
    turn_id = app.invoke(
        "run_turn", sessionId=sid, text="/write a.txt x\n/sleep 30000"
    )["turnId"]
    events.wait_event("file_changed", sid)
    with pytest.raises(InvokeError) as e:
        app.invoke("run_turn", sessionId=sid, text="second")
    gateway_error(e, "TurnInProgress")
    with pytest.raises(InvokeError) as e:
        app.invoke("file_at_iteration", sessionId=sid, path="a.txt", iteration=9)
    gateway_error(e, "IterationNotFound")
    with pytest.raises(InvokeError) as e:
        app.invoke("stop_turn", sessionId=sid, turnId="turn_not_this_one")
    gateway_error(e, "NoActiveTurn")
    assert (
        app.invoke("stop_turn", sessionId=sid, turnId=turn_id)["stopReason"]
        == "stopped"
    )


def test_rate_limited_reaches_the_bridge(tmp_path):
    gw = GatewayProcess(tmp_path / "gw", args=["--rate-limit", "5"]).start()
    (tmp_path / "home").mkdir()
    a = App(tmp_path / "home", ["--gateway", gw.url])
    try:
        a.wait_connected()
        answers = []
        for _ in range(8):
            try:
                answers.append(a.invoke("ping")["type"])
            except InvokeError as e:
                err = e.body["error"]
                assert (e.status, e.code) == (422, "GATEWAY_ERROR")
                assert 0 < err["retryAfterMs"] <= 10_000
                answers.append(err["gatewayCode"])
        # The connection's own list_sessions on connect counts too; then the window is
        # full.
        first_refused = answers.index("RATE_LIMITED")
        assert (
            1 <= first_refused <= 5
            and answers[:first_refused] == ["pong"] * first_refused
        )
        assert set(answers[first_refused:]) == {"RATE_LIMITED"}
        # refused, not cut off
        assert a.invoke("get_state")["connection"]["state"] == "connected"
    finally:
        a.stop()
        gw.stop()


def _direct_authenticate(url: str, token: str) -> dict:
    ws = websocket.create_connection(url, timeout=30)
    try:
        for _ in range(2):  # welcome, connected
            json.loads(ws.recv())
        ws.send(json.dumps({"type": "authenticate", "token": token}))
        return json.loads(ws.recv())
    finally:
        ws.close()


def test_auth_failed_stops_without_retrying(tmp_path):
    gw = GatewayProcess(tmp_path / "gw", args=["--token", TOKEN]).start()
    (tmp_path / "home").mkdir()
    a = App(tmp_path / "home", ["--gateway", gw.url, "--token", "wrong"])
    try:
        conn = wait_until(
            lambda: (
                (c := a.invoke("get_state")["connection"])["state"] == "auth_failed"
                and c
            ),
            60,
            what="auth_failed",
        )
        assert conn["detail"] and conn["reconnects"] == 0
        with pytest.raises(InvokeError) as e:
            a.invoke("list_sessions")
        assert e.value.code == "NOT_CONNECTED"
        # The gateway allows 5 failures per IP a minute. The app's was one of them, and
        # the only one: 4 more are AUTH_FAILED, then the limit is reached.
        assert [_direct_authenticate(gw.url, "bad")["code"] for _ in range(4)] == [
            "AUTH_FAILED"
        ] * 4
        assert _direct_authenticate(gw.url, TOKEN)["code"] == "AUTH_RATE_LIMITED"
        conn = a.invoke("get_state")["connection"]
        assert (conn["state"], conn["reconnects"]) == ("auth_failed", 0)
    finally:
        a.stop()
        gw.stop()


def test_auth_rate_limited_makes_the_app_wait_as_told(tmp_path):
    gw = GatewayProcess(tmp_path / "gw", args=["--token", TOKEN]).start()
    (tmp_path / "home").mkdir()
    a = None
    try:
        assert [_direct_authenticate(gw.url, "bad")["code"] for _ in range(5)] == [
            "AUTH_FAILED"
        ] * 5
        limited = _direct_authenticate(gw.url, TOKEN)
        assert (
            limited["code"] == "AUTH_RATE_LIMITED"
            and 0 < limited["retryAfterMs"] <= 60_000
        )
        a = App(tmp_path / "home", ["--gateway", gw.url, "--token", TOKEN])
        conn = wait_until(
            lambda: (
                (c := a.invoke("get_state")["connection"])["state"] == "reconnecting"
                and c
            ),
            60,
            what="reconnecting",
        )
        assert "AUTH_RATE_LIMITED" in conn["detail"]
        told = [
            line["body"]["raw"]
            for line in a.invoke("actor_logs", name="router", types=["error"])
        ]
        told = [t for t in told if t.get("code") == "AUTH_RATE_LIMITED"]
        assert told, "the router saw no AUTH_RATE_LIMITED"
        assert told[0]["retryAfterMs"] <= limited["retryAfterMs"]
        # it waits at least as long as it was told
        assert conn["retryInMs"] >= told[0]["retryAfterMs"]
    finally:
        if a is not None:
            a.stop()
        gw.stop()
