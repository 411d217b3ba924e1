// The Actors section of Diagnostics: renders `actor-status` payloads (the `dimctl status` rows) as
// a table, with a Restart button per row calling invoke("restart_actor", {name}), and a message-log
// viewer (actor_logs) below it. It shows what `dimctl status`
// shows: pid, state, restarts, uptime, mailbox, messages handled, the last error and its time, and
// for the connection actor its connection state and reconnects.

import { h, clear, clockTime, formatDuration } from "./dom.js";

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

// Column titles in plain words; the dimctl names are in each title's tooltip.
const COLUMNS = [
  ["Actor", "name"],
  ["Process", "pid: the operating system's process id"],
  ["State", "state"],
  ["Connection", "connection: the gateway connection (the connection actor only)"],
  ["Restarts", "restarts"],
  ["Running for", "uptime"],
  ["Queued", "mailbox: messages waiting to be handled"],
  ["Handled", "handled: messages handled since the actor started"],
  ["Last error", "lastError"],
  ["", ""],
];

export class ActorsPanel {
  /**
   * @param {HTMLElement} root  the <section data-testid="actors-panel"> in Diagnostics
   * @param {object} ctx        {restart(name) -> Promise, logs(name, types) -> Promise<lines>}
   */
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.logName = null;
    this.visible = false; // the log is read again every second only while it can be seen
    this.logTitle = h("h3", { class: "log-title" }, "Message log");
    this.logPre = h("pre", { class: "actor-log-lines", testid: "actor-log-lines", tabindex: "0", "aria-label": "Message log" }, "Choose Show log on an actor to see the messages it receives, newest at the bottom.");
    // Message kinds (invoke, gateway_event, ...) or gateway event types (text_delta, ...), comma-separated.
    this.typesSeen = new Set();
    this.typeList = h("datalist", { id: "actor-log-types" });
    this.logFilter = h("input", { type: "text", class: "log-filter", testid: "actor-log-filter", list: "actor-log-types", placeholder: "e.g. text_delta, invoke", "aria-label": "Show only these message types (comma-separated)" });
    this.logFilter.addEventListener("change", () => this.showLog(this.logName));
    this.follow = h("input", { type: "checkbox", testid: "actor-log-follow", checked: true });
    this.follow.addEventListener("change", () => {
      if (this.follow.checked) this.showLog(this.logName);
      else clearTimeout(this.logTimer);
    });
    this.logTimer = null;
    this.logEl = h(
      "section",
      { class: "actor-log", testid: "actor-log", "aria-label": "Message log" },
      h(
        "div",
        { class: "panel-head log-head" },
        this.logTitle,
        h("div", { class: "spacer" }),
        h("label", { class: "log-filter-label small" }, "Types ", this.logFilter),
        this.typeList,
        h("label", { class: "toggle", title: "Read the log again every second and keep the newest message in view" }, this.follow, h("span", null, "Follow")),
        h("button", { type: "button", class: "small ghost", testid: "actor-log-refresh", onclick: () => this.showLog(this.logName) }, "Refresh"),
        h("button", { type: "button", class: "small ghost", testid: "actor-log-close", onclick: () => this.hideLog() }, "Close log"),
      ),
      this.logPre,
    );
    this.tbody = h("tbody");
    this.emptyEl = h("div", { class: "panel-empty" }, "No actor status received yet.");
    this.updatedEl = h("span", { class: "muted small" });
    clear(root);
    root.append(
      h("div", { class: "panel-head" }, h("h3", null, "Actors"), h("div", { class: "spacer" }), this.updatedEl),
      this.emptyEl,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "actors", "aria-label": "Actors" },
          h("thead", null, h("tr", null, COLUMNS.map(([t, tip]) => h("th", { scope: "col", title: tip || null }, t || h("span", { class: "sr-only" }, "Actions"))))),
          this.tbody,
        ),
      ),
      this.logEl,
    );
  }

  /** Diagnostics shown or hidden: an open log follows only while it can be seen. */
  setVisible(visible) {
    this.visible = !!visible;
    if (this.visible && this.logName) this.showLog(this.logName);
    else clearTimeout(this.logTimer);
  }

  async showLog(name) {
    if (!name || !this.ctx.logs) return;
    const fresh = this.logName !== name;
    this.logName = name;
    this.logEl.dataset.actor = name;
    this.logTitle.textContent = `Messages received by ${name}`;
    if (fresh) this.logPre.textContent = "Loading…";
    clearTimeout(this.logTimer);
    if (this.follow.checked && this.visible) this.logTimer = setTimeout(() => this.logName === name && this.showLog(name), 1000);
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
    for (const line of list) {
      const type = line && typeof line === "object" && typeof line.type === "string" ? line.type : "";
      if (type && !this.typesSeen.has(type) && this.typesSeen.size < 200) {
        this.typesSeen.add(type);
        this.typeList.appendChild(h("option", { value: type }));
      }
    }
    const text = list.length ? list.map(formatLogLine).join("\n") : "(no messages logged yet)";
    if (this.logPre.textContent !== text) {
      this.logPre.textContent = text;
      if (this.follow.checked || fresh) this.logPre.scrollTop = this.logPre.scrollHeight;
    }
  }

  hideLog() {
    this.logName = null;
    clearTimeout(this.logTimer);
    delete this.logEl.dataset.actor;
    this.logTitle.textContent = "Message log";
    this.logPre.textContent = "Choose Show log on an actor to see the messages it receives, newest at the bottom.";
  }

  /** Keyed by actor name: rows stay in place across the once-a-second updates (no lost clicks). */
  render(payload) {
    const rows = normActorRows(payload);
    this.emptyEl.hidden = rows.length > 0;
    this.updatedEl.textContent = payload ? `updated ${clockTime(Date.now())}` : "";
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
      setText(row.errorAt, errorAt ? ` at ${clockTime(errorAt.getTime())}` : "");
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
    const btn = h("button", { type: "button", class: "small restart", testid: "actor-restart", "aria-label": `Restart ${name}` }, "Restart");
    btn.addEventListener("click", async () => {
      btn.disabled = true;
      btn.textContent = "Restarting…";
      try {
        await this.ctx.restart(name);
      } catch (_) {
        /* the app shows the error in a toast */
      } finally {
        btn.disabled = false;
        btn.textContent = "Restart";
      }
    });
    const logsBtn = h("button", { type: "button", class: "small", testid: "actor-logs", "aria-label": `Show log of ${name}`, onclick: () => this.showLog(name) }, "Show log");
    const row = {
      pid: h("td", { class: "a-pid", testid: "actor-pid" }),
      state: h("span", { class: "badge", testid: "actor-state" }),
      restarts: h("td", { class: "a-restarts", testid: "actor-restarts" }),
      uptime: h("td", { class: "a-uptime", testid: "actor-uptime" }),
      mailbox: h("td", { class: "a-mailbox", testid: "actor-mailbox" }),
      handled: h("td", { class: "a-handled", testid: "actor-handled" }),
      conn: h("td", { class: "a-conn", testid: "actor-connection" }),
      errorText: h("span", { testid: "actor-last-error" }),
      errorAt: h("span", { class: "muted", testid: "actor-last-error-at" }),
    };
    row.error = h("td", { class: "a-error error-text" }, row.errorText, row.errorAt);
    row.tr = h(
      "tr",
      { testid: "actor-row", dataset: { actor: name } },
      h("td", { class: "a-name mono", testid: "actor-name" }, name),
      row.pid,
      h("td", { class: "a-state" }, row.state),
      row.conn,
      row.restarts,
      row.uptime,
      row.mailbox,
      row.handled,
      row.error,
      h("td", { class: "a-actions" }, logsBtn, btn),
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
