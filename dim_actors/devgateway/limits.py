"""Sliding-window limits: messages per connection, failed authentications per IP."""

from __future__ import annotations

import hmac
import time
from collections import deque


class SlidingWindow:
    """At most ``limit`` accepted events in any ``window`` seconds."""

    def __init__(self, limit: int, window: float):
        self.limit = limit
        self.window = window
        self.times: deque[float] = deque()

    def _expire(self, now: float) -> None:
        while self.times and self.times[0] <= now - self.window:
            self.times.popleft()

    def allow(self, now: float | None = None) -> bool:
        """Count one event if it fits; False (and not counted) when the window is full."""
        now = time.monotonic() if now is None else now
        self._expire(now)
        if len(self.times) >= self.limit:
            return False
        self.times.append(now)
        return True

    def retry_after_ms(self, now: float | None = None) -> int:
        """How long until one more event fits (0 when it fits now)."""
        now = time.monotonic() if now is None else now
        self._expire(now)
        if len(self.times) < self.limit:
            return 0
        return max(1, int((self.times[0] + self.window - now) * 1000) + 1)

    def record(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._expire(now)
        self.times.append(now)


class AuthLimiter:
    """Failed ``authenticate`` attempts per IP. Once ``max_failures`` sit in the window,
    every attempt from that IP (right or wrong) is refused until the oldest failure ages
    out."""

    def __init__(self, max_failures: int = 5, window: float = 60.0):
        self.max_failures = max_failures
        self.window = window
        self.by_ip: dict[str, SlidingWindow] = {}

    def retry_after_ms(self, ip: str) -> int:
        w = self.by_ip.get(ip)
        return 0 if w is None else w.retry_after_ms()

    def failed(self, ip: str) -> None:
        self.by_ip.setdefault(
            ip, SlidingWindow(self.max_failures, self.window)
        ).record()


def check_token(
    expected: str, candidate: str, limiter: AuthLimiter, ip: str, spare_valid: bool
) -> tuple[bool, int]:
    """(is `candidate` the token, how long `ip` must wait before it may try: 0 = go
    ahead). `spare_valid`: the right token passes even while its IP is locked out (see
    DevGateway)."""
    valid = hmac.compare_digest(candidate.encode(), expected.encode())
    if valid and spare_valid:
        return True, 0
    return valid, limiter.retry_after_ms(ip)
