// The composer: the message box, Send / Queue / Stop, and the user's messages that no turn shows yet.
//
// A message shows at once as a bubble at the end of the conversation ("Sending…"), and goes when
// the turn the gateway started for it shows its user text. While the session's turn runs, Stop is
// the primary button (Esc stops too) and a new message is queued in the page: it is sent when the
// stores say the turn has ended. Queued and unsent messages are kept in sessionStorage, so a
// reload loses none; a refused one stays with Retry / Edit. The model lives in the store
// (state.js: pendingMessages and friends); this module renders it and sends.

import { h, clear } from "./dom.js";
import {
  pendingMessages,
  restorePendingMessages,
  addPendingMessage,
  updatePendingMessage,
  removePendingMessage,
  settlePendingMessages,
  sessionTurnRunning,
  sessionIsGone,
} from "./state.js";
import { JumpButton } from "./jumpbutton.js";

const STORAGE_KEY = "dim-desktop.pending";
const RACE_RETRY_MS = 1500; // the gateway still ran a turn the page saw end: try again after this
const LINE_PX = 20; // one line of the message box (14 px × 1.45)

const PLACEHOLDER_IDLE = "Message the agent — Enter to send, Shift+Enter for a new line";
const PLACEHOLDER_BUSY = "The agent is working — Enter queues your message, Esc stops the agent";
const PLACEHOLDER_GONE = "This session no longer exists on the gateway";

