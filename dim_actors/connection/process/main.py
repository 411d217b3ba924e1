"""The connection process's entry point: its threads, and the commands read from the
pipe."""

from __future__ import annotations

import logging
import signal
import sqlite3
import threading
from multiprocessing.connection import Connection

import msgspec

from dim_actors.connection.outbox import Outbox
from dim_actors.connection.process.connection import GatewayConnection
from dim_actors.connection.process.options import ConnectionOptions
from dim_actors.connection.process.watch import ThreadWatch
from dim_actors.connection.uplink import Uplink, remove_stale_spills, spill_file
from dim_actors.messages import CommandFailed, decode_down

log = logging.getLogger("dim.connection")


def main(pipe: Connection, options: ConnectionOptions) -> None:
    """Entry point of the connection process (multiprocessing spawn target)."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s connection[%(process)d] %(levelname)s %(message)s",
    )
    # The supervisor decides when this process ends: by Shutdown down the pipe, by
    # closing the pipe (the supervisor is gone, kill -9 included), or by SIGKILL. Ctrl-C
    # (SIGINT) reaches the whole process group, and SIGTERM may too (`kill -TERM -PGID`,
    # a session or service manager ending every process of the app): dying of it here,
    # before the supervisor has even seen the app's own signal, would look like a crash
    # and be answered by a restart during the stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    spill_dir = options.spill_dir
    if spill_dir and spill_dir.is_dir():
        remove_stale_spills(spill_dir)
    uplink = Uplink(
        pipe,
        memory_limit=options.uplink_memory_limit,
        spill_path=spill_file(spill_dir) if spill_dir else None,
    )
    outbox, outbox_path = None, options.outbox_path
    if outbox_path:
        try:
            outbox = Outbox(outbox_path)
        except sqlite3.Error as e:
            # A full disk must not keep the connection from starting (and restarting for
            # ever): the outbox is opened again when a command needs it, and refused
            # clearly until then.
            log.error("could not open the outbox %s: %s", outbox_path, e)
    # The uplink thread is not watched: waiting on a supervisor that does not drain is
    # its job.
    watch = ThreadWatch(options.hung_after_s, {"sender": options.hung_after_send_s})
    conn = GatewayConnection(
        uplink,
        options.ping_interval_s,
        options.stale_after_s,
        options.request_timeout_s,
        options.resume,
        outbox,
        options.send_rate_limit,
        options.send_rate_window_s,
        watch,
        outbox_path if outbox is None else None,
    )
    conn.outbox.changed()
    for target in (
        conn.run_socket,
        conn.run_keepalive,
        uplink.run,
        conn.sender.run,
        watch.run,
    ):
        threading.Thread(target=target, daemon=True, name=target.__name__).start()
    while True:
        try:
            data = pipe.recv_bytes()
        except (EOFError, OSError):
            break  # the supervisor is gone: nothing is left to deliver to
        try:
            msg = decode_down(data)
        except msgspec.DecodeError as e:
            log.error("undecodable command from the supervisor: %s", e)
            continue
        try:
            with watch.working("commands"):
                going_on = conn.on_command(msg)
        except Exception as e:
            # One command must not end the process (and with it every other command and
            # the socket).
            log.exception("could not handle a %s command", type(msg).__name__)
            req_id = getattr(msg, "reqId", None)
            if isinstance(req_id, int):
                conn.uplink.put_control(
                    CommandFailed(
                        reqId=req_id,
                        code="INTERNAL",
                        message=f"the connection could not handle it: {e}",
                    )
                )
            going_on = True
        if not going_on:
            break
    uplink.close()
