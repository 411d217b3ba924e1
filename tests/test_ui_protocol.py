"""The whole protocol as the page shows it: dev gateway -> connection -> router ->
bridge -> page.

Real headless Chromium (Debian's), driven by Playwright; everything is done by clicking
and typing. No sleeping: every wait is an `expect(...)` with a timeout. What counts as
"shown" is what the page shows (a DOM assertion), never what the bridge sent.
"""

from __future__ import annotations

import json
import re

import pytest
from apphelpers import App, GatewayProcess, wait_until
from gateway_helpers import Client
from playwright.sync_api import Page, expect

from dim_actors.wire.protocol import SERVER_EVENTS

# ms: generous for 2 shared, busy cores (a CPU hog too); a passing run waits far less
T = 30_000

PLAN = [
    {"stepId": "s1", "title": "Read the code"},
    {"stepId": "s2", "title": "Fix the bug"},
]
SCRIPT = "\n".join(
    [
        "Plan: a **bold** move",
        "/think weighing the options",
        '/tool pytest {"k": "a"}',
        '/emit tool_call_start {"toolCallId": "call_live", "toolName": "edit"}',
        '/emit tool_call_delta {"toolCallId": "call_live", '
        '"argsDelta": "{\\"path\\": \\"a.py\\"}"}',
        "/tool-error lint boom",
        "/terminal make\\nok",
        "/write notes.txt one",
        '/emit usage_update {"inputTokens": 7, "outputTokens": 9}',
        '/emit message.delta {"text": "said through "}',
        '/emit message.delta {"text": "**message.delta**"}',
        "/emit plan.created " + json.dumps({"planId": "p1", "steps": PLAN}),
        '/emit plan.step_started {"planId": "p1", "stepId": "s1"}',
        '/emit plan.step_completed {"planId": "p1", "stepId": "s1", "summary": "read 3 files"}',
        "/emit plan.revised "
        + json.dumps(
            {
                "planId": "p1",
                "reason": "one more step",
                "steps": PLAN + [{"stepId": "s3", "title": "Test it"}],
            }
        ),
        '/emit plan.step_started {"planId": "p1", "stepId": "s2"}',
        '/emit future.widget {"answer": 42}',
        '/emit-unsequenced error {"code": "Overloaded", "message": "Busy, slowing down"}',
        "/ask Which colour? | red | blue",
        "/permission delete build/",
        "Done.",
    ]
)


def ready(page: Page) -> None:
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=T)
    expect(page.get_by_test_id("connection-state")).to_have_text("Connected", timeout=T)


def new_session(page: Page, agent: str = "coding-agent", existing: int = 0):
    page.get_by_test_id("agent-type").select_option(agent)
    page.get_by_test_id("new-session").click()
    items = page.get_by_test_id("session-item")
    expect(items).to_have_count(existing + 1, timeout=T)
    item = page.locator("[data-testid='session-item'][aria-selected='true']")
    expect(item).to_have_count(1, timeout=T)
    expect(item.get_by_test_id("session-status")).to_have_attribute(
        "data-status", "ready", timeout=T
    )
    return item


def send(page: Page, text: str) -> None:
    page.get_by_test_id("message-input").fill(text)
    page.get_by_test_id("send").click()


def status_is(page: Page, item, status: str) -> None:
    expect(item.get_by_test_id("session-status")).to_have_attribute(
        "data-status", status, timeout=T
    )
    # the header says it in words; the state-machine value is its data-status
    expect(page.get_by_test_id("selected-session-status")).to_have_attribute(
        "data-status", status, timeout=T
    )


def by_id(page: Page, sid: str):
    return page.locator(f"[data-testid='session-item'][data-session-id='{sid}']")


def open_page(browser, app: App) -> Page:
    """A page of `app` in a context of its own (closed with page.context.close())."""
    p = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.page_errors = errors  # type: ignore[attr-defined]
    p.goto(app.runtime["uiUrl"])
    return p


