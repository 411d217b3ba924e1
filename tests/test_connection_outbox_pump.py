"""The outbox pump's decisions (dim_actors/connection/process/outbox_pump.py), and the pump
against a real outbox file."""

from __future__ import annotations

import json
import multiprocessing
import threading

import pytest

from dim_actors.connection.dialect import Dialect
from dim_actors.connection.outbox import Outbox
from dim_actors.connection.process.outbox_pump import (
    ANY_TURN,
    OutboxPump,
    Outcome,
    answer_outcome,
    gate_opens,
)
from dim_actors.connection.uplink import Uplink


@pytest.mark.parametrize(
    "head_type, code, sid, turn_id, expected",
    [
        ("turn_started", "", "s1", "t1", Outcome(remove=True, gate="t1")),
        ("turn_started", "", "s1", None, Outcome(remove=True)),
        ("turn_started", "", None, "t1", Outcome(remove=True)),
        ("error", "TurnInProgress", "s1", None, Outcome(remove=False, gate=ANY_TURN)),
        (
            "error",
            "TurnInProgress",
            None,
            None,
            Outcome(remove=True),
        ),  # no session to wait on
        ("error", "INVALID_REQUEST", "s1", None, Outcome(remove=True)),
        (
            "error",
            42,
            "s1",
            None,
            Outcome(remove=True),
        ),  # unreadable: refused, not retried
        ("steer_ack", "", "s1", None, Outcome(remove=True)),
    ],
)
def test_what_an_answer_does_to_the_item_in_flight(
    head_type, code, sid, turn_id, expected
):
    assert answer_outcome(head_type, code, sid, turn_id) == expected


@pytest.mark.parametrize(
    "gate, turn_id, expected",
    [
        (None, "t1", False),  # no gate
        ("t1", "t1", True),
        ("t1", "t2", False),  # another client's turn ended: ours still runs
        ("t1", None, False),
        (ANY_TURN, "t9", True),
        (ANY_TURN, None, True),
    ],
)
def test_which_turn_end_opens_a_sessions_gate(gate, turn_id, expected):
    assert gate_opens(gate, turn_id) == expected


def run_turn(sid: str, text: str) -> bytes:
    return json.dumps({"type": "run_turn", "sessionId": sid, "text": text}).encode()


def test_items_go_one_at_a_time_in_order_and_a_running_turn_holds_its_session(tmp_path):
    ours, theirs = multiprocessing.Pipe()
    outbox = Outbox(tmp_path / "outbox.sqlite")
    pump = OutboxPump(Uplink(theirs), threading.Lock(), outbox, None)
    first = outbox.add("run_turn", run_turn("s1", "one"))
    outbox.add("run_turn", run_turn("s1", "two"))
    dialect = Dialect()

    p = pump.next_item(dialect)
    assert p is not None and p.req_id == -first and p.session_id == "s1"
    assert pump.next_item(dialect) is None  # one in flight

    pump.turn_gate["s1"] = "t1"
    pump.inflight = None
    assert pump.next_item(dialect) is None  # its session's turn still runs
    pump.turn_gate.clear()
    assert pump.next_item(dialect) is not None
    pump.reset()
    assert pump.inflight is None and pump.turn_gate == {}
    outbox.close()
    ours.close()
    theirs.close()
