"""sync_status: what the page is told of one sync, built from the journal's records
(state.py).

Pure but for `conflict_view` with texts: the conflict's two versions are read from disk
only then (sync_status asks for them; the statuses pushed after a resolve do not)."""

from __future__ import annotations

import heapq
from pathlib import Path
from typing import Any

from dim_actors.sync.paths import UnsafePath, confined
from dim_actors.sync.state import COUNTS, Conflict, Entry, Sync

TEXT_LIMIT = 256 << 10
MIRROR_NOTE = (
    "This gateway has no replication endpoint: the agent's files are mirrored here, "
    "but your local edits stay on this computer and are not sent to the agent."
)
LOCAL_EDITS_SHOWN = 100
# sync_status.failed lists at most this many (failedCount has them all)
FAILED_SHOWN = 100
# sync_status.recentUploads: the newest local changes upstream accepted, at most this
# many
RECENT_UPLOADS_SHOWN = 200


def status_view(
    s: Sync,
    *,
    max_file: int,
    echo_counts: dict[str, int],
    listed: int | None,
    texts: bool = True,
    uploads: list[dict[str, Any]] | None = None,
    watching: bool = True,
) -> dict[str, Any]:
    """The status of a sync. `echo_counts`: echoesSuppressed / echoesLeaked, counted by
    the watcher; `listed`: how many files the watcher's listing of the folder has found
    so far, if one runs; `uploads`: the write-backs upstream accepted, oldest first
    ({path, iteration, deleted, at}: the iteration each became); `watching`: whether the
    folder's watch was asked for (a new sync's first files are written before it)."""
    pending = sum(1 for e in s.entries.values() if e.state in ("pending", "sent"))
    # a link the gateway refuses (bad token, unknown session) is an error until it
    # connects
    state = "error" if s.state == "active" and s.link == "refused" else s.state
    return {
        "sessionId": s.sid,
        "state": state,
        "localDir": s.local_dir,
        "error": s.error,
        "warning": s.warning,
        "filesTracked": sum(1 for f in s.files.values() if f.local_hash),
        "lastSyncAt": s.last_sync_at,
        "pendingWrites": pending,
        "heldWrites": sum(1 for e in s.entries.values() if e.state == "held"),
        "watching": watching and s.state == "active",
        "conflicts": [
            conflict_view(s.root, c, texts)
            for c in sorted(s.conflicts.values(), key=lambda c: c.path)
        ],
        # mirror: read-only (the gateway has no /replicate); pendingWrites are then kept
        # here, unsent
        "mode": "mirror" if s.read_only else "two-way",
        "modeNote": MIRROR_NOTE if s.read_only else None,
        "localEdits": local_edits(s),
        "link": s.link,
        "linkDetail": s.link_detail,
        "lastSequence": s.last_seq,
        "incidents": s.incidents[-10:],
        "rejected": s.rejected[-20:],
        # items that could not be synced, each with its reason (not acknowledged
        # upstream; retried)
        "failed": failed_view(s),
        "failedCount": len(s.failed),
        "maxFileSize": max_file,
        "freeSpace": s.free,
        "minFreeSpace": s.floor,
        "stats": {**s.counts, **echo_counts},
        "scan": scan_view(s, listed),
        "recentUploads": (uploads or [])[-RECENT_UPLOADS_SHOWN:],
    }


def refused_status(
    sid: str,
    local_dir: str | None,
    code: str,
    message: str,
    *,
    max_file: int,
    echo_counts: dict[str, int],
) -> dict[str, Any]:
    """The status of a sync that never started: nothing runs; `error` says why,
    `errorCode` is start_sync's error code (FOLDER_NOT_EMPTY: start_sync again with
    confirm to go ahead)."""
    return {
        "sessionId": sid,
        "state": "stopped",
        "localDir": local_dir,
        "error": f"Sync did not start on its own: {message}",
        "errorCode": code,
        "warning": None,
        "filesTracked": 0,
        "lastSyncAt": None,
        "pendingWrites": 0,
        "heldWrites": 0,
        "conflicts": [],
        "mode": "two-way",
        "modeNote": None,
        "localEdits": [],
        "link": "stopped",
        "linkDetail": "",
        "lastSequence": 0,
        "incidents": [],
        "rejected": [],
        "failed": [],
        "failedCount": 0,
        "maxFileSize": max_file,
        "freeSpace": None,
        "minFreeSpace": None,
        "scan": None,
        "recentUploads": [],
        "stats": {**dict.fromkeys(COUNTS, 0), **echo_counts},
    }


def failed_view(s: Sync) -> list[dict[str, Any]]:
    shown = sorted(s.failed.values(), key=lambda fl: (fl.since, fl.path))[:FAILED_SHOWN]
    return [
        {
            "path": fl.path,
            "reason": fl.reason,
            "direction": fl.direction,
            "since": int(fl.since * 1000),
            "retries": fl.retries,
            "sequence": fl.note.sequence if fl.note is not None else None,
        }
        for fl in shown
    ]


def local_edits(s: Sync) -> list[dict[str, Any]]:
    """Local changes not yet accepted upstream (conflicts apart), by path: the newest
    per path, at most LOCAL_EDITS_SHOWN. In a mirror they are what stays on this
    computer."""
    latest: dict[str, Entry] = {}
    for e in s.entries.values():
        if e.state in ("pending", "sent") and e.path not in s.conflicts:
            latest[e.path] = e
    # the first few of up to 100,000 paths (a big folder's first upload): no need to
    # sort them all
    return [
        {"path": p, "deleted": latest[p].deletion}
        for p in heapq.nsmallest(LOCAL_EDITS_SHOWN, latest)
    ]


def conflict_view(root: Path, c: Conflict, texts: bool) -> dict[str, Any]:
    view: dict[str, Any] = {
        "path": c.path,
        "upstreamIteration": c.iteration,
        "upstreamHash": c.upstream_hash,
        "upstreamDeleted": not c.upstream_hash,
        "localHash": c.local_hash,
        "localDeleted": not c.local_hash,
        "upstreamCopy": c.copy,
        "since": int(c.since * 1000),
    }
    if texts:
        view["local"] = text(root, c.path)
        view["upstream"] = (
            text(root, c.copy) if c.copy else ("" if not c.upstream_hash else None)
        )
        view["binary"] = bool(
            (c.local_hash and view["local"] is None)
            or (c.upstream_hash and c.copy and view["upstream"] is None)
        )
    return view


def scan_view(s: Sync, listed: int | None) -> dict[str, Any] | None:
    """sync_status.scan: how far the first look at a folder's files has come, or None.
    listing: the watcher walks the folder (total not known yet); indexing: the journal
    records what it found, `done` of `total` files."""
    if s.backlog:
        return {
            "phase": "indexing",
            "done": sum(w.done for w in s.backlog),
            "total": sum(len(w.changes) for w in s.backlog),
        }
    if listed is not None and s.state == "active":
        return {"phase": "listing", "done": listed, "total": None}
    return None


def text(root: Path, rel: str | None) -> str | None:
    """A file's text for the conflict view: None when absent, binary or too large."""
    if not rel:
        return None
    try:
        p = confined(root, rel)
        if not p.is_file() or p.stat().st_size > TEXT_LIMIT:
            return None
        data = p.read_bytes()
        if b"\0" in data:
            return None
        return data.decode("utf-8")
    except (UnsafePath, OSError, UnicodeDecodeError):
        return None
