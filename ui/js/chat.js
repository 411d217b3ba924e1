// The chat view of the selected session: a timeline of turns and session notices.
//
// ChatView.show(sessionId) builds the timeline from the model; ChatView.update(dirty) then only
// touches what changed: new timeline entries are appended, dirty turns patch their own DOM
// (blocks by version, assistant text by its unfinished markdown tail). The DOM a turn ends up
// with depends only on the model, so a turn rebuilt from get_state renders like the live one.

import { h, clear, prettyJson } from "./dom.js";
import { renderMarkdownNodes, stableBoundary } from "./markdown.js";
import { displayText, displaySource, describe, describeResolution, noticeText, fileChangeText, isKnownEventType, gapText } from "./state.js";

export class ChatView {
  /**
   * @param {HTMLElement} root  the scrolling chat container (data-testid="chat")
   * @param {object} ctx        {store, answer(sessionId, requestId, payload) -> Promise}
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
  }

  show(sessionId) {
    const store = this.ctx.store;
    this.sessionId = sessionId;
    this.gen = store.gen;
    this.chat = sessionId ? store.chats.get(sessionId) || null : null;
    this.turnViews = new Map();
    this.gapViews = new Map();
    this.renderedEntries = 0;
    clear(this.root);
    this.emptyEl = h("div", { class: "chat-empty", testid: "chat-empty" });
    this.root.appendChild(this.emptyEl);
    this.appendEntries();
    this.refreshEmpty();
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
    const stick = this.nearBottom();
    if (dirty.timeline) this.appendEntries();
    if (dirty.gaps) this.refreshGaps();
    for (const turnId of dirty.turns) {
      const view = this.turnViews.get(turnId);
      const turn = chat.turns.get(turnId);
      if (view && turn) view.update(turn);
    }
    this.refreshEmpty();
    if (stick) this.root.scrollTop = this.root.scrollHeight;
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

  appendEntries() {
    const chat = this.chat;
    if (!chat) return;
    const frag = document.createDocumentFragment();
    for (let i = this.renderedEntries; i < chat.timeline.length; i += 1) {
      const entry = chat.timeline[i];
      if (entry.kind === "turn") {
        const turn = chat.turns.get(entry.turnId);
        if (!turn || this.turnViews.has(turn.turnId)) continue;
        const view = new TurnView(turn, this.ctx, this.sessionId);
        this.turnViews.set(turn.turnId, view);
        frag.appendChild(view.el);
      } else if (entry.kind === "gap") {
        const el = renderGap(entry.gap);
        this.gapViews.set(entry.gap, { el, v: entry.gap.v });
        frag.appendChild(el);
      } else {
        frag.appendChild(renderEventEntry(entry.event));
      }
    }
    this.renderedEntries = chat.timeline.length;
    this.root.appendChild(frag);
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

/** Missed events that could not be fetched: said where they are missing, in plain words. */
function renderGap(gap) {
  const dataset = { afterSeq: String(gap.afterSeq), beforeSeq: gap.beforeSeq === null ? "" : String(gap.beforeSeq) };
  return h("div", { class: "notice gap", testid: "catchup-gap", role: "note", dataset }, gapText(gap));
}

function renderEventEntry(ev) {
  if (ev.__invalid) return renderGeneric(ev);
  if (ev.type === "file_changed") return h("div", { class: "notice file", testid: "file-changed" }, fileChangeText(ev));
  if (ev.type === "steer_received") return h("div", { class: "notice steer", testid: "steer" }, `Steered: ${ev.content ?? ""}`);
  if (ev.type === "approval_resolved") {
    return h("div", { class: "notice", testid: "notice" }, `Request ${ev.requestId ?? ""} resolved: ${describeResolution(ev)}`);
  }
  if (isKnownEventType(ev.type)) return h("div", { class: "notice", testid: "notice", dataset: { eventType: ev.type } }, noticeText(ev));
  return renderGeneric(ev);
}

/** A generic card: an event type we don't know, or a known one whose fields we could not read
 * (`__invalid` holds why: the card says so, and shows the frame as it came). */
export function renderGeneric(ev) {
  const type = typeof ev.type === "string" && ev.type ? ev.type : "(no type)";
  const { __invalid: invalid, ...frame } = ev;
  return h(
    "div",
    { class: `card generic${invalid ? " invalid" : ""}`, testid: "generic-event", dataset: invalid ? { eventType: type, invalid: "1" } : { eventType: type } },
    h("div", { class: "card-head" }, h("span", { class: "tag" }, invalid ? "unreadable event" : "event"), h("code", { class: "event-type" }, type)),
    invalid ? h("div", { class: "generic-reason", testid: "generic-reason" }, invalid) : null,
    h("pre", { class: "json" }, prettyJson(frame)),
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

export class TurnView {
  constructor(turn, ctx, sessionId) {
    this.ctx = ctx;
    this.sessionId = sessionId;
    this.blockViews = []; // {el, v, block}
    this.userTextShown = null;
    this.footerKey = null;
    // assistant text state
    this.mdSource = null; // "text" | "final"
    this.mdLen = 0;
    this.stableEnd = 0;
    this.tailNodes = [];
    this.tailText = null;
    this.tailMode = null;
    this.chunk = null;
    this.plainBox = null;
    this.plainPieces = [];

    this.userEl = h("div", { class: "bubble user-bubble", testid: "user-text" });
    this.blocksEl = h("div", { class: "blocks" });
    this.textEl = h("div", { class: "md assistant-text", testid: "assistant-text" });
    this.footerEl = h("div", { class: "turn-footer" });
    this.el = h(
      "article",
      { class: "turn", testid: "turn", dataset: { turnId: turn.turnId }, "aria-label": "Turn" },
      h("div", { class: "user-row" }, this.userEl),
      h("div", { class: "assistant" }, this.blocksEl, this.textEl, this.footerEl),
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
    }
    this.updateBlocks(turn);
    this.updateText(turn);
    this.updateFooter(turn);
  }

  updateBlocks(turn) {
    const blocks = turn.blocks;
    for (let i = 0; i < blocks.length; i += 1) {
      const block = blocks[i];
      const view = this.blockViews[i];
      if (!view) {
        const el = createBlock(block, this);
        this.blockViews.push({ el, v: block.v });
        this.blocksEl.appendChild(el);
      } else if (view.v !== block.v) {
        const el = updateBlock(view.el, block, this);
        if (el !== view.el) {
          view.el.replaceWith(el);
          view.el = el;
        }
        view.v = block.v;
      }
    }
  }

  updateText(turn) {
    const text = displayText(turn);
    const source = displaySource(turn);
    if (source !== this.mdSource || text.length < this.mdLen) {
      clear(this.textEl);
      this.mdSource = source;
      this.stableEnd = 0;
      this.tailNodes = [];
      this.tailText = null;
      this.tailMode = null;
      this.chunk = null;
    }
    this.mdLen = text.length;
    const boundary = stableBoundary(text, this.stableEnd);
    if (boundary > this.stableEnd) {
      this.dropTail();
      this.appendStable(renderMarkdownNodes(text.slice(this.stableEnd, boundary)));
      this.stableEnd = boundary;
    }
    const tail = text.slice(this.stableEnd);
    const streaming = turn.status === "running" || turn.status === "waiting";
    if (streaming && tail.length > PLAIN_TAIL) {
      this.updatePlainTail(tail);
    } else if (this.tailMode !== "md" || tail !== this.tailText) {
      this.dropTail();
      this.tailNodes = renderMarkdownNodes(tail);
      for (const node of this.tailNodes) this.textEl.appendChild(node);
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
      this.textEl.appendChild(this.plainBox);
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
   * chunking depends only on the node index, so a turn rendered at once and one rendered while
   * streaming end up with the same DOM.
   */
  appendStable(nodes) {
    for (const node of nodes) {
      if (!this.chunk || this.chunk.childNodes.length >= MD_CHUNK) {
        this.chunk = h("div", { class: "md-chunk" });
        this.textEl.appendChild(this.chunk);
      }
      this.chunk.appendChild(node);
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
      return h("div", { class: "notice file", testid: "file-changed" }, fileChangeText(block));
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

function renderTool(block) {
  const name = block.toolName || "tool";
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
  const stateLabel = { pending: "preparing", running: "running", done: "done", error: "error" }[block.state] || block.state;
  return h(
    "div",
    { class: "card tool", testid: "tool-card", dataset: { toolCallId: block.toolCallId, state: block.state } },
    h("div", { class: "card-head" }, h("span", { class: "tag" }, "tool"), h("code", { class: "tool-name", testid: "tool-name" }, name), h("span", { class: `pill ${block.state}` }, stateLabel)),
    sections,
  );
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
  head.appendChild(h("span", { class: "tag" }, "terminal"));
  if (block.terminalId) head.appendChild(h("code", null, block.terminalId));
  if (block.exitCode !== null && block.exitCode !== undefined) {
    el.dataset.exitCode = String(block.exitCode);
    head.appendChild(h("span", { class: `pill ${block.exitCode === 0 ? "done" : "error"}` }, `exit ${block.exitCode}`));
  } else {
    delete el.dataset.exitCode;
    head.appendChild(h("span", { class: "pill running" }, "running"));
  }
  if (block.text.length > el._len) {
    pre.appendChild(document.createTextNode(block.text.slice(el._len)));
  } else if (block.text.length < el._len) {
    pre.textContent = block.text;
  }
  el._len = block.text.length;
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
