"""The Sync panel in a real headless Chromium, against a real app and folder."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from apphelpers import wait_until, write_settings
from playwright.sync_api import expect
from synchelpers import upstream

# Waits on conditions: they end as soon as the condition holds, so they can afford to be
# generous for a loaded machine (a browser, the app's processes and the gateway share
# the CPUs with other jobs).
WAIT_S = 60
UI_WAIT_MS = WAIT_S * 1000


def open_sync(page):
    """The Sync tab, shown: its panel."""
    page.get_by_test_id("side-tab-sync").click()
    return page.get_by_test_id("sync-panel")


def coding_session_with_a_file(page, script: str) -> str:
    """A new coding-agent session whose first turn (`script`) has written a file; its
    id."""
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=UI_WAIT_MS)
    page.get_by_test_id("agent-type").select_option("coding-agent")
    page.get_by_test_id("new-session").click()
    expect(page.get_by_test_id("session-item")).to_have_count(1, timeout=UI_WAIT_MS)
    box = page.get_by_test_id("message-input")
    box.fill(script)
    box.press("Enter")
    expect(page.get_by_test_id("turn").last).to_have_attribute(
        "data-status", "complete", timeout=UI_WAIT_MS
    )
    return page.get_by_test_id("session-item").get_attribute("data-session-id")


def test_sync_panel_starts_shows_a_conflict_with_its_diff_and_settles_it(
    page, app, tmp_path
):
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=UI_WAIT_MS)
    expect(page.get_by_test_id("connection-state")).to_have_text(
        "Connected", timeout=UI_WAIT_MS
    )
    page.get_by_test_id("agent-type").select_option("coding-agent")
    page.get_by_test_id("new-session").click()
    expect(page.get_by_test_id("session-item")).to_have_count(1, timeout=UI_WAIT_MS)
    sid = page.get_by_test_id("session-item").get_attribute("data-session-id")
    box = page.get_by_test_id("message-input")
    box.fill("/write notes.md line one\\nline two\\n")
    box.press("Enter")
    expect(page.get_by_test_id("turn").last).to_have_attribute(
        "data-status", "complete", timeout=UI_WAIT_MS
    )

    panel = open_sync(page)
    expect(panel.get_by_test_id("sync-state")).to_have_attribute("data-state", "off")
    folder = tmp_path / "synced"
    panel.get_by_test_id("sync-dir").fill(str(folder))
    panel.get_by_test_id("sync-start").click()
    expect(panel.get_by_test_id("sync-state")).to_have_attribute(
        "data-state", "active", timeout=UI_WAIT_MS
    )
    wait_until(lambda: (folder / "notes.md").is_file(), WAIT_S, what="the file on disk")
    expect(panel.get_by_test_id("sync-counts")).to_have_attribute(
        "data-files", "1", timeout=UI_WAIT_MS
    )

    # stopped, both sides change the file; starting again shows the conflict
    panel.get_by_test_id("sync-stop").click()
    expect(panel.get_by_test_id("sync-state")).to_have_attribute(
        "data-state", "stopped", timeout=UI_WAIT_MS
    )
    (folder / "notes.md").write_text("line one\nmy line\n")
    box.fill("/write notes.md line one\\nagent line\\n")
    box.press("Enter")
    expect(page.get_by_test_id("turn").last).to_have_attribute(
        "data-status", "complete", timeout=UI_WAIT_MS
    )
    panel.get_by_test_id("sync-start").click()
    conflict = panel.locator("[data-testid='sync-conflict'][data-path='notes.md']")
    expect(conflict).to_have_count(1, timeout=UI_WAIT_MS)
    diff = conflict.get_by_test_id("conflict-diff")
    expect(diff).to_contain_text("-agent line", timeout=UI_WAIT_MS)
    expect(diff).to_contain_text("+my line")
    expect(diff).to_contain_text(" line one")
    assert (folder / "notes.upstream-2.md").read_text() == "line one\nagent line\n"

    # the chat says so above the conversation, and the session list's badge
    banner = page.get_by_test_id("conflict-banner")
    expect(banner).to_have_text("1 file has conflicting changesResolve")
    row = page.locator(f"[data-testid='session-item'][data-session-id='{sid}']")
    expect(row.get_by_test_id("session-conflicts")).to_have_text("1 conflict")
    # a page loaded now learns it at once (sync_statuses), not from a change to come
    page.reload()
    expect(row.get_by_test_id("session-conflicts")).to_have_text("1 conflict")

    # Resolve brings the Sync tab back, its first conflict's first button focused
    page.get_by_test_id("side-tab-files").click()
    expect(panel).to_be_hidden()
    banner.get_by_test_id("conflict-banner-resolve").click()
    expect(panel).to_be_visible()
    expect(conflict.get_by_test_id("keep-local")).to_be_focused()

    conflict.get_by_test_id("keep-local").click()
    expect(conflict).to_have_count(0, timeout=UI_WAIT_MS)
    expect(banner).to_be_hidden()
    expect(row.get_by_test_id("session-conflicts")).to_be_hidden()
    wait_until(
        lambda: upstream(app, sid, "notes.md") == "line one\nmy line\n",
        WAIT_S,
        what="the local version upstream",
    )
    assert not (folder / "notes.upstream-2.md").exists()
    assert page.page_errors == []


def test_sync_panel_asks_before_syncing_into_a_foreign_non_empty_folder(
    page, app, tmp_path
):
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=UI_WAIT_MS)
    page.get_by_test_id("new-session").click()
    expect(page.get_by_test_id("session-item")).to_have_count(1, timeout=UI_WAIT_MS)
    folder = tmp_path / "busy"
    folder.mkdir()
    (folder / "already-here.txt").write_text("mine")
    panel = open_sync(page)
    panel.get_by_test_id("sync-dir").fill(str(folder))
    panel.get_by_test_id("sync-start").click()
    expect(panel.get_by_test_id("sync-confirm-box")).to_be_visible(timeout=UI_WAIT_MS)
    expect(panel.get_by_test_id("sync-confirm-box")).to_contain_text(
        "This folder is not empty. Sync into it anyway? Files already there are kept"
    )
    expect(panel.get_by_test_id("sync-confirm-box")).not_to_contain_text("confirm")
    expect(panel.get_by_test_id("sync-state")).to_have_attribute("data-state", "off")
    panel.get_by_test_id("sync-confirm").click()
    expect(panel.get_by_test_id("sync-state")).to_have_attribute(
        "data-state", "active", timeout=UI_WAIT_MS
    )
    sid = page.get_by_test_id("session-item").get_attribute("data-session-id")
    wait_until(
        lambda: upstream(app, sid, "already-here.txt") == "mine",
        WAIT_S,
        what="the folder's file upstream",
    )


def test_a_late_answer_to_start_sync_does_not_hide_the_statuses_pushed_after_it(
    page, app, tmp_path
):
    """start_sync's answer (link connecting, no files yet) travels over HTTP, the
    statuses pushed after it over the event socket: on a loaded machine the answer can
    reach the page last. The panel must still end on the newest status, not on the
    answer's."""
    coding_session_with_a_file(page, "/write notes.md hello\\n")
    events = app.events()
    try:

        def settled(frames):
            return any(
                f["event"] == "sync-status"
                and f["payload"].get("filesTracked") == 1
                and f["payload"].get("link") == "connected"
                for f in frames
            )

        def answer_late(route):
            # the journal has answered; hold it until the sync has settled
            answer = route.fetch()
            events.wait_for(
                settled, WAIT_S, what="a sync-status with the file and the link up"
            )
            route.fulfill(response=answer)

        page.route("**/invoke/start_sync", answer_late)
        panel = open_sync(page)
        folder = tmp_path / "synced"
        panel.get_by_test_id("sync-dir").fill(str(folder))
        panel.get_by_test_id("sync-start").click()
        # Stop is enabled once the (late) answer has been handled; Start stays disabled
        # while the sync runs
        expect(panel.get_by_test_id("sync-stop")).to_be_enabled(timeout=UI_WAIT_MS)
        expect(panel.get_by_test_id("sync-start")).to_be_disabled()
        expect(panel.get_by_test_id("sync-state")).to_have_attribute(
            "data-state", "active"
        )
        counts = panel.get_by_test_id("sync-counts")
        expect(counts).to_have_attribute("data-files", "1")
        # the answer's "connecting to the gateway" is long gone
        expect(panel.get_by_test_id("sync-summary")).not_to_contain_text("connecting")
    finally:
        events.close()
    assert page.page_errors == []


