"""The sender's lanes and the rejoin order (dim_actors/connection/sendqueue.py): table-driven."""

import pytest

from dim_actors.connection.sendqueue import background_cap, next_lane, rejoin_order


@pytest.mark.parametrize(
    "limit, cap",
    [
        (
            60,
            40,
        ),  # the gateway's default: 40 for bookkeeping, 20 always free for the user
        (10, 6),
        (3, 2),
        (2, 1),
        (1, 1),  # one place: background still moves, between the user's frames
        (0, 0),  # unpaced
    ],
)
def test_background_cap(limit, cap):
    assert background_cap(limit) == cap


@pytest.mark.parametrize(
    "user, background, in_window, bg_in_window, limit, lane",
    [
        # nothing waits
        (False, False, 0, 0, 60, None),
        # the user's frame goes first, whatever waits in the background
        (True, True, 0, 0, 60, "user"),
        (True, True, 39, 39, 60, "user"),
        # background's share is full: a user frame still goes at once ...
        (True, True, 40, 40, 60, "user"),
        (True, False, 59, 40, 60, "user"),
        # ... and background waits, even with room in the window
        (False, True, 40, 40, 60, None),
        (False, True, 45, 40, 60, None),
        (False, True, 41, 39, 60, "background"),
        # the window itself is full: nobody goes
        (True, True, 60, 40, 60, None),
        (True, False, 60, 0, 60, None),
        (False, True, 60, 0, 60, None),
        # a small limit
        (False, True, 5, 5, 10, "background"),
        (False, True, 6, 6, 10, None),
        (True, True, 6, 6, 10, "user"),
        (True, True, 10, 6, 10, None),
        # unpaced: anything waiting goes, user first
        (True, True, 500, 500, 0, "user"),
        (False, True, 500, 500, 0, "background"),
        (False, False, 0, 0, 0, None),
    ],
)
def test_next_lane(user, background, in_window, bg_in_window, limit, lane):
    assert next_lane(user, background, in_window, bg_in_window, limit) == lane


@pytest.mark.parametrize(
    "joined, last_used, order",
    [
        (["a", "b", "c"], {}, ["a", "b", "c"]),  # nothing used: join order
        (["a", "b", "c"], {"c": 5.0}, ["c", "a", "b"]),
        (["a", "b", "c"], {"b": 1.0, "c": 2.0}, ["c", "b", "a"]),  # most recent first
        (["a", "b", "c"], {"a": 3.0, "c": 2.0}, ["a", "c", "b"]),
        (
            ["a", "b"],
            {"gone": 9.0, "b": 1.0},
            ["b", "a"],
        ),  # a session no longer joined is not rejoined
        ([], {"a": 1.0}, []),
    ],
)
def test_rejoin_order(joined, last_used, order):
    assert rejoin_order(joined, last_used) == order
