"""The connection process: owns the gateway socket, in its own OS process.

Nothing in the supervisor process can pause it. Three threads, none waiting on another:
- the socket thread connects, handshakes, reads frames and hands them to the uplink;
- the uplink thread writes events to the pipe (if the supervisor stops draining, only it waits);
- the main thread reads commands from the pipe and sends frames;
plus a keepalive thread that pings, detects a silent gateway and expires unanswered requests.
"""

from __future__ import annotations

import collections
import logging
import random
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

import msgspec
import websocket

from dim_actors import protocol
from dim_actors.connection.fastws import BufferedWebSocket
from dim_actors.connection.sockets import hard_close
from dim_actors.connection.outbox import QUEUEABLE, Outbox
from dim_actors.connection.uplink import Uplink, spill_file
from dim_actors.connection.replication import ReplicationLinks  # sync: docs/sync.md
from dim_actors.messages import REPLICATION_DOWN
from dim_actors.messages import (
    BadFrame,
    CancelQueued,
    CommandFailed,
    Connect,
    ConnectionState,
    Disconnect,
    OutboxChanged,
    PipeEvent,
    Queued,
    Resync,
    ResyncStarted,
    SendFrame,
    Shutdown,
    decode_down,
)

log = logging.getLogger("dim.connection")


# Request ids: the bridge's count up from 1; the outbox's are -itemId; the router's own are below this.
OUTBOX_IDS = -(1 << 40)


# The connection's own catch-up requests: answers only feed the catch-up.
INTERNAL_IDS = -(1 << 50)


class Sender:
    """All frames to the gateway leave through here, in order, paced to the gateway's rate limit.

    The gateway allows `limit` messages per `window_s` per connection and answers more with
    RATE_LIMITED; a client that paces itself never loses a command to that. Callers only enqueue,
    so the socket thread is never held up by pacing."""

    def __init__(self, limit: int, window_s: float):
        self.limit, self.window_s = limit, window_s
        self.queue: collections.deque[tuple[object, bytes]] = collections.deque()
        self.cond = threading.Condition()
        self.sent_at: collections.deque[float] = collections.deque()

    def send(self, ws: websocket.WebSocket, frame: bytes) -> None:
        with self.cond:
            self.queue.append((ws, frame))
            self.cond.notify()

    def run(self) -> None:
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.queue)
                ws, frame = self.queue.popleft()
            now = time.monotonic()
            while self.sent_at and now - self.sent_at[0] > self.window_s:
                self.sent_at.popleft()
            if self.limit and len(self.sent_at) >= self.limit:
                time.sleep(self.sent_at[0] + self.window_s + 0.05 - now)
                self.sent_at.popleft()
            try:
                ws.send(frame)  # type: ignore[attr-defined]
            except (OSError, websocket.WebSocketException):
                pass  # that connection is gone; the reconnect resends what matters
            self.sent_at.append(time.monotonic())


class AuthFailed(Exception):
    pass


class RetryLater(Exception):
    def __init__(self, delay_s: float, why: str):
        super().__init__(why)
        self.delay_s = delay_s


class _ErrorCodeStruct(msgspec.Struct):
    code: str = ""


_ErrorCode = msgspec.json.Decoder(_ErrorCodeStruct)


class _EventList(msgspec.Struct):
    events: list[msgspec.Raw] = []
    hasMore: bool = False


class _Target(msgspec.Struct):
    sessionId: str | None = None
    clientTurnId: str | None = None


_target = msgspec.json.Decoder(_Target)


class Pending:
    """A request awaiting its answer. The session (and client turn id) keep another client's
    broadcast of the same event type from being taken for our answer."""

    __slots__ = ("req_id", "type", "expect", "sent_at", "session_id", "client_turn_id")

    def __init__(self, req_id: int, type_: str, expect: frozenset[str], sent_at: float, frame: bytes = b"{}"):
        self.req_id, self.type, self.expect, self.sent_at = req_id, type_, expect, sent_at
        t = _target.decode(frame)
        self.session_id, self.client_turn_id = t.sessionId, t.clientTurnId


