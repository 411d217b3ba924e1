"""A session longer than the app's window, opened for the first time: the page shows its
newest messages at once, and scrolling up brings every older turn from the gateway, in
order, up to the first (docs/ui.md, Performance).

The session is written into the dev gateway's store before it starts (`--seed-history`).
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect
from uihelpers import T, seeded_gateway, seeded_session_open

TURNS = 160
# 100 events a turn: the first join's window (10,000 events) holds about 100 of them
EVENTS = TURNS * 100


@pytest.fixture(scope="module")
def long_gw(tmp_path_factory):
    with seeded_gateway(tmp_path_factory.mktemp("gateway"), TURNS, EVENTS) as g:
        yield g


@pytest.fixture
def opened(browser, long_gw, dim_home):
    with seeded_session_open(browser, long_gw, dim_home, TURNS) as opened:
        yield opened


def turn_ids(page: Page) -> list[str]:
    return page.get_by_test_id("turn").evaluate_all(
        "(els) => els.map((e) => e.dataset.turnId)"
    )


def test_scrolling_up_brings_every_older_turn_from_the_gateway(opened, long_gw):
    page, app = opened
    chat = app.invoke("get_state")["chats"][long_gw.seeded]
    held = chat["olderTurns"] + len(chat["turns"])
    assert held < TURNS and chat["olderAtGateway"] > 0
    earlier = page.get_by_test_id("chat-earlier")
    expect(earlier).to_be_visible(timeout=T)
    turns = page.get_by_test_id("turn")
    for _ in range(40):
        if earlier.is_hidden():
            break
        now = turns.count()
        page.get_by_test_id("chat").evaluate("(c) => { c.scrollTop = 0; }")
        page.wait_for_function(
            "(n) => document.querySelectorAll('[data-testid=turn]').length > n"
            " || document.querySelector('[data-testid=chat-earlier]').hidden",
            arg=now,
            timeout=T,
        )
    expect(earlier).to_be_hidden()
    assert turn_ids(page) == [f"turn_seed_{i:07d}" for i in range(TURNS)]
    first = page.locator("[data-turn-id='turn_seed_0000000']")
    expect(first.get_by_test_id("user-text")).to_have_text(
        "Question 1: what about part 1?"
    )
    expect(first.get_by_test_id("assistant-text")).to_contain_text("of answer 1:")
    # what the gateway gave is the page's: the app's window is as it was
    again = app.invoke("get_state")["chats"][long_gw.seeded]
    assert again["olderTurns"] + len(again["turns"]) == held


def test_a_search_says_in_plain_words_what_it_could_not_search(opened):
    page, _ = opened
    page.get_by_test_id("session-search").fill("Question 1:")
    expect(page.get_by_test_id("search-status")).to_have_text(
        "No message contains these words. The earliest messages of a long session are "
        "on the gateway and were not searched.",
        timeout=T,
    )
