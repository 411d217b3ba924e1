"""The real watcher with faults injected at its named hooks, for tests of how it copes with what
watchdog and the kernel do only under load or by accident.

Each fault names a NAME; unset ("") means off:
* handler_error: the event handler raises on an event of a file or folder whose name contains NAME
  (watchdog's thread would die of it without the handler's guard);
* overflow: such an event makes the handler drop every event for OVERFLOW_S, as an inotify queue
  overflow does, and then give watchdog's overflow signal (its EventsLostEvent, or before 7.1.1
  its log line), after the lost events as the kernel's overflow record comes after them: told
  first, a late handler thread (a loaded machine) could drop events after the rescan;
* unwatched: a folder named NAME counts as not among the observer's watches (the watch limit);
* echo_miss: a file whose name contains NAME is not looked up in the echo set, as if its entry had
  expired (a leak, for the echoesLeaked counter to count).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass

import watchdog.events
from watchdog.events import FileSystemEvent

from dim_actors.sync import watcher

OVERFLOW_S = 0.5


@dataclass(frozen=True)
class WatcherFaults:
    handler_error: str = ""
    overflow: str = ""
    unwatched: str = ""
    echo_miss: str = ""

    @classmethod
    def parse(cls, text: str) -> WatcherFaults:
        """From "handler_error=NAME,overflow=NAME,..." (an unknown key is an error)."""
        fields = {}
        for item in filter(None, text.split(",")):
            key, _, value = item.partition("=")
            fields[key.strip()] = value.strip()
        return cls(**fields)


class FaultyHandler(watcher.EventHandler):
    def __init__(self, *args, faults: WatcherFaults, **kwargs):
        super().__init__(*args, **kwargs)
        self.faults = faults
        self.drop_until = 0.0

    def on_change(self, event: FileSystemEvent) -> None:
        name = os.path.basename(os.fsdecode(event.src_path))
        if self.faults.handler_error and self.faults.handler_error in name:
            raise RuntimeError(f"injected handler fault on {name}")
        if (
            self.faults.overflow
            and self.faults.overflow in name
            and time.monotonic() > self.drop_until
        ):
            self.drop_until = time.monotonic() + OVERFLOW_S
            told = threading.Timer(OVERFLOW_S, self._tell_overflow)
            told.daemon = True
            told.start()
        if time.monotonic() < self.drop_until:
            return
        super().on_change(event)

    def _tell_overflow(self) -> None:
        if watcher.EVENTS_LOST:  # the signal the installed watchdog gives
            self.on_event(
                watchdog.events.EventsLostEvent(self.root_str, is_directory=True)
            )
        else:
            logging.getLogger(watcher.WATCHDOG_LOGGERS[0]).warning(
                "Inotify queue overflowed; filesystem events were lost (injected)"
            )


class FaultyWatcher(watcher.Watcher):
    """Takes the same wiring as the watcher (the runtime and ChildSpec build it so); its faults are
    a class attribute: subclass it, or make a class with `with_faults`."""

    faults = WatcherFaults()

    @classmethod
    def with_faults(cls, faults: WatcherFaults) -> type[FaultyWatcher]:
        return type(cls.__name__, (cls,), {"faults": faults})

    def new_handler(self, f: watcher.Folder) -> watcher.EventHandler:
        return FaultyHandler(f, self.debouncer, self._tell_self, faults=self.faults)

    def folder_watched(
        self, rel: str, key: tuple[int, int], watches: Collection[tuple[int, int]]
    ) -> bool:
        name = self.faults.unwatched
        if name and rel.rpartition("/")[2] == name:
            return False
        return super().folder_watched(rel, key, watches)

    def _missed(self, full: str) -> bool:
        name = self.faults.echo_miss
        return bool(name) and name in os.path.basename(full)

    def echo_by_stat(self, full: str, sig: tuple[int, int, int]) -> str | None:
        return None if self._missed(full) else super().echo_by_stat(full, sig)

    def echo_by_content(self, full: str, digest: str) -> bool:
        return False if self._missed(full) else super().echo_by_content(full, digest)
