"""What dim_actors/sync/watcher.py relies on in watchdog beyond its documented API,
checked against the installed watchdog: when one of these fails, the message names the
watchdog version and the part of the watcher that relies on the changed behaviour.

* observer_fd: the observer's inotify instance is a private attribute (there is no public way to
  it); the watcher looks its watches up in /proc/self/fdinfo to find folders watchdog could not
  watch.
* The inotify queue overflow signal: an EventsLostEvent to the handler from watchdog 7.1.1; before,
  only watchdog's log lines (_OverflowSpotter).
* A watch past the inotify watch limit either raises OSError(ENOSPC) from schedule/start or is
  missing from the observer's watches (the two ways the watcher detects it), and a failed start
  leaves no inotify instance open once start_observer has discarded it.
"""

from __future__ import annotations

import errno
import importlib
import inspect
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from apphelpers import ROOT, userns_watch_limit_works, watch_limited
from watchdog.events import FileSystemEvent, FileSystemEventHandler

from dim_actors.sync import watcher
from dim_actors.sync.watcher import (
    DISCARD_S,
    EVENTS_LOST,
    OVERFLOW_LOG_LINES,
    WATCHDOG_LOGGERS,
    WATCHDOG_VERSION,
    _OverflowSpotter,
    inotify_fd_watching,
    inotify_watches,
    observer_fd,
    start_observer,
    watch_key,
)

WD = f"watchdog {WATCHDOG_VERSION}"
linux_only = pytest.mark.skipif(
    not watcher.HAVE_FDINFO, reason="inotify and /proc/self/fdinfo: Linux only"
)


class Recorder(FileSystemEventHandler):
    def __init__(self) -> None:
        self.kinds: list[str] = []

    def dispatch(
        self, event: FileSystemEvent
    ) -> None:  # as the watcher's _Handler: every event, unfiltered
        self.kinds.append(event.event_type)


@linux_only
def test_observer_fd_is_the_observers_inotify_instance(tmp_path):
    (tmp_path / "sub").mkdir()
    observer, _ = start_observer(str(tmp_path), Recorder())
    try:
        fd = observer_fd(observer)
        assert fd is not None, (
            f"{WD}: InotifyObserver._inotify_fd._inotify_fd (the observer's inotify fd) is gone; "
            "dim_actors/sync/watcher.py observer_fd relies on it (the watcher falls back on "
            "inotify_fd_watching, by the root's watch, and warns)"
        )
        watches = inotify_watches(fd)
        for d in (tmp_path, tmp_path / "sub"):
            assert watch_key(os.stat(d)) in (watches or ()), (
                f"{WD}: fd {fd} from InotifyObserver._inotify_fd._inotify_fd does not list "
                f"the watch on {d} in /proc/self/fdinfo: it is no longer the observer's "
                "inotify instance; dim_actors/sync/watcher.py observer_fd relies on it"
            )
        # the fallback for a watchdog without that attribute finds the same instance
        assert inotify_fd_watching(watch_key(os.stat(tmp_path))) == fd
        assert inotify_fd_watching(watch_key(os.stat(tmp_path)), taken={fd}) is None
    finally:
        observer.stop()
        observer.join()


def test_the_overflow_signal_relied_on_is_in_the_installed_watchdogs_source():
    inotify = importlib.import_module("watchdog.observers.inotify")
    inotify_c = importlib.import_module("watchdog.observers.inotify_c")
    source = inspect.getsource(inotify_c) + inspect.getsource(inotify)
    if EVENTS_LOST:
        from watchdog.events import EventsLostEvent

        assert (
            EventsLostEvent.event_type == EVENTS_LOST
            and "EventsLostEvent(" in inspect.getsource(inotify)
        ), (
            f"{WD}: the inotify emitter no longer queues an EventsLostEvent on a queue overflow; "
            "dim_actors/sync/watcher.py _Handler relies on it"
        )
        return
    for line in OVERFLOW_LOG_LINES:
        assert line in source, (
            f"{WD}: the overflow log line {line!r} changed; "
            "dim_actors/sync/watcher.py _OverflowSpotter relies on it"
        )
    names = {inotify.logger.name, inotify_c.logger.name}
    assert names <= set(WATCHDOG_LOGGERS), (
        f"{WD}: the inotify modules log as {sorted(names)}, not {list(WATCHDOG_LOGGERS)}; "
        "dim_actors/sync/watcher.py _OverflowSpotter listens there"
    )


