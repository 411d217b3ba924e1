// Toasts: short-lived messages for `error` events and failed invokes.

import { h } from "./dom.js";

const MAX_TOASTS = 5;

let container = null;

export function initToasts(el) {
  container = el;
}

/** toast({level: "error"|"info", title, message, timeoutMs}) */
export function toast({ level = "error", title = "", message = "", timeoutMs = 8000 } = {}) {
  if (!container) return null;
  const close = h("button", { type: "button", class: "icon toast-close", "aria-label": "Dismiss notification" }, "✕");
  const el = h(
    "div",
    { class: `toast ${level}`, testid: "toast", dataset: { level }, role: level === "error" ? "alert" : "status" },
    h("div", { class: "toast-body" }, title ? h("strong", { class: "toast-title" }, title) : null, message ? h("div", { class: "toast-message" }, message) : null),
    close,
  );
  let timer = null;
  const remove = () => {
    clearTimeout(timer);
    el.remove();
  };
  close.addEventListener("click", remove);
  const arm = () => {
    clearTimeout(timer);
    if (timeoutMs > 0) timer = setTimeout(remove, timeoutMs);
  };
  el.addEventListener("mouseenter", () => clearTimeout(timer));
  el.addEventListener("mouseleave", arm);
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
