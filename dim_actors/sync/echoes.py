"""The echo set: the materializer's own recent writes, which the watcher must not send
back."""

from __future__ import annotations

import time

WRITTEN_TTL_FACTOR = 6


class EchoSet:
    """(absolute path, content hash) pairs with a short TTL. The watcher's alone, used
    on its thread only: the materializer tells it by message (WritesAhead,
    WritesAbandoned) what it writes.

    Matching on the hash as well as the path means a user's edit that lands right after
    our write (different content) is never mistaken for our echo. The materializer also
    tells the file's (size, mtime_ns, inode), which its rename keeps, so the watcher can
    recognise its own write without reading the file. A deletion is recorded with hash
    "".

    Apart from the entries (consumed once, short TTL), it remembers the last state it
    wrote to each path for WRITTEN_TTL_FACTOR times longer, never consumed: `wrote`
    tells the watcher that a change it is about to report is our own write all the same
    (an echo the entries failed to suppress, say because the watcher was slower than the
    TTL), which it counts as leaked. That log is independent of the mechanism it checks,
    so a leak cannot hide behind the journal's own hash checks.
    """

    def __init__(self, ttl_s: float = 10.0):
        self.ttl_s = ttl_s
        self._entries: dict[str, list[tuple[str, tuple | None, float]]] = {}
        self._written: dict[
            str, tuple[str, float]
        ] = {}  # path -> (hash, until): our last write there
        self._last_expiry = 0.0
        self.suppressed = 0
        self.leaked = 0
        self._counts: dict[
            str, dict[str, int]
        ] = {}  # sessionId -> {echoesSuppressed, echoesLeaked}

    def add(self, path: str, content_hash: str, sig: tuple | None = None) -> None:
        now = time.monotonic()
        self._entries.setdefault(path, []).append((content_hash, sig, now + self.ttl_s))
        self._written[path] = (content_hash, now + self.ttl_s * WRITTEN_TTL_FACTOR)

    def attach_sig(self, path: str, content_hash: str, sig: tuple) -> bool:
        """What a write told of by its content alone will look like, so the watcher
        need not read the file; False when no such write is waiting."""
        items = self._entries.get(path) or []
        for i, (h, s, t) in enumerate(items):
            if h == content_hash and s is None:
                items[i] = (h, sig, t)
                return True
        return False

    def _expire(self, now: float) -> None:
        if now - self._last_expiry < 1.0:
            return
        self._last_expiry = now
        for path in [
            p for p, items in self._entries.items() if all(t < now for _, _, t in items)
        ]:
            del self._entries[path]
        for path in [p for p, (_, t) in self._written.items() if t < now]:
            del self._written[path]

    def _take(self, path: str, test) -> str | None:
        now = time.monotonic()
        self._expire(now)
        items = self._entries.get(path)
        if not items:
            return None
        for i, (h, sig, t) in enumerate(items):
            if t >= now and test(h, sig):
                del items[i : i + 1]
                if not items:
                    del self._entries[path]
                self.suppressed += 1
                return h
        return None

    def consume(self, path: str, content_hash: str) -> bool:
        """True (and forget it) if this state of `path` is our own write."""
        return self._take(path, lambda h, sig: h == content_hash) is not None

    def consume_sig(self, path: str, sig: tuple) -> str | None:
        """The hash of our own write if `path` still has the (size, mtime_ns, inode) we
        left it with."""
        return self._take(path, lambda h, s: s is not None and s == sig)

    def discard(self, path: str, content_hash: str) -> None:
        """A write that did not happen after all."""
        if self._take(path, lambda h, s: h == content_hash) is not None:
            self.suppressed -= 1
        w = self._written.get(path)
        if w is not None and w[0] == content_hash:
            del self._written[path]

    def forget(self, path: str) -> None:
        """The watcher saw a state of `path` that is none of ours: earlier writes can no
        longer echo."""
        self._entries.pop(path, None)
        self._written.pop(path, None)

    def wrote(self, path: str, content_hash: str) -> bool:
        """True if this state of `path` is the last one we wrote there (lately), and
        nobody else's state has been seen there since; whether or not its echo entry is
        still there."""
        w = self._written.get(path)
        return w is not None and w[0] == content_hash and w[1] >= time.monotonic()

    def count(self, session_id: str, kind: str) -> None:
        """Per-session figures for sync_status: kind is echoesSuppressed or
        echoesLeaked."""
        c = self._counts.setdefault(
            session_id, {"echoesSuppressed": 0, "echoesLeaked": 0}
        )
        c[kind] += 1
        if kind == "echoesLeaked":
            self.leaked += 1

    def counted(self) -> dict[str, tuple[int, int]]:
        """(echoesSuppressed, echoesLeaked) of every session with any."""
        return {
            sid: (c["echoesSuppressed"], c["echoesLeaked"])
            for sid, c in self._counts.items()
        }

    def pending(self, path: str) -> bool:
        return bool(self._entries.get(path))
