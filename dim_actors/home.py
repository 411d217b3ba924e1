"""DIM_HOME: where one instance keeps its config, data, logs and run state.

Two instances with different DIM_HOMEs never share a file, so tests and users can run them side
by side. A lock file held with flock marks the running instance: the kernel drops the lock when
the process dies, so a crash never leaves a stale "already running" behind.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

import msgspec
import platformdirs


class RuntimeInfo(msgspec.Struct):
    pid: int
    uiUrl: str
    token: str
    controlSocket: str
    gatewayUrl: str


class AlreadyRunning(Exception):
    pass


@dataclass(frozen=True)
class DimHome:
    root: Path

    @classmethod
    def from_env(cls) -> "DimHome":
        root = os.environ.get("DIM_HOME") or platformdirs.user_data_dir("dim-desktop", appauthor=False)
        return cls(Path(root).expanduser().resolve())

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    @property
    def runtime_file(self) -> Path:
        return self.run_dir / "runtime.json"

    @property
    def control_socket(self) -> Path:
        return self.run_dir / "control.sock"

    def ensure(self) -> None:
        for d in (self.run_dir, self.data_dir, self.logs_dir, self.config_dir):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run_dir, 0o700)

    def acquire_instance_lock(self) -> int:
        """Hold the instance lock for the life of this process; AlreadyRunning if another has it."""
        fd = os.open(self.run_dir / "instance.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(self._running_description()) from None
        os.set_inheritable(fd, False)
        return fd

    def _running_description(self) -> str:
        info = self.read_runtime()
        if info is None:
            return f"dim-desktop is already running (or starting) with DIM_HOME={self.root}"
        return f"dim-desktop is already running (pid {info.pid}, UI at {info.uiUrl}) with DIM_HOME={self.root}"

    def write_runtime(self, info: RuntimeInfo) -> None:
        tmp = self.runtime_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(msgspec.json.format(msgspec.json.encode(info)))
        os.replace(tmp, self.runtime_file)

    def read_runtime(self) -> RuntimeInfo | None:
        try:
            return msgspec.json.decode(self.runtime_file.read_bytes(), type=RuntimeInfo)
        except (FileNotFoundError, msgspec.DecodeError, json.JSONDecodeError):
            return None

    def remove_runtime(self) -> None:
        self.runtime_file.unlink(missing_ok=True)
