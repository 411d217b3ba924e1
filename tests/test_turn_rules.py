"""The turn rules, one row each: events in, the turns out (docs/architecture.md, Turn semantics).

The router's stores own these rules (stores.py: its docstring lists them). Each row runs on the
stores, whose verdict a page gets two ways: in get_state's chats (a reloaded page) and, live, in the
`turn-state` frame the router sends right after each event that changed a turn
(Stores.take_turn_state). The page (ui/js/state.js, in headless Chromium) is given those frames, as
the router sends them, and must show exactly the stores' turns: it renders and decides nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from apphelpers import ROOT
from test_stores_history import (
    RULE_CASES,
    SID,
    event,
    h,
    reloaded,
)

from dim_actors.messages import GatewayEvent
from dim_actors.router.stores import Stores


def started(turn: str, seq: int, text: str = "hi") -> GatewayEvent:
    return event("turn_started", seq, turnId=turn, text=text)


def delta(turn: str, seq: int, text: str = "a") -> GatewayEvent:
    return event("text_delta", seq, turnId=turn, text=text)


def complete(turn: str, seq: int, **fields: Any) -> GatewayEvent:
    return event("turn_complete", seq, turnId=turn, **fields)


def failed(turn: str, seq: int, **fields: Any) -> GatewayEvent:
    return event("turn_error", seq, turnId=turn, **fields)


def asked(turn: str, seq: int, rid: str, kind: str = "question") -> GatewayEvent:
    if kind == "question":
        return event(
            "question_requested", seq, turnId=turn, requestId=rid, question="?"
        )
    return event("permission_requested", seq, turnId=turn, requestId=rid, action="rm")


def answered(turn: str | None, seq: int, rid: str) -> GatewayEvent:
    named = {"turnId": turn} if turn else {}
    return event("approval_resolved", seq, requestId=rid, answers=["y"], **named)


def snapshot(
    last_seq: int, active: str | None = None, status: str = "ready"
) -> GatewayEvent:
    return event(
        "state_snapshot",
        sessionId=SID,
        session={"id": SID, "status": status},
        lastSeq=last_seq,
        pendingRequests=[],
        **({"activeTurnId": active} if active else {}),
    )


def history(*turns: Any) -> GatewayEvent:
    return event("history", turns=list(turns))


BOOM = {"code": "AgentError", "message": "it broke"}
NOTHING = {"code": "", "message": ""}


def row(rule: str, events: list[GatewayEvent], turns: list[tuple], active: str | None):
    """`turns`: (turnId, status, userText, finalText, error) of each turn, in the chat's order."""
    return pytest.param(events, turns, active, id=rule)