@pytest.fixture
def sync_root(dim_home: Path, tmp_path: Path) -> Path:
    """sync_root set before the app starts (request it before `page`)."""
    root = tmp_path / "root"
    write_settings(dim_home, f'sync_root = "{root}"\n')
    return root


@pytest.fixture
def auto_root(dim_home: Path, tmp_path: Path) -> Path:
    """sync_root and sync_auto_start set before the app starts (request it before
    `page`)."""
    root = tmp_path / "root"
    write_settings(dim_home, f'sync_root = "{root}"\nsync_auto_start = true\n')
    return root


def test_a_suggested_folder_follows_a_rename_and_a_typed_one_stays(
    sync_root, page, app
):
    sid = coding_session_with_a_file(page, "/write a.txt x\\n")
    panel = open_sync(page)
    box = panel.get_by_test_id("sync-dir")
    expect(box).to_have_value(str(sync_root / "write a.txt x-n"), timeout=UI_WAIT_MS)
    app.invoke("rename_session", sessionId=sid, name="Tidy")
    expect(box).to_have_value(str(sync_root / "Tidy"), timeout=UI_WAIT_MS)
    # the user's own folder is theirs: a rename leaves it
    box.fill(str(sync_root / "mine"))
    box.evaluate("e => e.blur()")
    app.invoke("rename_session", sessionId=sid, name="Other")
    expect(page.get_by_test_id("chat-title")).to_have_text("Other", timeout=UI_WAIT_MS)
    # a suggestion the page asked on seeing the name would be answered before this one
    assert app.invoke("sync_defaults", sessionId=sid)["localDir"] == str(
        sync_root / "Other"
    )
    expect(box).to_have_value(str(sync_root / "mine"))
    assert page.page_errors == []