@pytest.fixture
def beating_app(tmp_path):
    """An app on a gateway of its own whose heartbeat is fast enough for the page to
    show one."""
    gw = GatewayProcess(
        tmp_path / "gw", args=["--heartbeat-ms", "500", "--rate-limit", "100000"]
    ).start()
    (tmp_path / "home").mkdir()
    a = App(tmp_path / "home", ["--gateway", gw.url])
    try:
        a.wait_connected()
        yield a, gw
    finally:
        a.stop()
        gw.stop()


def test_every_event_type_is_shown_in_the_page(browser, beating_app):
    app, gw = beating_app
    page = open_page(browser, app)
    # every event type the page was seen to show, by a DOM assertion
    shown: set[str] = set()

    def saw(*types: str) -> None:
        shown.update(types)

    try:
        ready(page)
        # The connection panel: what the handshake said, and a ping's answer.
        page.get_by_test_id("connection-state").click()
        expect(page.get_by_test_id("conn-protocol")).to_have_text("v1", timeout=T)
        saw("welcome")
        expect(page.get_by_test_id("conn-client-id")).to_have_text(
            re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4"), timeout=T
        )
        expect(page.get_by_test_id("conn-heartbeat")).to_contain_text("every 0.5 s")
        saw("connected")
        expect(page.get_by_test_id("conn-identity")).to_have_text(
            "developer@example.com · dev-user-001 · tenant dev"
        )
        saw("authenticated")
        page.get_by_test_id("conn-ping").click()
        expect(page.get_by_test_id("conn-pong")).to_have_text(
            re.compile(r"^pong in \d+ ms \(gateway clock"), timeout=T
        )
        saw("pong")

        # A session another client made (and the gateway's list brings it in), with a
        # turn of its own.
        with Client(gw.url) as other:
            elsewhere = other.new_session("echo", name="made elsewhere")
            other.run(elsewhere, "from elsewhere")
        page.get_by_test_id(
            "show-archived"
        ).check()  # list_sessions {includeArchived: true}
        expect(by_id(page, elsewhere).get_by_test_id("session-name")).to_have_text(
            "made elsewhere", timeout=T
        )
        saw("session_list")

        item = new_session(page, existing=1)
        saw("session_created", "session_state")
        sid = item.get_attribute("data-session-id")
        expect(page.get_by_test_id("session-joined")).to_have_text(
            "Following live", timeout=T
        )
        saw("state_snapshot")
        # Joined: heartbeats come, and the panel shows the last one.
        page.get_by_test_id("connection-state").click()
        expect(page.get_by_test_id("conn-heartbeat")).to_contain_text(
            re.compile(r"last one (just now|\d+ min ago)"), timeout=T
        )
        saw("heartbeat")
        page.get_by_test_id("connection-state").click()
        chat = page.get_by_test_id("chat")
        for type_, text in (
            ("sandbox_init", "Sandbox starting (local)"),
            ("sandbox_provisioning", "Sandbox: starting"),
            ("sandbox_ready", "Sandbox ready"),
        ):
            expect(chat.get_by_test_id("notice").filter(has_text=text)).to_have_count(
                1, timeout=T
            )
            saw(type_)

        send(page, SCRIPT)
        turn = page.get_by_test_id("turn")
        expect(turn).to_have_count(1, timeout=T)
        expect(turn.get_by_test_id("user-text")).to_contain_text(
            "/think weighing the options", timeout=T
        )
        saw("turn_started")
        expect(turn.get_by_test_id("assistant-text").locator("strong")).to_have_text(
            "bold", timeout=T
        )
        saw("text_delta")

        thinking = turn.get_by_test_id("thinking")
        expect(thinking).to_have_attribute("data-done", "1", timeout=T)
        expect(thinking).to_contain_text("weighing the options")
        saw("thinking.start", "thinking.progress", "thinking.complete")

        cards = turn.get_by_test_id("tool-card")
        expect(cards).to_have_count(3, timeout=T)
        done = cards.filter(
            has=page.get_by_test_id("tool-name").filter(has_text="pytest")
        )
        expect(done).to_have_attribute("data-state", "done")
        expect(done.get_by_test_id("tool-args")).to_contain_text('"k": "a"')
        expect(done.get_by_test_id("tool-result")).to_contain_text('"ok": true')
        saw("tool_call_start", "tool_call", "tool_result")
        streamed = turn.locator(
            "[data-testid='tool-card'][data-tool-call-id='call_live']"
        )
        expect(streamed.get_by_test_id("tool-name")).to_have_text("Edit")
        expect(streamed.get_by_test_id("tool-args")).to_contain_text('"path": "a.py"')
        saw("tool_call_delta")
        failed = cards.filter(
            has=page.get_by_test_id("tool-name").filter(has_text="lint")
        )
        expect(failed).to_have_attribute("data-state", "error")
        expect(failed.get_by_test_id("tool-error")).to_contain_text("boom")
        saw("tool_error")

        terminal = turn.get_by_test_id("terminal")
        expect(terminal).to_have_attribute("data-exit-code", "0", timeout=T)
        expect(terminal.get_by_test_id("terminal-output")).to_have_text("make\nok\n")
        saw("terminal.stream", "terminal.complete")
        expect(turn.get_by_test_id("file-changed")).to_have_text(
            "Created notes.txt version 1 · by the agent", timeout=T
        )
        saw("file_changed")

        # message.delta: streamed text of its own (markdown, like text_delta), not a
        # generic card.
        message = turn.get_by_test_id("message-text")
        expect(message).to_have_text("said through message.delta", timeout=T)
        expect(message.locator("strong")).to_have_text("message.delta")
        saw("message.delta")
        plan = turn.get_by_test_id("plan")
        expect(plan.get_by_test_id("plan-step")).to_have_count(3, timeout=T)
        steps = {
            s: plan.locator(f"[data-testid='plan-step'][data-step-id='{s}']")
            for s in ("s1", "s2", "s3")
        }
        expect(steps["s1"]).to_have_attribute("data-status", "done")
        expect(steps["s1"]).to_contain_text("Read the code — read 3 files")
        saw("plan.created", "plan.step_completed")
        expect(steps["s2"]).to_have_attribute("data-status", "running")
        saw("plan.step_started")
        expect(steps["s3"]).to_have_attribute("data-status", "pending")
        expect(plan.get_by_test_id("plan-revised")).to_have_text("revised")
        expect(plan).to_contain_text("one more step")
        saw("plan.revised")
        generic = turn.get_by_test_id("generic-event")
        # the unknown type only: every known one has its own rendering
        expect(generic).to_have_count(1)
        expect(generic).to_have_attribute("data-event-type", "future.widget")
        expect(generic).to_contain_text('"answer": 42')

        # The question waits for us; so does the session.
        question = turn.get_by_test_id("question")
        expect(question.get_by_test_id("question-text")).to_have_text(
            "Which colour?", timeout=T
        )
        expect(question.get_by_test_id("answer-option")).to_have_text(["red", "blue"])
        saw("question_requested")
        expect(turn).to_have_attribute("data-status", "waiting")
        status_is(page, item, "waiting")
        expect(turn.get_by_test_id("usage")).to_have_text("7 in · 9 out tokens")
        saw("usage_update")
        # An error event the gateway sent on its own (no command of ours asked): a toast.
        toast = page.locator("[data-testid='toast'][data-level='error']").filter(
            has_text="Overloaded"
        )
        expect(toast).to_have_count(1, timeout=T)
        expect(toast).to_contain_text("Busy, slowing down")
        saw("error")
        # A second message while the turn waits is queued in the page, not refused.
        send(page, "one more thing")
        queued = page.get_by_test_id("pending-message")
        expect(queued).to_have_attribute("data-state", "queued", timeout=T)
        queued.get_by_test_id("pending-cancel").click()
        expect(queued).to_have_count(0)

        page.get_by_test_id("steer-input").fill("prefer green")
        page.get_by_test_id("steer-send").click()
        expect(turn.get_by_test_id("steer")).to_have_text(
            "Steered: prefer green", timeout=T
        )
        saw("steer_received")
        question.get_by_test_id("answer-input").fill("green")
        question.get_by_test_id("answer-submit").click()
        resolved = turn.get_by_test_id("question-resolved")
        expect(resolved).to_contain_text("Which colour?", timeout=T)
        expect(resolved).to_contain_text("green")
        expect(turn.get_by_test_id("question")).to_have_count(0)
        saw("approval_resolved")

        permission = turn.get_by_test_id("permission")
        expect(permission.get_by_test_id("permission-action")).to_have_text(
            "delete build/", timeout=T
        )
        saw("permission_requested")
        permission.get_by_test_id("allow").click()
        expect(turn.get_by_test_id("permission-resolved")).to_contain_text(
            "allowed", timeout=T
        )

        expect(turn).to_have_attribute("data-status", "complete", timeout=T)
        # the text after the cards is a stretch of its own, below them
        expect(turn.get_by_test_id("assistant-text").last).to_have_text("Done.")
        # turn_complete's usage
        expect(turn.get_by_test_id("usage")).not_to_have_text("7 in · 9 out tokens")
        saw("turn_complete")
        status_is(page, item, "ready")

        # The Files panel: list_files, read_file, file_history.
        files = page.get_by_test_id("files-panel")
        files.locator("[data-testid='file-item'][data-path='notes.txt']").click()
        saw("file_list")
        expect(files.get_by_test_id("file-content")).to_have_text("one", timeout=T)
        saw("file_content")
        expect(files.get_by_test_id("file-iteration")).to_have_count(1, timeout=T)
        saw("file_history_list")

        # The turn history (get_history), and one turn's stored events (get_events).
        page.get_by_test_id("side-tab-history").click()
        recorded = page.locator("[data-testid='history-turn'][data-status='complete']")
        expect(recorded).to_have_count(1, timeout=T)
        expect(recorded).to_contain_text("Plan: a **bold** move")
        saw("history")
        recorded.get_by_test_id("history-show-events").click()
        stored = recorded.get_by_test_id("history-event")
        expect(stored.first).to_have_attribute("data-type", "turn_started", timeout=T)
        expect(stored.last).to_have_attribute("data-type", "turn_complete")
        expect(
            recorded.locator("[data-testid='history-event'][data-type='plan.revised']")
        ).to_have_count(1)
        saw("event_list")
        # The members (manage_members), in Diagnostics.
        page.get_by_test_id("diagnostics-open").click()
        page.get_by_test_id("members-panel").locator("summary").click()
        expect(
            page.locator("[data-testid='member-row'][data-user-id='dev-user-001']")
        ).to_have_attribute("data-role", "owner", timeout=T)
        saw("member_list")
        page.get_by_test_id("diagnostics-close").click()

        # Leave and join again: session_left, then a new state_snapshot.
        page.get_by_test_id("session-follow").click()
        expect(page.get_by_test_id("session-joined")).to_have_text(
            "Not following", timeout=T
        )
        saw("session_left")
        page.get_by_test_id("session-follow").click()
        expect(page.get_by_test_id("session-joined")).to_have_text(
            "Following live", timeout=T
        )

        # A failing turn: its error under the turn, and the session winds down.
        send(page, "/fail Boom the build broke")
        failed_turn = page.get_by_test_id("turn").last
        expect(failed_turn).to_have_attribute("data-status", "error", timeout=T)
        expect(failed_turn.get_by_test_id("turn-error")).to_have_text(
            "Boom the build broke"
        )
        saw("turn_error")
        expect(
            chat.get_by_test_id("notice").filter(has_text="Sandbox removed")
        ).to_have_count(1, timeout=T)
        saw("sandbox_removed")
        status_is(page, item, "inactive")

        # Session management, on the other session.
        by_id(page, elsewhere).hover()  # the row's buttons show on hover
        by_id(page, elsewhere).get_by_test_id("session-rename").click()
        box = by_id(page, elsewhere).get_by_test_id("rename-input")
        box.fill("renamed here")
        box.press("Enter")
        expect(by_id(page, elsewhere).get_by_test_id("session-name")).to_have_text(
            "renamed here", timeout=T
        )
        saw("session_renamed")
        by_id(page, elsewhere).hover()  # the row's buttons show on hover
        by_id(page, elsewhere).get_by_test_id("session-archive").click()
        expect(by_id(page, elsewhere)).to_have_attribute(
            "data-archived", "1", timeout=T
        )
        saw("session_archived")
        by_id(page, elsewhere).hover()  # the row's buttons show on hover
        by_id(page, elsewhere).get_by_test_id("session-unarchive").click()
        expect(by_id(page, elsewhere)).to_have_attribute(
            "data-archived", "0", timeout=T
        )
        saw("session_unarchived")
        by_id(page, elsewhere).hover()  # the row's buttons show on hover
        by_id(page, elsewhere).get_by_test_id("session-delete").click()
        page.get_by_test_id("confirm-ok").click()
        expect(by_id(page, elsewhere)).to_have_count(0, timeout=T)
        saw("session_deleted")

        assert shown == set(SERVER_EVENTS), sorted(set(SERVER_EVENTS) ^ shown)

        # A reloaded page rebuilds the same from get_state.
        page.reload()
        ready(page)
        by_id(page, sid).click()
        turn = page.get_by_test_id("turn").first
        expect(turn.get_by_test_id("tool-card")).to_have_count(3, timeout=T)
        expect(turn.get_by_test_id("generic-event")).to_have_count(1)
        for testid in (
            "thinking",
            "terminal",
            "question-resolved",
            "permission-resolved",
            "steer",
            "file-changed",
            "message-text",
            "plan",
        ):
            expect(turn.get_by_test_id(testid)).to_have_count(1)
        expect(
            turn.locator("[data-testid='plan-step'][data-status='running']")
        ).to_have_attribute("data-step-id", "s2")
        assert page.page_errors == []
    finally:
        page.context.close()


