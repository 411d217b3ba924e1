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

# events per get_events request (the gateway caps a page at 10,000)
OLDER_PAGE = 5000
# A fetch that finds no turn begun within this many events (one very long turn) gives
# what it has, the oldest turn without its start.
OLDER_MAX_EVENTS = 50_000


class _Head(msgspec.Struct):
    type: str = ""
    sessionId: str | None = None
    seq: int | None = None


_head = msgspec.json.Decoder(_Head)


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
            head = _head.decode(item)
            if head.seq is None or head.seq <= last:
                continue
            last = head.seq
            if head.seq <= self.upto and head.sessionId in (None, self.sessionId):
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
        if self.start > 0 and not self._begun() and len(self.events) < OLDER_MAX_EVENTS:
            # one long turn fills the range: reach further back for its start
            self.upto = self.start
            self.start = max(0, self.start - 2 * OLDER_PAGE)
            self.after = self.start
            return True
        return False

    def _begun(self) -> bool:
        return any(
            e.type == "turn_started" and _turn_id(e) not in self.held
            for e in self.events
        )

    def result(self) -> dict[str, Any]:
        """The turns fetched, oldest first, and how far back the gateway holds more
        (olderAtGateway: the seq the next fetch reaches up to; 0: none)."""
        scratch = Stores()
        started: set[str] = set()
        for e in self.events:
            if e.type == "turn_started":
                started.add(_turn_id(e) or "")
            try:
                scratch.apply(e)
            except BadEvent:
                pass  # kept in the scratch's slot; the page sees the turn without it
        chat = scratch.chats.get(self.sessionId)
        turns = [
            t
            for t in (chat.turns if chat is not None else [])
            if t.turnId not in self.held and (self.start == 0 or t.turnId in started)
        ]
        if self.start > 0 and not turns and chat is not None:
            # nothing begun in reach: the oldest turn without its start
            turns = [t for t in chat.turns if t.turnId not in self.held][:1]
        first = min((t.firstSeq or 0 for t in turns), default=self.before + 1)
        return {
            "sessionId": self.sessionId,
            "turns": [t.snapshot() for t in turns],
            "olderTurns": 0,
            "olderAtGateway": max(0, first - 1) if self.start > 0 else 0,
        }


class _TurnOf(msgspec.Struct):
    turnId: Any = None


_turn_of = msgspec.json.Decoder(_TurnOf)


def _turn_id(e: GatewayEvent) -> str | None:
    value = _turn_of.decode(e.raw).turnId
    return value if isinstance(value, str) else None
