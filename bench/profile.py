"""Profile the hot path while dim-desktop receives a `/stream N` burst (not part of `bin/bench`):

    .venv/bin/python -m bench.profile [--n 200000] [--no-page] [--out bench/results/profile]

py-spy could not attach to this machine's Python (a pyenv build: "Failed to find python version"),
so every process (gateway, supervisor, and the spawned connection process) runs with the small
sampler of bench/sampler/sitecustomize.py. It writes collapsed stacks per process; this prints each
process's top frames by own time and by inclusive time, per thread.
"""

from __future__ import annotations

import argparse
import collections
import os
import time
from pathlib import Path

from bench.harness import ROOT, DimApp, Gateway, Page, Workdir, wait_until


def summarize(path: Path, top: int = 25) -> str:
    """Per thread: share of wall-clock samples, top frames by own time and by inclusive time."""
    threads: dict[str, tuple[collections.Counter, collections.Counter, list[int]]] = {}
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        count = int(n)
        thread, *frames = stack.split(";")
        own, incl, total = threads.setdefault(
            thread, (collections.Counter(), collections.Counter(), [0])
        )
        total[0] += count
        if frames:
            own[frames[-1]] += count
            for f in set(frames):
                incl[f] += count
    out = [f"== {path.name}"]
    for thread, (own, incl, total) in sorted(
        threads.items(), key=lambda kv: -kv[1][2][0]
    ):
        out.append(f"-- thread {thread}: {total[0]} samples; own time:")
        out += [f"   {100 * c / total[0]:5.1f}%  {f}" for f, c in own.most_common(top)]
        out.append("   inclusive:")
        out += [f"   {100 * c / total[0]:5.1f}%  {f}" for f, c in incl.most_common(top)]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--no-page", action="store_true")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "profile"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for f in out.glob("*.txt"):
        f.unlink()
    os.environ["DIM_BENCH_SAMPLE"] = str(out)
    os.environ["PYTHONPATH"] = (
        str(ROOT / "bench" / "sampler") + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    with Workdir("profile") as wd:
        gw = Gateway(wd)
        app = DimApp(wd / "home", gw.url)
        page = None
        try:
            app.wait_connected()
            # The session first, then the page (Page.select says why).
            sid = app.invoke("create_session", agentType="coding-agent")["session"][
                "id"
            ]
            app.invoke("join_session", sessionId=sid)
            page = None if args.no_page else Page(app.ui_url)
            if page:
                page.select(sid)
            time.sleep(2.5)
            for f in out.glob("*.txt"):
                f.unlink()  # only the burst counts
            app.run_turn(sid, f"/stream {args.n}")
            wait_until(
                lambda: app.status()["router"]["deltas"]["count"] >= args.n,
                600,
                "the stores",
                0.5,
            )
            time.sleep(2.5)
        finally:
            if page:
                page.close()
            app.stop()
            gw.stop()
    for f in sorted(out.glob("*.txt")):
        print(summarize(f, args.top))


if __name__ == "__main__":
    main()
