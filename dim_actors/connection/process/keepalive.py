"""When to ping the gateway, and when its silence means it is gone (pure;
tests/test_connection_keepalive.py). The window comes from staleness.py."""

from __future__ import annotations

import msgspec

from dim_actors.connection.staleness import Keepalive
from dim_actors.messages import Support

# How often the keepalive thread looks.
ROUND_S = 0.25


class Round(msgspec.Struct, frozen=True):
    """One keepalive round's verdict."""

    # silent past the window: end the socket (nothing else this round)
    stale: bool = False
    pong_unanswered: bool = False  # our `ping` went unanswered for half the window
    ping: bool = False  # time to ping (a WebSocket ping frame)
    message: bool = False  # and the protocol's `ping` message with it
    probe: bool = False  # that message asks whether `pong` comes: its wait starts now


def keepalive_round(
    now: float,
    ka: Keepalive,
    last_frame: float,
    last_ping: float,
    pong_probe_at: float | None,
    pong: Support,
) -> Round:
    """Silence past the window ends the socket. Pings: a WebSocket ping frame, which any
    RFC 6455 server answers, and the protocol's `ping` while `pong` may come (the docs
    name no answer to it: unanswered for half the window, it is not sent again to this
    gateway)."""
    if now - last_frame > ka.stale_after_s:
        return Round(stale=True)
    unanswered = (
        pong_probe_at is not None and now - pong_probe_at > ka.stale_after_s / 2
    )
    if unanswered:
        pong, pong_probe_at = "no", None
    if now - last_ping < ka.ping_every_s:
        return Round(pong_unanswered=unanswered)
    return Round(
        pong_unanswered=unanswered,
        ping=True,
        message=pong != "no",
        probe=pong == "unknown" and pong_probe_at is None,
    )
