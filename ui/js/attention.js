// Sessions that need the user (the router's `attention`, docs/contracts.md "Attention"): the count
// in front of the page's title, the mark on each such session in the list, and `mark_seen`, which
// tells the router which session the user looks at. The router decides what counts; the page only
// shows it and says where the user looks.

const PREFIX = /^\(\d+\+?\) /;
const EMPTY = { count: 0, sessions: {} };
let summary = EMPTY;

/** Words for each reason, shown to screen readers and as the mark's tooltip. */
export const ATTENTION_WORDS = {
  waiting: "Needs you: waiting for your answer",
  finished: "Finished while you were away",
};

/** Take the router's summary (the `attention` event, get_state's `attention`). */
export function setAttention(next) {
  const ok = next && typeof next.count === "number" && next.sessions && typeof next.sessions === "object";
  summary = ok ? next : EMPTY;
  const title = titled(document.title);
  if (document.title !== title) document.title = title;
}

/** Why `sessionId` needs the user ("waiting" or "finished"), or "" when it does not. */
export function attentionOf(sessionId) {
  const reason = summary.sessions[sessionId];
  return reason === "waiting" || reason === "finished" ? reason : "";
}

/** `title` with the count in front, "(2) Diminuendo"; as it is when nothing needs the user. */
export function titled(title) {
  const base = String(title).replace(PREFIX, "");
  return summary.count > 0 ? `(${summary.count}) ${base}` : base;
}

/**
 * Tell the router which session the user looks at: the selected one, while the page is visible
 * and focused. Call `report()` whenever the selection changes; focus and visibility are watched
 * here. `report(true)` says it again (a reloaded state: the app may have restarted).
 */
export function watchLooking(selected, invoke) {
  let told = null; // the session last told as looked at, or null
  const send = (sessionId, looking) => invoke("mark_seen", { sessionId, looking }).catch(() => {});
  const report = (again = false) => {
    const id = selected();
    const looking = id && document.visibilityState === "visible" && document.hasFocus() ? id : null;
    if (looking === told && !again) return;
    if (looking) send(looking, true);
    else if (told) send(told, false);
    told = looking;
  };
  document.addEventListener("visibilitychange", () => report());
  window.addEventListener("focus", () => report());
  window.addEventListener("blur", () => report());
  return report;
}
