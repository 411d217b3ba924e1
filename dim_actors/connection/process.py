"""The connection process: owns the gateway socket, in its own OS process.

Nothing in the supervisor process can pause it. Three threads, none waiting on another:
- the socket thread connects, handshakes, reads frames and hands them to the uplink;
- the uplink thread writes events to the pipe (if the supervisor stops draining, only it waits);
- the main thread reads commands from the pipe and sends frames;
plus a keepalive thread that pings, detects a silent gateway and expires unanswered requests,
and a watchdog thread that ends the process when one of the others is stuck (ThreadWatch).
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import signal
import sqlite3
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec
import websocket

from dim_actors.connection import staleness
from dim_actors.connection.backoff import Backoff
from dim_actors.connection.dialect import Dialect
from dim_actors.connection.fastws import BufferedWebSocket, OversizedFrame
from dim_actors.connection.outbox import QUEUEABLE, Outbox
from dim_actors.connection.replication import ReplicationLinks  # sync: docs/sync.md
from dim_actors.connection.sendqueue import Lane, next_lane, rejoin_order
from dim_actors.connection.sockets import hard_close
from dim_actors.connection.uplink import Uplink, remove_stale_spills, spill_file
from dim_actors.messages import (
    REPLICATION_DOWN,
    BadFrame,
    CancelQueued,
    CatchupGap,
    CommandFailed,
    Connect,
    ConnectionState,
    Disconnect,
    GatewayTraits,
    OutboxChanged,
    PipeEvent,
    Queued,
    Resync,
    ResyncStarted,
    SendFrame,
    SessionGone,
    Shutdown,
    decode_down,
)
from dim_actors.wire import protocol
from dim_actors.wire.limits import MAX_SOCKET_FRAME

log = logging.getLogger("dim.connection")


# Request ids: the bridge's count up from 1; the outbox's are -itemId; the router's own are below this.
OUTBOX_IDS = -(1 << 40)


# The connection's own catch-up requests: answers only feed the catch-up.
INTERNAL_IDS = -(1 << 50)


class OwnedLock:
    """A non-reentrant lock that knows which thread holds it. Taking it again on the thread that
    holds it would hang that thread for good: it raises at once instead, so the mistake is a logged
    error in one frame, not a dead connection."""

    __slots__ = ("_lock", "owner")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.owner: int | None = None

    def held_here(self) -> bool:
        return self.owner == threading.get_ident()

    def __enter__(self) -> OwnedLock:
        if self.held_here():
            raise RuntimeError("the frame lock is already held by this thread")
        self._lock.acquire()
        self.owner = threading.get_ident()
        return self

    def __exit__(self, *exc: object) -> None:
        self.owner = None
        self._lock.release()


# A thread of this process busy with one piece of work (a frame, a command, a keepalive round) for
# longer than this is stuck: deadlocked, or waiting on something that will not come. Sending one
# frame may take longer on a slow link (a large write_file): the sender gets more.
HUNG_AFTER_S = 30.0
HUNG_AFTER_SEND_S = 120.0
# The exit code of a connection process that ended itself because a thread was stuck. Any exit
# makes the supervisor restart the connection (actor.py); this one says why in `dimctl logs`.
EXIT_HUNG = 70


def stuck_loops(
    busy: dict[str, float],
    bounds: dict[str, float],
    now: float,
    default_bound: float = HUNG_AFTER_S,
) -> list[tuple[str, float]]:
    """The loops busy with one piece of work for longer than their bound, and for how long."""
    return [
        (name, now - since)
        for name, since in busy.items()
        if now - since > bounds.get(name, default_bound)
    ]


class ThreadWatch:
    """Each loop of the process marks the piece of work it is doing; an idle loop (waiting for a
    frame, a command, its next round) is not busy, however long it waits. The watchdog thread ends
    the process when one is busy past its bound, so the supervisor starts a fresh one: a hung
    thread that holds a lock (or leaves its work waiting) can then hold up nothing."""

    def __init__(
        self, bound_s: float = HUNG_AFTER_S, bounds: dict[str, float] | None = None
    ):
        self.bound_s = bound_s
        # Loops that get another bound than bound_s, by name.
        self.bounds = {"sender": HUNG_AFTER_SEND_S} if bounds is None else dict(bounds)
        self.busy: dict[
            str, float
        ] = {}  # loop name -> time.monotonic() its current piece of work began
        self.threads: dict[
            str, int
        ] = {}  # loop name -> thread ident, for the stack in the log

    @contextmanager
    def working(self, name: str) -> Iterator[None]:
        self.threads[name] = threading.get_ident()
        self.busy[name] = time.monotonic()
        try:
            yield
        finally:
            self.busy.pop(name, None)

    def stuck(self, now: float) -> list[tuple[str, float]]:
        return stuck_loops(dict(self.busy), self.bounds, now, self.bound_s)

    def run(self, exit_: Callable[[int], None] = os._exit) -> None:
        while True:
            time.sleep(min(1.0, self.bound_s / 4))
            stuck = self.stuck(time.monotonic())
            if not stuck:
                continue
            frames = sys._current_frames()
            for name, secs in stuck:
                frame = frames.get(self.threads.get(name, -1))
                stack = (
                    "".join(traceback.format_stack(frame))
                    if frame is not None
                    else "(no stack)"
                )
                log.critical(
                    "the %s thread of the connection process has been stuck for %.0f s: ending the "
                    "process (exit code %d) so the supervisor starts a new one. Its stack:\n%s",
                    name,
                    secs,
                    EXIT_HUNG,
                    stack,
                )
            for handler in logging.getLogger().handlers:
                handler.flush()
            exit_(EXIT_HUNG)
            return


class SendSlot:
    """One frame's place in the gateway's rate window. The gateway counts a frame when it reads it,
    which a loaded gateway (or a slow network) may do well after we sent it: a window counted from
    our send times alone lets the (limit+1)th frame arrive while the first still counts there. A
    request's answer proves it was counted by then, so a request's place runs from its answer, and
    an unanswered one holds its place until its answer, its expiry or the end of its connection."""

    __slots__ = ("at", "awaiting", "lane", "order")

    def __init__(self, awaiting: bool = False):
        self.at = 0.0  # time.monotonic() of its send, then of its answer
        self.awaiting = awaiting
        self.lane: Lane = "user"
        # Its place in the order frames went out (1, 2, ...), 0 while it waits in the queue: the
        # gateway answers in the order it reads, which the lanes make differ from the order queued.
        self.order = 0


class Sender:
    """All frames to the gateway leave through here, paced to the gateway's rate limit.

    The gateway allows `limit` messages per `window_s` per connection and answers more with
    RATE_LIMITED; a client that paces itself never loses a command to that. Two lanes, each in
    order (sendqueue.py): the user's frames go before the client's own bookkeeping, which may hold
    at most two thirds of the window. Callers only enqueue, so the socket thread is never held up
    by pacing."""

    # Frames that get no answer (pings, joins) count from their send, plus this for the gateway's
    # reading; requests count from their answer (SendSlot).
    MARGIN_S = 0.05
    # Past this an unanswered request no longer holds its place, whatever happened to its Pending.
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
        """Nothing goes out until the block ends: what it queues is then sent by the lanes' rules,
        not in whatever order another thread's frames happened to arrive meanwhile."""
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
        """The user's command for `session` is about to be queued: the session's waiting background
        frames (its rejoin, its catch-up page) go first, in their order, so the command never
        reaches the gateway before the session is joined again."""
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
        """A connection ended: what still waits for it is not sent (the reconnect resends what matters)."""
        with self.cond:
            for lane, q in self.queues.items():
                if any(e[0] is ws for e in q):
                    self.queues[lane] = collections.deque(
                        e for e in q if e[0] is not ws
                    )

    def settle(self, slot: SendSlot) -> None:
        """The request of `slot` was answered, expired or lost with its connection: it counts from now."""
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
            # Full (or background's share is): wait for the first place that frees, or a user frame.
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


class AuthFailed(Exception):
    pass


class ProtocolVersionMismatch(Exception):
    """The gateway speaks another major version of the protocol: retrying cannot help."""


class RetryLater(Exception):
    def __init__(self, delay_s: float, why: str):
        super().__init__(why)
        self.delay_s = delay_s


# The fields the connection itself reads from gateway frames are decoded as Any and checked by
# hand: a wrong type there must become a reported bad frame, not a ValidationError that ends the
# socket thread. (The router decodes events fully and keeps odd ones; here only routing matters.)
class _ErrorCodeStruct(msgspec.Struct):
    code: Any = ""


_ErrorCode = msgspec.json.Decoder(_ErrorCodeStruct)


class _EventList(msgspec.Struct):
    events: list[
        msgspec.Raw
    ] = []  # each event exactly as sent; only their envelopes are read here
    hasMore: Any = False


_event_list = msgspec.json.Decoder(_EventList)


class _Snapshot(msgspec.Struct):
    lastSeq: Any = None


_snapshot = msgspec.json.Decoder(_Snapshot)


