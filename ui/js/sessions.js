// The session list in the sidebar. Keyed: each session keeps its <li> across updates, so a
// status change or a rename from the gateway patches one item and never steals focus.
//
// A listbox with a roving tabindex: the whole list is one Tab stop; Up/Down/Home/End move,
// Enter opens, Shift+Enter opens in a new window, F2 renames, Delete asks to delete, Shift+F10 (or
// the context-menu key, or a right click) opens "More actions". The row's small actions are a mouse shortcut, shown on
// hover only: they are not buttons and stay out of the accessibility tree, because an option may
// hold nothing focusable and the keys above reach the same actions.

import { sessionStateWords } from "./words.js";
import { ATTENTION_WORDS } from "./attention.js";
import { h, clear, formatWhen, exactTime } from "./dom.js";

/** The latest time the page knows something happened in a session (epoch ms), or 0. */
export function activityOf(s) {
  return Math.max(0, ...[s.createdAt, s.updatedAt, s.activityAt].filter((t) => typeof t === "number" && isFinite(t)));
}

/** The page's one way of saying when (dom.js formatWhen), short for a row: "just now",
 * "2 min ago", "today 14:02", "yesterday", "4 Dec". */
export function relativeTime(ms, now = Date.now()) {
  if (typeof ms !== "number" || !isFinite(ms) || ms <= 0) return "";
  return formatWhen(ms, now, { short: true });
}

/** Plain names for the agent types a person picks from. */
export const AGENT_LABELS = { echo: "Echo (test agent)", "coding-agent": "Coding agent" };

export function agentLabel(type) {
  return AGENT_LABELS[type] || type || "";
}

export class SessionList {
  /**
   * @param {HTMLElement} root  the <ul data-testid="session-list" role="listbox">
   * @param {object} actions    {select(id), rename(id, name), archive(id), unarchive(id), remove(id), openWindow(id)?}
   */
  constructor(root, actions) {
    this.root = root;
    this.actions = actions;
    this.items = new Map(); // id -> {li, refs, key}
    this.order = []; // ids as shown
    this.editing = null; // id being renamed
    this.activeId = null; // the row that holds the list's Tab stop
    this.filter = "";
    // Shown alone in the list, which is then a plain list: a listbox must hold options.
    this.emptyEl = h("li", { class: "session-empty" }, "No sessions yet.");
    this.menu = null;
    root.addEventListener("keydown", (e) => this.onKeydown(e));
    root.addEventListener("focusin", (e) => {
      const li = e.target.closest?.(".session-item");
      if (li && li.dataset.sessionId) this.setActive(li.dataset.sessionId);
    });
    // The relative times age: refresh their words, nothing else.
    setInterval(() => this.refreshTimes(), 30_000);
  }

  /** Only sessions whose title contains `text` (any case) are listed. */
  setFilter(text) {
    this.filter = (text || "").trim().toLowerCase();
  }

  /** The ids listed, in order (what the filter and the archive toggle leave). */
  visibleIds() {
    return this.order.slice();
  }

  render(store, selectedId, showArchived) {
    this.lastStore = store;
    const filter = this.filter;
    const sessions = [...store.sessions.values()]
      .filter((s) => showArchived || !s.archived)
      .filter((s) => !filter || (s.name || "Untitled session").toLowerCase().includes(filter))
      .sort((a, b) => activityOf(b) - activityOf(a) || String(a.name).localeCompare(String(b.name)) || String(a.id).localeCompare(String(b.id)));
    const keep = new Set(sessions.map((s) => s.id));
    for (const [id, item] of this.items) {
      if (!keep.has(id)) {
        item.li.remove();
        this.items.delete(id);
        if (this.editing === id) this.editing = null;
      }
    }
    this.order = sessions.map((s) => s.id);
    this.emptyEl.textContent = filter ? "No session title matches." : "No sessions yet.";
    if (sessions.length === 0) {
      this.root.removeAttribute("role");
      if (!this.emptyEl.isConnected) this.root.appendChild(this.emptyEl);
    } else {
      this.root.setAttribute("role", "listbox");
      if (this.emptyEl.isConnected) this.emptyEl.remove();
    }
    // The Tab stop follows the open session when it changes, and stays where the arrows put it.
    if (selectedId !== this.lastSelected && keep.has(selectedId)) this.activeId = selectedId;
    this.lastSelected = selectedId;
    if (!keep.has(this.activeId)) this.activeId = keep.has(selectedId) ? selectedId : sessions[0]?.id ?? null;
    const now = Date.now();
    let prev = null;
    for (const s of sessions) {
      let item = this.items.get(s.id);
      if (!item) {
        item = this.createItem(s.id);
        this.items.set(s.id, item);
      }
      this.updateItem(item, s, s.id === selectedId, !!store.chats.get(s.id)?.gone, now);
      const expected = prev ? prev.nextSibling : this.root.firstChild;
      if (expected !== item.li) {
        // Moving the focused row would blur it: move the others around it instead.
        const hadFocus = item.li.contains(document.activeElement);
        this.root.insertBefore(item.li, expected);
        if (hadFocus && !item.li.contains(document.activeElement)) item.li.focus({ preventScroll: true });
      }
      prev = item.li;
    }
  }

