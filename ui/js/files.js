// The Files panel: the selected session's workspace via list_files / read_file / file_history /
// file_at_iteration. Refreshes (debounced) when file_changed events arrive for the session.
// A file's history compares any two of its iterations as a line diff (the same rendering as the
// Sync panel's conflicts); `showChange(path, iteration)` opens one change (the chat's file-change
// lines call it).

import { h, clear, formatBytes, formatTime } from "./dom.js";
import { diffBox, fillLineDiff } from "./linediff.js";
import { syncState } from "./syncstate.js";
import { showSideTab } from "./layout.js";

const DIR_TYPES = new Set(["dir", "directory", "folder", "tree"]);

function joinPath(dir, name) {
  if (!dir) return name;
  return `${dir.replace(/\/+$/, "")}/${name}`;
}

function baseName(path) {
  const parts = String(path).replace(/\/+$/, "").split("/");
  return parts[parts.length - 1] || path;
}

function normEntry(entry, dir) {
  if (typeof entry === "string") {
    const isDir = entry.endsWith("/");
    const path = !dir || entry.startsWith(`${dir}/`) ? entry : joinPath(dir, entry);
    return { path: path.replace(/\/+$/, ""), name: baseName(entry), isDir, size: null };
  }
  if (!entry || typeof entry !== "object") return null;
  const name = entry.name ?? (entry.path ? baseName(entry.path) : "");
  const path = entry.path ?? joinPath(dir, name);
  const type = String(entry.type ?? entry.kind ?? "").toLowerCase();
  const isDir = DIR_TYPES.has(type) || entry.isDir === true || entry.isDirectory === true || entry.directory === true;
  return { path, name, isDir, size: typeof entry.size === "number" ? entry.size : null, iteration: entry.iteration };
}

/**
 * The entries directly inside `dir`. A gateway may list a whole subtree (flat, with paths): deeper
 * entries are folded into their top folder below `dir`, so the panel browses one level at a time.
 */
function directChildren(entries, dir) {
  const prefix = dir ? `${dir.replace(/\/+$/, "")}/` : "";
  const out = new Map();
  for (const e of entries) {
    const path = e.path.replace(/^\/+/, "");
    if (prefix && !path.startsWith(prefix)) continue;
    const rel = path.slice(prefix.length);
    if (!rel) continue;
    const slash = rel.indexOf("/");
    if (slash === -1) {
      const prev = out.get(path);
      out.set(path, prev && prev.isDir ? prev : { ...e, path });
    } else {
      const top = prefix + rel.slice(0, slash);
      if (!out.has(top) || !out.get(top).isDir) out.set(top, { path: top, name: rel.slice(0, slash), isDir: true, size: null });
    }
  }
  return [...out.values()];
}

function decodeContent(result) {
  const content = result?.content ?? "";
  const encoding = String(result?.encoding ?? "utf-8").toLowerCase();
  if (encoding === "base64") {
    try {
      const bin = atob(content);
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i += 1) bytes[i] = bin.charCodeAt(i);
      try {
        return { text: new TextDecoder("utf-8", { fatal: true }).decode(bytes), binary: false, size: bytes.length };
      } catch (_) {
        return { text: `(binary file, ${formatBytes(bytes.length)})`, binary: true, size: bytes.length };
      }
    } catch (_) {
      return { text: "(undecodable base64 content)", binary: true, size: 0 };
    }
  }
  return { text: typeof content === "string" ? content : JSON.stringify(content, null, 2), binary: false, size: null };
}

