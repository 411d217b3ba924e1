"""The sessions this client joined, and what the router has been given of each."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from dim_actors.connection.process.sender import Sender
from dim_actors.connection.process.seqs import RecentSeqs
from dim_actors.connection.uplink import Uplink
from dim_actors.messages import CatchupGap, PipeEvent
from dim_actors.wire import protocol


class Sessions:
    """Per joined session: the last seq delivered (after a reconnect, or a restart of
    this process, it is rejoined and caught up, and older seqs are dropped), its recent
    events (a seq that comes again with other content is reported instead of silently
    dropped) and a gap told after a given-up catch-up (the first event past it shows the
    gap's end). `joined` changes under the connection's lock: the main thread reads it
    too."""

    def __init__(
        self,
        uplink: Uplink,
        lock: threading.Lock,
        sender: Sender,
        bad_frame: Callable[[str, bytes], None],
        resume: dict[str, int] | None = None,
    ):
        self.uplink, self.lock, self.sender = uplink, lock, sender
        self.bad_frame = bad_frame
        self.joined: dict[str, int] = dict(resume or {})
        self.recent: dict[str, RecentSeqs] = {}
        # Sessions whose catch-up gave up after this seq, and why.
        self.gap_after: dict[str, tuple[int, str]] = {}
        # When the user last sent a command for each session (rejoins go most recent
        # first), and the sessions used since this connection came up: their joins and
        # catch-up pages go in the user's lane of the sender (sendqueue.py), not behind
        # the other sessions' rejoins.
        self.last_used: dict[str, float] = {}
        self.user_sessions: set[str] = set()
        # Sessions to replay from their first event (a restarted router rebuilds its
        # stores).
        self.replay_all: set[str] = set()

    def deliver(
        self,
        data: bytes,
        head: protocol.EventHead,
        reply_to: int | None,
        replay: bool = False,
    ) -> None:
        sid, seq = head.sessionId, head.seq
        joined = self.joined
        if sid is not None and seq is not None and sid in joined:
            if seq <= joined[sid] and reply_to is None and not replay:
                self._check_duplicate(sid, seq, data)
                # already delivered (before a reconnect, or the gateway sent it twice)
                return
            self._remember(sid, seq, data)
            if sid in self.gap_after:
                self.gap_ends(sid, seq)
            joined[sid] = max(seq, joined[sid])
        self.uplink.put_event(
            PipeEvent(data, head.type, sid, seq, reply_to, time.time_ns())
        )

    def _remember(self, sid: str, seq: int, data: bytes) -> None:
        recent = self.recent.get(sid)
        if recent is None:
            recent = self.recent[sid] = RecentSeqs()
        recent.add(seq, data)

    def _check_duplicate(self, sid: str, seq: int, data: bytes) -> None:
        """A seq delivered already: the first copy stands; one whose content differs is
        reported."""
        recent = self.recent.get(sid)
        if recent is not None and recent.conflicts(seq, data):
            self.bad_frame(
                f"session {sid}: seq {seq} came again with other content (the first one is kept)",
                data,
            )

    def gap_given_up(self, sid: str, after: int, why: str) -> None:
        """A catch-up after `after` ended without its events: a gap still open from an
        earlier give-up starts sooner."""
        earlier = self.gap_after.get(sid)
        self.gap_after[sid] = (
            (min(after, earlier[0]), earlier[1]) if earlier else (after, why)
        )

    def gap_ends(self, sid: str, before: int | None) -> None:
        """The first seq known past a given-up catch-up: a gap only if it is not the
        very next one."""
        after, why = self.gap_after.pop(sid)
        if before is None or before > after + 1:
            self.uplink.put_control(
                CatchupGap(sessionId=sid, afterSeq=after, beforeSeq=before, reason=why)
            )

    def used(self, sid: str | None) -> None:
        """The user sent a command for `sid`: the session's own rejoin, if it still
        waits, goes before the command, and its catch-up no longer waits behind the
        other sessions'."""
        if sid is None:
            return
        # only joined sessions are rejoined: the others need no place in that order
        if sid in self.joined:
            self.last_used[sid] = time.monotonic()
        self.user_sessions.add(sid)
        self.sender.pull_forward(sid)

    def join(self, sid: str) -> None:
        with self.lock:
            self.joined[sid] = 0

    def left(self, sid: str) -> None:
        with self.lock:
            self.joined.pop(sid, None)
        self.recent.pop(sid, None)
        self.last_used.pop(sid, None)

    def gone(self, sid: str) -> None:
        """Forgotten at once: nothing rejoins or catches it up again."""
        self.left(sid)
        self.gap_after.pop(sid, None)
        self.replay_all.discard(sid)

    def replay_everything(self) -> None:
        with self.lock:
            self.replay_all = set(self.joined)

    def to_rejoin(self) -> dict[str, int]:
        with self.lock:
            return dict(self.joined)
