"""bin/package builds a Debian package that installs, runs and removes cleanly.

It is built once and installed with dpkg into a throwaway root (an empty dpkg database of
its own). The installed programs run in a mount namespace of their own where that root's
/opt/dim-desktop is mounted at /opt/dim-desktop, so its shebangs and /usr/bin links are
the ones a user gets, and the machine's own /opt is left alone."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from apphelpers import ROOT, App, wait_until

from bench.package import PREFIX, in_root, install
from dim_actors import __version__

# The build alone takes 40 s on an idle 2-core machine and several times that on a loaded one.
pytestmark = pytest.mark.timeout(900)
COMMANDS = ("dim-desktop", "dimctl", "dim-gateway")
ICONS = [
    f"./usr/share/icons/hicolor/{s}x{s}/apps/dim-desktop.png" for s in (48, 128, 256)
]
DESKTOP_FILE = "./usr/share/applications/dim-desktop.desktop"


def run(*cmd: str | Path, timeout: float = 300) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout
    )
    assert r.returncode == 0, f"{cmd}: {r.stdout}{r.stderr}"
    return r


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Iterator[Path]:
    # Uncompressed: this checks what the package holds, not how it is squeezed.
    out = tmp_path_factory.mktemp("dist")
    run(ROOT / "bin" / "package", "--out", out, "--compression", "none", timeout=900)
    (found,) = out.glob("dim-desktop_*.deb")
    yield found
    # 600 MB a run: not left to pytest's tmp retention, which removes it at a later
    # run's end, minutes on a slow disk
    shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="module")
def root(deb: Path, tmp_path_factory) -> Iterator[Path]:
    """The package installed by dpkg under a root of its own (its Depends are the
    machine's: python3.11, Qt's X11 libraries)."""
    root = tmp_path_factory.mktemp("root")
    install(deb, root)
    yield root
    shutil.rmtree(root, ignore_errors=True)  # what a failed test left installed


def user_env(root: Path) -> dict[str, str]:
    home = root / "home" / "user"
    (home / "dim").mkdir(parents=True, exist_ok=True)
    return {"HOME": str(home), "DIM_HOME": str(home / "dim"), "PYTHONPATH": ""}


def test_the_control_fields_and_the_files(deb: Path, root: Path):
    fields = {
        k: run("dpkg-deb", "-f", deb, k).stdout.strip()
        for k in ("Package", "Version", "Architecture", "Depends", "Installed-Size")
    }
    arch = run("dpkg", "--print-architecture").stdout.strip()
    assert fields["Package"] == "dim-desktop"
    assert fields["Version"] == __version__
    assert fields["Architecture"] == arch
    assert deb.name == f"dim-desktop_{__version__}_{arch}.deb"
    depends = {d.split(" ")[0] for d in fields["Depends"].split(", ")}
    assert {"python3.11", "libxcb-cursor0", "libglib2.0-bin", "libnss3"} <= depends
    assert int(fields["Installed-Size"]) > 100_000  # KiB: the venv with Qt WebEngine

    listing = run("dpkg-deb", "-c", deb).stdout.splitlines()
    entries = {}
    for line in listing:
        mode, owner, _size, _day, _time, path, *link = line.split()
        entries[path] = (mode, owner, link[-1] if link else None)
    assert all(owner == "root/root" for _, owner, _ in entries.values())
    for path, (mode, _, _) in entries.items():
        expected = {"d": {"drwxr-xr-x"}, "l": {"lrwxrwxrwx"}}.get(
            mode[0], {"-rwxr-xr-x", "-rw-r--r--"}
        )
        assert mode in expected, (path, mode)
    parents = {"./", "./opt/", "./usr/", "./usr/share/"}
    outside = [
        p
        for p in entries
        if p not in parents
        and not p.startswith((f".{PREFIX}/", "./usr/bin/", "./usr/share/"))
    ]
    assert not outside, outside
    for cmd in COMMANDS:
        assert entries[f"./usr/bin/{cmd}"][2] == f"{PREFIX}/bin/{cmd}"
        assert entries[f".{PREFIX}/bin/{cmd}"][0] == "-rwxr-xr-x"
    for icon in [*ICONS, "./usr/share/icons/hicolor/scalable/apps/dim-desktop.svg"]:
        assert icon in entries, icon
    assert DESKTOP_FILE in entries

    # The files themselves, as dpkg installed them.
    desktop = root / DESKTOP_FILE
    run("desktop-file-validate", desktop)
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(desktop)
    entry = parser["Desktop Entry"]
    assert entry["Exec"].split()[0] == "dim-desktop"
    assert entry["Icon"] == "dim-desktop"
    assert entry["Terminal"] == "false" and entry["Categories"] == "Development;"
    assert entry["StartupWMClass"] == "dim-desktop"
    from PIL import Image

    for icon, size in zip(ICONS, (48, 128, 256), strict=True):
        with Image.open(root / icon) as img:
            assert img.format == "PNG" and img.size == (size, size)
    # Compiled at build time under the installed paths, so no start compiles.
    pyc = next((root / f".{PREFIX}").rglob("dim_actors/app/__pycache__/main.*.pyc"))
    assert f"{PREFIX}/lib/".encode() in pyc.read_bytes()


def test_the_installed_app_runs_a_turn_and_stops(root: Path):
    env = user_env(root)
    version = subprocess.run(
        [*in_root(root), root / "usr" / "bin" / "dim-desktop", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert version.stdout.strip() == f"dim-desktop {__version__}", version.stderr

    app = App(
        Path(env["DIM_HOME"]),
        env=env,
        prefix=in_root(root),
        command=[str(root / "usr" / "bin" / "dim-desktop")],
    )
    try:
        with urllib.request.urlopen(app.runtime["uiUrl"], timeout=60) as resp:
            assert resp.status == 200 and 'src="/js/app.js"' in resp.read().decode()
        app.wait_connected()
        sid = app.invoke("create_session", agentType="echo")["session"]["id"]
        app.invoke("join_session", sessionId=sid)
        app.invoke("run_turn", sessionId=sid, text="from the package")
        wait_until(
            lambda: any(
                t["status"] == "complete"
                for t in app.invoke("get_state")["chats"][sid]["turns"]
            ),
            60,
            what="the turn to complete",
        )
        stop = subprocess.run(
            [*in_root(root), root / "usr" / "bin" / "dimctl", "stop"],
            capture_output=True,
            text=True,
            timeout=150,
            env=app.env,
        )
        assert stop.returncode == 0, stop.stderr
        assert app.proc.wait(timeout=60) == 0, app.output()
    finally:
        app.stop()


def test_the_installed_window_can_open(root: Path, xvfb: str):
    probe = (
        "import dim_actors, sys; from dim_actors.desktop.window import window_support; "
        "print(dim_actors.__file__, sys.executable); print(window_support(60))"
    )
    r = subprocess.run(
        [*in_root(root), f"{PREFIX}/bin/python", "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **user_env(root), "DISPLAY": xvfb},
        cwd=root,
    )
    where, verdict = r.stdout.strip().splitlines()
    assert where.startswith(f"{PREFIX}/lib/") and where.endswith(f"{PREFIX}/bin/python")
    assert verdict == "None", r.stdout + r.stderr


def test_removing_it_leaves_only_the_users_data(root: Path):
    run("dpkg", f"--root={root}", "--purge", "dim-desktop")
    left = [
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if not p.relative_to(root).as_posix().startswith(("var/lib/dpkg", "home"))
        and p.relative_to(root).as_posix() not in ("var", "var/lib", "var/log")
        and p.relative_to(root).as_posix() != "var/log/dpkg.log"
    ]
    assert not left, left
    # What the app wrote for the user (its logs) stays theirs.
    assert any((root / "home" / "user" / "dim" / "logs").iterdir())