export class FilesPanel {
  /**
   * @param {HTMLElement} root  the <section data-testid="files-panel">
   * @param {object} ctx        {invoke, onError(err)}
   */
  constructor(root, ctx) {
    FilesPanel.instance = this; // the page's one panel, for what opens a file change
    this.root = root;
    this.ctx = ctx;
    this.sessionId = null;
    this.dir = "";
    this.file = null; // selected file path
    this.iteration = null; // null = latest
    this.token = 0; // guards against late responses after a session switch
    this.refreshTimer = null;

    this.pathEl = h("span", { class: "files-path", testid: "files-path" });
    this.upBtn = h("button", { type: "button", class: "icon", title: "Up one folder", "aria-label": "Up one folder", onclick: () => this.open(this.parentDir()) }, "↑");
    this.refreshBtn = h("button", { type: "button", class: "icon", testid: "files-refresh", title: "Refresh", "aria-label": "Refresh files", onclick: () => this.refresh() }, "⟳");
    this.listEl = h("ul", { class: "file-list", testid: "file-list", "aria-label": "Files" });
    this.viewTitle = h("div", { class: "file-view-title" });
    this.latestBtn = h("button", { type: "button", class: "ghost small", testid: "file-latest", onclick: () => this.showIteration(null) }, "Latest");
    this.contentEl = h("pre", { class: "file-content", testid: "file-content", tabindex: "0", "aria-label": "File content" });
    this.historyEl = h("ol", { class: "file-history", testid: "file-history", "aria-label": "File history" });
    this.iterations = []; // the selected file's, newest first
    this.diff = null; // {from, to} while the view shows the changes between two iterations
    this.diffEl = diffBox({ testid: "file-diff", label: "Changes", className: "file-diff" });
    this.diffEl.hidden = true;
    this.fromSel = h("select", { class: "file-compare-from", testid: "file-diff-from", "aria-label": "Compare from iteration" });
    this.toSel = h("select", { class: "file-compare-to", testid: "file-diff-to", "aria-label": "Compare to iteration" });
    this.compareEl = h(
      "form",
      { class: "file-compare", testid: "file-compare", hidden: true, onsubmit: (e) => (e.preventDefault(), this.showDiff(Number(this.fromSel.value), Number(this.toSel.value))) },
      h("span", { class: "subhead" }, "Compare"),
      this.fromSel,
      h("span", { "aria-hidden": "true" }, "→"),
      this.toSel,
      h("button", { type: "submit", class: "ghost small", testid: "file-diff-show" }, "Show changes"),
    );
    this.viewEl = h(
      "div",
      { class: "file-view", hidden: true },
      h("div", { class: "file-view-head" }, this.viewTitle, this.latestBtn),
      this.contentEl,
      this.diffEl,
      this.compareEl,
      h("div", { class: "subhead" }, "History"),
      this.historyEl,
    );
    this.messageEl = h("div", { class: "panel-empty" });
    clear(root);
    root.append(
      h("div", { class: "panel-head" }, h("h2", null, "Files"), this.pathEl, h("div", { class: "spacer" }), this.upBtn, this.refreshBtn),
      this.messageEl,
      this.listEl,
      this.viewEl,
    );
    this.setSession(null);
    // an upload's answer can reach the journal after the file_changed that refreshed the history
    syncState.onChange((sid) => {
      if (sid === this.sessionId && this.file) this.markWho();
    });
  }

  setSession(sessionId) {
    if (sessionId === this.sessionId) return;
    this.sessionId = sessionId;
    this.dir = "";
    this.file = null;
    this.iteration = null;
    this.token += 1;
    clear(this.listEl);
    this.viewEl.hidden = true;
    this.renderPath();
    if (!sessionId) {
      this.message("Select a session to browse its files.");
      return;
    }
    this.refresh();
  }

  parentDir() {
    const parts = this.dir.split("/").filter(Boolean);
    parts.pop();
    return parts.join("/");
  }

  renderPath() {
    this.pathEl.textContent = `/${this.dir}`;
    this.upBtn.disabled = !this.dir;
    this.refreshBtn.disabled = !this.sessionId;
  }

  message(text) {
    this.messageEl.textContent = text;
    this.messageEl.hidden = !text;
  }

  open(dir) {
    this.dir = dir;
    this.renderPath();
    this.refresh();
  }

