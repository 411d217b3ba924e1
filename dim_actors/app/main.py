"""`dim-desktop`: start the dev gateway (by default), the actors and the UI, and stop
them cleanly."""

from __future__ import annotations

import argparse
import gc
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import msgspec
from filelock import BaseFileLock

from dim_actors import __version__
from dim_actors.app.control import request as control_request
from dim_actors.app.desktoplink import DesktopLink
from dim_actors.app.embedded_gateway import EmbeddedGateway, GatewayStartError
from dim_actors.app.runtime import ActorClasses, SupervisorRuntime
from dim_actors.config.home import (
    AlreadyRunning,
    DimHome,
    ModeFix,
    RuntimeInfo,
    make_files_private,
)
from dim_actors.config.settings import (
    Settings,
    SettingsError,
    load_settings,
    resolve_token,
)
from dim_actors.connection.actor import ConnectionMemory
from dim_actors.desktop import Desktop, autostart
from dim_actors.messages import ControlReply, ControlRequest

log = logging.getLogger("dim.app")

# The whole stop, from its request (SIGINT, SIGTERM, `dimctl stop`, the tray's Quit) to
# the end of the process, window or not, fits in this (the requirement: 10 s on a loaded
# machine). The window, the tray, the control socket and the actors stop at once; the
# dev gateway after the actors (so the connection closes its socket first), in the share
# of the budget kept for it.
STOP_BUDGET_S = 8.0
GATEWAY_SHARE_S = 2.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="dim-desktop",
        description="Desktop client for the Diminuendo agent gateway. Opens the UI in "
        "a native window (with the 'desktop' extra and a display), else in the "
        "default browser. With no --gateway it starts an embedded dev gateway. State "
        "and settings live in $DIM_HOME; if dim-desktop already runs there, this "
        "opens its window instead.",
    )
    p.add_argument(
        "--gateway",
        metavar="URL",
        help="ws:// or wss:// URL of a real gateway (no dev gateway is started)",
    )
    token = p.add_mutually_exclusive_group()
    token.add_argument(
        "--token-file",
        metavar="PATH",
        help="read the gateway token from the first line of this file, which only you may read "
        "(chmod 600) (default: as settings.toml's token_source says; $DIM_TOKEN unless set)",
    )
    token.add_argument(
        "--token",
        metavar="T",
        help="gateway token; every user of this machine can read it in the process list (ps): "
        "prefer --token-file or $DIM_TOKEN",
    )
    p.add_argument(
        "--no-browser",
        action="store_true",
        help="open no UI at start (no window, no browser)",
    )
    p.add_argument(
        "--browser",
        action="store_true",
        help="open the UI in the default browser, not a native window",
    )
    p.add_argument(
        "--ui-port",
        type=int,
        default=0,
        metavar="N",
        help="UI bridge port (0 picks a free one)",
    )
    p.add_argument(
        "--gateway-profile",
        choices=("dev", "reference"),
        default="dev",
        help="without --gateway: how the embedded dev gateway behaves. 'reference' "
        "does only what the public Diminuendo docs describe, to try the app against a "
        "gateway that is not ours (default dev)",
    )
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
    # pykka's own tracebacks go to the log file; the terminal gets our one-line account
    # of them.
    console.addFilter(lambda record: not record.name.startswith("pykka"))
    logging.basicConfig(level=logging.INFO, handlers=[file_handler, console])


TOKEN_FLAG_WARNING = (
    "dim-desktop: warning: --token puts the token on the command line, where every user of "
    "this machine can read it (ps). Use --token-file PATH (a file only you can read) or the "
    "DIM_TOKEN environment variable instead; see docs/security.md"
)

# How many of the entries made private at start are named in the log (the rest are
# counted).
FIXES_NAMED = 20


def log_mode_fixes(fixes: list[ModeFix]) -> None:
    """Once, at start: what in DIM_HOME others could read, now private (or could not be
    made so)."""
    failed = [f for f in fixes if f.error]
    done = [f for f in fixes if not f.error]
    for what, group in (
        ("made private (group or others had access)", done),
        ("could not be made private", failed),
    ):
        if group:
            named = ", ".join(f.describe() for f in group[:FIXES_NAMED])
            more = (
                f" and {len(group) - FIXES_NAMED} more"
                if len(group) > FIXES_NAMED
                else ""
            )
            log.warning(
                "DIM_HOME: %d %s %s: %s%s",
                len(group),
                "entry" if len(group) == 1 else "entries",
                what,
                named,
                more,
            )


def load_configuration(
    home: DimHome, args: argparse.Namespace
) -> tuple[Settings, str | None]:
    """The settings, and the gateway token where a gateway of the user's is named."""
    settings = load_settings(home.config_dir / "settings.toml")
    token = args.token
    if args.gateway or settings.gateway_url or args.token_file:
        token = resolve_token(
            settings,
            args.token,
            dict(os.environ),
            home.config_dir,
            token_file=args.token_file,
            gateway_url=args.gateway or settings.gateway_url,
        )
    return settings, token


