"""Micro-benchmarks of the per-event steps of the hot path, in this process (one thread
unless said otherwise): what one gateway event costs at each step, in microseconds.

They explain the end-to-end figures; they are not the figures. Run alone:
    .venv/bin/python -m bench.hotpath
"""

from __future__ import annotations

import json
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from dim_actors.messages import (
    PipeEvent,
    UiEvent,
    decode_up,
    encode_batch,
    encode_up,
    envelope,
)
from dim_actors.wire import protocol


def _delta(i: int, sid: str = "s" * 36) -> bytes:
    return (
        b'{"type":"text_delta","sessionId":"%s","turnId":"turn_0123456789abcdef","seq":%d,'
        b'"ts":1795504643529,"text":"%d "}' % (sid.encode(), i + 10, i)
    )


def per_op(fn: Callable[[int], Any], n: int) -> float:
    """Microseconds of this thread's CPU per call of fn(i), best of 3 (CPU time, not
    wall time: on a shared machine the wall clock also counts other processes' turns)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.thread_time()
        for i in range(n):
            fn(i)
        best = min(best, time.thread_time() - t0)
    return round(best / n * 1e6, 3)


def run(quick: bool = False) -> dict[str, Any]:
    n = 20_000 if quick else 100_000
    frames = [_delta(i) for i in range(n)]
    out: dict[str, Any] = {}

    # connection process: decode the envelope, build and encode the pipe item
    out["decode_head"] = per_op(lambda i: protocol.decode_head(frames[i]), n)
    out["pipe_encode"] = per_op(
        lambda i: encode_up(PipeEvent(frames[i], "text_delta", "s", i, None, 0)), n
    )

    # supervisor: decode a 512-event pipe batch, per event
    encoded = [
        encode_up(PipeEvent(f, "text_delta", "s" * 36, i + 10, None, 0))
        for i, f in enumerate(frames)
    ]
    batches = [encode_batch(encoded[i : i + 512]) for i in range(0, n, 512)]
    t0 = time.perf_counter()
    for b in batches:
        decode_up(b)
    out["pipe_decode"] = round((time.perf_counter() - t0) / n * 1e6, 3)

    # router: apply one delta to the stores
    from dim_actors.router.stores import Stores

    events = decode_up(encode_batch(encoded))
    stores = Stores()
    t0 = time.perf_counter()
    for ev in events:
        stores.apply(ev)  # type: ignore[arg-type]
    out["stores_apply"] = round((time.perf_counter() - t0) / n * 1e6, 3)

    # the message log: append (on the sender's thread) and the writer's encoding, per
    # envelope
    from dim_actors.kernel import messagelog

    envs = [envelope("connection", "router", ev) for ev in events]  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as d:
        logs = messagelog.MessageLogs(Path(d), 10_000, 8 << 20, 3)
        t0 = time.perf_counter()
        for e in envs:
            logs.append(e)
        out["log_append"] = round((time.perf_counter() - t0) / n * 1e6, 3)
        logs.flush(60)
        # append + encode + write
        out["log_write_total"] = round((time.perf_counter() - t0) / n * 1e6, 3)
        logs.close()
    # appends at a steady pace (a paced stream): the sender's CPU per message, which
    # includes waking the log's writer when it waits for work
    out["log_append_paced_cpu"] = _paced_append_cpu(messagelog, envs[:2000])
    if hasattr(messagelog, "append_many"):
        with tempfile.TemporaryDirectory() as d:
            logs = messagelog.MessageLogs(Path(d), 10_000, 8 << 20, 3)
            t0 = time.perf_counter()
            for i in range(0, n, 512):
                logs.append_many(envs[i : i + 512])
            out["log_append_batch"] = round((time.perf_counter() - t0) / n * 1e6, 3)
            logs.flush(60)
            logs.close()
    if hasattr(messagelog, "encode_lines"):
        t0 = time.perf_counter()
        for i in range(0, n, 512):
            messagelog.encode_lines(envs[i : i + 512])
        out["log_encode"] = round((time.perf_counter() - t0) / n * 1e6, 3)
    else:
        out["log_encode"] = per_op(lambda i: messagelog.to_line(envs[i]), n)

    # an actor hop: queue.Queue (pykka's default inbox) vs SimpleQueue, put on one
    # thread, get on another
    for name, q in (
        ("queue_hop", queue.Queue()),
        ("simplequeue_hop", queue.SimpleQueue()),
    ):
        done = threading.Event()

        def consume(q=q, done=done):
            for _ in range(n):
                q.get()
            done.set()

        th = threading.Thread(target=consume)
        t0 = time.perf_counter()
        th.start()
        for i in range(n):
            q.put(i)
        done.wait()
        out[name] = round((time.perf_counter() - t0) / n * 1e6, 3)

    # the connection process: the uplink's put (encode, buffer, wake the writer thread
    # that writes pipe frames), per event, with a reader draining the pipe
    out["uplink_put"] = _uplink_put(frames)

    # the connection process's socket thread marks each frame busy (the watchdog)
    from dim_actors.connection.process.watch import ThreadWatch

    watch = ThreadWatch()

    def mark(i: int) -> None:
        with watch.working("socket"):
            pass

    out["watch_working"] = per_op(mark, n)

    # the bridge: the frame for the page
    from dim_actors.uibridge.bridge import ui_frame

    raws = [msgspec.Raw(f) for f in frames]
    out["ui_frame"] = per_op(lambda i: ui_frame("gateway-event", raws[i]), n)
    ui = [UiEvent(event="gateway-event", payload=r) for r in raws]
    out["ui_envelope"] = per_op(lambda i: envelope("router", "uibridge", ui[i]), n)
    return {"usPerEvent": out, "n": n}


def _paced_append_cpu(messagelog: Any, envs: list) -> float:
    """CPU microseconds of the appending thread per message, one message every 0.2 ms."""
    with tempfile.TemporaryDirectory() as d:
        logs = messagelog.MessageLogs(Path(d), 10_000, 8 << 20, 3)
        cpu = 0.0
        for e in envs:
            t0 = time.thread_time()
            logs.append(e)
            cpu += time.thread_time() - t0
            time.sleep(0.0002)
        logs.flush(60)
        logs.close()
    return round(cpu / len(envs) * 1e6, 3)


def _uplink_put(frames: list[bytes]) -> float:
    import multiprocessing

    from dim_actors.connection.uplink import Uplink

    a, b = multiprocessing.Pipe(duplex=False)
    up = Uplink(b)
    writer = threading.Thread(target=up.run, daemon=True)
    writer.start()
    got = [0]

    def drain() -> None:
        while got[0] < len(frames):
            got[0] += len(decode_up(a.recv_bytes()))

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    t0 = time.perf_counter()
    for i, f in enumerate(frames):
        up.put_event(PipeEvent(f, "text_delta", "s" * 36, i + 10, None, 0))
    reader.join(60)
    took = time.perf_counter() - t0
    up.close()
    writer.join(5)
    a.close()
    b.close()
    return round(took / len(frames) * 1e6, 3)


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
