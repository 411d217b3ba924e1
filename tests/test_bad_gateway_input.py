"""Bad input from a gateway is logged, counted, surfaced to the page, and never fatal."""

from __future__ import annotations

import contextlib
import json
import time

import pytest
from apphelpers import App, InvokeError, wait_until, write_settings
from misbehaving_gateway import AUTHENTICATED, CONNECTED, MisbehavingGateway


@pytest.fixture
def bad_gateway():
    gw = MisbehavingGateway().start()
    yield gw
    gw.stop()


def test_malformed_frames_are_reported_and_the_connection_survives(
    dim_home, bad_gateway
):
    app = App(dim_home, ["--gateway", bad_gateway.url])
    try:
        app.wait_connected()
        events = app.events()
        good = {
            "type": "brand_new_event",
            "sessionId": "s1",
            "seq": 4,
            "ts": 5,
            "novel": {"x": [1, 2]},
        }
        bad_gateway.send("{this is not json")
        bad_gateway.send(
            json.dumps({"type": "text_delta", "sessionId": "s1", "seq": "two", "ts": 1})
        )
        bad_gateway.send(json.dumps([1, 2, 3]))
        bad_gateway.send(b"\x00\x01binary")
        bad_gateway.send(
            json.dumps(
                {
                    "type": "turn_started",
                    "sessionId": "s1",
                    "turnId": 7,
                    "seq": 2,
                    "ts": 1,
                }
            )
        )
        # Right envelope, wrong field type inside: the stores refuse it, the router
        # stays up.
        bad_gateway.send(
            json.dumps(
                {
                    "type": "text_delta",
                    "sessionId": "s1",
                    "turnId": "t",
                    "seq": 3,
                    "ts": 1,
                    "text": 5,
                }
            )
        )
        bad_gateway.send("x" * (17 << 20))
        bad_gateway.send(json.dumps(good))
        frames = events.wait_for(
            lambda fs: (
                [f for f in fs if f["event"] == "gateway-warning"]
                if sum(f["event"] == "gateway-warning" for f in fs) >= 7
                else None
            ),
            60,
            what="seven warnings",
        )
        reasons = " | ".join(f["payload"]["reason"] for f in frames)
        assert "not JSON" in reasons and "binary" in reasons and "over the" in reasons
        # The unknown event after all that still arrives, intact, as a generic event.
        got = events.wait_event("brand_new_event")
        assert got == good
        row = app.status()["connection"]
        assert (
            row["connection"] == "connected"
            and row["reconnects"] == 0
            and row["restarts"] == 0
        )
        assert row["badFrames"] >= 5
        assert (
            app.status()["router"]["restarts"] == 0
            and app.status()["router"]["badEvents"] >= 1
        )
        state = app.invoke("get_state")
        assert good in state["chats"]["s1"]["other"]
    finally:
        app.stop()


def test_a_socket_closed_mid_frame_reconnects(dim_home, bad_gateway):
    app = App(dim_home, ["--gateway", bad_gateway.url])
    try:
        app.wait_connected()
        bad_gateway.send("CLOSE_MID_FRAME")
        wait_until(
            lambda: bad_gateway.connections >= 2, 60, what="the client to reconnect"
        )
        app.wait_connected()
        assert app.status()["connection"]["reconnects"] >= 1
    finally:
        app.stop()


# --- fields the connection itself reads: a wrong type is a bad frame, never the end of
# the socket thread


@contextlib.contextmanager
def app_against(dim_home, **gateway: object):
    """A MisbehavingGateway(**gateway) and dim-desktop connecting to it; both stopped
    afterwards."""
    gw = MisbehavingGateway(**gateway).start()
    try:
        app = App(dim_home, ["--gateway", gw.url])
        try:
            yield gw, app
        finally:
            app.stop()
    finally:
        gw.stop()


def a_turn(
    sid: str, turn_id: str, first_seq: int, parts: list[str], **started: object
) -> list[dict]:
    """The frames of one turn, as the gateway streams them."""
    frames: list[dict] = [
        {
            "type": "turn_started",
            "sessionId": sid,
            "turnId": turn_id,
            "seq": first_seq,
            "ts": 1,
            "text": "go",
            **started,
        }
    ]
    for i, part in enumerate(parts, 1):
        frames.append(
            {
                "type": "text_delta",
                "sessionId": sid,
                "turnId": turn_id,
                "seq": first_seq + i,
                "ts": 1,
                "text": part,
            }
        )
    frames.append(
        {
            "type": "turn_complete",
            "sessionId": sid,
            "turnId": turn_id,
            "seq": first_seq + len(parts) + 1,
            "ts": 1,
            "finalText": "".join(parts),
        }
    )
    return frames


