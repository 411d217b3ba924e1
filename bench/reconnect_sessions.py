"""Reconnect with many joined sessions: how long the user's next command waits (not a
timed test).

    bin/bench --only reconnect_sessions

dim-desktop (`--gateway URL --no-browser`, its own DIM_HOME) joins 100 sessions of a dev
gateway running with the real gateway's rate limit (60 messages in 10 s, paced by the
client to the same). The link goes through a small TCP proxy here, which reads the
WebSocket frames both ways (to count and order them) and can cut the connection as a
network failure would. Each round: everything settled, the proxy cuts the link, the app
reconnects, and as soon as the new connection carries its first frame (a rejoin) the
user's command is invoked:

* run_turn in the session rejoined last (the worst place in the queue), then, in a second round,
  list_sessions: invoke -> answer, in seconds;
* rejoined_s / caught_up_s: from the new connection's first frame to the 100th `state_snapshot` /
  `event_list` answer of the rejoins;
  (with command_error when the answer was an error instead);
* messages: client frames on the new connection until then; catchups_given_up: catch-ups that
  ended without their events (get_history sent instead); user_frame_position: how many client
  frames went before the user's command on the new connection.

`run(quick) -> dict` returns the figures under "reconnect_sessions", for bin/bench.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import PY, DimApp, Workdir, log, wait_until  # noqa: E402

SESSIONS = 100


class FrameTap:
    """Reads WebSocket frames from a copy of one direction's bytes (after the HTTP
    upgrade)."""

    def __init__(self, on_frame):
        self.buf = bytearray()
        self.upgraded = False
        self.on_frame = on_frame

    def feed(self, data: bytes) -> None:
        self.buf += data
        if not self.upgraded:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            del self.buf[: end + 4]
            self.upgraded = True
        while True:
            b = self.buf
            if len(b) < 2:
                return
            opcode, masked, n, at = b[0] & 0x0F, b[1] & 0x80, b[1] & 0x7F, 2
            if n == 126:
                if len(b) < 4:
                    return
                n, at = struct.unpack(">H", b[2:4])[0], 4
            elif n == 127:
                if len(b) < 10:
                    return
                n, at = struct.unpack(">Q", b[2:10])[0], 10
            key = b""
            if masked:
                if len(b) < at + 4:
                    return
                key, at = bytes(b[at : at + 4]), at + 4
            if len(b) < at + n:
                return
            payload = bytes(b[at : at + n])
            del self.buf[: at + n]
            if key:
                payload = (
                    bytes(c ^ key[i % 4] for i, c in enumerate(payload))
                    if n < 4096
                    else _unmask(payload, key)
                )
            if opcode == 1:
                self.on_frame(payload)


def _unmask(payload: bytes, key: bytes) -> bytes:
    k = int.from_bytes((key * (len(payload) // 4 + 1))[: len(payload)], "big")
    return (int.from_bytes(payload, "big") ^ k).to_bytes(len(payload), "big")


class Proxy:
    """TCP proxy app -> gateway that records every text frame: (time, conn, direction,
    type, sessionId)."""

    def __init__(self, upstream_port: int):
        self.upstream = upstream_port
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.lock = threading.Lock()
        self.frames: list[tuple[float, int, str, str, str | None]] = []
        self.conns: list[tuple[socket.socket, socket.socket]] = []
        self.count = 0
        self.new_conn_frame = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.upstream))
            for s in (c, u):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.count += 1
                n = self.count
                self.conns.append((c, u))
            threading.Thread(
                target=self._pump, args=(c, u, n, "up"), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(u, c, n, "down"), daemon=True
            ).start()

    def _record(self, n: int, direction: str, payload: bytes) -> None:
        try:
            msg = json.loads(payload)
        except ValueError:
            return
        t = time.monotonic()
        with self.lock:
            self.frames.append((t, n, direction, msg.get("type"), msg.get("sessionId")))
        if direction == "up":
            self.new_conn_frame.set()

    def _pump(
        self, src: socket.socket, dst: socket.socket, n: int, direction: str
    ) -> None:
        tap = FrameTap(lambda p: self._record(n, direction, p))
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                dst.sendall(data)
                tap.feed(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """Every connection ends at once, as when a network drops."""
        with self.lock:
            conns, self.conns = self.conns, []
            self.new_conn_frame.clear()
        for pair in conns:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def of_conn(self, n: int) -> list[tuple[float, int, str, str, str | None]]:
        with self.lock:
            return [f for f in self.frames if f[1] == n]


def start_gateway(workdir: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [
            PY,
            "-m",
            "dim_actors.devgateway",
            "--port",
            "0",
            "--data",
            str(workdir / "gw"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if "listening on" not in line:
        raise RuntimeError(f"the dev gateway did not start: {line!r}")
    return proc, int(line.split()[-1].rsplit(":", 1)[1].split("/")[0])


def settled(proxy: Proxy, n: int, sessions: int) -> dict[str, Any] | None:
    frames = proxy.of_conn(n)
    ups = [f for f in frames if f[2] == "up"]
    if not ups:
        return None
    t0 = ups[0][0]
    snaps = [f for f in frames if f[2] == "down" and f[3] == "state_snapshot"]
    pages = [f for f in frames if f[2] == "down" and f[3] == "event_list"]
    if len(snaps) < sessions or len(pages) < sessions:
        return None
    done = max(snaps[sessions - 1][0], pages[sessions - 1][0])
    return {
        "rejoined_s": round(snaps[sessions - 1][0] - t0, 3),
        "caught_up_s": round(pages[sessions - 1][0] - t0, 3),
        "messages": sum(1 for f in ups if f[0] <= done),
        # A catch-up that ended without its events asks get_history instead (and the
        # page shows a gap).
        "catchups_given_up": sum(1 for f in ups if f[3] == "get_history"),
        "rate_limited": sum(1 for f in frames if f[2] == "down" and f[3] == "error"),
    }


def one_round(
    app: DimApp, proxy: Proxy, sessions: int, command: str, args: dict[str, Any]
) -> dict[str, Any]:
    time.sleep(11)  # the client's rate window is empty, as after a quiet minute
    before = proxy.count
    proxy.cut()
    if not proxy.new_conn_frame.wait(60):
        raise RuntimeError("the app did not reconnect")
    t = time.monotonic()
    error = None
    try:
        app.invoke(command, timeout=120, **args)
    except Exception as e:  # the answer that came instead (a TIMEOUT) is the figure
        error = str(e)[:200]
    waited = time.monotonic() - t
    n = before + 1
    out = wait_until(
        lambda: settled(proxy, n, sessions),
        300,
        "every session rejoined and caught up",
        0.2,
    )
    ups = [f for f in proxy.of_conn(n) if f[2] == "up"]
    out["user_frame_position"] = next(
        (i for i, f in enumerate(ups) if f[3] == command), None
    )
    # Which rejoin went first (the command's own session is rejoined for it when still
    # waiting).
    joins = [f[4] for f in ups if f[3] == "join_session"]
    if "sessionId" in args:
        out["its_rejoin_position"] = (
            joins.index(args["sessionId"]) if args["sessionId"] in joins else None
        )
    out["command_s"] = round(waited, 3)
    if error is not None:
        out["command_error"] = error
    return out


def measure(sessions: int) -> dict[str, Any]:
    with Workdir("reconnect") as wd:
        gw, gw_port = start_gateway(wd)
        proxy = Proxy(gw_port)
        app = None
        try:
            app = DimApp(wd / "home", f"ws://127.0.0.1:{proxy.port}/ws")
            app.wait_connected()
            t = time.monotonic()
            sids = []
            for i in range(sessions):
                sids.append(
                    app.invoke(
                        "create_session", agentType="coding-agent", name=f"s{i}"
                    )["session"]["id"]
                )
                app.invoke("join_session", sessionId=sids[-1])
            log(
                f"  {sessions} sessions created and joined in {time.monotonic() - t:.1f} s"
            )
            last = app.status()["connection"]["joined"]
            assert set(sids) <= set(last), "not every session is joined"
            out: dict[str, Any] = {"sessions": sessions}
            # In the session used longest ago: the last in the rejoin order (most
            # recently used first).
            out["run_turn"] = one_round(
                app,
                proxy,
                sessions,
                "run_turn",
                {"sessionId": sids[0], "text": "hello after the reconnect"},
            )
            log(f"  run_turn: {out['run_turn']}")
            out["list_sessions"] = one_round(app, proxy, sessions, "list_sessions", {})
            log(f"  list_sessions: {out['list_sessions']}")
            return out
        finally:
            if app is not None:
                app.stop()
            gw.terminate()
            gw.wait(20)
            proxy.srv.close()


def run(quick: bool) -> dict[str, Any]:
    return {"reconnect_sessions": measure(SESSIONS)}


if __name__ == "__main__":
    result = run("--quick" in sys.argv)
    print(json.dumps(result, indent=2))
    if os.environ.get("DIM_BENCH_OUT"):
        Path(os.environ["DIM_BENCH_OUT"]).write_text(json.dumps(result))
