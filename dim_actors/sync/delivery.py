"""Upstream changes on their way to disk: the items a decision leads to (a write, a
conflict copy, accept_upstream's write) and the materializer's batches of them, which
sequences are delivered (and so may be acknowledged), and the states that failed, which
hold the acknowledgement back until they are tried again. The records are changed in
memory only (the one file touched here is a conflict copy no longer wanted); the journal
writes what must be kept and sends the messages."""

from __future__ import annotations

import logging
import time

import msgspec

from dim_actors.messages import MaterializeItem
from dim_actors.sync import reconcile
from dim_actors.sync.ignore import conflict_copy_name
from dim_actors.sync.paths import UnsafePath, confined
from dim_actors.sync.reconcile import failure_log_level, retry_delay
from dim_actors.sync.state import Failure, Sync, Writing
from dim_actors.wire import replication as wire

log = logging.getLogger(__name__)

MAX_BATCH = 512  # items in one Materialize, and failed states retried at one tick
BATCH_BYTES = 1 << 20  # inline content in one Materialize


def batches(items: list[MaterializeItem]) -> list[list[MaterializeItem]]:
    """Items in order, cut into Materialize batches of at most MAX_BATCH items or about
    BATCH_BYTES of inline content."""
    out: list[list[MaterializeItem]] = []
    batch: list[MaterializeItem] = []
    size = 0
    for item in items:
        batch.append(item)
        size += len(item.content or b"")
        if len(batch) >= MAX_BATCH or size >= BATCH_BYTES:
            out.append(batch)
            batch, size = [], 0
    if batch:
        out.append(batch)
    return out


# --- sequences ------------------------------------------------------------------------


def expect(s: Sync, seq: int) -> None:
    """One more item of sequence `seq` to deliver before it is done."""
    s.outstanding[seq] = s.outstanding.get(seq, 0) + 1


def done(s: Sync, seq: int) -> None:
    """One item of sequence `seq` delivered (applied, refused, or failed for good)."""
    left = s.outstanding.get(seq, 0) - 1
    if left > 0:
        s.outstanding[seq] = left
    else:
        s.outstanding.pop(seq, None)
    s.max_seen = max(s.max_seen, seq)


def ack_cursor(s: Sync) -> int | None:
    """The sequence up to which every item is delivered, when it moved past the last one
    acknowledged; else None."""
    cursor = (min(s.outstanding) - 1) if s.outstanding else s.max_seen
    return cursor if cursor > s.last_seq else None


def forget_sequences(s: Sync) -> None:
    """The outstanding sequences are forgotten (a stop, a full resync): the catch-up
    that follows offers the failed states again (they were never acknowledged), and that
    replaces them."""
    s.outstanding.clear()
    for fl in s.failed.values():
        fl.counted = False
    s.notes.clear()
    s.tries.clear()


# --- failures -------------------------------------------------------------------------


def unfail(s: Sync, path: str, n: wire.Notification) -> None:
    """A state of `path` comes from upstream (again, after a reconnect, or a newer one):
    it replaces the failed one, whose delivery is done (this one is counted on its own);
    its outcome decides what happens next. (A retry takes the failure off before it
    comes here.)"""
    old = s.failed.get(path)
    if old is None or old.direction != "upstream":
        return
    del s.failed[path]
    s.dirty = True
    if old.note is not None and old.note.sequence == n.sequence:
        s.tries[path] = (old.since, old.retries, old.reason)
    if old.counted and old.note is not None:
        done(s, old.note.sequence)


def fail(
    s: Sync,
    path: str,
    n: wire.Notification | None,
    reason: str,
    retry: bool,
    counted: bool = True,
) -> None:
    """An upstream state that could not be written: listed with its reason, its sequence
    left outstanding (never acknowledged), tried again later (`retry`) or when a newer
    state comes."""
    since, retries, last = s.tries.pop(path, (time.time(), -1, None))
    retries += 1
    log.log(
        failure_log_level(reason, last),
        "sync %s: could not write %s (try %d): %s",
        s.sid,
        path,
        retries + 1,
        reason,
    )
    if n is not None and n.renamedFrom:
        # that half is handled
        n = msgspec.structs.replace(n, renamedFrom=None, renamedFromIteration=None)
    s.failed[path] = Failure(
        path,
        reason,
        "upstream",
        since,
        retries,
        n,
        retry and n is not None,
        time.monotonic() + retry_delay(retries),
        counted and n is not None,
    )
    s.dirty = True


