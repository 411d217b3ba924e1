// The page model and its reducer. No DOM here.
//
// The model is built from the bridge's `get_state` snapshot (loadSnapshot) and then kept current
// by applying live `gateway-event` payloads (applyGatewayEvent). A snapshot Turn and the same turn
// built from live events go through the same item fold (applyTurnItem), so they render the same.
//
// Turn semantics belong to the bridge's stores (dim_actors/router/stores.py, docs/architecture.md
// "Turn semantics"); this file decides none of them. A turn's status, finalText and error, and a
// chat's activeTurnId, come from the stores: from a snapshot's chats, and live from the
// `turn-state` frame the bridge sends right after each event that changed them (applyTurnState).
// Live events only add what they show: text, tool calls, prompts and the rest.
//
// Every mutation marks what changed in `store.dirty`; the renderer reads and clears it once per
// animation frame, so thousands of events per second cost one DOM update per frame.

// "ended": a state_snapshot says the turn no longer runs but its end event has not arrived (yet).
export const TURN_STATUSES = ["running", "waiting", "complete", "error", "stopped", "ended"];
export const SESSION_STATUSES = ["inactive", "activating", "ready", "running", "waiting", "error", "deactivating"];

// Event types that belong to a turn (they carry turnId).
const TURN_ITEM_TYPES = new Set([
  "turn_started",
  "text_delta",
  "turn_complete",
  "turn_error",
  "thinking.start",
  "thinking.progress",
  "thinking.complete",
  "tool_call_start",
  "tool_call_delta",
  "tool_call",
  "tool_result",
  "tool_error",
  "terminal.stream",
  "terminal.complete",
  "question_requested",
  "permission_requested",
  "approval_resolved",
  "steer_received",
  "file_changed",
  "usage_update",
  "message.delta",
  "plan.created",
  "plan.step_started",
  "plan.step_completed",
  "plan.revised",
]);

// Session-list events: they update SessionMeta (the sidebar), not the chat.
const SESSION_META_TYPES = new Set([
  "session_list",
  "session_created",
  "session_renamed",
  "session_archived",
  "session_unarchived",
  "session_deleted",
  "session_state",
  "state_snapshot",
  "session_left",
]);

// Known events shown as a one-line notice in the chat timeline when they are outside a turn.
const NOTICE_TYPES = new Set([
  "sandbox_init",
  "sandbox_provisioning",
  "sandbox_ready",
  "sandbox_removed",
  "steer_received",
  "file_changed",
]);

// Known events that are responses or housekeeping: nothing to show in a chat.
const SILENT_TYPES = new Set([
  "welcome",
  "connected",
  "authenticated",
  "heartbeat",
  "pong",
  "member_list",
  "file_list",
  "file_content",
  "file_history_list",
  "event_list",
  "usage_update",
]);

export function isKnownEventType(type) {
  return (
    TURN_ITEM_TYPES.has(type) ||
    SESSION_META_TYPES.has(type) ||
    NOTICE_TYPES.has(type) ||
    SILENT_TYPES.has(type) ||
    type === "history" ||
    type === "error"
  );
}

// Statuses of a turn that has ended with its end known: its final text may say more than its deltas.
const FINISHED_STATUSES = new Set(["complete", "error", "stopped"]);

// Why the page's own gap notice is there when it fell back to get_history (app.js loadHistory).
export const HISTORY_GAP_REASON = "it did not answer get_events; the turns below come from its history, text only";

const MAX_GLOBAL_EVENTS = 200;
const MAX_GAPS = 50; // per chat, as the bridge's stores keep them

// ---------------------------------------------------------------------------------------------
// Store

export function createStore() {
  return {
    // Plus what the handshake and heartbeats said (protocolVersion, clientId, heartbeatIntervalMs,
    // lastHeartbeatAt) and, while reconnecting, retryAt (epoch ms of the next attempt).
    connection: { state: "connecting", url: "", detail: "", reconnects: 0, identity: null },
    sessions: new Map(), // id -> SessionMeta (plus UI fields)
    chats: new Map(), // id -> Chat
    globalEvents: [], // unknown events without a sessionId
    actors: null, // last actor-status rows
    outbox: [], // commands the bridge queued while the gateway was unreachable
    gen: 0, // bumped when the whole model is rebuilt (snapshot)
    effects: [], // {kind: "toast"|"notify", ...} drained by the app
    dirty: newDirty(),
  };
}

function newDirty() {
  return {
    all: false,
    connection: false,
    sessions: false,
    actors: false,
    outbox: false,
    global: false,
    chats: new Map(), // sessionId -> {timeline: bool, turns: Set(turnId)}
  };
}

export function takeDirty(store) {
  const d = store.dirty;
  store.dirty = newDirty();
  return d;
}

function markChat(store, sessionId) {
  let entry = store.dirty.chats.get(sessionId);
  if (!entry) {
    // rebuild: entries were inserted before the end of the timeline, so the view lays it out again.
    // prepend: {at, count}: older turns went in at `at` (prependTurns).
    entry = { timeline: false, turns: new Set(), meta: false, gaps: false, rebuild: false, prepend: null };
    store.dirty.chats.set(sessionId, entry);
  }
  return entry;
}

function newChat(sessionId) {
  return {
    sessionId,
    lastSeq: 0,
    status: null,
    turns: new Map(), // turnId -> Turn
    timeline: [], // {kind: "turn", turnId, seq} | {kind: "event", event, seq}
    activeTurnId: null,
    pendingRequests: [],
    minSeq: null, // the lowest seq this chat holds: above 1 means its start is missing
    olderTurns: 0, // turns before the first one held that the app's stores hold (get_turns)
    olderAtGateway: 0, // > 0: older turns still, at the gateway only (get_turns fetches them)
    historyLoaded: false,
    joined: false, // a state_snapshot (join_session) came, and no session_left since
    gaps: [], // {afterSeq, beforeSeq, reason, atSeq, v}: missed events the bridge could not fetch
    gone: null, // {reason}: the gateway no longer knows this session; its transcript stays
    unlistedMeta: null, // its SessionMeta when a session_list dropped it (a session-gone may follow)
  };
}

export function ensureChat(store, sessionId) {
  let chat = store.chats.get(sessionId);
  if (!chat) {
    chat = newChat(sessionId);
    store.chats.set(sessionId, chat);
    markChat(store, sessionId).timeline = true;
  }
  return chat;
}

