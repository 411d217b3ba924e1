"""`bin/bench [--quick] [--json FILE] [--only NAME,...]`: every benchmark, one table,
optional JSON.

Benchmarks (one module each): throughput, latency, stall, memory, hotpath, sync
(bench/sync_bench.py, written separately; reported as not available when it is absent),
sync_scale (bench/sync_scale.py: a folder of 20,000 / 100,000 small files),
reconnect_sessions, web_baseline (bench/webbaseline.py: dim-desktop's page beside a page
holding its own socket) and startup (bench/startup.py). A
benchmark that fails is reported as such and the others still run. Nothing here asserts
a timing: the goals are printed beside the figures.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench.harness import log, machine

ORDER = [
    "throughput",
    "latency",
    "stall",
    "memory",
    "hotpath",
    "sync",
    "sync_scale",
    "reconnect_sessions",
    "web_baseline",
    "startup",
    "history",
]

# a benchmark whose module is not named after it
MODULES = {"sync": "sync_bench", "web_baseline": "webbaseline"}


def _run_one(name: str, quick: bool) -> Any:
    if name == "sync" and importlib.util.find_spec("bench.sync_bench") is None:
        return {"available": False, "reason": "bench/sync_bench.py is not there"}
    return importlib.import_module(f"bench.{MODULES.get(name, name)}").run(quick)


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def summary(raw: dict[str, Any]) -> dict[str, Any]:
    """The documented keys (docs/performance.md), from the benchmarks' own results."""
    out: dict[str, Any] = {}
    tp = raw.get("throughput") or {}
    if "error" not in tp and tp:
        out["throughput"] = {
            "raw_recv_eps": _get(tp, "raw", "eps"),
            "raw_recv_utf8_eps": _get(tp, "rawUtf8", "eps"),
            "raw_recv_buffered_eps": _get(tp, "rawBuffered", "eps"),
            "connection_eps": _get(tp, "dim", "connection", "eps"),
            "stores_eps": _get(tp, "dim", "stores", "eps"),
            "page_eps": _get(tp, "dim", "page", "eps"),
            "single_process_eps": _get(tp, "single", "eps"),
            "stores_no_page_eps": _get(tp, "dimNoPage", "stores", "eps"),
            "connection_no_page_eps": _get(tp, "dimNoPage", "connection", "eps"),
            "page_backlog_peak": _get(tp, "dim", "page", "bridgeQueuePeak"),
            "page_lost": _get(tp, "dim", "page", "lost"),
        }
    lat = raw.get("latency") or {}
    if "error" not in lat and lat:
        # send -> stores, its two legs (to the connection process, then across), the
        # same stream without a page, and the page
        out["latency_ms"] = {
            key: {k: _get(lat, run_name, part, k) for k in ("p50", "p99", "max")}
            for key, run_name, part in (
                ("stores", "dim", "stores"),
                ("stores_received", "dim", "storesReceived"),
                ("stores_crossing", "dim", "storesCrossing"),
                ("stores_no_page", "dimNoPage", "stores"),
                ("stores_no_page_received", "dimNoPage", "storesReceived"),
                ("stores_no_page_crossing", "dimNoPage", "storesCrossing"),
                ("page", "dim", "page"),
                ("single_process", "single", "stores"),
            )
        }
    web = raw.get("web_baseline") or {}
    if "error" not in web and web.get("summary"):
        out.setdefault("latency_ms", {}).update(web["summary"])
    st = raw.get("startup") or {}
    if "error" not in st and st.get("summary"):
        out["startup"] = st["summary"]
    hist = raw.get("history") or {}
    if hist and "error" not in hist:
        out["history"] = hist
    for key in ("stall", "memory", "hotpath"):
        if raw.get(key) is not None:
            out[key] = raw[key]
    sync = raw.get("sync")
    out["sync"] = sync.get("sync", sync) if isinstance(sync, dict) else sync
    scale = raw.get("sync_scale")
    if scale is not None:
        out["sync_scale"] = (
            scale.get("sync_scale", scale) if isinstance(scale, dict) else scale
        )
    rec = raw.get("reconnect_sessions")
    if rec is not None:
        out["reconnect_sessions"] = (
            rec.get("reconnect_sessions", rec) if isinstance(rec, dict) else rec
        )
    return out


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isnan(v):
        return "-"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if abs(v) >= 1000:
            return f"{v:,.0f}{unit}"
        return f"{v:.3g}{unit}" if isinstance(v, float) else f"{v}{unit}"
    return f"{v}{unit}"


