"""The composer in real headless Chromium against the app and its embedded dev gateway:
your message shown at once, Send becoming Stop (and Esc) while a turn runs, messages
queued until the turn ends (across a reload too), jump to latest, the message box's size.

A turn that runs until stopped is the coding-agent's `/stream 100000 200` (over 8 minutes
at 200 deltas a second): only a stop ends it. No sleeping: every wait is an expect()."""

from __future__ import annotations

from apphelpers import App
from playwright.sync_api import Page, expect
from uihelpers import new_session, ready

T = 60_000  # ms: generous for 2 shared, busy cores; a passing run waits far less
ENDLESS = "/stream 100000 200"


def type_and_enter(page: Page, text: str) -> None:
    box = page.get_by_test_id("message-input")
    box.fill(text)
    box.press("Enter")


def start_endless_turn(page: Page):
    type_and_enter(page, ENDLESS)
    turn = page.get_by_test_id("turn").last
    expect(turn.get_by_test_id("assistant-text")).to_contain_text("0 1 2", timeout=T)
    expect(turn).to_have_attribute("data-status", "running", timeout=T)
    # pinned by its id: once a queued message becomes a turn, that one is the last
    turn_id = turn.get_attribute("data-turn-id")
    return page.locator(f"[data-testid='turn'][data-turn-id='{turn_id}']")


def turn_with_text(page: Page, text: str):
    return page.get_by_test_id("turn").filter(
        has=page.get_by_test_id("user-text").filter(has_text=text)
    )


def run_turns(app: App, sid: str, count: int, script: str = "") -> None:
    """`count` turns, one after the other, through the app's bridge: echoed text, or
    `script` (coding-agent)."""
    events = app.events()
    try:
        for i in range(count):
            text = script or f"turn number {i} " * 8
            turn_id = app.invoke("run_turn", sessionId=sid, text=text)["turnId"]
            events.wait_event(
                "turn_complete", sid, where=lambda e, t=turn_id: e["turnId"] == t
            )
    finally:
        events.close()


def test_sending_while_a_turn_runs_queues_it_and_sends_it_when_the_turn_ends(
    page: Page,
):
    ready(page)
    new_session(page)
    turn = start_endless_turn(page)
    send = page.get_by_test_id("send")
    stop = page.get_by_test_id("stop")
    # Stop is the primary button while the turn runs; Send only queues.
    expect(stop).to_be_visible()
    expect(stop).to_have_attribute("aria-label", "Stop the agent")
    expect(send).to_have_text("Queue")
    type_and_enter(page, "and then summarise it")
    pending = page.get_by_test_id("pending-message")
    expect(pending).to_have_count(1)
    expect(pending).to_have_attribute("data-state", "queued")
    expect(pending.get_by_test_id("pending-text")).to_have_text("and then summarise it")
    expect(pending.get_by_test_id("pending-status")).to_contain_text(
        "Queued — sends when the agent finishes"
    )
    # A steer goes through meanwhile; by the time its answer is shown, a refusal of the
    # message would have been shown too. There is none: the page did not send it.
    page.get_by_test_id("steer-input").fill("go on")
    page.get_by_test_id("steer-send").click()
    expect(turn.get_by_test_id("steer")).to_have_text("Steered: go on", timeout=T)
    expect(page.locator("[data-testid='toast'][data-level='error']")).to_have_count(0)
    expect(pending).to_have_attribute("data-state", "queued")

    stop.click()
    expect(turn).to_have_attribute("data-status", "stopped", timeout=T)
    # The turn ended: the queued message is sent on its own, and becomes its turn.
    queued_turn = turn_with_text(page, "and then summarise it")
    expect(queued_turn).to_have_count(1, timeout=T)
    expect(queued_turn.get_by_test_id("assistant-text")).to_contain_text(
        "and then summarise it", timeout=T
    )
    expect(pending).to_have_count(0, timeout=T)
    expect(send).to_have_text("Send", timeout=T)
    expect(page.locator("[data-testid='toast'][data-level='error']")).to_have_count(0)
    assert page.page_errors == []


def test_a_queued_message_can_be_edited_or_cancelled(page: Page):
    ready(page)
    new_session(page)
    turn = start_endless_turn(page)
    type_and_enter(page, "first thought")
    type_and_enter(page, "second thought")
    pending = page.get_by_test_id("pending-message")
    expect(pending).to_have_count(2)
    first = pending.filter(has_text="first thought")
    first.get_by_test_id("pending-cancel").click()
    expect(pending).to_have_count(1)
    pending.get_by_test_id("pending-edit").click()
    expect(pending).to_have_count(0)
    box = page.get_by_test_id("message-input")
    expect(box).to_have_value("second thought")
    expect(box).to_be_focused()
    page.get_by_test_id("stop").click()
    expect(turn).to_have_attribute("data-status", "stopped", timeout=T)
    expect(page.get_by_test_id("send")).to_have_text("Send", timeout=T)
    # nothing was sent: the session stays with its one turn
    expect(page.get_by_test_id("turn")).to_have_count(1)
    assert page.page_errors == []