function newTurn(turnId, fields = {}) {
  return {
    turnId,
    status: fields.status || "", // "" until the stores' turn-state says
    userText: fields.userText ?? "",
    text: fields.text ?? "",
    finalText: fields.finalText ?? "",
    error: fields.error ?? null,
    deltaCount: fields.deltaCount ?? 0,
    firstSeq: fields.firstSeq ?? null,
    lastSeq: fields.lastSeq ?? null,
    usage: null,
    stopReason: null,
    fromHistory: !!fields.fromHistory, // built from a `history` answer: its text only, no items
    blocks: [], // derived from items, see applyTurnItem
    index: { tools: new Map(), terminals: new Map(), requests: new Map(), thinking: null },
    v: 0, // bumped on every change of the turn's own fields
  };
}

function normSession(meta) {
  if (!meta || typeof meta !== "object") return null;
  const id = meta.id ?? meta.sessionId;
  if (!id) return null;
  return {
    ...meta,
    id,
    name: meta.name ?? "",
    agentType: meta.agentType ?? "",
    status: meta.status ?? "inactive",
    archived: !!meta.archived,
    createdAt: meta.createdAt ?? null,
    updatedAt: meta.updatedAt ?? null,
    lastSeq: typeof meta.lastSeq === "number" ? meta.lastSeq : 0,
  };
}

// ---------------------------------------------------------------------------------------------
// Snapshot

/** Rebuild the whole model from a `get_state` result. */
export function loadSnapshot(store, snap) {
  snap = snap || {};
  const conn = snap.connection || {};
  store.connection = {
    ...conn,
    state: conn.state ?? "offline",
    url: conn.url ?? "",
    detail: conn.detail ?? "",
    reconnects: conn.reconnects ?? 0,
    identity: conn.identity ?? null,
  };
  const joinedIds = new Set(Array.isArray(snap.joined) ? snap.joined : []);
  store.sessions = new Map();
  for (const raw of snap.sessions || []) {
    const meta = normSession(raw);
    if (meta) store.sessions.set(meta.id, meta);
  }
  store.chats = new Map();
  const chats = snap.chats || {};
  for (const sessionId of Object.keys(chats)) {
    const chat = chatFromSnapshot(sessionId, chats[sessionId] || {});
    chat.joined = joinedIds.has(sessionId);
    store.chats.set(sessionId, chat);
    // Session events up to the chat's lastSeq are already reflected in the snapshot's SessionMeta.
    const meta = store.sessions.get(sessionId);
    if (meta && chat.lastSeq > meta.lastSeq) meta.lastSeq = chat.lastSeq;
    if (meta && chat.status && !meta.status) meta.status = chat.status;
  }
  // Unknown events without a session, and known ones without a session whose fields were mistyped
  // (the bridge's `invalid`): both are generic cards under "Other gateway events".
  const unscoped = (Array.isArray(snap.unscoped) ? snap.unscoped : []).filter((ev) => ev && typeof ev === "object" && !isKnownEventType(ev.type));
  const invalid = (Array.isArray(snap.invalid) ? snap.invalid : []).map(invalidCard).filter(Boolean);
  store.globalEvents = unscoped.concat(invalid).slice(-MAX_GLOBAL_EVENTS);
  store.outbox = Array.isArray(snap.outbox) ? snap.outbox : [];
  store.gen += 1;
  store.dirty = newDirty();
  store.dirty.all = true;
}

export function chatFromSnapshot(sessionId, c) {
  const chat = newChat(sessionId);
  chat.lastSeq = typeof c.lastSeq === "number" ? c.lastSeq : 0;
  chat.status = c.status ?? null;
  const entries = [];
  for (const t of c.turns || []) {
    const entry = addStoredTurn(chat, t);
    if (entry) entries.push(entry);
  }
  chat.olderTurns = typeof c.olderTurns === "number" && c.olderTurns > 0 ? c.olderTurns : 0;
  chat.olderAtGateway = typeof c.olderAtGateway === "number" && c.olderAtGateway > 0 ? c.olderAtGateway : 0;
  chat.activeTurnId = typeof c.activeTurnId === "string" && chat.turns.has(c.activeTurnId) ? c.activeTurnId : null;
  for (const ev of c.other || []) {
    // What the stores kept outside any turn: an answer to a request they hold is in that turn's items.
    if (ev && typeof ev === "object" && shownOutsideTurns(ev.type)) entries.push({ kind: "event", event: ev, seq: typeof ev.seq === "number" ? ev.seq : null });
  }
  for (const item of c.invalid || []) {
    const card = invalidCard(item);
    if (card) entries.push({ kind: "event", event: card, seq: typeof card.seq === "number" ? card.seq : null });
  }
  for (const raw of Array.isArray(c.gaps) ? c.gaps : []) {
    const gap = newGap(raw);
    if (gap) {
      chat.gaps.push(gap);
      entries.push({ kind: "gap", gap, seq: null });
    }
  }
  chat.gone = goneMark(c.gone);
  // Turns by firstSeq and the other events by seq: the order in which they were sent, which is the
  // order in which a live page appended them. An event without a seq has no place in that order:
  // it goes after the sequenced ones (live it was appended where it arrived).
  entries.forEach((e, i) => (e.i = i));
  entries.sort((a, b) => entryKey(a) - entryKey(b) || a.i - b.i);
  for (const e of entries) delete e.i;
  chat.timeline = entries;
  for (const e of entries) {
    if (e.kind === "gap") continue;
    const turn = e.kind === "turn" ? chat.turns.get(e.turnId) : null;
    if (turn?.fromHistory) continue; // no event of it is held: its start is still missing
    const seq = turn ? turn.firstSeq : e.seq;
    if (typeof seq === "number" && seq > 0 && (chat.minSeq === null || seq < chat.minSeq)) chat.minSeq = seq;
  }
  return chat;
}

/** A turn as the stores hold it (get_state, get_turns), into `chat`; its timeline entry. */
function addStoredTurn(chat, t) {
  if (!t || !t.turnId || chat.turns.has(t.turnId)) return null;
  const turn = newTurn(t.turnId, t);
  // textAt: where each item came among the turn's delta text (none from an older bridge: the
  // blocks then go before the text).
  const at = Array.isArray(t.textAt) ? t.textAt : [];
  const items = Array.isArray(t.items) ? t.items : [];
  items.forEach((item, i) => applyTurnItem(chat, turn, item, typeof at[i] === "number" ? at[i] : 0));
  chat.turns.set(turn.turnId, turn);
  return { kind: "turn", turnId: turn.turnId, seq: turn.firstSeq ?? 0 };
}

