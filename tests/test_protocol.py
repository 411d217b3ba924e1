"""The wire protocol module: the reference's example frames, round trips, and refusals."""

from __future__ import annotations

import json

import msgspec
import pytest

from dim_actors.wire import protocol as p

# --- §9 of the reference: example frames copied from the public docs ------------------

V1_WELCOME = """{
  "type": "welcome",
  "protocolVersion": 1,
  "requiresAuth": true
}"""
V2_WELCOME_DEV = '{"type":"welcome","protocolVersion":1,"requiresAuth":false}'
V3_CONNECTED = """{
  "type": "connected",
  "clientId": "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
  "heartbeatIntervalMs": 30000,
  "ts": 1709312400000
}"""
V4_CONNECTED_DEV = (
    '{"type":"connected","clientId":"a1b2c3d4-...",'
    '"heartbeatIntervalMs":30000,"ts":1709312400000}'
)
V5_AUTHENTICATE = """{
  "type": "authenticate",
  "token": "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhdXRoMHwxMjM0NTY..."
}"""
V6_ERROR = """{
  "type": "error",
  "code": "SessionNotFound",
  "message": "Session not found"
}"""
# V7 is cut off in the source after `"tenantId": "t`. Completed here by us: the tenant
# id value and the closing braces are our guess; everything before them is verbatim.
V7_AUTHENTICATED = """{
  "type": "authenticated",
  "identity": {
    "userId": "auth0|user-123",
    "email": "developer@example.com",
    "tenantId": "tenant-123"
  }
}"""
# V8-V11: the handshake diagram. Only the lines without `...` placeholders are JSON.
V8_WELCOME = '{"type":"welcome","protocolVersion":1,"requiresAuth":true}'
V10_AUTHENTICATE = '{"type":"authenticate","token":"ey..."}'

SERVER_VECTORS = {
    "V1": (V1_WELCOME, p.Welcome),
    "V2": (V2_WELCOME_DEV, p.Welcome),
    "V3": (V3_CONNECTED, p.Connected),
    "V4": (V4_CONNECTED_DEV, p.Connected),
    "V6": (V6_ERROR, p.ErrorEvent),
    "V7": (V7_AUTHENTICATED, p.Authenticated),
    "V8": (V8_WELCOME, p.Welcome),
}


@pytest.mark.parametrize("name", sorted(SERVER_VECTORS))
def test_reference_event_frames_round_trip(name):
    raw, cls = SERVER_VECTORS[name]
    ev = p.decode_event(raw)
    assert type(ev) is cls
    assert json.loads(p.encode(ev)) == json.loads(raw)
    head = p.decode_head(raw)
    assert head.type == json.loads(raw)["type"]


@pytest.mark.parametrize("raw", [V5_AUTHENTICATE, V10_AUTHENTICATE], ids=["V5", "V10"])
def test_reference_client_frames_round_trip(raw):
    msg = p.decode_client_message(raw)
    assert type(msg) is p.Authenticate
    assert json.loads(p.encode(msg)) == json.loads(raw)
    assert json.loads(
        p.build_client_message("authenticate", {"token": msg.token})
    ) == json.loads(raw)


def test_reference_details_survive():
    connected = p.decode_event(V3_CONNECTED)
    assert (connected.clientId, connected.heartbeatIntervalMs, connected.ts) == (
        "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
        30000,
        1709312400000,
    )
    auth = p.decode_event(V7_AUTHENTICATED)
    assert auth.identity == p.Identity(
        userId="auth0|user-123", email="developer@example.com", tenantId="tenant-123"
    )
    err = p.decode_event(V6_ERROR)
    assert (err.code, err.message, err.retryAfterMs) == (
        "SessionNotFound",
        "Session not found",
        None,
    )


