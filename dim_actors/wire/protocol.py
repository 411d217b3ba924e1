"""The Diminuendo v1 wire protocol as msgspec Structs.

One JSON object per WebSocket text frame, discriminated by ``type``, camelCase fields.
Names and fields the public reference documents are used exactly; where it is silent the
choices are ours and are listed in ``docs/protocol.md`` (the catalogue) and
``docs/contracts.md`` §1-2 (the contract).

Decoding is lenient towards the gateway (unknown fields are ignored by typed decoding,
unknown event types come back as ``UnknownEvent`` with every field kept) and strict
towards clients (a frame that matches no client message is a ``ProtocolError``), the
same split the real gateway makes.
"""

from __future__ import annotations

import functools
import itertools
import operator
import re
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from typing import Annotated, Any, Literal, TypeVar, Union

import msgspec

from dim_actors.wire.limits import MAX_FRAME_BYTES

__all__ = [
    "PROTOCOL_VERSION",
    "ProtocolError",
    "EventHead",
    "decode_head",
    "CLIENT_MESSAGES",
    "build_client_message",
    "decode_client_message",
    "SERVER_EVENTS",
    "UnknownEvent",
    "decode_event",
    "tolerant",
    "encode",
    "RESPONSES",
    "SESSION_STATES",
    "MAX_FRAME_BYTES",
]

PROTOCOL_VERSION = 1
SESSION_STATES = (
    "inactive",
    "activating",
    "ready",
    "running",
    "waiting",
    "error",
    "deactivating",
)


class ProtocolError(Exception):
    """A frame that cannot be read as the protocol says. ``code`` is the wire error
    code."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Positive = Annotated[int, msgspec.Meta(ge=1)]


# --- client -> server -----------------------------------------------------------------


class ClientMessage(msgspec.Struct, tag_field="type", omit_defaults=True, kw_only=True):
    """Base of the 21 client messages; the tag is the wire ``type``."""


class Authenticate(ClientMessage, tag="authenticate", kw_only=True):
    # Empty is valid on the wire: rejecting it is the gateway's auth decision, not a
    # schema one.
    token: str


class ListSessions(ClientMessage, tag="list_sessions", kw_only=True):
    includeArchived: bool | None = None


class CreateSession(ClientMessage, tag="create_session", kw_only=True):
    agentType: NonEmpty
    name: str | None = None


class RenameSession(ClientMessage, tag="rename_session", kw_only=True):
    sessionId: NonEmpty
    name: NonEmpty


class ArchiveSession(ClientMessage, tag="archive_session", kw_only=True):
    sessionId: NonEmpty


class UnarchiveSession(ClientMessage, tag="unarchive_session", kw_only=True):
    sessionId: NonEmpty


class DeleteSession(ClientMessage, tag="delete_session", kw_only=True):
    sessionId: NonEmpty


class JoinSession(ClientMessage, tag="join_session", kw_only=True):
    sessionId: NonEmpty


class LeaveSession(ClientMessage, tag="leave_session", kw_only=True):
    sessionId: NonEmpty


class RunTurn(ClientMessage, tag="run_turn", kw_only=True):
    sessionId: NonEmpty
    text: str
    clientTurnId: NonEmpty | None = None  # ours: makes a retried run_turn idempotent


class StopTurn(ClientMessage, tag="stop_turn", kw_only=True):
    sessionId: NonEmpty
    turnId: NonEmpty | None = None  # ours: a stale stop must not end the turn after it


class Steer(ClientMessage, tag="steer", kw_only=True):
    sessionId: NonEmpty
    content: str


class AnswerQuestion(ClientMessage, tag="answer_question", kw_only=True):
    sessionId: NonEmpty
    requestId: NonEmpty
    answers: list[str] | None = None
    approved: bool | None = None
    dismissed: bool | None = None


class GetHistory(ClientMessage, tag="get_history", kw_only=True):
    sessionId: NonEmpty


class GetEvents(ClientMessage, tag="get_events", kw_only=True):
    sessionId: NonEmpty
    afterSeq: NonNegative
    # gateway default 1000, larger values are capped at 10000
    limit: Positive | None = None


class Ping(ClientMessage, tag="ping", kw_only=True):
    pass


class ListFiles(ClientMessage, tag="list_files", kw_only=True):
    sessionId: NonEmpty
    path: str | None = None
    depth: Positive | None = None


class ReadFile(ClientMessage, tag="read_file", kw_only=True):
    sessionId: NonEmpty
    path: str


class FileHistory(ClientMessage, tag="file_history", kw_only=True):
    sessionId: NonEmpty
    path: str


class FileAtIteration(ClientMessage, tag="file_at_iteration", kw_only=True):
    sessionId: NonEmpty
    path: str
    iteration: Positive


MemberRole = Literal["owner", "admin", "billing_admin", "member", "viewer"]


class ManageMembers(ClientMessage, tag="manage_members", kw_only=True):
    action: Literal["list", "add", "remove", "set_role"]
    userId: NonEmpty | None = None
    role: MemberRole | None = None


_CLIENT_TYPES = (
    Authenticate,
    ListSessions,
    CreateSession,
    RenameSession,
    ArchiveSession,
    UnarchiveSession,
    DeleteSession,
    JoinSession,
    LeaveSession,
    RunTurn,
    StopTurn,
    Steer,
    AnswerQuestion,
    GetHistory,
    GetEvents,
    Ping,
    ListFiles,
    ReadFile,
    FileHistory,
    FileAtIteration,
    ManageMembers,
)

CLIENT_MESSAGES: dict[str, type[msgspec.Struct]] = {
    str(t.__struct_config__.tag): t for t in _CLIENT_TYPES
}


# --- values carried inside events -----------------------------------------------------


class Value(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Base of the nested objects; unknown fields are ignored like everywhere else."""


