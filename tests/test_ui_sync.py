"""The Sync panel in a real headless Chromium, against a real app and folder."""

from __future__ import annotations

from playwright.sync_api import expect

from apphelpers import InvokeError, wait_until


def test_sync_panel_starts_shows_a_conflict_with_its_diff_and_settles_it(page, app, tmp_path):
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=15000)
    expect(page.get_by_test_id("connection-state")).to_have_text("connected", timeout=15000)
    page.get_by_test_id("agent-type").select_option("coding-agent")
    page.get_by_test_id("new-session").click()
    expect(page.get_by_test_id("session-item")).to_have_count(1, timeout=10000)
    sid = page.get_by_test_id("session-item").get_attribute("data-session-id")
    box = page.get_by_test_id("message-input")
    box.fill("/write notes.md line one\\nline two\\n")
    box.press("Enter")
    expect(page.get_by_test_id("turn").last).to_have_attribute("data-status", "complete", timeout=10000)

    panel = page.get_by_test_id("sync-panel")
    expect(panel.get_by_test_id("sync-state")).to_have_text("not syncing")
    folder = tmp_path / "synced"
    panel.get_by_test_id("sync-dir").fill(str(folder))
    panel.get_by_test_id("sync-start").click()
    expect(panel.get_by_test_id("sync-state")).to_have_text("active", timeout=10000)
    wait_until(lambda: (folder / "notes.md").is_file(), 10, what="the file on disk")
    expect(panel.get_by_test_id("sync-counts")).to_have_attribute("data-files", "1", timeout=10000)

    # stopped, both sides change the file; starting again shows the conflict
    panel.get_by_test_id("sync-stop").click()
    expect(panel.get_by_test_id("sync-state")).to_have_text("stopped", timeout=10000)
    (folder / "notes.md").write_text("line one\nmy line\n")
    box.fill("/write notes.md line one\\nagent line\\n")
    box.press("Enter")
    expect(page.get_by_test_id("turn").last).to_have_attribute("data-status", "complete", timeout=10000)
    panel.get_by_test_id("sync-start").click()
    conflict = panel.locator("[data-testid='sync-conflict'][data-path='notes.md']")
    expect(conflict).to_have_count(1, timeout=10000)
    diff = conflict.get_by_test_id("conflict-diff")
    expect(diff).to_contain_text("-agent line", timeout=10000)
    expect(diff).to_contain_text("+my line")
    expect(diff).to_contain_text(" line one")
    assert (folder / "notes.upstream-2.md").read_text() == "line one\nagent line\n"

    conflict.get_by_test_id("keep-local").click()
    expect(conflict).to_have_count(0, timeout=10000)
    wait_until(lambda: upstream(app, sid, "notes.md") == "line one\nmy line\n", 10, what="the local version upstream")
    assert not (folder / "notes.upstream-2.md").exists()
    assert page.page_errors == []


def test_sync_panel_asks_before_syncing_into_a_foreign_non_empty_folder(page, app, tmp_path):
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=15000)
    page.get_by_test_id("new-session").click()
    expect(page.get_by_test_id("session-item")).to_have_count(1, timeout=10000)
    folder = tmp_path / "busy"
    folder.mkdir()
    (folder / "already-here.txt").write_text("mine")
    panel = page.get_by_test_id("sync-panel")
    panel.get_by_test_id("sync-dir").fill(str(folder))
    panel.get_by_test_id("sync-start").click()
    expect(panel.get_by_test_id("sync-confirm-box")).to_be_visible(timeout=10000)
    expect(panel.get_by_test_id("sync-confirm-box")).to_contain_text("not empty")
    expect(panel.get_by_test_id("sync-state")).to_have_text("not syncing")
    panel.get_by_test_id("sync-confirm").click()
    expect(panel.get_by_test_id("sync-state")).to_have_text("active", timeout=10000)
    sid = page.get_by_test_id("session-item").get_attribute("data-session-id")
    wait_until(lambda: upstream(app, sid, "already-here.txt") == "mine", 10, what="the folder's file upstream")


def upstream(app, sid: str, path: str) -> str | None:
    try:
        return app.invoke("read_file", sessionId=sid, path=path)["content"]
    except InvokeError:
        return None
