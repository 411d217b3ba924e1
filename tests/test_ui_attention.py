"""Sessions that need the user, in real headless Chromium against the embedded dev gateway's
`coding-agent`: a turn that ends in a session not on screen puts a count in the page's title
and a mark on the session in the list, selecting it clears both, a reloaded page shows the same,
and an open question counts until it is answered (docs/contracts.md "Attention")."""

from __future__ import annotations

import pytest
from apphelpers import App, InvokeError, wait_until
from playwright.sync_api import Page, expect
from uihelpers import T, new_session, ready, run_turn


def item(page: Page, sid: str):
    return page.locator(f"[data-testid='session-item'][data-session-id='{sid}']")


def select(page: Page, sid: str) -> None:
    item(page, sid).click()
    expect(item(page, sid)).to_have_attribute("aria-selected", "true", timeout=T)


def attention(app: App) -> dict:
    return app.invoke("get_state")["attention"]


def open_request(app: App, sid: str) -> str | None:
    """The requestId of the question the session's newest turn asked, once it is held."""
    turns = app.invoke("get_state")["chats"].get(sid, {}).get("turns") or []
    for ev in turns[-1]["items"] if turns else []:
        if ev.get("type") == "question_requested":
            return ev["requestId"]
    return None


def test_a_turn_ending_out_of_sight_and_an_open_question_count_until_seen_or_answered(
    page: Page, app: App
):
    ready(page)
    away = new_session(page)
    here = new_session(page)
    expect(page).to_have_title("Diminuendo", timeout=T)

    # `here` is on screen: its own turn ending never counts.
    run_turn(page, "hello")
    assert attention(app) == {"count": 0, "sessions": {}}

    app.invoke("run_turn", sessionId=away, text="done out of sight")
    expect(page).to_have_title("(1) Diminuendo", timeout=T)
    mark = item(page, away).get_by_test_id("session-attention")
    expect(mark).to_be_visible(timeout=T)
    expect(item(page, away)).to_have_attribute("data-attention", "finished")
    expect(mark).to_have_text(", finished while you were away")
    expect(item(page, here).get_by_test_id("session-attention")).to_be_hidden()
    assert attention(app) == {"count": 1, "sessions": {away: "finished"}}

    # A page that reloads gets the same.
    page.reload()
    ready(page)
    expect(page).to_have_title("(1) Diminuendo", timeout=T)
    expect(item(page, away)).to_have_attribute("data-attention", "finished", timeout=T)

    # Looking at it clears it, in the title, the list and for the desktop.
    select(page, away)
    expect(page).to_have_title("Diminuendo", timeout=T)
    expect(item(page, away).get_by_test_id("session-attention")).to_be_hidden()
    wait_until(lambda: attention(app)["count"] == 0, 60, what="the count to clear")

    # A question asked out of sight: waiting until answered (elsewhere: dimctl, another
    # client), with the turn still running after the answer.
    select(page, here)
    app.invoke(
        "run_turn", sessionId=away, text="/ask Which file? | a.py | b.py\n/sleep 120000"
    )
    expect(page).to_have_title("(1) Diminuendo", timeout=T)
    expect(item(page, away)).to_have_attribute("data-attention", "waiting", timeout=T)
    expect(item(page, away).get_by_test_id("session-attention")).to_have_text(
        ", needs you: waiting for your answer"
    )
    request_id = wait_until(
        lambda: open_request(app, away), 60, what="the question in the stores"
    )
    app.invoke(
        "answer_question", sessionId=away, requestId=request_id, answers=["a.py"]
    )
    expect(page).to_have_title("Diminuendo", timeout=T)
    expect(item(page, away).get_by_test_id("session-attention")).to_be_hidden()
    assert attention(app) == {"count": 0, "sessions": {}}

    # mark_seen's arguments are checked like every local command's.
    with pytest.raises(InvokeError) as bad:
        app.invoke("mark_seen", sessionId=away, looking="yes")
    assert bad.value.status == 400 and "mark_seen: looking: Expected `bool`" in str(
        bad.value
    )
    assert page.page_errors == []
