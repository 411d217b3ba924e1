"""A web-client baseline: a page in the same headless Chromium that holds its own
WebSocket to the dev gateway and applies the stream itself, as a browser client of the
gateway does, beside dim-desktop's page (whose events come through the app's bridge).

Both get `/stream N 2000 stamp` (every delta carries the gateway's send time, `sentNs`)
and are measured at the same point: when the page's JavaScript has parsed the event
(performance.timeOrigin + now(), the same wall clock as the gateway's). The baseline
does the work of a plain web client: per event, parse, check the order by `seq`, append
the delta's text to its turn's state; once a frame, show the changed turns' text. Each
runs idle, and with the page's main thread kept half busy (harness.BUSY_LOOP, the same
on both). Then both at 20,000 events/s.

Runs are one after another, each against a fresh gateway: the two pages never share
the 2 cores at once.
"""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any

from bench import latency
from bench.harness import (
    BUSY_LOOP,
    PAGE_TIMEOUT_MS,
    Chromium,
    CpuMeter,
    Gateway,
    Workdir,
    browser_groups,
    log,
    percentiles,
    wait_turn_ends,
)

# The page: one socket, the handshake (welcome, connected, authenticated: pushed in dev
# mode), create_session, join_session, then every event applied as it is parsed.
BASELINE_HTML = r"""<!doctype html>
<html><head><meta charset="utf-8"><title>baseline web client</title></head>
<body><main id="chat"></main>
<script>
const B = window.__bench = {events: 0, deltas: 0, lat: [], turnEnds: 0, dup: 0, ooo: 0,
                            gaps: 0, lastSeq: 0, state: "idle", sessionId: null,
                            texts: {}, errors: []};
const now = () => performance.timeOrigin + performance.now();
const chat = document.getElementById("chat");
const turns = new Map();  // turnId -> {node, text}: the text, and the DOM node showing it
const dirty = new Set();  // turns whose text changed since the last frame
let frame = 0;
let ws = null;
let waiting = null;  // [type, resolve] of the answer a call waits for

function turn(turnId) {
  let t = turns.get(turnId);
  if (!t) {
    const el = document.createElement("article");
    el.className = "turn";
    el.dataset.turnId = turnId;
    const p = document.createElement("p");
    t = {node: document.createTextNode(""), text: ""};
    p.appendChild(t.node);
    el.appendChild(p);
    chat.appendChild(el);
    turns.set(turnId, t);
  }
  return t;
}

// As a web client's view does: the state changes per event, the DOM once a frame.
function render() {
  frame = 0;
  for (const t of dirty) t.node.data = t.text;
  dirty.clear();
}

function onMessage(e) {
  const ev = JSON.parse(e.data);
  const t = now();
  B.events++;
  if (typeof ev.seq === "number" && ev.sessionId === B.sessionId) {
    if (ev.seq === B.lastSeq) B.dup++;
    else if (ev.seq < B.lastSeq) B.ooo++;
    else {
      if (B.lastSeq && ev.seq !== B.lastSeq + 1) B.gaps += ev.seq - B.lastSeq - 1;
      B.lastSeq = ev.seq;
    }
  }
  switch (ev.type) {
    case "text_delta":
      B.deltas++;
      if (typeof ev.sentNs === "number") B.lat.push(t - ev.sentNs / 1e6);
      {
        const t = turn(ev.turnId);
        t.text += ev.text;
        dirty.add(t);
        if (!frame) frame = requestAnimationFrame(render);
      }
      break;
    case "turn_complete":
    case "turn_error":
      B.turnEnds++;
      break;
    case "error":
      B.errors.push(ev.message || ev.code);
      break;
  }
  if (waiting && ev.type === waiting[0]) {
    const resolve = waiting[1];
    waiting = null;
    resolve(ev);
  }
}

function answer(type, frame) {
  return new Promise((resolve, reject) => {
    waiting = [type, resolve];
    ws.onclose = (e) => {
      B.state = "closed";
      reject(new Error(`the socket closed (${e.code}) while waiting for ${type}`));
    };
    setTimeout(() => reject(new Error(`no ${type} in 60 s`)), 60000);
    if (frame) ws.send(JSON.stringify(frame));
  });
}

// Connect, create a session and join it; resolves with the session's id.
window.__start = async (url) => {
  ws = new WebSocket(url);
  ws.onmessage = onMessage;
  await answer("authenticated");
  const created = await answer("session_created",
                               {type: "create_session", agentType: "coding-agent"});
  B.sessionId = created.sessionId || created.session.id;
  await answer("state_snapshot", {type: "join_session", sessionId: B.sessionId});
  B.state = "joined";
  return B.sessionId;
};

window.__run = (text) => ws.send(JSON.stringify({type: "run_turn", sessionId: B.sessionId, text}));
window.__text = (turnId) => (turns.has(turnId) ? (render(), turns.get(turnId).node.data) : "");
window.__turnIds = () => [...turns.keys()];
</script></body></html>
"""


