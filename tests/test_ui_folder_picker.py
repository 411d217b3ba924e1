"""The Sync panel's folder picker in a real headless Chromium against a real app: in a browser,
a folder browser over the bridge's list_folders (home and sync_root only, token-checked); in
dim-desktop's window, the native dialog through pywebview's js_api."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from apphelpers import wait_until, write_settings
from playwright.sync_api import expect

WAIT_S = 60
UI_WAIT_MS = WAIT_S * 1000


@pytest.fixture
def sync_root(dim_home: Path, tmp_path: Path) -> Path:
    """sync_root (a second place the picker may show) with a few folders, set before the app
    starts (request it before `page`)."""
    root = tmp_path / "root"
    (root / "alpha").mkdir(parents=True)
    (root / "beta" / "inner").mkdir(parents=True)
    (root / "gamma").mkdir()
    (root / "a-file.txt").write_text("not a folder")
    write_settings(dim_home, f'sync_root = "{root}"\n')
    return root


def new_session(page) -> None:
    """A new session, with the Sync tab shown."""
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=UI_WAIT_MS)
    page.get_by_test_id("new-session").click()
    expect(page.get_by_test_id("session-item")).to_have_count(1, timeout=UI_WAIT_MS)
    page.get_by_test_id("side-tab-sync").click()


def test_choose_walks_folders_with_the_keyboard_and_fills_the_folder(
    sync_root, page, app
):
    new_session(page)
    panel = page.get_by_test_id("sync-panel")
    panel.get_by_test_id("sync-dir").fill(str(sync_root))
    panel.get_by_test_id("sync-choose").click()
    picker = page.get_by_test_id("folder-picker")
    expect(picker).to_be_visible()
    expect(picker.get_by_test_id("folder-picker-path")).to_have_text(str(sync_root))
    items = picker.get_by_test_id("folder-picker-item")
    # folders only, sorted; the file is not listed
    expect(items).to_have_text(["alpha", "beta", "gamma"])
    expect(items.first).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(items.nth(1)).to_be_focused()
    page.keyboard.press("Enter")  # into beta
    expect(picker.get_by_test_id("folder-picker-path")).to_have_text(
        str(sync_root / "beta")
    )
    expect(items).to_have_text(["inner"])
    page.keyboard.press("Backspace")  # up again
    expect(picker.get_by_test_id("folder-picker-path")).to_have_text(str(sync_root))
    items.filter(has_text="gamma").click()
    expect(picker.get_by_test_id("folder-picker-empty")).to_be_visible()
    picker.get_by_test_id("folder-picker-choose").click()
    expect(picker).to_be_hidden()
    expect(panel.get_by_test_id("sync-dir")).to_have_value(str(sync_root / "gamma"))

    # Esc cancels, the folder stays as it was
    panel.get_by_test_id("sync-choose").click()
    expect(picker).to_be_visible()
    expect(picker.get_by_test_id("folder-picker-path")).to_have_text(
        str(sync_root / "gamma")
    )
    page.keyboard.press("Escape")
    expect(picker).to_be_hidden()
    expect(panel.get_by_test_id("sync-choose")).to_be_focused()
    expect(panel.get_by_test_id("sync-dir")).to_have_value(str(sync_root / "gamma"))

    # the folder chosen is the one that syncs
    panel.get_by_test_id("sync-start").click()
    expect(panel.get_by_test_id("sync-state")).to_have_attribute(
        "data-state", "active", timeout=UI_WAIT_MS
    )
    assert page.page_errors == []


def test_a_start_outside_home_opens_at_home_and_the_sync_folder_is_a_place(
    sync_root, page, app
):
    new_session(page)
    panel = page.get_by_test_id("sync-panel")
    panel.get_by_test_id("sync-dir").fill("/")  # outside: the picker opens at home
    panel.get_by_test_id("sync-choose").click()
    picker = page.get_by_test_id("folder-picker")
    home = app.invoke("list_folders")["path"]
    expect(picker.get_by_test_id("folder-picker-path")).to_have_text(home)
    # the sync folder is a place of its own
    picker.get_by_test_id("folder-picker-root").filter(has_text="Sync folder").click()
    expect(picker.get_by_test_id("folder-picker-path")).to_have_text(str(sync_root))
    expect(picker.get_by_test_id("folder-picker-up")).to_be_disabled()
    assert page.page_errors == []


def test_list_folders_over_http_is_token_checked_and_confined(sync_root, app):
    body = json.dumps({"path": str(sync_root)}).encode()
    status, answer = app.request(
        "POST", "/invoke/list_folders", body, {"Content-Type": "application/json"}
    )
    assert status == 401 and answer["error"]["code"] == "UNAUTHORIZED"
    status, answer = app.request(
        "POST",
        "/invoke/list_folders",
        body,
        {"Authorization": "Bearer wrong", "Content-Type": "application/json"},
    )
    assert status == 401

    listing = app.invoke("list_folders", path=str(sync_root))
    assert [f["name"] for f in listing["folders"]] == ["alpha", "beta", "gamma"]
    for path, code in [
        ("/etc", "FORBIDDEN"),
        (f"{sync_root}/../..", "INVALID_ARGUMENTS"),
        ("relative", "INVALID_ARGUMENTS"),
    ]:
        status, answer = app.request(
            "POST",
            "/invoke/list_folders",
            json.dumps({"path": path}).encode(),
            {
                "Authorization": f"Bearer {app.token}",
                "Content-Type": "application/json",
            },
        )
        assert answer["ok"] is False, path
        assert answer["error"]["code"] == code, (path, answer)
    status, answer = app.request(
        "POST",
        "/invoke/list_folders",
        json.dumps({"path": 7}).encode(),
        {"Authorization": f"Bearer {app.token}", "Content-Type": "application/json"},
    )
    assert answer["error"]["code"] == "INVALID_ARGUMENTS"


# pywebview injects window.pywebview.api into its window's page; a real native dialog cannot be
# clicked reliably under Xvfb, so this stands in for pywebview's bridge object (the Python side,
# dim_actors/desktop/folderdialog.py, is covered by tests/test_folder_lister.py).
FAKE_PYWEBVIEW = """
window.__asked = [];
window.pywebview = { api: { choose_folder: async (start) => {
  window.__asked.push(start);
  return %s;
} } };
"""


def test_in_the_native_window_choose_uses_the_system_dialog(browser, app, tmp_path):
    chosen = tmp_path / "picked by the user"
    chosen.mkdir()
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.add_init_script(FAKE_PYWEBVIEW % json.dumps(str(chosen)))
        page.goto(app.runtime["uiUrl"] + "&shell=window")
        new_session(page)
        panel = page.get_by_test_id("sync-panel")
        panel.get_by_test_id("sync-dir").fill("/somewhere/to/start")
        panel.get_by_test_id("sync-choose").click()
        expect(panel.get_by_test_id("sync-dir")).to_have_value(str(chosen))
        assert page.evaluate("window.__asked") == ["/somewhere/to/start"]
        expect(page.get_by_test_id("folder-picker")).to_have_count(0)
        panel.get_by_test_id("sync-start").click()
        expect(panel.get_by_test_id("sync-state")).to_have_attribute(
            "data-state", "active", timeout=UI_WAIT_MS
        )
        wait_until(lambda: chosen.is_dir(), WAIT_S, what="the folder")
        assert errors == []
    finally:
        context.close()
