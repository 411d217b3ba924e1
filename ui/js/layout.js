// The page's layout: the session list and the workspace panel (Files, Sync, History as tabs)
// beside the chat on wide windows, as overlay drawers on narrow ones; and the Diagnostics view.
//
// Wide (1000 px and up): both columns are docked; the top bar's Sessions and Workspace buttons
// hide or show them, and that choice and the selected tab are kept in localStorage.
// Narrow: the chat takes the whole width; the same buttons open the columns as drawers over the
// chat, which close with Esc, a click outside, or (the session list) picking a session. A drawer
// is a transient thing, like a menu: it is not remembered, so a reload shows the chat.
// Nothing here traps focus: Tab leaves a drawer like any other part of the page.
//
// The state is mirrored on #app as data-layout (wide | narrow), data-sessions and data-panel
// (shown | hidden); the CSS lays the page out from those.

import { initDiagnostics } from "./diagnostics.js";

const STORE_KEY = "dim-desktop.layout";
const NARROW = "(max-width: 999.98px)";
export const SIDE_TABS = ["files", "sync", "history"];

const state = {
  narrow: false,
  wide: { sessions: true, panel: true }, // the docked columns, remembered
  drawer: null, // narrow: "sessions" | "panel" | null
  tab: "files",
};

let els = null;
let onSideChange = () => {};
let diagnostics = null;

function load() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORE_KEY) || "{}");
    if (saved && typeof saved === "object") {
      if (typeof saved.sessions === "boolean") state.wide.sessions = saved.sessions;
      if (typeof saved.panel === "boolean") state.wide.panel = saved.panel;
      if (SIDE_TABS.includes(saved.tab)) state.tab = saved.tab;
    }
  } catch (_) {
    /* storage unavailable or garbled: the defaults */
  }
}

function save() {
  try {
    localStorage.setItem(STORE_KEY, JSON.stringify({ sessions: state.wide.sessions, panel: state.wide.panel, tab: state.tab }));
  } catch (_) {
    /* storage unavailable: the choice lasts until the page reloads */
  }
}

function sessionsShown() {
  return state.narrow ? state.drawer === "sessions" : state.wide.sessions;
}

function panelShown() {
  return state.narrow ? state.drawer === "panel" : state.wide.panel;
}

function apply() {
  const { app } = els;
  const sessions = sessionsShown();
  const panel = panelShown();
  app.dataset.layout = state.narrow ? "narrow" : "wide";
  app.dataset.sessions = sessions ? "shown" : "hidden";
  app.dataset.panel = panel ? "shown" : "hidden";
  els.sessionsToggle.setAttribute("aria-expanded", String(sessions));
  els.panelToggle.setAttribute("aria-expanded", String(panel));
  for (const tab of els.tabs) {
    const selected = tab.dataset.tab === state.tab;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    const panelEl = document.getElementById(tab.getAttribute("aria-controls"));
    if (panelEl && panelEl.hidden === selected) panelEl.hidden = !selected;
  }
  onSideChange({ tab: state.tab, shown: panel });
}

/** Shows the workspace panel with the tab `name` ("files" | "sync" | "history") selected. */
export function showSideTab(name) {
  if (!els || !SIDE_TABS.includes(name)) return;
  state.tab = name;
  if (state.narrow) state.drawer = "panel";
  else state.wide.panel = true;
  if (diagnostics) diagnostics.close({ restoreFocus: false });
  save();
  apply();
}

/**
 * Shows the session list (opens its drawer on a narrow window), so that something in it can take
 * the focus: a shortcut to the session search calls it before focusing the field.
 */
export function showSessions() {
  if (!els) return;
  if (state.narrow) state.drawer = "sessions";
  else if (!state.wide.sessions) {
    state.wide.sessions = true;
    save();
  }
  apply();
}

function selectTab(name, focus) {
  state.tab = name;
  save();
  apply();
  if (focus) els.tabs.find((t) => t.dataset.tab === name)?.focus();
}

function toggle(which) {
  if (which === "panel" && diagnostics && diagnostics.isOpen()) {
    // Diagnostics covers the panel: the button brings the panel into view.
    showSideTab(state.tab);
    return;
  }
  if (state.narrow) {
    state.drawer = state.drawer === which ? null : which;
    if (state.drawer === "panel" && diagnostics) diagnostics.close({ restoreFocus: false });
  } else {
    state.wide[which] = !state.wide[which];
    save();
  }
  apply();
  if (state.narrow && state.drawer === which) focusInto(which === "sessions" ? els.sidebar : els.sidePanel);
}

// The selected session, or the selected tab; else the drawer's first control.
function focusInto(drawer) {
  for (const selector of [".session-item[aria-selected='true'] button", "[role='tab'][aria-selected='true']", "button:not([disabled]), input, select"]) {
    const target = drawer.querySelector(selector);
    if (target) {
      target.focus();
      return;
    }
  }
}

function closeDrawer(restoreFocus) {
  const which = state.drawer;
  if (!which) return;
  state.drawer = null;
  apply();
  if (restoreFocus) (which === "sessions" ? els.sessionsToggle : els.panelToggle).focus();
}

