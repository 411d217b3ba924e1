"""Optional connection statistics for benchmarks (``--stats-file``), off unless asked
for.

One JSON object a line, flushed as written: ``{"ev": "open"|"close"|"ping", "t":
epoch_s, "client": id, ...}``. A ``close`` the gateway did not cause by stopping is a
disconnect (``"disconnect": true``). With ``--ping-probe-ms`` every connection is pinged
at that interval (one WebSocket ping outstanding at a time) and each round trip is
logged as ``rttMs``: a client that stops reading its socket shows up as a long round
trip (or, if the connection ends first, ``rttMs: null`` and how long the ping waited,
``unansweredMs``).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed


class GatewayStats:
    def __init__(self, path: str | Path, ping_probe_ms: int = 0):
        # open for the gateway's lifetime, closed by close()
        self.file = open(path, "a", buffering=1)  # noqa: SIM115
        self.probe_s = ping_probe_ms / 1000
        self.opened = 0
        self.disconnects = 0

    def _write(self, ev: str, client: str, **fields: Any) -> None:
        self.file.write(
            json.dumps({"ev": ev, "t": time.time(), "client": client, **fields}) + "\n"
        )

    def opened_connection(
        self, client: str, ws: ServerConnection
    ) -> asyncio.Task | None:
        self.opened += 1
        self._write("open", client, opened=self.opened)
        if self.probe_s > 0:
            return asyncio.create_task(
                self._probe(client, ws), name=f"ping probe {client}"
            )
        return None

    def closed_connection(
        self, client: str, ws: ServerConnection, stopping: bool
    ) -> None:
        if not stopping:
            self.disconnects += 1
        self._write(
            "close",
            client,
            code=ws.close_code,
            disconnect=not stopping,
            disconnects=self.disconnects,
        )

    async def _probe(self, client: str, ws: ServerConnection) -> None:
        sent = t0 = None
        try:
            while True:
                await asyncio.sleep(self.probe_s)
                sent, t0 = time.time(), time.perf_counter()
                waiter = await ws.ping()
                await waiter
                self._write(
                    "ping", client, sent=sent, rttMs=(time.perf_counter() - t0) * 1000
                )
                sent = t0 = None
        except (ConnectionClosed, asyncio.CancelledError):
            # never answered: how long it waited before the connection went
            if t0 is not None:
                self._write(
                    "ping",
                    client,
                    sent=sent,
                    rttMs=None,
                    unansweredMs=(time.perf_counter() - t0) * 1000,
                )

    def close(self) -> None:
        self.file.close()
