"""The keepalive's verdicts (dim_actors/connection/process/keepalive.py)."""

from __future__ import annotations

import pytest

from dim_actors.connection.process.keepalive import Round, keepalive_round
from dim_actors.connection.staleness import Keepalive

KA = Keepalive(heartbeat_ms=30_000, stale_after_s=45.0, ping_every_s=15.0)


@pytest.mark.parametrize(
    "now, last_frame, last_ping, probe_at, pong, expected",
    [
        (100.0, 99.0, 95.0, None, "unknown", Round()),  # nothing due
        (100.0, 54.0, 95.0, None, "unknown", Round(stale=True)),  # silent 46 s
        (100.0, 55.0, 95.0, None, "unknown", Round()),  # silent 45 s: not yet
        (
            100.0,
            99.0,
            85.0,
            None,
            "unknown",
            Round(ping=True, message=True, probe=True),
        ),
        (100.0, 99.0, 85.0, 90.0, "unknown", Round(ping=True, message=True)),
        (100.0, 99.0, 85.0, None, "yes", Round(ping=True, message=True)),
        (100.0, 99.0, 85.0, None, "no", Round(ping=True)),  # a ping frame only
        # our `ping` unanswered for more than half the window: not sent again
        (100.0, 99.0, 85.0, 77.0, "unknown", Round(pong_unanswered=True, ping=True)),
        (100.0, 99.0, 95.0, 77.0, "unknown", Round(pong_unanswered=True)),
        (100.0, 99.0, 95.0, 78.0, "unknown", Round()),
    ],
)
def test_a_keepalive_round(now, last_frame, last_ping, probe_at, pong, expected):
    assert keepalive_round(now, KA, last_frame, last_ping, probe_at, pong) == expected
