"""Request ids and their origins (dim_actors/kernel/requests.py): the table of ranges, origin_of,
the allocators and the outbox's derived ids."""

from __future__ import annotations

import itertools
import threading

import pytest

from dim_actors.kernel.requests import (
    BLOCK,
    RANGES,
    Allocator,
    Origin,
    RequestIdsExhausted,
    origin_of,
    outbox_item_id,
    outbox_request_id,
)

# (id, its origin): every origin's first and last id, and the ids just past each end.
ORIGINS = [
    (1, "page"),
    (2, "page"),
    (BLOCK - 1, "page"),
    (BLOCK, "unknown"),
    (1 << 53, "unknown"),
    (0, "unknown"),
    (-1, "outbox"),
    (-(BLOCK - 1), "outbox"),
    (-BLOCK, "router"),
    (-(BLOCK + 1), "router"),
    (-(2 * BLOCK - 1), "router"),
    (-2 * BLOCK, "desktop"),
    (-(3 * BLOCK - 1), "desktop"),
    (-3 * BLOCK, "connection"),
    (-(4 * BLOCK - 1), "connection"),
    (-4 * BLOCK, "unknown"),
    (-(1 << 60), "unknown"),
]


@pytest.mark.parametrize(("req_id", "origin"), ORIGINS)
def test_origin_of(req_id: int, origin: str) -> None:
    assert origin_of(req_id) == origin


# (origin, its first id, its last id)
BOUNDS = [
    ("page", 1, BLOCK - 1),
    ("outbox", -1, -(BLOCK - 1)),
    ("router", -BLOCK, -(2 * BLOCK - 1)),
    ("desktop", -2 * BLOCK, -(3 * BLOCK - 1)),
    ("connection", -3 * BLOCK, -(4 * BLOCK - 1)),
]


@pytest.mark.parametrize(("origin", "first", "last"), BOUNDS)
def test_every_origin_has_its_bounds(origin: Origin, first: int, last: int) -> None:
    ids = RANGES[origin]
    assert (ids[0], ids[-1]) == (first, last)
    assert origin_of(first) == origin_of(last) == origin


def test_the_table_names_every_origin_in_bounds() -> None:
    assert [row[0] for row in BOUNDS] == list(RANGES)


@pytest.mark.parametrize(("a", "b"), list(itertools.combinations(RANGES, 2)))
def test_ranges_are_disjoint(a: Origin, b: Origin) -> None:
    ra, rb = RANGES[a], RANGES[b]
    lo_a, hi_a = min(ra[0], ra[-1]), max(ra[0], ra[-1])
    lo_b, hi_b = min(rb[0], rb[-1]), max(rb[0], rb[-1])
    assert hi_a < lo_b or hi_b < lo_a


@pytest.mark.parametrize("origin", [o for o in RANGES if o != "outbox"])
def test_allocator_starts_at_its_first_id_and_counts_away_from_zero(
    origin: Origin,
) -> None:
    ids = Allocator(origin)
    taken = [next(ids) for _ in range(3)]
    first = RANGES[origin][0]
    step = 1 if first > 0 else -1
    assert taken == [first, first + step, first + 2 * step]
    assert {origin_of(i) for i in taken} == {origin}


@pytest.mark.parametrize("origin", list(RANGES))
def test_allocator_never_leaves_its_range(origin: Origin) -> None:
    ids = Allocator(origin)
    last = RANGES[origin][-1]
    # Skip to the end of the range: the last id is handed out, then none.
    ids._ids = iter(RANGES[origin][-2:])
    assert origin_of(next(ids)) == origin
    assert next(ids) == last
    with pytest.raises(RequestIdsExhausted, match=origin):
        next(ids)
    with pytest.raises(RequestIdsExhausted):
        next(ids)


def test_allocators_share_nothing() -> None:
    a, b = Allocator("router"), Allocator("router")
    assert next(a) == next(b) == -BLOCK


def test_concurrent_allocation_yields_distinct_ids() -> None:
    ids = Allocator("desktop")
    per_thread, threads = 5000, 8
    results: list[list[int]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads)

    def take(out: list[int]) -> None:
        start.wait()
        for _ in range(per_thread):
            out.append(next(ids))

    workers = [threading.Thread(target=take, args=(r,)) for r in results]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    every = [i for r in results for i in r]
    assert len(set(every)) == per_thread * threads
    assert {origin_of(i) for i in every} == {"desktop"}
    # Handed out in order: together they are the range's first ids.
    assert sorted(every, reverse=True) == list(
        RANGES["desktop"][: per_thread * threads]
    )


# (outbox item id, its request id)
OUTBOX = [(1, -1), (2, -2), (4242, -4242), (BLOCK - 1, -(BLOCK - 1))]


@pytest.mark.parametrize(("item_id", "req_id"), OUTBOX)
def test_outbox_ids_round_trip(item_id: int, req_id: int) -> None:
    assert outbox_request_id(item_id) == req_id
    assert outbox_item_id(req_id) == item_id
    assert origin_of(req_id) == "outbox"


@pytest.mark.parametrize("item_id", [0, -1, BLOCK, BLOCK + 7])
def test_an_outbox_item_outside_the_range_has_no_request_id(item_id: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        outbox_request_id(item_id)


@pytest.mark.parametrize("req_id", [0, 1, BLOCK - 1, -BLOCK, -3 * BLOCK])
def test_only_an_outbox_request_id_names_an_item(req_id: int) -> None:
    with pytest.raises(ValueError, match="not an outbox"):
        outbox_item_id(req_id)