def snapshot_of(sid: str, last_seq: int) -> dict:
    return {
        "type": "state_snapshot",
        "sessionId": sid,
        "lastSeq": last_seq,
        "pendingRequests": [],
        "session": {
            "id": sid,
            "name": "s",
            "agentType": "echo",
            "status": "ready",
            "archived": False,
            "createdAt": 1,
            "updatedAt": 1,
            "lastSeq": last_seq,
        },
    }


def stored_turn(app: App, sid: str, turn_id: str) -> dict | None:
    chat = app.invoke("get_state")["chats"].get(sid) or {}
    return next((t for t in chat.get("turns", []) if t["turnId"] == turn_id), None)


def wait_complete(app: App, sid: str, turn_id: str, text: str) -> None:
    t = wait_until(
        lambda: (lambda t: t if t and t["status"] == "complete" else None)(
            stored_turn(app, sid, turn_id)
        ),
        60,
        what=f"turn {turn_id} to complete in the stores",
    )
    assert t["text"] == text and t["finalText"] == text


def still_up(app: App, gw: MisbehavingGateway, connections: int = 1) -> dict:
    """The connection is up, on the same socket (no reconnect), and the process never
    restarted."""
    row = app.status()["connection"]
    assert row["connection"] == "connected" and row["restarts"] == 0
    assert gw.connections == connections
    return row


@pytest.mark.parametrize("retry_after", [None, "soon"])
def test_auth_rate_limited_with_an_unusable_retry_after_waits_a_default_and_connects(
    dim_home, retry_after
):
    with app_against(
        dim_home,
        handshakes=[
            [
                {"type": "welcome", "protocolVersion": 1, "requiresAuth": True},
                "AWAIT",
                {
                    "type": "error",
                    "code": "AUTH_RATE_LIMITED",
                    "message": "slow down",
                    "retryAfterMs": retry_after,
                },
            ]
        ],
    ) as (gw, app):
        events = app.events()
        app.wait_connected()
        state = events.wait_for(
            lambda fs: next(
                (
                    f["payload"]
                    for f in fs
                    if f["event"] == "connection-state"
                    and f["payload"]["state"] == "reconnecting"
                ),
                None,
            ),
            what="the reconnecting state",
        )
        assert state["retryInMs"] == 1000 and "AUTH_RATE_LIMITED" in state["detail"]
        row = still_up(app, gw, connections=2)
        assert row["reconnects"] == 1 and row["badFrames"] >= 1
        for frame in a_turn("s1", "t1", 1, ["after ", "the wait"]):
            gw.send(frame)
        wait_complete(app, "s1", "t1", "after the wait")


@pytest.mark.parametrize(
    "page", ["events not a list", "one bad event", "repeats itself"]
)
def test_a_bad_catch_up_page_is_reported_and_the_session_goes_on(dim_home, page):
    good = a_turn("s1", "t1", 1, ["hello ", "world"])  # seqs 1..4
    has_more, asked = False, 1
    if page == "events not a list":
        events_field, expected_first = {"not": "a list"}, None
    elif page == "repeats itself":
        # hasMore, but the same page again for the next request: asked once more, then
        # given up on
        events_field, expected_first, has_more, asked = good, "hello world", True, 2
    else:
        bad = {
            "type": "text_delta",
            "sessionId": "s1",
            "turnId": "t1",
            "seq": "three",
            "ts": 1,
            "text": "?",
        }
        events_field, expected_first = [*good[:2], bad, *good[2:]], "hello world"

    def respond(msg: dict) -> list[object]:
        if msg["type"] == "join_session":
            return [snapshot_of("s1", 4)]
        if msg["type"] == "get_events":
            return [
                {
                    "type": "event_list",
                    "sessionId": "s1",
                    "events": events_field,
                    "hasMore": has_more,
                }
            ]
        return []

    with app_against(dim_home, respond=respond) as (gw, app):
        app.wait_connected()
        app.invoke("join_session", sessionId="s1")
        wait_until(
            lambda: app.status()["connection"]["badFrames"] >= 1,
            60,
            what="the bad page to be reported",
        )
        if expected_first is not None:
            # the rest of the page arrived, in order
            wait_complete(app, "s1", "t1", expected_first)
        # The catch-up is over (not retried, not stuck): live events of the session flow
        # again.
        for frame in a_turn("s1", "t2", 5, ["live ", "again"]):
            gw.send(frame)
        wait_complete(app, "s1", "t2", "live again")
        still_up(app, gw)
        # not asked for again and again
        assert sum(m["type"] == "get_events" for m in gw.received) == asked


