"""Sessions and the keyboard, as a user sees them in real Chromium against the real app and
its embedded dev gateway: titles from the first message, the list ordered by last activity,
search across sessions and within a chat, archive with undo, the delete dialog, the
remembered agent, and everything done with the keyboard alone."""

from __future__ import annotations

import re

import pytest
from apphelpers import App, InvokeError
from playwright.sync_api import Page, expect
from uihelpers import ready

T = 30_000
MOD = "Control"  # Chromium on Linux: the shortcuts' "Mod"


def selected(page: Page):
    return page.locator("[data-testid='session-item'][aria-selected='true']")


def new_session(page: Page, existing: int) -> str:
    """A new echo session by the keyboard shortcut; its id."""
    page.keyboard.press(f"{MOD}+Shift+O")
    expect(page.get_by_test_id("session-item")).to_have_count(existing + 1, timeout=T)
    expect(selected(page)).to_have_count(1, timeout=T)
    expect(selected(page)).to_have_attribute("data-status", "ready", timeout=T)
    sid = selected(page).get_attribute("data-session-id")
    assert sid
    return sid


def send_by_keyboard(page: Page, text: str, turns: int) -> None:
    """Focus the message box with "/", type, Enter; wait for the turn to finish."""
    box = page.get_by_test_id("message-input")
    if not box.evaluate("el => el === document.activeElement"):
        page.evaluate("document.activeElement && document.activeElement.blur()")
        page.keyboard.press("/")
    expect(box).to_be_focused()
    page.keyboard.type(text)
    page.keyboard.press("Enter")
    done = page.locator("[data-testid='turn'][data-status='complete']")
    expect(done).to_have_count(turns, timeout=T)


def by_id(page: Page, sid: str):
    return page.locator(f"[data-testid='session-item'][data-session-id='{sid}']")


def order(page: Page) -> list[str]:
    return page.get_by_test_id("session-item").evaluate_all(
        "els => els.map(e => e.dataset.sessionId)"
    )


def test_first_message_titles_the_session_and_activity_orders_the_list(
    page: Page, app: App
):
    ready(page)
    first = new_session(page, 0)
    expect(by_id(page, first).get_by_test_id("session-name")).to_have_text(
        "New session"
    )
    send_by_keyboard(page, "# Fix the **parser** bug", 1)
    # The router named it from the first line, for every client: the gateway has it too.
    expect(by_id(page, first).get_by_test_id("session-name")).to_have_text(
        "Fix the parser bug", timeout=T
    )
    expect(page.get_by_test_id("chat-title")).to_have_text("Fix the parser bug")
    names = {s["id"]: s["name"] for s in app.invoke("list_sessions")["sessions"]}
    assert names[first] == "Fix the parser bug"
    # A second message does not rename it.
    send_by_keyboard(page, "and now something else entirely", 2)
    expect(by_id(page, first).get_by_test_id("session-name")).to_have_text(
        "Fix the parser bug"
    )

    second = new_session(page, 1)
    assert order(page) == [second, first]  # the newest first
    # The older session gets a turn: it moves to the top.
    by_id(page, first).click()
    expect(selected(page)).to_have_attribute("data-session-id", first)
    send_by_keyboard(page, "one more", 3)
    page.wait_for_function(
        "id => document.querySelector(\"[data-testid='session-item']\").dataset.sessionId === id",
        arg=first,
        timeout=T,
    )
    # A relative time in the row, the exact time as its tooltip.
    when = by_id(page, first).get_by_test_id("session-time")
    expect(when).to_have_text("just now")
    expect(when).to_have_attribute("title", re.compile(r"^Last activity: .*\d"))

    # Renaming by hand stays, by the keyboard: F2 on the focused row.
    by_id(page, second).focus()
    page.keyboard.press("F2")
    box = by_id(page, second).get_by_test_id("rename-input")
    expect(box).to_be_focused()
    page.keyboard.press(f"{MOD}+A")
    page.keyboard.type("Named by hand")
    page.keyboard.press("Enter")
    expect(by_id(page, second).get_by_test_id("session-name")).to_have_text(
        "Named by hand", timeout=T
    )
    expect(by_id(page, second)).to_be_focused()
    # ...and a first message does not replace a name someone gave.
    page.keyboard.press("Enter")
    expect(selected(page)).to_have_attribute("data-session-id", second)
    send_by_keyboard(page, "hello there", 1)
    expect(by_id(page, second).get_by_test_id("session-name")).to_have_text(
        "Named by hand"
    )
    names = {s["id"]: s["name"] for s in app.invoke("list_sessions")["sessions"]}
    assert names[second] == "Named by hand"
    assert page.page_errors == []