  createItem(id) {
    const refs = {};
    refs.name = h("span", { class: "session-name", testid: "session-name" });
    refs.time = h("time", { class: "session-time", testid: "session-time" });
    refs.agent = h("span", { class: "session-agent" });
    refs.sub = h("span", { class: "session-sub" }, refs.agent, refs.time);
    refs.main = h("span", { class: "session-main" }, refs.name, refs.sub);
    refs.badge = h("span", { class: "badge", testid: "session-status" });
    // A dot for a session that needs the user; its words are for screen readers (and the tooltip).
    refs.attention = h("span", { class: "attention-dot", testid: "session-attention", hidden: true }, h("span", { class: "sr-only" }));
    refs.conflicts = h("span", { class: "badge conflict", testid: "session-conflicts", hidden: true });
    // Mouse only (see the top of this file): a focusable control in an option is one a screen
    // reader can land on but not name in the list.
    const act = (testid, title, text, run, cls = "") =>
      h(
        "span",
        {
          class: `session-action${cls ? ` ${cls}` : ""}`,
          testid,
          title,
          onclick: (e) => {
            e.stopPropagation();
            run(e);
          },
        },
        text,
      );
    refs.rename = act("session-rename", "Rename (F2)", "✎", () => this.startRename(id));
    refs.archive = act("session-archive", "Archive", "⤓", () => this.actions.archive(id));
    refs.unarchive = act("session-unarchive", "Unarchive", "⤒", () => this.actions.unarchive(id));
    refs.remove = act("session-delete", "Delete (Delete key)", "✕", () => this.actions.remove(id), "danger");
    refs.more = act("session-more", "More actions (Shift+F10)", "⋯", (e) => this.openMenu(id, e.currentTarget));
    refs.tools = h("span", { class: "session-actions", "aria-hidden": "true" }, refs.rename, refs.archive, refs.unarchive, refs.remove, refs.more);
    const li = h(
      "li",
      {
        class: "session-item",
        testid: "session-item",
        dataset: { sessionId: id },
        role: "option",
        tabindex: "-1",
        "aria-keyshortcuts": "Enter Shift+Enter F2 Delete Shift+F10",
      },
      refs.main,
      refs.attention,
      refs.conflicts,
      refs.badge,
      refs.tools,
    );
    li.addEventListener("click", (e) => {
      if (e.target.closest("input")) return;
      this.setActive(id);
      this.actions.select(id);
    });
    li.addEventListener("contextmenu", (e) => {
      if (e.target.closest("input")) return;
      e.preventDefault();
      this.openMenu(id, null, e.clientX, e.clientY);
    });
    return { li, refs, key: null };
  }

