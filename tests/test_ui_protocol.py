"""The whole protocol as the page shows it: dev gateway -> connection -> router -> bridge -> page.

Real headless Chromium (Debian's), driven by Playwright; everything is done by clicking and typing.
No sleeping: every wait is an `expect(...)` with a timeout.
"""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from apphelpers import App, GatewayProcess
from dim_actors.protocol import SERVER_EVENTS

T = 15_000  # ms: generous for 2 shared, busy cores; a passing run waits far less

# Every known event type, by where it can occur. The events of a session (stream events, with a seq)
# must each show in the page; the others are answers the panels read from invoke results, or
# connection-level frames.
IN_TURN = {
    "turn_started", "text_delta", "message.delta", "turn_complete", "turn_error", "steer_received",
    "usage_update", "thinking.start", "thinking.progress", "thinking.complete", "tool_call_start",
    "tool_call_delta", "tool_call", "tool_result", "tool_error", "question_requested",
    "permission_requested", "approval_resolved", "terminal.stream", "terminal.complete", "file_changed",
}
SESSION_STREAM = {"session_state", "sandbox_init", "sandbox_provisioning", "sandbox_ready", "sandbox_removed"}
SESSION_MANAGEMENT = {"session_renamed", "session_archived", "session_unarchived", "session_deleted"}
NOT_IN_A_SESSION = {
    "welcome", "connected", "authenticated", "heartbeat", "session_list", "session_created", "state_snapshot",
    "session_left", "file_list", "file_content", "file_history_list", "history", "event_list", "pong",
    "member_list", "error",
}

SCRIPT = "\n".join([
    "Plan: a **bold** move",
    "/think weighing the options",
    '/tool pytest {"k": "a"}',
    '/emit tool_call_start {"toolCallId": "call_live", "toolName": "edit"}',
    '/emit tool_call_delta {"toolCallId": "call_live", "argsDelta": "{\\"path\\": \\"a.py\\"}"}',
    "/tool-error lint boom",
    "/terminal make\\nok",
    "/write notes.txt one",
    '/emit usage_update {"inputTokens": 7, "outputTokens": 9}',
    '/emit message.delta {"text": "said through message.delta"}',
    '/emit future.widget {"answer": 42}',
    "/ask Which colour? | red | blue",
    "/permission delete build/",
    "Done.",
])


def ready(page: Page) -> None:
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=15000)
    expect(page.get_by_test_id("connection-state")).to_have_text("connected", timeout=15000)


def new_session(page: Page, agent: str = "coding-agent", existing: int = 0):
    page.get_by_test_id("agent-type").select_option(agent)
    page.get_by_test_id("new-session").click()
    items = page.get_by_test_id("session-item")
    expect(items).to_have_count(existing + 1, timeout=T)
    item = page.locator("[data-testid='session-item'][aria-selected='true']")
    expect(item).to_have_count(1, timeout=T)
    expect(item.get_by_test_id("session-status")).to_have_text("ready", timeout=T)
    return item


def send(page: Page, text: str) -> None:
    page.get_by_test_id("message-input").fill(text)
    page.get_by_test_id("send").click()


def status_is(page: Page, item, status: str) -> None:
    expect(item.get_by_test_id("session-status")).to_have_text(status, timeout=T)
    expect(page.get_by_test_id("selected-session-status")).to_have_text(status, timeout=T)


def test_the_catalogue_is_classified():
    assert IN_TURN | SESSION_STREAM | SESSION_MANAGEMENT | NOT_IN_A_SESSION == set(SERVER_EVENTS)
    assert len(IN_TURN) + len(SESSION_STREAM) + len(SESSION_MANAGEMENT) + len(NOT_IN_A_SESSION) == len(SERVER_EVENTS)