def test_v12_tool_call_start_shape():
    # V12 is a TS object literal, not a frame; this is the frame it builds.
    frame = {
        "type": "tool_call_start",
        "sessionId": "s1",
        "turnId": "t1",
        "toolCallId": "",
        "toolName": "",
        "seq": 7,
        "ts": 1709312400000,
    }
    ev = p.decode_event(json.dumps(frame))
    assert type(ev) is p.ToolCallStart
    assert json.loads(p.encode(ev)) == frame
    head = p.decode_head(json.dumps(frame).encode())
    assert (head.sessionId, head.turnId, head.seq, head.ts) == (
        "s1",
        "t1",
        7,
        1709312400000,
    )


# --- the catalogue --------------------------------------------------------------------

CONTRACT_EVENTS = [
    "welcome",
    "connected",
    "authenticated",
    "heartbeat",
    "session_list",
    "session_created",
    "session_renamed",
    "session_archived",
    "session_unarchived",
    "session_deleted",
    "session_state",
    "state_snapshot",
    "session_left",
    "turn_started",
    "text_delta",
    "turn_complete",
    "turn_error",
    "steer_received",
    "usage_update",
    "thinking.start",
    "thinking.progress",
    "thinking.complete",
    "tool_call_start",
    "tool_call_delta",
    "tool_call",
    "tool_result",
    "tool_error",
    "question_requested",
    "permission_requested",
    "approval_resolved",
    "terminal.stream",
    "terminal.complete",
    "sandbox_init",
    "sandbox_provisioning",
    "sandbox_ready",
    "sandbox_removed",
    "file_changed",
    "file_list",
    "file_content",
    "file_history_list",
    "history",
    "event_list",
    "pong",
    "member_list",
    "error",
]
DOCUMENTED_EVENTS = [
    "welcome",
    "connected",
    "authenticated",
    "heartbeat",
    "session_list",
    "session_created",
    "state_snapshot",
    "turn_started",
    "text_delta",
    "turn_complete",
    "turn_error",
    "tool_call_start",
    "tool_call",
    "question_requested",
    "permission_requested",
    "thinking.progress",
    "terminal.stream",
    "message.delta",
    "plan.created",
    "plan.step_started",
    "plan.step_completed",
    "plan.revised",
    "error",
]
CLIENT_TYPES = [
    "authenticate",
    "list_sessions",
    "create_session",
    "rename_session",
    "archive_session",
    "unarchive_session",
    "delete_session",
    "join_session",
    "leave_session",
    "run_turn",
    "stop_turn",
    "steer",
    "answer_question",
    "get_history",
    "get_events",
    "ping",
    "list_files",
    "read_file",
    "file_history",
    "file_at_iteration",
    "manage_members",
]


def test_catalogue_is_complete():
    assert list(p.CLIENT_MESSAGES) == CLIENT_TYPES
    assert set(CONTRACT_EVENTS) | set(DOCUMENTED_EVENTS) == set(p.SERVER_EVENTS)
    assert set(p.RESPONSES) == set(CLIENT_TYPES)
    for answers in p.RESPONSES.values():
        assert answers and answers <= set(p.SERVER_EVENTS)


