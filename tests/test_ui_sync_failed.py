"""The Sync panel's "Not synced" list and its limits line, in a real headless Chromium,
against a real app, a real folder and real failures (docs/sync.md §10)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from apphelpers import wait_until, write_settings
from diskhelpers import fill
from diskhelpers import small_disk as mounted_small_disk
from playwright.sync_api import expect
from synchelpers import make_tree, upstream
from uihelpers import run_turn

# Waits on conditions: they end as soon as the condition holds, so they can afford to be
# generous for a loaded machine (a browser, the app's processes and the gateway share
# the CPUs with other jobs).
WAIT_S = 60
UI_WAIT_MS = WAIT_S * 1000


def open_sync(page):
    """The Sync tab, shown: its panel."""
    page.get_by_test_id("side-tab-sync").click()
    return page.get_by_test_id("sync-panel")


MIB = 1 << 20


@pytest.fixture
def small_limit(dim_home: Path) -> None:
    """sync_max_file_mb = 1, set before the app starts (request it before `page`)."""
    write_settings(dim_home, "sync_max_file_mb = 1\n")


@pytest.fixture
def small_disk(tmp_path: Path):
    with mounted_small_disk(tmp_path / "disk") as disk:
        yield disk


def synced_session(
    page, tmp_path: Path, script: str, folder: Path | None = None
) -> tuple[str, Path]:
    """A coding-agent session whose first turn ran `script`, synced into a new folder:
    (its id, the folder)."""
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=UI_WAIT_MS)
    page.get_by_test_id("agent-type").select_option("coding-agent")
    page.get_by_test_id("new-session").click()
    expect(page.get_by_test_id("session-item")).to_have_count(1, timeout=UI_WAIT_MS)
    run_turn(page, script)
    sid = page.get_by_test_id("session-item").get_attribute("data-session-id")
    panel = open_sync(page)
    folder = folder or tmp_path / "synced"
    panel.get_by_test_id("sync-dir").fill(str(folder))
    panel.get_by_test_id("sync-start").click()
    expect(panel.get_by_test_id("sync-state")).to_have_attribute(
        "data-state", "active", timeout=UI_WAIT_MS
    )
    return sid, folder


def test_local_files_that_cannot_be_synced_are_listed_with_their_reason_until_fixed(
    small_limit, page, app, tmp_path
):
    sid, folder = synced_session(page, tmp_path, "/write notes.md hello\\n")
    panel = open_sync(page)
    expect(panel.get_by_test_id("sync-counts")).to_have_attribute(
        "data-files", "1", timeout=UI_WAIT_MS
    )
    limits = panel.get_by_test_id("sync-limits")
    expect(limits).to_contain_text("Files over 1 MiB are not synced")
    expect(limits).to_have_attribute("data-max-file-size", str(MIB))
    # the journal looks at the disk every 2 s
    expect(limits).to_contain_text(" free", timeout=UI_WAIT_MS)
    failed = panel.get_by_test_id("sync-failed")
    expect(failed).to_be_hidden()

    (folder / "big.bin").write_bytes(os.urandom(2 * MIB))
    (folder / "back\\slash.txt").write_text("mine\n")
    expect(failed).to_be_visible(timeout=UI_WAIT_MS)
    expect(failed.get_by_role("heading")).to_have_text(
        "2 files not synced", timeout=UI_WAIT_MS
    )
    expect(failed.get_by_test_id("sync-failed-item")).to_have_count(2)
    big = failed.locator("[data-testid='sync-failed-item'][data-path='big.bin']")
    expect(big).to_contain_text("too large (2.0 MiB, limit 1 MiB)")
    expect(big).to_contain_text("from this computer")
    expect(big).to_have_attribute("data-direction", "local")
    expect(big.locator(".sync-failed-when")).to_contain_text("noticed")
    slash = failed.locator(
        "[data-testid='sync-failed-item'][data-path='back\\\\slash.txt']"
    )
    expect(slash).to_contain_text("backslash")
    expect(slash).to_contain_text("rename it")
    expect(failed.get_by_test_id("sync-failed-more")).to_be_hidden()
    assert app.invoke("sync_status", sessionId=sid)["failedCount"] == 2
    assert upstream(app, sid, "big.bin") is None

    # fixed one by one: each row goes, and the file then syncs
    (folder / "big.bin").write_bytes(b"small now\n")
    expect(big).to_have_count(0, timeout=UI_WAIT_MS)
    expect(failed.get_by_role("heading")).to_have_text("1 file not synced")
    wait_until(
        lambda: upstream(app, sid, "big.bin") == "small now\n",
        WAIT_S,
        what="the shrunk file upstream",
    )
    (folder / "back\\slash.txt").rename(folder / "back-slash.txt")
    expect(failed).to_be_hidden(timeout=UI_WAIT_MS)
    expect(failed.get_by_test_id("sync-failed-item")).to_have_count(0)
    wait_until(
        lambda: upstream(app, sid, "back-slash.txt") == "mine\n",
        WAIT_S,
        what="the renamed file upstream",
    )
    assert page.page_errors == []


def test_an_upstream_file_that_cannot_be_written_is_listed_as_from_the_agent(
    page, app, tmp_path
):
    long_name = "n" * 300 + ".txt"  # over 255 bytes in one name: no disk takes it
    sid, folder = synced_session(
        page, tmp_path, f"/write {long_name} from the agent\\n"
    )
    panel = open_sync(page)
    failed = panel.get_by_test_id("sync-failed")
    item = failed.locator(f"[data-testid='sync-failed-item'][data-path='{long_name}']")
    expect(item).to_have_count(1, timeout=UI_WAIT_MS)
    expect(item).to_have_attribute("data-direction", "upstream")
    expect(item).to_contain_text("from the agent")
    expect(item).to_contain_text("the name is too long for the disk")
    expect(failed.get_by_role("heading")).to_have_text("1 file not synced")
    expect(panel.get_by_test_id("sync-limits")).to_contain_text(
        "Files over 100 MiB are not synced"
    )  # the default

    run_turn(page, f"/delete {long_name}")
    expect(failed).to_be_hidden(timeout=UI_WAIT_MS)
    assert page.page_errors == []


def test_more_failures_than_listed_are_counted_in_the_heading(page, app, tmp_path):
    sid, folder = synced_session(page, tmp_path, "/write notes.md hello\\n")
    panel = open_sync(page)
    expect(panel.get_by_test_id("sync-counts")).to_have_attribute(
        "data-files", "1", timeout=UI_WAIT_MS
    )
    for i in range(103):
        (folder / f"bad\\{i:03}.txt").write_text("x")
    failed = panel.get_by_test_id("sync-failed")
    expect(failed.get_by_role("heading")).to_have_text(
        "103 files not synced", timeout=UI_WAIT_MS
    )
    # the journal lists at most 100
    expect(failed.get_by_test_id("sync-failed-item")).to_have_count(100)
    expect(failed.get_by_test_id("sync-failed-more")).to_have_text("… and 3 more")
    assert page.page_errors == []


def test_the_panel_shows_the_free_space_and_a_pause_for_want_of_it(
    small_disk, page, app, tmp_path
):
    sid, folder = synced_session(
        page, tmp_path, "/write notes.md hello\\n", small_disk / "synced"
    )
    panel = open_sync(page)
    limits = panel.get_by_test_id("sync-limits")
    # 4 MiB disk: the floor is 1% of it (41 KiB)
    expect(limits).to_contain_text(
        "MiB free (sync pauses below 41 KiB)", timeout=UI_WAIT_MS
    )
    expect(limits).to_have_attribute("data-low", "")

    filler = fill(small_disk)
    expect(panel.get_by_test_id("sync-state")).to_have_attribute(
        "data-state", "paused", timeout=UI_WAIT_MS
    )
    expect(panel.get_by_test_id("sync-error")).to_contain_text("not enough free space")
    expect(limits).to_have_attribute("data-low", "1")
    expect(limits).to_contain_text("0 bytes free")

    filler.unlink()
    expect(panel.get_by_test_id("sync-state")).to_have_attribute(
        "data-state", "active", timeout=UI_WAIT_MS
    )
    expect(panel.get_by_test_id("sync-error")).to_be_hidden()
    expect(limits).to_have_attribute("data-low", "")
    assert page.page_errors == []


def test_a_big_folder_shows_how_far_its_first_pass_got(page, app, tmp_path):
    """10,000 files take seconds to list and record: the panel says how far it got, then
    settles."""
    folder = tmp_path / "big"
    make_tree(folder, 10_000)
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=UI_WAIT_MS)
    page.get_by_test_id("agent-type").select_option("coding-agent")
    page.get_by_test_id("new-session").click()
    expect(page.get_by_test_id("session-item")).to_have_count(1, timeout=UI_WAIT_MS)
    panel = open_sync(page)
    panel.get_by_test_id("sync-dir").fill(str(folder))
    panel.get_by_test_id("sync-start").click()
    panel.get_by_test_id("sync-confirm").click()  # not empty: it asks first
    scan = panel.get_by_test_id("sync-scan")
    expect(scan).to_have_text(
        re.compile(
            r"^(Looking through the folder: [\d,]+ files so far|"
            r"Recording files: [\d,]+ of 10,000)$"
        ),
        timeout=UI_WAIT_MS,
    )
    expect(panel.get_by_test_id("sync-counts")).to_have_attribute(
        "data-files", "10000", timeout=120_000
    )
    expect(scan).to_be_hidden(timeout=UI_WAIT_MS)
    assert page.page_errors == []