def test_steer_and_stop_a_running_stream_from_the_page(page: Page, app: App):
    ready(page)
    item = new_session(page)
    send(page, "/stream 100000 200")
    turn = page.get_by_test_id("turn")
    expect(turn.get_by_test_id("assistant-text")).to_contain_text("0 1 2 3", timeout=T)
    expect(turn).to_have_attribute("data-status", "running")
    status_is(page, item, "running")
    # A second message while the turn runs waits in the page (composer.js), unsent.
    send(page, "one more thing")
    queued = page.get_by_test_id("pending-message")
    expect(queued).to_have_attribute("data-state", "queued", timeout=T)
    errors = page.locator("[data-testid='toast'][data-level='error']")
    page.get_by_test_id("steer-input").fill("slow down")
    page.get_by_test_id("steer-send").click()
    expect(turn.get_by_test_id("steer")).to_have_text("Steered: slow down", timeout=T)
    # The steer's event left the gateway after anything sent before it: no refusal.
    expect(errors).to_have_count(0)
    queued.get_by_test_id("pending-cancel").click()
    expect(queued).to_have_count(0)
    page.get_by_test_id("stop").click()
    # 100,000 deltas at 200/s would take over 8 minutes: only the stop can end it now.
    expect(turn).to_have_attribute("data-status", "stopped", timeout=T)
    status_is(page, item, "ready")
    expect(page.get_by_test_id("stop")).to_be_hidden()
    # the steer sits where it came in the stream: the text is in two stretches around it
    text = " ".join(turn.get_by_test_id("assistant-text").all_inner_texts())
    history = app.invoke(
        "get_history", sessionId=item.get_attribute("data-session-id")
    )["turns"][-1]
    assert history["status"] == "stopped"
    # the page shows exactly what was streamed
    assert text.split() == history["finalText"].split()
    assert page.page_errors == []