# every client message with its required fields and, where it has them, its optional
# ones
CLIENT_SAMPLES = {
    "authenticate": [{"token": "t0k"}],
    "list_sessions": [{}, {"includeArchived": True}],
    "create_session": [
        {"agentType": "echo"},
        {"agentType": "coding-agent", "name": "Refactor"},
    ],
    "rename_session": [{"sessionId": "s1", "name": "New name"}],
    "archive_session": [{"sessionId": "s1"}],
    "unarchive_session": [{"sessionId": "s1"}],
    "delete_session": [{"sessionId": "s1"}],
    "join_session": [{"sessionId": "s1"}],
    "leave_session": [{"sessionId": "s1"}],
    "run_turn": [
        {"sessionId": "s1", "text": "hi"},
        {"sessionId": "s1", "text": "", "clientTurnId": "c-1"},
    ],
    "stop_turn": [{"sessionId": "s1"}, {"sessionId": "s1", "turnId": "turn_1"}],
    "steer": [{"sessionId": "s1", "content": "go left"}],
    "answer_question": [
        {"sessionId": "s1", "requestId": "r1", "answers": ["a", "b"]},
        {"sessionId": "s1", "requestId": "r1", "approved": False},
        {"sessionId": "s1", "requestId": "r1", "dismissed": True},
    ],
    "get_history": [{"sessionId": "s1"}],
    "get_events": [
        {"sessionId": "s1", "afterSeq": 0},
        {"sessionId": "s1", "afterSeq": 41, "limit": 10},
    ],
    "ping": [{}],
    "list_files": [{"sessionId": "s1"}, {"sessionId": "s1", "path": "src", "depth": 2}],
    "read_file": [{"sessionId": "s1", "path": "src/a.py"}],
    "file_history": [{"sessionId": "s1", "path": "src/a.py"}],
    "file_at_iteration": [{"sessionId": "s1", "path": "src/a.py", "iteration": 3}],
    "manage_members": [
        {"action": "list"},
        {"action": "add", "userId": "u2", "role": "admin"},
        {"action": "remove", "userId": "u2"},
        {"action": "set_role", "userId": "u2", "role": "viewer"},
    ],
}


def test_samples_cover_every_client_message():
    assert set(CLIENT_SAMPLES) == set(p.CLIENT_MESSAGES)


@pytest.mark.parametrize(
    "type_,args", [(t, a) for t, samples in CLIENT_SAMPLES.items() for a in samples]
)
def test_client_message_round_trip(type_, args):
    frame = p.build_client_message(type_, args)
    assert json.loads(frame) == {
        "type": type_,
        **args,
    }  # exactly the given fields, None ones omitted
    msg = p.decode_client_message(frame)
    assert type(msg) is p.CLIENT_MESSAGES[type_]
    assert p.encode(msg) == frame
    assert p.decode_client_message(frame.decode()) == msg  # str works as well as bytes


def test_build_drops_none_and_accepts_matching_type():
    assert json.loads(
        p.build_client_message(
            "run_turn", {"sessionId": "s", "text": "x", "clientTurnId": None}
        )
    ) == {"type": "run_turn", "sessionId": "s", "text": "x"}
    assert p.build_client_message("ping", {"type": "ping"}) == b'{"type":"ping"}'


@pytest.mark.parametrize(
    "type_,args,needle",
    [
        ("no_such_thing", {}, "unknown message type"),
        ("run_turn", {"sessionId": "s"}, "text"),
        ("run_turn", {"sessionId": "s", "text": 5}, "str"),
        ("run_turn", {"sessionId": "s", "txt": "x"}, "unknown field"),
        ("get_events", {"sessionId": "s", "afterSeq": -1}, ">= 0"),
        ("get_events", {"sessionId": "s", "afterSeq": True}, "int"),
        ("manage_members", {"action": "promote"}, "action"),
        ("ping", {"type": "pong"}, "does not match"),
        ("join_session", {"sessionId": ""}, "length"),
    ],
)
def test_build_refuses_bad_arguments(type_, args, needle):
    with pytest.raises(p.ProtocolError) as e:
        p.build_client_message(type_, args)
    assert e.value.code == "INVALID_MESSAGE"
    assert needle in e.value.message


