// Find in the chat (Ctrl+F): a bar over the chat that highlights every match of its text and
// moves between them. Matches are painted with the CSS Custom Highlight API (`CSS.highlights`):
// ranges over the chat's text nodes, so the chat's own DOM is never touched and its views keep
// patching it as they like. A match split across elements (half of it bold) is not found.

import { h } from "./dom.js";

const HL_ALL = "dim-find";
const HL_CURRENT = "dim-find-current";
const canHighlight = typeof CSS !== "undefined" && CSS.highlights && typeof Highlight === "function";

export class FindBar {
  /** @param {HTMLElement} chat  the scrolling chat element; the bar goes right above it */
  constructor(chat) {
    this.chat = chat;
    this.ranges = [];
    this.current = -1;
    this.returnFocus = null;
    this.input = h("input", { type: "search", class: "find-input", testid: "find-input", placeholder: "Find in this chat", "aria-label": "Find in this chat", autocomplete: "off", spellcheck: "false" });
    this.count = h("output", { class: "find-count muted small", testid: "find-count", "aria-live": "polite" });
    const btn = (testid, label, text, run) => h("button", { type: "button", class: "icon", testid, title: label, "aria-label": label, onclick: run }, text);
    this.el = h(
      "div",
      { class: "find-bar", testid: "find-bar", role: "search", "aria-label": "Find in this chat", hidden: true },
      this.input,
      this.count,
      btn("find-prev", "Previous match (Shift+Enter)", "↑", () => this.step(-1)),
      btn("find-next", "Next match (Enter)", "↓", () => this.step(1)),
      btn("find-close", "Close (Esc)", "✕", () => this.close()),
    );
    chat.before(this.el);
    let pending = null;
    this.input.addEventListener("input", () => {
      clearTimeout(pending);
      pending = setTimeout(() => this.search(0), 120);
    });
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        clearTimeout(pending);
        if (this.query !== this.input.value) this.search(0);
        else this.step(e.shiftKey ? -1 : 1);
      }
    });
    this.el.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        e.stopPropagation();
        this.close();
      }
    });
    // The chat streams and switches sessions under an open bar: count again, keeping the place.
    let again = null;
    this.observer = new MutationObserver(() => {
      if (again) return;
      again = setTimeout(() => {
        again = null;
        if (!this.el.hidden) this.search(Math.max(0, this.current), false);
      }, 250);
    });
    this.query = "";
  }

  get isOpen() {
    return !this.el.hidden;
  }

  open(text = null) {
    if (this.el.hidden) {
      const active = document.activeElement;
      this.returnFocus = active && active !== document.body && !this.el.contains(active) ? active : null;
      this.el.hidden = false;
      this.observer.observe(this.chat, { childList: true, subtree: true, characterData: true });
    }
    if (text !== null) {
      this.input.value = text;
      this.search(0);
    } else if (this.input.value) this.search(Math.max(0, this.current), false);
    this.input.focus();
    this.input.select();
  }

  close() {
    if (this.el.hidden) return;
    this.el.hidden = true;
    this.observer.disconnect();
    this.ranges = [];
    this.current = -1;
    this.paint();
    const back = this.returnFocus;
    this.returnFocus = null;
    if (back && back.isConnected) back.focus();
    else this.chat.focus();
  }

  /** Find every match; `at` is the match to make current (clamped), scrolled to when `scroll`. */
  search(at = 0, scroll = true) {
    this.query = this.input.value;
    const needle = this.query.toLowerCase();
    this.ranges = needle ? findRanges(this.chat, needle) : [];
    this.current = this.ranges.length ? Math.min(at, this.ranges.length - 1) : -1;
    this.paint(scroll);
  }

  /** Make the first match inside `element` current (a search result's turn). */
  focusWithin(element) {
    const i = this.ranges.findIndex((r) => element.contains(r.startContainer));
    if (i >= 0) {
      this.current = i;
      this.paint(true);
    } else element.scrollIntoView({ block: "center" });
  }

  step(delta) {
    if (!this.ranges.length) return;
    this.current = (this.current + delta + this.ranges.length) % this.ranges.length;
    this.paint(true);
  }

  paint(scroll = false) {
    const n = this.ranges.length;
    this.count.textContent = !this.query || this.el.hidden ? "" : n ? `${this.current + 1} of ${n}` : "No matches";
    this.el.dataset.count = String(n);
    this.el.dataset.current = String(this.current + 1);
    if (canHighlight) {
      if (n) {
        CSS.highlights.set(HL_ALL, new Highlight(...this.ranges));
        CSS.highlights.set(HL_CURRENT, new Highlight(this.ranges[this.current]));
      } else {
        CSS.highlights.delete(HL_ALL);
        CSS.highlights.delete(HL_CURRENT);
      }
    }
    if (scroll && n) {
      const node = this.ranges[this.current].startContainer.parentElement;
      // A match inside a collapsed block (thinking, a tool's arguments) is shown by opening it.
      for (let d = node.closest("details:not([open])"); d; d = d.parentElement?.closest("details:not([open])")) d.open = true;
      node.scrollIntoView({ block: "center" });
    }
  }
}

/** Ranges over the text nodes under `root` that contain `needle` (lower case), in order. */
export function findRanges(root, needle) {
  const out = [];
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
    acceptNode(node) {
      const parent = node.parentElement;
      if (!parent || !node.data) return NodeFilter.FILTER_REJECT;
      // What a collapsed block hides is still found (and opened when it is the current one).
      const closed = parent.closest("details:not([open])");
      if (closed && !parent.closest("summary")) return NodeFilter.FILTER_ACCEPT;
      return parent.getClientRects().length ? NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_REJECT;
    },
  });
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.data.toLowerCase();
    for (let i = text.indexOf(needle); i !== -1; i = text.indexOf(needle, i + needle.length)) {
      const r = new Range();
      r.setStart(node, i);
      r.setEnd(node, i + needle.length);
      out.push(r);
    }
  }
  return out;
}
