"""Native desktop notifications from the supervisor process (D-Bus
org.freedesktop.Notifications).

The router hands over the four events that matter (turn_complete, turn_error,
question_requested, permission_requested) through `Notifier.submit`, which only queues:
everything else (decoding, the focus check, starting `notify-send` or `gdbus`) happens
on the notifier's own thread, so the event path never waits on the desktop. Clicking a
notification calls `on_click(sessionId)`.

Backends, probed once, in order: `notify-send` (libnotify; with `--action` and `--wait`
where it has them, so a click is reported), then `gdbus` talking to
org.freedesktop.Notifications on the session bus (clicks through a `gdbus monitor` of
ActionInvoked). Neither there: quietly absent, said once in the log.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import msgspec

log = logging.getLogger("dim.desktop.notify")

NOTIFY_TYPES = frozenset(
    {"turn_complete", "turn_error", "question_requested", "permission_requested"}
)
# an event older than this is a replay (resync, catch-up): no notification
STALE_AFTER_S = 600
APP_NAME = "dim-desktop"
STOP_REASONS = {
    "stopped",
    "stop",
    "cancelled",
    "canceled",
    "interrupted",
    "user",
    "aborted",
}


class _Ev(msgspec.Struct):
    type: str
    sessionId: str | None = None
    seq: int | None = None
    ts: int | None = None
    finalText: str | None = None
    stopReason: str | None = None
    code: str | None = None
    message: str | None = None
    question: str | None = None
    action: object = None


def first_line(text: str | None, limit: int = 160) -> str:
    line = next((ln.strip() for ln in (text or "").splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def describe(ev: _Ev, session_name: str | None) -> tuple[str, str]:
    """(title, body) of the notification for one event."""
    where = session_name or (ev.sessionId or "")[:8] or "a session"
    if ev.type == "turn_complete":
        stopped = str(ev.stopReason or "").lower() in STOP_REASONS
        return (
            "Turn stopped" if stopped else "Turn complete"
        ), f"{where}: {first_line(ev.finalText) or 'done'}"
    if ev.type == "turn_error":
        return (
            "Turn failed",
            f"{where}: {first_line(' '.join(x for x in (ev.code, ev.message) if x))}",
        )
    if ev.type == "question_requested":
        return "Question from the agent", f"{where}: {first_line(ev.question)}"
    action = ev.action
    if isinstance(action, dict):
        action = (
            action.get("description")
            or action.get("command")
            or action.get("type")
            or msgspec.json.encode(action).decode()
        )
    return "Permission requested", f"{where}: {first_line(str(action or ''))}"


def _gv_str(s: str) -> str:
    """A GVariant text string literal."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def _session_bus_present(env: Mapping[str, str]) -> bool:
    if env.get("DBUS_SESSION_BUS_ADDRESS"):
        return True
    runtime_dir = env.get("XDG_RUNTIME_DIR")
    return runtime_dir is not None and Path(runtime_dir, "bus").exists()


class _NotifySend:
    name = "notify-send"

    def __init__(self, path: str, on_click: Callable[[str | None], object]):
        self.path = path
        self.on_click = on_click
        try:
            helptext = subprocess.run(
                [path, "--help"], capture_output=True, text=True, timeout=5
            ).stdout
        except (OSError, subprocess.SubprocessError):
            helptext = ""
        self.actions = "--action" in helptext and "--wait" in helptext
        self.procs: list[subprocess.Popen] = []

    def send(self, title: str, body: str, session_id: str | None) -> None:
        cmd = [self.path, f"--app-name={APP_NAME}", "--icon=dialog-information"]
        if self.actions:
            cmd += ["--action=default=Open", "--wait"]
        cmd += ["--", title, body]
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.procs = [p for p in self.procs if p.poll() is None] + [proc]
        # `--wait` lasts until the notification closes: keep a bounded few
        while len(self.procs) > 20:
            self.procs.pop(0).terminate()
        threading.Thread(
            target=self._wait, args=(proc, session_id), name="notify-send", daemon=True
        ).start()

    def _wait(self, proc: subprocess.Popen, session_id: str | None) -> None:
        out, err = proc.communicate()
        if proc.returncode != 0:
            log.info(
                "notify-send failed (%s): %s",
                proc.returncode,
                (err or "").strip()[:300],
            )
            return
        if self.actions and any(line.strip() == "default" for line in out.splitlines()):
            self.on_click(session_id)

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()


