from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest

from apphelpers import App

CHROMIUM = os.environ.get("DIM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


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


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                               env={**os.environ, "DIM_TEST_RUN": RUN_ID})
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
