"""Replication links: one WebSocket per synced session, in the connection process
(docs/sync.md).

Each link has two threads. The reader connects (with backoff), sends ``CatchupRequest``
from the last sequence the journal has applied, and reads: notifications are handed up
in batches closed by the gateway's Heartbeat; fetched content is written to a spool file
under DIM_HOME, verified against its sha256, and handed up by path (content never
crosses the pipe or a message log). The sender thread sends write-backs (reading each
file here and checking it still has the hash the journal recorded), content requests and
acks, in order, whenever the link is up.

The journal owns what must survive: the applied sequence, pending write-backs (it
resends the unanswered ones when a link comes back; the gateway answers a resend with
its first answer).

A gateway without /replicate (the upgrade refused as a missing endpoint:
``endpoint_missing``) gets a read-only mirror instead (mirror.py), run by the link's
reader thread for as long as its connection lasts; the link hands it what the journal
sends. Every reconnect, and every new gateway, tries /replicate first.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlsplit

import msgspec
import websocket

from dim_actors.connection.backoff import Backoff
from dim_actors.connection.fastws import BufferedWebSocket
from dim_actors.connection.mirror import Mirror
from dim_actors.connection.sockets import hard_close
from dim_actors.connection.uplink import Uplink
from dim_actors.messages import (
    AckSequence,
    ContentItem,
    ContentReady,
    FetchContent,
    Msg,
    ReplicaLinkState,
    ReplicationState,
    ReplicationUpdate,
    SendWriteBack,
    StartReplication,
    StopReplication,
    WriteBackItem,
    WriteBackOutcome,
)
from dim_actors.wire import replication as wire

log = logging.getLogger("dim.connection.replication")

# notifications handed up at once at most (a Heartbeat closes a batch sooner)
NOTIFY_BATCH = 256
READY_BATCH = 64  # fetched files handed up at once at most
# ... and the first of a burst: its files are written while the next ones are fetched
# (each later batch twice the last, up to READY_BATCH)
FIRST_READY_BATCH = 8
SPOOL_MODE = 0o644  # sync/paths.portable_mode of a file with no executable bit
WRITEBACK_FRAME = 8 << 20  # content bytes per WriteBack frame
FETCH_FRAMES = 256  # content requests written to the socket at once at most
_SPOOL_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
# the gateway heartbeats every 2 s: silence this long means a dead link
IDLE_TIMEOUT_S = 15.0
# Upgrade refusals that mean "no such endpoint here" (a plain 404, a method or upgrade
# the path does not take, a request it cannot read): the session is then mirrored
# read-only over /ws.
NO_ENDPOINT = frozenset({400, 404, 405, 426})
# a new link's mirror waits this long at most for the old one's last listing
PREVIOUS_JOIN_S = 5.0


def replication_url(
    gateway_url: str, session_id: str, replica_id: str, token: str | None
) -> str:
    """ws://host:port/ws ->
    ws://host:port/replicate?sessionId=...&replicaId=...[&token=...]"""
    u = urlsplit(gateway_url)
    query = (
        f"sessionId={quote(session_id, safe='')}&replicaId={quote(replica_id, safe='')}"
    )
    if token:
        query += f"&token={quote(token, safe='')}"
    return f"{u.scheme}://{u.netloc}/replicate?{query}"


def endpoint_missing(status: int, body: bytes | None) -> bool:
    """Whether a refused /replicate upgrade means the gateway has no replication
    endpoint. Our dev gateway answers an unknown session with 404 "No such session": the
    endpoint is there and the refusal stands. (Were another gateway's 404 mistaken, the
    mirror's join_session would still find the session gone and say so.)"""
    if status not in NO_ENDPOINT:
        return False
    return not (
        status == 404 and body is not None and b"no such session" in body.lower()
    )


def mirror_state_file(spool: Path) -> Path:
    """Where a session's mirror keeps the last listing it saw: beside its spool folder,
    which is emptied at every start."""
    return spool.with_name(spool.name + ".mirror.json")


