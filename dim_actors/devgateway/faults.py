"""Network faults on demand, so tests and benchmarks can exercise a client's recovery
for real.

Triggered from the coding-agent's script (`/silence MS`, `/drop`): the gateway goes
silent (reads nothing, so WebSocket pings go unanswered, and sends nothing, as a cut
cable would) or drops every connection's TCP socket without a close frame.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)


class Faults:
    def __init__(self) -> None:
        self.clear = asyncio.Event()  # set while the network is healthy
        self.clear.set()
        # the gateway's live Connection objects (shared, not copied)
        self.connections: set = set()
        self.disconnects = 0  # connections that ended, for whoever measures stability

    @property
    def silent(self) -> bool:
        return not self.clear.is_set()

    def _transports(self) -> Iterable:
        for conn in list(self.connections):
            transport = getattr(conn.ws, "transport", None)
            if transport is not None and not transport.is_closing():
                yield transport

    def on_new_connection(self, conn) -> None:
        if self.silent:
            conn.ws.transport.pause_reading()

    async def silence(self, seconds: float) -> None:
        log.warning("dev gateway: going silent for %.1fs (fault injected)", seconds)
        self.clear.clear()
        for t in self._transports():
            t.pause_reading()
        try:
            await asyncio.sleep(seconds)
        finally:
            for t in self._transports():
                t.resume_reading()
            self.clear.set()
            log.warning("dev gateway: silence over")

    def drop(self) -> int:
        transports = list(self._transports())
        log.warning(
            "dev gateway: dropping %d connections (fault injected)", len(transports)
        )
        for t in transports:
            t.abort()
        return len(transports)
