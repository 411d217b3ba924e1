// Small DOM helpers. Text always goes through text nodes; nothing here sets innerHTML.

/**
 * h("div", {class: "x", testid: "turn", dataset: {turnId}, onclick: fn, "aria-label": "..."}, ...children)
 * Children: nodes, strings (text nodes), arrays, null/undefined/false (skipped).
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "testid") el.dataset.testid = value;
      else if (key === "dataset") Object.assign(el.dataset, value);
      else if (key === "text") el.textContent = value;
      else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
      else if (key === "value") el.value = value;
      else if (key === "checked" || key === "disabled" || key === "hidden" || key === "open") el[key] = !!value;
      else el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function byTestId(testid, root = document) {
  return root.querySelector(`[data-testid="${testid}"]`);
}

export function prettyJson(value) {
  if (value === undefined) return "";
  if (typeof value === "string") {
    // a JSON string is shown parsed and pretty when it parses, as is otherwise
    const t = value.trim();
    if ((t.startsWith("{") && t.endsWith("}")) || (t.startsWith("[") && t.endsWith("]"))) {
      try {
        return JSON.stringify(JSON.parse(t), null, 2);
      } catch (_) {
        return value;
      }
    }
    return value;
  }
  try {
    return JSON.stringify(value, null, 2);
  } catch (_) {
    return String(value);
  }
}

// One way to say when, across the page: recent times relative ("just now", "5 min ago", "today
// 14:02", "yesterday 14:02"), older ones as a locale date and time ("4 Dec 2026, 14:02"), and the
// exact time (ISO 8601, UTC) in the tooltip. `timeEl()` gives a <time> with both.

function clockText(d) {
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function dayStart(d) {
  return new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
}

/**
 * When `ms` (epoch ms) was, in words; "" for no time. `short` (a list row's room): the clock is
 * left out from yesterday on ("yesterday", "4 Dec").
 */
export function formatWhen(ms, now = Date.now(), { short = false } = {}) {
  if (typeof ms !== "number" || !isFinite(ms)) return "";
  const d = new Date(ms);
  const ago = now - ms;
  if (ago >= -5000 && ago < 45_000) return "just now";
  if (ago >= 0 && ago < 3_600_000) return `${Math.max(1, Math.round(ago / 60_000))} min ago`;
  const today = dayStart(new Date(now));
  if (ms >= today && ms < today + 86_400_000) return `today ${clockText(d)}`;
  if (ms >= today - 86_400_000 && ms < today) return short ? "yesterday" : `yesterday ${clockText(d)}`;
  const sameYear = d.getFullYear() === new Date(now).getFullYear();
  if (short) return d.toLocaleDateString([], sameYear ? { month: "short", day: "numeric" } : { year: "numeric", month: "short", day: "numeric" });
  return d.toLocaleString([], { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/** A clock time to the second ("14:02:05"), where the exact moment is the point (Diagnostics, the
 * gateway's clock). */
export function clockTime(ms) {
  return typeof ms === "number" && isFinite(ms) ? new Date(ms).toLocaleTimeString([], { hour12: false }) : "";
}

/** The exact time, for a tooltip or a datetime attribute: "2026-12-06T14:02:05.120Z". */
export function exactTime(ms) {
  return typeof ms === "number" && isFinite(ms) ? new Date(ms).toISOString() : "";
}

/** <time datetime=ISO title=ISO>formatWhen</time>; attrs as for h(). */
export function timeEl(ms, attrs = {}) {
  const iso = exactTime(ms);
  return h("time", { ...attrs, datetime: iso || null, title: iso || null, dataset: { ...(attrs.dataset || {}), ms: iso ? String(ms) : "" } }, formatWhen(ms));
}

/** Kept for callers: the same words as formatWhen. */
export function formatTime(ms) {
  return formatWhen(ms);
}

/** Bytes in binary units, one decimal where it says something: 104857600 -> "100 MiB", 13207024435 -> "12.3 GiB". */
export function formatBytes(n) {
  if (typeof n !== "number" || !isFinite(n) || n < 0) return "";
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  const text = i === 0 ? String(n) : n.toFixed(1).replace(/\.0$/, "");
  return `${text} ${units[i]}`;
}

/** Kept for callers: the same words as formatWhen. */
export function formatAgo(ms, now = Date.now()) {
  return formatWhen(ms, now);
}

export function formatDuration(seconds) {
  if (typeof seconds !== "number" || !isFinite(seconds)) return seconds === undefined || seconds === null ? "" : String(seconds);
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = s % 60;
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${mm}m`;
  if (mm) return `${mm}m ${ss}s`;
  return `${ss}s`;
}
