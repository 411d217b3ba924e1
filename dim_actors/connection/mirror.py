"""The read-only mirror: sync with a gateway that has no /replicate (docs/sync.md,
"Without a replication endpoint: the mirror").

When a gateway refuses the /replicate upgrade as an endpoint it does not have, the
session's Link (replication.py) runs a Mirror instead. The mirror opens its own /ws
connection and keeps the session's files from the documented file messages only:
``join_session``, ``list_files`` (the whole tree), ``read_file`` / ``file_at_iteration``
for content, and the ``file_changed`` stream event. It hands the journal the messages a
Link does (ReplicationUpdate, ContentReady, ReplicationState, the last with
``readOnly``), and writes nothing upstream.

The decisions are pure functions (what a listing means against the last one seen, what a
``file_changed`` means, where a hash's content can be read, how content is decoded, how
fast to send), tested by tables in tests/test_sync_mirror.py. The Mirror class does the
socket I/O: one request at a time, each answer awaited with a deadline, requests paced
under the gateway's rate limit, reconnects with backoff.

Sequences are made here (the gateway has none for files): one counter per link, one
number per notification, never reused while the link lives. Iterations are the gateway's
where it gives usable ones; otherwise counted here per path (see ``iteration_for``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

import msgspec
import websocket

from dim_actors.connection.backoff import Backoff
from dim_actors.connection.sockets import hard_close
from dim_actors.messages import (
    AckSequence,
    ContentItem,
    ContentReady,
    FetchContent,
    Msg,
    ReplicaLinkState,
    ReplicationUpdate,
    SendWriteBack,
    StartReplication,
    WriteBackOutcome,
)
from dim_actors.wire import replication as wire

log = logging.getLogger("dim.connection.mirror")

PERMISSIONS = 0  # unknown: a listing has no modes (the materializer writes 0644)
HANDSHAKE_S = 10.0  # welcome, connected, authenticated: each awaited this long at most
REQUEST_S = 30.0  # an answer (a large read_file takes a while on a slow link)
# messages in any PACE_WINDOW_S: below the gateway's 60 per 10 s per connection
PACE_LIMIT = 50
PACE_WINDOW_S = 10.0
PACE_FLOOR = 5  # the least the budget shrinks to after RATE_LIMITED answers
# resends of one request after RATE_LIMITED, then the connection starts over
RATE_RETRIES = 5
# after a refusal (no such session, a bad token): slow, and never counted as load
REFUSED_RETRY_S = 30.0
# nothing at all this long means a dead socket, until `connected` says its heartbeat
SILENCE_S = 90.0
NOTIFY_BATCH = 256
READY_BATCH = 64
READY_FLUSH_S = 0.2  # fetched files handed up at least this often while fetches go on
RENAME_WAIT_S = 0.05  # how long a deletion waits for the other half of a rename
STATE_SAVE_S = 5.0  # the last listing is written to disk at most this often
PLACES_KEPT = 50_000  # hashes remembered for fetches
PROBLEMS_LOGGED = 20  # per connection; the rest only counted
NO_WRITES = "this gateway takes no local writes (read-only mirror: it has no replication endpoint)"

ErrorKind = Literal[
    "session_gone", "not_found", "rate_limited", "auth_failed", "auth_limited", "other"
]


# --- the decisions (pure) -------------------------------------------------------------


class Known(msgspec.Struct, frozen=True, array_like=True):
    """A path's state as the mirror last saw it (and last handed up)."""

    iteration: int
    hash: str  # sha256 hex; "" when deleted
    size: int = 0
    # the iteration was counted here: the gateway gave none usable
    synthetic: bool = False


class Offer(msgspec.Struct, frozen=True):
    """A path's new state, to hand up as a Notification."""

    path: str
    known: Known
    renamedFrom: str | None = None
    # set when the old path's deletion is folded in (fold_renames)
    renamedFromIteration: int | None = None
    # the content, when it was read here anyway and is small
    inline: bytes | None = None


class Unhashed(msgspec.Struct, frozen=True):
    """A file whose state the gateway gave without a usable hash: read it to learn one."""

    path: str
    iteration: int | None = None
    renamedFrom: str | None = None


class Skip(msgspec.Struct, frozen=True):
    """Nothing to hand up. ``quiet``: an ordinary repeat, not worth reporting."""

    reason: str
    quiet: bool = False


class ListingPlan(msgspec.Struct):
    offers: list[Offer]  # every listed file with a usable hash, then the deletions
    unhashed: list[Unhashed]
    problems: list[str]  # entries skipped, and why