RULES = [
    # --- a turn begins
    row(
        "turn_started-begins-a-running-turn",
        [started("t1", 1)],
        [("t1", "running", "hi", None, None)],
        "t1",
    ),
    row(
        "the-first-event-held-begins-it-joined-mid-turn",
        [delta("t1", 4)],
        [("t1", "running", None, None, None)],
        "t1",
    ),
    row(
        "an-item-of-an-unseen-turn-begins-it-too",
        [event("tool_call", 3, turnId="t1", toolCallId="c", toolName="ls", args={})],
        [("t1", "running", None, None, None)],
        "t1",
    ),
    row(
        "a-later-turn-is-the-active-one",
        [started("t1", 1), started("t2", 2)],
        [("t1", "running", "hi", None, None), ("t2", "running", "hi", None, None)],
        "t2",
    ),
    # --- streaming leaves the status alone
    row(
        "text_delta-keeps-running",
        [started("t1", 1), delta("t1", 2), delta("t1", 3)],
        [("t1", "running", "hi", None, None)],
        "t1",
    ),
    row(
        "thinking-and-tools-keep-running",
        [
            started("t1", 1),
            event("thinking.start", 2, turnId="t1"),
            event("thinking.progress", 3, turnId="t1", text="hm"),
            event("tool_call", 4, turnId="t1", toolCallId="c", toolName="ls", args={}),
            event("tool_result", 5, turnId="t1", toolCallId="c", result="ok"),
        ],
        [("t1", "running", "hi", None, None)],
        "t1",
    ),
    # --- a turn ends
    row(
        "turn_complete-completes-with-its-final-text",
        [started("t1", 1), delta("t1", 2), complete("t1", 3, finalText="done")],
        [("t1", "complete", "hi", "done", None)],
        None,
    ),
    row(
        "turn_complete-stopped-is-stopped",
        [started("t1", 1), complete("t1", 2, finalText="", stopReason="stopped")],
        [("t1", "stopped", "hi", None, None)],
        None,
    ),
    row(
        "turn_complete-any-stop-reason-any-case-is-stopped",
        [started("t1", 1), complete("t1", 2, finalText="x", stopReason="Cancelled")],
        [("t1", "stopped", "hi", "x", None)],
        None,
    ),
    row(
        "turn_complete-end_turn-is-complete",
        [started("t1", 1), complete("t1", 2, finalText="x", stopReason="end_turn")],
        [("t1", "complete", "hi", "x", None)],
        None,
    ),
    row(
        "turn_complete-without-final-text-keeps-none",
        [started("t1", 1), complete("t1", 2)],
        [("t1", "complete", "hi", None, None)],
        None,
    ),
    row(
        "turn_error-is-error-with-code-and-message",
        [started("t1", 1), failed("t1", 2, **BOOM)],
        [("t1", "error", "hi", None, BOOM)],
        None,
    ),
    row(
        "turn_error-is-error-whatever-its-stop-reason",
        [started("t1", 1), failed("t1", 2, stopReason="stopped", **BOOM)],
        [("t1", "error", "hi", None, BOOM)],
        None,
    ),
    row(
        "turn_error-without-code-or-message",
        [started("t1", 1), failed("t1", 2)],
        [("t1", "error", "hi", None, NOTHING)],
        None,
    ),
    row(
        "an-older-turn-ending-leaves-the-newer-active",
        [started("t1", 1), started("t2", 2), complete("t1", 3, finalText="a")],
        [("t1", "complete", "hi", "a", None), ("t2", "running", "hi", None, None)],
        "t2",
    ),
    # --- questions and permissions
    row(
        "question_requested-waits",
        [started("t1", 1), asked("t1", 2, "r1")],
        [("t1", "waiting", "hi", None, None)],
        "t1",
    ),
    row(
        "permission_requested-waits",
        [started("t1", 1), asked("t1", 2, "r1", "permission")],
        [("t1", "waiting", "hi", None, None)],
        "t1",
    ),
    row(
        "a-request-after-the-end-leaves-the-turn-ended",
        [started("t1", 1), complete("t1", 2, finalText="x"), asked("t1", 3, "r1")],
        [("t1", "complete", "hi", "x", None)],
        None,
    ),
    row(
        "approval_resolved-runs-again",
        [started("t1", 1), asked("t1", 2, "r1"), answered("t1", 3, "r1")],
        [("t1", "running", "hi", None, None)],
        "t1",
    ),
    row(
        "one-answer-of-two-keeps-waiting",
        [
            started("t1", 1),
            asked("t1", 2, "r1"),
            asked("t1", 3, "r2"),
            answered("t1", 4, "r1"),
        ],
        [("t1", "waiting", "hi", None, None)],
        "t1",
    ),
    row(
        "both-answers-run-again",
        [
            started("t1", 1),
            asked("t1", 2, "r1"),
            asked("t1", 3, "r2", "permission"),
            answered("t1", 4, "r1"),
            answered("t1", 5, "r2"),
        ],
        [("t1", "running", "hi", None, None)],
        "t1",
    ),
    row(
        "an-answer-naming-no-turn-runs-the-turn-that-asked",
        [started("t1", 1), asked("t1", 2, "r1"), answered(None, 3, "r1")],
        [("t1", "running", "hi", None, None)],
        "t1",
    ),
    row(
        "an-answer-to-an-unknown-request-changes-no-turn",
        [started("t1", 1), asked("t1", 2, "r1"), answered(None, 3, "zz")],
        [("t1", "waiting", "hi", None, None)],
        "t1",
    ),
    # --- a reconnect's state_snapshot
    row(
        "a-snapshot-naming-no-turn-ends-the-open-one",
        [started("t1", 1), delta("t1", 2), snapshot(5)],
        [("t1", "ended", "hi", None, None)],
        None,
    ),
    row(
        "a-snapshot-ends-a-waiting-turn-too",
        [started("t1", 1), asked("t1", 2, "r1"), snapshot(5)],
        [("t1", "ended", "hi", None, None)],
        None,
    ),
    row(
        "a-snapshot-naming-the-turn-keeps-it-running",
        [started("t1", 1), snapshot(5, active="t1")],
        [("t1", "running", "hi", None, None)],
        "t1",
    ),
    row(
        "a-snapshot-older-than-the-turn-leaves-it",
        [started("t1", 1), delta("t1", 7), snapshot(5)],
        [("t1", "running", "hi", None, None)],
        "t1",
    ),
    row(
        "a-snapshot-leaves-finished-turns",
        [started("t1", 1), complete("t1", 2, finalText="x"), snapshot(5)],
        [("t1", "complete", "hi", "x", None)],
        None,
    ),
    row(
        "the-real-end-after-ended-wins",
        [started("t1", 1), snapshot(5), complete("t1", 6, finalText="late")],
        [("t1", "complete", "hi", "late", None)],
        None,
    ),
    row(
        "a-snapshot-naming-the-newer-turn-ends-the-older",
        [started("t1", 1), started("t2", 2), snapshot(5, active="t2")],
        [("t1", "ended", "hi", None, None), ("t2", "running", "hi", None, None)],
        "t2",
    ),
    # --- catch-up replay: a seq already applied is refused
    row(
        "a-replayed-start-does-not-reopen-the-turn",
        [
            started("t1", 1),
            complete("t1", 2, finalText="x"),
            started("t1", 1),
            delta("t1", 2),
        ],
        [("t1", "complete", "hi", "x", None)],
        None,
    ),
    row(
        "a-replayed-end-is-refused-after-a-newer-one",
        [started("t1", 1), failed("t1", 3, **BOOM), complete("t1", 2, finalText="x")],
        [("t1", "error", "hi", None, BOOM)],
        None,
    ),
    # --- the gateway's history (its own rule: tests/test_stores_history.py)
    row(
        "history-brings-the-lost-end-of-an-ended-turn",
        [
            started("t1", 1),
            snapshot(5),
            history(h("t1", "complete", 1, final="done", ended=4)),
        ],
        [("t1", "complete", "hi", "done", None)],
        None,
    ),
    row(
        "history-adds-an-open-turn-as-active",
        [history(h("t1", "running", 1, text="go"))],
        [("t1", "running", "go", None, None)],
        "t1",
    ),
]