  async refresh() {
    const sessionId = this.sessionId;
    if (!sessionId) return;
    const token = this.token;
    const args = { sessionId, depth: 1 };
    if (this.dir) args.path = this.dir;
    let result;
    try {
      result = await this.ctx.invoke("list_files", args);
    } catch (err) {
      if (token !== this.token) return;
      this.message(`Could not list files: ${err.message}`);
      return;
    }
    if (token !== this.token || sessionId !== this.sessionId) return;
    const raw = Array.isArray(result) ? result : result?.files ?? result?.entries ?? [];
    const entries = directChildren(raw.map((e) => normEntry(e, this.dir)).filter(Boolean), this.dir);
    entries.sort((a, b) => Number(b.isDir) - Number(a.isDir) || a.path.localeCompare(b.path));
    clear(this.listEl);
    for (const e of entries) {
      const btn = h(
        "button",
        {
          type: "button",
          class: `file-item${e.isDir ? " dir" : ""}${e.path === this.file ? " selected" : ""}`,
          testid: "file-item",
          dataset: { path: e.path, kind: e.isDir ? "dir" : "file" },
          onclick: () => (e.isDir ? this.open(e.path) : this.select(e.path)),
        },
        // Named by what it shows (the name, the size), so speech input can say what is seen;
        // a folder says so in words the icon stands for.
        h("span", { class: "file-icon", "aria-hidden": "true" }, e.isDir ? "▸" : "·"),
        h("span", { class: "file-name" }, this.dir && e.path.startsWith(`${this.dir}/`) ? e.path.slice(this.dir.length + 1) : e.path),
        e.isDir ? h("span", { class: "sr-only" }, " folder") : null,
        h("span", { class: "file-size" }, e.isDir ? "" : formatBytes(e.size)),
      );
      this.listEl.appendChild(h("li", null, btn));
    }
    this.message(entries.length ? "" : "No files yet.");
  }

  async select(path) {
    this.file = path;
    this.iteration = null;
    this.setDiff(null);
    for (const el of this.listEl.querySelectorAll("[data-testid=file-item]")) el.classList.toggle("selected", el.dataset.path === path);
    this.viewEl.hidden = false;
    await Promise.all([this.loadContent(), this.loadHistory()]);
  }

  async showIteration(iteration) {
    this.iteration = iteration;
    this.setDiff(null);
    await this.loadContent();
    this.markHistory();
  }

  /**
   * One change of a file, as the chat names it ("changed src/parser.py #2"): the file's history
   * with the diff of the iteration before `iteration` → `iteration` (a creation is compared with
   * nothing, a deletion with nothing after it).
   */
  async showChange(path, iteration) {
    if (!this.sessionId || !path) return;
    showSideTab("files");
    const parts = String(path).split("/").filter(Boolean);
    parts.pop();
    const dir = parts.join("/");
    if (dir !== this.dir) {
      this.dir = dir;
      this.renderPath();
      this.refresh();
    }
    this.file = path;
    this.iteration = null;
    for (const el of this.listEl.querySelectorAll("[data-testid=file-item]")) el.classList.toggle("selected", el.dataset.path === path);
    this.viewEl.hidden = false;
    const to = Number(iteration);
    this.setDiff({ from: null, to });
    await this.loadHistory();
    if (this.file !== path) return;
    await this.showDiff(this.previous(to), to);
    this.viewEl.scrollIntoView({ block: "nearest" });
  }

  /** The iteration of the selected file just before `iteration` (0: none, it was created then). */
  previous(iteration) {
    let best = 0;
    for (const it of this.iterations) if (it.iteration < iteration && it.iteration > best) best = it.iteration;
    return best;
  }

  setDiff(diff) {
    this.diff = diff;
    this.diffEl.hidden = !diff;
    this.contentEl.hidden = !!diff;
    if (diff) this.latestBtn.hidden = false;
  }