def test_rename_archive_unarchive_delete_from_the_page(page: Page, app: App):
    ready(page)
    keep = new_session(page, "echo")
    keep_id = keep.get_attribute("data-session-id")
    other = new_session(page, "echo", existing=1)
    other_id = other.get_attribute("data-session-id")

    def by_id(sid):
        return page.locator(f"[data-testid='session-item'][data-session-id='{sid}']")

    by_id(keep_id).hover()  # the row's buttons show on hover
    by_id(keep_id).get_by_test_id("session-rename").click()
    box = by_id(keep_id).get_by_test_id("rename-input")
    box.fill("Renamed from the page")
    box.press("Enter")
    expect(by_id(keep_id).get_by_test_id("session-name")).to_have_text(
        "Renamed from the page", timeout=T
    )
    assert {s["id"]: s for s in app.invoke("list_sessions")["sessions"]}[keep_id][
        "name"
    ] == "Renamed from the page"

    by_id(keep_id).hover()  # the row's buttons show on hover
    by_id(keep_id).get_by_test_id("session-archive").click()
    expect(by_id(keep_id)).to_have_count(0, timeout=T)  # hidden unless show-archived
    page.get_by_test_id("show-archived").check()
    expect(by_id(keep_id)).to_have_attribute("data-archived", "1", timeout=T)
    by_id(keep_id).hover()  # the row's buttons show on hover
    by_id(keep_id).get_by_test_id("session-unarchive").click()
    expect(by_id(keep_id)).to_have_attribute("data-archived", "0", timeout=T)
    page.get_by_test_id("show-archived").uncheck()
    expect(by_id(keep_id)).to_have_count(1)
    assert {s["id"]: s for s in app.invoke("list_sessions")["sessions"]}[keep_id][
        "archived"
    ] is False

    by_id(other_id).hover()  # the row's buttons show on hover
    by_id(other_id).get_by_test_id("session-delete").click()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_be_visible(timeout=T)
    page.get_by_test_id("confirm-cancel").click()
    expect(dialog).to_be_hidden()
    expect(by_id(other_id)).to_have_count(1)
    by_id(other_id).hover()  # the row's buttons show on hover
    by_id(other_id).get_by_test_id("session-delete").click()
    page.get_by_test_id("confirm-ok").click()
    expect(by_id(other_id)).to_have_count(0, timeout=T)
    expect(page.get_by_test_id("chat-title")).to_have_text("No session selected")
    assert other_id not in {
        s["id"] for s in app.invoke("list_sessions", includeArchived=True)["sessions"]
    }
    assert page.page_errors == []