def test_a_gateway_that_does_not_echo_client_turn_ids_still_answers_run_turn(dim_home):
    # The reference's v1 has no client turn id: a turn_started without one answers our
    # oldest run_turn of its session, as other answers are matched, instead of leaving
    # it to time out.
    sent: list[dict] = []

    def respond(msg: dict) -> list[object]:
        if msg["type"] != "run_turn":
            return []
        sent.append(msg)
        return a_turn("s1", f"t{len(sent)}", 1 + 10 * len(sent), ["plain ", "v1"])

    with app_against(dim_home, respond=respond) as (gw, app):
        app.wait_connected()
        answer = app.invoke("run_turn", sessionId="s1", text="go")
        assert (
            answer["type"] == "turn_started"
            and answer["turnId"] == "t1"
            and "clientTurnId" not in answer
        )
        assert sent[0]["clientTurnId"]  # we sent one all the same
        wait_complete(app, "s1", "t1", "plain v1")
        assert app.invoke("run_turn", sessionId="s1", text="again")["turnId"] == "t2"
        assert still_up(app, gw)["badFrames"] == 0


def test_a_turn_started_with_a_mistyped_client_turn_id_is_reported_and_the_turn_still_shows(
    dim_home,
):
    # The answer cannot be proven ours, so the run_turn is not answered by it (it times
    # out, quickly here); the turn's events still reach the stores.
    write_settings(dim_home, "request_timeout_s = 2.0\n")

    def respond(msg: dict) -> list[object]:
        return (
            a_turn("s1", "t1", 1, ["odd ", "id"], clientTurnId=12345)
            if msg["type"] == "run_turn"
            else []
        )

    with app_against(dim_home, respond=respond) as (gw, app):
        app.wait_connected()
        with pytest.raises(InvokeError) as e:
            app.invoke("run_turn", sessionId="s1", text="go")
        assert e.value.code == "TIMEOUT"
        wait_complete(app, "s1", "t1", "odd id")
        assert still_up(app, gw)["badFrames"] >= 1
        # And the socket thread is still reading: a later turn arrives too.
        for frame in a_turn("s1", "t2", 5, ["still ", "reading"]):
            gw.send(frame)
        wait_complete(app, "s1", "t2", "still reading")


def test_an_error_with_a_mistyped_code_answering_a_queued_turn_is_reported_and_the_outbox_goes_on(
    dim_home,
):
    runs: list[dict] = []

    def respond(msg: dict) -> list[object]:
        if msg["type"] == "join_session":
            return [snapshot_of("s1", 0)]
        if msg["type"] == "get_events":
            return [
                {
                    "type": "event_list",
                    "sessionId": "s1",
                    "events": [],
                    "hasMore": False,
                }
            ]
        if msg["type"] == "run_turn":
            runs.append(msg)
            if len(runs) == 1:
                return [{"type": "error", "code": 42, "message": "refused, oddly"}]
            return a_turn(
                "s1", "t2", 1, ["second ", "turn"], clientTurnId=msg["clientTurnId"]
            )
        return []

    with app_against(dim_home, respond=respond) as (gw, app):
        app.wait_connected()
        app.invoke("gateway_disconnect")
        wait_until(
            lambda: app.invoke("get_state")["connection"]["state"] == "offline",
            what="offline",
        )
        first = app.invoke("run_turn", sessionId="s1", text="first")
        second = app.invoke("run_turn", sessionId="s1", text="second")
        assert first["type"] == second["type"] == "queued"
        app.invoke("gateway_connect", url=gw.url)
        # The refused item leaves the outbox (an unreadable error is not TurnInProgress:
        # no retry), and the next one goes out and runs.
        wait_complete(app, "s1", "t2", "second turn")
        wait_until(
            lambda: app.invoke("get_state")["outbox"] == [], what="the outbox to empty"
        )
        assert [r["text"] for r in runs] == ["first", "second"]
        assert still_up(app, gw, connections=2)["badFrames"] >= 1


def test_a_newer_protocol_version_goes_on_with_v1_and_says_so(dim_home):
    with app_against(
        dim_home,
        handshakes=[
            [
                {"type": "welcome", "protocolVersion": 2, "requiresAuth": False},
                CONNECTED,
                AUTHENTICATED,
            ]
        ],
    ) as (gw, app):
        app.wait_connected()
        conn = app.invoke("get_state")["connection"]
        assert conn["warnings"] == [
            "The gateway speaks protocol version 2; this client speaks version 1 and goes "
            "on with version 1 messages."
        ]
        assert conn["traits"]["protocolVersion"] == 2
        assert gw.connections == 1


