// The Actors panel: renders `actor-status` payloads (the `dimctl status` rows) as a table, with a
// Restart button per row calling invoke("restart_actor", {name}).

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
        lastError: pick(r, "lastError", "last_error", "error"),
      };
    });
}

export class ActorsPanel {
  /**
   * @param {HTMLElement} root  the <section data-testid="actors-panel">
   * @param {object} ctx        {restart(name) -> Promise}
   */
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
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
          { class: "actors" },
          h(
            "thead",
            null,
            h(
              "tr",
              null,
              h("th", { scope: "col" }, "Actor"),
              h("th", { scope: "col" }, "State"),
              h("th", { scope: "col", class: "num", title: "Restarts" }, "Restarts"),
              h("th", { scope: "col", class: "num" }, "Uptime"),
              h("th", { scope: "col", class: "num", title: "Mailbox depth" }, "Mailbox"),
              h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")),
            ),
          ),
          this.tbody,
        ),
      ),
    );
  }

  render(payload) {
    const rows = normActorRows(payload);
    clear(this.tbody);
    this.emptyEl.hidden = rows.length > 0;
    this.updatedEl.textContent = payload ? `updated ${new Date().toLocaleTimeString()}` : "";
    for (const r of rows) {
      const btn = h("button", { type: "button", class: "icon restart", testid: "actor-restart", title: `Restart ${r.name}`, "aria-label": `Restart ${r.name}` }, "⟳");
      btn.addEventListener("click", async () => {
        btn.disabled = true;
        btn.classList.add("spinning");
        try {
          await this.ctx.restart(r.name);
        } catch (_) {
          /* the app shows the error in a toast */
        } finally {
          btn.disabled = false;
          btn.classList.remove("spinning");
        }
      });
      const state = r.state === undefined ? "" : String(r.state);
      this.tbody.appendChild(
        h(
          "tr",
          { testid: "actor-row", dataset: { actor: r.name, state } },
          h(
            "td",
            { class: "actor-cell" },
            h("div", { class: "mono actor-name", testid: "actor-name" }, r.name),
            h("div", { class: "muted tiny", testid: "actor-pid" }, r.pid !== undefined ? `pid ${r.pid}` : ""),
            r.lastError
              ? h("div", { class: "error-text tiny last-error", testid: "actor-last-error", title: String(r.lastError) }, String(r.lastError))
              : null,
          ),
          h("td", null, h("span", { class: "badge", testid: "actor-state", dataset: { status: state } }, state)),
          h("td", { class: "num", testid: "actor-restarts" }, r.restarts ?? ""),
          h("td", { class: "num", testid: "actor-uptime" }, typeof r.uptime === "number" ? formatDuration(r.uptime) : r.uptime ?? ""),
          h("td", { class: "num", testid: "actor-mailbox" }, r.mailbox ?? ""),
          h("td", { class: "actions" }, btn),
        ),
      );
    }
  }
}
