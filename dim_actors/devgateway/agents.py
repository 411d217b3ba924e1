"""The scripted agents of the dev gateway: ``echo`` and ``coding-agent``.

``echo`` streams the user's text back word by word. ``coding-agent`` reads the turn text
as a script, one command per line (see docs/dev-gateway.md); plain lines are answered as
text, word by word.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, cast

import msgspec

from dim_actors.wire.protocol import (
    SessionEvent,
    TerminalComplete,
    TerminalStream,
    ThinkingComplete,
    ThinkingProgress,
    ThinkingStart,
    ToolCall,
    ToolCallStart,
    ToolError,
    ToolResult,
)

from .turns import Turn, TurnFailed, new_id

_WORDS = re.compile(r"\s*\S+")
_ESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def words(text: str) -> list[str]:
    """'hello world' -> ['hello', ' world']: each word keeps the whitespace before it."""
    return _WORDS.findall(text)


def unescape(text: str) -> str:
    """Turn the script escapes \\n, \\t, \\r and \\\\ into characters; leave others as
    written."""
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m[1], m[0]), text)


async def say(turn: Turn, text: str) -> None:
    for piece in words(text):
        turn.delta(piece)
        await turn.tick()


class EchoAgent:
    name = "echo"
    sandbox: str | None = None

    async def run(self, turn: Turn) -> None:
        await say(turn, turn.text)


Command = Callable[[Turn, str], Awaitable[None]]


class CodingAgent:
    """A scripted stand-in for a coding agent; each ``/command`` exercises one family of
    events."""

    name = "coding-agent"
    sandbox: str | None = "local"

    def __init__(self, faults=None) -> None:
        # the gateway's fault injector (devgateway/faults.py), if any
        self.faults = faults
        self.commands: dict[str, Command] = {
            "/think": self.think,
            "/tool": self.tool,
            "/tool-error": self.tool_error,
            "/terminal": self.terminal,
            "/write": self.write,
            "/delete": self.delete,
            "/rename": self.rename,
            "/ask": self.ask,
            "/permission": self.permission,
            "/stream": self.stream,
            "/sleep": self.sleep,
            "/fail": self.fail,
            "/emit": self.emit,
            "/emit-session": self.emit_session,
            "/emit-unsequenced": self.emit_unsequenced,
            "/silence": self.silence,
            "/drop": self.drop,
        }

    async def run(self, turn: Turn) -> None:
        for line in turn.text.splitlines():
            if not line.strip():
                continue
            name, _, rest = line.strip().partition(" ")
            command = self.commands.get(name)
            if (
                command is None
                # not a command: plain text, so "/usr/bin is missing" still reads as
                # text
            ):
                await self.plain(turn, line)
            else:
                await command(turn, rest.strip())
            await turn.checkpoint()

    async def plain(self, turn: Turn, line: str) -> None:
        pieces = words(line)
        if pieces and turn.parts:
            pieces[0] = "\n" + pieces[0].lstrip()  # one line of output per script line
        for piece in pieces:
            turn.delta(piece)
            await turn.tick()

    async def think(self, turn: Turn, text: str) -> None:
        turn.emit(ThinkingStart())
        if text:  # the real mapper drops empty thinking content
            turn.emit(ThinkingProgress(text=unescape(text)))
        turn.emit(ThinkingComplete())

    async def tool(self, turn: Turn, rest: str) -> None:
        name, _, raw_args = rest.partition(" ")
        if not name:
            raise TurnFailed("InvalidScript", "/tool needs a tool name")
        try:
            args = json.loads(raw_args) if raw_args.strip() else {}
        except ValueError:
            args = raw_args  # not JSON: pass the text through as the argument
        call_id = new_id("call")
        turn.emit(ToolCallStart(toolCallId=call_id, toolName=name))
        turn.emit(ToolCall(toolCallId=call_id, toolName=name, args=args))
        turn.emit(
            ToolResult(
                toolCallId=call_id, result={"ok": True, "tool": name, "args": args}
            )
        )

    async def tool_error(self, turn: Turn, rest: str) -> None:
        name, _, message = rest.partition(" ")
        if not name:
            raise TurnFailed("InvalidScript", "/tool-error needs a tool name")
        call_id = new_id("call")
        turn.emit(ToolCallStart(toolCallId=call_id, toolName=name))
        turn.emit(ToolCall(toolCallId=call_id, toolName=name, args={}))
        turn.emit(
            ToolError(toolCallId=call_id, error=unescape(message) or "tool failed")
        )

    async def terminal(self, turn: Turn, text: str) -> None:
        terminal_id = new_id("term")
        for line in unescape(text).split("\n"):
            turn.emit(TerminalStream(terminalId=terminal_id, text=line + "\n"))
            await turn.tick()
        turn.emit(TerminalComplete(terminalId=terminal_id, exitCode=0))

    async def write(self, turn: Turn, rest: str) -> None:
        path, _, content = rest.partition(" ")
        if not path:
            raise TurnFailed("InvalidScript", "/write needs a path")
        await turn.workspace.write(path, unescape(content).encode("utf-8"))

    async def delete(self, turn: Turn, path: str) -> None:
        if not path:
            raise TurnFailed("InvalidScript", "/delete needs a path")
        await turn.workspace.delete(path)

    async def rename(self, turn: Turn, rest: str) -> None:
        parts = rest.split()
        if len(parts) != 2:
            raise TurnFailed("InvalidScript", "/rename needs OLD and NEW paths")
        await turn.workspace.rename(parts[0], parts[1])

    async def ask(self, turn: Turn, rest: str) -> None:
        question, *options = [p.strip() for p in rest.split("|")]
        await turn.ask(question or "?", [o for o in options if o] or None)

    async def permission(self, turn: Turn, action: str) -> None:
        await turn.permission(action or "proceed")

    async def stream(self, turn: Turn, rest: str) -> None:
        parts = rest.split()
        # benchmarks: each delta carries sentNs
        stamp = bool(parts) and parts[-1] == "stamp"
        if stamp:
            parts.pop()
        try:
            count = int(parts[0])
            rate = float(parts[1]) if len(parts) > 1 else None
        except (IndexError, ValueError):
            raise TurnFailed(
                "InvalidScript", "/stream needs N [PER_SECOND] [stamp]"
            ) from None
        if rate is not None and rate <= 0:
            raise TurnFailed("InvalidScript", "/stream rate must be positive")
        if rate is None:
            for i in range(count):
                turn.delta(f"{i} ", stamp)
                await turn.tick()
            return
        # Paced against absolute deadlines, so per-wakeup overhead does not accumulate
        # as drift: when the loop falls behind, the events that are due go out back to
        # back.
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(count):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            turn.delta(f"{i} ", stamp)
            await turn.tick()

    async def sleep(self, turn: Turn, rest: str) -> None:
        try:
            ms = float(rest)
        except ValueError:
            raise TurnFailed("InvalidScript", "/sleep needs MS") from None
        await turn.sleep(ms / 1000)

    async def silence(self, turn: Turn, rest: str) -> None:
        """/silence MS: the whole gateway reads and sends nothing for MS, as a cut cable
        would."""
        if self.faults is None:
            raise TurnFailed("InvalidScript", "this gateway has no fault injection")
        try:
            ms = float(rest.split()[0])
        except (IndexError, ValueError):
            raise TurnFailed("InvalidScript", "/silence needs MS") from None
        # In the background: the script goes on, producing durable events nobody
        # receives yet.
        asyncio.ensure_future(self.faults.silence(ms / 1000))
        await asyncio.sleep(0)

    async def drop(self, turn: Turn, rest: str) -> None:
        """/drop: every connection's TCP socket is cut, without a close frame."""
        if self.faults is None:
            raise TurnFailed("InvalidScript", "this gateway has no fault injection")
        self.faults.drop()
        await asyncio.sleep(0)

    async def fail(self, turn: Turn, rest: str) -> None:
        code, _, message = rest.partition(" ")
        raise TurnFailed(
            code or "AgentFailed", message or "the agent reported a failure"
        )

    async def emit(self, turn: Turn, rest: str) -> None:
        """/emit TYPE [JSON_FIELDS]: one event of any type, known or not, in the turn
        (durable, with the envelope). Its fields are not checked; only the envelope and
        the turn's ends are refused."""
        turn.emit(_scripted_event("/emit", rest))

    async def emit_session(self, turn: Turn, rest: str) -> None:
        """/emit-session TYPE [JSON_FIELDS]: the same, outside the turn: sessionId, seq
        and ts but no turnId (durable), as session-level events such as sandbox_ready
        are."""
        event = _scripted_event("/emit-session", rest)
        # a stopped turn's script says nothing more, inside the turn or out
        if not turn.closed:
            turn.session.emit(event)

    async def emit_unsequenced(self, turn: Turn, rest: str) -> None:
        """/emit-unsequenced TYPE [JSON_FIELDS]: a session event with sessionId only (no
        seq, no ts, not stored) to the joined connections. Our gateway sends nothing
        like it on its own; a newer one might, and a client must keep it
        (docs/dev-gateway.md)."""
        event = _scripted_event("/emit-unsequenced", rest)
        if not turn.closed:
            turn.session.send_to_all(event)


