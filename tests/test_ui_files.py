"""The Files panel's history as diffs, and who changed a file, in a real headless Chromium against
a real app (its embedded dev gateway's coding agent writes the files; a real sync uploads a local
edit)."""

from __future__ import annotations

from apphelpers import wait_until
from playwright.sync_api import expect
from synchelpers import history_of
from uihelpers import run_turn

WAIT_S = 60
UI_WAIT_MS = WAIT_S * 1000


def coding_session(page) -> str:
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=UI_WAIT_MS)
    page.get_by_test_id("agent-type").select_option("coding-agent")
    page.get_by_test_id("new-session").click()
    expect(page.get_by_test_id("session-item")).to_have_count(1, timeout=UI_WAIT_MS)
    return page.get_by_test_id("session-item").get_attribute("data-session-id")


def diff_lines(page) -> list[str]:
    return page.get_by_test_id("file-diff").locator("div").all_text_contents()


def test_file_history_shows_the_changes_between_any_two_iterations(page, app):
    coding_session(page)
    run_turn(page, "/write notes.md one\\ntwo\\n")
    run_turn(page, "/write notes.md one\\n2\\n")
    run_turn(page, "/write notes.md one\\n2\\nthree\\n")
    page.get_by_test_id("side-tab-files").click()
    files = page.get_by_test_id("files-panel")
    files.locator("[data-testid='file-item'][data-path='notes.md']").click()
    expect(files.get_by_test_id("file-iteration")).to_have_count(3, timeout=UI_WAIT_MS)

    # by default: the previous → the newest
    compare = files.get_by_test_id("file-compare")
    expect(compare.get_by_test_id("file-diff-from")).to_have_value("2")
    expect(compare.get_by_test_id("file-diff-to")).to_have_value("3")
    compare.get_by_test_id("file-diff-show").click()
    diff = files.get_by_test_id("file-diff")
    expect(diff).to_be_visible()
    expect(files.get_by_test_id("file-content")).to_be_hidden()
    expect(diff).to_have_attribute("data-from", "2")
    expect(diff).to_contain_text("+three", timeout=UI_WAIT_MS)
    assert diff_lines(page) == ["--- #2", "+++ #3", " one", " 2", "+three", " "]

    # any two: #1 → #3
    compare.get_by_test_id("file-diff-from").select_option("1")
    compare.get_by_test_id("file-diff-show").click()
    expect(diff).to_have_attribute("data-from", "1")
    expect(diff).to_contain_text("-two", timeout=UI_WAIT_MS)
    assert diff_lines(page) == [
        "--- #1",
        "+++ #3",
        " one",
        "-two",
        "+2",
        "+three",
        " ",
    ]

    # one iteration's own change, from its row: the creation is compared with nothing
    files.locator("[data-testid='file-iteration-diff'][data-iteration='1']").click()
    expect(diff).to_have_attribute("data-to", "1")
    expect(diff).to_contain_text("(did not exist)", timeout=UI_WAIT_MS)
    assert diff_lines(page) == ["--- (did not exist)", "+++ #1", "+one", "+two", " "]

    # Latest goes back to the file's content
    files.get_by_test_id("file-latest").click()
    expect(files.get_by_test_id("file-content")).to_contain_text("three")
    expect(diff).to_be_hidden()
    assert page.page_errors == []


def test_show_change_opens_a_file_change_from_the_chat(page, app):
    coding_session(page)
    run_turn(page, "/write src/parser.py a = 1\\n")
    run_turn(page, "/write src/parser.py a = 2\\n")
    # the History tab is shown: showChange brings the Files tab forward
    page.get_by_test_id("side-tab-history").click()
    page.evaluate(
        "import('/js/files.js').then((m) => m.FilesPanel.instance.showChange('src/parser.py', 2))"
    )
    files = page.get_by_test_id("files-panel")
    expect(files).to_be_visible()
    expect(files.get_by_test_id("files-path")).to_have_text("/src")
    diff = files.get_by_test_id("file-diff")
    expect(diff).to_have_attribute("data-to", "2", timeout=UI_WAIT_MS)
    expect(diff).to_contain_text("+a = 2", timeout=UI_WAIT_MS)
    assert diff_lines(page) == ["--- #1", "+++ #2", "-a = 1", "+a = 2", " "]
    pressed = files.locator("[data-testid='file-iteration-diff'][data-iteration='2']")
    expect(pressed).to_have_attribute("aria-pressed", "true")
    assert page.page_errors == []


WHO = """([sid, path, it, inTurn]) => import('/js/syncstate.js')
  .then((m) => m.whoChanged(sid, path, it, inTurn))"""


def test_a_local_edit_synced_up_is_told_from_the_agents_changes(page, app, tmp_path):
    sid = coding_session(page)
    run_turn(page, "/write notes.md from the agent\\n")
    page.get_by_test_id("side-tab-sync").click()
    sync = page.get_by_test_id("sync-panel")
    folder = tmp_path / "synced"
    sync.get_by_test_id("sync-dir").fill(str(folder))
    sync.get_by_test_id("sync-start").click()
    wait_until(lambda: (folder / "notes.md").is_file(), WAIT_S, what="the file on disk")
    # the file's history is open while the edit goes up: its row learns who made it
    page.get_by_test_id("side-tab-files").click()
    files = page.get_by_test_id("files-panel")
    files.locator("[data-testid='file-item'][data-path='notes.md']").click()
    expect(files.get_by_test_id("file-iteration")).to_have_count(1, timeout=UI_WAIT_MS)
    (folder / "notes.md").write_text("my own edit\n")
    wait_until(
        lambda: len(history_of(app, sid, "notes.md")) == 2,
        WAIT_S,
        what="the local edit upstream",
    )
    wait_until(
        lambda: page.evaluate(WHO, [sid, "notes.md", 2, False]) == "local",
        WAIT_S,
        what="the upload known to the page",
    )
    assert page.evaluate(WHO, [sid, "notes.md", 1, True]) == "agent"
    assert page.evaluate(WHO, [sid, "notes.md", 1, False]) == "other"
    expect(
        files.locator("[data-testid='file-iteration'][data-iteration='2']")
    ).to_contain_text("your local edit", timeout=UI_WAIT_MS)
    expect(
        files.locator("[data-testid='file-iteration'][data-iteration='1']")
    ).not_to_contain_text("your local edit")
    assert page.page_errors == []


def test_a_file_change_in_the_chat_opens_its_diff_in_the_files_tab(page, app):
    coding_session(page)
    run_turn(page, "/write plan.md alpha\\n")
    run_turn(page, "/write plan.md alpha\\nbeta\\n")
    chip = page.get_by_test_id("turn").last.get_by_test_id("file-changed")
    expect(chip).to_contain_text("Changed plan.md")
    expect(chip).to_contain_text("version 2 · by the agent")
    expect(chip).to_have_attribute("data-by", "agent")
    page.get_by_test_id(
        "side-tab-sync"
    ).click()  # another tab in front: the chip switches
    chip.click()
    files = page.get_by_test_id("files-panel")
    expect(files).to_be_visible()
    diff = files.get_by_test_id("file-diff")
    expect(diff).to_have_attribute("data-to", "2", timeout=UI_WAIT_MS)
    expect(diff).to_have_attribute("data-from", "1")
    expect(diff).to_contain_text("+beta", timeout=UI_WAIT_MS)
    assert page.page_errors == []
