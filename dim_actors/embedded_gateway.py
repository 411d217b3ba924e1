"""Starting and stopping the embedded dev gateway as a child process of dim-desktop."""

from __future__ import annotations

import logging
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger("dim.gateway")

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
        log_out = open(self.log_file, "ab")
        cmd = [sys.executable, "-m", "dim_actors.devgateway", "--port", "0", "--data", str(self.data_dir),
               "--exit-with-parent", *self.extra_args]
        # Its own session: a Ctrl-C in the terminal reaches dim-desktop, which stops the gateway last.
        # Its stdin is a pipe only we hold: if dim-desktop dies (kill -9 included) the gateway sees
        # EOF and stops, so no orphan keeps the data directory for the next start.
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_out, stdin=subprocess.PIPE,
                                     start_new_session=True, text=True)
        log_out.close()
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

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop it and reap it: no gateway outlives the app. Its stdin is closed, the way it learns
        that dim-desktop is gone (--exit-with-parent), and it closes its clients and its store;
        SIGKILL if it has not ended within `timeout_s`.

        Not SIGTERM: its thread watching stdin would still be inside a read of it when Python
        finalizes, which then waits a second for that read's lock and aborts the process."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            begun = time.monotonic()
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=max(0.0, timeout_s))
            except subprocess.TimeoutExpired:
                log.warning("the dev gateway did not stop within %.1fs: killing it", timeout_s)
                self.proc.kill()
                self.proc.wait(timeout=5)
            log.info("dev gateway stopped in %.2fs (exit code %s)", time.monotonic() - begun, self.proc.returncode)
        elif self.proc.stdin is not None:
            self.proc.stdin.close()
