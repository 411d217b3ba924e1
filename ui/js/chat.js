// The chat view of the selected session: a timeline of turns and session notices.
//
// ChatView.show(sessionId) builds the timeline from the model; ChatView.update(dirty) then only
// touches what changed: new timeline entries are appended, dirty turns patch their own DOM
// (blocks by version, assistant text by its unfinished markdown tail). The DOM a turn ends up
// with depends only on the model, so a turn rebuilt from get_state renders like the live one.
//
// A long session lays out only its newest WINDOW entries; earlier ones are laid out, WINDOW at a
// time, as the user scrolls up to them (or presses "Show earlier messages"), so opening a session
// of 10,000 turns costs what opening one of 50 does.

import { h, clear, prettyJson } from "./dom.js";
import { renderMarkdownNodes, stableBoundary } from "./markdown.js";
import { displayText, displaySource, describe, describeResolution, noticeText, isKnownEventType, gapText } from "./state.js";

export const WINDOW = 50; // timeline entries laid out at first, and per step up
const EARLIER_MARGIN_PX = 600; // scrolled this close to the top, the next step is laid out

export class ChatView {
  /**
   * @param {HTMLElement} root  the scrolling chat container (data-testid="chat")
   * @param {object} ctx        {store, answer(sessionId, requestId, payload) -> Promise,
   *                            retry?(text), openFile?({sessionId, path, iteration})}
   */
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.sessionId = null;
    this.gen = -1;
    this.chat = null;
    this.turnViews = new Map();
    this.gapViews = new Map(); // gap -> {el, v}: a gap told again is updated in place
    this.renderedEntries = 0;
    this.emptyEl = null;
    this.retryView = null; // the TurnView whose message offers Retry
    this.start = 0; // timeline index of the first entry laid out
    this.earlierEl = null;
    this.earlierObserver = null;
    this.loadingOlder = false; // older turns asked of the app (ctx.loadOlder), not here yet
    this.wantOlder = false; // lay them out when they come (the user asked for them)
    this.revealing = null; // the turn they were asked for, to lay out back to when they come
  }

  show(sessionId) {
    const store = this.ctx.store;
    this.sessionId = sessionId;
    this.gen = store.gen;
    this.chat = sessionId ? store.chats.get(sessionId) || null : null;
    this.turnViews = new Map();
    this.gapViews = new Map();
    this.retryView = null;
    this.loadingOlder = false;
    this.wantOlder = false;
    this.revealing = null;
    const length = this.chat ? this.chat.timeline.length : 0;
    this.start = Math.max(0, length - WINDOW);
    this.renderedEntries = this.start;
    clear(this.root);
    this.earlierEl = h(
      "button",
      { type: "button", class: "chat-earlier small", testid: "chat-earlier", hidden: true, onclick: () => this.showEarlier() },
      "",
    );
    this.root.appendChild(this.earlierEl);
    this.emptyEl = h("div", { class: "chat-empty", testid: "chat-empty" });
    this.root.appendChild(this.emptyEl);
    this.appendEntries();
    this.refreshEarlier();
    this.watchEarlier();
    this.refreshEmpty();
    this.refreshRetry();
    this.root.scrollTop = this.root.scrollHeight;
  }

  /** Apply the changes marked for this session (an entry of store.dirty.chats, or undefined). */
  update(dirty) {
    const store = this.ctx.store;
    const chat = this.sessionId ? store.chats.get(this.sessionId) || null : null;
    if (chat !== this.chat || store.gen !== this.gen) {
      this.show(this.sessionId);
      return;
    }
    if (!dirty || !chat) return;
    if (dirty.rebuild) {
      // Entries went in before the end (turns from the gateway's history, in the order they ran):
      // appending cannot place them, so the timeline is laid out again.
      this.show(this.sessionId);
      return;
    }
    if (dirty.prepend) {
      // Older turns from the app (get_turns) went in above what is laid out: shift the window.
      if (dirty.prepend.at > this.start) {
        this.show(this.sessionId);
        return;
      }
      this.start += dirty.prepend.count;
      this.renderedEntries += dirty.prepend.count;
      this.loadingOlder = false;
      if (this.revealing) {
        const turnId = this.revealing;
        this.revealing = null;
        this.wantOlder = false;
        this.reveal(turnId);
      } else if (this.wantOlder || this.earlierInReach()) {
        this.wantOlder = false;
        this.showEarlier();
      }
    }
    if (dirty.meta) this.refreshEarlier();
    const stick = this.nearBottom();
    if (dirty.timeline) this.appendEntries();
    if (dirty.gaps) this.refreshGaps();
    for (const turnId of dirty.turns) {
      const view = this.turnViews.get(turnId);
      const turn = chat.turns.get(turnId);
      if (view && turn) view.update(turn);
    }
    this.refreshEmpty();
    this.refreshRetry();
    if (stick) this.root.scrollTop = this.root.scrollHeight;
  }

  /** Entries above what is laid out: in the page's model, and turns only the app holds yet. */
  earlierCount() {
    return this.start + (this.chat && this.chat.olderTurns > 0 ? this.chat.olderTurns : 0);
  }

  /**
   * Whether turns lie before the first one laid out: on the page, in the app, or at the gateway
   * (whose number is not known).
   */
  hasEarlier() {
    return this.earlierCount() > 0 || Boolean(this.chat && this.chat.olderAtGateway > 0);
  }

  /** "Show earlier messages (N)", while the start of the timeline is not laid out. */
  refreshEarlier() {
    const el = this.earlierEl;
    if (!el) return;
    const more = this.earlierCount();
    const hidden = !this.hasEarlier();
    if (el.hidden !== hidden) el.hidden = hidden;
    let text = "";
    if (this.loadingOlder && this.start === 0) text = "Loading earlier messages…";
    else if (!hidden && more === 0) text = "Show earlier messages";
    else if (!hidden) text = `Show earlier messages (${more.toLocaleString()} more)`;
    if (el.textContent !== text) el.textContent = text;
    if (!hidden && !this.earlierObserver) this.watchEarlier();
  }

  /** Lay out earlier entries as soon as the user scrolls near them. */
  watchEarlier() {
    if (this.earlierObserver) this.earlierObserver.disconnect();
    this.earlierObserver = null;
    if (!this.hasEarlier() || typeof IntersectionObserver !== "function") return;
    this.earlierObserver = new IntersectionObserver(
      (records) => {
        if (records.some((r) => r.isIntersecting)) this.showEarlier();
      },
      { root: this.root, rootMargin: `${EARLIER_MARGIN_PX}px 0px 0px 0px` },
    );
    this.earlierObserver.observe(this.earlierEl);
  }

  /**
   * Lay out up to `count` more entries above the first one shown, keeping what the user looks at
   * where it is. Returns whether any were added.
   */
  showEarlier(count = WINDOW) {
    const chat = this.chat;
    if (!chat) return false;
    if (this.start === 0) {
      // Everything the page holds is laid out; older turns are the app's to give.
      // (asked already: laid out all the same when they come, the user wants them)
      if (this.askOlder() || this.loadingOlder) this.wantOlder = true;
      return false;
    }
    const from = Math.max(0, this.start - count);
    const frag = document.createDocumentFragment();
    for (let i = from; i < this.start; i += 1) {
      const el = this.renderEntry(chat.timeline[i]);
      if (!el) continue;
      el.dataset.earlier = "1"; // not news: the "Jump to latest" count leaves it out
      frag.appendChild(el);
    }
    const before = this.root.scrollHeight;
    this.emptyEl.after(frag);
    this.start = from;
    const added = this.root.scrollHeight - before;
    this.root.scrollTop += added;
    this.root.dispatchEvent(new CustomEvent("chat-earlier", { detail: { addedPx: added } }));
    this.refreshEarlier();
    if (!this.hasEarlier()) this.watchEarlier();
    else if (this.earlierInReach()) requestAnimationFrame(() => this.earlierInReach() && this.showEarlier());
    return true;
  }

  earlierInReach() {
    if (!this.earlierEl || this.earlierEl.hidden) return false;
    const top = this.root.getBoundingClientRect().top;
    return this.earlierEl.getBoundingClientRect().bottom > top - EARLIER_MARGIN_PX;
  }

  /**
   * Lay out the timeline back to `turnId` (a search result far back). A turn only the app holds
   * is asked for first, with every turn after it, and laid out when it comes.
   */
  reveal(turnId) {
    const chat = this.chat;
    if (!chat || this.turnViews.has(turnId)) return;
    const index = chat.timeline.findIndex((e) => e.kind === "turn" && e.turnId === turnId);
    if (index >= 0) {
      if (index < this.start) this.showEarlier(this.start - Math.max(0, index - 2));
      return;
    }
    if (this.askOlder(turnId)) this.revealing = turnId;
  }

  /**
   * Ask the app for turns before the first one held: the next ones, or all from `fromTurnId` on.
   * False when there are none to ask for, or a request is on its way. Once the frame that lays out
   * what came has run, a request that brought nothing (an error, or the app no longer holds
   * them) leaves the button working again.
   */
  askOlder(fromTurnId = null) {
    const chat = this.chat;
    if (!chat || !(chat.olderTurns > 0 || chat.olderAtGateway > 0) || this.loadingOlder || typeof this.ctx.loadOlder !== "function") return false;
    const first = chat.timeline.find((e) => e.kind === "turn");
    if (!first) return false;
    const firstSeq = chat.turns.get(first.turnId)?.firstSeq;
    this.loadingOlder = true;
    this.refreshEarlier();
    const settle = () => {
      if (!this.loadingOlder || this.chat !== chat) return;
      this.loadingOlder = false;
      this.wantOlder = false;
      this.revealing = null;
      this.refreshEarlier();
    };
    this.ctx.loadOlder(this.sessionId, first.turnId, fromTurnId, typeof firstSeq === "number" && firstSeq > 0 ? firstSeq : null).finally(() => requestAnimationFrame(() => setTimeout(settle, 0)));
    return true;
  }

  nearBottom() {
    const r = this.root;
    return r.scrollHeight - r.scrollTop - r.clientHeight < 120;
  }

  refreshEmpty() {
    let text = "";
    if (!this.sessionId) text = "Select a session on the left, or start a new one.";
    else if (!this.chat || this.chat.timeline.length === 0) text = "No messages yet. Type below to start a turn.";
    this.emptyEl.textContent = text;
    this.emptyEl.hidden = !text;
  }

  /** Retry belongs to the last turn only, once it has finished (sending it again starts a new one). */
  refreshRetry() {
    const chat = this.chat;
    let view = null;
    if (chat && !chat.gone && typeof this.ctx.retry === "function") {
      for (let i = chat.timeline.length - 1; i >= 0; i -= 1) {
        const entry = chat.timeline[i];
        if (entry.kind !== "turn") continue;
        const turn = chat.turns.get(entry.turnId);
        if (turn && RETRYABLE.has(turn.status) && turn.userText) view = this.turnViews.get(turn.turnId) || null;
        break;
      }
    }
    if (view === this.retryView) return;
    if (this.retryView) this.retryView.setRetry(false);
    if (view) view.setRetry(true);
    this.retryView = view;
  }

  appendEntries() {
    const chat = this.chat;
    if (!chat) return;
    const frag = document.createDocumentFragment();
    for (let i = this.renderedEntries; i < chat.timeline.length; i += 1) {
      const el = this.renderEntry(chat.timeline[i]);
      if (el) frag.appendChild(el);
    }
    this.renderedEntries = chat.timeline.length;
    this.root.appendChild(frag);
  }

  /** The element of one timeline entry (null: a turn already shown, or gone from the model). */
  renderEntry(entry) {
    if (entry.kind === "turn") {
      const turn = this.chat.turns.get(entry.turnId);
      if (!turn || this.turnViews.has(turn.turnId)) return null;
      const view = new TurnView(turn, this.ctx, this.sessionId);
      this.turnViews.set(turn.turnId, view);
      return view.el;
    }
    if (entry.kind === "gap") {
      const el = renderGap(entry.gap);
      this.gapViews.set(entry.gap, { el, v: entry.gap.v });
      return el;
    }
    return renderEventEntry(entry.event, this.ctx, this.sessionId);
  }

  /** The Sync state learnt which changes were the user's own uploads: say so on the chips shown. */
  refreshFileChips() {
    for (const chip of this.root.querySelectorAll('[data-testid="file-changed"]:not([data-by="local"])')) {
      const iteration = Number(chip.dataset.iteration);
      if (!chip.dataset.iteration || !Number.isFinite(iteration)) continue;
      const inTurn = chip.dataset.inTurn === "1";
      const f = { path: chip.dataset.path, iteration };
      const who = whoOf(f, this.ctx, this.sessionId, inTurn);
      if (who === chip.dataset.by) continue;
      chip.dataset.by = who;
      const detail = chip.querySelector(".file-chip-detail");
      if (detail) detail.textContent = `version ${iteration} · ${WHO_WORDS[who] || WHO_WORDS.other}`;
    }
  }

  refreshGaps() {
    for (const [gap, view] of this.gapViews) {
      if (view.v === gap.v) continue;
      const el = renderGap(gap);
      view.el.replaceWith(el);
      view.el = el;
      view.v = gap.v;
    }
  }
}

