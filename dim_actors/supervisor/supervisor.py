"""The supervisor: child specs, one_for_one restarts with an intensity limit, and status.

It is a pykka actor like the others, so failure reports, restart requests and status queries are
handled one at a time, in order, and never race each other.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import pykka

from dim_actors.supervisor.actor import ActorContext, DimActor
from dim_actors.supervisor.addresses import Addresses

log = logging.getLogger(__name__)


@dataclass
class ChildSpec:
    name: str
    actor_class: type[DimActor]
    restart: str = "permanent"  # permanent | transient | temporary
    shutdown_timeout: float = 5.0


class ChildFailed:
    def __init__(self, name: str, error: BaseException):
        self.name, self.error = name, error


class RestartChild:
    def __init__(self, name: str, reason: str = "requested"):
        self.name, self.reason = name, reason


class Status:
    pass


class CheckHealth:
    pass


class StopAll:
    pass


class Supervisor(pykka.ThreadingActor):
    def __init__(self, specs: list[ChildSpec], addresses: Addresses, make_context: Callable[[str], ActorContext],
                 max_restarts: int, period_s: float, on_give_up: Callable[[str], None], hang_timeout_s: float = 30.0):
        super().__init__()
        self.specs = {s.name: s for s in specs}
        self.order = [s.name for s in specs]
        self.addresses = addresses
        self.make_context = make_context
        self.max_restarts = max_restarts
        self.period_s = period_s
        self.on_give_up = on_give_up
        self.refs: dict[str, pykka.ActorRef] = {}
        self.escalated_at: float | None = None
        self.stopping = False
        self.hang_timeout_s = hang_timeout_s

    # --- lifecycle ---------------------------------------------------------------------------------

    def on_start(self) -> None:
        for name in self.order:
            if not self._start_child(name):
                error = self.addresses[name].stats.last_error or "failed to start"
                self.stopping = True
                for n in reversed(self.order):
                    self._stop_child(n, "stopped")
                threading.Thread(target=self.on_give_up, args=(f"actor {name} could not start: {error}",),
                                 daemon=True).start()
                return

    def _start_child(self, name: str) -> bool:
        """Start and wait until on_start is done; False (state "failed") if it raised."""
        spec = self.specs[name]
        addr = self.addresses[name]
        addr.state = "starting"
        ref = spec.actor_class.start(self.make_context(name))
        try:
            ref.ask("ping", timeout=spec.shutdown_timeout + 10)
        except (pykka.ActorDeadError, pykka.Timeout):
            addr.state = "failed"
            ref.stop(block=False) if ref.is_alive() else None
            return False
        self.refs[name] = ref
        addr.attach(ref)
        return True

    def _stop_child(self, name: str, state: str) -> None:
        addr = self.addresses[name]
        ref = addr.detach(state)
        self.refs.pop(name, None)
        if ref is None:
            return
        try:
            ref.stop(block=True, timeout=self.specs[name].shutdown_timeout)
        except pykka.Timeout:
            log.warning("actor %s did not stop within %.1fs; abandoning it", name,
                        self.specs[name].shutdown_timeout)
        except pykka.ActorDeadError:
            pass

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ChildFailed):
            return self._child_failed(message)
        if isinstance(message, RestartChild):
            return self._restart(message.name, message.reason, count=True)
        if isinstance(message, Status):
            return self._status()
        if isinstance(message, CheckHealth):
            return self._check_health()
        if isinstance(message, StopAll):
            self.stopping = True
            for name in reversed(self.order):
                self._stop_child(name, "stopped")
            return True
        raise TypeError(f"supervisor: unexpected message {message!r}")

    # --- restarts ----------------------------------------------------------------------------------

    def _child_failed(self, msg: ChildFailed) -> None:
        if self.stopping:
            return
        spec = self.specs[msg.name]
        addr = self.addresses[msg.name]
        self.refs.pop(msg.name, None)
        if spec.restart == "temporary":
            addr.state = "failed"
            return
        now = time.monotonic()
        times = addr.stats.restart_times
        recent = [t for t in times if now - t <= self.period_s]
        if len(recent) >= self.max_restarts:
            self._escalate(msg.name, msg.error)
            return
        self._restart(msg.name, f"crashed: {msg.error!r}", count=True)

    def _restart(self, name: str, reason: str, count: bool) -> bool:
        if name not in self.specs:
            raise KeyError(name)
        log.info("restarting %s (%s)", name, reason)
        self._stop_child(name, "restarting")
        addr = self.addresses[name]
        if count:
            addr.stats.restarts += 1
            addr.stats.restart_times.append(time.monotonic())
        if not self._start_child(name):
            self.actor_ref.tell(ChildFailed(name, RuntimeError(addr.stats.last_error or "failed to start")))
            return False
        return True

    def _escalate(self, name: str, error: BaseException) -> None:
        now = time.monotonic()
        if self.escalated_at is not None and now - self.escalated_at <= self.period_s * 4:
            reason = (f"actor {name} kept failing after the whole tree was restarted "
                      f"(last error: {error!r}); giving up")
            log.error(reason)
            self.stopping = True
            for n in reversed(self.order):
                self._stop_child(n, "stopped")
            threading.Thread(target=self.on_give_up, args=(reason,), daemon=True).start()
            return
        log.warning("actor %s exceeded %d restarts in %.1fs; restarting the whole tree",
                    name, self.max_restarts, self.period_s)
        self.escalated_at = now
        for n in reversed(self.order):
            self._stop_child(n, "restarting")
        for n in self.order:
            self.addresses[n].stats.restart_times.clear()
            self.addresses[n].stats.restarts += 1
            if not self._start_child(n):
                self.actor_ref.tell(ChildFailed(n, RuntimeError(self.addresses[n].stats.last_error or "failed")))
                return

    def _check_health(self) -> None:
        """A handler busy past the hang timeout: abandon that instance and start a fresh one."""
        if self.stopping:
            return
        now = time.monotonic()
        for name in self.order:
            addr = self.addresses[name]
            busy = addr.busy_since
            ref = self.refs.get(name)
            if busy is None or ref is None or now - busy < self.hang_timeout_s:
                continue
            log.error("actor %s is hung: one message has taken %.0fs", name, now - busy)
            addr.take_back_inbox(ref.actor_inbox, f"hung: a handler ran for more than {self.hang_timeout_s:.0f}s")
            self.refs.pop(name, None)
            # A thread cannot be killed: the hung instance is detached and told to stop once it returns.
            ref.stop(block=False)
            self._child_failed(ChildFailed(name, RuntimeError(addr.stats.last_error)))

    # --- status --------------------------------------------------------------------------------------

    def _status(self) -> list[dict[str, Any]]:
        rows = []
        now = time.time()
        for name in self.order:
            addr = self.addresses[name]
            # Read from the Address, not by asking the actor: a deep mailbox must not look like a hang.
            info = addr.describe() if addr.state == "running" and addr.describe else {}
            state = addr.state
            pid = info.pop("pid", None)
            row = {
                "name": name,
                "pid": pid,
                "state": state,
                "restarts": addr.stats.restarts,
                "uptime": round(now - addr.stats.started_at, 1) if addr.stats.started_at and state == "running" else 0,
                "mailbox": addr.mailbox_depth(),
                "handled": addr.stats.handled,
                "lastError": addr.stats.last_error,
                "lastErrorAt": addr.stats.last_error_at,
            }
            row.update(info)
            rows.append(row)
        return rows
