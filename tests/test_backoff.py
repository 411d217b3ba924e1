"""The reconnect schedule: full jitter over 0.5, 1, 2 ... 30 s, reset after a stable
connection.

Pure functions with a seeded random source: no timing, no sockets."""

from __future__ import annotations

import random
import statistics

from dim_actors.connection.backoff import Backoff, ceiling, delay


def test_ceilings_double_from_half_a_second_and_stop_at_30s():
    assert [ceiling(n) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    # a long outage neither overflows nor grows past the cap
    assert ceiling(10_000) == 30


def test_a_delay_is_uniform_over_zero_to_the_ceiling():
    rng = random.Random(5)
    for attempt in (0, 3, 9):
        top = ceiling(attempt)
        draws = [delay(attempt, rng) for _ in range(4000)]
        assert all(0 <= d <= top for d in draws)
        # Full jitter, not "half fixed, half random": the draws reach both ends and
        # average half way.
        assert min(draws) < 0.01 * top and max(draws) > 0.99 * top
        assert abs(statistics.fmean(draws) - top / 2) < 0.03 * top
        deciles = [
            sum(k * top / 10 <= d < (k + 1) * top / 10 for d in draws)
            for k in range(10)
        ]
        # 400 expected in each tenth
        assert all(330 < n < 470 for n in deciles), deciles
    # It is exactly a uniform draw from the given source, so a seed reproduces a
    # schedule.
    assert delay(4, random.Random(1)) == random.Random(1).uniform(0, 8)


def test_the_first_retry_waits_at_most_half_a_second_and_later_ones_back_off():
    b = Backoff(random.Random(7))
    # rng.uniform scales one draw in [0, 1): the same seed gives the same fractions to
    # compare with.
    fractions = random.Random(7)
    for attempt in range(9):
        assert b.next_delay(now=float(attempt)) == fractions.uniform(
            0, ceiling(attempt)
        )
    assert b.attempt == 9


def test_a_stable_connection_starts_the_schedule_over_and_a_short_one_does_not():
    b = Backoff(random.Random(3))
    for now in range(5):
        b.next_delay(now=float(now))
    assert b.attempt == 5
    b.connected(now=100.0)
    b.next_delay(now=159.0)  # up 59 s: not stable, the backoff goes on
    assert b.attempt == 6
    b.connected(now=200.0)
    d = b.next_delay(now=260.0)  # up a full minute: this failure is a first one again
    assert b.attempt == 1 and d <= ceiling(0) == 0.5
    # failing again without having connected: no reset from the old connection
    b.next_delay(now=261.0)
    assert b.attempt == 2
    b.reset()  # a gateway_connect from the user
    assert b.next_delay(now=300.0) <= 0.5