const RETRYABLE = new Set(["complete", "error", "stopped", "ended"]);

/** Missed events that could not be fetched: said where they are missing, in plain words. */
function renderGap(gap) {
  const dataset = { afterSeq: String(gap.afterSeq), beforeSeq: gap.beforeSeq === null ? "" : String(gap.beforeSeq) };
  return h("div", { class: "notice gap", testid: "catchup-gap", role: "note", dataset }, gapText(gap));
}

function renderEventEntry(ev, ctx, sessionId) {
  if (ev.__invalid) return renderGeneric(ev);
  if (ev.type === "file_changed") return renderFileChip(ev, ctx, typeof ev.sessionId === "string" ? ev.sessionId : sessionId, false);
  if (ev.type === "steer_received") return h("div", { class: "notice steer", testid: "steer" }, `Steered: ${ev.content ?? ""}`);
  if (ev.type === "approval_resolved") {
    return h("div", { class: "notice", testid: "notice" }, `Request ${ev.requestId ?? ""} resolved: ${describeResolution(ev)}`);
  }
  if (isKnownEventType(ev.type)) return h("div", { class: "notice", testid: "notice", dataset: { eventType: ev.type } }, noticeText(ev));
  return renderGeneric(ev);
}

/** A generic card: an event type we don't know, or a known one whose fields we could not read
 * (`__invalid` holds why). One plain line; the frame as it came is under Details, collapsed. */