def test_an_older_protocol_version_is_a_clear_offline_state_without_retries(dim_home):
    with app_against(
        dim_home,
        handshakes=[
            [
                {"type": "welcome", "protocolVersion": 0, "requiresAuth": False},
                CONNECTED,
                AUTHENTICATED,
            ]
        ],
    ) as (gw, app):
        conn = wait_until(
            lambda: (
                (c := app.invoke("get_state")["connection"])["state"] == "offline"
                and c["detail"]
                and c
            ),
            60,
            what="the version mismatch",
        )
        assert conn["detail"] == "gateway speaks protocol v0, this client speaks 1"
        row = app.status()["connection"]
        assert (
            row["connection"] == "offline"
            and row["reconnects"] == 0
            and row["restarts"] == 0
        )
        # Not retried (a retry would come within 0.5 s; the status round trip above
        # takes longer); a new gateway_connect tries again, and this gateway now speaks
        # v1.
        assert gw.connections == 1
        app.invoke("gateway_connect", url=gw.url)
        app.wait_connected()
        assert gw.connections == 2


def peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        status = f.read()
    return int(
        next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[
            1
        ]
    )


def test_an_oversized_frame_is_skipped_unread_and_the_connection_stays_up(
    dim_home, bad_gateway
):
    app = App(dim_home, ["--gateway", bad_gateway.url])
    try:
        app.wait_connected()
        events = app.events()
        pid = app.status()["connection"]["pid"]
        before = peak_rss_kib(pid)
        # a real 64 MiB text frame: header first, then the payload
        bad_gateway.send("x" * (64 << 20))
        for frame in a_turn("s1", "t1", 1, ["after ", "the big one"]):
            bad_gateway.send(frame)
        wait_complete(app, "s1", "t1", "after the big one")
        warning = events.wait_for(
            lambda fs: next(
                (f["payload"] for f in fs if f["event"] == "gateway-warning"), None
            ),
            what="the oversized frame's warning",
        )
        assert "67108864 bytes is over the 16777216-byte limit" in warning["reason"]
        assert warning["sample"] == "x" * 200
        assert still_up(app, bad_gateway)["badFrames"] == 1
        # Read in bounded chunks and thrown away: the process never held the frame (64
        # MiB).
        assert peak_rss_kib(pid) - before < 16 << 10
    finally:
        app.stop()


def test_dimctl_status_shows_how_long_until_the_next_attempt(dim_home):
    with app_against(
        dim_home,
        handshakes=[
            [
                {"type": "welcome", "protocolVersion": 1, "requiresAuth": True},
                "AWAIT",
                {
                    "type": "error",
                    "code": "AUTH_RATE_LIMITED",
                    "message": "slow down",
                    "retryAfterMs": 60000,
                },
            ]
        ],
    ) as (gw, app):
        row = wait_until(
            lambda: (
                (r := app.status()["connection"])["connection"] == "reconnecting" and r
            ),
            60,
            what="the reconnecting state in dimctl status",
        )
        # The gateway's wait, honoured, and counted down: status says how long from now.
        # The minute began once the gateway had read the authenticate it refused, so no
        # more of it can have passed than the time since then (a bound measured here,
        # whatever the machine's load).
        since_refusal_ms = (time.monotonic() - gw.received_at[0]) * 1000
        assert gw.received[0]["type"] == "authenticate"
        assert (
            60_000 - since_refusal_ms - 1 <= row["retryInMs"] <= 60_000
            and "AUTH_RATE_LIMITED" in row["detail"]
        )
        first = row["retryInMs"]
        wait_until(
            lambda: app.status()["connection"]["retryInMs"] < first,
            what="the wait to count down",
        )
        # asked for now: no waiting out the minute
        app.invoke("gateway_connect", url=gw.url)
        app.wait_connected()
        row = app.status()["connection"]
        assert row["connection"] == "connected" and row["retryInMs"] is None


def test_a_fragmented_message_over_the_limit_is_skipped_and_one_under_it_arrives_whole(
    dim_home, bad_gateway
):
    app = App(dim_home, ["--gateway", bad_gateway.url])
    try:
        app.wait_connected()
        # A tuple is sent as one message in several frames: five 4 MiB fragments, 20 MiB
        # in all. The first four (16 MiB, the limit) are held as they come, as any
        # fragmented message is; the fifth shows it is too big, and it is dropped with
        # what came before it.
        bad_gateway.send(
            tuple('{"type":"x","pad":"'.ljust(4 << 20, "y") for _ in range(5))
        )
        small = {
            "type": "text_delta",
            "sessionId": "s1",
            "turnId": "t1",
            "seq": 2,
            "ts": 1,
            "text": "pieced",
        }
        raw = json.dumps(small)
        frames = a_turn("s1", "t1", 1, ["pieced"])
        bad_gateway.send(frames[0])
        # fragments of 7 bytes
        bad_gateway.send(tuple(raw[i : i + 7] for i in range(0, len(raw), 7)))
        bad_gateway.send(frames[2])
        wait_complete(app, "s1", "t1", "pieced")
        assert still_up(app, bad_gateway)["badFrames"] == 1
    finally:
        app.stop()
