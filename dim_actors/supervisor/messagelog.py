"""Per-actor message logs: what each actor received, in memory and on disk.

Appending is on every actor's hot path, so senders only push the envelope onto a ring and a queue;
one writer thread encodes and writes in batches. Files rotate at a size limit and survive restarts
of the actor and of the app, so `dimctl logs` can show what happened before a crash.
"""

from __future__ import annotations

import collections
import os
import queue
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import msgspec

from dim_actors.messages import Envelope, kind_of


class LogLine(msgspec.Struct):
    id: int
    ts: float
    sender: str
    recipient: str
    type: str
    body: msgspec.Raw


_encoder = msgspec.json.Encoder()
# Envelopes waiting for the writer beyond which a sender waits for it (down to half): under a long
# burst the writer, sharing the GIL, can fall behind, and its queue must not grow without bound
# (a million-event burst took the supervisor past 1 GB). Writes go in batches of at most
# WRITE_BATCH lines, so the writer never holds the GIL for long.
MAX_BACKLOG = 20_000
WRITE_BATCH = 2_048
_line_decoder = msgspec.json.Decoder(LogLine)


class _OutLine(msgspec.Struct):
    """What is written: a LogLine whose body is the message itself, so one pass encodes it."""

    id: int
    ts: float
    sender: str
    recipient: str
    type: str
    body: Any


def to_line(env: Envelope) -> bytes:
    return _encoder.encode(_OutLine(env.id, env.ts, env.sender, env.recipient, kind_of(env.body), env.body)) + b"\n"


def encode_lines(envs: list[Envelope]) -> bytes:
    """Many log lines in one encoder call (the writer's batches); the same bytes as to_line's."""
    return _encoder.encode_lines([_OutLine(e.id, e.ts, e.sender, e.recipient, kind_of(e.body), e.body) for e in envs])


