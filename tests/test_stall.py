"""The connection keeps reading while the supervisor process is stopped, and loses
nothing."""

from __future__ import annotations

import os
import signal

from apphelpers import App, wait_until, write_settings
from test_supervision import assert_exact, delta_count, start_stream


def test_stopping_the_supervisor_process_spills_and_then_delivers_everything_in_order(
    dim_home,
):
    # A small memory bound so a short stall is enough to make the connection process
    # spill.
    write_settings(dim_home, "uplink_memory_limit = 1048576\n")
    app = App(dim_home)
    try:
        app.wait_connected()
        conn_pid = app.status()["connection"]["pid"]
        sid, turn_id = start_stream(app, 20000, 5000)
        wait_until(
            lambda: delta_count(app, sid, turn_id) > 1000,
            30,
            what="the stream to be under way",
        )
        spill = dim_home / "data" / "spill" / f"uplink-{conn_pid}.spill"

        def spilled_bytes() -> int:
            # the connection process is alive (ProcessLookupError otherwise)
            os.kill(conn_pid, 0)
            try:
                return spill.stat().st_size
            except FileNotFoundError:
                return 0

        before = spilled_bytes()
        os.kill(app.proc.pid, signal.SIGSTOP)
        try:
            # The stream runs on while the supervisor is frozen: the connection process
            # buffers it (about 20,000 events, 2 MB: past the 1 MiB bound, so it spills
            # to disk). The supervisor stays frozen until the spill file has grown,
            # however long a loaded machine takes to get there: the connection process
            # kept reading, with nobody draining it.
            wait_until(
                lambda: spilled_bytes() > before,
                120,
                interval=0.1,
                what="the connection process to spill while the supervisor is stopped",
            )
        finally:
            os.kill(app.proc.pid, signal.SIGCONT)
        assert_exact(app, sid, turn_id, 20000)
        row = app.status()["connection"]
        assert (
            row["reconnects"] == 0 and row["restarts"] == 0 and row["pid"] == conn_pid
        )
        assert "spilling to" in app.output()
    finally:
        app.stop()