class _Serve:
    """BASELINE_HTML over http on a loopback port: a page on loopback may open a socket to
    the gateway on loopback (Chromium blocks it from a page it cannot place, such as
    one Playwright answers itself), and the gateway is told to accept this origin."""

    def __init__(self) -> None:
        body = BASELINE_HTML.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class BaselinePage:
    """The baseline page (served by `origin`) in headless Chromium, against
    `gateway_url` (ws://host:port/ws): connected, with a session of its own, joined."""

    def __init__(self, origin: str, gateway_url: str, browser: Any = None):
        self.chromium = Chromium(browser)
        self.context = self.chromium.context
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.set_default_timeout(PAGE_TIMEOUT_MS)
        self.page.goto(origin + "/baseline")
        self.session_id: str = self.page.evaluate(
            "(url) => window.__start(url)", gateway_url
        )

    def run(self, text: str) -> None:
        self.page.evaluate("(t) => window.__run(t)", text)

    def busy(self) -> None:
        self.page.evaluate(BUSY_LOOP)

    def probe(self, with_latency: bool = False) -> dict[str, Any]:
        expr = "(() => { const B = window.__bench; return {...B, lat: %s}; })()" % (
            "B.lat" if with_latency else "[]"
        )
        return self.page.evaluate(expr)

    def texts(self) -> list[str]:
        """Each turn's text as the page shows it, in the order the turns began."""
        return self.page.evaluate(
            "() => window.__turnIds().map((id) => window.__text(id))"
        )

    def close(self) -> None:
        self.chromium.close()


def baseline(rate: int, seconds: float, busy: bool = False) -> dict[str, Any]:
    """The baseline page against its own gateway: a warm-up, then the stamped stream."""
    n = int(rate * seconds)
    with Workdir("baseline") as wd:
        served = _Serve()
        gw = Gateway(wd, allow_origins=(served.origin,))
        page = None
        try:
            page = BaselinePage(served.origin, gw.url)
            page.run(f"/stream {rate} {rate}")  # warm-up, not stamped: not measured
            wait_turn_ends(
                page, 1, 60, "the warm-up's turn_complete on the baseline page"
            )
            if busy:
                page.busy()
            cpu = CpuMeter(
                {"gateway": lambda: [gw.pid], **browser_groups(lambda: [gw.pid])}
            )
            cpu.start()
            page.run(f"/stream {n} {rate} stamp")
            wait_turn_ends(
                page,
                2,
                seconds * 4 + 60,
                "the stamped stream's turn_complete on the baseline page",
            )
            cpu_s = cpu.stop()
            probe = page.probe(with_latency=True)
            errors = page.errors[:3]
        finally:
            if page is not None:
                page.close()
            gw.stop()
            served.close()
    return {
        "n": n,
        "rate": rate,
        "busy": busy,
        "page": percentiles(probe["lat"]),
        "deltas": probe["deltas"],
        "lost": probe["gaps"],
        "duplicated": probe["dup"],
        "outOfOrder": probe["ooo"],
        "errors": errors + probe["errors"][:3],
        "cpuSeconds": cpu_s,
    }


def _pct(r: dict[str, Any]) -> dict[str, Any]:
    return {k: r["page"][k] for k in ("p50", "p99", "max")}


def _renderer_us(r: dict[str, Any]) -> float | None:
    """CPU µs the page's renderer spent per event of the stamped stream: what the
    machine's load does not change much, unlike the latencies."""
    cpu = (r.get("cpuSeconds") or {}).get("chromium renderer")
    return round(cpu / r["n"] * 1e6, 1) if cpu is not None and r["n"] else None


def run(quick: bool) -> dict[str, Any]:
    rate = 2000
    seconds = 10 if quick else 30
    fast = 20_000
    fast_seconds = 5 if quick else 15
    out: dict[str, Any] = {"rate": rate, "seconds": seconds}
    # interleaved, so a change in the machine's load falls on both
    steps = [
        ("baselineIdle", "baseline page, idle", lambda: baseline(rate, seconds)),
        (
            "dimIdle",
            "dim-desktop's page, idle",
            lambda: latency.dim_desktop(rate, seconds),
        ),
        (
            "baselineBusy",
            "baseline page, main thread half busy",
            lambda: baseline(rate, seconds, busy=True),
        ),
        (
            "dimBusy",
            "dim-desktop's page, main thread half busy",
            lambda: latency.dim_desktop(rate, seconds, busy=True),
        ),
        (
            "dim20k",
            f"dim-desktop's page at {fast} events/s",
            lambda: latency.dim_desktop(fast, fast_seconds),
        ),
        (
            "baseline20k",
            f"baseline page at {fast} events/s",
            lambda: baseline(fast, fast_seconds),
        ),
    ]
    for key, what, fn in steps:
        log(f"web_baseline: {what}")
        out[key] = fn()
        log(f"  page {out[key]['page']}")
    base_p99 = out["baselineIdle"]["page"]["p99"]
    out["summary"] = {
        "web_baseline": {
            "idle": _pct(out["baselineIdle"]),
            "busy": _pct(out["baselineBusy"]),
        },
        "page_beside_baseline": {
            "idle": _pct(out["dimIdle"]),
            "busy": _pct(out["dimBusy"]),
        },
        "page_20k": _pct(out["dim20k"]),
        "web_baseline_20k": _pct(out["baseline20k"]),
        "renderer_cpu_us_per_event": {
            key: _renderer_us(r)
            for key, r in out.items()
            if isinstance(r, dict) and "cpuSeconds" in r
        },
        "page_p99_vs_baseline_idle": {
            cond: round(out[key]["page"]["p99"] / base_p99, 2) if base_p99 else None
            for cond, key in (("idle", "dimIdle"), ("busy", "dimBusy"))
        },
    }
    return out


if __name__ == "__main__":
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=2))
