"""Per-actor message logs: what each actor received, in memory and on disk.

Appending is on every actor's hot path, so senders only push the envelope onto a ring
and a queue; one writer thread encodes and writes in batches. Files rotate at a size
limit and survive restarts of the actor and of the app, so `dimctl logs` can show what
happened before a crash.

The writer never dies: a record that cannot be encoded (a lone surrogate in a string) is
replaced by a line saying so, a batch that cannot be written (a full disk) is dropped
and counted while the queue keeps draining, and both are said once in the Python log.
Secrets (a field named token, password, secret or authorization) are replaced by "***"
in every line made here, on disk and in the views served to dimctl and the page. Log
files are the user's alone (0600).
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import queue
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from dim_actors.messages import (
    Connect,
    Envelope,
    Invoke,
    InvokeResult,
    SendFrame,
    SyncCommand,
    kind_of,
)

log = logging.getLogger(__name__)


class LogLine(msgspec.Struct):
    id: int
    ts: float
    sender: str
    recipient: str
    type: str
    body: msgspec.Raw


_encoder = msgspec.json.Encoder()
# Envelopes waiting for the writer beyond which a sender waits for it (down to half):
# under a long burst the writer, sharing the GIL, can fall behind, and its queue must
# not grow without bound (a million-event burst took the supervisor past 1 GB). Writes
# go in batches of about
# WRITE_BATCH lines (whole sender batches), so the writer never holds the GIL for long.
MAX_BACKLOG = 20_000
WRITE_BATCH = 2_048
# How long the writer lets a batch gather once woken. A writer waiting on an empty queue
# is woken by the next `put`: a system call and a GIL hand-off on the sender's thread,
# which is an actor on the hot path. Resting this long after each wake-up makes that one
# wake-up per batch instead of one per message; logs have no deadline (`flush` waits
# for them).
GATHER_S = 0.01
_line_decoder = msgspec.json.Decoder(LogLine)


class _OutLine(msgspec.Struct):
    """What is written: a LogLine whose body is the message itself, so one pass encodes
    it."""

    id: int
    ts: float
    sender: str
    recipient: str
    type: str
    body: Any


# --- secrets --------------------------------------------------------------------------
# Only these bodies can hold a secret: the token given to gateway_connect (Invoke, then
# Connect), and the free-form args and results of commands. Everything else (the hot
# path's gateway events and page frames) is encoded as it is, with no walk.

SECRET_KEYS = frozenset({"token", "password", "secret", "authorization"})
REDACTED = "***"


def redact(value: Any) -> Any:
    """`value` with every dict entry whose key names a secret replaced by "***", at any
    depth; the same object when it holds none (the usual case: nothing is copied)."""
    if isinstance(value, dict):
        out = None
        for k, v in value.items():
            nv = (
                REDACTED
                if isinstance(k, str) and k.lower() in SECRET_KEYS and v is not None
                else redact(v)
            )
            if nv is not v:
                if out is None:
                    out = dict(value)
                out[k] = nv
        return value if out is None else out
    if isinstance(value, (list, tuple)):
        items = [redact(v) for v in value]
        return value if all(a is b for a, b in zip(items, value)) else items
    return value


def redact_body(body: Any) -> Any:
    match body:
        case Connect(token=str()):
            return msgspec.structs.replace(body, token=REDACTED)
        case Invoke() | SyncCommand():
            args = redact(body.args)
            return (
                body if args is body.args else msgspec.structs.replace(body, args=args)
            )
        case InvokeResult():
            result, error = redact(body.result), redact(body.error)
            if result is body.result and error is body.error:
                return body
            return msgspec.structs.replace(body, result=result, error=error)
        case SendFrame() if _SECRET_KEY_IN_JSON.search(body.frame):
            # The frame is the gateway command as sent (`authenticate` carries the
            # token): the log would hold it in base64, one decode away.
            try:
                frame = msgspec.json.encode(redact(msgspec.json.decode(body.frame)))
            except msgspec.MsgspecError:
                frame = b'"*** (a frame that names a secret and could not be read)"'
            return msgspec.structs.replace(body, frame=frame)
    return body


_MAY_HOLD_SECRETS = frozenset({Connect, Invoke, InvokeResult, SendFrame, SyncCommand})
# A JSON key naming a secret, in any case, as `redact` matches keys.
_SECRET_KEY_IN_JSON = re.compile(
    rb'"(?:%s)"\s*:' % b"|".join(k.encode() for k in sorted(SECRET_KEYS)), re.IGNORECASE
)


def _out(e: Envelope) -> _OutLine:
    body = e.body
    return _OutLine(
        e.id,
        e.ts,
        e.sender,
        e.recipient,
        kind_of(body),
        redact_body(body) if type(body) in _MAY_HOLD_SECRETS else body,
    )


def to_line(env: Envelope) -> bytes:
    """One log line; never raises: a message that cannot be encoded gets a line saying
    so."""
    return _line(env)[0]


def _line(env: Envelope) -> tuple[bytes, bool]:
    """One log line, and whether it only says the message could not be encoded."""
    try:
        return _encoder.encode(_out(env)) + b"\n", False
    except Exception as err:
        return unloggable_line(env, err), True


def encode_lines(envs: list[Envelope]) -> bytes:
    """Many log lines in one encoder call (the writer's batches); the same bytes as
    to_line's."""
    # Inlined _out, kinds looked up by type: this is the writer's hot loop, and a call
    # per line doubled its cost.
    secret, kinds = _MAY_HOLD_SECRETS, _KINDS
    lines: list[_OutLine] = []
    add = lines.append
    for e in envs:
        body = e.body
        t = type(body)
        kind = kinds.get(t)
        if kind is None:
            kind = kinds[t] = kind_of(body)
        add(
            _OutLine(
                e.id,
                e.ts,
                e.sender,
                e.recipient,
                kind,
                redact_body(body) if t in secret else body,
            )
        )
    return _encoder.encode_lines(lines)


# message type -> its kind (the "type" of its log line)
_KINDS: dict[type, str] = {}


def unloggable_line(env: Envelope, error: BaseException) -> bytes:
    """What stands in the log for a message that cannot be encoded: who, when, its type,
    and why."""
    reason = f"{type(error).__name__}: {error}".encode(
        "utf-8", "backslashreplace"
    ).decode("ascii", "replace")
    return (
        _encoder.encode(
            _OutLine(
                env.id,
                env.ts,
                env.sender,
                env.recipient,
                kind_of(env.body),
                {"unloggable": reason[:300]},
            )
        )
        + b"\n"
    )


def encode_batch(envs: list[Envelope]) -> tuple[bytes, int]:
    """The lines for `envs` and how many of them could not be encoded (each replaced by
    a line saying so). One encoder call in the usual case; line by line only when that
    call fails."""
    try:
        return encode_lines(envs), 0
    except Exception:
        pass
    lines = [_line(e) for e in envs]
    return b"".join(line for line, _ in lines), sum(bad for _, bad in lines)


class LogHealth(msgspec.Struct):
    """What the writer could not log, since the start, over all actors (per actor:
    `health_of`)."""

    dropped: (
        int  # lines lost because their file could not be written (a full disk, ...)
    )
    # messages logged as {"unloggable": reason} because they could not be encoded
    unloggable: int
    failing: list[str]  # actors whose log file cannot be written right now
    lastError: str = ""


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        # a regular file that takes nothing yet raises nothing: treat as full
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]