class Link:
    def __init__(
        self,
        start: StartReplication,
        uplink: Uplink,
        target: Callable[[], tuple[str | None, str | None]],
        previous: Link | None = None,
    ):
        self.sid = start.sessionId
        # The session's link stopped just before this one: its mirror writes the last
        # listing it saw as it ends, and this one's mirror reads it (_run_mirror waits
        # for that).
        self.previous = previous
        self.replica_id = start.replicaId
        self.since = start.sinceSequence
        self.spool = Path(start.spoolDir)
        self.spool_dir = str(self.spool)
        self.uplink = uplink
        self.target = target
        self.ws: websocket.WebSocket | None = None
        self.connected = threading.Event()
        self.stopped = threading.Event()
        self.wake = threading.Event()
        self.lock = threading.Lock()
        self.outq: queue.SimpleQueue = queue.SimpleQueue()
        # content requested and not yet complete
        self.wanted: OrderedDict[str, None] = OrderedDict()
        self.notes: list[wire.Notification] = []
        self.ready: list[ContentItem] = []
        self.ready_limit = FIRST_READY_BATCH
        self.parts: dict[str, tuple] = {}  # hash -> (file, sha256, offset)
        self.state: ReplicaLinkState | None = None  # none reported yet
        self.detail = ""
        # set while the gateway has no /replicate (mirror.py)
        self.mirror: Mirror | None = None
        self.mirror_seq = 0  # the last sequence a mirror of this link handed up
        # The same full-jitter schedule as the event socket's, shorter: a sync link is
        # cheap to retry.
        self.backoff = Backoff(base_s=0.2, cap_s=5.0)
        self.reader = threading.Thread(
            target=self._run_reader, name=f"replication-{self.sid[:8]}", daemon=True
        )
        self.sender = threading.Thread(
            target=self._run_sender, name=f"replication-out-{self.sid[:8]}", daemon=True
        )

    def start(self) -> None:
        self.spool.mkdir(parents=True, exist_ok=True)
        # spool files of an earlier process: nobody waits for them
        for leftover in self.spool.glob("*"):
            leftover.unlink(missing_ok=True)
        self.reader.start()
        self.sender.start()

    def stop(self) -> None:
        self.stopped.set()
        self.wake.set()
        self.outq.put(None)
        self._close()
        m = self.mirror
        if m is not None:
            m.stop()
        self._report("stopped", read_only=m is not None)

    # --- commands (any thread) --------------------------------------------------------

    def restart_from(self, start: StartReplication) -> None:
        """StartReplication for a running link: the journal's view wins (e.g. a reset to
        0)."""
        m = self.mirror
        if m is not None:
            if not m.restart_from(start):
                self._report(
                    self.state or "connecting", self.detail, force=True, read_only=True
                )
            return
        if start.sinceSequence != self.since or start.replicaId != self.replica_id:
            self.since, self.replica_id = start.sinceSequence, start.replicaId
            self._close()  # reconnect and catch up from there
        else:
            self._report(self.state or "connecting", force=True)

    def put(self, msg: Msg) -> None:
        if isinstance(msg, AckSequence):
            self.since = max(self.since, msg.upToSequence)
        # against the mirror's end: what it did not take comes back (_run_mirror)
        with self.lock:
            m = self.mirror
            if m is not None:
                m.put(msg)
            else:
                # (should a mirror start meanwhile, the sender hands it over)
                self.outq.put(msg)

    def retarget(self) -> None:
        """A new gateway URL or token: reconnect to it (a mirror ends, and /replicate is
        tried again)."""
        m = self.mirror
        if m is not None:
            m.leave()
        self._close()
        self.wake.set()

    # --- the reader -------------------------------------------------------------------

    def _report(
        self,
        state: ReplicaLinkState,
        detail: str = "",
        force: bool = False,
        read_only: bool = False,
    ) -> None:
        if self.stopped.is_set() and state != "stopped":
            # A stopped link's reader may still finish a connect (or fail one) that
            # began before the stop; by then a new link of the same session may be
            # reporting: say nothing.
            return
        # The mirror's detail says what it skipped: a new detail is news there.
        if state != self.state or force or (read_only and detail != self.detail):
            self.state, self.detail = state, detail
            self.uplink.put_control(
                ReplicationState(
                    sessionId=self.sid, state=state, detail=detail, readOnly=read_only
                )
            )

    def _mirror_report(self, state: ReplicaLinkState, detail: str, force: bool) -> None:
        self._report(state, detail, force, read_only=True)

    def _run_mirror(self, why: str) -> str | None:
        """Mirror the session read-only until its connection fails (why, returned:
        /replicate is tried again after the backoff), the link stops or the gateway
        changes (None). Content requested and not yet had moves to the mirror, and what
        it still wants comes back."""
        with self.lock:
            wanted = list(self.wanted)
            self.wanted.clear()
            for f, _, _ in self.parts.values():
                f.close()
            self.parts.clear()
        prev, self.previous = self.previous, None
        if prev is not None:
            prev.reader.join(PREVIOUS_JOIN_S)
        if not self.mirror_seq:
            log.info(
                "replication %s: the gateway has no /replicate (%s): mirroring the "
                "session read-only over /ws",
                self.sid,
                why,
            )
        # sequences go on from the last mirror's: one handed up before a reconnect may
        # still be in the journal
        m = Mirror(
            self.sid,
            self.spool,
            self.uplink,
            self.target,
            self._mirror_report,
            self.stopped,
            self.backoff,
            since=max(self.since, self.mirror_seq),
            wanted=wanted,
            state_file=mirror_state_file(self.spool),
        )
        self.mirror = m
        self.outq.put("mirror")  # the sender hands over what it holds
        try:
            return m.run()
        finally:
            with self.lock:
                self.mirror = None
                self.mirror_seq = m.seq
                for h in m.leftovers():
                    self.wanted[h] = None

    def _run_reader(self) -> None:
        while not self.stopped.is_set():
            url, token = self.target()
            if not url:
                self._report("retrying", "no gateway URL yet")
                self.wake.wait(1.0)
                self.wake.clear()
                continue
            self._report("connecting")
            delay = None
            missing = ""
            try:
                self._connect_and_read(
                    replication_url(url, self.sid, self.replica_id, token)
                )
                detail = "the gateway closed the replication socket"
            except websocket.WebSocketBadStatusException as e:
                code = e.status_code
                detail = {
                    401: "the gateway refused the token",
                    404: "the gateway has no such session",
                    429: "too many failed authentications",
                }.get(code, f"HTTP {code}")
                if endpoint_missing(code, e.resp_body):
                    missing = f"HTTP {code}"
                else:
                    self._report("refused", detail)
                    delay = 5.0
            except (
                OSError,
                websocket.WebSocketException,
                msgspec.DecodeError,
                msgspec.ValidationError,
            ) as e:
                detail = f"{type(e).__name__}: {e}"
            finally:
                self.connected.clear()
                self._close()
                self._flush_notes(None)
            if self.stopped.is_set():
                break
            read_only = False
            if missing:
                failed = self._run_mirror(missing)
                # stopped, or a new gateway: /replicate is tried again at once
                if failed is None:
                    continue
                detail, read_only = failed, True
            backoff = self.backoff.next_delay(time.monotonic())
            if delay is None:
                delay = backoff
                self._report("retrying", detail, read_only=read_only)
            self.wake.wait(delay)
            self.wake.clear()

    def _connect_and_read(self, url: str) -> None:
        # read-ahead: a fetch's responses arrive back to back, several to a socket read
        # (fastws.py)
        ws = BufferedWebSocket(skip_utf8_validation=True, enable_multithread=True)
        ws.connect(url, timeout=10, suppress_origin=True)
        self.ws = ws
        ws.settimeout(IDLE_TIMEOUT_S)
        self._send(wire.CatchupRequest(sinceSequence=self.since))
        with self.lock:
            wanted = list(self.wanted)
            for f, _, _ in self.parts.values():
                f.close()
            self.parts.clear()
        for h in wanted:  # pieces of an interrupted fetch start over
            self._send(wire.ContentFetchRequest(contentHash=h))
        self.connected.set()
        self.outq.put("connected")  # wakes the sender for what waited
        self.backoff.reset()
        self._report("connected")
        while not self.stopped.is_set():
            opcode, data = ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return
            if opcode != websocket.ABNF.OPCODE_BINARY:
                log.warning("replication %s: a non-binary frame, ignored", self.sid)
                continue
            self._on_frame(wire.decode_to_replica(data))

    def _on_frame(self, msg: wire.WireMsg) -> None:
        if isinstance(msg, wire.Notification):
            self.notes.append(msg)
            if len(self.notes) >= NOTIFY_BATCH:
                self._flush_notes(None)
        elif isinstance(msg, wire.Heartbeat):
            self._flush_notes(msg.sequence)
        elif isinstance(msg, wire.ContentFetchResponse):
            self._on_content(msg)
        elif isinstance(msg, wire.ContentNotFound):
            self._content_done(
                ContentItem(
                    msg.contentHash, "", 0, "the gateway has no content with this hash"
                )
            )
        elif isinstance(msg, wire.WriteBackResult):
            self.uplink.put_control(
                WriteBackOutcome(
                    sessionId=self.sid, accepted=msg.accepted, rejected=msg.rejected
                )
            )
        elif isinstance(msg, wire.FullResyncRequired):
            self._flush_notes(None)
            self.since = 0
            self.uplink.put_control(
                ReplicationUpdate(sessionId=self.sid, fullResync=msg.reason)
            )
            self._send(wire.CatchupRequest(sinceSequence=0))
        elif isinstance(msg, wire.ReplicationError):
            log.warning(
                "replication %s: the gateway says %s: %s",
                self.sid,
                msg.code,
                msg.message,
            )

    def _flush_notes(self, sequence: int | None) -> None:
        # nobody waits for a stopped link's notifications: a new link catches up
        if self.stopped.is_set():
            self.notes = []
            return
        if self.notes or sequence is not None:
            notes, self.notes = self.notes, []
            self.uplink.put_control(
                ReplicationUpdate(
                    sessionId=self.sid, notifications=notes, sequence=sequence
                )
            )

    def _on_content(self, msg: wire.ContentFetchResponse) -> None:
        h = msg.contentHash
        if msg.offset == 0 and msg.last:
            self._on_whole_content(msg)
            return
        with self.lock:
            if h not in self.wanted:
                return
            part = self.parts.get(h)
            if msg.offset == 0 or part is None:
                if part is not None:
                    part[0].close()
                part = (
                    # open across chunks until the file is complete
                    open(os.path.join(self.spool_dir, h + ".part"), "wb"),  # noqa: SIM115
                    hashlib.sha256(),
                    0,
                )
            f, digest, offset = part
            if msg.offset != offset:
                f.close()
                self.parts.pop(h, None)
                self._content_done(
                    ContentItem(h, "", 0, f"piece at {msg.offset}, expected {offset}")
                )
                return
            f.write(msg.data)
            digest.update(msg.data)
            self.parts[h] = (f, digest, offset + len(msg.data))
            if not msg.last:
                return
            _synced_mode(f.fileno())
            f.close()
            del self.parts[h]
        part_path = os.path.join(self.spool_dir, h + ".part")
        if digest.hexdigest() != h:
            _unlink(part_path)
            self._content_done(ContentItem(h, "", 0, "content does not match its hash"))
            return
        final = os.path.join(self.spool_dir, h)
        os.replace(part_path, final)
        self._content_done(ContentItem(h, final, offset + len(msg.data)))

    def _on_whole_content(self, msg: wire.ContentFetchResponse) -> None:
        """A file in one piece (up to CHUNK_SIZE, the common case): verified in memory,
        then written under its final spool name at once. Nobody reads a spool file
        before its ContentReady, which is sent only once the file is complete and
        closed; nothing is written when the hash does not match."""
        h = msg.contentHash
        with self.lock:
            if h not in self.wanted:
                return
            part = self.parts.pop(h, None)
        # an earlier, interrupted fetch of it: this one starts over
        if part is not None:
            part[0].close()
            _unlink(os.path.join(self.spool_dir, h + ".part"))
        if hashlib.sha256(msg.data).hexdigest() != h:
            self._content_done(ContentItem(h, "", 0, "content does not match its hash"))
            return
        final = os.path.join(self.spool_dir, h)
        # straight to the descriptor: no buffered file object per file
        fd = os.open(final, _SPOOL_FLAGS, SPOOL_MODE)
        try:
            view = memoryview(msg.data)
            while view:
                view = view[os.write(fd, view) :]
            _synced_mode(fd)
        finally:
            os.close(fd)
        self._content_done(ContentItem(h, final, len(msg.data)))

    def _content_done(self, item: ContentItem) -> None:
        with self.lock:
            self.wanted.pop(item.contentHash, None)
            self.ready.append(item)
            flush = not self.wanted or len(self.ready) >= self.ready_limit
            if flush:
                items, self.ready = self.ready, []
                self.ready_limit = (
                    min(READY_BATCH, self.ready_limit * 2)
                    if self.wanted
                    else FIRST_READY_BATCH
                )
        if flush:
            self.uplink.put_control(ContentReady(sessionId=self.sid, items=items))

    # --- the sender -------------------------------------------------------------------

    def _send(self, msg: wire.WireMsg) -> None:
        ws = self.ws
        if ws is None:
            raise websocket.WebSocketConnectionClosedException("not connected")
        ws.send_binary(wire.encode(msg))

    def _send_many(self, payloads: list[bytes]) -> None:
        ws = self.ws
        if ws is None:
            raise websocket.WebSocketConnectionClosedException("not connected")
        ws.send_frame(_Frames(payloads))  # type: ignore[arg-type]

    def _run_sender(self) -> None:
        held: list = []  # what came while the link was down, in order
        while not self.stopped.is_set():
            item = self.outq.get()
            if item is None:
                return
            if item not in ("connected", "mirror"):
                held.append(item)
            m = self.mirror
            if m is not None:  # the gateway has no /replicate: the mirror takes it all
                for x in held:
                    m.put(x)
                held.clear()
                continue
            if not self.connected.is_set():
                continue
            while held and self.connected.is_set():
                try:
                    self._perform(held[0])
                except (OSError, websocket.WebSocketException) as e:
                    log.info(
                        "replication %s: send failed (%s); kept for the reconnect",
                        self.sid,
                        e,
                    )
                    break
                held.pop(0)

    def _perform(self, msg: Msg) -> None:
        if isinstance(msg, FetchContent):
            fresh = []
            with self.lock:
                for h in msg.hashes:
                    if not wire.valid_hash(h):
                        continue
                    if h not in self.wanted:
                        self.wanted[h] = None
                        fresh.append(h)
            # a message's requests in one write: one system call (and one hand-over of
            # the GIL to the reader) instead of one each
            for i in range(0, len(fresh), FETCH_FRAMES):
                self._send_many(
                    [
                        wire.encode(wire.ContentFetchRequest(contentHash=h))
                        for h in fresh[i : i + FETCH_FRAMES]
                    ]
                )
        elif isinstance(msg, AckSequence):
            self._send(wire.Ack(upToSequence=msg.upToSequence))
        elif isinstance(msg, SendWriteBack):
            self._write_back(msg.entries)

    def _write_back(self, items: list[WriteBackItem]) -> None:
        entries: list[wire.WriteBackEntry] = []
        refused: list[wire.Rejected] = []
        size = 0
        for it in items:
            if it.isDeletion:
                entries.append(
                    wire.WriteBackEntry(
                        localSeq=it.localSeq,
                        filepath=it.path,
                        contentHash="",
                        size=0,
                        permissions=0,
                        baseIteration=it.baseIteration,
                        isDeletion=True,
                    )
                )
                continue
            try:
                if it.size > wire.WRITEBACK_INLINE_LIMIT:
                    # A large file never sits whole in memory: hashed piece by piece,
                    # then sent so (the gateway checks the hash of what it got against
                    # the entry's).
                    total = self._upload_pieces(it)
                    data = b""
                else:
                    with open(it.localPath, "rb") as f:
                        data = f.read(wire.WRITEBACK_INLINE_LIMIT + 1)
                    total = len(data)
                    if (
                        total > wire.WRITEBACK_INLINE_LIMIT
                        or hashlib.sha256(data).hexdigest() != it.contentHash
                    ):
                        total = -1
            except OSError as e:
                refused.append(wire.Rejected(it.localSeq, "unreadable", str(e)))
                continue
            if total < 0:
                refused.append(
                    wire.Rejected(
                        it.localSeq, "changed", "the file changed since it was recorded"
                    )
                )
                continue
            content: bytes | None = data
            if it.size > wire.WRITEBACK_INLINE_LIMIT:
                content = None
            elif size + len(data) > WRITEBACK_FRAME and entries:
                self._send(wire.WriteBack(entries=entries))
                entries, size = [], 0
            size += len(content or b"")
            entries.append(
                wire.WriteBackEntry(
                    localSeq=it.localSeq,
                    filepath=it.path,
                    contentHash=it.contentHash,
                    size=total,
                    permissions=it.permissions,
                    baseIteration=it.baseIteration,
                    content=content,
                )
            )
        if entries:
            self._send(wire.WriteBack(entries=entries))
        if refused:
            self.uplink.put_control(
                WriteBackOutcome(sessionId=self.sid, rejected=refused)
            )

    def _upload_pieces(self, it: WriteBackItem) -> int:
        """A large write-back's content as ContentUpload pieces of CHUNK_SIZE, read from
        the file in two passes (its hash first, so nothing is sent for a file that
        changed meanwhile; then the pieces): at most one piece in memory. The size sent,
        or -1 when the file is not (or no longer) what was recorded."""
        h = hashlib.sha256()
        total = 0
        with open(it.localPath, "rb") as f:
            while piece := f.read(wire.CHUNK_SIZE):
                h.update(piece)
                total += len(piece)
        if h.hexdigest() != it.contentHash:
            return -1
        with open(it.localPath, "rb") as f:
            off = 0
            while off < total and (piece := f.read(min(wire.CHUNK_SIZE, total - off))):
                self._send(
                    wire.ContentUpload(
                        contentHash=it.contentHash,
                        offset=off,
                        totalSize=total,
                        data=piece,
                    )
                )
                off += len(piece)
        return total

    def _close(self) -> None:
        ws, self.ws = self.ws, None
        hard_close(ws)


