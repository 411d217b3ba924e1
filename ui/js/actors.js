// The Actors panel: renders `actor-status` payloads (the `dimctl status` rows) as a table, with a
// Restart button per row calling invoke("restart_actor", {name}). It shows what `dimctl status`
// shows: pid, state, restarts, uptime, mailbox, messages handled, the last error and its time, and
// for the connection actor its connection state and reconnects.

import { h, clear, formatDuration } from "./dom.js";

function pick(row, ...keys) {
  for (const k of keys) if (row[k] !== undefined && row[k] !== null) return row[k];
  return undefined;
}

/** Accepts an array of rows or an object holding one ({actors}, {rows}, {status}). */
export function normActorRows(payload) {
  let rows = payload;
  if (rows && !Array.isArray(rows) && typeof rows === "object") rows = rows.actors ?? rows.rows ?? rows.status ?? rows.children ?? [];
  if (!Array.isArray(rows)) return [];
  return rows
    .filter((r) => r && typeof r === "object")
    .map((r) => {
      let uptime = pick(r, "uptime", "uptimeS", "uptime_s", "uptimeSeconds");
      if (uptime === undefined) {
        const started = pick(r, "startedAt", "started_at");
        if (typeof started === "number") uptime = (Date.now() - started) / 1000;
      }
      return {
        name: String(pick(r, "name", "actor", "id") ?? "?"),
        pid: pick(r, "pid", "osPid"),
        state: pick(r, "state", "status"),
        restarts: pick(r, "restarts", "restartCount", "restart_count"),
        uptime,
        mailbox: pick(r, "mailbox", "mailboxDepth", "mailbox_depth", "queue", "queueDepth"),
        handled: pick(r, "handled", "messagesHandled", "messages_handled"),
        lastError: pick(r, "lastError", "last_error", "error"),
        lastErrorAt: pick(r, "lastErrorAt", "last_error_at"), // epoch seconds, as dimctl reads it
        connection: pick(r, "connection"), // only the connection actor has these two
        reconnects: pick(r, "reconnects"),
      };
    });
}

