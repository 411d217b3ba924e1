// The session list in the sidebar. Keyed: each session keeps its <li> across updates, so a
// status change or a rename from the gateway patches one item and never steals focus.

import { h, clear, formatTime } from "./dom.js";

export class SessionList {
  /**
   * @param {HTMLElement} root  the <ul data-testid="session-list">
   * @param {object} actions    {select(id), rename(id, name), archive(id), unarchive(id), remove(id)}
   */
  constructor(root, actions) {
    this.root = root;
    this.actions = actions;
    this.items = new Map(); // id -> {li, refs, key}
    this.editing = null; // id being renamed
    this.emptyEl = h("li", { class: "session-empty" }, "No sessions yet.");
  }

  render(store, selectedId, showArchived) {
    const sessions = [...store.sessions.values()]
      .filter((s) => showArchived || !s.archived)
      .sort((a, b) => (b.createdAt ?? 0) - (a.createdAt ?? 0) || String(a.name).localeCompare(String(b.name)) || String(a.id).localeCompare(String(b.id)));
    const keep = new Set(sessions.map((s) => s.id));
    for (const [id, item] of this.items) {
      if (!keep.has(id)) {
        item.li.remove();
        this.items.delete(id);
        if (this.editing === id) this.editing = null;
      }
    }
    if (sessions.length === 0) {
      if (!this.emptyEl.isConnected) this.root.appendChild(this.emptyEl);
    } else if (this.emptyEl.isConnected) this.emptyEl.remove();
    let prev = null;
    for (const s of sessions) {
      let item = this.items.get(s.id);
      if (!item) {
        item = this.createItem(s.id);
        this.items.set(s.id, item);
      }
      this.updateItem(item, s, s.id === selectedId, !!store.chats.get(s.id)?.gone);
      const expected = prev ? prev.nextSibling : this.root.firstChild;
      if (expected !== item.li) this.root.insertBefore(item.li, expected);
      prev = item.li;
    }
  }

  createItem(id) {
    const refs = {};
    refs.name = h("span", { class: "session-name", testid: "session-name" });
    refs.sub = h("span", { class: "session-sub" });
    refs.main = h(
      "button",
      { type: "button", class: "session-main", onclick: () => this.actions.select(id), "aria-label": "Open session" },
      refs.name,
      refs.sub,
    );
    refs.badge = h("span", { class: "badge", testid: "session-status" });
    refs.rename = h("button", { type: "button", class: "icon", testid: "session-rename", title: "Rename", "aria-label": "Rename session", onclick: () => this.startRename(id) }, "✎");
    refs.archive = h("button", { type: "button", class: "icon", testid: "session-archive", title: "Archive", "aria-label": "Archive session", onclick: () => this.actions.archive(id) }, "⤓");
    refs.unarchive = h("button", { type: "button", class: "icon", testid: "session-unarchive", title: "Unarchive", "aria-label": "Unarchive session", onclick: () => this.actions.unarchive(id) }, "⤒");
    refs.remove = h("button", { type: "button", class: "icon danger", testid: "session-delete", title: "Delete", "aria-label": "Delete session", onclick: () => this.actions.remove(id) }, "✕");
    refs.tools = h("div", { class: "session-actions" }, refs.rename, refs.archive, refs.unarchive, refs.remove);
    const li = h("li", { class: "session-item", testid: "session-item", dataset: { sessionId: id }, role: "option" }, refs.main, refs.badge, refs.tools);
    // A click anywhere on the item (not on its action buttons or the rename input) opens it.
    li.addEventListener("click", (e) => {
      if (refs.main.contains(e.target) || e.target.closest("button, input")) return;
      this.actions.select(id);
    });
    return { li, refs, key: null };
  }

  updateItem(item, s, selected, gone) {
    const key = JSON.stringify([s.name, s.status, s.agentType, s.archived, s.createdAt, selected, this.editing === s.id, gone]);
    if (key === item.key) return;
    item.key = key;
    const { li, refs } = item;
    li.dataset.status = s.status;
    li.dataset.archived = s.archived ? "1" : "0";
    li.setAttribute("aria-selected", selected ? "true" : "false");
    li.classList.toggle("selected", selected);
    const label = s.name || "Untitled session";
    if (this.editing !== s.id) refs.name.textContent = label;
    refs.main.setAttribute("aria-label", `Open session ${label}`);
    refs.sub.textContent = [s.agentType, formatTime(s.createdAt)].filter(Boolean).join(" · ");
    // A session the gateway no longer knows: its last status means nothing any more.
    const status = gone ? "gone" : s.status;
    li.dataset.gone = gone ? "1" : "0";
    refs.badge.textContent = status;
    refs.badge.dataset.status = status;
    refs.badge.title = gone ? "This session no longer exists on the gateway" : "";
    // Renaming or archiving a session the gateway no longer knows could only fail.
    refs.rename.hidden = gone;
    refs.archive.hidden = gone || !!s.archived;
    refs.unarchive.hidden = gone || !s.archived;
  }

  startRename(id) {
    const item = this.items.get(id);
    if (!item) return;
    this.editing = id;
    const current = item.refs.name.textContent === "Untitled session" ? "" : item.refs.name.textContent;
    const input = h("input", { type: "text", class: "rename-input", testid: "rename-input", value: current, "aria-label": "New session name" });
    let done = false;
    const finish = (commit) => {
      if (done) return;
      done = true;
      this.editing = null;
      item.key = null;
      const name = input.value.trim();
      item.refs.name.textContent = commit && name ? name : current || "Untitled session";
      input.replaceWith(item.refs.main);
      if (commit && name && name !== current) this.actions.rename(id, name);
    };
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        finish(true);
      } else if (e.key === "Escape") {
        e.preventDefault();
        finish(false);
      }
    });
    input.addEventListener("blur", () => finish(true));
    item.refs.main.replaceWith(input);
    input.focus();
    input.select();
  }

  reset() {
    clear(this.root);
    this.items.clear();
  }
}