def test_file_browser_history_and_older_iterations(page: Page, app: App):
    ready(page)
    new_session(page)
    send(
        page,
        "/write notes.txt first version\n/write notes.txt second version\n"
        "/write old.txt x\n/delete old.txt\n/write old.txt back again",
    )
    expect(page.get_by_test_id("turn")).to_have_attribute(
        "data-status", "complete", timeout=T
    )
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

    # old.txt: written, deleted, written again. Its deletion is iteration 2, which has
    # no content to show: it is listed as deleted, and cannot be opened.
    files.locator("[data-testid='file-item'][data-path='old.txt']").click()
    expect(content).to_have_text("back again", timeout=T)
    expect(iterations).to_have_count(3, timeout=T)
    deletion = files.locator("[data-testid='file-iteration'][data-iteration='2']")
    expect(deletion).to_contain_text("deleted")
    expect(deletion).to_be_disabled()
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
        for p in (
            page,
            second,
        ):  # both see the stream, and the turn waiting on its question
            turn = p.get_by_test_id("turn")
            expect(turn.get_by_test_id("assistant-text").first).to_contain_text(
                re.compile(r"^0 1 2 3 .* 298 299"), timeout=T
            )
            expect(turn).to_have_attribute("data-status", "waiting", timeout=T)
            expect(turn.get_by_test_id("question-text")).to_have_text("Go on?")
        second.get_by_test_id("answer-option").filter(
            has_text="yes"
        ).click()  # answered from the other page
        for p in (page, second):
            turn = p.get_by_test_id("turn")
            expect(turn.get_by_test_id("question-resolved")).to_contain_text(
                "yes", timeout=T
            )
            expect(turn).to_have_attribute("data-status", "complete", timeout=T)
            # below the answered question: a stretch of text of its own
            expect(turn.get_by_test_id("assistant-text").last).to_have_text("the end")
            expect(turn.get_by_test_id("user-text")).to_have_text(
                "/stream 300\n/ask Go on? | yes | no\nthe end"
            )
        assert (
            page.get_by_test_id("assistant-text").all_inner_texts()
            == second.get_by_test_id("assistant-text").all_inner_texts()
        )
        assert errors == []
    finally:
        context.close()
    assert page.page_errors == []


