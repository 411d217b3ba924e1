"""The outbox pump: commands queued while offline (or behind earlier ones) go out one at
a time, in order, once connected. The store is connection/outbox.py; sending is the
connection's. The decisions about an answer and a session's turn are pure
(tests/test_connection_outbox_pump.py)."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
from pathlib import Path
from typing import Any

import msgspec

from dim_actors.connection.dialect import Dialect
from dim_actors.connection.outbox import QUEUEABLE, Outbox
from dim_actors.connection.process.correlation import Pending
from dim_actors.connection.process.reading import str_or_none, target
from dim_actors.connection.uplink import Uplink
from dim_actors.kernel.requests import outbox_request_id
from dim_actors.messages import (
    CancelQueued,
    CommandFailed,
    OutboxChanged,
    Queued,
    SendFrame,
)
from dim_actors.wire import protocol

log = logging.getLogger("dim.connection")

# Below this much free space an outbox error is put down to a full disk: SQLite reports
# some of those as I/O errors (creating the WAL index of a database it opens, say).
FULL_BELOW_BYTES = 1 << 20
# A turn gate that any turn's end opens (another client's turn, whose id we do not
# know).
ANY_TURN = "*"


def outbox_full(e: sqlite3.Error, path: Any = None) -> bool:
    if getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(e):
        return True
    if path is None:
        return False
    try:
        return shutil.disk_usage(Path(path).parent).free < FULL_BELOW_BYTES
    except OSError:
        return False


def outbox_failure_message(e: sqlite3.Error, path: Any) -> str:
    if outbox_full(e, path):
        return (
            f"not connected, and the outbox could not store this message: disk full in {path}; "
            f"free space and send again"
        )
    return (
        f"not connected, and the outbox could not store this message ({e}, in {path}); "
        "send again later"
    )


class Outcome(msgspec.Struct, frozen=True):
    """What an answer to the item in flight does: whether the item leaves the outbox,
    and the turn its session's next run_turn waits for (None: none)."""

    remove: bool
    gate: str | None = None


def answer_outcome(
    head_type: str, code: Any, session_id: str | None, turn_id: str | None
) -> Outcome:
    """A TurnInProgress refusal keeps the item, to try again when that session's turn
    ends; any other answer (an error included: retrying an answer we cannot read could
    loop forever) takes it out, and a turn_started holds the session's next run_turn
    until that turn ends."""
    if code == "TurnInProgress" and session_id:
        return Outcome(remove=False, gate=ANY_TURN)
    if head_type == "turn_started" and session_id and turn_id:
        return Outcome(remove=True, gate=turn_id)
    return Outcome(remove=True)


def gate_opens(gate: str | None, turn_id: str | None) -> bool:
    """Whether the end of turn `turn_id` lets the session's next queued run_turn go."""
    return gate is not None and gate in (ANY_TURN, turn_id)


