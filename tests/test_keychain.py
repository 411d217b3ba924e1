"""The gateway token in the OS keychain (dim_actors/config/keychain.py), against a real
Secret Service: GNOME Keyring (bin/ensure-desktop installs it) on a D-Bus session bus of
the test's own, its keyring files in a throwaway folder. The token saved from the page's
connection popover is used by the connection at once and by the next start, and lands in
no file under DIM_HOME; a locked keychain and no keychain at all are said in plain words,
at start and from the page, without hanging."""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import keyring.errors
import pytest
import secretstorage
from apphelpers import ROOT, App, InvokeError, desktop_unavailable, wait_until
from playwright.sync_api import Browser, Page, expect
from uihelpers import T

from dim_actors.config import keychain
from dim_actors.devgateway import BackgroundGateway

LOCKED = "The keychain is locked: unlock it (log in to your desktop session)"
ABSENT = "No system keychain is available"


BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={path}</listen>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def _login_unlocked() -> bool:
    with closing(secretstorage.dbus_init()) as bus:
        try:
            return any(
                c.collection_path.endswith("/login") and not c.is_locked()
                for c in secretstorage.get_all_collections(bus)
            )
        except secretstorage.exceptions.SecretServiceNotAvailableException:
            return False  # the daemon has not taken its name yet


@pytest.fixture
def secret_service(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """GNOME Keyring's Secret Service, its login keyring made and unlocked with a
    password on stdin; the environment that reaches it (set in this process too)."""
    for tool in ("dbus-daemon", "gnome-keyring-daemon"):
        if not shutil.which(tool):
            desktop_unavailable(
                f"{tool} is not installed (bin/ensure-desktop installs it with apt-get)"
            )
    # short: the daemon's control socket goes under it, within a socket path's limit
    root = Path(tempfile.mkdtemp(prefix="dimkc-"))
    # A session bus that starts no service by itself: the system's would start a
    # gnome-keyring-daemon of the real HOME's the moment the test asks for the Secret
    # Service before its own daemon has taken the name.
    (root / "bus.conf").write_text(BUS_CONFIG.format(path=root / "bus"))
    bus = subprocess.Popen(
        [
            "dbus-daemon",
            f"--config-file={root / 'bus.conf'}",
            "--nofork",
            "--nopidfile",
            "--print-address=1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert bus.stdout is not None
    address = bus.stdout.readline().strip()
    assert address.startswith("unix:"), f"dbus-daemon did not start ({bus.poll()})"
    for d in ("home", "run", "config"):
        (root / d).mkdir(mode=0o700)
    env = {
        "DBUS_SESSION_BUS_ADDRESS": address,
        # keyring's own config (keyringrc.cfg) is looked for here: none
        "XDG_CONFIG_HOME": str(root / "config"),
    }
    daemon = subprocess.Popen(
        ["gnome-keyring-daemon", "--foreground", "--components=secrets", "--unlock"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={
            **os.environ,
            **env,
            "HOME": str(root / "home"),
            "XDG_DATA_HOME": str(root / "home"),
            "XDG_RUNTIME_DIR": str(root / "run"),
        },
    )
    assert daemon.stdin is not None
    daemon.stdin.write(b"the keyring's password")
    daemon.stdin.close()
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    try:
        wait_until(_login_unlocked, 60, 0.1, "GNOME Keyring's login keyring")
        yield env
    finally:
        daemon.terminate()
        daemon.wait(60)
        bus.terminate()
        bus.wait(60)
        shutil.rmtree(root, ignore_errors=True)


def lock_keychain() -> None:
    with closing(secretstorage.dbus_init()) as bus:
        secretstorage.get_default_collection(bus).lock()
    assert not _login_unlocked()


@pytest.fixture
def token_gateway(tmp_path: Path) -> Iterator[tuple[BackgroundGateway, str]]:
    """A dev gateway that requires a token of its own (the right one always passes,
    however many wrong attempts came first)."""
    token = "kc-" + secrets.token_hex(16)
    with BackgroundGateway(
        token=token, lockout_spares_token=True, data_dir=tmp_path / "gateway"
    ) as gw:
        yield gw, token


def write_settings(home: Path, text: str) -> None:
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "settings.toml").write_text(text)


def start_fails(home: Path, env: dict[str, str]) -> tuple[str, float]:
    """dim-desktop started on `home` that exits with status 2: what it said, and how
    long it took."""
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "dim_actors.app", "--no-browser"],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if k != "DIM_TOKEN"},
            "DIM_HOME": str(home),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    return out.stderr, time.monotonic() - t0


def files_holding(root: Path, token: str) -> list[str]:
    """Every file under `root` holding the token, as it is or in base64."""
    forms = [token.encode(), base64.b64encode(token.encode())]
    return [
        str(p)
        for p in root.rglob("*")
        if p.is_file() and any(f in p.read_bytes() for f in forms)
    ]


def open_popover(browser: Browser, app: App) -> Page:
    page = browser.new_context().new_page()
    page.goto(app.runtime["uiUrl"])
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=T)
    page.get_by_test_id("connection-state").click()
    return page


def save_from_popover(page: Page, token: str) -> None:
    page.get_by_test_id("keychain-token").fill(token)
    page.get_by_test_id("keychain-save").click()


