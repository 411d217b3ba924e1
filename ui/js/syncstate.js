// Every session's sync status, as the journal pushes it (`sync-status`), for what shows sync
// outside the Sync panel: the conflict banner over the chat, the session list's badge, and who
// made a file change (the agent, a local edit this app uploaded, or someone else).
//
// One listener for the whole page. The statuses of every synced session, those the page has not
// heard of since it loaded included, are asked for at once with `refresh()`.

import { h } from "./dom.js";

class SyncState {
  constructor() {
    this.statuses = new Map(); // sessionId -> the newest status
    this.uploads = new Map(); // sessionId -> Set of "iteration\u0000path" this app uploaded
    this.listeners = new Set();
    this.invoke = null;
    this.started = false;
  }

  /** Listens to `sync-status` (once, whoever calls it first). */
  start({ listen, invoke }) {
    if (this.started) return;
    this.started = true;
    this.invoke = invoke;
    listen("sync-status", (status) => this.update(status));
  }

  /** A status, from an event or a command's answer. */
  update(status) {
    if (!status || typeof status.sessionId !== "string") return;
    const sid = status.sessionId;
    const before = this.statuses.get(sid);
    this.statuses.set(sid, status);
    let uploadsChanged = false;
    if (Array.isArray(status.recentUploads) && status.recentUploads.length) {
      let seen = this.uploads.get(sid);
      if (!seen) this.uploads.set(sid, (seen = new Set()));
      for (const u of status.recentUploads) {
        const key = `${u.iteration}\u0000${u.path}`;
        if (!seen.has(key)) {
          seen.add(key);
          uploadsChanged = true;
        }
      }
    }
    const count = (s) => (s && Array.isArray(s.conflicts) ? s.conflicts.length : 0);
    if (uploadsChanged || !before || count(before) !== count(status) || before.state !== status.state) this.emit(sid);
  }

  emit(sid) {
    for (const fn of this.listeners) {
      try {
        fn(sid);
      } catch (err) {
        console.error(err);
      }
    }
  }

  /** Asks for the status of every synced session (`sync_statuses`: one request). */
  async refresh() {
    if (!this.invoke) return;
    let result;
    try {
      result = await this.invoke("sync_statuses", {});
    } catch (_) {
      return; /* not answering: the badges come with the next sync-status events */
    }
    for (const status of Array.isArray(result?.statuses) ? result.statuses : []) this.update(status);
  }

  status(sessionId) {
    return this.statuses.get(sessionId) || null;
  }

  /** How many files of this session have conflicting changes (0 when it is not synced). */
  conflicts(sessionId) {
    const s = this.statuses.get(sessionId);
    return s && Array.isArray(s.conflicts) ? s.conflicts.length : 0;
  }

  /** `fn(sessionId)` whenever that session's conflicts, state or uploads change; returns an unsubscribe. */
  onChange(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * Who made iteration `iteration` of `path`: "local" when this app's sync uploaded it (a local
   * edit), else "agent" when the change came inside a turn (`inTurn`), else "other" (changed
   * outside a turn, by someone or something else). An upload is known once the journal has its
   * answer, which can come after the file_changed event: callers re-ask on `onChange`.
   */
  whoChanged(sessionId, path, iteration, inTurn = false) {
    const seen = this.uploads.get(sessionId);
    if (seen && seen.has(`${iteration}\u0000${path}`)) return "local";
    return inTurn ? "agent" : "other";
  }
}

export const syncState = new SyncState();

/** Plain words for `whoChanged`'s answer. */
export const WHO_WORDS = { agent: "by the agent", local: "your local edit", other: "changed outside a turn" };

export const conflicts = (sessionId) => syncState.conflicts(sessionId);
export const onChange = (fn) => syncState.onChange(fn);
export const whoChanged = (sessionId, path, iteration, inTurn) => syncState.whoChanged(sessionId, path, iteration, inTurn);

/** The session list's badge: "2 conflicts", or "" when there are none. */
export function conflictBadge(sessionId) {
  const n = syncState.conflicts(sessionId);
  return n ? `${n} conflict${n === 1 ? "" : "s"}` : "";
}

/**
 * The banner above the conversation while the shown session's sync has conflicts:
 * "2 files have conflicting changes — Resolve". Put before #chat by itself.
 */
export class ConflictBanner {
  constructor({ openSync }) {
    this.textEl = h("span", { class: "conflict-banner-text" });
    this.button = h("button", { type: "button", class: "small primary", testid: "conflict-banner-resolve", onclick: () => openSync() }, "Resolve");
    this.el = h("div", { class: "conflict-banner", testid: "conflict-banner", role: "status", hidden: true }, this.textEl, this.button);
    const chat = document.getElementById("chat");
    if (chat && chat.parentNode) chat.parentNode.insertBefore(this.el, chat);
  }

  show(sessionId) {
    const n = sessionId ? syncState.conflicts(sessionId) : 0;
    this.el.hidden = n === 0;
    this.el.dataset.count = String(n);
    this.el.dataset.sessionId = sessionId || "";
    this.textEl.textContent = n ? `${n === 1 ? "1 file has" : `${n} files have`} conflicting changes` : "";
    this.button.setAttribute("aria-label", n ? `Resolve ${n === 1 ? "the conflict" : `the ${n} conflicts`} in the Sync panel` : "Resolve");
  }
}