def main(argv: list[str] | None = None, *, replace: ActorClasses | None = None) -> int:
    """`replace`: actor classes to use instead of the app's own (subclasses taking the
    same wiring), for tests that inject faults into a real app."""
    # Before any file, folder or child process exists: everything this process and its
    # children create (databases, logs, spill files, the dev gateway's data) is private
    # to the user.
    make_files_private()
    args = parse_args(argv)
    if args.token:
        print(TOKEN_FLAG_WARNING, file=sys.stderr, flush=True)
    home = DimHome.from_env()
    fixes = home.ensure()
    try:
        instance_lock = home.acquire_instance_lock()
    except AlreadyRunning as e:
        return show_running(home, args, str(e))
    setup_logging(home)
    log_mode_fixes(fixes)
    if home.is_shared_folder():
        log.warning(
            "DIM_HOME is %s, which holds more than dim-desktop's files: only its own "
            "folders in it are made private; set DIM_HOME to a folder of "
            "dim-desktop's own",
            home.root,
        )
    try:
        settings, token = load_configuration(home, args)
    except SettingsError as e:
        print(f"dim-desktop: {e}", file=sys.stderr)
        return 2
    # Read once: the programs the app starts (the browser, notify-send, the dev gateway)
    # need not have it.
    os.environ.pop("DIM_TOKEN", None)
    # Before the page can change it: later changes reach the desktop.
    autostart.apply(settings.start_at_login)

    gateway: EmbeddedGateway | None = None
    url = args.gateway or settings.gateway_url
    if not url:
        gateway = EmbeddedGateway(
            home.data_dir / "gateway",
            home.logs_dir / "gateway.log",
            extra_args=["--profile", args.gateway_profile],
        )
        try:
            url = gateway.start()
            # per launch, given to it privately: no other local user can use it
            token = gateway.token
        except GatewayStartError as e:
            print(f"dim-desktop: {e}", file=sys.stderr)
            return 1

    # The last run's token and port, so that a page left open reconnects by itself
    # (docs/security.md, "The UI token").
    ui_token = home.ui_token()
    connection = ConnectionMemory(
        url=url,
        token=token,
        embedded_url=url if gateway else None,
        embedded_token=gateway.token if gateway else None,
        embedded_state=gateway.state if gateway else None,
    )
    desktop_link = DesktopLink()
    runtime = SupervisorRuntime(
        home, settings, connection, ui_token, args.ui_port, desktop_link, replace
    )
    # --ui-port wins over it
    runtime.wiring.bridge.preferred_port = home.last_ui_port()
    stopper = Stopper(runtime, home, gateway)
    catch_stop_signals(runtime)
    desktop: Desktop | None = None
    try:
        runtime.start()
        stopper.start()
        # every actor has started, or the stop was requested first
        runtime.wait_started()
        # Everything loaded so far (modules, classes, the actors) lives as long as the
        # process: keep it out of the collector's full passes, which otherwise stall
        # every thread for ~20 ms a few times a minute under a stream
        # (docs/performance.md).
        gc.freeze()
        if runtime.exit_code:  # the supervisor gave up: an actor could not start
            raise StartFailed(runtime.stop_reason)
        ui_url = f"http://127.0.0.1:{runtime.ui_port}/?token={ui_token}"
        home.remember_ui_port(runtime.ui_port)
        if not stopper.write_runtime(
            RuntimeInfo(
                pid=os.getpid(),
                uiUrl=ui_url,
                token=ui_token,
                controlSocket=str(home.control_socket),
                gatewayUrl=url,
                gatewayToken=gateway.token if gateway else "",
            )
        ):
            raise StopBeforeStart()
        print(f"dim-desktop {__version__}: gateway {url}", flush=True)
        print(f"dim-desktop: UI at {ui_url}", flush=True)
        mode = (
            "none"
            if args.no_browser
            else "browser"
            if args.browser
            else settings.ui_open
        )
        desktop = Desktop(
            runtime,
            ui_url,
            mode,
            open_page=home.write_open_page,
            tray=settings.tray and mode != "none",
            notifications=settings.native_notifications,
        )
        if not stopper.adopt(desktop):
            raise StopBeforeStart()
        desktop_link.attach(desktop)
        print(
            f"dim-desktop: {describe_mode(desktop.start_mode)}; press Ctrl-C or run "
            "`dimctl stop` to stop",
            flush=True,
        )
        # the main thread's loop (the native window needs it) until the app stops
        desktop.run()
    except StopBeforeStart:
        pass  # stopped (a signal, say) before the UI was up: a normal stop
    except StartFailed:
        # Already said where it happened (the supervisor's log line); the last line says
        # why.
        runtime.exit_code = runtime.exit_code or 1
    except Exception as e:
        log.exception("dim-desktop failed")
        print(f"dim-desktop: {e}", file=sys.stderr)
        runtime.exit_code = runtime.exit_code or 1
        runtime.request_stop(f"dim-desktop failed: {e}")
    finally:
        if not runtime.stop_requested.is_set():
            runtime.request_stop("dim-desktop is ending")
        stopper.start()  # if runtime.start() itself failed, it was not started yet
        stopper.wait()
        if desktop is not None:
            desktop.close()
    return stopper.finish(instance_lock)


