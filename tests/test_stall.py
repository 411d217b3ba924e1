"""The connection keeps reading while the supervisor process is stopped, and loses nothing."""

from __future__ import annotations

import os
import signal
import time

from apphelpers import App, wait_until, write_settings
from test_supervision import assert_exact, delta_count, start_stream


def test_stopping_the_supervisor_process_spills_and_then_delivers_everything_in_order(dim_home):
    # A small memory bound so a short stall is enough to make the connection process spill.
    write_settings(dim_home, "uplink_memory_limit = 1048576\n")
    app = App(dim_home)
    try:
        app.wait_connected()
        conn_pid = app.status()["connection"]["pid"]
        sid, turn_id = start_stream(app, 20000, 5000)
        wait_until(lambda: delta_count(app, sid, turn_id) > 1000, 30, what="the stream to be under way")
        os.kill(app.proc.pid, signal.SIGSTOP)
        try:
            # The stream runs on while the supervisor is frozen: the connection process buffers it
            # (about 20,000 events, 2 MB: past the 1 MiB bound, so it spills to disk).
            deadline = time.monotonic() + 4.0
            while time.monotonic() < deadline:
                os.kill(conn_pid, 0)  # still alive, still reading
                time.sleep(0.2)
        finally:
            os.kill(app.proc.pid, signal.SIGCONT)
        assert_exact(app, sid, turn_id, 20000)
        row = app.status()["connection"]
        assert row["reconnects"] == 0 and row["restarts"] == 0 and row["pid"] == conn_pid
        assert "spilling to" in app.output()
    finally:
        app.stop()
