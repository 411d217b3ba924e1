// "Jump to latest": shown when the user has scrolled up the chat and something new arrived below.
//
// The ChatView keeps the chat at the bottom while the user is near it; this only covers the case
// where they are not. It reads the chat's geometry only while the user is away from the bottom
// (a scroll listener says so), so a chat followed at the bottom costs nothing per frame.

import { h } from "./dom.js";

const NEAR_PX = 120; // as ChatView.nearBottom

export class JumpButton {
  /**
   * @param {HTMLElement} chat  the scrolling chat (#chat)
   * @param {HTMLElement} slot  where the floating button goes (a zero-height box right after #chat)
   * @param {Node} [own]  a child of the chat that is moved around but is not news (the pending list)
   */
  constructor(chat, slot, own = null) {
    this.chat = chat;
    this.away = false; // the user scrolled up, away from the newest content
    this.seenHeight = 0; // the chat's content height when the user was last at the bottom
    this.newTurns = 0;
    this.countEl = h("span", { class: "jump-count", testid: "jump-count" });
    this.button = h(
      "button",
      { type: "button", class: "jump-latest", testid: "jump-latest", hidden: true, title: "Scroll to the newest messages (End)" },
      this.countEl,
      h("span", null, "Jump to latest ↓"),
    );
    this.button.addEventListener("click", () => this.jump());
    slot.appendChild(this.button);
    chat.addEventListener("scroll", () => this.onScroll(), { passive: true });
    chat.addEventListener("keydown", (e) => {
      if (e.key !== "End" || e.altKey || e.shiftKey || e.metaKey) return;
      const t = e.target;
      if (t !== chat && t.closest && t.closest("input, textarea, select, [contenteditable]")) return;
      e.preventDefault();
      this.jump();
    });
    // New turns appended while the user is away are counted. A rebuilt timeline (the chat
    // cleared and laid out again) is not news.
    new MutationObserver((records) => {
      let rebuilt = false;
      let added = 0;
      for (const r of records) {
        for (const n of r.removedNodes) if (n !== own) rebuilt = true;
        for (const n of r.addedNodes) if (n.nodeType === 1 && n.dataset.testid === "turn" && !n.dataset.earlier) added += 1;
      }
      if (rebuilt) this.reset();
      else if (added && this.away) this.newTurns += added;
    }).observe(chat, { childList: true });
    // Earlier messages laid out above, as the user scrolls up to them: the chat grew, but not below.
    chat.addEventListener("chat-earlier", (e) => {
      this.seenHeight += e.detail && typeof e.detail.addedPx === "number" ? e.detail.addedPx : 0;
    });
  }

  nearBottom() {
    const c = this.chat;
    return c.scrollHeight - c.scrollTop - c.clientHeight < NEAR_PX;
  }

  onScroll() {
    const near = this.nearBottom();
    if (near) this.reset();
    else if (!this.away) {
      this.away = true;
      this.seenHeight = this.chat.scrollHeight;
    }
  }

  reset() {
    this.away = false;
    this.newTurns = 0;
    this.seenHeight = this.chat.scrollHeight;
    if (!this.button.hidden) this.button.hidden = true;
  }

  /** Once per rendered frame: show the button when content grew below a user who scrolled up. */
  check() {
    if (!this.away) return;
    if (this.nearBottom()) {
      this.reset();
      return;
    }
    const grew = this.chat.scrollHeight > this.seenHeight + 1 || this.newTurns > 0;
    if (!grew) return;
    const count = this.newTurns ? `${this.newTurns} new turn${this.newTurns === 1 ? "" : "s"} · ` : "";
    if (this.countEl.textContent !== count) this.countEl.textContent = count;
    if (this.button.hidden) this.button.hidden = false;
  }

  /** Scroll to the newest content (the user's own new message, the latest turn). */
  jump() {
    this.chat.scrollTop = this.chat.scrollHeight;
    this.reset();
  }
}