export function renderGeneric(ev) {
  const type = typeof ev.type === "string" && ev.type ? ev.type : "(no type)";
  const { __invalid: invalid, ...frame } = ev;
  const line = invalid
    ? [
        "The gateway sent a ",
        h("code", { class: "event-type" }, type),
        " event that could not be read: ",
        h("span", { class: "generic-reason", testid: "generic-reason" }, invalid),
      ]
    : ["The gateway sent an event this app doesn't show: ", h("code", { class: "event-type" }, type)];
  return h(
    "div",
    { class: `card generic${invalid ? " invalid" : ""}`, testid: "generic-event", dataset: invalid ? { eventType: type, invalid: "1" } : { eventType: type } },
    h("div", { class: "generic-line" }, line),
    h("details", { class: "generic-details" }, h("summary", null, "Details"), h("pre", { class: "json" }, prettyJson(frame))),
  );
}

// ---------------------------------------------------------------------------------------------

const MD_CHUNK = 32;
const PLAIN_TAIL = 12000; // chars of unfinished block above which it streams as plain text
const PLAIN_PIECE = 4000;

/** Where the plain piece starting at `start` ends: after a newline past PLAIN_PIECE chars, else
 * after a space past twice that, else a hard cut at four times; -1 while the text is too short. */
function plainCut(text, start) {
  const nl = text.indexOf("\n", start + PLAIN_PIECE);
  const sp = text.indexOf(" ", start + 2 * PLAIN_PIECE);
  let cut = -1;
  if (nl !== -1) cut = nl + 1;
  if (sp !== -1 && (cut === -1 || sp + 1 < cut)) cut = sp + 1;
  const hard = start + 4 * PLAIN_PIECE;
  if (hard < text.length && (cut === -1 || hard < cut)) cut = hard;
  return cut !== -1 && cut < text.length ? cut : -1;
}

/**
 * One stretch of a turn's assistant text, text[start:end], rendered as markdown: the text between
 * two of the turn's cards, or the live tail after the last one. Incremental: finished markdown
 * blocks are rendered once and kept; only the unfinished last block is rendered again per update.
 * A stretch that got a card after it is final and is not touched again.
 */
class TextRun {
  constructor(start) {
    this.el = h("div", { class: "md assistant-text", testid: "assistant-text" });
    this.start = start;
    this.end = start;
    this.stableEnd = start;
    this.tailNodes = [];
    this.tailText = null;
    this.tailMode = null;
    this.chunk = null;
    this.plainBox = null;
    this.plainPieces = [];
  }

