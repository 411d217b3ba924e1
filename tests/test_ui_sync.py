"""The Sync panel in a real headless Chromium, against a real app and folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from apphelpers import InvokeError, wait_until, write_settings


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


@pytest.fixture
def sync_root(dim_home: Path, tmp_path: Path) -> Path:
    """sync_root set before the app starts (request it before `page`)."""
    root = tmp_path / "root"
    write_settings(dim_home, f'sync_root = "{root}"\n')
    return root


@pytest.fixture
def auto_root(dim_home: Path, tmp_path: Path) -> Path:
    """sync_root and sync_auto_start set before the app starts (request it before `page`)."""
    root = tmp_path / "root"
    write_settings(dim_home, f'sync_root = "{root}"\nsync_auto_start = true\n')
    return root


def test_the_panel_suggests_the_folder_under_sync_root(sync_root, page, app):
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=15000)
    page.get_by_test_id("agent-type").select_option("coding-agent")
    page.get_by_test_id("new-session").click()
    expect(page.get_by_test_id("session-item")).to_have_count(1, timeout=10000)
    box = page.get_by_test_id("message-input")
    box.fill("/write hello.txt hi\\n")
    box.press("Enter")
    expect(page.get_by_test_id("turn").last).to_have_attribute("data-status", "complete", timeout=10000)
    panel = page.get_by_test_id("sync-panel")
    folder = sync_root / "New session"  # the gateway's default name
    expect(panel.get_by_test_id("sync-dir")).to_have_value(str(folder), timeout=10000)
    expect(panel.get_by_test_id("sync-state")).to_have_text("not syncing")  # no sync_auto_start
    panel.get_by_test_id("sync-start").click()
    expect(panel.get_by_test_id("sync-state")).to_have_text("active", timeout=10000)
    wait_until(lambda: (folder / "hello.txt").is_file(), 10, what="the file in the suggested folder")
    assert page.page_errors == []


def test_a_refused_auto_start_shows_its_error_and_waits_for_the_user(auto_root, page, app):
    folder = auto_root / "New session"
    folder.mkdir(parents=True)
    (folder / "mine.txt").write_text("not the workspace's\n")
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=15000)
    page.get_by_test_id("new-session").click()  # selected and joined: sync_auto_start tries
    expect(page.get_by_test_id("session-item")).to_have_count(1, timeout=10000)
    panel = page.get_by_test_id("sync-panel")
    error = panel.get_by_test_id("sync-error")
    expect(error).to_be_visible(timeout=10000)
    expect(error).to_contain_text("not empty")
    expect(error).to_have_attribute("data-code", "FOLDER_NOT_EMPTY")
    expect(panel.get_by_test_id("sync-dir")).to_have_value(str(folder))
    expect(panel.get_by_test_id("sync-state")).to_have_text("stopped")
    assert os.listdir(folder) == ["mine.txt"]  # nothing written, nothing confirmed
    panel.get_by_test_id("sync-start").click()
    expect(panel.get_by_test_id("sync-confirm-box")).to_be_visible(timeout=10000)
    panel.get_by_test_id("sync-confirm").click()
    expect(panel.get_by_test_id("sync-state")).to_have_text("active", timeout=10000)
    expect(error).to_be_hidden()
    sid = page.get_by_test_id("session-item").get_attribute("data-session-id")
    wait_until(lambda: upstream(app, sid, "mine.txt") == "not the workspace's\n", 10, what="the merge upstream")
    assert page.page_errors == []


def upstream(app, sid: str, path: str) -> str | None:
    try:
        return app.invoke("read_file", sessionId=sid, path=path)["content"]
    except InvokeError:
        return None