@pytest.mark.parametrize(
    "raw,code,needle",
    [
        ("not json", "INVALID_JSON", "JSON"),
        ('{"type":"ping"', "INVALID_JSON", "JSON"),
        (b"\xff\xfe", "INVALID_JSON", "JSON"),
        ('{"type":"ping"} trailing', "INVALID_JSON", "JSON"),
        ("[1, 2]", "INVALID_MESSAGE", "object"),
        ('"ping"', "INVALID_MESSAGE", "object"),
        ("{}", "INVALID_MESSAGE", "type"),
        ('{"type": 7}', "INVALID_MESSAGE", "string"),
        (
            '{"type":"launch_rockets"}',
            "INVALID_MESSAGE",
            "unknown message type 'launch_rockets'",
        ),
        ('{"type":"run_turn","sessionId":"s"}', "INVALID_MESSAGE", "`text`"),
        (
            '{"type":"run_turn","sessionId":"s","text":["x"]}',
            "INVALID_MESSAGE",
            "$.text",
        ),
        (
            '{"type":"get_events","sessionId":"s","afterSeq":"3"}',
            "INVALID_MESSAGE",
            "$.afterSeq",
        ),
        (
            '{"type":"get_events","sessionId":"s","afterSeq":1.5}',
            "INVALID_MESSAGE",
            "$.afterSeq",
        ),
        (
            '{"type":"file_at_iteration","sessionId":"s","path":"a","iteration":0}',
            "INVALID_MESSAGE",
            ">= 1",
        ),
        (
            '{"type":"manage_members","action":"list","role":"emperor"}',
            "INVALID_MESSAGE",
            "$.role",
        ),
    ],
)
def test_decode_client_message_refusals(raw, code, needle):
    with pytest.raises(p.ProtocolError) as e:
        p.decode_client_message(raw)
    assert e.value.code == code
    assert needle in e.value.message, e.value.message


def test_decode_client_message_ignores_unknown_fields():
    # As the real gateway's schemas do: extra keys are not an error.
    msg = p.decode_client_message('{"type":"ping","future":{"x":1}}')
    assert msg == p.Ping()


# --- server events: leniency ----------------------------------------------------------


def test_unknown_event_type_passes_through_whole():
    frame = {
        "type": "review.comment_added",
        "sessionId": "s1",
        "turnId": "t1",
        "seq": 12,
        "ts": 1,
        "step": {"index": 2, "title": "Refactor"},
        "tags": ["a", None],
        "ratio": 0.5,
    }
    ev = p.decode_event(json.dumps(frame))
    assert isinstance(ev, p.UnknownEvent)
    assert ev.type == "review.comment_added"
    assert ev.data == frame
    assert ev.error is None
    head = p.decode_head(json.dumps(frame))
    assert (head.type, head.sessionId, head.seq) == ("review.comment_added", "s1", 12)


def test_planning_events_and_message_delta_decode_typed():
    env = {"sessionId": "s1", "turnId": "t1", "seq": 3, "ts": 9}
    created = p.decode_event(
        json.dumps(
            {
                "type": "plan.created",
                **env,
                "planId": "p1",
                "steps": [
                    {"stepId": "a", "title": "Read"},
                    {"stepId": "b", "title": "Fix"},
                ],
            }
        )
    )
    assert created == p.PlanCreated(
        **env,
        planId="p1",
        steps=[
            p.PlanStep(stepId="a", title="Read"),
            p.PlanStep(stepId="b", title="Fix"),
        ],
    )
    assert p.decode_event(
        json.dumps({"type": "plan.step_started", **env, "planId": "p1", "stepId": "a"})
    ) == p.PlanStepStarted(**env, planId="p1", stepId="a")
    done = p.decode_event(
        json.dumps(
            {
                "type": "plan.step_completed",
                **env,
                "planId": "p1",
                "stepId": "a",
                "status": "failed",
                "summary": "no such file",
            }
        )
    )
    assert (type(done), done.status, done.summary) == (
        p.PlanStepCompleted,
        "failed",
        "no such file",
    )
    revised = p.decode_event(
        json.dumps(
            {
                "type": "plan.revised",
                **env,
                "planId": "p1",
                "reason": "simpler",
                "steps": [{"stepId": "b", "title": "Fix", "status": "running"}],
            }
        )
    )
    assert (type(revised), revised.reason, revised.steps[0].status) == (
        p.PlanRevised,
        "simpler",
        "running",
    )
    delta = p.decode_event(
        json.dumps({"type": "message.delta", **env, "text": "hi", "messageId": "m1"})
    )
    assert delta == p.MessageDelta(**env, text="hi", messageId="m1")
    # Without its required fields a plan event is kept whole, not lost.
    odd = p.decode_event(
        json.dumps({"type": "plan.created", **env, "steps": "all of them"})
    )
    assert isinstance(odd, p.UnknownEvent) and odd.error


