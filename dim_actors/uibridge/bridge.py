"""The UI bridge actor: hands page commands to the router and router output to the
pages.

The HTTP server runs on its own asyncio loop thread; this actor's mailbox only carries
results and events across to it, so a slow page never blocks the router.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from dim_actors.kernel.actor import ActorContext, DimActor
from dim_actors.messages import Invoke, InvokeResult, Msg, UiEvent
from dim_actors.uibridge.http import BridgeServer

log = logging.getLogger(__name__)


def _static_dir() -> Path:
    # An installed wheel carries ui/ as dim_actors/uibridge/static (setup.py); a
    # checkout serves ui/ itself.
    packaged = Path(__file__).resolve().parent / "static"
    return (
        packaged
        if (packaged / "index.html").is_file()
        else Path(__file__).resolve().parents[2] / "ui"
    )


STATIC_DIR = _static_dir()


def ui_frame(event: str, payload: msgspec.Raw) -> str:
    # Spliced, not re-encoded: the page gets the gateway's bytes exactly as they
    # arrived.
    return f'{{"event":"{event}","payload":{bytes(payload).decode()}}}'


@dataclass
class BridgeWiring:
    """What the composition root gives every incarnation of the bridge."""

    token: str  # the page's per-launch token
    # 0 at first (any free port); the bound port once started, so that a restarted
    # bridge listens where open pages reconnect and where runtime.json points.
    port: int = 0
    # Tried first when `port` is 0 (the port of the app's last run, which open pages
    # still know); when another program holds it, any free one.
    preferred_port: int = 0
    static_dir: Path = field(default_factory=lambda: STATIC_DIR)


class UIBridge(DimActor):
    def __init__(self, ctx: ActorContext, wiring: BridgeWiring):
        super().__init__(ctx)
        self.wiring = wiring

    def on_start(self) -> None:
        super().on_start()
        self.loop = asyncio.new_event_loop()
        self.server = BridgeServer(
            self.wiring.static_dir,
            self.wiring.token,
            self._submit,
            invoke_timeout_s=self.ctx.settings.request_timeout_s + 5,
        )
        # Work for the loop thread, in order. One call_soon_threadsafe per burst rather
        # than per event: each one writes to the loop's self-pipe (a system call and a
        # wakeup).
        self.outq: collections.deque = collections.deque()
        self.drain_scheduled = False
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="uibridge-loop", daemon=True
        )
        self.thread.start()
        port, fallback = self.wiring.port, False
        if not port and self.wiring.preferred_port:
            port, fallback = self.wiring.preferred_port, True
        self.wiring.port = asyncio.run_coroutine_threadsafe(
            self.server.start(port, fallback), self.loop
        ).result(10)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "pages": len(self.server.clients),
            "port": self.server.port,
            "pageQueue": max(
                (len(c.queue) for c in list(self.server.clients)), default=0
            ),
            "pageQueuePeak": self.server.queue_peak,
            "pagesDropped": self.server.pages_dropped,
        }

    def _submit(self, req_id: int, command: str, args: dict) -> None:
        self.ctx.send("router", Invoke(reqId=req_id, command=command, args=args))

    def handle(self, sender: str, body: Msg) -> None:
        if isinstance(body, UiEvent):
            self.outq.append(ui_frame(body.event, body.payload))
        elif isinstance(body, InvokeResult):
            self.outq.append(body)
        else:
            raise TypeError(f"uibridge: unexpected message {type(body).__name__}")
        if not self.drain_scheduled:
            self.drain_scheduled = True
            self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        """On the loop thread: hand everything queued to the server, in the order it
        came."""
        # first: whatever is appended from here on schedules a new drain
        self.drain_scheduled = False
        q, server = self.outq, self.server
        while q:
            item = q.popleft()
            if isinstance(item, str):
                server.broadcast(item)
            else:
                server.resolve(item.reqId, item.ok, item.result, item.error)

    def on_stop(self) -> None:
        self._shutdown()

    def on_failure(self, exception_type, exception_value, traceback) -> None:
        self._shutdown()
        super().on_failure(exception_type, exception_value, traceback)

    def _shutdown(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(5)
        except TimeoutError:
            # The server's own waits are bounded well under this; the loop is stopped
            # regardless.
            log.warning(
                "uibridge: the HTTP server did not stop within 5 s; stopping its loop"
            )
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)
