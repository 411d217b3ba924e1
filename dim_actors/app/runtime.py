"""The actor system of the supervisor process: addresses, logs, the supervisor, the
control socket, and the wiring of each actor: the records that outlive their restarts
and the hooks they are given, all owned here."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec
import pykka

from dim_actors.app.control import ControlServer
from dim_actors.app.desktoplink import DesktopLink
from dim_actors.config.home import DimHome
from dim_actors.config.settings import Settings
from dim_actors.connection.actor import (
    ConnectionActor,
    ConnectionMemory,
    ConnectionWiring,
)
from dim_actors.kernel.actor import ActorContext, DimActor
from dim_actors.kernel.addresses import Addresses
from dim_actors.kernel.messagelog import MessageLogs
from dim_actors.kernel.supervisor import (
    CheckHealth,
    ChildExited,
    ChildFailed,
    ChildSpec,
    RestartChild,
    Status,
    StopAll,
    Supervisor,
)
from dim_actors.messages import ACTOR_NAMES, UiEvent
from dim_actors.router.router import Router, RouterMemory, RouterWiring
from dim_actors.sync.journal import Journal
from dim_actors.sync.materializer import Materializer
from dim_actors.sync.watcher import Watcher
from dim_actors.sync.wiring import WatcherMemory
from dim_actors.uibridge.bridge import BridgeWiring, UIBridge

log = logging.getLogger(__name__)


@dataclass
class Wiring:
    """Every actor's wiring; each record is given to every incarnation of its actor."""

    connection: ConnectionWiring
    bridge: BridgeWiring
    router: RouterWiring
    # the journal and the materializer take none
    watcher: WatcherMemory = field(default_factory=WatcherMemory)


ActorClasses = Mapping[str, type[DimActor]]


def child_specs(
    settings: Settings, wiring: Wiring, replace: ActorClasses | None = None
) -> list[ChildSpec]:
    """Start order: storage first, the router before what feeds it, the page last.
    `replace` swaps an actor's class for a subclass taking the same wiring (tests inject
    faults so)."""
    actors: dict[str, tuple[type[DimActor], object]] = {
        "journal": (Journal, None),
        "materializer": (Materializer, None),
        "watcher": (Watcher, wiring.watcher),
        "router": (Router, wiring.router),
        "connection": (ConnectionActor, wiring.connection),
        "uibridge": (UIBridge, wiring.bridge),
    }
    return [
        ChildSpec(
            name,
            (replace or {}).get(name, actors[name][0]),
            "permanent",
            settings.shutdown_timeout_s,
            wiring=actors[name][1],
        )
        for name in ACTOR_NAMES
    ]