def test_search_filters_titles_and_finds_messages_across_sessions(page: Page, app: App):
    ready(page)
    apple = new_session(page, 0)
    send_by_keyboard(page, "apple pie recipe", 1)
    send_by_keyboard(page, "the crust needs butter", 2)
    cherry = new_session(page, 1)
    send_by_keyboard(page, "cherry tart", 1)
    expect(by_id(page, apple).get_by_test_id("session-name")).to_have_text(
        "apple pie recipe", timeout=T
    )

    page.keyboard.press(f"{MOD}+K")
    search = page.get_by_test_id("session-search")
    expect(search).to_be_focused()
    page.keyboard.type("APPLE")
    # The list keeps the sessions whose title matches.
    expect(page.get_by_test_id("session-item")).to_have_count(1, timeout=T)
    expect(by_id(page, apple)).to_have_count(1)

    # Message text across sessions: "butter" is in no title, but in a message of apple's.
    page.keyboard.press(f"{MOD}+A")
    page.keyboard.type("butter")
    expect(page.get_by_test_id("session-item")).to_have_count(0, timeout=T)
    results = page.get_by_test_id("search-result")
    expect(results).to_have_count(2, timeout=T)  # the message and the echo of it
    first = results.first
    expect(first).to_have_attribute("data-session-id", apple)
    expect(first.locator("mark")).to_have_text("butter")
    expect(page.get_by_test_id("search-results-panel")).to_contain_text("In messages")

    # Choosing one opens its session at that turn, with the words found in the chat.
    page.keyboard.press("Tab")
    expect(results.first).to_be_focused()
    page.keyboard.press("Enter")
    expect(selected(page)).to_have_count(0)  # filtered out of the list, but open:
    expect(page.get_by_test_id("chat-title")).to_have_text(
        "apple pie recipe", timeout=T
    )
    bar = page.get_by_test_id("find-bar")
    expect(bar).to_be_visible(timeout=T)
    expect(page.get_by_test_id("find-count")).to_have_text(re.compile(r"^\d of \d$"))

    # Escape in the search box clears it: every session is back.
    search.focus()
    page.keyboard.press("Escape")
    expect(search).to_have_value("")
    expect(page.get_by_test_id("session-item")).to_have_count(2)
    expect(page.get_by_test_id("search-results-panel")).to_be_hidden()

    # The command itself: bounded, and plain about bad queries.
    found = app.invoke("search_sessions", query="TART", limit=1)
    assert len(found["results"]) == 1 and found["more"] is True
    hit = found["results"][0]
    assert hit["sessionId"] == cherry
    assert hit["snippet"][hit["matchStart"] : hit["matchEnd"]].lower() == "tart"
    for bad, words in (("", "must not be empty"), ("x" * 201, "longer than 200")):
        with pytest.raises(InvokeError) as err:
            app.invoke("search_sessions", query=bad)
        assert err.value.code == "INVALID_ARGUMENTS"
        assert words in err.value.body["error"]["message"]
    assert page.page_errors == []


