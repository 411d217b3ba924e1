"""What the supervision tree itself sends: injected faults, probes, batches."""

from __future__ import annotations

from typing import Any

from dim_actors.messages.base import Msg


class Crash(Msg, tag="crash"):
    """Injected fault: the receiving actor raises (or, with hangSeconds, blocks), so
    supervision can be exercised for real."""

    reason: str = "injected fault"
    hangSeconds: float | None = None


class Ping(Msg, tag="ping"):
    """Liveness probe; answered by every actor."""


class Batch(Msg, tag="batch"):
    """Several messages for one recipient, delivered as one mailbox item and handled in
    order.

    The hot path's unit: the events of one pipe frame (connection -> router), and the
    page frames they make (router -> uibridge). Batching changes only how messages
    travel, not what they are: each item is logged as a message of its own
    (Addresses.send_batch), `dimctl status` counts items in the mailbox, and the
    recipient's `handle` sees the items one by one."""

    items: list[Any]