class MessageLogs:
    """All actors' logs. `append` is thread-safe and cheap; `read` and `follow` serve
    dimctl."""

    def __init__(
        self,
        directory: Path,
        ring_size: int = 10_000,
        max_bytes: int = 8 << 20,
        keep: int = 3,
    ):
        self.directory = directory
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.ring_size = ring_size
        self.max_bytes = max_bytes
        self.keep = keep
        self._rings: dict[str, collections.deque[Envelope]] = {}
        # an envelope, a batch's envelopes (append_many), or None: stop
        self._queue: queue.SimpleQueue[Envelope | list[Envelope] | None] = (
            queue.SimpleQueue()
        )
        self._followers: list[Callable[[Envelope], None]] = []
        self._followers_lock = threading.Lock()
        self._flushed = threading.Condition()
        self._written = 0
        self._queued = 0
        self._dropped = 0
        self._unloggable = 0
        self._dropped_by: collections.Counter[str] = collections.Counter()
        self._unloggable_by: collections.Counter[str] = collections.Counter()
        self._failing: dict[
            str, int
        ] = {}  # actor -> lines dropped since its file failed
        self._last_error = ""
        self._loop_errors = 0
        self._writer = threading.Thread(
            target=self._write_loop, name="message-log-writer", daemon=True
        )
        self._writer.start()

    def ring(self, actor: str) -> collections.deque[Envelope]:
        r = self._rings.get(actor)
        if r is None:
            r = self._rings.setdefault(actor, collections.deque(maxlen=self.ring_size))
        return r

    def append(self, env: Envelope) -> None:
        ring = self._rings.get(env.recipient)
        if ring is None:
            ring = self.ring(env.recipient)
        ring.append(env)
        self._queued += 1
        self._queue.put(env)
        if self._queued - self._written > MAX_BACKLOG:
            self._wait_for_writer()
        if self._followers:
            with self._followers_lock:
                followers = list(self._followers)
            for f in followers:
                f(env)

    def append_many(self, envs: list[Envelope]) -> None:
        """`envs`, all to one recipient, in order: as `append` each, with one hand-over
        to the writer for all of them (a batch's messages)."""
        if not envs:
            return
        recipient = envs[0].recipient
        ring = self._rings.get(recipient)
        if ring is None:
            ring = self.ring(recipient)
        ring.extend(envs)
        self._queued += len(envs)
        self._queue.put(envs)
        if self._queued - self._written > MAX_BACKLOG:
            self._wait_for_writer()
        if self._followers:
            with self._followers_lock:
                followers = list(self._followers)
            for env in envs:
                for f in followers:
                    f(env)

    def _wait_for_writer(self) -> None:
        with self._flushed:
            self._flushed.wait_for(
                lambda: (
                    self._queued - self._written <= MAX_BACKLOG // 2
                    or not self._writer.is_alive()
                ),
                timeout=10.0,
            )

    def path(self, actor: str) -> Path:
        return self.directory / f"{actor}.log"

    def health(self) -> LogHealth:
        return LogHealth(
            dropped=self._dropped,
            unloggable=self._unloggable,
            failing=sorted(self._failing),
            lastError=self._last_error,
        )

    def health_of(self, actor: str) -> dict[str, Any]:
        """What went wrong with `actor`'s log since the start, for its row in the
        status; {} when nothing."""
        out: dict[str, Any] = {}
        if self._dropped_by[actor]:
            out["logDropped"] = self._dropped_by[actor]
        if self._unloggable_by[actor]:
            out["logUnloggable"] = self._unloggable_by[actor]
        if actor in self._failing:
            out["logError"] = self._last_error
        return out

    def _write_loop(self) -> None:
        files: dict[str, int] = {}  # actor -> fd, opened for appending
        sizes: dict[
            str, int
        ] = {}  # tracked here: an fstat per batch is a system call and a GIL hand-off
        behind = False  # whether the last batch left messages waiting
        while True:
            item = self._queue.get()
            if item is not None and not behind:
                time.sleep(GATHER_S)
            batch: list[Envelope | None] = []
            while True:
                if type(item) is list:
                    batch += item
                else:
                    batch.append(item)  # type: ignore[arg-type]
                if len(batch) >= WRITE_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            behind = len(batch) >= WRITE_BATCH
            stop = False
            try:
                stop = self._write_batch(batch, files, sizes)
            except Exception as err:
                # Whatever it was, the writer goes on: a dead writer means a queue
                # growing without bound and logs silently stale. The batch is lost,
                # counted and said (once a kind).
                stop = any(e is None for e in batch)
                self._dropped += sum(1 for e in batch if e is not None)
                self._dropped_by.update(e.recipient for e in batch if e is not None)
                self._last_error = f"{type(err).__name__}: {err}"
                self._loop_errors += 1
                if self._loop_errors == 1:
                    log.exception(
                        "message log: a batch could not be written; the writer goes on"
                    )
            with self._flushed:
                self._written += len(batch)
                self._flushed.notify_all()
            if stop:
                for fd in files.values():
                    os.close(fd)
                return

    def _write_batch(
        self, batch: list[Envelope | None], files: dict[str, int], sizes: dict[str, int]
    ) -> bool:
        stop = False
        by_actor: dict[str, list[Envelope]] = {}
        for e in batch:
            if e is None:
                stop = True
                continue
            by_actor.setdefault(e.recipient, []).append(e)
        for actor, envs in by_actor.items():
            data, bad = encode_batch(envs)
            if bad:
                if not self._unloggable:
                    log.warning(
                        "message log: a message to %s could not be encoded (a lone "
                        "surrogate in a string?); it is logged as unloggable, and "
                        "such messages are counted from now on",
                        actor,
                    )
                self._unloggable += bad
                self._unloggable_by[actor] += bad
            try:
                self._append(actor, data, files, sizes)
            except OSError as e:
                self._write_failed(actor, len(envs), e, files)
            else:
                self._write_resumed(actor)
        return stop

    def _open(self, actor: str, files: dict[str, int], sizes: dict[str, int]) -> int:
        fd = os.open(
            self.path(actor),
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
            0o600,
        )
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077:
            os.fchmod(
                fd,
                0o600,
                # a log from an older version: what the actors received is the user's
                # alone
            )
        files[actor] = fd
        sizes[actor] = st.st_size
        return fd

    def _append(
        self, actor: str, data: bytes, files: dict[str, int], sizes: dict[str, int]
    ) -> None:
        view = memoryview(data)
        while view:
            fd = files.get(actor)
            if fd is None:
                fd = self._open(actor, files, sizes)
            room = self.max_bytes - sizes[actor]
            if len(view) < room:
                _write_all(fd, view)  # the usual case: one write a batch
                sizes[actor] += len(view)
                return
            # A file takes whole lines until it reaches max_bytes (the line that crosses
            # the limit included), then rotates; JSON lines hold no raw newline.
            done = len(data) - len(view)
            end = data.find(b"\n", done + max(room - 1, 0))
            cut = (end + 1 if end >= 0 else len(data)) - done
            _write_all(fd, view[:cut])
            sizes[actor] += cut
            os.close(files.pop(actor))
            self._rotate(actor)
            view = view[cut:]

    def _write_failed(
        self, actor: str, lines: int, error: OSError, files: dict[str, int]
    ) -> None:
        # Drop the batch but keep draining, so memory stays bounded; the file is opened
        # afresh for the next batch, which is how writing resumes once there is room
        # again.
        fd = files.pop(actor, None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
        self._dropped += lines
        self._dropped_by[actor] += lines
        self._last_error = f"{self.path(actor)}: {error.strerror or error}"
        if actor not in self._failing:
            self._failing[actor] = 0
            log.error(
                "message log: cannot write %s (%s); its lines are dropped, and "
                "counted, until it can be written again",
                self.path(actor),
                error.strerror or error,
            )
        self._failing[actor] += lines

    def _write_resumed(self, actor: str) -> None:
        if actor in self._failing:
            lost = self._failing.pop(actor)
            log.warning(
                "message log: writing %s again; %d lines were dropped meanwhile",
                self.path(actor),
                lost,
            )

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

    def read(
        self,
        actor: str,
        types: set[str] | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[bytes]:
        """Logged lines for `actor`, oldest first, from disk (so they outlive restarts)."""
        self.flush()
        return read_lines(self.files(actor), types, since, limit)

    def recent(
        self,
        actor: str,
        types: set[str] | None = None,
        since: float | None = None,
        limit: int = 200,
    ) -> list[bytes]:
        """The newest logged lines for `actor` from the in-memory ring, oldest first.

        For the page's live log, read every second from the router's thread: no file I/O
        there."""
        # one C-level copy under the GIL: safe against appenders
        ring = list(self.ring(actor))
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


def read_lines(
    files: Iterable[Path],
    types: set[str] | None,
    since: float | None,
    limit: int | None,
) -> list[bytes]:
    out: collections.deque[bytes] = (
        collections.deque(maxlen=limit) if limit else collections.deque()
    )
    for raw in _iter_lines(files):
        try:
            line = _line_decoder.decode(raw)
        except msgspec.DecodeError:
            # a line cut by a crash mid-write; the rest of the file is still good
            continue
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


def envelope_matches(
    env: Envelope, types: set[str] | None, since: float | None
) -> bool:
    if since is not None and env.ts < since:
        return False
    if not types:
        return True
    k = kind_of(env.body)
    return k in types or (
        k == "gateway_event" and getattr(env.body, "type", None) in types
    )
