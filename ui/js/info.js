// Two small sections that read the gateway on demand, when shown or refreshed:
// - HistoryPanel (the workspace panel's History tab): the selected session's turns as the gateway
//   records them (get_history → history), and for a turn its stored events, exactly as sent
//   (get_events → event_list);
// - MembersPanel (in Diagnostics): the tenant's members and their roles
//   (manage_members {action: "list"} → member_list).
// Neither keeps anything in the store: what they show is the gateway's answer of the moment.

import { h, clear, formatTime } from "./dom.js";

function failure(err) {
  return `Could not load: ${err && err.code ? `${err.code}${err.gatewayCode ? ` (${err.gatewayCode})` : ""} ` : ""}${err && err.message ? err.message : err}`;
}

export class HistoryPanel {
  /**
   * @param {HTMLElement} root  <section data-testid="history-panel">, the History tab's panel
   * @param {object} ctx        {invoke}
   */
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.sessionId = null;
    this.visible = false;
    this.loadedFor = undefined; // the session whose history is on screen
    this.run = 0;
    this.list = h("ol", { class: "history-list", testid: "history-list" });
    this.status = h("div", { class: "panel-empty", testid: "history-status" });
    const refresh = h("button", { type: "button", class: "icon", testid: "history-refresh", title: "Load again", "aria-label": "Load the turn history again", onclick: () => this.load() }, "⟳");
    root.append(h("div", { class: "panel-head" }, h("h2", null, "Turn history"), h("div", { class: "spacer" }), refresh), this.status, this.list);
  }

  /** Shown (its tab selected and the panel open): each time it comes into view it loads again. */
  setVisible(visible) {
    const was = this.visible;
    this.visible = !!visible;
    if (this.visible && (!was || this.loadedFor !== this.sessionId)) this.load();
  }

  setSession(id) {
    if (id === this.sessionId) return;
    this.sessionId = id;
    this.loadedFor = undefined;
    clear(this.list);
    this.status.textContent = id ? "" : "No session selected.";
    if (this.visible) this.load();
  }

  async load() {
    const sessionId = this.sessionId;
    const run = ++this.run;
    this.loadedFor = sessionId;
    if (!sessionId) return;
    this.status.textContent = "Loading…";
    let result;
    try {
      result = await this.ctx.invoke("get_history", { sessionId });
    } catch (err) {
      if (run === this.run) this.status.textContent = failure(err);
      return;
    }
    if (run !== this.run) return;
    const turns = Array.isArray(result?.turns) ? result.turns : [];
    this.status.textContent = turns.length ? `${turns.length} turn${turns.length === 1 ? "" : "s"}` : "No turns yet.";
    clear(this.list);
    for (const t of turns) this.list.appendChild(this.turnRow(sessionId, t));
  }

  turnRow(sessionId, t) {
    const events = h("ol", { class: "history-events", testid: "history-events", hidden: true });
    const button = h("button", { type: "button", class: "small ghost", testid: "history-show-events" }, "Events");
    button.addEventListener("click", () => this.showEvents(sessionId, t, events, button));
    const outcome = t.error ? `${t.error.code}: ${t.error.message}` : t.finalText ?? "";
    return h(
      "li",
      { class: "history-turn", testid: "history-turn", dataset: { turnId: t.turnId, status: t.status } },
      h("div", { class: "row" }, h("span", { class: `pill ${t.status}` }, t.status), h("span", { class: "history-text" }, t.text), h("span", { class: "muted small" }, formatTime(t.startedAt)), button),
      outcome ? h("div", { class: "history-outcome muted small" }, outcome) : null,
      events,
    );
  }

  /** The turn's stored events: from its start to its end (or the next 500 while it runs). */
  async showEvents(sessionId, t, list, button) {
    if (!list.hidden) {
      list.hidden = true;
      return;
    }
    button.disabled = true;
    const from = typeof t.startedSeq === "number" ? t.startedSeq : 1;
    const limit = typeof t.endedSeq === "number" ? t.endedSeq - from + 1 : 500;
    try {
      const page = await this.ctx.invoke("get_events", { sessionId, afterSeq: from - 1, limit: Math.max(1, limit) });
      clear(list);
      for (const ev of Array.isArray(page?.events) ? page.events : []) {
        list.appendChild(h("li", { class: "history-event mono", testid: "history-event", dataset: { seq: String(ev.seq ?? ""), type: String(ev.type ?? "") } }, `${ev.seq ?? "?"}  ${ev.type ?? "?"}`));
      }
      if (page?.hasMore) list.appendChild(h("li", { class: "muted small" }, "… more"));
    } catch (err) {
      clear(list);
      list.appendChild(h("li", { class: "error-text small" }, failure(err)));
    } finally {
      list.hidden = false;
      button.disabled = false;
    }
  }
}

export class MembersPanel {
  /**
   * @param {HTMLDetailsElement} root  <details data-testid="members-panel">
   * @param {object} ctx               {invoke}
   */
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.list = h("ul", { class: "member-list", testid: "member-list" });
    this.status = h("div", { class: "panel-empty", testid: "members-status" });
    const refresh = h("button", { type: "button", class: "icon", testid: "members-refresh", title: "Load again", "aria-label": "Load the members again", onclick: () => this.load() }, "⟳");
    root.append(h("summary", null, "Members"), h("div", { class: "info-head" }, this.status, refresh), this.list);
    root.addEventListener("toggle", () => root.open && this.load());
  }

  async load() {
    this.status.textContent = "Loading…";
    let result;
    try {
      result = await this.ctx.invoke("manage_members", { action: "list" });
    } catch (err) {
      this.status.textContent = failure(err);
      return;
    }
    const members = Array.isArray(result?.members) ? result.members : [];
    this.status.textContent = members.length ? "" : "No members.";
    clear(this.list);
    for (const m of members) {
      this.list.appendChild(
        h("li", { class: "member-row", testid: "member-row", dataset: { userId: String(m.userId ?? ""), role: String(m.role ?? "") } }, h("span", { class: "mono" }, m.userId), h("span", { class: "pill" }, m.role)),
      );
    }
  }
}