def test_every_session_event_and_an_unknown_one_show_in_the_page(page: Page, app: App):
    events = app.events()
    ready(page)
    item = new_session(page)
    sid = item.get_attribute("data-session-id")
    chat = page.get_by_test_id("chat")
    # Activation, outside any turn: sandbox notices in the timeline.
    for text in ("Sandbox starting (local)", "Sandbox: starting", "Sandbox ready"):
        expect(chat.get_by_test_id("notice").filter(has_text=text)).to_have_count(1, timeout=T)

    send(page, SCRIPT)
    turn = page.get_by_test_id("turn")
    expect(turn).to_have_count(1, timeout=T)
    expect(turn.get_by_test_id("user-text")).to_contain_text("/think weighing the options", timeout=T)
    expect(turn.get_by_test_id("assistant-text").locator("strong")).to_have_text("bold", timeout=T)

    thinking = turn.get_by_test_id("thinking")
    expect(thinking).to_have_attribute("data-done", "1", timeout=T)
    expect(thinking).to_contain_text("weighing the options")

    cards = turn.get_by_test_id("tool-card")
    expect(cards).to_have_count(3, timeout=T)
    done = cards.filter(has=page.get_by_test_id("tool-name").filter(has_text="pytest"))
    expect(done).to_have_attribute("data-state", "done")
    expect(done.get_by_test_id("tool-args")).to_contain_text('"k": "a"')
    expect(done.get_by_test_id("tool-result")).to_contain_text('"ok": true')
    streamed = turn.locator("[data-testid='tool-card'][data-tool-call-id='call_live']")
    expect(streamed.get_by_test_id("tool-name")).to_have_text("edit")
    expect(streamed.get_by_test_id("tool-args")).to_contain_text('"path": "a.py"')  # from tool_call_delta
    failed = cards.filter(has=page.get_by_test_id("tool-name").filter(has_text="lint"))
    expect(failed).to_have_attribute("data-state", "error")
    expect(failed.get_by_test_id("tool-error")).to_contain_text("boom")

    terminal = turn.get_by_test_id("terminal")
    expect(terminal).to_have_attribute("data-exit-code", "0", timeout=T)
    expect(terminal.get_by_test_id("terminal-output")).to_have_text("make\nok\n")
    expect(turn.get_by_test_id("file-changed")).to_have_text("changed notes.txt #1", timeout=T)
    for type_ in ("message.delta", "future.widget"):  # no rendering of its own: the generic card
        card = turn.locator(f"[data-testid='generic-event'][data-event-type='{type_}']")
        expect(card).to_have_count(1, timeout=T)
    expect(turn.locator("[data-testid='generic-event'][data-event-type='future.widget']")).to_contain_text('"answer": 42')

    # The question waits for us; so does the session.
    question = turn.get_by_test_id("question")
    expect(question.get_by_test_id("question-text")).to_have_text("Which colour?", timeout=T)
    expect(question.get_by_test_id("answer-option")).to_have_text(["red", "blue"])
    expect(turn).to_have_attribute("data-status", "waiting")
    status_is(page, item, "waiting")
    expect(turn.get_by_test_id("usage")).to_have_text("7 in · 9 out tokens")  # usage_update

    # Steer while the turn is open, then answer by typing and clicking.
    page.get_by_test_id("steer-input").fill("prefer green")
    page.get_by_test_id("steer-send").click()
    expect(turn.get_by_test_id("steer")).to_have_text("Steered: prefer green", timeout=T)
    question.get_by_test_id("answer-input").fill("green")
    question.get_by_test_id("answer-submit").click()
    resolved = turn.get_by_test_id("question-resolved")
    expect(resolved).to_contain_text("Which colour?", timeout=T)
    expect(resolved).to_contain_text("green")
    expect(turn.get_by_test_id("question")).to_have_count(0)

    permission = turn.get_by_test_id("permission")
    expect(permission.get_by_test_id("permission-action")).to_have_text("delete build/", timeout=T)
    permission.get_by_test_id("allow").click()
    expect(turn.get_by_test_id("permission-resolved")).to_contain_text("allowed", timeout=T)

    expect(turn).to_have_attribute("data-status", "complete", timeout=T)
    expect(turn.get_by_test_id("assistant-text")).to_contain_text("Done.")
    expect(turn.get_by_test_id("usage")).not_to_have_text("7 in · 9 out tokens")  # turn_complete's usage
    status_is(page, item, "ready")

    # A failing turn: its error under the turn, and the session winds down.
    send(page, "/fail Boom the build broke")
    failed_turn = page.get_by_test_id("turn").last
    expect(failed_turn).to_have_attribute("data-status", "error", timeout=T)
    expect(failed_turn.get_by_test_id("turn-error")).to_have_text("Boom the build broke")
    expect(chat.get_by_test_id("notice").filter(has_text="Sandbox removed")).to_have_count(1, timeout=T)
    status_is(page, item, "inactive")

    # Everything shown was sent by the gateway along the real path; every session event type was.
    seen = {e["type"] for e in events.gateway_events(sid) if "seq" in e}
    events.close()
    assert IN_TURN | SESSION_STREAM <= seen, (IN_TURN | SESSION_STREAM) - seen
    assert "future.widget" in seen

    # A reloaded page rebuilds the same from get_state.
    page.reload()
    ready(page)
    page.locator(f"[data-testid='session-item'][data-session-id='{sid}']").click()
    turn = page.get_by_test_id("turn").first
    expect(turn.get_by_test_id("tool-card")).to_have_count(3, timeout=T)
    expect(turn.get_by_test_id("generic-event")).to_have_count(2)
    for testid in ("thinking", "terminal", "question-resolved", "permission-resolved", "steer", "file-changed"):
        expect(turn.get_by_test_id(testid)).to_have_count(1)
    assert page.page_errors == []


