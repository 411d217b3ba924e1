"""User settings: a TOML file in DIM_HOME, with defaults for everything."""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec


class SettingsError(ValueError):
    pass


class Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    gateway_url: str | None = None
    # Restart intensity: at most `max_restarts` restarts of one actor within `restart_period_s`.
    max_restarts: int = 3
    restart_period_s: float = 5.0
    shutdown_timeout_s: float = 5.0
    # A single message handled for longer than this means the actor is hung.
    hang_timeout_s: float = 30.0
    # The connection's keepalive: our ping interval and how long silence means a dead link.
    ping_interval_s: float = 30.0
    stale_after_s: float = 35.0
    request_timeout_s: float = 30.0
    # Events the connection process holds in memory while the supervisor is not draining them;
    # beyond this they spill to a file under DIM_HOME (never dropped).
    uplink_memory_limit: int = 64 << 20
    log_ring_size: int = 10_000
    log_max_bytes: int = 8 << 20
    log_keep: int = 3


def load_settings(path: Path) -> Settings:
    if not path.exists():
        return Settings()
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"{path}: not valid TOML: {e}") from None
    try:
        return msgspec.convert(data, Settings)
    except msgspec.ValidationError as e:
        raise SettingsError(f"{path}: {e}") from None
