"""After a reconnect with many joined sessions, the user's commands go before the
client's own rejoins and catch-up pages (docs/connection.md, "Priority"), and every
session is still rejoined and caught up. The real app against a real WebSocket server
that records what it reads, in order; a low send_rate_limit makes the rejoin backlog
last seconds."""

import threading

from apphelpers import App, wait_until, write_settings
from misbehaving_gateway import MisbehavingGateway
from test_bad_gateway_input import a_turn, snapshot_of, stored_turn

SESSIONS = 24


def test_user_commands_overtake_the_rejoin_backlog_and_every_session_still_catches_up(
    dim_home,
):
    # 10 messages a second: 48 rejoin frames (join + catch-up page per session) take
    # several seconds.
    write_settings(dim_home, "send_rate_limit = 10\nsend_rate_window_s = 1.0\n")
    sids = [f"s{i:02}" for i in range(SESSIONS)]
    reconnected = threading.Event()

    def respond(msg: dict) -> list[object]:
        sid = msg.get("sessionId")
        match msg["type"]:
            case "join_session":
                return [snapshot_of(sid, 4 if reconnected.is_set() else 0)]
            case "get_events":
                # Each session holds a turn the client missed while it was away.
                events = (
                    a_turn(sid, f"missed-{sid}", 1, ["caught ", "up"])
                    if reconnected.is_set()
                    else []
                )
                return [
                    {
                        "type": "event_list",
                        "sessionId": sid,
                        "events": events,
                        "hasMore": False,
                    }
                ]
            case "run_turn":
                started = a_turn(
                    sid,
                    "now",
                    5,
                    ["right ", "away"],
                    text=msg["text"],
                    clientTurnId=msg.get("clientTurnId"),
                )
                return started
            case "list_sessions":
                return [{"type": "session_list", "sessions": []}]
        return []

    gw = MisbehavingGateway(respond=respond).start()
    app = App(dim_home, ["--gateway", gw.url])
    try:
        app.wait_connected()
        for sid in sids:
            app.invoke("join_session", sessionId=sid)
        assert set(app.status()["connection"]["joined"]) == set(sids)

        reconnected.set()
        mark = len(gw.received)
        gw.send("CLOSE_MID_FRAME")
        wait_until(
            lambda: (
                gw.connections >= 2
                and any(m["type"] == "join_session" for m in gw.received[mark:])
            ),
            60,
            what="the first rejoin on the new connection",
        )
        # The session joined first, so the least recently used: rejoined last. Asked for
        # while the backlog is still long.
        last = sids[0]
        answer = app.invoke("run_turn", sessionId=last, text="hello")
        assert answer["turnId"] == "now"
        app.invoke("list_sessions")

        wait_until(
            lambda: (
                sum(m["type"] == "get_events" for m in gw.received[mark:]) >= SESSIONS
            ),
            120,
            what="every session's catch-up page",
        )
        after = gw.received[mark:]
        kinds = [(m["type"], m.get("sessionId")) for m in after]
        rejoins = [i for i, k in enumerate(kinds) if k[0] == "join_session"]
        run_turn_at = kinds.index(("run_turn", last))
        # (the router's own list_sessions on connecting is bookkeeping too; the user's
        # came after the run_turn)
        user_list_at = next(
            i
            for i, k in enumerate(kinds)
            if k[0] == "list_sessions" and i > run_turn_at
        )
        # The user's commands reached the gateway while rejoins were still waiting to go
        # ...
        assert run_turn_at < rejoins[-1] and user_list_at < rejoins[-1], kinds
        waiting_rejoins = sum(1 for i in rejoins if i > run_turn_at)
        assert waiting_rejoins >= SESSIONS // 2, kinds
        # ... yet never before the session's own rejoin and catch-up request.
        assert (
            kinds.index(("join_session", last))
            < kinds.index(("get_events", last))
            < run_turn_at
        ), kinds

        # Nothing lost: every session was rejoined once and caught up, the user's turn
        # included.
        assert sorted(k[1] for k in kinds if k[0] == "join_session") == sids
        for sid in sids:
            wait_until(
                lambda sid=sid: (
                    (stored_turn(app, sid, f"missed-{sid}") or {}).get("status")
                    == "complete"
                ),
                60,
                what=f"the missed turn of {sid} in the stores",
            )
        turn = wait_until(
            lambda: (lambda t: t if t and t["status"] == "complete" else None)(
                stored_turn(app, last, "now")
            ),
            60,
            what="the user's turn in the stores",
        )
        assert turn["finalText"] == "right away"
    finally:
        app.stop()
        gw.stop()
