"""The dev gateway's reference profile: only what the public docs describe, different where they
are silent (docs/dev-gateway.md, Profiles). Spoken to over loopback WebSockets as a client would.

Absence is shown by ordering, never by sleeping: a connection's messages are handled one at a time,
so when the answer to a later request arrives first, the earlier request got no answer.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
import websocket

from dim_actors.devgateway import BackgroundGateway
from dim_actors.devgateway.cli import parse_args, profile_from_args
from dim_actors.devgateway.profile import DEV, REFERENCE, GatewayProfile
from dim_actors.wire.protocol import RESPONSES

sys.path.insert(0, str(Path(__file__).parent))
from gateway_helpers import Client, Event

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-token"
FAST = 100_000  # a rate limit no functional test reaches
replace = msgspec.structs.replace


@pytest.fixture(scope="module")
def ref_gw():
    with BackgroundGateway(profile=REFERENCE, rate_limit=FAST) as g:
        yield g


@pytest.fixture(scope="module")
def dev_gw():
    with BackgroundGateway(rate_limit=FAST) as g:
        yield g


@pytest.fixture
def ref(ref_gw):
    with Client(ref_gw.url, expect_authenticated=False) as c:
        yield c


@pytest.fixture
def ref_coding(ref):
    return ref, ref.new_session("coding-agent")


def raw_request(c: Client, type: str, **fields: Any) -> Event:
    """Send a frame our client's Structs would refuse to build (another gateway's vocabulary) and
    return its answer: an event from RESPONSES[type], or an error."""
    c.send_raw(json.dumps({"type": type, **fields}))
    answers = RESPONSES[type] | {"error"}
    return c.wait(lambda ev: ev.get("type") in answers)


def assert_unanswered(c: Client, type: str, **fields: Any) -> None:
    """``type`` gets no answer: the answer to a list_sessions sent after it comes first, with no
    answer (or error) to ``type`` before it; stream events of a joined session may pass."""
    c.send(type, **fields)
    c.send("list_sessions")
    before = c.collect("session_list")[:-1]
    assert not [e for e in before if e["type"] in RESPONSES[type] | {"error"}], before


def invalid_message(ev: Event) -> Event:
    assert ev["type"] == "error" and ev["code"] == "INVALID_MESSAGE", ev
    assert not {"sessionId", "seq", "ts", "turnId"} & set(ev), ev
    return ev


# --- the dev profile is unchanged ----------------------------------------------------------------


def test_dev_profile_is_unchanged(dev_gw):
    with Client(dev_gw.url) as c:
        assert c.welcome == {
            "type": "welcome",
            "protocolVersion": 1,
            "requiresAuth": False,
        }
        assert (
            c.authenticated is not None
            and c.authenticated["identity"]["userId"] == "dev-user-001"
        )
        assert c.ok("ping")["type"] == "pong"
        sid = c.new_session("coding-agent")
        started = c.run(sid, "/sleep 1", clientTurnId="click-1")[0]
        assert started["clientTurnId"] == "click-1"
        assert (
            c.ok("run_turn", sessionId=sid, text="/sleep 1", clientTurnId="click-1")
            == started
        )
        page = c.ok("get_events", sessionId=sid, afterSeq=0)
        assert page["type"] == "event_list" and started in page["events"]
        # Our vocabulary only: the v1 steer is not understood.
        c.send("run_turn", sessionId=sid, text="/sleep 60000")
        turn_id = c.wait("turn_started")["turnId"]
        invalid_message(raw_request(c, "steer", sessionId=sid, text="v1 words"))
        assert c.ok("steer", sessionId=sid, content="ours")["turnId"] == turn_id
        c.ok("stop_turn", sessionId=sid)


# --- handshake -----------------------------------------------------------------------------------


def test_reference_pushes_no_authenticated_but_is_authenticated(ref):
    assert ref.welcome == {
        "type": "welcome",
        "protocolVersion": 1,
        "requiresAuth": False,
    }
    assert ref.connected["type"] == "connected"
    assert ref.authenticated is None
    # Nothing follows `connected` unasked: the very next frame answers this request, which also
    # shows the connection is authenticated (no Unauthenticated).
    ref.send("list_sessions")
    assert ref.next()["type"] == "session_list"
    # An explicit authenticate is still answered, as in any dev-mode gateway.
    assert (
        ref.ok("authenticate", token="anything")["identity"]["userId"] == "dev-user-001"
    )


def test_protocol_version_is_the_profiles():
    with BackgroundGateway(profile=replace(REFERENCE, protocol_version=2)) as g:
        with Client(g.url, expect_authenticated=False) as c:
            assert c.welcome["protocolVersion"] == 2


def test_reference_has_no_replicate_endpoint(ref_gw, dev_gw):
    sid = {}
    for name, g in (("ref", ref_gw), ("dev", dev_gw)):
        with Client(g.url, expect_authenticated=name == "dev") as c:
            sid[name] = c.new_session("echo", join=False)
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        websocket.create_connection(
            f"ws://127.0.0.1:{ref_gw.port}/replicate?sessionId={sid['ref']}&replicaId=r1",
            timeout=30,
        )
    assert e.value.status_code == 404
    # The same request on the dev profile is upgraded.
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{dev_gw.port}/replicate?sessionId={sid['dev']}&replicaId=r1",
        timeout=30,
    )
    ws.close()


# --- get_events ----------------------------------------------------------------------------------


def test_get_events_error_is_invalid_message(ref):
    sid = ref.new_session("echo")
    err = invalid_message(ref.request("get_events", sessionId=sid, afterSeq=0))
    assert "get_events" in err["message"]
    # the connection stays usable
    assert ref.request("list_sessions")["type"] == "session_list"


def test_get_events_error_is_a_schema_refusal_before_auth():
    with (
        BackgroundGateway(profile=REFERENCE, token=TOKEN, rate_limit=FAST) as g,
        Client(g.url) as c,
    ):
        assert c.welcome["requiresAuth"] is True
        invalid_message(c.request("get_events", sessionId="any", afterSeq=0))
        assert c.request("list_sessions")["code"] == "Unauthenticated"
        c.ok("authenticate", token=TOKEN)
        invalid_message(c.request("get_events", sessionId="any", afterSeq=0))


def test_get_events_silent_is_never_answered():
    with BackgroundGateway(
        profile=replace(REFERENCE, get_events="silent"), rate_limit=FAST
    ) as g:
        with Client(g.url, expect_authenticated=False) as c:
            sid = c.new_session("echo")
            c.run(sid, "hello")
            assert_unanswered(c, "get_events", sessionId=sid, afterSeq=0)
            # not even an error
            assert_unanswered(c, "get_events", sessionId="no-such-session", afterSeq=0)


def test_get_events_answer_on_reference_when_asked():
    with BackgroundGateway(
        profile=replace(REFERENCE, get_events="answer"), rate_limit=FAST
    ) as g:
        with Client(g.url, expect_authenticated=False) as c:
            sid = c.new_session("echo")
            page = c.ok("get_events", sessionId=sid, afterSeq=0)
            assert page["type"] == "event_list" and page["events"]


# --- ping ----------------------------------------------------------------------------------------


def test_ping_is_not_answered(ref):
    assert_unanswered(ref, "ping")
    assert_unanswered(ref, "ping")


# --- clientTurnId --------------------------------------------------------------------------------


def test_client_turn_id_is_ignored(ref_coding):
    c, sid = ref_coding
    first = c.run(sid, "/sleep 1", clientTurnId="click-1")
    assert "clientTurnId" not in first[0] and first[-1]["type"] == "turn_complete"
    # The same clientTurnId again is a new turn, not the first one's answer.
    again = c.run(sid, "/sleep 1", clientTurnId="click-1")
    assert again[0]["turnId"] != first[0]["turnId"] and "clientTurnId" not in again[0]
    # While a turn runs, a repeat is refused like any second turn.
    running = c.ok(
        "run_turn", sessionId=sid, text="/sleep 60000", clientTurnId="click-2"
    )
    assert (
        c.request(
            "run_turn", sessionId=sid, text="/sleep 60000", clientTurnId="click-2"
        )["code"]
        == "TurnInProgress"
    )
    assert c.ok("stop_turn", sessionId=sid)["turnId"] == running["turnId"]
    turns = c.ok("get_history", sessionId=sid)["turns"]
    assert len(turns) == 3 and not [
        t for t in turns if "clientTurnId" in t
    ]  # not stored either


# --- v1 vocabulary -------------------------------------------------------------------------------


def test_steer_v1_vocabulary(ref_coding):
    c, sid = ref_coding
    c.send("run_turn", sessionId=sid, text="/sleep 60000")
    turn_id = c.wait("turn_started")["turnId"]
    steered = raw_request(c, "steer", sessionId=sid, text="focus on the tests")
    assert steered["type"] == "steer_received"
    assert (steered["content"], steered["turnId"]) == (
        "focus on the tests",
        turn_id,
    )  # the event stays ours
    # Ours is not understood, nor is a text that is not a string.
    assert (
        "text"
        in invalid_message(c.request("steer", sessionId=sid, content="ours"))["message"]
    )
    invalid_message(raw_request(c, "steer", sessionId=sid, text=42))
    # Unknown extra fields are ignored, as Effect Schema does.
    assert (
        raw_request(c, "steer", sessionId=sid, text="again", content="x", extra=1)[
            "content"
        ]
        == "again"
    )
    c.ok("stop_turn", sessionId=sid)
    assert raw_request(c, "steer", sessionId=sid, text="late")["code"] == "NoActiveTurn"


def test_answer_question_v1_answer(ref_coding):
    c, sid = ref_coding
    c.send("run_turn", sessionId=sid, text="/ask Which colour? | red | blue\nafter")
    question = c.wait("question_requested")
    assert c.wait("session_state")["status"] == "waiting"
    # Ours (answers / dismissed) is not understood: neither answer nor approved.
    invalid_message(
        c.request(
            "answer_question",
            sessionId=sid,
            requestId=question["requestId"],
            answers=["red"],
        )
    )
    invalid_message(
        c.request(
            "answer_question",
            sessionId=sid,
            requestId=question["requestId"],
            dismissed=True,
        )
    )
    invalid_message(
        raw_request(
            c,
            "answer_question",
            sessionId=sid,
            requestId=question["requestId"],
            answer=["red"],
        )
    )
    assert (
        raw_request(
            c, "answer_question", sessionId=sid, requestId="req_nope", answer="x"
        )["code"]
        == "RequestNotFound"
    )
    resolved = raw_request(
        c,
        "answer_question",
        sessionId=sid,
        requestId=question["requestId"],
        answer="red",
    )
    assert resolved == dict(
        resolved,
        type="approval_resolved",
        requestId=question["requestId"],
        answers=["red"],
        turnId=question["turnId"],
    )
    rest = c.collect("turn_complete")
    assert [e["status"] for e in rest if e["type"] == "session_state"] == ["running"]
    assert rest[-1]["finalText"] == "after"


def test_answer_question_v1_approved(ref_coding):
    c, sid = ref_coding
    c.send("run_turn", sessionId=sid, text="/permission run rm -rf build\nok")
    req = c.wait("permission_requested")
    resolved = raw_request(
        c, "answer_question", sessionId=sid, requestId=req["requestId"], approved=False
    )
    assert resolved["type"] == "approval_resolved" and resolved["approved"] is False
    assert c.wait("turn_complete")["finalText"] == "ok"


def test_v1_vocabulary_is_checked_before_auth():
    with (
        BackgroundGateway(profile=REFERENCE, token=TOKEN, rate_limit=FAST) as g,
        Client(g.url) as c,
    ):
        invalid_message(c.request("steer", sessionId="s", content="ours"))
        invalid_message(
            c.request("answer_question", sessionId="s", requestId="r", answers=["a"])
        )
        assert (
            raw_request(c, "steer", sessionId="s", text="v1")["code"]
            == "Unauthenticated"
        )


# --- the CLI -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv,expected",
    [
        ([], DEV),
        (["--profile", "dev"], DEV),
        (["--profile", "reference"], REFERENCE),
        (["--protocol-version", "2"], replace(DEV, protocol_version=2)),
        (["--no-push-authenticated"], replace(DEV, push_authenticated=False)),
        (
            ["--profile", "reference", "--push-authenticated"],
            replace(REFERENCE, push_authenticated=True),
        ),
        (["--get-events", "silent"], replace(DEV, get_events="silent")),
        (
            [
                "--profile",
                "reference",
                "--get-events",
                "answer",
                "--protocol-version",
                "3",
                "--no-push-authenticated",
            ],
            replace(REFERENCE, get_events="answer", protocol_version=3),
        ),
    ],
)
def test_cli_flags_map_to_the_profile(argv: list[str], expected: GatewayProfile):
    assert profile_from_args(parse_args(argv)) == expected


@pytest.mark.parametrize(
    "argv",
    [["--profile", "prod"], ["--get-events", "maybe"], ["--protocol-version", "one"]],
)
def test_cli_refuses_unknown_profile_values(argv: list[str], capsys):
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert "invalid" in capsys.readouterr().err


def test_cli_help_lists_the_profile_flags():
    out = subprocess.run(
        [sys.executable, "-m", "dim_actors.devgateway", "--help"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=30,
    )
    assert out.returncode == 0
    for flag in (
        "--profile",
        "--protocol-version",
        "--push-authenticated",
        "--no-push-authenticated",
        "--get-events",
    ):
        assert flag in out.stdout


def test_cli_runs_the_reference_profile(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dim_actors.devgateway",
            "--port",
            "0",
            "--data",
            str(tmp_path),
            "--profile",
            "reference",
            "--protocol-version",
            "2",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        line = proc.stdout.readline().rstrip("\n")
        m = re.fullmatch(r"dim-gateway listening on (ws://127\.0\.0\.1:\d+/ws)", line)
        assert m, line
        with Client(m.group(1), expect_authenticated=False) as c:
            assert c.welcome["protocolVersion"] == 2
            assert_unanswered(c, "ping")
        proc.terminate()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_desktop_gateway_profile_flag():
    from dim_actors.app.main import parse_args as app_args

    assert app_args([]).gateway_profile == "dev"
    assert app_args(["--gateway-profile", "reference"]).gateway_profile == "reference"
    with pytest.raises(SystemExit):
        app_args(["--gateway-profile", "prod"])
