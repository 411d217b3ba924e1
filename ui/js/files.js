// The Files panel: the selected session's workspace via list_files / read_file / file_history /
// file_at_iteration. Refreshes (debounced) when file_changed events arrive for the session.

import { h, clear, formatBytes, formatTime } from "./dom.js";

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
    this.viewEl = h(
      "div",
      { class: "file-view", hidden: true },
      h("div", { class: "file-view-head" }, this.viewTitle, this.latestBtn),
      this.contentEl,
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
          "aria-label": `${e.isDir ? "Open folder" : "Open file"} ${e.path}`,
        },
        h("span", { class: "file-icon", "aria-hidden": "true" }, e.isDir ? "▸" : "·"),
        h("span", { class: "file-name" }, this.dir && e.path.startsWith(`${this.dir}/`) ? e.path.slice(this.dir.length + 1) : e.path),
        h("span", { class: "file-size" }, e.isDir ? "" : formatBytes(e.size)),
      );
      this.listEl.appendChild(h("li", null, btn));
    }
    this.message(entries.length ? "" : "No files yet.");
  }

  async select(path) {
    this.file = path;
    this.iteration = null;
    for (const el of this.listEl.querySelectorAll("[data-testid=file-item]")) el.classList.toggle("selected", el.dataset.path === path);
    this.viewEl.hidden = false;
    await Promise.all([this.loadContent(), this.loadHistory()]);
  }

  async showIteration(iteration) {
    this.iteration = iteration;
    await this.loadContent();
    this.markHistory();
  }

  async loadContent() {
    const { sessionId, file, iteration } = this;
    const token = this.token;
    if (!sessionId || !file) return;
    this.viewTitle.textContent = `${file} · ${iteration === null ? "latest" : `iteration ${iteration}`}`;
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
    if (token !== this.token || file !== this.file || iteration !== this.iteration) return;
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
    clear(this.historyEl);
    for (const it of iterations) {
      const bits = [`#${it.iteration}`, formatTime(it.timestamp), formatBytes(it.size)].filter(Boolean);
      this.historyEl.appendChild(
        h(
          "li",
          null,
          h(
            "button",
            {
              type: "button",
              class: "iteration",
              testid: "file-iteration",
              dataset: { iteration: String(it.iteration) },
              title: it.hash ? `hash ${it.hash}` : "",
              onclick: () => this.showIteration(it.iteration),
            },
            bits.join(" · "),
          ),
        ),
      );
    }
    if (!iterations.length) this.historyEl.appendChild(h("li", { class: "panel-empty" }, "No recorded iterations."));
    this.markHistory();
  }

  markHistory() {
    for (const el of this.historyEl.querySelectorAll("[data-testid=file-iteration]")) {
      el.classList.toggle("selected", this.iteration !== null && el.dataset.iteration === String(this.iteration));
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