/**
 * Older turns of a chat, from get_turns (get_state carries the newest only): into the timeline
 * before the first entry that came after them. The view learns where and how many
 * (`dirty.prepend`), to keep what the user looks at in place.
 */
export function prependTurns(store, sessionId, result) {
  const chat = store.chats.get(sessionId);
  if (!chat || !result || !Array.isArray(result.turns)) return 0;
  const entries = [];
  for (const t of result.turns) {
    const entry = addStoredTurn(chat, t);
    if (entry) entries.push(entry);
  }
  chat.olderTurns = typeof result.olderTurns === "number" && result.olderTurns > 0 ? result.olderTurns : 0;
  chat.olderAtGateway = typeof result.olderAtGateway === "number" && result.olderAtGateway > 0 ? result.olderAtGateway : 0;
  const dirty = markChat(store, sessionId);
  dirty.meta = true;
  if (!entries.length) return 0;
  const newest = entryKey(entries[entries.length - 1]);
  let at = chat.timeline.findIndex((e) => entryKey(e) > newest);
  if (at === -1) at = chat.timeline.length;
  chat.timeline.splice(at, 0, ...entries);
  for (const e of entries) if (e.seq > 0 && (chat.minSeq === null || e.seq < chat.minSeq)) chat.minSeq = e.seq;
  dirty.prepend = dirty.prepend ? { at: Math.min(at, dirty.prepend.at), count: dirty.prepend.count + entries.length } : { at, count: entries.length };
  return entries.length;
}

/**
 * Where a timeline entry goes in a chat rebuilt at once. A gap goes where a live page showed it:
 * after everything up to the last seq held when it was told, before the first event past that.
 */
function entryKey(e) {
  if (e.kind === "gap") return Math.max(e.gap.afterSeq, e.gap.atSeq ?? 0) + 0.5;
  return typeof e.seq === "number" ? e.seq : Infinity;
}

/**
 * A chat the page already shows, rebuilt from the stores' view of it (get_state's chat), which holds
 * its whole past once the bridge caught it up. What the stores cannot hold is carried over from
 * `old`: the page's own gap notices, and whether the page joined it.
 */
export function rebuildChat(old, sessionId, stored) {
  const chat = chatFromSnapshot(sessionId, stored && typeof stored === "object" ? stored : {});
  for (const gap of old ? old.gaps : []) {
    if (chat.gaps.some((g) => g.afterSeq === gap.afterSeq)) continue;
    chat.gaps.push(gap);
    const entry = { kind: "gap", gap, seq: null };
    const key = entryKey(entry);
    const at = chat.timeline.findIndex((e) => entryKey(e) > key);
    chat.timeline.splice(at === -1 ? chat.timeline.length : at, 0, entry);
  }
  chat.joined = !!old?.joined;
  chat.historyLoaded = true;
  return chat;
}

// ---------------------------------------------------------------------------------------------
// Live events

/** Apply one server event (the payload of a `gateway-event`). */
export function applyGatewayEvent(store, ev) {
  if (!ev || typeof ev !== "object") return;
  const type = typeof ev.type === "string" ? ev.type : "";

  if (type === "error") {
    store.effects.push({
      kind: "toast",
      level: "error",
      title: ev.code || "error",
      message: ev.message || "",
      retryAfterMs: ev.retryAfterMs,
    });
    return;
  }
  if (type === "authenticated") {
    if (ev.identity) {
      store.connection = { ...store.connection, identity: ev.identity };
      store.dirty.connection = true;
    }
    return;
  }
  if (type === "welcome" || type === "connected" || type === "heartbeat") {
    applyLinkEvent(store, ev);
    return;
  }
  if (SESSION_META_TYPES.has(type)) {
    applySessionMetaEvent(store, ev);
    return;
  }

  const sessionId = ev.sessionId;
  if (!sessionId) {
    if (!isKnownEventType(type)) {
      store.globalEvents.push(ev);
      if (store.globalEvents.length > MAX_GLOBAL_EVENTS) store.globalEvents.shift();
      store.dirty.global = true;
    }
    return;
  }
  if (type === "history") return; // what it changed comes as the stores' turn-state
  if (SILENT_TYPES.has(type) && type !== "usage_update") return; // responses and housekeeping

  const chat = ensureChat(store, sessionId);
  const seq = typeof ev.seq === "number" ? ev.seq : null;
  if (seq !== null) {
    if (seq <= chat.lastSeq) return; // a duplicate (replay overlap)
    chat.lastSeq = seq;
    if (chat.minSeq === null || seq < chat.minSeq) chat.minSeq = seq;
    const meta = store.sessions.get(sessionId);
    if (meta && seq > meta.lastSeq) meta.lastSeq = seq;
  }

  if (type === "usage_update" && !ev.turnId) {
    chat.usage = { inputTokens: ev.inputTokens, outputTokens: ev.outputTokens };
    markChat(store, sessionId).meta = true;
    return;
  }

  if (ev.turnId && (TURN_ITEM_TYPES.has(type) || !isKnownEventType(type) || NOTICE_TYPES.has(type))) {
    applyTurnEvent(store, chat, ev, seq);
    return;
  }

  const entry = sessionLevelEntry(chat, ev, store);
  if (entry) {
    chat.timeline.push(entry);
    markChat(store, sessionId).timeline = true;
  }
}

/** The connection panel's facts: protocol version, client id, heartbeat interval, last heartbeat. */
function applyLinkEvent(store, ev) {
  const c = { ...store.connection };
  if (ev.type === "welcome") {
    // A new connection: nothing the previous one said holds any more.
    Object.assign(c, { protocolVersion: ev.protocolVersion, requiresAuth: ev.requiresAuth, clientId: null, heartbeatIntervalMs: null, lastHeartbeatAt: null });
  } else if (ev.type === "connected") {
    Object.assign(c, { clientId: ev.clientId, heartbeatIntervalMs: ev.heartbeatIntervalMs });
  } else {
    c.lastHeartbeatAt = ev.ts;
  }
  store.connection = c;
  store.dirty.connection = true;
}

/**
 * A known event whose fields had the wrong types (bridge `invalid-event`, or get_state's `invalid`):
 * its frame, marked so that it renders as a generic card with the reason, never through the reducer.
 */
