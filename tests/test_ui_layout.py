"""The page's layout in a real headless Chromium: the three window sizes in light and dark,
the session list and the workspace panel docked or as drawers, what is remembered across a
reload, the workspace tabs by keyboard, and the Diagnostics view."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

# ms: generous for 2 shared, busy cores; a passing run waits far less
T = 30_000

SIZES = [(800, 600), (1280, 800), (1920, 1080)]
LONG_NAME = "Refactor the parser and write the migration notes for the release"


def box(locator) -> dict:
    b = locator.bounding_box()
    assert b is not None, f"{locator} has no box (not rendered)"
    return b


def overlap(a: dict, b: dict) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


def inside(b: dict, width: int, height: int) -> bool:
    return (
        b["x"] >= 0
        and b["y"] >= 0
        and b["x"] + b["width"] <= width + 0.5
        and b["y"] + b["height"] <= height + 0.5
    )


def open_page(browser, app, width, height, scheme="light", session=None):
    context = browser.new_context(
        viewport={"width": width, "height": height}, color_scheme=scheme
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    url = app.runtime["uiUrl"] + (f"&session={session}" if session else "")
    page.goto(url)
    page.page_errors = errors  # type: ignore[attr-defined]
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=T)
    return context, page


def check_layout(page, width: int, height: int, scheme: str, shots) -> None:
    where = f"{width}x{height} {scheme}"
    title = page.get_by_test_id("chat-title")
    message = page.get_by_test_id("message-input")
    send = page.get_by_test_id("send")
    expect(title).to_have_text(LONG_NAME, timeout=T)
    expect(message).to_be_enabled(timeout=T)
    main = box(page.locator("main.main"))
    boxes = {"title": box(title), "message box": box(message), "Send": box(send)}
    for name, b in boxes.items():
        assert inside(b, width, height), f"{where}: the {name} is off screen: {b}"
    names = list(boxes)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not overlap(boxes[a], boxes[b]), f"{where}: {a} overlaps {b}"
    # the title shows (with an ellipsis when it must), not squeezed to nothing
    assert boxes["title"]["width"] >= 200, f"{where}: {boxes['title']}"
    # the empty message box is two lines at most
    assert boxes["message box"]["height"] <= 72, f"{where}: {boxes['message box']}"
    sidebar = page.locator("aside.sidebar")
    panel = page.get_by_test_id("side-panel")
    if width < 1000:
        assert main["width"] >= 0.6 * width, f"{where}: the chat is {main['width']} px"
        expect(sidebar).to_be_hidden()
        expect(panel).to_be_hidden()
        expect(page.get_by_test_id("sessions-toggle")).to_be_visible()
        expect(page.get_by_test_id("panel-toggle")).to_be_visible()
    else:
        # three columns, the chat the widest
        expect(sidebar).to_be_visible()
        expect(panel).to_be_visible()
        side_box, panel_box = box(sidebar), box(panel)
        assert side_box["x"] + side_box["width"] <= main["x"] + 0.5, where
        assert main["x"] + main["width"] <= panel_box["x"] + 0.5, where
        assert main["width"] > max(side_box["width"], panel_box["width"]), where
        # on a wide screen the conversation keeps a readable width
        assert boxes["message box"]["width"] <= 900, where
    # light is light and dark is dark
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    level = sum(int(n) for n in re.findall(r"\d+", background)[:3]) / 3
    assert (level > 200) if scheme == "light" else (level < 60), (where, background)
    page.screenshot(path=str(shots / f"layout-{width}x{height}-{scheme}.png"))
    # typing more grows the box, up to its limit; it never covers Send
    message.fill("line\n" * 12)
    grown = box(message)
    assert boxes["message box"]["height"] < grown["height"], (where, grown)
    assert grown["height"] <= 0.36 * height + 1, (where, grown)
    assert not overlap(grown, box(send)), where
    assert inside(grown, width, height), where


def test_at_each_size_in_light_and_dark_the_chat_keeps_its_room_and_the_title_shows(
    browser, app, tmp_path
):
    """And the composer and Send show, nothing overlaps; screenshots in tmp_path."""
    made = app.invoke("create_session", agentType="echo", name=LONG_NAME)
    sid = made["session"]["id"]
    for width, height in SIZES:
        for scheme in ("light", "dark"):
            context, page = open_page(browser, app, width, height, scheme, sid)
            try:
                check_layout(page, width, height, scheme, tmp_path)
                assert page.page_errors == []
            finally:
                context.close()


def test_hiding_the_session_list_and_the_workspace_panel_survives_a_reload(page, app):
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=T)
    sidebar = page.locator("aside.sidebar")
    panel = page.get_by_test_id("side-panel")
    main = page.locator("main.main")
    expect(sidebar).to_be_visible()
    expect(panel).to_be_visible()
    width_before = box(main)["width"]
    page.get_by_test_id("sessions-toggle").click()
    page.get_by_test_id("panel-toggle").click()
    expect(sidebar).to_be_hidden()
    expect(panel).to_be_hidden()
    expect(page.get_by_test_id("panel-toggle")).to_have_attribute(
        "aria-expanded", "false"
    )
    assert box(main)["width"] == 1280
    page.reload()
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=T)
    expect(sidebar).to_be_hidden()
    expect(panel).to_be_hidden()
    expect(page.get_by_test_id("sessions-toggle")).to_have_attribute(
        "aria-expanded", "false"
    )
    # shown again, and that is remembered too
    page.get_by_test_id("sessions-toggle").click()
    page.get_by_test_id("panel-toggle").click()
    page.get_by_test_id("side-tab-history").click()
    page.reload()
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=T)
    expect(sidebar).to_be_visible()
    expect(panel).to_be_visible()
    expect(page.get_by_test_id("side-tab-history")).to_have_attribute(
        "aria-selected", "true"
    )
    expect(page.get_by_test_id("history-panel")).to_be_visible()
    expect(page.get_by_test_id("files-panel")).to_be_hidden()
    assert box(main)["width"] == width_before
    assert page.page_errors == []


def test_the_workspace_tabs_work_by_keyboard_and_each_has_the_whole_height(page, app):
    sid = app.invoke("create_session", agentType="echo", name="tabs")["session"]["id"]
    app.invoke("join_session", sessionId=sid)
    app.invoke("run_turn", sessionId=sid, text="for the history")
    page.reload()
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=T)
    page.locator(f"[data-testid='session-item'][data-session-id='{sid}']").click()
    tabs = page.get_by_role("tablist", name="Workspace")
    expect(tabs.get_by_role("tab")).to_have_count(3)
    files_tab = tabs.get_by_role("tab", name="Files")
    expect(files_tab).to_have_attribute("aria-selected", "true")
    panels = {
        name: page.get_by_test_id(f"{name}-panel")
        for name in ("files", "sync", "history")
    }

    def only(name):
        for other, p in panels.items():
            if other == name:
                expect(p).to_be_visible()
            else:
                expect(p).to_be_hidden()
        expect(page.get_by_test_id(f"side-tab-{name}")).to_be_focused()
        expect(page.get_by_test_id(f"side-tab-{name}")).to_have_attribute(
            "aria-selected", "true"
        )

    files_tab.focus()
    page.keyboard.press("ArrowRight")
    only("sync")
    # a whole tab's height, not a share of the panel
    side, sync = box(page.get_by_test_id("side-panel")), box(panels["sync"])
    assert sync["height"] >= side["height"] - 60, (side, sync)
    page.keyboard.press("ArrowRight")
    only("history")
    # shown, the History tab reads the gateway's turn history
    expect(page.get_by_test_id("history-turn")).to_have_count(1, timeout=T)
    page.keyboard.press("ArrowRight")
    only("files")
    page.keyboard.press("ArrowLeft")
    only("history")
    page.keyboard.press("Home")
    only("files")
    page.keyboard.press("End")
    only("history")
    # one Tab stop for the tab list: Tab goes on into the selected panel
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_test_id("side-tab-files")).not_to_be_focused()
    assert page.evaluate("document.activeElement.getAttribute('role')") != "tab"
    assert page.page_errors == []


def test_on_a_narrow_window_the_session_list_and_the_panel_open_as_drawers(
    browser, app, tmp_path
):
    sid = app.invoke("create_session", agentType="echo", name="narrow one")["session"][
        "id"
    ]
    context, page = open_page(browser, app, 800, 600)
    try:
        sidebar = page.locator("aside.sidebar")
        panel = page.get_by_test_id("side-panel")
        toggle = page.get_by_test_id("sessions-toggle")
        expect(sidebar).to_be_hidden()
        toggle.click()
        expect(sidebar).to_be_visible()
        expect(toggle).to_have_attribute("aria-expanded", "true")
        page.screenshot(path=str(tmp_path / "narrow-sessions-drawer.png"))
        # over the chat, which keeps its width
        assert box(page.locator("main.main"))["width"] == 800
        # Esc closes it and gives the focus back to its button
        page.keyboard.press("Escape")
        expect(sidebar).to_be_hidden()
        expect(toggle).to_be_focused()
        # a click outside closes it
        toggle.click()
        expect(sidebar).to_be_visible()
        page.mouse.click(700, 300)
        expect(sidebar).to_be_hidden()
        # picking a session closes it and shows that session
        toggle.click()
        page.locator(f"[data-testid='session-item'][data-session-id='{sid}']").click()
        expect(sidebar).to_be_hidden()
        expect(page.get_by_test_id("chat-title")).to_have_text("narrow one")
        # the workspace panel from the right, one drawer at a time
        page.get_by_test_id("panel-toggle").click()
        expect(panel).to_be_visible()
        panel_box = box(panel)
        page.screenshot(path=str(tmp_path / "narrow-workspace-drawer.png"))
        assert panel_box["x"] + panel_box["width"] == 800
        toggle.click()
        expect(sidebar).to_be_visible()
        expect(panel).to_be_hidden()
        page.keyboard.press("Escape")
        # nothing is trapped: Tab leaves an open drawer
        page.get_by_test_id("panel-toggle").click()
        page.get_by_test_id("side-tab-files").focus()
        for _ in range(30):
            page.keyboard.press("Tab")
            if not page.evaluate(
                "document.getElementById('side-panel').contains(document.activeElement)"
            ):
                break
        else:
            pytest.fail("Tab never left the open workspace drawer")
        # a file-change chip opens the Files tab (app.js calls showSideTab): also on a narrow window
        page.keyboard.press("Escape")
        expect(panel).to_be_hidden()
        page.evaluate("import('/js/layout.js').then((m) => m.showSideTab('sync'))")
        expect(panel).to_be_visible()
        expect(page.get_by_test_id("sync-panel")).to_be_visible()
        # and a shortcut to the session search first shows the session list
        page.evaluate("import('/js/layout.js').then((m) => m.showSessions())")
        expect(sidebar).to_be_visible()
        expect(panel).to_be_hidden()
        # a drawer is not remembered: a reload shows the chat
        page.reload()
        expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=T)
        expect(panel).to_be_hidden()
        expect(sidebar).to_be_hidden()
        assert page.page_errors == []
    finally:
        context.close()


@pytest.mark.parametrize(
    "width,height,scheme",
    [(1280, 800, "light"), (800, 600, "dark"), (1920, 1080, "dark")],
)
def test_diagnostics_opens_over_the_chat_with_the_actors_and_a_message_log(
    browser, app, tmp_path, width, height, scheme
):
    context, page = open_page(browser, app, width, height, scheme)
    try:
        view = page.get_by_test_id("diagnostics")
        expect(view).to_be_hidden()
        opener = page.get_by_test_id("diagnostics-open")
        opener.click()
        expect(view).to_be_visible()
        v = box(view)
        assert v["width"] >= 0.75 * width and v["height"] >= 0.85 * (height - 48), v
        # the chat underneath is out of reach while it is open
        assert page.evaluate("document.querySelector('main.main').inert") is True
        rows = page.get_by_test_id("actor-row")
        expect(rows).to_have_count(6, timeout=T)
        for title in ("Actor", "State", "Restarts", "Handled", "Last error"):
            expect(
                page.locator("table.actors th", has_text=re.compile(f"^{title}$"))
            ).to_be_visible()
        router = page.locator("[data-testid='actor-row'][data-actor='router']")
        router.get_by_test_id("actor-logs").click()
        lines = page.get_by_test_id("actor-log-lines")
        expect(lines).to_contain_text("invoke", timeout=T)
        log_box = box(lines)
        assert log_box["height"] >= 180 and log_box["width"] >= 0.6 * width, log_box
        # monospace, newest at the bottom, followed
        font = lines.evaluate("(el) => getComputedStyle(el).fontFamily").lower()
        assert "mono" in font, font
        expect(page.get_by_test_id("actor-log-follow")).to_be_checked()
        app.invoke("create_session", agentType="echo", name="newest-at-the-bottom")
        expect(lines).to_contain_text("newest-at-the-bottom", timeout=T)
        text = lines.inner_text().strip().split("\n")
        created = [line for line in text if "create_session" in line]
        assert "newest-at-the-bottom" in created[-1]
        page.wait_for_function(
            "(p) => p.scrollTop + p.clientHeight >= p.scrollHeight - 4",
            arg=lines.element_handle(),
        )
        # filter by type
        page.get_by_test_id("actor-log-filter").fill("connection_state")
        page.get_by_test_id("actor-log-filter").press("Enter")
        expect(lines).not_to_contain_text(" invoke ", timeout=T)
        page.screenshot(
            path=str(tmp_path / f"diagnostics-{width}x{height}-{scheme}.png")
        )
        # An event no session claims (as the bridge hands it to the page): under "Other
        # gateway events" here, and counted on the Diagnostics button
        page.evaluate(
            "window.__dim.applyEvent({type: 'tenant.notice', text: 'maintenance at noon'})"
        )
        other = page.get_by_test_id("global-events")
        expect(other).to_be_visible()
        expect(opener).to_have_attribute("data-events", "1")
        expect(opener).to_have_accessible_name("Diagnostics (1 other gateway event)")
        other.locator(":scope > summary").click()
        expect(
            other.locator(
                "[data-testid='generic-event'][data-event-type='tenant.notice']"
            )
        ).to_contain_text("maintenance at noon")
        # Members are here too
        page.get_by_test_id("members-panel").locator("summary").click()
        expect(page.get_by_test_id("members-status")).not_to_have_text(
            "Loading…", timeout=T
        )
        # Esc closes it and the focus goes back to its button
        page.get_by_test_id("actor-log-filter").focus()
        page.keyboard.press("Escape")
        expect(view).to_be_hidden()
        expect(opener).to_be_focused()
        assert page.evaluate("document.querySelector('main.main').inert") is False
        # the Workspace button, Diagnostics open, brings the workspace panel into view
        opener.click()
        expect(view).to_be_visible()
        page.get_by_test_id("panel-toggle").click()
        expect(view).to_be_hidden()
        expect(page.get_by_test_id("side-panel")).to_be_visible()
        assert page.page_errors == []
    finally:
        context.close()