  /** The text of one iteration: "" for none (0) or a deletion; null with `why` when it cannot be shown. */
  async textAt(iteration) {
    if (!iteration) return { text: "" };
    const meta = this.iterations.find((it) => it.iteration === iteration);
    if (meta && meta.deleted) return { text: "", deleted: true };
    const result = await this.ctx.invoke("file_at_iteration", { sessionId: this.sessionId, path: this.file, iteration });
    const decoded = decodeContent(result);
    return decoded.binary ? { text: null, why: decoded.text } : { text: decoded.text };
  }

  /** The changes from iteration `from` (0: before the file existed) to iteration `to`. */
  async showDiff(from, to) {
    const { sessionId, file } = this;
    const token = this.token;
    if (!sessionId || !file || !to) return;
    this.iteration = null;
    this.setDiff({ from, to });
    this.fromSel.value = String(from);
    this.toSel.value = String(to);
    this.markHistory();
    this.viewTitle.textContent = `${file} · changes ${from ? `#${from}` : "(new file)"} → #${to}`;
    this.diffEl.dataset.path = file;
    this.diffEl.dataset.from = String(from);
    this.diffEl.dataset.to = String(to);
    this.diffEl.setAttribute("aria-label", `Changes to ${file} from ${from ? `version ${from}` : "nothing"} to version ${to}`);
    clear(this.diffEl).textContent = "Loading…";
    let a, b;
    try {
      [a, b] = await Promise.all([this.textAt(from), this.textAt(to)]);
    } catch (err) {
      if (token !== this.token || file !== this.file || this.diff?.to !== to || this.diff?.from !== from) return;
      this.diffEl.textContent = `Could not read ${file}: ${err.message}`;
      return;
    }
    if (token !== this.token || file !== this.file || this.diff?.to !== to || this.diff?.from !== from) return;
    clear(this.diffEl);
    if (a.text === null || b.text === null) {
      this.diffEl.textContent = a.why || b.why;
      return;
    }
    const label = (n, t) => (!n ? "(did not exist)" : t.deleted ? `#${n} (deleted)` : `#${n}`);
    fillLineDiff(this.diffEl, a.text, b.text, [`--- ${label(from, a)}`, `+++ ${label(to, b)}`]);
  }

  async loadContent() {
    const { sessionId, file, iteration } = this;
    const token = this.token;
    if (!sessionId || !file) return;
    if (this.diff) return;
    this.viewTitle.textContent = `${file} · ${iteration === null ? "latest" : `version ${iteration}`}`;
    this.latestBtn.hidden = iteration === null;
    this.contentEl.dataset.path = file;
    this.contentEl.dataset.iteration = iteration === null ? "latest" : String(iteration);
    let result;
    try {
      result =
        iteration === null
          ? await this.ctx.invoke("read_file", { sessionId, path: file })
          : await this.ctx.invoke("file_at_iteration", { sessionId, path: file, iteration });
    } catch (err) {
      if (token !== this.token || file !== this.file) return;
      this.contentEl.textContent = `Could not read ${file}: ${err.message}`;
      this.contentEl.classList.add("error-text");
      this.ctx.onError?.(err);
      return;
    }
    if (token !== this.token || file !== this.file || iteration !== this.iteration || this.diff) return;
    const decoded = decodeContent(result);
    this.contentEl.classList.remove("error-text");
    this.contentEl.classList.toggle("binary", decoded.binary);
    this.contentEl.textContent = decoded.text;
    if (iteration === null && typeof result?.iteration === "number") {
      this.viewTitle.textContent = `${file} · latest (#${result.iteration})`;
    }
  }