export function invalidCard(item) {
  if (!item || typeof item !== "object" || !item.event || typeof item.event !== "object") return null;
  return { ...item.event, __invalid: String(item.reason || "unexpected fields") };
}

/** Apply an `invalid-event` payload: a generic card in its session's timeline, or among the others. */
export function applyInvalidEvent(store, item) {
  const card = invalidCard(item);
  if (!card) return;
  const sessionId = typeof card.sessionId === "string" ? card.sessionId : null;
  if (!sessionId) {
    store.globalEvents.push(card);
    if (store.globalEvents.length > MAX_GLOBAL_EVENTS) store.globalEvents.shift();
    store.dirty.global = true;
    return;
  }
  const chat = ensureChat(store, sessionId);
  if (typeof card.seq === "number") {
    if (card.seq <= chat.lastSeq) return; // already in the snapshot this page was built from
    chat.lastSeq = card.seq; // its seq was taken (the bridge's stores counted it): a replay is a duplicate
  }
  chat.timeline.push({ kind: "event", event: card, seq: typeof card.seq === "number" ? card.seq : null });
  markChat(store, sessionId).timeline = true;
}

function newGap(raw) {
  if (!raw || typeof raw !== "object" || typeof raw.afterSeq !== "number") return null;
  return {
    afterSeq: raw.afterSeq,
    beforeSeq: typeof raw.beforeSeq === "number" ? raw.beforeSeq : null,
    reason: typeof raw.reason === "string" ? raw.reason : "",
    atSeq: typeof raw.atSeq === "number" ? raw.atSeq : null,
    v: 1,
  };
}

function goneMark(raw) {
  return raw && typeof raw === "object" ? { reason: typeof raw.reason === "string" ? raw.reason : "" } : null;
}

/**
 * A `catchup-gap` from the bridge: a notice at the end of the timeline, which is where the gap is
 * (the events after it come after it), but before turns the gateway's history added from it. Told
 * again with the same afterSeq (its end now known, or a snapshot that already had it), it is the
 * same gap: updated in place, never shown twice.
 */
export function applyCatchupGap(store, payload) {
  const gap = newGap(payload);
  const sessionId = payload?.sessionId;
  if (!gap || typeof sessionId !== "string" || !sessionId) return;
  const chat = ensureChat(store, sessionId);
  const same = chat.gaps.find((g) => g.afterSeq === gap.afterSeq);
  if (same) {
    Object.assign(same, { beforeSeq: gap.beforeSeq, reason: gap.reason, v: same.v + 1 });
    markChat(store, sessionId).gaps = true;
    return;
  }
  if (gap.atSeq === null) gap.atSeq = chat.lastSeq;
  chat.gaps.push(gap);
  if (chat.gaps.length > MAX_GAPS) chat.gaps.shift();
  // Where a reload puts it too: before turns that history added past it (they ran in the gap).
  insertEntry(store, chat, { kind: "gap", gap, seq: null });
}

/** A `session-gone` from the bridge: the session stays, with its transcript, marked gone and not joined. */
export function applySessionGone(store, payload) {
  const sessionId = payload?.sessionId;
  if (typeof sessionId !== "string" || !sessionId) return;
  const chat = ensureChat(store, sessionId);
  chat.gone = goneMark(payload);
  chat.joined = false;
  if (!store.sessions.has(sessionId)) store.sessions.set(sessionId, chat.unlistedMeta || normSession({ id: sessionId }));
  markChat(store, sessionId).meta = true;
  store.dirty.sessions = true;
}

/** Where `entry` goes in a live timeline: before the first entry that comes after it. */
function insertEntry(store, chat, entry) {
  const key = entryKey(entry);
  let at = chat.timeline.findIndex((e) => entryKey(e) > key);
  if (at === -1) at = chat.timeline.length;
  chat.timeline.splice(at, 0, entry);
  const dirty = markChat(store, chat.sessionId);
  dirty.timeline = true;
  if (at < chat.timeline.length - 1) dirty.rebuild = true;
}

/**
 * A `turn-state` from the bridge: what the stores decided about a session's turns after the event
 * just before it (or a `history` answer). Each turn takes its status, user text, final text and
 * error as they are; a turn the page lacks (one the gateway's history added) is added where it
 * ran. A frame older than what the page shows (atSeq below its lastSeq: it came before a snapshot
 * the page was rebuilt from) is left out.
 */
export function applyTurnState(store, payload) {
  const sessionId = payload?.sessionId;
  if (typeof sessionId !== "string" || !sessionId) return;
  const chat = ensureChat(store, sessionId);
  if (typeof payload.atSeq === "number" && payload.atSeq < chat.lastSeq) return;
  const dirty = markChat(store, sessionId);
  for (const t of Array.isArray(payload.turns) ? payload.turns : []) {
    if (!t || typeof t !== "object" || typeof t.turnId !== "string" || !t.turnId) continue;
    let turn = chat.turns.get(t.turnId);
    if (!turn) {
      turn = newTurn(t.turnId, t);
      chat.turns.set(turn.turnId, turn);
      insertEntry(store, chat, { kind: "turn", turnId: turn.turnId, seq: turn.firstSeq ?? 0 });
    } else {
      turn.status = typeof t.status === "string" ? t.status : turn.status;
      turn.userText = t.userText ?? "";
      turn.finalText = t.finalText ?? "";
      turn.error = t.error ?? null;
      turn.v += 1;
    }
    dirty.turns.add(turn.turnId);
  }
  chat.activeTurnId = typeof payload.activeTurnId === "string" && chat.turns.has(payload.activeTurnId) ? payload.activeTurnId : null;
  dirty.meta = true;
}

/**
 * The page's own fallback when get_events failed (app.js loadHistory), once the chat shows the
 * stores' view of the `history` answer: when it now shows turns from it, a gap notice saying that
 * what came before the first event held could not be fetched (a new session has no such past: no
 * notice). A gap of the chat that starts at the beginning already says so, and is kept instead.
 */
export function applyHistoryFallback(store, sessionId) {
  const chat = ensureChat(store, sessionId);
  const firstHeld = chat.minSeq; // turns from history hold no event: not counted in it
  chat.historyLoaded = true;
  const fromHistory = [...chat.turns.values()].some((t) => t.fromHistory);
  if (!fromHistory || chat.gaps.some((g) => g.afterSeq === 0)) return;
  const gap = newGap({ afterSeq: 0, beforeSeq: firstHeld, reason: HISTORY_GAP_REASON, atSeq: 0 });
  chat.gaps.push(gap);
  if (chat.gaps.length > MAX_GAPS) chat.gaps.shift();
  insertEntry(store, chat, { kind: "gap", gap, seq: null });
}

