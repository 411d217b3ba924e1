"""The turn view in real headless Chromium: text and cards in the order they streamed (live and
after a reload, the same DOM), tool calls as one-line summaries that open, terminals, unknown
events and file changes in plain words, Copy and Retry on messages.

Everything runs against the embedded dev gateway's scripted `coding-agent` (docs/dev-gateway.md)
and `echo`; every wait is an `expect(...)`.
"""

from __future__ import annotations

import json
import re

from apphelpers import App
from playwright.sync_api import Page, expect
from uihelpers import new_session, ready

T = 30_000  # ms: generous for 2 shared, busy cores


def send(page: Page, text: str) -> None:
    box = page.get_by_test_id("message-input")
    box.fill(text)
    box.press("Enter")


def open_session(page: Page, sid: str) -> None:
    page.locator(f"[data-testid='session-item'][data-session-id='{sid}']").click()


def flow(turn) -> list[str]:
    """What the turn shows below the user's message, in order: each card by its testid, each
    stretch of text by its words."""
    return turn.locator(".turn-flow > *").evaluate_all(
        """els => els.filter(e => getComputedStyle(e).display !== 'none')
                     .map(e => e.dataset.testid === 'assistant-text'
                                 ? 'text: ' + e.textContent.trim() : e.dataset.testid)"""
    )


def flow_html(turn) -> str:
    return turn.locator(".turn-flow").inner_html()


def test_text_before_and_after_a_question_shows_around_it_live_and_after_a_reload(
    page: Page, app: App
):
    ready(page)
    sid = new_session(page)
    send(
        page,
        "Before I change anything, a question.\n/ask Which file? | a.py | b.py\nDone.",
    )
    turn = page.get_by_test_id("turn")
    question = turn.get_by_test_id("question")
    expect(question).to_have_count(1, timeout=T)
    expect(turn).to_have_attribute("data-status", "waiting", timeout=T)
    assert flow(turn) == ["text: Before I change anything, a question.", "question"]
    question.get_by_test_id("answer-option").filter(has_text="a.py").click()
    expect(turn).to_have_attribute("data-status", "complete", timeout=T)
    expect(turn.get_by_test_id("assistant-text").last).to_have_text("Done.")
    shown = flow(turn)
    assert shown == [
        "text: Before I change anything, a question.",
        "question-resolved",
        "text: Done.",
    ]
    live = flow_html(turn)

    page.reload()
    ready(page)
    open_session(page, sid)
    turn = page.get_by_test_id("turn")
    expect(turn).to_have_attribute("data-status", "complete", timeout=T)
    assert flow(turn) == shown
    assert flow_html(turn) == live
    assert page.page_errors == []


def test_a_turn_with_many_cards_lays_out_the_same_live_and_reloaded_mid_stream(
    page: Page, app: App, browser
):
    ready(page)
    sid = new_session(page)
    send(
        page,
        "\n".join(
            [
                "# Looking around",
                '/tool read_file {"path": "src/parser.py"}',
                "Read it. Now a *run*:",
                "/terminal make\\nok",
                "/think what next",
                "/write notes.txt one",
                "Wrote notes.",
                "/stream 300",
                '/tool bash {"command": "pytest -q"}',
                "/stream 40",
                "/sleep 60000",
            ]
        ),
    )
    turn = page.get_by_test_id("turn")
    expect(turn.get_by_test_id("tool-card")).to_have_count(2, timeout=T)
    expect(turn.get_by_test_id("assistant-text").last).to_contain_text(
        re.compile(r"\b39$"), timeout=T
    )
    expect(turn).to_have_attribute("data-status", "running")
    kinds = [s.split(":")[0] for s in flow(turn)]
    assert kinds == [
        "text",
        "tool-card",
        "text",
        "terminal",
        "thinking",
        "file-changed",
        "text",
        "tool-card",
        "text",
    ], kinds
    live = flow_html(turn)

    # Another page, loaded now, builds the running turn from get_state: the same DOM.
    other = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    try:
        other.goto(app.runtime["uiUrl"])
        ready(other)
        open_session(other, sid)
        again = other.get_by_test_id("turn")
        expect(again.get_by_test_id("tool-card")).to_have_count(2, timeout=T)
        expect(again).to_have_attribute("data-status", "running")
        assert flow_html(again) == live
    finally:
        other.context.close()
    app.invoke("stop_turn", sessionId=sid)
    expect(turn).to_have_attribute("data-status", "stopped", timeout=T)
    assert page.page_errors == []


