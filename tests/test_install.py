"""`pip install .` into a fresh virtualenv gives working dim-desktop, dimctl and
dim-gateway commands, and the installed dim-desktop serves its UI from the wheel (not
from this checkout)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import site
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from apphelpers import ROOT, wait_until

from dim_actors import __version__

SOURCES = [
    "dim_actors",
    "ui",
    "setup.py",
    "setup.cfg",
    "pyproject.toml",
    "README.md",
    "MANIFEST.in",
]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with dim-desktop installed from a copy of the sources (so the
    checkout is not written to). Its dependencies come from this test run's environment
    through a .pth file, and so does the build backend (no build isolation): the install
    downloads nothing."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(
                path,
                src / name,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "static"),
            )
        else:
            shutil.copy2(path, src / name)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    purelib = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # After the venv's own site-packages: this environment's (pykka, msgspec, aiohttp,
    # ...). A plain path line does not run the .pth files there, so the checkout's
    # editable install stays out.
    Path(purelib, "zz-test-deps.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n"
    )
    r = subprocess.run(
        [
            py,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--quiet",
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return venv


def run(
    venv: Path, cmd: str, *args: str, env: dict | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(venv / "bin" / cmd), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env or os.environ,
        cwd=venv,
    )


def test_the_commands_are_installed_and_answer_help_and_version(installed: Path):
    for cmd in ("dim-desktop", "dimctl", "dim-gateway"):
        r = run(installed, cmd, "--help")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("usage: " + cmd), r.stdout
    r = run(installed, "dim-desktop", "--version")
    assert r.returncode == 0 and r.stdout.strip() == f"dim-desktop {__version__}"
    # The installed package is the wheel's, with the page inside it.
    code = (
        "import dim_actors.uibridge.bridge as b, dim_actors; "
        "print(dim_actors.__file__); print(b.STATIC_DIR)"
    )
    out = subprocess.run(
        [installed / "bin" / "python", "-c", code],
        capture_output=True,
        text=True,
        cwd=installed,
        check=True,
    ).stdout.split()
    assert all(p.startswith(str(installed)) for p in out), out
    assert (Path(out[1]) / "index.html").is_file() and (
        Path(out[1]) / "js" / "settings.js"
    ).is_file()


def test_the_installed_dim_desktop_runs_and_serves_its_page(
    installed: Path, tmp_path: Path
):
    home = tmp_path / "home"
    env = {**os.environ, "DIM_HOME": str(home)}
    env.pop("DIM_TOKEN", None)
    # the child keeps its own copy of the descriptor
    with open(tmp_path / "out.log", "wb") as log:
        proc = subprocess.Popen(
            [installed / "bin" / "dim-desktop", "--no-browser"],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def runtime():
            assert proc.poll() is None, (tmp_path / "out.log").read_text()
            try:
                return json.loads((home / "run" / "runtime.json").read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                return None

        info = wait_until(runtime, 40, what="runtime.json")
        with urllib.request.urlopen(info["uiUrl"], timeout=10) as resp:
            html = resp.read().decode()
            cookie = resp.headers["Set-Cookie"].split(";")[0]
        assert (
            resp.status == 200
            and 'src="/js/app.js"' in html
            and "settings-open" in html
        )
        base = info["uiUrl"].split("/?")[0]
        req = urllib.request.Request(
            base + "/js/settings.js", headers={"Cookie": cookie}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200 and b"SettingsScreen" in resp.read()
        # The embedded dev gateway (python -m dim_actors.devgateway from the wheel) is
        # up and connected.
        status = run(installed, "dimctl", "status", "--json", env=env)
        assert status.returncode == 0, status.stderr
        rows = {r["name"]: r for r in json.loads(status.stdout)}
        wait_until(
            lambda: (
                json.loads(
                    run(installed, "dimctl", "status", "--json", env=env).stdout
                )[4].get("connection")
                == "connected"
            ),
            20,
            what="the gateway connection",
        )
        assert rows["uibridge"]["state"] == "running"
        stop = run(installed, "dimctl", "stop", env=env)
        assert stop.returncode == 0, stop.stderr
        assert proc.wait(timeout=40) == 0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=40)


CHECK_IMPORTS = r"""
import ast, importlib.metadata as md, json, pathlib, re, sys
pkg = pathlib.Path(sys.argv[1])
imported = set()
for f in pkg.rglob("*.py"):
    for node in ast.walk(ast.parse(f.read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
third_party = sorted(m for m in imported if m not in sys.stdlib_module_names and m != "dim_actors")
dists = md.packages_distributions()
declared = {}
for req in md.requires("dim-desktop") or []:
    name = re.split(r"[\s<>=!~;\[]", req, 1)[0].lower().replace("_", "-")
    extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)", req)
    declared[name] = extra.group(1) if extra else None
def norm(d):
    return d.lower().replace("_", "-")
print(json.dumps({m: [[norm(d), declared.get(norm(d), "MISSING")] for d in dists.get(m, ["?"])]
                  for m in third_party}))
"""

# Imported only inside functions that first check they are there (the desktop extra's
# own deps).
OPTIONAL_AT_RUNTIME = {"desktop"}


def test_every_third_party_import_of_the_package_is_a_declared_dependency(
    installed: Path,
):
    """The install borrows this environment's packages, so a dependency missing from
    setup.cfg would still import here: check each third-party module the installed
    package imports against what the installed dim-desktop declares (install_requires,
    or an extra)."""
    pkg = Path(
        subprocess.run(
            [
                str(installed / "bin" / "python"),
                "-c",
                "import dim_actors, os; print(os.path.dirname(dim_actors.__file__))",
            ],
            check=True,
            capture_output=True,
            text=True,
            cwd=installed,
        ).stdout.strip()
    )
    r = subprocess.run(
        [str(installed / "bin" / "python"), "-c", CHECK_IMPORTS, str(pkg)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=installed,
    )
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)
    assert {
        "pykka",
        "websocket",
        "watchdog",
        "msgspec",
        "websockets",
        "aiohttp",
        "platformdirs",
    } <= set(found)
    undeclared = {
        m: d for m, d in found.items() if not any(extra != "MISSING" for _, extra in d)
    }
    assert not undeclared, f"imported but not declared in setup.cfg: {undeclared}"
    extras = {m: {extra for _, extra in d} for m, d in found.items()}
    assert all(e <= {None} | OPTIONAL_AT_RUNTIME for e in extras.values()), extras
