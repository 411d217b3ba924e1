"""The Debian package (bin/package): how long it takes to build, its size, its installed
size, and the start of the installed dim-desktop to a painted native window.

    .venv/bin/python -m bench.package [--deb PATH] [--compression zstd] [--runs 3]

The package is installed by dpkg into a throwaway root (an empty dpkg database of its
own); the installed dim-desktop runs in a mount namespace where that root's
/opt/dim-desktop is /opt/dim-desktop (root only: `unshare --mount`), with a fresh HOME
and DIM_HOME, on an Xvfb of its own. The first start after the install is the cold one
(nothing of the app's own has run yet; the files are in the page cache, as right after
`apt install`). Mapped and painted are judged as bench/startup.py judges them.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import ROOT, log, wait_until
from bench.startup import WindowProbe, Xvfb, _painted, _summary

PREFIX = "/opt/dim-desktop"


def build(out: Path, compression: str) -> tuple[Path, float]:
    t0 = time.monotonic()
    r = subprocess.run(
        [ROOT / "bin" / "package", "--out", out, "--compression", compression],
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    return Path(r.stdout.strip().splitlines()[-1]), time.monotonic() - t0


def install(deb: Path, root: Path) -> None:
    """dpkg -i into `root`, with an empty dpkg database made there."""
    admin = root / "var" / "lib" / "dpkg"
    for d in ("info", "updates", "triggers"):
        (admin / d).mkdir(parents=True, exist_ok=True)
    for f in ("status", "available"):
        (admin / f).touch()
    subprocess.run(
        ["dpkg", f"--root={root}", "--force-depends", "-i", deb],
        check=True,
        capture_output=True,
        timeout=600,
    )


def in_root(root: Path) -> list[str]:
    """A command prefix: run in a mount namespace where `root`'s /opt/dim-desktop is
    /opt/dim-desktop (over an empty /opt, so nothing else there is seen)."""
    script = (
        f"mount -t tmpfs tmpfs /opt && mkdir {PREFIX} && "
        f'mount --bind {shlex.quote(str(root) + PREFIX)} {PREFIX} && exec "$@"'
    )
    return ["unshare", "--mount", "sh", "-c", script, "sh"]


def window_start(root: Path, work: Path, run: int) -> dict[str, Any]:
    """One start of the installed dim-desktop (its default: the native window)."""
    home = work / f"home{run}"
    (home / "dim").mkdir(parents=True)
    env = {
        **{k: v for k, v in os.environ.items() if k != "DIM_TOKEN"},
        "HOME": str(home),
        "DIM_HOME": str(home / "dim"),
        "PYTHONPATH": "",
        "BROWSER": "true %s",  # should the window fall back to a browser
    }
    x = Xvfb()
    probe = WindowProbe(x.display)
    env["DISPLAY"] = x.display
    out = open(home / "out.log", "wb")  # noqa: SIM115
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [*in_root(root), root / "usr" / "bin" / "dim-desktop"],
        env=env,
        cwd=home,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        w = wait_until(probe.window, 120, "the native window mapped", 0.02)
        mapped = time.monotonic() - t0
        wait_until(functools.partial(_painted, probe, w), 120, "painted", 0.05)
        painted = time.monotonic() - t0
        return {
            "mapped_s": mapped,
            "painted_s": painted,
            "wm_class": list(w.get_wm_class() or []),
        }
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()
        probe.close()
        x.stop()


def installed_mb(root: Path) -> float:
    """What the package put under `root` (its files, its links)."""
    files = [*(root / "opt").rglob("*"), *(root / "usr").rglob("*")]
    return sum(p.lstat().st_size for p in files) / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--deb", type=Path, help="measure this package instead of building one"
    )
    p.add_argument("--compression", default="zstd", help="for the build (bin/package)")
    p.add_argument(
        "--runs", type=int, default=3, help="window starts (the first is cold)"
    )
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="dim-bench-package-") as tmp:
        work = Path(tmp)
        figures: dict[str, Any] = {}
        if args.deb:
            deb = args.deb
        else:
            log(f"package: building ({args.compression})")
            deb, seconds = build(work / "dist", args.compression)
            figures["build_s"] = round(seconds, 1)
        figures["deb_mb"] = round(deb.stat().st_size / 2**20, 1)
        root = work / "root"
        t0 = time.monotonic()
        install(deb, root)
        figures["install_s"] = round(time.monotonic() - t0, 1)
        figures["installed_mb"] = round(installed_mb(root), 1)
        runs = [window_start(root, work, i) for i in range(args.runs)]
        for i, r in enumerate(runs):
            log(
                f"  run {i + 1}: mapped {r['mapped_s']:.2f}s, painted {r['painted_s']:.2f}s"
            )
        figures["cold_painted_s"] = round(runs[0]["painted_s"], 2)
        figures["cold_mapped_s"] = round(runs[0]["mapped_s"], 2)
        figures["painted_s"] = _summary([r["painted_s"] for r in runs])
        figures["wm_class"] = runs[0]["wm_class"]
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
