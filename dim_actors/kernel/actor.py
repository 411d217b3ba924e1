"""The base every dim-desktop actor derives from: envelopes in, names out, failures
reported."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pykka

from dim_actors.messages import Batch, Crash, Envelope, Msg, Ping, envelope

if TYPE_CHECKING:
    from dim_actors.config.home import DimHome
    from dim_actors.config.settings import Settings
    from dim_actors.kernel.addresses import Address, Addresses, Incarnation

log = logging.getLogger(__name__)


@dataclass
class ActorContext:
    """What the supervisor hands each actor instance: its name and the way to reach the
    others."""

    name: str
    addresses: Addresses
    home: DimHome
    settings: Settings
    # (name, error, generation): an instance that still owned its address failed.
    on_failure: Callable[[str, BaseException, int], None]
    # (name, generation): an instance stopped itself (a normal exit, which restart types
    # tell apart).
    on_exit: Callable[[str, int], None] | None = None

    # While the actor's own thread handles a Batch: what it sends, per recipient, in
    # order; sent as one Batch each when the batch is done (`flush_batch`), so a batch
    # in makes a batch out.
    _out: dict[str, list[Msg]] | None = None
    _out_thread: int = 0

    @property
    def address(self) -> Address:
        return self.addresses[self.name]

    def send(self, recipient: str, body: Msg) -> None:
        out = self._out
        if out is not None and threading.get_ident() == self._out_thread:
            out.setdefault(recipient, []).append(body)
        else:
            self.addresses.send(self.name, recipient, body)

    def send_now(self, recipient: str, body: Msg) -> None:
        """Into the recipient's mailbox at once, even while a Batch is handled (when
        `send` keeps what is sent until the batch is done)."""
        self.addresses.send(self.name, recipient, body)

    def send_batch(self, recipient: str, bodies: list[Msg]) -> None:
        if bodies:
            self.addresses.send_batch(self.name, recipient, bodies)

    def start_batch(self) -> None:
        self._out = {}
        self._out_thread = threading.get_ident()

    def flush_batch(self) -> None:
        out, self._out = self._out, None
        for recipient, bodies in (out or {}).items():
            self.addresses.send_batch(self.name, recipient, bodies)


class DimActor(pykka.ThreadingActor):
    """Subclasses implement `handle(sender, body)`; one handler method per message kind
    is the norm."""

    # Shutdown stops every actor explicitly; a hung, abandoned one must not keep the
    # process alive.
    use_daemon_thread = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # pykka logs an on_start failure but tells nobody; record it so status and the
        # supervisor can.
        if "on_start" in cls.__dict__:
            original = cls.__dict__["on_start"]

            def on_start(self: DimActor) -> None:
                try:
                    original(self)
                except Exception as e:
                    self.ctx.address.stats.last_error = (
                        f"failed to start: {type(e).__name__}: {e}"
                    )
                    self.ctx.address.stats.last_error_at = time.time()
                    raise

            cls.on_start = on_start  # type: ignore[method-assign]

    def __init__(self, ctx: ActorContext):
        super().__init__()
        self.ctx = ctx
        # Made current by the supervisor just before constructing us (on its thread);
        # this instance writes its bookkeeping only here, so once let go it cannot touch
        # its successor's.
        self._incarnation: Incarnation = ctx.address.current
        # the rest of a batch one of whose items failed
        self._unhandled: Envelope | None = None

    @staticmethod
    def _create_actor_inbox():
        # The same FIFO as pykka's queue.Queue, without its Python-level locks and
        # conditions: about 1.5 us less per message hop (bench/hotpath.py), and every
        # gateway event makes two. pykka offers no public way to choose the inbox; this
        # private hook is how its own actor types do it, so
        # tests/test_library_contracts.py checks that pykka still builds it here.
        return queue.SimpleQueue()

    def on_start(self) -> None:
        self.ctx.address.describe = self.describe

    def superseded(self) -> bool:
        """True once the supervisor has let this instance go (declared it hung and
        started a successor, or is stopping it). A thread cannot be killed, so long work
        checks this at its step boundaries and stops there, letting go of anything it
        shares (a database's write lock)."""
        return self.ctx.address.current is not self._incarnation

    def describe(self) -> dict[str, Any]:
        """Fields for `dimctl status`; runs on the caller's thread, so it only reads."""
        return {"pid": os.getpid()}

    def on_receive(self, message: Any) -> Any:
        if not isinstance(message, Envelope):
            if message == "ping":  # the supervisor's liveness probe
                return "pong"
            raise TypeError(
                f"{self.ctx.name} got a message that is not an Envelope: {message!r}"
            )
        body = message.body
        book = self._incarnation
        if type(body) is Batch:
            return self._handle_batch(message.sender, body.items, book)
        if isinstance(body, Ping):
            return "pong"
        book.busy_since = time.monotonic()
        try:
            result = self._dispatch(message.sender, body)
        finally:
            book.busy_since = None
        book.handled += 1
        return result

    def _dispatch(self, sender: str, body: Msg) -> Any:
        if isinstance(body, Crash):
            if body.hangSeconds is None:
                raise RuntimeError(body.reason)
            time.sleep(body.hangSeconds)
            return None
        return self.handle(sender, body)

    def _handle_batch(self, sender: str, items: list[Msg], book: Incarnation) -> None:
        self.ctx.address.batch_taken(len(items))
        book.busy_since = time.monotonic()
        self.ctx.start_batch()
        done = 0
        dispatch = self._dispatch
        try:
            for item in items:
                if type(item) is not Ping:
                    dispatch(sender, item)
                done += 1
        except BaseException:
            # The failing item is dropped, as a failing single message is; the items
            # after it are not: they go back at the head of the mailbox for the
            # successor (on_failure).
            if done + 1 < len(items):
                self._unhandled = envelope(
                    sender, self.ctx.name, Batch(items=items[done + 1 :])
                )
            raise
        finally:
            book.handled += done
            # What the items made so far goes out even if one of them fails: it was real
            # work.
            self.ctx.flush_batch()
            book.busy_since = None

    def handle(self, sender: str, body: Msg) -> Any:
        raise NotImplementedError

    def on_failure(self, exception_type, exception_value, traceback) -> None:
        first, self._unhandled = self._unhandled, None
        if self.ctx.address.take_back_inbox(
            self.actor_inbox, exception_value, self._incarnation, first
        ):
            log.error("actor %s failed: %r", self.ctx.name, exception_value)
            self.ctx.on_failure(
                self.ctx.name, exception_value, self._incarnation.generation
            )
        else:
            # Let go earlier (hung, then replaced): its successor's messages and state
            # are not its own.
            log.warning(
                "actor %s: an instance already replaced failed late: %r",
                self.ctx.name,
                exception_value,
            )

    def _stop(self) -> None:
        # pykka runs this for every requested stop. It is private, but the public
        # on_stop will not do: subclasses override it and call it from their on_failure
        # too. The supervisor lets an instance go before stopping it, so an instance
        # that still owns its address here stopped itself: a normal exit, which
        # transient and temporary children are not restarted after. Its unhandled
        # messages wait for a successor. tests/test_library_contracts.py checks that
        # pykka still calls this, on the actor's thread, with the messages after the
        # stop unread.
        super()._stop()
        if self.ctx.address.take_back_inbox(self.actor_inbox, None, self._incarnation):
            log.info("actor %s stopped by itself", self.ctx.name)
            if self.ctx.on_exit is not None:
                self.ctx.on_exit(self.ctx.name, self._incarnation.generation)
