from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from apphelpers import App, desktop_unavailable
from playwright.sync_api import expect

from dim_actors.devgateway import BackgroundGateway


@pytest.fixture
def xvfb():
    """An X server of the test's own (the native window, the tray and its clicks are tested on
    one). -displayfd has Xvfb pick a free display number and say it once it is ready; -noreset
    keeps it from resetting whenever its last client leaves (the window probe does)."""
    if not shutil.which("Xvfb"):
        desktop_unavailable(
            "Xvfb is not installed (bin/ensure-desktop installs it with apt-get)"
        )
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [
            "Xvfb",
            "-displayfd",
            str(write_fd),
            "-screen",
            "0",
            "1280x800x24",
            "-nolisten",
            "tcp",
            "-noreset",
        ],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as ready:
        # blocks until Xvfb is ready, or "" when it exits first
        number = ready.readline().strip()
    if not number:
        proc.wait(60)
        desktop_unavailable(f"Xvfb did not start (exit status {proc.returncode})")
    yield f":{number}"
    proc.terminate()
    proc.wait(60)


CHROMIUM = os.environ.get("DIM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Playwright's defaults (5 s for an expect(...), 30 s for an action or a navigation) are tuned for
# an idle developer machine. The suite must pass on a loaded CI machine too (2 shared cores, a CPU
# hog, other suites running), where a page that renders in 50 ms idle can take seconds. An expect
# is a condition that returns as soon as it holds, and an action as soon as it is done, so these
# limits cost a fast machine nothing: they only decide when to call it a failure.
EXPECT_TIMEOUT_MS = 30_000
ACTION_TIMEOUT_MS = 60_000
expect.set_options(timeout=EXPECT_TIMEOUT_MS)


def _generous_timeouts(context) -> None:
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    context.set_default_navigation_timeout(ACTION_TIMEOUT_MS)


@pytest.fixture
def dim_home(tmp_path: Path) -> Path:
    home = tmp_path / "dim-home"
    home.mkdir()
    return home


@pytest.fixture
def app(dim_home: Path):
    a = App(dim_home)
    a.wait_connected()
    yield a
    a.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    """A dev gateway shared by a module's tests, with no rate limit to wait on (the sync tests')."""
    with BackgroundGateway(
        rate_limit=100_000, data_dir=tmp_path_factory.mktemp("gateway")
    ) as g:
        yield g


@pytest.fixture
def gw_app(gw, dim_home: Path):
    """dim-desktop connected to the module's `gw`."""
    a = App(dim_home, ["--gateway", gw.url])
    a.wait_connected()
    yield a
    a.stop()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            env={**os.environ, "DIM_TEST_RUN": RUN_ID},
        )
        # Every context made from this browser, by a fixture or by a test, gets the generous
        # defaults (the event fires inside new_context, before it returns).
        b.on("context", _generous_timeouts)
        yield b
        b.close()


@pytest.fixture
def page(browser, app):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.goto(app.runtime["uiUrl"])
    p.page_errors = errors  # type: ignore[attr-defined]
    yield p
    context.close()


# Every Chromium this run starts carries this marker in its environment, crash handler included,
# so the run can end exactly its own browsers and no other session's.
RUN_ID = uuid.uuid4().hex
RUN_MARKER = f"DIM_TEST_RUN={RUN_ID}".encode()


def _own_chromium_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if RUN_MARKER in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def pytest_sessionfinish(session, exitstatus):
    # Chromium's crash handler can outlive the browser and hold the test run's output open, so a
    # CI that waits for the end of output would wait for ever: end whatever this run started.
    for pid in _own_chromium_pids():
        if pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
