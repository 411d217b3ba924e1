"""Reconnect delays: exponential backoff with full jitter, reset after a stable
connection.

Pure apart from the random source, which is injectable, so the schedule is tested
without timing. Full jitter (a uniform draw in [0, ceiling]) rather than a fixed or
"equal" jitter: after a gateway restart, a fleet of clients spreads its reconnects over
the whole window instead of arriving in waves.
"""

from __future__ import annotations

import random

BASE_S = 0.5
CAP_S = 30.0
STABLE_AFTER_S = 60.0


def ceiling(attempt: int, base_s: float = BASE_S, cap_s: float = CAP_S) -> float:
    """The longest wait before retry number `attempt` (0 for the first retry): 0.5, 1,
    2, ... 30 s."""
    # The exponent is bounded so a long outage cannot overflow the float; the cap
    # applies long before.
    return min(cap_s, base_s * 2 ** min(max(attempt, 0), 32))


def delay(
    attempt: int,
    rng: random.Random | None = None,
    base_s: float = BASE_S,
    cap_s: float = CAP_S,
) -> float:
    """A uniform random wait in [0, ceiling(attempt)]."""
    return (rng or random).uniform(0.0, ceiling(attempt, base_s, cap_s))


class Backoff:
    """The reconnect schedule of one connection.

    `connected(now)` when a connection is fully up (handshake done); `next_delay(now)`
    after it (or an attempt) fails. A connection that stayed up `stable_after_s` or
    longer starts the schedule over, so one drop after a long stable period retries
    quickly, while a gateway that accepts and drops at once keeps backing off."""

    def __init__(
        self,
        rng: random.Random | None = None,
        base_s: float = BASE_S,
        cap_s: float = CAP_S,
        stable_after_s: float = STABLE_AFTER_S,
    ):
        self.rng = rng
        self.base_s, self.cap_s, self.stable_after_s = base_s, cap_s, stable_after_s
        self.attempt = 0  # failures since the last reset
        self.connected_at: float | None = None

    def connected(self, now: float) -> None:
        self.connected_at = now

    def reset(self) -> None:
        self.attempt, self.connected_at = 0, None

    def next_delay(self, now: float) -> float:
        if (
            self.connected_at is not None
            and now - self.connected_at >= self.stable_after_s
        ):
            self.attempt = 0
        self.connected_at = None
        d = delay(self.attempt, self.rng, self.base_s, self.cap_s)
        self.attempt += 1
        return d
