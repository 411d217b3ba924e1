"""Local changes on their way upstream: the deletions a complete scan implies, the files
that cannot go (listed with why), which write-backs go next in what batch, whether a
batch of deletions may go at all, and what in flight goes again. The records are changed
in memory only; the journal records the changes, writes the records through and sends
the batch."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from dim_actors.messages import LocalFile, WriteBackItem
from dim_actors.sync import reconcile
from dim_actors.sync.ignore import GitIgnore, is_noise
from dim_actors.sync.state import Entry, Failure, Sync

log = logging.getLogger(__name__)

# local deletions wait this long, then the folder is checked before sending
DELETE_HOLD_S = 0.3
INFLIGHT_TIMEOUT_S = 15.0
MAX_BATCH = 512


def next_batch(s: Sync, now: float) -> list[Entry]:
    """The write-backs to send now: none while a batch is in flight, the link is down,
    or it is the read-only mirror (the gateway takes no writes; local changes stay
    pending here)."""
    if s.state != "active" or s.link != "connected" or s.inflight or s.read_only:
        return []
    # in journal order: ids only grow, and are added in order
    return reconcile.writeback_batch(
        s.entries.values(), s.conflicts, s.materializing, now, DELETE_HOLD_S, MAX_BATCH
    )


def deletion_guard(s: Sync, batch: list[Entry]) -> str | None:
    """Why a batch with deletions must not go (the sync folder was deleted or emptied:
    nothing is deleted upstream, sync pauses), or None."""
    if not any(e.deletion for e in batch):
        return None
    # Count every deletion waiting, not only this batch's: an rmtree's deletions are
    # recorded a few milliseconds apart, and the first one alone must not slip out
    # before the rest is seen.
    waiting = sum(1 for e in s.entries.values() if e.deletion and e.state == "pending")
    root = s.root
    if not root.is_dir():
        why = f"the sync folder {root} was deleted or moved away"
    elif waiting >= 2 and not has_files(root):
        why = f"the sync folder {root} was emptied"
    else:
        return None
    return (
        f"{why}; sync is paused and nothing was deleted upstream. start_sync again to restore "
        "the files from upstream"
    )


def send(s: Sync, e: Entry) -> WriteBackItem:
    """`e` marked sent (in memory), as the item that sends it."""
    f = s.file(e.path)
    if e.base is None:  # journaled by a version that did not record it
        e.base = f.iteration
    e.state = "sent"
    s.inflight.add(e.seq)
    return WriteBackItem(
        localSeq=e.seq,
        path=e.path,
        contentHash=e.hash,
        baseIteration=e.base,
        localPath=str(s.root / e.path),
        size=e.size,
        permissions=f.mode,
        isDeletion=e.deletion,
    )


def requeue(s: Sync) -> list[Entry]:
    """What is in flight goes again (a new link, a timeout, a stop): pending once more,
    in memory. The gateway answers a resend with its first answer."""
    again = []
    for seq in s.inflight:
        e = s.entries.get(seq)
        if e is not None:
            again.append(e)
            e.state = "pending"
    s.inflight.clear()
    return again


def timed_out(s: Sync, now: float) -> bool:
    return bool(s.inflight) and now - s.sent_at > INFLIGHT_TIMEOUT_S


def has_files(root: Path) -> bool:
    """Any file (not editor noise) anywhere under root."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        rel = os.path.relpath(dirpath, root)
        for name in filenames:
            if not is_noise(name if rel == "." else f"{rel}/{name}"):
                return True
    return False


# --- what a scan finds, and what cannot go --------------------------------------------


def scan_end(s: Sync, changes: list[LocalFile], extra_ignore: list[str]) -> list[str]:
    """The end of a complete listing: the local failures it does not hold are forgotten
    (gone, or renamed to a name that syncs); returns the tracked paths it does not hold
    that are gone from disk, which were deleted."""
    listed = {lf.path for lf in changes}
    for path in [
        p for p, fl in s.failed.items() if fl.direction == "local" and p not in listed
    ]:
        del s.failed[path]
        s.dirty = True
    if s.ignore is None:
        s.ignore = GitIgnore(s.root, extra_ignore)
    # a file the rules ignore is not in the listing: gone from disk, it is not a
    # deletion to send, as the watcher never reports one for it either (docs/sync.md §4)
    return [
        path
        for path, f in s.files.items()
        if f.local_hash
        and path not in listed
        and path not in s.materializing
        and not is_noise(path)
        and not os.path.lexists(s.root / path)
        and not s.ignore.ignored(path)
    ]


def unsyncable(s: Sync, lf: LocalFile, shown: str, code: str, max_file: int) -> None:
    """A local file that cannot be synced (reconcile.unsyncable): listed under `shown`
    with why, or its listing forgotten."""
    old = s.failed.get(shown)
    d = reconcile.unsyncable(lf, code, old, max_file)
    if d.kind == "fail":
        log.warning("sync %s: not syncing %s: %s", s.sid, shown, d.reason)
        s.failed[shown] = Failure(
            shown,
            d.reason,
            "local",
            old.since if old else time.time(),
            (old.retries + 1) if old else 0,
            retry=False,
        )
        s.dirty = True
    elif d.kind == "forget":
        del s.failed[shown]
        s.dirty = True


def syncable(s: Sync, path: str) -> None:
    """A local file that can be synced now (smaller again, or gone): its listing goes."""
    fl = s.failed.get(path)
    if fl is not None and fl.direction == "local":
        del s.failed[path]
        s.dirty = True