  updateItem(item, s, selected, gone, now = Date.now()) {
    const at = activityOf(s);
    const when = relativeTime(at, now);
    const active = this.activeId === s.id;
    const conflicts = this.actions.conflicts ? this.actions.conflicts(s.id) : "";
    const attention = this.actions.attention ? this.actions.attention(s.id) : "";
    const key = JSON.stringify([s.name, s.status, s.agentType, s.archived, at, when, selected, active, this.editing === s.id, gone, conflicts, attention]);
    if (key === item.key) return;
    item.key = key;
    const { li, refs } = item;
    li.dataset.status = s.status;
    li.dataset.archived = s.archived ? "1" : "0";
    li.dataset.activity = String(at);
    li.setAttribute("aria-selected", selected ? "true" : "false");
    li.tabIndex = active ? 0 : -1;
    li.classList.toggle("selected", selected);
    const label = s.name || "Untitled session";
    if (this.editing !== s.id) refs.name.textContent = label;
    refs.agent.textContent = agentLabel(s.agentType);
    refs.time.textContent = when;
    refs.time.hidden = !when;
    refs.time.dateTime = at ? new Date(at).toISOString() : "";
    refs.time.title = at ? `Last activity: ${formatWhen(at)} (${exactTime(at)})` : "";
    // A session the gateway no longer knows: its last status means nothing any more.
    const status = gone ? "gone" : s.status;
    li.dataset.gone = gone ? "1" : "0";
    refs.badge.textContent = sessionStateWords(status);
    refs.badge.dataset.status = status;
    refs.badge.title = gone ? "This session no longer exists on the gateway" : "";
    li.dataset.attention = attention;
    refs.attention.hidden = !attention;
    refs.attention.dataset.reason = attention;
    refs.attention.title = attention ? ATTENTION_WORDS[attention] : "";
    refs.attention.firstChild.textContent = attention ? `, ${ATTENTION_WORDS[attention].toLowerCase()}` : "";
    refs.conflicts.textContent = conflicts;
    refs.conflicts.hidden = !conflicts;
    refs.conflicts.title = conflicts ? "Files of this session changed on both sides: open its Sync tab to resolve" : "";
    // Renaming or archiving a session the gateway no longer knows could only fail.
    refs.rename.hidden = gone;
    refs.archive.hidden = gone || !!s.archived;
    refs.unarchive.hidden = gone || !s.archived;
    li.dataset.canRename = gone ? "0" : "1";
  }

  refreshTimes() {
    const store = this.lastStore;
    if (!store) return;
    const now = Date.now();
    for (const [id, item] of this.items) {
      const s = store.sessions.get(id);
      if (!s) continue;
      const when = relativeTime(activityOf(s), now);
      if (item.refs.time.textContent !== when) {
        item.refs.time.textContent = when;
        item.key = null; // the next render compares against what is shown now
      }
    }
  }

  setActive(id) {
    if (this.activeId === id) return;
    const old = this.items.get(this.activeId);
    if (old) old.li.tabIndex = -1;
    this.activeId = id;
    const now = this.items.get(id);
    if (now) now.li.tabIndex = 0;
  }

  /** Put the keyboard on a row (the selected one, else the first). */
  focus(id = null) {
    const target = id && this.items.has(id) ? id : this.items.has(this.activeId) ? this.activeId : this.order[0];
    const item = target && this.items.get(target);
    if (!item) return false;
    this.setActive(target);
    item.li.focus();
    item.li.scrollIntoView({ block: "nearest" });
    return true;
  }

  onKeydown(e) {
    if (e.target.closest("input")) return; // the rename box has its own keys
    const li = e.target.closest(".session-item");
    const id = li?.dataset.sessionId;
    if (!id) return;
    const at = this.order.indexOf(id);
    const move = (to) => {
      e.preventDefault();
      const next = this.order[Math.max(0, Math.min(this.order.length - 1, to))];
      if (next) this.focus(next);
    };
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    switch (e.key) {
      case "ArrowDown":
        return move(at + 1);
      case "ArrowUp":
        return move(at - 1);
      case "Home":
        return move(0);
      case "End":
        return move(this.order.length - 1);
      case "Enter":
      case " ":
        e.preventDefault();
        if (e.key === "Enter" && e.shiftKey && this.actions.openWindow) this.actions.openWindow(id);
        else this.actions.select(id);
        return;
      case "F2":
        e.preventDefault();
        if (li.dataset.canRename !== "0") this.startRename(id);
        return;
      case "Delete":
        e.preventDefault();
        this.actions.remove(id);
        return;
      case "F10":
        if (!e.shiftKey) return;
      // fall through: Shift+F10 is the keyboard's right click
      case "ContextMenu": {
        e.preventDefault();
        this.openMenu(id, li);
        return;
      }
    }
  }