def _snapshot_last_seq(data: bytes) -> int | None:
    """state_snapshot.lastSeq (ours: a gateway may not send it), when it is a usable number."""
    value = _snapshot.decode(data).lastSeq
    return (
        value
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0
        else None
    )


class _Target(msgspec.Struct):
    sessionId: Any = None
    clientTurnId: Any = None


_target = msgspec.json.Decoder(_Target)
UNREADABLE = (
    "\x00unreadable"  # a clientTurnId of the wrong type: matches no request of ours
)

# AUTH_RATE_LIMITED and catch-up refusals without a usable retryAfterMs wait this long; a value
# above the maximum is clamped, so a garbled number cannot park the connection for days.
RETRY_AFTER_DEFAULT_S = 1.0
RETRY_AFTER_MAX_S = 300.0

# docs/protocol.md §11: nothing the docs do not promise is waited on for ever.
# `get_events` (its answer's shape is ours): a page not answered within this ends the catch-up.
CATCHUP_PAGE_WAIT_S = 10.0
# Retries of a catch-up refused for now (RATE_LIMITED) stop this long after it began.
CATCHUP_RETRY_BUDGET_S = 10.0
# After `welcome {requiresAuth: false}` the connection is ready at `connected` (the reference SDK
# resolves there); if no `connected` comes within this, it is ready all the same.
CONNECTED_WAIT_S = 2.0
# Errors after which a catch-up is worth another try (within its budget); any other ends it.
CATCHUP_TRANSIENT = frozenset({"RATE_LIMITED"})
SESSION_NOT_FOUND = "SessionNotFound"