class _Gdbus:
    name = "gdbus"
    DEST = [
        "--session",
        "--dest",
        "org.freedesktop.Notifications",
        "--object-path",
        "/org/freedesktop/Notifications",
    ]

    def __init__(self, path: str, on_click: Callable[[str | None], object]):
        self.path = path
        self.on_click = on_click
        self.ids: dict[int, str | None] = {}
        # A click can be read off the monitor before `gdbus call` has told us the
        # notification's id.
        self.early_clicks: set[int] = set()
        self.lock = threading.Lock()
        self.monitor: subprocess.Popen | None = None
        self.monitoring = threading.Event()

    def probe(self) -> str | None:
        """None when the notification service answers; else why not."""
        try:
            r = subprocess.run(
                [
                    self.path,
                    "call",
                    *self.DEST,
                    "--method",
                    "org.freedesktop.Notifications.GetCapabilities",
                ],
                capture_output=True,
                text=True,
                timeout=5,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError) as e:
            return str(e)
        return (
            None
            if r.returncode == 0
            else (r.stderr.strip() or f"exit status {r.returncode}")[:300]
        )

    def send(self, title: str, body: str, session_id: str | None) -> None:
        if self.monitor is None or self.monitor.poll() is not None:
            self._start_monitor()
        # "--": without it gdbus takes the expire timeout -1 for an option and only
        # prints its usage.
        r = subprocess.run(
            [
                self.path,
                "call",
                *self.DEST,
                "--method",
                "org.freedesktop.Notifications.Notify",
                "--",
                _gv_str(APP_NAME),
                "0",
                _gv_str("dialog-information"),
                _gv_str(title),
                _gv_str(body),
                "['default', 'Open']",
                "@a{sv} {}",
                "-1",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            stdin=subprocess.DEVNULL,
        )
        m = re.search(r"uint32 (\d+)", r.stdout)
        if r.returncode != 0 or not m:
            log.info("gdbus Notify failed: %s", (r.stderr or r.stdout).strip()[:300])
            return
        nid = int(m.group(1))
        with self.lock:
            self.ids[nid] = session_id
            if len(self.ids) > 200:
                self.ids.pop(next(iter(self.ids)))
            clicked = nid in self.early_clicks
            self.early_clicks.discard(nid)
        if clicked:
            self.on_click(session_id)

    def _start_monitor(self) -> None:
        self.monitoring.clear()
        self.monitor = subprocess.Popen(
            [self.path, "monitor", *self.DEST],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        threading.Thread(
            target=self._read_monitor,
            args=(self.monitor,),
            name="gdbus-monitor",
            daemon=True,
        ).start()
        # Its first line says the match rule is in place; a click before that would go
        # unseen.
        self.monitoring.wait(3)

    def _read_monitor(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.monitoring.set()
            m = re.search(r"ActionInvoked \(uint32 (\d+), '([^']*)'\)", line)
            if not m or m.group(2) != "default":
                continue
            nid = int(m.group(1))
            with self.lock:
                known = nid in self.ids
                session_id = self.ids.get(nid)
                if not known and len(self.early_clicks) < 200:
                    self.early_clicks.add(nid)
            if known:
                self.on_click(session_id)
        self.monitoring.set()

    def close(self) -> None:
        if self.monitor is not None and self.monitor.poll() is None:
            self.monitor.terminate()


class Notifier:
    """Queue in, native notifications out. `should_notify()` says whether the UI is
    unfocused and notifications are on; it is asked on the notifier's thread, at the
    moment of notifying."""

    def __init__(
        self,
        on_click: Callable[[str | None], object],
        should_notify: Callable[[], bool],
        env: dict[str, str] | None = None,
    ):
        self.on_click = on_click
        self.should_notify = should_notify
        self.env = dict(os.environ if env is None else env)
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.backend: _NotifySend | _Gdbus | None = None
        self.unavailable: str | None = None
        self.sent = 0
        self.last_seq: dict[str, int] = {}
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def submit(self, type_: str, raw: bytes, session_name: str | None = None) -> None:
        """Called on the router's thread: only queues."""
        if type_ not in NOTIFY_TYPES:
            return
        if self.thread is None:
            with self.lock:
                if self.thread is None:
                    self.thread = threading.Thread(
                        target=self._run, name="desktop-notify", daemon=True
                    )
                    self.thread.start()
        self.queue.put((raw, session_name))

    def close(self) -> None:
        self.queue.put(None)
        if self.backend is not None:
            self.backend.close()

    # --- the notifier's thread --------------------------------------------------------

    def _probe(self) -> None:
        path = shutil.which("notify-send", path=self.env.get("PATH"))
        if path:
            self.backend = _NotifySend(path, self.on_click)
        else:
            gdbus = shutil.which("gdbus", path=self.env.get("PATH"))
            if gdbus and _session_bus_present(self.env):
                backend = _Gdbus(gdbus, self.on_click)
                why = backend.probe()
                if why is None:
                    self.backend = backend
                else:
                    self.unavailable = (
                        "org.freedesktop.Notifications does not answer on the session "
                        f"bus ({why})"
                    )
            elif gdbus:
                self.unavailable = "no D-Bus session bus"
            else:
                self.unavailable = "neither notify-send nor gdbus is installed"
        if self.backend is not None:
            log.info(
                "native notifications through %s%s",
                self.backend.name,
                "" if getattr(self.backend, "actions", True) else " (no click actions)",
            )
        else:
            log.info("native notifications are off: %s", self.unavailable)

    def _run(self) -> None:
        self._probe()
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.backend is None:
                continue
            try:
                self._handle(*item)
            except Exception:
                log.exception("native notification failed")

    def _handle(self, raw: bytes, session_name: str | None) -> None:
        ev = msgspec.json.decode(raw, type=_Ev)
        if ev.sessionId and ev.seq is not None:
            if ev.seq <= self.last_seq.get(ev.sessionId, 0):
                return  # a replay after a router restart
            self.last_seq[ev.sessionId] = ev.seq
        if ev.ts is not None and time.time() - ev.ts / 1000 > STALE_AFTER_S:
            return
        if not self.should_notify():
            return
        title, body = describe(ev, session_name)
        assert self.backend is not None
        self.backend.send(title, body, ev.sessionId)
        self.sent += 1
