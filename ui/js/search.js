// The search box over the session list: as you type it filters the list by title, and asks the
// router for the messages that contain the words (`search_sessions`), listed under the sessions
// as "In messages". Choosing a result opens its session at that turn.

import { h, clear } from "./dom.js";

const ASK_AFTER_MS = 200;
const QUERY_MAX = 200;

export class SessionSearch {
  /**
   * @param {{input: HTMLInputElement, results: HTMLElement, list: HTMLElement}} els
   * @param {object} deps {invoke, filter(text), sessionName(id), open(sessionId, turnId, query), firstSession(): id|null, focusList(): bool}
   */
  constructor(els, deps) {
    this.input = els.input;
    this.results = els.results;
    this.deps = deps;
    this.asked = 0;
    this.timer = null;
    this.heading = h("h2", { class: "search-heading", id: "search-results-title" }, "In messages");
    this.status = h("p", { class: "search-status muted small", testid: "search-status", role: "status" });
    this.list = h("ul", { class: "search-list", testid: "search-results", "aria-labelledby": "search-results-title" });
    clear(this.results);
    this.results.append(this.heading, this.status, this.list);
    this.results.hidden = true;
    this.input.maxLength = QUERY_MAX;
    this.input.addEventListener("input", () => this.changed());
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && this.input.value) {
        e.preventDefault();
        e.stopPropagation();
        this.clear();
      } else if (e.key === "ArrowDown") {
        if (this.deps.focusList()) e.preventDefault();
      } else if (e.key === "Enter") {
        e.preventDefault();
        const first = this.deps.firstSession();
        if (first) this.deps.open(first, null, null);
        else this.list.querySelector("button")?.focus();
      }
    });
  }

  focus() {
    this.input.focus();
    this.input.select();
  }

  clear() {
    this.input.value = "";
    this.changed();
  }

  changed() {
    const q = this.input.value.trim();
    this.deps.filter(q);
    clearTimeout(this.timer);
    const run = ++this.asked;
    if (!q) {
      this.results.hidden = true;
      clear(this.list);
      return;
    }
    this.timer = setTimeout(() => this.ask(q, run), ASK_AFTER_MS);
  }

  async ask(query, run) {
    let found;
    try {
      found = await this.deps.invoke("search_sessions", { query, limit: 50 });
    } catch (err) {
      if (run !== this.asked) return;
      this.show([], `Messages could not be searched: ${err && err.message ? err.message : err}`);
      return;
    }
    if (run !== this.asked) return; // typed on meanwhile
    const results = Array.isArray(found?.results) ? found.results : [];
    const none = results.length ? "" : "No message contains these words.";
    const beyond = typeof found?.notSearched === "number" && found.notSearched > 0 ? found.notSearched : 0;
    const notSearched = beyond
      ? ` The earliest messages of ${beyond === 1 ? "a long session are" : `${beyond} long sessions are`} on the gateway and were not searched.`
      : "";
    this.show(results, ((found?.more ? "Showing the first 50 matches." : none) + notSearched).trim(), query);
  }

  show(results, note, query = "") {
    this.results.hidden = false;
    this.status.textContent = note;
    this.status.hidden = !note;
    clear(this.list);
    for (const r of results) {
      const text = String(r.snippet ?? "");
      const a = Math.max(0, Math.min(text.length, r.matchStart | 0));
      const b = Math.max(a, Math.min(text.length, r.matchEnd | 0));
      const who = r.where === "user" ? "You" : "Agent";
      const button = h(
        "button",
        { type: "button", class: "search-result", testid: "search-result", dataset: { sessionId: r.sessionId, turnId: r.turnId } },
        h("span", { class: "search-result-session" }, this.deps.sessionName(r.sessionId)),
        h("span", { class: "search-result-snippet" }, h("span", { class: "muted" }, `${who}: `), text.slice(0, a), h("mark", null, text.slice(a, b)), text.slice(b)),
      );
      button.addEventListener("click", () => this.deps.open(r.sessionId, r.turnId, query));
      this.list.appendChild(h("li", null, button));
    }
  }
}

/**
 * Scroll the chat to a turn once it is there (a session's past may still be loading); `then`
 * gets its element. `reveal()` asks the chat to lay the turn out when it is in the model but
 * above what is shown; it is asked again whenever the chat changes. Gives up after `timeoutMs`.
 */
export function whenTurnShown(chat, turnId, then, timeoutMs = 15000, reveal = () => {}) {
  const selector = `[data-testid='turn'][data-turn-id='${CSS.escape(turnId)}']`;
  reveal();
  const found = chat.querySelector(selector);
  if (found) {
    then(found);
    return;
  }
  const observer = new MutationObserver(() => {
    const el = chat.querySelector(selector);
    if (!el) {
      reveal();
      return;
    }
    observer.disconnect();
    clearTimeout(timer);
    then(el);
  });
  const timer = setTimeout(() => observer.disconnect(), timeoutMs);
  observer.observe(chat, { childList: true, subtree: true });
}
