// Entry point: wires the bridge, the store and the views together.
//
// Start-up: open the event socket, then fetch get_state, rebuild the model from it and apply the
// gateway events that arrived meanwhile (buffered, deduplicated by seq). The same happens after
// every reconnect of the event socket. Rendering is batched: every change marks the store dirty
// and one requestAnimationFrame callback updates the DOM.

import { invoke, listen, onBridgeState, getToken, bridgeClosedSince } from "./bridge.js";
import { AppStatus } from "./appstatus.js";
import { sessionStateWords, followWords, outboxWords } from "./words.js";
import {
  createStore,
  loadSnapshot,
  prependTurns,
  rebuildChat,
  applyGatewayEvent,
  applyTurnState,
  applyInvalidEvent,
  applyCatchupGap,
  applyHistoryFallback,
  applySessionGone,
  applyInvokeResult,
  setConnection,
  setActors,
  setOutbox,
  takeDirty,
  sessionIsBusy,
  sessionIsGone,
  activeTurnId,
} from "./state.js";
import { ChatView, renderGeneric } from "./chat.js";
import { SessionList, AGENT_LABELS, agentLabel } from "./sessions.js";
import { SessionSearch, whenTurnShown } from "./search.js";
import { FindBar } from "./find.js";
import { installShortcuts, keyLabel } from "./shortcuts.js";
import { FilesPanel } from "./files.js";
import { ActorsPanel } from "./actors.js";
import { SyncPanel } from "./sync.js";
import { SettingsScreen } from "./settings.js";
import { ConnectionView, connectionLabel } from "./connection.js";
import { HistoryPanel, MembersPanel } from "./info.js";
import { initLayout } from "./layout.js";
import { initToasts, toast, toastError } from "./toast.js";
import { $, clear, h } from "./dom.js";
import { Composer } from "./composer.js";
import { syncState, whoChanged, conflictBadge, onChange as syncStateChanged } from "./syncstate.js";
import { setAttention, attentionOf, titled, watchLooking } from "./attention.js";

const SELECTED_KEY = "dim-desktop.selected";

const store = createStore();
const ui = {
  frames: 0, // frames laid out (the render loop's flushes)
  selectedId: null,
  selectedSeen: false, // the model has held the selected session (so its absence means deleted)
  showArchived: false,
  bridge: "connecting", // the event socket: connecting | open | closed
  bridgeWasOpen: false, // the event socket has been open once (so "closed" means the app went away)
  syncing: false,
  buffer: [], // [kind, payload] received while a snapshot is being fetched
  ready: false, // body[data-ready] set
  snapshotLoaded: false, // a get_state has been applied
  sending: false, // a run_turn is in flight
  syncRun: 0,
};

// Sessions joined by this page. Joining is idempotent at the gateway (it answers with a
// state_snapshot), and the bridge does not say which sessions it has joined, so the page joins
// each session it shows once (again after every reconnect of the event socket).
const joined = new Set();
const joining = new Set();
// Transitions to "connected" seen: a join refused for want of a connection (an app just restarted)
// while one happened is made again at once.
let connectedTimes = 0;
const historyTaps = new Map(); // sessionId -> live events seen while its history loads

// ---------------------------------------------------------------------------------------------
// Elements

const el = {
  conn: $("#connection-state"),
  connPopover: $("#conn-popover"),
  connDetail: $("#conn-detail"),
  connForm: $("#conn-form"),
  connUrl: $("#conn-url"),
  connToken: $("#conn-token"),
  connDisconnect: $("#conn-disconnect"),
  identity: $("#identity"),
  notifyToggle: $("#notify-toggle"),
  agentType: $("#agent-type"),
  newSession: $("#new-session"),
  showArchived: $("#show-archived"),
  sessionList: $("#session-list"),
  chatTitle: $("#chat-title"),
  chatStatus: $("#chat-status"),
  chatAgent: $("#chat-agent"),
  joinedBadge: $("#session-joined"),
  follow: $("#session-follow"),
  goneBanner: $("#session-gone"),
  chat: $("#chat"),
  turnControls: $("#turn-controls"),
  steerForm: $("#steer-form"),
  steerInput: $("#steer-input"),
  stop: $("#stop"),
  composer: $("#composer"),
  input: $("#message-input"),
  send: $("#send"),
  outbox: $("#outbox"),
  files: $("#files-panel"),
  actors: $("#actors-panel"),
  globalEvents: $("#global-events"),
  globalCount: $("#global-count"),
  globalList: $("#global-events-list"),
  toasts: $("#toasts"),
  confirm: $("#confirm"),
  confirmText: $("#confirm-text"),
  confirmOk: $("#confirm-ok"),
};

initToasts(el.toasts);

