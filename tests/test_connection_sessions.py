"""What the router is given of each joined session (dim_actors/connection/process/sessions.py):
older seqs dropped, conflicting duplicates reported, a given-up catch-up's gap told once."""

from __future__ import annotations

import multiprocessing
import threading

import pytest

from dim_actors.connection.process.sender import Sender
from dim_actors.connection.process.sessions import Sessions
from dim_actors.connection.process.watch import ThreadWatch
from dim_actors.connection.uplink import Uplink
from dim_actors.messages import CatchupGap, GatewayEvent, decode_up
from dim_actors.messages.pipe import encode_items
from dim_actors.wire import protocol


def event(seq: int | None, text: str = "a", sid: str = "s1") -> bytes:
    seq_part = "" if seq is None else f',"seq":{seq}'
    return f'{{"type":"text_delta","sessionId":"{sid}"{seq_part},"text":"{text}"}}'.encode()


@pytest.fixture
def sessions():
    ours, theirs = multiprocessing.Pipe()
    uplink = Uplink(theirs)
    bad: list[str] = []
    s = Sessions(
        uplink,
        threading.Lock(),
        Sender(0, 10.0, ThreadWatch()),
        lambda reason, data: bad.append(reason),
        resume={"s1": 5},
    )
    yield s, uplink, bad
    ours.close()
    theirs.close()


def out(uplink: Uplink) -> list:
    """What is waiting in the uplink, as the supervisor will decode it."""
    return decode_up(encode_items(list(uplink.items)))


@pytest.mark.parametrize(
    "deliveries, seqs, last, conflicts",
    [
        ([(6, "a"), (7, "b")], [6, 7], 7, 0),
        ([(5, "old")], [], 5, 0),  # delivered before this process started: dropped
        ([(6, "a"), (6, "a")], [6], 6, 0),  # the same event twice: dropped quietly
        ([(6, "a"), (6, "other")], [6], 6, 1),  # the same seq, other content: reported
        ([(8, "a"), (6, "b")], [8], 8, 0),  # older than the last delivered
        ([(None, "a"), (None, "b")], [None, None], 5, 0),  # no seq: always goes on
    ],
)
def test_live_events_of_a_joined_session(sessions, deliveries, seqs, last, conflicts):
    s, uplink, bad = sessions
    for seq, text in deliveries:
        data = event(seq, text)
        s.deliver(data, protocol.decode_head(data), None)
    got = out(uplink)
    assert [e.seq for e in got if isinstance(e, GatewayEvent)] == seqs
    assert s.joined["s1"] == last
    assert len([r for r in bad if "came again" in r]) == conflicts


def test_an_answer_and_a_replay_go_on_whatever_their_seq(sessions):
    s, uplink, _ = sessions
    data = event(3)
    s.deliver(data, protocol.decode_head(data), 17)  # the user asked for it
    s.deliver(data, protocol.decode_head(data), None, replay=True)
    assert [(e.seq, e.replyTo) for e in out(uplink)] == [(3, 17), (3, None)]


@pytest.mark.parametrize(
    "given_up_after, first_seq_past, told",
    [
        (5, 6, None),  # the very next seq: nothing was missing
        (5, 9, (5, 9)),
        (5, None, (5, None)),  # an event without a seq cannot date it
    ],
)
def test_a_given_up_catch_up_tells_its_gap_once(
    sessions, given_up_after, first_seq_past, told
):
    s, uplink, _ = sessions
    s.gap_given_up("s1", given_up_after, "it refused get_events")
    s.gap_given_up("s1", given_up_after + 2, "later")  # the earlier start stands
    if first_seq_past is None:
        s.gap_ends("s1", None)
    else:
        data = event(first_seq_past)
        s.deliver(data, protocol.decode_head(data), None)
        s.deliver(
            event(first_seq_past + 1),
            protocol.decode_head(event(first_seq_past + 1)),
            None,
        )
    gaps = [(m.afterSeq, m.beforeSeq) for m in out(uplink) if isinstance(m, CatchupGap)]
    assert gaps == ([told] if told else [])
    assert "s1" not in s.gap_after


def test_a_session_left_or_gone_is_forgotten(sessions):
    s, _, _ = sessions
    s.join("s2")
    s.used("s1")
    s.used("s2")
    s.used("never-joined")
    assert set(s.last_used) == {"s1", "s2"}
    assert s.user_sessions == {"s1", "s2", "never-joined"}
    s.left("s2")
    s.replay_everything()
    assert s.replay_all == {"s1"}
    s.gap_given_up("s1", 5, "why")
    s.gone("s1")
    assert s.to_rejoin() == {} and s.last_used == {} and s.gap_after == {}
    assert s.replay_all == set()
