"""How long a silent gateway is taken as alive, and how often we ping it: from its
heartbeat.

`connected.heartbeatIntervalMs` (doc) says how often the gateway heartbeats a joined
connection; the docs' "stale after 35 s" is for its default of 30 s. Silence is judged
against a multiple of the advertised interval, with a floor (a loaded machine delays
frames) and a ceiling (a garbled or huge interval must not leave a dead link undetected
for hours). Heartbeats reach only connections joined to a session, so the client also
pings: a WebSocket ping frame, which every RFC 6455 server answers, every third of that
window, so a live gateway answers twice before it would count as dead.
"""

from __future__ import annotations

from typing import Any

import msgspec

DEFAULT_HEARTBEAT_MS = 30_000
STALE_MULTIPLE = 1.5
STALE_FLOOR_S = 10.0
STALE_CEILING_S = 180.0


class Keepalive(msgspec.Struct, frozen=True):
    heartbeat_ms: int  # as advertised, or the default when it was unusable
    stale_after_s: float
    ping_every_s: float


def heartbeat_ms_of(value: Any) -> int | None:
    """The advertised interval when usable (a positive finite number), else None."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 < value < float("inf")
    ):
        return None
    return int(value)


def keepalive(
    heartbeat_ms: int | None, ping_interval_s: float, stale_override_s: float = 0.0
) -> Keepalive:
    """`stale_override_s` > 0 (the stale_after_s setting) wins over the derived window."""
    hb = heartbeat_ms if heartbeat_ms is not None else DEFAULT_HEARTBEAT_MS
    if stale_override_s > 0:
        stale = stale_override_s
    else:
        stale = min(STALE_CEILING_S, max(STALE_FLOOR_S, STALE_MULTIPLE * hb / 1000))
    return Keepalive(
        heartbeat_ms=hb,
        stale_after_s=stale,
        ping_every_s=min(ping_interval_s, stale / 3),
    )
