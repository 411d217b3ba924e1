// The gateway connection in the top bar: the state indicator ("reconnecting in N s" counts down to
// the next attempt; a warning mark when the gateway gave cause) and its popover: the warnings, what
// the handshake said (protocol version, client id, identity), the heartbeat, what this gateway was
// seen to support, a Ping with its round trip, the URL/token form (wired in app.js), and "Save a
// token in the keychain" (save_token: the app keeps it in the OS keychain and reconnects with it).

import { h, clear, clockTime, formatWhen } from "./dom.js";

const LABELS = ["connecting", "connected", "reconnecting", "auth failed", "offline"];

/** The state names the bridge sends (and a few a newer one might) as the five labels we show. */
export function connectionLabel(state) {
  const s = String(state ?? "")
    .toLowerCase()
    .replace(/[_-]+/g, " ")
    .trim();
  if (LABELS.includes(s)) return s;
  if (s === "authenticated" || s === "open" || s === "ready" || s === "online") return "connected";
  if (s.includes("auth") && (s.includes("fail") || s.includes("reject") || s.includes("denied") || s.includes("error"))) return "auth failed";
  if (s === "unauthorized" || s === "forbidden") return "auth failed";
  if (s === "authenticating" || s === "handshake" || s === "opening") return "connecting";
  if (s === "retrying" || s === "backoff") return "reconnecting";
  if (!s || s === "disconnected" || s === "closed" || s === "stopped" || s === "idle" || s === "error" || s === "failed") return "offline";
  return s;
}

// What the indicator says for each state, in words.
const WORDS = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  "auth failed": "Sign-in failed",
  offline: "Offline",
};

/** The indicator's text: "Connected", "Reconnecting in 3 s…", "Sign-in failed", "Offline". */
export function connectionWords(label, retryInS = null) {
  if (label === "reconnecting" && retryInS !== null && retryInS > 0) return `Reconnecting in ${retryInS} s…`;
  return WORDS[label] || label.charAt(0).toUpperCase() + label.slice(1);
}

/** The indicator's text while the page cannot reach dim-desktop itself. */
export const APP_UNREACHABLE = "dim-desktop not running";

function seconds(ms) {
  return `${Math.round(ms / 100) / 10} s`;
}

// What the bridge learned the gateway does (traits), in plain words; "unknown" is not shown.
const TRAIT_WORDS = {
  getEvents: {
    yes: "Missed-event catch-up: supported",
    no: "Missed-event catch-up: not supported — gaps are shown",
  },
  pushesAuthenticated: {
    yes: "Sign-in confirmation: sent on connect",
    no: "Sign-in confirmation: only when asked",
  },
  pong: {
    yes: "Ping: answered",
    no: "Ping: not answered",
  },
  clientTurnIdEcho: {
    yes: "Messages sent again after a lost connection: recognised",
    no: "Messages sent again after a lost connection: not recognised",
  },
  denseSeqs: {
    yes: "Events skipped in a stream: fetched",
    no: "Events skipped in a stream: the gateway skips numbers, so they are not fetched",
  },
};

/** [trait name, words] for each trait the gateway showed either way. */
export function traitLines(traits) {
  const t = traits && typeof traits === "object" ? traits : {};
  const lines = [];
  for (const [name, words] of Object.entries(TRAIT_WORDS)) {
    if (Object.hasOwn(words, t[name])) lines.push([name, words[t[name]]]);
  }
  const beat = typeof t.heartbeatIntervalMs === "number" && t.heartbeatIntervalMs > 0 ? `Heartbeat every ${seconds(t.heartbeatIntervalMs)}` : "";
  const stale = typeof t.staleAfterMs === "number" && t.staleAfterMs > 0 ? `taken as lost after ${seconds(t.staleAfterMs)} of silence` : "";
  if (beat || stale) lines.push(["heartbeat", beat && stale ? `${beat}; ${stale}` : beat || stale.charAt(0).toUpperCase() + stale.slice(1)]);
  return lines;
}

// The gateway's own clock, to compare with this computer's: the exact time is the point.
function clock(ms) {
  return clockTime(ms);
}

export class ConnectionView {
  /**
   * @param {object} els  {indicator, detail, warnings, facts, traits, traitsList, url, identity, ping, pong, keychain}
   * @param {object} ctx  {invoke}
   */
  constructor(els, ctx) {
    this.els = els;
    this.ctx = ctx;
    this.conn = {};
    this.bridgeDown = false;
    this.timer = null;
    els.ping.addEventListener("click", () => this.ping());
    if (els.keychain) els.keychain.addEventListener("submit", (e) => this.saveToken(e));
  }

  /** Seconds until the next attempt while reconnecting, else null. */
  retryIn() {
    const c = this.conn;
    if (connectionLabel(c.state) !== "reconnecting" || typeof c.retryAt !== "number") return null;
    return Math.max(0, Math.ceil((c.retryAt - Date.now()) / 1000));
  }

