"""Catching a session up after a (re)join or a live seq gap: its record, and the pure
decisions about its pages (tests/test_connection_catchup.py). The requests and
deliveries are the connection's (connection.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from dim_actors.connection.process.correlation import InternalKind
from dim_actors.connection.process.sender import SendSlot
from dim_actors.wire import protocol

# docs/protocol.md §11: nothing the docs do not promise is waited on for ever.
# `get_events` (its answer's shape is ours): a page not answered within this ends the
# catch-up.
CATCHUP_PAGE_WAIT_S = 10.0
# Retries of a catch-up refused for now (RATE_LIMITED) stop this long after it began.
CATCHUP_RETRY_BUDGET_S = 10.0
# Errors after which a catch-up is worth another try (within its budget); any other ends
# it.
CATCHUP_TRANSIENT = frozenset({"RATE_LIMITED"})
SESSION_NOT_FOUND = "SessionNotFound"
# Big pages: a long session is caught up in few requests, well inside the rate limit.
PAGE_LIMIT = 5000
# A session's first catch-up (a first join, a replay for a restarted router) brings its
# newest events only: a session of a million events opens in the time of these, the
# stores hold a window, and older turns come from the gateway as the user scrolls up to
# them (router get_turns).
CATCHUP_TAIL_EVENTS = 10_000


class CatchUp:
    """A session being caught up after a (re)join: live events of it wait here until it
    ends."""

    __slots__ = ("after", "began", "page_due", "page_slot", "held", "gap", "awaiting")

    def __init__(self, awaiting: bool = False) -> None:
        # a first join's: where it starts waits for the join's state_snapshot (its
        # lastSeq); page_due is then the snapshot's due time
        self.awaiting = awaiting
        # a live seq gap it fills: (last delivered, first seq after)
        self.gap: tuple[int, int] | None = None
        self.after = 0  # the seq its page in flight asked after
        self.began = time.monotonic()
        # when that page is overdue; None: no page in flight
        self.page_due: float | None = None
        # That page's place in the send queue: its wait starts when it goes, not while
        # the rate limit holds it behind other sessions' rejoins.
        self.page_slot: SendSlot | None = None
        self.held: list[tuple[bytes, protocol.EventHead, int | None]] = []


def page_overdue(c: CatchUp, now: float) -> bool:
    """Whether the page in flight has waited its due time since it was sent (not while
    it was still queued)."""
    if c.page_due is None or now < c.page_due:
        return False
    slot = c.page_slot
    return slot is None or (bool(slot.order) and now >= slot.at + CATCHUP_PAGE_WAIT_S)


def retry_refused(code: Any, delay_s: float, began: float, now: float) -> bool:
    """Whether a refused page is asked for again after `delay_s`: only for a transient
    refusal, and only within the catch-up's retry budget."""
    return code in CATCHUP_TRANSIENT and now + delay_s - began < CATCHUP_RETRY_BUDGET_S


def fills_gap(gap: tuple[int, int] | None, seq: int | None) -> bool:
    """Whether an event of a page lies inside the live gap being refetched."""
    return gap is not None and seq is not None and gap[0] < seq < gap[1]


PageNext = Literal["next", "stuck", "done"]


def after_page(more: bool, last: int | None, after: int) -> PageNext:
    """What follows a page that asked after `after` and whose last event is `last`: the
    next page, the end because "more" brings nothing new (asking again would get the
    same page), or the end."""
    if not more or last is None:
        return "done"
    return "next" if last > after else "stuck"


def tail_start(last_seq: int | None) -> int:
    """Where a session's first catch-up starts: after all but its newest
    CATCHUP_TAIL_EVENTS events, or at its first event when its last seq is not known."""
    return 0 if last_seq is None else max(0, last_seq - CATCHUP_TAIL_EVENTS)


def page_request(sid: str, after: int) -> dict[str, Any]:
    return {"sessionId": sid, "afterSeq": after, "limit": PAGE_LIMIT}


@dataclass(frozen=True)
class Deliver:
    data: bytes
    head: protocol.EventHead


@dataclass(frozen=True)
class Skip:
    """An event of the page that cannot be applied: reported, and the rest of the page
    goes on (failing the page instead would fetch it again, and again, for ever)."""

    reason: str
    data: bytes


@dataclass(frozen=True)
class GapFilled:
    """The page holds an event the live gap being refetched was missing (the gateway's
    seqs are dense): the next event fills it."""


PageStep = Deliver | Skip | GapFilled


def page_steps(
    sid: str, events: list[bytes], gap: tuple[int, int] | None
) -> tuple[list[PageStep], int | None]:
    """What a catch-up page's events come to, in order, and the last seq it brings (an
    event cut out for its depth counts: the next page starts after it)."""
    steps: list[PageStep] = []
    last = None
    for ev in events:
        try:
            head = protocol.decode_head(ev)
        except protocol.ProtocolError as e:
            steps.append(
                Skip(f"an event in a catch-up page of session {sid}: {e.message}", ev)
            )
            continue
        last = head.seq if head.seq is not None else last
        if protocol.TOO_DEEP_MARK in ev:  # cut out of the page (intake.py)
            steps.append(
                Skip(
                    f"an event in a catch-up page of session {sid}: nested deeper than "
                    f"{protocol.MAX_DEPTH} levels",
                    ev,
                )
            )
            continue
        if fills_gap(gap, head.seq):
            gap = None
            steps.append(GapFilled())
        steps.append(Deliver(ev, head))
    return steps, last


InternalOutcome = Literal["answered", "session_gone", "catchup_refused", "refused"]


def internal_outcome(
    kind: InternalKind | None, head_type: str, code: Any, catching_up: bool
) -> InternalOutcome:
    """What an answer to one of our own requests (a rejoin, a catch-up page, a history
    fallback; `kind` None: not ours) does. Only errors are ours alone: any other answer
    goes on."""
    if kind is None or head_type != "error":
        return "answered"
    if code == SESSION_NOT_FOUND:
        return "session_gone"
    if kind == "catchup" and catching_up:
        return "catchup_refused"
    return "refused"
