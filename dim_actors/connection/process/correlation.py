"""Requests awaiting their answer, and which request a frame from the gateway answers
(pure)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from dim_actors.connection.process.reading import str_or_none, target
from dim_actors.connection.process.sender import SendSlot
from dim_actors.kernel.requests import Allocator, origin_of


class Pending:
    """A request awaiting its answer. The session (and client turn id) keep another
    client's broadcast of the same event type from being taken for our answer."""

    __slots__ = (
        "req_id",
        "type",
        "expect",
        "session_id",
        "client_turn_id",
        "slot",
        "frame",
        "form",
    )

    def __init__(
        self,
        req_id: int,
        type_: str,
        expect: frozenset[str],
        frame: bytes = b"{}",
        form: int = 0,
    ):
        self.req_id, self.type, self.expect = req_id, type_, expect
        # its place in the rate window, held until it is answered
        self.slot = SendSlot(awaiting=True)
        self.frame, self.form = frame, form  # as sent, and its form (dialect.py)
        t = target(frame)  # our own frame, built by build_client_message
        self.session_id, self.client_turn_id = (
            str_or_none(t.sessionId),
            str_or_none(t.clientTurnId),
        )

    @property
    def order(self) -> float:
        """Its place in the order requests went out; infinite while it waits in the send
        queue."""
        return self.slot.order or float("inf")


def answers(
    p: Pending, type_: str, session_id: str | None, client_turn_id: str | None
) -> bool:
    """Whether a frame of `type_` (for `session_id`; a turn_started's `client_turn_id`)
    can be the answer to `p`; among those that can, the one sent first takes it
    (first_answered)."""
    if type_ == "error":
        # errors are unicast answers, in request order: the oldest open request
        return True
    if type_ not in p.expect:
        return False
    if (
        p.session_id is not None
        and session_id is not None
        and session_id != p.session_id
    ):
        return False
    # Another client's turn in this session (or, UNREADABLE, none we can claim).
    return not (
        p.client_turn_id is not None
        and type_ == "turn_started"
        and client_turn_id is not None
        and client_turn_id != p.client_turn_id
    )


def first_answered(
    pending: Iterable[Pending],
    type_: str,
    session_id: str | None,
    client_turn_id: str | None,
) -> Pending | None:
    """The request a frame answers: among those it can answer, the one sent first.
    Answers come in the order the gateway read the requests: the order they went out,
    which the send lanes make differ from the order they were queued. One not sent yet
    cannot be answered. One pass: this runs for every frame while anything is pending.
    """
    return min(
        (
            p
            for p in pending
            if p.slot.order and answers(p, type_, session_id, client_turn_id)
        ),
        key=lambda p: p.slot.order,
        default=None,
    )


def expired(pending: Iterable[Pending], now: float, timeout_s: float) -> list[Pending]:
    """The requests unanswered for longer than `timeout_s` since they went out. A
    request's wait starts when it goes out (slot.at); one the rate limit still holds in
    the send queue (behind other commands) has not been waiting for the gateway."""
    return [p for p in pending if p.slot.order and now - p.slot.at > timeout_s]


InternalKind = Literal["join", "catchup", "history"]


class Requests:
    """The requests awaiting their answer: the router's, the outbox's and the
    connection's own (`internal`: a rejoin, a catch-up page, a history fallback, by
    session). No lock of its own: it is used under the connection's lock, which the
    outbox's next item is taken under too."""

    def __init__(self) -> None:
        self.pending: list[Pending] = []
        self.internal: dict[int, tuple[str, InternalKind]] = {}
        self._internal_ids = Allocator("connection")

    def add(self, p: Pending) -> None:
        self.pending.append(p)

    def add_internal(
        self,
        sid: str,
        kind: InternalKind,
        type_: str,
        frame: bytes,
        expect: frozenset[str],
    ) -> Pending:
        req_id = next(self._internal_ids)
        self.internal[req_id] = (sid, kind)
        p = Pending(req_id, type_, expect, frame)
        self.pending.append(p)
        return p

    def drop(self, req_id: int) -> None:
        self.pending = [p for p in self.pending if p.req_id != req_id]

    def take_answered(
        self, type_: str, session_id: str | None, client_turn_id: str | None
    ) -> Pending | None:
        p = first_answered(self.pending, type_, session_id, client_turn_id)
        if p is not None:
            self.pending.remove(p)
        return p

    def take_expired(self, now: float, timeout_s: float) -> list[Pending]:
        late = expired(self.pending, now, timeout_s)
        self.pending = [p for p in self.pending if p not in late]
        return late

    def take_all(self) -> list[Pending]:
        """The connection is lost: every request, and our own are forgotten."""
        gone, self.pending = self.pending, []
        self.internal.clear()
        return gone

    def catchup_skipped(self, sid: str, answered: Pending) -> bool:
        """Whether a catch-up page of `sid` went out before `answered` and is still
        unanswered."""
        return any(
            p.order < answered.order and self.internal.get(p.req_id) == (sid, "catchup")
            for p in self.pending
        )

    def take_catchups(self, sid: str) -> list[Pending]:
        """The catch-up pages of `sid` still awaited: no longer."""
        stale = [
            p
            for p in self.pending
            if origin_of(p.req_id) == "connection"
            and self.internal.get(p.req_id) == (sid, "catchup")
        ]
        self.pending = [p for p in self.pending if p not in stale]
        for p in stale:
            del self.internal[p.req_id]
        return stale