  /** Show text[start:end] (`text` is the whole turn's text, so no copy of it is made per frame). */
  update(text, end, streaming) {
    if (end < this.end) {
      clear(this.el);
      this.stableEnd = this.start;
      this.tailNodes = [];
      this.tailText = null;
      this.tailMode = null;
      this.chunk = null;
    }
    this.end = end;
    const seg = end === text.length ? text : text.slice(0, end);
    const boundary = stableBoundary(seg, this.stableEnd);
    if (boundary > this.stableEnd) {
      this.dropTail();
      this.appendStable(renderMarkdownNodes(seg.slice(this.stableEnd, boundary)));
      this.stableEnd = boundary;
    }
    const tail = seg.slice(this.stableEnd);
    if (streaming && tail.length > PLAIN_TAIL) {
      this.updatePlainTail(tail);
    } else if (this.tailMode !== "md" || tail !== this.tailText) {
      this.dropTail();
      this.tailNodes = renderMarkdownNodes(tail);
      for (const node of this.tailNodes) this.el.appendChild(node);
      this.tailText = tail;
      this.tailMode = "md";
    }
  }

  dropTail() {
    for (const node of this.tailNodes) node.remove();
    this.tailNodes = [];
    this.tailText = null;
    this.tailMode = null;
  }

  /**
   * A very long unfinished block (a huge paragraph or code block still streaming) is shown as
   * plain pre-wrapped text in pieces cut at newlines (or spaces), so each frame lays out only the
   * last piece instead of the whole block. It becomes markdown once the block or the turn ends.
   * The cuts depend only on the text, so a snapshot of a running turn renders the same pieces.
   */
  updatePlainTail(tail) {
    if (this.tailMode !== "plain") {
      this.dropTail();
      this.plainBox = h("div", { class: "md-plain", "aria-busy": "true" });
      this.plainPieces = []; // {start, end, node}
      this.tailNodes = [this.plainBox];
      this.el.appendChild(this.plainBox);
      this.tailMode = "plain";
    }
    const pieces = this.plainPieces;
    let start = pieces.length ? pieces[pieces.length - 1].start : 0;
    let last = pieces.length ? pieces.pop() : null;
    for (;;) {
      const end = plainCut(tail, start);
      const stop = end === -1 ? tail.length : end;
      if (!last) {
        last = { start, end: start, node: document.createTextNode("") };
        this.plainBox.appendChild(h("span", { class: "md-plain-piece" }, last.node));
      }
      if (stop > last.end) {
        last.node.appendData(tail.slice(last.end, stop));
        last.end = stop;
      }
      pieces.push(last);
      if (end === -1) break;
      start = end;
      last = null;
    }
    this.tailText = tail;
  }

  /**
   * Finished markdown blocks go into chunks of MD_CHUNK nodes, so that a very long message is a
   * short list of laid-out boxes and appending to it does not re-lay-out every paragraph. The
   * chunking depends only on the node index, so a stretch rendered at once and one rendered while
   * streaming end up with the same DOM.
   */
  appendStable(nodes) {
    for (const node of nodes) {
      if (!this.chunk || this.chunk.childNodes.length >= MD_CHUNK) {
        this.chunk = h("div", { class: "md-chunk" });
        this.el.appendChild(this.chunk);
      }
      this.chunk.appendChild(node);
    }
  }
}

/**
 * One turn: the user's message, then what the agent did in the order it streamed (text, a card,
 * more text, ...), then the footer. Each block knows how much text had streamed when it came
 * (block.textAt), so the text is cut there into stretches around the blocks; a live turn and the
 * same turn rebuilt from get_state lay out the same. A turn shown by its final text (no deltas, or
 * deltas lost) shows its blocks, then that text.
 */
export class TurnView {
  constructor(turn, ctx, sessionId) {
    this.ctx = ctx;
    this.sessionId = sessionId;
    this.blockViews = []; // {el, v}
    this.userTextShown = null;
    this.footerKey = null;
    // the flow: blocks and text stretches in stream order
    this.mode = null; // "text" | "final": displaySource
    this.placed = 0; // blocks placed in the flow
    this.tail = null; // the TextRun still growing (after the last block), or null
    this.tailStart = 0;
    this.turn = turn;

    this.userEl = h("div", { class: "bubble user-bubble", testid: "user-text" });
    this.retryEl = h("button", { type: "button", class: "msg-action", testid: "retry", "aria-label": "Retry", title: "Send this message again", hidden: true, onclick: () => this.ctx.retry?.(this.userTextShown || "") }, "Retry");
    this.userActions = h(
      "div",
      { class: "msg-actions", role: "group", "aria-label": "Your message" },
      copyButton(() => this.userTextShown || "", "copy-user-message"),
      this.retryEl,
    );
    this.flowEl = h("div", { class: "turn-flow" });
    this.actionsEl = h("div", { class: "msg-actions", role: "group", "aria-label": "Agent's message", hidden: true }, copyButton(() => displayText(this.turn), "copy-message"));
    this.footerEl = h("div", { class: "turn-footer" });
    this.el = h(
      "article",
      { class: "turn", testid: "turn", dataset: { turnId: turn.turnId }, "aria-label": "Turn" },
      h("div", { class: "user-row" }, this.userEl, this.userActions),
      h("div", { class: "assistant" }, this.flowEl, this.actionsEl, this.footerEl),
    );
    this.update(turn);
  }