function newId() {
  if (typeof crypto !== "undefined" && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  return `m-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

/** Why a message was not sent, in words a user can act on. */
function failureText(err) {
  if (!err) return "";
  if (err.code === "NETWORK") return "the app could not be reached";
  if (err.code === "UNAUTHORIZED" || err.code === "FORBIDDEN") return "this page is not authorized";
  if (err.code === "NOT_CONNECTED") return "not connected to the gateway";
  return err.message || err.code || "it was refused";
}

export class Composer {
  /**
   * @param {object} ctx {store, invoke, schedule(), selected() -> sessionId, ready() -> bool,
   *   stop() (stop the selected session's turn), failed(err) (a refused send, for auth problems)}
   * @param {object} els {form, input, send, stop, chat, jumpSlot}
   */
  constructor(ctx, els) {
    this.ctx = ctx;
    this.els = els;
    this.inflight = new Set(); // ids whose run_turn this page has sent and not yet heard back
    this.shownV = -1;
    this.shownSession = undefined;
    this.savedV = -1;
    this.timer = null;
    this.listEl = h("div", { class: "pending-list", testid: "pending-messages", "aria-label": "Your messages not yet in the conversation" });
    this.jump = new JumpButton(els.chat, els.jumpSlot, this.listEl);
    try {
      const saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "[]");
      restorePendingMessages(ctx.store, saved);
    } catch (_) {
      /* nothing kept, or unreadable: nothing to restore */
    }
    els.input.addEventListener("input", () => {
      this.autosize();
      this.renderButtons();
    });
    document.addEventListener("keydown", (e) => this.onEscape(e));
    new ResizeObserver(() => this.autosize()).observe(els.chat);
    this.autosize();
  }

  // -------------------------------------------------------------------------------------------
  // Sending

  /** Enter or Send: the message shows at once; it is sent now, or queued while a turn runs. */
  submit() {
    const id = this.ctx.selected();
    const text = this.els.input.value;
    if (!id || !text.trim() || sessionIsGone(this.ctx.store, id)) return;
    this.els.input.value = "";
    this.autosize();
    this.sendText(id, text);
  }

  /** Send `text` to a session as a new message, as if typed (a message's Retry, say). */
  sendText(sessionId, text) {
    const { store } = this.ctx;
    if (!sessionId || !text || !text.trim() || sessionIsGone(store, sessionId)) return;
    const queue = this.mustWait(sessionId);
    const item = addPendingMessage(store, { sessionId, text, state: queue ? "queued" : "sending", id: newId(), clientTurnId: newId() });
    if (!queue) this.dispatch(item); // before render(): its pump would send it a second time
    this.render();
    this.jump.jump(); // the user's own message is what they look at next
  }

  /**
   * Whether a new message of this session waits: its turn runs, or messages before it are not
   * through. Those the bridge holds for the connection (offline) do not hold it up: the bridge
   * sends its queue in order, each after the turn before it.
   */
  mustWait(sessionId) {
    if (sessionTurnRunning(this.ctx.store, sessionId)) return true;
    return pendingMessages(this.ctx.store, sessionId).some((m) => m.state !== "failed" && m.state !== "offline");
  }

  async dispatch(item) {
    const { store } = this.ctx;
    this.inflight.add(item.id);
    updatePendingMessage(store, item.id, { state: "sending", error: null });
    this.ctx.schedule();
    const args = { sessionId: item.sessionId, text: item.text };
    if (item.clientTurnId) args.clientTurnId = item.clientTurnId;
    try {
      const result = await this.ctx.invoke("run_turn", args);
      if (result && result.type === "queued") updatePendingMessage(store, item.id, { state: "offline", outboxId: result.outboxId ?? null });
      else updatePendingMessage(store, item.id, { state: "sent", turnId: typeof result?.turnId === "string" ? result.turnId : null });
    } catch (err) {
      if (err && err.gatewayCode === "TurnInProgress") {
        // The gateway still runs a turn the page had not heard of yet (or had just seen end):
        // the message waits for it like any queued one. Not an error the user has to see.
        updatePendingMessage(store, item.id, { state: "queued", notBefore: Date.now() + RACE_RETRY_MS });
        this.wakeAt(RACE_RETRY_MS);
      } else {
        updatePendingMessage(store, item.id, { state: "failed", error: failureText(err) });
        this.ctx.failed(err);
      }
    } finally {
      this.inflight.delete(item.id);
      this.ctx.schedule();
    }
  }

  wakeAt(ms) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.ctx.schedule(), ms + 20);
  }

  /**
   * Send what may go now: per session, the oldest queued message once nothing before it is on its
   * way and no turn runs. A message that was on its way when the page reloaded is sent again with
   * its clientTurnId (the gateway answers a repeat with the turn it already started).
   */
  pump() {
    const { store } = this.ctx;
    if (!this.ctx.ready()) return;
    const list = pendingMessages(store);
    const seen = new Set();
    const now = Date.now();
    for (const m of list) {
      if (seen.has(m.sessionId)) continue;
      if (m.state === "failed" || m.state === "offline") continue;
      seen.add(m.sessionId); // only the oldest live message of a session may move
      if (this.inflight.has(m.id) || m.state === "sent") continue;
      if (!store.sessions.has(m.sessionId) && !store.chats.has(m.sessionId)) continue;
      if (sessionIsGone(store, m.sessionId) || sessionTurnRunning(store, m.sessionId)) continue;
      if (m.notBefore > now) {
        this.wakeAt(m.notBefore - now);
        continue;
      }
      this.dispatch(m);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Actions on a bubble

  edit(item) {
    removePendingMessage(this.ctx.store, item.id);
    const box = this.els.input;
    box.value = box.value.trim() ? `${item.text}\n${box.value}` : item.text;
    this.autosize();
    box.focus();
    box.setSelectionRange(item.text.length, item.text.length);
    this.ctx.schedule();
  }

  cancel(item) {
    removePendingMessage(this.ctx.store, item.id);
    this.ctx.schedule();
    this.els.input.focus();
  }

  retry(item) {
    const { store } = this.ctx;
    if (this.mustWaitBehind(item)) updatePendingMessage(store, item.id, { state: "queued", error: null, notBefore: 0 });
    else this.dispatch(item);
    this.ctx.schedule();
  }

  mustWaitBehind(item) {
    if (sessionTurnRunning(this.ctx.store, item.sessionId)) return true;
    for (const m of pendingMessages(this.ctx.store, item.sessionId)) {
      if (m === item) return false;
      if (m.state !== "failed") return true;
    }
    return false;
  }

  // -------------------------------------------------------------------------------------------
  // Keyboard

  /** Esc stops the selected session's turn, from the message box or anywhere in the chat. */
  onEscape(e) {
    if (e.key !== "Escape" || e.defaultPrevented || e.isComposing) return;
    if (document.querySelector("dialog[open]")) return;
    if (document.querySelector(".conn-popover:not([hidden])")) return; // Esc closes it first
    const t = e.target;
    const own = t === this.els.input || (t && t.id === "steer-input");
    if (!own && t !== document.body) {
      if (!t.closest || !t.closest("main")) return;
      if (t.closest("input, textarea, select, [contenteditable]")) return; // their own Esc
    }
    const id = this.ctx.selected();
    if (!id || !sessionTurnRunning(this.ctx.store, id)) return;
    e.preventDefault();
    this.ctx.stop();
  }

  // -------------------------------------------------------------------------------------------
  // Rendering (once per frame, from the app's render loop)

  /**
   * A message the bridge held for the connection has left its queue: sent once connected (its
   * turn is on its way), else cancelled there (its Cancel in the queued-commands strip).
   */
  followOutbox() {
    const { store } = this.ctx;
    if (!pendingMessages(store).some((m) => m.state === "offline")) return;
    const held = new Set((store.outbox || []).map((o) => o.id));
    const connected = store.connection && store.connection.state === "connected";
    for (const m of pendingMessages(store).slice()) {
      if (m.state !== "offline" || m.outboxId === null || m.outboxId === undefined) continue;
      if (held.has(m.outboxId)) {
        m.inOutbox = true; // its answer can come before the outbox event that lists it
        continue;
      }
      if (!m.inOutbox) continue;
      if (connected) updatePendingMessage(store, m.id, { state: "sent" });
      else removePendingMessage(store, m.id);
    }
  }

  render() {
    const { store } = this.ctx;
    this.followOutbox();
    settlePendingMessages(store);
    this.pump();
    const chat = this.els.chat;
    // The ChatView appends new entries at the end of the chat and clears it on a new session:
    // the pending bubbles are put back after the last entry.
    if (chat.lastChild !== this.listEl) chat.appendChild(this.listEl);
    const sessionId = this.ctx.selected();
    const v = store.pendingV || 0;
    if (v !== this.shownV || sessionId !== this.shownSession) {
      this.shownV = v;
      this.shownSession = sessionId;
      this.renderList(sessionId);
    }
    if (v !== this.savedV) {
      this.savedV = v;
      this.save();
    }
    this.renderButtons();
    this.jump.check();
  }

  renderList(sessionId) {
    const items = sessionId ? pendingMessages(this.ctx.store, sessionId) : [];
    const stick = this.jump.nearBottom();
    clear(this.listEl);
    for (const item of items) this.listEl.appendChild(this.renderItem(item));
    this.listEl.hidden = items.length === 0;
    if (stick) this.els.chat.scrollTop = this.els.chat.scrollHeight;
  }

  renderItem(item) {
    const button = (label, testid, aria, onClick) => {
      const b = h("button", { type: "button", class: "small ghost", testid, "aria-label": aria }, label);
      b.addEventListener("click", onClick);
      return b;
    };
    let words = "";
    const actions = [];
    switch (item.state) {
      case "sending":
        words = "Sending…";
        break;
      case "sent":
        words = "Sent";
        break;
      case "offline":
        words = "Not connected — sends when the connection is back";
        break;
      case "queued":
        words = "Queued — sends when the agent finishes";
        actions.push(button("Edit", "pending-edit", "Edit the queued message", () => this.edit(item)));
        actions.push(button("Cancel", "pending-cancel", "Cancel the queued message", () => this.cancel(item)));
        break;
      case "failed":
        words = item.error ? `Not sent: ${item.error}` : "Not sent";
        actions.push(button("Retry", "pending-retry", "Send the message again", () => this.retry(item)));
        actions.push(button("Edit", "pending-edit", "Edit the message", () => this.edit(item)));
        break;
      default:
        words = item.state;
    }
    return h(
      "div",
      { class: "pending-message", testid: "pending-message", dataset: { state: item.state, pendingId: item.id } },
      h("div", { class: "bubble user-bubble pending-text", testid: "pending-text" }, item.text),
      h("div", { class: "pending-status", testid: "pending-status", role: item.state === "failed" ? "alert" : "status" }, h("span", { class: "pending-words" }, words), actions),
    );
  }

  /** Send, or Queue and Stop while the selected session's turn runs. */
  renderButtons() {
    const { store } = this.ctx;
    const { input, send, stop } = this.els;
    const id = this.ctx.selected();
    const gone = !!id && sessionIsGone(store, id);
    const canSend = !!id && !gone;
    const busy = canSend && sessionTurnRunning(store, id);
    if (input.disabled !== !canSend) input.disabled = !canSend;
    const placeholder = gone ? PLACEHOLDER_GONE : busy ? PLACEHOLDER_BUSY : PLACEHOLDER_IDLE;
    if (input.placeholder !== placeholder) input.placeholder = placeholder;
    const label = busy ? "Queue" : "Send";
    if (send.textContent !== label) {
      send.textContent = label;
      send.setAttribute("aria-label", busy ? "Queue the message until the agent finishes" : "Send the message");
      send.classList.toggle("primary", !busy);
      send.classList.toggle("queue", busy);
    }
    const sendDisabled = !canSend || (busy && !input.value.trim());
    if (send.disabled !== sendDisabled) send.disabled = sendDisabled;
    if (stop.hidden === busy) stop.hidden = !busy;
  }

  /** Two lines at least; grows with its content up to about 40% of the chat, then scrolls. */
  autosize() {
    const box = this.els.input;
    const max = Math.max(2 * LINE_PX + 20, Math.round(0.4 * (this.els.chat.clientHeight + box.offsetHeight)));
    box.style.height = "auto";
    const want = box.scrollHeight + 2; // the borders
    box.style.height = `${Math.min(want, max)}px`;
    box.style.overflowY = want > max ? "auto" : "hidden";
  }

  save() {
    try {
      const items = pendingMessages(this.ctx.store).map(({ id, sessionId, text, state, clientTurnId, afterSeq, turnId, error, outboxId, inOutbox }) => ({
        outboxId,
        inOutbox,
        id,
        sessionId,
        text,
        state,
        clientTurnId,
        afterSeq,
        turnId,
        error,
      }));
      if (items.length) sessionStorage.setItem(STORAGE_KEY, JSON.stringify(items));
      else sessionStorage.removeItem(STORAGE_KEY);
    } catch (_) {
      /* storage full or unavailable: the messages stay on this page */
    }
  }
}
