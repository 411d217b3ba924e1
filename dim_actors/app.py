"""`dim-desktop`: start the dev gateway (by default), the actors and the UI, and stop them cleanly."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import msgspec

from dim_actors import __version__
from dim_actors.connection.actor import ConnectionMemory
from dim_actors.desktop import Desktop
from dim_actors.embedded_gateway import EmbeddedGateway, GatewayStartError
from dim_actors.home import AlreadyRunning, DimHome, RuntimeInfo
from dim_actors.messages import ControlReply, ControlRequest
from dim_actors.settings import SettingsError, load_settings, resolve_token
from dim_actors.supervisor.control import request as control_request
from dim_actors.supervisor.runtime import SupervisorRuntime

log = logging.getLogger("dim.app")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="dim-desktop",
        description="Desktop client for the Diminuendo agent gateway. Opens the UI in a native window "
                    "(with the 'desktop' extra and a display), else in the default browser. With no --gateway "
                    "it starts an embedded dev gateway. State and settings live in $DIM_HOME; if dim-desktop "
                    "already runs there, this opens its window instead.")
    p.add_argument("--gateway", metavar="URL", help="ws:// or wss:// URL of a real gateway (no dev gateway is started)")
    p.add_argument("--token", metavar="T",
                   help="gateway token (default: as settings.toml's token_source says; $DIM_TOKEN unless set)")
    p.add_argument("--no-browser", action="store_true", help="open no UI at start (no window, no browser)")
    p.add_argument("--browser", action="store_true", help="open the UI in the default browser, not a native window")
    p.add_argument("--ui-port", type=int, default=0, metavar="N", help="UI bridge port (0 picks a free one)")
    p.add_argument("--version", action="version", version=f"dim-desktop {__version__}")
    args = p.parse_args(argv)
    if args.gateway and not args.gateway.startswith(("ws://", "wss://")):
        p.error(f"--gateway must be a ws:// or wss:// URL, not {args.gateway!r}")
    if not 0 <= args.ui_port <= 65535:
        p.error("--ui-port must be between 0 and 65535")
    return args


def setup_logging(home: DimHome) -> None:
    fmt = "%(asctime)s %(name)s %(levelname)s %(message)s"
    file_handler = logging.FileHandler(home.logs_dir / "dim-desktop.log")
    file_handler.setFormatter(logging.Formatter(fmt))
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter("dim-desktop: %(levelname)s %(message)s"))
    # pykka's own tracebacks go to the log file; the terminal gets our one-line account of them.
    console.addFilter(lambda record: not record.name.startswith("pykka"))
    logging.basicConfig(level=logging.INFO, handlers=[file_handler, console])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    home = DimHome.from_env()
    home.ensure()
    try:
        lock_fd = home.acquire_instance_lock()
    except AlreadyRunning as e:
        return show_running(home, args, str(e))
    setup_logging(home)
    try:
        settings = load_settings(home.config_dir / "settings.toml")
        token = args.token
        if args.gateway or settings.gateway_url:
            token = resolve_token(settings, args.token, dict(os.environ), home.config_dir)
    except SettingsError as e:
        print(f"dim-desktop: {e}", file=sys.stderr)
        return 2

    gateway: EmbeddedGateway | None = None
    url = args.gateway or settings.gateway_url
    if not url:
        gateway = EmbeddedGateway(home.data_dir / "gateway", home.logs_dir / "gateway.log")
        try:
            url = gateway.start()
        except GatewayStartError as e:
            print(f"dim-desktop: {e}", file=sys.stderr)
            return 1

    ui_token = secrets.token_urlsafe(32)
    extra = {"ui_token": ui_token, "ui_port": args.ui_port,
             "connection": ConnectionMemory(url=url, token=token)}
    runtime = SupervisorRuntime(home, settings, extra)
    catch_stop_signals(runtime)
    desktop: Desktop | None = None
    try:
        runtime.start()
        runtime.status()  # returns once every actor has started
        # Everything loaded so far (modules, classes, the actors) lives as long as the process:
        # keep it out of the collector's full passes, which otherwise stall every thread for
        # ~20 ms a few times a minute under a stream (docs/performance.md).
        gc.freeze()
        if runtime.stop_requested.is_set():
            raise StartFailed(runtime.stop_reason)
        ui_url = f"http://127.0.0.1:{extra['ui_port']}/?token={ui_token}"
        home.write_runtime(RuntimeInfo(pid=os.getpid(), uiUrl=ui_url, token=ui_token,
                                       controlSocket=str(home.control_socket), gatewayUrl=url))
        print(f"dim-desktop {__version__}: gateway {url}", flush=True)
        print(f"dim-desktop: UI at {ui_url}", flush=True)
        mode = "none" if args.no_browser else "browser" if args.browser else settings.ui_open
        desktop = Desktop(runtime, ui_url, mode, tray=settings.tray and mode != "none",
                          notifications=settings.native_notifications)
        extra["show_ui"] = desktop.show
        extra["desktop_notify"] = desktop.notifier.submit
        extra["on_settings_changed"] = desktop.on_settings_changed
        print(f"dim-desktop: {describe_mode(desktop.start_mode)}; press Ctrl-C or run `dimctl stop` to stop",
              flush=True)
        desktop.run()  # the main thread's loop (the native window needs it) until the app stops
        log.info("stopping: %s", runtime.stop_reason)
    except StartFailed:
        # Already said where it happened (the supervisor's log line); the last line says why.
        runtime.exit_code = runtime.exit_code or 1
    except Exception as e:
        log.exception("dim-desktop failed")
        print(f"dim-desktop: {e}", file=sys.stderr)
        runtime.exit_code = runtime.exit_code or 1
    finally:
        home.remove_runtime()
        if desktop is not None:
            desktop.close()
        runtime.stop()
        if gateway is not None:
            gateway.stop()
        os.close(lock_fd)
    if runtime.exit_code:
        print(f"dim-desktop: stopped: {runtime.stop_reason}", file=sys.stderr)
    else:
        print("dim-desktop: stopped", flush=True)
    return runtime.exit_code


class StartFailed(Exception):
    """An actor could not start (a taken --ui-port, say): a clear last line, no traceback."""


def describe_mode(mode: str) -> str:
    return {"window": "UI in a native window (closing it keeps dim-desktop running)",
            "browser": "UI opened in the default browser",
            "none": "no UI opened (--no-browser)"}.get(mode, mode)


def catch_stop_signals(runtime: SupervisorRuntime) -> None:
    """SIGINT/SIGTERM stop the app, even while the main thread is inside a GUI toolkit's loop.

    A Python signal handler runs only when the main thread runs Python code, which a Qt event
    loop may not do for a while; the wakeup fd is written by the C-level handler at once, and a
    thread turns it into a stop request.
    """
    rsock, wsock = socket.socketpair()
    wsock.setblocking(False)
    signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)

    def handler(signum, frame) -> None:
        runtime.request_stop(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)

    def reader() -> None:
        while True:
            data = rsock.recv(64)
            if not data:
                return
            for signum in data:
                if signum in (signal.SIGINT, signal.SIGTERM) and not runtime.stop_requested.is_set():
                    runtime.request_stop(signal.Signals(signum).name)

    threading.Thread(target=reader, name="stop-signals", daemon=True).start()


def show_running(home: DimHome, args: argparse.Namespace, running: str) -> int:
    """A dim-desktop already runs with this DIM_HOME: ask it to open its window, and exit 0.

    With --no-browser there is nothing to hand over, so this start did not happen: say so and exit
    1, as a second instance that starts nothing always did (the walking skeleton's contract)."""
    ignored = [f for f, v in (("--gateway", args.gateway), ("--token", args.token), ("--ui-port", args.ui_port)) if v]
    if ignored:
        print(f"dim-desktop: {', '.join(ignored)} ignored: the running instance keeps its own", file=sys.stderr)
    if args.no_browser:
        print(f"{running}; not starting another", flush=True)
        return 1
    deadline = time.monotonic() + 30
    why = "it has not written run/runtime.json yet"
    while time.monotonic() < deadline:
        info = home.read_runtime()
        if info is not None:
            try:
                with control_request(Path(info.controlSocket), ControlRequest(cmd="show"), 30) as s, \
                        s.makefile("rb") as f:
                    reply = msgspec.json.decode(f.readline() or b"{}", type=ControlReply)
                if reply.ok:
                    shown = (reply.result or {}).get("shown", "window")
                    print(f"{running}: showing its {'window' if shown == 'window' else 'UI in the browser'}",
                          flush=True)
                    return 0
                why = reply.error or "it refused"
                break
            except (OSError, msgspec.DecodeError) as e:
                why = f"its control socket does not answer ({e})"
        time.sleep(0.2)
    print(f"dim-desktop: {running}, but it could not be asked to open its window: {why}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
