"""The static checks, as tests: lint, format, types, the layering contracts and import
cycles.

The rule sets live in pyproject.toml; docs/architecture.md explains the layers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHECKED = ["dim_actors", "tests", "bench"]


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600
    )


def test_ruff_finds_nothing() -> None:
    r = run(
        str(BIN / "ruff"), "check", "--no-cache", "--output-format=concise", *CHECKED
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_code_is_formatted() -> None:
    r = run(str(BIN / "ruff"), "format", "--no-cache", "--check", *CHECKED)
    assert r.returncode == 0, (
        "run `.venv/bin/ruff format dim_actors tests bench`:\n" + r.stdout + r.stderr
    )


def test_mypy_finds_no_type_error() -> None:
    r = run(
        str(BIN / "mypy"),
        "--no-error-summary",
        "--cache-dir",
        str(ROOT / ".mypy_cache"),
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_layering_contracts_hold() -> None:
    r = run(str(BIN / "lint-imports"), "--no-cache")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


def test_no_module_imports_in_a_cycle() -> None:
    """Imports under `if TYPE_CHECKING:` count too: a cycle there is still two modules
    that cannot be understood apart."""
    graph = grimp.build_graph("dim_actors", cache_dir=None)
    cycles = set()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None:
                cycles.add(" -> ".join((module, *back)))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(cycles))


@pytest.mark.parametrize("package", ["dim_actors.wire", "dim_actors.devgateway"])
def test_a_package_that_stands_alone_imports_in_a_fresh_interpreter(
    package: str,
) -> None:
    """The wire format and the dev gateway load without the client's actors: what the
    layering contracts say statically, checked by importing."""
    code = (
        f"import importlib, pkgutil, sys; import {package} as p; "
        "[importlib.import_module(m.name) "
        "for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.')]; "
        "bad = sorted(m for m in sys.modules if m.startswith('dim_actors.') and "
        f"not m.startswith(('{package}', 'dim_actors.wire'))); print(bad); sys.exit(bool(bad))"
    )
    r = run(sys.executable, "-c", code)
    assert r.returncode == 0, r.stdout + r.stderr