class Identity(Value):
    userId: str
    email: str
    tenantId: str


class SessionMeta(Value):
    id: str
    name: str
    agentType: str
    # one of SESSION_STATES; a plain str so a newer gateway's state does not break us
    status: str
    archived: bool
    createdAt: int
    updatedAt: int
    lastSeq: int


class Usage(Value):
    inputTokens: int
    outputTokens: int


class FileEntry(Value):
    path: str
    name: str
    type: str  # "file" | "directory"
    size: int | None = None
    iteration: int | None = None
    hash: str | None = None
    modifiedAt: int | None = None


class IterationMeta(Value):
    iteration: int
    timestamp: int
    size: int
    hash: str
    deleted: bool | None = None
    renamedFrom: str | None = None


class TurnFailure(Value):
    code: str
    message: str


class HistoryTurn(Value):
    turnId: str
    text: str
    status: str  # running | waiting | complete | error | stopped
    startedSeq: int
    startedAt: int
    clientTurnId: str | None = None
    finalText: str | None = None
    stopReason: str | None = None
    error: TurnFailure | None = None
    endedSeq: int | None = None
    endedAt: int | None = None


class Member(Value):
    userId: str
    role: str
    createdAt: int
    updatedAt: int


# --- server -> client -----------------------------------------------------------------


class ServerEvent(msgspec.Struct, tag_field="type", omit_defaults=True, kw_only=True):
    """Base of every server event without the session envelope."""


class SessionEvent(ServerEvent, kw_only=True):
    """Base of session-scoped events: the envelope of §3 of the reference.

    All optional so that a gateway leaving one out still decodes; ours always fills
    ``sessionId``, and ``seq``/``ts`` on every durable (stream) event, ``turnId`` inside
    a turn.
    """

    sessionId: str | None = None
    turnId: str | None = None
    seq: int | None = None
    ts: int | None = None


# connection lifecycle (documented)
class Welcome(ServerEvent, tag="welcome", kw_only=True):
    protocolVersion: int
    requiresAuth: bool


class Connected(ServerEvent, tag="connected", kw_only=True):
    clientId: str
    heartbeatIntervalMs: int
    ts: int


class Authenticated(ServerEvent, tag="authenticated", kw_only=True):
    identity: Identity


class Heartbeat(ServerEvent, tag="heartbeat", kw_only=True):
    ts: int