def test_find_in_chat_highlights_matches_and_steps_through_them(page: Page):
    ready(page)
    new_session(page, 0)
    send_by_keyboard(page, "banana bread", 1)
    send_by_keyboard(page, "more banana", 2)
    chat = page.get_by_test_id("chat")
    chat.focus()
    page.keyboard.press(f"{MOD}+F")
    box = page.get_by_test_id("find-input")
    expect(box).to_be_focused()
    page.keyboard.type("BANANA")
    count = page.get_by_test_id("find-count")
    # two user messages and their two echoes
    expect(count).to_have_text("1 of 4", timeout=T)
    assert page.evaluate("CSS.highlights.get('dim-find').size") == 4
    assert page.evaluate("CSS.highlights.get('dim-find-current').size") == 1
    page.keyboard.press("Enter")
    expect(count).to_have_text("2 of 4")
    page.keyboard.press("Shift+Enter")
    page.keyboard.press("Shift+Enter")
    expect(count).to_have_text("4 of 4")
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("find-bar")).to_be_hidden()
    expect(chat).to_be_focused()
    assert page.evaluate("CSS.highlights.has('dim-find')") is False
    assert page.page_errors == []


def test_archiving_the_open_session_leaves_it_with_undo(page: Page, app: App):
    ready(page)
    older = new_session(page, 0)
    newer = new_session(page, 1)
    expect(selected(page)).to_have_attribute("data-session-id", newer)
    # Archive from the row's "More actions" menu, by the keyboard.
    by_id(page, newer).focus()
    page.keyboard.press("Shift+F10")
    menu = page.get_by_test_id("session-menu")
    expect(menu).to_be_visible()
    expect(menu.get_by_test_id("session-menu-item").first).to_be_focused()
    menu.locator("[data-action='archive']").focus()
    page.keyboard.press("Enter")
    expect(by_id(page, newer)).to_have_count(0, timeout=T)
    # The open session was left for the next one.
    expect(selected(page)).to_have_attribute("data-session-id", older, timeout=T)
    toast = page.get_by_test_id("toast").filter(has_text="Archived “New session”")
    expect(toast).to_be_visible(timeout=T)
    toast.get_by_test_id("toast-action").click()
    expect(by_id(page, newer)).to_have_attribute("data-archived", "0", timeout=T)
    expect(selected(page)).to_have_attribute("data-session-id", newer, timeout=T)
    expect(toast).to_have_count(0)
    archived = {s["id"]: s["archived"] for s in app.invoke("list_sessions")["sessions"]}
    assert archived[newer] is False
    assert page.page_errors == []


def test_delete_dialog_focuses_cancel_so_enter_does_not_delete(page: Page):
    ready(page)
    sid = new_session(page, 0)
    by_id(page, sid).focus()
    page.keyboard.press("Delete")
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_be_visible(timeout=T)
    expect(page.get_by_test_id("confirm-cancel")).to_be_focused()
    expect(page.get_by_test_id("confirm-ok")).to_have_text("Delete session")
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    expect(by_id(page, sid)).to_have_count(1)
    expect(by_id(page, sid)).to_be_focused()
    # Deleting takes a deliberate choice of the danger button.
    page.keyboard.press("Delete")
    expect(dialog).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.get_by_test_id("confirm-ok")).to_be_focused()
    page.keyboard.press("Enter")
    expect(by_id(page, sid)).to_have_count(0, timeout=T)
    assert page.page_errors == []


def test_agent_picker_has_plain_labels_and_remembers_the_choice(page: Page):
    ready(page)
    picker = page.get_by_test_id("agent-type")
    labels = picker.locator("option").evaluate_all(
        "os => os.map(o => [o.value, o.textContent])"
    )
    assert labels == [["echo", "Echo (test agent)"], ["coding-agent", "Coding agent"]]
    picker.select_option("coding-agent")
    page.reload()
    ready(page)
    expect(page.get_by_test_id("agent-type")).to_have_value("coding-agent")
    page.keyboard.press(f"{MOD}+Shift+O")
    expect(selected(page)).to_have_count(1, timeout=T)
    expect(selected(page)).to_contain_text("Coding agent")
    assert page.page_errors == []