def test_tool_calls_are_one_line_summaries_that_open_to_the_details(
    page: Page, app: App
):
    ready(page)
    new_session(page)
    send(
        page,
        "\n".join(
            [
                '/tool read_file {"path": "src/parser.py"}',
                '/tool bash {"command": "pytest -q\\nsecond line"}',
                "/tool-error lint the linter crashed\\nat line 3",
            ]
        ),
    )
    turn = page.get_by_test_id("turn")
    expect(turn).to_have_attribute("data-status", "complete", timeout=T)
    cards = turn.get_by_test_id("tool-card")
    expect(cards).to_have_count(3)
    read, run, lint = cards.nth(0), cards.nth(1), cards.nth(2)

    line = read.locator("summary")
    expect(line).to_have_text(re.compile(r"^✓ Read src/parser\.py \d+ bytes$"))
    expect(read.get_by_test_id("tool-state")).to_have_attribute("aria-label", "Done")
    expect(read.get_by_test_id("tool-name")).to_have_text("Read")
    expect(read.get_by_test_id("tool-summary")).to_have_text("src/parser.py")
    expect(read.get_by_test_id("tool-hint")).to_have_text(re.compile(r"^\d+ bytes$"))
    # Collapsed: the arguments and result are there, but not shown until opened.
    expect(read.get_by_test_id("tool-args")).to_be_hidden()
    expect(read.get_by_test_id("tool-result")).to_be_hidden()
    line.click()
    expect(read.get_by_test_id("tool-args")).to_be_visible()
    expect(read.get_by_test_id("tool-args")).to_contain_text('"path": "src/parser.py"')
    expect(read.get_by_test_id("tool-result")).to_contain_text('"ok": true')

    # By keyboard: the line is a focusable control that Enter opens and closes.
    run_line = run.locator("summary")
    run_line.focus()
    page.keyboard.press("Enter")
    expect(run.get_by_test_id("tool-args")).to_be_visible()
    page.keyboard.press("Enter")
    expect(run.get_by_test_id("tool-args")).to_be_hidden()
    expect(run.get_by_test_id("tool-name")).to_have_text("Run")
    expect(run.get_by_test_id("tool-summary")).to_have_text("pytest -q …")
    expect(run.locator("summary")).to_have_text(
        re.compile(r"^✓ Run: pytest -q … \d+ bytes$")
    )

    expect(lint).to_have_attribute("data-state", "error")
    expect(lint.get_by_test_id("tool-state")).to_have_attribute("aria-label", "Failed")
    expect(lint.get_by_test_id("tool-name")).to_have_text("lint")
    expect(lint.get_by_test_id("tool-hint")).to_have_text("the linter crashed …")
    assert page.page_errors == []


def test_terminals_are_titled_by_command_or_number_and_say_how_they_ended(
    page: Page, app: App
):
    ready(page)
    sid = new_session(page)
    send(
        page,
        "\n".join(
            [
                "/terminal make\\nok",
                '/tool bash {"command": "pytest -q", "terminalId": "t9"}',
                '/emit terminal.stream {"terminalId": "t9", "text": "1 failed\\n"}',
                '/emit terminal.complete {"terminalId": "t9", "exitCode": 1}',
                "/terminal echo again",
            ]
        ),
    )
    turn = page.get_by_test_id("turn")
    expect(turn).to_have_attribute("data-status", "complete", timeout=T)

    def check(turn) -> None:
        terminals = turn.get_by_test_id("terminal")
        expect(terminals).to_have_count(3, timeout=T)
        first, run, last = terminals.nth(0), terminals.nth(1), terminals.nth(2)
        expect(first.get_by_test_id("terminal-title")).to_have_text("Terminal 1")
        expect(first.get_by_test_id("terminal-exit")).to_have_text("finished")
        expect(first.get_by_test_id("terminal-output")).to_have_text("make\nok\n")
        # Its id is only in the tooltip.
        tid = first.get_attribute("data-terminal-id") or ""
        assert tid and tid not in first.locator(".card-head").inner_text()
        expect(first.get_by_test_id("terminal-title")).to_have_attribute(
            "title", f"Terminal id {tid}"
        )
        expect(run.get_by_test_id("terminal-title")).to_have_text("Terminal: pytest -q")
        expect(run.get_by_test_id("terminal-exit")).to_have_text("exited with 1")
        expect(run).to_have_attribute("data-exit-code", "1")
        expect(last.get_by_test_id("terminal-title")).to_have_text("Terminal 3")

    check(turn)
    page.reload()
    ready(page)
    open_session(page, sid)
    check(page.get_by_test_id("turn"))
    assert page.page_errors == []