# session lifecycle
class SessionList(ServerEvent, tag="session_list", kw_only=True):
    sessions: list[SessionMeta]


class SessionCreated(SessionEvent, tag="session_created", kw_only=True):
    session: SessionMeta


class SessionRenamed(SessionEvent, tag="session_renamed", kw_only=True):
    name: str


class SessionArchived(SessionEvent, tag="session_archived", kw_only=True):
    pass


class SessionUnarchived(SessionEvent, tag="session_unarchived", kw_only=True):
    pass


class SessionDeleted(SessionEvent, tag="session_deleted", kw_only=True):
    pass


class SessionStateChanged(SessionEvent, tag="session_state", kw_only=True):
    status: str
    previousStatus: str


class StateSnapshot(SessionEvent, tag="state_snapshot", kw_only=True):
    session: SessionMeta
    lastSeq: int
    pendingRequests: list[
        dict[str, Any]
    ]  # the open question/permission events, as sent
    activeTurnId: str | None = None


class SessionLeft(SessionEvent, tag="session_left", kw_only=True):
    pass


# turns
class TurnStarted(SessionEvent, tag="turn_started", kw_only=True):
    text: str
    clientTurnId: str | None = None  # ours: echoes run_turn.clientTurnId


class TextDelta(SessionEvent, tag="text_delta", kw_only=True):
    text: str
    # The gateway's send time in ns, only in benchmark streams (`/stream N RATE stamp`).
    sentNs: int | None = None


class MessageDelta(SessionEvent, tag="message.delta", kw_only=True):
    # Documented name ("extended streaming"), undocumented fields. Ours: a piece of
    # streamed message text, like text_delta; messageId groups the pieces of one
    # message. Only /emit sends it here.
    text: str | None = None
    messageId: str | None = None


class TurnComplete(SessionEvent, tag="turn_complete", kw_only=True):
    finalText: str
    stopReason: str | None = None  # ours: "end_turn" | "stopped"
    usage: Usage | None = None


class TurnError(SessionEvent, tag="turn_error", kw_only=True):
    code: str
    message: str


class SteerReceived(SessionEvent, tag="steer_received", kw_only=True):
    content: str


class UsageUpdate(SessionEvent, tag="usage_update", kw_only=True):
    inputTokens: int
    outputTokens: int


# planning (names: the reference's v2-era docs, §2.4; fields ours). Only /emit sends
# these here.
class PlanStep(Value):
    stepId: str
    title: str
    # pending | running | done | failed | skipped (absent: pending)
    status: str | None = None


class PlanCreated(SessionEvent, tag="plan.created", kw_only=True):
    planId: str
    steps: list[PlanStep]


class PlanStepStarted(SessionEvent, tag="plan.step_started", kw_only=True):
    planId: str
    stepId: str


class PlanStepCompleted(SessionEvent, tag="plan.step_completed", kw_only=True):
    planId: str
    stepId: str
    status: str | None = None  # done (the default) | failed | skipped
    summary: str | None = None


class PlanRevised(SessionEvent, tag="plan.revised", kw_only=True):
    planId: str
    steps: list[
        PlanStep
    ]  # the whole new plan; a step keeps its status when its stepId stays
    reason: str | None = None


# thinking
class ThinkingStart(SessionEvent, tag="thinking.start", kw_only=True):
    pass


class ThinkingProgress(SessionEvent, tag="thinking.progress", kw_only=True):
    text: str


class ThinkingComplete(SessionEvent, tag="thinking.complete", kw_only=True):
    pass


# tools
class ToolCallStart(SessionEvent, tag="tool_call_start", kw_only=True):
    toolCallId: str
    toolName: str


class ToolCallDelta(SessionEvent, tag="tool_call_delta", kw_only=True):
    toolCallId: str
    argsDelta: str


class ToolCall(SessionEvent, tag="tool_call", kw_only=True):
    toolCallId: str
    toolName: str
    args: Any


class ToolResult(SessionEvent, tag="tool_result", kw_only=True):
    toolCallId: str
    result: Any


class ToolError(SessionEvent, tag="tool_error", kw_only=True):
    toolCallId: str
    error: str