/** invoke() that shows a toast when it fails (and still rejects). */
async function call(command, args, context) {
  try {
    return await invoke(command, args);
  } catch (err) {
    toastError(err, context || command);
    if (err && err.code === "UNAUTHORIZED") showAuthProblem();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Views

const chatView = new ChatView(el.chat, {
  store,
  answer: (sessionId, requestId, payload) => call("answer_question", { sessionId, requestId, ...payload }, "Answer"),
  // Sent again as a new message: queued behind a running turn like any other, the draft untouched.
  retry: (text) => (ui.selectedId ? composer.sendText(ui.selectedId, text) : undefined),
  openFile: ({ path, iteration }) => filesPanel.showChange(path, iteration),
  whoChanged,
  loadOlder,
});
// Sync learns after the fact which changes were the user's own uploads, and its conflicts badge
// the session list.
syncStateChanged((sid) => {
  if (sid === ui.selectedId) chatView.refreshFileChips();
  store.dirty.sessions = true;
  schedule();
});

const sessionList = new SessionList(el.sessionList, {
  select: (id) => selectSession(id),
  rename: (id, name) => sessionCommand("rename_session", { sessionId: id, name }, "Rename"),
  archive: (id) => archiveSession(id),
  unarchive: (id) => sessionCommand("unarchive_session", { sessionId: id }, "Unarchive"),
  openWindow: (id) => openInNewWindow(id),
  remove: (id) => deleteSession(id),
  conflicts: (id) => conflictBadge(id),
  attention: (id) => attentionOf(id),
});
// Tells the router which session the user looks at (mark_seen): on each selection, focus, visibility.
const reportLooking = watchLooking(() => ui.selectedId, invoke);

const filesPanel = new FilesPanel(el.files, { invoke, onError: () => {} });
const historyPanel = new HistoryPanel($("#history-panel"), { invoke });
new MembersPanel($("#members-panel"), { invoke });
const connectionView = new ConnectionView(
  {
    indicator: el.conn,
    detail: el.connDetail,
    warnings: $("#conn-warnings"),
    facts: $("#conn-facts"),
    traits: $("#conn-traits"),
    traitsList: $("#conn-traits-list"),
    url: el.connUrl,
    identity: el.identity,
    ping: $("#conn-ping"),
    pong: $("#conn-pong"),
    keychain: $("#conn-keychain"),
  },
  { invoke },
);
const syncPanel = new SyncPanel($("#sync-panel"), { invoke, listen, onError: (err, what) => toastError(err, what) });

new SettingsScreen($("#settings-open"), { invoke });

// ?session=ID (a notification clicked while no page was open): select it once the state is in.
let sessionToOpen = null;
let nativeShell = false; // in dim-desktop's own window (?shell=window): the app notifies natively
// ?window=session&session=ID: a window (or browser tab) of one session's own. It shows that session
// alone, without the list (the main window has it), and is named after it; a reload keeps it.
let soloSession = null;
try {
  const params = new URLSearchParams(location.search);
  nativeShell = params.get("shell") === "window";
  sessionToOpen = params.get("session");
  soloSession = params.get("window") === "session" ? sessionToOpen : null;
  if (sessionToOpen && !soloSession) {
    params.delete("session");
    const rest = params.toString();
    history.replaceState(history.state, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
  }
} catch (_) {
  sessionToOpen = null;
}
if (soloSession) $("#app").dataset.window = "session";

/**
 * "Open in new window": in dim-desktop's own window the app opens the session's window (or brings
 * the one it has to the front); in a browser, a tab of the session's own.
 */
async function openInNewWindow(id) {
  if (nativeShell) {
    await call("open_window", { sessionId: id }, "Open in new window").catch(() => {});
    return;
  }
  const params = new URLSearchParams({ token: getToken(), window: "session", session: id });
  window.open(`${location.pathname}?${params}`, "_blank");
}

const actorsPanel = new ActorsPanel(el.actors, {
  restart: (name) => call("restart_actor", { name }, `Restart ${name}`),
  logs: (name, types) => invoke("actor_logs", types && types.length ? { name, limit: 200, types } : { name, limit: 200 }),
});

// ---------------------------------------------------------------------------------------------
// Render loop

let frameRequested = false;
// Events applied since the last frame, and in it. A burst (more than BURST_PER_FRAME a frame, 6,000
// a second) is laid out every other frame: the renderer's layout and paint per frame are most of the
// page's cost then, and on a machine of few cores they are taken from the app's own processes.
let eventsSinceFrame = 0;
let lastFrameEvents = 0;
const BURST_PER_FRAME = 100;

function schedule() {
  if (frameRequested) return;
  frameRequested = true;
  if (document.hidden) setTimeout(flush, 200);
  else if (lastFrameEvents > BURST_PER_FRAME) requestAnimationFrame(() => requestAnimationFrame(flush));
  else requestAnimationFrame(flush);
}

function flush() {
  if (!frameRequested) return;
  frameRequested = false;
  lastFrameEvents = eventsSinceFrame;
  eventsSinceFrame = 0;
  ui.frames += 1;
  runEffects();
  const d = takeDirty(store);
  if (d.all) {
    renderConnection();
    sessionList.render(store, ui.selectedId, ui.showArchived);
    if (selectionVanished()) setSelected(null);
    chatView.show(ui.selectedId);
    filesPanel.setSession(ui.selectedId);
    actorsPanel.render(store.actors);
    renderGlobal();
    renderOutbox();
  } else {
    if (d.connection) renderConnection();
    if (d.sessions) {
      if (selectionVanished()) {
        setSelected(null); // deleted
        chatView.show(null);
        filesPanel.setSession(null);
      }
      sessionList.render(store, ui.selectedId, ui.showArchived);
    }
    chatView.update(ui.selectedId ? d.chats.get(ui.selectedId) : undefined);
    if (d.actors) actorsPanel.render(store.actors);
    if (d.global) renderGlobal();
    if (d.outbox) renderOutbox();
  }
  renderHeader();
  renderControls();
  if (!ui.ready && ui.snapshotLoaded) {
    ui.ready = true;
    document.body.dataset.ready = "1";
  }
}

function runEffects() {
  if (!store.effects.length) return;
  const effects = store.effects;
  store.effects = [];
  for (const fx of effects) {
    if (fx.kind === "toast") {
      const retry = typeof fx.retryAfterMs === "number" ? ` (retry in ${Math.ceil(fx.retryAfterMs / 1000)} s)` : "";
      toast({ level: fx.level, title: fx.title, message: `${fx.message}${retry}` });
    } else if (fx.kind === "notify") {
      desktopNotify(fx.title, fx.body, fx.sessionId, fx.away);
    }
  }
}

// While the page cannot reach dim-desktop: the banner, commands unusable, the indicator says so.
const appStatus = new AppStatus($("#chat-header"), [
  $("#composer"),
  $("#turn-controls"),
  $("#new-session"),
  $("#session-follow"),
  $("#settings-open"),
  $("#conn-form"),
  $("#conn-keychain"),
]);

function renderConnection() {
  const down = ui.bridge !== "open" && ui.ready;
  connectionView.render(store.connection, { bridgeDown: down });
  appStatus.render(down ? bridgeClosedSince() ?? Date.now() : null);
}

function renderHeader() {
  const id = ui.selectedId;
  const meta = id ? store.sessions.get(id) : null;
  syncPanel.setSession(id, meta ? meta.name : null); // a no-op unless the selection or its name changed
  const chat = id ? store.chats.get(id) : null;
  const title = id ? (meta && meta.name) || "Untitled session" : "No session selected";
  if (el.chatTitle.textContent !== title) el.chatTitle.textContent = title;
  // The window's title, which dim-desktop's window takes for its own: windows told apart.
  const docTitle = titled(soloSession ? `${title} — Diminuendo` : "Diminuendo");
  if (document.title !== docTitle) document.title = docTitle;
  const gone = !!(chat && chat.gone);
  const status = gone ? "gone" : meta ? meta.status : chat ? chat.status : null;
  // One state, in words; the raw value stays in data-status.
  const words = status ? sessionStateWords(status, { busy: !!id && !gone && sessionIsBusy(store, id) }) : "";
  el.chatStatus.hidden = !status;
  if (status && el.chatStatus.textContent !== words) el.chatStatus.textContent = words;
  if (status) el.chatStatus.dataset.status = status;
  const agent = meta && meta.agentType ? agentLabel(meta.agentType) : "";
  const sub = [agent, meta && meta.archived ? "archived" : ""].filter(Boolean).join(" · ");
  if (el.chatAgent.textContent !== sub) el.chatAgent.textContent = sub;
  // Joined (a state_snapshot came): live events follow. Left (session_left): they do not.
  const joinedNow = !!(chat && chat.joined);
  el.joinedBadge.hidden = !id;
  el.follow.hidden = !id || gone; // there is nothing left to join
  el.goneBanner.hidden = !gone;
  el.goneBanner.title = gone && chat.gone.reason ? chat.gone.reason : "";
  const online = ui.bridge === "open" && connectionLabel(store.connection.state) === "connected";
  const follow = followWords(joinedNow, online);
  if (el.joinedBadge.textContent !== follow.badge) el.joinedBadge.textContent = follow.badge;
  el.joinedBadge.dataset.joined = joinedNow ? "1" : "0";
  el.joinedBadge.dataset.online = online ? "1" : "0";
  el.joinedBadge.title = follow.title;
  if (el.follow.textContent !== follow.button) el.follow.textContent = follow.button;
  el.follow.title = follow.buttonTitle;
  el.follow.dataset.action = joinedNow ? "leave" : "join";
  historyPanel.setSession(id);
  // The queue names the session each command goes to unless it is the one on screen.
  if (outboxShownFor !== id && store.outbox && store.outbox.length) renderOutbox();
}

// The message box, Send / Queue / Stop and the pending messages are the composer's (composer.js);
// the steer row shows while the selected session's turn runs.
function renderControls() {
  const id = ui.selectedId;
  const busy = !!id && !sessionIsGone(store, id) && sessionIsBusy(store, id);
  if (el.turnControls.hidden === busy) el.turnControls.hidden = !busy;
  composer.render();
}

let outboxShownFor = null;
function renderOutbox() {
  outboxShownFor = ui.selectedId;
  const items = store.outbox || [];
  el.outbox.hidden = items.length === 0;
  clear(el.outbox);
  if (!items.length) return;
  el.outbox.appendChild(h("div", { class: "muted" }, `${items.length === 1 ? "1 thing waits" : `${items.length} things wait`} for the gateway; sent when it is back`));
  for (const item of items) {
    const meta = item.sessionId ? store.sessions.get(item.sessionId) : null;
    const sessionName = item.sessionId && item.sessionId !== ui.selectedId ? (meta && meta.name) || "another session" : "";
    const words = outboxWords(item, sessionName);
    const what = words.text;
    const cancel = h("button", { type: "button", class: "small ghost", testid: "outbox-cancel", "aria-label": `Cancel: ${words.what}` }, "Cancel");
    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      try {
        const result = await call("outbox_cancel", { id: item.id }, "Cancel");
        if (result && Array.isArray(result.outbox)) setOutbox(store, result.outbox);
        schedule();
      } catch (_) {
        cancel.disabled = false;
      }
    });
    el.outbox.appendChild(
      h("div", { class: "outbox-item", testid: "outbox-item", dataset: { outboxId: String(item.id), state: item.state || "" } }, h("span", { class: "what", title: words.title }, what), h("span", { class: "pill pending" }, item.state === "sending" ? "sending…" : "waiting"), cancel),
    );
  }
}

function renderGlobal() {
  const events = store.globalEvents;
  el.globalEvents.hidden = events.length === 0;
  el.globalCount.textContent = events.length ? `(${events.length})` : "";
  // They live in Diagnostics now: its button counts them, so they are not missed.
  const opener = $("#diagnostics-open");
  if (events.length) opener.dataset.events = String(events.length);
  else delete opener.dataset.events;
  opener.setAttribute("aria-label", events.length ? `Diagnostics (${events.length} other gateway event${events.length === 1 ? "" : "s"})` : "Diagnostics");
  clear(el.globalList);
  for (const ev of events.slice(-50)) el.globalList.appendChild(renderGeneric(ev));
}

// ---------------------------------------------------------------------------------------------
// Events from the bridge

function onGatewayEvent(ev) {
  eventsSinceFrame += 1;
  applyGatewayEvent(store, ev);
  if (ev && historyTaps.size && historyTaps.has(ev.sessionId)) historyTaps.get(ev.sessionId).push(["gateway-event", ev]);
  if (ev && ev.type === "file_changed" && ev.sessionId === ui.selectedId) filesPanel.onFileChanged(ev);
  schedule();
}

function onConnectionState(payload) {
  const was = connectionLabel(store.connection.state);
  setConnection(store, payload);
  if (was !== "connected" && connectionLabel(store.connection.state) === "connected") {
    connectedTimes += 1;
    refreshSessions();
    // The session on screen, if a join of it found no gateway (joining twice is harmless).
    if (ui.selectedId) joinSession(ui.selectedId);
  }
  schedule();
}

/**
 * Ask the gateway for the session list (the bridge may not hold one yet, e.g. after a restart).
 * The answer is applied as it comes on the event socket, in order with the session events, not
 * from this reply: a session_created sent after the list but delivered before this reply would
 * otherwise be dropped by the list replacing it.
 */
async function refreshSessions() {
  try {
    await invoke("list_sessions", ui.showArchived ? { includeArchived: true } : {});
  } catch (_) {
    /* offline: the list comes when the connection is back */
  }
}

function onActorStatus(payload) {
  showActors(payload);
  schedule();
}

/**
 * Actor rows as the page shows them. Once dim-desktop has gone away, rows that still arrive (an
 * actor_status answered while the app was stopping) describe processes that are gone: their state
 * is unknown until the app is back.
 */
function showActors(rows) {
  const gone = ui.bridgeWasOpen && ui.bridge !== "open" && Array.isArray(rows);
  setActors(store, gone ? rows.map(unknownActor) : rows);
}

function unknownActor(row) {
  return { ...row, state: "unknown", status: undefined, pid: undefined, uptime: undefined, startedAt: undefined, mailbox: undefined, connection: undefined, reconnects: undefined };
}

function onOutbox(items) {
  setOutbox(store, items);
  schedule();
}

// Bad input from the gateway is surfaced once: one warning that counts, updated in place (a
// thousand bad frames must not be a thousand toasts). Dismissed, the next bad frame shows it again.
const badInput = { count: 0, el: null };
function onGatewayWarning(payload) {
  const p = payload || {};
  badInput.count = Math.max(badInput.count + 1, typeof p.count === "number" ? p.count : 0);
  const title = `${badInput.count} bad frame${badInput.count === 1 ? "" : "s"} from the gateway`;
  const message = `last: ${p.reason || "unknown reason"}`;
  if (badInput.el && badInput.el.isConnected) {
    badInput.el.querySelector(".toast-title").textContent = title;
    badInput.el.querySelector(".toast-message").textContent = message;
    badInput.el.dataset.count = String(badInput.count);
    return;
  }
  badInput.el = toast({ level: "warning", title, message, timeoutMs: 0 });
  if (badInput.el) {
    badInput.el.dataset.count = String(badInput.count);
    badInput.el.dataset.kind = "bad-input";
  }
}

// The stores' verdict on a session's turns, right after the event that changed them.
function onTurnState(payload) {
  applyTurnState(store, payload);
  if (payload && historyTaps.size && historyTaps.has(payload.sessionId)) historyTaps.get(payload.sessionId).push(["turn-state", payload]);
  schedule();
}

function onInvalidEvent(payload) {
  applyInvalidEvent(store, payload);
  schedule();
}

// Missed events the bridge could not fetch after a (re)join: a notice where they are missing.
function onCatchupGap(payload) {
  applyCatchupGap(store, payload);
  schedule();
}

// The gateway no longer knows a session (deleted elsewhere): no longer joined, nothing to send to.
function onSessionGone(payload) {
  applySessionGone(store, payload);
  if (payload && typeof payload.sessionId === "string") joined.delete(payload.sessionId);
  schedule();
}

// Which sessions need the user: the title's count and the list's marks.
function onAttention(payload) {
  setAttention(payload);
  store.dirty.sessions = true;
  schedule();
}

// Events that change the store. While a snapshot loads they wait, in order, and are applied after it.
const STORE_EVENTS = {
  "gateway-event": onGatewayEvent,
  "turn-state": onTurnState,
  "connection-state": onConnectionState,
  "invalid-event": onInvalidEvent,
  "catchup-gap": onCatchupGap,
  "session-gone": onSessionGone,
  attention: onAttention,
};

function storeEvent(kind) {
  return (payload) => {
    if (ui.syncing) ui.buffer.push([kind, payload]);
    else applyStoreEvent(kind, payload);
  };
}

/**
 * Whether the user was away is decided when the event came, not when its frame is laid out (a
 * frame or two later, more in a burst): a turn that ended while they looked is no news.
 */
function applyStoreEvent(kind, payload) {
  const from = store.effects.length;
  STORE_EVENTS[kind](payload);
  if (store.effects.length === from) return;
  const away = userAway();
  for (let i = from; i < store.effects.length; i += 1) store.effects[i].away ??= away;
}

function userAway() {
  return document.hidden || !document.hasFocus();
}

for (const kind of Object.keys(STORE_EVENTS)) listen(kind, storeEvent(kind));
listen("actor-status", onActorStatus);
listen("outbox", onOutbox);
listen("gateway-warning", onGatewayWarning);

onBridgeState((state) => {
  const was = ui.bridge;
  ui.bridge = state;
  if (state === "open") ui.bridgeWasOpen = true;
  store.dirty.connection = true;
  // dim-desktop is gone: what it last said about its actors no longer holds.
  if (state === "closed" && was === "open") showActors(store.actors);
  schedule();
  // Back (the same app, or a restarted one on the same port): everything is read again.
  if (state === "open") resync();
});

// If the event socket cannot open at all, still render what get_state says.
setTimeout(() => {
  if (!ui.snapshotLoaded && !ui.syncing) resync();
}, 2500);

/** Rebuild the model from get_state, then apply what arrived meanwhile. */
async function resync() {
  const run = ++ui.syncRun;
  ui.syncing = true;
  ui.buffer = [];
  let snap;
  try {
    snap = await invoke("get_state", {});
  } catch (err) {
    if (run !== ui.syncRun) return;
    finishSync();
    if (err && (err.code === "UNAUTHORIZED" || err.code === "FORBIDDEN")) {
      showAuthProblem();
      return;
    }
    toastError(err, "Loading state");
    setTimeout(() => {
      if (ui.bridge === "open" && run === ui.syncRun) resync();
    }, 1500);
    return;
  }
  if (run !== ui.syncRun) return; // a newer resync superseded this one
  loadSnapshot(store, snap);
  setAttention(snap && snap.attention);
  ui.snapshotLoaded = true;
  ui.selectedSeen = false;
  // Conflicts are badged for every synced session, not only those whose sync changes from now on.
  syncState.refresh();
  if (!ui.selectedId) {
    let remembered = null;
    try {
      remembered = sessionStorage.getItem(SELECTED_KEY);
    } catch (_) {
      remembered = null;
    }
    if (remembered && (store.sessions.has(remembered) || store.chats.has(remembered))) setSelected(remembered);
  }
  if (sessionToOpen) {
    setSelected(sessionToOpen);
    sessionToOpen = null;
  }
  finishSync();
  reportLooking(true);
  filesPanel.setSession(ui.selectedId);
  // The app behind the bridge may have restarted (a new process has joined nothing): join the
  // session on screen again. Joining twice is harmless.
  joined.clear();
  if (ui.selectedId) joinSession(ui.selectedId);
  loadActorStatus(); // a restarted app has new processes
  if (connectionLabel(store.connection.state) === "connected") refreshSessions();
  schedule();
}

async function loadActorStatus() {
  try {
    const rows = await invoke("actor_status", {});
    showActors(rows);
    schedule();
  } catch (_) {
    /* the panel fills from actor-status events */
  }
}

function finishSync() {
  const buffered = ui.buffer;
  ui.buffer = [];
  ui.syncing = false;
  for (const [kind, payload] of buffered) applyStoreEvent(kind, payload);
  schedule();
}

let authProblemShown = false;
function showAuthProblem() {
  if (authProblemShown) return;
  authProblemShown = true;
  toast({
    level: "error",
    title: "This page is not signed in to dim-desktop",
    message: getToken()
      ? "dim-desktop did not accept this page (it may have been given a new address). Open dim-desktop from its window or tray, or the address it printed."
      : "Open dim-desktop from its window or tray, or the address it printed (it ends in ?token=…).",
    timeoutMs: 0,
  });
}

// ---------------------------------------------------------------------------------------------
// Sessions

/**
 * The session on screen was in the model and is no longer: deleted. One the model has not held
 * since it was selected, or since the last snapshot, is only not known yet (a restarted app lists
 * sessions once connected; joining it brings it back), so it stays selected.
 */
function selectionVanished() {
  const id = ui.selectedId;
  if (!id) return false;
  if (store.sessions.has(id) || store.chats.has(id)) {
    ui.selectedSeen = true;
    return false;
  }
  return ui.selectedSeen;
}

function setSelected(id) {
  ui.selectedId = id || null;
  ui.selectedSeen = false;
  reportLooking();
  try {
    if (id) sessionStorage.setItem(SELECTED_KEY, id);
    else sessionStorage.removeItem(SELECTED_KEY);
  } catch (_) {
    /* ignore */
  }
}

async function selectSession(id) {
  const changed = id !== ui.selectedId;
  setSelected(id);
  if (changed) {
    chatView.show(id);
    filesPanel.setSession(id);
  }
  sessionList.render(store, ui.selectedId, ui.showArchived);
  renderHeader();
  renderControls();
  if (changed && id) el.input.focus();
  if (id) await joinSession(id);
}

async function joinSession(id) {
  if (joined.has(id) || joining.has(id) || sessionIsGone(store, id)) return; // a gone one would only fail
  joining.add(id);
  const connectedBefore = connectedTimes;
  // Not connected (e.g. an app just restarted): joined again when the gateway is back
  // (onConnectionState), or now if it came back while this join was on its way (once `joining`
  // is cleared).
  const later = () => {
    if (connectedTimes !== connectedBefore) queueMicrotask(() => id === ui.selectedId && joinSession(id));
  };
  try {
    let result;
    try {
      result = await invoke("join_session", { sessionId: id });
    } catch (err) {
      if (err && err.code === "NOT_CONNECTED") {
        later();
        return;
      }
      toastError(err, "Join session");
      if (err && err.code === "UNAUTHORIZED") showAuthProblem();
      throw err;
    }
    if (result && result.type === "queued") {
      later();
      return;
    }
    joined.add(id);
    applyInvokeResult(store, result);
    schedule();
    // A session with a past the bridge does not hold (it was joined before this app started):
    // fetch it with get_events.
    const chat = store.chats.get(id);
    const meta = store.sessions.get(id);
    const latest = Math.max(meta ? meta.lastSeq : 0, chat ? chat.lastSeq : 0, typeof result?.lastSeq === "number" ? result.lastSeq : 0);
    // (older turns the app's stores hold are not missing: get_turns gives them)
    const startMissing = !chat || chat.turns.size === 0 || ((chat.minSeq === null || chat.minSeq > 1) && !chat.olderTurns && !chat.olderAtGateway);
    if (latest > 0 && startMissing && !(chat && chat.historyLoaded)) await loadHistory(id);
  } catch (_) {
    /* toast shown */
  } finally {
    joining.delete(id);
  }
}

/**
 * A session whose past the page does not show yet (one joined before this page loaded, while the
 * bridge was still catching it up): fetch it with get_events, which the gateway answers after the
 * bridge's own catch-up pages, then show the stores' view of the chat (get_state): the stores apply
 * the turn rules, the page only renders what they decided. Live events and turn-states keep
 * flowing meanwhile; those of this session are tapped and applied again on top of that view
 * (an event the view holds drops by seq, an older turn-state by its atSeq).
 * A gateway that does not answer get_events (it failed, or the connection learned so) still has
 * get_history: the stores apply its answer to the turns' texts, and the page adds a gap notice for
 * what could not be fetched (docs/protocol.md §11).
 */
async function loadHistory(id) {
  if (historyTaps.has(id)) return;
  const tap = [];
  historyTaps.set(id, tap);
  try {
    const answers = store.connection.traits?.getEvents !== "no" && (await answersGetEvents(id));
    if (!store.sessions.has(id) && !store.chats.has(id)) return; // deleted meanwhile
    if (!answers && !(await loadTurnHistory(id))) return;
    const snap = await invoke("get_state", {});
    if (!store.sessions.has(id) && !store.chats.has(id)) return;
    const rebuilt = rebuildChat(store.chats.get(id), id, snap?.chats?.[id]);
    if (joined.has(id)) rebuilt.joined = true; // the stores do not say it
    store.chats.set(id, rebuilt);
    // Applied once already: their notifications and toasts are not shown twice.
    const shown = store.effects.length;
    for (const [kind, payload] of tap) (kind === "turn-state" ? applyTurnState : applyGatewayEvent)(store, payload);
    store.effects.length = shown;
    if (!answers) applyHistoryFallback(store, id);
    store.dirty.sessions = true;
  } catch (err) {
    toastError(err, "Loading history");
  } finally {
    historyTaps.delete(id);
    schedule();
  }
}

/**
 * Turns before `beforeTurnId` (get_state carries the newest only): the next 100, or every one from
 * `fromTurnId` on (a search result far back). Past those the app holds, it fetches them from the
 * gateway; `beforeSeq` is where a turn the gateway gave began.
 */
async function loadOlder(sessionId, beforeTurnId, fromTurnId = null, beforeSeq = null) {
  try {
    const args = fromTurnId ? { sessionId, beforeTurnId, fromTurnId, limit: 10000 } : { sessionId, beforeTurnId, limit: 100 };
    if (beforeSeq) args.beforeSeq = beforeSeq;
    const result = await invoke("get_turns", args);
    prependTurns(store, sessionId, result);
  } catch (err) {
    const chat = store.chats.get(sessionId);
    // The app no longer holds them (it restarted, or the turn is gone): nothing more to ask.
    if (err && err.code === "NOT_FOUND" && chat) {
      chat.olderTurns = 0;
      chat.olderAtGateway = 0;
    } else toastError(err, "Loading earlier messages");
  }
  schedule();
}

/**
 * Whether the gateway answers get_events for the session (false whatever the error: get_history is
 * asked instead, nothing the user can act on). Asked after the join, it is answered after the
 * bridge's first catch-up page (answers come in request order), so the stores' view read next knows
 * where their window of the session starts; what the catch-up brings after that comes live.
 */
async function answersGetEvents(id) {
  try {
    await invoke("get_events", { sessionId: id, afterSeq: 0, limit: 1 });
    return true;
  } catch (_) {
    return false;
  }
}

/** The fallback: ask the gateway's turn history, which the stores apply. False when it failed. */
async function loadTurnHistory(id) {
  try {
    await invoke("get_history", { sessionId: id });
  } catch (err) {
    toastError(err, "Loading history");
    return false;
  }
  return store.sessions.has(id) || store.chats.has(id); // not deleted meanwhile
}

async function sessionCommand(command, args, context) {
  try {
    const result = await call(command, args, context);
    applyInvokeResult(store, result);
    schedule();
    return result;
  } catch (_) {
    return null;
  }
}

async function newSession() {
  const agentType = el.agentType.value || "echo";
  el.newSession.disabled = true;
  try {
    const result = await call("create_session", { agentType }, "New session");
    applyInvokeResult(store, result);
    const id = result?.session?.id ?? result?.sessionId ?? result?.id;
    if (!id) {
      toast({ level: "error", title: "New session", message: "The gateway did not return a session id." });
      return;
    }
    schedule();
    await selectSession(id);
  } catch (_) {
    /* toast shown */
  } finally {
    el.newSession.disabled = false;
  }
}

/**
 * Archive a session. The open one is left for its neighbour in the list (or none), and a toast
 * offers Undo, which unarchives it and opens it again.
 */
async function archiveSession(id) {
  const meta = store.sessions.get(id);
  const name = (meta && meta.name) || "Untitled session";
  const wasOpen = ui.selectedId === id;
  const before = sessionList.visibleIds(); // the list may re-render before the answer
  const result = await sessionCommand("archive_session", { sessionId: id }, "Archive");
  if (!result) return;
  if (wasOpen && ui.selectedId === id && !ui.showArchived) {
    const shown = before.filter((s) => s !== id && store.sessions.has(s));
    const at = Math.max(0, before.indexOf(id));
    const next = shown[Math.min(at, shown.length - 1)] ?? null;
    if (next) await selectSession(next);
    else {
      setSelected(null);
      chatView.show(null);
      filesPanel.setSession(null);
      schedule();
    }
  }
  toast({
    level: "info",
    title: `Archived “${name}”`,
    timeoutMs: 10000,
    action: {
      label: "Undo",
      run: async () => {
        if (await sessionCommand("unarchive_session", { sessionId: id }, "Unarchive")) await selectSession(id);
      },
    },
  });
}

async function deleteSession(id) {
  const meta = store.sessions.get(id);
  const name = (meta && meta.name) || "Untitled session";
  const ok = await confirmDialog(`Delete the session “${name}”? Its messages are deleted on the gateway too. This cannot be undone.`);
  if (!ok) return;
  const result = await sessionCommand("delete_session", { sessionId: id }, "Delete");
  if (result && ui.selectedId === id) {
    setSelected(null);
    chatView.show(null);
    filesPanel.setSession(null);
  }
  schedule();
}

function confirmDialog(text) {
  return new Promise((resolve) => {
    const dlg = el.confirm;
    el.confirmText.textContent = text;
    if (typeof dlg.showModal !== "function") {
      resolve(window.confirm(text));
      return;
    }
    const onClose = () => {
      dlg.removeEventListener("close", onClose);
      resolve(dlg.returnValue === "ok");
    };
    dlg.returnValue = "";
    dlg.addEventListener("close", onClose);
    dlg.showModal();
    // Cancel has the focus: Enter alone never deletes.
    dlg.querySelector("[data-testid='confirm-cancel']").focus();
  });
}

async function toggleArchived() {
  ui.showArchived = el.showArchived.checked;
  if (ui.showArchived) {
    try {
      // applied as it comes on the event socket, as refreshSessions' list is
      await call("list_sessions", { includeArchived: true }, "List sessions");
    } catch (_) {
      /* toast shown */
    }
  }
  store.dirty.sessions = true;
  schedule();
}

// ---------------------------------------------------------------------------------------------
// Turns

// Sending, queueing while a turn runs, and the messages no turn shows yet: composer.js.
const composer = new Composer(
  {
    store,
    invoke,
    schedule,
    selected: () => ui.selectedId,
    ready: () => ui.snapshotLoaded && !ui.syncing,
    stop: () => stopTurn(),
    failed: (err) => {
      if (err && err.code === "UNAUTHORIZED") showAuthProblem();
    },
  },
  { form: el.composer, input: el.input, send: el.send, stop: el.stop, chat: el.chat, jumpSlot: $("#jump-slot") },
);

function sendMessage() {
  composer.submit();
}

async function steer() {
  const id = ui.selectedId;
  const content = el.steerInput.value.trim();
  if (!id || !content) return;
  el.steerInput.value = "";
  try {
    await call("steer", { sessionId: id, content }, "Steer");
  } catch (_) {
    if (!el.steerInput.value) el.steerInput.value = content;
  }
}

async function stopTurn() {
  const id = ui.selectedId;
  if (!id) return;
  el.stop.disabled = true;
  try {
    const turnId = activeTurnId(store, id);
    await call("stop_turn", turnId ? { sessionId: id, turnId } : { sessionId: id }, "Stop");
  } catch (_) {
    /* toast shown */
  } finally {
    el.stop.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Desktop notifications (only when the window is not focused and permission was granted)

function desktopNotify(title, body, sessionId, away = userAway()) {
  if (typeof Notification === "undefined" || Notification.permission !== "granted") return;
  if (!away) return;
  try {
    const n = new Notification(title, { body: body || "", tag: `dim-${sessionId || "global"}` });
    n.onclick = () => {
      window.focus();
      if (sessionId) selectSession(sessionId);
      n.close();
    };
  } catch (_) {
    /* notifications unavailable in this context */
  }
}

function setupNotifyToggle() {
  if (nativeShell || typeof Notification === "undefined" || Notification.permission !== "default") return;
  el.notifyToggle.hidden = false;
  el.notifyToggle.addEventListener("click", async () => {
    try {
      await Notification.requestPermission();
    } finally {
      el.notifyToggle.hidden = Notification.permission !== "default";
    }
  });
}

// ---------------------------------------------------------------------------------------------
// DOM wiring

el.newSession.addEventListener("click", newSession);
el.showArchived.addEventListener("change", toggleArchived);
el.composer.addEventListener("submit", (e) => {
  e.preventDefault();
  sendMessage();
});
el.input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing && !e.altKey && !e.ctrlKey && !e.metaKey) {
    e.preventDefault();
    sendMessage();
  }
});
el.steerForm.addEventListener("submit", (e) => {
  e.preventDefault();
  steer();
});
el.stop.addEventListener("click", stopTurn);
el.follow.addEventListener("click", async () => {
  const id = ui.selectedId;
  if (!id) return;
  el.follow.disabled = true;
  try {
    if (el.follow.dataset.action === "leave") {
      const result = await call("leave_session", { sessionId: id }, "Stop following");
      joined.delete(id);
      applyGatewayEvent(store, result); // session_left: not following any more
    } else {
      await joinSession(id);
    }
  } catch (_) {
    /* toast shown */
  } finally {
    el.follow.disabled = false;
    schedule();
  }
});