def retry_after_s(value: Any, floor_s: float) -> float | None:
    """A gateway's retryAfterMs as seconds in [floor_s, RETRY_AFTER_MAX_S]; None when unusable."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value != value
        or value < 0
    ):
        return None  # missing, null, a string, NaN, negative
    return min(RETRY_AFTER_MAX_S, max(floor_s, value / 1000))


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# What each joined session remembers of its recent events, to tell a conflicting duplicate: the
# last RECENT_SEQS seqs, their bytes while they fit in RECENT_BYTES, a hash of their bytes past that.
RECENT_SEQS = 256
RECENT_BYTES = 64 << 10
# Gap refetches in a row that found nothing between (or could not fetch it) before a gateway is taken
# to skip seqs on purpose.
EMPTY_GAP_REFETCHES_MAX = 3


def seq_gap(last: int, seq: int, dense: str) -> tuple[int, int] | None:
    """A live event's seq after `last` delivered: the missing range (after, before) to fetch, or
    None when nothing is missing, it is a duplicate, or the gateway is known to skip seqs."""
    if seq <= last + 1 or dense == "no":
        return None
    return last, seq


def same_content(a: bytes, b: bytes) -> bool:
    """Whether two events say the same, whatever their key order or spacing: a live frame and the
    stored copy in a catch-up page may be written differently."""
    if a == b:
        return True
    try:
        return msgspec.json.decode(a) == msgspec.json.decode(b)
    except (msgspec.DecodeError, RecursionError):
        return False


class RecentSeqs:
    """The recent events of one session, to tell a seq that comes again with other content. Cheap
    on the hot path (a dict entry per event); a hash is taken only of bytes that no longer fit, and
    the JSON comparison runs only for a duplicate whose bytes differ."""

    __slots__ = ("keep", "budget", "entries", "kept_bytes")

    def __init__(self, keep: int = RECENT_SEQS, budget: int = RECENT_BYTES):
        self.keep, self.budget = keep, budget
        # seq -> the event's bytes, or the hash of them once they no longer fit; oldest first
        self.entries: collections.OrderedDict[int, bytes | int] = (
            collections.OrderedDict()
        )
        self.kept_bytes = 0

    def add(self, seq: int, data: bytes) -> None:
        entries = self.entries
        old = entries.pop(seq, None)
        if isinstance(old, bytes):
            self.kept_bytes -= len(old)
        entries[seq] = data
        self.kept_bytes += len(data)
        if len(entries) > self.keep:
            gone = entries.popitem(last=False)[1]
            if isinstance(gone, bytes):
                self.kept_bytes -= len(gone)
        if self.kept_bytes > self.budget:
            # Only with large events: the oldest keep just a hash until the rest fits.
            for s, kept in entries.items():
                if self.kept_bytes <= self.budget:
                    break
                if isinstance(kept, bytes):
                    entries[s] = hash(kept)
                    self.kept_bytes -= len(kept)

    def conflicts(self, seq: int, data: bytes) -> bool:
        """Whether `data` says something else than the first event of this seq (False when that
        one is no longer remembered)."""
        first = self.entries.get(seq)
        if first is None:
            return False
        if isinstance(first, bytes):
            return not same_content(first, data)
        return first != hash(data)


# Below this much free space an outbox error is put down to a full disk: SQLite reports some of
# those as I/O errors (creating the WAL index of a database it opens, say).
FULL_BELOW_BYTES = 1 << 20


def outbox_full(e: sqlite3.Error, path: Any = None) -> bool:
    if getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(e):
        return True
    if path is None:
        return False
    try:
        return shutil.disk_usage(Path(path).parent).free < FULL_BELOW_BYTES
    except OSError:
        return False


def outbox_failure_message(e: sqlite3.Error, path: Any) -> str:
    if outbox_full(e, path):
        return (
            f"not connected, and the outbox could not store this message: disk full in {path}; "
            f"free space and send again"
        )
    return f"not connected, and the outbox could not store this message ({e}, in {path}); send again later"


class Pending:
    """A request awaiting its answer. The session (and client turn id) keep another client's
    broadcast of the same event type from being taken for our answer."""

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
        self.slot = SendSlot(
            awaiting=True
        )  # its place in the rate window, held until it is answered
        self.frame, self.form = frame, form  # as sent, and its form (dialect.py)
        t = _target.decode(frame)  # our own frame, built by build_client_message
        self.session_id, self.client_turn_id = (
            _str_or_none(t.sessionId),
            _str_or_none(t.clientTurnId),
        )

    @property
    def order(self) -> float:
        """Its place in the order requests went out; infinite while it waits in the send queue."""
        return self.slot.order or float("inf")


def answers(
    p: Pending, type_: str, session_id: str | None, client_turn_id: str | None
) -> bool:
    """Whether a frame of `type_` (for `session_id`; a turn_started's `client_turn_id`) can be the
    answer to `p`; among those that can, the one sent first takes it (_correlate)."""
    if type_ == "error":
        return True  # errors are unicast answers, in request order: the oldest open request
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


class CatchUp:
    """A session being caught up after a (re)join: live events of it wait here until it ends."""

    __slots__ = ("after", "began", "page_due", "page_slot", "held", "gap")

    def __init__(self) -> None:
        self.gap: tuple[int, int] | None = (
            None  # a live seq gap it fills: (last delivered, first seq after)
        )
        self.after = 0  # the seq its page in flight asked after
        self.began = time.monotonic()
        self.page_due: float | None = (
            None  # when that page is overdue; None: no page in flight
        )
        # That page's place in the send queue: its wait starts when it goes, not while the rate
        # limit holds it behind other sessions' rejoins.
        self.page_slot: SendSlot | None = None
        self.held: list[tuple[bytes, protocol.EventHead, int | None]] = []


class GatewayConnection:
    def __init__(
        self,
        uplink: Uplink,
        ping_interval_s: float,
        stale_after_s: float,
        request_timeout_s: float,
        resume: dict[str, int] | None = None,
        outbox: Outbox | None = None,
        rate_limit: int = 60,
        rate_window_s: float = 10.0,
        watch: ThreadWatch | None = None,
        outbox_path: Path | None = None,
    ):
        self.uplink = uplink
        self.watch = watch or ThreadWatch()
        self.sender = Sender(rate_limit, rate_window_s, self.watch)
        # Our own requests in flight (rejoin, catch-up, history) -> (sessionId, kind)
        self.internal: dict[int, tuple[str, str]] = {}
        # Sessions whose catch-up gave up after this seq: the first event past it shows the gap's end.
        self.gap_after: dict[str, tuple[int, str]] = {}
        self.abandoned: set[str] = (
            set()
        )  # sessions whose unanswered catch-up page we stopped waiting for
        self.dialect = Dialect()
        self.traits = GatewayTraits()
        self.warnings: list[str] = []
        self.internal_ids = INTERNAL_IDS
        self.outbox = outbox
        # Where the outbox is, when it could not be opened yet (a full disk): opened when needed.
        self.outbox_path = outbox_path if outbox is None else None
        # The outbox sends one item at a time, in order. A session whose turn is running (one we
        # started from the outbox, or another client's) holds back the next run_turn for it.
        self.outbox_inflight: int | None = None
        self.turn_gate: dict[
            str, str
        ] = {}  # sessionId -> turnId to wait for, or "*" for any turn
        self.ping_interval_s = ping_interval_s
        self.stale_override_s = (
            stale_after_s  # 0: derived from the gateway's heartbeatIntervalMs
        )
        self.keepalive = staleness.keepalive(None, ping_interval_s, stale_after_s)
        self.pong_probe_at: float | None = (
            None  # when our first unanswered `ping` message went
        )
        self.request_timeout_s = request_timeout_s
        self.url: str | None = None
        self.token: str | None = None
        self.ws: websocket.WebSocket | None = None
        self.connected = threading.Event()
        self.wanted = threading.Event()  # set while the user wants a connection
        self.wake = threading.Event()
        self.lock = threading.Lock()
        self.pending: list[Pending] = []
        # Sessions this client joined and the last seq delivered for each: after a reconnect (or a
        # restart of this process) they are re-joined and caught up, and older seqs are dropped.
        self.joined: dict[str, int] = dict(resume or {})
        self.catching_up: dict[str, CatchUp] = {}
        # When the user last sent a command for each session (rejoins go most recent first), and the
        # sessions used since this connection came up: their joins and catch-up pages go in the
        # user's lane of the sender (sendqueue.py), not behind the other sessions' rejoins.
        self.last_used: dict[str, float] = {}
        self.user_sessions: set[str] = set()
        # Sessions to replay from their first event (a restarted router rebuilds its stores).
        self.replay_all: set[str] = set()
        # Held while one frame is handled (socket thread), and by whatever must not interleave with
        # that (a join and its catch-up, a resync, a catch-up's deadline). Not reentrant: work a
        # frame leads to that takes it itself (sending the next outbox item may join its session)
        # is not done under it but queued in `after_frame` and run once the frame is handled.
        self.frame_lock = OwnedLock()
        self.after_frame: list[Callable[[], None]] = []
        self._handed_over = (
            False  # whether the frame being handled has gone on (or is held back)
        )
        # Recent events of each joined session: a seq that comes again with other content is
        # reported instead of silently dropped.
        self.recent: dict[str, RecentSeqs] = {}
        self.replaced_chars = 0  # lone surrogates replaced with U+FFFD
        self.empty_gap_refetches = (
            0  # gap refetches in a row that filled nothing (a gateway skipping seqs)
        )
        self.reconnects = 0
        self.backoff = Backoff()
        self.last_frame = time.monotonic()
        self.last_ping = time.monotonic()
        self.bad_frames = 0
        self.max_frame_bytes = MAX_SOCKET_FRAME
        self.identity: dict[str, Any] | None = None
        self.state = "offline"
        self.replication = ReplicationLinks(uplink, lambda: (self.url, self.token))

    # --- state ------------------------------------------------------------------------------------

    def set_state(
        self, state: str, detail: str = "", retry_in_ms: int | None = None
    ) -> None:
        self.state = state
        self.uplink.put_control(
            ConnectionState(
                state=state,
                url=self.url or "",
                detail=detail,
                reconnects=self.reconnects,
                retryInMs=retry_in_ms,
                identity=self.identity,
                warnings=list(self.warnings),
                traits=self.traits,
            )
        )

    def learned(self, **traits: Any) -> None:
        """What the gateway was seen to do; published with the state when it changes anything."""
        new = msgspec.structs.replace(self.traits, **traits)
        if new != self.traits:
            self.traits = new
            if self.state == "connected":
                self.set_state("connected")

    # --- commands from the supervisor ---------------------------------------------------------------

    def on_command(self, msg: Any) -> bool:
        if isinstance(msg, REPLICATION_DOWN):
            self.replication.on_command(msg)
            return True
        if isinstance(msg, Connect):
            self.url, self.token = msg.url, msg.token
            self.replication.gateway_changed()
            # What was learned of the last gateway holds for it only.
            self.dialect.reset()
            self.traits, self.warnings = GatewayTraits(), []
            self.empty_gap_refetches = 0
            self.backoff.reset()  # asked for now: the first retry of this connection waits ~0.5 s at most
            self.wanted.set()
            self._close_socket()
            self.wake.set()
        elif isinstance(msg, Disconnect):
            self.wanted.clear()
            self._close_socket()
            self.wake.set()
        elif isinstance(msg, SendFrame):
            self._send_request(msg)
        elif isinstance(msg, Resync):
            self._resync()
        elif isinstance(msg, CancelQueued):
            self._cancel_queued(msg)
        elif isinstance(msg, Shutdown):
            self.replication.close()
            self.wanted.clear()
            self._close_socket()
            return False
        return True

    def _resync(self) -> None:
        # Under the frame lock, so no live event slips between the marker and the replay.
        with self.frame_lock:
            with self.lock:
                self.replay_all = set(self.joined)
            # Everything after this marker is the replay, then live events, in order.
            self.uplink.put_control(ResyncStarted())
            self.set_state(self.state)
            ws = self.ws
            if ws is not None and self.connected.is_set():
                try:
                    self.sender.send(
                        ws,
                        protocol.build_client_message("list_sessions", {}),
                        lane="background",
                    )
                    self._resume_sessions(ws)
                except (OSError, websocket.WebSocketException):
                    pass  # the reconnect that follows resumes (and replays) instead

    # --- the outbox ---------------------------------------------------------------------------------

    def outbox_changed(self, req_id: int | None = None) -> None:
        if self.outbox is not None:
            with self.lock:
                items = self.outbox.items()
            self.uplink.put_control(OutboxChanged(items=items, reqId=req_id))

    def _open_outbox(self) -> sqlite3.Error | None:
        """Open the outbox if it could not be opened before; the error when it still cannot."""
        path = self.outbox_path
        if self.outbox is not None or path is None:
            return None
        try:
            outbox = Outbox(path)
        except sqlite3.Error as e:
            return e
        with self.lock:
            first = (
                self.outbox is None
            )  # the main and the socket thread may both have tried
            if first:
                self.outbox, self.outbox_path = outbox, None
        if not first:
            outbox.close()
            return None
        log.info("the outbox %s is open", outbox.path)
        self.outbox_changed()
        return None

    def _queue(self, msg: SendFrame) -> None:
        path = self.outbox.path if self.outbox is not None else self.outbox_path
        try:
            error = self._open_outbox()
            if error is not None:
                raise error
            assert self.outbox is not None
            with self.lock:
                outbox_id = self.outbox.add(msg.type, msg.frame)
        except sqlite3.Error as e:
            # The command is refused, not lost: the page keeps what the user typed on an error answer.
            full = outbox_full(e, path)
            log.error("could not queue a %s in the outbox %s: %s", msg.type, path, e)
            self.uplink.put_control(
                CommandFailed(
                    reqId=msg.reqId,
                    code="DISK_FULL" if full else "OUTBOX_ERROR",
                    message=outbox_failure_message(e, path),
                )
            )
            return
        # The stores learn of the queue before the caller hears "queued", so a get_state right after shows it.
        self.outbox_changed()
        self.uplink.put_control(Queued(reqId=msg.reqId, outboxId=outbox_id))

    def _outbox_remove(self, item_id: int) -> bool:
        """Under self.lock. A delete can fail on a full disk too (the WAL grows): the item then
        stays, shown, and goes again after a reconnect (a run_turn's clientTurnId prevents a rerun)."""
        assert self.outbox is not None
        try:
            return self.outbox.remove(item_id)
        except sqlite3.Error as e:
            log.error("could not remove outbox item %d: %s", item_id, e)
            return False

    def _cancel_queued(self, msg: CancelQueued) -> None:
        with self.lock:
            removed = (
                self.outbox is not None
                and msg.outboxId != self.outbox_inflight
                and self._outbox_remove(msg.outboxId)
            )
        if removed:
            self.outbox_changed(msg.reqId)
        else:
            self.uplink.put_control(
                CommandFailed(
                    reqId=msg.reqId,
                    code="NOT_FOUND",
                    message=f"outbox item {msg.outboxId} is not waiting (already sent, or never queued)",
                )
            )

    def _join(
        self,
        ws: websocket.WebSocket,
        sid: str,
        frame: bytes | None = None,
        slot: SendSlot | None = None,
    ) -> None:
        """Join a session and fetch what it already holds, so the stores see its history once;
        live events wait behind that catch-up (under the frame lock)."""
        with self.frame_lock:
            with self.lock:
                self.joined[sid] = 0
            self.catching_up[sid] = CatchUp()
            self._used(sid)
            self.sender.send(
                ws,
                frame
                or protocol.build_client_message("join_session", {"sessionId": sid}),
                slot,
                session=sid,
            )
            self._catch_up(ws, sid, 0)

    def _flush_outbox(self) -> None:
        """Send the next outbox item if nothing is in flight; it leaves the outbox once answered.

        It may join the item's session, which takes the frame lock: asked for while this thread
        handles a frame (an answer to the last item, the end of a turn), it runs after that frame."""
        if self.frame_lock.held_here():
            if self._flush_outbox not in self.after_frame:
                self.after_frame.append(self._flush_outbox)
            return
        ws = self.ws
        if ws is None or not self.connected.is_set():
            return
        self._open_outbox()  # items queued before a full disk kept it from opening go now
        if self.outbox is None:
            return
        with self.lock:
            if self.outbox_inflight is not None:
                return
            items = self.outbox.pending()
            if not items:
                return
            item_id, type_, frame = items[0]
            form, frame = self.dialect.first(type_, frame)
            p = Pending(
                -item_id, type_, protocol.RESPONSES.get(type_, frozenset()), frame, form
            )
            if type_ == "run_turn" and p.session_id in self.turn_gate:
                return  # wait for that session's turn to end; order is kept, nothing jumps the queue
            self.outbox_inflight = item_id
            try:
                self.outbox.mark_sent(
                    item_id
                )  # only shown in the outbox list: the item goes all the same
            except sqlite3.Error as e:
                log.warning("could not mark outbox item %d as sent: %s", item_id, e)
            # Negative request ids mark the outbox's own requests: nobody waits on them upstream.
            self.pending.append(p)
        try:
            if p.session_id is not None and p.session_id not in self.joined:
                self._join(
                    ws, p.session_id
                )  # so the queued command's outcome reaches the stores
            self._used(p.session_id)
            self.sender.send(ws, frame, p.slot, session=p.session_id)
        except (OSError, websocket.WebSocketException):
            return  # the reconnect sends it again (a run_turn carries its clientTurnId: no double run)
        self.outbox_changed()

    def _outbox_answered(
        self, req_id: int, head: protocol.EventHead, data: bytes
    ) -> None:
        assert self.outbox is not None
        item_id = -req_id
        code = _ErrorCode.decode(data).code if head.type == "error" else ""
        if not isinstance(code, str):
            # Unreadable, so not TurnInProgress: the item is refused like any other error, not retried
            # (retrying an answer we cannot read could loop forever). The error event still reaches the page.
            self._bad_frame(
                f"an error answering a queued command has a code that is not a string ({code!r})",
                data,
            )
        with self.lock:
            row = next((i for i in self.outbox.pending() if i[0] == item_id), None)
            sid = _str_or_none(_target.decode(row[2]).sessionId) if row else None
            self.outbox_inflight = None
            if code == "TurnInProgress" and sid:
                self.turn_gate[sid] = (
                    "*"  # another turn runs there: try again when it ends
                )
            else:
                self._outbox_remove(item_id)
                if head.type == "turn_started" and sid and head.turnId:
                    self.turn_gate[sid] = head.turnId
                if head.type == "error":
                    log.warning(
                        "the gateway refused a queued %s: %s",
                        row[1] if row else "command",
                        bytes(data[:300]).decode("utf-8", "replace"),
                    )
        self.outbox_changed()
        self._flush_outbox()

    def _turn_ended(self, head: protocol.EventHead) -> None:
        gate = self.turn_gate.get(head.sessionId or "")
        if gate is not None and (gate == "*" or gate == head.turnId):
            del self.turn_gate[head.sessionId]  # type: ignore[arg-type]
            self._flush_outbox()

    def _send_request(self, msg: SendFrame) -> None:
        ws = self.ws
        queue_it = (
            self.outbox is not None or self.outbox_path is not None
        ) and msg.type in QUEUEABLE
        if queue_it:
            self._open_outbox()
            with self.lock:
                waiting = self.outbox is not None and bool(self.outbox.pending())
        if queue_it and (ws is None or not self.connected.is_set() or waiting):
            # Offline, or earlier commands still wait: join the queue so order is kept.
            self._queue(msg)
            self._flush_outbox()
            return
        if ws is None or not self.connected.is_set():
            self.uplink.put_control(
                CommandFailed(
                    reqId=msg.reqId,
                    code="NOT_CONNECTED",
                    message=f"not connected to the gateway (state: {self.state})",
                )
            )
            return
        sid = _target.decode(msg.frame).sessionId
        first_join = (
            msg.type == "join_session" and sid is not None and sid not in self.joined
        )
        if msg.type == "leave_session":
            with self.lock:
                self.joined.pop(sid, None)
            self.recent.pop(sid, None)
            self.last_used.pop(sid, None)
        form, frame = self.dialect.first(msg.type, msg.frame)
        pending = Pending(msg.reqId, msg.type, frozenset(msg.expect), frame, form)
        with self.lock:
            self.pending.append(pending)
        # The router's own requests (reqId < 0: its list_sessions on connecting) are bookkeeping;
        # everything else is the user's.
        lane: Lane = "background" if msg.reqId < 0 else "user"
        try:
            if first_join:
                self._join(ws, sid, frame, pending.slot)
            else:
                if lane == "user":
                    self._used(pending.session_id)
                self.sender.send(ws, frame, pending.slot, lane, pending.session_id)
        except (OSError, websocket.WebSocketException) as e:
            self.sender.settle(pending.slot)
            with self.lock:
                self.pending = [p for p in self.pending if p.req_id != msg.reqId]
            self.uplink.put_control(
                CommandFailed(
                    reqId=msg.reqId, code="NOT_CONNECTED", message=f"send failed: {e}"
                )
            )

    # --- the socket thread ---------------------------------------------------------------------------

    def run_socket(self) -> None:
        while True:
            self.wanted.wait()
            url = self.url
            self.set_state("connecting")
            try:
                self._connect_and_read(url)
                delay = None
                why = "the gateway closed the connection"
            except AuthFailed as e:
                self.wanted.clear()
                self.set_state("auth_failed", str(e))
                continue
            except ProtocolVersionMismatch as e:
                # Like AUTH_FAILED: no retry can fix it; a new gateway_connect tries again.
                self.wanted.clear()
                self.set_state("offline", str(e))
                continue
            except RetryLater as e:
                delay, why = e.delay_s, str(e)
            except (OSError, websocket.WebSocketException, protocol.ProtocolError) as e:
                delay, why = None, f"{type(e).__name__}: {e}"
            except Exception as e:
                # A bug, not the network. Frames are already handled one by one without letting an
                # exception out (_on_frame); this is the last guard: the thread must never end, or
                # the process lives on with the state stuck at "connected" and nothing read.
                log.exception("the socket thread failed: reconnecting")
                delay, why = None, f"internal error: {type(e).__name__}: {e}"
            finally:
                self._on_disconnected()
            if not self.wanted.is_set():
                self.set_state("offline", "disconnected by request")
                continue
            if url != self.url:
                continue  # a new Connect arrived: go straight to the new URL
            self.reconnects += 1
            backoff = self.backoff.next_delay(
                time.monotonic()
            )  # counts the attempt either way
            if delay is None:
                delay = backoff
            self.set_state("reconnecting", why, retry_in_ms=round(delay * 1000))
            self.wake.clear()
            self.wake.wait(delay)

    def _connect_and_read(self, url: str) -> None:
        ws = BufferedWebSocket(skip_utf8_validation=True, enable_multithread=True)
        # Checked against each frame's header before its payload is read: an oversized frame is
        # skipped in bounded chunks, never buffered whole (fastws.py).
        ws.max_message_bytes = self.max_frame_bytes
        ws.on_discard = self._touch
        ws.connect(url, timeout=10, suppress_origin=True)
        self.ws = ws
        self.last_frame = time.monotonic()
        self._handshake(ws)
        ws.settimeout(None)
        self.connected.set()
        self.backoff.connected(
            time.monotonic()
        )  # up for a minute: the next failure starts afresh
        self.set_state("connected")
        # Held while the rejoins and the outbox are queued: the outbox's commands (the user's) then
        # go before the rejoins, and before the list_sessions the app sends as soon as it hears
        # "connected", whichever thread queued first.
        with self.watch.working("socket"), self.sender.hold():
            self._resume_sessions(ws)
            self._flush_outbox()
        while True:
            try:
                # Control frames too: a pong to our ping is a sign of life like any frame.
                opcode, data = ws.recv_data(control_frame=True)
            except OversizedFrame as e:
                self.last_frame = time.monotonic()
                self._bad_frame(f"{e} (skipped; the socket reads on)", e.sample)
                continue
            self.last_frame = time.monotonic()
            if opcode == websocket.ABNF.OPCODE_TEXT:
                with self.watch.working("socket"):
                    self._on_frame(data)
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                return
            elif opcode in (websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_PONG):
                continue  # websocket-client has answered a ping already
            else:
                self._bad_frame("binary frame on the event socket", data)

    def _touch(self) -> None:
        self.last_frame = time.monotonic()

    def _handshake(self, ws: websocket.WebSocket) -> None:
        """As the reference SDK does it: ready on `authenticated`, or, when `welcome` says no
        authentication is needed, at `connected` (an `authenticated` after that fills in the
        identity, _on_frame_locked). The version is checked, `heartbeatIntervalMs` read.

        Each field read here is checked: a wrong type is a reported bad frame with a safe reading,
        never an exception that ends the socket thread."""
        ws.settimeout(10)
        sent_authenticate = False
        ready_by: float | None = (
            None  # once welcome said no auth: the latest moment to be ready
        )
        self.identity = None
        while True:
            if ready_by is not None:
                left = ready_by - time.monotonic()
                if left <= 0:
                    return  # no `connected` (promised by the docs, yet): ready all the same
                ws.settimeout(left)
            try:
                opcode, data = ws.recv_data()
            except websocket.WebSocketTimeoutException:
                if ready_by is not None:
                    return
                raise
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                raise websocket.WebSocketConnectionClosedException(
                    "closed during the handshake"
                )
            if opcode != websocket.ABNF.OPCODE_TEXT:
                self._bad_frame("binary frame on the event socket", data)
                continue
            head = protocol.decode_head(
                data
            )  # not an event at all: ProtocolError, a reconnect
            self.uplink.put_event(
                PipeEvent(
                    data, head.type, head.sessionId, head.seq, None, time.time_ns()
                )
            )
            msg = msgspec.json.decode(data)  # an object: decode_head checked that
            if head.type == "welcome":
                self._check_version(msg.get("protocolVersion"), data)
                requires_auth = msg.get("requiresAuth")
                if not isinstance(requires_auth, bool):
                    self._bad_frame(
                        f"welcome.requiresAuth is not a boolean ({requires_auth!r}): authenticating",
                        data,
                    )
                # Only an explicit false skips it; an authenticate the gateway did not need is harmless.
                if requires_auth is not False:
                    ws.send(
                        protocol.build_client_message(
                            "authenticate", {"token": self.token or ""}
                        )
                    )
                    sent_authenticate = True
                else:
                    ready_by = time.monotonic() + CONNECTED_WAIT_S
            elif head.type == "connected":
                self._on_connected(msg.get("heartbeatIntervalMs"), data)
                if ready_by is not None:
                    return
            elif head.type == "authenticated":
                self._on_authenticated(
                    msg.get("identity"), data, pushed=not sent_authenticate
                )
                return
            elif head.type == "error":
                code, message = msg.get("code"), msg.get("message")
                message = message if isinstance(message, str) else ""
                if code == "AUTH_FAILED":
                    raise AuthFailed(message or "authentication failed")
                if code == "AUTH_RATE_LIMITED":
                    delay = retry_after_s(msg.get("retryAfterMs"), 0.1)
                    if delay is None:
                        delay = RETRY_AFTER_DEFAULT_S
                        self._bad_frame(
                            f"AUTH_RATE_LIMITED without a usable retryAfterMs "
                            f"({msg.get('retryAfterMs')!r}): retrying in {delay:.1f}s",
                            data,
                        )
                    raise RetryLater(delay, f"AUTH_RATE_LIMITED: {message}")
                if not isinstance(code, str):
                    self._bad_frame(
                        f"a handshake error whose code is not a string ({code!r})", data
                    )
                    code = ""
                raise protocol.ProtocolError(
                    code or "HANDSHAKE", message or "handshake failed"
                )

    def _on_connected(self, interval: Any, data: bytes) -> None:
        heartbeat_ms = staleness.heartbeat_ms_of(interval)
        if heartbeat_ms is None:
            self._bad_frame(
                f"connected.heartbeatIntervalMs is not a positive number ({interval!r}): "
                f"taking {staleness.DEFAULT_HEARTBEAT_MS} ms",
                data,
            )
        self.keepalive = staleness.keepalive(
            heartbeat_ms, self.ping_interval_s, self.stale_override_s
        )
        self.traits = msgspec.structs.replace(
            self.traits,
            heartbeatIntervalMs=self.keepalive.heartbeat_ms,
            staleAfterMs=round(self.keepalive.stale_after_s * 1000),
        )

    def _on_authenticated(self, identity: Any, data: bytes, pushed: bool) -> None:
        if identity is not None and not isinstance(identity, dict):
            self._bad_frame(
                f"authenticated.identity is not an object ({type(identity).__name__})",
                data,
            )
            identity = None
        self.identity = identity
        if pushed:
            self.traits = msgspec.structs.replace(
                self.traits, pushesAuthenticated="yes"
            )

    def _check_version(self, version: Any, data: bytes) -> None:
        """v1 works; a newer version gets v1 messages and a warning, since only the gateway can say
        it will not take them (an error or a close then ends the connection as any other would)."""
        ours = protocol.PROTOCOL_VERSION
        self.warnings = [w for w in self.warnings if not w.startswith("The gateway")]
        if (
            isinstance(version, bool)
            or not isinstance(version, (int, float))
            or version != version
        ):
            self._bad_frame(
                f"welcome.protocolVersion is not a number ({version!r})", data
            )
            self.warnings.append(
                f"The gateway did not say which protocol version it speaks; "
                f"this client goes on with version {ours} messages."
            )
            self.traits = msgspec.structs.replace(self.traits, protocolVersion=None)
            return
        if version < ours:
            raise ProtocolVersionMismatch(
                f"gateway speaks protocol v{version:g}, this client speaks {ours}"
            )
        self.traits = msgspec.structs.replace(
            self.traits, protocolVersion=int(min(version, 1 << 31))
        )
        if version >= ours + 1:
            log.warning(
                "the gateway speaks protocol v%g: going on with v%d messages",
                version,
                ours,
            )
            self.warnings.append(
                f"The gateway speaks protocol version {version:g}; this client speaks version "
                f"{ours} and goes on with version {ours} messages."
            )

    def _resume_sessions(self, ws: websocket.WebSocket) -> None:
        with self.lock:
            sessions = dict(self.joined)
        # A copy: the main thread drops a session's entry when it is left.
        for sid in rejoin_order(sessions, dict(self.last_used)):
            last = sessions[sid]
            self.catching_up[sid] = CatchUp()
            # Ours, so an error answering it (SessionNotFound: deleted meanwhile) is not taken for
            # the answer to some later request.
            self._internal_request(ws, sid, "join", "join_session", {"sessionId": sid})
            self._catch_up(ws, sid, 0 if sid in self.replay_all else last)

    def _internal_request(
        self,
        ws: websocket.WebSocket,
        sid: str,
        kind: str,
        type_: str,
        args: dict[str, Any],
    ) -> SendSlot:
        frame = protocol.build_client_message(type_, args)
        with self.lock:
            self.internal_ids -= 1
            self.internal[self.internal_ids] = (sid, kind)
            pending = Pending(
                self.internal_ids, type_, protocol.RESPONSES[type_], frame
            )
            self.pending.append(pending)
        self.sender.send(
            ws,
            frame,
            pending.slot,
            "user" if sid in self.user_sessions else "background",
            sid,
        )
        return pending.slot

    def _used(self, sid: str | None) -> None:
        """The user sent a command for `sid`: the session's own rejoin, if it still waits, goes
        before the command, and its catch-up no longer waits behind the other sessions'."""
        if sid is None:
            return
        if (
            sid in self.joined
        ):  # only joined sessions are rejoined: the others need no place in that order
            self.last_used[sid] = time.monotonic()
        self.user_sessions.add(sid)
        self.sender.pull_forward(sid)

    def _catch_up(self, ws: websocket.WebSocket, sid: str, after: int) -> None:
        """Ask for a session's events after `after`; registered so its answer (or error) is ours.
        A gateway seen not to answer get_events is not asked: the catch-up gives up at once."""
        c = self.catching_up[sid]
        c.after = after
        if self.traits.getEvents == "no":
            self._give_up_catchup(sid, "it does not answer get_events")
            return
        c.page_due = time.monotonic() + CATCHUP_PAGE_WAIT_S
        # Big pages: a long session is caught up in few requests, well inside the rate limit.
        c.page_slot = self._internal_request(
            ws,
            sid,
            "catchup",
            "get_events",
            {"sessionId": sid, "afterSeq": after, "limit": 5000},
        )

    def _internal_answered(
        self, req_id: int, head: protocol.EventHead, data: bytes
    ) -> bool:
        """An answer to one of our own requests; True when it goes no further (an error: ours alone)."""
        sid, kind = self.internal.pop(req_id, (None, ""))
        if sid is None or head.type != "error":
            if kind == "catchup" and head.type == "event_list":
                self.learned(getEvents="yes")
            return False
        err = msgspec.json.decode(data)
        code = err.get("code") if isinstance(err, dict) else None
        if code == SESSION_NOT_FOUND:
            self._session_gone(
                sid,
                "the gateway no longer knows this session (it was deleted, or the gateway "
                "lost it)",
            )
        elif kind == "catchup" and sid in self.catching_up:
            self._catch_up_refused(sid, err, code)
        else:
            log.warning(
                "the gateway refused our %s of session %s: %s",
                kind,
                sid,
                bytes(data[:300]).decode("utf-8", "replace"),
            )
        return True

    def _catch_up_refused(self, sid: str, err: dict[str, Any], code: Any) -> None:
        c = self.catching_up[sid]
        c.page_due = None
        delay = retry_after_s(err.get("retryAfterMs"), 0.2) or RETRY_AFTER_DEFAULT_S
        if (
            code in CATCHUP_TRANSIENT
            and time.monotonic() + delay - c.began < CATCHUP_RETRY_BUDGET_S
        ):
            log.warning(
                "catch-up of session %s refused (%s): retrying in %.1fs",
                sid,
                code,
                delay,
            )

            def retry() -> None:
                ws = self.ws
                if ws is not None and sid in self.catching_up:
                    with self.frame_lock:
                        if self.catching_up.get(sid) is c:
                            self._catch_up(ws, sid, c.after)

            threading.Timer(delay, retry).start()
            return
        if code not in CATCHUP_TRANSIENT:
            self.learned(getEvents="no")
        self._give_up_catchup(sid, f"it refused get_events: {code}")

    def catchups_overdue(self, now: float) -> None:
        """Keepalive thread: a catch-up page not answered in time ends its catch-up."""
        for sid, c in list(self.catching_up.items()):
            if c.page_due is None or now < c.page_due:
                continue
            slot = c.page_slot
            if slot is not None and (
                not slot.order or now < slot.at + CATCHUP_PAGE_WAIT_S
            ):
                continue  # not sent yet, or sent less than the wait ago: not overdue
            with self.frame_lock:
                if (
                    self.catching_up.get(sid) is c
                    and c.page_due is not None
                    and now >= c.page_due
                ):
                    self._abandon_catchup(
                        sid,
                        f"it did not answer get_events within {CATCHUP_PAGE_WAIT_S:.0f} s",
                    )

    def _answered_past_catchups(
        self, answered: Pending, head: protocol.EventHead
    ) -> None:
        """Under the frame lock. Answers come in request order (§9): a request of a session answered
        while that session's catch-up page, asked before it, is not means the page will not be
        answered either, so the catch-up ends now instead of at its deadline (a run_turn right after
        a join, say). Only an answer naming the session counts: one without (a session_list, a pong)
        may answer a request of ours that was never registered, sent before the page."""
        sid = head.sessionId
        c = self.catching_up.get(sid) if sid is not None else None
        if c is None or c.page_due is None or answered.session_id != sid:
            return
        with self.lock:
            skipped = any(
                p.order < answered.order
                and self.internal.get(p.req_id) == (sid, "catchup")
                for p in self.pending
            )
        if skipped:
            self._abandon_catchup(sid, "it answered later requests but not get_events")

    def _abandon_catchup(self, sid: str, why: str) -> None:
        """Under the frame lock: stop waiting for the session's catch-up page."""
        with self.lock:
            stale = [
                p
                for p in self.pending
                if p.req_id <= INTERNAL_IDS
                and self.internal.get(p.req_id) == (sid, "catchup")
            ]
            self.pending = [p for p in self.pending if p not in stale]
            for p in stale:
                del self.internal[p.req_id]
        for p in stale:
            self.sender.settle(p.slot)
        self.abandoned.add(
            sid
        )  # its answer, should it come after all, is not a live event
        self.learned(getEvents="no")
        self._give_up_catchup(sid, why)

    def _give_up_catchup(self, sid: str, why: str) -> None:
        """Under the frame lock. What v1 surely has instead: the snapshot (its lastSeq, when it has
        one, dates the gap at once) and get_history; live events go out now, and the gap is told."""
        c = self.catching_up.pop(sid)
        after = c.after
        self.replay_all.discard(sid)
        log.warning(
            "catch-up of session %s after seq %d ends without its events: %s",
            sid,
            after,
            why,
        )
        earlier = self.gap_after.get(
            sid
        )  # a gap still open from an earlier give-up starts sooner
        self.gap_after[sid] = (
            (min(after, earlier[0]), earlier[1]) if earlier else (after, why)
        )
        if c.gap is not None:
            # Whether the gap held events cannot be known: it counts like an empty refetch, so a gateway
            # that skips seqs and cannot be caught up does not cost a get_history for every seq it skips.
            self._gap_not_filled("its events could not be fetched")
        ws = self.ws
        if ws is not None:
            try:
                self._internal_request(
                    ws, sid, "history", "get_history", {"sessionId": sid}
                )
            except (OSError, websocket.WebSocketException):
                pass
        for ev, head, reply_to in c.held:
            self._deliver(ev, head, reply_to)

    def _gap_not_filled(self, why: str) -> None:
        """A live seq gap was refetched and nothing came to fill it. A few in a row and gaps are no longer
        refetched from this gateway: it is taken to skip seqs."""
        self.empty_gap_refetches += 1
        if (
            self.empty_gap_refetches >= EMPTY_GAP_REFETCHES_MAX
            and self.traits.denseSeqs != "no"
        ):
            log.warning(
                "%d seq gaps in a row were not filled (the last: %s): the gateway is taken to skip seqs, "
                "gaps are no longer refetched",
                self.empty_gap_refetches,
                why,
            )
            self.learned(denseSeqs="no")

    def _gap_ends(self, sid: str, before: int | None) -> None:
        """The first seq known past a given-up catch-up: a gap only if it is not the very next one."""
        after, why = self.gap_after.pop(sid)
        if before is None or before > after + 1:
            self.uplink.put_control(
                CatchupGap(sessionId=sid, afterSeq=after, beforeSeq=before, reason=why)
            )

    def _session_gone(self, sid: str, why: str) -> None:
        """Under the frame lock. Leaves the catch-up and the joined set at once: nothing retries it."""
        with self.lock:
            self.joined.pop(sid, None)
        self.recent.pop(sid, None)
        self.last_used.pop(sid, None)
        self.gap_after.pop(sid, None)
        self.replay_all.discard(sid)
        c = self.catching_up.pop(sid, None)
        for ev, head, reply_to in c.held if c is not None else ():
            self._deliver(ev, head, reply_to)
        log.warning("session %s is gone: %s", sid, why)
        self.uplink.put_control(SessionGone(sessionId=sid, reason=why))

    def _on_disconnected(self) -> None:
        self.connected.clear()
        self._close_socket()
        self.catching_up.clear()
        self.abandoned.clear()
        self.user_sessions.clear()
        with self.lock:
            failed, self.pending = self.pending, []
            self.internal.clear()
            self.outbox_inflight = (
                None  # an unanswered item goes again on the next connection
            )
            self.turn_gate.clear()
        for p in failed:
            self.sender.settle(p.slot)
            if p.req_id < 0:
                continue  # the outbox's and our own: sent again after the reconnect
            self.uplink.put_control(
                CommandFailed(
                    reqId=p.req_id,
                    code="NOT_CONNECTED",
                    message="the connection to the gateway was lost",
                )
            )

    def _close_socket(self) -> None:
        ws, self.ws = self.ws, None
        if ws is not None:
            self.sender.drop(ws)
        hard_close(ws)

    # --- frames ---------------------------------------------------------------------------------------

    def _bad_frame(self, reason: str, data: bytes) -> None:
        self.bad_frames += 1
        sample = bytes(data[:200]).decode("utf-8", "replace")
        log.warning("bad frame from the gateway (%s): %r", reason, sample)
        self.uplink.put_control(
            BadFrame(reason=reason, sample=sample, count=self.bad_frames)
        )

    def _on_frame(self, data: bytes) -> None:
        with self.frame_lock:
            try:
                self._on_frame_guarded(data)
            except Exception as e:
                # The last guard: one frame can never end the socket thread (a reconnect would fetch
                # the same frame again, and again).
                log.exception("could not handle a frame from the gateway")
                self._bad_frame(
                    f"a frame could not be handled ({type(e).__name__}: {e})", data
                )
            after, self.after_frame = self.after_frame, []
        # Work the frame led to that takes the frame lock itself (see __init__).
        for work in after:
            try:
                work()
            except Exception:
                log.exception("work after a gateway frame failed")

    def _on_frame_guarded(self, data: bytes) -> None:
        data = self._within_depth(data)
        if data is None:
            return
        try:
            head = protocol.decode_head(
                data, max_depth=None
            )  # _within_depth checked it
        except protocol.ProtocolError as e:
            fixed = (
                self._without_lone_surrogates(data)
                if e.code == "INVALID_JSON"
                else None
            )
            if fixed is None:
                self._bad_frame(e.message, data)
                return
            data, head = fixed
        self._handed_over = False
        try:
            self._on_frame_locked(data, head)
        except Exception as e:
            # Whatever one frame holds, it must not end the socket thread: the frame is reported,
            # and, a well-formed event, still delivered (the router keeps odd fields).
            log.exception("could not handle a %s frame from the gateway", head.type)
            self._bad_frame(
                f"a {head.type} frame could not be handled ({type(e).__name__}: {e})",
                data,
            )
            if not self._handed_over:
                self._deliver(data, head, None)

    def _within_depth(self, data: bytes) -> bytes | None:
        """A frame nested deeper than protocol.MAX_DEPTH is a bad frame (None), unless it is a page
        of events: its too-deep parts are cut out so its other events still arrive (each cut event
        is skipped and reported, _deliver_catchup). A request it answers fails at once (_too_deep_answer).
        The common frame costs a count of its brackets."""
        if protocol.too_deep(data):
            page, _ = protocol.prune_deep(
                data, protocol.MAX_DEPTH + 2
            )  # an event_list's events sit 2 deep
            try:
                head = protocol.decode_head(page, max_depth=protocol.MAX_DEPTH + 2)
            except protocol.ProtocolError:
                head = None
            if head is None or head.type != "event_list":
                self._bad_frame(f"nested deeper than {protocol.MAX_DEPTH} levels", data)
                if head is not None:
                    self._too_deep_answer(head, page)
                return None
            data = page
        return data

    def _too_deep_answer(self, head: protocol.EventHead, pruned: bytes) -> None:
        """Under the frame lock. A frame dropped for its depth may be the answer to a request: that
        request fails now, instead of waiting out request_timeout_s for an answer that has come."""
        answered = self._correlate(head, pruned)
        if answered is None:
            return
        if self.catching_up:
            self._answered_past_catchups(answered, head)
        req_id = answered.req_id
        if req_id <= INTERNAL_IDS:
            self._internal_answered(
                req_id, head, pruned
            )  # an error is read as any other (a refused catch-up)
        elif OUTBOX_IDS < req_id < 0:
            self._outbox_answered(
                req_id, head, pruned
            )  # answered all the same: the item leaves the outbox
        elif req_id > 0:
            self.uplink.put_control(
                CommandFailed(
                    reqId=req_id,
                    code="BAD_ANSWER",
                    message=f"the gateway's answer is nested deeper than {protocol.MAX_DEPTH} levels: "
                    f"dim-desktop cannot read it",
                )
            )

    def _without_lone_surrogates(
        self, data: bytes
    ) -> tuple[bytes, protocol.EventHead] | None:
        """A frame msgspec refused as JSON: if lone surrogate escapes (no character, though valid
        JSON syntax) are why, they become U+FFFD, counted and reported, and the rest is kept."""
        fixed, n = protocol.replace_lone_surrogates(data)
        if not n:
            return None
        try:
            head = protocol.decode_head(
                fixed, max_depth=None
            )  # _within_depth checked it
        except protocol.ProtocolError:
            return None
        self.replaced_chars += n
        self._bad_frame(
            f"{n} lone surrogate escape(s) replaced with U+FFFD, the rest of the text kept "
            f"({self.replaced_chars} so far)",
            data,
        )
        return fixed, head

    def _on_frame_locked(self, data: bytes, head: protocol.EventHead) -> None:
        answered = self._correlate(head, data)
        if answered is not None and self.catching_up:
            self._answered_past_catchups(answered, head)
        if (
            answered is not None
            and head.type == "error"
            and self._try_next_form(answered, data)
        ):
            return  # refused in our form: sent again in the next one, and its answer is what counts
        reply_to = answered.req_id if answered is not None else None
        if (
            answered is not None
            and answered.type in ("run_turn", "steer", "answer_question")
            and head.type != "error"
        ):
            self.dialect.answered(answered.type, answered.form)
            if (
                head.type == "turn_started"
                and answered.client_turn_id is not None
                and _target.decode(data).clientTurnId is None
            ):
                self.learned(clientTurnIdEcho="no")
            elif head.type == "turn_started" and answered.client_turn_id is not None:
                self.learned(clientTurnIdEcho="yes")
        if reply_to is not None and reply_to <= INTERNAL_IDS:
            if self._internal_answered(reply_to, head, data):
                return
            reply_to = None
        if reply_to is not None and OUTBOX_IDS < reply_to < 0:
            self._outbox_answered(reply_to, head, data)
            reply_to = None
        elif head.type in ("turn_complete", "turn_error") and self.turn_gate:
            self._turn_ended(head)
        sid = head.sessionId
        if head.type == "pong":
            self.pong_probe_at = None
            self.learned(pong="yes")
        elif head.type == "authenticated":
            # After a handshake that was ready without it (welcome said no auth is needed).
            self._on_authenticated(
                msgspec.json.decode(data).get("identity"), data, pushed=True
            )
            self.set_state(self.state)
        elif head.type == "state_snapshot" and sid in self.gap_after:
            last = _snapshot_last_seq(data)
            if last is not None and last > self.gap_after[sid][0]:
                self._gap_ends(sid, last + 1)
        if head.type == "event_list" and sid in self.catching_up:
            self.catching_up[sid].page_due = None
            self._deliver_catchup(sid, data, reply_to)
            return
        if head.type == "event_list" and reply_to is None and sid in self.abandoned:
            # A catch-up page we stopped waiting for: its events are in the gap already told.
            self.abandoned.discard(sid)
            self.learned(
                getEvents="yes"
            )  # slow, not absent: the next catch-up asks again
            log.warning(
                "a late catch-up page of session %s arrived after the catch-up gave up: dropped",
                sid,
            )
            return
        if sid is not None and head.seq is not None and sid in self.catching_up:
            # Live events, answers among them, wait until the gap is filled: delivering a newer seq
            # first would make the stores refuse the older ones as duplicates.
            self.catching_up[sid].held.append((data, head, reply_to))
            self._handed_over = True
            return
        if (
            sid is not None
            and head.seq is not None
            and reply_to is None
            and self.ws is not None
            and sid in self.joined
            and self.joined[sid] > 0
            and seq_gap(self.joined[sid], head.seq, self.traits.denseSeqs) is not None
        ):
            self._refetch_gap(self.ws, sid, data, head)
            return
        self._deliver(data, head, reply_to)

    def _refetch_gap(
        self, ws: websocket.WebSocket, sid: str, data: bytes, head: protocol.EventHead
    ) -> None:
        """Under the frame lock. A live event past the next seq: the ones between are fetched first
        (the catch-up, with its fallbacks), this one waits behind them like any held live event."""
        last = self.joined[sid]
        log.warning(
            "session %s: seq %s follows seq %d: fetching the events between",
            sid,
            head.seq,
            last,
        )
        c = self.catching_up[sid] = CatchUp()
        c.gap = (last, head.seq)
        c.held.append((data, head, None))
        self._handed_over = True
        self._catch_up(ws, sid, last)

    def _try_next_form(self, p: Pending, data: bytes) -> bool:
        """An error answering `p`: when it says the form was not understood and another form can say
        the request, send that instead (same request id, same place in the outbox)."""
        code = _ErrorCode.decode(data).code
        if not isinstance(code, str):
            return False
        nxt = self.dialect.refused(p.type, p.frame, p.form, code)
        ws = self.ws
        if nxt is None or ws is None:
            return False
        form, frame = nxt
        log.info(
            "the gateway did not take %s in our form (%s): sending it again in form %r",
            p.type,
            code,
            self.dialect.describe().get(p.type, form),
        )
        again = Pending(p.req_id, p.type, p.expect, frame, form)
        with self.lock:
            self.pending.append(again)
        self._handed_over = True
        try:
            self.sender.send(ws, frame, again.slot, p.slot.lane, p.session_id)
        except (OSError, websocket.WebSocketException):
            pass  # the connection is going: its loss fails or requeues the request as usual
        return True

    def _deliver(
        self,
        data: bytes,
        head: protocol.EventHead,
        reply_to: int | None,
        replay: bool = False,
    ) -> None:
        self._handed_over = True
        sid, seq = head.sessionId, head.seq
        if sid is not None and seq is not None and sid in self.joined:
            if seq <= self.joined[sid] and reply_to is None and not replay:
                self._check_duplicate(sid, seq, data)
                return  # already delivered (before a reconnect, or the gateway sent it twice)
            self._remember(sid, seq, data)
            if sid in self.gap_after:
                self._gap_ends(sid, seq)
            self.joined[sid] = max(seq, self.joined[sid])
        self.uplink.put_event(
            PipeEvent(data, head.type, sid, seq, reply_to, time.time_ns())
        )

    def _remember(self, sid: str, seq: int, data: bytes) -> None:
        recent = self.recent.get(sid)
        if recent is None:
            recent = self.recent[sid] = RecentSeqs()
        recent.add(seq, data)

    def _check_duplicate(self, sid: str, seq: int, data: bytes) -> None:
        """A seq delivered already: the first copy stands; one whose content differs is reported."""
        recent = self.recent.get(sid)
        if recent is not None and recent.conflicts(seq, data):
            self._bad_frame(
                f"session {sid}: seq {seq} came again with other content (the first one is kept)",
                data,
            )

    def _deliver_catchup(self, sid: str, data: bytes, reply_to: int | None) -> None:
        self._handed_over = True
        if reply_to is not None:
            # The user asked for these events: hand the list over as it is.
            self.uplink.put_event(
                PipeEvent(data, "event_list", sid, None, reply_to, time.time_ns())
            )
            return
        events, more = self._read_page(data)
        replay = sid in self.replay_all
        last = None
        c = self.catching_up[sid]
        for ev in events:
            try:
                head = protocol.decode_head(ev)
            except protocol.ProtocolError as e:
                # One unreadable stored event: reported, and the rest of the page goes on. Failing the
                # page instead would fetch it again, and again, for ever.
                self._bad_frame(
                    f"an event in a catch-up page of session {sid}: {e.message}", ev
                )
                continue
            if (
                protocol.TOO_DEEP_MARK in ev
            ):  # cut out of the page (_within_depth): skipped the same way
                self._bad_frame(
                    f"an event in a catch-up page of session {sid}: nested deeper than "
                    f"{protocol.MAX_DEPTH} levels",
                    ev,
                )
                last = head.seq if head.seq is not None else last
                continue
            last = head.seq if head.seq is not None else last
            if (
                c.gap is not None
                and head.seq is not None
                and c.gap[0] < head.seq < c.gap[1]
            ):
                c.gap = None  # it had missing events: filled
                self.empty_gap_refetches = (
                    0  # "skips seqs" needs empty refetches in a row
                )
                self.learned(denseSeqs="yes")
            self._deliver(ev, head, None, replay)
        if more and self.ws is not None and last is not None:
            if last > c.after:
                self._catch_up(self.ws, sid, last)
                return
            # "More" but nothing past what we asked after: asking again would get the same page.
            self._bad_frame(
                f"a catch-up page of session {sid} says hasMore but brings nothing after seq "
                f"{c.after}: the catch-up ends here",
                data,
            )
        if c.gap is not None:
            self._gap_not_filled("nothing was missing")  # this gateway skips seqs
        # Done (or a page we cannot page on from): live events held back go out now, in order.
        del self.catching_up[sid]
        self.replay_all.discard(sid)
        for ev, head, reply_to in c.held:
            self._deliver(ev, head, reply_to)

    def _read_page(self, data: bytes) -> tuple[list[bytes], bool]:
        """A catch-up page's events (each as sent) and whether more follow; anything unreadable is
        reported and read as the last page, so a bad page ends the catch-up instead of repeating it."""
        try:
            page = _event_list.decode(data)
        except msgspec.ValidationError as e:
            self._bad_frame(
                f"a catch-up page that cannot be read ({e}): the catch-up ends here",
                data,
            )
            return [], False
        events = [bytes(raw) for raw in page.events]
        more = page.hasMore
        if not isinstance(more, bool):
            self._bad_frame(
                f"event_list.hasMore is not a boolean ({more!r}): taken as the last page",
                data,
            )
            more = False
        return events, more

    def _correlate(self, head: protocol.EventHead, data: bytes) -> Pending | None:
        if not self.pending:
            return None
        type_ = head.type
        client_turn_id = self._client_turn_id(data) if type_ == "turn_started" else None
        sid = head.sessionId
        with self.lock:
            # Answers come in the order the gateway read the requests: the order they went out,
            # which the send lanes make differ from the order they were queued. One not sent yet
            # cannot be answered. One pass: this runs for every frame while anything is pending.
            p = min(
                (
                    p
                    for p in self.pending
                    if p.slot.order and answers(p, type_, sid, client_turn_id)
                ),
                key=lambda p: p.slot.order,
                default=None,
            )
            if p is not None:
                self.pending.remove(p)
                self.sender.settle(p.slot)
        return p

    def _client_turn_id(self, data: bytes) -> str | None:
        """The turn_started's clientTurnId; None when it has none. The reference's v1 has no client
        turn id ([NOT FOUND]): a gateway that does not echo ours answers our oldest run_turn of the
        session, as every other answer is matched, instead of leaving it to time out."""
        value = _target.decode(data).clientTurnId
        if value is not None and not isinstance(value, str):
            # Unreadable, so it cannot prove the turn is ours: not taken as our run_turn's answer;
            # the event itself is delivered all the same.
            self._bad_frame(
                f"turn_started.clientTurnId is not a string ({value!r})", data
            )
            return UNREADABLE
        return value

    # --- keepalive ------------------------------------------------------------------------------------

    def _keep_alive(self, now: float) -> None:
        """Silence past the window (staleness.py) ends the socket. Pings: a WebSocket ping frame,
        which any RFC 6455 server answers, and the protocol's `ping` while `pong` may come (the docs
        name no answer to it: unanswered for half the window, it is not sent again to this gateway)."""
        ka = self.keepalive
        if now - self.last_frame > ka.stale_after_s:
            log.warning(
                "no frame from the gateway for %.0fs: reconnecting",
                now - self.last_frame,
            )
            self._close_socket()
            return
        if (
            self.pong_probe_at is not None
            and now - self.pong_probe_at > ka.stale_after_s / 2
        ):
            self.pong_probe_at = None
            self.learned(pong="no")
        if now - self.last_ping < ka.ping_every_s:
            return
        self.last_ping = now
        ws = self.ws
        if ws is None:
            return
        try:
            ws.ping()
            if self.traits.pong != "no":
                if self.pong_probe_at is None and self.traits.pong == "unknown":
                    self.pong_probe_at = now
                self.sender.send(ws, protocol.build_client_message("ping", {}))
        except (OSError, websocket.WebSocketException):
            pass

    def run_keepalive(self) -> None:
        while True:
            time.sleep(0.25)
            with self.watch.working("keepalive"):
                self._keepalive_round()

    def _keepalive_round(self) -> None:
        now = time.monotonic()
        if self.connected.is_set():
            self._keep_alive(now)
        if self.catching_up:
            self.catchups_overdue(now)
        if self.pending:
            with self.lock:
                # A request's wait starts when it goes out (slot.at); one the rate limit still holds in
                # the send queue (behind other commands) has not been waiting for the gateway.
                expired = [
                    p
                    for p in self.pending
                    if p.slot.order and now - p.slot.at > self.request_timeout_s
                ]
                self.pending = [p for p in self.pending if p not in expired]
            for p in expired:
                self.sender.settle(p.slot)
                if p.req_id < 0:
                    continue  # an outbox item stays queued and goes again after a reconnect
                self.uplink.put_control(
                    CommandFailed(
                        reqId=p.req_id,
                        code="TIMEOUT",
                        message=f"the gateway did not answer {p.type} within {self.request_timeout_s:.0f}s",
                    )
                )


def main(pipe: Connection, options: dict[str, Any]) -> None:
    """Entry point of the connection process (multiprocessing spawn target)."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s connection[%(process)d] %(levelname)s %(message)s",
    )
    # The supervisor decides when this process ends: by Shutdown down the pipe, by closing the pipe
    # (the supervisor is gone, kill -9 included), or by SIGKILL. Ctrl-C (SIGINT) reaches the whole
    # process group, and SIGTERM may too (`kill -TERM -PGID`, a session or service manager ending
    # every process of the app): dying of it here, before the supervisor has even seen the app's
    # own signal, would look like a crash and be answered by a restart during the stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    spill_dir = options.get("spill_dir")
    if spill_dir and spill_dir.is_dir():
        remove_stale_spills(spill_dir)
    uplink = Uplink(
        pipe,
        memory_limit=options.get("uplink_memory_limit", 64 << 20),
        spill_path=spill_file(spill_dir) if spill_dir else None,
    )
    outbox, outbox_path = None, options.get("outbox_path")
    if outbox_path:
        try:
            outbox = Outbox(outbox_path)
        except sqlite3.Error as e:
            # A full disk must not keep the connection from starting (and restarting for ever): the
            # outbox is opened again when a command needs it, and refused clearly until then.
            log.error("could not open the outbox %s: %s", outbox_path, e)
    # The uplink thread is not watched: waiting on a supervisor that does not drain is its job.
    watch = ThreadWatch(
        options.get("hung_after_s", HUNG_AFTER_S),
        {"sender": options.get("hung_after_send_s", HUNG_AFTER_SEND_S)},
    )
    conn = GatewayConnection(
        uplink,
        options["ping_interval_s"],
        options["stale_after_s"],
        options["request_timeout_s"],
        options.get("resume"),
        outbox,
        options.get("send_rate_limit", 60),
        options.get("send_rate_window_s", 10.0),
        watch,
        outbox_path if outbox is None else None,
    )
    conn.outbox_changed()
    for target in (
        conn.run_socket,
        conn.run_keepalive,
        uplink.run,
        conn.sender.run,
        watch.run,
    ):
        threading.Thread(target=target, daemon=True, name=target.__name__).start()
    while True:
        try:
            data = pipe.recv_bytes()
        except (EOFError, OSError):
            break  # the supervisor is gone: nothing is left to deliver to
        try:
            msg = decode_down(data)
        except msgspec.DecodeError as e:
            log.error("undecodable command from the supervisor: %s", e)
            continue
        try:
            with watch.working("commands"):
                going_on = conn.on_command(msg)
        except Exception as e:
            # One command must not end the process (and with it every other command and the socket).
            log.exception("could not handle a %s command", type(msg).__name__)
            req_id = getattr(msg, "reqId", None)
            if isinstance(req_id, int):
                conn.uplink.put_control(
                    CommandFailed(
                        reqId=req_id,
                        code="INTERNAL",
                        message=f"the connection could not handle it: {e}",
                    )
                )
            going_on = True
        if not going_on:
            break
    uplink.close()