  async loadHistory() {
    const { sessionId, file } = this;
    const token = this.token;
    if (!sessionId || !file) return;
    let result;
    try {
      result = await this.ctx.invoke("file_history", { sessionId, path: file });
    } catch (err) {
      if (token !== this.token || file !== this.file) return;
      clear(this.historyEl).appendChild(h("li", { class: "panel-empty" }, `No history: ${err.message}`));
      return;
    }
    if (token !== this.token || file !== this.file) return;
    const raw = Array.isArray(result) ? result : result?.iterations ?? result?.history ?? [];
    const iterations = raw
      .map((it) => (typeof it === "number" ? { iteration: it } : it))
      .filter((it) => it && it.iteration !== undefined)
      .sort((a, b) => b.iteration - a.iteration);
    this.iterations = iterations;
    clear(this.historyEl);
    for (const it of iterations) {
      const bits = [`Version ${it.iteration}`, formatTime(it.timestamp), it.deleted ? "deleted" : formatBytes(it.size)].filter(Boolean);
      const previous = this.previous(it.iteration);
      this.historyEl.appendChild(
        h(
          "li",
          { class: "file-iteration-row" },
          h(
            "button",
            {
              type: "button",
              class: "iteration",
              testid: "file-iteration",
              dataset: { iteration: String(it.iteration) },
              title: it.hash ? `hash ${it.hash}` : "",
              disabled: !!it.deleted,
              onclick: () => this.showIteration(it.iteration),
            },
            bits.join(" · "),
            h("span", { class: "iteration-who" }),
          ),
          h(
            "button",
            {
              type: "button",
              class: "ghost small iteration-diff",
              testid: "file-iteration-diff",
              dataset: { iteration: String(it.iteration) },
              "aria-label": `Changes in version ${it.iteration}`,
              onclick: () => this.showDiff(previous, it.iteration),
            },
            "Changes",
          ),
        ),
      );
    }
    if (!iterations.length) this.historyEl.appendChild(h("li", { class: "panel-empty" }, "No recorded iterations."));
    this.fillCompare(iterations);
    this.markWho();
    this.markHistory();
  }

  /** The two pickers of "Compare": any two iterations, by default the previous → the newest. */
  fillCompare(iterations) {
    const keep = this.diff && this.diff.from !== null ? [this.diff.from, this.diff.to] : null;
    clear(this.fromSel);
    clear(this.toSel);
    this.fromSel.appendChild(h("option", { value: "0" }, "nothing (new file)"));
    for (const it of iterations) {
      const words = `Version ${it.iteration}${it.timestamp ? ` · ${formatTime(it.timestamp)}` : ""}${it.deleted ? " (deleted)" : ""}`;
      this.fromSel.appendChild(h("option", { value: String(it.iteration) }, words));
      this.toSel.appendChild(h("option", { value: String(it.iteration) }, words));
    }
    this.compareEl.hidden = iterations.length === 0;
    if (!iterations.length) return;
    const newest = iterations[0].iteration;
    const [from, to] = keep || [this.previous(newest), newest];
    this.fromSel.value = String(from);
    this.toSel.value = String(to);
  }

  /** "your local edit" on the iterations this app's sync uploaded (known when the journal is). */
  markWho() {
    for (const el of this.historyEl.querySelectorAll("[data-testid=file-iteration]")) {
      const local = syncState.whoChanged(this.sessionId, this.file, Number(el.dataset.iteration)) === "local";
      el.querySelector(".iteration-who").textContent = local ? " · your local edit" : "";
    }
  }

  markHistory() {
    const d = this.diff;
    for (const el of this.historyEl.querySelectorAll("[data-testid=file-iteration]")) {
      el.classList.toggle("selected", this.iteration !== null && el.dataset.iteration === String(this.iteration));
    }
    for (const el of this.historyEl.querySelectorAll("[data-testid=file-iteration-diff]")) {
      const on = !!d && el.dataset.iteration === String(d.to) && d.from === this.previous(d.to);
      el.classList.toggle("selected", on);
      el.setAttribute("aria-pressed", on ? "true" : "false");
    }
  }

  /** A file_changed event for the selected session. */
  onFileChanged(ev) {
    if (!ev || ev.sessionId !== this.sessionId) return;
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => {
      this.refresh();
      if (this.file && (ev.path === this.file || ev.renamedFrom === this.file)) {
        if (this.iteration === null) this.loadContent();
        this.loadHistory();
      }
    }, 300);
  }
}
