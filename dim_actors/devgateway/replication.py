"""The dev gateway's replication endpoint: a session's workspace, pushed to replicas,
written back by them.

``ws://host:port/replicate?sessionId=S&replicaId=R[&token=T]`` (same token as ``/ws``; a
bad one is refused with HTTP 401 before the upgrade, an unknown session with 404).
Frames are msgpack Structs from ``dim_actors/wire/replication.py`` in binary WebSocket
frames, modelled on Chronicle's WireMessage.

* The **replication sequence** of a change is the ``rowid`` of its row in ``file_iterations``
  (Chronicle's master rowid): it grows with every iteration, so "everything after sequence S" is one
  indexed query, and nothing extra has to be stored to replay it.
* A replica starts with ``CatchupRequest {sinceSequence}``. It gets, for every path whose latest
  iteration is after that sequence, one ``Notification`` of that latest state (in sequence order),
  then a ``Heartbeat {sequence}``; after that, live changes the same way. A rename (one
  ``rename`` call: a deletion and a creation in a row) travels as one Notification of the new path
  with ``renamedFrom``.
* ``WriteBack`` entries are applied one by one, each atomically against the path's head: accepted
  when ``baseIteration`` is the current iteration (a new iteration, ``file_changed`` to /ws
  clients, a Notification to every replica), rejected as ``conflict`` otherwise. Results are kept
  per (replica, localSeq), so a resend after a crash returns the first answer and writes nothing.
* Permissions of written-back files are kept beside the iterations (``replication_modes``); the
  agent's own writes are 0644.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections import deque
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import msgspec
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from dim_actors.wire import replication as wire

from .limits import AuthLimiter, check_token
from .sessions import SessionRuntime
from .store import Database
from .workspace import FileChange, Workspace, WorkspaceError, normalize_path

log = logging.getLogger(__name__)

REPLICATE_PATH = "/replicate"
HEARTBEAT_S = 2.0
PAGE = 5000
# a catch-up's first page (each next one four times the last, up to PAGE): the replica
# starts on the first changes while the rest are read
FIRST_PAGE = 256
DEFAULT_MODE = 0o644
SEND_HIGH = 8 << 20  # queued bytes above which a replica's fetches wait for the socket
FETCH_BATCH = 256  # content requests answered per trip to the store's thread at most
FETCH_BYTES = 4 << 20  # ... and content bytes read per trip (about)
# The first trip of a burst reads this much only, and each next one twice the last (up
# to FETCH_BYTES): the replica gets its first files while the rest are read.
FIRST_FETCH_BYTES = 128 << 10
MAX_UPLOAD_BYTES = 512 << 20
_REPLICA_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")

SCHEMA = """
CREATE TABLE IF NOT EXISTS replication_modes (
    session_id TEXT NOT NULL,
    path TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    permissions INTEGER NOT NULL,
    PRIMARY KEY (session_id, path, iteration)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS replication_writebacks (
    session_id TEXT NOT NULL,
    replica_id TEXT NOT NULL,
    local_seq INTEGER NOT NULL,
    accepted INTEGER NOT NULL,
    iteration INTEGER NOT NULL,
    reason TEXT,
    message TEXT,
    PRIMARY KEY (session_id, replica_id, local_seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS file_iterations_by_hash ON file_iterations (session_id, hash);
"""


def _query(request_path: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(request_path).query).items() if v}


class Replica:
    """One replication connection: its cursor, its outbound queue and pending uploads."""

    def __init__(self, ws: ServerConnection, session_id: str, replica_id: str):
        self.ws = ws
        self.session_id = session_id
        self.replica_id = replica_id
        # last sequence sent; None until a CatchupRequest
        self.cursor: int | None = None
        self.acked = 0
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.queued_bytes = 0
        self.drained = asyncio.Event()
        self.drained.set()
        self.uploads: dict[str, bytearray] = {}
        self.upload_bytes = 0
        self.closed = False
        # answered in order by fetch_task
        self.fetches: deque[wire.ContentFetchRequest] = deque()
        self.fetch_task: asyncio.Task | None = None

    def send(self, msg: wire.WireMsg) -> None:
        if self.closed:
            return
        frame = wire.encode(msg)
        self.queued_bytes += len(frame)
        if self.queued_bytes > SEND_HIGH:
            self.drained.clear()
        self.queue.put_nowait(frame)

    async def run_writer(self) -> None:
        try:
            while True:
                frame = await self.queue.get()
                if frame is None:
                    return
                await self.ws.send(frame)
                self.queued_bytes -= len(frame)
                if self.queued_bytes <= SEND_HIGH // 2:
                    self.drained.set()
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            self.drained.set()


class Feed:
    """The replicas of one session and the task that pushes new changes to them."""

    def __init__(self, hub: ReplicationHub, session_id: str):
        self.hub = hub
        self.session_id = session_id
        self.replicas: set[Replica] = set()
        self.dirty = False
        self.task: asyncio.Task | None = None
        # write-backs of a session apply one batch at a time
        self.write_lock = asyncio.Lock()

    def kick(self) -> None:
        self.dirty = True
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(
                self._pump(), name=f"replication {self.session_id}"
            )

    async def _pump(self) -> None:
        while self.dirty:
            self.dirty = False
            for r in list(self.replicas):
                if r.cursor is not None and not r.closed:
                    try:
                        await self.hub.send_since(r)
                    except Exception:
                        log.exception(
                            "replication: pushing to replica %s failed", r.replica_id
                        )


class ReplicationGateway(Protocol):
    """What the replication endpoint needs of the gateway it serves in."""

    @property
    def token(self) -> str | None: ...
    @property
    def auth_limiter(self) -> AuthLimiter: ...
    @property
    def lockout_spares_token(self) -> bool: ...
    @property
    def sessions(self) -> dict[str, SessionRuntime]: ...
    @property
    def db(self) -> Database: ...


class ReplicationHub:
    def __init__(self, gateway: ReplicationGateway):
        self.gw = gateway
        self.feeds: dict[str, Feed] = {}
        self._schema_ready = False
        self.writebacks_accepted = 0
        self.writebacks_rejected = 0
        # held around each batch of content answers: a test holds it to keep fetched
        # files from arriving for a while
        self.content_lock = asyncio.Lock()

    # --- admission (before the upgrade) -----------------------------------------------

    def check_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        q = _query(request.path)
        ip = connection.remote_address[0] if connection.remote_address else "?"
        if self.gw.token is not None:
            valid, wait_ms = check_token(
                self.gw.token,
                q.get("token", ""),
                self.gw.auth_limiter,
                ip,
                self.gw.lockout_spares_token,
            )
            if wait_ms:
                return connection.respond(
                    HTTPStatus.TOO_MANY_REQUESTS, "Too many failed authentications\n"
                )
            if not valid:
                self.gw.auth_limiter.failed(ip)
                return connection.respond(
                    HTTPStatus.UNAUTHORIZED, "Bad or missing token\n"
                )
        if not _REPLICA_ID.fullmatch(q.get("replicaId", "")):
            return connection.respond(
                HTTPStatus.BAD_REQUEST, "replicaId: 1-128 of [A-Za-z0-9_.-]\n"
            )
        if q.get("sessionId") not in self.gw.sessions:
            return connection.respond(HTTPStatus.NOT_FOUND, "No such session\n")
        return None

    # --- one replica connection -------------------------------------------------------

    async def serve(self, ws: ServerConnection) -> None:
        assert ws.request is not None  # a handler runs after the handshake
        q = _query(ws.request.path)
        sid, replica_id = q["sessionId"], q["replicaId"]
        session = self.gw.sessions.get(sid)
        if session is None:
            await ws.close(4404, "no such session")
            return
        await self._ensure_schema()
        replica = Replica(ws, sid, replica_id)
        feed = self.feeds.get(sid)
        if feed is None:
            feed = self.feeds[sid] = Feed(self, sid)
        feed.replicas.add(replica)
        session.change_listener = self.on_change
        writer = asyncio.create_task(
            replica.run_writer(), name=f"replica writer {replica_id}"
        )
        beats = asyncio.create_task(
            self._heartbeats(replica), name=f"replica heartbeats {replica_id}"
        )
        try:
            async for message in ws:
                if isinstance(message, str):
                    replica.send(
                        wire.ReplicationError(
                            code="INVALID_MESSAGE", message="binary msgpack frames only"
                        )
                    )
                    continue
                try:
                    msg = wire.decode_to_gateway(message)
                except (msgspec.DecodeError, msgspec.ValidationError) as e:
                    replica.send(
                        wire.ReplicationError(code="INVALID_MESSAGE", message=str(e))
                    )
                    continue
                await self._handle(replica, feed, msg)
        except ConnectionClosed:
            pass
        finally:
            feed.replicas.discard(replica)
            replica.closed = True
            replica.queue.put_nowait(None)
            beats.cancel()
            if replica.fetch_task is not None:
                replica.fetch_task.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    async def _heartbeats(self, r: Replica) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            if r.cursor is not None:
                r.send(wire.Heartbeat(sequence=r.cursor))

    async def _handle(self, r: Replica, feed: Feed, msg: wire.WireMsg) -> None:
        if isinstance(msg, wire.CatchupRequest):
            current = await self.gw.db.run(_max_sequence, r.session_id)
            if msg.sinceSequence > current:
                r.cursor = None
                r.send(
                    wire.FullResyncRequired(
                        reason=f"sequence {msg.sinceSequence} is ahead of this "
                        f"workspace ({current}): it was reset or is another gateway's",
                        currentSequence=current,
                    )
                )
                return
            r.cursor = max(0, msg.sinceSequence)
            await self.send_since(r)
        elif isinstance(msg, wire.Ack):
            r.acked = max(r.acked, msg.upToSequence)
        elif isinstance(msg, wire.ContentFetchRequest):
            # queued, not awaited: the socket goes on reading while content is read and
            # sent, and requests that arrive together are answered together (one trip to
            # the store each batch)
            r.fetches.append(msg)
            if r.fetch_task is None or r.fetch_task.done():
                r.fetch_task = asyncio.get_running_loop().create_task(
                    self._serve_fetches(r), name=f"replica fetches {r.replica_id}"
                )
        elif isinstance(msg, wire.ContentUpload):
            self._upload(r, msg)
        elif isinstance(msg, wire.WriteBack):
            await self._write_back(r, feed, msg)

    # --- pushing changes --------------------------------------------------------------

    def on_change(self, session_id: str, change: FileChange) -> None:
        """Every workspace change of a session (agents, write-backs): push it to its
        replicas."""
        feed = self.feeds.get(session_id)
        if feed is not None and feed.replicas:
            feed.kick()

    async def send_since(self, r: Replica) -> None:
        page = FIRST_PAGE
        while r.cursor is not None and not r.closed:
            rows = await self.gw.db.run(_rows_after, r.session_id, r.cursor, page)
            for n in _compact(rows):
                r.send(n)
            if rows:
                r.cursor = rows[-1][0]
            r.send(wire.Heartbeat(sequence=r.cursor))
            if len(rows) < page:
                return
            page = min(PAGE, page * 4)
            await r.drained.wait()

    # --- content ----------------------------------------------------------------------

    async def _serve_fetches(self, r: Replica) -> None:
        """Answers the replica's content requests in the order they came, a batch per
        trip to the store: the first piece of each (every file under CHUNK_SIZE is one
        piece), the rest of a larger file piece by piece before the next request. Waits
        while the socket is behind."""
        budget = FIRST_FETCH_BYTES
        try:
            while r.fetches and not r.closed:
                await r.drained.wait()
                batch = [
                    r.fetches.popleft() for _ in range(min(FETCH_BATCH, len(r.fetches)))
                ]
                wanted = [
                    (m.contentHash, max(0, m.offset))
                    for m in batch
                    if wire.valid_hash(m.contentHash)
                ]
                async with self.content_lock:
                    rows = await self.gw.db.run(
                        _content_pieces,
                        r.session_id,
                        wanted,
                        wire.CHUNK_SIZE,
                        budget,
                    )
                budget = min(FETCH_BYTES, budget * 2)
                answered = got = 0
                for m in batch:
                    h = m.contentHash
                    if not wire.valid_hash(h):
                        r.send(wire.ContentNotFound(contentHash=str(h)[:100]))
                        answered += 1
                        continue
                    if got == len(rows):
                        # over the byte budget: the rest of the batch goes back first in
                        # line
                        break
                    await self._send_piece(r, h, max(0, m.offset), rows[got])
                    got += 1
                    answered += 1
                for m in reversed(batch[answered:]):
                    r.fetches.appendleft(m)
        except ConnectionClosed:
            pass
        except Exception:
            # as a failed handler would: the socket closes, the replica reconnects and
            # asks again
            log.exception(
                "replication: serving content to replica %s failed", r.replica_id
            )
            await r.ws.close(1011, "content fetch failed")

    async def _send_piece(
        self, r: Replica, h: str, offset: int, row: tuple | None
    ) -> None:
        while True:
            if row is None:
                r.send(wire.ContentNotFound(contentHash=h))
                return
            total, data = row[0], bytes(row[1] or b"")
            last = offset + len(data) >= total
            r.send(
                wire.ContentFetchResponse(
                    contentHash=h, offset=offset, totalSize=total, data=data, last=last
                )
            )
            if last or not data:
                return
            offset += len(data)
            await r.drained.wait()
            row = await self.gw.db.run(
                _content_piece, r.session_id, h, offset, wire.CHUNK_SIZE
            )

    def _upload(self, r: Replica, msg: wire.ContentUpload) -> None:
        if not wire.valid_hash(msg.contentHash) or msg.totalSize > MAX_UPLOAD_BYTES:
            r.send(
                wire.ReplicationError(
                    code="UPLOAD_REFUSED", message="bad hash or too large"
                )
            )
            return
        buf = r.uploads.get(msg.contentHash)
        if msg.offset == 0 or buf is None:
            if buf is not None:
                r.upload_bytes -= len(buf)
            buf = r.uploads[msg.contentHash] = bytearray()
        if msg.offset != len(buf) or r.upload_bytes + len(msg.data) > MAX_UPLOAD_BYTES:
            r.upload_bytes -= len(buf)
            del r.uploads[msg.contentHash]
            r.send(
                wire.ReplicationError(
                    code="UPLOAD_REFUSED",
                    message="out-of-order piece or over the limit",
                )
            )
            return
        buf += msg.data
        r.upload_bytes += len(msg.data)

    # --- write-back -------------------------------------------------------------------

    async def _write_back(self, r: Replica, feed: Feed, msg: wire.WriteBack) -> None:
        session = self.gw.sessions.get(r.session_id)
        if session is None:
            r.send(
                wire.WriteBackResult(
                    rejected=[
                        wire.Rejected(e.localSeq, "not_found", "no such session")
                        for e in msg.entries
                    ]
                )
            )
            return
        uploads = {}
        for e in msg.entries:
            if e.content is None and e.contentHash in r.uploads:
                uploads[e.contentHash] = bytes(r.uploads[e.contentHash])
        async with feed.write_lock:
            accepted, rejected, changes = await self.gw.db.run(
                _apply_writeback, r.session_id, r.replica_id, msg.entries, uploads
            )
        for h in uploads:
            buf = r.uploads.pop(h, None)
            if buf is not None:
                r.upload_bytes -= len(buf)
        self.writebacks_accepted += len(accepted)
        self.writebacks_rejected += len(rejected)
        for change in changes:
            on_change = session.workspace.on_change
            if on_change is not None:
                # file_changed to /ws clients, and (through the listener) replicas
                on_change(change)
            else:
                self.on_change(session.id, change)
        r.send(wire.WriteBackResult(accepted=accepted, rejected=rejected))

    async def _ensure_schema(self) -> None:
        if not self._schema_ready:
            await self.gw.db.run(lambda conn: conn.executescript(SCHEMA))
            self._schema_ready = True

    def stats(self) -> dict[str, Any]:
        return {
            "replicas": sum(len(f.replicas) for f in self.feeds.values()),
            "accepted": self.writebacks_accepted,
            "rejected": self.writebacks_rejected,
        }


# --- queries (on the store's worker thread) -------------------------------------------


def _max_sequence(conn, session_id: str) -> int:
    row = conn.execute(
        "SELECT MAX(rowid) FROM file_iterations WHERE session_id = ?", (session_id,)
    ).fetchone()
    return row[0] or 0


def _rows_after(conn, session_id: str, after: int, limit: int) -> list[tuple]:
    return conn.execute(
        "SELECT i.rowid, i.path, i.iteration, i.size, i.hash, i.deleted, i.renamed_from,"
        " CASE WHEN i.deleted = 0 AND i.size < ? THEN i.content END, m.permissions"
        " FROM file_iterations i LEFT JOIN replication_modes m"
        " ON m.session_id = i.session_id AND m.path = i.path AND m.iteration = i.iteration"
        " WHERE i.rowid > ? AND i.session_id = ? ORDER BY i.rowid LIMIT ?",
        (wire.INLINE_LIMIT, after, session_id, limit),
    ).fetchall()


def _compact(rows: list[tuple]) -> list[wire.Notification]:
    """The latest state of each path in ``rows``, in sequence order; a rename is one
    Notification."""
    last: dict[str, tuple] = {}
    for row in rows:
        last[row[1]] = row
    ordered = sorted(last.values(), key=lambda r: r[0])
    folded: set[str] = set()
    by_path = {r[1]: r for r in ordered}
    out: list[wire.Notification] = []
    for (
        seq,
        path,
        iteration,
        size,
        digest,
        deleted,
        renamed_from,
        content,
        mode,
    ) in ordered:
        renamed_iteration = None
        if renamed_from and not deleted:
            old = by_path.get(renamed_from)
            # the old path's latest row is the deletion written together with this
            # creation
            if old is not None and old[5] and old[0] == seq - 1:
                folded.add(renamed_from)
                renamed_iteration = old[2]
            else:
                renamed_from = None
        else:
            renamed_from = None
        out.append(
            wire.Notification(
                sequence=seq,
                filepath=path,
                contentHash=digest,
                size=size,
                permissions=0
                if deleted
                else (mode if mode is not None else DEFAULT_MODE),
                isDeletion=bool(deleted),
                inlineContent=None if content is None else bytes(content),
                iteration=iteration,
                renamedFrom=renamed_from,
                renamedFromIteration=renamed_iteration,
            )
        )
    return [n for n in out if not (n.isDeletion and n.filepath in folded)]


def _content_piece(
    conn, session_id: str, digest: str, offset: int, size: int
) -> tuple | None:
    return conn.execute(
        "SELECT size, substr(content, ?, ?) FROM file_iterations"
        " WHERE session_id = ? AND hash = ? AND deleted = 0 LIMIT 1",
        (offset + 1, size, session_id, digest),
    ).fetchone()


def _content_pieces(
    conn, session_id: str, wanted: list[tuple[str, int]], size: int, budget: int
) -> list:
    """The first piece of each (hash, offset) in order, stopping once `budget` bytes are
    read."""
    out = []
    total = 0
    for digest, offset in wanted:
        row = _content_piece(conn, session_id, digest, offset, size)
        out.append(row)
        total += len(row[1] or b"") if row is not None else 0
        if total >= budget:
            break
    return out


def _apply_writeback(
    conn,
    session_id: str,
    replica_id: str,
    entries: list[wire.WriteBackEntry],
    uploads: dict[str, bytes],
) -> tuple[list, list, list[FileChange]]:
    accepted: list[wire.Accepted] = []
    rejected: list[wire.Rejected] = []
    changes: list[FileChange] = []
    ws = Workspace(conn, session_id)
    for e in entries:
        done = conn.execute(
            "SELECT accepted, iteration, reason, message FROM replication_writebacks"
            " WHERE session_id = ? AND replica_id = ? AND local_seq = ?",
            (session_id, replica_id, e.localSeq),
        ).fetchone()
        if done is not None:  # a resend: the first answer, and nothing written again
            if done[0]:
                accepted.append(wire.Accepted(e.localSeq, done[1]))
            else:
                rejected.append(
                    wire.Rejected(e.localSeq, done[2], done[3] or "", done[1])
                )
            continue
        result = _apply_one(conn, ws, session_id, e, uploads, changes)
        if isinstance(result, wire.Accepted):
            accepted.append(result)
            conn.execute(
                "INSERT OR REPLACE INTO replication_writebacks VALUES (?, ?, ?, 1, ?, NULL, NULL)",
                (session_id, replica_id, e.localSeq, result.iteration),
            )
        else:
            rejected.append(result)
            # that one may succeed when resent with content
            if result.reason != "content_missing":
                conn.execute(
                    "INSERT OR REPLACE INTO replication_writebacks VALUES (?, ?, ?, 0, ?, ?, ?)",
                    (
                        session_id,
                        replica_id,
                        e.localSeq,
                        result.currentIteration,
                        result.reason,
                        result.message,
                    ),
                )
    return accepted, rejected, changes


def _apply_one(
    conn,
    ws: Workspace,
    session_id: str,
    e: wire.WriteBackEntry,
    uploads: dict[str, bytes],
    changes: list[FileChange],
) -> wire.Accepted | wire.Rejected:
    try:
        path = normalize_path(e.filepath)
    except WorkspaceError as err:
        return wire.Rejected(e.localSeq, "invalid_path", err.message)
    head = conn.execute(
        "SELECT iteration, hash, deleted FROM file_heads WHERE session_id = ? AND path = ?",
        (session_id, path),
    ).fetchone()
    current = head[0] if head else 0
    current_hash = "" if head is None or head[2] else head[1]
    wanted = "" if e.isDeletion else e.contentHash
    if e.baseIteration != current:
        if wanted == current_hash:
            # upstream already holds exactly this
            return wire.Accepted(e.localSeq, current)
        return wire.Rejected(
            e.localSeq,
            "conflict",
            f"{path} is at iteration {current}; this write was based on {e.baseIteration}",
            current,
        )
    if e.isDeletion:
        if not current_hash:
            return wire.Accepted(e.localSeq, current)
        deletion = ws.delete(path)
        changes.append(deletion)
        return wire.Accepted(e.localSeq, deletion.iteration)
    content = e.content if e.content is not None else uploads.get(e.contentHash)
    if content is None:
        return wire.Rejected(
            e.localSeq,
            "content_missing",
            "no content and no upload with that hash",
            current,
        )
    if hashlib.sha256(content).hexdigest() != e.contentHash:
        return wire.Rejected(
            e.localSeq, "hash_mismatch", "content does not match contentHash", current
        )
    change = ws.write(path, content)
    if change is None:
        return wire.Accepted(e.localSeq, current)
    changes.append(change)
    mode = e.permissions & 0o7777
    if mode and mode != DEFAULT_MODE:
        conn.execute(
            "INSERT OR REPLACE INTO replication_modes VALUES (?, ?, ?, ?)",
            (session_id, path, change.iteration, mode),
        )
    return wire.Accepted(e.localSeq, change.iteration)