def test_an_error_event_shows_a_toast_and_auth_failed_the_indicator(
    page: Page, app: App, tmp_path
):
    gw = GatewayProcess(tmp_path / "gw", args=["--token", "right"]).start()
    try:
        ready(page)
        indicator = page.get_by_test_id("connection-state")
        indicator.click()
        page.get_by_test_id("gateway-url").fill(gw.url)
        page.get_by_test_id("gateway-token").fill("wrong")
        page.get_by_test_id("gateway-connect").click()
        # The gateway's answer to the handshake's authenticate: an error event, unasked
        # by the page.
        toast = page.locator("[data-testid='toast'][data-level='error']").filter(
            has_text="AUTH_FAILED"
        )
        expect(toast).to_have_count(1, timeout=T)
        expect(toast).to_contain_text("Invalid token")
        expect(indicator).to_have_text("Sign-in failed", timeout=T)
        expect(indicator).to_have_attribute("data-state", "auth-failed")
        indicator.click()
        page.get_by_test_id("gateway-token").fill("right")
        page.get_by_test_id("gateway-connect").click()
        expect(indicator).to_have_text("Connected", timeout=T)
        assert app.invoke("get_state")["connection"]["url"] == gw.url
        assert page.page_errors == []
    finally:
        gw.stop()


