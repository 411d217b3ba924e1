"""The single-process client the benchmarks compare against: the same gateway connection code
(dim_actors.connection.process.GatewayConnection: handshake, keepalive, staleness, reconnect and
catch-up by seq) and the same stores (dim_actors.router.stores.Stores), but the events are applied
on the socket's receiving thread, in one OS process, as a browser tab holding its own WebSocket
would. Stopping this process freezes its socket too.

Run as a script (the benchmarks start it as a subprocess, so it has its own GIL and can be
stopped with SIGSTOP):

    python -m bench.single --url ws://... --script "/stream 200000" --n 200000 --out result.json

SIGUSR1 makes the next event's handling block for --hang-s seconds (a stalled UI, in one thread
with the socket). It prints "streaming" once the turn is started, then waits for the turn to end.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from typing import Any

import msgspec

from dim_actors.connection.process import GatewayConnection
from dim_actors.messages import (
    CommandFailed,
    Connect,
    ConnectionState,
    GatewayEvent,
    PipeEvent,
    SendFrame,
)
from dim_actors.router.stores import BadEvent, Stores
from dim_actors.wire import protocol


class DirectUplink:
    """In place of the connection process's Uplink: every event is applied right here."""

    def __init__(self) -> None:
        self.stores = Stores()
        self.cond = threading.Condition()
        self.replies: dict[int, tuple[bool, Any]] = {}
        self.states: list[tuple[float, str, str]] = []
        self.hang_s = 0.0
        self.hang_next = False
        self.hangs: list[float] = []

    def put_event(self, ev: Any) -> None:
        if self.hang_next:
            self.hang_next = False
            t0 = time.monotonic()
            time.sleep(self.hang_s)
            self.hangs.append(time.monotonic() - t0)
        if isinstance(ev, PipeEvent):
            gev = GatewayEvent(
                raw=msgspec.Raw(ev.raw),
                type=ev.type,
                sessionId=ev.sessionId,
                seq=ev.seq,
                replyTo=ev.replyTo,
                recvNs=ev.recvNs,
            )
            try:
                self.stores.apply(gev)
            except BadEvent:
                pass
            if ev.replyTo is not None:
                with self.cond:
                    self.replies[ev.replyTo] = (
                        ev.type != "error",
                        msgspec.json.decode(ev.raw),
                    )
                    self.cond.notify_all()
            return
        if isinstance(ev, ConnectionState):
            self.stores.set_connection(ev)
            with self.cond:
                self.states.append((time.time(), ev.state, ev.detail))
                self.cond.notify_all()
        elif isinstance(ev, CommandFailed):
            with self.cond:
                self.replies[ev.reqId] = (
                    False,
                    {"code": ev.code, "message": ev.message},
                )
                self.cond.notify_all()

    put_control = put_event


class SingleProcessClient:
    def __init__(
        self, url: str, ping_interval_s: float = 30.0, stale_after_s: float = 35.0
    ):
        self.uplink = DirectUplink()
        self.conn = GatewayConnection(self.uplink, ping_interval_s, stale_after_s, 30.0)  # type: ignore[arg-type]
        self.req_ids = 0
        targets = [self.conn.run_socket, self.conn.run_keepalive]
        # the paced sender thread of the connection process's main()
        if hasattr(self.conn, "sender"):
            targets.append(self.conn.sender.run)
        for target in targets:
            threading.Thread(target=target, daemon=True, name=target.__name__).start()
        self.conn.on_command(Connect(url=url, token=None))
        self.wait(lambda: self.uplink.stores.connection.get("state") == "connected", 30)

    def wait(self, predicate, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        with self.uplink.cond:
            while True:
                v = predicate()
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("single-process client: timed out")
                self.uplink.cond.wait(min(left, 0.2))

    def request(self, type_: str, args: dict, timeout: float = 60) -> dict:
        self.req_ids += 1
        rid = self.req_ids
        frame = protocol.build_client_message(type_, args)
        self.conn.on_command(
            SendFrame(
                reqId=rid,
                type=type_,
                frame=frame,
                expect=sorted(protocol.RESPONSES.get(type_, ())),
            )
        )
        ok, body = self.wait(lambda: self.uplink.replies.pop(rid, None), timeout)
        if not ok:
            raise RuntimeError(f"{type_}: {body}")
        return body

    def turn(self, sid: str, turn_id: str):
        chat = self.uplink.stores.chats.get(sid)
        return chat.by_id.get(turn_id) if chat else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--script", required=True)
    ap.add_argument("--n", type=int, required=True, help="deltas the script streams")
    ap.add_argument("--out", required=True)
    ap.add_argument("--ping-interval-s", type=float, default=30.0)
    ap.add_argument("--stale-after-s", type=float, default=35.0)
    ap.add_argument("--hang-s", type=float, default=10.0)
    ap.add_argument("--timeout-s", type=float, default=600.0)
    args = ap.parse_args(argv)

    client = SingleProcessClient(args.url, args.ping_interval_s, args.stale_after_s)
    client.uplink.hang_s = args.hang_s
    signal.signal(signal.SIGUSR1, lambda *_: setattr(client.uplink, "hang_next", True))
    sid = client.request("create_session", {"agentType": "coding-agent"})["session"][
        "id"
    ]
    client.request("join_session", {"sessionId": sid})
    turn_id = client.request("run_turn", {"sessionId": sid, "text": args.script})[
        "turnId"
    ]
    print("streaming", flush=True)
    t = client.wait(
        lambda: (lambda t: t if t is not None and t.status != "running" else None)(
            client.turn(sid, turn_id)
        ),
        args.timeout_s,
    )
    text = t.text
    got = [int(x) for x in text.split()]
    result = {
        "turnStatus": t.status,
        "deltaCount": t.deltaCount,
        "check": {
            "received": len(got),
            "lost": args.n - len(set(got) & set(range(args.n))),
            "duplicated": len(got) - len(set(got)),
            "outOfOrder": sum(1 for a, b in zip(got, got[1:]) if b < a),
        },
        "deltas": client.uplink.stores.deltas.describe(),
        "latencyMs": client.uplink.stores.latency.summary()
        if client.uplink.stores.latency.count
        else None,
        "duplicatesDropped": client.uplink.stores.duplicates,
        "reconnects": client.conn.reconnects,
        "states": client.uplink.states,
        "hangs": client.uplink.hangs,
    }
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    result["peakRssMb"] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    with open(args.out, "w") as f:
        json.dump(result, f)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