function applyTurnEvent(store, chat, ev, seq) {
  const type = ev.type;
  const dirty = markChat(store, chat.sessionId);
  let turn = chat.turns.get(ev.turnId);
  if (!turn) {
    // Somewhere to show the event: turn_started, or any event of an unseen turn, so nothing is
    // dropped when turn_started was missed. Its status comes with the stores' turn-state.
    turn = newTurn(ev.turnId, { firstSeq: seq });
    chat.turns.set(turn.turnId, turn);
    chat.timeline.push({ kind: "turn", turnId: turn.turnId, seq: seq ?? 0 });
    dirty.timeline = true;
  }
  dirty.turns.add(turn.turnId);
  if (seq !== null) {
    if (turn.firstSeq === null) turn.firstSeq = seq;
    turn.lastSeq = seq;
  }
  turn.v += 1;

  switch (type) {
    case "text_delta":
      if (typeof ev.text === "string") turn.text += ev.text;
      turn.deltaCount += 1;
      return;
    case "turn_complete": {
      applyTurnItem(chat, turn, ev);
      const final = typeof ev.finalText === "string" ? ev.finalText : "";
      store.effects.push({ kind: "notify", title: "Turn complete", body: firstLine(turn.text || final || turn.finalText), sessionId: chat.sessionId });
      return;
    }
    case "turn_error":
      applyTurnItem(chat, turn, ev);
      store.effects.push({ kind: "notify", title: "Turn failed", body: firstLine([ev.code, ev.message].filter(Boolean).join(": ")), sessionId: chat.sessionId });
      return;
    case "question_requested":
    case "permission_requested":
      applyTurnItem(chat, turn, ev);
      store.effects.push({
        kind: "notify",
        title: type === "question_requested" ? "Question from the agent" : "Permission requested",
        body: firstLine(type === "question_requested" ? ev.question : describe(ev.action)),
        sessionId: chat.sessionId,
      });
      return;
    case "approval_resolved":
      applyTurnItem(chat, turn, ev);
      // The prompt it answers may sit in another turn: that one shows the answer too.
      for (const t of chat.turns.values()) {
        if (t !== turn && t.index.requests.has(ev.requestId)) {
          t.v += 1;
          dirty.turns.add(t.turnId);
        }
      }
      return;
    default:
      applyTurnItem(chat, turn, ev);
  }
}

/**
 * The item fold: how one non-text_delta event of a turn changes the turn's blocks. Used for the
 * snapshot's Turn.items and for live events alike. `textAt` is how much of the turn's delta text
 * had streamed when the item came (live: all of it so far; a snapshot says it per item): a block
 * it adds keeps it, so the view puts the block where it was among the text.
 */
export function applyTurnItem(chat, turn, ev, textAt = turn.text.length) {
  if (!ev || typeof ev !== "object") return;
  const type = ev.type;
  const idx = turn.index;
  const add = (block) => {
    block.v = 1;
    block.textAt = textAt;
    turn.blocks.push(block);
    return block;
  };
  const touch = (block) => {
    block.v += 1;
    return block;
  };
  switch (type) {
    case "turn_started":
    case "text_delta":
    case "turn_error":
      return;
    case "turn_complete":
      if (ev.usage && typeof ev.usage === "object") turn.usage = { ...ev.usage };
      if (ev.stopReason) turn.stopReason = ev.stopReason;
      return;
    case "usage_update":
      turn.usage = { inputTokens: ev.inputTokens, outputTokens: ev.outputTokens };
      return;
    case "thinking.start":
      idx.thinking = add({ kind: "thinking", text: "", done: false });
      return;
    case "thinking.progress": {
      const text = typeof ev.text === "string" ? ev.text : typeof ev.content === "string" ? ev.content : "";
      if (!idx.thinking) idx.thinking = add({ kind: "thinking", text: "", done: false });
      idx.thinking.text += text;
      touch(idx.thinking);
      return;
    }
    case "thinking.complete":
      if (idx.thinking) {
        if (typeof ev.text === "string" && ev.text && !idx.thinking.text) idx.thinking.text = ev.text;
        idx.thinking.done = true;
        touch(idx.thinking);
        idx.thinking = null;
      }
      return;
    case "tool_call_start":
    case "tool_call_delta":
    case "tool_call":
    case "tool_result":
    case "tool_error": {
      const id = ev.toolCallId ?? "";
      let block = idx.tools.get(id);
      if (!block) {
        block = add({ kind: "tool", toolCallId: id, toolName: "", argsText: "", args: undefined, result: undefined, error: undefined, state: "pending" });
        idx.tools.set(id, block);
      } else touch(block);
      if (ev.toolName) block.toolName = ev.toolName;
      if (type === "tool_call_delta" && typeof ev.argsDelta === "string") block.argsText += ev.argsDelta;
      if (type === "tool_call") {
        if ("args" in ev) block.args = ev.args;
        if (block.state === "pending") block.state = "running";
        nameTerminal(idx, block);
      }
      if (type === "tool_result") {
        block.result = ev.result;
        block.state = "done";
      }
      if (type === "tool_error") {
        block.error = ev.error;
        block.state = "error";
      }
      return;
    }
    case "terminal.stream":
    case "terminal.complete": {
      const id = ev.terminalId ?? "";
      let block = idx.terminals.get(id);
      if (!block) {
        // Titled by its command when the event or a tool call of the turn says it, else by number.
        const command = typeof ev.command === "string" ? ev.command : terminalCommand(idx, id);
        block = add({ kind: "terminal", terminalId: id, text: "", exitCode: null, number: idx.terminals.size + 1, command });
        idx.terminals.set(id, block);
      } else touch(block);
      if (typeof ev.command === "string" && ev.command) block.command = ev.command;
      if (type === "terminal.stream") {
        const text = typeof ev.text === "string" ? ev.text : typeof ev.data === "string" ? ev.data : "";
        block.text += text;
      } else {
        block.exitCode = ev.exitCode ?? 0;
      }
      return;
    }
    case "question_requested":
    case "permission_requested": {
      const block = add({
        kind: type === "question_requested" ? "question" : "permission",
        requestId: ev.requestId ?? "",
        question: ev.question,
        options: Array.isArray(ev.options) ? ev.options : null,
        action: ev.action,
        event: ev,
        resolution: null,
      });
      idx.requests.set(block.requestId, block);
      return;
    }
    case "approval_resolved": {
      const block = findRequest(chat, turn, ev.requestId);
      const resolution = { answers: ev.answers, approved: ev.approved, dismissed: ev.dismissed };
      if (block) {
        block.resolution = resolution;
        touch(block);
      } else {
        add({ kind: "notice", text: `Request ${ev.requestId ?? ""} resolved: ${describeResolution(resolution)}` });
      }
      return;
    }
    case "message.delta": {
      // Streamed message text, like text_delta, but kept as its own block (its place among the
      // turn's other items is known; text_delta's is not). Pieces of one message (messageId, or
      // consecutive pieces) go to one block.
      const text = typeof ev.text === "string" ? ev.text : typeof ev.delta === "string" ? ev.delta : typeof ev.content === "string" ? ev.content : "";
      const id = typeof ev.messageId === "string" ? ev.messageId : null;
      const last = turn.blocks[turn.blocks.length - 1];
      let block = id !== null ? idx.messages?.get(id) : last && last.kind === "message" && last.messageId === null ? last : null;
      if (!block) {
        block = add({ kind: "message", messageId: id, text: "" });
        if (id !== null) (idx.messages ??= new Map()).set(id, block);
      } else touch(block);
      block.text += text;
      return;
    }
    case "plan.created":
    case "plan.revised":
    case "plan.step_started":
    case "plan.step_completed":
      applyPlanEvent(turn, ev, add, touch);
      return;
    case "steer_received":
      add({ kind: "steer", content: ev.content ?? "" });
      return;
    case "file_changed":
      add({ kind: "file", path: ev.path ?? "", iteration: ev.iteration, size: ev.size, deleted: !!ev.deleted, renamedFrom: ev.renamedFrom ?? null });
      return;
    default:
      if (NOTICE_TYPES.has(type)) {
        add({ kind: "notice", text: noticeText(ev) });
        return;
      }
      if (isKnownEventType(type)) return;
      add({ kind: "generic", event: ev });
  }
}

