"""The router: gateway events into the stores and on to the page; UI commands out to the gateway."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import msgspec

from dim_actors.config.settings import settings_command
from dim_actors.kernel.actor import DimActor
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
from dim_actors.router import commands
from dim_actors.router.stores import BadEvent, Stores
from dim_actors.wire import protocol

log = logging.getLogger(__name__)

# Every client message is a command of the same name. `authenticate` goes on the current connection
# as it is; the connection process keeps authenticating every (re)connect with gateway_connect's
# token, which an authenticate command does not replace (docs/contracts.md §3).
GATEWAY_COMMANDS = frozenset(protocol.CLIENT_MESSAGES)
LOCAL_COMMANDS = (
    frozenset(commands.ARGS) - SYNC_COMMANDS
)  # the router's own; the journal answers the rest
# Events that may deserve a desktop notification (dim_actors/desktop/notify.py decides).
NOTIFY_TYPES = frozenset(
    {"turn_complete", "turn_error", "question_requested", "permission_requested"}
)
_json = msgspec.json.Encoder()


class _ErrorFields(msgspec.Struct):
    code: str = ""
    message: str = ""
    retryAfterMs: int | None = None


def command_error(req_id: int, code: str, message: str, **extra: Any) -> InvokeResult:
    return InvokeResult(
        reqId=req_id, ok=False, error={"code": code, "message": message, **extra}
    )


class Router(DimActor):
    def on_start(self) -> None:
        super().on_start()
        self.stores = Stores()
        # reqId -> command for gateway commands in flight; kept across restarts so answers still land.
        self.pending: dict[int, str] = self.ctx.extra.setdefault("router_pending", {})
        # Ids of the router's own requests count down from far below the bridge's (which count up).
        self.internal_ids = -(1 << 40)
        generation = self.ctx.extra.get("router_generation", 0)
        self.ctx.extra["router_generation"] = generation + 1
        # A restarted router starts with empty stores: it rebuilds them from the gateway. Session
        # events already on their way are dropped until the replay begins, since it carries them all.
        self.awaiting_resync = generation > 0
        if self.awaiting_resync:
            self.ctx.send("connection", Resync())

    def describe(self) -> dict[str, Any]:
        info = {
            **super().describe(),
            "eventsApplied": self.stores.events_applied,
            "duplicatesDropped": self.stores.duplicates,
            "badEvents": self.stores.bad_events,
            "deltas": self.stores.deltas.describe(),
        }
        if (
            self.stores.history_skipped
        ):  # history entries that were not HistoryTurns: worth a look
            info["historySkipped"] = self.stores.history_skipped
        if (
            self.stores.latency.count
        ):  # only streams stamped with sentNs (benchmarks) feed it
            info["latencyMs"] = self.stores.latency.summary()
        return info

    def handle(self, sender: str, body: Msg) -> None:
        if isinstance(body, GatewayEvent):
            self.on_gateway_event(body)
        elif isinstance(body, Invoke):
            try:
                self.on_invoke(body)
            except Exception as e:
                # One command's failure is that command's answer: the router goes on serving the
                # others. Arguments are validated first (commands.py), so this is a bug, logged as one.
                log.exception("router: %s failed", body.command)
                self.ctx.send(
                    "uibridge",
                    command_error(
                        body.reqId,
                        "INTERNAL",
                        f"{body.command} failed inside dim-desktop: {e!r}",
                    ),
                )
        elif isinstance(body, ConnectionState):
            was = self.stores.connection.get("state")
            self.stores.set_connection(body)
            self.to_page("connection-state", self.stores.connection)
            if body.state == "connected" and was != "connected":
                # Keep the session list current without waiting for the page to ask.
                self.send_internal("list_sessions", {})
        elif isinstance(body, CommandFailed):
            if self.pending.pop(body.reqId, None) is not None:
                self.ctx.send(
                    "uibridge", command_error(body.reqId, body.code, body.message)
                )
        elif isinstance(body, Queued):
            command = self.pending.pop(body.reqId, None)
            self.ctx.send(
                "uibridge",
                InvokeResult(
                    reqId=body.reqId,
                    ok=True,
                    result={
                        "type": "queued",
                        "command": command,
                        "outboxId": body.outboxId,
                        "message": "not connected: queued, and sent when the connection is back",
                    },
                ),
            )
        elif isinstance(body, OutboxChanged):
            self.stores.outbox = body.items
            self.to_page("outbox", body.items)
            if body.reqId is not None:
                self.pending.pop(body.reqId, None)
                self.ctx.send(
                    "uibridge",
                    InvokeResult(
                        reqId=body.reqId, ok=True, result={"outbox": body.items}
                    ),
                )
        elif isinstance(body, ResyncStarted):
            self.awaiting_resync = False
        elif isinstance(body, BadFrame):
            self.stores.bad_input += 1
            self.to_page(
                "gateway-warning",
                {
                    "reason": body.reason,
                    "sample": body.sample,
                    "count": self.stores.bad_input,
                },
            )
        elif isinstance(body, CatchupGap):
            self.on_catchup_gap(body)
        elif isinstance(body, SessionGone):
            self.to_page("session-gone", self.stores.mark_gone(body))
        else:
            raise TypeError(f"router: unexpected message {type(body).__name__}")

    def to_page(self, event: str, payload: Any) -> None:
        self.ctx.send(
            "uibridge", UiEvent(event=event, payload=msgspec.Raw(_json.encode(payload)))
        )

    # --- events ---------------------------------------------------------------------------------------

    def on_gateway_event(self, ev: GatewayEvent) -> None:
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
                # Not a gateway-event: the page's reducer would apply its mistyped fields. It is shown
                # as a generic card instead, live as after a reload (stores: `invalid`).
                self.to_page("invalid-event", {"reason": str(e), "event": ev.raw})
                fresh = False
            # An error answering a page's command goes back to that command only (its GATEWAY_ERROR),
            # as the gateway sends it only to whoever caused it: not a toast on every page as well.
            if fresh and not (ev.type == "error" and ev.replyTo in self.pending):
                self.ctx.send(
                    "uibridge", UiEvent(event="gateway-event", payload=ev.raw)
                )
                if ev.type in NOTIFY_TYPES:
                    self.notify_desktop(ev)
        if ev.replyTo is not None:
            command = self.pending.pop(ev.replyTo, None)
            if command is None:
                return
            if ev.type == "error":
                err = msgspec.json.decode(ev.raw, type=_ErrorFields)
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
        # Before the resync marker a gap belongs to a catch-up the replay supersedes: the replay
        # fetches every event again, and tells its own gap if that fails too.
        if self.awaiting_resync:
            return
        self.to_page("catchup-gap", self.stores.add_gap(gap))

    def notify_desktop(self, ev: GatewayEvent) -> None:
        hook = self.ctx.extra.get(
            "desktop_notify"
        )  # set by dim-desktop; it only queues
        if hook is not None:
            meta = self.stores.sessions.get(ev.sessionId or "") or {}
            hook(ev.type, bytes(ev.raw), meta.get("name"))

    # --- commands -------------------------------------------------------------------------------------

    def on_invoke(self, inv: Invoke) -> None:
        if inv.command in SYNC_COMMANDS or inv.command in LOCAL_COMMANDS:
            args = commands.validate(inv.command, inv.args)
            if isinstance(args, str):
                self.ctx.send(
                    "uibridge", command_error(inv.reqId, "INVALID_ARGUMENTS", args)
                )
                return
            if (
                inv.command in SYNC_COMMANDS
            ):  # local sync: the journal answers (docs/sync.md)
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
        args = inv.args
        if (
            inv.command == "run_turn"
            and isinstance(args, dict)
            and "clientTurnId" not in args
        ):
            # Every turn gets a client id, so a resend (outbox, crash, reconnect) never runs it twice.
            args = {**args, "clientTurnId": uuid.uuid4().hex}
        try:
            frame = protocol.build_client_message(inv.command, args)
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

    # --- local sync hooks: the journal names default folders after sessions (docs/sync.md §7) ---------

    def with_session_name(self, args: Any) -> Any:
        """Sync command args with the session's name from the stores (the journal has no stores)."""
        if not isinstance(args, dict) or not isinstance(args.get("sessionId"), str):
            return args
        meta = self.stores.sessions.get(args["sessionId"]) or {}
        return {**args, "sessionName": meta.get("name")}

    def sync_joined(self, session_id: str) -> None:
        """The page joined a session: the journal starts its sync if sync_auto_start says so."""
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
        self.internal_ids -= 1
        frame = protocol.build_client_message(command, args)
        self.ctx.send(
            "connection",
            SendFrame(
                reqId=self.internal_ids,
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
                    self.ctx.extra.get("on_settings_changed"),
                )
                return InvokeResult(
                    reqId=req_id,
                    ok=ok,
                    result=out if ok else None,
                    error=None if ok else out,
                )
            case "get_state", _:
                return InvokeResult(
                    reqId=req_id, ok=True, result=self.stores.snapshot(self.joined())
                )
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
            case "gateway_disconnect", _:
                self.ctx.send("connection", Disconnect())
                return InvokeResult(reqId=req_id, ok=True, result={"state": "offline"})
        return self.actor_command(req_id, command, args)

    def joined(self) -> list[str]:
        """Sessions the connection keeps joined; a gone one never counts, whatever its memory holds."""
        memory = self.ctx.extra.get("connection")
        resume = memory.resume if memory is not None else {}
        return sorted(set(resume) - self.stores.gone_ids())

    def actor_command(
        self, req_id: int, command: str, args: commands.Args
    ) -> InvokeResult:
        """The Actors panel: status, restart, and each actor's message log."""
        sup = self.ctx.extra["supervisor"]
        name = getattr(args, "name", None)
        if command != "actor_status" and name not in sup.addresses:
            return command_error(
                req_id,
                "INVALID_ARGUMENTS",
                f"{command}: name must be one of {', '.join(sup.addresses.names())}",
            )
        match command, args:
            case "actor_status", _:
                return InvokeResult(reqId=req_id, ok=True, result=sup.status())
            case "restart_actor", commands.ActorArgs(name=name):
                sup.restart_later(name)
                return InvokeResult(reqId=req_id, ok=True, result={"restarting": name})
            case "actor_logs", commands.ActorLogs(
                name=name, types=types, since=since, limit=limit
            ):
                # From memory: the page polls this every second, and the router must not read files meanwhile.
                lines = sup.logs.recent(
                    name, set(types) if types else None, since, min(limit, 5000)
                )
                return InvokeResult(
                    reqId=req_id, ok=True, result=[msgspec.Raw(line) for line in lines]
                )
        raise ValueError(
            f"{command}: no handler for {type(args).__name__}"
        )  # commands.ARGS and this disagree