# questions and permissions
class QuestionRequested(SessionEvent, tag="question_requested", kw_only=True):
    requestId: str
    question: str
    options: list[str] | None = None


class PermissionRequested(SessionEvent, tag="permission_requested", kw_only=True):
    requestId: str
    action: str


class ApprovalResolved(SessionEvent, tag="approval_resolved", kw_only=True):
    requestId: str
    answers: list[str] | None = None
    approved: bool | None = None
    dismissed: bool | None = None


# terminal
class TerminalStream(SessionEvent, tag="terminal.stream", kw_only=True):
    terminalId: str
    text: str


class TerminalComplete(SessionEvent, tag="terminal.complete", kw_only=True):
    terminalId: str
    exitCode: int


# sandbox
class SandboxInit(SessionEvent, tag="sandbox_init", kw_only=True):
    provider: str


class SandboxProvisioning(SessionEvent, tag="sandbox_provisioning", kw_only=True):
    phase: str
    message: str | None = None


class SandboxReady(SessionEvent, tag="sandbox_ready", kw_only=True):
    pass


class SandboxRemoved(SessionEvent, tag="sandbox_removed", kw_only=True):
    pass


# files
class FileChanged(SessionEvent, tag="file_changed", kw_only=True):
    path: str
    iteration: int
    size: int
    hash: str  # sha256 hex of the content; "" for a deletion
    deleted: bool | None = None
    renamedFrom: str | None = None


class FileList(SessionEvent, tag="file_list", kw_only=True):
    path: str
    files: list[FileEntry]


class FileContent(SessionEvent, tag="file_content", kw_only=True):
    path: str
    iteration: int
    content: str
    encoding: str  # "utf-8" or "base64"


class FileHistoryList(SessionEvent, tag="file_history_list", kw_only=True):
    path: str
    iterations: list[IterationMeta]


# data retrieval
class History(SessionEvent, tag="history", kw_only=True):
    turns: list[HistoryTurn]


class EventList(SessionEvent, tag="event_list", kw_only=True):
    # Each item is a stored event exactly as it was sent. The dev gateway fills this
    # with msgspec.Raw values so pages are spliced from stored bytes without
    # re-encoding.
    events: list[dict[str, Any]]
    hasMore: bool


class Pong(ServerEvent, tag="pong", kw_only=True):
    ts: int


# members
class MemberList(ServerEvent, tag="member_list", kw_only=True):
    members: list[Member]


# errors (never carry sessionId/seq/ts; unicast to the offending connection)
class ErrorEvent(ServerEvent, tag="error", kw_only=True):
    code: str
    message: str
    retryAfterMs: int | None = None


_EVENT_TYPES = (
    Welcome,
    Connected,
    Authenticated,
    Heartbeat,
    SessionList,
    SessionCreated,
    SessionRenamed,
    SessionArchived,
    SessionUnarchived,
    SessionDeleted,
    SessionStateChanged,
    StateSnapshot,
    SessionLeft,
    TurnStarted,
    TextDelta,
    MessageDelta,
    TurnComplete,
    TurnError,
    SteerReceived,
    UsageUpdate,
    PlanCreated,
    PlanStepStarted,
    PlanStepCompleted,
    PlanRevised,
    ThinkingStart,
    ThinkingProgress,
    ThinkingComplete,
    ToolCallStart,
    ToolCallDelta,
    ToolCall,
    ToolResult,
    ToolError,
    QuestionRequested,
    PermissionRequested,
    ApprovalResolved,
    TerminalStream,
    TerminalComplete,
    SandboxInit,
    SandboxProvisioning,
    SandboxReady,
    SandboxRemoved,
    FileChanged,
    FileList,
    FileContent,
    FileHistoryList,
    History,
    EventList,
    Pong,
    MemberList,
    ErrorEvent,
)

SERVER_EVENTS: dict[str, type[msgspec.Struct]] = {
    str(t.__struct_config__.tag): t for t in _EVENT_TYPES
}

