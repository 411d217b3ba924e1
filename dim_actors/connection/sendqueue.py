"""Which frame the sender sends next, and in which order sessions are rejoined (pure;
tests/test_send_priority.py).

Two lanes share the gateway's rate window (docs/connection.md, "Priority"):
* `user`: the user's commands, the outbox, keepalive pings, and the joins and catch-up pages of a
  session the user has used since the connection came up;
* `background`: the client's own bookkeeping (rejoins and catch-up pages after a reconnect, the
  router's own list_sessions, get_history after a failed catch-up).
A user frame goes first whenever the window has room; background frames may fill at most
two thirds of the window, so the last third is always free for the user's commands,
however long the rejoin backlog."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

Lane = Literal["user", "background"]


def background_cap(limit: int) -> int:
    """How many of the window's `limit` places background frames may hold at once."""
    if limit <= 0:
        return 0  # unpaced: no window at all
    return max(1, limit * 2 // 3)


def next_lane(
    user_waiting: bool,
    background_waiting: bool,
    in_window: int,
    background_in_window: int,
    limit: int,
) -> Lane | None:
    """The lane whose first frame goes now, or None: wait until a place in the window
    frees up (or a user frame arrives). `limit` 0 means no pacing."""
    if limit > 0 and in_window >= limit:
        return None
    if user_waiting:
        return "user"
    if background_waiting and (
        limit <= 0 or background_in_window < background_cap(limit)
    ):
        return "background"
    return None


def rejoin_order(joined: Iterable[str], last_used: Mapping[str, float]) -> list[str]:
    """Sessions to rejoin after a reconnect: those the user used most recently first
    (the one on screen is the likeliest to be next), then the others in the order they
    were joined."""
    sessions = list(joined)
    used = sorted((s for s in sessions if s in last_used), key=lambda s: -last_used[s])
    seen = set(used)
    return used + [s for s in sessions if s not in seen]