class GatewayConnection:
    def __init__(self, uplink: Uplink, ping_interval_s: float, stale_after_s: float, request_timeout_s: float,
                 resume: dict[str, int] | None = None, outbox: Outbox | None = None,
                 rate_limit: int = 60, rate_window_s: float = 10.0):
        self.uplink = uplink
        self.sender = Sender(rate_limit, rate_window_s)
        self.internal: dict[int, str] = {}  # our own catch-up requests in flight -> sessionId
        self.internal_ids = INTERNAL_IDS
        self.outbox = outbox
        # The outbox sends one item at a time, in order. A session whose turn is running (one we
        # started from the outbox, or another client's) holds back the next run_turn for it.
        self.outbox_inflight: int | None = None
        self.turn_gate: dict[str, str] = {}  # sessionId -> turnId to wait for, or "*" for any turn
        self.ping_interval_s = ping_interval_s
        self.stale_after_s = stale_after_s
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
        self.catching_up: dict[str, list[tuple[bytes, protocol.EventHead]]] = {}
        # Sessions to replay from their first event (a restarted router rebuilds its stores).
        self.replay_all: set[str] = set()
        self.frame_lock = threading.Lock()
        self.reconnects = 0
        self.attempt = 0
        self.last_frame = time.monotonic()
        self.last_ping = time.monotonic()
        self.bad_frames = 0
        # Far above the protocol's 1 MB inbound limit (a 1 MB text_delta must pass), far below harm.
        self.max_frame_bytes = 16 << 20
        self.identity: dict[str, Any] | None = None
        self.state = "offline"
        self.replication = ReplicationLinks(uplink, lambda: (self.url, self.token))

    # --- state ------------------------------------------------------------------------------------

    def set_state(self, state: str, detail: str = "", retry_in_ms: int | None = None) -> None:
        self.state = state
        self.uplink.put_control(ConnectionState(
            state=state, url=self.url or "", detail=detail, reconnects=self.reconnects,
            retryInMs=retry_in_ms, identity=self.identity))

    # --- commands from the supervisor ---------------------------------------------------------------

    def on_command(self, msg: Any) -> bool:
        if isinstance(msg, REPLICATION_DOWN):
            self.replication.on_command(msg)
            return True
        if isinstance(msg, Connect):
            self.url, self.token = msg.url, msg.token
            self.replication.gateway_changed()
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
                    self.sender.send(ws, protocol.build_client_message("list_sessions", {}))
                    self._resume_sessions(ws)
                except (OSError, websocket.WebSocketException):
                    pass  # the reconnect that follows resumes (and replays) instead

    # --- the outbox ---------------------------------------------------------------------------------

    def outbox_changed(self, req_id: int | None = None) -> None:
        if self.outbox is not None:
            with self.lock:
                items = self.outbox.items()
            self.uplink.put_control(OutboxChanged(items=items, reqId=req_id))

    def _queue(self, msg: SendFrame) -> None:
        assert self.outbox is not None
        with self.lock:
            outbox_id = self.outbox.add(msg.type, msg.frame)
        # The stores learn of the queue before the caller hears "queued", so a get_state right after shows it.
        self.outbox_changed()
        self.uplink.put_control(Queued(reqId=msg.reqId, outboxId=outbox_id))

    def _cancel_queued(self, msg: CancelQueued) -> None:
        with self.lock:
            removed = (self.outbox is not None and msg.outboxId != self.outbox_inflight
                       and self.outbox.remove(msg.outboxId))
        if removed:
            self.outbox_changed(msg.reqId)
        else:
            self.uplink.put_control(CommandFailed(
                reqId=msg.reqId, code="NOT_FOUND",
                message=f"outbox item {msg.outboxId} is not waiting (already sent, or never queued)"))

    def _join(self, ws: websocket.WebSocket, sid: str, frame: bytes | None = None) -> None:
        """Join a session and fetch what it already holds, so the stores see its history once;
        live events wait behind that catch-up (under the frame lock)."""
        with self.frame_lock:
            with self.lock:
                self.joined[sid] = 0
            self.catching_up[sid] = []
            self.sender.send(ws, frame or protocol.build_client_message("join_session", {"sessionId": sid}))
            self._catch_up(ws, sid, 0)

    def _flush_outbox(self) -> None:
        """Send the next outbox item if nothing is in flight; it leaves the outbox once answered."""
        ws = self.ws
        if self.outbox is None or ws is None or not self.connected.is_set():
            return
        with self.lock:
            if self.outbox_inflight is not None:
                return
            items = self.outbox.pending()
            if not items:
                return
            item_id, type_, frame = items[0]
            p = Pending(-item_id, type_, protocol.RESPONSES.get(type_, frozenset()), time.monotonic(), frame)
            if type_ == "run_turn" and p.session_id in self.turn_gate:
                return  # wait for that session's turn to end; order is kept, nothing jumps the queue
            self.outbox_inflight = item_id
            self.outbox.mark_sent(item_id)
            # Negative request ids mark the outbox's own requests: nobody waits on them upstream.
            self.pending.append(p)
        try:
            if p.session_id is not None and p.session_id not in self.joined:
                self._join(ws, p.session_id)  # so the queued command's outcome reaches the stores
            self.sender.send(ws, frame)
        except (OSError, websocket.WebSocketException):
            return  # the reconnect sends it again (a run_turn carries its clientTurnId: no double run)
        self.outbox_changed()

    def _outbox_answered(self, req_id: int, head: protocol.EventHead, data: bytes) -> None:
        assert self.outbox is not None
        item_id = -req_id
        with self.lock:
            row = next((i for i in self.outbox.pending() if i[0] == item_id), None)
            sid = _target.decode(row[2]).sessionId if row else None
            self.outbox_inflight = None
            if head.type == "error" and _ErrorCode.decode(data).code == "TurnInProgress" and sid:
                self.turn_gate[sid] = "*"  # another turn runs there: try again when it ends
            else:
                self.outbox.remove(item_id)
                if head.type == "turn_started" and sid and head.turnId:
                    self.turn_gate[sid] = head.turnId
                if head.type == "error":
                    log.warning("the gateway refused a queued %s: %s", row[1] if row else "command",
                                bytes(data[:300]).decode("utf-8", "replace"))
        self.outbox_changed()
        self._flush_outbox()

    def _turn_ended(self, head: protocol.EventHead) -> None:
        gate = self.turn_gate.get(head.sessionId or "")
        if gate is not None and (gate == "*" or gate == head.turnId):
            del self.turn_gate[head.sessionId]  # type: ignore[arg-type]
            self._flush_outbox()

    def _send_request(self, msg: SendFrame) -> None:
        ws = self.ws
        queue_it = self.outbox is not None and msg.type in QUEUEABLE
        if queue_it:
            with self.lock:
                waiting = bool(self.outbox.pending())  # type: ignore[union-attr]
        if queue_it and (ws is None or not self.connected.is_set() or waiting):
            # Offline, or earlier commands still wait: join the queue so order is kept.
            self._queue(msg)
            self._flush_outbox()
            return
        if ws is None or not self.connected.is_set():
            self.uplink.put_control(CommandFailed(
                reqId=msg.reqId, code="NOT_CONNECTED",
                message=f"not connected to the gateway (state: {self.state})"))
            return
        sid = _target.decode(msg.frame).sessionId
        first_join = msg.type == "join_session" and sid is not None and sid not in self.joined
        if msg.type == "leave_session":
            with self.lock:
                self.joined.pop(sid, None)
        with self.lock:
            self.pending.append(Pending(msg.reqId, msg.type, frozenset(msg.expect), time.monotonic(), msg.frame))
        try:
            if first_join:
                self._join(ws, sid, msg.frame)
            else:
                self.sender.send(ws, msg.frame)
        except (OSError, websocket.WebSocketException) as e:
            with self.lock:
                self.pending = [p for p in self.pending if p.req_id != msg.reqId]
            self.uplink.put_control(CommandFailed(reqId=msg.reqId, code="NOT_CONNECTED", message=f"send failed: {e}"))

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
            except RetryLater as e:
                delay, why = e.delay_s, str(e)
            except (OSError, websocket.WebSocketException, protocol.ProtocolError) as e:
                delay, why = None, f"{type(e).__name__}: {e}"
            finally:
                self._on_disconnected()
            if not self.wanted.is_set():
                self.set_state("offline", "disconnected by request")
                continue
            if url != self.url:
                continue  # a new Connect arrived: go straight to the new URL
            self.attempt += 1
            self.reconnects += 1
            if delay is None:
                # Full jitter over an exponential ceiling: spreads a fleet's reconnects out.
                delay = random.uniform(0, min(30.0, 0.5 * 2 ** min(self.attempt, 10)))
            self.set_state("reconnecting", why, retry_in_ms=round(delay * 1000))
            self.wake.clear()
            self.wake.wait(delay)

    def _connect_and_read(self, url: str) -> None:
        ws = BufferedWebSocket(skip_utf8_validation=True, enable_multithread=True)
        ws.connect(url, timeout=10, suppress_origin=True)
        self.ws = ws
        self.last_frame = time.monotonic()
        self._handshake(ws)
        ws.settimeout(None)
        self.connected.set()
        connected_at = time.monotonic()
        self.set_state("connected")
        self._resume_sessions(ws)
        self._flush_outbox()
        while True:
            opcode, data = ws.recv_data()
            self.last_frame = time.monotonic()
            if self.attempt and time.monotonic() - connected_at > 60:
                self.attempt = 0  # stable for a minute: the next failure starts the backoff afresh
            if opcode == websocket.ABNF.OPCODE_TEXT:
                if len(data) > self.max_frame_bytes:
                    self._bad_frame(f"a frame of {len(data)} bytes is over the {self.max_frame_bytes}-byte limit", data)
                    continue
                self._on_frame(data)
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                return
            else:
                self._bad_frame("binary frame on the event socket", data)

    def _handshake(self, ws: websocket.WebSocket) -> None:
        ws.settimeout(10)
        requires_auth = None
        while True:
            opcode, data = ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                raise websocket.WebSocketConnectionClosedException("closed during the handshake")
            head = protocol.decode_head(data)
            self.uplink.put_event(PipeEvent(data, head.type, head.sessionId, head.seq, None, time.time_ns()))
            if head.type == "welcome":
                requires_auth = bool(msgspec.json.decode(data).get("requiresAuth"))
                if requires_auth:
                    ws.send(protocol.build_client_message("authenticate", {"token": self.token or ""}))
            elif head.type == "authenticated":
                self.identity = msgspec.json.decode(data).get("identity")
                return
            elif head.type == "error":
                err = msgspec.json.decode(data)
                code = err.get("code", "")
                if code == "AUTH_FAILED":
                    raise AuthFailed(err.get("message") or "authentication failed")
                if code == "AUTH_RATE_LIMITED":
                    raise RetryLater(max(0.1, err.get("retryAfterMs", 1000) / 1000),
                                     f"AUTH_RATE_LIMITED: {err.get('message', '')}")
                raise protocol.ProtocolError(code or "HANDSHAKE", err.get("message", "handshake failed"))

    def _resume_sessions(self, ws: websocket.WebSocket) -> None:
        with self.lock:
            sessions = dict(self.joined)
        for sid, last in sessions.items():
            self.catching_up[sid] = []
            self.sender.send(ws, protocol.build_client_message("join_session", {"sessionId": sid}))
            self._catch_up(ws, sid, 0 if sid in self.replay_all else last)

    def _catch_up(self, ws: websocket.WebSocket, sid: str, after: int) -> None:
        """Ask for a session's events after `after`; registered so its answer (or error) is ours."""
        # Big pages: a long session is caught up in few requests, well inside the rate limit.
        frame = protocol.build_client_message("get_events", {"sessionId": sid, "afterSeq": after, "limit": 5000})
        with self.lock:
            self.internal_ids -= 1
            self.internal[self.internal_ids] = sid
            self.pending.append(Pending(self.internal_ids, "get_events", frozenset({"event_list"}),
                                        time.monotonic(), frame))
        self.sender.send(ws, frame)

    def _catch_up_failed(self, req_id: int, data: bytes) -> None:
        sid = self.internal.pop(req_id, None)
        if sid is None or sid not in self.catching_up:
            return
        err = msgspec.json.decode(data)
        delay = max(0.2, (err.get("retryAfterMs") or 1000) / 1000)
        log.warning("catch-up of session %s refused (%s): retrying in %.1fs", sid, err.get("code"), delay)

        def retry() -> None:
            ws = self.ws
            if ws is not None and sid in self.catching_up:
                with self.frame_lock:
                    self._catch_up(ws, sid, self.joined.get(sid, 0))

        threading.Timer(delay, retry).start()

    def _on_disconnected(self) -> None:
        self.connected.clear()
        self._close_socket()
        self.catching_up.clear()
        with self.lock:
            failed, self.pending = self.pending, []
            self.internal.clear()
            self.outbox_inflight = None  # an unanswered item goes again on the next connection
            self.turn_gate.clear()
        for p in failed:
            if p.req_id < 0:
                continue  # the outbox's and our own: sent again after the reconnect
            self.uplink.put_control(CommandFailed(reqId=p.req_id, code="NOT_CONNECTED",
                                                  message="the connection to the gateway was lost"))

    def _close_socket(self) -> None:
        ws, self.ws = self.ws, None
        hard_close(ws)

    # --- frames ---------------------------------------------------------------------------------------

    def _bad_frame(self, reason: str, data: bytes) -> None:
        self.bad_frames += 1
        sample = bytes(data[:200]).decode("utf-8", "replace")
        log.warning("bad frame from the gateway (%s): %r", reason, sample)
        self.uplink.put_control(BadFrame(reason=reason, sample=sample, count=self.bad_frames))

    def _on_frame(self, data: bytes) -> None:
        with self.frame_lock:
            self._on_frame_locked(data)

    def _on_frame_locked(self, data: bytes) -> None:
        try:
            head = protocol.decode_head(data)
        except protocol.ProtocolError as e:
            self._bad_frame(e.message, data)
            return
        reply_to = self._correlate(head, data)
        if reply_to is not None and reply_to <= INTERNAL_IDS:
            if head.type == "error":
                self._catch_up_failed(reply_to, data)
                return
            self.internal.pop(reply_to, None)
            reply_to = None
        if reply_to is not None and OUTBOX_IDS < reply_to < 0:
            self._outbox_answered(reply_to, head, data)
            reply_to = None
        elif head.type in ("turn_complete", "turn_error") and self.turn_gate:
            self._turn_ended(head)
        sid = head.sessionId
        if head.type == "event_list" and sid in self.catching_up:
            self._deliver_catchup(sid, data, reply_to)
            return
        if sid is not None and head.seq is not None and sid in self.catching_up:
            # Live events, answers among them, wait until the gap is filled: delivering a newer seq
            # first would make the stores refuse the older ones as duplicates.
            self.catching_up[sid].append((data, head, reply_to))
            return
        self._deliver(data, head, reply_to)

    def _deliver(self, data: bytes, head: protocol.EventHead, reply_to: int | None, replay: bool = False) -> None:
        sid, seq = head.sessionId, head.seq
        if sid is not None and seq is not None and sid in self.joined:
            if seq <= self.joined[sid] and reply_to is None and not replay:
                return  # already delivered before a reconnect
            self.joined[sid] = max(seq, self.joined[sid])
        self.uplink.put_event(PipeEvent(data, head.type, sid, seq, reply_to, time.time_ns()))

    def _deliver_catchup(self, sid: str, data: bytes, reply_to: int | None) -> None:
        if reply_to is not None:
            # The user asked for these events: hand the list over as it is.
            self.uplink.put_event(PipeEvent(data, "event_list", sid, None, reply_to, time.time_ns()))
            return
        page = msgspec.json.decode(data, type=_EventList)
        replay = sid in self.replay_all
        last = None
        for raw in page.events:
            ev = bytes(raw)
            head = protocol.decode_head(ev)
            last = head.seq if head.seq is not None else last
            self._deliver(ev, head, None, replay)
        if page.hasMore and self.ws is not None:
            after = last if last is not None else self.joined[sid]
            self._catch_up(self.ws, sid, after)
            return
        self.replay_all.discard(sid)
        for ev, head, reply_to in self.catching_up.pop(sid, []):
            self._deliver(ev, head, reply_to)

    def _correlate(self, head: protocol.EventHead, data: bytes) -> int | None:
        if not self.pending:
            return None
        type_ = head.type
        with self.lock:
            for i, p in enumerate(self.pending):
                if type_ == "error":
                    pass  # errors are unicast answers, in request order: the oldest open request
                elif type_ not in p.expect:
                    continue
                elif p.session_id is not None and head.sessionId is not None and head.sessionId != p.session_id:
                    continue
                elif p.client_turn_id is not None and type_ == "turn_started" \
                        and _target.decode(data).clientTurnId != p.client_turn_id:
                    continue
                del self.pending[i]
                return p.req_id
        return None

    # --- keepalive ------------------------------------------------------------------------------------

    def run_keepalive(self) -> None:
        while True:
            time.sleep(0.25)
            now = time.monotonic()
            if self.connected.is_set():
                if now - self.last_frame > self.stale_after_s:
                    log.warning("no frame from the gateway for %.0fs: reconnecting", now - self.last_frame)
                    self._close_socket()
                elif self.ping_interval_s and now - self.last_ping >= self.ping_interval_s:
                    self.last_ping = now
                    ws = self.ws
                    try:
                        if ws is not None:
                            self.sender.send(ws, protocol.build_client_message("ping", {}))
                    except (OSError, websocket.WebSocketException):
                        pass
            if self.pending:
                with self.lock:
                    expired = [p for p in self.pending if now - p.sent_at > self.request_timeout_s]
                    self.pending = [p for p in self.pending if now - p.sent_at <= self.request_timeout_s]
                for p in expired:
                    if p.req_id < 0:
                        continue  # an outbox item stays queued and goes again after a reconnect
                    self.uplink.put_control(CommandFailed(
                        reqId=p.req_id, code="TIMEOUT",
                        message=f"the gateway did not answer {p.type} within {self.request_timeout_s:.0f}s"))


def main(pipe: Connection, options: dict[str, Any]) -> None:
    """Entry point of the connection process (multiprocessing spawn target)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s connection[%(process)d] %(levelname)s %(message)s")
    # Ctrl-C goes to the whole process group; the supervisor decides when this process ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    spill_dir = options.get("spill_dir")
    uplink = Uplink(pipe, memory_limit=options.get("uplink_memory_limit", 64 << 20),
                    spill_path=spill_file(spill_dir) if spill_dir else None)
    outbox = Outbox(options["outbox_path"]) if options.get("outbox_path") else None
    conn = GatewayConnection(uplink, options["ping_interval_s"], options["stale_after_s"],
                             options["request_timeout_s"], options.get("resume"), outbox,
                             options.get("send_rate_limit", 60), options.get("send_rate_window_s", 10.0))
    conn.outbox_changed()
    for target in (conn.run_socket, conn.run_keepalive, uplink.run, conn.sender.run):
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
        if not conn.on_command(msg):
            break
    uplink.close()