function onBreakpoint(mq) {
  state.narrow = mq.matches;
  state.drawer = null;
  apply();
}

function onTabKey(e) {
  const i = els.tabs.indexOf(e.currentTarget);
  let next = -1;
  if (e.key === "ArrowRight") next = (i + 1) % els.tabs.length;
  else if (e.key === "ArrowLeft") next = (i - 1 + els.tabs.length) % els.tabs.length;
  else if (e.key === "Home") next = 0;
  else if (e.key === "End") next = els.tabs.length - 1;
  if (next < 0) return;
  e.preventDefault();
  selectTab(els.tabs[next].dataset.tab, true);
}

// Esc closes the topmost overlay: a drawer, else the Diagnostics view. It runs in the capture
// phase so that nothing else reads that Esc (stopping a turn, say) while an overlay is open; an
// open <dialog> and the connection popover keep their own Esc. Inside a drawer the drawer's own
// listener decides, after the element that has focus (a rename field's Esc cancels the rename).
function onEscapeCapture(e) {
  if (e.key !== "Escape" || e.defaultPrevented) return;
  if (e.target instanceof Element && (e.target.closest("dialog[open]") || e.target.closest(".conn-wrap"))) return;
  if (state.drawer) {
    const drawer = state.drawer === "sessions" ? els.sidebar : els.sidePanel;
    if (e.target instanceof Node && drawer.contains(e.target)) return; // the drawer's listener
    e.preventDefault();
    e.stopPropagation();
    closeDrawer(true);
  } else if (diagnostics && diagnostics.isOpen()) {
    e.preventDefault();
    e.stopPropagation();
    diagnostics.close({ restoreFocus: true });
  }
}

function onDrawerEscape(e) {
  if (e.key !== "Escape" || e.defaultPrevented || !state.drawer) return;
  e.preventDefault();
  e.stopPropagation();
  closeDrawer(true);
}

function onPointerDown(e) {
  if (!state.drawer) return;
  const t = e.target;
  if (!(t instanceof Element)) return;
  const drawer = state.drawer === "sessions" ? els.sidebar : els.sidePanel;
  const toggleButton = state.drawer === "sessions" ? els.sessionsToggle : els.panelToggle;
  // A confirmation asked from the drawer, or a toast, is not "outside" it.
  if (drawer.contains(t) || toggleButton.contains(t) || t.closest("dialog[open], .toasts")) return;
  closeDrawer(false);
}

function onSidebarClick(e) {
  const t = e.target;
  if (!(t instanceof Element)) return;
  const picked = t.closest(".session-main") || (t.closest(".session-item") && !t.closest("button, input")) || t.closest("#new-session");
  if (!picked) return;
  if (diagnostics && diagnostics.isOpen()) diagnostics.close({ restoreFocus: false });
  if (state.drawer === "sessions") closeDrawer(false);
}

/**
 * Wires the layout. `opts.onSideChange({tab, shown})` is called whenever the workspace panel's
 * tab or visibility changes; `opts.onDiagnostics(open)` when Diagnostics opens or closes.
 */
export function initLayout(opts = {}) {
  const app = document.getElementById("app");
  const sidebar = app.querySelector(".sidebar");
  if (!sidebar.id) sidebar.id = "sidebar";
  els = {
    app,
    sidebar,
    sidePanel: document.getElementById("side-panel"),
    sessionsToggle: document.getElementById("sessions-toggle"),
    panelToggle: document.getElementById("panel-toggle"),
    panelClose: document.getElementById("side-panel-close"),
    tabs: Array.from(document.querySelectorAll("#side-tabs [role='tab']")),
  };
  els.sessionsToggle.setAttribute("aria-controls", sidebar.id);
  if (typeof opts.onSideChange === "function") onSideChange = opts.onSideChange;
  diagnostics = initDiagnostics({
    onChange: (open) => {
      if (open && state.drawer === "panel") closeDrawer(false);
      if (typeof opts.onDiagnostics === "function") opts.onDiagnostics(open);
    },
  });
  load();
  const mq = window.matchMedia(NARROW);
  state.narrow = mq.matches;
  mq.addEventListener("change", onBreakpoint);

  els.sessionsToggle.addEventListener("click", () => toggle("sessions"));
  els.panelToggle.addEventListener("click", () => toggle("panel"));
  if (els.panelClose) {
    els.panelClose.addEventListener("click", () => {
      if (state.narrow) closeDrawer(true);
      else toggle("panel");
    });
  }
  for (const tab of els.tabs) {
    tab.addEventListener("click", () => selectTab(tab.dataset.tab, false));
    tab.addEventListener("keydown", onTabKey);
  }
  document.addEventListener("keydown", onEscapeCapture, true);
  sidebar.addEventListener("keydown", onDrawerEscape);
  els.sidePanel.addEventListener("keydown", onDrawerEscape);
  document.addEventListener("pointerdown", onPointerDown, true);
  sidebar.addEventListener("click", onSidebarClick);
  apply();
  return { showSideTab, diagnostics };
}