class ListingError(ValueError):
    """A listing that cannot be read at all (not one bad entry: the whole answer)."""


def _positive(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 1 else None


def _size(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


def _path(v: Any) -> str | None:
    return v if isinstance(v, str) and v and len(v) <= 4096 and "\0" not in v else None


def iteration_for(prev: Known | None, given: int | None, h: str) -> tuple[int, bool]:
    """The iteration to hand up for content ``h``, and whether it was counted here.

    The gateway's own wins. Without one: the same content as before keeps its iteration
    (so a re-listing offers nothing new), other content is the next one for the path.
    Iterations counted here are per path and only grow while this link lives; they start
    again from the listing kept on disk after a restart."""
    if given is not None:
        return given, False
    if prev is not None and prev.hash == h and h:
        return prev.iteration, prev.synthetic
    return (prev.iteration + 1 if prev is not None else 1), True


def parse_entry(raw: Any) -> tuple[str, str | None, int | None, int] | None | str:
    """A listing's FileEntry: (path, hash or None, iteration or None, size) for a file,
    None for a folder (nothing to mirror: folders follow their files), or a str saying
    why it is skipped."""
    if not isinstance(raw, dict):
        return f"an entry that is not an object ({type(raw).__name__})"
    path = _path(raw.get("path"))
    if path is None:
        return f"an entry without a usable path ({str(raw.get('path'))[:80]!r})"
    kind = raw.get("type", "file")
    if kind in ("directory", "dir", "folder"):
        return None
    if kind != "file":
        return f"{path}: an entry of type {str(kind)[:40]!r}, not a file"
    h = raw.get("hash")
    return (
        path,
        h if wire.valid_hash(h) else None,
        _positive(raw.get("iteration")),
        _size(raw.get("size")),
    )


def plan_listing(prev: Mapping[str, Known], files: Any) -> ListingPlan:
    """What a listing of the whole tree means against the last state seen (``prev``).

    Every listed file is offered (each listing opens a full resync: the journal skips by
    hash what it has). A path live in ``prev`` and absent from the listing was deleted
    while we were away: a deletion at the next iteration. Files without a usable hash
    are to be read (``unhashed``)."""
    if not isinstance(files, list):
        raise ListingError(f"the file list is a {type(files).__name__}, not a list")
    offers: list[Offer] = []
    unhashed: list[Unhashed] = []
    problems: list[str] = []
    listed: set[str] = set()
    for raw in files:
        entry = parse_entry(raw)
        if entry is None:
            continue
        if isinstance(entry, str):
            problems.append(entry)
            continue
        path, h, given, size = entry
        if path in listed:
            problems.append(f"{path}: listed twice (the first kept)")
            continue
        listed.add(path)
        if h is None:
            unhashed.append(Unhashed(path, given))
        else:
            iteration, synthetic = iteration_for(prev.get(path), given, h)
            offers.append(Offer(path, Known(iteration, h, size, synthetic)))
    for path, k in prev.items():
        if k.hash and path not in listed:
            offers.append(Offer(path, Known(k.iteration + 1, "", 0, True)))
    return ListingPlan(offers, unhashed, problems)


def plan_change(
    prev: Known | None, event: Mapping[str, Any]
) -> Offer | Unhashed | Skip:
    """What a ``file_changed`` event means, given the path's last known state."""
    path = _path(event.get("path"))
    if path is None:
        return Skip(
            f"a file_changed without a usable path ({str(event.get('path'))[:80]!r})"
        )
    given = _positive(event.get("iteration"))
    renamed = _path(event.get("renamedFrom"))
    if (
        prev is not None
        and given is not None
        and not prev.synthetic
        and given <= prev.iteration
    ):
        return Skip(f"{path}: iteration {given} seen already", quiet=True)
    if event.get("deleted") is True:
        if prev is not None and not prev.hash and given is None:
            return Skip(f"{path}: deleted already", quiet=True)
        iteration = (
            given
            if given is not None
            else (prev.iteration + 1 if prev is not None else 1)
        )
        return Offer(path, Known(iteration, "", 0, given is None))
    h = event.get("hash")
    if wire.valid_hash(h):
        iteration, synthetic = iteration_for(prev, given, h)
        if prev is not None and prev.hash == h and iteration == prev.iteration:
            return Skip(f"{path}: unchanged", quiet=True)
        return Offer(
            path,
            Known(iteration, h, _size(event.get("size")), synthetic),
            renamedFrom=renamed,
        )
    return Unhashed(path, given, renamed)


def fold_renames(offers: list[Offer]) -> list[Offer]:
    """A rename comes as two file_changed: the old path deleted, then the new one with
    ``renamedFrom``. Met in one batch, they become one offer, as the replication
    endpoint sends a rename: the journal then moves the local file (its deletion of the
    old path implied) instead of deleting it and fetching the same content again."""
    out: list[Offer | None] = []
    deletion_at: dict[str, int] = {}  # path -> index in out of its latest deletion
    for o in offers:
        if not o.known.hash:
            deletion_at[o.path] = len(out)
            out.append(o)
            continue
        i = deletion_at.pop(o.renamedFrom, None) if o.renamedFrom else None
        if i is not None:
            gone = out[i]
            out[i] = None
            o = msgspec.structs.replace(o, renamedFromIteration=gone.known.iteration)  # type: ignore[union-attr]
        deletion_at.pop(o.path, None)
        out.append(o)
    return [o for o in out if o is not None]


def offer_from_content(
    prev: Known | None, u: Unhashed, answered_iteration: Any, data: bytes
) -> Offer:
    """An unhashed file once read: its hash computed here; the iteration the answer
    names (that of the content read), else the one the listing or event gave, else
    counted here."""
    h = hashlib.sha256(data).hexdigest()
    given = _positive(answered_iteration) or u.iteration
    iteration, synthetic = iteration_for(prev, given, h)
    inline = data if len(data) < wire.INLINE_LIMIT else None
    return Offer(
        u.path,
        Known(iteration, h, len(data), synthetic),
        renamedFrom=u.renamedFrom,
        inline=inline,
    )


Place = tuple[str, int, bool]  # (path, iteration, synthetic): where a hash was seen


def fetch_requests(
    sid: str, h: str, latest: Mapping[str, Known], places: Iterable[Place]
) -> list[dict[str, Any]]:
    """Where content ``h`` can be read, best first: ``read_file`` of a path whose latest
    state it is; then ``file_at_iteration`` of a path that held it at an iteration the
    gateway named (one counted here means nothing to the gateway)."""
    seen = list(places)[::-1]  # the newest first
    out: list[dict[str, Any]] = []
    for path, _, _ in seen:
        k = latest.get(path)
        req: dict[str, Any] = {"type": "read_file", "sessionId": sid, "path": path}
        if k is not None and k.hash == h and req not in out:
            out.append(req)
    for path, iteration, synthetic in seen:
        req = {
            "type": "file_at_iteration",
            "sessionId": sid,
            "path": path,
            "iteration": iteration,
        }
        if not synthetic and req not in out:
            out.append(req)
    return out[:4]


def decode_content(content: Any, encoding: Any) -> bytes:
    """A ``file_content``'s bytes (encoding ``utf-8`` or ``base64``); ValueError for
    anything else."""
    if not isinstance(content, str):
        raise ValueError(f"content is a {type(content).__name__}, not a string")
    enc = (
        encoding.lower()
        if isinstance(encoding, str)
        else ("utf-8" if encoding is None else encoding)
    )
    if enc in ("utf-8", "utf8"):
        return content.encode("utf-8")
    if enc == "base64":
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError) as e:
            raise ValueError(f"content is not valid base64: {e}") from None
    raise ValueError(f"unknown encoding {str(encoding)[:40]!r}")


def error_kind(code: Any) -> ErrorKind:
    """An ``error`` answer's code, as the mirror acts on it (codes vary in case and
    underscores)."""
    c = str(code).replace("_", "").lower()
    if c in ("sessionnotfound", "nosuchsession"):
        return "session_gone"
    if c in ("filenotfound", "iterationnotfound", "notfound"):
        return "not_found"
    if c == "ratelimited":
        return "rate_limited"
    if c in ("authfailed", "unauthenticated", "unauthorized"):
        return "auth_failed"
    if c == "authratelimited":
        return "auth_limited"
    return "other"


class Pacer:
    """At most ``limit`` messages in any ``window_s`` seconds (a sliding window, as the
    gateway counts): a small workspace goes at once, a large one at the sustained rate.
    Pure: the caller passes the time."""

    def __init__(self, limit: int = PACE_LIMIT, window_s: float = PACE_WINDOW_S):
        self.limit, self.window_s = limit, window_s
        self.sent: deque[float] = deque()
        self.not_before = 0.0

    def wait_s(self, now: float) -> float:
        """How long to wait before the next message may go (0: now)."""
        while self.sent and self.sent[0] <= now - self.window_s:
            self.sent.popleft()
        wait = self.not_before - now
        if len(self.sent) >= self.limit:
            wait = max(wait, self.sent[-self.limit] + self.window_s - now)
        return max(0.0, wait)

    def note(self, now: float) -> None:
        self.sent.append(now)

    def refused(self, now: float, retry_after_s: float) -> None:
        """The gateway said RATE_LIMITED: its limit is lower than ours. Wait what it
        says, and spend less from now on."""
        self.not_before = max(self.not_before, now + retry_after_s)
        self.limit = max(PACE_FLOOR, self.limit * 3 // 4)


# --- the socket I/O -------------------------------------------------------------------


class Controls(Protocol):
    def put_control(self, msg: Msg) -> None: ...


# (state, detail, force): the Link's, with readOnly set
Report = Callable[[ReplicaLinkState, str, bool], None]


class MirrorError(Exception):
    """The connection is unusable (closed, silent, unanswered, unreadable): start over."""


class Refused(Exception):
    """The gateway refuses this session to us: said plainly, retried slowly."""

    def __init__(self, detail: str, retry_s: float = REFUSED_RETRY_S):
        super().__init__(detail)
        self.detail, self.retry_s = detail, retry_s


class AnswerError(Exception):
    """An ``error`` answered a request."""

    def __init__(self, frame: Mapping[str, Any]):
        self.code = str(frame.get("code"))
        self.kind = error_kind(self.code)
        self.message = str(frame.get("message", ""))[:300]
        ra = frame.get("retryAfterMs")
        self.retry_after_s = (
            ra / 1000
            if isinstance(ra, (int, float)) and not isinstance(ra, bool) and ra > 0
            else None
        )
        super().__init__(f"{self.code}: {self.message}")


class _Ending(Exception):
    """Stopped, or told to leave (the gateway changed)."""


class Mirror:
    """One session's read-only mirror, made by its Link each time /replicate turns out
    missing. ``run()`` blocks (in the Link's reader thread) until its connection fails,
    the link stops, or ``leave()`` (a new gateway); then ``leftovers()`` gives the
    content hashes still wanted, for whatever runs next. The last listing it saw
    outlives it in ``state_file``, read by the next. ``put``, ``restart_from``,
    ``leave`` and ``stop`` may be called from any thread."""

    def __init__(
        self,
        sid: str,
        spool: Path,
        uplink: Controls,
        target: Callable[[], tuple[str | None, str | None]],
        report: Report,
        stopped: threading.Event,
        backoff: Backoff,
        since: int = 0,
        wanted: Iterable[str] = (),
        state_file: Path | None = None,
    ):
        self.sid = sid
        self.spool_dir = str(spool)
        self.uplink = uplink
        self.target = target
        self.report = report
        self.stopped = stopped  # the Link's: a stopped link's mirror says nothing more
        self.leaving = threading.Event()
        # frames (tagged by connection), commands, wake-ups
        self.inbox: queue.Queue = queue.Queue()
        self.ws: websocket.WebSocket | None = None
        # the current connection's number: frames of an earlier one are dropped
        self.conn = 0
        self.latest: dict[str, Known] = {}
        self.places: OrderedDict[str, list[Place]] = OrderedDict()
        self.wanted: OrderedDict[str, None] = OrderedDict(
            (h, None) for h in wanted if wire.valid_hash(h)
        )
        self.ready: list[ContentItem] = []
        self.ready_since = 0.0
        self.unhashed: deque[Unhashed] = deque()
        # file_changed read while a request was out
        self.events: deque[dict[str, Any]] = deque()
        self.notes: list[wire.Notification] = []
        # the journal's ack cursor resets with each full resync; ours only grows
        self.seq = since
        self.acked = since
        self.relist = False
        self.pacer = Pacer()
        # the link's: it waits between attempts; reset here once a listing came
        self.backoff = backoff
        self.silence_s = SILENCE_S
        self.heard_at = time.monotonic()
        self.problems = 0
        self.last_problem = ""
        # RATE_LIMITED answers met (the pacing should keep this at 0)
        self.rate_limited = 0
        self.requests = 0
        self.state_file = state_file
        self.state_dirty = False
        self.state_saved_at = 0.0
        self._load_state()

    # --- commands (any thread) --------------------------------------------------------

    def put(self, msg: Msg) -> None:
        self.inbox.put(("cmd", msg))

    def restart_from(self, start: StartReplication) -> bool:
        """The journal's StartReplication for a running link (it asks again after 10 s
        without a word). Behind what it acked: it went back (a reset) and wants
        everything again, so the workspace is listed again (True); else there is nothing
        to do but say how we are."""
        if start.sinceSequence < self.acked:
            self.inbox.put(("relist",))
            return True
        return False

    def leave(self) -> None:
        self.leaving.set()
        self.inbox.put(("end",))
        hard_close(self.ws)

    def stop(self) -> None:
        self.inbox.put(("end",))
        hard_close(self.ws)

    # --- the loop ---------------------------------------------------------------------

    def _over(self) -> bool:
        return self.stopped.is_set() or self.leaving.is_set()

    def run(self) -> str | None:
        """Mirror until the connection fails, and say why: the link then tries
        /replicate again (the gateway may have gained it) after its backoff, and mirrors
        again if it has not. None when the link stopped or left. A refusal (no such
        session, a bad token) is waited out here."""
        failed: str | None = None
        while not self._over():
            url, token = self.target()
            if not url:
                self.report("retrying", "no gateway URL yet", False)
                if not self._idle(1.0):
                    break
                continue
            self.report("connecting", "read-only mirror over /ws", False)
            refused: Refused | None = None
            try:
                self._serve(url, token)
                failed = "the gateway closed the connection"
            except _Ending:
                pass
            except Refused as e:
                refused = e
            except (
                MirrorError,
                AnswerError,
                ListingError,
                OSError,
                websocket.WebSocketException,
            ) as e:
                failed = (
                    str(e)
                    if isinstance(e, (MirrorError, AnswerError))
                    else f"{type(e).__name__}: {e}"
                )
            except Exception as e:
                # a gateway's odd answer must not end the link: report, start over
                log.exception("mirror %s: unexpected failure", self.sid)
                failed = f"{type(e).__name__}: {e}"
            finally:
                self._disconnect()
                self._flush_notes()
                self._flush_ready(force=True)
            if refused is None or self._over():
                break
            self.report("refused", refused.detail, False)
            if not self._idle(refused.retry_s):
                break
        self._flush_ready(force=True)
        self._save_state(force=True)
        return None if self._over() else failed

    def leftovers(self) -> list[str]:
        """Once run() has returned: the content hashes still wanted, commands not yet
        taken included."""
        while True:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                break
            if item[0] == "cmd":
                self._command(item[1])
        self._flush_ready(force=True)
        return list(self.wanted)

    def _idle(self, seconds: float) -> bool:
        """Wait between connections, taking commands meanwhile; False when it is over."""
        deadline = time.monotonic() + seconds
        while not self._over():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            try:
                item = self.inbox.get(timeout=remaining)
            except queue.Empty:
                return True
            if item[0] == "cmd":
                self._command(item[1])
            elif item[0] == "relist":
                self.relist = True
            elif item[0] == "end":
                break
        return False

    def _serve(self, url: str, token: str | None) -> None:
        self._connect(url)
        self._handshake(token)
        try:
            self._request(
                {"type": "join_session", "sessionId": self.sid}, ("state_snapshot",)
            )
        except AnswerError as e:
            if e.kind == "session_gone":
                why = e.message or e.code
                raise Refused(
                    f"the session {self.sid} no longer exists on the gateway ({why})"
                ) from None
            raise
        self._list()
        self.backoff.reset()
        self.report("connected", self._detail(), False)
        while True:
            self._drain_events()
            if self.relist:
                self._list()
            elif self.unhashed:
                self._resolve(self.unhashed.popleft())
            elif self.wanted:
                self._fetch(next(iter(self.wanted)))
            else:
                self._flush_ready(force=True)
                self._save_state()
                remaining = self.silence_s - (time.monotonic() - self.heard_at)
                if remaining <= 0:
                    raise MirrorError(
                        f"nothing from the gateway for {self.silence_s:g} s"
                    )
                item = self._next(
                    min(remaining, STATE_SAVE_S) if self.state_dirty else remaining
                )
                if item is not None:
                    self._take(item)

    # --- connection -------------------------------------------------------------------

    def _connect(self, url: str) -> None:
        self.conn += 1
        ws = websocket.WebSocket(enable_multithread=True, skip_utf8_validation=True)
        ws.connect(url, timeout=HANDSHAKE_S, suppress_origin=True)
        ws.settimeout(None)  # the reader blocks; silence is judged by the loop (_next)
        self.ws = ws
        # the gateway counts per connection; what we learnt of its limit stays
        self.pacer = Pacer(self.pacer.limit)
        self.heard_at = time.monotonic()
        self.problems = 0
        if self._over():  # stopped while connecting: stop() found no socket to close
            raise _Ending()
        threading.Thread(
            target=self._read,
            args=(ws, self.conn),
            name=f"mirror-{self.sid[:8]}",
            daemon=True,
        ).start()

    def _disconnect(self) -> None:
        ws, self.ws = self.ws, None
        hard_close(ws)
        self.events.clear()  # the next listing says what they said

    def _read(self, ws: websocket.WebSocket, conn: int) -> None:
        why = "the gateway closed the connection"
        try:
            while True:
                opcode, data = ws.recv_data()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    break
                if opcode != websocket.ABNF.OPCODE_TEXT:
                    continue
                try:
                    frame = msgspec.json.decode(data)
                except msgspec.DecodeError:
                    log.warning("mirror %s: an unreadable frame, ignored", self.sid)
                    continue
                if isinstance(frame, dict):
                    self.inbox.put(("frame", conn, frame))
        except (OSError, websocket.WebSocketException) as e:
            why = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        self.inbox.put(("closed", conn, why))

    def _handshake(self, token: str | None) -> None:
        welcome = self._await(("welcome",), HANDSHAKE_S, "welcome")
        if welcome.get("requiresAuth") is True:
            if not token:
                raise Refused("the gateway requires a token and none is set")
            try:
                self._request(
                    {"type": "authenticate", "token": token},
                    ("authenticated",),
                    timeout=HANDSHAKE_S,
                )
            except AnswerError as e:
                if e.kind == "auth_failed":
                    raise Refused("the gateway refused the token") from None
                if e.kind == "auth_limited":
                    wait_s = max(REFUSED_RETRY_S, e.retry_after_s or 0)
                    raise Refused("too many failed authentications", wait_s) from None
                raise
        else:
            # ready right after `connected` (the reference gateway pushes no
            # `authenticated` in dev mode)
            self._await(("connected",), HANDSHAKE_S, "connected")

    # --- frames and requests ----------------------------------------------------------

    def _next(self, timeout: float) -> tuple | None:
        try:
            return self.inbox.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def _take(self, item: tuple) -> dict[str, Any] | None:
        """One inbox item while connected: a frame of this connection is returned (a
        file_changed is also queued, to be handled between requests); commands are
        taken; the end of the connection, or of the mirror, raises."""
        tag = item[0]
        if tag == "frame":
            if item[1] != self.conn:
                return None
            frame = item[2]
            self.heard_at = time.monotonic()
            t = frame.get("type")
            if t == "file_changed" and frame.get("sessionId", self.sid) == self.sid:
                self.events.append(frame)
            elif t == "connected":
                hb = frame.get("heartbeatIntervalMs")
                if isinstance(hb, int) and not isinstance(hb, bool) and hb > 0:
                    self.silence_s = max(30.0, 3 * hb / 1000)
            return frame
        if tag == "closed":
            if item[1] == self.conn:
                raise MirrorError(item[2])
        elif tag == "cmd":
            self._command(item[1])
        elif tag == "relist":
            self.relist = True
        elif tag == "end":
            raise _Ending()
        return None

    def _await(
        self, types: tuple[str, ...], timeout: float, what: str
    ) -> dict[str, Any]:
        """The next frame of one of ``types``; an ``error`` raises AnswerError; other
        frames are taken as they come."""
        deadline = time.monotonic() + timeout
        while True:
            if self._over():
                raise _Ending()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MirrorError(f"no {what} from the gateway in {timeout:g} s")
            item = self._next(remaining)
            frame = self._take(item) if item is not None else None
            if frame is None:
                continue
            t = frame.get("type")
            if t in types:
                return frame
            if t == "error":
                raise AnswerError(frame)

    def _wait(self, seconds: float) -> None:
        """Pause while connected (pacing): frames and commands are still taken."""
        self._flush_notes()
        self._flush_ready(force=True)
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            item = self._next(remaining)
            if item is not None:
                self._take(item)

    def _send(self, msg: dict[str, Any]) -> None:
        ws = self.ws
        if ws is None:
            raise MirrorError("not connected")
        self.pacer.note(time.monotonic())
        self.requests += 1
        ws.send(msgspec.json.encode(msg).decode("utf-8"))

    def _request(
        self, msg: dict[str, Any], answers: tuple[str, ...], timeout: float = REQUEST_S
    ) -> dict[str, Any]:
        """Send one request (paced) and await its answer. Answers are unicast and come
        in request order, and only one request is out at a time, so the next
        answer-typed frame (or error) is this request's. RATE_LIMITED: wait as told and
        send it again."""
        for _ in range(RATE_RETRIES + 1):
            wait = self.pacer.wait_s(time.monotonic())
            if wait > 0:
                self._wait(wait)
            self._send(msg)
            try:
                return self._await(answers, timeout, f"answer to {msg['type']}")
            except AnswerError as e:
                if e.kind != "rate_limited":
                    raise
                self.rate_limited += 1
                retry_s = min(30.0, e.retry_after_s or 1.0)
                log.warning(
                    "mirror %s: the gateway rate-limits us (%s); waiting %.1f s",
                    self.sid,
                    e.message,
                    retry_s,
                )
                self.pacer.refused(time.monotonic(), retry_s)
        raise MirrorError(
            f"{msg['type']} rate-limited {RATE_RETRIES + 1} times in a row"
        )

    def _command(self, msg: Msg) -> None:
        if isinstance(msg, FetchContent):
            for h in msg.hashes:
                if not wire.valid_hash(h) or h in self.wanted:
                    continue
                spooled = os.path.join(self.spool_dir, h)
                # read already to learn its hash (an unhashed file)
                if os.path.isfile(spooled):
                    self.wanted[h] = None
                    self._content_done(
                        ContentItem(h, spooled, os.path.getsize(spooled))
                    )
                else:
                    self.wanted[h] = None
        elif isinstance(msg, AckSequence):
            self.acked = max(self.acked, msg.upToSequence)
        elif isinstance(msg, SendWriteBack):
            # Never sent, never lost: "no_link" keeps them pending in the journal.
            self.uplink.put_control(
                WriteBackOutcome(
                    sessionId=self.sid,
                    rejected=[
                        wire.Rejected(e.localSeq, "no_link", NO_WRITES)
                        for e in msg.entries
                    ],
                )
            )

    # --- the work ---------------------------------------------------------------------

    def _list(self) -> None:
        self.relist = False  # this listing is the one asked for
        answer = self._request(
            {"type": "list_files", "sessionId": self.sid}, ("file_list",)
        )
        plan = plan_listing(self.latest, answer.get("files"))
        for p in plan.problems:
            self._problem(p)
        self._flush_notes()  # what came before belongs before the resync
        for o in plan.offers:
            self._offer(o)
        self.unhashed = deque(plan.unhashed)  # the listing supersedes what waited
        self.acked = 0  # the journal's cursor starts over with the resync
        self._flush_notes(
            full_resync="read-only mirror: the workspace was listed again"
        )
        self.state_dirty = True

    def _drain_events(self) -> None:
        if not self.events:
            return
        while True:  # what else has come already joins the batch
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                break
            self._take(item)
        # A deletion last may be a rename's first half, its second half a frame away:
        # wait for it a moment (deletions only), so the two fold into one offer.
        deadline = time.monotonic() + RENAME_WAIT_S
        while self.events and self.events[-1].get("deleted") is True:
            item = self._next(deadline - time.monotonic())
            if item is None:
                break
            self._take(item)
        offers: list[Offer] = []
        while self.events:
            ev = self.events.popleft()
            path = ev.get("path")
            d = plan_change(
                self.latest.get(path) if isinstance(path, str) else None, ev
            )
            if isinstance(d, Offer):
                self._remember(d)
                offers.append(d)
            elif isinstance(d, Unhashed):
                self.unhashed.append(d)
            elif not d.quiet:
                self._problem(d.reason)
        for o in fold_renames(offers):
            self._notify(o)
        self._flush_notes()

    def _offer(self, o: Offer) -> None:
        self._remember(o)
        self._notify(o)

    def _remember(self, o: Offer) -> None:
        k = o.known
        self.latest[o.path] = k
        self.state_dirty = True
        if k.hash:
            places = self.places.pop(k.hash, [])
            places = [p for p in places if p[0] != o.path][-3:] + [
                (o.path, k.iteration, k.synthetic)
            ]
            self.places[k.hash] = places
            if len(self.places) > PLACES_KEPT:
                self.places.popitem(last=False)

    def _notify(self, o: Offer) -> None:
        k = o.known
        self.seq += 1
        self.notes.append(
            wire.Notification(
                sequence=self.seq,
                filepath=o.path,
                contentHash=k.hash,
                size=k.size,
                permissions=PERMISSIONS,
                isDeletion=not k.hash,
                inlineContent=o.inline,
                iteration=k.iteration,
                renamedFrom=o.renamedFrom,
                renamedFromIteration=o.renamedFromIteration,
            )
        )
        if len(self.notes) >= NOTIFY_BATCH:
            self._flush_notes()

    def _resolve(self, u: Unhashed) -> None:
        """Read a file the gateway gave no usable hash for, and offer it with the hash
        computed here."""
        prev = self.latest.get(u.path)
        try:
            answer = self._request(
                {"type": "read_file", "sessionId": self.sid, "path": u.path},
                ("file_content",),
            )
        except AnswerError as e:
            if e.kind == "not_found":
                if prev is not None and prev.hash:
                    self._offer(Offer(u.path, Known(prev.iteration + 1, "", 0, True)))
                    self._flush_notes()
                return
            self._problem(f"{u.path}: read_file answered {e}")
            return
        try:
            data = decode_content(answer.get("content"), answer.get("encoding"))
        except ValueError as e:
            self._problem(f"{u.path}: {e}")
            return
        o = offer_from_content(prev, u, answer.get("iteration"), data)
        if o.inline is None:  # the materializer will ask for it: it is here already
            self._spool(o.known.hash, data)
        self._offer(o)
        self._flush_notes()

    def _fetch(self, h: str) -> None:
        """Content for the materializer: read, decoded, verified against its hash,
        spooled."""
        why = "the gateway no longer has this content (the file changed or went away)"
        for req in fetch_requests(self.sid, h, self.latest, self.places.get(h, ())):
            try:
                answer = self._request(req, ("file_content",))
            except AnswerError as e:
                why = f"{req['type']} {req['path']}: {e}"
                continue
            try:
                data = decode_content(answer.get("content"), answer.get("encoding"))
            except ValueError as e:
                why = f"{req['type']} {req['path']}: {e}"
                self._problem(why)
                continue
            if hashlib.sha256(data).hexdigest() == h:
                self._content_done(ContentItem(h, self._spool(h, data), len(data)))
                return
            why = (
                f"{req['path']} changed before it could be read (its new state follows)"
            )
        self._content_done(ContentItem(h, "", 0, why))

    def _spool(self, h: str, data: bytes) -> str:
        # Nobody reads a spool file before its ContentReady, sent once the file is
        # complete.
        path = os.path.join(self.spool_dir, h)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def _problem(self, text: str) -> None:
        self.problems += 1
        self.last_problem = text
        if self.problems <= PROBLEMS_LOGGED:
            log.warning("mirror %s: skipped: %s", self.sid, text)
        if self.ws is not None:
            self.report("connected", self._detail(), False)

    def _detail(self) -> str:
        detail = "read-only mirror over /ws (the gateway has no replication endpoint)"
        if self.problems:
            entries = "entry" if self.problems == 1 else "entries"
            detail += f"; {self.problems} odd {entries} skipped (last: {self.last_problem[:200]})"
        return detail

    # --- upward -----------------------------------------------------------------------

    def _flush_notes(self, full_resync: str | None = None) -> None:
        if self.stopped.is_set():
            self.notes = []
            return
        if self.notes or full_resync is not None:
            notes, self.notes = self.notes, []
            self.uplink.put_control(
                ReplicationUpdate(
                    sessionId=self.sid,
                    notifications=notes,
                    sequence=self.seq,
                    fullResync=full_resync,
                )
            )

    def _content_done(self, item: ContentItem) -> None:
        self.wanted.pop(item.contentHash, None)
        if not self.ready:
            self.ready_since = time.monotonic()
        self.ready.append(item)
        self._flush_ready()

    def _flush_ready(self, force: bool = False) -> None:
        if not self.ready:
            return
        due = time.monotonic() - self.ready_since >= READY_FLUSH_S
        if force or due or not self.wanted or len(self.ready) >= READY_BATCH:
            items, self.ready = self.ready, []
            self.uplink.put_control(ContentReady(sessionId=self.sid, items=items))

    # --- the last listing, kept on disk -----------------------------------------------
    # So deletions made while the app was not running are found too: the first listing
    # after a restart is compared with the state the previous run saw last.

    def _load_state(self) -> None:
        if self.state_file is None:
            return
        try:
            raw = msgspec.json.decode(
                self.state_file.read_bytes(), type=dict[str, Known]
            )
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            return
        for path, k in raw.items():
            if (
                _path(path) is not None
                and (not k.hash or wire.valid_hash(k.hash))
                and k.iteration >= 0
            ):
                self.latest[path] = k
                if k.hash:
                    self.places.setdefault(k.hash, []).append(
                        (path, k.iteration, k.synthetic)
                    )

    def _save_state(self, force: bool = False) -> None:
        if self.state_file is None or not self.state_dirty:
            return
        now = time.monotonic()
        if not force and now - self.state_saved_at < STATE_SAVE_S:
            return
        live = {p: k for p, k in self.latest.items() if k.hash}
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        try:
            tmp.write_bytes(msgspec.json.encode(live))
            os.replace(tmp, self.state_file)
        except OSError as e:
            log.warning(
                "mirror %s: could not keep the listing in %s: %s",
                self.sid,
                self.state_file,
                e,
            )
            return
        self.state_dirty, self.state_saved_at = False, now
