"""The gateway connection: one socket at a time, its frames, the sessions joined on it
and the requests awaiting answers. It composes the parts of this package: the paced
sender (sender.py), the joined sessions (sessions.py), the handshake (handshake.py), the
frames' intake (intake.py), the matching of answers (correlation.py), the catch-up
decisions (catchup.py), the outbox pump (outbox_pump.py) and the keepalive verdicts
(keepalive.py)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import websocket

from dim_actors.connection import staleness
from dim_actors.connection.backoff import Backoff
from dim_actors.connection.dialect import Dialect
from dim_actors.connection.fastws import BufferedWebSocket, OversizedFrame
from dim_actors.connection.outbox import Outbox
from dim_actors.connection.process.catchup import (
    CATCHUP_PAGE_WAIT_S,
    CATCHUP_TRANSIENT,
    CatchUp,
    Deliver,
    GapFilled,
    Skip,
    after_page,
    internal_outcome,
    page_overdue,
    page_request,
    page_steps,
    retry_refused,
    tail_start,
)
from dim_actors.connection.process.correlation import (
    InternalKind,
    Pending,
    Requests,
)
from dim_actors.connection.process.handshake import (
    VERSION_WARNING,
    AuthFailed,
    Handshake,
    ProtocolVersionMismatch,
    RetryLater,
    identity_of,
)
from dim_actors.connection.process.intake import Refused, admit
from dim_actors.connection.process.keepalive import ROUND_S, keepalive_round
from dim_actors.connection.process.outbox_pump import OutboxPump
from dim_actors.connection.process.reading import (
    RETRY_AFTER_DEFAULT_S,
    UNREADABLE,
    error_code,
    read_page,
    retry_after_s,
    snapshot_last_seq,
    target,
)
from dim_actors.connection.process.sender import Sender, SendSlot
from dim_actors.connection.process.seqs import (
    EMPTY_GAP_REFETCHES_MAX,
    seq_gap,
)
from dim_actors.connection.process.sessions import Sessions
from dim_actors.connection.process.watch import OwnedLock, ThreadWatch
from dim_actors.connection.replication import ReplicationLinks  # sync: docs/sync.md
from dim_actors.connection.sendqueue import Lane, rejoin_order
from dim_actors.connection.sockets import hard_close
from dim_actors.connection.uplink import Uplink
from dim_actors.kernel.requests import origin_of, outbox_item_id
from dim_actors.messages import (
    REPLICATION_DOWN,
    BadFrame,
    CancelQueued,
    CommandFailed,
    Connect,
    ConnectionState,
    Disconnect,
    GatewayTraits,
    LinkState,
    PipeEvent,
    Resync,
    ResyncStarted,
    SendFrame,
    SessionGone,
    Shutdown,
)
from dim_actors.wire import protocol
from dim_actors.wire.limits import MAX_SOCKET_FRAME

log = logging.getLogger("dim.connection")


# Whose requests are told when they fail (CommandFailed): the page's and the router's
# (its fetch of older turns) wait for an answer, and nothing sends them again. An outbox
# item stays queued and goes again after a reconnect; the connection's own are redone by
# the rejoin and the catch-up.
TOLD_WHEN_FAILED: frozenset[str] = frozenset({"page", "router"})


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
        # sessions whose unanswered catch-up page we stopped waiting for
        self.abandoned: set[str] = set()
        # First joins whose catch-up has not brought a page yet: cut off by a reconnect,
        # each is a first join again (its start from the snapshot), not one from seq 0
        self.first_pending: set[str] = set()
        self.dialect = Dialect()
        self.traits = GatewayTraits()
        self.warnings: list[str] = []
        self.ping_interval_s = ping_interval_s
        # 0: derived from the gateway's heartbeatIntervalMs
        self.stale_override_s = stale_after_s
        self.keepalive = staleness.keepalive(None, ping_interval_s, stale_after_s)
        # when our first unanswered `ping` message went
        self.pong_probe_at: float | None = None
        self.request_timeout_s = request_timeout_s
        self.url: str | None = None
        self.token: str | None = None
        self.ws: websocket.WebSocket | None = None
        self.connected = threading.Event()
        self.wanted = threading.Event()  # set while the user wants a connection
        self.wake = threading.Event()
        # Guards the requests in flight, the joined sessions and the outbox (the main,
        # socket and keepalive threads share them).
        self.lock = threading.Lock()
        self.outbox = OutboxPump(uplink, self.lock, outbox, outbox_path)
        self.requests = Requests()  # under self.lock
        self.sessions = Sessions(
            uplink, self.lock, self.sender, self._bad_frame, resume
        )
        self.catching_up: dict[str, CatchUp] = {}
        # Held while one frame is handled (socket thread), and by whatever must not
        # interleave with that (a join and its catch-up, a resync, a catch-up's
        # deadline). Not reentrant: work a frame leads to that takes it itself (sending
        # the next outbox item may join its session) is not done under it but queued in
        # `after_frame` and run once the frame is handled.
        self.frame_lock = OwnedLock()
        self.after_frame: list[Callable[[], None]] = []
        self.replaced_chars = 0  # lone surrogates replaced with U+FFFD
        # gap refetches in a row that filled nothing (a gateway skipping seqs)
        self.empty_gap_refetches = 0
        self.reconnects = 0
        self.backoff = Backoff()
        self.last_frame = time.monotonic()
        self.last_ping = time.monotonic()
        self.bad_frames = 0
        self.max_frame_bytes = MAX_SOCKET_FRAME
        self.identity: dict[str, Any] | None = None
        self.state: LinkState = "offline"
        self.replication = ReplicationLinks(uplink, lambda: (self.url, self.token))

    @property
    def joined(self) -> dict[str, int]:
        """The sessions joined and the last seq delivered of each (Sessions)."""
        return self.sessions.joined

    @property
    def last_used(self) -> dict[str, float]:
        return self.sessions.last_used

    # --- state ------------------------------------------------------------------------

    def set_state(
        self, state: LinkState, detail: str = "", retry_in_ms: int | None = None
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
        """What the gateway was seen to do; published with the state when it changes
        anything."""
        new = msgspec.structs.replace(self.traits, **traits)
        if new != self.traits:
            self.traits = new
            if self.state == "connected":
                self.set_state("connected")

    # --- commands from the supervisor -------------------------------------------------

    def on_command(self, msg: Any) -> bool:
        """One command from the supervisor; False when the process is to end."""
        match msg:
            case _ if isinstance(msg, REPLICATION_DOWN):
                self.replication.on_command(msg)
            case Connect():
                self._connect(msg)
            case Disconnect():
                self.wanted.clear()
                self._close_socket()
                self.wake.set()
            case SendFrame():
                self._send_request(msg)
            case Resync():
                self._resync()
            case CancelQueued():
                self.outbox.cancel(msg)
            case Shutdown():
                self.replication.close()
                self.wanted.clear()
                self._close_socket()
                return False
        return True

    def _connect(self, msg: Connect) -> None:
        self.url, self.token = msg.url, msg.token
        self.replication.gateway_changed()
        # What was learned of the last gateway holds for it only.
        self.dialect.reset()
        self.traits, self.warnings = GatewayTraits(), []
        self.empty_gap_refetches = 0
        # asked for now: the first retry of this connection waits ~0.5 s at most
        self.backoff.reset()
        self.wanted.set()
        self._close_socket()
        self.wake.set()

    def _resync(self) -> None:
        # Under the frame lock, so no live event slips between the marker and the
        # replay.
        with self.frame_lock:
            self.sessions.replay_everything()
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

    # --- the outbox -------------------------------------------------------------------

    def _join(
        self,
        ws: websocket.WebSocket,
        sid: str,
        frame: bytes | None = None,
        slot: SendSlot | None = None,
    ) -> None:
        """Join a session and fetch what it already holds, so the stores see its history
        once; live events wait behind that catch-up (under the frame lock)."""
        with self.frame_lock:
            self.sessions.join(sid)
            self.first_pending.add(sid)
            # Where the catch-up starts comes with the join's answer (_tail_known).
            c = self.catching_up[sid] = CatchUp(awaiting=True)
            c.page_due, c.page_slot = time.monotonic() + CATCHUP_PAGE_WAIT_S, slot
            self._used(sid)
            self.sender.send(
                ws,
                frame
                or protocol.build_client_message("join_session", {"sessionId": sid}),
                slot,
                session=sid,
            )

    def _tail_known(self, sid: str, last_seq: int | None) -> None:
        """Under the frame lock. A first join was answered (`last_seq`: its snapshot's
        lastSeq; None: unknown, or the join was refused or not answered in time): its
        catch-up asks for the newest events only (catchup.tail_start)."""
        c = self.catching_up.get(sid)
        ws = self.ws
        if c is None or not c.awaiting or ws is None:
            return
        c.awaiting = False
        try:
            self._catch_up(ws, sid, tail_start(last_seq))
        except (OSError, websocket.WebSocketException):
            pass  # the reconnect that follows rejoins and catches up instead

    def _flush_outbox(self) -> None:
        """Send the next outbox item if nothing is in flight; it leaves the outbox once
        answered.

        It may join the item's session, which takes the frame lock: asked for while this
        thread handles a frame (an answer to the last item, the end of a turn), it runs
        after that frame."""
        if self.frame_lock.held_here():
            if self._flush_outbox not in self.after_frame:
                self.after_frame.append(self._flush_outbox)
            return
        ws = self.ws
        if ws is None or not self.connected.is_set():
            return
        # items queued before a full disk kept it from opening go now
        self.outbox.open()
        with self.lock:
            p = self.outbox.next_item(self.dialect)
            if p is None:
                return
            self.requests.add(p)
        try:
            if p.session_id is not None and p.session_id not in self.sessions.joined:
                # so the queued command's outcome reaches the stores
                self._join(ws, p.session_id)
            self._used(p.session_id)
            self.sender.send(ws, p.frame, p.slot, session=p.session_id)
        except (OSError, websocket.WebSocketException):
            # the reconnect sends it again (a run_turn carries its clientTurnId: no
            # double run)
            return
        self.outbox.changed()

    def _outbox_answered(
        self, req_id: int, head: protocol.EventHead, data: bytes
    ) -> None:
        code = error_code(data) if head.type == "error" else ""
        if not isinstance(code, str):
            # Unreadable, so not TurnInProgress: the item is refused like any other
            # error, not retried (retrying an answer we cannot read could loop forever).
            # The error event still reaches the page.
            self._bad_frame(
                f"an error answering a queued command has a code that is not a string ({code!r})",
                data,
            )
        self.outbox.answered(outbox_item_id(req_id), head, code, data)
        self._flush_outbox()

    def _send_request(self, msg: SendFrame) -> None:
        ws = self.ws
        queue_it = self.outbox.takes(msg.type)
        waiting = queue_it and self.outbox.waiting()
        if queue_it and (ws is None or not self.connected.is_set() or waiting):
            # Offline, or earlier commands still wait: join the queue so order is kept.
            self.outbox.queue(msg)
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
        sid = target(msg.frame).sessionId
        first_join = (
            msg.type == "join_session"
            and sid is not None
            and sid not in self.sessions.joined
        )
        if msg.type == "leave_session":
            self.sessions.left(sid)
            self.first_pending.discard(sid or "")
        form, frame = self.dialect.first(msg.type, msg.frame)
        pending = Pending(msg.reqId, msg.type, frozenset(msg.expect), frame, form)
        with self.lock:
            self.requests.add(pending)
        # The page's requests are the user's; the router's own (its list_sessions on
        # connecting) are bookkeeping.
        lane: Lane = "user" if origin_of(msg.reqId) == "page" else "background"
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
                self.requests.drop(msg.reqId)
            self.uplink.put_control(
                CommandFailed(
                    reqId=msg.reqId, code="NOT_CONNECTED", message=f"send failed: {e}"
                )
            )

    # --- the socket thread ------------------------------------------------------------

    def run_socket(self) -> None:
        while True:
            self.wanted.wait()
            url = self.url
            self.set_state("connecting")
            try:
                self._connect_and_read(url or "")
                delay = None
                why = "the gateway closed the connection"
            except AuthFailed as e:
                self.wanted.clear()
                self.set_state("auth_failed", str(e))
                continue
            except ProtocolVersionMismatch as e:
                # Like AUTH_FAILED: no retry can fix it; a new gateway_connect tries
                # again.
                self.wanted.clear()
                self.set_state("offline", str(e))
                continue
            except RetryLater as e:
                delay, why = e.delay_s, str(e)
            except (OSError, websocket.WebSocketException, protocol.ProtocolError) as e:
                delay, why = None, f"{type(e).__name__}: {e}"
            except Exception as e:
                # A bug, not the network. Frames are already handled one by one without
                # letting an exception out (_on_frame); this is the last guard: the
                # thread must never end, or the process lives on with the state stuck at
                # "connected" and nothing read.
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
            # counts the attempt either way
            backoff = self.backoff.next_delay(time.monotonic())
            if delay is None:
                delay = backoff
            self.set_state("reconnecting", why, retry_in_ms=round(delay * 1000))
            self.wake.clear()
            self.wake.wait(delay)

    def _connect_and_read(self, url: str) -> None:
        ws = BufferedWebSocket(skip_utf8_validation=True, enable_multithread=True)
        # Checked against each frame's header before its payload is read: an oversized
        # frame is skipped in bounded chunks, never buffered whole (fastws.py).
        ws.max_message_bytes = self.max_frame_bytes
        ws.on_discard = self._touch
        ws.connect(url, timeout=10, suppress_origin=True)
        self.ws = ws
        self.last_frame = time.monotonic()
        self.identity = None
        handshake = Handshake(
            self.token,
            self.ping_interval_s,
            self.stale_override_s,
            self._bad_frame,
            self.uplink.put_event,
        )
        try:
            handshake.run(ws)
        finally:
            self._learned_in(handshake)
        ws.settimeout(None)
        self.connected.set()
        # up for a minute: the next failure starts afresh
        self.backoff.connected(time.monotonic())
        self.set_state("connected")
        # Held while the rejoins and the outbox are queued: the outbox's commands (the
        # user's) then go before the rejoins, and before the list_sessions the app sends
        # as soon as it hears "connected", whichever thread queued first.
        with self.watch.working("socket"), self.sender.hold():
            self._resume_sessions(ws)
            self._flush_outbox()
        while True:
            try:
                # Control frames too: a pong to our ping is a sign of life like any
                # frame.
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

    def _learned_in(self, handshake: Handshake) -> None:
        """What the handshake read, kept however it ended (auth_failed shows the version
        warning)."""
        self.identity = handshake.identity
        if handshake.keepalive is not None:
            self.keepalive = handshake.keepalive
        if handshake.traits:
            self.traits = msgspec.structs.replace(self.traits, **handshake.traits)
        if handshake.version_warnings is not None:
            self.warnings = [
                w for w in self.warnings if not w.startswith(VERSION_WARNING)
            ] + handshake.version_warnings

    def _resume_sessions(self, ws: websocket.WebSocket) -> None:
        # A copy: the main thread drops a session's entry when it is left.
        sessions = self.sessions.to_rejoin()
        for sid in rejoin_order(sessions, dict(self.sessions.last_used)):
            last = sessions[sid]
            replay = sid in self.sessions.replay_all
            # Cut off before its first catch-up page: a first join still, its start
            # taken from the snapshot.
            first = sid in self.first_pending and not replay
            c = self.catching_up[sid] = CatchUp(awaiting=first)
            # Ours, so an error answering it (SessionNotFound: deleted meanwhile) is not
            # taken for the answer to some later request.
            slot = self._internal_request(
                ws, sid, "join", "join_session", {"sessionId": sid}
            )
            if first:
                c.page_due, c.page_slot = time.monotonic() + CATCHUP_PAGE_WAIT_S, slot
                continue
            # A restarted router's stores are empty: they get the newest events again.
            self._catch_up(ws, sid, tail_start(last) if replay else last)

    def _internal_request(
        self,
        ws: websocket.WebSocket,
        sid: str,
        kind: InternalKind,
        type_: str,
        args: dict[str, Any],
    ) -> SendSlot:
        frame = protocol.build_client_message(type_, args)
        with self.lock:
            pending = self.requests.add_internal(
                sid, kind, type_, frame, protocol.RESPONSES[type_]
            )
        self.sender.send(
            ws,
            frame,
            pending.slot,
            "user" if sid in self.sessions.user_sessions else "background",
            sid,
        )
        return pending.slot

    def _used(self, sid: str | None) -> None:
        self.sessions.used(sid)

    def _catch_up(self, ws: websocket.WebSocket, sid: str, after: int) -> None:
        """Ask for a session's events after `after`; registered so its answer (or error)
        is ours. A gateway seen not to answer get_events is not asked: the catch-up
        gives up at once."""
        c = self.catching_up[sid]
        c.after = after
        if self.traits.getEvents == "no":
            self._give_up_catchup(sid, "it does not answer get_events")
            return
        c.page_due = time.monotonic() + CATCHUP_PAGE_WAIT_S
        c.page_slot = self._internal_request(
            ws, sid, "catchup", "get_events", page_request(sid, after)
        )

    def _internal_answered(
        self, req_id: int, head: protocol.EventHead, data: bytes
    ) -> bool:
        """An answer to one of our own requests; True when it goes no further (an error:
        ours alone)."""
        sid, kind = self.requests.internal.pop(req_id, ("", None))
        err = msgspec.json.decode(data) if head.type == "error" else None
        code = err.get("code") if isinstance(err, dict) else None
        outcome = internal_outcome(kind, head.type, code, sid in self.catching_up)
        if outcome == "answered":
            if kind == "catchup" and head.type == "event_list":
                self.learned(getEvents="yes")
            return False
        if outcome == "session_gone":
            self._session_gone(
                sid,
                "the gateway no longer knows this session (it was deleted, or the gateway "
                "lost it)",
            )
        elif outcome == "catchup_refused" and isinstance(err, dict):
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
        if retry_refused(code, delay, c.began, time.monotonic()):
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
            if not page_overdue(c, now):
                continue
            with self.frame_lock:
                if self.catching_up.get(sid) is c and c.awaiting:
                    # the join unanswered: its catch-up starts at the first event
                    self._tail_known(sid, None)
                    continue
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
        """Under the frame lock. Answers come in request order (§9): a request of a
        session answered while that session's catch-up page, asked before it, is not
        means the page will not be answered either, so the catch-up ends now instead of
        at its deadline (a run_turn right after a join, say). Only an answer naming the
        session counts: one without (a session_list, a pong) may answer a request of
        ours that was never registered, sent before the page."""
        sid = head.sessionId
        c = self.catching_up.get(sid) if sid is not None else None
        if sid is None or c is None or c.page_due is None or answered.session_id != sid:
            return
        with self.lock:
            skipped = self.requests.catchup_skipped(sid, answered)
        if skipped:
            self._abandon_catchup(sid, "it answered later requests but not get_events")

    def _abandon_catchup(self, sid: str, why: str) -> None:
        """Under the frame lock: stop waiting for the session's catch-up page."""
        with self.lock:
            stale = self.requests.take_catchups(sid)
        for p in stale:
            self.sender.settle(p.slot)
        # its answer, should it come after all, is not a live event
        self.abandoned.add(sid)
        self.learned(getEvents="no")
        self._give_up_catchup(sid, why)

    def _give_up_catchup(self, sid: str, why: str) -> None:
        """Under the frame lock. What v1 surely has instead: the snapshot (its lastSeq,
        when it has one, dates the gap at once) and get_history; live events go out now,
        and the gap is told."""
        c = self.catching_up.pop(sid)
        after = c.after
        self.sessions.replay_all.discard(sid)
        self.first_pending.discard(sid)
        log.warning(
            "catch-up of session %s after seq %d ends without its events: %s",
            sid,
            after,
            why,
        )
        self.sessions.gap_given_up(sid, after, why)
        if c.gap is not None:
            # Whether the gap held events cannot be known: it counts like an empty
            # refetch, so a gateway that skips seqs and cannot be caught up does not
            # cost a get_history for every seq it skips.
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
        """A live seq gap was refetched and nothing came to fill it. A few in a row and
        gaps are no longer refetched from this gateway: it is taken to skip seqs."""
        self.empty_gap_refetches += 1
        if (
            self.empty_gap_refetches >= EMPTY_GAP_REFETCHES_MAX
            and self.traits.denseSeqs != "no"
        ):
            log.warning(
                "%d seq gaps in a row were not filled (the last: %s): the gateway is "
                "taken to skip seqs, gaps are no longer refetched",
                self.empty_gap_refetches,
                why,
            )
            self.learned(denseSeqs="no")

    def _session_gone(self, sid: str, why: str) -> None:
        """Under the frame lock. Leaves the catch-up and the joined set at once: nothing
        retries it."""
        self.sessions.gone(sid)
        self.first_pending.discard(sid)
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
        self.sessions.user_sessions.clear()
        with self.lock:
            failed = self.requests.take_all()
            self.outbox.reset()
        for p in failed:
            self.sender.settle(p.slot)
            if origin_of(p.req_id) not in TOLD_WHEN_FAILED:
                continue
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

    # --- frames -----------------------------------------------------------------------

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
                # The last guard: one frame can never end the socket thread (a reconnect
                # would fetch the same frame again, and again).
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
        admitted = admit(data)
        if isinstance(admitted, Refused):
            self._bad_frame(admitted.reason, data)
            if admitted.answer is not None:
                self._too_deep_answer(*admitted.answer)
            return
        if admitted.replaced:
            self.replaced_chars += admitted.replaced
            self._bad_frame(
                f"{admitted.replaced} lone surrogate escape(s) replaced with U+FFFD, the rest of "
                f"the text kept ({self.replaced_chars} so far)",
                admitted.unfixed,
            )
        data, head = admitted.data, admitted.head
        # Whatever one frame holds, it must not end the socket thread: the frame is
        # reported and, a well-formed event, still delivered (the router keeps odd
        # fields) unless it had gone on.
        try:
            goes_on, reply_to = self._take(data, head)
        except Exception as e:
            self._not_handled(data, head, e)
            self._deliver(data, head, None)
            return
        if not goes_on:
            return
        try:
            self._pass_on(data, head, reply_to)
        except Exception as e:
            self._not_handled(data, head, e)

    def _not_handled(self, data: bytes, head: protocol.EventHead, e: Exception) -> None:
        log.exception("could not handle a %s frame from the gateway", head.type)
        self._bad_frame(
            f"a {head.type} frame could not be handled ({type(e).__name__}: {e})",
            data,
        )

    def _too_deep_answer(self, head: protocol.EventHead, pruned: bytes) -> None:
        """Under the frame lock. A frame dropped for its depth may be the answer to a
        request: that request fails now, instead of waiting out request_timeout_s for an
        answer that has come."""
        answered = self._correlate(head, pruned)
        if answered is None:
            return
        if self.catching_up:
            self._answered_past_catchups(answered, head)
        req_id = answered.req_id
        match origin_of(req_id):
            case "connection":
                # an error is read as any other (a refused catch-up)
                self._internal_answered(req_id, head, pruned)
            case "outbox":
                # answered all the same: the item leaves the outbox
                self._outbox_answered(req_id, head, pruned)
            case "page":
                self.uplink.put_control(
                    CommandFailed(
                        reqId=req_id,
                        code="BAD_ANSWER",
                        message="the gateway's answer is nested deeper than "
                        f"{protocol.MAX_DEPTH} levels: dim-desktop cannot read it",
                    )
                )

    def _take(self, data: bytes, head: protocol.EventHead) -> tuple[bool, int | None]:
        """Under the frame lock: what a frame says to the connection itself (the request
        it answers, what it shows of the gateway). Whether it goes on to the router, and
        the request id it answers there (None: none of the router's)."""
        answered = self._correlate(head, data)
        if answered is not None and self.catching_up:
            self._answered_past_catchups(answered, head)
        if (
            answered is not None
            and head.type == "error"
            and self._try_next_form(answered, data)
        ):
            # refused in our form: sent again in the next one, and its answer is what
            # counts
            return False, None
        reply_to = answered.req_id if answered is not None else None
        if answered is not None:
            self._learn_from_answer(answered, head, data)
            if answered.type == "join_session" and head.type == "error":
                self._tail_known(answered.session_id or "", None)
        # The router is given the answers to the page's requests and its own.
        origin = origin_of(answered.req_id) if answered is not None else None
        if answered is not None and origin == "connection":
            if self._internal_answered(answered.req_id, head, data):
                return False, None
            reply_to = None
        if answered is not None and origin == "outbox":
            self._outbox_answered(answered.req_id, head, data)
            reply_to = None
        elif (
            head.type in ("turn_complete", "turn_error")
            and self.outbox.turn_gate
            and self.outbox.turn_ended(head)
        ):
            self._flush_outbox()
        sid = head.sessionId
        if head.type == "pong":
            self.pong_probe_at = None
            self.learned(pong="yes")
        elif head.type == "authenticated":
            # After a handshake that was ready without it (welcome said no auth is
            # needed).
            self.identity, bad = identity_of(msgspec.json.decode(data).get("identity"))
            if bad is not None:
                self._bad_frame(bad, data)
            self.traits = msgspec.structs.replace(
                self.traits, pushesAuthenticated="yes"
            )
            self.set_state(self.state)
        elif head.type == "state_snapshot" and sid is not None:
            self._snapshot_seen(sid, snapshot_last_seq(data))
        return True, reply_to

    def _snapshot_seen(self, sid: str, last: int | None) -> None:
        """Under the frame lock. A session's snapshot: where its first catch-up starts,
        and the end of a gap left by a catch-up that gave up."""
        if sid in self.catching_up:
            self._tail_known(sid, last)
        gap = self.sessions.gap_after.get(sid)
        if gap is not None and last is not None and last > gap[0]:
            self.sessions.gap_ends(sid, last + 1)

    def _learn_from_answer(
        self, answered: Pending, head: protocol.EventHead, data: bytes
    ) -> None:
        """What an answer to a turn command shows: the form the gateway takes, and
        whether it echoes our clientTurnId."""
        if (
            answered.type not in ("run_turn", "steer", "answer_question")
            or head.type == "error"
        ):
            return
        self.dialect.answered(answered.type, answered.form)
        if head.type == "turn_started" and answered.client_turn_id is not None:
            echoed = target(data).clientTurnId is not None
            self.learned(clientTurnIdEcho="yes" if echoed else "no")

    def _pass_on(
        self, data: bytes, head: protocol.EventHead, reply_to: int | None
    ) -> None:
        """Under the frame lock: the frame goes to the router now, waits behind its
        session's catch-up, or waits behind a refetch of the seqs it skipped."""
        sid = head.sessionId
        if head.type == "event_list" and sid in self.catching_up:
            self.catching_up[sid].page_due = None
            self._deliver_catchup(sid, data, reply_to)
            return
        if head.type == "event_list" and reply_to is None and sid in self.abandoned:
            # A catch-up page we stopped waiting for: its events are in the gap already
            # told.
            self.abandoned.discard(sid)
            # slow, not absent: the next catch-up asks again
            self.learned(getEvents="yes")
            log.warning(
                "a late catch-up page of session %s arrived after the catch-up gave up: dropped",
                sid,
            )
            return
        if sid is not None and head.seq is not None and sid in self.catching_up:
            # Live events, answers among them, wait until the gap is filled: delivering
            # a newer seq first would make the stores refuse the older ones as
            # duplicates.
            self.catching_up[sid].held.append((data, head, reply_to))
            return
        ws = self.ws
        if (
            sid is not None
            and head.seq is not None
            and reply_to is None
            and ws is not None
            and self.sessions.joined.get(sid, 0) > 0
        ):
            gap = seq_gap(self.sessions.joined[sid], head.seq, self.traits.denseSeqs)
            if gap is not None:
                self._refetch_gap(ws, sid, gap, data, head)
                return
        self._deliver(data, head, reply_to)

    def _refetch_gap(
        self,
        ws: websocket.WebSocket,
        sid: str,
        gap: tuple[int, int],
        data: bytes,
        head: protocol.EventHead,
    ) -> None:
        """Under the frame lock. A live event past the next seq: the ones between are
        fetched first (the catch-up, with its fallbacks), this one waits behind them
        like any held live event."""
        last = gap[0]
        log.warning(
            "session %s: seq %s follows seq %d: fetching the events between",
            sid,
            gap[1],
            last,
        )
        c = self.catching_up[sid] = CatchUp()
        c.gap = gap
        c.held.append((data, head, None))
        self._catch_up(ws, sid, last)

    def _try_next_form(self, p: Pending, data: bytes) -> bool:
        """An error answering `p`: when it says the form was not understood and another
        form can say the request, send that instead (same request id, same place in the
        outbox)."""
        code = error_code(data)
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
            self.requests.add(again)
        try:
            self.sender.send(ws, frame, again.slot, p.slot.lane, p.session_id)
        except (OSError, websocket.WebSocketException):
            # the connection is going: its loss fails or requeues the request as usual
            pass
        return True

    def _deliver(
        self,
        data: bytes,
        head: protocol.EventHead,
        reply_to: int | None,
        replay: bool = False,
    ) -> None:
        self.sessions.deliver(data, head, reply_to, replay)

    def _deliver_catchup(self, sid: str, data: bytes, reply_to: int | None) -> None:
        if reply_to is not None:
            # The user asked for these events: hand the list over as it is.
            self.uplink.put_event(
                PipeEvent(data, "event_list", sid, None, reply_to, time.time_ns())
            )
            return
        page = read_page(data)
        if page.problem is not None:
            self._bad_frame(page.problem, data)
        events, more = page.events, page.more
        self.first_pending.discard(sid)
        replay = sid in self.sessions.replay_all
        c = self.catching_up[sid]
        steps, last = page_steps(sid, events, c.gap)
        for step in steps:
            match step:
                case Deliver():
                    self._deliver(step.data, step.head, None, replay)
                case Skip():
                    self._bad_frame(step.reason, step.data)
                case GapFilled():
                    c.gap = None
                    # "skips seqs" needs empty refetches in a row
                    self.empty_gap_refetches = 0
                    self.learned(denseSeqs="yes")
        ws = self.ws
        then = after_page(more and ws is not None, last, c.after)
        if then == "next" and ws is not None and last is not None:
            self._catch_up(ws, sid, last)
            return
        if then == "stuck":
            self._bad_frame(
                f"a catch-up page of session {sid} says hasMore but brings nothing after seq "
                f"{c.after}: the catch-up ends here",
                data,
            )
        if c.gap is not None:
            self._gap_not_filled("nothing was missing")  # this gateway skips seqs
        # Done (or a page we cannot page on from): live events held back go out now, in
        # order.
        del self.catching_up[sid]
        self.sessions.replay_all.discard(sid)
        for ev, head, reply_to in c.held:
            self._deliver(ev, head, reply_to)

    def _correlate(self, head: protocol.EventHead, data: bytes) -> Pending | None:
        if not self.requests.pending:
            return None
        type_ = head.type
        client_turn_id = self._client_turn_id(data) if type_ == "turn_started" else None
        with self.lock:
            p = self.requests.take_answered(type_, head.sessionId, client_turn_id)
            if p is not None:
                self.sender.settle(p.slot)
        return p

    def _client_turn_id(self, data: bytes) -> str | None:
        """The turn_started's clientTurnId; None when it has none. The reference's v1
        has no client turn id ([NOT FOUND]): a gateway that does not echo ours answers
        our oldest run_turn of the session, as every other answer is matched, instead of
        leaving it to time out."""
        value = target(data).clientTurnId
        if value is not None and not isinstance(value, str):
            # Unreadable, so it cannot prove the turn is ours: not taken as our
            # run_turn's answer; the event itself is delivered all the same.
            self._bad_frame(
                f"turn_started.clientTurnId is not a string ({value!r})", data
            )
            return UNREADABLE
        return value

    # --- keepalive --------------------------------------------------------------------

    def _keep_alive(self, now: float) -> None:
        step = keepalive_round(
            now,
            self.keepalive,
            self.last_frame,
            self.last_ping,
            self.pong_probe_at,
            self.traits.pong,
        )
        if step.stale:
            log.warning(
                "no frame from the gateway for %.0fs: reconnecting",
                now - self.last_frame,
            )
            self._close_socket()
            return
        if step.pong_unanswered:
            self.pong_probe_at = None
            self.learned(pong="no")
        if not step.ping:
            return
        self.last_ping = now
        ws = self.ws
        if ws is None:
            return
        try:
            ws.ping()
            if step.message:
                if step.probe:
                    self.pong_probe_at = now
                self.sender.send(ws, protocol.build_client_message("ping", {}))
        except (OSError, websocket.WebSocketException):
            pass

    def run_keepalive(self) -> None:
        while True:
            time.sleep(ROUND_S)
            with self.watch.working("keepalive"):
                self._keepalive_round()

    def _keepalive_round(self) -> None:
        now = time.monotonic()
        if self.connected.is_set():
            self._keep_alive(now)
        if self.catching_up:
            self.catchups_overdue(now)
        if self.requests.pending:
            with self.lock:
                late = self.requests.take_expired(now, self.request_timeout_s)
            for p in late:
                self.sender.settle(p.slot)
                if origin_of(p.req_id) not in TOLD_WHEN_FAILED:
                    continue
                self.uplink.put_control(
                    CommandFailed(
                        reqId=p.req_id,
                        code="TIMEOUT",
                        message=f"the gateway did not answer {p.type} within "
                        f"{self.request_timeout_s:.0f}s",
                    )
                )
