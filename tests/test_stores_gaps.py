"""The router's stores: catch-up gaps, sessions the gateway no longer knows, and what
the connection says about the gateway (warnings, traits). Each case ends in the state a
page loaded afterwards gets (get_state, through the same JSON encoding), since that is
where a reload finds them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from dim_actors.messages import (
    CatchupGap,
    ConnectionState,
    GatewayEvent,
    GatewayTraits,
    Invoke,
    InvokeResult,
    SessionGone,
    UiEvent,
)
from dim_actors.router.router import Router, RouterMemory, RouterWiring
from dim_actors.router.stores import GAP_LIMIT, Stores

SID = "s-1"


def event(
    type_: str, seq: int | None = None, sid: str | None = SID, **fields: Any
) -> GatewayEvent:
    """A frame as the connection process hands it over (the envelope read from the
    bytes)."""
    ev = {
        "type": type_,
        **({"sessionId": sid} if sid else {}),
        **({"seq": seq} if seq is not None else {}),
        **fields,
    }
    return GatewayEvent(raw=json.dumps(ev).encode(), type=type_, sessionId=sid, seq=seq)


def turn(turn_id: str, first: int, text: str = "hi") -> list[GatewayEvent]:
    return [
        event("turn_started", first, turnId=turn_id, text=text),
        event("turn_complete", first + 1, turnId=turn_id, finalText=text),
    ]


def gap(
    after: int,
    before: int | None = None,
    reason: str = "it did not answer get_events",
    sid: str = SID,
) -> CatchupGap:
    return CatchupGap(sessionId=sid, afterSeq=after, beforeSeq=before, reason=reason)


def gone(reason: str = "SessionNotFound on rejoin", sid: str = SID) -> SessionGone:
    return SessionGone(sessionId=sid, reason=reason)


def listed(*ids: str) -> GatewayEvent:
    return event(
        "session_list",
        sid=None,
        sessions=[{"id": i, "name": i, "status": "ready"} for i in ids],
    )


def run(steps: list) -> Stores:
    """Apply events and messages in order, as the router does."""
    stores = Stores()
    for step in steps:
        if isinstance(step, GatewayEvent):
            stores.apply(step)
        elif isinstance(step, CatchupGap):
            stores.add_gap(step)
        elif isinstance(step, SessionGone):
            stores.mark_gone(step)
        elif isinstance(step, ConnectionState):
            stores.set_connection(step)
        else:
            raise TypeError(step)
    return stores


def reloaded(stores: Stores) -> dict[str, Any]:
    """What a page loaded now gets from get_state (encoded as the bridge encodes it)."""
    return json.loads(msgspec.json.encode(stores.snapshot()))


def gaps_of(state: dict[str, Any], sid: str = SID) -> list[tuple]:
    return [
        (g["afterSeq"], g["beforeSeq"], g["reason"], g["atSeq"])
        for g in state["chats"][sid]["gaps"]
    ]


# --- gaps -----------------------------------------------------------------------------

GAP_CASES = [
    pytest.param(
        [*turn("t1", 1), gap(2, 40)],
        [(2, 40, "it did not answer get_events", 2)],
        id="kept-with-the-seq-it-came-after",
    ),
    pytest.param(
        [*turn("t1", 1), gap(2)],
        [(2, None, "it did not answer get_events", 2)],
        id="end-not-yet-known",
    ),
    pytest.param(
        [*turn("t1", 1), gap(2), gap(2, 40, "it refused get_events (NotSupported)")],
        [(2, 40, "it refused get_events (NotSupported)", 2)],
        id="told-again-with-its-end-is-one-gap",
    ),
    pytest.param(
        [*turn("t1", 1), gap(2, 10), *turn("t2", 10), gap(11, 20)],
        [
            (2, 10, "it did not answer get_events", 2),
            (11, 20, "it did not answer get_events", 11),
        ],
        id="two-holes-two-gaps",
    ),
    pytest.param(
        [gap(0, 5)],
        [(0, 5, "it did not answer get_events", 0)],
        id="a-session-with-nothing-held-yet",
    ),
    pytest.param(
        [*turn("t1", 1), gap(2), *turn("t2", 40), gap(2, 40)],
        [(2, 40, "it did not answer get_events", 2)],
        id="refined-after-events-came-stays-where-it-was-shown",
    ),
]


@pytest.mark.parametrize("steps, expected", GAP_CASES)
def test_gaps_are_kept_and_shown_to_a_reloaded_page(steps, expected):
    state = reloaded(run(steps))
    assert gaps_of(state) == expected
    assert state["chats"][SID]["gone"] is None


def test_gaps_are_bounded_to_the_newest():
    stores = run([gap(n, n + 1) for n in range(GAP_LIMIT + 10)])
    kept = gaps_of(reloaded(stores))
    assert len(kept) == GAP_LIMIT
    assert [g[0] for g in kept] == list(range(10, GAP_LIMIT + 10))


def test_a_gap_changes_nothing_else_of_the_chat():
    before = reloaded(run(turn("t1", 1)))["chats"][SID]
    after = reloaded(run([*turn("t1", 1), gap(2, 9)]))["chats"][SID]
    assert {k: v for k, v in after.items() if k != "gaps"} == {
        k: v for k, v in before.items() if k != "gaps"
    }


# --- sessions the gateway no longer knows ---------------------------------------------

GONE_CASES = [
    pytest.param(
        [listed(SID), *turn("t1", 1), gone()],
        True,
        [SID],
        SID,
        id="marked-and-kept-with-its-transcript",
    ),
    pytest.param(
        [listed(SID, "s-2"), *turn("t1", 1), gone(), listed("s-2")],
        True,
        [SID, "s-2"],
        SID,
        id="stays-listed-when-the-gateway-list-drops-it",
    ),
    # A reconnect refreshes the list and rejoins: the list without it may come first.
    pytest.param(
        [listed(SID, "s-2"), *turn("t1", 1), listed("s-2"), gone()],
        True,
        [SID, "s-2"],
        SID,
        id="the-list-came-first-its-name-is-kept",
    ),
    pytest.param(
        [
            listed(SID),
            *turn("t1", 1),
            gone(),
            event("state_snapshot", sid=SID, session={"id": SID, "name": "back"}),
        ],
        False,
        [SID],
        "back",
        id="joined-again-it-is-back",
    ),
    pytest.param(
        [*turn("t1", 1), gone()], True, [SID], None, id="listed-even-without-its-meta"
    ),
    pytest.param(
        [listed(SID, "s-2"), *turn("t1", 1), listed("s-2")],
        False,
        ["s-2"],
        None,
        id="not-gone-it-leaves-the-list-as-before",
    ),
]


@pytest.mark.parametrize("steps, is_gone, sessions, name", GONE_CASES)
def test_a_gone_session_is_marked_and_its_transcript_stays(
    steps, is_gone, sessions, name
):
    state = reloaded(run(steps))
    chat = state["chats"][SID]
    assert chat["gone"] == (
        {"reason": "SessionNotFound on rejoin"} if is_gone else None
    )
    assert [t["turnId"] for t in chat["turns"]] == ["t1"]
    assert sorted(s["id"] for s in state["sessions"]) == sessions
    assert (
        next((s for s in state["sessions"] if s["id"] == SID), {}).get("name") == name
    )


# --- what the connection says about the gateway ---------------------------------------

VERSION_WARNING = (
    "The gateway speaks protocol version 2; this client speaks version 1 and goes on "
    "with version 1 messages."
)

CONNECTION_CASES = [
    pytest.param(ConnectionState(state="connected"), [], {}, id="nothing-known-yet"),
    pytest.param(
        ConnectionState(
            state="connected",
            warnings=[VERSION_WARNING],
            traits=GatewayTraits(protocolVersion=2),
        ),
        [VERSION_WARNING],
        {"protocolVersion": 2},
        id="a-newer-protocol-version",
    ),
    pytest.param(
        ConnectionState(
            state="connected",
            traits=GatewayTraits(
                getEvents="no",
                pong="yes",
                pushesAuthenticated="no",
                clientTurnIdEcho="unknown",
                heartbeatIntervalMs=30000,
                staleAfterMs=75000,
            ),
        ),
        [],
        {
            "getEvents": "no",
            "pong": "yes",
            "pushesAuthenticated": "no",
            "heartbeatIntervalMs": 30000,
            "staleAfterMs": 75000,
        },
        id="what-was-seen-either-way",
    ),
]


@pytest.mark.parametrize("state, warnings, traits", CONNECTION_CASES)
def test_connection_warnings_and_traits_reach_the_page(state, warnings, traits):
    stores = run(
        [event("welcome", sid=None, protocolVersion=1, requiresAuth=False), state]
    )
    conn = reloaded(stores)["connection"]
    known = {
        k: v for k, v in conn["traits"].items() if v not in ("unknown", None)
    }  # the page shows these only
    assert (conn["warnings"], known) == (warnings, traits)
    # the handshake's facts stay
    assert conn["state"] == "connected" and conn["protocolVersion"] == 1


def test_a_later_state_replaces_the_warnings():
    stores = run(
        [
            ConnectionState(state="connected", warnings=[VERSION_WARNING]),
            ConnectionState(state="reconnecting", retryInMs=1000),
        ]
    )
    assert reloaded(stores)["connection"]["warnings"] == []


# --- the router: routed to the stores and the page; a gone session is no longer joined


@dataclass
class FakeContext:
    """What the router's handlers use of their context: sends are recorded."""

    sent: list[tuple[str, Any]] = field(default_factory=list)

    def send(self, recipient: str, body: Any) -> None:
        self.sent.append((recipient, body))


