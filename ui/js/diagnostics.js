// The Diagnostics view: the app's actors and their message logs, the gateway events no session
// claims, and the members. It covers the chat and the workspace panel (not the session list),
// opened from the top bar's Diagnostics button; Close or Esc (see layout.js) brings the chat
// back. While it is open the chat and the panel underneath are inert, so Tab stays in what is seen.

export function initDiagnostics({ onChange } = {}) {
  const view = document.getElementById("diagnostics");
  const openButton = document.getElementById("diagnostics-open");
  const closeButton = document.getElementById("diagnostics-close");
  const title = document.getElementById("diagnostics-title");
  const covered = [document.querySelector("main.main"), document.getElementById("side-panel")].filter(Boolean);

  function isOpen() {
    return !view.hidden;
  }

  function set(open, restoreFocus) {
    if (isOpen() === open) return;
    const hadFocus = view.contains(document.activeElement);
    view.hidden = !open;
    for (const el of covered) el.inert = open;
    openButton.setAttribute("aria-expanded", String(open));
    document.getElementById("app").dataset.diagnostics = open ? "open" : "closed";
    if (open) title.focus();
    else if (restoreFocus && hadFocus) openButton.focus();
    if (onChange) onChange(open);
  }

  openButton.addEventListener("click", () => set(!isOpen(), true));
  closeButton.addEventListener("click", () => set(false, true));
  openButton.setAttribute("aria-expanded", "false");

  return {
    isOpen,
    open: () => set(true, false),
    close: ({ restoreFocus = false } = {}) => set(false, restoreFocus),
  };
}