def test_events_outside_a_turn_show_as_generic_cards_and_survive_a_reload(
    page: Page, app: App
):
    ready(page)
    item = new_session(page)
    sid = item.get_attribute("data-session-id")
    send(
        page,
        "\n".join(
            [
                # unknown, with a seq, outside the turn
                '/emit-session review.flagged {"why": "late"}',
                # unknown, no seq at all
                '/emit-unsequenced presence.changed {"who": ["ann"]}',
                # known, with a mistyped field
                '/emit-session session_renamed {"name": 5}',
                '/emit text_delta {"text": 5}',  # known, mistyped, inside the turn
                "all said",
            ]
        ),
    )
    expect(page.get_by_test_id("turn")).to_have_attribute(
        "data-status", "complete", timeout=T
    )
    chat = page.get_by_test_id("chat")

    def cards_are_there() -> None:
        for type_ in ("review.flagged", "presence.changed"):
            card = chat.locator(
                f"[data-testid='generic-event'][data-event-type='{type_}']"
            )
            expect(card).to_have_count(1, timeout=T)
            expect(card).not_to_have_attribute("data-invalid", "1")
        expect(chat.locator("[data-event-type='presence.changed']")).to_contain_text(
            '"ann"'
        )
        for type_ in ("session_renamed", "text_delta"):
            card = chat.locator(
                f"[data-testid='generic-event'][data-event-type='{type_}'][data-invalid='1']"
            )
            expect(card).to_have_count(1, timeout=T)
            expect(card.get_by_test_id("generic-reason")).to_contain_text(
                "unexpected fields"
            )
        # The mistyped rename renamed nothing; the mistyped delta added no text.
        expect(item.get_by_test_id("session-name")).not_to_have_text("5")
        expect(page.get_by_test_id("assistant-text")).to_have_text("all said")

    cards_are_there()
    # The two mistyped events are also counted, once, as bad input.
    warning = page.locator("[data-testid='toast'][data-kind='bad-input']")
    expect(warning).to_have_count(1, timeout=T)
    expect(warning).to_contain_text("2 bad frames from the gateway")
    page.reload()
    ready(page)
    by_id(page, sid).click()
    expect(page.get_by_test_id("turn")).to_have_count(1, timeout=T)
    cards_are_there()
    state = app.invoke("get_state")["chats"][sid]
    assert {e["type"] for e in state["other"]} >= {"review.flagged", "presence.changed"}
    assert sorted(i["event"]["type"] for i in state["invalid"]) == [
        "session_renamed",
        "text_delta",
    ]
    assert page.page_errors == []