class StartFailed(Exception):
    """An actor could not start (a taken --ui-port, say): a clear last line, no
    traceback."""


class StopBeforeStart(Exception):
    """The stop was requested before the UI was up."""


class Stopper:
    """Stops everything, on a thread of its own, as soon as the stop is requested.

    The stop runs the same whatever the main thread is doing (the window's GUI loop,
    starved on a loaded machine; a window probe; the start itself): runtime.json goes
    first, then the tray, the control socket and every actor stop at once; then the
    window is destroyed (its GUI loop, on the main thread, ends when it handles that)
    and the dev gateway stops, after the actors, so the connection closes its socket
    first. One deadline, STOP_BUDGET_S after the request, bounds it all; past it the
    process exits without waiting for a GUI loop that has not ended."""

    def __init__(
        self, runtime: SupervisorRuntime, home: DimHome, gateway: EmbeddedGateway | None
    ):
        self.runtime, self.home, self.gateway = runtime, home, gateway
        self.desktop: Desktop | None = None
        # runtime.json: written only while no stop is requested
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="stop", daemon=True)
        self.done = threading.Event()
        self.finishing = threading.Lock()  # taken by whoever ends the process

    def start(self) -> None:
        if self.thread.ident is None:
            self.thread.start()

    def write_runtime(self, info: RuntimeInfo) -> bool:
        """Write runtime.json unless the stop is requested (then the stop has removed
        it)."""
        with self.lock:
            if self.runtime.stop_requested.is_set():
                return False
            self.home.write_runtime(info)
            return True

    def adopt(self, desktop: Desktop) -> bool:
        """The stop closes this desktop's window and tray; False if the stop is
        requested already."""
        with self.lock:
            if self.runtime.stop_requested.is_set():
                return False
            self.desktop = desktop
            return True

    def deadline(self) -> float:
        return (self.runtime.stop_requested_at or time.monotonic()) + STOP_BUDGET_S

    def wait(self) -> None:
        """On the main thread, once its loop is over: until the stop is done (by the
        deadline)."""
        if not self.done.wait(timeout=max(0.0, self.deadline() - time.monotonic())):
            log.warning(
                "the stop is not done %.0fs after it was requested: ending the process anyway",
                STOP_BUDGET_S,
            )

    def _run(self) -> None:
        self.runtime.stop_requested.wait()
        deadline = self.deadline()
        try:
            with self.lock:
                self.home.remove_runtime()
                desktop = self.desktop
            closing = None
            if desktop is not None:  # the tray and the notifier
                closing = threading.Thread(
                    target=desktop.close, name="desktop-close", daemon=True
                )
                closing.start()
            self.runtime.stop(deadline - GATEWAY_SHARE_S)
            if desktop is not None:
                desktop.close_window()  # after the UI bridge: see Desktop.close_window
            if self.gateway is not None:
                self.gateway.stop(timeout_s=max(0.5, deadline - 1.0 - time.monotonic()))
            if closing is not None:
                closing.join(timeout=max(0.0, deadline - time.monotonic()))
        except Exception:
            log.exception("stopping dim-desktop failed")
            self.runtime.exit_code = self.runtime.exit_code or 1
        finally:
            self.done.set()
        # The main thread returns once its loop is over (a window: once the GUI loop has
        # handled the destroy) and ends the process. A loop that has not ended by the
        # deadline is not waited for.
        time.sleep(max(0.0, deadline - time.monotonic()))
        if not self.finishing.acquire(blocking=False):
            return  # the main thread is ending the process
        log.warning(
            "the main thread's loop did not end within %.0fs of the stop request: "
            "exiting without it",
            STOP_BUDGET_S,
        )
        self._finish(None)

    def finish(self, instance_lock: BaseFileLock) -> int:
        """On the main thread, at the very end: say the app stopped, and return its exit
        code."""
        if not self.finishing.acquire(blocking=False):
            # The stop thread is ending the process (the deadline passed): it exits for
            # us.
            self.finishing.acquire()
        return self._finish(instance_lock)

    def _finish(self, instance_lock: BaseFileLock | None) -> int:
        """Every part of the app has ended by now. Threads of libraries that are not
        daemons (pywebview runs some) get a moment, not more: Python would wait for them
        at exit, for ever if one waits for a GUI loop that is over."""
        runtime = self.runtime
        if instance_lock is not None:
            instance_lock.release()
        for proc in multiprocessing.active_children():  # none: runtime.stop saw to it
            proc.kill()
        me = threading.current_thread()
        stray = [
            t
            for t in threading.enumerate()
            if t is not me and not t.daemon and t.is_alive()
        ]
        until = min(self.deadline(), time.monotonic() + 1.0)
        for t in stray:
            t.join(timeout=max(0.0, until - time.monotonic()))
        stray = [t for t in stray if t.is_alive()]
        if runtime.exit_code:
            print(f"dim-desktop: stopped: {runtime.stop_reason}", file=sys.stderr)
        else:
            print("dim-desktop: stopped", flush=True)
        log.info(
            "stopped %.2fs after the stop request (%s)%s",
            time.monotonic() - (runtime.stop_requested_at or time.monotonic()),
            runtime.stop_reason,
            f"; not waiting for threads {', '.join(t.name for t in stray)}"
            if stray
            else "",
        )
        if stray or threading.current_thread() is not threading.main_thread():
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(runtime.exit_code)
        return runtime.exit_code


