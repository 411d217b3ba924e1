"""A long session in the page: only its newest messages are laid out at first, earlier ones
as the user scrolls up to them, with the place kept; a search result far back still opens.

The session is written into the dev gateway's store before it starts (`--seed-history`).
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect
from uihelpers import T, ready, seeded_gateway, seeded_session_open

TURNS = 130
WINDOW = 50  # ui/js/chat.js
SNAPSHOT_TURNS = 100  # dim_actors/router/stores.py


@pytest.fixture(scope="module")
def long_gw(tmp_path_factory):
    with seeded_gateway(tmp_path_factory.mktemp("gateway"), TURNS, TURNS * 6) as g:
        yield g


@pytest.fixture
def long_page(browser, long_gw, dim_home):
    with seeded_session_open(browser, long_gw, dim_home, TURNS) as (page, _):
        newest = page.locator(f"[data-turn-id='turn_seed_{TURNS - 1:07d}']")
        # Opened for the first time, the session's past streams in as the app catches it
        # up, and each turn arriving is laid out. Reloaded, the page starts from what the
        # app holds, as it does for a session the app has had for a while.
        page.reload()
        ready(page)
        expect(newest).to_contain_text(f"of answer {TURNS}:", timeout=T)
        yield page


def turn_ids(page: Page) -> list[str]:
    return page.get_by_test_id("turn").evaluate_all(
        "(els) => els.map((e) => e.dataset.turnId)"
    )


def count_above(page: Page, n: int) -> None:
    page.wait_for_function(
        "(n) => document.querySelectorAll('[data-testid=turn]').length > n",
        arg=n,
        timeout=T,
    )


def test_a_long_session_shows_its_newest_messages_and_the_rest_on_scrolling_up(
    long_page: Page, long_gw
):
    page = long_page
    # The app's get_state carries the newest 100 turns and counts the rest.
    snap = page.evaluate("() => window.__dim.invoke('get_state', {})")
    chat = snap["chats"][long_gw.seeded]
    assert len(chat["turns"]) == SNAPSHOT_TURNS
    assert chat["olderTurns"] == TURNS - SNAPSHOT_TURNS

    turns = page.get_by_test_id("turn")
    # The newest WINDOW at least (more when the past arrived after the chat was first shown:
    # arrivals are appended), never the whole session.
    ids = turn_ids(page)
    shown = len(ids)
    assert WINDOW <= shown < TURNS
    assert ids == [
        f"turn_seed_{i:07d}" for i in range(TURNS - shown, TURNS)
    ]  # runs first
    earlier = page.get_by_test_id("chat-earlier")
    expect(earlier).to_have_text(f"Show earlier messages ({TURNS - shown} more)")

    # Scrolling up to the top lays out the previous ones above, keeping the place: the turn
    # that was first on screen does not move.
    first = page.locator(f"[data-turn-id='{ids[0]}']")
    page.get_by_test_id("chat").evaluate("(c) => { c.scrollTop = 0; }")
    count_above(page, shown)
    chat_box = page.get_by_test_id("chat").bounding_box()
    box = first.bounding_box()
    assert chat_box and box
    assert box["y"] >= chat_box["y"] - 1, (box, chat_box)
    assert box["y"] < chat_box["y"] + chat_box["height"], (box, chat_box)
    # earlier messages are not news: no "Jump to latest" count for them
    expect(page.get_by_test_id("jump-count")).to_have_text("")

    # The button does the same, by keyboard too, past what get_state carried (the app gives
    # the older turns); at the start it goes away.
    for _ in range(10):
        if earlier.is_hidden():
            break
        now = turns.count()
        earlier.focus()
        page.keyboard.press("Enter")
        count_above(page, now)
    expect(turns).to_have_count(TURNS, timeout=T)
    expect(earlier).to_be_hidden()
    assert turn_ids(page) == [f"turn_seed_{i:07d}" for i in range(TURNS)]


def test_new_turns_still_append_below_a_long_session(long_page: Page):
    page = long_page
    box = page.get_by_test_id("message-input")
    box.fill("one more")
    turns = page.get_by_test_id("turn")
    expect(turns.last).to_have_attribute("data-turn-id", "turn_seed_0000129")
    shown = turns.count()
    box.press("Enter")
    expect(turns).to_have_count(shown + 1, timeout=T)
    expect(turns.last.get_by_test_id("assistant-text")).to_have_text(
        "one more", timeout=T
    )


def test_a_search_result_far_back_opens_at_its_turn(long_page: Page):
    page = long_page
    page.get_by_test_id("session-search").fill("Question 7:")
    result = page.get_by_test_id("search-result").first
    expect(result).to_be_visible(timeout=T)
    result.click()
    turn = page.locator(f"[data-testid='turn'][data-turn-id='turn_seed_{6:07d}']")
    expect(turn).to_be_in_viewport(timeout=T)