def test_keyboard_only_new_session_send_switch_search_and_shortcuts(page: Page):
    ready(page)
    a = new_session(page, 0)
    expect(page.get_by_test_id("message-input")).to_be_focused()
    page.keyboard.type("first session here")
    page.keyboard.press("Enter")
    expect(page.locator("[data-testid='turn'][data-status='complete']")).to_have_count(
        1, timeout=T
    )
    b = new_session(page, 1)
    page.keyboard.type("second one")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("chat-title")).to_have_text("second one", timeout=T)

    # One Tab stop for the whole list: the rows are reached with the arrows.
    stops = page.get_by_test_id("session-list").locator("[tabindex='0']")
    expect(stops).to_have_count(1)
    assert (
        page.get_by_test_id("session-list")
        .locator("button")
        .evaluate_all("bs => bs.every(b => b.tabIndex === -1)")
    )
    page.keyboard.press(f"{MOD}+K")
    page.keyboard.press("ArrowDown")  # from the search box into the list
    expect(by_id(page, b)).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(by_id(page, a)).to_be_focused()
    page.keyboard.press("Tab")
    expect(by_id(page, a)).not_to_be_focused()
    expect(page.get_by_test_id("session-list").locator(":focus")).to_have_count(0)
    page.keyboard.press("Shift+Tab")
    expect(by_id(page, a)).to_be_focused()  # back to the row it left
    page.keyboard.press("Home")
    expect(by_id(page, b)).to_be_focused()
    page.keyboard.press("End")
    expect(by_id(page, a)).to_be_focused()
    page.keyboard.press("Enter")  # switch
    expect(page.get_by_test_id("chat-title")).to_have_text(
        "first session here", timeout=T
    )
    expect(page.get_by_test_id("message-input")).to_be_focused()

    # Search by title, Enter opens the first match.
    page.keyboard.press(f"{MOD}+K")
    page.keyboard.type("second")
    expect(page.get_by_test_id("session-item")).to_have_count(1, timeout=T)
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("chat-title")).to_have_text("second one", timeout=T)

    # "?" (not while typing) lists the shortcuts.
    page.get_by_test_id("chat").focus()
    page.keyboard.press("?")
    dialog = page.get_by_test_id("shortcuts-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Ctrl+Shift+O")
    expect(dialog).to_contain_text("Ctrl+K")
    expect(dialog).to_contain_text("Find in this chat")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    # "/" goes to the message box; typed there, "?" is just a character.
    page.keyboard.press("/")
    box = page.get_by_test_id("message-input")
    expect(box).to_be_focused()
    page.keyboard.type("why?")
    expect(box).to_have_value("why?")
    expect(dialog).to_be_hidden()
    assert page.page_errors == []


@pytest.mark.parametrize(
    ("ago_ms", "words"),
    [
        (5_000, "just now"),
        (2 * 60_000 + 5_000, "2 min ago"),
        (59 * 60_000, "59 min ago"),
        (3 * 3_600_000, "today 09:30"),
        ("yesterday noon", "yesterday"),
        # older: the date alone, as the browser's locale writes it
        ("3 days ago noon", "date"),
    ],
)
def test_rows_say_when_in_words(page: Page, ago_ms, words):
    ready(page)
    got = page.evaluate(
        """async (ago) => {
            const { relativeTime } = await import('/js/sessions.js');
            const now = new Date(); now.setHours(12, 30, 0, 0);
            let then;
            if (typeof ago === 'number') then = now.getTime() - ago;
            else {
                const d = new Date(now); d.setHours(12, 0, 0, 0);
                d.setDate(d.getDate() - (ago.startsWith('3') ? 3 : 1));
                then = d.getTime();
            }
            const at = new Date(then);
            const day = { month: "short", day: "numeric" };
            const sameYear = at.getFullYear() === now.getFullYear();
            const date = at.toLocaleDateString([], sameYear ? day : { year: "numeric", ...day });
            const clock = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
            return [relativeTime(then, now.getTime()), date, clock];
        }""",
        ago_ms,
    )
    said, date, clock = got
    if words == "date":
        assert said == date
    elif words.startswith("today "):
        assert said == f"today {clock}"
    else:
        assert said == words
