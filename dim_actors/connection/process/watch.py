"""The process's own health: a lock that knows its holder, and the watchdog that ends
the process when one of its loops is stuck (the supervisor then starts a fresh one)."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable

log = logging.getLogger("dim.connection")


class OwnedLock:
    """A non-reentrant lock that knows which thread holds it. Taking it again on the
    thread that holds it would hang that thread for good: it raises at once instead, so
    the mistake is a logged error in one frame, not a dead connection."""

    __slots__ = ("_lock", "owner")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.owner: int | None = None

    def held_here(self) -> bool:
        return self.owner == threading.get_ident()

    def __enter__(self) -> OwnedLock:
        if self.held_here():
            raise RuntimeError("the frame lock is already held by this thread")
        self._lock.acquire()
        self.owner = threading.get_ident()
        return self

    def __exit__(self, *exc: object) -> None:
        self.owner = None
        self._lock.release()


# A thread of this process busy with one piece of work (a frame, a command, a keepalive
# round) for longer than this is stuck: deadlocked, or waiting on something that will
# not come. Sending one frame may take longer on a slow link (a large write_file): the
# sender gets more.
HUNG_AFTER_S = 30.0
HUNG_AFTER_SEND_S = 120.0
# The exit code of a connection process that ended itself because a thread was stuck.
# Any exit makes the supervisor restart the connection (actor.py); this one says why in
# `dimctl logs`.
EXIT_HUNG = 70


def stuck_loops(
    busy: dict[str, float],
    bounds: dict[str, float],
    now: float,
    default_bound: float = HUNG_AFTER_S,
) -> list[tuple[str, float]]:
    """The loops busy with one piece of work for longer than their bound, and for how
    long."""
    return [
        (name, now - since)
        for name, since in busy.items()
        if now - since > bounds.get(name, default_bound)
    ]


class _Working:
    """The block of one piece of work (ThreadWatch.working): a class rather than a
    generator context manager, as the socket thread enters one per gateway frame."""

    __slots__ = ("busy", "name")

    def __init__(self, busy: dict[str, float], name: str):
        self.busy, self.name = busy, name

    def __enter__(self) -> None:
        self.busy[self.name] = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        self.busy.pop(self.name, None)


class ThreadWatch:
    """Each loop of the process marks the piece of work it is doing; an idle loop
    (waiting for a frame, a command, its next round) is not busy, however long it waits.
    The watchdog thread ends the process when one is busy past its bound, so the
    supervisor starts a fresh one: a hung thread that holds a lock (or leaves its work
    waiting) can then hold up nothing."""

    def __init__(
        self, bound_s: float = HUNG_AFTER_S, bounds: dict[str, float] | None = None
    ):
        self.bound_s = bound_s
        # Loops that get another bound than bound_s, by name.
        self.bounds = {"sender": HUNG_AFTER_SEND_S} if bounds is None else dict(bounds)
        self.busy: dict[
            str, float
        ] = {}  # loop name -> time.monotonic() its current piece of work began
        self.threads: dict[
            str, int
        ] = {}  # loop name -> thread ident, for the stack in the log

    def working(self, name: str) -> _Working:
        """`with watch.working(name):` marks `name` busy for the block."""
        self.threads[name] = threading.get_ident()
        return _Working(self.busy, name)

    def stuck(self, now: float) -> list[tuple[str, float]]:
        return stuck_loops(dict(self.busy), self.bounds, now, self.bound_s)

    def run(self, exit_: Callable[[int], None] = os._exit) -> None:
        while True:
            time.sleep(min(1.0, self.bound_s / 4))
            stuck = self.stuck(time.monotonic())
            if not stuck:
                continue
            frames = sys._current_frames()
            for name, secs in stuck:
                frame = frames.get(self.threads.get(name, -1))
                stack = (
                    "".join(traceback.format_stack(frame))
                    if frame is not None
                    else "(no stack)"
                )
                log.critical(
                    "the %s thread of the connection process has been stuck for %.0f s: ending the "
                    "process (exit code %d) so the supervisor starts a new one. Its stack:\n%s",
                    name,
                    secs,
                    EXIT_HUNG,
                    stack,
                )
            for handler in logging.getLogger().handlers:
                handler.flush()
            exit_(EXIT_HUNG)
            return
