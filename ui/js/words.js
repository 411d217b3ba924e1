// What the page says about a session's state, following it, and commands waiting for the
// gateway: the raw values (state-machine names, command types) stay in data attributes and
// tooltips; a user reads words.

const SESSION_STATES = {
  inactive: "Idle",
  activating: "Starting…",
  ready: "Ready",
  running: "Agent working…",
  waiting: "Waiting for your answer",
  error: "Error",
  deactivating: "Stopping…",
  gone: "Deleted elsewhere",
};

/** "Agent working…", "Waiting for your answer", "Idle", "Starting…", "Error", "Deleted elsewhere". */
export function sessionStateWords(status, { busy = false } = {}) {
  const s = String(status ?? "");
  if (busy && (s === "inactive" || s === "ready" || s === "")) return SESSION_STATES.running;
  return SESSION_STATES[s] || (s ? s.charAt(0).toUpperCase() + s.slice(1) : "");
}

/** The header's badge and button for following a session's live events. */
export function followWords(joined, online) {
  if (!joined) {
    return {
      badge: "Not following",
      title: "New events of this session are not shown as they happen",
      button: "Follow",
      buttonTitle: "Show this session's events as they happen",
    };
  }
  return {
    badge: online ? "Following live" : "Offline",
    title: online ? "New events of this session appear as they happen" : "Not connected to the gateway: events appear again once it is back",
    button: "Stop following",
    buttonTitle: "Stop showing this session's events as they happen",
  };
}

function quoted(text, max = 60) {
  const t = String(text ?? "")
    .replace(/\s+/g, " ")
    .trim();
  return `“${t.length > max ? `${t.slice(0, max - 1)}…` : t}”`;
}

/**
 * A queued command in words: {what: "Message “fix the parser”", text: what + " to Session X — waiting
 * for the gateway", title: the command's type, for those who want it}.
 */
export function outboxWords(item, sessionName = "") {
  const msg = (item && item.message) || {};
  let what;
  switch (item && item.type) {
    case "run_turn":
      what = `Message ${quoted(msg.text)}`;
      break;
    case "steer":
      what = `Steer ${quoted(msg.content)}`;
      break;
    case "stop_turn":
      what = "Stop the running turn";
      break;
    case "answer_question":
      if (msg.approved === true) what = "Allow the agent's request";
      else if (msg.approved === false) what = "Deny the agent's request";
      else if (msg.dismissed) what = "Dismiss the agent's question";
      else what = `Answer ${quoted(Array.isArray(msg.answers) ? msg.answers.join(", ") : "")}`;
      break;
    default:
      what = "A command";
  }
  const where = sessionName ? ` to ${sessionName}` : "";
  const state = item && item.state === "sending" ? "being sent" : "waiting for the gateway";
  return { what, text: `${what}${where} — ${state}`, title: String((item && item.type) || "") };
}
