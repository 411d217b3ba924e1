"""The fields the connection reads from gateway frames
(dim_actors/connection/process/reading.py)."""

from __future__ import annotations

import pytest

from dim_actors.connection.process.reading import (
    read_page,
    retry_after_s,
    snapshot_last_seq,
)


@pytest.mark.parametrize(
    "value, floor_s, expected",
    [
        (2500, 0.1, 2.5),
        (10, 0.2, 0.2),  # raised to the floor
        (0, 0.1, 0.1),
        (9e12, 0.1, 300.0),  # clamped: a garbled number cannot park the connection
        (-1, 0.1, None),
        (None, 0.1, None),
        ("100", 0.1, None),
        (True, 0.1, None),
        (float("nan"), 0.1, None),
    ],
)
def test_retry_after(value, floor_s, expected):
    assert retry_after_s(value, floor_s) == expected


@pytest.mark.parametrize(
    "frame, expected",
    [
        (b'{"type":"state_snapshot","lastSeq":12}', 12),
        (b'{"type":"state_snapshot","lastSeq":0}', 0),
        (b'{"type":"state_snapshot"}', None),
        (b'{"type":"state_snapshot","lastSeq":-3}', None),
        (b'{"type":"state_snapshot","lastSeq":"12"}', None),
        (b'{"type":"state_snapshot","lastSeq":true}', None),
        (b'{"type":"state_snapshot","lastSeq":1.5}', None),
    ],
)
def test_a_snapshots_last_seq_is_used_only_when_it_is_a_seq(frame, expected):
    assert snapshot_last_seq(frame) == expected


@pytest.mark.parametrize(
    "frame, events, more, problem",
    [
        (
            b'{"type":"event_list","events":[{"seq":1},{"seq": 2}],"hasMore":true}',
            [b'{"seq":1}', b'{"seq": 2}'],  # each event exactly as sent
            True,
            None,
        ),
        (b'{"type":"event_list","events":[]}', [], False, None),
        (
            b'{"type":"event_list","events":[{"seq":1}],"hasMore":"yes"}',
            [b'{"seq":1}'],
            False,
            "hasMore",
        ),
        (b'{"type":"event_list","events":{"seq":1}}', [], False, "cannot be read"),
    ],
)
def test_a_catch_up_page_is_read_or_read_as_the_last(frame, events, more, problem):
    page = read_page(frame)
    assert (page.events, page.more) == (events, more)
    assert (page.problem is None) if problem is None else (problem in page.problem)