export class ActorsPanel {
  /**
   * @param {HTMLElement} root  the <section data-testid="actors-panel">
   * @param {object} ctx        {restart(name) -> Promise, logs(name) -> Promise<lines>}
   */
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.logName = null;
    this.logTitle = h("span", { class: "log-title" });
    this.logPre = h("pre", { class: "actor-log-lines", testid: "actor-log-lines", tabindex: "0", "aria-label": "Message log" });
    // Message kinds (invoke, gateway_event, ...) or gateway event types (text_delta, ...), comma-separated.
    this.logFilter = h("input", { type: "text", class: "log-filter", testid: "actor-log-filter", placeholder: "filter by type, e.g. text_delta, invoke", "aria-label": "Filter the log by message type" });
    this.logFilter.addEventListener("change", () => this.showLog(this.logName));
    this.logTimer = null;
    this.logEl = h(
      "div",
      { class: "actor-log", testid: "actor-log", hidden: true },
      h(
        "div",
        { class: "panel-head" },
        this.logTitle,
        h("div", { class: "spacer" }),
        this.logFilter,
        h("button", { type: "button", class: "icon", title: "Refresh log", "aria-label": "Refresh log", onclick: () => this.showLog(this.logName) }, "⟳"),
        h("button", { type: "button", class: "icon", title: "Close log", "aria-label": "Close log", onclick: () => this.hideLog() }, "✕"),
      ),
      this.logPre,
    );
    this.tbody = h("tbody");
    this.emptyEl = h("div", { class: "panel-empty" }, "No actor status received yet.");
    this.updatedEl = h("span", { class: "muted small" });
    clear(root);
    root.append(
      h("div", { class: "panel-head" }, h("h2", null, "Actors"), h("div", { class: "spacer" }), this.updatedEl),
      this.emptyEl,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "actors", role: "table", "aria-label": "Actors" },
          h(
            "thead",
            { class: "sr-only" },
            h(
              "tr",
              null,
              ["Name", "PID", "State", "Connection", "Restarts", "Uptime", "Mailbox", "Handled", "Last error", "Actions"].map((t) => h("th", { scope: "col", role: "columnheader" }, t)),
            ),
          ),
          this.tbody,
        ),
      ),
      this.logEl,
    );
  }

  async showLog(name) {
    if (!name || !this.ctx.logs) return;
    const fresh = this.logName !== name;
    this.logName = name;
    this.logEl.hidden = false;
    this.logTitle.textContent = `Messages received by ${name}`;
    if (fresh) this.logPre.textContent = "Loading…";
    // Live: while the log is open it is read again every second.
    clearTimeout(this.logTimer);
    this.logTimer = setTimeout(() => this.logName === name && this.showLog(name), 1000);
    const types = this.logFilter.value.split(",").map((t) => t.trim()).filter(Boolean);
    let lines;
    try {
      lines = await this.ctx.logs(name, types);
    } catch (err) {
      if (this.logName === name) this.logPre.textContent = `Could not read the log: ${err.message}`;
      return;
    }
    if (this.logName !== name) return;
    const list = Array.isArray(lines) ? lines : [];
    const atBottom = this.logPre.scrollTop + this.logPre.clientHeight >= this.logPre.scrollHeight - 4;
    const text = list.length ? list.map(formatLogLine).join("\n") : "(no messages logged yet)";
    if (this.logPre.textContent !== text) {
      this.logPre.textContent = text;
      if (atBottom || fresh) this.logPre.scrollTop = this.logPre.scrollHeight;
    }
  }

  hideLog() {
    this.logName = null;
    clearTimeout(this.logTimer);
    this.logEl.hidden = true;
  }

  /** Keyed by actor name: rows stay in place across the once-a-second updates (no lost clicks). */
  render(payload) {
    const rows = normActorRows(payload);
    this.emptyEl.hidden = rows.length > 0;
    this.updatedEl.textContent = payload ? `updated ${new Date().toLocaleTimeString()}` : "";
    if (!this.rows) this.rows = new Map();
    const seen = new Set();
    let prev = null;
    for (const r of rows) {
      seen.add(r.name);
      let row = this.rows.get(r.name);
      if (!row) {
        row = this.createRow(r.name);
        this.rows.set(r.name, row);
      }
      const state = r.state === undefined || r.state === null ? "" : String(r.state);
      const error = r.lastError ? String(r.lastError) : "";
      const errorAt = error && typeof r.lastErrorAt === "number" ? new Date(r.lastErrorAt * 1000) : null;
      const conn = r.connection === undefined || r.connection === null ? "" : String(r.connection);
      row.tr.dataset.state = state;
      setText(row.pid, r.pid ?? "");
      setText(row.state, state);
      row.state.dataset.status = state;
      setText(row.restarts, r.restarts ?? "");
      setText(row.uptime, typeof r.uptime === "number" ? formatDuration(r.uptime) : r.uptime ?? "");
      setText(row.mailbox, r.mailbox ?? "");
      setText(row.handled, r.handled ?? "");
      setText(row.conn, conn ? `${conn.replace(/_/g, " ")} · ${r.reconnects ?? 0} reconnect${r.reconnects === 1 ? "" : "s"}` : "");
      row.conn.dataset.connection = conn;
      row.conn.dataset.reconnects = conn ? String(r.reconnects ?? 0) : "";
      setText(row.errorText, error);
      setText(row.errorAt, errorAt ? ` at ${errorAt.toLocaleTimeString([], { hour12: false })}` : "");
      row.errorAt.dataset.at = errorAt ? String(r.lastErrorAt) : "";
      row.error.title = error;
      const expected = prev ? prev.nextSibling : this.tbody.firstChild;
      if (expected !== row.tr) this.tbody.insertBefore(row.tr, expected);
      prev = row.tr;
    }
    for (const [name, row] of this.rows) {
      if (!seen.has(name)) {
        row.tr.remove();
        this.rows.delete(name);
      }
    }
  }

  createRow(name) {
    const btn = h("button", { type: "button", class: "icon restart", testid: "actor-restart", title: `Restart ${name}`, "aria-label": `Restart ${name}` }, "⟳");
    btn.addEventListener("click", async () => {
      btn.disabled = true;
      btn.classList.add("spinning");
      try {
        await this.ctx.restart(name);
      } catch (_) {
        /* the app shows the error in a toast */
      } finally {
        btn.disabled = false;
        btn.classList.remove("spinning");
      }
    });
    const logsBtn = h("button", { type: "button", class: "icon", testid: "actor-logs", title: `Message log of ${name}`, "aria-label": `Message log of ${name}`, onclick: () => this.showLog(name) }, "☰");
    const row = {
      pid: h("td", { class: "a-pid", testid: "actor-pid", role: "cell" }),
      state: h("span", { class: "badge", testid: "actor-state" }),
      restarts: h("td", { class: "a-restarts", testid: "actor-restarts", role: "cell" }),
      uptime: h("td", { class: "a-uptime", testid: "actor-uptime", role: "cell" }),
      mailbox: h("td", { class: "a-mailbox", testid: "actor-mailbox", role: "cell" }),
      handled: h("td", { class: "a-handled", testid: "actor-handled", role: "cell" }),
      conn: h("td", { class: "a-conn", testid: "actor-connection", role: "cell" }),
      errorText: h("span", { testid: "actor-last-error" }),
      errorAt: h("span", { class: "muted", testid: "actor-last-error-at" }),
    };
    row.error = h("td", { class: "a-error error-text", role: "cell" }, row.errorText, row.errorAt);
    row.tr = h(
      "tr",
      { testid: "actor-row", role: "row", dataset: { actor: name } },
      h("td", { class: "a-name mono", testid: "actor-name", role: "cell" }, name),
      row.pid,
      h("td", { class: "a-state", role: "cell" }, row.state),
      row.conn,
      row.restarts,
      row.uptime,
      row.mailbox,
      row.handled,
      row.error,
      h("td", { class: "a-actions", role: "cell" }, logsBtn, btn),
    );
    return row;
  }
}

function setText(el, value) {
  const text = String(value);
  if (el.textContent !== text) el.textContent = text;
}

function formatLogLine(line) {
  if (!line || typeof line !== "object") return String(line);
  const t = typeof line.ts === "number" ? new Date(line.ts * 1000).toISOString().slice(11, 23) : "";
  let body = "";
  try {
    body = JSON.stringify(line.body);
  } catch (_) {
    body = String(line.body);
  }
  if (body && body.length > 300) body = `${body.slice(0, 299)}…`;
  return [t, `${line.sender ?? "?"} → ${line.recipient ?? "?"}`, line.type ?? "", body].filter(Boolean).join("  ");
}