def turns_of(chat: dict[str, Any]) -> list[list[Any]]:
    return [
        [t["turnId"], t["status"], t["userText"], t["finalText"] or None, t["error"]]
        for t in chat["turns"]
    ]


def sent(*events: GatewayEvent) -> tuple[Stores, list[tuple[str, Any]]]:
    """The events through the stores, and the frames the router sends the page for them, in
    order: each applied event, then the stores' turn-state when it changed a turn
    (Router.on_gateway_event)."""
    stores, frames = Stores(), []
    for ev in events:
        if stores.apply(ev):
            frames.append(("gateway-event", json.loads(ev.raw)))
        if stores.moved is not None:
            verdict = stores.take_turn_state()
            if verdict is not None:
                frames.append(("turn-state", json.loads(json.dumps(verdict))))
    return stores, frames


@pytest.mark.parametrize("events, turns, active", RULES)
def test_the_stores_rule(events, turns, active):
    chat = reloaded(sent(*events)[0])["chats"][SID]
    assert turns_of(chat) == [list(t) for t in turns]
    assert chat["activeTurnId"] == active


@pytest.mark.parametrize("events, turns, active", RULES)
def test_the_turn_states_carry_the_stores_verdict(events, turns, active):
    frames = sent(*events)[1]
    told: dict[str, list[Any]] = {}
    last = None
    for kind, frame in frames:
        if kind == "turn-state":
            last = frame
            for t in frame["turns"]:
                told[t["turnId"]] = [
                    t["turnId"],
                    t["status"],
                    t["userText"],
                    t["finalText"] or None,
                    t["error"],
                ]
    assert last is not None and last["sessionId"] == SID
    assert last["activeTurnId"] == active
    assert [told[t[0]] for t in turns] == [list(t) for t in turns]


