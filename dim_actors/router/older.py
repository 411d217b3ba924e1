"""Turns older than the stores' window, fetched from the gateway as the user scrolls up to
them (`get_turns` past the oldest turn held; docs/protocol.md §11). Pure: the router
sends the `get_events` requests this asks for and hands their pages back.

A fetch asks the events up to `before` a page at a time, oldest first, and builds turns
from them with the stores' own rules (a scratch Stores: the same turn the page would
have seen live). A turn whose start lies before the fetched range is incomplete: it is
left for the next fetch, which reaches further back. Nothing here is kept: the stores'
window stays the size it is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from dim_actors.messages import GatewayEvent
from dim_actors.router.stores import BadEvent, Stores
from dim_actors.wire import protocol

# events per get_events request (the gateway caps a page at 10,000)
OLDER_PAGE = 5000
# A fetch that finds no turn begun within this many events (one very long turn) gives
# what it has, the oldest turn without its start.
OLDER_MAX_EVENTS = 50_000


class _Page(msgspec.Struct):
    events: list[msgspec.Raw] = []
    hasMore: bool = False


_page = msgspec.json.Decoder(_Page)


@dataclass
class OlderFetch:
    """One get_turns reaching past the window: the events wanted are those with a seq
    in (start, before]; `upto` is where the chunk being fetched ends."""

    sessionId: str
    before: int
    held: frozenset[str]
    start: int = 0
    after: int = 0
    upto: int = 0
    chunk: list[GatewayEvent] = field(default_factory=list)
    events: list[GatewayEvent] = field(default_factory=list)
    # turns whose turn_started is among the events (a turn is whole only then)
    started: set[str] = field(default_factory=set)
    # events of the pages that are not events at all (no readable envelope): left out
    unreadable: int = 0

    def __post_init__(self) -> None:
        self.start = max(0, self.before - OLDER_PAGE)
        self.after, self.upto = self.start, self.before

    def request(self) -> dict[str, Any]:
        return {
            "sessionId": self.sessionId,
            "afterSeq": self.after,
            "limit": OLDER_PAGE,
        }

    def on_page(self, raw: bytes) -> bool:
        """An event_list answering request(); True when another request follows."""
        page = _page.decode(raw)
        last = self.after
        for item in page.events:
            try:
                # the page's depth was checked where it came in (connection intake)
                head = protocol.decode_head(bytes(item), max_depth=None)
            except protocol.ProtocolError:
                self.unreadable += 1
                continue
            if head.seq is None or head.seq <= last:
                continue
            last = head.seq
            if head.seq > self.upto or head.sessionId not in (None, self.sessionId):
                continue
            if head.type == "turn_started" and head.turnId is not None:
                self.started.add(head.turnId)
            self.chunk.append(
                GatewayEvent(
                    raw=item, type=head.type, sessionId=self.sessionId, seq=head.seq
                )
            )
        if page.hasMore and self.after < last < self.upto:
            self.after = last  # seqs with holes: the range is not through yet
            return True
        self.events[:0] = self.chunk
        self.chunk = []
        begun = bool(self.started - self.held)
        if self.start > 0 and not begun and len(self.events) < OLDER_MAX_EVENTS:
            # one long turn fills the range: reach further back for its start
            self.upto = self.start
            self.start = max(0, self.start - 2 * OLDER_PAGE)
            self.after = self.start
            return True
        return False

    def result(self) -> dict[str, Any]:
        """The turns fetched, oldest first, and how far back the gateway holds more
        (olderAtGateway: the seq the next fetch reaches up to; 0: none)."""
        scratch = Stores()
        for e in self.events:
            try:
                scratch.apply(e)
            except BadEvent:
                pass  # kept in the scratch's slot; the page sees the turn without it
        chat = scratch.chats.get(self.sessionId)
        fetched = [t for t in (chat.turns if chat else []) if t.turnId not in self.held]
        turns = [t for t in fetched if self.start == 0 or t.turnId in self.started]
        if not turns:
            # nothing begun in reach: the oldest turn, without its start
            turns = fetched[:1]
        first = min((t.firstSeq or 0 for t in turns), default=self.before + 1)
        return {
            "sessionId": self.sessionId,
            "turns": [t.snapshot() for t in turns],
            "olderTurns": 0,
            "olderAtGateway": max(0, first - 1) if self.start > 0 else 0,
        }