  update(turn) {
    if (this.el.dataset.status !== turn.status) this.el.dataset.status = turn.status;
    if (turn.fromHistory) this.el.dataset.fromHistory = "1";
    if (this.userTextShown !== turn.userText) {
      this.userTextShown = turn.userText;
      this.userEl.textContent = turn.userText;
      this.userEl.hidden = !turn.userText;
      this.userActions.hidden = !turn.userText;
    }
    this.updateBlocks(turn);
    this.updateFlow(turn);
    this.turn = turn;
    const hasText = displayText(turn).length > 0;
    if (this.actionsEl.hidden === hasText) this.actionsEl.hidden = !hasText;
    this.updateFooter(turn);
  }

  setRetry(on) {
    this.retryEl.hidden = !on;
  }

  /** Each block's element, patched by version (not yet placed in the flow: updateFlow does that). */
  updateBlocks(turn) {
    const blocks = turn.blocks;
    for (let i = 0; i < blocks.length; i += 1) {
      const block = blocks[i];
      const view = this.blockViews[i];
      if (!view) {
        this.blockViews.push({ el: createBlock(block, this), v: block.v });
      } else if (view.v !== block.v) {
        const el = updateBlock(view.el, block, this);
        if (el !== view.el) {
          if (view.el.parentNode) view.el.replaceWith(el);
          view.el = el;
        }
        view.v = block.v;
      }
    }
  }

  updateFlow(turn) {
    const source = displaySource(turn);
    const streaming = turn.status === "running" || turn.status === "waiting";
    if (source !== this.mode) {
      // The deltas' first piece (or a final text that says more): laid out again, blocks kept.
      clear(this.flowEl);
      this.mode = source;
      this.placed = 0;
      this.tail = null;
      this.tailStart = 0;
      if (source === "final") {
        this.tail = new TextRun(0);
        this.flowEl.appendChild(this.tail.el);
      }
    }
    if (source === "final") {
      for (; this.placed < this.blockViews.length; this.placed += 1) this.flowEl.insertBefore(this.blockViews[this.placed].el, this.tail.el);
      const text = turn.finalText || "";
      this.tail.update(text, text.length, streaming);
      return;
    }
    const text = turn.text;
    const blocks = turn.blocks;
    for (; this.placed < this.blockViews.length; this.placed += 1) {
      const at = Math.min(Math.max(blocks[this.placed].textAt ?? 0, this.tailStart), text.length);
      if (at > this.tailStart) {
        // The text before this block is complete: the stretch ends here and is final.
        if (!this.tail) {
          this.tail = new TextRun(this.tailStart);
          this.flowEl.appendChild(this.tail.el);
        }
        this.tail.update(text, at, false);
        this.tail = null;
        this.tailStart = at;
      }
      this.flowEl.insertBefore(this.blockViews[this.placed].el, this.tail ? this.tail.el : null);
    }
    if (text.length > this.tailStart) {
      if (!this.tail) {
        this.tail = new TextRun(this.tailStart);
        this.flowEl.appendChild(this.tail.el);
      }
      this.tail.update(text, text.length, streaming);
    }
  }

  updateFooter(turn) {
    const usage = turn.usage || null;
    const err = turn.error || null;
    const key = JSON.stringify([turn.status, err, usage, !!turn.fromHistory]);
    if (key === this.footerKey) return;
    this.footerKey = key;
    clear(this.footerEl);
    if (turn.status === "error") {
      this.footerEl.appendChild(
        h(
          "div",
          { class: "turn-error", testid: "turn-error", role: "alert" },
          h("strong", null, err && err.code ? err.code : "Turn failed"),
          err && err.message ? ` ${err.message}` : "",
        ),
      );
    }
    const bits = [];
    if (turn.status === "running") bits.push(h("span", { class: "pill running" }, "streaming"));
    else if (turn.status === "waiting") bits.push(h("span", { class: "pill waiting" }, "waiting for you"));
    else if (turn.status === "stopped") bits.push(h("span", { class: "pill stopped" }, "stopped"));
    else if (turn.status === "ended") bits.push(h("span", { class: "pill stopped", title: "The gateway says this turn no longer runs; how it ended has not arrived" }, "ended"));
    if (turn.fromHistory) {
      const why = "Only this turn's messages are known: it was not fetched event by event, so its tool calls, thinking and other steps are not shown";
      bits.push(h("span", { class: "from-history", testid: "from-history", title: why }, "from the gateway's history"));
    }
    if (usage && (usage.inputTokens !== undefined || usage.outputTokens !== undefined)) {
      bits.push(
        h("span", { class: "usage", testid: "usage" }, `${usage.inputTokens ?? 0} in · ${usage.outputTokens ?? 0} out tokens`),
      );
    }
    if (bits.length) this.footerEl.appendChild(h("div", { class: "turn-meta" }, bits));
  }
}

/** A Copy button: copies what `get()` returns (markdown source for the agent's text), says
 * "Copied" for a moment, or "Copy failed" when the clipboard refuses. */
function copyButton(get, testid) {
  let timer = null;
  const btn = h("button", { type: "button", class: "msg-action", testid, "aria-label": "Copy message", title: "Copy message" }, "Copy");
  const say = (label, state) => {
    btn.textContent = label;
    btn.dataset.copied = state;
    clearTimeout(timer);
    timer = setTimeout(() => {
      btn.textContent = "Copy";
      delete btn.dataset.copied;
    }, 1500);
  };
  btn.addEventListener("click", () => {
    const text = get();
    const clip = navigator.clipboard;
    if (!clip || typeof clip.writeText !== "function") {
      say("Copy failed", "0");
      return;
    }
    clip.writeText(text).then(
      () => say("Copied", "1"),
      () => say("Copy failed", "0"),
    );
  });
  return btn;
}

// ---------------------------------------------------------------------------------------------
// Blocks

