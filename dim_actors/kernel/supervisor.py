"""The supervisor: child specs, one_for_one restarts with an intensity limit, and
status.

It is a pykka actor like the others, so failure reports, restart requests and status
queries are handled one at a time, in order, and never race each other.

Restart types, as in OTP: a `permanent` child is restarted whenever it ends; a
`transient` one only after an abnormal end (a crash or a hang), not after it stopped by
itself; a `temporary` one never. Beyond the intensity (`max_restarts` in `period_s` for
one child) the whole tree is restarted once; if a child cannot start then, or one
exceeds its intensity again within `period_s` of that tree restart, every child is
stopped in reverse order and `on_give_up` is told why, in one line.

A stop of the app is a state the supervisor knows before anything else happens:
`stop_event` is set by whoever asks for the stop (a signal, `dimctl stop`, the tray),
not queued behind this actor's mailbox. From then on a child that ends is expected, not
a failure: nothing is restarted, no hang is detected, a start in progress is abandoned.
`StopAll` then asks every child to stop at once (in reverse order) and waits for them
together, until one deadline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import pykka

from dim_actors.kernel.actor import ActorContext, DimActor
from dim_actors.kernel.addresses import Addresses

log = logging.getLogger(__name__)


Restart = Literal["permanent", "transient", "temporary"]


@dataclass(frozen=True)
class ChildSpec:
    name: str
    actor_class: type[DimActor]
    restart: Restart = "permanent"
    shutdown_timeout: float = 5.0
    # What the actor's constructor takes after its context: its typed wiring (the
    # restart memory and the hooks the composition root owns), the same object for every
    # incarnation.
    wiring: object = None


class ChildFailed:
    """An instance ended abnormally (crashed, hung, or could not start)."""

    def __init__(self, name: str, error: BaseException, generation: int):
        self.name, self.error, self.generation = name, error, generation


class ChildExited:
    """An instance stopped by itself: a normal exit."""

    def __init__(self, name: str, generation: int):
        self.name, self.generation = name, generation


class RestartChild:
    def __init__(self, name: str, reason: str = "requested"):
        self.name, self.reason = name, reason


class Status:
    pass


class CheckHealth:
    pass


class StopAll:
    """Stop every child; `deadline` (time.monotonic()) bounds the whole stop, not each
    child."""

    def __init__(self, deadline: float | None = None):
        self.deadline = deadline


class Supervisor(pykka.ThreadingActor):
    # Stopped explicitly (StopAll, then stop); if it cannot be (stuck past the app's
    # stop deadline), its thread must not keep the process alive.
    use_daemon_thread = True

    def __init__(
        self,
        specs: list[ChildSpec],
        addresses: Addresses,
        make_context: Callable[[str], ActorContext],
        max_restarts: int,
        period_s: float,
        on_give_up: Callable[[str], None],
        hang_timeout_s: float = 30.0,
        stop_event: threading.Event | None = None,
    ):
        super().__init__()
        self.specs = {s.name: s for s in specs}
        self.order = [s.name for s in specs]
        self.addresses = addresses
        self.make_context = make_context
        self.max_restarts = max_restarts
        self.period_s = period_s
        self.on_give_up = on_give_up
        self.refs: dict[str, pykka.ActorRef] = {}
        # The incarnation each child's latest start made; a report about any other is
        # stale (that instance was already replaced) and must not restart its successor.
        self.generations: dict[str, int] = {}
        self.escalated_at: float | None = None
        self.stopping = False  # giving up, or StopAll
        # Set (from any thread) when the app's stop is requested: see the module
        # docstring.
        self.stop_event = stop_event if stop_event is not None else threading.Event()
        self.hang_timeout_s = hang_timeout_s
        # Instances let go while the stop was requested (a start or a restart cut short)
        # whose stop is still under way: StopAll waits for them too, so no connection
        # process outlives the app.
        self.letting_go: list[tuple[str, pykka.Future]] = []

    def _stop_requested(self) -> bool:
        return self.stopping or self.stop_event.is_set()

    # --- lifecycle --------------------------------------------------------------------

    def on_start(self) -> None:
        for name in self.order:
            if not self._start_child(name):
                if self._stop_requested():
                    log.info(
                        "start of the actors abandoned at %s: dim-desktop is stopping",
                        name,
                    )
                else:
                    self._give_up(f"actor {name} could not start: {self._error(name)}")
                return

    def _error(self, name: str) -> str:
        """Why `name` did not start, for "actor X could not start: ..." lines."""
        return (self.addresses[name].stats.last_error or "unknown error").removeprefix(
            "failed to start: "
        )

    def _start_child(self, name: str) -> bool:
        """Start and wait until on_start is done; False (state "failed") if it raised."""
        spec = self.specs[name]
        addr = self.addresses[name]
        addr.state = "starting"
        self.generations[name] = addr.new_incarnation().generation
        try:
            context = self.make_context(name)
            ref = (
                spec.actor_class.start(context)
                if spec.wiring is None
                else spec.actor_class.start(context, spec.wiring)
            )
        except Exception as e:  # the constructor runs here, on the supervisor's thread
            addr.stats.last_error, addr.stats.last_error_at = (
                f"failed to start: {type(e).__name__}: {e}",
                time.time(),
            )
            addr.detach("failed")
            return False
        limit = spec.shutdown_timeout + 10
        try:
            # on_start runs first: "pong" says it is done. Waited for in slices, so that
            # a stop of the app requested meanwhile is not held up by a start that no
            # longer matters.
            self._wait(ref.ask("ping", block=False), time.monotonic() + limit)
        except (pykka.ActorDeadError, pykka.Timeout, _StopRequested) as e:
            if isinstance(e, pykka.Timeout):
                addr.stats.last_error = (
                    f"failed to start: not started within {limit:.0f}s"
                )
                addr.stats.last_error_at = time.time()
            # Let it go first, so its stop below is not taken for an exit of its own.
            addr.detach("stopped" if isinstance(e, _StopRequested) else "failed")
            if ref.is_alive():
                stopped = ref.stop(block=False)
                if isinstance(e, _StopRequested):
                    self.letting_go.append((name, stopped))
            return False
        self.refs[name] = ref
        addr.attach(ref)
        return True

    def _wait(self, future: pykka.Future, deadline: float) -> Any:
        """future.get(), until `deadline`; raises _StopRequested as soon as the app's
        stop is requested."""
        while True:
            if self.stop_event.is_set():
                raise _StopRequested()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise pykka.Timeout("timed out")
            try:
                return future.get(timeout=min(remaining, 0.05))
            except pykka.Timeout:
                continue

    def _stop_child(self, name: str, state: str) -> None:
        addr = self.addresses[name]
        ref = addr.detach(state)
        self.refs.pop(name, None)
        if ref is None:
            return
        timeout = self.specs[name].shutdown_timeout
        stopped = ref.stop(block=False)
        try:
            self._wait(stopped, time.monotonic() + timeout)
        except pykka.Timeout:
            log.warning(
                "actor %s did not stop within %.1fs; abandoning it", name, timeout
            )
        except _StopRequested:
            self.letting_go.append((name, stopped))  # StopAll waits for it

    def _stop_all(self, deadline: float | None) -> None:
        """Every child at once: each is asked to stop (in reverse start order, so the UI
        bridge and the connection go first), then all are waited for together until
        `deadline`, each at most its shutdown_timeout. A child that has not stopped by
        then is abandoned (its thread is a daemon, and the app kills a connection
        process left behind)."""
        self.stopping = True
        begun = time.monotonic()
        stopping: list[tuple[str, pykka.Future, float]] = []
        for name in reversed(self.order):
            ref = self.addresses[name].detach("stopped")
            self.refs.pop(name, None)
            if ref is not None:
                stopping.append(
                    (name, ref.stop(block=False), self.specs[name].shutdown_timeout)
                )
        stopping += [
            (name, f, self.specs[name].shutdown_timeout) for name, f in self.letting_go
        ]
        self.letting_go = []
        for name, stopped, timeout in stopping:
            until = (
                begun + timeout if deadline is None else min(begun + timeout, deadline)
            )
            try:
                stopped.get(timeout=max(0.0, until - time.monotonic()))
            except pykka.Timeout:
                log.warning(
                    "actor %s did not stop within %.1fs of the stop; abandoning it",
                    name,
                    time.monotonic() - begun,
                )
            except pykka.ActorDeadError:
                pass
        log.info("actors stopped in %.2fs", time.monotonic() - begun)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ChildFailed):
            return self._child_down(
                message.name,
                message.generation,
                f"crashed: {message.error!r}",
                abnormal=True,
            )
        if isinstance(message, ChildExited):
            return self._child_down(
                message.name, message.generation, "stopped by itself", abnormal=False
            )
        if isinstance(message, RestartChild):
            if self._stop_requested():  # giving up or shutting down: start nothing more
                return False
            return self._restart(message.name, message.reason, count=True)
        if isinstance(message, Status):
            return self._status()
        if isinstance(message, CheckHealth):
            return self._check_health()
        if isinstance(message, StopAll):
            self._stop_all(message.deadline)
            return True
        raise TypeError(f"supervisor: unexpected message {message!r}")

    # --- restarts ---------------------------------------------------------------------

    def _child_down(self, name: str, generation: int, why: str, abnormal: bool) -> None:
        if self._stop_requested():
            # Ending is what every child is about to do: expected, not a failure.
            log.info("actor %s %s while dim-desktop stops; not restarted", name, why)
            return
        if generation != self.generations.get(name):
            log.info(
                "actor %s: ignoring a report about instance %d, already replaced",
                name,
                generation,
            )
            return
        spec = self.specs[name]
        addr = self.addresses[name]
        self.refs.pop(name, None)
        if spec.restart == "temporary" or (
            spec.restart == "transient" and not abnormal
        ):
            log.info("actor %s (%s) %s; not restarted", name, spec.restart, why)
            # messages to it wait for a `dimctl restart`
            addr.detach("failed" if abnormal else "stopped")
            return
        now = time.monotonic()
        recent = [t for t in addr.stats.restart_times if now - t <= self.period_s]
        if len(recent) >= self.max_restarts:
            self._escalate(name, why)
            return
        self._restart(name, why, count=True)

    def _restart(self, name: str, reason: str, count: bool) -> bool:
        if name not in self.specs:
            raise KeyError(name)
        if self._stop_requested():
            return False
        log.info("restarting %s (%s)", name, reason)
        self._stop_child(name, "restarting")
        addr = self.addresses[name]
        if count:
            addr.stats.restarts += 1
            addr.stats.restart_times.append(time.monotonic())
        if not self._start_child(name):
            if self._stop_requested():
                return False
            # Counts towards the intensity like a crash, so a child that cannot start
            # escalates.
            error = RuntimeError(f"could not start: {self._error(name)}")
            self.actor_ref.tell(ChildFailed(name, error, self.generations[name]))
            return False
        return True

    def _escalate(self, name: str, why: str) -> None:
        now = time.monotonic()
        if self.escalated_at is not None and now - self.escalated_at <= self.period_s:
            self._give_up(
                f"actor {name} kept failing after the whole tree was restarted "
                f"({self.max_restarts + 1} failures within {self.period_s:g}s; last: "
                f"{why}); giving up"
            )
            return
        log.warning(
            "actor %s exceeded %d restarts in %.1fs (%s); restarting the whole tree",
            name,
            self.max_restarts,
            self.period_s,
            why,
        )
        self.escalated_at = now
        for n in reversed(self.order):
            self._stop_child(n, "restarting")
        for n in self.order:
            if self._stop_requested():
                return
            self.addresses[n].stats.restart_times.clear()
            self.addresses[n].stats.restarts += 1
            if not self._start_child(n):
                if self._stop_requested():
                    return
                # The tree restart failed: stop what it started rather than leave the
                # rest waiting.
                self._give_up(
                    f"actor {name} kept failing and the whole tree was restarted, but actor {n} "
                    f"could not start: {self._error(n)}; giving up"
                )
                return

    def _give_up(self, reason: str) -> None:
        """Stop every child in reverse order, then tell on_give_up why (dim-desktop
        exits with 3)."""
        log.error(reason)
        self.stopping = True
        for n in reversed(self.order):
            self._stop_child(n, "stopped")
        # On this thread, before anything else is handled: whoever asks for Status next
        # (the app, waiting for every actor to start) already sees the give-up.
        # on_give_up only requests the app's stop; it must not wait for this actor.
        self.on_give_up(reason)

    def _check_health(self) -> None:
        """A handler busy past the hang timeout: abandon that instance and start a fresh
        one."""
        if self._stop_requested():
            return
        now = time.monotonic()
        for name in self.order:
            addr = self.addresses[name]
            book = addr.current
            busy = book.busy_since
            ref = self.refs.get(name)
            if busy is None or ref is None or now - busy < self.hang_timeout_s:
                continue
            error = f"hung: a handler ran for more than {self.hang_timeout_s:.0f}s"
            if not addr.take_back_inbox(ref.actor_inbox, error, book):
                continue  # it failed by itself just now; its own report is on the way
            log.error("actor %s is hung: one message has taken %.0fs", name, now - busy)
            self.refs.pop(name, None)
            # A thread cannot be killed: the hung instance is let go (it can no longer
            # write the address's bookkeeping, see Incarnation) and told to stop once
            # its handler returns.
            ref.stop(block=False)
            self._child_down(name, book.generation, error, abnormal=True)

    # --- status -----------------------------------------------------------------------

    def _status(self) -> list[dict[str, Any]]:
        rows = []
        now = time.time()
        for name in self.order:
            addr = self.addresses[name]
            # Read from the Address, not by asking the actor: a deep mailbox must not
            # look like a hang.
            info = addr.describe() if addr.state == "running" and addr.describe else {}
            state = addr.state
            pid = info.pop("pid", None)
            row = {
                "name": name,
                "pid": pid,
                "state": state,
                "restarts": addr.stats.restarts,
                "uptime": round(now - addr.stats.started_at, 1)
                if addr.stats.started_at and state == "running"
                else 0,
                "mailbox": addr.mailbox_depth(),
                "handled": addr.handled(),
                "lastError": addr.stats.last_error,
                "lastErrorAt": addr.stats.last_error_at,
            }
            row.update(info)
            row.update(self.addresses.logs.health_of(name))
            rows.append(row)
        return rows


class _StopRequested(Exception):
    """The app's stop was requested while the supervisor waited for a child."""
