"""Pure pieces of the connection's input checks: depth, lone surrogates, seq gaps,
duplicate content."""

from __future__ import annotations

import sqlite3

import msgspec
import pytest

from dim_actors.connection.process.outbox_pump import (
    outbox_failure_message,
    outbox_full,
)
from dim_actors.connection.process.seqs import RecentSeqs, same_content, seq_gap
from dim_actors.wire import protocol


@pytest.mark.parametrize(
    "raw, depth",
    [
        (b"1", 0),
        (b"{}", 1),
        (b'{"a":[1,{"b":[]}]}', 4),
        (b'{"a":"[[[[{{{{"}', 1),  # brackets in a string do not nest
        (b'{"a":"\\"[[[[\\\\"}', 1),  # nor after an escaped quote or backslash
        (
            b'{"a":"\\\\","b":[[]]}',
            3,
        ),  # an escaped backslash ends before the closing quote
        (b"[" * 1200 + b"]" * 1200, 1200),
        (b'"[[["', 0),
        (
            b'{"a": "]]]]", "b": [[["x\\"[["]]]}',
            4,
        ),  # brackets inside strings, an escaped quote among them
        (b'[{"[": "{"}, [], [[[]]]]', 4),
        (rb'["a\nb", [["\u005b"]]]', 3),  # escapes of other kinds
    ],
)
def test_nesting_depth(raw, depth):
    assert protocol.nesting_depth(raw) == depth
    assert protocol.too_deep(raw, 3) == (depth > 3)


@pytest.mark.parametrize(
    "raw, limit, expected, cut",
    [
        (b'{"a":[1,[2]]}', 5, b'{"a":[1,[2]]}', 0),
        (
            b'{"a":[1,[2]],"b":[[3]]}',
            2,
            b'{"a":[1,"\\u0000nested too deep"],"b":["\\u0000nested too deep"]}',
            2,
        ),
        (b'{"a":"[[[[","b":[[]]}', 1, b'{"a":"[[[[","b":"\\u0000nested too deep"}', 1),
    ],
)
def test_prune_deep(raw, limit, expected, cut):
    pruned, n = protocol.prune_deep(raw, limit)
    assert (pruned, n) == (expected, cut)
    msgspec.json.decode(pruned)  # still JSON


def test_a_page_with_a_too_deep_event_keeps_its_other_events_after_pruning():
    deep = b"[" * 1200 + b"]" * 1200
    page = (
        b'{"type":"event_list","events":[{"seq":1},{"seq":2,"x":'
        + deep
        + b'},{"seq":3}]}'
    )
    pruned, n = protocol.prune_deep(page, protocol.MAX_DEPTH + 2)
    events = msgspec.json.decode(pruned)["events"]
    assert n == 1 and [e["seq"] for e in events] == [1, 2, 3]
    assert protocol.TOO_DEEP_MARK in msgspec.json.encode(events[1])
    assert protocol.TOO_DEEP_MARK not in msgspec.json.encode(events[0])


def test_decode_head_refuses_too_deep_frames_with_a_protocol_error():
    frame = b'{"type":"x","a":' + b"[" * 1200 + b"]" * 1200 + b"}"
    with pytest.raises(protocol.ProtocolError) as e:
        protocol.decode_head(frame)
    assert e.value.code == "TOO_DEEP"


@pytest.mark.parametrize(
    "raw, expected, count",
    [
        (b'"a\\ud83d b"', "a\ufffd b", 1),  # a lone high surrogate
        (b'"a\\udc00"', "a\ufffd", 1),  # a lone low one
        (b'"\\ud83d\\ude00"', "\U0001f600", 0),  # a proper pair stays
        (b'"\\\\ud83d"', "\\ud83d", 0),  # an escaped backslash, then text
        (b'"\\\\\\ud83d"', "\\\ufffd", 1),  # an escaped backslash, then a lone one
        (
            b'"\\uD83D\\uD83D\\uDE00"',
            "\ufffd\U0001f600",
            1,
        ),  # upper case; the second high one pairs
        (b'"plain \\u00e9"', "plain \u00e9", 0),
    ],
)
def test_replace_lone_surrogates(raw, expected, count):
    fixed, n = protocol.replace_lone_surrogates(raw)
    assert n == count
    assert msgspec.json.decode(fixed) == expected