/** A tool call that names a terminal (`terminalId` in its arguments) and the command it runs. */
function toolTerminal(tool) {
  const args = tool.args && typeof tool.args === "object" ? tool.args : null;
  const command = args ? (args.command ?? args.cmd) : null;
  return args && typeof args.terminalId === "string" && typeof command === "string" ? { id: args.terminalId, command } : null;
}

function terminalCommand(idx, terminalId) {
  for (const tool of idx.tools.values()) {
    const t = toolTerminal(tool);
    if (t && t.id === terminalId) return t.command;
  }
  return null;
}

function nameTerminal(idx, tool) {
  const t = toolTerminal(tool);
  const block = t ? idx.terminals.get(t.id) : null;
  if (block && !block.command) {
    block.command = t.command;
    block.v += 1;
  }
}

const PLAN_STEP_STATUSES = new Set(["pending", "running", "done", "failed", "skipped"]);

/** One plan card per planId: steps with their status; a revision replaces the steps (a step keeps
 * its status when its stepId stays) and is counted. */
function applyPlanEvent(turn, ev, add, touch) {
  const plans = (turn.index.plans ??= new Map());
  const id = typeof ev.planId === "string" ? ev.planId : "";
  let block = plans.get(id);
  if (!block) {
    block = add({ kind: "plan", planId: id, steps: [], revisions: 0, reason: null });
    plans.set(id, block);
  } else touch(block);
  const status = (s, fallback) => (PLAN_STEP_STATUSES.has(s) ? s : fallback);
  if (ev.type === "plan.created" || ev.type === "plan.revised") {
    const before = new Map(block.steps.map((s) => [s.stepId, s]));
    block.steps = (Array.isArray(ev.steps) ? ev.steps : [])
      .filter((s) => s && typeof s === "object")
      .map((s, i) => {
        const stepId = typeof s.stepId === "string" ? s.stepId : String(i);
        const was = before.get(stepId);
        return { stepId, title: describe(s.title ?? stepId), status: status(s.status, was?.status ?? "pending"), summary: was?.summary ?? null };
      });
    if (ev.type === "plan.revised") {
      block.revisions += 1;
      block.reason = typeof ev.reason === "string" ? ev.reason : null;
    }
    return;
  }
  let step = block.steps.find((s) => s.stepId === ev.stepId);
  if (!step) {
    // A step the plan did not list (or a plan we never saw created): shown all the same.
    step = { stepId: String(ev.stepId ?? ""), title: String(ev.stepId ?? "step"), status: "pending", summary: null };
    block.steps.push(step);
  }
  if (ev.type === "plan.step_started") step.status = "running";
  else {
    step.status = status(ev.status, "done");
    if (typeof ev.summary === "string") step.summary = ev.summary;
  }
}

function findRequest(chat, turn, requestId) {
  if (turn && turn.index.requests.has(requestId)) return turn.index.requests.get(requestId);
  if (!chat) return null;
  for (const t of chat.turns.values()) {
    const b = t.index.requests.get(requestId);
    if (b) {
      return b;
    }
  }
  return null;
}

/** Whether a session event outside a turn shows in the timeline (a notice, or a generic card). */
function shownOutsideTurns(type) {
  return type === "approval_resolved" || NOTICE_TYPES.has(type) || !isKnownEventType(type);
}

/**
 * A live session event outside a turn: returns the timeline entry to show for it (or null), and
 * shows an approval resolution on the prompt it answers (what it does to that turn's status comes
 * with the stores' turn-state).
 */
function sessionLevelEntry(chat, ev, store) {
  const type = ev.type;
  const seq = typeof ev.seq === "number" ? ev.seq : null;
  if (type === "approval_resolved") {
    const block = findRequest(chat, null, ev.requestId);
    if (block) {
      block.resolution = { answers: ev.answers, approved: ev.approved, dismissed: ev.dismissed };
      block.v += 1;
      for (const t of chat.turns.values()) {
        if (t.index.requests.get(ev.requestId) === block) {
          t.v += 1;
          if (store) markChat(store, chat.sessionId).turns.add(t.turnId);
        }
      }
      return null;
    }
    return { kind: "event", event: ev, seq };
  }
  return shownOutsideTurns(type) ? { kind: "event", event: ev, seq } : null;
}

