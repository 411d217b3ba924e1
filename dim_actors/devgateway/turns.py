"""A running turn: what an agent sees and may do, and how the turn ends.

The agent runs as its own task and talks to the session only through this object. Every
event it emits carries the turn's id; text deltas are collected so
``turn_complete.finalText`` is exactly their concatenation. A turn ends exactly once:
naturally, by failing, or by being stopped. A stop is handled on the spot by the session
(so ``stop_turn`` is answered at once) and the agent task is then cancelled; anything
the agent would emit after that is dropped.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Protocol

from dim_actors.wire.protocol import (
    ApprovalResolved,
    PermissionRequested,
    QuestionRequested,
    SessionEvent,
    SteerReceived,
    TextDelta,
)

from .connection import Connection
from .errors import GatewayError
from .workspace import AsyncWorkspace, FileChange, SqlRunner

CHECKPOINT_EVERY = 256  # events an unpaced agent emits between yields to the event loop


class StampedTextDelta(TextDelta, tag="text_delta", kw_only=True):
    """A text_delta carrying the gateway's send time in ns (``/stream N RATE stamp``,
    for benchmarks). Clients must pass the unknown field through untouched, which is
    part of the contract."""

    sentNs: int | None = None


class TurnFailed(Exception):
    """Raised by an agent to end its turn with ``turn_error``."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


class TurnSession(Protocol):
    """What a turn, and the agent running it, need of its session
    (sessions.SessionRuntime)."""

    @property
    def id(self) -> str: ...
    @property
    def db(self) -> SqlRunner: ...
    @property
    def status(self) -> str: ...
    def set_status(self, new: str) -> None: ...
    def emit(
        self, event: SessionEvent, reply_to: Connection | None = None
    ) -> bytes | None: ...
    def send_to_all(
        self, event: SessionEvent, reply_to: Connection | None = None
    ) -> None: ...
    async def wait_uncongested(self) -> None: ...
    def file_changed(self, change: FileChange, turn: Turn | None = None) -> None: ...


class PendingRequest:
    def __init__(self, kind: str, frame: bytes, future: asyncio.Future):
        self.kind = kind  # "question" | "permission"
        self.frame = frame
        self.future = future


class Turn:
    def __init__(self, session: TurnSession, text: str, client_turn_id: str | None):
        self.session = session
        self.id = new_id("turn")
        self.text = text
        self.client_turn_id = client_turn_id
        self.parts: list[str] = []
        self.pending: dict[str, PendingRequest] = {}
        self.steers: list[str] = []
        self.closed = False
        self.started_seq = 0
        self.started_at = time.time_ns() // 1_000_000
        self.task: asyncio.Task | None = None
        self._emitted = 0
        self._workspace: AsyncWorkspace | None = None

    # --- what agents use --------------------------------------------------------------

    @property
    def workspace(self) -> AsyncWorkspace:
        """The session's files; changes made through this handle are reported inside
        this turn (or, if the turn was stopped while the change was on its way, outside
        any turn)."""
        if self._workspace is None:
            session = self.session
            self._workspace = AsyncWorkspace(
                session.db,
                session.id,
                on_change=lambda change: session.file_changed(change, self),
            )
        return self._workspace

    @property
    def text_so_far(self) -> str:
        return "".join(self.parts)

    def emit(
        self, event: SessionEvent, reply_to: Connection | None = None
    ) -> bytes | None:
        if self.closed:
            return None
        event.turnId = self.id
        return self.session.emit(event, reply_to=reply_to)

    def delta(self, text: str, stamp: bool = False) -> None:
        if self.closed or not text:
            return
        self.parts.append(text)
        self.emit(
            StampedTextDelta(text=text, sentNs=time.time_ns())
            if stamp
            else TextDelta(text=text)
        )

    async def checkpoint(self) -> None:
        """Yield to the loop (so stop_turn and the writers run) and wait while a reader
        lags."""
        await asyncio.sleep(0)
        await self.session.wait_uncongested()

    async def tick(self) -> None:
        """Call once per emitted event in a tight loop: checkpoints every
        CHECKPOINT_EVERY calls."""
        self._emitted += 1
        if self._emitted % CHECKPOINT_EVERY == 0:
            await self.checkpoint()

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)

    async def ask(
        self, question: str, options: list[str] | None = None
    ) -> ApprovalResolved:
        """question_requested, then wait (session ``waiting``) for answer_question."""
        return await self._request(
            "question",
            QuestionRequested(
                requestId=new_id("req"), question=question, options=options or None
            ),
        )

    async def permission(self, action: str) -> ApprovalResolved:
        return await self._request(
            "permission", PermissionRequested(requestId=new_id("req"), action=action)
        )

    async def _request(
        self, kind: str, event: QuestionRequested | PermissionRequested
    ) -> ApprovalResolved:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        frame = self.emit(event)
        if frame is None:
            raise asyncio.CancelledError
        self.pending[event.requestId] = PendingRequest(kind, frame, future)
        if self.session.status == "running":
            self.session.set_status("waiting")
        return await future

    # --- what the session's request handlers use --------------------------------------

    def steer(self, content: str, reply_to: Connection) -> None:
        self.steers.append(content)
        self.emit(SteerReceived(content=content), reply_to=reply_to)

    def resolve(
        self,
        request_id: str,
        reply_to: Connection | None,
        *,
        answers: list[str] | None = None,
        approved: bool | None = None,
        dismissed: bool | None = None,
    ) -> None:
        req = self.pending.pop(request_id, None)
        if req is None:
            raise GatewayError(
                "RequestNotFound",
                f"No open question or permission request {request_id!r}",
            )
        resolution = ApprovalResolved(
            requestId=request_id,
            answers=answers,
            approved=approved,
            dismissed=dismissed,
        )
        self.emit(resolution, reply_to=reply_to)
        if not self.pending and self.session.status == "waiting":
            self.session.set_status("running")
        if not req.future.done():
            req.future.set_result(resolution)

    def dismiss_all(self) -> None:
        for request_id in list(self.pending):
            self.resolve(request_id, None, dismissed=True)

    def pending_frames(self) -> list[bytes]:
        return [req.frame for req in self.pending.values()]

    def usage(self) -> tuple[int, int]:
        return len(self.text.split()), len(self.parts)

    def __repr__(self) -> str:
        return f"<Turn {self.id} of {self.session.id}>"