def _scripted_event(command: str, rest: str) -> SessionEvent:
    """The event of an /emit-family command: TYPE and a JSON object of fields, unchecked
    against the catalogue, so a test can send unknown types and known ones with
    unexpected fields."""
    type_, _, raw = rest.partition(" ")
    if not type_ or type_ in _TURN_ENDS:
        raise TurnFailed(
            "InvalidScript",
            f"{command} needs a TYPE other than turn_started/turn_complete/turn_error",
        )
    try:
        fields = json.loads(raw) if raw.strip() else {}
    except ValueError:
        fields = None
    if not isinstance(fields, dict):
        raise TurnFailed(
            "InvalidScript", f"{command}: JSON_FIELDS must be a JSON object"
        )
    if _ENVELOPE & fields.keys():
        raise TurnFailed(
            "InvalidScript",
            f"{command} cannot set {', '.join(sorted(_ENVELOPE & fields.keys()))}",
        )
    cls = _event_struct(type_, tuple(fields))
    return cls(**{f"f{i}": v for i, v in enumerate(fields.values())})


_ENVELOPE = frozenset({"type", "sessionId", "turnId", "seq", "ts"})
_TURN_ENDS = frozenset({"turn_started", "turn_complete", "turn_error"})


@functools.lru_cache(maxsize=256)
def _event_struct(type_: str, keys: tuple[str, ...]) -> type[SessionEvent]:
    """A session event Struct tagged ``type_`` with these fields (renamed, so any JSON
    key works)."""
    slots = [f"f{i}" for i in range(len(keys))]
    # defstruct is typed as making a plain Struct, whatever its bases
    return cast(
        type[SessionEvent],
        msgspec.defstruct(
            "Emitted",
            [(s, Any) for s in slots],
            bases=(SessionEvent,),
            tag=type_,
            kw_only=True,
            rename=dict(zip(slots, keys)),
        ),
    )


AGENTS = {agent.name: agent for agent in (EchoAgent(), CodingAgent())}