class MessageLogs:
    """All actors' logs. `append` is thread-safe and cheap; `read` and `follow` serve dimctl."""

    def __init__(self, directory: Path, ring_size: int = 10_000, max_bytes: int = 8 << 20, keep: int = 3):
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ring_size = ring_size
        self.max_bytes = max_bytes
        self.keep = keep
        self._rings: dict[str, collections.deque[Envelope]] = {}
        self._queue: queue.SimpleQueue[Envelope | None] = queue.SimpleQueue()
        self._followers: list[Callable[[Envelope], None]] = []
        self._followers_lock = threading.Lock()
        self._flushed = threading.Condition()
        self._written = 0
        self._queued = 0
        self._writer = threading.Thread(target=self._write_loop, name="message-log-writer", daemon=True)
        self._writer.start()

    def ring(self, actor: str) -> collections.deque[Envelope]:
        r = self._rings.get(actor)
        if r is None:
            r = self._rings.setdefault(actor, collections.deque(maxlen=self.ring_size))
        return r

    def append(self, env: Envelope) -> None:
        self.ring(env.recipient).append(env)
        self._queued += 1
        self._queue.put(env)
        if self._queued - self._written > MAX_BACKLOG:
            self._wait_for_writer()
        if self._followers:
            with self._followers_lock:
                followers = list(self._followers)
            for f in followers:
                f(env)

    def _wait_for_writer(self) -> None:
        with self._flushed:
            self._flushed.wait_for(lambda: self._queued - self._written <= MAX_BACKLOG // 2
                                   or not self._writer.is_alive(), timeout=10.0)

    def path(self, actor: str) -> Path:
        return self.directory / f"{actor}.log"

    def _write_loop(self) -> None:
        files: dict[str, object] = {}
        sizes: dict[str, int] = {}  # tracked here: a tell() per batch is a system call and a GIL hand-off

        def open_log(actor: str):
            f = files[actor] = open(self.path(actor), "ab")
            sizes[actor] = os.fstat(f.fileno()).st_size
            return f

        while True:
            env = self._queue.get()
            batch = [env]
            while len(batch) < WRITE_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = False
            by_actor: dict[str, list[Envelope]] = {}
            for e in batch:
                if e is None:
                    stop = True
                    continue
                by_actor.setdefault(e.recipient, []).append(e)
            for actor, envs in by_actor.items():
                data = encode_lines(envs)
                f = files.get(actor) or open_log(actor)
                if sizes[actor] + len(data) < self.max_bytes:
                    f.write(data)  # type: ignore[attr-defined]  # the usual case: one write a batch
                    sizes[actor] += len(data)
                else:
                    for line in data.splitlines(keepends=True):  # JSON lines hold no raw newline
                        f = files.get(actor) or open_log(actor)
                        f.write(line)  # type: ignore[attr-defined]
                        sizes[actor] += len(line)
                        if sizes[actor] >= self.max_bytes:
                            f.close()  # type: ignore[attr-defined]
                            del files[actor]
                            self._rotate(actor)
                if actor in files:
                    files[actor].flush()  # type: ignore[attr-defined]
            with self._flushed:
                self._written += len(batch)
                self._flushed.notify_all()
            if stop:
                for f in files.values():
                    f.close()  # type: ignore[attr-defined]
                return

    def _rotate(self, actor: str) -> None:
        base = self.path(actor)
        for i in range(self.keep - 1, 0, -1):
            src = base.with_name(f"{base.name}.{i}")
            if src.exists():
                src.replace(base.with_name(f"{base.name}.{i + 1}"))
        base.replace(base.with_name(f"{base.name}.1"))

    def flush(self, timeout: float = 5.0) -> None:
        target = self._queued
        with self._flushed:
            self._flushed.wait_for(lambda: self._written >= target, timeout=timeout)

    def close(self) -> None:
        self._queued += 1
        self._queue.put(None)
        self._writer.join(timeout=5)

    def files(self, actor: str) -> list[Path]:
        base = self.path(actor)
        rotated = [base.with_name(f"{base.name}.{i}") for i in range(self.keep, 0, -1)]
        return [p for p in [*rotated, base] if p.exists()]

    def read(self, actor: str, types: set[str] | None = None, since: float | None = None,
             limit: int | None = None) -> list[bytes]:
        """Logged lines for `actor`, oldest first, from disk (so they outlive restarts)."""
        self.flush()
        return read_lines(self.files(actor), types, since, limit)

    def recent(self, actor: str, types: set[str] | None = None, since: float | None = None,
               limit: int = 200) -> list[bytes]:
        """The newest logged lines for `actor` from the in-memory ring, oldest first.

        For the page's live log, read every second from the router's thread: no file I/O there."""
        ring = list(self.ring(actor))  # one C-level copy under the GIL: safe against appenders
        picked: list[Envelope] = []
        for env in reversed(ring):
            if envelope_matches(env, types, since):
                picked.append(env)
                if len(picked) >= limit:
                    break
        return [to_line(env).rstrip(b"\n") for env in reversed(picked)]

    def follow(self, callback: Callable[[Envelope], None]) -> Callable[[], None]:
        with self._followers_lock:
            self._followers.append(callback)

        def cancel() -> None:
            with self._followers_lock:
                if callback in self._followers:
                    self._followers.remove(callback)

        return cancel

    def follower_count(self) -> int:
        with self._followers_lock:
            return len(self._followers)


def _iter_lines(files: Iterable[Path]) -> Iterator[bytes]:
    for p in files:
        try:
            with open(p, "rb") as f:
                for line in f:
                    if line.endswith(b"\n"):
                        yield line
        except FileNotFoundError:
            continue


def read_lines(files: Iterable[Path], types: set[str] | None, since: float | None, limit: int | None) -> list[bytes]:
    out: collections.deque[bytes] = collections.deque(maxlen=limit) if limit else collections.deque()
    for raw in _iter_lines(files):
        try:
            line = _line_decoder.decode(raw)
        except msgspec.DecodeError:
            continue  # a line cut by a crash mid-write; the rest of the file is still good
        if types and not _type_matches(line, raw, types):
            continue
        if since is not None and line.ts < since:
            continue
        out.append(raw.rstrip(b"\n"))
    return list(out)


def _type_matches(line: LogLine, raw: bytes, types: set[str]) -> bool:
    if line.type in types:
        return True
    # A gateway event is filterable by its gateway type too (e.g. --type text_delta).
    if line.type == "gateway_event":
        try:
            return msgspec.json.decode(line.body, type=_GatewayType).type in types
        except msgspec.DecodeError:
            return False
    return False


class _GatewayType(msgspec.Struct):
    type: str = ""


def envelope_matches(env: Envelope, types: set[str] | None, since: float | None) -> bool:
    if since is not None and env.ts < since:
        return False
    if not types:
        return True
    k = kind_of(env.body)
    return k in types or (k == "gateway_event" and getattr(env.body, "type", None) in types)