class SupervisorRuntime:
    def __init__(
        self,
        home: DimHome,
        settings: Settings,
        connection: ConnectionMemory,
        ui_token: str,
        ui_port: int = 0,
        desktop: DesktopLink | None = None,
        replace: ActorClasses | None = None,
    ):
        self.home = home
        self.settings = settings
        self.replace = replace
        self.desktop = desktop or DesktopLink()
        self.logs = MessageLogs(
            home.logs_dir / "actors",
            settings.log_ring_size,
            settings.log_max_bytes,
            settings.log_keep,
        )
        self.addresses = Addresses(list(ACTOR_NAMES), self.logs)
        # Set by the first request_stop, from any thread; the supervisor holds the same
        # event, so it knows of the stop before any child ends because of it.
        self.stop_requested = threading.Event()
        self.stop_reason = ""
        # time.monotonic() of the first request
        self.stop_requested_at: float | None = None
        self._stop_lock = threading.Lock()
        self.exit_code = 0
        self.supervisor: pykka.ActorRef | None = None
        self.control: ControlServer | None = None
        self.wiring = Wiring(
            connection=ConnectionWiring(connection, self.stop_requested),
            bridge=BridgeWiring(token=ui_token, port=ui_port),
            router=RouterWiring(
                RouterMemory(),
                admin=self,
                notify_desktop=self.desktop.notify,
                settings_changed=self.desktop.settings_changed,
                builtin_gateway_url=connection.embedded_url,
                attention_desktop=self.desktop.attention,
                open_window=self.desktop.open_window_later,
            ),
        )

    @property
    def ui_port(self) -> int:
        """The UI bridge's port, once it has started."""
        return self.wiring.bridge.port

    def show_ui(self, session_id: str | None) -> str:
        return self.desktop.show(session_id)

    def open_session_window(self, session_id: str) -> str:
        return self.desktop.open_session_window(session_id)

    # --- the Actors panel (router.ActorAdmin): nothing here waits on the supervisor ---

    def names(self) -> list[str]:
        return self.addresses.names()

    def status_later(
        self,
        reply: Callable[[list[dict[str, Any]]], None],
        fail: Callable[[str], None],
    ) -> None:
        assert self.supervisor is not None
        future = self.supervisor.ask(Status(), block=False)

        def answer() -> None:
            try:
                rows = future.get(timeout=15)
            except (pykka.Timeout, pykka.ActorDeadError):
                fail("the supervisor did not answer within 15 s (it may be stopping)")
            else:
                reply(rows)

        threading.Thread(target=answer, name="actor-status", daemon=True).start()

    def recent_logs(
        self, name: str, types: set[str] | None, since: float | None, limit: int
    ) -> list[bytes]:
        return self.logs.recent(name, types, since, limit)

    def restart_later(self, name: str) -> None:
        """Restart without waiting: for an actor asking for its own (or any) restart."""
        if name not in self.addresses:
            raise LookupError(f"unknown actor {name!r}")
        assert self.supervisor is not None
        self.supervisor.tell(RestartChild(name, "requested from the UI"))

    def context(self, name: str) -> ActorContext:
        return ActorContext(
            name=name,
            addresses=self.addresses,
            home=self.home,
            settings=self.settings,
            on_failure=self._report_failure,
            on_exit=self._report_exit,
        )

    def _report_failure(self, name: str, error: BaseException, generation: int) -> None:
        if self.supervisor is not None:
            self.supervisor.tell(ChildFailed(name, error, generation))

    def _report_exit(self, name: str, generation: int) -> None:
        if self.supervisor is not None:
            self.supervisor.tell(ChildExited(name, generation))

    def start(self) -> None:
        self.supervisor = Supervisor.start(
            child_specs(self.settings, self.wiring, self.replace),
            self.addresses,
            self.context,
            self.settings.max_restarts,
            self.settings.restart_period_s,
            self._give_up,
            self.settings.hang_timeout_s,
            stop_event=self.stop_requested,
        )
        self.control = ControlServer(self.home.control_socket, self)
        self.control.start()
        threading.Thread(
            target=self._tick, name="supervisor-ticker", daemon=True
        ).start()

    def _tick(self) -> None:
        """Once a second: look for hung actors, and show open pages the actors' status."""
        while not self.stop_requested.wait(1.0):
            sup = self.supervisor
            if sup is None:
                return
            try:
                sup.tell(CheckHealth())
                describe = self.addresses["uibridge"].describe
                if describe and describe().get("pages"):
                    rows = self.status()
                    self.addresses.send(
                        "supervisor",
                        "uibridge",
                        UiEvent(
                            event="actor-status",
                            payload=msgspec.Raw(msgspec.json.encode(rows)),
                        ),
                    )
            except (pykka.ActorDeadError, pykka.Timeout):
                return

    def _give_up(self, reason: str) -> None:
        self.exit_code = 3
        self.request_stop(reason)

    def status(self) -> list[dict[str, Any]]:
        assert self.supervisor is not None
        return cast(list[dict[str, Any]], self.supervisor.ask(Status(), timeout=15))

    def wait_started(self) -> None:
        """Return once every actor has started (the supervisor answers Status after its
        on_start), or as soon as the stop is requested, whichever comes first."""
        assert self.supervisor is not None
        answered = self.supervisor.ask(Status(), block=False)
        while not self.stop_requested.is_set():
            try:
                answered.get(timeout=0.05)
                return
            except pykka.Timeout:
                continue

    def restart(self, name: str) -> None:
        if name not in self.addresses:
            raise LookupError(f"unknown actor {name!r}")
        assert self.supervisor is not None
        if not self.supervisor.ask(
            RestartChild(name, "requested by dimctl"), timeout=60
        ):
            # The supervisor is stopping everything, or the new instance failed to
            # start.
            raise ValueError(
                f"{name} did not restart (last error: "
                f"{self.addresses[name].stats.last_error or 'none'})"
            )

    def request_stop(self, reason: str) -> None:
        """From any thread (not from a signal handler: it logs). The first request's
        reason stands."""
        with self._stop_lock:
            if self.stop_requested.is_set():
                log.info(
                    "stop requested again (%s): already stopping (%s)",
                    reason,
                    self.stop_reason,
                )
                return
            self.stop_reason = reason
            self.stop_requested_at = time.monotonic()
            self.stop_requested.set()
        log.info("stop requested: %s", reason)

    def stop(self, deadline: float) -> None:
        """Stop the control socket and every actor, together, by `deadline`
        (time.monotonic()); then make sure no connection process outlives this one."""
        if not self.stop_requested.is_set():
            self.request_stop("stopping")
        control = self.control
        closing = None
        # its serve_forever notices within its poll interval (0.1 s)
        if control is not None:
            closing = threading.Thread(
                target=control.close, name="control-close", daemon=True
            )
            closing.start()
        if self.supervisor is not None:
            try:
                self.supervisor.ask(
                    StopAll(deadline), timeout=max(0.1, deadline - time.monotonic())
                )
            except (pykka.Timeout, pykka.ActorDeadError):
                log.warning(
                    "the supervisor did not stop the actors by the stop's deadline"
                )
            self.supervisor.stop(block=False)
        # An actor abandoned at the deadline may have left its connection process
        # running (it ignores SIGTERM: the app's stop signals are the supervisor's to
        # act on). Nothing may outlive the app, so what is left is killed.
        for proc in multiprocessing.active_children():
            log.warning(
                "%s (pid %s) still running after the actors stopped: killing it",
                proc.name,
                proc.pid,
            )
            proc.kill()
            proc.join(timeout=1)
        if closing is not None:
            closing.join(timeout=max(0.0, deadline - time.monotonic()))
        self.logs.close()
