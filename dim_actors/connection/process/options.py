"""What the connection process is started with (connection/actor.py builds it from the
settings)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dim_actors.connection.process.watch import HUNG_AFTER_S, HUNG_AFTER_SEND_S


@dataclass(frozen=True, kw_only=True)
class ConnectionOptions:
    ping_interval_s: float
    stale_after_s: float  # 0: derived from the gateway's heartbeatIntervalMs
    request_timeout_s: float
    # Sessions joined before and the last seq delivered for each: rejoined and caught
    # up.
    resume: dict[str, int] = field(default_factory=dict)
    outbox_path: Path | None = None  # None: no outbox, commands fail while offline
    # where the uplink spills events past its memory bound
    spill_dir: Path | None = None
    uplink_memory_limit: int = 64 << 20
    send_rate_limit: int = 60  # frames per send_rate_window_s (the gateway's limit)
    send_rate_window_s: float = 10.0
    hung_after_s: float = HUNG_AFTER_S
    hung_after_send_s: float = HUNG_AFTER_SEND_S