def _wrapped(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (keyring.errors.NoKeyringError("No recommended backend"), "absent"),
        (keyring.errors.KeyringLocked("Failed to unlock the collection!"), "locked"),
        (secretstorage.exceptions.LockedException("locked"), "locked"),
        # a dismissed prompt to create or unlock the default collection
        (
            _wrapped(
                keyring.errors.InitError("Failed to create the collection"),
                secretstorage.exceptions.PromptDismissedException("dismissed"),
            ),
            "locked",
        ),
        (keyring.errors.InitError("no collection"), "absent"),
        (secretstorage.exceptions.SecretServiceNotAvailableException("x"), "absent"),
        (ConnectionRefusedError(111, "refused"), "absent"),
        (keyring.errors.PasswordSetError("refused"), "failed"),
    ],
)
def test_kind_of(error, kind):
    assert keychain.kind_of(error) == kind


def test_a_call_that_never_returns_is_given_up_on_and_said():
    hung = threading.Event()  # never set: as a prompt nobody answers
    t0 = time.monotonic()
    with pytest.raises(keychain.KeychainError) as late:
        keychain.bounded(hung.wait, 0.2)
    assert late.value.kind == "timeout"
    assert str(late.value).startswith("The keychain did not answer within 0.2 s")
    assert time.monotonic() - t0 < 30


def test_read_save_and_delete_through_the_service(secret_service, dim_home):
    url = "ws://gateway.example:8080/ws"
    # at start, with none saved: how to save one, since the popover cannot be reached
    write_settings(dim_home, f'gateway_url = "{url}"\ntoken_source = "keyring"\n')
    said, _ = start_fails(dim_home, secret_service)
    assert (
        f"dim-desktop: No gateway token is saved in the keychain yet for {url}" in said
    )
    assert (
        f"secret-tool store --label=dim-desktop service dim-desktop username {url}"
        in said
    )

    with pytest.raises(keychain.KeychainError) as missing:
        keychain.read_token(url)
    assert missing.value.kind == "missing"
    assert "save one from the connection popover" in str(missing.value)
    keychain.save_token(url, "first")
    keychain.save_token(url, "second")  # replaced, not added
    assert keychain.read_token(url) == "second"
    # one entry per gateway address
    with pytest.raises(keychain.KeychainError):
        keychain.read_token("ws://another:8080/ws")
    assert keychain.delete_token(url) is True
    assert keychain.delete_token(url) is False


def test_popover_saves_the_token_and_the_next_start_reads_it(
    secret_service, token_gateway, browser, dim_home
):
    gw, token = token_gateway
    # no token anywhere yet: the gateway refuses the connection
    app = App(dim_home, ["--gateway", gw.url])
    try:
        page = open_popover(browser, app)
        save_from_popover(page, token)
        expect(page.get_by_test_id("keychain-result")).to_have_text(
            f"Saved for {gw.url}; connecting with it.", timeout=T
        )
        expect(page.get_by_test_id("keychain-token")).to_have_value("")
        expect(page.get_by_test_id("connection-state")).to_have_attribute(
            "data-state", "connected", timeout=T
        )
        page.context.close()
    finally:
        assert app.stop() == 0
    assert keychain.read_token(gw.url) == token
    settings = (dim_home / "config" / "settings.toml").read_text()
    assert 'token_source = "keyring"' in settings
    # the command was logged, its token redacted
    assert '"save_token"' in (dim_home / "logs" / "actors" / "router.log").read_text()

    # the next start takes it from the keychain: gateway_url in the settings this time
    write_settings(dim_home, settings + f'gateway_url = "{gw.url}"\n')
    app = App(dim_home)
    try:
        app.wait_connected()
    finally:
        assert app.stop() == 0
    assert files_holding(dim_home, token) == []


def test_a_locked_keychain_is_said_at_start_and_from_the_page(
    secret_service, token_gateway, dim_home
):
    gw, token = token_gateway
    keychain.save_token(gw.url, token)
    lock_keychain()
    t0 = time.monotonic()
    with pytest.raises(keychain.KeychainError) as locked:
        keychain.read_token(gw.url)
    assert locked.value.kind == "locked", locked.value
    assert time.monotonic() - t0 < keychain.TIMEOUT_S

    write_settings(dim_home, f'gateway_url = "{gw.url}"\ntoken_source = "keyring"\n')
    said, took = start_fails(dim_home, secret_service)
    assert f"dim-desktop: {LOCKED}" in said, said
    assert took < 60

    write_settings(dim_home, "")
    app = App(dim_home, ["--gateway", gw.url])
    try:
        wait_until(
            lambda: app.invoke("get_state")["connection"].get("url") == gw.url,
            60,
            what="the connection's first state",
        )
        with pytest.raises(InvokeError) as refused:
            app.invoke("save_token", token=token)
        assert LOCKED in str(refused.value)
    finally:
        assert app.stop() == 0
    assert files_holding(dim_home, token) == []


def test_no_keychain_at_all_is_said_at_start_and_in_the_popover(
    token_gateway, browser, dim_home, tmp_path
):
    gw, token = token_gateway
    # a session bus address nothing listens on
    no_bus = {
        "DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path / 'no-bus'}",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    write_settings(dim_home, f'gateway_url = "{gw.url}"\ntoken_source = "keyring"\n')
    said, _ = start_fails(dim_home, no_bus)
    assert f"dim-desktop: {ABSENT}" in said, said
    assert "use a token file or DIM_TOKEN instead" in said

    write_settings(dim_home, "")
    app = App(dim_home, ["--gateway", gw.url], env=no_bus)
    try:
        page = open_popover(browser, app)
        save_from_popover(page, token)
        result = page.get_by_test_id("keychain-result")
        expect(result).to_contain_text(ABSENT, timeout=T)
        expect(result).to_have_attribute("data-outcome", "failed")
        page.context.close()
    finally:
        assert app.stop() == 0
    assert "token_source" not in (dim_home / "config" / "settings.toml").read_text()
    assert files_holding(dim_home, token) == []