def write_failed(
    s: Sync,
    path: str,
    iteration: int,
    reason: str,
    pending: Writing | None,
    note: wire.Notification | None,
    counted: bool,
) -> bool:
    """A write that failed, listed to be tried again; True when its failure now holds
    the delivery (the sequence stays outstanding)."""
    if note is None and pending is not None:
        # not from a notification (its note was forgotten): tried again all the same, as
        # a state with no sequence to hold back
        note = wire.Notification(
            sequence=0,
            filepath=path,
            contentHash=pending.target,
            size=0,
            permissions=s.file(path).mode,
            isDeletion=not pending.target,
            iteration=iteration,
        )
    fail(s, path, note, reason, True, counted)
    return note is not None and counted


def take_due(s: Sync, now: float) -> list[Failure]:
    """The failed upstream states due another try (at most MAX_BATCH), taken off the
    list: their deliveries stay outstanding, and this try's outcome is what makes them
    done."""
    # Not counted (after a stop or a full resync): the catch-up offers it again; retried
    # here it could be done before what the catch-up brings ahead of it. A state with no
    # sequence is.
    due = [
        fl
        for fl in s.failed.values()
        if fl.direction == "upstream"
        and fl.retry
        and fl.note is not None
        and (fl.counted or fl.note.sequence == 0)
        and fl.next_at <= now
        and fl.path not in s.materializing
    ][:MAX_BATCH]
    for fl in due:
        del s.failed[fl.path]
        s.tries[fl.path] = (fl.since, fl.retries, fl.reason)
    return due


# --- writes ---------------------------------------------------------------------------


def write(
    s: Sync, n: wire.Notification, path: str, target: str, renamed_from: str | None
) -> MaterializeItem:
    """An upstream state to write at `path` (reconcile: materialize), in flight from now
    on. A rename's new path is written by moving the old file when that file is exactly
    the content."""
    item = MaterializeItem(
        path=path,
        iteration=n.iteration,
        contentHash=target,
        size=n.size,
        permissions=n.permissions,
        isDeletion=n.isDeletion,
        content=n.inlineContent,
        expectedHash=s.files[path].local_hash,
    )
    old = renamed_from
    if old is not None and reconcile.move_source(
        n.contentHash, s.files.get(old), old in s.conflicts, s.entries.has_path(old)
    ):
        item.renamedFrom, item.renamedFromHash = old, s.files[old].local_hash
    s.materializing[path] = Writing(n.iteration, target, n.sequence)
    s.notes[path] = n
    return item


def write_copy(
    s: Sync, path: str, iteration: int, target: str, n: wire.Notification | None
) -> MaterializeItem | None:
    """A conflict's upstream version, to write beside the file; None for a deletion
    (nothing to write beside it: its delivery is done)."""
    if not target:
        if n is not None:
            done(s, n.sequence)
        return None
    s.materializing[path] = Writing(iteration, target, n.sequence if n else 0)
    if n is not None:
        s.notes[path] = n
    return MaterializeItem(
        path=path,
        iteration=iteration,
        contentHash=target,
        size=n.size if n else 0,
        permissions=s.file(path).mode,
        content=n.inlineContent if n else None,
        conflictCopy=conflict_copy_name(path, iteration),
    )


def accept(s: Sync, path: str) -> MaterializeItem:
    """accept_upstream: the conflict's upstream version written over the file (moved
    from its copy when there is one). The conflict stays until the write lands: if it
    fails, nothing the user chose is lost, and the local file is not later sent upstream
    as if it were kept."""
    c = s.conflicts[path]
    s.materializing[path] = Writing(c.iteration, c.upstream_hash, 0)
    s.accepting.add(path)
    s.dirty = True
    return MaterializeItem(
        path=path,
        iteration=c.iteration,
        contentHash=c.upstream_hash,
        permissions=s.file(path).mode,
        isDeletion=not c.upstream_hash,
        expectedHash=None,
        renamedFrom=c.copy,
        renamedFromHash=c.upstream_hash if c.copy else None,
    )


def remove_copy(s: Sync, copy: str) -> None:
    """A conflict copy that is no longer wanted, gone from the folder (if it still can
    be)."""
    try:
        confined(s.root, copy).unlink(missing_ok=True)
    except (UnsafePath, OSError):
        pass
