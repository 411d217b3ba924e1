"""Every module of `dim_actors` imports on Windows and macOS, as far as this machine can
tell: in a fresh interpreter per platform, the modules that platform lacks cannot be
imported and the names it lacks are gone (tests/platform_probe.py), then every module
is imported. Only the modules of PLATFORM_SPECIFIC may fail, and no other module
imports one of them at module level (it would take them down with it).

`sys.platform` is left alone: our modules read it only when called, and the standard
library and our dependencies, loaded before the simulation as on the real platform,
have taken their branches already. About 3 s.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from apphelpers import ROOT

PROBE = ROOT / "tests" / "platform_probe.py"

# Platform-specific by nature: they may fail to import elsewhere, and only they.
PLATFORM_SPECIFIC = {
    # our own XEmbed tray icon and its menu, for plain X11: python-xlib, an X server
    "dim_actors.desktop.xtray": "X11 only (python-xlib)",
    "dim_actors.desktop.xmenu": "X11 only (python-xlib)",
}

# Modules Windows lacks: the POSIX ones of the standard library, and X11's and the
# freedesktop session's.
POSIX_ONLY = ["fcntl", "termios", "tty", "pty", "pwd", "grp", "resource", "posix"]
POSIX_ONLY += ["syslog", "crypt", "spwd", "nis", "readline", "_posixsubprocess"]
X11_ONLY = ["Xlib", "gi", "dbus", "jeepney", "secretstorage", "pyinotify"]
WINDOWS_LACKS = [
    "os.geteuid",
    "os.getuid",
    "os.getgid",
    "os.fork",
    "os.setsid",
    "os.killpg",
    "os.getpgid",
    "os.statvfs",
    "os.O_NOFOLLOW",
    "signal.SIGKILL",
    "signal.SIGHUP",
    "signal.SIGQUIT",
    "signal.SIGUSR1",
    "signal.SIGUSR2",
    "signal.SIGCHLD",
    "signal.SIGPIPE",
    "signal.SIGALRM",
    "select.poll",
    "select.epoll",
    "socket.AF_UNIX",
    # what the standard library defines only where Unix sockets or fork exist
    "socketserver.UnixStreamServer",
    "socketserver.UnixDatagramServer",
    "socketserver.ThreadingUnixStreamServer",
    "socketserver.ThreadingUnixDatagramServer",
    "socketserver.ForkingMixIn",
    "socketserver.ForkingTCPServer",
    "socketserver.ForkingUDPServer",
]
MACOS_LACKS = ["select.epoll", "os.sched_getaffinity", "os.pidfd_open", "os.O_TMPFILE"]

PLATFORMS = {
    "windows": (POSIX_ONLY + X11_ONLY, WINDOWS_LACKS),
    "macos": (X11_ONLY, MACOS_LACKS),
}


@pytest.fixture(scope="module")
def preload() -> list[str]:
    """What importing all of dim_actors loads besides, here, in load order."""
    r = subprocess.run(
        [sys.executable, str(PROBE), "baseline"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_every_module_imports_on_the_platform(platform: str, preload: list[str]):
    missing, attrs = PLATFORMS[platform]
    spec = {
        "preload": preload,
        "missing": missing,
        "attrs": attrs,
        "specific": sorted(PLATFORM_SPECIFIC),
    }
    r = subprocess.run(
        [sys.executable, str(PROBE), platform, json.dumps(spec)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    failed = {
        name: error
        for name, error in result["failed"].items()
        if name not in PLATFORM_SPECIFIC
    }
    assert not failed, f"on {platform}, these modules fail to import: {failed}"
    assert not result["leaks"], (
        f"on {platform}, these import a platform-specific module at module level: "
        f"{result['leaks']}"
    )
