// The Sync panel: the selected session's workspace as a local folder (start_sync / stop_sync /
// sync_status / resolve_conflict), kept current by the bridge's `sync-status` events. Conflicts are
// shown with a line diff (upstream against local) and settled with one of three buttons. For a
// session never synced, the folder is pre-filled with its default under the sync_root setting
// (sync_defaults); a refused sync_auto_start comes as a status with its error.
//
// Which status is newest: the journal pushes every change of a status as a `sync-status` event, on
// the event socket, in order. A command's answer (start_sync, stop_sync, sync_status, …) comes over
// HTTP, a different connection, so on a loaded machine it can reach the page after statuses the
// journal pushed later (start_sync answers "link connecting, 0 files"; "connected, 1 file" is pushed
// a few milliseconds after). An answer is therefore shown only when no status of the session was
// pushed to the page while the command was on its way: one that was is at least as new as the
// answer, or the change the command made is pushed right after it. Statuses missed while the event
// socket was down are fetched again when it reopens.
//
// A gateway without a replication endpoint is mirrored read-only (status `mode: "mirror"`): the
// panel says so in the status's own words (`modeNote`), and lists the local edits (`localEdits`)
// as kept locally, not sent.
//
// The top of the panel never scrolls away: the state in words, a sentence saying what sync does
// with which folder, the folder (Choose… opens the folder picker) and Start / Stop, each enabled
// only when it can act. A folder that holds files asks in the page's own words before it is
// synced into (the journal's FOLDER_NOT_EMPTY). Statuses also go to syncstate.js, which badges
// conflicts outside this panel.
//
// Items that could not be synced (`failed`, oldest first, at most 100 of `failedCount`) are listed
// under "Not synced" with the reason in the journal's own words; the size limit and the free space
// of the folder's disk are shown in plain words next to the counts (docs/sync.md §10).

import { h, clear, exactTime, formatAgo, formatBytes, formatTime } from "./dom.js";
import { onBridgeState } from "./bridge.js";
import { lineDiff, fillLineDiff, diffBox } from "./linediff.js";
import { syncState, ConflictBanner } from "./syncstate.js";
import { chooseFolder } from "./folderpicker.js";
import { showSideTab } from "./layout.js";

export { lineDiff };

const AGO_REFRESH_MS = 30_000; // "noticed 2 min ago" lines are redrawn this often while any are shown

const DIRECTION_WORDS = { upstream: "from the agent", local: "from this computer" };

/** The state badge's words (its `data-state` keeps the status's own value). */
const STATE_WORDS = { off: "Not syncing", active: "Syncing", paused: "Paused", error: "Problem", stopped: "Stopped" };

/** What the page says when start_sync refuses a folder that already holds files. */
export const NOT_EMPTY_WORDS = "This folder is not empty. Sync into it anyway? Files already there are kept and compared with the workspace's.";

/** The heading of the "Not synced" list: "3 files not synced" (all of them, listed or not). */
export function failedHeading(count) {
  return `${count} file${count === 1 ? "" : "s"} not synced`;
}

const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** The status in one plain sentence: what sync is doing, with which folder. */
export function syncSummary(s) {
  if (!s || s.state === "off") return "This session's files are not synced to a folder on this computer. Choose a folder and press Start.";
  const dir = s.localDir ? `“${s.localDir}”` : "the folder";
  switch (s.state) {
    case "active":
      if (s.link && s.link !== "connected") return `Syncing with ${dir}: connecting to the gateway…`;
      if (s.mode === "mirror") return `Mirroring the agent's files into ${dir}.`;
      return `Syncing with ${dir}: changes on either side are copied to the other.`;
    case "paused":
      return `Paused: ${dir} keeps its files, but nothing is copied until you press Resume.`;
    case "error":
      return `Sync with ${dir} has a problem (see below). Stop it, or press Start to try again.`;
    case "stopped":
      return `Stopped: ${dir} keeps its files. Press Start to sync again.`;
    default:
      return `Sync with ${dir}: ${s.state}.`;
  }
}

