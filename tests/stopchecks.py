"""What every test of stopping the app checks (the app's own stop time, nothing failed
or left running), and how to find the app's processes to check they are gone."""

from __future__ import annotations

import os
import re
import time
import urllib.parse
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from apphelpers import App, wait_until


def listening_pids(port: int) -> set[int]:
    """The processes holding a TCP socket listening on 127.0.0.1:`port` (Linux /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            f = row.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{f[9]}]")
    pids = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) in inodes for fd in fd_dir.iterdir()):
                pids.add(int(fd_dir.parent.name))
        except OSError:  # the process ended while we looked
            continue
    return pids


def gateway_pid(app: App) -> int:
    """The embedded dev gateway: the process serving runtime.json's gatewayUrl on the
    listening socket dim-desktop made and keeps (so the app holds it too)."""
    port = urllib.parse.urlsplit(app.runtime["gatewayUrl"]).port
    assert port is not None
    others = wait_until(
        lambda: listening_pids(port) - {app.proc.pid},
        30,
        what=f"the gateway process listening on port {port}",
    )
    assert len(others) == 1, others
    return others.pop()


def gone(pid: int) -> bool:
    """Exited: no such process, or only a zombie left to reap."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


# A stop (SIGINT, SIGTERM, `dimctl stop`) must end the app, its connection process and
# its dev gateway within STOP_BOUND_S, on a loaded machine too (2 shared cores, a CPU
# hog, other suites). The bound is checked on the app's own clock: between its "stop
# requested" log line (written by the thread that receives the signal or the command)
# and its last line, "stopped ... after the stop request", written once every part of it
# has ended (actors, connection process, gateway, both reaped); for a signal, also from
# the moment just before the test sent it. So a test runner that is itself slow to be
# scheduled cannot make the check fail, and a design that needs more than 10 s cannot
# pass it (the app's budget is 8 s: dim_actors/app/main.py STOP_BUDGET_S; it takes well
# under 1 s when nothing is wrong). What the test waits on (the exit, the processes
# gone) gets generous timeouts: those only decide when to call a broken stop a failure.
STOP_BOUND_S = 10.0
EXIT_WAIT_S = 60.0
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def _stamp(line: str) -> float:
    m = _STAMP.match(line)
    assert m, f"not a log line: {line!r}"
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def assert_stopped_in_time(home: Path, signal_sent_at: float | None = None) -> None:
    """The app's log: its last stop took at most STOP_BOUND_S, and nothing failed or
    restarted during it (a child ending during a stop is expected, never a crash)."""
    lines = (home / "logs" / "dim-desktop.log").read_text(errors="replace").splitlines()
    ends = [
        i
        for i, line in enumerate(lines)
        if "INFO stopped " in line and "after the stop request" in line
    ]
    assert ends, "the app did not log that it stopped:\n" + "\n".join(lines[-20:])
    requests = [
        i for i, line in enumerate(lines[: ends[-1]]) if "INFO stop requested: " in line
    ]
    assert requests, "the app did not log the stop request:\n" + "\n".join(lines[-20:])
    begun, end = requests[-1], ends[-1]
    took = _stamp(lines[end]) - _stamp(lines[begun])
    assert took <= STOP_BOUND_S, f"the stop took {took:.1f}s:\n" + "\n".join(
        lines[begun : end + 1]
    )
    if signal_sent_at is not None:
        since_signal = _stamp(lines[end]) - signal_sent_at
        assert since_signal <= STOP_BOUND_S, (
            f"stopped {since_signal:.1f}s after the signal was sent"
        )
    during = lines[begun:]
    bad = [
        line
        for line in during
        if re.search(r" (ERROR|WARNING|CRITICAL) |Traceback|restarting", line)
    ]
    assert not bad, "during the stop:\n" + "\n".join(during)


def assert_stop_ends_everything(app: App, stop: Callable[[], float | None]) -> None:
    """`stop()` stops the running `app` (returning when it sent a signal, if it did): it
    exits 0 within the bound, and its connection process and dev gateway are gone."""
    conn_pid = app.status()["connection"]["pid"]
    gw_pid = gateway_pid(app)
    sent_at = stop()
    assert app.proc.wait(timeout=EXIT_WAIT_S) == 0, app.output()
    app.log.close()
    assert_stopped_in_time(app.home, sent_at)
    assert not (app.home / "run" / "runtime.json").exists()
    assert "stopped" in app.output()
    wait_until(
        lambda: gone(conn_pid), EXIT_WAIT_S, what="the connection process to exit"
    )
    wait_until(lambda: gone(gw_pid), EXIT_WAIT_S, what="the dev gateway to exit")


def signal_now(send: Callable[[], None]) -> float:
    sent_at = time.time()
    send()
    return sent_at
