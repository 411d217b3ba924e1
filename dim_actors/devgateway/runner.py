"""Run a DevGateway on its own event loop in a background thread (tests, benchmarks, the
app)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from .server import DevGateway


class BackgroundGateway:
    """``with BackgroundGateway(token="t") as gw: connect(gw.url)``.

    Keyword arguments are DevGateway's. ``start()`` returns once the gateway listens;
    ``stop()`` shuts it down cleanly (turns ended, storage flushed) and joins the
    thread.
    """

    def __init__(self, **options: Any):
        self.options = options
        self.gateway: DevGateway | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    @property
    def port(self) -> int:
        assert self.gateway is not None, "not started"
        return self.gateway.port

    @property
    def url(self) -> str:
        assert self.gateway is not None, "not started"
        return self.gateway.url

    def start(self, timeout: float = 10.0) -> BackgroundGateway:
        self._thread = threading.Thread(
            target=self._main, name="dim-dev-gateway", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the dev gateway did not start in time")
        if self._error is not None:
            raise RuntimeError("the dev gateway failed to start") from self._error
        return self

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        try:
            loop.run_until_complete(self._run())
        finally:
            loop.close()

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        self.gateway = DevGateway(**self.options)
        try:
            await self.gateway.start()
        except BaseException as e:
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.gateway.stop()

    def call(self, fn, *args, timeout: float = 10.0):
        """Run ``fn(gateway, *args)`` on the gateway's loop and return its result (for
        tests)."""
        assert self.loop is not None and self.gateway is not None

        async def run():
            result = fn(self.gateway, *args)
            return await result if asyncio.iscoroutine(result) else result

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if (
            self.loop is not None
            and self._stop is not None
            and self._thread is not None
            and self._thread.is_alive()
        ):
            self.loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> BackgroundGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
