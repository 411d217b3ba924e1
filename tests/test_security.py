"""Secrets against another local user (uid 65534 here) and on the command line: DIM_HOME
private to its user (0700 folders, no file readable by group or others, checked and
fixed at start), the gateway token from a private file, and the browser opened on a
private file rather than on the tokened URL (which `ps` would show to every user)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from apphelpers import ROOT, START, WAIT, App, GatewayProcess, wait_until
from playwright.sync_api import expect

from dim_actors.config.home import DimHome, private_mode

NOBODY = 65534
# The probe runs as nobody, so it needs a Python that nobody can execute (the venv's
# lives under /root).
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"
PROBE = """
import sys
try:
    with open(sys.argv[1], "rb") as f:
        f.read(1)
except PermissionError:
    print("denied")
else:
    print("read")
"""


def nobody_opens(path: Path) -> str:
    """What happens when uid nobody opens `path` for reading: "read" or "denied"."""
    r = subprocess.run(
        [SYSTEM_PYTHON, "-I", "-c", PROBE, str(path)],
        user=NOBODY,
        group=NOBODY,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture
def reachable_home():
    """A DIM_HOME another user could reach if its own modes let them: under a
    world-traversable folder, as in a user's home folder (pytest's tmp_path is under a
    0700 folder, which alone would keep nobody out). The DIM_HOME itself is made 0755,
    as `mkdir` with the usual umask does."""
    base = Path(tempfile.mkdtemp(prefix="dim-security-", dir="/tmp"))
    base.chmod(0o755)
    home = base / "dim-home"
    home.mkdir()
    home.chmod(0o755)
    yield home
    shutil.rmtree(base, ignore_errors=True)


def loose_entries(root: Path) -> list[str]:
    """Every folder that is not 0700 and every file group or others may read, write or
    run."""
    bad = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for path in [Path(dirpath), *(Path(dirpath) / name for name in filenames)]:
            st = path.lstat()
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                continue
            if stat.S_ISDIR(st.st_mode) and mode != 0o700 or mode & 0o077:
                bad.append(f"{path.relative_to(root).as_posix()} {mode:04o}")
    return sorted(bad)


# --- the pure decision ----------------------------------------------------------------


@pytest.mark.parametrize(
    "mode,expected",
    [
        (stat.S_IFREG | 0o600, None),  # private already: left alone
        (stat.S_IFREG | 0o400, None),
        (stat.S_IFREG | 0o700, None),  # an owner-only executable
        (stat.S_IFREG | 0o644, 0o600),
        (stat.S_IFREG | 0o664, 0o600),
        (stat.S_IFREG | 0o666, 0o600),
        (stat.S_IFREG | 0o755, 0o700),  # the owner keeps the execute bit
        (stat.S_IFREG | 0o604, 0o600),
        (stat.S_IFREG | 0o620, 0o600),  # writable by the group: as bad as readable
        (stat.S_IFREG | 0o4755, 0o4700),  # special bits are the owner's business
        (stat.S_IFDIR | 0o700, None),
        (stat.S_IFDIR | 0o755, 0o700),
        (stat.S_IFDIR | 0o775, 0o700),
        (stat.S_IFDIR | 0o777, 0o700),
        (
            stat.S_IFDIR | 0o711,
            0o700,
        ),  # traversable by others: they could open a file whose name they know
        (stat.S_IFDIR | 0o500, None),
        (stat.S_IFDIR | 0o555, 0o500),
        (stat.S_IFSOCK | 0o777, 0o700),
    ],
)
def test_private_mode_decides_the_new_mode_from_the_old(
    mode: int, expected: int | None
):
    assert private_mode(mode) == expected


def test_ensure_follows_no_link_and_leaves_a_shared_folder_alone(
    tmp_path: Path, monkeypatch
):
    outside = tmp_path / "outside"
    outside.mkdir()
    outside.chmod(0o755)
    (outside / "public.txt").write_text("shared on purpose")
    (outside / "public.txt").chmod(0o644)
    home = DimHome(tmp_path / "dim-home")
    home.root.mkdir(mode=0o755)
    (home.root / "link").symlink_to(outside)
    (home.root / "loose.txt").write_text("x")
    (home.root / "loose.txt").chmod(0o644)
    fixes = home.ensure()
    assert {f.describe() for f in fixes} == {
        f"{home.root} 0755 -> 0700",
        f"{home.root / 'loose.txt'} 0644 -> 0600",
    }
    assert stat.S_IMODE((outside / "public.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE(outside.stat().st_mode) == 0o755
    assert home.ensure() == []  # nothing left to fix

    # DIM_HOME set to the user's home folder: only the app's own folders are its to make
    # private.
    user_home = tmp_path / "user"
    user_home.mkdir(mode=0o755)
    (user_home / "notes.txt").write_text("mine")
    (user_home / "notes.txt").chmod(0o644)
    monkeypatch.setenv("HOME", str(user_home))
    shared = DimHome(user_home)
    assert shared.is_shared_folder() and DimHome(Path("/")).is_shared_folder()
    assert not DimHome(
        user_home / ".local" / "share" / "dim-desktop"
    ).is_shared_folder()
    assert shared.ensure() == []
    assert stat.S_IMODE((user_home / "notes.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE(user_home.stat().st_mode) == 0o755
    assert stat.S_IMODE(shared.run_dir.stat().st_mode) == 0o700


# --- DIM_HOME private to its user -----------------------------------------------------


def test_everything_in_dim_home_is_private_and_another_user_cannot_read_the_secrets(
    reachable_home: Path,
):
    home = reachable_home
    # Left by an earlier version, or by hand: readable by everyone, in a folder open to
    # everyone.
    (home / "data" / "old").mkdir(parents=True)
    (home / "data" / "old").chmod(0o755)
    (home / "data" / "old" / "notes.txt").write_text("private")
    (home / "data" / "old" / "notes.txt").chmod(0o644)
    (home / "data" / "old" / "tool").write_text("#!/bin/sh\n")
    (home / "data" / "old" / "tool").chmod(0o755)
    app = App(home)
    try:
        app.wait_connected()
        sid = app.invoke("create_session", agentType="echo", name="secret project")[
            "session"
        ]["id"]
        app.invoke("join_session", sessionId=sid)
        app.invoke("run_turn", sessionId=sid, text="a secret line")
        wait_until(
            lambda: any(
                t["status"] == "complete"
                for t in app.invoke("get_state")["chats"].get(sid, {}).get("turns", [])
            ),
            60,
            what="the turn",
        )
        # A turn queued offline: the outbox holds it on disk.
        app.invoke("gateway_disconnect")
        wait_until(
            lambda: app.invoke("get_state")["connection"]["state"] == "offline",
            what="offline",
        )
        queued = app.invoke("run_turn", sessionId=sid, text="sent later")
        assert queued["type"] == "queued"
        wait_until(
            lambda: list((home / "logs" / "actors").glob("*.log")),
            what="the actors' message logs",
        )

        gateway_db = next(home.rglob("gateway.db"))
        actor_logs = sorted((home / "logs" / "actors").glob("*.log"))
        secrets = [
            gateway_db,
            home / "data" / "outbox.sqlite",
            home / "data" / "journal.sqlite",
            home / "logs" / "dim-desktop.log",
            home / "run" / "runtime.json",
            *actor_logs,
        ]
        for path in secrets:
            assert path.exists(), path
        assert loose_entries(home) == []
        assert (
            stat.S_IMODE((home / "data" / "old" / "notes.txt").stat().st_mode) == 0o600
        )
        assert stat.S_IMODE((home / "data" / "old" / "tool").stat().st_mode) == 0o700
        assert {str(p.relative_to(home)): nobody_opens(p) for p in secrets} == {
            str(p.relative_to(home)): "denied" for p in secrets
        }
        # What was fixed is said once, in the log (not on every start: the next start
        # has nothing to fix).
        log = (home / "logs" / "dim-desktop.log").read_text()
        assert "data/old/notes.txt" in log and "0644 -> 0600" in log
    finally:
        assert app.stop() == 0


# --- the gateway token: from a private file, never on the command line or in the log ---

TOKEN = "gw-s3cret-token-4711"


def start_app(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """A dim-desktop start that is expected to end by itself (a refused flag)."""
    return subprocess.run(
        [sys.executable, "-m", "dim_actors.app", "--no-browser", *args],
        cwd=ROOT,
        env={**os.environ, "DIM_HOME": str(home), **(env or {})},
        capture_output=True,
        text=True,
        timeout=START,
    )


def assert_token_not_logged(home: Path, token: str) -> None:
    for log in (home / "logs" / "dim-desktop.log", home / "app-output.log"):
        assert token not in log.read_text(errors="replace"), f"the token is in {log}"


def test_the_token_from_a_private_token_file_reaches_the_gateway(
    dim_home: Path, tmp_path: Path
):
    gw = GatewayProcess(
        tmp_path / "gw", args=["--token", TOKEN]
    ).start()  # refuses any other token
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    try:
        app = App(dim_home, ["--gateway", gw.url, "--token-file", str(token_file)])
        try:
            app.wait_connected()  # authenticated: the gateway took the token
            assert "--token puts the token on the command line" not in app.output()
            # runtime.json holds only the embedded gateway's token: the user's stays in
            # its file.
            assert app.runtime["gatewayToken"] == ""
            assert TOKEN not in (dim_home / "run" / "runtime.json").read_text()
        finally:
            assert app.stop() == 0
        assert_token_not_logged(dim_home, TOKEN)
    finally:
        gw.stop()


def test_a_token_file_others_can_read_is_refused_with_a_clear_message(
    dim_home: Path, tmp_path: Path
):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o644)
    r = start_app(
        dim_home, "--gateway", "ws://127.0.0.1:9/ws", "--token-file", str(token_file)
    )
    assert r.returncode != 0
    assert (
        f"--token-file: {token_file} can be read or changed by other users (its mode is 0644)"
        in r.stderr
    )
    assert f"chmod 600 {token_file}" in r.stderr
    assert TOKEN not in r.stdout + r.stderr
    assert not (dim_home / "run" / "runtime.json").exists()


def test_token_on_the_command_line_still_works_with_a_warning(
    dim_home: Path, tmp_path: Path
):
    gw = GatewayProcess(tmp_path / "gw", args=["--token", TOKEN]).start()
    try:
        app = App(dim_home, ["--gateway", gw.url, "--token", TOKEN])
        try:
            app.wait_connected()
            wait_until(
                lambda: "--token puts the token on the command line" in app.output(),
                what="the warning",
            )
            assert "--token-file" in app.output() and "DIM_TOKEN" in app.output()
        finally:
            assert app.stop() == 0
        assert (dim_home / "logs" / "dim-desktop.log").read_text().count(TOKEN) == 0
    finally:
        gw.stop()


# --- the browser is opened on a private file, not on the tokened URL ------------------

ARGV_RECORDER = """#!/bin/sh
# Stands in for the browser: records its arguments, one a line.
for a in "$@"; do printf '%s\\n' "$a" >> "{log}"; done
printf '%s' "${{DIM_TOKEN-}}" > "{log}.env"
"""


def process_cmdlines() -> dict[int, str]:
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                out[int(entry.name)] = (
                    (entry / "cmdline")
                    .read_bytes()
                    .replace(b"\0", b" ")
                    .decode(errors="replace")
                )
            except OSError:
                continue
    return out


def test_the_browser_is_opened_on_a_private_file_that_logs_in(
    reachable_home: Path, tmp_path: Path, browser
):
    recorded = tmp_path / "browser-argv.log"
    fake_browser = tmp_path / "browser"
    fake_browser.write_text(ARGV_RECORDER.format(log=recorded))
    fake_browser.chmod(0o755)
    # No display: a show opens the browser (no native window).
    app = App(
        reachable_home,
        env={
            "BROWSER": f"{fake_browser} %s",
            "DISPLAY": "",
            "WAYLAND_DISPLAY": "",
            "DIM_TOKEN": TOKEN,
        },
    )
    try:
        app.wait_connected()
        sid = app.invoke("create_session", agentType="echo", name="opened")["session"][
            "id"
        ]
        out = app.dimctl("show", "--session", sid)
        assert out.returncode == 0, out.stderr
        argv = wait_until(
            lambda: recorded.exists() and recorded.read_text().splitlines(),
            60,
            what="the browser to be started",
        )
        open_page = reachable_home / "run" / "open.html"
        assert argv == [open_page.as_uri()]
        assert (
            tmp_path / "browser-argv.log.env"
        ).read_text() == ""  # nor the gateway token in its environment
        assert not any(app.token in cmdline for cmdline in process_cmdlines().values())
        assert stat.S_IMODE(open_page.stat().st_mode) == 0o600
        assert nobody_opens(open_page) == "denied"

        # Following the file logs in: the UI comes up, connected, with the token gone
        # from the address bar.
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        try:
            page = context.new_page()
            page.goto(open_page.as_uri())
            page.wait_for_url(f"{app.base}/**")
            expect(page.locator("body[data-ready='1']")).to_have_count(1)
            expect(page.get_by_test_id("connection-state")).to_have_text("Connected")
            expect(page.get_by_test_id("session-item")).to_have_count(1)
            assert "token" not in page.url
        finally:
            context.close()
    finally:
        assert app.stop() == 0
    assert not (reachable_home / "run" / "open.html").exists()
