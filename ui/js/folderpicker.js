// Choosing a folder on this computer. In dim-desktop's own window the system's folder dialog
// opens (pywebview's js_api: window.pywebview.api.choose_folder, dim_actors/desktop/folderdialog.py);
// in a browser a small folder browser walks the folders the bridge lists (`list_folders`:
// home and the sync_root setting's folder only).

import { h, clear } from "./dom.js";

function nativeApi() {
  const api = window.pywebview && window.pywebview.api;
  return api && typeof api.choose_folder === "function" ? api : null;
}

/**
 * Resolves with the absolute path of the folder picked, or null when the user cancelled.
 * `start`: a folder to open at (ignored when it cannot be listed); `returnFocus`: the element
 * focused again after the browser dialog closes.
 */
export async function chooseFolder({ invoke, start = "", returnFocus = null }) {
  const api = nativeApi();
  if (api) {
    try {
      const picked = await api.choose_folder(start || null);
      return typeof picked === "string" && picked ? picked : null;
    } catch (err) {
      console.error("the native folder dialog failed; using the folder browser", err);
    }
  }
  return FolderBrowser.get(invoke).open(start, returnFocus);
}

class FolderBrowser {
  static get(invoke) {
    if (!FolderBrowser.instance) FolderBrowser.instance = new FolderBrowser(invoke);
    FolderBrowser.instance.invoke = invoke;
    return FolderBrowser.instance;
  }

  constructor(invoke) {
    this.invoke = invoke;
    this.listing = null;
    this.resolve = null;
    this.token = 0;
    this.pathEl = h("div", { class: "folder-picker-path", testid: "folder-picker-path", "aria-live": "polite" });
    this.rootsEl = h("div", { class: "folder-picker-roots", role: "group", "aria-label": "Places" });
    this.upBtn = h("button", { type: "button", class: "ghost small", testid: "folder-picker-up", onclick: () => this.up() }, "↑ Up");
    this.hiddenBox = h("input", { type: "checkbox", testid: "folder-picker-hidden", onchange: () => this.load(this.listing ? this.listing.path : "") });
    this.listEl = h("ul", { class: "folder-picker-list", testid: "folder-picker-list", "aria-label": "Folders", onkeydown: (e) => this.onListKey(e) });
    this.errorEl = h("div", { class: "folder-picker-error error-text", testid: "folder-picker-error", role: "alert", hidden: true });
    this.chooseBtn = h("button", { type: "button", class: "primary", testid: "folder-picker-choose", onclick: () => this.finish(this.listing && this.listing.path) }, "Choose this folder");
    this.dialog = h(
      "dialog",
      { class: "folder-picker", testid: "folder-picker", "aria-labelledby": "folder-picker-title" },
      h("h2", { id: "folder-picker-title" }, "Choose a folder"),
      h("div", { class: "folder-picker-bar" }, this.upBtn, this.rootsEl),
      this.pathEl,
      this.errorEl,
      this.listEl,
      h(
        "div",
        { class: "folder-picker-foot" },
        h("label", { class: "toggle" }, this.hiddenBox, h("span", null, "Show hidden folders")),
        h("span", { class: "spacer" }),
        h("button", { type: "button", class: "ghost", testid: "folder-picker-cancel", onclick: () => this.finish(null) }, "Cancel"),
        this.chooseBtn,
      ),
    );
    // Esc closes a <dialog> by itself: that is a cancel.
    this.dialog.addEventListener("close", () => this.settle(null));
    document.body.appendChild(this.dialog);
  }

  open(start, returnFocus) {
    this.settle(null); // one question at a time
    this.returnFocus = returnFocus;
    this.hiddenBox.checked = false;
    this.listing = null;
    clear(this.listEl);
    this.pathEl.textContent = "";
    if (!this.dialog.open) this.dialog.showModal();
    const promise = new Promise((resolve) => (this.resolve = resolve));
    this.load(start, true);
    return promise;
  }

  /** Lists `path` ("" the home folder); `fallBack`: on a refusal, list the home folder instead. */
  async load(path, fallBack = false) {
    const token = ++this.token;
    const args = path ? { path } : {};
    if (this.hiddenBox.checked) args.showHidden = true;
    let listing;
    try {
      listing = await this.invoke("list_folders", args);
    } catch (err) {
      if (token !== this.token) return;
      if (fallBack && path) return this.load("", false);
      this.showError(err && err.message ? err.message.replace(/^list_folders: /, "") : String(err));
      return;
    }
    if (token !== this.token) return;
    this.showError("");
    this.render(listing);
  }

  showError(text) {
    this.errorEl.textContent = text;
    this.errorEl.hidden = !text;
  }

  render(listing) {
    this.listing = listing;
    this.pathEl.textContent = listing.path;
    this.upBtn.disabled = !listing.parent;
    // The visible words first, then which folder they mean.
    this.chooseBtn.setAttribute("aria-label", `Choose this folder: ${listing.path}`);
    clear(this.rootsEl);
    for (const r of listing.roots || []) {
      this.rootsEl.appendChild(
        h(
          "button",
          { type: "button", class: `ghost small${r.path === listing.root ? " selected" : ""}`, testid: "folder-picker-root", title: r.path, onclick: () => this.load(r.path) },
          r.label,
        ),
      );
    }
    clear(this.listEl);
    for (const f of listing.folders) {
      this.listEl.appendChild(
        h(
          "li",
          null,
          h(
            "button",
            { type: "button", class: "folder-picker-item", testid: "folder-picker-item", dataset: { path: f.path }, "aria-label": `Open ${f.name}`, onclick: () => this.load(f.path) },
            h("span", { class: "file-name" }, f.name),
          ),
        ),
      );
    }
    if (!listing.folders.length) this.listEl.appendChild(h("li", { class: "panel-empty", testid: "folder-picker-empty" }, "No folders in here."));
    if (listing.truncated) this.listEl.appendChild(h("li", { class: "panel-empty" }, "Only the first folders are listed."));
    const first = this.listEl.querySelector("button");
    (first || this.chooseBtn).focus();
  }

  up() {
    if (this.listing && this.listing.parent) this.load(this.listing.parent);
  }

  /** Arrow keys move between folders; Backspace or Alt+↑ goes up a folder. */
  onListKey(e) {
    const items = [...this.listEl.querySelectorAll("button")];
    const at = items.indexOf(document.activeElement);
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      if (e.altKey && e.key === "ArrowUp") {
        this.up();
      } else if (items.length) {
        const next = e.key === "ArrowDown" ? Math.min(items.length - 1, at + 1) : Math.max(0, at - 1);
        items[next].focus();
      }
      e.preventDefault();
    } else if (e.key === "Home" || e.key === "End") {
      if (items.length) items[e.key === "Home" ? 0 : items.length - 1].focus();
      e.preventDefault();
    } else if (e.key === "Backspace") {
      this.up();
      e.preventDefault();
    }
  }

  finish(path) {
    this.settle(path || null);
    if (this.dialog.open) this.dialog.close();
  }

  settle(value) {
    const resolve = this.resolve;
    this.resolve = null;
    this.token += 1;
    if (resolve) {
      resolve(value);
      if (this.returnFocus && document.contains(this.returnFocus) && value === null) this.returnFocus.focus();
    }
  }
}