def test_each_turn_status_is_one_the_page_knows():
    statuses = {t[1] for param in RULES for t in param.values[1]}
    assert statuses == {"running", "waiting", "complete", "error", "stopped", "ended"}


@pytest.mark.parametrize(
    "before, quiet",
    [
        pytest.param(
            [started("t1", 1)], [delta("t1", 2), delta("t1", 3)], id="text-deltas"
        ),
        pytest.param(
            [started("t1", 1)],
            [
                event("thinking.progress", 2, turnId="t1", text="hm"),
                event("tool_call", 3, turnId="t1", toolCallId="c", toolName="ls"),
                event("tool_result", 4, turnId="t1", toolCallId="c", result="ok"),
                event("usage_update", 5, turnId="t1", inputTokens=1, outputTokens=2),
            ],
            id="items",
        ),
        pytest.param(
            [started("t1", 1), asked("t1", 2, "r1")],
            [asked("t1", 3, "r2")],
            id="a-second-question-to-a-waiting-turn",
        ),
        pytest.param(
            [started("t1", 1), asked("t1", 2, "r1"), asked("t1", 3, "r2")],
            [answered("t1", 4, "r1")],
            id="one-answer-of-two",
        ),
        pytest.param(
            [started("t1", 1), complete("t1", 2)],
            [snapshot(5)],
            id="a-snapshot-with-no-open-turn",
        ),
        pytest.param(
            [started("t1", 1)],
            [event("session_state", 2, status="running"), event("sandbox_ready", 3)],
            id="session-events",
        ),
    ],
)
def test_events_that_change_no_turn_get_no_turn_state(before, quiet):
    frames = sent(*before, *quiet)[1]
    told = sent(*before)[1]
    assert frames[len(told) :] == [
        ("gateway-event", json.loads(ev.raw)) for ev in quiet
    ]


def test_a_replayed_event_gets_no_frame():
    frames = sent(started("t1", 1), delta("t1", 2), delta("t1", 2), started("t1", 1))[1]
    assert [kind for kind, _ in frames] == [
        "gateway-event",
        "turn-state",
        "gateway-event",
    ]


def test_a_history_answer_tells_the_turns_it_added_and_settled_in_one_frame():
    frames = sent(
        started("t2", 5),
        snapshot(9),
        history(
            h("t1", "complete", 1, text="old", final="old answer", ended=3),
            h("t2", "error", 5, ended=8, error={"code": "E", "message": "m"}),
        ),
    )[1]
    kind, last = frames[-1]
    assert kind == "turn-state" and frames[-2][1]["type"] == "history"
    assert [
        (t["turnId"], t["status"], t.get("text"), t["fromHistory"])
        for t in last["turns"]
    ] == [("t1", "complete", "old answer", True), ("t2", "error", None, False)]
    assert last["activeTurnId"] is None


# --- the page: given the stores' frames (live) or their snapshot (reloaded), it shows their turns


@pytest.fixture(scope="module")
def reducer(browser):
    """A blank page that can import the page's reducer (ui/js/state.js imports nothing)."""
    context = browser.new_context()
    page = context.new_page()
    state_js = (ROOT / "ui" / "js" / "state.js").read_text()
    page.route(
        "http://reducer.test/state.js",
        lambda r: r.fulfill(body=state_js, content_type="text/javascript"),
    )
    page.route(
        "http://reducer.test/",
        lambda r: r.fulfill(
            body="<!doctype html><title>reducer</title>", content_type="text/html"
        ),
    )
    page.goto("http://reducer.test/")
    yield page
    context.close()


