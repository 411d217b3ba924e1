"""Start at login (`start_at_login`, dim_actors/desktop/autostart.py): the XDG autostart
entry's text, the command it runs, when it is written or removed; then the real app
with the setting turned on and off from the bridge. About 6 s (one app)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from apphelpers import ROOT, App, wait_until

from dim_actors.desktop import autostart
from dim_actors.desktop.autostart import MARKER, decide, launch_command, quote_arg


@pytest.mark.parametrize(
    "arg, quoted",
    [
        ("/usr/bin/dim-desktop", "/usr/bin/dim-desktop"),
        ("DIM_HOME=/srv/dim", "DIM_HOME=/srv/dim"),
        ("/home/me/My Apps/dim-desktop", '"/home/me/My Apps/dim-desktop"'),
        ("~/bin/dim-desktop", '"~/bin/dim-desktop"'),
        ("/opt/a$b", '"/opt/a\\$b"'),
        ('/opt/a"b', '"/opt/a\\"b"'),
        ("/opt/a`b", '"/opt/a\\`b"'),
        ("/opt/a\\b", '"/opt/a\\\\b"'),
        ("/opt/it's", '"/opt/it\'s"'),
        ("/opt/100%", "/opt/100%%"),
        ("", '""'),
    ],
)
def test_an_exec_argument_is_quoted_as_the_desktop_entry_spec_says(arg, quoted):
    assert quote_arg(arg) == quoted


@pytest.mark.parametrize("arg", ["/opt/a\nb", "/opt/a\tb", "/opt/\x7f"])
def test_a_control_character_cannot_go_into_an_exec_line(arg):
    with pytest.raises(ValueError, match="control character"):
        quote_arg(arg)


@pytest.mark.parametrize(
    "command, icon, exec_line, icon_line",
    [
        (
            ["/usr/bin/dim-desktop"],
            "dim-desktop",
            "/usr/bin/dim-desktop",
            "dim-desktop",
        ),
        (
            ["env", "DIM_HOME=/home/me/dim home", "/srv/dim/bin/dim-desktop"],
            None,
            'env "DIM_HOME=/home/me/dim home" /srv/dim/bin/dim-desktop',
            None,
        ),
        # the string value's own escaping doubles what the quoting put in
        (
            ["/opt/a\\b/dim-desktop"],
            "/opt/a\\b.svg",
            '"/opt/a\\\\\\\\b/dim-desktop"',
            "/opt/a\\\\b.svg",
        ),
    ],
)
def test_the_entry_runs_the_command(command, icon, exec_line, icon_line):
    text = autostart.entry_text(command, icon, "/home/me/.local/share/dim-desktop")
    lines = text.splitlines()
    assert lines[0] == "[Desktop Entry]" and text.endswith("\n")
    keys = dict(line.split("=", 1) for line in lines[1:])
    assert keys["Type"] == "Application"
    assert keys["Name"] == "Dim Desktop" and keys["Comment"]
    assert keys["Exec"] == exec_line
    assert keys.get("Icon") == icon_line
    assert keys["X-GNOME-Autostart-enabled"] == "true"
    assert MARKER in lines
    assert keys["X-Dim-Desktop-Home"] == "/home/me/.local/share/dim-desktop"


@pytest.mark.parametrize(
    "argv0, installed, checkout, home, command",
    [
        # the installed dim-desktop on PATH is what runs
        ("{bin}", "{bin}", "/co/bin/dim-desktop", None, ["{bin}"]),
        # another one runs (python -m, the checkout's venv): the checkout's launcher
        (
            "/co/dim_actors/app/__main__.py",
            "{bin}",
            "/co/bin/dim-desktop",
            None,
            ["/co/bin/dim-desktop"],
        ),
        (
            "/co/dim_actors/app/__main__.py",
            None,
            "/co/bin/dim-desktop",
            None,
            ["/co/bin/dim-desktop"],
        ),
        # neither: this Python, running the package
        ("/x/__main__.py", None, None, None, ["/py", "-m", "dim_actors.app"]),
        # a DIM_HOME of its own goes with it
        ("{bin}", "{bin}", None, "/d h", ["env", "DIM_HOME=/d h", "{bin}"]),
    ],
)
def test_the_command_is_the_one_that_runs(
    tmp_path, argv0, installed, checkout, home, command
):
    program = tmp_path / "dim-desktop"
    program.write_text("#!/bin/sh\n")

    def fill(s):
        return s.replace("{bin}", str(program)) if s else s

    got = launch_command(fill(argv0), fill(installed), checkout, "/py", home)
    assert got == [fill(c) for c in command]


HERE = "X-Dim-Desktop-Home=/home/me/dim"
WANTED = f"[Desktop Entry]\nExec=dim-desktop\n{MARKER}\n{HERE}\n"
OURS_OLD = f"[Desktop Entry]\nExec=/old/dim-desktop\n{MARKER}\n{HERE}\n"
ANOTHER_HOME = f"[Desktop Entry]\nExec=dim-desktop\n{MARKER}\n{HERE}2\n"
THEIRS = "[Desktop Entry]\nExec=dim-desktop --browser\n"


@pytest.mark.parametrize(
    "enabled, existing, action",
    [
        (False, None, "keep"),  # off by default: nothing is ever written
        (True, None, "write"),
        (True, WANTED, "keep"),
        (True, OURS_OLD, "write"),  # ours, for another command: brought up to date
        (False, OURS_OLD, "remove"),
        (False, WANTED, "remove"),
        # one entry a user, one setting a DIM_HOME: on takes the entry over, off leaves
        # another instance's alone
        (True, ANOTHER_HOME, "write"),
        (False, ANOTHER_HOME, "other"),
        (True, THEIRS, "foreign"),  # the user's own: left alone, on or off
        (False, THEIRS, "foreign"),
    ],
)
def test_what_is_done_with_the_entry(enabled, existing, action):
    assert decide(enabled, existing, WANTED) == action


def test_files_follow_the_setting_and_a_foreign_entry_stays(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    entry = tmp_path / "xdg" / "autostart" / "dim-desktop.desktop"
    assert autostart.apply(False).action == "keep" and not entry.exists()
    assert autostart.apply(True).action == "write" and MARKER in entry.read_text()
    assert autostart.apply(True).action == "keep"
    assert autostart.apply(False).action == "remove" and not entry.exists()
    assert autostart.apply(True).action == "write"
    monkeypatch.setenv("DIM_HOME", str(tmp_path / "another-home"))
    written = entry.read_text()
    assert autostart.apply(False).action == "other" and entry.read_text() == written
    entry.write_text(THEIRS)
    for enabled in (True, False):
        outcome = autostart.apply(enabled)
        assert outcome.action == "foreign" and "remove it yourself" in outcome.message
        assert entry.read_text() == THEIRS
    # a relative XDG_CONFIG_HOME is ignored, as the spec says
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative")
    assert autostart.autostart_file({"XDG_CONFIG_HOME": "relative"}) == (
        Path.home() / ".config" / "autostart" / "dim-desktop.desktop"
    )


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_elsewhere_it_says_it_is_not_supported_and_writes_nothing(
    tmp_path, monkeypatch, platform
):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(sys, "platform", platform)
    outcome = autostart.apply(True)
    assert outcome.action == "unsupported"
    assert "not supported on this system" in outcome.message
    assert "startup programs yourself" in outcome.message
    assert autostart.apply(False).action == "keep"
    assert not (tmp_path / "xdg").exists()


def test_the_app_writes_the_entry_when_turned_on_and_removes_it_when_off(
    dim_home: Path, tmp_path: Path
):
    xdg = tmp_path / "xdg"
    entry = xdg / "autostart" / "dim-desktop.desktop"
    app = App(dim_home, env={"XDG_CONFIG_HOME": str(xdg)})
    try:
        # off by default: started, and another setting changed, still no entry
        app.invoke("set_settings", changes={"native_notifications": False})
        assert not entry.exists()
        new = app.invoke("set_settings", changes={"start_at_login": True})
        assert "start_at_login" not in new["pendingRestart"]  # applied at once
        wait_until(entry.exists, what="the autostart entry")
        keys = dict(line.split("=", 1) for line in entry.read_text().splitlines()[1:])
        # started by `python -m dim_actors.app` from the checkout: its launcher, and
        # this DIM_HOME
        launcher = ROOT / "bin" / "dim-desktop"
        assert keys["Exec"] == f"env DIM_HOME={dim_home} {launcher}"
        assert keys["Icon"] == str(ROOT / "packaging" / "dim-desktop.svg")
        assert keys["X-Dim-Desktop-Home"] == str(dim_home.resolve())
        app.invoke("set_settings", changes={"start_at_login": False})
        wait_until(lambda: not entry.exists(), what="the entry's removal")
        app.invoke("set_settings", changes={"native_notifications": True})
        assert not entry.exists()
    finally:
        assert app.stop() == 0
