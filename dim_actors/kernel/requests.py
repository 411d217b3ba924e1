"""Request ids, and where a request came from.

A request id travels with a command and its answer across both processes (the
supervisor's actors and the connection process). Its origin decides what becomes of the
answer: a page's goes back to the page, the router's updates its stores, an outbox
item's settles the item, the connection's own feeds a rejoin or a catch-up. The origin
is read from the id alone, so every origin owns one range of ids, in the table below,
and nothing else writes a range or compares an id with a constant.

Pure, and free of our other modules: the connection process imports it (and never
pykka).
"""

from __future__ import annotations

import threading
from typing import Literal

Origin = Literal["page", "outbox", "router", "desktop", "connection"]

# Ids per origin: at a thousand requests a second, 35 years of them.
BLOCK = 1 << 40

# One range per origin, disjoint, each counted away from 0 in the order given. Ids
# outside every range are unknown: 0 (a command nobody waits for), everything from BLOCK
# up and everything from -4 * BLOCK down, which is where a new origin's block goes.
RANGES: dict[Origin, range] = {
    # The UI bridge's numbering of the page's commands (the page itself sends none).
    "page": range(1, BLOCK),
    # -itemId: an outbox item's SQLite row id, so its id survives reconnects and
    # restarts.
    "outbox": range(-1, -BLOCK, -1),
    # The router's own requests (list_sessions on connecting): answers only update its
    # stores.
    "router": range(-BLOCK, -2 * BLOCK, -1),
    # The tray's commands (sync pause and resume), handed to the router like the page's.
    "desktop": range(-2 * BLOCK, -3 * BLOCK, -1),
    # The connection process's own requests (rejoin, catch-up page, history): answers
    # feed them.
    "connection": range(-3 * BLOCK, -4 * BLOCK, -1),
}


def origin_of(req_id: int) -> Origin | Literal["unknown"]:
    """The origin whose range holds `req_id`; "unknown" for an id in none."""
    for origin, ids in RANGES.items():
        if req_id in ids:
            return origin
    return "unknown"


class RequestIdsExhausted(RuntimeError):
    """An origin used up its range: going on would hand out another origin's ids."""


class Allocator:
    """The request ids of one origin, each handed out once, in its range's order. Safe
    to share between threads (the tray's and the main thread take the desktop's)."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self._ids = iter(RANGES[origin])
        self._lock = threading.Lock()

    def __next__(self) -> int:
        # Running out is an error, not the end of an iteration: never StopIteration.
        with self._lock:
            req_id = next(self._ids, None)
        if req_id is None:
            raise RequestIdsExhausted(
                f"the {self.origin} request ids are used up ({RANGES[self.origin]})"
            )
        return req_id


def outbox_request_id(item_id: int) -> int:
    """The request id of outbox item `item_id`: derived from the item, not allocated, so
    the same item keeps its id each time it is sent."""
    req_id = -item_id
    if origin_of(req_id) != "outbox":
        raise ValueError(
            f"outbox item {item_id} has no request id: its id is outside 1..{BLOCK - 1}"
        )
    return req_id


def outbox_item_id(req_id: int) -> int:
    """The outbox item that request id `req_id` (of the outbox's range) was sent for."""
    if origin_of(req_id) != "outbox":
        raise ValueError(f"request id {req_id} is not an outbox item's")
    return -req_id
