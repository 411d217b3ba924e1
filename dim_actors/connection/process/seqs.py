"""What the connection remembers of each session's seqs: gaps to refetch, and duplicates
whose content differs."""

from __future__ import annotations

import collections

import msgspec

# What each joined session remembers of its recent events, to tell a conflicting
# duplicate: the last RECENT_SEQS seqs, their bytes while they fit in RECENT_BYTES, a
# hash of their bytes past that.
RECENT_SEQS = 256
RECENT_BYTES = 64 << 10
# Gap refetches in a row that found nothing between (or could not fetch it) before a
# gateway is taken to skip seqs on purpose.
EMPTY_GAP_REFETCHES_MAX = 3


def seq_gap(last: int, seq: int, dense: str) -> tuple[int, int] | None:
    """A live event's seq after `last` delivered: the missing range (after, before) to
    fetch, or None when nothing is missing, it is a duplicate, or the gateway is known
    to skip seqs."""
    if seq <= last + 1 or dense == "no":
        return None
    return last, seq


def same_content(a: bytes, b: bytes) -> bool:
    """Whether two events say the same, whatever their key order or spacing: a live
    frame and the stored copy in a catch-up page may be written differently."""
    if a == b:
        return True
    try:
        return msgspec.json.decode(a) == msgspec.json.decode(b)
    except (msgspec.DecodeError, RecursionError):
        return False


class RecentSeqs:
    """The recent events of one session, to tell a seq that comes again with other
    content. Cheap on the hot path (a dict entry per event); a hash is taken only of
    bytes that no longer fit, and the JSON comparison runs only for a duplicate whose
    bytes differ."""

    __slots__ = ("keep", "budget", "entries", "kept_bytes")

    def __init__(self, keep: int = RECENT_SEQS, budget: int = RECENT_BYTES):
        self.keep, self.budget = keep, budget
        # seq -> the event's bytes, or the hash of them once they no longer fit; oldest
        # first
        self.entries: collections.OrderedDict[int, bytes | int] = (
            collections.OrderedDict()
        )
        self.kept_bytes = 0

    def add(self, seq: int, data: bytes) -> None:
        entries = self.entries
        old = entries.pop(seq, None)
        if isinstance(old, bytes):
            self.kept_bytes -= len(old)
        entries[seq] = data
        self.kept_bytes += len(data)
        if len(entries) > self.keep:
            gone = entries.popitem(last=False)[1]
            if isinstance(gone, bytes):
                self.kept_bytes -= len(gone)
        if self.kept_bytes > self.budget:
            # Only with large events: the oldest keep just a hash until the rest fits.
            for s, kept in entries.items():
                if self.kept_bytes <= self.budget:
                    break
                if isinstance(kept, bytes):
                    entries[s] = hash(kept)
                    self.kept_bytes -= len(kept)

    def conflicts(self, seq: int, data: bytes) -> bool:
        """Whether `data` says something else than the first event of this seq (False
        when that one is no longer remembered)."""
        first = self.entries.get(seq)
        if first is None:
            return False
        if isinstance(first, bytes):
            return not same_content(first, data)
        return first != hash(data)