def router(resume: dict[str, int], awaiting_resync: bool = False) -> Router:
    r = Router.__new__(Router)  # its handlers only, without an actor system behind it
    r.ctx = FakeContext()  # type: ignore[assignment]
    r.memory = RouterMemory(joined=sorted(resume))
    r.wiring = RouterWiring(r.memory, admin=None)  # type: ignore[arg-type]
    r.stores, r.pending, r.awaiting_resync = Stores(), {}, awaiting_resync
    return r


def page_events(r: Router) -> list[tuple[str, Any]]:
    return [
        (b.event, json.loads(bytes(b.payload)))
        for to, b in r.ctx.sent
        if isinstance(b, UiEvent)
    ]


def get_state(r: Router) -> dict[str, Any]:
    r.handle("uibridge", Invoke(reqId=1, command="get_state"))
    result = r.ctx.sent[-1][1]
    assert isinstance(result, InvokeResult) and result.ok
    return json.loads(msgspec.json.encode(result.result))


ROUTER_CASES = [
    pytest.param(
        gap(4, 9),
        False,
        [
            (
                "catchup-gap",
                {
                    "sessionId": SID,
                    "afterSeq": 4,
                    "beforeSeq": 9,
                    "reason": "it did not answer get_events",
                    "atSeq": 0,
                },
            )
        ],
        [SID, "s-2"],
        1,
        id="gap-to-the-page",
    ),
    pytest.param(
        gap(4, 9),
        True,
        [],
        [SID, "s-2"],
        0,
        id="gap-before-the-resync-marker-is-superseded",
    ),
    pytest.param(
        gone(),
        False,
        [("session-gone", {"sessionId": SID, "reason": "SessionNotFound on rejoin"})],
        ["s-2"],
        0,
        id="gone-to-the-page-and-no-longer-joined",
    ),
]


@pytest.mark.parametrize("msg, awaiting_resync, to_page, joined, gaps", ROUTER_CASES)
def test_the_router_routes_gaps_and_gone_sessions(
    msg, awaiting_resync, to_page, joined, gaps
):
    # The connection's memory still names the session: the router must not count a gone
    # one.
    r = router({SID: 3, "s-2": 7}, awaiting_resync)
    r.handle("connection", msg)
    assert page_events(r) == to_page
    state = get_state(r)
    assert state["joined"] == joined
    assert len(state["chats"].get(SID, {}).get("gaps", [])) == gaps