  render(conn, { bridgeDown = false } = {}) {
    this.conn = conn || {};
    this.bridgeDown = bridgeDown;
    const c = this.conn;
    const { indicator, detail, url, identity } = this.els;
    const state = connectionLabel(c.state);
    let why = c.detail || "";
    const retry = bridgeDown ? null : this.retryIn();
    // While the app itself is gone, what it last said about the gateway is not known to hold.
    const label = bridgeDown ? APP_UNREACHABLE : connectionWords(state, retry);
    if (bridgeDown) why = "The page cannot reach dim-desktop; it reconnects by itself once dim-desktop runs again.";
    if (indicator.textContent !== label) indicator.textContent = label;
    indicator.dataset.state = (bridgeDown ? "offline" : state).replace(/ /g, "-");
    if (bridgeDown) indicator.dataset.bridge = "closed";
    else delete indicator.dataset.bridge;
    indicator.dataset.raw = String(c.state ?? "");
    const warnings = Array.isArray(c.warnings) ? c.warnings.filter((w) => typeof w === "string" && w) : [];
    const warned = warnings.length ? `${warnings.length} warning${warnings.length === 1 ? "" : "s"}` : "";
    indicator.title = [c.url, why, c.reconnects ? `${c.reconnects} reconnects` : "", warned].filter(Boolean).join(" — ");
    // The mark is drawn by CSS from data-warnings, so the indicator's text stays the state alone.
    if (warnings.length) indicator.dataset.warnings = String(warnings.length);
    else delete indicator.dataset.warnings;
    indicator.setAttribute("aria-label", `${bridgeDown ? "dim-desktop" : "Gateway connection"}: ${label}${warned ? ` (${warned})` : ""}`);
    detail.textContent = [bridgeDown ? label : `Gateway: ${label}`, c.url ? `Address: ${c.url}` : "", why, c.reconnects ? `Reconnects so far: ${c.reconnects}` : ""].filter(Boolean).join("\n");
    if (!url.value && c.url && document.activeElement !== url) url.value = c.url;
    const id = c.identity;
    identity.textContent = id ? id.email || id.userId || "" : "";
    this.renderFacts();
    this.renderWarnings(warnings);
    this.renderTraits();
    // Count down once a second while an attempt is due; stop when none is.
    if (retry !== null && retry > 0 && !this.timer) {
      this.timer = setInterval(() => this.render(this.conn, { bridgeDown: this.bridgeDown }), 500);
    } else if ((retry === null || retry === 0) && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  renderFacts() {
    const c = this.conn;
    const id = c.identity;
    const hb = typeof c.heartbeatIntervalMs === "number" ? `every ${Math.round(c.heartbeatIntervalMs / 100) / 10} s` : "";
    const rows = [
      ["Protocol", "conn-protocol", typeof c.protocolVersion === "number" ? `v${c.protocolVersion}${c.requiresAuth ? ", token required" : ""}` : ""],
      ["Client id", "conn-client-id", c.clientId || ""],
      ["Identity", "conn-identity", id ? [id.email, id.userId, id.tenantId && `tenant ${id.tenantId}`].filter(Boolean).join(" · ") : ""],
      ["Heartbeat", "conn-heartbeat", [hb, c.lastHeartbeatAt ? `last one ${formatWhen(c.lastHeartbeatAt)}` : ""].filter(Boolean).join(", ")],
    ];
    const key = JSON.stringify(rows);
    if (key === this.factsKey) return;
    this.factsKey = key;
    clear(this.els.facts);
    for (const [name, testid, value] of rows) {
      this.els.facts.appendChild(h("dt", null, name));
      this.els.facts.appendChild(h("dd", { testid, class: value ? "" : "muted" }, value || "—"));
    }
  }

  renderWarnings(warnings) {
    const key = JSON.stringify(warnings);
    if (key === this.warningsKey) return;
    this.warningsKey = key;
    const list = this.els.warnings;
    clear(list);
    for (const w of warnings) list.appendChild(h("li", { class: "conn-warning", testid: "conn-warning" }, w));
    list.hidden = warnings.length === 0;
  }

  renderTraits() {
    const lines = traitLines(this.conn.traits);
    const key = JSON.stringify(lines);
    if (key === this.traitsKey) return;
    this.traitsKey = key;
    clear(this.els.traitsList);
    for (const [name, words] of lines) this.els.traitsList.appendChild(h("li", { testid: "conn-trait", dataset: { trait: name } }, words));
    this.els.traits.hidden = lines.length === 0;
  }

  /** The keychain form: save_token, and its outcome in the result line. The field is emptied once
   * the token is saved, so it stays in the page no longer than needed. */
  async saveToken(e) {
    e.preventDefault();
    const form = this.els.keychain;
    const field = form.querySelector("input");
    const result = form.querySelector("output");
    const button = form.querySelector("button");
    const say = (outcome, text) => {
      result.dataset.outcome = outcome;
      result.textContent = text;
    };
    const token = field.value.trim();
    if (!token) {
      say("failed", "Enter the token first.");
      field.focus();
      return;
    }
    button.disabled = true;
    say("saving", "Saving…");
    try {
      const answer = await this.ctx.invoke("save_token", { token });
      field.value = "";
      say("saved", `Saved for ${answer.url}; connecting with it.`);
    } catch (err) {
      const message = err && err.message ? String(err.message) : String(err);
      // The command's and field's names are for logs; the user reads what to do.
      const words = message.replace(/^save_token: (token: )?/, "");
      say("failed", words.charAt(0).toUpperCase() + words.slice(1));
    } finally {
      button.disabled = false;
    }
  }

  /** ping → pong: the round trip through the bridge, the connection process and the gateway. */
  async ping() {
    const { ping, pong } = this.els;
    ping.disabled = true;
    pong.textContent = "…";
    const t0 = performance.now();
    try {
      const answer = await this.ctx.invoke("ping", {});
      const rtt = Math.round(performance.now() - t0);
      pong.textContent = `pong in ${rtt} ms${answer && answer.ts ? ` (gateway clock ${clock(answer.ts)})` : ""}`;
      pong.dataset.rttMs = String(rtt);
    } catch (err) {
      pong.textContent = `no pong: ${err && err.message ? err.message : err}`;
      delete pong.dataset.rttMs;
    } finally {
      ping.disabled = false;
    }
  }
}