el.conn.addEventListener("click", () => {
  el.connPopover.hidden = !el.connPopover.hidden;
  el.conn.setAttribute("aria-expanded", String(!el.connPopover.hidden));
});
document.addEventListener("click", (e) => {
  if (!el.connPopover.hidden && !e.target.closest(".conn-wrap")) {
    el.connPopover.hidden = true;
    el.conn.setAttribute("aria-expanded", "false");
  }
});
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && !el.connPopover.hidden) {
    el.connPopover.hidden = true;
    el.conn.focus();
  }
});
el.connForm.addEventListener("submit", async (e) => {
  e.preventDefault();
  const url = el.connUrl.value.trim();
  if (!url) {
    el.connUrl.focus();
    return;
  }
  const args = { url };
  if (el.connToken.value) args.token = el.connToken.value;
  try {
    await call("gateway_connect", args, "Connect");
    el.connPopover.hidden = true;
  } catch (_) {
    /* toast shown */
  }
});
el.connDisconnect.addEventListener("click", async () => {
  try {
    await call("gateway_disconnect", {}, "Disconnect");
  } catch (_) {
    /* toast shown */
  }
});

// The layout (layout.js): docked columns or drawers, the workspace tabs, the Diagnostics view.
// The History tab and an open actor log read the gateway only while they can be seen.
initLayout({
  onSideChange: ({ tab, shown }) => historyPanel.setVisible(shown && tab === "history"),
  onDiagnostics: (open) => actorsPanel.setVisible(open),
});

