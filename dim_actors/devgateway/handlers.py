"""What the gateway does with each of the 21 client messages.

Each handler answers its request with exactly one event from ``RESPONSES[type]`` or
raises ``GatewayError`` (sent as ``error`` to the requester only). The connection runs
its handlers one at a time, so answers leave in request order, which is what v1's
id-less correlation relies on. The exceptions are the profile's (profile.py): a
reference gateway may leave ``ping`` or ``get_events`` unanswered, as a gateway that
guessed differently than we did could.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec

from dim_actors.wire import protocol as p

from .connection import Connection
from .errors import GatewayError, session_not_found
from .limits import AuthLimiter, check_token
from .profile import GatewayProfile
from .sessions import Agent, SessionRuntime, now_ms
from .store import DELETE_MEMBER, UPSERT_MEMBER, Database, StoredSession
from .workspace import FileVersion, normalize_path

DEFAULT_EVENTS_LIMIT = 1000
MAX_EVENTS_LIMIT = 10000

# Each handler takes the message type it is keyed by in the table: Any, as a dict's
# value type cannot say which key it goes with.
Handler = Callable[[Connection, Any], Awaitable[None]]


class HandlersGateway(Protocol):
    """What the request handlers need of the gateway that owns them."""

    @property
    def token(self) -> str | None: ...
    @property
    def identity(self) -> p.Identity: ...
    @property
    def auth_limiter(self) -> AuthLimiter: ...
    @property
    def lockout_spares_token(self) -> bool: ...
    @property
    def profile(self) -> GatewayProfile: ...
    @property
    def agents(self) -> dict[str, Agent]: ...
    @property
    def sessions(self) -> dict[str, SessionRuntime]: ...
    @property
    def db(self) -> Database: ...
    def members_of(self, tenant: str) -> dict[str, p.Member]: ...


class RequestHandlers:
    def __init__(self, gateway: HandlersGateway):
        self.gw = gateway
        self.table: dict[type[msgspec.Struct], Handler] = {
            p.Authenticate: self.authenticate,
            p.ListSessions: self.list_sessions,
            p.CreateSession: self.create_session,
            p.RenameSession: self.rename_session,
            p.ArchiveSession: self.archive_session,
            p.UnarchiveSession: self.unarchive_session,
            p.DeleteSession: self.delete_session,
            p.JoinSession: self.join_session,
            p.LeaveSession: self.leave_session,
            p.RunTurn: self.run_turn,
            p.StopTurn: self.stop_turn,
            p.Steer: self.steer,
            p.AnswerQuestion: self.answer_question,
            p.GetHistory: self.get_history,
            p.GetEvents: self.get_events,
            p.Ping: self.ping,
            p.ListFiles: self.list_files,
            p.ReadFile: self.read_file,
            p.FileHistory: self.file_history,
            p.FileAtIteration: self.file_at_iteration,
            p.ManageMembers: self.manage_members,
        }
        # the profile's decoder hands on only these
        assert len(self.table) == len(p.CLIENT_MESSAGES)

    def session(self, conn: Connection, session_id: str) -> SessionRuntime:
        s = self.gw.sessions.get(session_id)
        if s is None or conn.identity is None or s.tenant_id != conn.identity.tenantId:
            raise session_not_found()
        return s

    # --- authentication ---------------------------------------------------------------

    async def authenticate(self, conn: Connection, msg: p.Authenticate) -> None:
        gw = self.gw
        if gw.token is None:  # dev mode: any token, or none at all
            conn.identity = gw.identity
            conn.send(p.Authenticated(identity=gw.identity))
            return
        valid, wait_ms = check_token(
            gw.token, msg.token, gw.auth_limiter, conn.ip, gw.lockout_spares_token
        )
        if wait_ms:
            raise GatewayError(
                "AUTH_RATE_LIMITED",
                "Too many authentication attempts; retry later",
                wait_ms,
            )
        if not valid:
            gw.auth_limiter.failed(conn.ip)
            raise GatewayError("AUTH_FAILED", "Invalid token")
        conn.identity = gw.identity
        conn.send(p.Authenticated(identity=gw.identity))

    # --- session management -----------------------------------------------------------

    async def list_sessions(self, conn: Connection, msg: p.ListSessions) -> None:
        tenant = conn.identity.tenantId  # type: ignore[union-attr]
        metas = [
            s.meta()
            for s in self.gw.sessions.values()
            if s.tenant_id == tenant and (msg.includeArchived or not s.archived)
        ]
        metas.sort(key=lambda m: (m.createdAt, m.id))
        conn.send(p.SessionList(sessions=metas))

    async def create_session(self, conn: Connection, msg: p.CreateSession) -> None:
        agent = self.gw.agents.get(msg.agentType)
        if agent is None:
            known = ", ".join(sorted(self.gw.agents))
            raise GatewayError(
                "UnknownAgentType",
                f"Unknown agent type {msg.agentType!r} (known: {known})",
            )
        now = now_ms()
        stored = StoredSession(
            id=str(uuid.uuid4()),
            tenant_id=conn.identity.tenantId,  # type: ignore[union-attr]
            name=msg.name or "New session",
            agent_type=msg.agentType,
            status="inactive",
            archived=False,
            created_at=now,
            updated_at=now,
            active_turn_id=None,
        )
        s = SessionRuntime(self.gw.db, agent, stored)
        s.persist()
        self.gw.sessions[s.id] = s
        # answered means stored: a crash right after must not lose it
        await self.gw.db.commit()
        conn.send(p.SessionCreated(sessionId=s.id, session=s.meta()))

    async def rename_session(self, conn: Connection, msg: p.RenameSession) -> None:
        s = self.session(conn, msg.sessionId)
        s.name = msg.name
        s.persist()
        await self.gw.db.commit()
        s.emit(p.SessionRenamed(name=msg.name), reply_to=conn)

    async def archive_session(self, conn: Connection, msg: p.ArchiveSession) -> None:
        s = self.session(conn, msg.sessionId)
        s.archived = True
        s.persist()
        await self.gw.db.commit()
        s.emit(p.SessionArchived(), reply_to=conn)

    async def unarchive_session(
        self, conn: Connection, msg: p.UnarchiveSession
    ) -> None:
        s = self.session(conn, msg.sessionId)
        s.archived = False
        s.persist()
        await self.gw.db.commit()
        s.emit(p.SessionUnarchived(), reply_to=conn)

    async def delete_session(self, conn: Connection, msg: p.DeleteSession) -> None:
        s = self.session(conn, msg.sessionId)
        if s.turn is not None:
            s.end_turn(s.turn, stop_reason="stopped")
        del self.gw.sessions[s.id]
        s.deleted = True
        await self.gw.db.run(Database.delete_session, s.id)
        s.send_to_all(p.SessionDeleted(), reply_to=conn)
        for c in list(s.subscribers):
            s.unsubscribe(c)

    # --- session interaction ----------------------------------------------------------

    async def join_session(self, conn: Connection, msg: p.JoinSession) -> None:
        s = self.session(conn, msg.sessionId)
        s.subscribe(conn)
        if s.status == "inactive":
            s.activate()
        conn.send(s.snapshot())

    async def leave_session(self, conn: Connection, msg: p.LeaveSession) -> None:
        s = self.session(conn, msg.sessionId)
        s.unsubscribe(conn)
        conn.send(p.SessionLeft(sessionId=s.id))

    async def run_turn(self, conn: Connection, msg: p.RunTurn) -> None:
        s = self.session(conn, msg.sessionId)
        # clientTurnId is ours: a gateway without it reads past the field (no echo, no
        # dedup).
        client_turn_id = msg.clientTurnId if self.gw.profile.client_turn_ids else None
        if client_turn_id is not None:
            original = s.client_turns.get(client_turn_id)
            if original is not None:  # a retry: answer with the turn it already started
                conn.send_frame(original)
                return
        if s.turn is not None:
            raise GatewayError(
                "TurnInProgress",
                f"A turn is already running in this session ({s.turn.id})",
            )
        s.start_turn(msg.text, client_turn_id, conn)

    async def stop_turn(self, conn: Connection, msg: p.StopTurn) -> None:
        s = self.session(conn, msg.sessionId)
        turn = s.turn
        if turn is None or (msg.turnId is not None and msg.turnId != turn.id):
            raise GatewayError("NoActiveTurn", "No turn is running in this session")
        s.end_turn(turn, stop_reason="stopped", reply_to=conn)

    async def steer(self, conn: Connection, msg: p.Steer) -> None:
        s = self.session(conn, msg.sessionId)
        if s.turn is None:
            raise GatewayError("NoActiveTurn", "No turn is running in this session")
        s.turn.steer(msg.content, conn)

    async def answer_question(self, conn: Connection, msg: p.AnswerQuestion) -> None:
        s = self.session(conn, msg.sessionId)
        if msg.answers is None and msg.approved is None and msg.dismissed is None:
            raise GatewayError(
                "INVALID_MESSAGE",
                "answer_question needs answers, approved or dismissed",
            )
        if s.turn is None:
            raise GatewayError(
                "RequestNotFound",
                f"No open question or permission request {msg.requestId!r}",
            )
        s.turn.resolve(
            msg.requestId,
            conn,
            answers=msg.answers,
            approved=msg.approved,
            dismissed=msg.dismissed,
        )

    # --- data retrieval ---------------------------------------------------------------

    async def get_history(self, conn: Connection, msg: p.GetHistory) -> None:
        s = self.session(conn, msg.sessionId)
        conn.send(p.History(sessionId=s.id, turns=await s.history()))

    async def get_events(self, conn: Connection, msg: p.GetEvents) -> None:
        # "error" never gets here: the decoder refuses get_events at the schema stage.
        if self.gw.profile.get_events == "silent":
            # a gateway that takes get_events and never answers it, not even with an
            # error
            return
        s = self.session(conn, msg.sessionId)
        limit = min(msg.limit or DEFAULT_EVENTS_LIMIT, MAX_EVENTS_LIMIT)
        frames, more = await self.gw.db.run(
            Database.events_after, s.id, msg.afterSeq, limit
        )
        # Stored frames are spliced in as they are: no decode, no re-encode.
        events = [msgspec.Raw(f) for f in frames]
        conn.send(p.EventList(sessionId=s.id, events=events, hasMore=more))  # type: ignore[arg-type]

    async def ping(self, conn: Connection, msg: p.Ping) -> None:
        # The docs name no answer to ping (`pong` is ours): a gateway may take it as
        # keepalive only.
        if self.gw.profile.ping_answered:
            conn.send(p.Pong(ts=now_ms()))

    # --- files ------------------------------------------------------------------------

    async def list_files(self, conn: Connection, msg: p.ListFiles) -> None:
        s = self.session(conn, msg.sessionId)
        path = normalize_path(msg.path or "", allow_root=True)
        files = await s.workspace.list(path, msg.depth)
        conn.send(p.FileList(sessionId=s.id, path=path, files=files))

    async def read_file(self, conn: Connection, msg: p.ReadFile) -> None:
        s = self.session(conn, msg.sessionId)
        conn.send(_content(s.id, await s.workspace.read(msg.path)))

    async def file_history(self, conn: Connection, msg: p.FileHistory) -> None:
        s = self.session(conn, msg.sessionId)
        path = normalize_path(msg.path)
        iterations = await s.workspace.history(path)
        conn.send(p.FileHistoryList(sessionId=s.id, path=path, iterations=iterations))

    async def file_at_iteration(self, conn: Connection, msg: p.FileAtIteration) -> None:
        s = self.session(conn, msg.sessionId)
        conn.send(
            _content(s.id, await s.workspace.at_iteration(msg.path, msg.iteration))
        )

    # --- administration ---------------------------------------------------------------

    async def manage_members(self, conn: Connection, msg: p.ManageMembers) -> None:
        tenant = conn.identity.tenantId  # type: ignore[union-attr]
        members = self.gw.members_of(tenant)
        now = now_ms()
        if msg.action != "list":
            if msg.userId is None:
                raise GatewayError(
                    "INVALID_MESSAGE", f"manage_members {msg.action} needs userId"
                )
            current = members.get(msg.userId)
            owners = [m for m in members.values() if m.role == "owner"]
            if msg.action == "add":
                if current is not None:
                    raise GatewayError(
                        "MemberExists", f"{msg.userId} is already a member"
                    )
                members[msg.userId] = p.Member(
                    userId=msg.userId,
                    role=msg.role or "member",
                    createdAt=now,
                    updatedAt=now,
                )
            elif current is None:
                raise GatewayError("MemberNotFound", f"{msg.userId} is not a member")
            elif msg.action == "remove":
                if current.role == "owner" and len(owners) == 1:
                    raise GatewayError("LastOwner", "The last owner cannot be removed")
                del members[msg.userId]
            else:  # set_role
                if msg.role is None:
                    raise GatewayError(
                        "INVALID_MESSAGE", "manage_members set_role needs role"
                    )
                if current.role == "owner" and msg.role != "owner" and len(owners) == 1:
                    raise GatewayError("LastOwner", "The last owner cannot be demoted")
                current.role, current.updatedAt = msg.role, now
            m = members.get(msg.userId)
            if m is None:
                self.gw.db.write(DELETE_MEMBER, (tenant, msg.userId))
            else:
                self.gw.db.write(
                    UPSERT_MEMBER, (tenant, m.userId, m.role, m.createdAt, m.updatedAt)
                )
            await self.gw.db.commit()
        conn.send(
            p.MemberList(
                members=sorted(members.values(), key=lambda m: (m.createdAt, m.userId))
            )
        )


def _content(session_id: str, version: FileVersion) -> p.FileContent:
    try:
        content, encoding = version.content.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        content, encoding = base64.b64encode(version.content).decode("ascii"), "base64"
    return p.FileContent(
        sessionId=session_id,
        path=version.path,
        iteration=version.iteration,
        content=content,
        encoding=encoding,
    )
