"""`dimctl`: inspect and steer a running dim-desktop through its control socket."""

from __future__ import annotations

import argparse
import re
import socket
import sys
import time
from pathlib import Path

import msgspec

from dim_actors.app.control import request
from dim_actors.config.home import DimHome
from dim_actors.messages import ACTOR_NAMES, ControlReply, ControlRequest

EXIT_USAGE = 2
DEFAULT_TIMEOUT_S = 30.0
# A restart waits for the actor to stop (up to its shutdown timeout) and to start again.
COMMAND_TIMEOUT_S = {"restart": 90.0, "crash": 90.0}


class CtlError(Exception):
    pass


def parse_duration(text: str) -> float:
    """'90s', '5m', '2h', '1d' or plain seconds → seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (use e.g. 30s, 5m, 2h)"
        )
    return (
        float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dimctl",
        description="Control a running dim-desktop (found through $DIM_HOME).",
    )
    p.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="how long to wait for dim-desktop's answer (default "
        f"{DEFAULT_TIMEOUT_S:g}, restart and crash {COMMAND_TIMEOUT_S['restart']:g}; "
        "logs --follow waits as long as it runs)",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser(
        "status", help="actors with pid, state, restarts, uptime, mailbox, last error"
    )
    st.add_argument("--json", action="store_true", help="machine-readable output")
    rs = sub.add_parser("restart", help="restart one actor")
    rs.add_argument("actor", help=f"one of: {', '.join(ACTOR_NAMES)}")
    cr = sub.add_parser(
        "crash", help="inject a fault into an actor (to exercise supervision)"
    )
    cr.add_argument("actor")
    cr.add_argument(
        "--hang",
        type=float,
        metavar="SECONDS",
        help="make it hang this long instead of raising",
    )
    sub.add_parser("stop", help="stop dim-desktop and everything it started")
    sh = sub.add_parser(
        "show",
        help="open the UI of the running dim-desktop (its window, or the browser)",
    )
    sh.add_argument("--session", metavar="ID", help="select this session")
    sh.add_argument(
        "--new-window",
        action="store_true",
        help="open the session (--session) in a window of its own; again: brings "
        "that window to the front",
    )
    lg = sub.add_parser("logs", help="messages an actor received, oldest first")
    lg.add_argument("actor")
    lg.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="keep printing messages as they arrive",
    )
    lg.add_argument(
        "--type",
        "-t",
        action="append",
        default=[],
        help="only this message or event type (repeatable)",
    )
    lg.add_argument(
        "--since", type=parse_duration, help="only the last DURATION (e.g. 30s, 5m)"
    )
    lg.add_argument("--limit", "-n", type=int, help="only the last N messages")
    lg.add_argument("--json", action="store_true", help="one JSON envelope a line")
    return p


def connect(
    home: DimHome, req: ControlRequest, timeout: float | None = DEFAULT_TIMEOUT_S
) -> socket.socket:
    try:
        info = home.read_runtime()
    except PermissionError as e:
        raise CtlError(
            f"cannot read {e.filename}: permission denied (dim-desktop runs as another user?)"
        ) from None
    if info is None:
        raise CtlError(f"no running dim-desktop for DIM_HOME={home.root}")
    try:
        return request(Path(info.controlSocket), req, timeout)
    except (FileNotFoundError, ConnectionRefusedError):
        raise CtlError(
            f"stale control socket {info.controlSocket}: dim-desktop (pid {info.pid}) "
            "is not running"
        ) from None
    except PermissionError:
        raise CtlError(
            f"permission denied on the control socket {info.controlSocket}: it is only "
            f"for the user dim-desktop (pid {info.pid}) runs as"
        ) from None
    except TimeoutError:
        raise  # said in main, with the time waited
    except OSError as e:
        raise CtlError(
            f"cannot connect to the control socket {info.controlSocket}: {e.strerror or e}"
        ) from None


def _undecodable(what: bytes) -> CtlError:
    return CtlError(f"undecodable reply from dim-desktop: {what[:80]!r}")


def read_reply(f) -> ControlReply:
    line = f.readline()
    if not line:
        raise CtlError("dim-desktop closed the control connection without an answer")
    try:
        reply = msgspec.json.decode(line, type=ControlReply)
    # also a well-formed JSON value of the wrong shape (ValidationError)
    except msgspec.DecodeError:
        raise _undecodable(line) from None
    if not reply.ok:
        raise CtlError(reply.error or "failed")
    return reply


def fmt_uptime(seconds: float) -> str:
    s = int(seconds or 0)
    return (
        f"{s // 3600}h{s % 3600 // 60:02d}m"
        if s >= 3600
        else f"{s // 60}m{s % 60:02d}s"
    )


def print_status(rows: list[dict]) -> None:
    cols = [
        "NAME",
        "PID",
        "STATE",
        "RESTARTS",
        "UPTIME",
        "MAILBOX",
        "HANDLED",
        "LAST ERROR",
    ]
    table = []
    for r in rows:
        state = r["state"]
        if r.get("connection"):
            conn = r["connection"]
            if r.get("retryInMs") is not None:
                conn += f" in {r['retryInMs'] / 1000:.0f} s"
            state += f" ({conn}, {r.get('reconnects', 0)} reconnects)"
        err = r.get("lastError") or "-"
        if r.get("lastErrorAt"):
            err += time.strftime(" at %H:%M:%S", time.localtime(r["lastErrorAt"]))
        table.append(
            [
                r["name"],
                str(r.get("pid") or "-"),
                state,
                str(r["restarts"]),
                fmt_uptime(r["uptime"]),
                str(r["mailbox"]),
                str(r["handled"]),
                err,
            ]
        )
    widths = [max(len(c), *(len(row[i]) for row in table)) for i, c in enumerate(cols)]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip()
        for row in [cols, *table]
    ]
    lines.extend(gateway_lines(rows))
    lines.extend(log_lines(rows))
    print("\n".join(lines))


def log_lines(rows: list[dict]) -> list[str]:
    """Actors whose message log lost lines or could not hold a message (`dimctl logs` is
    incomplete)."""
    out = []
    for r in rows:
        parts = []
        if r.get("logDropped"):
            parts.append(
                f"{r['logDropped']} messages not logged (the log file could not be written)"
            )
        if r.get("logUnloggable"):
            parts.append(f"{r['logUnloggable']} messages logged only as unreadable")
        if r.get("logError"):
            parts.append(f"failing now: {r['logError']}")
        if parts:
            out.append(f"message log of {r['name']}: " + "; ".join(parts))
    return out


def gateway_lines(rows: list[dict]) -> list[str]:
    """The gateway connection under the table: its state and URL, then what it warned
    about."""
    conn = next((r for r in rows if r.get("connection")), None)
    if conn is None:  # the connection actor is not running: the table says so
        return []
    detail = f" ({conn['detail']})" if conn.get("detail") else ""
    return [
        f"gateway: {conn['connection']} {conn.get('url') or '(no URL)'}{detail}",
        *embedded_gateway_lines(conn.get("embeddedGateway")),
        *(f"warning: {w}" for w in conn.get("warnings") or []),
    ]


def embedded_gateway_lines(gw: dict | None) -> list[str]:
    """The embedded dev gateway, when it is not simply running as started."""
    if not gw or (gw.get("state") == "running" and not gw.get("restarts")):
        return []
    exit_code = (
        f", last exit code {gw['lastExitCode']}"
        if gw.get("lastExitCode") is not None
        else ""
    )
    error = f": {gw['lastError']}" if gw.get("lastError") else ""
    return [
        f"embedded gateway: {gw.get('state')}, restarted {gw.get('restarts', 0)} "
        f"times{exit_code}{error}"
    ]


def format_line(raw: bytes) -> str:
    d = msgspec.json.decode(raw)
    body = d.get("body", {})
    detail = body.get("type") if d.get("type") == "gateway_event" else None
    ts = (
        time.strftime("%H:%M:%S", time.localtime(d["ts"]))
        + f".{int(d['ts'] * 1000) % 1000:03d}"
    )
    summary = msgspec.json.encode(
        {k: v for k, v in body.items() if k not in ("kind", "raw")}
    ).decode()
    if len(summary) > 160:
        summary = summary[:157] + "..."
    kind = d["type"] + (f" {detail}" if detail else "")
    return f"{ts} #{d['id']} {d['sender']} -> {d['recipient']} {kind} {summary}"


def run(args: argparse.Namespace) -> int:
    timeout = (
        args.timeout
        if args.timeout is not None
        else COMMAND_TIMEOUT_S.get(args.cmd, DEFAULT_TIMEOUT_S)
    )
    try:
        return _run(args, DimHome.from_env(), timeout)
    except TimeoutError:  # socket.timeout: connecting, or waiting for the answer
        raise CtlError(f"dim-desktop did not answer within {timeout:g}s") from None
    except ConnectionResetError:
        raise CtlError("dim-desktop closed the control connection") from None


def _run(args: argparse.Namespace, home: DimHome, timeout: float) -> int:
    if args.cmd == "status":
        with (
            connect(home, ControlRequest(cmd="status"), timeout) as s,
            s.makefile("rb") as f,
        ):
            rows = read_reply(f).result
        if args.json:
            print(msgspec.json.encode(rows).decode())
        else:
            try:
                print_status(rows)  # builds the whole table before printing a line
            except (KeyError, TypeError, AttributeError):
                raise CtlError(
                    f"unexpected status reply from dim-desktop: {str(rows)[:80]}"
                ) from None
    elif args.cmd in ("restart", "crash"):
        req = ControlRequest(
            cmd=args.cmd, actor=args.actor, hangSeconds=getattr(args, "hang", None)
        )
        with connect(home, req, timeout) as s, s.makefile("rb") as f:
            read_reply(f)
        print(
            f"{args.actor}: {'restarted' if args.cmd == 'restart' else 'fault injected'}"
        )
    elif args.cmd == "stop":
        with (
            connect(home, ControlRequest(cmd="stop"), timeout) as s,
            s.makefile("rb") as f,
        ):
            read_reply(f)
        deadline = time.monotonic() + 60
        while home.read_runtime() is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        print(
            "dim-desktop stopped"
            if home.read_runtime() is None
            else "dim-desktop is still stopping"
        )
    elif args.cmd == "show":
        with (
            connect(
                home,
                ControlRequest(
                    cmd="show", sessionId=args.session, newWindow=args.new_window
                ),
                timeout,
            ) as s,
            s.makefile("rb") as f,
        ):
            result = read_reply(f).result
        shown = result.get("shown") if isinstance(result, dict) else result
        what = "session window" if args.new_window else "UI"
        print(f"dim-desktop: {what} opened ({shown})")
    elif args.cmd == "logs":
        since = time.time() - args.since if args.since is not None else None
        req = ControlRequest(
            cmd="logs",
            actor=args.actor,
            types=args.type,
            since=since,
            limit=args.limit,
            follow=args.follow,
        )
        with (
            connect(home, req, None if args.follow else timeout) as s,
            s.makefile("rb") as f,
        ):
            read_reply(f)
            for line in f:
                raw = line.rstrip(b"\n")
                # this follower fell behind; control.py dropped the oldest
                if raw.startswith(b'{"skipped":'):
                    n = msgspec.json.decode(raw).get("skipped")
                    print(
                        f"dimctl: {n} messages skipped: this follower fell behind",
                        file=sys.stderr,
                        flush=True,
                    )
                    continue
                try:
                    if args.json:
                        # only to refuse a line that is not JSON
                        msgspec.json.decode(raw)
                        text = raw.decode()
                    else:
                        text = format_line(raw)
                except (
                    msgspec.DecodeError,
                    UnicodeDecodeError,
                    KeyError,
                    TypeError,
                    AttributeError,
                ):
                    raise _undecodable(raw) from None
                print(text, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cmd == "show" and args.new_window and not args.session:
        parser.error(
            "show --new-window opens one session: add --session ID "
            "(the session's id, as in the page's address or `dimctl logs router`)"
        )
    try:
        return run(args)
    except CtlError as e:
        print(f"dimctl: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
