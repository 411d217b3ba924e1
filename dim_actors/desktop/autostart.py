"""Start at login (the `start_at_login` setting): an XDG autostart entry,
`$XDG_CONFIG_HOME/autostart/dim-desktop.desktop` (~/.config by default), which desktops
following the freedesktop Autostart spec (GNOME, KDE, Xfce, ...) start at login.

The entry is ours when it carries `X-Dim-Desktop-Managed=true`: only such an entry is
rewritten (when the command changed) or removed (when the setting is turned off). An
entry of that name without it was made by the user or a tool (a desktop's "Startup
Applications"), and is left alone either way. There is one entry per user, and one
settings file per DIM_HOME: turning the setting on writes the entry for this DIM_HOME
(`X-Dim-Desktop-Home`), and off removes it only if it is this DIM_HOME's, so an
instance with the setting off never removes another's. Elsewhere than on a freedesktop system
nothing is written: the app says start at login is not supported there yet.

`entry_text`, `launch_command` and `decide` are pure; `apply` does the I/O.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

from dim_actors.config.home import DimHome, write_private

log = logging.getLogger("dim.desktop.autostart")

FILE_NAME = "dim-desktop.desktop"
MARKER = "X-Dim-Desktop-Managed=true"
HOME_KEY = "X-Dim-Desktop-Home="
NAME = "Dim Desktop"
COMMENT = "Chat with AI coding agents through a Diminuendo gateway"
# Platforms whose desktops read XDG autostart entries.
XDG_PLATFORMS = ("linux", "freebsd", "openbsd", "netbsd", "dragonfly")
# The checkout this module is in (bin/dim-desktop, packaging/dim-desktop.svg), if any.
CHECKOUT = Path(__file__).resolve().parents[2]

# Desktop Entry spec, "The Exec key": an argument holding one of these is quoted.
_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")
# Inside double quotes, these are escaped with a backslash.
_ESCAPED_IN_QUOTES = set('"`$\\')

Action = Literal["write", "remove", "keep", "foreign", "other"]


def quote_arg(arg: str) -> str:
    """One argument of an Exec line, quoted per the Desktop Entry spec; the caller
    escapes the whole value as a string (`_escape_value`) afterwards."""
    if any(ord(c) < 0x20 or c == "\x7f" for c in arg):
        raise ValueError(f"a control character in {arg!r} cannot go into an Exec line")
    arg = arg.replace("%", "%%")  # a literal %: field codes start with one
    if arg and not _RESERVED.intersection(arg):
        return arg
    return '"' + "".join("\\" + c if c in _ESCAPED_IN_QUOTES else c for c in arg) + '"'


def _escape_value(value: str) -> str:
    """A string value of a desktop entry: backslashes doubled (the spec's `\\\\`)."""
    return value.replace("\\", "\\\\")


def entry_text(command: Sequence[str], icon: str | None, home: str) -> str:
    """The autostart entry that runs `command` (program first, then its arguments),
    for the instance of DIM_HOME `home`."""
    if not command:
        raise ValueError("the autostart entry needs a command")
    exec_line = " ".join(quote_arg(a) for a in command)
    lines = [
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.5",
        f"Name={NAME}",
        f"Comment={COMMENT}",
        f"Exec={_escape_value(exec_line)}",
        *([f"Icon={_escape_value(icon)}"] if icon else []),
        "Terminal=false",
        "X-GNOME-Autostart-enabled=true",
        MARKER,
        HOME_KEY + _escape_value(home),
    ]
    return "\n".join(lines) + "\n"


def launch_command(
    argv0: str,
    installed: str | None,
    checkout_launcher: str | None,
    python: str,
    dim_home: str | None,
) -> list[str]:
    """The command that starts this app again: the installed `dim-desktop` on PATH
    (`installed`, from shutil.which) if that is what runs now (`argv0`, resolved), else
    the checkout's launcher (bin/dim-desktop) if there is one, else this Python running
    the package. A DIM_HOME given in the environment goes with it, so the same instance
    starts."""
    if installed and _same_file(argv0, installed):
        command = [installed]
    elif checkout_launcher:
        command = [checkout_launcher]
    else:
        command = [python, "-m", "dim_actors.app"]
    return ["env", f"DIM_HOME={dim_home}", *command] if dim_home else command


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def is_ours(text: str) -> bool:
    return MARKER in text.splitlines()


def _home_line(text: str) -> str | None:
    return next((ln for ln in text.splitlines() if ln.startswith(HOME_KEY)), None)


def decide(enabled: bool, existing: str | None, wanted: str) -> Action:
    """What to do with the entry: `existing` is the file's text (None: there is none),
    `wanted` the entry this instance would write."""
    if existing is not None and not is_ours(existing):
        return "foreign"
    if enabled:
        return "keep" if existing == wanted else "write"
    if existing is None:
        return "keep"
    return "remove" if _home_line(existing) == _home_line(wanted) else "other"


def autostart_file(env: Mapping[str, str]) -> Path:
    """$XDG_CONFIG_HOME/autostart/dim-desktop.desktop; the spec ignores a relative
    XDG_CONFIG_HOME."""
    config = env.get("XDG_CONFIG_HOME", "")
    base = Path(config) if os.path.isabs(config) else Path.home() / ".config"
    return base / "autostart" / FILE_NAME


def supported(platform: str) -> bool:
    return platform.startswith(XDG_PLATFORMS)


def current_command() -> list[str]:
    launcher = CHECKOUT / "bin" / "dim-desktop"
    return launch_command(
        sys.argv[0],
        shutil.which("dim-desktop"),
        str(launcher) if launcher.is_file() else None,
        sys.executable,
        os.environ.get("DIM_HOME") or None,
    )


def current_icon(env: Mapping[str, str]) -> str | None:
    """The checkout's icon file; else the icon theme's name, where a package installed
    it; else none."""
    svg = CHECKOUT / "packaging" / "dim-desktop.svg"
    if svg.is_file():
        return str(svg)
    data_dirs = env.get("XDG_DATA_DIRS") or "/usr/local/share:/usr/share"
    for d in data_dirs.split(":"):
        if d and (Path(d) / "icons/hicolor/scalable/apps/dim-desktop.svg").is_file():
            return "dim-desktop"
    return None


class Outcome(NamedTuple):
    action: Action | Literal["unsupported", "failed"]
    message: str


def apply(enabled: bool) -> Outcome:
    """Make the autostart entry follow the setting, and say so in the log unless
    nothing changed. Never raises: a failure is logged, and returned."""
    outcome = _apply(enabled)
    if outcome.action in ("unsupported", "failed", "foreign"):
        log.warning("%s", outcome.message)
    elif outcome.action != "keep":
        log.info("%s", outcome.message)
    return outcome


def _apply(enabled: bool) -> Outcome:
    if not supported(sys.platform):
        if not enabled:
            return Outcome("keep", "start at login: off")
        return Outcome(
            "unsupported",
            f"start at login is not supported on this system ({sys.platform}) yet: "
            "add dim-desktop to your system's startup programs yourself",
        )
    path = autostart_file(os.environ)
    try:
        wanted = entry_text(
            current_command(), current_icon(os.environ), str(DimHome.from_env().root)
        )
    except ValueError as e:
        return Outcome("failed", f"start at login: {e}")
    try:
        existing: str | None = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        existing = None
    except OSError as e:
        return Outcome("failed", f"start at login: cannot read {path}: {e}")
    action = decide(enabled, existing, wanted)
    try:
        match action:
            case "write":
                path.parent.mkdir(parents=True, exist_ok=True)
                write_private(path, wanted)
                message = f"start at login: on ({path} written)"
            case "remove":
                path.unlink(missing_ok=True)
                message = f"start at login: off ({path} removed)"
            case "keep":
                message = f"start at login: {'on' if enabled else 'off'}"
            case "other":
                message = (
                    f"start at login: off here, and {path} starts dim-desktop with "
                    "another DIM_HOME: left as it is"
                )
            case "foreign":
                message = (
                    f"start at login: {path} is not dim-desktop's own (it has no "
                    f"{MARKER} line), so it is left as it is: edit or remove it yourself"
                )
    except OSError as e:
        return Outcome("failed", f"start at login: cannot update {path}: {e}")
    return Outcome(action, message)
