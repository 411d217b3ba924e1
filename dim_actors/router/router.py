"""The router: gateway events into the stores and on to the page; UI commands out to the
gateway."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from dim_actors.config.settings import Settings, settings_command
from dim_actors.kernel.actor import ActorContext, DimActor
from dim_actors.kernel.requests import Allocator
from dim_actors.messages import (
    AUTO_START,
    SYNC_COMMANDS,
    BadFrame,
    CancelQueued,
    CatchupGap,
    CommandFailed,
    Connect,
    ConnectionState,
    Disconnect,
    GatewayEvent,
    Invoke,
    InvokeResult,
    JoinedSessions,
    Msg,
    OutboxChanged,
    Queued,
    Resync,
    ResyncStarted,
    SendFrame,
    SessionGone,
    SyncCommand,
    UiEvent,
)
from dim_actors.router import commands, folders, search, titles, tokensave
from dim_actors.router.attention import ENDS, Attention, event_ts, outcome_of
from dim_actors.router.older import OlderFetch
from dim_actors.router.stores import BadEvent, Stores
from dim_actors.wire import protocol

log = logging.getLogger(__name__)

# Every client message is a command of the same name. `authenticate` goes on the current
# connection as it is; the connection process keeps authenticating every (re)connect
# with gateway_connect's token, which an authenticate command does not replace
# (docs/contracts.md §3).
GATEWAY_COMMANDS = frozenset(protocol.CLIENT_MESSAGES)
# the router's own; the journal answers the rest
LOCAL_COMMANDS = frozenset(commands.ARGS) - SYNC_COMMANDS
# Events that may deserve a desktop notification (dim_actors/desktop/notify.py decides).
NOTIFY_TYPES = frozenset(
    {"turn_complete", "turn_error", "question_requested", "permission_requested"}
)
# Session events after which the attention count may drop a session for good.
_FORGET_TYPES = frozenset({"session_deleted"})
_json = msgspec.json.Encoder()


class _ErrorFields(msgspec.Struct):
    code: str = ""
    message: str = ""
    retryAfterMs: int | None = None


def read_error(raw: bytes) -> _ErrorFields:
    """An error event's fields; one with a field of the wrong kind (a number for its
    code) still fails its command, with what could be read of it."""
    try:
        return msgspec.json.decode(raw, type=_ErrorFields)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        return _ErrorFields(
            code="UNREADABLE_ERROR",
            message=f"the gateway's error could not be read: {e}",
        )


def command_error(req_id: int, code: str, message: str, **extra: Any) -> InvokeResult:
    return InvokeResult(
        reqId=req_id, ok=False, error={"code": code, "message": message, **extra}
    )


class ActorAdmin(Protocol):
    """The Actors panel's view of the supervision tree; the runtime implements it.
    Nothing here may wait on the supervisor: the router's thread carries every gateway
    event."""

    def names(self) -> list[str]: ...

    def status_later(
        self,
        reply: Callable[[list[dict[str, Any]]], None],
        fail: Callable[[str], None],
    ) -> None:
        """Ask for every actor's status row; `reply` gets them later, on another thread
        (or `fail` says why not)."""

    def restart_later(self, name: str) -> None: ...

    def recent_logs(
        self, name: str, types: set[str] | None, since: float | None, limit: int
    ) -> list[bytes]:
        """From the in-memory rings: no file is read."""
        ...


@dataclass
class RouterMemory:
    """What outlives a restart of the router."""

    # reqId -> command for gateway commands in flight, so answers still land after a
    # restart.
    pending: dict[int, str] = field(default_factory=dict)
    incarnations: int = 0
    # Sessions the connection keeps joined (JoinedSessions, from the connection actor).
    joined: list[str] = field(default_factory=list)
    # The router's own request ids: a restarted router goes on from where the last one
    # stopped, so an answer to its predecessor's request is never taken for one of its own.
    ids: Allocator = field(default_factory=lambda: Allocator("router"))
    # Which sessions need the user: kept across restarts, so the replay a restarted
    # router rebuilds its stores from raises none of them again.
    attention: Attention = field(default_factory=Attention)


@dataclass
class RouterWiring:
    memory: RouterMemory
    admin: ActorAdmin
    # (event type, the event's bytes, the session's name): queues a desktop
    # notification.
    notify_desktop: Callable[[str, bytes, str | None], None] | None = None
    # Called with the new settings after set_settings wrote them.
    settings_changed: Callable[[Settings], None] | None = None
    # The built-in test gateway's address: save_token is refused for it.
    builtin_gateway_url: str | None = None
    # (session id): the desktop opens the session in a window of its own, later (it
    # only starts a thread); LookupError while there is no desktop yet.
    open_window: Callable[[str], None] | None = None
    # How many sessions need the user, each time that changes: queues it for the tray
    # and the window titles.
    attention_desktop: Callable[[int], None] | None = None


class Router(DimActor):
    def __init__(self, ctx: ActorContext, wiring: RouterWiring):
        super().__init__(ctx)
        self.wiring = wiring
        self.memory = wiring.memory

    def on_start(self) -> None:
        super().on_start()
        self.stores = Stores()
        self.pending = self.memory.pending
        self.internal_ids = self.memory.ids
        self.memory.incarnations += 1
        # A restarted router starts with empty stores: it rebuilds them from the
        # gateway. Session events already on their way are dropped until the replay
        # begins, since it carries them all.
        self.awaiting_resync = self.memory.incarnations > 1
        if self.awaiting_resync:
            self.ctx.send("connection", Resync())
        # Sessions this router has named from their first message: a second message
        # sent before the rename came back must not name it again.
        self.titled: set[str] = set()
        # own request id -> (the page's get_turns, its fetch of older turns)
        self.older_fetches: dict[int, tuple[int, OlderFetch]] = {}

    def describe(self) -> dict[str, Any]:
        info = {
            **super().describe(),
            "eventsApplied": self.stores.events_applied,
            "duplicatesDropped": self.stores.duplicates,
            # events of turns begun before a first join's window: the gateway's
            "leftAtGateway": self.stores.left_at_gateway,
            # fetches of older turns waiting for the gateway
            "olderFetches": len(self.older_fetches),
            "badEvents": self.stores.bad_events,
            "deltas": self.stores.deltas.describe(),
        }
        # history entries that were not HistoryTurns: worth a look
        if self.stores.history_skipped:
            info["historySkipped"] = self.stores.history_skipped
        # only streams stamped with sentNs (benchmarks) feed it
        if self.stores.latency.count:
            info["latencyMs"] = self.stores.latency.summary()
        return info

    def handle(self, sender: str, body: Msg) -> None:
        match body:
            case GatewayEvent():  # first: the hot path
                self.on_gateway_event(body)
            case Invoke():
                self.on_invoke_safely(body)
            case JoinedSessions(sessionIds=ids):
                self.memory.joined = ids
            case ConnectionState():
                self.on_connection_state(body)
            case CommandFailed(reqId=req_id, code=code, message=message):
                if req_id in self.older_fetches:
                    # the connection was lost, or the gateway did not answer in time
                    page_req, _ = self.older_fetches.pop(req_id)
                    self.ctx.send("uibridge", command_error(page_req, code, message))
                elif self.pending.pop(req_id, None) is not None:
                    self.ctx.send("uibridge", command_error(req_id, code, message))
            case Queued():
                self.on_queued(body)
            case OutboxChanged():
                self.on_outbox_changed(body)
            case ResyncStarted():
                self.awaiting_resync = False
            case BadFrame(reason=reason, sample=sample):
                self.stores.bad_input += 1
                count = self.stores.bad_input
                self.to_page(
                    "gateway-warning",
                    {"reason": reason, "sample": sample, "count": count},
                )
            case CatchupGap():
                self.on_catchup_gap(body)
            case SessionGone():
                self.to_page("session-gone", self.stores.mark_gone(body))
            case _:
                raise TypeError(f"router: unexpected message {type(body).__name__}")

    def on_invoke_safely(self, inv: Invoke) -> None:
        try:
            self.on_invoke(inv)
        except Exception as e:
            # One command's failure is that command's answer: the router goes on serving
            # the others. Arguments are validated first (commands.py), so this is a bug,
            # logged as one.
            log.exception("router: %s failed", inv.command)
            failed = f"{inv.command} failed inside dim-desktop: {e!r}"
            self.ctx.send("uibridge", command_error(inv.reqId, "INTERNAL", failed))

    def on_connection_state(self, state: ConnectionState) -> None:
        was = self.stores.connection.get("state")
        self.stores.set_connection(state)
        self.to_page("connection-state", self.stores.connection)
        if state.state == "connected" and was != "connected":
            # Keep the session list current without waiting for the page to ask.
            self.send_internal("list_sessions", {})

    def on_queued(self, queued: Queued) -> None:
        command = self.pending.pop(queued.reqId, None)
        result = {
            "type": "queued",
            "command": command,
            "outboxId": queued.outboxId,
            "message": "not connected: queued, and sent when the connection is back",
        }
        self.ctx.send(
            "uibridge", InvokeResult(reqId=queued.reqId, ok=True, result=result)
        )

    def on_outbox_changed(self, changed: OutboxChanged) -> None:
        self.stores.outbox = changed.items
        self.to_page("outbox", changed.items)
        if changed.reqId is not None:
            self.pending.pop(changed.reqId, None)
            result = {"outbox": changed.items}
            self.ctx.send(
                "uibridge", InvokeResult(reqId=changed.reqId, ok=True, result=result)
            )

    def to_page(self, event: str, payload: Any) -> None:
        self.ctx.send(
            "uibridge", UiEvent(event=event, payload=msgspec.Raw(_json.encode(payload)))
        )

    # --- events -----------------------------------------------------------------------

    def on_gateway_event(self, ev: GatewayEvent) -> None:
        if ev.replyTo in self.older_fetches:
            # ours alone: no page or store takes a fetch of older turns
            self.on_older_page(ev.replyTo, ev)
            return
        if not (self.awaiting_resync and ev.seq is not None):
            try:
                fresh = self.stores.apply(ev)
            except BadEvent as e:
                log.warning("%s", e)
                sample = bytes(ev.raw)[:200].decode("utf-8", "replace")
                self.to_page(
                    "gateway-warning",
                    {
                        "reason": str(e),
                        "sample": sample,
                        "count": self.stores.bad_input,
                    },
                )
                # Not a gateway-event: the page's reducer would apply its mistyped
                # fields. It is shown as a generic card instead, live as after a reload
                # (stores: `invalid`).
                self.to_page("invalid-event", {"reason": str(e), "event": ev.raw})
                fresh = False
            # An error answering a page's command goes back to that command only (its
            # GATEWAY_ERROR), as the gateway sends it only to whoever caused it: not a
            # toast on every page as well.
            if fresh and not (ev.type == "error" and ev.replyTo in self.pending):
                self.ctx.send(
                    "uibridge", UiEvent(event="gateway-event", payload=ev.raw)
                )
                if ev.type in NOTIFY_TYPES:
                    self.notify_desktop(ev)
                elif ev.type in _FORGET_TYPES and ev.sessionId:
                    self.attention_told(self.memory.attention.forget(ev.sessionId))
            # not for a text delta: one attribute read
            if self.stores.moved is not None:
                # The stores' verdict on the session's turns, right behind the event
                # that moved them: the page renders it and decides nothing (docs/ui.md,
                # `turn-state`).
                verdict = self.stores.take_turn_state()
                if verdict is not None:
                    self.to_page("turn-state", verdict)
                    self.attend(ev, verdict)
        if ev.replyTo is not None:
            command = self.pending.pop(ev.replyTo, None)
            if command is None:
                return
            if ev.type == "error":
                err = read_error(ev.raw)
                extra = (
                    {"retryAfterMs": err.retryAfterMs}
                    if err.retryAfterMs is not None
                    else {}
                )
                self.ctx.send(
                    "uibridge",
                    command_error(
                        ev.replyTo,
                        "GATEWAY_ERROR",
                        err.message or err.code,
                        gatewayCode=err.code,
                        **extra,
                    ),
                )
            else:
                self.ctx.send(
                    "uibridge", InvokeResult(reqId=ev.replyTo, ok=True, result=ev.raw)
                )
                if command == "join_session" and ev.sessionId:
                    self.sync_joined(ev.sessionId)

    def on_catchup_gap(self, gap: CatchupGap) -> None:
        # Before the resync marker a gap belongs to a catch-up the replay supersedes:
        # the replay fetches every event again, and tells its own gap if that fails too.
        if self.awaiting_resync:
            return
        self.to_page("catchup-gap", self.stores.add_gap(gap))

    def attend(self, ev: GatewayEvent, verdict: dict[str, Any]) -> None:
        """The verdict's turns as attention sees them: waiting on the user, or ended."""
        ts = event_ts(bytes(ev.raw)) if ev.type in ENDS else None
        outcome = outcome_of(
            ev.type,
            verdict["sessionId"],
            ev.seq,
            ts,
            time.time_ns() // 1_000_000,
            verdict["turns"],
        )
        self.attention_told(self.memory.attention.apply(outcome))

    def attention_told(self, changed: bool) -> None:
        """Tell every page and the desktop the new summary, when it changed."""
        if not changed:
            return
        summary = self.memory.attention.summary
        self.to_page("attention", summary)
        hook = self.wiring.attention_desktop  # it only queues
        if hook is not None:
            hook(summary.count)

    def notify_desktop(self, ev: GatewayEvent) -> None:
        hook = self.wiring.notify_desktop  # it only queues
        if hook is not None:
            meta = self.stores.sessions.get(ev.sessionId or "") or {}
            hook(ev.type, bytes(ev.raw), meta.get("name"))

    # --- commands ---------------------------------------------------------------------

    def on_invoke(self, inv: Invoke) -> None:
        if inv.command in SYNC_COMMANDS or inv.command in LOCAL_COMMANDS:
            args = commands.validate(inv.command, inv.args)
            if isinstance(args, str):
                self.ctx.send(
                    "uibridge", command_error(inv.reqId, "INVALID_ARGUMENTS", args)
                )
                return
            # local sync: the journal answers (docs/sync.md)
            if inv.command in SYNC_COMMANDS:
                self.ctx.send(
                    "journal",
                    SyncCommand(
                        reqId=inv.reqId,
                        command=inv.command,
                        args=self.with_session_name(msgspec.to_builtins(args)),
                    ),
                )
                return
            result = self.local_command(inv.reqId, inv.command, args)
            if result is not None:  # None: the answer comes later, from the connection
                self.ctx.send("uibridge", result)
            return
        if inv.command not in GATEWAY_COMMANDS:
            self.ctx.send(
                "uibridge",
                command_error(
                    inv.reqId, "UNKNOWN_COMMAND", f"unknown command: {inv.command!r}"
                ),
            )
            return
        fields = inv.args
        if (
            inv.command == "run_turn"
            and isinstance(fields, dict)
            and "clientTurnId" not in fields
        ):
            # Every turn gets a client id, so a resend (outbox, crash, reconnect) never
            # runs it twice.
            fields = {**fields, "clientTurnId": uuid.uuid4().hex}
        try:
            frame = protocol.build_client_message(inv.command, fields)
        except protocol.ProtocolError as e:
            self.ctx.send(
                "uibridge",
                command_error(
                    inv.reqId, "INVALID_ARGUMENTS", f"{inv.command}: {e.message}"
                ),
            )
            return
        self.pending[inv.reqId] = inv.command
        expect = sorted(protocol.RESPONSES.get(inv.command, ()))
        self.ctx.send(
            "connection",
            SendFrame(reqId=inv.reqId, type=inv.command, frame=frame, expect=expect),
        )
        if inv.command == "run_turn" and isinstance(fields, dict):
            self.title_from_first_message(fields)

    def title_from_first_message(self, fields: dict[str, Any]) -> None:
        """A session with the gateway's default name gets its first message's first
        line as its name, for every page and dimctl alike (titles.py). Sent after the
        run_turn, so the turn never waits on it; a session that already has turns, or a
        name someone gave it, is left as it is."""
        sid = fields.get("sessionId")
        if not isinstance(sid, str):
            return
        meta = self.stores.sessions.get(sid)
        if meta is None or sid in self.titled:
            return
        # Offline the run_turn waits in the outbox; a rename queued beside it would be
        # one more queued command the user never asked for.
        if self.stores.connection.get("state") != "connected":
            return
        if not titles.is_default_name(meta.get("name")):
            return
        chat = self.stores.chats.get(sid)
        if chat is not None and chat.turns:
            return
        title = titles.title_from_message(fields.get("text"))
        if title is not None:
            self.titled.add(sid)
            self.send_internal("rename_session", {"sessionId": sid, "name": title})

    # --- local sync hooks: the journal names default folders after sessions (docs/sync.md §7)

    def with_session_name(self, args: Any) -> Any:
        """Sync command args with the session's name from the stores (the journal has no
        stores)."""
        if not isinstance(args, dict) or not isinstance(args.get("sessionId"), str):
            return args
        meta = self.stores.sessions.get(args["sessionId"]) or {}
        return {**args, "sessionName": meta.get("name")}

    def sync_joined(self, session_id: str) -> None:
        """The page joined a session: the journal starts its sync if sync_auto_start
        says so."""
        self.ctx.send(
            "journal",
            SyncCommand(
                reqId=0,
                command=AUTO_START,
                args=self.with_session_name({"sessionId": session_id}),
            ),
        )

    def send_internal(self, command: str, args: dict) -> None:
        """A request of the router's own: its answer only updates the stores."""
        frame = protocol.build_client_message(command, args)
        self.ctx.send(
            "connection",
            SendFrame(
                reqId=next(self.internal_ids),
                type=command,
                frame=frame,
                expect=sorted(protocol.RESPONSES.get(command, ())),
            ),
        )

    def local_command(
        self, req_id: int, command: str, args: commands.Args
    ) -> InvokeResult | None:
        """`args` is the command's Struct (commands.ARGS), already validated."""
        match command, args:
            case (("get_settings" | "set_settings"), _):
                ok, out = settings_command(
                    command,
                    msgspec.to_builtins(args),
                    self.ctx.home.config_dir / "settings.toml",
                    self.ctx.settings,
                    self.wiring.settings_changed,
                )
                return InvokeResult(
                    reqId=req_id,
                    ok=ok,
                    result=out if ok else None,
                    error=None if ok else out,
                )
            case "get_state", _:
                snap = self.stores.snapshot(self.joined())
                snap["attention"] = self.memory.attention.summary
                return InvokeResult(reqId=req_id, ok=True, result=snap)
            case "mark_seen", commands.MarkSeen(sessionId=sid, looking=looking):
                attention = self.memory.attention
                self.attention_told(
                    attention.looking(sid) if looking else attention.looked_away(sid)
                )
                return InvokeResult(reqId=req_id, ok=True, result=attention.summary)
            case "get_turns", commands.GetTurns():
                return self.get_turns(req_id, args)
            case "open_window", commands.SessionArgs(sessionId=sid):
                return self.open_window(req_id, sid)
            case "gateway_connect", commands.GatewayConnect(url=url, token=token):
                self.ctx.send("connection", Connect(url=url, token=token))
                return InvokeResult(
                    reqId=req_id, ok=True, result={"url": url, "state": "connecting"}
                )
            case "outbox_cancel", commands.OutboxCancel(id=outbox_id):
                self.pending[req_id] = command
                self.ctx.send(
                    "connection", CancelQueued(reqId=req_id, outboxId=outbox_id)
                )
                return None
            case "save_token", commands.SaveToken(token=token):
                self.save_token(req_id, token)
                return None
            case "gateway_disconnect", _:
                self.ctx.send("connection", Disconnect())
                return InvokeResult(reqId=req_id, ok=True, result={"state": "offline"})
            case "list_folders", commands.ListFolders(path=path, showHidden=hidden):
                self.list_folders(req_id, path, hidden)
                return None
            case "search_sessions", commands.SearchSessions(query=query, limit=limit):
                # newest activity first, as the page lists them
                updated = {
                    sid: meta.get("updatedAt") or 0
                    for sid, meta in self.stores.sessions.items()
                }
                order = sorted(
                    self.stores.chats.values(),
                    key=lambda c: -updated.get(c.sessionId, 0),
                )
                # turns older than the stores' window are the gateway's: not searched,
                # and the answer says so
                beyond = sum(1 for c in order if c.before > 0)
                self.search_sessions(
                    req_id, search.texts_of(order), query, limit, beyond
                )
                return None
        return self.actor_command(req_id, command, args)

    def open_window(self, req_id: int, session_id: str) -> InvokeResult:
        hook = self.wiring.open_window
        if hook is None:
            return command_error(
                req_id, "UNAVAILABLE", "this dim-desktop has no desktop to open windows"
            )
        try:
            hook(session_id)
        except LookupError as e:
            return command_error(req_id, "UNAVAILABLE", str(e).strip("'\""))
        return InvokeResult(reqId=req_id, ok=True, result={"opening": session_id})

    def get_turns(self, req_id: int, args: commands.GetTurns) -> InvokeResult | None:
        """Turns the stores hold before one the page shows; past the oldest held, the
        gateway's (older.py), fetched now and not kept."""
        sid, before = args.sessionId, args.beforeTurnId
        chat = self.stores.chats.get(sid)
        if chat is None:
            return command_error(req_id, "NOT_FOUND", f"no session {sid!r} is held")
        older = chat.older(before, args.limit, args.fromTurnId)
        if older is not None and (older["turns"] or not chat.before):
            return InvokeResult(reqId=req_id, ok=True, result=older)
        # Past the oldest turn held: before it, or before a turn the gateway gave.
        reach = (
            chat.before
            if older is not None
            else min(chat.before, (args.beforeSeq or 1) - 1)
        )
        if reach <= 0:
            return command_error(
                req_id, "NOT_FOUND", f"no turn {before!r} is held for session {sid!r}"
            )
        if self.stores.connection.get("traits", {}).get("getEvents") == "no":
            nothing = {"sessionId": sid, "turns": [], "olderTurns": 0}
            return InvokeResult(
                reqId=req_id, ok=True, result={**nothing, "olderAtGateway": 0}
            )
        held = frozenset(chat.by_id)
        self.fetch_older(req_id, OlderFetch(sid, reach, held))
        return None

    def fetch_older(self, req_id: int, fetch: OlderFetch) -> None:
        own = next(self.internal_ids)
        self.older_fetches[own] = (req_id, fetch)
        self.ctx.send(
            "connection",
            SendFrame(
                reqId=own,
                type="get_events",
                frame=protocol.build_client_message("get_events", fetch.request()),
                expect=["event_list"],
            ),
        )

    def on_older_page(self, own: int, ev: GatewayEvent) -> None:
        """The gateway's answer to a fetch of older turns: the next request, or the
        page's answer."""
        req_id, fetch = self.older_fetches.pop(own)
        try:
            if ev.type != "event_list":
                err = read_error(ev.raw)
                failed = f"the gateway refused get_events: {err.message or err.code}"
            elif fetch.on_page(bytes(ev.raw)):
                self.fetch_older(req_id, fetch)
                return
            else:
                if fetch.unreadable:
                    self.bad_older_events(fetch)
                self.ctx.send(
                    "uibridge",
                    InvokeResult(reqId=req_id, ok=True, result=fetch.result()),
                )
                return
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            failed = f"the gateway's answer to get_events could not be read: {e}"
        self.ctx.send("uibridge", command_error(req_id, "GATEWAY_ERROR", failed))

    def bad_older_events(self, fetch: OlderFetch) -> None:
        """Events of a fetch of older turns that were not events at all: told as any bad
        input from the gateway is, and the turns are given without them."""
        self.stores.bad_input += fetch.unreadable
        reason = (
            f"{fetch.unreadable} event(s) of session {fetch.sessionId}'s earlier "
            "messages could not be read (no type or seq of the right kind): left out"
        )
        log.warning("%s", reason)
        self.to_page(
            "gateway-warning",
            {"reason": reason, "sample": "", "count": self.stores.bad_input},
        )

    def save_token(self, req_id: int, token: str) -> None:
        """Into the keychain on a thread of its own (an unlock prompt may keep it
        waiting), then the connection uses it (tokensave.py)."""
        url = self.stores.connection.get("url") or None
        refused = tokensave.refusal(url, self.wiring.builtin_gateway_url)
        if refused is not None or url is None:
            self.ctx.send(
                "uibridge", command_error(req_id, "UNAVAILABLE", str(refused))
            )
            return
        path = self.ctx.home.config_dir / "settings.toml"

        def answer() -> None:
            ok, out = tokensave.save(
                url, token, path, self.ctx.settings, self.wiring.settings_changed
            )
            if ok:
                self.ctx.send_now("connection", Connect(url=url, token=token))
            self.ctx.send_now(
                "uibridge",
                InvokeResult(
                    reqId=req_id,
                    ok=ok,
                    result=out if ok else None,
                    error=None if ok else out,
                ),
            )

        threading.Thread(target=answer, name="save-token", daemon=True).start()

    def list_folders(self, req_id: int, path: str | None, hidden: bool) -> None:
        """The page's folder picker (in a browser): confined to home and sync_root.
        Listed on a thread of its own: a folder of many entries, or a home on a stalled
        network mount, must not hold up the events this actor routes."""
        roots = folders.roots_for(os.path.expanduser("~"), self.ctx.settings.sync_root)

        def answer() -> None:
            try:
                listing = folders.list_folders(path, roots, hidden)
            except folders.FolderError as e:
                result = command_error(req_id, e.code, e.message)
            else:
                result = InvokeResult(reqId=req_id, ok=True, result=listing)
            self.ctx.send_now("uibridge", result)

        threading.Thread(target=answer, name="list-folders", daemon=True).start()

    def search_sessions(
        self,
        req_id: int,
        texts: list[search.ChatTexts],
        query: str,
        limit: int,
        beyond: int,
    ) -> None:
        """Searched on a thread of its own: a query that matches nothing reads every
        message of every chat (75 ms for 1,000,000 streamed events), and the events this
        actor routes must not wait behind it. The texts were taken here."""

        def answer() -> None:
            found = {**search.search_texts(texts, query, limit), "notSearched": beyond}
            self.ctx.send_now(
                "uibridge", InvokeResult(reqId=req_id, ok=True, result=found)
            )

        threading.Thread(target=answer, name="search-sessions", daemon=True).start()

    def joined(self) -> list[str]:
        """Sessions the connection keeps joined; a gone one never counts, whatever its
        memory holds."""
        return sorted(set(self.memory.joined) - self.stores.gone_ids())

    def actor_command(
        self, req_id: int, command: str, args: commands.Args
    ) -> InvokeResult | None:
        """The Actors panel: status, restart, and each actor's message log."""
        admin = self.wiring.admin
        name = getattr(args, "name", None)
        if command != "actor_status" and name not in admin.names():
            return command_error(
                req_id,
                "INVALID_ARGUMENTS",
                f"{command}: name must be one of {', '.join(admin.names())}",
            )
        match command, args:
            case "actor_status", _:
                # The supervisor answers when it can (it may be busy restarting an
                # actor).
                def answer(result: InvokeResult) -> None:
                    self.ctx.send_now("uibridge", result)

                admin.status_later(
                    lambda rows: answer(
                        InvokeResult(reqId=req_id, ok=True, result=rows)
                    ),
                    lambda why: answer(command_error(req_id, "TIMEOUT", why)),
                )
                return None
            case "restart_actor", commands.ActorArgs(name=name):
                admin.restart_later(name)
                return InvokeResult(reqId=req_id, ok=True, result={"restarting": name})
            case "actor_logs", commands.ActorLogs(
                name=name, types=types, since=since, limit=limit
            ):
                # The page polls this every second: from the rings in memory, never a
                # file.
                lines = admin.recent_logs(
                    name, set(types) if types else None, since, min(limit, 5000)
                )
                return InvokeResult(
                    reqId=req_id, ok=True, result=[msgspec.Raw(line) for line in lines]
                )
        # commands.ARGS and this disagree
        raise ValueError(f"{command}: no handler for {type(args).__name__}")