@pytest.mark.parametrize(
    "last, seq, dense, expected",
    [
        (5, 6, "unknown", None),  # the next one
        (5, 5, "unknown", None),  # a duplicate
        (5, 3, "unknown", None),  # an older one
        (5, 9, "unknown", (5, 9)),  # 6..8 missing
        (5, 9, "yes", (5, 9)),
        (5, 9, "no", None),  # a gateway seen to skip seqs: not refetched
    ],
)
def test_seq_gap(last, seq, dense, expected):
    assert seq_gap(last, seq, dense) == expected


@pytest.mark.parametrize(
    "a, b, same",
    [
        (b'{"seq":2,"text":"x"}', b'{"seq":2,"text":"x"}', True),
        (
            b'{"seq":2,"text":"x"}',
            b'{"text": "x", "seq": 2}',
            True,
        ),  # key order and spacing do not count
        (b'{"seq":2,"text":"x"}', b'{"seq":2,"text":"y"}', False),
        (b'{"seq":2,"n":1}', b'{"seq":2,"n":1.5}', False),
        (b'{"seq":2}', b"not json", False),
    ],
)
def test_same_content(a, b, same):
    assert same_content(a, b) == same


E = b'{"seq":%d,"text":"%s"}'


@pytest.mark.parametrize(
    "added, seq, again, conflicts",
    [
        ([(1, E % (1, b"a"))], 1, E % (1, b"a"), False),
        (
            [(1, E % (1, b"a"))],
            1,
            b'{"text":"a","seq":1}',
            False,
        ),  # the same, written otherwise
        ([(1, E % (1, b"a"))], 1, E % (1, b"b"), True),
        (
            [(1, E % (1, b"a"))],
            2,
            E % (2, b"b"),
            False,
        ),  # never seen: nothing to compare
        (
            [(i, E % (i, b"a")) for i in range(1, 6)],
            1,
            E % (1, b"b"),
            False,
        ),  # forgotten (keep=4)
        # bytes past the budget: the hash still tells a change, not a rewrite of the
        # same content
        (
            [(1, E % (1, b"a" * 100)), (2, E % (2, b"b" * 100))],
            1,
            E % (1, b"c" * 100),
            True,
        ),
        (
            [(1, E % (1, b"a" * 100)), (2, E % (2, b"b" * 100))],
            1,
            E % (1, b"a" * 100),
            False,
        ),
    ],
)
def test_recent_seqs(added, seq, again, conflicts):
    recent = RecentSeqs(keep=4, budget=150)
    for s, data in added:
        recent.add(s, data)
    assert recent.conflicts(seq, again) == conflicts
    assert recent.kept_bytes <= 150 and len(recent.entries) <= 4


def test_recent_seqs_stay_bounded_under_replays():
    recent = RecentSeqs(keep=4, budget=1 << 20)
    for i in range(10_000):
        recent.add(i % 3, E % (i % 3, b"x"))
    assert len(recent.entries) == 3 and recent.kept_bytes == sum(
        len(e) for e in recent.entries.values()
    )


def test_outbox_failure_message_names_the_disk_and_what_to_do():
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (x BLOB)")
    db.execute(
        f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}"
    )
    with pytest.raises(sqlite3.OperationalError) as e:
        db.execute("INSERT INTO t VALUES (?)", (b"x" * 100000,))
    assert outbox_full(e.value)
    assert outbox_failure_message(e.value, "/x/outbox.sqlite") == (
        "not connected, and the outbox could not store this message: "
        "disk full in /x/outbox.sqlite; free space and send again"
    )
    other = sqlite3.OperationalError("database is locked")
    assert not outbox_full(other) and "database is locked" in outbox_failure_message(
        other, "/x"
    )


def test_recent_seqs_keep_hashes_of_what_no_longer_fits():
    recent = RecentSeqs(keep=10, budget=100)
    for i in range(8):
        recent.add(i, b"x" * 30)
    recent.add(8, b"y" * 90)  # the eight older ones no longer fit: hashes
    assert [isinstance(v, bytes) for v in recent.entries.values()] == [False] * 8 + [
        True
    ]
    assert recent.kept_bytes == 90
    assert not recent.conflicts(0, b"x" * 30) and recent.conflicts(0, b"z" * 30)