@linux_only
def test_an_inotify_queue_overflow_reaches_the_watcher(tmp_path):
    """The kernel's overflow record (wd -1, IN_Q_OVERFLOW), fed to the observer's
    inotify reader as the kernel would (there is no way to overflow the queue without
    lowering the machine's fs.inotify.max_queued_events)."""
    inotify_c = importlib.import_module("watchdog.observers.inotify_c")
    recorder = Recorder()
    spotted: list[str] = []
    spotter = _OverflowSpotter(spotted.append)
    for name in WATCHDOG_LOGGERS:
        logging.getLogger(name).addHandler(spotter)
    observer, _ = start_observer(str(tmp_path), recorder)
    try:
        try:
            record = inotify_c.InotifyEvent(
                -1, inotify_c.InotifyConstants.IN_Q_OVERFLOW, 0, b""
            )
            observer._inotify_fd.handle_event(record)
        except (AttributeError, TypeError) as e:
            pytest.fail(
                f"{WD}: this test cannot feed an overflow to the observer's inotify reader "
                f"any more ({e!r}); "
                "the overflow signal dim_actors/sync/watcher.py relies on is unchecked"
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            EVENTS_LOST in recorder.kinds if EVENTS_LOST else spotted
        ):
            time.sleep(0.02)
        if EVENTS_LOST:
            assert EVENTS_LOST in recorder.kinds, (
                f"{WD}: an inotify queue overflow no longer reaches the handler as an "
                "EventsLostEvent "
                f"(got {recorder.kinds}); dim_actors/sync/watcher.py _Handler relies on it"
            )
        else:
            assert spotted, (
                f"{WD}: the overflow log line changed "
                f"(nothing matching {list(OVERFLOW_LOG_LINES)} was logged); "
                "dim_actors/sync/watcher.py _OverflowSpotter relies on it"
            )
    finally:
        for name in WATCHDOG_LOGGERS:
            logging.getLogger(name).removeHandler(spotter)
        observer.stop()
        observer.join()


# --- past the inotify watch limit, in a user namespace whose limit is lowered ---------

_PAST_THE_LIMIT = r"""
import errno, json, os, sys, time
from watchdog.events import FileSystemEventHandler
from dim_actors.sync.watcher import (
    DISCARD_S, inotify_watches, observer_fd, start_observer, watch_key,
)

root, tries = sys.argv[1], int(sys.argv[2])
folders = [os.path.join(d, n) for d, names, _ in os.walk(root) for n in names] + [root]

def instances():
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
        except OSError:
            pass
    return n

outcomes = []
for _ in range(tries):
    try:
        observer, _ = start_observer(root, FileSystemEventHandler())
    except OSError as e:
        outcomes.append({"raised": e.errno})
        continue
    except BaseException as e:
        outcomes.append({"raised": f"{type(e).__module__}.{type(e).__qualname__}: {e}"})
        continue
    watches = inotify_watches(observer_fd(observer)) or set()
    outcomes.append({"missing": sum(watch_key(os.stat(f)) not in watches for f in folders)})
    observer.stop()
    observer.join()
deadline = time.monotonic() + DISCARD_S + 30  # the discards run on timers: wait for them, boundedly
while instances() and time.monotonic() < deadline:
    time.sleep(0.05)
print(json.dumps({"outcomes": outcomes, "open": instances()}))
"""


def _past_the_limit(root: Path, watches: int, tries: int) -> dict:
    r = subprocess.run(
        [
            *watch_limited(watches),
            sys.executable,
            "-c",
            _PAST_THE_LIMIT,
            str(root),
            str(tries),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@linux_only
@pytest.mark.skipif(
    not userns_watch_limit_works(),
    reason="no user namespace to lower the inotify watch limit in",
)
@pytest.mark.parametrize(
    "watches", [0, 2], ids=["the root's watch fails", "a subfolder's watch fails"]
)
def test_a_watch_past_the_limit_raises_enospc_or_is_missing(tmp_path, watches):
    for name in ("a/b", "c", "d"):
        (tmp_path / "tree" / name).mkdir(parents=True)  # 5 folders
    result = _past_the_limit(tmp_path / "tree", watches, tries=12)
    for outcome in result["outcomes"]:
        assert outcome.get("raised") == errno.ENOSPC or outcome.get("missing", 0) > 0, (
            f"{WD}: past the inotify watch limit, schedule/start gave {outcome}, "
            "neither OSError(ENOSPC) nor a folder missing from the observer's watches; "
            "dim_actors/sync/watcher.py _schedule and _verify detect the limit by one or "
            "the other"
        )
        if watches == 0:
            assert outcome == {"raised": errno.ENOSPC}, (
                f"{WD}: a failed root watch no longer raises OSError(ENOSPC) ({outcome}); "
                "dim_actors/sync/watcher.py _schedule relies on it"
            )
    assert result["open"] == 0, (
        f"{WD}: {result['open']} inotify instances of failed or stopped observers are "
        f"still open {DISCARD_S + 30:g} s later; dim_actors/sync/watcher.py "
        "start_observer discards a failed observer late so that none is"
    )