  /** "More actions" for a session: a menu next to `anchor` (or at x, y). */
  openMenu(id, anchor, x, y) {
    this.closeMenu(false);
    const item = this.items.get(id);
    const s = this.lastStore?.sessions.get(id);
    if (!item || !s) return;
    const gone = item.li.dataset.gone === "1";
    const entries = [
      ["open", "Open", () => this.actions.select(id)],
      this.actions.openWindow && ["new-window", "Open in new window", () => this.actions.openWindow(id)],
      !gone && ["rename", "Rename…", () => this.startRename(id)],
      !gone && !s.archived && ["archive", "Archive", () => this.actions.archive(id)],
      !gone && s.archived && ["unarchive", "Unarchive", () => this.actions.unarchive(id)],
      ["delete", "Delete session…", () => this.actions.remove(id)],
    ].filter(Boolean);
    const buttons = entries.map(([action, label, run]) =>
      h(
        "button",
        {
          type: "button",
          role: "menuitem",
          tabindex: "-1",
          class: `session-menu-item${action === "delete" ? " danger" : ""}`,
          testid: "session-menu-item",
          dataset: { action },
          onclick: () => {
            this.closeMenu(action !== "rename" && action !== "open");
            run();
          },
        },
        label,
      ),
    );
    const menu = h("div", { class: "session-menu", role: "menu", testid: "session-menu", "aria-label": `Actions for ${item.refs.name.textContent}` }, ...buttons);
    menu.addEventListener("keydown", (e) => {
      const i = buttons.indexOf(document.activeElement);
      const go = (n) => {
        e.preventDefault();
        buttons[(n + buttons.length) % buttons.length].focus();
      };
      if (e.key === "ArrowDown") go(i + 1);
      else if (e.key === "ArrowUp") go(i - 1);
      else if (e.key === "Home") go(0);
      else if (e.key === "End") go(buttons.length - 1);
      else if (e.key === "Escape") {
        e.preventDefault();
        e.stopPropagation();
        this.closeMenu(true);
      } else if (e.key === "Tab") this.closeMenu(false);
    });
    document.body.appendChild(menu);
    const box = (anchor || item.li).getBoundingClientRect();
    const left = typeof x === "number" ? x : box.left;
    const top = typeof y === "number" ? y : box.bottom;
    menu.style.left = `${Math.max(4, Math.min(left, innerWidth - menu.offsetWidth - 4))}px`;
    menu.style.top = `${Math.max(4, Math.min(top, innerHeight - menu.offsetHeight - 4))}px`;
    const outside = (e) => {
      if (!menu.contains(e.target)) this.closeMenu(false);
    };
    setTimeout(() => document.addEventListener("pointerdown", outside, true));
    this.menu = { el: menu, id, outside };
    buttons[0].focus();
  }

  closeMenu(refocus) {
    const m = this.menu;
    if (!m) return;
    this.menu = null;
    document.removeEventListener("pointerdown", m.outside, true);
    m.el.remove();
    if (refocus) this.focus(m.id);
  }

  startRename(id) {
    const item = this.items.get(id);
    if (!item || this.editing === id) return;
    this.editing = id;
    const current = item.refs.name.textContent === "Untitled session" ? "" : item.refs.name.textContent;
    const input = h("input", { type: "text", class: "rename-input", testid: "rename-input", value: current, "aria-label": "New session name" });
    let done = false;
    const finish = (commit, refocus) => {
      if (done) return;
      done = true;
      this.editing = null;
      item.key = null;
      const name = input.value.trim();
      item.refs.name.textContent = commit && name ? name : current || "Untitled session";
      input.replaceWith(item.refs.main);
      if (refocus) this.focus(id);
      if (commit && name && name !== current) this.actions.rename(id, name);
    };
    input.addEventListener("keydown", (e) => {
      e.stopPropagation(); // the list's keys (Delete, Home, End, Space) are the input's here
      if (e.key === "Enter") {
        e.preventDefault();
        finish(true, true);
      } else if (e.key === "Escape") {
        e.preventDefault();
        finish(false, true);
      }
    });
    input.addEventListener("click", (e) => e.stopPropagation());
    input.addEventListener("blur", () => finish(true, false));
    item.refs.main.replaceWith(input);
    input.focus();
    input.select();
  }

  reset() {
    clear(this.root);
    this.items.clear();
  }
}