function createBlock(block, tv) {
  switch (block.kind) {
    case "thinking":
      return createThinking(block);
    case "tool":
      return renderTool(block);
    case "terminal":
      return createTerminal(block);
    case "question":
    case "permission":
      return renderRequest(block, tv);
    case "steer":
      return h("div", { class: "notice steer", testid: "steer" }, `Steered: ${block.content}`);
    case "file":
      return renderFileChip(block, tv.ctx, tv.sessionId, true);
    case "notice":
      return h("div", { class: "notice", testid: "notice" }, block.text);
    case "message":
      return h("div", { class: "md message-text", testid: "message-text", dataset: { messageId: block.messageId ?? "" } }, renderMarkdownNodes(block.text));
    case "plan":
      return renderPlan(block);
    case "generic":
    default:
      return renderGeneric(block.event || { type: block.kind });
  }
}

function updateBlock(el, block, tv) {
  switch (block.kind) {
    case "thinking":
      updateThinking(el, block);
      return el;
    case "terminal":
      updateTerminal(el, block);
      return el;
    case "tool": {
      // Rebuilt, but left open when the user had opened it.
      const next = renderTool(block);
      if (el.firstChild?.open) next.firstChild.open = true;
      return next;
    }
    default:
      return createBlock(block, tv);
  }
}

const STEP_MARK = { pending: "○", running: "◐", done: "●", failed: "✕", skipped: "–" };

function renderPlan(block) {
  const done = block.steps.filter((s) => s.status === "done").length;
  return h(
    "div",
    { class: "card plan", testid: "plan", dataset: { planId: block.planId, revisions: String(block.revisions) } },
    h(
      "div",
      { class: "card-head" },
      h("span", { class: "tag" }, "plan"),
      h("span", { class: "plan-progress", testid: "plan-progress" }, `${done}/${block.steps.length} done`),
      block.revisions ? h("span", { class: "pill", testid: "plan-revised", title: block.reason || "" }, `revised${block.revisions > 1 ? ` ×${block.revisions}` : ""}`) : null,
    ),
    block.reason ? h("div", { class: "plan-reason muted small" }, block.reason) : null,
    h(
      "ol",
      { class: "plan-steps" },
      block.steps.map((s) =>
        h(
          "li",
          { class: `plan-step ${s.status}`, testid: "plan-step", dataset: { stepId: s.stepId, status: s.status } },
          h("span", { class: "step-mark", "aria-hidden": "true" }, STEP_MARK[s.status] || "○"),
          h("span", { class: "step-title" }, s.title),
          s.summary ? h("span", { class: "step-summary muted" }, ` — ${s.summary}`) : null,
        ),
      ),
    ),
  );
}

function createThinking(block) {
  const summary = h("summary", null);
  const body = h("div", { class: "thinking-body" });
  const el = h("details", { class: "thinking", testid: "thinking" }, summary, body);
  updateThinking(el, block);
  return el;
}

function updateThinking(el, block) {
  const summary = el.firstChild;
  const body = el.lastChild;
  summary.textContent = block.done ? "Thought" : "Thinking…";
  el.dataset.done = block.done ? "1" : "0";
  if (body.textContent.length !== block.text.length) body.textContent = block.text;
}

// Tool names as words: the verb a user reads in the one-line summary.
const TOOL_WORDS = [
  [/^(read|read_?file|view|view_?file|cat|open_?file)$/i, "Read"],
  [/^(bash|shell|sh|run|exec|execute|command|run_?command|run_?shell|terminal)$/i, "Run"],
  [/^(edit|edit_?file|str_?replace\w*|apply_?patch|patch|multi_?edit)$/i, "Edit"],
  [/^(write|write_?file|create|create_?file)$/i, "Write"],
  [/^(grep|rg|ripgrep|search|search_?files|find|glob)$/i, "Search"],
  [/^(ls|list|list_?files|list_?dir|list_?directory)$/i, "List"],
  [/^(fetch|web_?fetch|http|curl|browse)$/i, "Fetch"],
  [/^(web_?search)$/i, "Search the web"],
];
// The arguments that say most about a call, most telling first.
const TOOL_ARG_KEYS = ["path", "file_path", "filePath", "file", "filename", "command", "cmd", "query", "pattern", "url", "uri"];
const SUMMARY_MAX = 80;

export function toolLabel(name) {
  const raw = String(name || "").trim();
  if (!raw) return "Tool";
  for (const [re, word] of TOOL_WORDS) if (re.test(raw)) return word;
  return raw.replace(/[_-]+/g, " ");
}

function shorten(s, max = SUMMARY_MAX) {
  const line = String(s).split("\n").find((l) => l.trim()) ?? "";
  const one = line.trim();
  const more = one !== String(s).trim();
  if (one.length > max) return `${one.slice(0, max - 1)}…`;
  return more ? `${one} …` : one;
}

/** The call's arguments in a few words: its most telling string argument (a path, a command, a
 * query…), or the first string one as `key: value`. Streamed argument text is read as far as it
 * parses. */
export function toolArgSummary(block) {
  let args = block.args;
  if (args === undefined && block.argsText) {
    try {
      args = JSON.parse(block.argsText);
    } catch (_) {
      const m = /"(?:path|file_path|filePath|file|command|cmd|query|pattern|url)"\s*:\s*"((?:[^"\\]|\\.)*)"?/.exec(block.argsText);
      return m ? shorten(m[1].replace(/\\(.)/g, "$1")) : "";
    }
  }
  if (typeof args === "string") return shorten(args);
  if (Array.isArray(args)) args = { args };
  if (!args || typeof args !== "object") return "";
  for (const key of TOOL_ARG_KEYS) {
    const v = args[key];
    if (typeof v === "string" && v.trim()) return shorten(v);
    if (Array.isArray(v) && v.length && v.every((x) => typeof x === "string")) return shorten(v.join(" "));
  }
  for (const [key, v] of Object.entries(args)) {
    if (typeof v === "string" && v.trim()) return shorten(`${key}: ${v}`);
  }
  return "";
}