def test_bad_frames_from_the_gateway_are_one_warning_that_counts(browser, dim_home):
    from misbehaving_gateway import MisbehavingGateway

    gw = MisbehavingGateway().start()
    app = App(dim_home, ["--gateway", gw.url])
    page = None
    try:
        app.wait_connected()
        page = open_page(browser, app)
        ready(page)
        warnings = page.locator("[data-testid='toast'][data-level='warning']")
        gw.send("{this is not json")
        expect(warnings).to_have_count(1, timeout=T)
        expect(warnings).to_contain_text("1 bad frame from the gateway")
        gw.send(json.dumps([1, 2, 3]))
        gw.send(b"\x00\x01binary")
        # One warning, updated in place: the count, and the last reason.
        expect(warnings.first).to_contain_text(
            "3 bad frames from the gateway", timeout=T
        )
        expect(warnings.first).to_contain_text("last: binary frame")
        expect(warnings).to_have_count(1)
        # Still connected: bad input is never fatal.
        expect(page.get_by_test_id("connection-state")).to_have_text("Connected")
        assert page.page_errors == []
    finally:
        if page is not None:
            page.context.close()
        app.stop()
        gw.stop()


def test_commands_queued_offline_are_pending_can_be_cancelled_and_go_after_reconnect(
    page: Page, app: App
):
    ready(page)
    item = new_session(page, "echo")
    sid = item.get_attribute("data-session-id")
    app.invoke("gateway_disconnect")
    indicator = page.get_by_test_id("connection-state")
    expect(indicator).to_have_text("Offline", timeout=T)
    for text in ("first queued", "second queued", "third queued"):
        send(page, text)
        expect(page.get_by_test_id("message-input")).to_have_value("", timeout=T)
    outbox = page.get_by_test_id("outbox")
    items = outbox.get_by_test_id("outbox-item")
    expect(items).to_have_count(3, timeout=T)
    for i, text in enumerate(("first queued", "second queued", "third queued")):
        expect(items.nth(i)).to_contain_text(text)
        expect(items.nth(i)).to_have_attribute("data-state", "pending")
    expect(items.get_by_test_id("outbox-cancel")).to_have_count(3)
    items.filter(has_text="second queued").get_by_test_id("outbox-cancel").click()
    expect(items).to_have_count(2, timeout=T)
    expect(items.filter(has_text="second queued")).to_have_count(0)
    assert [i["message"]["text"] for i in app.invoke("get_state")["outbox"]] == [
        "first queued",
        "third queued",
    ]

    app.invoke("gateway_connect", url=app.runtime["gatewayUrl"])
    expect(indicator).to_have_text("Connected", timeout=T)
    turns = page.get_by_test_id("turn")
    expect(turns).to_have_count(2, timeout=T)
    # in order, the cancelled one never
    for i, text in enumerate(("first queued", "third queued")):
        expect(turns.nth(i).get_by_test_id("user-text")).to_have_text(text)
        expect(turns.nth(i)).to_have_attribute("data-status", "complete", timeout=T)
        expect(turns.nth(i).get_by_test_id("assistant-text")).to_have_text(text)
    expect(outbox).to_be_hidden(timeout=T)
    wait_until(
        lambda: (
            [t["userText"] for t in app.invoke("get_state")["chats"][sid]["turns"]]
            == ["first queued", "third queued"]
        ),
        what="exactly the two turns in the stores",
    )
    assert page.page_errors == []
