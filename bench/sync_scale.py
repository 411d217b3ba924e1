"""Sync scale benchmark: a folder of many small files synced into a session (not a timed
test).

    bin/bench --only sync_scale [--quick]

A folder of N small files in nested folders (quick: 20,000; full: 100,000) is synced
into a fresh session on a dev gateway with `start_sync {confirm: true}`. Printed:

* upload_s: start_sync -> every file accepted upstream (sync_status: filesTracked = N, nothing
  pending; then checked against the gateway's store), or `null` and how many arrived if it never did
  within the time limit.
* first_status_s: start_sync -> the first sync_status answered.
* status_max_ms: the longest any sync_status took to answer while the scan and the upload ran
  (asked every 0.25 s from the start).
* restarts: actor restarts (actor_status) at the end, hang restarts among them.
* peak_rss_mb: VmHWM of dim-desktop's processes (supervisor, connection).

`run(quick) -> dict` returns the figures under a "sync_scale" key, for bin/bench.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import Workdir, descendants, peak_rss_mb  # noqa: E402
from bench.sync_bench import App, Gateway, log, new_session, stop_all  # noqa: E402


def make_tree(root: Path, files: int) -> None:
    """`files` small files, 100 to a folder, two levels deep (like a source tree's
    node_modules)."""
    for i in range(files):
        d = root / f"pkg{i // 2000:03}" / f"mod{(i // 100) % 20:02}"
        if i % 100 == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"file{i:06}.txt").write_bytes(f"file {i}\n".encode() * (1 + i % 7))


def peak_rss_by_role(pid: int) -> dict[str, float]:
    """VmHWM (peak resident set) of the app and the processes below it, by what each one
    is."""
    out: dict[str, float] = {}
    for p in [pid, *descendants(pid)]:
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes()
        except OSError:
            continue
        if b"resource_tracker" in cmd:
            continue  # multiprocessing's own helper
        name = (
            "supervisor"
            if p == pid
            else "connection"
            if b"multiprocessing" in cmd
            else "gateway"
            if b"devgateway" in cmd
            else f"pid {p}"
        )
        out[name] = peak_rss_mb(p)
    return out


class StatusProbe:
    """Asks sync_status every `every` seconds on its own thread and times each answer."""

    def __init__(self, app: App, sid: str, t0: float, every: float = 0.25):
        self.app, self.sid, self.t0, self.every = app, sid, t0, every
        self.first: float | None = None
        self.times: list[float] = []
        self.last: dict[str, Any] = {}
        self.scan_seen: list[Any] = []
        self.errors = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            t = time.perf_counter()
            try:
                st = self.app.invoke("sync_status", sessionId=self.sid)
            except Exception:
                self.errors += 1
                self.stop.wait(self.every)
                continue
            now = time.perf_counter()
            self.times.append(now - t)
            if self.first is None:
                self.first = now - self.t0
            self.last = st
            if st.get("scan"):
                self.scan_seen.append(st["scan"])
            self.stop.wait(max(0.0, self.every - (now - t)))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(90)


def uploaded(db: Path, sid: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(
            "SELECT COUNT(*) FROM file_heads WHERE session_id = ? AND deleted = 0",
            (sid,),
        ).fetchone()[0]
    finally:
        conn.close()


def run(
    quick: bool, files: int | None = None, limit_s: float | None = None
) -> dict[str, Any]:
    files = files or (20_000 if quick else 100_000)
    limit_s = limit_s or (300.0 if quick else 900.0)
    gw = app = probe = None
    with Workdir("sync-scale") as work:
        try:
            data = work / "gateway-data"
            gw = Gateway(data).start()
            sid = new_session(gw.url, "sync-scale")
            folder = work / "synced"
            log(f"writing {files} small files into {folder}")
            make_tree(folder, files)
            home = work / "dim-home"
            home.mkdir()
            app = App(home, gw.url)
            t0 = time.perf_counter()
            probe = StatusProbe(app, sid, t0)
            app.invoke("start_sync", sessionId=sid, localDir=str(folder), confirm=True)
            done_s = None
            while time.perf_counter() - t0 < limit_s:
                st = probe.last
                if (
                    st.get("filesTracked", 0) >= files
                    and st.get("pendingWrites", 1) == 0
                    and not st.get("scan")
                    and uploaded(data / "gateway.db", sid) >= files
                ):
                    done_s = time.perf_counter() - t0
                    break
                time.sleep(0.25)
            probe.close()
            arrived = uploaded(data / "gateway.db", sid)
            actors = app.invoke("actor_status")
            rows = actors if isinstance(actors, list) else actors.get("actors", [])
            restarts = {r["name"]: r["restarts"] for r in rows if r.get("restarts")}
            hung = [r["name"] for r in rows if "hung" in (r.get("lastError") or "")]
            rss = peak_rss_by_role(app.proc.pid)
            times = sorted(probe.times)
            result = {
                "files": files,
                "upload_s": round(done_s, 1) if done_s is not None else None,
                "uploaded": arrived,
                "limit_s": limit_s,
                "first_status_s": round(probe.first, 2)
                if probe.first is not None
                else None,
                "status_max_ms": round(times[-1] * 1000) if times else None,
                "status_p50_ms": round(times[len(times) // 2] * 1000)
                if times
                else None,
                "status_answers": len(times),
                "status_errors": probe.errors,
                "scan_progress_seen": len(probe.scan_seen),
                "restarts": sum(restarts.values()),
                "restarted": ",".join(sorted(restarts)) or None,
                "hung": ",".join(hung) or None,
                "peak_rss_mb": rss,
            }
            log(f"sync_scale: {result}")
            return {"sync_scale": result}
        finally:
            if probe is not None:
                probe.close()
            stop_all(app, gw)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="20,000 files instead of 100,000"
    )
    ap.add_argument("--files", type=int, help="this many files instead")
    ap.add_argument("--limit", type=float, help="give up after this many seconds")
    args = ap.parse_args(argv)
    print(json.dumps(run(args.quick, args.files, args.limit), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