// Sessions and the keyboard: the search box, find in the chat, the shortcuts, the agent picker.
const AGENT_KEY = "dim-desktop.agent-type";
try {
  const remembered = localStorage.getItem(AGENT_KEY);
  if (remembered && [...el.agentType.options].some((o) => o.value === remembered)) el.agentType.value = remembered;
} catch (_) {
  /* storage unavailable: the first agent */
}
for (const o of el.agentType.options) if (AGENT_LABELS[o.value]) o.textContent = AGENT_LABELS[o.value];
el.agentType.addEventListener("change", () => {
  try {
    localStorage.setItem(AGENT_KEY, el.agentType.value);
  } catch (_) {
    /* not remembered */
  }
});

const findBar = new FindBar(el.chat);
const sessionSearch = new SessionSearch(
  { input: $("#session-search"), results: $("#search-results") },
  {
    invoke,
    filter: (text) => {
      sessionList.setFilter(text);
      store.dirty.sessions = true;
      schedule();
    },
    sessionName: (sid) => store.sessions.get(sid)?.name || "Untitled session",
    firstSession: () => sessionList.visibleIds()[0] ?? null,
    focusList: () => sessionList.focus(),
    open: async (sid, turnId, query) => {
      await selectSession(sid);
      if (!turnId) return;
      // An older turn is laid out on request: the chat shows only its newest messages at first.
      whenTurnShown(
        el.chat,
        turnId,
        (turnEl) => {
          if (query) findBar.open(query);
          findBar.focusWithin(turnEl);
        },
        15000,
        () => chatView.reveal(turnId),
      );
    },
  },
);

