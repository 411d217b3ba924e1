"""The stores' latency histogram (benchmarks' `sentNs` deltas): percentiles from its
buckets, the fine buckets below 10 ms and the coarse ones above."""

from __future__ import annotations

import time

import pytest

from dim_actors.router.stores import LatencyStats, SendLatency

MS = 1_000_000


@pytest.mark.parametrize(
    ("durations_ns", "want"),
    [
        # one sample: every percentile is it
        ([2 * MS], {"count": 1, "max": 2.0, "p50": 2.0, "p99": 2.0, "p999": 2.0}),
        # below 10 ms, 1 us buckets: 1,234,567 ns is kept as 1.234 ms
        ([1_234_567], {"count": 1, "max": 1.235, "p50": 1.234, "p99": 1.234}),
        # above 10 ms, 1 ms buckets
        ([12_345_678], {"max": 12.346, "p50": 12.0}),
        # 99 fast and one slow: the slow one is past p99, inside p999
        (
            [1 * MS] * 99 + [30 * MS],
            {"count": 100, "p50": 1.0, "p99": 1.0, "p999": 30.0},
        ),
        # 98 fast, two slow: p99 is slow
        ([1 * MS] * 98 + [30 * MS] * 2, {"p50": 1.0, "p99": 30.0, "max": 30.0}),
    ],
)
def test_percentiles_from_the_buckets(durations_ns: list[int], want: dict) -> None:
    stats = LatencyStats()
    for ns in durations_ns:
        stats.record(ns)
    got = stats.summary()
    assert {k: got[k] for k in want} == want


def test_an_empty_histogram_says_only_its_count() -> None:
    assert LatencyStats().summary() == {"count": 0, "max": 0.0}


def test_send_latency_splits_at_the_connection_process_receive_time() -> None:
    lat = SendLatency()
    now = time.time_ns()
    lat.record(recv_ns=now - 1 * MS, sent_ns=now - 3 * MS)
    out = lat.summary()
    assert lat.count == out["count"] == 1
    # sent 3 ms ago, received 1 ms ago: 2 ms to the connection process, then >= 1 across
    assert out["received"]["p50"] == 2.0
    assert 1.0 <= out["crossing"]["p50"] < out["p50"]
    assert out["p50"] >= 3.0
