"""``dim-gateway`` / ``python -m dim_actors.devgateway``: run the dev gateway until
SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import get_args

import msgspec

from dim_actors.wire.protocol import MAX_FRAME_BYTES

from .profile import PROFILES, GatewayProfile, GetEventsMode
from .seed import parse_spec
from .server import DevGateway


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="dim-gateway",
        description="A development Diminuendo v1 gateway with scripted agents (echo, "
        "coding-agent), persistent sessions and a versioned workspace. Not a "
        "production gateway.",
    )
    ap.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    ap.add_argument(
        "--port",
        type=int,
        default=8080,
        help="port to listen on; 0 picks a free one (default 8080)",
    )
    ap.add_argument(
        "--listen-fd",
        type=int,
        default=None,
        metavar="FD",
        help="serve on this inherited listening socket instead of --host/--port (dim-desktop keeps "
        "its embedded gateway's port this way, so no other program can take it during a restart)",
    )
    ap.add_argument(
        "--token",
        default=None,
        help="require clients to authenticate with this token (default: dev mode, no auth)",
    )
    ap.add_argument(
        "--require-token-env",
        default=None,
        metavar="NAME",
        help="require clients to authenticate with the token held by environment variable NAME "
        "(kept off the command line, which other local users can read; dim-desktop's "
        "embedded gateway gets a new one each launch this way)",
    )
    ap.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="also accept WebSocket connections from browser pages of this origin (e.g. "
        "http://localhost:3000); repeatable. By default a request with an Origin header is "
        "accepted only from this gateway's own loopback http origin",
    )
    ap.add_argument(
        "--data",
        default=None,
        metavar="DIR",
        help="directory for the SQLite store (default: a temporary directory, removed on exit)",
    )
    ap.add_argument(
        "--heartbeat-ms",
        type=int,
        default=30000,
        help="heartbeat interval (default 30000)",
    )
    ap.add_argument(
        "--rate-limit",
        type=int,
        default=60,
        help="messages allowed per connection per 10 s window (default 60)",
    )
    ap.add_argument(
        "--max-frame-bytes", type=int, default=MAX_FRAME_BYTES, help=argparse.SUPPRESS
    )
    ap.add_argument(
        "--stats-file",
        default=None,
        metavar="FILE",
        help="append connection statistics here, one JSON object a line (benchmarks)",
    )
    ap.add_argument(
        "--ping-probe-ms",
        type=int,
        default=0,
        metavar="MS",
        help="with --stats-file: ping every connection this often and log the round trip",
    )
    ap.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop when standard input reaches end of file: dim-desktop's embedded gateway "
        "holds a pipe from the app, so it ends with the app even after a kill -9",
    )
    ap.add_argument(
        "--seed-history",
        default=None,
        metavar="TURNS[:EVENTS]",
        help="before serving, add one finished session of TURNS turns and EVENTS events in all "
        "(default 100 a turn), e.g. 10000:1000000 (big histories; written in seconds)",
    )
    ap.add_argument(
        "--log-level", default="WARNING", help="Python log level (default WARNING)"
    )
    _add_profile_args(ap)
    args = ap.parse_args(argv)
    try:
        args.seed = parse_spec(args.seed_history) if args.seed_history else None
    except ValueError as e:
        ap.error(str(e))
    return args


def _add_profile_args(ap: argparse.ArgumentParser) -> None:
    group = ap.add_argument_group(
        "profile",
        "How closely to stick to the public Diminuendo docs. 'dev' (the default) also "
        "does the things dim-desktop needs that the docs do not describe. 'reference' "
        "does only what the docs describe and does the rest differently, to test that "
        "a client works with any v1 gateway. The flags after --profile change one "
        "thing of the chosen profile.",
    )
    group.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="dev",
        help="the profile (default dev)",
    )
    group.add_argument(
        "--protocol-version",
        type=int,
        default=None,
        metavar="N",
        help="the protocolVersion to announce in welcome (default 1)",
    )
    group.add_argument(
        "--push-authenticated",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="without --token, send authenticated right after connected without being asked "
        "(dev: yes, reference: no)",
    )
    group.add_argument(
        "--get-events",
        choices=get_args(GetEventsMode),
        default=None,
        help="what get_events gets: answer (the stored events), error (refused as an invalid "
        "message) or silent (no answer at all) (dev: answer, reference: error)",
    )


def profile_from_args(args: argparse.Namespace) -> GatewayProfile:
    """The profile named by --profile, with the flags given on top of it (a flag not
    given keeps the profile's value)."""
    overrides = {
        "protocol_version": args.protocol_version,
        "push_authenticated": args.push_authenticated,
        "get_events": args.get_events,
    }
    return msgspec.structs.replace(
        PROFILES[args.profile], **{k: v for k, v in overrides.items() if v is not None}
    )


def _wait_for_eof(fd: int, then: Callable[[], object]) -> None:
    """Read `fd` until EOF, then call `then`. Raw reads, not sys.stdin's buffered
    reader: a daemon thread inside that reader at interpreter exit aborts the process
    (_enter_buffered_busy)."""
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass
    then()


def token_from_args(args: argparse.Namespace, environ: dict[str, str]) -> str | None:
    """--token, or the variable --require-token-env names (taken out of `environ`, so
    that nothing this gateway starts inherits it). A variable named but empty or missing
    is an error: a gateway asked to require a token never falls back to none."""
    if args.require_token_env is None:
        return args.token
    token = environ.pop(args.require_token_env, "")
    if not token:
        raise SystemExit(
            f"dim-gateway: --require-token-env: ${args.require_token_env} is not set or empty"
        )
    if args.token is not None and args.token != token:
        raise SystemExit(
            "dim-gateway: --token and --require-token-env name different tokens: give one"
        )
    return token


async def _serve(args: argparse.Namespace, token: str | None) -> None:
    gateway = DevGateway(
        host=args.host,
        port=args.port,
        token=token,
        data_dir=args.data,
        heartbeat_ms=args.heartbeat_ms,
        rate_limit=args.rate_limit,
        max_frame_bytes=args.max_frame_bytes,
        stats_file=args.stats_file,
        ping_probe_ms=args.ping_probe_ms,
        profile=profile_from_args(args),
        allowed_origins=args.allow_origin,
        lockout_spares_token=args.require_token_env is not None,
        sock=socket.socket(fileno=args.listen_fd)
        if args.listen_fd is not None
        else None,
        seed=args.seed,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.exit_with_parent:
        # The write end is the parent's alone: EOF means it is gone, however it went (a
        # stopped parent keeps it open, so a SIGSTOPped app keeps its gateway).
        threading.Thread(
            target=_wait_for_eof,
            args=(sys.stdin.fileno(), lambda: loop.call_soon_threadsafe(stop.set)),
            name="parent-watch",
            daemon=True,
        ).start()
    await gateway.start()
    try:
        if gateway.seeded_session is not None:
            turns, events = args.seed
            print(
                f"dim-gateway: added session {gateway.seeded_session} "
                f"({turns:,} turns, {events:,} events)",
                file=sys.stderr,
                flush=True,
            )
        # The app waits for exactly this line to learn the port.
        print(f"dim-gateway listening on {gateway.url}", flush=True)
        await stop.wait()
    finally:
        await gateway.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    token = token_from_args(args, os.environ)  # type: ignore[arg-type]
    try:
        asyncio.run(_serve(args, token))
    except OSError as e:
        print(f"dim-gateway: {e}", file=sys.stderr)
        return 1
    return 0
