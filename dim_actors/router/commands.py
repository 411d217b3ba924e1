"""The arguments of the local commands (those the router or the journal answer), as
msgspec Structs.

Every local command's arguments are converted into its Struct before any handler sees
them, so a value of the wrong type or out of range (an unhashable name, an id no SQLite
integer holds) is answered `INVALID_ARGUMENTS`, naming the field, instead of raising
inside an actor. Gateway commands are checked against their Structs in
`dim_actors/wire/protocol.py` (`build_client_message`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from dim_actors.messages import OUTBOX_ID_MAX
from dim_actors.router import search
from dim_actors.wire.limits import NAME_MAX

INT64_MAX = (1 << 63) - 1
PATH_MAX_BYTES = 4096

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
SessionId = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
OutboxId = Annotated[int, msgspec.Meta(ge=1, le=OUTBOX_ID_MAX)]
Limit = Annotated[int, msgspec.Meta(ge=1, le=INT64_MAX)]
Timestamp = Annotated[float, msgspec.Meta(ge=0)]  # also refuses NaN
Text = Annotated[str, msgspec.Meta(max_length=65536)]


class Args(
    msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True
):
    """Arguments of one local command. Unknown fields are refused, so a misspelt one is
    not ignored."""

    def problem(self) -> str | None:
        """What the types alone cannot say; None when the arguments are fine."""
        return None


class NoArgs(Args):
    pass


class GatewayConnect(Args):
    url: Text
    token: Text | None = None

    def problem(self) -> str | None:
        if not self.url.startswith(("ws://", "wss://")):
            return "url must be a ws:// or wss:// URL"
        return None


class SaveToken(Args):
    """A gateway token to keep in the OS keychain (config/keychain.py)."""

    token: Annotated[str, msgspec.Meta(max_length=4096)]

    def problem(self) -> str | None:
        if not self.token.strip():
            return "token: Enter the gateway token"
        if self.token != self.token.strip() or any(c < " " for c in self.token):
            return (
                "token: Enter the token alone, without spaces around it or line "
                "breaks in it"
            )
        return None


class ActorArgs(Args):
    name: Name


class ActorLogs(Args):
    name: Name
    types: Annotated[list[Name], msgspec.Meta(max_length=256)] | None = None
    limit: Limit = 200
    since: Timestamp | None = None


class OutboxCancel(Args):
    id: OutboxId


class SetSettings(Args):
    # Each key and value is checked by dim_actors/config/settings.py, which names the
    # key.
    changes: dict[str, Any]


class SessionArgs(Args):
    sessionId: SessionId


class StartSync(Args):
    sessionId: SessionId
    localDir: str | None = None
    confirm: bool = False

    def problem(self) -> str | None:
        return (
            None if self.localDir is None else path_problem("localDir", self.localDir)
        )


class ResolveConflict(Args):
    sessionId: SessionId
    path: Annotated[str, msgspec.Meta(min_length=1)]
    resolution: Literal["keep_local", "accept_upstream", "merged"]

    def problem(self) -> str | None:
        return path_problem("path", self.path)


class SearchSessions(Args):
    query: str
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 50

    def problem(self) -> str | None:
        return search.query_problem(self.query)


class GetTurns(Args):
    """A chat's turns before one the page holds (get_state carries the newest only)."""

    sessionId: str
    beforeTurnId: str
    # the page opening a search result far back asks from that turn on
    fromTurnId: str | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    # a turn not held (the gateway gave it, past the stores' window): where it began
    beforeSeq: Annotated[int, msgspec.Meta(ge=1)] | None = None


class MarkSeen(Args):
    """The page shows `sessionId` to the user (looking: in a visible, focused page) or
    no longer does (router/attention.py)."""

    sessionId: SessionId
    looking: bool


class ListFolders(Args):
    """The folder picker's listing (router/folders.py): None is the home folder."""

    path: str | None = None
    showHidden: bool = False

    def problem(self) -> str | None:
        return None if self.path is None else path_problem("path", self.path)


ARGS: dict[str, type[Args]] = {
    "get_state": NoArgs,
    "get_turns": GetTurns,
    "gateway_connect": GatewayConnect,
    "gateway_disconnect": NoArgs,
    "actor_status": NoArgs,
    "restart_actor": ActorArgs,
    "actor_logs": ActorLogs,
    "outbox_cancel": OutboxCancel,
    "get_settings": NoArgs,
    "set_settings": SetSettings,
    "save_token": SaveToken,
    # Local sync, answered by the journal (docs/sync.md).
    "start_sync": StartSync,
    "stop_sync": SessionArgs,
    "sync_status": SessionArgs,
    "sync_statuses": NoArgs,
    "sync_defaults": SessionArgs,
    "resolve_conflict": ResolveConflict,
    "sync_pause": NoArgs,
    "sync_resume": NoArgs,
    "list_folders": ListFolders,
    "search_sessions": SearchSessions,
    # The page's "Open in new window": the desktop opens the session's own window.
    "open_window": SessionArgs,
    "mark_seen": MarkSeen,
}


def path_problem(field: str, path: str) -> str | None:
    """A path no file system call can take: it would raise in the handler instead of
    answering."""
    if "\x00" in path:
        return f"{field} must not contain a NUL character"
    encoded = path.encode("utf-8", "surrogatepass")
    if len(encoded) > PATH_MAX_BYTES:
        return f"{field} is longer than {PATH_MAX_BYTES} bytes"
    if any(len(part) > NAME_MAX for part in encoded.split(b"/")):
        return f"{field} has a name longer than {NAME_MAX} bytes"
    return None


_AT = re.compile(r"^(?P<what>.*) - at `\$(?P<path>[^`]*)`$", re.S)


def explain(error: msgspec.ValidationError) -> str:
    """msgspec's message with its path as a field name: `limit: Expected `int` >= 1`."""
    m = _AT.match(str(error))
    if m is None:
        return str(error)
    field = m["path"].lstrip(".")
    return f"{field}: {m['what']}" if field else m["what"]


def validate(command: str, args: Any) -> Args | str:
    """The command's arguments as its Struct, or a message saying what is wrong with
    them."""
    cls = ARGS.get(command)
    if cls is None:
        return f"{command}: not a local command"
    try:
        value = msgspec.convert(args, cls, strict=True)
    except msgspec.ValidationError as e:
        return f"{command}: {explain(e)}"
    except RecursionError:
        return f"{command}: the arguments are nested too deeply"
    problem = value.problem()
    return f"{command}: {problem}" if problem else value