/** A conflict's diff as the panel shows it: two head lines, then a line per `lineDiff` entry. */
export function renderDiff(c) {
  const pre = diffBox({ testid: "conflict-diff", label: `Differences in ${c.path}`, className: "conflict-diff" });
  if (c.binary) {
    pre.textContent = "(binary content: compare the files on disk)";
    return pre;
  }
  const upstream = c.upstreamDeleted ? "" : c.upstream;
  const local = c.localDeleted ? "" : c.local;
  if (upstream === null || upstream === undefined) {
    pre.textContent = "(fetching the upstream version…)";
    return pre;
  }
  return fillLineDiff(pre, upstream, local ?? "", [
    `--- upstream #${c.upstreamIteration}${c.upstreamDeleted ? " (deleted)" : c.upstreamCopy ? ` (${c.upstreamCopy})` : ""}`,
    `+++ local${c.localDeleted ? " (deleted)" : ""}`,
  ]);
}

export class SyncPanel {
  /**
   * @param {HTMLElement} root  the <section data-testid="sync-panel">
   * @param {object} ctx        {invoke, listen, onError(err, context), onBridgeState?}
   */
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.sessionId = null;
    this.status = null;
    this.token = 0; // bumped when the selected session changes: answers for the one before are dropped
    this.pushed = 0; // sync-status events received for the selected session
    this.dirs = new Map(); // sessionId -> folder typed for it
    this.name = null; // the selected session's name
    this.suggested = null; // the folder prefill() put in the box, while the user has not changed it
    this.suggestAsks = 0; // prefill()s asked: only the newest one's answer is shown

