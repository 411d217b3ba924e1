"""The lock (requirements/*.txt, written by bin/lock from setup.cfg) is what setup.cfg
asks for, complete, hashed and consistent, and this test run's environment holds exactly
its versions."""

from __future__ import annotations

import configparser
import re
from importlib import metadata
from pathlib import Path

import pytest
from apphelpers import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REQ = ROOT / "requirements"
EXTRAS = ("desktop", "test", "bench")
# Not dependencies of the project: the virtualenv's own installer, and the project
# itself.
NOT_LOCKED = {"pip", "dim-desktop"}


def read_lock(path: Path) -> dict[str, tuple[Requirement, list[str]]]:
    """name -> (the pinned requirement with its marker, its hashes)."""
    pins: dict[str, tuple[Requirement, list[str]]] = {}
    current: str | None = None
    for line in path.read_text().splitlines():
        text = line.split("#", 1)[0].strip().rstrip("\\").strip()
        if not text:
            continue
        if text.startswith("--hash="):
            assert current is not None, f"{path.name}: a hash before any requirement"
            pins[current][1].append(text.removeprefix("--hash="))
            continue
        req = Requirement(text)
        current = canonicalize_name(req.name)
        pins[current] = (req, [])
    return pins


def pinned_version(req: Requirement) -> Version:
    (spec,) = req.specifier
    assert spec.operator == "==", f"{req} is not an exact pin"
    return Version(spec.version)


def setup_cfg_requirements() -> dict[str, list[Requirement]]:
    """'base' and each extra -> setup.cfg's requirements for it."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")

    def parse(block: str) -> list[Requirement]:
        lines = (line.split("#", 1)[0].strip() for line in block.splitlines())
        return [Requirement(line) for line in lines if line]

    out = {"base": parse(cfg["options"]["install_requires"])}
    for extra in EXTRAS:
        out[extra] = parse(cfg["options.extras_require"][extra])
    return out


def build_requirements() -> list[Requirement]:
    lines = (
        line.split("#", 1)[0].strip()
        for line in (REQ / "build.in").read_text().splitlines()
    )
    return [Requirement(line) for line in lines if line]


LOCKS = ["all", "base", "build", *EXTRAS]


@pytest.mark.parametrize("name", LOCKS)
def test_every_pin_is_exact_and_hashed(name: str):
    pins = read_lock(REQ / f"{name}.txt")
    assert pins, f"requirements/{name}.txt is empty"
    for key, (req, hashes) in pins.items():
        pinned_version(req)
        assert hashes and all(
            re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes
        ), f"requirements/{name}.txt: {key} has no sha256 hashes"


@pytest.mark.parametrize("install", ["base", *EXTRAS])
def test_each_install_locks_what_setup_cfg_asks_for(install: str):
    """A setup.cfg change without `bin/lock` fails here, naming the requirement."""
    wanted = setup_cfg_requirements()[install] + build_requirements()
    if install != "base":
        wanted += setup_cfg_requirements()["base"]
    pins = read_lock(REQ / f"{install}.txt")
    for req in wanted:
        key = canonicalize_name(req.name)
        assert key in pins, (
            f"setup.cfg asks for {req} ({install}) but requirements/{install}.txt "
            f"has no {key}: run bin/lock"
        )
        version = pinned_version(pins[key][0])
        assert req.specifier.contains(version, prereleases=True), (
            f"requirements/{install}.txt pins {key}=={version}, "
            f"outside setup.cfg's {req}: run bin/lock"
        )


@pytest.mark.parametrize("name", ["base", "build", *EXTRAS])
def test_the_partial_locks_agree_with_the_whole_resolution(name: str):
    whole = read_lock(REQ / "all.txt")
    for key, (req, hashes) in read_lock(REQ / f"{name}.txt").items():
        assert key in whole, (
            f"requirements/{name}.txt has {key}, requirements/all.txt does not: run bin/lock"
        )
        assert pinned_version(req) == pinned_version(whole[key][0]), (
            f"{key}: requirements/{name}.txt and all.txt disagree: run bin/lock"
        )
        assert set(hashes) == set(whole[key][1]), (
            f"{key}: hashes differ between {name}.txt and all.txt"
        )


def test_this_environment_holds_exactly_the_locked_versions():
    """What bin/test installed is what the lock says: nothing newer, older, or unlocked."""
    locked: dict[str, Version] = {}
    for name in ("base", "build", "test", "desktop"):
        for key, (req, _) in read_lock(REQ / f"{name}.txt").items():
            if req.marker is None or req.marker.evaluate():
                locked[key] = pinned_version(req)
    installed = {
        canonicalize_name(d.metadata["Name"]): Version(d.version)
        for d in metadata.distributions()
    }
    wrong = {
        k: f"{installed[k]} installed, {v} locked"
        for k, v in locked.items()
        if k in installed and installed[k] != v
    }
    missing = sorted(k for k in locked if k not in installed)
    unlocked = sorted(set(installed) - set(locked) - NOT_LOCKED)
    assert not missing, (
        f"locked but not installed: {missing} (bin/test installs from requirements/)"
    )
    assert not wrong, f"installed versions differ from the lock: {wrong}"
    assert not unlocked, f"installed but in no lock: {unlocked}"
