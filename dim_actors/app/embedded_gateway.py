"""Starting, supervising and stopping the embedded dev gateway, a child process of
dim-desktop.

It requires a token made anew at each launch (``token``), given to it in its
environment, which only this user (and root) can read, never on its command line, which
everyone can: the app authenticates with it, another local user or a web page cannot. A
watcher thread restarts it when it exits unasked (same port, same data, same token),
with a bounded backoff, and gives up after too many quick failures; ``state()`` says how
it went.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Literal

from dim_actors.messages import GatewayState

log = logging.getLogger("dim.gateway")

READY_PREFIX = "dim-gateway listening on "
TOKEN_ENV = "DIM_GATEWAY_REQUIRED_TOKEN"

# Restarts: the delay doubles with each exit within the window, and too many exits
# within it mean something is wrong that a restart does not fix (a taken port, a broken
# store).
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0
FAST_WINDOW_S = 60.0
MAX_FAST_EXITS = 5


class GatewayStartError(RuntimeError):
    pass


def restart_delay(exits: list[float], now: float) -> float | None:
    """Seconds to wait before restarting after the exits at monotonic times `exits` (the
    latest last), or None to give up: more than MAX_FAST_EXITS of them in the last
    FAST_WINDOW_S."""
    recent = sum(1 for t in exits if now - t <= FAST_WINDOW_S)
    if recent > MAX_FAST_EXITS:
        return None
    return min(FIRST_DELAY_S * 2 ** max(recent - 1, 0), MAX_DELAY_S)


class EmbeddedGateway:
    def __init__(
        self, data_dir: Path, log_file: Path, extra_args: list[str] | None = None
    ):
        self.data_dir = data_dir
        self.log_file = log_file
        self.extra_args = extra_args or []
        self.token = secrets.token_urlsafe(32)
        self.proc: subprocess.Popen | None = None
        self.url = ""
        # 0 until the first start has picked one; every restart takes it again
        self.port = 0
        # The listening socket is ours, made once and handed to each gateway process we
        # start: while one is down no other program (another local user's included) can
        # take the port and be sent our token; connections made meanwhile wait in its
        # backlog for the next process.
        self._listener: socket.socket | None = None
        self.restarts = 0
        self.last_exit_code: int | None = None
        self.last_error = ""
        self._state: Literal["stopped", "running", "restarting", "failed"] = "stopped"
        self._exits: list[float] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self, timeout_s: float = 20.0) -> str:
        self._launch(timeout_s)
        self._state = "running"
        self._watcher = threading.Thread(
            target=self._watch, name="gateway-watcher", daemon=True
        )
        self._watcher.start()
        return self.url

    def state(self) -> GatewayState:
        proc = self.proc
        return GatewayState(
            state=self._state,
            url=self.url,
            pid=proc.pid if proc is not None and proc.poll() is None else None,
            restarts=self.restarts,
            lastExitCode=self.last_exit_code,
            lastError=self.last_error,
        )

    def _launch(self, timeout_s: float) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Its log may hold paths and session names: the user's alone.
        log_fd = os.open(
            self.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        if self._listener is None:
            self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
            self.port = self._listener.getsockname()[1]
        fd = self._listener.fileno()
        cmd = [
            sys.executable,
            "-m",
            "dim_actors.devgateway",
            "--listen-fd",
            str(fd),
            "--data",
            str(self.data_dir),
            "--require-token-env",
            TOKEN_ENV,
            "--exit-with-parent",
            *self.extra_args,
        ]
        # Its own session: a Ctrl-C in the terminal reaches dim-desktop, which stops the
        # gateway last. Its stdin is a pipe only we hold: if dim-desktop dies (kill -9
        # included) the gateway sees
        # EOF and stops, so no orphan keeps the data directory for the next start.
        try:
            proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=log_fd,
                stdin=subprocess.PIPE,
                pass_fds=(fd,),
                start_new_session=True,
                text=True,
                env={**os.environ, TOKEN_ENV: self.token},
            )
        finally:
            os.close(log_fd)
        with self._lock:
            self.proc = proc
        lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, name="gateway-stdout", daemon=True).start()
        try:
            while True:
                line = lines.get(timeout=timeout_s)
                if line is None:
                    raise GatewayStartError(
                        f"the dev gateway exited during start (see {self.log_file})"
                    )
                if line.startswith(READY_PREFIX):
                    self.url = line[len(READY_PREFIX) :].strip()
                    return
        except queue.Empty:
            _stop_process(proc, 5.0)
            raise GatewayStartError(
                f"the dev gateway did not start within {timeout_s:.0f}s (see {self.log_file})"
            ) from None

    def _watch(self) -> None:
        """Wait on the child; when it ends unasked, say so and start it again (after a
        pause that grows with quick failures), until stop() or too many quick failures.
        """
        while True:
            proc = self.proc
            assert proc is not None
            code = proc.wait()
            if self._stopping.is_set():
                return
            now = time.monotonic()
            self._exits = [t for t in self._exits if now - t <= FAST_WINDOW_S] + [now]
            self.last_exit_code = code
            delay = restart_delay(self._exits, now)
            if delay is None:
                self._state = "failed"
                self.last_error = (
                    f"the dev gateway exited {len(self._exits)} times within {FAST_WINDOW_S:.0f}s "
                    f"(last exit code {code}); not restarting it (see {self.log_file})"
                )
                log.error("%s", self.last_error)
                return
            self._state = "restarting"
            self.last_error = f"the dev gateway exited unexpectedly (exit code {code})"
            log.error(
                "%s; restarting it in %.1fs on %s (see %s)",
                self.last_error,
                delay,
                self.url,
                self.log_file,
            )
            if self._stopping.wait(delay):
                return
            try:
                self._launch(timeout_s=20.0)
            except (GatewayStartError, OSError) as e:
                # The process that failed has ended (or was stopped): the top of the
                # loop counts it as one more exit, so failures to restart back off and
                # give up like crashes do.
                self.last_error = str(e)
                log.error("the dev gateway could not be restarted: %s", e)
                continue
            with self._lock:
                # stop() came during the launch: it must not outlive the app
                if self._stopping.is_set() and self.proc is not None:
                    _stop_process(self.proc, 5.0)
                    return
                self.restarts += 1
                self._state = "running"
            log.warning(
                "the dev gateway was restarted on %s (restart %d)",
                self.url,
                self.restarts,
            )

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop it and reap it: no gateway outlives the app. The watcher is told first,
        so this exit is not taken for a crash. Its stdin is closed, the way it learns
        that dim-desktop is gone (--exit-with-parent), and it closes its clients and its
        store; SIGKILL if it has not ended within `timeout_s`.

        Not SIGTERM: its thread watching stdin would still be inside a read of it when
        Python finalizes, which then waits a second for that read's lock and aborts the
        process."""
        with self._lock:
            self._stopping.set()
            proc = self.proc
        if proc is not None:
            _stop_process(proc, timeout_s)
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(timeout=timeout_s + 25.0)
        with self._lock:
            # launched by the watcher meanwhile
            if self.proc is not None and self.proc is not proc:
                _stop_process(self.proc, timeout_s)
            if self._listener is not None:
                self._listener.close()
                self._listener = None
        self._state = "stopped"


def _stop_process(proc: subprocess.Popen, timeout_s: float) -> None:
    if proc.poll() is None:
        begun = time.monotonic()
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=max(0.0, timeout_s))
        except subprocess.TimeoutExpired:
            log.warning(
                "the dev gateway did not stop within %.1fs: killing it", timeout_s
            )
            proc.kill()
            proc.wait(timeout=5)
        log.info(
            "dev gateway stopped in %.2fs (exit code %s)",
            time.monotonic() - begun,
            proc.returncode,
        )
    elif proc.stdin is not None:
        try:
            proc.stdin.close()
        except OSError:
            pass
