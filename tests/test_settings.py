"""Settings: $DIM_HOME/config/settings.toml, read and edited through the bridge and the
Settings screen."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from apphelpers import ROOT, App, InvokeError
from playwright.sync_api import expect

from dim_actors.config.settings import (
    Settings,
    SettingsError,
    load_settings,
    resolve_token,
)


def settings_file(app: App) -> Path:
    return app.home / "config" / "settings.toml"


def test_settings_round_trip_through_the_bridge_and_apply_at_the_next_start(
    dim_home: Path,
):
    app = App(dim_home)
    try:
        got = app.invoke("get_settings")
        assert (
            got["values"]["max_restarts"] == 3
            and got["explicit"] == []
            and got["pendingRestart"] == []
        )
        assert {f["key"] for f in got["schema"]} >= {
            "gateway_url",
            "token_source",
            "sync_extra_ignore",
            "log_max_bytes",
            "max_restarts",
        }
        changes = {
            "max_restarts": 5,
            "restart_period_s": 7,
            "log_keep": 4,
            "sync_auto_start": True,
            "sync_extra_ignore": ["*.log", "build/"],
            "token_source": "flag",
            "native_notifications": False,
        }
        new = app.invoke("set_settings", changes=changes)
        assert {k: new["values"][k] for k in changes} == {
            **changes,
            "restart_period_s": 7.0,
        }
        assert set(new["explicit"]) == set(changes)
        # Restart intensity and log sizes take effect at the next start; notifications
        # at once.
        assert set(new["pendingRestart"]) == set(changes) - {"native_notifications"}
        on_disk = tomllib.loads(settings_file(app).read_text())
        assert on_disk == {**changes, "restart_period_s": 7.0}
        assert load_settings(settings_file(app)).sync_extra_ignore == [
            "*.log",
            "build/",
        ]
        # null resets a key to its default and removes it from the file.
        after = app.invoke("set_settings", changes={"log_keep": None})
        assert after["values"]["log_keep"] == 3 and "log_keep" not in after["explicit"]
        assert "log_keep" not in tomllib.loads(settings_file(app).read_text())
    finally:
        assert app.stop() == 0
    again = App(dim_home)
    try:
        got = again.invoke("get_settings")
        assert got["values"]["max_restarts"] == 5 and got["pendingRestart"] == []
    finally:
        again.stop()


BAD_CHANGES = [
    ({"max_restarts": -1}, "max_restarts"),
    ({"max_restarts": "3"}, "max_restarts"),
    ({"restart_period_s": 0}, "restart_period_s"),
    ({"log_max_bytes": 10}, "log_max_bytes"),
    ({"gateway_url": "http://example.org"}, "gateway_url"),
    ({"token_source": "vault"}, "token_source"),
    ({"token_source": "file"}, "token_file"),
    ({"stale_after_s": 10}, "stale_after_s"),  # must exceed ping_interval_s (30)
    ({"sync_extra_ignore": "*.log"}, "sync_extra_ignore"),
    ({"sync_extra_ignore": ["ok", ""]}, "sync_extra_ignore"),
    ({"sync_root": "relative/folder"}, "sync_root"),
    ({"no_such_key": 1}, "no_such_key"),
    (
        {"log_keep": 2, "ui_open": "sometimes"},
        "ui_open",
    ),  # one bad key: nothing of the change is saved
]


def test_bad_values_are_rejected_naming_the_key_and_the_file_is_untouched(app: App):
    app.invoke(
        "set_settings", changes={"max_restarts": 4, "sync_extra_ignore": ["*.tmp"]}
    )
    before = settings_file(app).read_bytes()
    mtime = settings_file(app).stat().st_mtime_ns
    for changes, key in BAD_CHANGES:
        with pytest.raises(InvokeError) as e:
            app.invoke("set_settings", changes=changes)
        assert e.value.status == 400 and e.value.code == "INVALID_ARGUMENTS", changes
        error = e.value.body["error"]
        assert error["key"] == key, (changes, error)
        assert error["message"].startswith(f"set_settings: {key}: "), error
        # in plain words after the key: what to enter, never a type name
        if key != "no_such_key":
            assert error["problem"].startswith(("Enter ", "Choose ")), error
            assert error["message"].endswith(error["problem"]), error
            for raw in ("Expected", "`int`", "str", "got"):
                assert raw not in error["problem"], error
        assert (
            settings_file(app).read_bytes() == before
            and settings_file(app).stat().st_mtime_ns == mtime
        )
    got = app.invoke("get_settings")
    assert got["values"]["max_restarts"] == 4 and got["values"]["log_keep"] == 3
    with pytest.raises(InvokeError) as e:
        app.invoke("set_settings", changes={})
    assert e.value.code == "INVALID_ARGUMENTS"


def test_a_bad_settings_file_stops_the_start_with_the_key_named(dim_home: Path):
    (dim_home / "config").mkdir()
    (dim_home / "config" / "settings.toml").write_text(
        "max_restarts = 2\nlog_keep = -4\n"
    )
    env = {**os.environ, "DIM_HOME": str(dim_home)}
    r = subprocess.run(
        [sys.executable, "-m", "dim_actors.app", "--no-browser"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert (
        "log_keep" in r.stderr
        and "settings.toml" in r.stderr
        and not (dim_home / "run" / "runtime.json").exists()
    )


def test_the_token_comes_from_where_token_source_says(tmp_path: Path):
    (tmp_path / "tok").write_text("s3cret\nignored\n")
    # a token file others can read is refused (tests/test_security.py)
    (tmp_path / "tok").chmod(0o600)
    env = {"DIM_TOKEN": "from-env"}
    assert resolve_token(Settings(), None, env, tmp_path) == "from-env"
    assert resolve_token(Settings(), "from-flag", env, tmp_path) == "from-flag"
    assert resolve_token(Settings(token_source="flag"), None, env, tmp_path) is None
    assert (
        resolve_token(
            Settings(token_source="file", token_file="tok"), None, env, tmp_path
        )
        == "s3cret"
    )
    with pytest.raises(SettingsError) as e:
        resolve_token(
            Settings(token_source="file", token_file="missing"), None, env, tmp_path
        )
    assert e.value.key == "token_file"


def test_the_settings_screen_shows_saves_and_rejects_with_the_key_named(page, app: App):
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=60000)
    page.get_by_test_id("settings-open").click()
    panel = page.get_by_test_id("settings-panel")
    expect(panel).to_be_visible()
    restarts = panel.get_by_test_id("setting-max_restarts")
    expect(restarts).to_have_value("3")
    expect(panel.get_by_test_id("setting-token_source")).to_have_value("env")
    restarts.fill("6")
    panel.get_by_test_id("setting-sync_extra_ignore").fill("*.bak\nnode_modules/")
    panel.get_by_test_id("settings-save").click()
    expect(panel.get_by_test_id("settings-status")).to_contain_text(
        "Saved", timeout=60000
    )
    on_disk = tomllib.loads(settings_file(app).read_text())
    assert on_disk == {
        "max_restarts": 6,
        "sync_extra_ignore": ["*.bak", "node_modules/"],
    }
    before = settings_file(app).read_bytes()

    restarts.fill("-2")
    panel.get_by_test_id("settings-save").click()
    error = panel.get_by_test_id("settings-error")
    expect(error).to_be_visible(timeout=60000)
    expect(error).to_contain_text("Enter a whole number from 0 to 1,000")
    expect(error).to_have_attribute("data-key", "max_restarts")
    expect(restarts).to_have_attribute("aria-invalid", "true")
    # next to the field, in the same words
    field = panel.locator(".settings-field[data-key='max_restarts']")
    expect(field.get_by_test_id("settings-field-error")).to_have_text(
        "Enter a whole number from 0 to 1,000 (not “-2”)"
    )
    assert settings_file(app).read_bytes() == before
    assert app.invoke("get_settings")["values"]["max_restarts"] == 6
    assert page.page_errors == []


def test_the_settings_form_has_groups_labels_in_words_and_proper_inputs(page, app: App):
    """What a user sees: groups, a label in words (the TOML key only in small print), a
    number input with its bounds, a checkbox, a select with words, help under each field,
    a plain error next to the field for text in a number field, and the restart note."""
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=60000)
    page.get_by_test_id("settings-open").click()
    panel = page.get_by_test_id("settings-panel")
    groups = panel.get_by_test_id("settings-group")
    expect(groups.locator("legend")).to_have_text(
        [
            "Gateway",
            "Window and notifications",
            "Sync",
            "Connection (advanced)",
            "Actors (advanced)",
            "Logs (advanced)",
        ],
        timeout=60000,
    )
    field = panel.locator(".settings-field[data-key='max_restarts']")
    expect(field.locator("label")).to_have_text(
        "Restart a failing part of the app at most"
    )
    expect(field.locator(".settings-unit")).to_have_text("times")
    expect(field.locator(".settings-key")).to_have_text("max_restarts")
    expect(field.locator(".settings-help")).to_contain_text(
        "Takes effect when dim-desktop restarts."
    )
    restarts = panel.get_by_test_id("setting-max_restarts")
    expect(restarts).to_have_attribute("type", "number")
    expect(restarts).to_have_attribute("min", "0")
    expect(restarts).to_have_attribute("max", "1000")
    expect(panel.get_by_test_id("setting-tray")).to_have_attribute("type", "checkbox")
    ui_open = panel.get_by_test_id("setting-ui_open")
    expect(ui_open.locator("option")).to_have_text(
        [
            "Automatic",
            "Its own window",
            "The web browser",
            "Nothing (use the address it prints)",
        ]
    )
    # No label is a raw key.
    labels = panel.locator(".settings-label").all_inner_texts()
    assert labels and not [t for t in labels if "_" in t], labels

    # Text in a number field: the words the bridge would use, nothing sent.
    log_keep = panel.get_by_test_id("setting-log_keep")
    log_keep.press_sequentially("e")
    before = settings_file(app).read_bytes() if settings_file(app).exists() else None
    panel.get_by_test_id("settings-save").click()
    keep_field = panel.locator(".settings-field[data-key='log_keep']")
    expect(keep_field.get_by_test_id("settings-field-error")).to_have_text(
        "Enter a whole number from 0 to 100", timeout=60000
    )
    expect(log_keep).to_have_attribute("aria-invalid", "true")
    after = settings_file(app).read_bytes() if settings_file(app).exists() else None
    assert after == before

    # A restart-only setting saved: it says when it takes effect.
    log_keep.fill("4")
    panel.get_by_test_id("settings-save").click()
    expect(panel.get_by_test_id("settings-status")).to_contain_text(
        "takes effect when dim-desktop restarts", timeout=60000
    )
    expect(keep_field.get_by_test_id("setting-pending")).to_be_visible()
    expect(keep_field.get_by_test_id("settings-field-error")).to_be_hidden()
    assert page.page_errors == []
