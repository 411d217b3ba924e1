"""`dim-desktop`: start the dev gateway (by default), the actors and the UI, and stop them cleanly."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import sys
import threading
import webbrowser

from dim_actors import __version__
from dim_actors.connection.actor import ConnectionMemory
from dim_actors.embedded_gateway import EmbeddedGateway, GatewayStartError
from dim_actors.home import AlreadyRunning, DimHome, RuntimeInfo
from dim_actors.settings import SettingsError, load_settings
from dim_actors.supervisor.runtime import SupervisorRuntime

log = logging.getLogger("dim.app")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="dim-desktop",
        description="Desktop client for the Diminuendo agent gateway. With no --gateway it starts an "
                    "embedded dev gateway. State lives in $DIM_HOME.")
    p.add_argument("--gateway", metavar="URL", help="ws:// or wss:// URL of a real gateway (no dev gateway is started)")
    p.add_argument("--token", metavar="T", default=os.environ.get("DIM_TOKEN"),
                   help="gateway token (default: $DIM_TOKEN)")
    p.add_argument("--no-browser", action="store_true", help="do not open the UI")
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
        print(f"dim-desktop: {e}", file=sys.stderr)
        return 1
    setup_logging(home)
    try:
        settings = load_settings(home.config_dir / "settings.toml")
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
             "connection": ConnectionMemory(url=url, token=args.token)}
    runtime = SupervisorRuntime(home, settings, extra)
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    for sig in stop_signals:
        signal.signal(sig, lambda signum, frame: runtime.request_stop(signal.Signals(signum).name))
    try:
        runtime.start()
        runtime.status()  # returns once every actor has started
        if runtime.stop_requested.is_set():
            raise RuntimeError(runtime.stop_reason)
        ui_url = f"http://127.0.0.1:{extra['ui_port']}/?token={ui_token}"
        home.write_runtime(RuntimeInfo(pid=os.getpid(), uiUrl=ui_url, token=ui_token,
                                       controlSocket=str(home.control_socket), gatewayUrl=url))
        print(f"dim-desktop {__version__}: gateway {url}", flush=True)
        print(f"dim-desktop: UI at {ui_url}", flush=True)
        print("dim-desktop: press Ctrl-C to stop", flush=True)
        if not args.no_browser:
            threading.Thread(target=webbrowser.open, args=(ui_url,), daemon=True).start()
        while not runtime.stop_requested.wait(1.0):
            pass
        log.info("stopping: %s", runtime.stop_reason)
    except Exception as e:
        log.exception("dim-desktop failed")
        print(f"dim-desktop: {e}", file=sys.stderr)
        runtime.exit_code = runtime.exit_code or 1
    finally:
        home.remove_runtime()
        runtime.stop()
        if gateway is not None:
            gateway.stop()
        os.close(lock_fd)
    if runtime.exit_code:
        print(f"dim-desktop: stopped: {runtime.stop_reason}", file=sys.stderr)
    else:
        print("dim-desktop: stopped", flush=True)
    return runtime.exit_code


if __name__ == "__main__":
    sys.exit(main())