function applySessionMetaEvent(store, ev, { fromInvoke = false } = {}) {
  const type = ev.type;
  const seq = typeof ev.seq === "number" && !fromInvoke ? ev.seq : null;
  if (type === "session_list") {
    const list = (Array.isArray(ev.sessions) ? ev.sessions : []).map(normSession).filter(Boolean);
    const complete = list.some((s) => s.archived); // a list with archived sessions is the full list
    const seen = new Set();
    for (const meta of list) {
      seen.add(meta.id);
      const prev = store.sessions.get(meta.id);
      store.sessions.set(meta.id, prev ? { ...prev, ...meta, lastSeq: Math.max(prev.lastSeq, meta.lastSeq) } : meta);
    }
    for (const [id, meta] of store.sessions) {
      if (seen.has(id) || (!complete && meta.archived)) continue;
      const chat = store.chats.get(id);
      if (chat?.gone) continue; // in no list of the gateway's any more; it stays in ours, marked gone
      // Kept with its chat: a session-gone told after this list (a reconnect refreshes both) finds its name.
      if (chat) chat.unlistedMeta = meta;
      store.sessions.delete(id);
    }
    store.dirty.sessions = true;
    return;
  }

  const sessionId = ev.sessionId ?? ev.session?.id;
  if (!sessionId) return;
  let meta = store.sessions.get(sessionId);
  if (seq !== null && meta && seq <= meta.lastSeq && type !== "session_created") return; // already reflected
  const chat = store.chats.get(sessionId);
  if (seq !== null && chat && seq > chat.lastSeq) chat.lastSeq = seq;

  switch (type) {
    case "session_created": {
      const created = normSession(ev.session || { id: sessionId });
      if (!created) return;
      store.sessions.set(created.id, meta ? { ...meta, ...created, lastSeq: Math.max(meta.lastSeq, created.lastSeq) } : created);
      break;
    }
    case "state_snapshot": {
      const snapMeta = normSession(ev.session ? { id: sessionId, ...ev.session } : { id: sessionId });
      const merged = meta ? { ...meta, ...snapMeta, lastSeq: Math.max(meta.lastSeq, snapMeta.lastSeq) } : snapMeta;
      store.sessions.set(sessionId, merged);
      {
        const c = chat || ensureChat(store, sessionId); // a joined session has a chat, even an empty one
        if (ev.session?.status) c.status = ev.session.status;
        c.pendingRequests = Array.isArray(ev.pendingRequests) ? ev.pendingRequests : [];
        c.joined = true;
        c.gone = null; // joined: the gateway knows it after all
        markChat(store, sessionId).meta = true;
      }
      break;
    }
    case "session_deleted":
      store.sessions.delete(sessionId);
      if (chat) {
        store.chats.delete(sessionId);
        markChat(store, sessionId).timeline = true;
      }
      break;
    case "session_left":
      if (chat) {
        chat.joined = false;
        markChat(store, sessionId).meta = true;
      }
      break;
    default: {
      if (!meta) {
        meta = normSession({ id: sessionId });
        store.sessions.set(sessionId, meta);
      }
      if (type === "session_renamed") meta.name = ev.name ?? meta.name;
      if (type === "session_archived") meta.archived = true;
      if (type === "session_unarchived") meta.archived = false;
      if (type === "session_state") {
        meta.status = ev.status ?? meta.status;
        if (chat) {
          chat.status = meta.status;
          markChat(store, sessionId).meta = true;
        }
      }
      if (typeof ev.ts === "number") meta.updatedAt = ev.ts;
    }
  }
  const now = store.sessions.get(sessionId);
  if (now && seq !== null && seq > now.lastSeq) now.lastSeq = seq;
  store.dirty.sessions = true;
}

/** Apply the event an invoke returned (session_created, session_list, state_snapshot, ...). */
export function applyInvokeResult(store, result) {
  if (!result || typeof result !== "object" || typeof result.type !== "string") return;
  if (SESSION_META_TYPES.has(result.type)) applySessionMetaEvent(store, result, { fromInvoke: true });
}

export function setConnection(store, payload) {
  if (!payload || typeof payload !== "object") return;
  const next = { ...store.connection, ...payload };
  // retryAt is when the next attempt is due (the bridge sets it); from retryInMs when it does not.
  if (typeof payload.retryInMs === "number" && typeof payload.retryAt !== "number") next.retryAt = Date.now() + payload.retryInMs;
  if (typeof payload.retryInMs !== "number") next.retryAt = null;
  store.connection = next;
  store.dirty.connection = true;
}

export function setOutbox(store, items) {
  store.outbox = Array.isArray(items) ? items : [];
  store.dirty.outbox = true;
}

export function setActors(store, payload) {
  store.actors = payload;
  store.dirty.actors = true;
}

// ---------------------------------------------------------------------------------------------
// Helpers shared with the views

/**
 * The assistant's text: what streamed, or the final text when that says more (a turn that ended with
 * deltas lost in a gap, whose end came from its end event or from the gateway's history).
 */
export function displayText(turn) {
  return displaySource(turn) === "final" ? turn.finalText || "" : turn.text || "";
}

/** Which of the turn's texts displayText shows: "text" (the deltas) or "final". */
export function displaySource(turn) {
  if (!turn.text) return "final";
  const ended = FINISHED_STATUSES.has(turn.status);
  return ended && typeof turn.finalText === "string" && turn.finalText.length > turn.text.length ? "final" : "text";
}

export function sessionIsBusy(store, sessionId) {
  const chat = store.chats.get(sessionId);
  if (chat && chat.activeTurnId) return true;
  const meta = store.sessions.get(sessionId);
  const status = meta?.status ?? chat?.status;
  return status === "running" || status === "waiting";
}

export function sessionIsGone(store, sessionId) {
  return !!store.chats.get(sessionId)?.gone;
}

/** The gap notice's words. */
export function gapText(gap) {
  const span = typeof gap.beforeSeq === "number" ? `between #${gap.afterSeq} and #${gap.beforeSeq}` : `after #${gap.afterSeq}`;
  const why = gap.reason ? ` (${gap.reason})` : "";
  return `Events ${span} could not be fetched from this gateway${why}. What the agent did meanwhile may be missing here.`;
}

/** The turn a stop stops, as the stores said (get_state, turn-state). */
export function activeTurnId(store, sessionId) {
  return store.chats.get(sessionId)?.activeTurnId ?? null;
}