def test_unknown_fields_on_known_events_are_ignored():
    frame = {
        "type": "text_delta",
        "sessionId": "s1",
        "turnId": "t1",
        "seq": 3,
        "ts": 9,
        "text": "hi",
        "newField": {"nested": [1, 2]},
        "role": "assistant",
    }
    ev = p.decode_event(json.dumps(frame))
    assert ev == p.TextDelta(sessionId="s1", turnId="t1", seq=3, ts=9, text="hi")
    nested = {
        "type": "state_snapshot",
        "sessionId": "s1",
        "lastSeq": 4,
        "pendingRequests": [],
        "session": {
            "id": "s1",
            "name": "n",
            "agentType": "echo",
            "status": "ready",
            "archived": False,
            "createdAt": 1,
            "updatedAt": 2,
            "lastSeq": 4,
            "projectId": "p9",
        },
    }
    snap = p.decode_event(json.dumps(nested))
    assert type(snap) is p.StateSnapshot and snap.session.status == "ready"


def test_known_event_with_unexpected_fields_is_kept_not_lost():
    ev = p.decode_event('{"type":"turn_complete","sessionId":"s","finalText":42}')
    assert isinstance(ev, p.UnknownEvent)
    assert ev.type == "turn_complete" and ev.data["finalText"] == 42
    assert "finalText" in ev.error


@pytest.mark.parametrize(
    "raw,code",
    [
        ("nope", "INVALID_JSON"),
        ("[]", "INVALID_MESSAGE"),
        ('{"seq":1}', "INVALID_MESSAGE"),
        ('{"type":1}', "INVALID_MESSAGE"),
    ],
)
def test_bad_server_frames(raw, code):
    for fn in (p.decode_event, p.decode_head):
        with pytest.raises(p.ProtocolError) as e:
            fn(raw)
        assert e.value.code == code


def test_encode_omits_none_and_keeps_falsy_values():
    ev = p.TurnComplete(sessionId="s", turnId="t", seq=1, ts=2, finalText="")
    assert json.loads(p.encode(ev)) == {
        "type": "turn_complete",
        "sessionId": "s",
        "turnId": "t",
        "seq": 1,
        "ts": 2,
        "finalText": "",
    }
    err = p.ErrorEvent(code="RATE_LIMITED", message="slow down")
    assert json.loads(p.encode(err)) == {
        "type": "error",
        "code": "RATE_LIMITED",
        "message": "slow down",
    }
    ans = p.ApprovalResolved(requestId="r", approved=False, answers=[])
    assert json.loads(p.encode(ans)) == {
        "type": "approval_resolved",
        "requestId": "r",
        "approved": False,
        "answers": [],
    }


def test_event_list_splices_stored_frames():
    stored = [
        b'{"type":"text_delta","sessionId":"s","seq":1,"ts":5,"text":"a"}',
        b'{"type":"future.thing","sessionId":"s","seq":2,"ts":6,"x":[1]}',
    ]
    page = p.EventList(
        sessionId="s", events=[msgspec.Raw(f) for f in stored], hasMore=False
    )
    raw = p.encode(page)
    decoded = p.decode_event(raw)
    assert type(decoded) is p.EventList and decoded.hasMore is False
    assert decoded.events == [json.loads(f) for f in stored]


def test_every_event_struct_encodes_its_tag():
    for name, cls in p.SERVER_EVENTS.items():
        assert cls.__struct_config__.tag == name
        assert cls.__struct_config__.tag_field == "type"
