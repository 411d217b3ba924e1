"""Stable actor addresses: actors send to a name, never to a pykka ref.

A pykka ref dies with its actor. An Address outlives every instance: while its actor
restarts, messages are held in order and handed to the new instance before anything
newer, and when an actor fails, what was still in its inbox is taken back instead of
being dropped by pykka.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pykka

from dim_actors.messages import Batch, Envelope, Msg, envelope
from dim_actors.messages.envelope import next_envelope_id

if TYPE_CHECKING:
    from dim_actors.kernel.messagelog import MessageLogs


@dataclass
class Stats:
    """Per-name counters that survive restarts (dimctl status shows them)."""

    restarts: int = 0
    # by instances already let go; Address.handled() adds the current one's
    handled: int = 0
    started_at: float = 0.0
    last_error: str | None = None
    last_error_at: float | None = None
    restart_times: collections.deque = field(
        default_factory=lambda: collections.deque(maxlen=64)
    )


class Incarnation:
    """The bookkeeping one actor instance writes on every message, owned by that
    instance alone.

    A thread cannot be killed: a hung instance that is replaced keeps running, and when
    its handler finally returns it still runs the code after it. So each instance writes
    only into its own Incarnation, and the Address reads only the current one's:
    whatever a let-go instance writes later lands in an object nobody reads, with no
    check (and no race) on the hot path."""

    __slots__ = ("generation", "busy_since", "handled")

    def __init__(self, generation: int):
        self.generation = generation
        # When the current handler started (monotonic), None while idle: a handler
        # running far longer than the hang timeout means the actor is hung, however deep
        # its mailbox.
        self.busy_since: float | None = None
        self.handled = 0


class Address:
    def __init__(self, name: str):
        self.name = name
        self.lock = threading.Lock()
        self.ref: pykka.ActorRef | None = None
        self.held: collections.deque[Envelope] = collections.deque()
        self.state = "stopped"  # starting | running | restarting | stopped | failed
        self.stats = Stats()
        # Set by the running instance; called from other threads, so it must only read.
        self.describe: Callable[[], dict] | None = None
        self._generations = 0
        self.current = Incarnation(0)  # vacant until an instance starts
        # Items beyond the first of every Batch not yet handled (queued, held or taken
        # back), so the mailbox depth counts messages, not mailbox entries: backpressure
        # depends on it.
        self.batched_extra = 0

    @property
    def busy_since(self) -> float | None:
        return self.current.busy_since

    def handled(self) -> int:
        return self.stats.handled + self.current.handled

    def new_incarnation(self) -> Incarnation:
        """For an instance about to start (the supervisor's thread, before constructing
        it)."""
        with self.lock:
            self._release()
            self._generations += 1
            self.current = Incarnation(self._generations)
            return self.current

    def _release(self) -> None:
        """Under the lock: the current instance no longer owns the address; keep what it
        counted."""
        self.stats.handled += self.current.handled
        self.current = Incarnation(0)

    def deliver(self, env: Envelope) -> None:
        with self.lock:
            if type(env.body) is Batch:
                self.batched_extra += len(env.body.items) - 1
            if self.ref is not None and self.state == "running":
                try:
                    self.ref.tell(env)
                    return
                except pykka.ActorDeadError:
                    # Died between its failure and the supervisor noticing: keep it for
                    # the successor.
                    self.state = "restarting"
                    self.ref = None
            self.held.append(env)

    def attach(self, ref: pykka.ActorRef) -> None:
        with self.lock:
            while self.held:
                ref.tell(self.held.popleft())
            self.ref = ref
            self.state = "running"
            self.stats.started_at = time.time()

    def detach(self, state: str = "restarting") -> pykka.ActorRef | None:
        """Stop routing to the current instance; later messages wait in `held`."""
        with self.lock:
            ref, self.ref = self.ref, None
            self.state = state
            self._release()
            return ref

    def take_back_inbox(
        self,
        inbox,
        error: BaseException | str | None,
        owner: Incarnation,
        first: Envelope | None = None,
    ) -> bool:
        """Keep a failed, abandoned or exited instance's unhandled messages for its
        successor, in order.

        Only while `owner` still owns the address: False, doing nothing, for an instance
        already let go, so one failing late (a hung handler that returns and then
        raises) cannot take the place of its successor."""
        with self.lock:
            if owner is not self.current:
                return False
            self._release()
            self.ref = None
            self.state = "restarting"
            pending = []
            # what the failed instance had taken but not handled: before the rest
            if first is not None:
                pending.append(first)
                if type(first.body) is Batch:
                    self.batched_extra += len(first.body.items) - 1
            while not inbox.empty():
                item = inbox.get()
                # pykka's own envelope (private) carries what was told in `.message`;
                # only ours are kept (a "ping" ask is not the actor's to hand on).
                # tests/test_library_contracts.py checks the envelope's shape.
                msg = getattr(item, "message", None)
                if isinstance(msg, Envelope):
                    pending.append(msg)
            self.held.extendleft(reversed(pending))
            if error is not None:
                self.stats.last_error = (
                    error
                    if isinstance(error, str)
                    else f"{type(error).__name__}: {error}"
                )
                self.stats.last_error_at = time.time()
            return True

    def batch_taken(self, count: int) -> None:
        """A Batch of `count` items left the mailbox (its recipient is about to handle
        it)."""
        with self.lock:
            self.batched_extra -= count - 1

    def mailbox_depth(self) -> int:
        with self.lock:
            # DimActor's inbox is a queue.SimpleQueue (DimActor._create_actor_inbox).
            inbox = self.ref.actor_inbox.qsize() if self.ref is not None else 0  # type: ignore[attr-defined]
            return inbox + len(self.held) + self.batched_extra


class Addresses:
    """The name → Address table every actor sends through; every delivery is logged."""

    def __init__(self, names: list[str], logs: MessageLogs):
        self._by_name = {n: Address(n) for n in names}
        self.logs = logs

    def __getitem__(self, name: str) -> Address:
        return self._by_name[name]

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def names(self) -> list[str]:
        return list(self._by_name)

    def send(self, sender: str, recipient: str, body: Msg) -> Envelope:
        env = envelope(sender, recipient, body)
        self.logs.append(env)
        self._by_name[recipient].deliver(env)
        return env

    def send_batch(self, sender: str, recipient: str, bodies: list[Msg]) -> None:
        """`bodies`, in order, as one mailbox item: one lock, one hop and one wakeup for
        all of them instead of one each. Each is still logged as a message of its own,
        with its own id."""
        if len(bodies) == 1:
            self.send(sender, recipient, bodies[0])
            return
        # One clock reading for the batch: its messages are sent together.
        ts = time.time()
        self.logs.append_many(
            [
                Envelope(next_envelope_id(), ts, sender, recipient, body)  # type: ignore[arg-type]
                for body in bodies
            ]
        )
        self._by_name[recipient].deliver(
            envelope(sender, recipient, Batch(items=bodies))
        )