function sizeWords(text) {
  const lines = text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
  if (lines > 1) return `${lines} lines`;
  const bytes = new TextEncoder().encode(text).length;
  if (bytes < 1024) return `${bytes} ${bytes === 1 ? "byte" : "bytes"}`;
  return `${(bytes / 1024).toFixed(bytes < 10240 ? 1 : 0)} KB`;
}

/** After the call: how much came back (lines or bytes), or the first line of the error. */
export function toolResultHint(block) {
  if (block.state === "error") {
    const e = block.error;
    const msg = e && typeof e === "object" ? e.message ?? e.error ?? describe(e) : describe(e);
    return shorten(msg || "failed", 60);
  }
  if (block.state !== "done") return "";
  const r = block.result;
  if (r === undefined || r === null || r === "") return "no output";
  if (typeof r === "string") return sizeWords(r);
  if (typeof r === "object") {
    for (const key of ["output", "content", "stdout", "text"]) if (typeof r[key] === "string") return sizeWords(r[key]);
  }
  return sizeWords(describe(r));
}

const TOOL_STATE = {
  pending: { mark: "○", words: "Preparing" },
  running: { mark: "◐", words: "Running" },
  done: { mark: "✓", words: "Done" },
  error: { mark: "✕", words: "Failed" },
};

/** A tool call: one line (state, what it does, on what, what came back) that opens to the full
 * arguments and result. */
function renderTool(block) {
  const label = toolLabel(block.toolName);
  const summary = toolArgSummary(block);
  const hint = toolResultHint(block);
  const state = TOOL_STATE[block.state] || { mark: "•", words: String(block.state) };
  const argsValue = block.args !== undefined ? block.args : block.argsText;
  const sections = [];
  if (argsValue !== undefined && argsValue !== "") {
    sections.push(h("div", { class: "tool-section" }, h("div", { class: "label" }, "Arguments"), h("pre", { class: "json", testid: "tool-args" }, prettyJson(argsValue))));
  }
  if (block.state === "done") {
    sections.push(h("div", { class: "tool-section" }, h("div", { class: "label" }, "Result"), h("pre", { class: "json", testid: "tool-result" }, prettyJson(block.result))));
  }
  if (block.state === "error") {
    sections.push(h("div", { class: "tool-section" }, h("div", { class: "label" }, "Error"), h("pre", { class: "json error-text", testid: "tool-error" }, prettyJson(block.error))));
  }
  const raw = block.toolName ? `Tool ${block.toolName}` : "Tool";
  sections.push(h("div", { class: "tool-section tool-ids muted small" }, `${raw} · call ${block.toolCallId || "(no id)"}`));
  return h(
    "div",
    { class: `card tool ${block.state}`, testid: "tool-card", dataset: { toolCallId: block.toolCallId, state: block.state, toolName: block.toolName || "" } },
    h(
      "details",
      { class: "tool-details" },
      h(
        "summary",
        { class: "tool-line", title: "Show the arguments and result" },
        h("span", { class: "tool-state", testid: "tool-state", role: "img", "aria-label": state.words, title: state.words }, state.mark),
        " ",
        h(
          "span",
          { class: "tool-what" },
          h("span", { class: "tool-name", testid: "tool-name" }, label),
          summary ? [label === "Run" ? ": " : " ", h("span", { class: "tool-summary", testid: "tool-summary" }, summary)] : null,
        ),
        hint ? [" ", h("span", { class: `tool-hint${block.state === "error" ? " error-text" : ""}`, testid: "tool-hint" }, hint)] : null,
      ),
      sections,
    ),
  );
}

/** A terminal's title in words: its command when the event or a tool call said it, else its
 * place among the turn's terminals (the id is in the tooltip). */
function terminalTitle(block) {
  const command = typeof block.command === "string" ? block.command.trim() : "";
  return command ? `Terminal: ${shorten(command)}` : `Terminal ${block.number ?? 1}`;
}

function createTerminal(block) {
  const head = h("div", { class: "card-head" });
  const pre = h("pre", { class: "terminal-output", testid: "terminal-output" });
  const el = h("div", { class: "card terminal", testid: "terminal", dataset: { terminalId: block.terminalId } }, head, pre);
  el._len = 0;
  updateTerminal(el, block);
  return el;
}

function updateTerminal(el, block) {
  const head = el.firstChild;
  const pre = el.lastChild;
  clear(head);
  head.appendChild(h("span", { class: "terminal-title", testid: "terminal-title", title: block.terminalId ? `Terminal id ${block.terminalId}` : "" }, terminalTitle(block)));
  if (block.exitCode !== null && block.exitCode !== undefined) {
    el.dataset.exitCode = String(block.exitCode);
    const ok = block.exitCode === 0;
    head.appendChild(h("span", { class: `pill ${ok ? "done" : "error"}`, testid: "terminal-exit" }, ok ? "finished" : `exited with ${block.exitCode}`));
  } else {
    delete el.dataset.exitCode;
    head.appendChild(h("span", { class: "pill running", testid: "terminal-exit" }, "running"));
  }
  if (block.text.length > el._len) {
    pre.appendChild(document.createTextNode(block.text.slice(el._len)));
  } else if (block.text.length < el._len) {
    pre.textContent = block.text;
  }
  el._len = block.text.length;
}

/** What a file change says: what happened to which file, its version, and who made it. */
const WHO_WORDS = { agent: "by the agent", local: "your local edit", other: "changed outside a turn" };