# The frames through the page (a live page), and the stores' snapshot through chatFromSnapshot (a
# reloaded page): the turns in the order shown, and the active one.
SHOW = """async ({ frames, snapshot }) => {
  const S = await import("/state.js");
  const view = (store) => {
    const chat = store.chats.get("s-1");
    const turns = chat.timeline
      .filter((e) => e.kind === "turn")
      .map((e) => chat.turns.get(e.turnId))
      .map((t) => [
        t.turnId, t.status, t.userText || null, t.finalText || null, t.error,
        S.displayText(t), t.fromHistory,
      ]);
    return { turns, active: S.activeTurnId(store, "s-1") };
  };
  const live = S.createStore();
  for (const [kind, payload] of frames) {
    if (kind === "turn-state") S.applyTurnState(live, payload);
    else S.applyGatewayEvent(live, payload);
  }
  const reloaded = S.createStore();
  reloaded.chats.set("s-1", S.chatFromSnapshot("s-1", snapshot));
  return { live: view(live), reloaded: view(reloaded) };
}"""


def display(status: str, text: str, final: str | None) -> str:
    """The text the page shows of a turn: the final text where it says more than what streamed."""
    ended = status in ("complete", "error", "stopped")
    return final if ended and final and len(final) > len(text) else text


def shown_by(reducer, events: list[GatewayEvent]) -> tuple[dict, dict, dict]:
    """What a live page and a reloaded page show of the events, and the stores' chat."""
    stores, frames = sent(*events)
    chat = reloaded(stores)["chats"][SID]
    got = reducer.evaluate(SHOW, {"frames": frames, "snapshot": chat})
    return got["live"], got["reloaded"], chat


@pytest.mark.parametrize("events, turns, active", RULES)
def test_the_page_shows_what_the_stores_decide(reducer, events, turns, active):
    live, again, chat = shown_by(reducer, events)
    # The page says "" where the stores say None (no user text yet); its text is the stores'.
    held = {t["turnId"]: t for t in chat["turns"]}
    shown = [
        [
            i,
            status,
            user or None,
            final,
            error,
            display(status, held[i]["text"], final),
            held[i]["fromHistory"],
        ]
        for i, status, user, final, error in turns
    ]
    assert live == {"turns": shown, "active": active}
    assert again == {"turns": shown, "active": active}


@pytest.mark.parametrize("steps, entries, expected", RULE_CASES)
def test_the_page_shows_what_the_stores_make_of_a_history_answer(
    reducer, steps, entries, expected
):
    live, again, _ = shown_by(reducer, [*steps, history(*entries)])
    shown = [
        [
            i,
            status,
            user or None,
            final or None,
            error,
            display(status, text, final),
            flag,
        ]
        for i, status, user, text, final, error, flag in expected
    ]
    assert live["turns"] == shown
    assert again["turns"] == shown


STALE = """async ({ frames }) => {
  const S = await import("/state.js");
  const store = S.createStore();
  for (const [kind, payload] of frames) {
    if (kind === "turn-state") S.applyTurnState(store, payload);
    else S.applyGatewayEvent(store, payload);
  }
  const t = store.chats.get("s-1").turns.get("t1");
  return [t.status, S.activeTurnId(store, "s-1")];
}"""


def test_a_turn_state_older_than_what_the_page_shows_is_left_out(reducer):
    frames = sent(started("t1", 1), complete("t1", 2, finalText="x"))[1]
    running = frames[1]  # the turn-state of turn_started, told again after the end
    assert reducer.evaluate(STALE, {"frames": [*frames, running]}) == ["complete", None]


def test_the_page_adds_no_status_of_its_own(reducer):
    """Without the stores' frames, events only show what they carry: no status, no active turn."""
    events = [json.loads(ev.raw) for ev in (started("t1", 1), complete("t1", 2))]
    frames = [["gateway-event", ev] for ev in events]
    assert reducer.evaluate(STALE, {"frames": frames}) == ["", None]