def describe_mode(mode: str) -> str:
    return {
        "window": "UI in a native window (closing it keeps dim-desktop running)",
        "browser": "UI opened in the default browser",
        "none": "no UI opened (--no-browser)",
    }.get(mode, mode)


def catch_stop_signals(runtime: SupervisorRuntime) -> None:
    """SIGINT/SIGTERM stop the app, even while the main thread is inside a GUI toolkit's
    loop.

    A Python signal handler runs only when the main thread runs Python code, which a Qt
    event loop may not do for a while; the wakeup fd is written by the C-level handler
    at once, and a thread turns it into a stop request.
    """
    global _wakeup
    rsock, wsock = socket.socketpair()
    wsock.setblocking(False)
    # Both ends must live as long as the process: a collected socket closes its fd, and
    # the C handler would then write to a closed fd, or to whatever file reuses the
    # number.
    _wakeup = (rsock, wsock)
    signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)

    def handler(signum, frame) -> None:
        # Only replaces the default action (SIGTERM would kill the process on the spot):
        # the C handler has already written the signal to the wakeup fd, for the thread
        # below. Nothing is done here, on whatever the main thread was doing (a lock may
        # be held). pywebview's Qt backend replaces the SIGINT one with its own, which
        # quits the GUI loop (the C handler, and so this thread, still see the signal);
        # the window refuses that close, and the stop destroys it once the UI bridge has
        # stopped (Desktop.close_window).
        pass

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)

    def reader() -> None:
        while True:
            data = rsock.recv(64)
            if not data:
                return
            for signum in data:
                if signum in (signal.SIGINT, signal.SIGTERM):
                    runtime.request_stop(signal.Signals(signum).name)

    threading.Thread(target=reader, name="stop-signals", daemon=True).start()


_wakeup: tuple[socket.socket, socket.socket] | None = None


def show_running(home: DimHome, args: argparse.Namespace, running: str) -> int:
    """A dim-desktop already runs with this DIM_HOME: ask it to open its window, and
    exit 0.

    With --no-browser there is nothing to hand over, so this start did not happen: say
    so and exit 1, as a second instance that starts nothing always did (the walking
    skeleton's contract)."""
    ignored = [
        f
        for f, v in (
            ("--gateway", args.gateway),
            ("--token", args.token),
            ("--token-file", args.token_file),
            ("--ui-port", args.ui_port),
        )
        if v
    ]
    if ignored:
        print(
            f"dim-desktop: {', '.join(ignored)} ignored: the running instance keeps its own",
            file=sys.stderr,
        )
    if args.no_browser:
        print(f"{running}; not starting another", flush=True)
        return 1
    deadline = time.monotonic() + 30
    why = "it has not written run/runtime.json yet"
    while time.monotonic() < deadline:
        info = home.read_runtime()
        if info is not None:
            try:
                with (
                    control_request(
                        Path(info.controlSocket), ControlRequest(cmd="show"), 30
                    ) as s,
                    s.makefile("rb") as f,
                ):
                    reply = msgspec.json.decode(
                        f.readline() or b"{}", type=ControlReply
                    )
                if reply.ok:
                    shown = (reply.result or {}).get("shown", "window")
                    print(
                        f"{running}: showing its "
                        f"{'window' if shown == 'window' else 'UI in the browser'}",
                        flush=True,
                    )
                    return 0
                why = reply.error or "it refused"
                break
            except (OSError, msgspec.DecodeError) as e:
                why = f"its control socket does not answer ({e})"
        time.sleep(0.2)
    print(
        f"dim-desktop: {running}, but it could not be asked to open its window: {why}",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
