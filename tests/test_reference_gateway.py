"""dim-desktop against a gateway that does only what the public docs describe (issue:
"works with any Diminuendo v1 gateway"). The dev gateway's reference profile
(docs/dev-gateway.md, Profiles) pushes no `authenticated`, refuses (or ignores)
`get_events`, answers no `ping`, has no `/replicate`, ignores `clientTurnId` and takes
`steer` / `answer_question` in run_turn's vocabulary. Every fallback of docs/protocol.md
§11 is exercised here over real sockets, the whole app in between.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from apphelpers import App, GatewayProcess, wait_until
from gateway_helpers import Client
from test_resilience import FINAL, stream_text
from test_supervision import turn

REFERENCE = ["--profile", "reference", "--rate-limit", "100000"]


def start_gateway(tmp_path, *args: str) -> GatewayProcess:
    return GatewayProcess(tmp_path / "gateway-data", args=[*REFERENCE, *args]).start()


@pytest.fixture
def reference(tmp_path):
    gw = start_gateway(tmp_path)
    yield gw
    gw.stop()


def started_app(dim_home, gw: GatewayProcess) -> App:
    app = App(dim_home, ["--gateway", gw.url])
    app.wait_connected()
    return app


@contextlib.contextmanager
def app_against(
    dim_home, tmp_path, *gateway_args: str, profile: list[str] = REFERENCE
) -> Iterator[App]:
    """A gateway with these arguments and dim-desktop connected to it; both stopped
    afterwards."""
    gw = GatewayProcess(
        tmp_path / "gateway-data", args=[*profile, *gateway_args]
    ).start()
    try:
        app = started_app(dim_home, gw)
        try:
            yield app
        finally:
            app.stop()
    finally:
        gw.stop()


@pytest.fixture
def app(dim_home, reference):
    a = started_app(dim_home, reference)
    yield a
    a.stop()


def connection(app: App) -> dict:
    return app.invoke("get_state")["connection"]


def coding_session(app: App) -> str:
    sid = app.invoke("create_session", agentType="coding-agent")["session"]["id"]
    app.invoke("join_session", sessionId=sid)
    return sid


def finished(app: App, sid: str, turn_id: str, timeout: float = 60) -> dict:
    return wait_until(
        lambda: (lambda t: t if t and t["status"] in FINAL else None)(
            turn(app, sid, turn_id)
        ),
        timeout,
        interval=0.1,
        what=f"the end of turn {turn_id}",
    )


def chat(app: App, sid: str) -> dict:
    return app.invoke("get_state")["chats"].get(sid) or {}


def waiting_request(app: App, sid: str) -> dict:
    """The agent's open question or permission request, from the stores' transcript."""

    def find():
        items = [i for t in chat(app, sid).get("turns", []) for i in t["items"]]
        resolved = {i["requestId"] for i in items if i["type"] == "approval_resolved"}
        return next(
            (
                i
                for i in items
                if i["type"] in ("question_requested", "permission_requested")
                and i["requestId"] not in resolved
            ),
            None,
        )

    return wait_until(find, what="the agent's question")


# --- 1. the handshake -----------------------------------------------------------------


def test_connects_when_the_gateway_pushes_no_authenticated(app: App):
    conn = connection(app)
    assert conn["state"] == "connected" and conn["identity"] is None
    assert conn["traits"]["pushesAuthenticated"] == "unknown"
    assert app.status()["connection"]["reconnects"] == 0


def test_an_authenticated_pushed_later_fills_in_the_identity(dim_home, tmp_path):
    with app_against(dim_home, tmp_path, "--push-authenticated") as app:
        conn = wait_until(
            lambda: (c := connection(app))["identity"] and c, what="the identity"
        )
        assert conn["identity"]["userId"] == "dev-user-001"
        assert conn["traits"]["pushesAuthenticated"] == "yes"


# --- 2. catch-up without get_events ---------------------------------------------------


def test_a_refused_get_events_holds_no_live_event(app: App):
    sid = coding_session(app)
    started = app.invoke(
        "run_turn", sessionId=sid, text='/tool grep {"q": 1}\nhello there'
    )
    t = finished(app, sid, started["turnId"], timeout=30)
    assert t["status"] == "complete" and t["text"] == "hello there"
    conn = connection(app)
    assert conn["traits"]["getEvents"] == "no"


def test_a_get_events_never_answered_is_given_up_within_seconds(dim_home, tmp_path):
    with app_against(dim_home, tmp_path, "--get-events", "silent") as app:
        # Idle after the join: the page's own deadline (10 s, CATCHUP_PAGE_WAIT_S) ends
        # the catch-up.
        idle = coding_session(app)
        wait_until(
            lambda: connection(app)["traits"]["getEvents"] == "no",
            25,
            what="the deadline",
        )
        started = app.invoke("run_turn", sessionId=idle, text="live")
        assert finished(app, idle, started["turnId"], timeout=8)["text"] == "live"


def test_a_get_events_skipped_by_later_answers_is_given_up_at_once(dim_home, tmp_path):
    with app_against(dim_home, tmp_path, "--get-events", "silent") as app:
        # A run_turn right after the join is answered while the catch-up page is not:
        # answers come in request order, so that page never will be, and the turn is not
        # held until a deadline.
        sid = coding_session(app)
        started = app.invoke("run_turn", sessionId=sid, text="at once")
        assert finished(app, sid, started["turnId"], timeout=8)["text"] == "at once"
        assert connection(app)["traits"]["getEvents"] == "no"


def test_events_missed_while_away_are_an_honest_gap(
    app: App, reference: GatewayProcess
):
    sid = coding_session(app)
    started = app.invoke(
        "run_turn", sessionId=sid, text="/stream 2000 2000\n/drop\n/stream 2000 2000"
    )
    t = finished(app, sid, started["turnId"])
    assert t["status"] == "complete" and t["finalText"] == stream_text(2000, 2000)
    # What was sent while the socket was down (the second stream starts at once) is a
    # gap the stores show, not silence; what arrived arrived once.
    assert t["deltaCount"] < 4000
    gaps = wait_until(lambda: chat(app, sid).get("gaps"), what="the gap to be shown")
    assert gaps[0]["afterSeq"] >= 1 and "get_events" in gaps[0]["reason"]
    assert app.status()["connection"]["reconnects"] >= 1


def test_a_session_deleted_while_away_is_gone_at_once(
    app: App, reference: GatewayProcess
):
    sid = coding_session(app)
    app.invoke("gateway_disconnect")
    wait_until(lambda: connection(app)["state"] == "offline", what="the disconnect")
    other = Client(reference.url, expect_authenticated=False)
    try:
        other.request("delete_session", sessionId=sid)
    finally:
        other.close()
    app.invoke("gateway_connect", url=reference.url)
    app.wait_connected()
    gone = wait_until(
        lambda: chat(app, sid).get("gone"), what="the session to be shown as gone"
    )
    assert "no longer knows" in gone["reason"]
    # Left at once, by the connection process too: neither rejoined nor retried.
    assert sid not in app.status()["connection"]["joined"]


# --- 3. protocol versions -------------------------------------------------------------


def test_protocol_version_2_goes_on_with_v1_and_says_so(dim_home, tmp_path):
    with app_against(dim_home, tmp_path, "--protocol-version", "2") as app:
        conn = connection(app)
        assert conn["warnings"] == [
            "The gateway speaks protocol version 2; this client speaks version 1 and "
            "goes on with version 1 messages."
        ]
        sid = coding_session(app)
        started = app.invoke("run_turn", sessionId=sid, text="v1 messages")
        assert finished(app, sid, started["turnId"])["text"] == "v1 messages"
        status = app.dimctl("status")
        assert "protocol version 2" in status.stdout


# --- 4. staleness from heartbeatIntervalMs --------------------------------------------


@pytest.mark.parametrize(
    ("heartbeat_ms", "stale_ms"), [(30000, 45000), (4000, 10000), (20000, 30000)]
)
def test_staleness_comes_from_the_advertised_heartbeat(
    dim_home, tmp_path, heartbeat_ms, stale_ms
):
    with app_against(dim_home, tmp_path, "--heartbeat-ms", str(heartbeat_ms)) as app:
        traits = connection(app)["traits"]
        assert (
            traits["heartbeatIntervalMs"] == heartbeat_ms
            and traits["staleAfterMs"] == stale_ms
        )


def test_a_silent_gateway_is_noticed_after_the_derived_window(dim_home, tmp_path):
    # A 4 s heartbeat gives a 10 s window (the floor): a 20 s silence must be noticed,
    # though the fixed 35 s of before would not have. (The dev profile: its catch-up
    # brings the turn's end, which the reference profile's would show as a gap.)
    with app_against(dim_home, tmp_path, "--heartbeat-ms", "4000", profile=[]) as app:
        sid = coding_session(app)
        started = app.invoke("run_turn", sessionId=sid, text="/silence 20000\nafter")
        wait_until(
            lambda: connection(app)["state"] != "connected",
            20,
            interval=0.2,
            what="the silence to be noticed",
        )
        assert finished(app, sid, started["turnId"])["status"] == "complete"


# --- 6. requests the docs give no fields for ------------------------------------------


def test_a_question_is_answered_in_the_gateways_vocabulary(app: App):
    sid = coding_session(app)
    started = app.invoke(
        "run_turn",
        sessionId=sid,
        text="/tool ls {}\n/ask Which one? | red | blue\nDone.",
    )
    request = waiting_request(app, sid)
    resolved = app.invoke(
        "answer_question",
        sessionId=sid,
        requestId=request["requestId"],
        answers=["blue"],
    )
    assert resolved["type"] == "approval_resolved" and resolved["answers"] == ["blue"]
    t = finished(app, sid, started["turnId"])
    assert t["status"] == "complete" and t["text"].endswith("Done.")
    assert connection(app)["traits"]["clientTurnIdEcho"] == "no"


def test_steer_is_sent_in_the_gateways_vocabulary(app: App):
    sid = coding_session(app)
    started = app.invoke("run_turn", sessionId=sid, text="/ask Ready?\nok")
    request = waiting_request(app, sid)
    got = app.invoke("steer", sessionId=sid, content="use tabs")
    assert got["type"] == "steer_received" and got["content"] == "use tabs"
    app.invoke(
        "answer_question",
        sessionId=sid,
        requestId=request["requestId"],
        answers=["yes"],
    )
    assert finished(app, sid, started["turnId"])["status"] == "complete"


def test_a_dismissal_the_gateway_has_no_word_for_is_a_clear_error(app: App):
    from apphelpers import InvokeError

    sid = coding_session(app)
    app.invoke("run_turn", sessionId=sid, text="/ask Ready?\nok")
    request = waiting_request(app, sid)
    with pytest.raises(InvokeError) as e:
        app.invoke(
            "answer_question",
            sessionId=sid,
            requestId=request["requestId"],
            dismissed=True,
        )
    assert e.value.body["error"]["code"] == "GATEWAY_ERROR"
    assert e.value.body["error"].get("gatewayCode") == "INVALID_MESSAGE"


# --- the everyday flows ---------------------------------------------------------------


def test_sessions_are_created_listed_renamed_archived_and_deleted(app: App):
    sid = app.invoke("create_session", agentType="echo", name="first")["session"]["id"]
    listed = app.invoke("list_sessions")
    assert sid in [s["id"] for s in listed["sessions"]]
    app.invoke("join_session", sessionId=sid)
    assert (
        app.invoke("rename_session", sessionId=sid, name="renamed")["name"] == "renamed"
    )
    app.invoke("archive_session", sessionId=sid)
    assert sid not in [s["id"] for s in app.invoke("list_sessions")["sessions"]]
    app.invoke("unarchive_session", sessionId=sid)
    started = app.invoke("run_turn", sessionId=sid, text="still here")
    assert finished(app, sid, started["turnId"])["text"] == "still here"
    assert app.invoke("delete_session", sessionId=sid)["type"] == "session_deleted"
    wait_until(
        lambda: sid not in [s["id"] for s in app.invoke("get_state")["sessions"]],
        what="the deletion",
    )