class OutboxPump:
    """The outbox, whether it is open, the item in flight and the turns that hold items
    back. `lock` is the connection's: the main and the socket thread both use the
    outbox."""

    def __init__(
        self,
        uplink: Uplink,
        lock: threading.Lock,
        outbox: Outbox | None,
        path: Path | None,
    ):
        self.uplink, self.lock = uplink, lock
        self.outbox = outbox
        # Where the outbox is, when it could not be opened yet (a full disk): opened
        # when needed.
        self.path = path if outbox is None else None
        # The outbox sends one item at a time, in order. A session whose turn is running
        # (one we started from the outbox, or another client's) holds back the next
        # run_turn for it.
        self.inflight: int | None = None
        self.turn_gate: dict[
            str, str
        ] = {}  # sessionId -> turnId to wait for, or ANY_TURN

    def takes(self, type_: str) -> bool:
        """Whether a command of `type_` goes through the outbox (when it must wait)."""
        return (self.outbox is not None or self.path is not None) and type_ in QUEUEABLE

    def changed(self, req_id: int | None = None) -> None:
        if self.outbox is not None:
            with self.lock:
                items = self.outbox.items()
            self.uplink.put_control(OutboxChanged(items=items, reqId=req_id))

    def open(self) -> sqlite3.Error | None:
        """Open the outbox if it could not be opened before; the error when it still
        cannot."""
        path = self.path
        if self.outbox is not None or path is None:
            return None
        try:
            outbox = Outbox(path)
        except sqlite3.Error as e:
            return e
        with self.lock:
            # the main and the socket thread may both have tried
            first = self.outbox is None
            if first:
                self.outbox, self.path = outbox, None
        if not first:
            outbox.close()
            return None
        log.info("the outbox %s is open", outbox.path)
        self.changed()
        return None

    def waiting(self) -> bool:
        """Whether earlier commands wait in the outbox."""
        self.open()
        with self.lock:
            return self.outbox is not None and bool(self.outbox.pending())

    def queue(self, msg: SendFrame) -> None:
        path = self.outbox.path if self.outbox is not None else self.path
        try:
            error = self.open()
            if error is not None:
                raise error
            assert self.outbox is not None
            with self.lock:
                outbox_id = self.outbox.add(msg.type, msg.frame)
        except sqlite3.Error as e:
            # The command is refused, not lost: the page keeps what the user typed on an
            # error answer.
            full = outbox_full(e, path)
            log.error("could not queue a %s in the outbox %s: %s", msg.type, path, e)
            self.uplink.put_control(
                CommandFailed(
                    reqId=msg.reqId,
                    code="DISK_FULL" if full else "OUTBOX_ERROR",
                    message=outbox_failure_message(e, path),
                )
            )
            return
        # The stores learn of the queue before the caller hears "queued", so a get_state
        # right after shows it.
        self.changed()
        self.uplink.put_control(Queued(reqId=msg.reqId, outboxId=outbox_id))

    def _remove(self, item_id: int) -> bool:
        """Under self.lock. A delete can fail on a full disk too (the WAL grows): the
        item then stays, shown, and goes again after a reconnect (a run_turn's
        clientTurnId prevents a rerun)."""
        assert self.outbox is not None
        try:
            return self.outbox.remove(item_id)
        except sqlite3.Error as e:
            log.error("could not remove outbox item %d: %s", item_id, e)
            return False

    def cancel(self, msg: CancelQueued) -> None:
        with self.lock:
            removed = (
                self.outbox is not None
                and msg.outboxId != self.inflight
                and self._remove(msg.outboxId)
            )
        if removed:
            self.changed(msg.reqId)
        else:
            self.uplink.put_control(
                CommandFailed(
                    reqId=msg.reqId,
                    code="NOT_FOUND",
                    message=f"outbox item {msg.outboxId} is not waiting "
                    "(already sent, or never queued)",
                )
            )

    def next_item(self, dialect: Dialect) -> Pending | None:
        """Under self.lock: the next item to send as a request, marked in flight; None
        when one is in flight already, nothing waits, or the next is a run_turn its
        session's turn holds back (order is kept: nothing jumps the queue). Its request
        id is derived from the item's (kernel/requests.py): nobody waits on it upstream.
        """
        if self.outbox is None or self.inflight is not None:
            return None
        items = self.outbox.pending()
        if not items:
            return None
        item_id, type_, frame = items[0]
        form, frame = dialect.first(type_, frame)
        p = Pending(
            outbox_request_id(item_id),
            type_,
            protocol.RESPONSES.get(type_, frozenset()),
            frame,
            form,
        )
        if type_ == "run_turn" and p.session_id in self.turn_gate:
            return None
        self.inflight = item_id
        try:
            # only shown in the outbox list: the item goes all the same
            self.outbox.mark_sent(item_id)
        except sqlite3.Error as e:
            log.warning("could not mark outbox item %d as sent: %s", item_id, e)
        return p

    def answered(
        self, item_id: int, head: protocol.EventHead, code: Any, data: bytes
    ) -> None:
        """The item in flight was answered (`code`: an error's code, else "")."""
        assert self.outbox is not None
        with self.lock:
            row = next((i for i in self.outbox.pending() if i[0] == item_id), None)
            sid = str_or_none(target(row[2]).sessionId) if row else None
            self.inflight = None
            outcome = answer_outcome(head.type, code, sid, head.turnId)
            if outcome.gate is not None and sid:
                self.turn_gate[sid] = outcome.gate
            if outcome.remove:
                self._remove(item_id)
                if head.type == "error":
                    log.warning(
                        "the gateway refused a queued %s: %s",
                        row[1] if row else "command",
                        bytes(data[:300]).decode("utf-8", "replace"),
                    )
        self.changed()

    def turn_ended(self, head: protocol.EventHead) -> bool:
        """A turn ended: True when that opened its session's gate (the next item may
        go)."""
        sid = head.sessionId or ""
        if not gate_opens(self.turn_gate.get(sid), head.turnId):
            return False
        del self.turn_gate[sid]
        return True

    def reset(self) -> None:
        """Under self.lock: the connection is lost; an unanswered item goes again on the
        next."""
        self.inflight = None
        self.turn_gate.clear()