def _ratio(a: Any, b: Any) -> str:
    try:
        return f"{a / b:.2f}"
    except (TypeError, ZeroDivisionError):
        return "-"


Row = tuple[str, str, str, str, str]


def _throughput_rows(s: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    t = s.get("throughput") or {}
    if t:
        rows += [
            ("THROUGHPUT, events/s (200,000 deltas)", "", "", "", ""),
            (
                "  plain websocket-client loop (ceiling)",
                "",
                _fmt(t.get("raw_recv_eps")),
                "",
                "",
            ),
            (
                "    same, with UTF-8 validation",
                "",
                _fmt(t.get("raw_recv_utf8_eps")),
                _ratio(t.get("raw_recv_eps"), t.get("raw_recv_utf8_eps")) + "x cost",
                "",
            ),
            (
                "    same, read-ahead buffer (fastws)",
                "",
                _fmt(t.get("raw_recv_buffered_eps")),
                "",
                "",
            ),
            (
                "  at the connection process / socket",
                _fmt(t.get("connection_eps")),
                "",
                "",
                "",
            ),
            (
                "  at the stores",
                _fmt(t.get("stores_eps")),
                _fmt(t.get("single_process_eps")),
                _ratio(t.get("stores_eps"), t.get("single_process_eps")),
                ">= 0.5 x plain",
            ),
            (
                "  stores / plain loop",
                _ratio(t.get("stores_eps"), t.get("raw_recv_eps")),
                _ratio(t.get("single_process_eps"), t.get("raw_recv_eps")),
                "",
                ">= 0.50",
            ),
            (
                "  stores / plain loop with read-ahead",
                _ratio(t.get("stores_eps"), t.get("raw_recv_buffered_eps")),
                _ratio(t.get("single_process_eps"), t.get("raw_recv_buffered_eps")),
                "",
                "",
            ),
            (
                "  at the page (headless Chromium)",
                _fmt(t.get("page_eps")),
                "",
                "",
                "every event",
            ),
            (
                "  page: lost / backlog peak (frames)",
                f"{_fmt(t.get('page_lost'))} / {_fmt(t.get('page_backlog_peak'))}",
                "",
                "",
                "0 / bounded",
            ),
            (
                "  without a page: connection / stores",
                f"{_fmt(t.get('connection_no_page_eps'))} / "
                f"{_fmt(t.get('stores_no_page_eps'))}",
                "",
                "",
                "",
            ),
        ]
    return rows


def _latency_rows(s: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    lat = s.get("latency_ms") or {}
    if lat:

        def pct(d: dict | None) -> str:
            d = d or {}
            return "/".join(_fmt(d.get(k)) for k in ("p50", "p99", "max"))

        def to_stores(key: str, label: str) -> list[Row]:
            """send -> stores beside the single-process client, then its two legs."""
            received, crossing = lat.get(f"{key}_received"), lat.get(f"{key}_crossing")
            return [
                (
                    label,
                    pct(lat.get(key)),
                    pct(lat.get("single_process")),
                    "",
                    "p99 <= 2",
                ),
                (
                    "    send -> connection process / -> across to stores",
                    f"{pct(received)} | {pct(crossing)}",
                    "",
                    "",
                    "",
                ),
            ]

        rows += [
            ("LATENCY at 2,000 events/s, ms p50/p99/max", "", "", "", ""),
            *to_stores("stores", "  gateway send -> stores"),
            *to_stores("stores_no_page", "  gateway send -> stores, no page"),
            ("  gateway send -> page", pct(lat.get("page")), "", "", "p99 <= 16.7"),
        ]
    base = lat.get("web_baseline") or {}
    if base:
        page = lat.get("page_beside_baseline") or {}
        ratio = lat.get("page_p99_vs_baseline_idle") or {}
        rows += [
            (
                "WEB BASELINE: page p50/p99/max ms (dim-desktop | own-socket page)",
                "",
                "",
                "",
                "",
            ),
            (
                "  at 2,000 ev/s, idle",
                pct(page.get("idle")),
                pct(base.get("idle")),
                _fmt(ratio.get("idle")) + "x",
                "p99 <= 1.2x baseline idle",
            ),
            (
                "  at 2,000 ev/s, main thread 50% busy",
                pct(page.get("busy")),
                pct(base.get("busy")),
                _fmt(ratio.get("busy")) + "x",
                "p99 <= 1.2x baseline idle",
            ),
            (
                "  at 20,000 ev/s",
                pct(lat.get("page_20k")),
                pct(lat.get("web_baseline_20k")),
                "",
                "",
            ),
        ]
    return rows


def _startup_rows(s: dict[str, Any]) -> list[Row]:
    st = s.get("startup")
    if not isinstance(st, dict):
        return []

    def pm(d: Any) -> str:
        d = d if isinstance(d, dict) else {}
        if d.get("available") is False:
            return f"not here ({str(d.get('reason'))[:60]})"
        return f"{_fmt(d.get('p50'))} / {_fmt(d.get('max'))}"

    return [
        ("START-UP, s from launch, p50 / max of 5", "", "", "", ""),
        (
            "  -> connected, --gateway URL, no window",
            pm(st.get("connected")),
            "",
            "",
            "<= 1",
        ),
        (
            "  -> connected, embedded dev gateway",
            pm(st.get("connected_embedded")),
            "",
            "",
            "",
        ),
        ("  -> native window mapped (Xvfb)", pm(st.get("window_mapped")), "", "", ""),
        ("  -> native window painted", pm(st.get("window_painted")), "", "", "<= 2"),
    ] + (
        [
            (
                "  -> connected, PYTHONDONTWRITEBYTECODE: as is | compiled",
                pm(st["bytecode"].get("as_is")),
                pm(st["bytecode"].get("compiled")),
                "",
                "",
            )
        ]
        if isinstance(st.get("bytecode"), dict)
        else []
    )


def _history_rows(s: dict[str, Any]) -> list[Row]:
    h = s.get("history")
    if not isinstance(h, dict):
        return []

    def took(key: str) -> str:
        verdict = h.get(key)
        secs = _fmt(h.get(f"{key}_s"))
        return secs if verdict == "ok" else f"{verdict} after {secs}"

    title = f"BIG HISTORY: {_fmt(h.get('turns'))} turns, {_fmt(h.get('events'))} events"
    return [
        (title, "", "", "", ""),
        ("  open the session -> interactive, s", took("open"), "", "", ""),
        ("  reload -> interactive, s", took("reload"), "", "", "<= 1"),
        ("  turns laid out on the page", _fmt(h.get("turns_on_page")), "", "", ""),
        (
            "  get_state answer, bytes",
            _fmt(h.get("get_state_bytes")),
            "",
            "",
            "bounded",
        ),
        (
            "  supervisor RSS / peak, MB",
            f"{_fmt(h.get('supervisor_rss_mb'))} / {_fmt(h.get('supervisor_peak_rss_mb'))}",
            "",
            "",
            "bounded",
        ),
        ("  page JS heap, MB", _fmt(h.get("page_heap_mb")), "", "", ""),
    ]


def _stall_rows(raw: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    st = raw.get("stall") or {}
    if st and "error" not in st:
        d, g = st.get("dim") or {}, st.get("single") or {}

        def pings(x: dict, phase: str) -> str:
            p = _get(x, "pingMs", phase) or {}
            txt = f"{_fmt(p.get('p50'))}/{_fmt(p.get('p99'))}"
            if p.get("unanswered"):
                txt += f" (+{p['unanswered']} unanswered, {_fmt(p.get('unansweredWaitedMs'))} ms)"
            return txt

        def loss(x: dict) -> str:
            c = x.get("stores") or {}
            return f"{_fmt(c.get('lost'))}/{_fmt(c.get('duplicated'))}/{_fmt(c.get('outOfOrder'))}"

        rows += [
            (f"STALL ({st.get('note')}; UI blocked 10 s)", "", "", "", ""),
            (
                "  disconnects seen by the gateway",
                _fmt(d.get("disconnects")),
                _fmt(g.get("disconnects")),
                "",
                "0",
            ),
            (
                "  client reconnects",
                _fmt(d.get("reconnects")),
                _fmt(g.get("reconnects")),
                "",
                "0",
            ),
            (
                "  ping RTT before, ms p50/p99",
                pings(d, "before"),
                pings(g, "before"),
                "",
                "",
            ),
            (
                "  ping RTT, UI blocked",
                pings(d, "uiBlocked"),
                pings(g, "uiBlocked"),
                "",
                "",
            ),
            (
                "  ping RTT, process stopped",
                pings(d, "stopped"),
                pings(g, "stopped"),
                "",
                "",
            ),
            ("  lost/duplicated/out of order (stores)", loss(d), loss(g), "", "0/0/0"),
            (
                "  lost/duplicated/out of order (page)",
                "/".join(
                    _fmt((d.get("page") or {}).get(k))
                    for k in ("lost", "duplicated", "outOfOrder")
                ),
                "",
                "",
                "0/0/0",
            ),
            (
                "  peak RSS MB (connection process)",
                _fmt(_get(d, "peakRssMb", "connection")),
                _fmt(_get(g, "peakRssMb", "process")),
                "",
                "",
            ),
        ]
    return rows


def _memory_rows(raw: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    mem = raw.get("memory") or {}
    if mem and "error" not in mem:
        rows.append(("MEMORY, 1,000,000-delta burst, peak RSS MB", "", "", "", ""))
        for mode, r in mem.items():
            p = r.get("peakRssMb") or {}
            rows.append(
                (
                    f"  {mode}: gateway/connection/supervisor",
                    "/".join(
                        _fmt(p.get(k)) for k in ("gateway", "connection", "supervisor")
                    )
                    + (" (spilled)" if r.get("spilled") else ""),
                    "",
                    "",
                    "<= 200 each",
                )
            )
            c = r.get("check") or {}
            rows.append(
                (
                    f"  {mode}: lost/duplicated/out of order",
                    f"{_fmt(c.get('lost'))}/{_fmt(c.get('duplicated'))}/{_fmt(c.get('outOfOrder'))}",
                    "",
                    "",
                    "0/0/0",
                )
            )
    return rows


def _sync_rows(raw: dict[str, Any], s: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    sync = s.get("sync")
    if "sync" not in raw:
        pass
    elif not isinstance(sync, dict) or sync.get("available") is False:
        rows.append(("SYNC: not available", "", "", "", ""))
    elif "error" not in sync:
        rows.append(("SYNC (bench/sync_bench.py)", "", "", "", ""))
    if (
        isinstance(sync, dict)
        and sync.get("available") is not False
        and "error" not in sync
    ):
        for k, v in sync.items():
            if not isinstance(v, (dict, list)):
                rows.append((f"  {k}", _fmt(v), "", "", ""))
            elif isinstance(v, dict) and all(
                not isinstance(x, (dict, list)) for x in v.values()
            ):
                rows.append(
                    (
                        f"  {k}",
                        " ".join(f"{a}={_fmt(b)}" for a, b in v.items()),
                        "",
                        "",
                        "",
                    )
                )
    return rows


def _sync_scale_rows(s: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    scale = s.get("sync_scale")
    if isinstance(scale, dict) and "error" not in scale:
        rows += [
            (
                f"SYNC SCALE: a folder of {_fmt(scale.get('files'))} small files "
                "(bench/sync_scale.py)",
                "",
                "",
                "",
                "",
            ),
            (
                "  start_sync -> every file upstream, s",
                _fmt(scale.get("upload_s"))
                if scale.get("upload_s") is not None
                else f"not in {_fmt(scale.get('limit_s'))} s "
                f"({_fmt(scale.get('uploaded'))} arrived)",
                "",
                "",
                "",
            ),
            (
                "  first sync_status answered after, s",
                _fmt(scale.get("first_status_s")),
                "",
                "",
                "",
            ),
            (
                "  slowest sync_status meanwhile, ms",
                _fmt(scale.get("status_max_ms")),
                "",
                "",
                "< 1,000",
            ),
            (
                "  actor restarts (hung)",
                f"{_fmt(scale.get('restarts'))} ({scale.get('hung') or 'none'})",
                "",
                "",
                "0",
            ),
            (
                "  peak RSS MB",
                " ".join(
                    f"{k}={_fmt(v)}"
                    for k, v in (scale.get("peak_rss_mb") or {}).items()
                ),
                "",
                "",
                "",
            ),
        ]
    return rows


def _reconnect_rows(s: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    rec = s.get("reconnect_sessions")
    if isinstance(rec, dict) and "error" not in rec:
        rows.append(
            (
                f"RECONNECT with {_fmt(rec.get('sessions'))} joined sessions "
                "(bench/reconnect_sessions.py)",
                "",
                "",
                "",
                "",
            )
        )
        for cmd in ("run_turn", "list_sessions"):
            r = rec.get(cmd) or {}
            rows.append(
                (
                    f"  {cmd} right after: invoke -> answer, s",
                    _fmt(r.get("command_s")),
                    "",
                    "",
                    "< 1",
                )
            )
            rows.append(
                (
                    "  · all rejoined / caught up, s; messages",
                    f"{_fmt(r.get('rejoined_s'))} / "
                    f"{_fmt(r.get('caught_up_s'))}; {_fmt(r.get('messages'))}",
                    "",
                    "",
                    "",
                )
            )
    return rows


def _failed_rows(raw: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for name in ORDER:
        if isinstance(raw.get(name), dict) and "error" in raw[name]:
            rows.append(
                (f"{name.upper()}: FAILED: {raw[name]['error'][:160]}", "", "", "", "")
            )
    return rows


def table(raw: dict[str, Any], s: dict[str, Any]) -> str:
    rows: list[Row] = [("", "dim-desktop", "single-process", "ratio", "goal")]
    rows += _throughput_rows(s)
    rows += _latency_rows(s)
    rows += _stall_rows(raw)
    rows += _memory_rows(raw)
    rows += _sync_rows(raw, s)
    rows += _sync_scale_rows(s)
    rows += _reconnect_rows(s)
    rows += _startup_rows(s)
    rows += _history_rows(s)
    rows += _failed_rows(raw)
    # Section titles (a row with only its first cell) span the table and do not set its
    # widths.
    body = [r for r in rows if any(r[1:])]
    widths = [max(len(r[i]) for r in body) for i in range(5)]
    return "\n".join(
        (
            "  ".join(c.ljust(w) for c, w in zip(r, widths)) if any(r[1:]) else r[0]
        ).rstrip()
        for r in rows
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bin/bench", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="the short run (under 5 minutes on 2 cores)",
    )
    ap.add_argument("--json", metavar="FILE", help="write the figures here")
    ap.add_argument(
        "--only", metavar="NAMES", help=f"comma-separated subset of: {', '.join(ORDER)}"
    )
    args = ap.parse_args(argv)
    names = args.only.split(",") if args.only else ORDER
    started = time.time()
    raw: dict[str, Any] = {}
    for name in names:
        t0 = time.monotonic()
        try:
            raw[name] = _run_one(name, args.quick)
        except Exception as e:  # one failed benchmark must not hide the others
            traceback.print_exc()
            raw[name] = {"error": f"{type(e).__name__}: {e}"}
        log(f"{name}: {time.monotonic() - t0:.0f}s")
    s = summary(raw)
    report = {
        "machine": {**machine(), "loadavg1": round(os.getloadavg()[0], 2)},
        "quick": args.quick,
        "startedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started),
        **s,
        "raw": raw,
    }
    m = report["machine"]
    print(
        f"\ndim-desktop benchmarks{' (quick)' if args.quick else ''}: "
        f"{m['nproc']} cores, {m['cpu']}, "
        f"{m['memGB']} GB, Python {m['python']}; load average at the end {m['loadavg1']}; "
        f"{report['seconds']} s\n"
    )
    print(table(raw, s))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