class _Frames:
    """Binary frames sent as one piece: WebSocket.send_frame writes what format() returns
    under the socket's lock, each frame masked with its own key as websocket-client does
    for one."""

    def __init__(self, payloads: list[bytes]):
        self.payloads = payloads
        self.get_mask_key: Callable[[int], bytes] = os.urandom

    def format(self) -> bytes:
        frames = []
        for p in self.payloads:
            frame = websocket.ABNF.create_frame(p, websocket.ABNF.OPCODE_BINARY)
            frame.get_mask_key = self.get_mask_key
            frames.append(frame.format())
        return b"".join(frames)


def _synced_mode(fd: int) -> None:
    """A spool file gets the mode most synced files have (0644; the spool's folder is
    the user's alone), so the materializer moves it into place without a chmod of its
    own (the supervisor's time, not this process's)."""
    os.fchmod(fd, SPOOL_MODE)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class ReplicationLinks:
    """The connection process's replication sockets, by session."""

    def __init__(
        self, uplink: Uplink, target: Callable[[], tuple[str | None, str | None]]
    ):
        self.uplink = uplink
        self.target = target
        self.links: dict[str, Link] = {}
        self.ended: dict[
            str, Link
        ] = {}  # the last stopped link of each session (Link.previous)

    def on_command(self, msg: Msg) -> None:
        sid = msg.sessionId  # type: ignore[attr-defined]
        link = self.links.get(sid)
        if isinstance(msg, StartReplication):
            if link is not None and not link.stopped.is_set():
                link.restart_from(msg)
                return
            previous = self.ended.pop(sid, None)
            link = self.links[sid] = Link(
                msg,
                self.uplink,
                self.target,
                previous
                if previous is not None and previous.reader.is_alive()
                else None,
            )
            link.start()
        elif isinstance(msg, StopReplication):
            if link is not None:
                del self.links[sid]
                link.stop()
                self.ended[sid] = link
            else:
                self.uplink.put_control(
                    ReplicationState(sessionId=sid, state="stopped")
                )
        elif link is not None:
            link.put(msg)
        elif isinstance(msg, SendWriteBack):
            self.uplink.put_control(
                WriteBackOutcome(
                    sessionId=sid,
                    rejected=[
                        wire.Rejected(
                            e.localSeq,
                            "no_link",
                            "replication is not running for this session",
                        )
                        for e in msg.entries
                    ],
                )
            )

    def gateway_changed(self) -> None:
        """A new gateway URL or token: every link reconnects to it."""
        for link in self.links.values():
            link.retarget()

    def close(self) -> None:
        for link in list(self.links.values()):
            link.stop()
        self.links.clear()