def test_the_panel_suggests_the_folder_under_sync_root(sync_root, page, app):
    coding_session_with_a_file(page, "/write hello.txt hi\\n")
    panel = open_sync(page)
    # named from its first message ("/write hello.txt hi\\n"), then suggested under
    # that name, whichever came first
    folder = sync_root / "write hello.txt hi-n"
    expect(panel.get_by_test_id("sync-dir")).to_have_value(
        str(folder), timeout=UI_WAIT_MS
    )
    # no sync_auto_start
    expect(panel.get_by_test_id("sync-state")).to_have_attribute("data-state", "off")
    panel.get_by_test_id("sync-start").click()
    expect(panel.get_by_test_id("sync-state")).to_have_attribute(
        "data-state", "active", timeout=UI_WAIT_MS
    )
    wait_until(
        lambda: (folder / "hello.txt").is_file(),
        WAIT_S,
        what="the file in the suggested folder",
    )
    assert page.page_errors == []


def test_a_refused_auto_start_shows_its_error_and_waits_for_the_user(
    auto_root, page, app
):
    folder = auto_root / "New session"
    folder.mkdir(parents=True)
    (folder / "mine.txt").write_text("not the workspace's\n")
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=UI_WAIT_MS)
    page.get_by_test_id(
        "new-session"
    ).click()  # selected and joined: sync_auto_start tries
    expect(page.get_by_test_id("session-item")).to_have_count(1, timeout=UI_WAIT_MS)
    panel = open_sync(page)
    error = panel.get_by_test_id("sync-error")
    expect(error).to_be_visible(timeout=UI_WAIT_MS)
    expect(error).to_contain_text("not empty")
    expect(error).to_have_attribute("data-code", "FOLDER_NOT_EMPTY")
    expect(panel.get_by_test_id("sync-dir")).to_have_value(str(folder))
    expect(panel.get_by_test_id("sync-state")).to_have_attribute(
        "data-state", "stopped"
    )
    assert os.listdir(folder) == ["mine.txt"]  # nothing written, nothing confirmed
    panel.get_by_test_id("sync-start").click()
    expect(panel.get_by_test_id("sync-confirm-box")).to_be_visible(timeout=UI_WAIT_MS)
    panel.get_by_test_id("sync-confirm").click()
    expect(panel.get_by_test_id("sync-state")).to_have_attribute(
        "data-state", "active", timeout=UI_WAIT_MS
    )
    expect(error).to_be_hidden()
    sid = page.get_by_test_id("session-item").get_attribute("data-session-id")
    wait_until(
        lambda: upstream(app, sid, "mine.txt") == "not the workspace's\n",
        WAIT_S,
        what="the merge upstream",
    )
    assert page.page_errors == []


def test_the_sync_status_reads_as_a_sentence_and_start_stop_follow_it(
    page, app, tmp_path
):
    """The status in plain words, in view at the top of the panel however long the rest;
    Start disabled while a sync runs, Stop while none does."""
    coding_session_with_a_file(page, "/write notes.md hello\\n")
    panel = open_sync(page)
    summary = panel.get_by_test_id("sync-summary")
    state = panel.get_by_test_id("sync-state")
    start, stop = panel.get_by_test_id("sync-start"), panel.get_by_test_id("sync-stop")
    expect(state).to_have_text("Not syncing")
    expect(summary).to_have_text(re.compile(r"^This session's files are not synced"))
    expect(stop).to_be_disabled()
    expect(start).to_be_enabled()
    folder = tmp_path / "synced"
    panel.get_by_test_id("sync-dir").fill(str(folder))
    start.click()
    expect(state).to_have_text("Syncing", timeout=UI_WAIT_MS)
    expect(summary).to_have_text(
        f"Syncing with “{folder}”: changes on either side are copied to the other.",
        timeout=UI_WAIT_MS,
    )
    expect(start).to_be_disabled()
    expect(stop).to_be_enabled()
    expect(panel.get_by_test_id("sync-counts")).to_contain_text(
        "1 file in the folder", timeout=UI_WAIT_MS
    )
    expect(summary).to_be_in_viewport()
    box = summary.bounding_box()
    assert box is not None and box["height"] >= 16  # a whole line, not a sliver
    stop.click()
    expect(state).to_have_text("Stopped", timeout=UI_WAIT_MS)
    expect(summary).to_contain_text("Press Start to sync again")
    expect(start).to_be_enabled()
    expect(stop).to_be_disabled()
    assert page.page_errors == []