def test_esc_stops_the_running_turn_from_the_message_box_and_from_the_chat(page: Page):
    ready(page)
    new_session(page)
    turn = start_endless_turn(page)
    page.get_by_test_id("message-input").focus()
    page.keyboard.press("Escape")
    expect(turn).to_have_attribute("data-status", "stopped", timeout=T)
    expect(page.get_by_test_id("stop")).to_be_hidden(timeout=T)

    second = start_endless_turn(page)
    page.get_by_test_id("chat").focus()
    page.keyboard.press("Escape")
    expect(second).to_have_attribute("data-status", "stopped", timeout=T)
    assert page.page_errors == []


def test_a_queued_message_survives_a_reload_and_is_sent_after_it(page: Page):
    ready(page)
    new_session(page)
    start_endless_turn(page)
    type_and_enter(page, "kept across the reload")
    pending = page.get_by_test_id("pending-message")
    expect(pending).to_have_attribute("data-state", "queued")

    page.reload()
    ready(page)
    turn = page.get_by_test_id("turn").first
    expect(turn).to_have_attribute("data-status", "running", timeout=T)
    expect(pending).to_have_count(1, timeout=T)
    expect(pending).to_have_attribute("data-state", "queued")
    expect(pending.get_by_test_id("pending-text")).to_have_text(
        "kept across the reload"
    )
    page.get_by_test_id("message-input").press("Escape")
    expect(turn).to_have_attribute("data-status", "stopped", timeout=T)
    sent = turn_with_text(page, "kept across the reload")
    expect(sent).to_have_attribute("data-status", "complete", timeout=T)
    expect(pending).to_have_count(0, timeout=T)
    assert page.page_errors == []


# Installed right before the message is sent: records when a pending bubble with the text
# first appeared, relative to the Enter keydown, and whether it was inside the chat's view.
WATCH = """(text) => {
  const chat = document.querySelector("[data-testid=chat]");
  window.__pending = null;
  const look = () => {
    if (window.__pending) return;
    for (const el of document.querySelectorAll("[data-testid=pending-message]")) {
      if (!el.textContent.includes(text)) continue;
      const r = el.getBoundingClientRect(), c = chat.getBoundingClientRect();
      const inView = r.top >= c.top - 1 && r.bottom <= c.bottom + 1;
      // Observed at the first DOM change after the key: still "sending" means it showed
      // before the bridge had answered, whatever the machine's speed.
      window.__pending = {state: el.dataset.state, inView};
    }
  };
  new MutationObserver(look).observe(chat, {childList: true, subtree: true});
}"""


def test_your_message_shows_at_once_after_reloading_a_large_session(
    page: Page, app: App
):
    ready(page)
    sid = new_session(page)
    # 24,000 events in all (the gateway allows 60 messages in 10 s: few, big turns)
    run_turns(app, sid, 12, script="/stream 2000")
    page.reload()
    ready(page)
    expect(page.get_by_test_id("turn")).to_have_count(12, timeout=T)
    page.evaluate(WATCH, "visible right away")
    type_and_enter(page, "visible right away")
    seen = page.evaluate("window.__pending")
    assert seen is not None, "no bubble for the message that was just sent"
    assert seen["state"] == "sending", seen
    assert seen["inView"], seen
    mine = turn_with_text(page, "visible right away")
    expect(mine).to_have_attribute("data-status", "complete", timeout=T)
    expect(mine.get_by_test_id("user-text")).to_be_in_viewport()
    expect(page.get_by_test_id("pending-message")).to_have_count(0)
    assert page.page_errors == []


def test_sending_while_scrolled_up_brings_your_message_into_view(page: Page, app: App):
    ready(page)
    sid = new_session(page, "echo")
    run_turns(app, sid, 25)
    expect(page.get_by_test_id("turn")).to_have_count(25, timeout=T)
    chat = page.get_by_test_id("chat")
    chat.evaluate("c => { c.scrollTop = 0; }")
    expect(page.get_by_test_id("turn").first).to_be_in_viewport()
    type_and_enter(page, "look down here")
    mine = turn_with_text(page, "look down here")
    expect(mine).to_have_attribute("data-status", "complete", timeout=T)
    expect(mine.get_by_test_id("user-text")).to_be_in_viewport()
    assert page.page_errors == []


