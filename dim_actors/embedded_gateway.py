"""Starting and stopping the embedded dev gateway as a child process of dim-desktop."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

READY_PREFIX = "dim-gateway listening on "


class GatewayStartError(RuntimeError):
    pass


class EmbeddedGateway:
    def __init__(self, data_dir: Path, log_file: Path, extra_args: list[str] | None = None):
        self.data_dir = data_dir
        self.log_file = log_file
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout_s: float = 20.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "ab")
        cmd = [sys.executable, "-m", "dim_actors.devgateway", "--port", "0", "--data", str(self.data_dir),
               "--exit-with-parent", *self.extra_args]
        # Its own session: a Ctrl-C in the terminal reaches dim-desktop, which stops the gateway last.
        # Its stdin is a pipe only we hold: if dim-desktop dies (kill -9 included) the gateway sees
        # EOF and stops, so no orphan keeps the data directory for the next start.
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.PIPE,
                                     start_new_session=True, text=True)
        log.close()
        lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, name="gateway-stdout", daemon=True).start()
        try:
            while True:
                line = lines.get(timeout=timeout_s)
                if line is None:
                    raise GatewayStartError(f"the dev gateway exited during start (see {self.log_file})")
                if line.startswith(READY_PREFIX):
                    self.url = line[len(READY_PREFIX):].strip()
                    return self.url
        except queue.Empty:
            self.stop()
            raise GatewayStartError(f"the dev gateway did not start within {timeout_s:.0f}s (see {self.log_file})")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