    this.stateEl = h("span", { class: "badge sync-state", testid: "sync-state", dataset: { state: "off" } }, STATE_WORDS.off);
    this.summaryEl = h("p", { class: "sync-summary", testid: "sync-summary", role: "status" });
    this.dirEl = h("input", {
      type: "text",
      class: "sync-dir",
      testid: "sync-dir",
      placeholder: "Folder on this computer, e.g. ~/projects/name",
      "aria-label": "Local folder to sync the workspace to",
      autocomplete: "off",
      spellcheck: "false",
    });
    this.chooseBtn = h(
      "button",
      { type: "button", class: "ghost small", testid: "sync-choose", "aria-haspopup": "dialog", onclick: () => this.choose() },
      "Choose…",
    );
    this.startBtn = h("button", { type: "submit", class: "primary small", testid: "sync-start" }, "Start");
    this.stopBtn = h("button", { type: "button", class: "ghost small", testid: "sync-stop", onclick: () => this.stop() }, "Stop");
    this.form = h("form", { class: "sync-form", onsubmit: (e) => (e.preventDefault(), this.start(false)) }, this.dirEl, this.chooseBtn, this.startBtn, this.stopBtn);
    this.starting = false; // a start_sync on its way: Start stays disabled
    this.confirmText = h("span", { class: "sync-confirm-text", id: "sync-confirm-text" });
    this.confirmEl = h(
      "div",
      { class: "sync-confirm", testid: "sync-confirm-box", role: "alertdialog", "aria-labelledby": "sync-confirm-text", hidden: true },
      this.confirmText,
      h("button", { type: "button", class: "danger small", testid: "sync-confirm", onclick: () => this.start(true) }, "Sync into it anyway"),
      h("button", { type: "button", class: "ghost small", onclick: () => (this.confirmEl.hidden = true) }, "Cancel"),
    );
    this.countsEl = h("div", { class: "sync-counts muted", testid: "sync-counts" });
    this.limitsEl = h("div", { class: "sync-limits muted", testid: "sync-limits", hidden: true });
    this.scanEl = h("div", { class: "sync-scan muted", testid: "sync-scan", role: "status", hidden: true });
    this.failedHead = h("h3", { class: "sync-failed-head" });
    this.failedList = h("ul", { class: "sync-failed-list" });
    this.failedMore = h("div", { class: "sync-failed-more muted small", testid: "sync-failed-more", hidden: true });
    this.failedEl = h(
      "section",
      { class: "sync-failed", testid: "sync-failed", hidden: true, "aria-label": "Not synced" },
      this.failedHead,
      this.failedList,
      this.failedMore,
    );
    this.errorEl = h("div", { class: "sync-error error-text", testid: "sync-error", hidden: true });
    this.warningEl = h("div", { class: "sync-warning muted", testid: "sync-warning", hidden: true });
    this.modeEl = h("div", { class: "sync-mode", testid: "sync-mode", role: "note", hidden: true });
    this.localEditsEl = h("ul", { class: "sync-local-edits", testid: "sync-local-edits", hidden: true });
    this.conflictsEl = h("div", { class: "sync-conflicts", testid: "sync-conflicts" });
    this.messageEl = h("div", { class: "panel-empty" });
    clear(root);
    // The head, the sentence saying what sync does and the folder stay in view; the details
    // below them scroll.
    this.bodyEl = h("div", { class: "sync-body" });
    root.append(
      h(
        "div",
        { class: "sync-top" },
        h("div", { class: "panel-head" }, h("h2", null, "Sync"), this.stateEl),
        this.messageEl,
        this.summaryEl,
        this.form,
        this.confirmEl,
      ),
      this.bodyEl,
    );
    this.bodyEl.append(
      this.modeEl,
      this.countsEl,
      this.scanEl,
      this.limitsEl,
      this.errorEl,
      this.warningEl,
      this.failedEl,
      this.localEditsEl,
      this.conflictsEl,
    );
    // The conflict banner over the chat follows the selected session's conflicts, whichever
    // session's status brought them.
    syncState.start({ listen: ctx.listen, invoke: ctx.invoke });
    this.banner = new ConflictBanner({ openSync: () => this.reveal() });
    syncState.onChange((sid) => {
      if (sid === this.sessionId) this.banner.show(sid);
    });
    ctx.listen("sync-status", (payload) => {
      if (payload && payload.sessionId === this.sessionId) this.pushed += 1;
      this.onStatus(payload);
    });
    // Events pushed while the event socket was down are lost: ask again once it is back.
    (ctx.onBridgeState || onBridgeState)((state) => {
      if (state === "open" && this.sessionId) this.refresh();
    });
    this.setSession(null);
    setInterval(() => {
      if (this.status && this.status.failed && this.status.failed.length) this.renderFailed(this.status);
    }, AGO_REFRESH_MS);
  }

  /** Taken when a command goes out; `fresh(mark)` when its answer comes back. */
  mark() {
    return { token: this.token, pushed: this.pushed };
  }

  /** Whether an answer to a command sent at `mark` is still the newest word on the status. */
  fresh(mark) {
    return mark.token === this.token && mark.pushed === this.pushed;
  }

  /** The selected session (`name`: its name now; a renamed one gets a suggestion anew). */
  setSession(sessionId, name = null) {
    if (sessionId === this.sessionId) {
      this.renamed(name);
      return;
    }
    if (this.sessionId) this.dirs.set(this.sessionId, this.dirEl.value);
    this.sessionId = sessionId;
    this.name = name;
    this.suggested = null;
    this.status = null;
    this.token += 1;
    this.confirmEl.hidden = true;
    this.dirEl.value = (sessionId && this.dirs.get(sessionId)) || "";
    this.askedFor = null;
    this.banner.show(sessionId);
    this.render();
    if (sessionId) this.refresh();
  }

  async refresh() {
    const sessionId = this.sessionId;
    const token = this.token;
    const mark = this.mark();
    try {
      const status = await this.ctx.invoke("sync_status", { sessionId });
      if (this.fresh(mark)) this.onStatus(status);
    } catch (err) {
      if (token !== this.token) return;
      if (err && err.code !== "NOT_FOUND") this.ctx.onError?.(err, "Sync status");
      if (!this.fresh(mark)) return; // a sync-status event came meanwhile: newer
      this.status = null;
      this.render();
      if (err && err.code === "NOT_FOUND") this.prefill(sessionId, token);
    }
  }

  /** A session never synced: suggest its folder under sync_root (nothing when that is not set). */
  async prefill(sessionId, token) {
    const ask = ++this.suggestAsks;
    try {
      const defaults = await this.ctx.invoke("sync_defaults", { sessionId });
      if (ask !== this.suggestAsks || token !== this.token || this.status || !defaults || !defaults.localDir) return;
      if (this.untouched() && document.activeElement !== this.dirEl) this.dirEl.value = this.suggested = defaults.localDir;
    } catch (_) {
      /* only a suggestion */
    }
  }

  /** Whether the folder box holds nothing, or only what prefill() put there. */
  untouched() {
    return !this.dirEl.value || this.dirEl.value === this.suggested;
  }

  /**
   * The selected session got a new name (named from its first message, say): a suggested folder
   * the user has not changed follows it, as one suggested now would be named.
   */
  renamed(name) {
    if (name === this.name) return;
    this.name = name;
    if (this.sessionId && !this.status && this.suggestAsks && this.untouched()) this.prefill(this.sessionId, this.token);
  }

  onStatus(status) {
    if (status && status.sessionId) syncState.update(status);
    if (!status || status.sessionId !== this.sessionId) return;
    this.status = status;
    if (this.untouched() && status.localDir && document.activeElement !== this.dirEl) this.dirEl.value = status.localDir;
    this.render();
  }

  async start(confirm) {
    const sessionId = this.sessionId;
    const localDir = this.dirEl.value.trim();
    if (!sessionId) return;
    if (!localDir) {
      this.dirEl.focus();
      return;
    }
    this.starting = true;
    this.renderButtons();
    const mark = this.mark();
    try {
      const status = await this.ctx.invoke("start_sync", confirm ? { sessionId, localDir, confirm: true } : { sessionId, localDir });
      this.confirmEl.hidden = true;
      if (this.fresh(mark)) this.onStatus(status);
    } catch (err) {
      if (err && err.code === "FOLDER_NOT_EMPTY") this.askToConfirm(localDir, err.message);
      else this.ctx.onError?.(err, "Start sync");
    } finally {
      this.starting = false;
      this.renderButtons();
    }
  }

  /** start_sync refused a folder that holds files: the question, in words, with its button. */
  askToConfirm(localDir, detail) {
    this.confirmText.textContent = NOT_EMPTY_WORDS;
    this.confirmText.title = detail || localDir || "";
    this.confirmEl.hidden = false;
  }

  /** "Choose…": the native dialog in dim-desktop's window, else the bridge's folder browser. */
  async choose() {
    const picked = await chooseFolder({ invoke: this.ctx.invoke, start: this.dirEl.value.trim(), returnFocus: this.chooseBtn });
    if (picked) {
      this.dirEl.value = picked;
      this.confirmEl.hidden = true;
      this.startBtn.focus();
    }
  }

  /** The banner's "Resolve": the Sync panel, scrolled to its first conflict. */
  reveal() {
    showSideTab("sync");
    const first = this.conflictsEl.querySelector("[data-testid=sync-conflict]");
    (first || this.root).scrollIntoView({ block: "nearest" });
    const button = first && first.querySelector("button");
    if (button) button.focus();
  }

  /** Start while no sync runs (nor a start is on its way), Stop while one does. */
  renderButtons() {
    const s = this.status;
    const running = !!s && (s.state === "active" || s.state === "error");
    this.stopBtn.disabled = !running || this.starting;
    this.startBtn.disabled = !this.sessionId || this.starting || (!!s && s.state === "active");
    this.startBtn.textContent = s && s.state === "paused" ? "Resume" : s && s.state === "error" ? "Try again" : "Start";
    this.dirEl.disabled = running;
    this.chooseBtn.disabled = running;
  }

  async stop() {
    if (!this.sessionId) return;
    const mark = this.mark();
    try {
      const status = await this.ctx.invoke("stop_sync", { sessionId: this.sessionId });
      if (this.fresh(mark)) this.onStatus(status);
    } catch (err) {
      this.ctx.onError?.(err, "Stop sync");
    }
  }

  async resolve(path, resolution, buttons) {
    for (const b of buttons) b.disabled = true;
    const mark = this.mark();
    try {
      const result = await this.ctx.invoke("resolve_conflict", { sessionId: this.sessionId, path, resolution });
      if (result && result.status && this.fresh(mark)) {
        this.onStatus({ ...result.status, conflicts: (this.status?.conflicts || []).filter((c) => c.path !== path) });
      }
      this.refresh();
    } catch (err) {
      for (const b of buttons) b.disabled = false;
      this.ctx.onError?.(err, "Resolve conflict");
    }
  }

  render() {
    const s = this.status;
    const state = !this.sessionId ? "off" : s ? s.state : "off";
    this.stateEl.textContent = STATE_WORDS[state] || state;
    this.stateEl.dataset.state = state;
    this.summaryEl.textContent = this.sessionId ? syncSummary(s) : "";
    this.summaryEl.hidden = !this.sessionId;
    this.form.hidden = !this.sessionId;
    this.messageEl.textContent = this.sessionId ? "" : "Select a session to sync its workspace to a folder.";
    this.messageEl.hidden = !!this.sessionId;
    this.renderButtons();
    if (!s) {
      this.countsEl.textContent = "";
      this.errorEl.hidden = true;
      this.warningEl.hidden = true;
      this.modeEl.hidden = true;
      this.localEditsEl.hidden = true;
      this.limitsEl.hidden = true;
      this.renderScan(null);
      this.renderFailed(null);
      this.root.dataset.mode = "";
      clear(this.conflictsEl);
      return;
    }
    const mirror = s.mode === "mirror";
    this.root.dataset.mode = s.mode || "";
    this.modeEl.hidden = !mirror;
    this.modeEl.textContent = mirror ? s.modeNote || "Read-only mirror: local edits are not sent." : "";
    const bits = [
      `${plural(s.filesTracked, "file")} in the folder`,
      mirror ? `${s.pendingWrites} kept locally, not sent` : s.pendingWrites ? `${s.pendingWrites} waiting to be sent` : "",
      s.conflicts.length ? plural(s.conflicts.length, "conflict") : "",
      s.lastSyncAt ? `last synced at ${formatTime(s.lastSyncAt)}` : "",
    ].filter(Boolean);
    this.countsEl.textContent = bits.join(" · ");
    this.countsEl.dataset.files = String(s.filesTracked);
    this.countsEl.dataset.pending = String(s.pendingWrites);
    this.errorEl.hidden = !s.error;
    this.errorEl.textContent = s.errorCode === "FOLDER_NOT_EMPTY" ? "Sync did not start on its own: this folder is not empty." : s.error || "";
    this.errorEl.title = s.errorCode === "FOLDER_NOT_EMPTY" ? s.error || "" : "";
    this.errorEl.dataset.code = s.errorCode || "";
    // asked once per refusal: Cancel is not undone by the next status
    if (s.errorCode === "FOLDER_NOT_EMPTY" && s.state !== "active" && this.askedFor !== s.error) {
      this.askedFor = s.error;
      this.askToConfirm(s.localDir, s.error);
    }
    this.warningEl.hidden = !s.warning;
    this.warningEl.textContent = s.warning || "";
    this.renderLimits(s);
    this.renderScan(s.scan);
    this.renderFailed(s);
    this.renderLocalEdits(mirror ? s.localEdits || [] : []);
    this.renderConflicts(s.conflicts || []);
  }

  /** A big folder's first pass, which can take minutes: how far it got. */
  renderScan(scan) {
    const n = (x) => (typeof x === "number" ? x.toLocaleString("en-US") : "");
    let words = "";
    if (scan && scan.phase === "listing") words = `Looking through the folder: ${n(scan.done)} files so far`;
    else if (scan && scan.phase === "indexing")
      words = typeof scan.total === "number" ? `Recording files: ${n(scan.done)} of ${n(scan.total)}` : `Recording files: ${n(scan.done)}`;
    this.scanEl.textContent = words;
    this.scanEl.hidden = !words;
    this.scanEl.dataset.phase = words ? scan.phase : "";
  }

  /** The size limit and the free space, in plain words. */
  renderLimits(s) {
    const bits = [];
    if (typeof s.maxFileSize === "number") bits.push(`Files over ${formatBytes(s.maxFileSize)} are not synced`);
    if (typeof s.freeSpace === "number") {
      const floor = typeof s.minFreeSpace === "number" && s.minFreeSpace > 0 ? ` (sync pauses below ${formatBytes(s.minFreeSpace)})` : "";
      bits.push(`${formatBytes(s.freeSpace)} free${floor}`);
    }
    this.limitsEl.textContent = bits.join(" · ");
    this.limitsEl.hidden = bits.length === 0;
    const low = typeof s.freeSpace === "number" && typeof s.minFreeSpace === "number" && s.freeSpace < s.minFreeSpace;
    this.limitsEl.dataset.low = low ? "1" : "";
    this.limitsEl.dataset.maxFileSize = typeof s.maxFileSize === "number" ? String(s.maxFileSize) : "";
  }

  /** Items that could not be synced, each with its reason; none: the section is hidden. */
  renderFailed(s) {
    const items = (s && s.failed) || [];
    const count = Math.max((s && s.failedCount) || 0, items.length);
    const scrolled = this.failedList.scrollTop; // redrawn on every status: the reader keeps their place
    clear(this.failedList);
    this.failedEl.hidden = count === 0;
    this.failedEl.dataset.count = String(count);
    this.failedHead.textContent = failedHeading(count);
    const more = count - items.length;
    this.failedMore.hidden = more <= 0;
    this.failedMore.textContent = more > 0 ? `… and ${more} more` : "";
    const now = Date.now();
    for (const f of items) {
      const when = [
        f.since ? `noticed ${formatAgo(f.since, now)}` : "",
        f.retries ? `retried ${f.retries} time${f.retries === 1 ? "" : "s"}` : "",
      ].filter(Boolean);
      this.failedList.appendChild(
        h(
          "li",
          { class: "sync-failed-item", testid: "sync-failed-item", dataset: { path: f.path, direction: f.direction } },
          h(
            "div",
            { class: "sync-failed-line" },
            h("span", { class: "sync-failed-path" }, f.path),
            h("span", { class: "sync-failed-direction muted small" }, DIRECTION_WORDS[f.direction] || f.direction),
          ),
          h("div", { class: "sync-failed-reason" }, f.reason),
          when.length ? h("div", { class: "sync-failed-when muted small", title: f.since ? exactTime(f.since) : null }, when.join(" · ")) : null,
        ),
      );
    }
    this.failedList.scrollTop = scrolled;
  }

  /** A mirror's local edits: they stay on this computer (the gateway takes no writes). */
  renderLocalEdits(edits) {
    clear(this.localEditsEl);
    this.localEditsEl.hidden = edits.length === 0;
    for (const e of edits) {
      this.localEditsEl.appendChild(
        h(
          "li",
          { class: "sync-local-edit", testid: "sync-local-edit", dataset: { path: e.path } },
          h("span", { class: "sync-local-path" }, e.path),
          e.deleted ? h("span", { class: "muted small" }, " (deleted here)") : null,
          h("span", { class: "sync-local-mark muted small" }, "kept locally, not sent"),
        ),
      );
    }
  }

  renderConflicts(conflicts) {
    clear(this.conflictsEl);
    for (const c of conflicts) {
      const buttons = [];
      const act = (resolution, label, testid, cls) => {
        const b = h("button", { type: "button", class: `small ${cls}`, testid, onclick: () => this.resolve(c.path, resolution, buttons) }, label);
        buttons.push(b);
        return b;
      };
      this.conflictsEl.appendChild(
        h(
          "div",
          { class: "sync-conflict", testid: "sync-conflict", dataset: { path: c.path } },
          h("div", { class: "sync-conflict-head" }, h("span", { class: "sync-conflict-path" }, c.path), h("span", { class: "muted small" }, `upstream #${c.upstreamIteration}`)),
          renderDiff(c),
          h(
            "div",
            { class: "row" },
            act("keep_local", "Keep local", "keep-local", "primary"),
            act("accept_upstream", "Accept upstream", "accept-upstream", "ghost"),
            act("merged", "Mark merged", "mark-merged", "ghost"),
          ),
        ),
      );
    }
  }
}