# Which event types answer which request (v1 has no request ids; see docs/protocol.md,
# correlation).
RESPONSES: dict[str, frozenset[str]] = {
    "authenticate": frozenset({"authenticated"}),
    "list_sessions": frozenset({"session_list"}),
    "create_session": frozenset({"session_created"}),
    "rename_session": frozenset({"session_renamed"}),
    "archive_session": frozenset({"session_archived"}),
    "unarchive_session": frozenset({"session_unarchived"}),
    "delete_session": frozenset({"session_deleted"}),
    "join_session": frozenset({"state_snapshot"}),
    "leave_session": frozenset({"session_left"}),
    "run_turn": frozenset({"turn_started"}),
    "stop_turn": frozenset({"turn_complete", "turn_error"}),
    "steer": frozenset({"steer_received"}),
    "answer_question": frozenset({"approval_resolved"}),
    "get_history": frozenset({"history"}),
    "get_events": frozenset({"event_list"}),
    "ping": frozenset({"pong"}),
    "list_files": frozenset({"file_list"}),
    "read_file": frozenset({"file_content"}),
    "file_history": frozenset({"file_history_list"}),
    "file_at_iteration": frozenset({"file_content"}),
    "manage_members": frozenset({"member_list"}),
}


class UnknownEvent(msgspec.Struct):
    """An event we have no Struct for (or one whose fields did not match ours), kept
    whole.

    ``data`` is the full JSON object including ``type``; ``error`` says why typed
    decoding was not used when the type is known but the fields were not what we expect
    (None for unknown types).
    """

    type: str
    data: dict[str, Any]
    error: str | None = None


# --- encoding / decoding --------------------------------------------------------------


class EventHead(msgspec.Struct):
    """The envelope of any server event; decoding skips every other field."""

    type: str
    sessionId: str | None = None
    turnId: str | None = None
    seq: int | None = None
    ts: int | None = None


class _TypeOnly(msgspec.Struct):
    type: Any = None


_encoder = msgspec.json.Encoder()
_head_decoder = msgspec.json.Decoder(EventHead)
_type_decoder = msgspec.json.Decoder(_TypeOnly)
_dict_decoder = msgspec.json.Decoder(dict[str, Any])
_client_decoder = msgspec.json.Decoder(Union[_CLIENT_TYPES])  # noqa: UP007
_event_decoder = msgspec.json.Decoder(Union[_EVENT_TYPES])  # noqa: UP007
_event_decoders = {name: msgspec.json.Decoder(t) for name, t in SERVER_EVENTS.items()}


def encode(struct: Any) -> bytes:
    """JSON bytes of a Struct (or any msgspec-encodable value); None-default fields are
    omitted."""
    return _encoder.encode(struct)


# --- depth and code points: what msgspec cannot decode, bounded and repaired first ----

# No event of the protocol nests anywhere near this; msgspec's own limit (Python's
# recursion limit) raises RecursionError, which is no decoding error at all, somewhere
# past ~1000.
MAX_DEPTH = 100
# What stands for a container nested past the limit once it is cut out (prune_deep): a
# JSON string no gateway sends (it starts with U+0000), so an event holding it is known
# to have been cut.
TOO_DEEP_MARK = b'"\\u0000nested too deep"'
_STRUCTURAL = re.compile(rb'[\[\]{}"\\]')


def _structure(raw: bytes) -> Iterator[tuple[int, int]]:
    """(position, byte) of each bracket and brace outside JSON strings, positions in
    `raw`."""
    in_string, skip = False, -1
    for m in _STRUCTURAL.finditer(raw):
        i = m.start()
        if i < skip:
            continue  # the character a backslash escapes
        c = raw[i]
        if in_string:
            if c == 0x5C:
                skip = i + 2
            elif c == 0x22:
                in_string = False
        elif c == 0x22:
            in_string = True
        elif c != 0x5C:
            yield i, c


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
# less 1: an open +1, a close -1
_BRACKET_STEP = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")