def test_steer_and_stop_a_running_stream_from_the_page(page: Page, app: App):
    ready(page)
    item = new_session(page)
    send(page, "/stream 100000 200")
    turn = page.get_by_test_id("turn")
    expect(turn.get_by_test_id("assistant-text")).to_contain_text("0 1 2 3", timeout=T)
    expect(turn).to_have_attribute("data-status", "running")
    status_is(page, item, "running")
    # A second message while the turn runs is refused: one toast for one failed command.
    send(page, "one more thing")
    errors = page.locator("[data-testid='toast'][data-level='error']")
    expect(errors).to_have_count(1, timeout=T)
    expect(errors).to_contain_text("TurnInProgress")
    page.get_by_test_id("steer-input").fill("slow down")
    page.get_by_test_id("steer-send").click()
    expect(turn.get_by_test_id("steer")).to_have_text("Steered: slow down", timeout=T)
    # The steer's event left the gateway after the refusal: had the refusal also come as an event,
    # its toast would be here by now.
    expect(errors).to_have_count(1)
    page.get_by_test_id("stop").click()
    # 100,000 deltas at 200/s would take over 8 minutes: only the stop can end it now.
    expect(turn).to_have_attribute("data-status", "stopped", timeout=5000)
    status_is(page, item, "ready")
    expect(page.get_by_test_id("stop")).to_be_hidden()
    text = turn.get_by_test_id("assistant-text").inner_text()
    history = app.invoke("get_history", sessionId=item.get_attribute("data-session-id"))["turns"][-1]
    assert history["status"] == "stopped"
    assert text.split() == history["finalText"].split()  # the page shows exactly what was streamed
    assert page.page_errors == []


def test_rename_archive_unarchive_delete_from_the_page(page: Page, app: App):
    ready(page)
    keep = new_session(page, "echo")
    keep_id = keep.get_attribute("data-session-id")
    other = new_session(page, "echo", existing=1)
    other_id = other.get_attribute("data-session-id")
    by_id = lambda sid: page.locator(f"[data-testid='session-item'][data-session-id='{sid}']")  # noqa: E731

    by_id(keep_id).get_by_test_id("session-rename").click()
    box = by_id(keep_id).get_by_test_id("rename-input")
    box.fill("Renamed from the page")
    box.press("Enter")
    expect(by_id(keep_id).get_by_test_id("session-name")).to_have_text("Renamed from the page", timeout=T)
    assert {s["id"]: s for s in app.invoke("list_sessions")["sessions"]}[keep_id]["name"] == "Renamed from the page"

    by_id(keep_id).get_by_test_id("session-archive").click()
    expect(by_id(keep_id)).to_have_count(0, timeout=T)  # hidden unless show-archived
    page.get_by_test_id("show-archived").check()
    expect(by_id(keep_id)).to_have_attribute("data-archived", "1", timeout=T)
    by_id(keep_id).get_by_test_id("session-unarchive").click()
    expect(by_id(keep_id)).to_have_attribute("data-archived", "0", timeout=T)
    page.get_by_test_id("show-archived").uncheck()
    expect(by_id(keep_id)).to_have_count(1)
    assert {s["id"]: s for s in app.invoke("list_sessions")["sessions"]}[keep_id]["archived"] is False

    by_id(other_id).get_by_test_id("session-delete").click()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_be_visible(timeout=T)
    page.get_by_test_id("confirm-cancel").click()
    expect(dialog).to_be_hidden()
    expect(by_id(other_id)).to_have_count(1)
    by_id(other_id).get_by_test_id("session-delete").click()
    page.get_by_test_id("confirm-ok").click()
    expect(by_id(other_id)).to_have_count(0, timeout=T)
    expect(page.get_by_test_id("chat-title")).to_have_text("No session selected")
    assert other_id not in {s["id"] for s in app.invoke("list_sessions", includeArchived=True)["sessions"]}
    assert page.page_errors == []