installShortcuts(
  [
    { keys: "Mod+Shift+O", label: "New session", run: () => newSession() },
    { keys: "Mod+K", label: "Search sessions and messages", run: () => sessionSearch.focus() },
    { keys: "Mod+F", label: "Find in this chat", run: () => findBar.open() },
    { keys: "/", label: "Write a message", run: () => (el.input.disabled ? sessionList.focus() : el.input.focus()) },
  ],
  [
    ["Enter", "Send the message (Shift+Enter: a new line)"],
    ["↑ ↓ Home End", "Move in the session list; Enter opens"],
    ["Shift+Enter", "Open the session in a new window (in the list)"],
    ["F2", "Rename the session (in the list)"],
    ["Delete", "Delete the session (in the list, after asking)"],
    ["Shift+F10", "More actions for the session (in the list)"],
    ["Enter / Shift+Enter", "Next / previous match (in Find)"],
    ["Esc", "Close Find, clear the search"],
  ],
);
el.newSession.title = `New session (${keyLabel("Mod+Shift+O")})`;
$("#session-search").placeholder = `Search sessions and messages (${keyLabel("Mod+K")})`;

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && frameRequested) {
    frameRequested = false;
    schedule();
  }
});

setupNotifyToggle();
renderConnection();
renderControls();
chatView.show(null);

// for debugging from the devtools console
window.__dim = { store, ui, invoke, applyEvent: storeEvent("gateway-event"), selectSession };
