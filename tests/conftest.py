from __future__ import annotations

import os
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
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
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
