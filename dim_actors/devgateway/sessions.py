"""One session at run time: state machine, subscribers, the event publisher, the current
turn.

``emit`` is the publisher: it gives the event the session's next ``seq`` and a ``ts``,
encodes it once, queues it for storage (every event with a seq is durable) and for every
joined connection, all without awaiting, so events leave in seq order by construction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

import msgspec

from dim_actors.wire.protocol import (
    FileChanged,
    HistoryTurn,
    SandboxInit,
    SandboxProvisioning,
    SandboxReady,
    SandboxRemoved,
    SessionEvent,
    SessionMeta,
    SessionStateChanged,
    StateSnapshot,
    TurnComplete,
    TurnError,
    TurnFailure,
    TurnStarted,
    Usage,
    encode,
)

from .connection import Connection
from .statemachine import check_transition
from .store import END_TURN, INSERT_TURN, UPSERT_SESSION, Database, StoredSession
from .turns import Turn, TurnFailed
from .workspace import AsyncWorkspace, FileChange, WorkspaceError

log = logging.getLogger(__name__)


class Agent(Protocol):
    name: str
    # provider name announced on activation, None for agents without one
    sandbox: str | None

    async def run(self, turn: Turn) -> None: ...


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class SessionRuntime:
    def __init__(self, db: Database, agent: Agent, stored: StoredSession):
        self.db = db
        self.agent = agent
        self.id = stored.id
        self.tenant_id = stored.tenant_id
        self.name = stored.name
        self.agent_type = stored.agent_type
        self.status = stored.status
        self.archived = stored.archived
        self.created_at = stored.created_at
        self.updated_at = stored.updated_at
        self.last_seq = stored.last_seq
        self.active_turn_id = stored.active_turn_id
        self.client_turns = stored.client_turns
        self.subscribers: dict[Connection, None] = {}  # insertion-ordered set
        self.turn: Turn | None = None
        self.deleted = False
        self.workspace = AsyncWorkspace(db, self.id, on_change=self.file_changed)
        # Told of every workspace change after file_changed: the replication endpoint's
        # hook.
        self.change_listener: Callable[[str, FileChange], None] | None = None

    # --- metadata ---------------------------------------------------------------------

    def meta(self) -> SessionMeta:
        return SessionMeta(
            id=self.id,
            name=self.name,
            agentType=self.agent_type,
            status=self.status,
            archived=self.archived,
            createdAt=self.created_at,
            updatedAt=self.updated_at,
            lastSeq=self.last_seq,
        )

    def persist(self) -> None:
        self.updated_at = now_ms()
        self.db.write(
            UPSERT_SESSION,
            (
                self.id,
                self.tenant_id,
                self.name,
                self.agent_type,
                self.status,
                int(self.archived),
                self.created_at,
                self.updated_at,
                self.active_turn_id,
            ),
        )

    # --- publishing -------------------------------------------------------------------

    def emit(self, event: SessionEvent, reply_to: Connection | None = None) -> bytes:
        """Publish a durable session event to every joined connection (and to
        ``reply_to``, the requester, when it has not joined: every request is answered).
        """
        self.last_seq += 1
        event.sessionId = self.id
        event.seq = self.last_seq
        event.ts = now_ms()
        frame = encode(event)
        if self.deleted:
            return frame
        self.db.append_event(self.id, self.last_seq, frame)
        for conn in self.subscribers:
            conn.outbox.push(frame)
        if reply_to is not None and reply_to not in self.subscribers:
            reply_to.outbox.push(frame)
        return frame

    def send_to_all(
        self, event: SessionEvent, reply_to: Connection | None = None
    ) -> None:
        """An event outside the seq stream (no seq), to subscribers and the requester."""
        event.sessionId = self.id
        frame = encode(event)
        for conn in self.subscribers:
            conn.outbox.push(frame)
        if reply_to is not None and reply_to not in self.subscribers:
            reply_to.outbox.push(frame)

    async def wait_uncongested(self) -> None:
        """Flow control for agents: wait while a joined reader lags or the store lags."""
        await self.db.wait_caught_up()
        while True:
            for conn in self.subscribers:
                if conn.outbox.congested:
                    await conn.outbox.drained.wait()
                    break
            else:
                return

    def file_changed(self, change: FileChange, turn: Turn | None = None) -> None:
        """Publish a workspace change, inside ``turn`` when the turn that made it is
        still open."""
        event = FileChanged(
            path=change.path,
            iteration=change.iteration,
            size=change.size,
            hash=change.hash,
            deleted=change.deleted,
            renamedFrom=change.renamedFrom,
        )
        if turn is not None and not turn.closed:
            turn.emit(event)
        else:
            self.emit(event)
        if self.change_listener is not None:
            self.change_listener(self.id, change)

    # --- subscribers ------------------------------------------------------------------

    def subscribe(self, conn: Connection) -> None:
        self.subscribers[conn] = None
        conn.sessions.add(self.id)

    def unsubscribe(self, conn: Connection) -> None:
        self.subscribers.pop(conn, None)
        conn.sessions.discard(self.id)

    def snapshot(self) -> StateSnapshot:
        pending = (
            [msgspec.Raw(f) for f in self.turn.pending_frames()] if self.turn else []
        )
        return StateSnapshot(
            sessionId=self.id,
            session=self.meta(),
            lastSeq=self.last_seq,
            activeTurnId=self.turn.id if self.turn else None,
            # the wire type says the requests' JSON objects; Raw encodes the frames
            # verbatim
            pendingRequests=pending,  # type: ignore[arg-type]
        )

    # --- state machine ----------------------------------------------------------------

    def set_status(self, new: str) -> None:
        check_transition(self.status, new)
        previous, self.status = self.status, new
        self.persist()
        self.emit(SessionStateChanged(status=new, previousStatus=previous))

    def activate(self) -> None:
        """inactive → activating → ready (with the agent's sandbox coming up in
        between)."""
        self.set_status("activating")
        if self.agent.sandbox:
            self.emit(SandboxInit(provider=self.agent.sandbox))
            self.emit(
                SandboxProvisioning(
                    phase="starting", message="starting the local dev sandbox"
                )
            )
            self.emit(SandboxReady())
        self.set_status("ready")

    def wind_down(self) -> None:
        """→ deactivating → inactive, from ready, running or error."""
        self.set_status("deactivating")
        if self.agent.sandbox:
            self.emit(SandboxRemoved())
        self.set_status("inactive")

    def recover(self) -> None:
        """After a crash: close the turn that never ended and wind the session down to
        inactive, through the transition table only, as a failed turn does
        (docs/dev-gateway.md, Storage): waiting → running → error → deactivating →
        inactive; running → error → …; ready and error → deactivating → inactive;
        activating → inactive (an activation cut short)."""
        if self.status == "waiting":
            # the open request died with the process; nothing waits now
            self.set_status("running")
        if self.active_turn_id:
            turn_id, self.active_turn_id = self.active_turn_id, None
            self.emit(
                TurnError(
                    turnId=turn_id,
                    code="GatewayRestarted",
                    message="The gateway restarted while this turn was running",
                )
            )
            self.db.write(
                END_TURN,
                (
                    "error",
                    None,
                    None,
                    "GatewayRestarted",
                    "The gateway restarted",
                    self.last_seq,
                    now_ms(),
                    self.id,
                    turn_id,
                ),
            )
        if self.status == "running":
            self.set_status("error")
        if self.status == "activating" or self.status == "deactivating":
            self.set_status("inactive")
        elif self.status != "inactive":
            self.wind_down()

    # --- turns ------------------------------------------------------------------------

    def start_turn(
        self, text: str, client_turn_id: str | None, requester: Connection
    ) -> Turn:
        if self.status == "inactive":
            self.activate()
        turn = Turn(self, text, client_turn_id)
        self.turn = turn
        self.active_turn_id = turn.id
        self.set_status("running")
        frame = turn.emit(
            TurnStarted(text=text, clientTurnId=client_turn_id), reply_to=requester
        )
        turn.started_seq = self.last_seq
        if client_turn_id is not None and frame is not None:
            self.client_turns[client_turn_id] = frame
        self.db.write(
            INSERT_TURN,
            (
                self.id,
                turn.id,
                client_turn_id,
                text,
                "running",
                turn.started_seq,
                turn.started_at,
            ),
        )
        turn.task = asyncio.get_running_loop().create_task(
            self._run_turn(turn), name=f"turn {turn.id}"
        )
        return turn

    async def _run_turn(self, turn: Turn) -> None:
        try:
            await self.agent.run(turn)
        except asyncio.CancelledError:
            if turn.closed:
                return  # stopped: the session already ended the turn
            raise
        except (TurnFailed, WorkspaceError) as e:
            self.end_turn(turn, error=(e.code, e.message))
        except Exception as e:
            log.exception("dev gateway: agent %s failed in %r", self.agent_type, turn)
            self.end_turn(
                turn, error=("AgentError", f"the agent failed: {type(e).__name__}")
            )
        else:
            self.end_turn(turn)

    def end_turn(
        self,
        turn: Turn,
        *,
        error: tuple[str, str] | None = None,
        stop_reason: str = "end_turn",
        reply_to: Connection | None = None,
        wind_down: bool = False,
    ) -> None:
        """End ``turn`` with exactly one turn_complete or turn_error, then move the
        session on: to ready, or (after an error) error → deactivating → inactive, or
        (shutdown) wind down."""
        if turn.closed:
            return
        turn.dismiss_all()
        final = turn.text_so_far
        inputs, outputs = turn.usage()
        if error is not None:
            turn.emit(TurnError(code=error[0], message=error[1]), reply_to=reply_to)
            status = "error"
        else:
            turn.emit(
                TurnComplete(
                    finalText=final,
                    stopReason=stop_reason,
                    usage=Usage(inputTokens=inputs, outputTokens=outputs),
                ),
                reply_to=reply_to,
            )
            status = "stopped" if stop_reason == "stopped" else "complete"
        turn.closed = True
        self.turn = None
        self.active_turn_id = None
        self.db.write(
            END_TURN,
            (
                status,
                final,
                None if error else stop_reason,
                error[0] if error else None,
                error[1] if error else None,
                self.last_seq,
                now_ms(),
                self.id,
                turn.id,
            ),
        )
        if wind_down:
            self.wind_down()
        elif error is not None:
            self.set_status("error")
            self.wind_down()
        else:
            self.set_status("ready")
        task = turn.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    async def history(self) -> list[HistoryTurn]:
        rows = await self.db.run(Database.history, self.id)
        turns = []
        for (
            turn_id,
            client_turn_id,
            text,
            status,
            final_text,
            stop_reason,
            error_code,
            error_message,
            started_seq,
            ended_seq,
            started_at,
            ended_at,
        ) in rows:
            if (
                self.turn is not None
                and turn_id == self.turn.id
                and self.status == "waiting"
            ):
                status = "waiting"
            turns.append(
                HistoryTurn(
                    turnId=turn_id,
                    clientTurnId=client_turn_id,
                    text=text,
                    status=status,
                    finalText=final_text,
                    stopReason=stop_reason,
                    startedSeq=started_seq,
                    endedSeq=ended_seq,
                    startedAt=started_at,
                    endedAt=ended_at,
                    error=TurnFailure(code=error_code, message=error_message or "")
                    if error_code
                    else None,
                )
            )
        return turns