def test_file_browser_history_and_older_iterations(page: Page, app: App):
    ready(page)
    new_session(page)
    send(page, "/write notes.txt first version\n/write notes.txt second version\n"
               "/write old.txt x\n/delete old.txt\n/write old.txt back again")
    expect(page.get_by_test_id("turn")).to_have_attribute("data-status", "complete", timeout=T)
    files = page.get_by_test_id("files-panel")
    notes = files.locator("[data-testid='file-item'][data-path='notes.txt']")
    notes.click()
    content = files.get_by_test_id("file-content")
    expect(content).to_have_attribute("data-iteration", "latest", timeout=T)
    expect(content).to_have_text("second version", timeout=T)
    iterations = files.get_by_test_id("file-iteration")
    expect(iterations).to_have_count(2, timeout=T)
    files.locator("[data-testid='file-iteration'][data-iteration='1']").click()
    expect(content).to_have_attribute("data-iteration", "1", timeout=T)
    expect(content).to_have_text("first version", timeout=T)
    files.get_by_test_id("file-latest").click()
    expect(content).to_have_text("second version", timeout=T)

    # old.txt: written, deleted, written again. Its deletion is iteration 2, which has no content:
    # the gateway refuses it (FileNotFound) and the viewer says so.
    files.locator("[data-testid='file-item'][data-path='old.txt']").click()
    expect(content).to_have_text("back again", timeout=T)
    expect(iterations).to_have_count(3, timeout=T)
    files.locator("[data-testid='file-iteration'][data-iteration='2']").click()
    expect(content).to_contain_text("Could not read old.txt", timeout=T)
    files.locator("[data-testid='file-iteration'][data-iteration='1']").click()
    expect(content).to_have_text("x", timeout=T)
    expect(content).to_have_attribute("data-iteration", "1")
    assert page.page_errors == []


def test_two_pages_both_see_the_stream(page: Page, app: App, browser):
    ready(page)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        second = context.new_page()
        errors: list[str] = []
        second.on("pageerror", lambda e: errors.append(str(e)))
        second.goto(app.runtime["uiUrl"])
        ready(second)
        item = new_session(page)
        sid = item.get_attribute("data-session-id")
        there = second.locator(f"[data-testid='session-item'][data-session-id='{sid}']")
        expect(there).to_have_count(1, timeout=T)
        there.click()
        expect(there).to_have_attribute("aria-selected", "true", timeout=T)
        send(page, "/stream 300\n/ask Go on? | yes | no\nthe end")
        for p in (page, second):  # both see the stream, and the turn waiting on its question
            turn = p.get_by_test_id("turn")
            expect(turn.get_by_test_id("assistant-text")).to_contain_text(re.compile(r"^0 1 2 3 .* 298 299"), timeout=T)
            expect(turn).to_have_attribute("data-status", "waiting", timeout=T)
            expect(turn.get_by_test_id("question-text")).to_have_text("Go on?")
        second.get_by_test_id("answer-option").filter(has_text="yes").click()  # answered from the other page
        for p in (page, second):
            turn = p.get_by_test_id("turn")
            expect(turn.get_by_test_id("question-resolved")).to_contain_text("yes", timeout=T)
            expect(turn).to_have_attribute("data-status", "complete", timeout=T)
            expect(turn.get_by_test_id("assistant-text")).to_contain_text("the end")
            expect(turn.get_by_test_id("user-text")).to_have_text("/stream 300\n/ask Go on? | yes | no\nthe end")
        assert page.get_by_test_id("assistant-text").inner_text() == second.get_by_test_id("assistant-text").inner_text()
        assert errors == []
    finally:
        context.close()
    assert page.page_errors == []


def test_an_error_event_shows_a_toast_and_auth_failed_the_indicator(page: Page, app: App, tmp_path):
    gw = GatewayProcess(tmp_path / "gw", args=["--token", "right"]).start()
    try:
        ready(page)
        indicator = page.get_by_test_id("connection-state")
        indicator.click()
        page.get_by_test_id("gateway-url").fill(gw.url)
        page.get_by_test_id("gateway-token").fill("wrong")
        page.get_by_test_id("gateway-connect").click()
        # The gateway's answer to the handshake's authenticate: an error event, unasked by the page.
        toast = page.locator("[data-testid='toast'][data-level='error']").filter(has_text="AUTH_FAILED")
        expect(toast).to_have_count(1, timeout=T)
        expect(toast).to_contain_text("Invalid token")
        expect(indicator).to_have_text("auth failed", timeout=T)
        expect(indicator).to_have_attribute("data-state", "auth-failed")
        indicator.click()
        page.get_by_test_id("gateway-token").fill("right")
        page.get_by_test_id("gateway-connect").click()
        expect(indicator).to_have_text("connected", timeout=T)
        assert app.invoke("get_state")["connection"]["url"] == gw.url
        assert page.page_errors == []
    finally:
        gw.stop()
