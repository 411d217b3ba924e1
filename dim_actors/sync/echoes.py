"""The echo set: the materializer's own recent writes, which the watcher must not send back."""

from __future__ import annotations

import threading
import time


class EchoSet:
    """(path, content hash) pairs with a short TTL, shared by the materializer and the watcher.

    Matching on the hash as well as the path means a user's edit that lands right after our write
    (different content) is never mistaken for our echo.
    """

    def __init__(self, ttl_s: float = 5.0):
        self.ttl_s = ttl_s
        self._entries: dict[tuple[str, str | None], float] = {}
        self._lock = threading.Lock()

    def add(self, path: str, content_hash: str | None) -> None:
        with self._lock:
            self._entries[(path, content_hash)] = time.monotonic() + self.ttl_s

    def consume(self, path: str, content_hash: str | None) -> bool:
        """True (and forget it) if this change is our own write."""
        now = time.monotonic()
        with self._lock:
            for key in [k for k, t in self._entries.items() if t < now]:
                del self._entries[key]
            return self._entries.pop((path, content_hash), None) is not None
