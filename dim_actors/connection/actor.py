"""The connection actor: the supervisor-side handle of the connection process.

Commands go down the pipe; a reader thread takes events off it and routes them by name.
If the process dies the reader sees the pipe close and fails this actor, so the
supervisor restarts it, and the new process resumes every joined session from the last
seq that reached this side. While the app stops, the process ending is expected: nothing
is failed, nothing restarted.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from dim_actors.connection import process as connection_process
from dim_actors.connection.pipeframes import PipeFrames
from dim_actors.kernel.actor import ActorContext, DimActor
from dim_actors.messages import (  # sync
    OUTBOX_ID_MAX,
    REPLICATION_DOWN,
    REPLICATION_UP,
    BadFrame,
    CancelQueued,
    CatchupGap,
    CommandFailed,
    Connect,
    ConnectionState,
    Crash,
    Disconnect,
    GatewayState,
    JoinedSessions,
    Msg,
    OutboxChanged,
    PipeEvent,
    Queued,
    Resync,
    ResyncStarted,
    SendFrame,
    SessionGone,
    Shutdown,
    encode_down,
    replication_recipient,
)
from dim_actors.messages.pipe import decode_control, decode_items, gateway_event

log = logging.getLogger(__name__)

# Messages waiting in the router's and the UI bridge's mailboxes above which the pipe is
# not read: a stalled consumer then backs up into the connection process, which spills
# to disk past its bound, instead of into this process's memory. Reading resumes below
# the low mark.
DOWNSTREAM_HIGH = 50_000
DOWNSTREAM_LOW = 10_000


def outbox_id_problem(value: Any) -> str | None:
    """Why `value` cannot name an outbox item, or None."""
    if type(value) is not int:
        return f"outbox id must be an integer, not {type(value).__name__}"
    if not 1 <= value <= OUTBOX_ID_MAX:
        return f"outbox id must be between 1 and {OUTBOX_ID_MAX}"
    return None


@dataclass
class ConnectionMemory:
    """What must outlive a restart of the connection actor and its process."""

    url: str | None = None
    token: str | None = None
    resume: dict[str, int] = field(default_factory=dict)
    state: ConnectionState = field(
        default_factory=lambda: ConnectionState(state="offline")
    )
    # monotonic time `state` arrived: retryInMs counts down from it
    state_at: float = 0.0
    restarts_reconnects: int = 0
    bad_frames: int = 0
    # The embedded dev gateway's address and per-launch token: a connect to that address
    # without a token of its own (the page's "connect" to the default gateway)
    # authenticates with it.
    embedded_url: str | None = None
    embedded_token: str | None = None
    # How the embedded gateway process is doing (restarts, last exit), shown beside the
    # connection.
    embedded_state: Callable[[], GatewayState] | None = None


@dataclass
class ConnectionWiring:
    memory: ConnectionMemory
    # Set once the app is stopping: the connection process's exit is then no failure.
    app_stopping: threading.Event = field(default_factory=threading.Event)


class ConnectionActor(DimActor):
    def __init__(self, ctx: ActorContext, wiring: ConnectionWiring):
        super().__init__(ctx)
        self.memory = wiring.memory
        self.app_stopping = wiring.app_stopping

    def on_start(self) -> None:
        super().on_start()
        ctx = multiprocessing.get_context("spawn")
        self.pipe, child_end = ctx.Pipe(duplex=True)
        s = self.ctx.settings
        options = connection_process.ConnectionOptions(
            ping_interval_s=s.ping_interval_s,
            stale_after_s=s.stale_after_s,
            request_timeout_s=s.request_timeout_s,
            resume=dict(self.memory.resume),
            outbox_path=self.ctx.home.data_dir / "outbox.sqlite",
            spill_dir=self.ctx.home.data_dir / "spill",
            uplink_memory_limit=s.uplink_memory_limit,
            send_rate_limit=s.send_rate_limit,
            send_rate_window_s=s.send_rate_window_s,
        )
        self.process = ctx.Process(
            target=connection_process.main,
            args=(child_end, options),
            name="dim-connection",
            daemon=True,
        )
        self.process.start()
        child_end.close()
        self.stopping = False
        # gateway events read off the pipe, and when the last reached the process
        self.events_in = 0
        self.last_recv_ns = 0
        self.reader = threading.Thread(
            target=self._read_pipe, name="connection-pipe-reader", daemon=True
        )
        self.reader.start()
        if self.memory.url:
            self._down(Connect(url=self.memory.url, token=self.memory.token))

    def describe(self) -> dict[str, Any]:
        st = self.memory.state
        return {
            "pid": self.process.pid,
            "connection": st.state,
            "url": st.url,
            "reconnects": st.reconnects + self.memory.restarts_reconnects,
            "badFrames": self.memory.bad_frames,
            # The wait chosen when the reconnect was scheduled ("reconnecting in N s"),
            # and why.
            "retryInMs": self._retry_in_ms(),
            "detail": st.detail,
            "warnings": list(st.warnings),
            "eventsIn": self.events_in,
            "lastRecvNs": self.last_recv_ns,
            "joined": sorted(self.memory.resume),
            **(
                {"embeddedGateway": msgspec.to_builtins(self.memory.embedded_state())}
                if self.memory.embedded_state
                else {}
            ),
        }

    def _retry_in_ms(self) -> int | None:
        """How long until the next attempt now, not when the state was reported."""
        st = self.memory.state
        if st.state != "reconnecting" or st.retryInMs is None:
            return None
        return max(
            0, st.retryInMs - int((time.monotonic() - self.memory.state_at) * 1000)
        )

    def _down(self, msg: Msg) -> None:
        self.pipe.send_bytes(encode_down(msg))

    def _refuse(self, msg: Msg, reason: str) -> None:
        """A message that cannot go down the pipe: its command is answered, and this
        actor goes on."""
        log.warning("connection: not sending %s: %s", type(msg).__name__, reason)
        req_id = getattr(msg, "reqId", None)
        if type(req_id) is int:
            self.ctx.send(
                "router",
                CommandFailed(reqId=req_id, code="INVALID_ARGUMENTS", message=reason),
            )

    def handle(self, sender: str, body: Msg) -> None:
        if not isinstance(
            body,
            (Connect, Disconnect, SendFrame, Resync, CancelQueued, *REPLICATION_DOWN),
        ):
            raise TypeError(f"connection: unexpected message {type(body).__name__}")
        if (
            isinstance(body, CancelQueued)
            and (problem := outbox_id_problem(body.outboxId)) is not None
        ):
            self._refuse(body, f"outbox_cancel: {problem}")
            return
        if (
            isinstance(body, Connect)
            and body.token is None
            and body.url == self.memory.embedded_url
        ):
            body = msgspec.structs.replace(body, token=self.memory.embedded_token)
        try:
            data = encode_down(body)
        except (OverflowError, UnicodeEncodeError, TypeError, msgspec.EncodeError) as e:
            self._refuse(body, f"cannot be sent to the connection process: {e}")
            return
        if isinstance(body, Connect):
            self.memory.url, self.memory.token = body.url, body.token
        self.pipe.send_bytes(data)

    def _downstream_depth(self) -> int:
        addresses = self.ctx.addresses
        return (
            addresses["router"].mailbox_depth() + addresses["uibridge"].mailbox_depth()
        )

    def _wait_for_downstream(self) -> None:
        if self._downstream_depth() <= DOWNSTREAM_HIGH:
            return
        log.warning(
            "router and UI bridge are %d messages behind: not reading events until they catch up",
            self._downstream_depth(),
        )
        while not self.stopping and self._downstream_depth() > DOWNSTREAM_LOW:
            time.sleep(0.01)

    def _read_pipe(self) -> None:
        frames = PipeFrames(self.pipe)
        while True:
            self._wait_for_downstream()
            try:
                data = frames.recv_bytes()
            except (EOFError, OSError):
                break
            # A pipe frame's events go to the router as one Batch: one mailbox hop for
            # hundreds of events in a burst (each still logged as a message of its own).
            self.ctx.send_batch("router", self._route(decode_items(data)))
        if not self.stopping:
            self._process_ended()

    def _route(self, items: list[PipeEvent | bytes]) -> list[Msg]:
        """What the router gets of one pipe frame's items (messages/pipe.py); replication
        messages go to the sync actors. Keeps the memory a restarted process resumes
        from."""
        resume = self.memory.resume
        rejoin = False  # whether the set of joined sessions changed
        to_router: list[Msg] = []
        add = to_router.append
        for pipe_item in items:
            if type(pipe_item) is PipeEvent:
                # the hot path: no pattern matching, and the event is made here (one
                # pass over the frame)
                ev = pipe_item
                sid, seq = ev.sessionId, ev.seq
                self.events_in += 1
                self.last_recv_ns = ev.recvNs
                if seq is not None and sid in resume:
                    if seq > resume[sid]:
                        resume[sid] = seq
                elif ev.type == "state_snapshot" and sid is not None:
                    rejoin = rejoin or sid not in resume
                    resume.setdefault(sid, 0)
                elif ev.type == "session_left" and sid is not None:
                    rejoin = resume.pop(sid, None) is not None or rejoin
                add(gateway_event(ev))
                continue
            item = decode_control(pipe_item)  # type: ignore[arg-type]
            match item:
                case ConnectionState():
                    self.memory.state = item
                    self.memory.state_at = time.monotonic()
                    to_router.append(item)
                case BadFrame():
                    self.memory.bad_frames += 1
                    to_router.append(item)
                case SessionGone(sessionId=sid):
                    # a restarted process must not rejoin it
                    rejoin = resume.pop(sid, None) is not None or rejoin
                    to_router.append(item)
                case (
                    CommandFailed()
                    | ResyncStarted()
                    | Queued()
                    | OutboxChanged()
                    | CatchupGap()
                ):
                    to_router.append(item)
                case _ if isinstance(item, REPLICATION_UP):
                    self.ctx.send(replication_recipient(item), item)
        if rejoin:
            to_router.append(JoinedSessions(sessionIds=sorted(resume)))
        return to_router

    def _process_ended(self) -> None:
        code = self.process.exitcode if not self.process.is_alive() else None
        if code is None:
            self.process.join(timeout=1)
            code = self.process.exitcode
        if self.app_stopping.is_set():
            log.info(
                "connection process exited (exit code %s) while dim-desktop stops", code
            )
            return
        self.memory.restarts_reconnects += 1
        # Fail through our own mailbox so the supervisor restarts us like any crashed
        # actor.
        self.ctx.send(
            self.ctx.name,
            Crash(reason=f"connection process exited (exit code {code})"),
        )

    def on_stop(self) -> None:
        self.stopping = True
        try:
            self._down(Shutdown())
        except (OSError, ValueError):
            pass
        self.process.join(timeout=3)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=3)
        self.pipe.close()

    def on_failure(self, exception_type, exception_value, traceback) -> None:
        self.stopping = True
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=3)
        self.pipe.close()
        super().on_failure(exception_type, exception_value, traceback)