def nesting_depth(raw: bytes) -> int:
    """How deep arrays and objects nest in a JSON text (0 for a scalar). Read off the
    bytes by the regex engine (strings cut out) and translate, at C speed, never by
    recursion: an 8 MiB text full of brackets costs a fraction of a second."""
    brackets = _STRING.sub(b"", raw).translate(_BRACKET_STEP, _NOT_BRACKETS)
    return max(
        itertools.accumulate(map(operator.sub, brackets, itertools.repeat(1))),
        default=0,
    )


def too_deep(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether `raw` nests deeper than `limit`. A frame too short to hold that many
    brackets, or holding no more than the limit (counted at memchr speed), cannot: only
    a frame with many brackets is scanned."""
    if len(raw) <= 2 * limit or raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    return nesting_depth(raw) > limit


def prune_deep(raw: bytes, limit: int) -> tuple[bytes, int]:
    """`raw` with each container opened below depth `limit` replaced, whole, by
    TOO_DEEP_MARK; and how many were. A page of events stays readable when one of its
    events nests too deep."""
    out: list[bytes] = []
    depth, start, kept, cut = 0, -1, 0, 0
    for i, c in _structure(raw):
        if c in (0x5B, 0x7B):
            depth += 1
            if depth == limit + 1:
                start = i
        else:
            if depth == limit + 1 and start >= 0:
                out += [raw[kept:start], TOO_DEEP_MARK]
                kept, start, cut = i + 1, -1, cut + 1
            depth -= 1
    out.append(raw[kept:])
    return b"".join(out), cut


# A lone UTF-16 surrogate in a \u escape (valid JSON syntax, but no character): msgspec
# refuses the whole text. Escaped backslashes are matched first, so "\\ud83d" (a
# backslash, then "ud83d") stays.
_SURROGATE_ESCAPES = re.compile(
    rb"\\\\|\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})|\\u(d[89a-f][0-9a-f]{2})",
    re.IGNORECASE,
)


def replace_lone_surrogates(raw: bytes) -> tuple[bytes, int]:
    """`raw` with each lone surrogate escape replaced by U+FFFD's, and how many were."""
    count = 0

    def fix(m: re.Match[bytes]) -> bytes:
        nonlocal count
        if m.group(3) is None:
            return m.group(0)  # an escaped backslash, or a proper surrogate pair
        count += 1
        return b"\\ufffd"

    fixed = _SURROGATE_ESCAPES.sub(fix, raw)
    return fixed, count


def decode_head(raw: bytes | str, max_depth: int | None = MAX_DEPTH) -> EventHead:
    """The envelope of a server frame, without building the rest of it. A frame nested
    deeper than `max_depth` (None: the caller checked) is a ProtocolError TOO_DEEP,
    never a RecursionError."""
    data = raw.encode() if isinstance(raw, str) else raw
    if max_depth is not None and too_deep(data, max_depth):
        raise ProtocolError("TOO_DEEP", f"nested deeper than {max_depth} levels")
    try:
        return _head_decoder.decode(raw)
    except msgspec.ValidationError as e:
        raise ProtocolError("INVALID_MESSAGE", f"not an event: {e}") from None
    except msgspec.DecodeError as e:
        raise ProtocolError("INVALID_JSON", f"not JSON: {e}") from None
    except RecursionError:
        raise ProtocolError("TOO_DEEP", "nested too deep to decode") from None


def decode_event(raw: bytes | str) -> msgspec.Struct | UnknownEvent:
    """A server frame as its Struct, or ``UnknownEvent`` when we do not know it (never
    lossy)."""
    try:
        return _event_decoder.decode(raw)
    except msgspec.ValidationError as e:
        typed_error = str(e)
    except msgspec.DecodeError as e:
        raise ProtocolError("INVALID_JSON", f"not JSON: {e}") from None
    try:
        data = _dict_decoder.decode(raw)
    except msgspec.ValidationError:
        raise ProtocolError(
            "INVALID_MESSAGE", "an event must be a JSON object"
        ) from None
    type_ = data.get("type")
    if not isinstance(type_, str):
        raise ProtocolError("INVALID_MESSAGE", "an event must have a string 'type'")
    return UnknownEvent(type_, data, typed_error if type_ in SERVER_EVENTS else None)


def explain_invalid(
    raw: bytes | str,
    err: msgspec.ValidationError,
    known: Mapping[str, type[msgspec.Struct]] | None = None,
) -> str:
    """A readable reason why a JSON frame is none of the client messages `known` (ours
    by default)."""
    try:
        type_ = _type_decoder.decode(raw).type
    except msgspec.ValidationError:
        return "a message must be a JSON object"
    if type_ is None:
        return "missing 'type' field"
    if not isinstance(type_, str):
        return "'type' must be a string"
    if type_ not in (CLIENT_MESSAGES if known is None else known):
        return f"unknown message type {type_!r}"
    return f"invalid {type_}: {err}"


def decode_client_message(raw: bytes | str) -> msgspec.Struct:
    """A client frame as its Struct; ProtocolError INVALID_JSON / INVALID_MESSAGE
    otherwise."""
    try:
        return _client_decoder.decode(raw)
    except msgspec.ValidationError as e:
        raise ProtocolError("INVALID_MESSAGE", explain_invalid(raw, e)) from None
    except msgspec.DecodeError as e:
        raise ProtocolError("INVALID_JSON", f"not valid JSON: {e}") from None


def build_client_message(type: str, args: dict[str, Any]) -> bytes:
    """A validated client frame. Unknown keys are refused so a misspelt argument is not
    dropped."""
    cls = CLIENT_MESSAGES.get(type)
    if cls is None:
        raise ProtocolError("INVALID_MESSAGE", f"unknown message type {type!r}")
    fields = {k: v for k, v in (args or {}).items() if v is not None}
    given_type = fields.pop("type", type)
    if given_type != type:
        raise ProtocolError(
            "INVALID_MESSAGE", f"'type' {given_type!r} does not match {type!r}"
        )
    unknown = sorted(set(fields) - set(cls.__struct_fields__))
    if unknown:
        allowed = ", ".join(cls.__struct_fields__) or "none"
        raise ProtocolError(
            "INVALID_MESSAGE",
            f"{type}: unknown field(s) {', '.join(unknown)} (allowed: {allowed})",
        )
    try:
        msg = msgspec.convert(fields, cls)
    except msgspec.ValidationError as e:
        raise ProtocolError("INVALID_MESSAGE", f"invalid {type}: {e}") from None
    return _encoder.encode(msg)


# --- reading events as a client -------------------------------------------------------

_S = TypeVar("_S", bound=msgspec.Struct)
_TOLERANT: dict[tuple[type, tuple[str, ...] | None], type] = {}


def _tolerant_type(tp: Any) -> Any:
    """`tp` with the Structs inside it read tolerantly (every field of theirs checked)."""
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return tolerant(tp)
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin is list:
        return list[_tolerant_type(args[0])]  # type: ignore[misc]
    if origin in (Union, types.UnionType):
        return functools.reduce(operator.or_, (_tolerant_type(a) for a in args))
    return tp


def tolerant(cls: type[_S], checked: Iterable[str] | None = None) -> type[_S]:
    """A subclass of the Struct `cls` for reading what a gateway sent, as a client must
    (docs/contracts.md §3): any field may be absent (then None, nested objects alike),
    and only the fields named in `checked` (every field when None) must have their type;
    the others are read as they come (Any). An event a reader cannot use is one whose
    *used* fields are mistyped, so each reader names what it uses. Gateways, ours
    included, still write the strict `cls`.

    Decoded values are instances of `cls` (`match` on the protocol's classes works), but
    a field may hold None where `cls` requires a value, and an unchecked one anything:
    read them as such."""
    names = None if checked is None else tuple(sorted(set(checked)))
    key = (cls, names)
    made = _TOLERANT.get(key)
    if made is None:
        fields = []
        for f in msgspec.structs.fields(cls):
            typed = names is None or f.name in names
            fields.append(
                (f.name, _tolerant_type(f.type) | None if typed else Any, None)
            )
        made = msgspec.defstruct(
            f"Tolerant{cls.__name__}",
            fields,
            bases=(cls,),
            kw_only=True,
            tag=cls.__struct_config__.tag,
        )
        _TOLERANT[key] = made
    return made
