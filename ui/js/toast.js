// Toasts: short-lived messages for `error` events and failed invokes, and notes with one action
// (Undo). A toast stays while the pointer or the keyboard is on it.

import { h } from "./dom.js";

const MAX_TOASTS = 5;

let container = null;

export function initToasts(el) {
  container = el;
}

/**
 * toast({level: "error"|"warning"|"info", title, message, timeoutMs, action: {label, run}})
 * `action` adds a button (data-testid="toast-action") that runs once and dismisses the toast.
 */
export function toast({ level = "error", title = "", message = "", timeoutMs = 8000, action = null } = {}) {
  if (!container) return null;
  const close = h("button", { type: "button", class: "icon toast-close", "aria-label": "Dismiss notification" }, "✕");
  const actionButton = action ? h("button", { type: "button", class: "small toast-action", testid: "toast-action" }, action.label) : null;
  const el = h(
    "div",
    { class: `toast ${level}`, testid: "toast", dataset: { level }, role: level === "error" ? "alert" : "status" },
    h("div", { class: "toast-body" }, title ? h("strong", { class: "toast-title" }, title) : null, message ? h("div", { class: "toast-message" }, message) : null),
    actionButton,
    close,
  );
  let timer = null;
  const remove = () => {
    clearTimeout(timer);
    el.remove();
  };
  close.addEventListener("click", remove);
  if (actionButton) {
    actionButton.addEventListener("click", () => {
      remove();
      action.run();
    });
  }
  const arm = () => {
    clearTimeout(timer);
    if (timeoutMs > 0) timer = setTimeout(remove, timeoutMs);
  };
  el.addEventListener("mouseenter", () => clearTimeout(timer));
  el.addEventListener("mouseleave", () => {
    if (!el.contains(document.activeElement)) arm();
  });
  el.addEventListener("focusin", () => clearTimeout(timer));
  el.addEventListener("focusout", (e) => {
    if (!el.contains(e.relatedTarget)) arm();
  });
  container.appendChild(el);
  while (container.children.length > MAX_TOASTS) container.firstChild.remove();
  arm();
  return el;
}

/** A toast for a failed invoke (a BridgeError) or any thrown error. */
export function toastError(err, context = "") {
  const code = err && err.code ? err.code : "ERROR";
  const gw = err && err.gatewayCode ? ` (${err.gatewayCode})` : "";
  const message = err && err.message ? err.message : String(err);
  return toast({ level: "error", title: `${context ? `${context}: ` : ""}${code}${gw}`, message });
}