export function describe(value) {
  if (value === undefined || value === null) return "";
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value);
  } catch (_) {
    return String(value);
  }
}

export function describeResolution(r) {
  if (!r) return "";
  if (r.dismissed) return "dismissed";
  if (r.approved === true) return "allowed";
  if (r.approved === false) return "denied";
  if (r.answers !== undefined && r.answers !== null) {
    if (Array.isArray(r.answers)) return r.answers.map(describe).join(", ");
    if (typeof r.answers === "object") return Object.values(r.answers).map(describe).join(", ");
    return describe(r.answers);
  }
  return "answered";
}

export function noticeText(ev) {
  switch (ev.type) {
    case "sandbox_init":
      return `Sandbox starting${ev.provider ? ` (${ev.provider})` : ""}`;
    case "sandbox_provisioning":
      return `Sandbox: ${ev.phase ?? "provisioning"}${ev.message ? ` — ${ev.message}` : ""}`;
    case "sandbox_ready":
      return "Sandbox ready";
    case "sandbox_removed":
      return "Sandbox removed";
    case "steer_received":
      return `Steer: ${ev.content ?? ""}`;
    case "file_changed":
      return fileChangeText(ev);
    default:
      return ev.type;
  }
}

export function fileChangeText(ev) {
  const parts = [];
  if (ev.deleted) parts.push(`deleted ${ev.path}`);
  else if (ev.renamedFrom) parts.push(`renamed ${ev.renamedFrom} → ${ev.path}`);
  else parts.push(`changed ${ev.path}`);
  if (ev.iteration !== undefined && ev.iteration !== null) parts.push(`#${ev.iteration}`);
  return parts.join(" ");
}

function firstLine(s) {
  const str = describe(s);
  const line = str.split("\n").find((l) => l.trim()) || "";
  return line.length > 140 ? `${line.slice(0, 139)}…` : line;
}

// ---------------------------------------------------------------------------------------------
// Messages the user sent that no turn shows yet (the composer's bubbles below the timeline)
//
// {id, sessionId, text, state, clientTurnId, afterSeq, turnId, error, notBefore}, oldest first.
// state: "sending" (run_turn in flight), "sent" (the gateway started its turn; the turn's own
// user text is on its way), "offline" (the bridge holds it until the gateway is reachable),
// "queued" (held by the page until the session's turn ends), "failed" (refused; the text stays).

function pendingList(store) {
  if (!Array.isArray(store.pending)) store.pending = [];
  return store.pending;
}

function pendingChanged(store) {
  store.pendingV = (store.pendingV || 0) + 1;
}

export function pendingMessages(store, sessionId) {
  const list = pendingList(store);
  return sessionId === undefined ? list : list.filter((m) => m.sessionId === sessionId);
}

/** Messages kept from before a reload (sessionStorage): added once each, by id. */
export function restorePendingMessages(store, items) {
  const list = pendingList(store);
  for (const m of Array.isArray(items) ? items : []) {
    if (!m || typeof m !== "object" || typeof m.id !== "string" || typeof m.sessionId !== "string" || typeof m.text !== "string") continue;
    if (list.some((x) => x.id === m.id)) continue;
    list.push({ clientTurnId: null, afterSeq: 0, turnId: null, error: null, notBefore: 0, ...m });
  }
  pendingChanged(store);
}

/** A new message of `sessionId`; afterSeq is where the chat stood, so an older turn with the same text is not taken for it. */
export function addPendingMessage(store, { sessionId, text, state, id, clientTurnId }) {
  const chat = store.chats.get(sessionId);
  const meta = store.sessions.get(sessionId);
  const item = {
    id,
    sessionId,
    text,
    state,
    clientTurnId,
    afterSeq: Math.max(chat ? chat.lastSeq : 0, meta ? meta.lastSeq : 0),
    turnId: null,
    error: null,
    notBefore: 0,
  };
  pendingList(store).push(item);
  pendingChanged(store);
  return item;
}

export function updatePendingMessage(store, id, fields) {
  const item = pendingList(store).find((m) => m.id === id);
  if (!item) return null;
  Object.assign(item, fields);
  pendingChanged(store);
  return item;
}

export function removePendingMessage(store, id) {
  const list = pendingList(store);
  const at = list.findIndex((m) => m.id === id);
  if (at === -1) return null;
  const [item] = list.splice(at, 1);
  pendingChanged(store);
  return item;
}

/**
 * Drop the sent messages whose turn the chat now shows with its user text: by the turnId the
 * gateway answered, else by session and text (the oldest message takes the oldest turn with its
 * text that began after it was written). Queued and failed messages have no turn yet. Returns
 * whether any went.
 */
export function settlePendingMessages(store) {
  const list = pendingList(store);
  if (!list.length) return false;
  const taken = new Set();
  const done = [];
  for (const m of list) {
    if (m.state === "queued" || m.state === "failed") continue;
    const chat = store.chats.get(m.sessionId);
    if (!chat) continue;
    let turn = m.turnId ? chat.turns.get(m.turnId) : null;
    if (turn && !turn.userText && FINISHED_STATUSES.has(turn.status)) {
      // its turn ended without a user text to show: nothing more will come for it
      taken.add(turn.turnId);
      done.push(m);
      continue;
    }
    if (!turn || !turn.userText) {
      turn = null;
      for (const t of chat.turns.values()) {
        if (taken.has(t.turnId) || t.userText !== m.text || t.fromHistory) continue;
        if (typeof t.firstSeq === "number" && t.firstSeq <= m.afterSeq) continue;
        turn = t;
        break;
      }
    }
    if (!turn || !turn.userText) continue;
    taken.add(turn.turnId);
    done.push(m);
  }
  if (!done.length) return false;
  store.pending = list.filter((m) => !done.includes(m));
  pendingChanged(store);
  return true;
}

/** Whether a turn of the session still runs, or has begun without the stores' verdict yet. */
export function sessionTurnRunning(store, sessionId) {
  if (sessionIsBusy(store, sessionId)) return true;
  const chat = store.chats.get(sessionId);
  if (!chat) return false;
  for (let i = chat.timeline.length - 1; i >= 0; i -= 1) {
    const e = chat.timeline[i];
    if (e.kind !== "turn") continue;
    const turn = chat.turns.get(e.turnId);
    return !!turn && (turn.status === "" || turn.status === "running" || turn.status === "waiting");
  }
  return false;
}
