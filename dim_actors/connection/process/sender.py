"""The paced sender: every frame to the gateway leaves through it, within the gateway's
rate limit."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import websocket

from dim_actors.connection.process.watch import ThreadWatch
from dim_actors.connection.sendqueue import Lane, next_lane


class SendSlot:
    """One frame's place in the gateway's rate window. The gateway counts a frame when
    it reads it, which a loaded gateway (or a slow network) may do well after we sent
    it: a window counted from our send times alone lets the (limit+1)th frame arrive
    while the first still counts there. A request's answer proves it was counted by
    then, so a request's place runs from its answer, and an unanswered one holds its
    place until its answer, its expiry or the end of its connection."""

    __slots__ = ("at", "awaiting", "lane", "order")

    def __init__(self, awaiting: bool = False):
        self.at = 0.0  # time.monotonic() of its send, then of its answer
        self.awaiting = awaiting
        self.lane: Lane = "user"
        # Its place in the order frames went out (1, 2, ...), 0 while it waits in the
        # queue: the gateway answers in the order it reads, which the lanes make differ
        # from the order queued.
        self.order = 0


class Sender:
    """All frames to the gateway leave through here, paced to the gateway's rate limit.

    The gateway allows `limit` messages per `window_s` per connection and answers more
    with RATE_LIMITED; a client that paces itself never loses a command to that. Two
    lanes, each in order (sendqueue.py): the user's frames go before the client's own
    bookkeeping, which may hold at most two thirds of the window. Callers only enqueue,
    so the socket thread is never held up by pacing."""

    # Frames that get no answer (pings, joins) count from their send, plus this for the
    # gateway's reading; requests count from their answer (SendSlot).
    MARGIN_S = 0.05
    # Past this an unanswered request no longer holds its place, whatever happened to
    # its Pending.
    AWAIT_CAP_S = 120.0

    def __init__(self, limit: int, window_s: float, watch: ThreadWatch):
        self.limit, self.window_s = limit, window_s
        self.watch = watch
        # (ws, frame, slot, sessionId) per lane
        self.queues: dict[
            Lane, collections.deque[tuple[object, bytes, SendSlot, str | None]]
        ] = {"user": collections.deque(), "background": collections.deque()}
        self.cond = threading.Condition()
        self.slots: list[SendSlot] = []
        self.sent = 0
        self.holding = False

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Nothing goes out until the block ends: what it queues is then sent by the
        lanes' rules, not in whatever order another thread's frames happened to arrive
        meanwhile."""
        with self.cond:
            self.holding = True
        try:
            yield
        finally:
            with self.cond:
                self.holding = False
                self.cond.notify()

    def send(
        self,
        ws: websocket.WebSocket,
        frame: bytes,
        slot: SendSlot | None = None,
        lane: Lane = "user",
        session: str | None = None,
    ) -> None:
        slot = slot or SendSlot()
        slot.lane = lane
        with self.cond:
            self.queues[lane].append((ws, frame, slot, session))
            self.cond.notify()

    def pull_forward(self, session: str) -> None:
        """The user's command for `session` is about to be queued: the session's waiting
        background frames (its rejoin, its catch-up page) go first, in their order, so
        the command never reaches the gateway before the session is joined again."""
        with self.cond:
            bg = self.queues["background"]
            moved = [e for e in bg if e[3] == session]
            if not moved:
                return
            self.queues["background"] = collections.deque(
                e for e in bg if e[3] != session
            )
            for e in moved:
                e[2].lane = "user"
            self.queues["user"].extend(moved)
            self.cond.notify()

    def drop(self, ws: object) -> None:
        """A connection ended: what still waits for it is not sent (the reconnect
        resends what matters)."""
        with self.cond:
            for lane, q in self.queues.items():
                if any(e[0] is ws for e in q):
                    self.queues[lane] = collections.deque(
                        e for e in q if e[0] is not ws
                    )

    def settle(self, slot: SendSlot) -> None:
        """The request of `slot` was answered, expired or lost with its connection: it
        counts from now."""
        with self.cond:
            if slot.awaiting:
                slot.awaiting = False
                slot.at = max(slot.at, time.monotonic())
                self.cond.notify()

    def _next(self) -> tuple[object, bytes, SendSlot]:
        """Under self.cond: wait until a frame may go, and take it."""
        while True:
            now = time.monotonic()
            if self.limit:
                self.slots = [
                    s
                    for s in self.slots
                    if (s.awaiting and now - s.at <= self.AWAIT_CAP_S)
                    or now - s.at <= self.window_s
                ]
            background = sum(1 for s in self.slots if s.lane == "background")
            lane = next_lane(
                bool(self.queues["user"]),
                bool(self.queues["background"]),
                len(self.slots),
                background,
                self.limit,
            )
            if self.holding:
                self.cond.wait()
                continue
            if lane is not None:
                ws, frame, slot, _ = self.queues[lane].popleft()
                return ws, frame, slot
            if not self.queues["user"] and not self.queues["background"]:
                self.cond.wait()
                continue
            # Full (or background's share is): wait for the first place that frees, or a
            # user frame.
            ends = [
                s.at
                + (self.AWAIT_CAP_S if s.awaiting else self.window_s + self.MARGIN_S)
                for s in self.slots
            ]
            self.cond.wait(max(0.0, min(ends) - now) if ends else None)

    def run(self) -> None:
        while True:
            with self.cond:
                ws, frame, slot = self._next()
                self.sent += 1
                slot.order = self.sent
                slot.at = time.monotonic()
                if self.limit:
                    self.slots.append(slot)
            try:
                with self.watch.working("sender"):
                    ws.send(frame)  # type: ignore[attr-defined]
            except (OSError, websocket.WebSocketException):
                pass  # that connection is gone; the reconnect resends what matters
            with self.cond:
                slot.at = max(slot.at, time.monotonic())