def test_jump_to_latest_appears_when_new_turns_arrive_below_and_takes_you_there(
    page: Page, app: App
):
    ready(page)
    sid = new_session(page, "echo")
    run_turns(app, sid, 25)
    turns = page.get_by_test_id("turn")
    expect(turns).to_have_count(25, timeout=T)
    jump = page.get_by_test_id("jump-latest")
    expect(jump).to_be_hidden()
    chat = page.get_by_test_id("chat")
    chat.evaluate("c => { c.scrollTop = 0; }")
    expect(turns.first).to_be_in_viewport()
    # Another client's turns arrive while the user reads further up.
    run_turns(app, sid, 2)
    expect(turns).to_have_count(27, timeout=T)
    expect(jump).to_be_visible(timeout=T)
    expect(jump).to_contain_text("2 new turns")
    expect(jump).to_contain_text("Jump to latest")
    expect(turns.first).to_be_in_viewport()  # nothing moved under the reader
    jump.click()
    expect(turns.last).to_be_in_viewport()
    expect(jump).to_be_hidden()

    # End in the chat does the same.
    chat.evaluate("c => { c.scrollTop = 0; }")
    run_turns(app, sid, 1)
    expect(jump).to_be_visible(timeout=T)
    expect(jump).to_contain_text("1 new turn")
    chat.focus()
    page.keyboard.press("End")
    expect(turns.last).to_be_in_viewport()
    expect(jump).to_be_hidden()
    assert page.page_errors == []


def test_the_message_box_is_two_lines_grows_with_its_text_and_then_scrolls(page: Page):
    ready(page)
    new_session(page, "echo")
    box = page.get_by_test_id("message-input")

    def height() -> float:
        return box.evaluate("b => b.getBoundingClientRect().height")

    line = box.evaluate("b => parseFloat(getComputedStyle(b).lineHeight)")
    empty = height()
    assert 2 * line <= empty < 3.5 * line, (empty, line)
    box.focus()
    box.type("one")
    box.press("Shift+Enter")
    box.type("two")
    box.press("Shift+Enter")
    box.type("three")
    box.press("Shift+Enter")
    box.type("four")
    # Shift+Enter: a new line, nothing sent
    expect(box).to_have_value("one\ntwo\nthree\nfour")
    expect(page.get_by_test_id("pending-message")).to_have_count(0)
    assert height() > empty + line
    box.fill("\n".join(f"line {i}" for i in range(80)))
    box.dispatch_event("input")
    chat_h = page.get_by_test_id("chat").evaluate("c => c.clientHeight")
    tall = height()
    assert tall <= 0.45 * (chat_h + tall), (tall, chat_h)
    assert box.evaluate("b => b.scrollHeight > b.clientHeight")
    assert box.evaluate("b => getComputedStyle(b).overflowY") == "auto"
    assert page.page_errors == []


def test_a_message_that_could_not_be_sent_stays_with_retry_and_edit(page: Page):
    ready(page)
    new_session(page, "echo")
    # The request that carries the message is lost on its way to the app.
    page.route("**/invoke/run_turn", lambda route: route.abort())
    type_and_enter(page, "do not lose me")
    pending = page.get_by_test_id("pending-message")
    expect(pending).to_have_attribute("data-state", "failed", timeout=T)
    expect(pending.get_by_test_id("pending-status")).to_contain_text("Not sent")
    expect(pending.get_by_test_id("pending-text")).to_have_text("do not lose me")
    pending.get_by_test_id("pending-edit").click()
    expect(pending).to_have_count(0)
    box = page.get_by_test_id("message-input")
    expect(box).to_have_value("do not lose me")
    box.press("Enter")
    expect(pending).to_have_attribute("data-state", "failed", timeout=T)
    expect(box).to_have_value("")
    # The way to the app is back: Retry sends it, and it becomes its turn.
    page.unroute("**/invoke/run_turn")
    pending.get_by_test_id("pending-retry").click()
    mine = turn_with_text(page, "do not lose me")
    expect(mine).to_have_attribute("data-status", "complete", timeout=T)
    expect(pending).to_have_count(0, timeout=T)
    assert page.page_errors == []


def test_a_message_sent_while_offline_waits_for_the_connection(page: Page, app: App):
    ready(page)
    new_session(page, "echo")
    app.invoke("gateway_disconnect")
    expect(page.get_by_test_id("connection-state")).not_to_have_attribute(
        "data-state", "connected", timeout=T
    )
    type_and_enter(page, "when you are back")
    pending = page.get_by_test_id("pending-message")
    expect(pending).to_have_attribute("data-state", "offline", timeout=T)
    expect(pending.get_by_test_id("pending-status")).to_contain_text(
        "sends when the connection is back"
    )
    app.invoke("gateway_connect", url=app.runtime["gatewayUrl"])
    mine = turn_with_text(page, "when you are back")
    expect(mine).to_have_attribute("data-status", "complete", timeout=T)
    expect(pending).to_have_count(0, timeout=T)
    assert page.page_errors == []
