// Transport to the dim-desktop UI bridge (Tauri-style).
//
//   invoke(command, args)  -> POST /invoke/{command} with "Authorization: Bearer {token}",
//                             resolves with `result`, rejects with a BridgeError
//                             {code, message, gatewayCode, status}.
//   listen(event, handler) -> one shared WebSocket to /events?token=...; frames are
//                             {"event": NAME, "payload": ...}, or {"batch": [frame, ...]} for
//                             several at once. Resolves to an unlisten function (like
//                             @tauri-apps/api/event). The socket reconnects with backoff.
//   onBridgeState(handler) -> "connecting" | "open" | "closed"; called on every change, so the app
//                             can re-fetch get_state after a reconnect.
//
// The token comes from `?token=` in the page URL; it is kept in sessionStorage (so a reload of `/`
// still works) and removed from the address bar.
//
// dim-desktop keeps its port and token across restarts, so a page left open reconnects by itself.
// Before the token goes out again after the bridge was gone (and at the start), the page asks the
// server to prove it knows the token for this very port (`GET /hello?nonce=`): a program that took
// the port while dim-desktop was down learns nothing (docs/security.md).

const TOKEN_KEY = "dim-desktop.token";

let token = null;

export function getToken() {
  if (token !== null) return token;
  let fromUrl = null;
  try {
    const params = new URLSearchParams(location.search);
    fromUrl = params.get("token");
    if (fromUrl) {
      sessionStorage.setItem(TOKEN_KEY, fromUrl);
      params.delete("token");
      const rest = params.toString();
      history.replaceState(history.state, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
    }
  } catch (_) {
    /* sessionStorage may be unavailable; keep the token in memory only */
  }
  let stored = null;
  try {
    stored = sessionStorage.getItem(TOKEN_KEY);
  } catch (_) {
    stored = null;
  }
  token = fromUrl || stored || "";
  return token;
}

export class BridgeError extends Error {
  constructor(code, message, { gatewayCode = null, status = 0, command = "", details = null } = {}) {
    super(message || code);
    this.name = "BridgeError";
    this.code = code;
    this.gatewayCode = gatewayCode;
    this.status = status;
    this.command = command;
    // The error object as the bridge sent it (a settings error's `key` and `problem`, say).
    this.details = details;
    if (details && typeof details.key === "string") this.key = details.key;
  }
}

// ---------------------------------------------------------------------------------------------
// Is the server on this port dim-desktop, with our token? Checked once per connection.

let verified = null; // a Promise<boolean> while checking or checked; null: to check

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function proveServer() {
  const subtle = globalThis.crypto && globalThis.crypto.subtle;
  if (!subtle) return true; // not a secure context: 127.0.0.1 and localhost always are
  const nonce = hex(crypto.getRandomValues(new Uint8Array(16)));
  // No cookie, no token: nothing for a stranger on this port to keep.
  const response = await fetch(`/hello?nonce=${nonce}`, { credentials: "omit", cache: "no-store" });
  const body = await response.json().catch(() => null);
  const proof = body && body.result && body.result.proof;
  if (typeof proof !== "string") return false;
  const enc = new TextEncoder();
  const key = await subtle.importKey("raw", enc.encode(getToken()), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const port = location.port || (location.protocol === "https:" ? "443" : "80");
  const expected = hex(await subtle.sign("HMAC", key, enc.encode(`dim-desktop ${port} ${nonce}`)));
  return expected === proof;
}

/** Resolves when the server proved itself; rejects with a BridgeError (NETWORK, NOT_DIM_DESKTOP). */
async function ensureVerified(command = "") {
  if (!verified) verified = proveServer();
  let ok;
  try {
    ok = await verified;
  } catch (err) {
    verified = null;
    throw new BridgeError("NETWORK", `dim-desktop is not reachable (${err && err.message ? err.message : err})`, { command });
  }
  if (!ok) {
    verified = null;
    throw new BridgeError("NOT_DIM_DESKTOP", "Something other than dim-desktop answers at this address; the page sends it nothing", { command });
  }
}

export async function invoke(command, args = {}) {
  await ensureVerified(command);
  let response;
  try {
    response = await fetch(`/invoke/${encodeURIComponent(command)}`, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        Authorization: `Bearer ${getToken()}`,
      },
      body: JSON.stringify(args ?? {}),
      cache: "no-store",
    });
  } catch (err) {
    verified = null; // gone: prove itself again when it is back
    throw new BridgeError("NETWORK", `dim-desktop is not reachable (${err && err.message ? err.message : err})`, {
      command,
    });
  }
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (response.ok && body && body.ok === true) return body.result;
  const error = (body && body.error) || {};
  throw new BridgeError(
    error.code || (response.ok ? "BAD_RESPONSE" : `HTTP_${response.status}`),
    error.message || response.statusText || "invoke failed",
    { gatewayCode: error.gatewayCode ?? null, status: response.status, command, details: error },
  );
}

