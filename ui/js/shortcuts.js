// Keyboard shortcuts: one table of key → action, and the "?" dialog that lists them.
// "Mod" is Cmd on macOS and Ctrl elsewhere. A shortcut without a modifier ("/", "?") is not
// taken while the user types in a field, and none is taken while a modal dialog is open.

import { h } from "./dom.js";

export const IS_MAC = /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent || "");

/** "Mod+Shift+O" as this platform writes it: "Ctrl+Shift+O", or "⌘⇧O" on macOS. */
export function keyLabel(keys) {
  const parts = keys.split("+");
  if (!IS_MAC) return parts.map((p) => (p === "Mod" ? "Ctrl" : p)).join("+");
  const mac = { Mod: "⌘", Shift: "⇧", Alt: "⌥", Ctrl: "⌃" };
  return parts.map((p) => mac[p] || p).join("");
}

function typing(target) {
  if (!(target instanceof Element)) return false;
  return !!target.closest("input, textarea, select, [contenteditable=''], [contenteditable='true']");
}

/** Does keydown `e` press `keys` ("Mod+K", "Mod+Shift+O", "/", "?")? */
export function matches(e, keys) {
  const parts = keys.split("+");
  const key = parts.pop();
  const mod = parts.includes("Mod");
  const shift = parts.includes("Shift");
  if ((IS_MAC ? e.metaKey : e.ctrlKey) !== mod) return false;
  if ((IS_MAC ? e.ctrlKey : e.metaKey) || e.altKey) return false;
  // A letter names its key (Shift counts); a symbol is whatever the layout needs to type it.
  if (/^[a-z]$/i.test(key)) return e.shiftKey === shift && e.key.toLowerCase() === key.toLowerCase();
  return e.key === key;
}

/**
 * @param {Array<{keys: string, label: string, run: (e: KeyboardEvent) => void, whileTyping?: boolean}>} table
 * @param {Array<[string, string]>} notes  keys and what they do where they apply (listed only)
 */
export function installShortcuts(table, notes = []) {
  const dialog = buildDialog(table, notes);
  const all = [...table, { keys: "?", label: "Show keyboard shortcuts", run: () => showDialog(dialog) }];
  document.addEventListener("keydown", (e) => {
    if (e.defaultPrevented || e.isComposing) return;
    if (document.querySelector("dialog[open]")) return; // a modal owns the keyboard
    for (const s of all) {
      if (!matches(e, s.keys)) continue;
      const plain = !s.keys.includes("Mod");
      if (plain && !s.whileTyping && typing(e.target)) return;
      e.preventDefault();
      s.run(e);
      return;
    }
  });
  return { dialog: dialog.el, show: () => showDialog(dialog) };
}

function buildDialog(table, notes) {
  const rows = [...table.map((s) => [keyLabel(s.keys), s.label]), ["?", "Show keyboard shortcuts"], ...notes];
  const list = h(
    "dl",
    { class: "shortcut-list" },
    rows.map(([keys, label]) => [h("dt", null, h("kbd", null, keys)), h("dd", null, label)]),
  );
  const close = h("button", { type: "button", class: "ghost", testid: "shortcuts-close", value: "close" }, "Close");
  const el = h(
    "dialog",
    { class: "shortcuts-dialog", testid: "shortcuts-dialog", "aria-labelledby": "shortcuts-title" },
    h("h2", { id: "shortcuts-title" }, "Keyboard shortcuts"),
    list,
    h("div", { class: "row end" }, close),
  );
  close.addEventListener("click", () => el.close());
  document.body.appendChild(el);
  return { el, list };
}

function showDialog(dialog) {
  if (dialog.el.open) return;
  dialog.el.showModal();
  dialog.el.querySelector("[data-testid='shortcuts-close']").focus();
}