def test_unknown_and_unreadable_events_are_one_plain_line_with_the_frame_under_details(
    page: Page, app: App
):
    ready(page)
    new_session(page)
    send(
        page,
        '/emit future.widget {"answer": 42}\n/emit text_delta {"text": 5}\nall said',
    )
    turn = page.get_by_test_id("turn")
    expect(turn).to_have_attribute("data-status", "complete", timeout=T)
    card = turn.get_by_test_id("generic-event")
    expect(card).to_have_attribute("data-event-type", "future.widget")
    expect(card.locator(".generic-line")).to_have_text(
        "The gateway sent an event this app doesn't show: future.widget"
    )
    frame = card.locator("pre")
    expect(frame).to_be_hidden()
    card.locator("summary").filter(has_text="Details").click()
    expect(frame).to_be_visible()
    expect(frame).to_contain_text('"answer": 42')

    bad = page.locator("[data-testid='generic-event'][data-invalid='1']")
    expect(bad).to_have_attribute("data-event-type", "text_delta", timeout=T)
    expect(bad.locator(".generic-line")).to_have_text(
        re.compile(r"^The gateway sent a text_delta event that could not be read: \S")
    )
    expect(bad.get_by_test_id("generic-reason")).to_contain_text("unexpected fields")
    expect(bad.locator("pre")).to_be_hidden()
    assert page.page_errors == []


def test_copy_and_retry_on_messages(page: Page, app: App):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    ready(page)
    new_session(page, "echo")
    send(page, "copy me **please**")
    turns = page.get_by_test_id("turn")
    first = turns.first
    expect(first).to_have_attribute("data-status", "complete", timeout=T)

    # The actions are out of sight until the turn is hovered or one of them has focus.
    actions = first.locator(".assistant > .msg-actions")
    page.mouse.move(1, 1)
    expect(actions).to_have_css("opacity", "0")
    first.hover()
    expect(actions).to_have_css("opacity", "1")
    copy = first.get_by_test_id("copy-message")
    expect(copy).to_have_attribute("aria-label", "Copy message")
    copy.click()
    expect(copy).to_have_text("Copied")
    # The markdown source, not the rendered text.
    assert page.evaluate("navigator.clipboard.readText()") == "copy me **please**"
    expect(copy).to_have_text("Copy", timeout=T)

    page.mouse.move(1, 1)
    user_copy = first.get_by_test_id("copy-user-message")
    user_copy.focus()
    expect(first.locator(".user-row > .msg-actions")).to_have_css("opacity", "1")
    page.evaluate("navigator.clipboard.writeText('')")
    page.keyboard.press("Enter")
    expect(user_copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "copy me **please**"

    # Retry: on the last finished turn's message only; it sends the message again as a new turn,
    # and leaves what is being typed alone.
    retry = first.get_by_test_id("retry")
    expect(retry).to_have_attribute("aria-label", "Retry")
    page.get_by_test_id("message-input").fill("half-typed")
    first.hover()
    retry.click()
    expect(turns).to_have_count(2, timeout=T)
    second = turns.nth(1)
    expect(second.get_by_test_id("user-text")).to_have_text("copy me **please**")
    expect(second).to_have_attribute("data-status", "complete", timeout=T)
    expect(page.get_by_test_id("message-input")).to_have_value("half-typed")
    expect(second.get_by_test_id("retry")).to_be_attached()
    expect(first.get_by_test_id("retry")).to_be_hidden()
    second.hover()
    expect(second.get_by_test_id("retry")).to_be_visible()
    assert page.page_errors == []


def test_file_changes_say_what_happened_to_which_version_and_who(page: Page, app: App):
    ready(page)
    sid = new_session(page)
    outside = {"path": "notes.md", "iteration": 3, "size": 1, "hash": "ab"}
    send(
        page,
        "\n".join(
            [
                "/write src/a.py one",
                "/write src/a.py two",
                "/rename src/a.py src/b.py",
                "/emit-session file_changed " + json.dumps(outside),
            ]
        ),
    )
    turn = page.get_by_test_id("turn")
    expect(turn).to_have_attribute("data-status", "complete", timeout=T)

    def check() -> None:
        chips = page.get_by_test_id("turn").get_by_test_id("file-changed")
        expect(chips).to_have_text(
            [
                "Created src/a.py version 1 · by the agent",
                "Changed src/a.py version 2 · by the agent",
                "Deleted src/a.py version 3 · by the agent",
                "Renamed src/a.py → src/b.py version 1 · by the agent",
            ],
            timeout=T,
        )
        expect(chips.first).to_have_attribute("data-path", "src/a.py")
        expect(chips.first).to_have_attribute("data-iteration", "1")
        session_level = page.get_by_test_id("chat").locator(
            ":scope > [data-testid='file-changed']"
        )
        expect(session_level).to_have_text(
            "Changed notes.md version 3 · changed outside a turn"
        )

    check()
    page.reload()
    ready(page)
    open_session(page, sid)
    check()
    assert page.page_errors == []