// ---------------------------------------------------------------------------------------------
// Event socket

const handlers = new Map(); // event name -> Set(handler)
const stateHandlers = new Set();
let socket = null;
let socketState = "closed";
let attempt = 0;
let reconnectTimer = null;
let started = false;

const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 5000;

let closedSince = null; // Date.now() when the socket was last lost, null while open

function setSocketState(state) {
  if (state === socketState) return;
  if (state === "open") closedSince = null;
  else if (closedSince === null && state === "closed") closedSince = Date.now();
  socketState = state;
  for (const fn of stateHandlers) {
    try {
      fn(state);
    } catch (err) {
      console.error("bridge state handler failed", err);
    }
  }
}

function dispatch(name, payload) {
  const set = handlers.get(name);
  if (!set) return;
  for (const fn of set) {
    try {
      fn(payload, name);
    } catch (err) {
      console.error(`handler for ${name} failed`, err);
    }
  }
  const any = handlers.get("*");
  if (any) for (const fn of any) fn(payload, name);
}

function eventsUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  // batch=1: the bridge may pack several frames into one message ({"batch": [...]}).
  return `${scheme}//${location.host}/events?token=${encodeURIComponent(getToken())}&batch=1`;
}

function scheduleReconnect() {
  if (reconnectTimer) return;
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(attempt, 8));
  const delay = Math.round(base * (0.75 + Math.random() * 0.5));
  attempt += 1;
  reconnectTimer = setTimeout(() => {
    reconnectTimer = null;
    openSocket();
  }, delay);
}

async function openSocket() {
  setSocketState("connecting");
  try {
    await ensureVerified();
  } catch (_) {
    setSocketState("closed");
    scheduleReconnect();
    return;
  }
  let ws;
  try {
    ws = new WebSocket(eventsUrl());
  } catch (err) {
    console.warn("event socket could not be created", err);
    setSocketState("closed");
    scheduleReconnect();
    return;
  }
  socket = ws;
  ws.onopen = () => {
    if (socket !== ws) return;
    attempt = 0;
    setSocketState("open");
  };
  ws.onmessage = (msg) => {
    if (socket !== ws) return;
    let frame;
    try {
      frame = JSON.parse(msg.data);
    } catch (err) {
      console.warn("ignoring a non-JSON frame from the bridge", err);
      return;
    }
    if (frame && Array.isArray(frame.batch)) {
      // Optional: several frames in one WebSocket message (cheaper for the browser at high rates).
      for (const f of frame.batch) if (f && typeof f.event === "string") dispatch(f.event, f.payload);
      return;
    }
    if (!frame || typeof frame.event !== "string") return;
    dispatch(frame.event, frame.payload);
  };
  ws.onclose = () => {
    if (socket !== ws) return;
    socket = null;
    verified = null;
    setSocketState("closed");
    scheduleReconnect();
  };
  ws.onerror = () => {
    /* onclose follows and schedules the reconnect */
  };
}

function ensureSocket() {
  if (started) return;
  started = true;
  openSocket();
}

/** Subscribe to a bridge event ("gateway-event", "connection-state", "actor-status", or "*"). */
export function listen(eventName, handler) {
  if (!handlers.has(eventName)) handlers.set(eventName, new Set());
  handlers.get(eventName).add(handler);
  ensureSocket();
  return Promise.resolve(() => handlers.get(eventName)?.delete(handler));
}

/** Observe the event socket itself: "connecting" | "open" | "closed". */
export function onBridgeState(handler) {
  stateHandlers.add(handler);
  ensureSocket();
  return () => stateHandlers.delete(handler);
}

export function bridgeState() {
  return socketState;
}

/** When the event socket was lost (Date.now()), or null while it is open (or never opened). */
export function bridgeClosedSince() {
  return closedSince;
}

/** Force the event socket to reconnect now (used by the UI after a long sleep). */
export function reconnectNow() {
  if (reconnectTimer) {
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
  }
  if (socket && socketState !== "closed") return;
  attempt = 0;
  openSocket();
}
