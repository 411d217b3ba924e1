"""The actor system of the supervisor process: addresses, logs, the supervisor, the control socket."""

from __future__ import annotations

import logging
import threading
from typing import Any

import msgspec
import pykka

from dim_actors.connection.actor import ConnectionActor
from dim_actors.home import DimHome
from dim_actors.messages import ACTOR_NAMES, UiEvent
from dim_actors.router.router import Router
from dim_actors.settings import Settings
from dim_actors.supervisor.actor import ActorContext
from dim_actors.supervisor.addresses import Addresses
from dim_actors.supervisor.control import ControlServer
from dim_actors.supervisor.messagelog import MessageLogs
from dim_actors.supervisor.supervisor import (
    CheckHealth,
    ChildExited,
    ChildFailed,
    ChildSpec,
    RestartChild,
    Status,
    StopAll,
    Supervisor,
)
from dim_actors.sync.journal import Journal
from dim_actors.sync.materializer import Materializer
from dim_actors.sync.watcher import Watcher
from dim_actors.ui.bridge import UIBridge

log = logging.getLogger(__name__)


def child_specs(settings: Settings) -> list[ChildSpec]:
    """Start order: storage first, the router before what feeds it, the page last."""
    classes = {"journal": Journal, "materializer": Materializer, "watcher": Watcher, "router": Router,
               "connection": ConnectionActor, "uibridge": UIBridge}
    return [ChildSpec(n, classes[n], "permanent", settings.shutdown_timeout_s) for n in ACTOR_NAMES]


class SupervisorRuntime:
    def __init__(self, home: DimHome, settings: Settings, extra: dict[str, Any]):
        self.home = home
        self.settings = settings
        self.extra = extra  # state that outlives actor restarts (connection memory, UI port, token)
        self.extra["supervisor"] = self
        self.logs = MessageLogs(home.logs_dir / "actors", settings.log_ring_size, settings.log_max_bytes,
                                settings.log_keep)
        self.addresses = Addresses(list(ACTOR_NAMES), self.logs)
        self.stop_requested = threading.Event()
        self.stop_reason = ""
        self.exit_code = 0
        self.supervisor: pykka.ActorRef | None = None
        self.control: ControlServer | None = None

    def restart_later(self, name: str) -> None:
        """Restart without waiting: for an actor asking for its own (or any) restart."""
        if name not in self.addresses:
            raise LookupError(f"unknown actor {name!r}")
        assert self.supervisor is not None
        self.supervisor.tell(RestartChild(name, "requested from the UI"))

    def context(self, name: str) -> ActorContext:
        return ActorContext(name=name, addresses=self.addresses, home=self.home, settings=self.settings,
                            on_failure=self._report_failure, extra=self.extra, on_exit=self._report_exit)

    def _report_failure(self, name: str, error: BaseException, generation: int) -> None:
        if self.supervisor is not None:
            self.supervisor.tell(ChildFailed(name, error, generation))

    def _report_exit(self, name: str, generation: int) -> None:
        if self.supervisor is not None:
            self.supervisor.tell(ChildExited(name, generation))

    def start(self) -> None:
        self.supervisor = Supervisor.start(child_specs(self.settings), self.addresses, self.context,
                                           self.settings.max_restarts, self.settings.restart_period_s,
                                           self._give_up, self.settings.hang_timeout_s)
        self.control = ControlServer(self.home.control_socket, self)
        self.control.start()
        threading.Thread(target=self._tick, name="supervisor-ticker", daemon=True).start()

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
                    self.addresses.send("supervisor", "uibridge",
                                        UiEvent(event="actor-status", payload=msgspec.Raw(msgspec.json.encode(rows))))
            except (pykka.ActorDeadError, pykka.Timeout):
                return

    def _give_up(self, reason: str) -> None:
        self.exit_code = 3
        self.request_stop(reason)

    def status(self) -> list[dict[str, Any]]:
        assert self.supervisor is not None
        return self.supervisor.ask(Status(), timeout=15)

    def restart(self, name: str) -> None:
        if name not in self.addresses:
            raise LookupError(f"unknown actor {name!r}")
        assert self.supervisor is not None
        if not self.supervisor.ask(RestartChild(name, "requested by dimctl"), timeout=60):
            # The supervisor is stopping everything, or the new instance failed to start.
            raise ValueError(f"{name} did not restart (last error: {self.addresses[name].stats.last_error or 'none'})")

    def request_stop(self, reason: str) -> None:
        self.stop_reason = reason
        self.stop_requested.set()

    def stop(self) -> None:
        if self.control is not None:
            self.control.close()
        if self.supervisor is not None:
            try:
                self.supervisor.ask(StopAll(), timeout=60)
            except (pykka.Timeout, pykka.ActorDeadError):
                log.warning("actors did not all stop in time")
            self.supervisor.stop(block=True, timeout=5)
        self.logs.close()