/** `who`: "agent" | "local" | "other" (the Sync state's whoChanged); by default where it streamed. */
export function fileChangeWords(f, inTurn, who = inTurn ? "agent" : "other") {
  const path = f.path || "(a file)";
  let what;
  if (f.deleted) what = `Deleted ${path}`;
  else if (f.renamedFrom) what = `Renamed ${f.renamedFrom} → ${path}`;
  else if (f.iteration === 1) what = `Created ${path}`;
  else what = `Changed ${path}`;
  const bits = [];
  if (typeof f.iteration === "number") bits.push(`version ${f.iteration}`);
  bits.push(WHO_WORDS[who] || WHO_WORDS.other);
  return { what, detail: bits.join(" · ") };
}

/** A file change as a chip; a button that opens the change when the page can show it. */
function whoOf(f, ctx, sessionId, inTurn) {
  const iteration = typeof f.iteration === "number" ? f.iteration : null;
  if (typeof ctx?.whoChanged === "function" && iteration !== null) return ctx.whoChanged(sessionId, f.path ?? "", iteration, inTurn);
  return inTurn ? "agent" : "other";
}

function renderFileChip(f, ctx, sessionId, inTurn) {
  const who = whoOf(f, ctx, sessionId, inTurn);
  const { what, detail } = fileChangeWords(f, inTurn, who);
  const iteration = typeof f.iteration === "number" ? f.iteration : null;
  const dataset = { path: f.path ?? "", iteration: iteration === null ? "" : String(iteration), by: who, inTurn: inTurn ? "1" : "0" };
  const body = [h("span", { class: "file-chip-what" }, what), " ", h("span", { class: "file-chip-detail", testid: "file-chip-detail" }, detail)];
  if (typeof ctx?.openFile !== "function") return h("div", { class: "file-chip", testid: "file-changed", dataset }, body);
  return h(
    "button",
    {
      type: "button",
      class: "file-chip",
      testid: "file-changed",
      dataset,
      title: "Show this change in the Files panel",
      onclick: () => ctx.openFile({ sessionId, path: f.path ?? "", iteration }),
    },
    body,
  );
}

function optionParts(opt) {
  if (opt && typeof opt === "object") {
    const label = opt.label ?? opt.text ?? opt.title ?? opt.value ?? opt.id ?? describe(opt);
    const value = opt.value ?? opt.id ?? label;
    return { label: String(label), value };
  }
  return { label: String(opt), value: opt };
}

function renderRequest(block, tv) {
  const isQuestion = block.kind === "question";
  if (block.resolution) {
    const what = isQuestion ? describe(block.question) : describe(block.action);
    return h(
      "div",
      { class: `prompt resolved ${block.kind}`, testid: `${block.kind}-resolved`, dataset: { requestId: block.requestId } },
      h("span", { class: "tag" }, isQuestion ? "question" : "permission"),
      h("span", { class: "prompt-what" }, what),
      h("span", { class: "arrow" }, "→"),
      h("strong", { class: "prompt-answer" }, describeResolution(block.resolution)),
    );
  }
  const sessionId = tv.sessionId;
  const controls = [];
  const status = h("div", { class: "prompt-status", role: "status" });
  const all = [];
  const send = (payload) => {
    for (const b of all) b.disabled = true;
    status.textContent = "Sending…";
    tv.ctx.answer(sessionId, block.requestId, payload).then(
      () => {
        status.textContent = "Sent";
      },
      () => {
        for (const b of all) b.disabled = false;
        status.textContent = "";
      },
    );
  };
  if (isQuestion) {
    if (block.options && block.options.length) {
      const opts = block.options.map((opt) => {
        const { label, value } = optionParts(opt);
        const b = h("button", { type: "button", class: "option", testid: "answer-option", onclick: () => send({ answers: [value] }) }, label);
        all.push(b);
        return b;
      });
      controls.push(h("div", { class: "options", role: "group", "aria-label": "Answer options" }, opts));
    }
    const input = h("input", { type: "text", class: "answer-input", testid: "answer-input", placeholder: "Type an answer…", "aria-label": "Answer" });
    const submit = h("button", { type: "submit", class: "primary", testid: "answer-submit" }, "Answer");
    const dismiss = h("button", { type: "button", class: "ghost", testid: "answer-dismiss", onclick: () => send({ dismissed: true }) }, "Dismiss");
    all.push(input, submit, dismiss);
    controls.push(
      h(
        "form",
        {
          class: "answer-row",
          onsubmit: (e) => {
            e.preventDefault();
            const text = input.value.trim();
            if (!text) {
              input.focus();
              return;
            }
            send({ answers: [text] });
          },
        },
        input,
        submit,
        dismiss,
      ),
    );
  } else {
    const allow = h("button", { type: "button", class: "primary", testid: "allow", onclick: () => send({ approved: true }) }, "Allow");
    const deny = h("button", { type: "button", class: "danger", testid: "deny", onclick: () => send({ approved: false }) }, "Deny");
    all.push(allow, deny);
    controls.push(h("div", { class: "answer-row" }, allow, deny));
  }
  const subject = isQuestion ? block.question : block.action;
  let text;
  if (subject && typeof subject === "object") {
    const summary = subject.description ?? subject.summary ?? subject.title ?? subject.text ?? subject.question ?? subject.tool ?? subject.name;
    text = [summary !== undefined ? String(summary) : null, h("pre", { class: "json" }, prettyJson(subject))];
  } else {
    text = describe(subject);
  }
  return h(
    "div",
    {
      class: `prompt ${block.kind}`,
      testid: block.kind,
      dataset: { requestId: block.requestId },
      role: "group",
      "aria-label": isQuestion ? "Question from the agent" : "Permission request",
    },
    h("div", { class: "prompt-head" }, h("span", { class: "tag" }, isQuestion ? "question" : "permission"), isQuestion ? "The agent asks" : "The agent wants to"),
    h("div", { class: "prompt-text", testid: isQuestion ? "question-text" : "permission-action" }, text),
    controls,
    status,
  );
}
