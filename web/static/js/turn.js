// TURN credentials for calls (docs/protocol.md section 13): pushed by the server over /ws when a
// call may begin (`call_servers`: at joining for the counselor, at admission for both), else
// fetched from POST /api/turn; cached, refreshed when less than a quarter of their lifetime is
// left, and handed to each new RTCPeerConnection as a partial RTCConfiguration ({iceServers,
// iceTransportPolicy}). No DOM.
//
// The counselor's page authenticates with its cookie and the page's CSRF token; the client's
// page with the newest resume token the server sent over /ws, and only once it says "admitted"
// (the `token` message after admission; the one from `joined` while waiting gets 403).
//
// Diagnostics option: `?relay=1` in the page's address forces `iceTransportPolicy: "relay"`
// (every call path goes through TURN; the "Connection path" indicator then reads "Relayed").
// Operators use it to check their coturn; the tests use it to prove the relay carries a call.

import { sessionTokenStore } from "./protocol.js";

const TOKEN_WAIT_MS = 8000; // how long a new round waits for the admitted token / credential
const FETCH_TIMEOUT_MS = 6000;

/** Whether the page's address asks for relay-only ICE (`?relay=1`). */
export function relayOnly(location = globalThis.location) {
  try {
    return new URLSearchParams(location.search).get("relay") === "1";
  } catch {
    return false;
  }
}

/** Whether a resume token's readable payload says "admitted" (only the server checks its MAC):
 * base64url([1, room, participant, role, admitted, generation, expires]) "." mac */
export function tokenAdmitted(token) {
  if (typeof token !== "string" || token.split(".").length !== 2) return false;
  try {
    const body = token.split(".")[0].replace(/-/g, "+").replace(/_/g, "/");
    const payload = JSON.parse(atob(body + "=".repeat((4 - (body.length % 4)) % 4)));
    return Array.isArray(payload) && payload.length >= 5 && payload[4] === 1;
  } catch {
    return false;
  }
}

/** A tokenStore (protocol.js) that also tells listeners about every new token. */
export function watchedTokenStore(key) {
  const inner = sessionTokenStore(key);
  const listeners = new Set();
  return {
    get: () => inner.get(),
    set(token) {
      inner.set(token);
      for (const listener of [...listeners]) listener(token);
    },
    clear: () => inner.clear(),
    onSet(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

async function postJson(path, headers) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
  try {
    const response = await fetch(path, {
      method: "POST",
      headers: { Accept: "application/json", ...headers },
      credentials: "same-origin",
      cache: "no-store",
      signal: controller.signal,
    });
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    return { status: response.status, data };
  } finally {
    clearTimeout(timer);
  }
}

function validServers(data) {
  return data && Array.isArray(data.iceServers) ? data.iceServers : null;
}

/**
 * Call credentials with a cache. `authorize()` resolves to the request headers, or null when
 * not (yet) allowed (a client before admission).
 */
export class TurnCredentials {
  constructor({ authorize, relay = relayOnly(), path = "/api/turn", now = () => Date.now() }) {
    this.authorize = authorize;
    this.relay = relay;
    this.path = path;
    this.now = now;
    this.servers = null;
    this.expiresMs = 0;
    this.ttlMs = 0;
    this.pending = null;
  }

  fresh() {
    if (this.servers === null) return false;
    if (!this.expiresMs) return true; // no TURN configured: nothing expires
    return this.expiresMs - this.now() > this.ttlMs / 4;
  }

  /** Fetch now (or share the fetch under way); resolves to the iceServers list or null. */
  refresh() {
    if (!this.pending) {
      this.pending = (async () => {
        try {
          const headers = await this.authorize();
          if (!headers) return null;
          const { status, data } = await postJson(this.path, headers);
          return status === 200 ? this.offer(data) : null;
        } catch {
          return null;
        } finally {
          this.pending = null;
        }
      })();
    }
    return this.pending;
  }

  /** Keep credentials the server gave (pushed over /ws, or fetched); the iceServers list, or
   * null if `data` holds none. */
  offer(data) {
    const servers = validServers(data);
    if (servers) {
      this.servers = servers;
      this.ttlMs = Number(data.ttl) > 0 ? Number(data.ttl) * 1000 : 0;
      this.expiresMs = Number(data.expires) > 0 ? Number(data.expires) * 1000 : 0;
    }
    return servers;
  }

  /** The partial RTCConfiguration for a new peer connection: fresh credentials if possible. */
  async config() {
    if (!this.fresh()) await this.refresh();
    const config = { iceServers: this.servers || [] };
    if (this.relay) config.iceTransportPolicy = "relay";
    return config;
  }
}

/** The counselor's page: cookie and CSRF token. */
export function counselorCredentials() {
  const csrf = (document.body && document.body.dataset.csrf) || "";
  return new TurnCredentials({ authorize: async () => ({ "X-CSRF-Token": csrf }) });
}

/**
 * The client's page: the newest token from `store` (a watchedTokenStore) once it says
 * admitted; waits for it (bounded) when asked before it came.
 */
export function clientCredentials(store, waitMs = TOKEN_WAIT_MS) {
  const admittedToken = () => {
    const token = store.get();
    return tokenAdmitted(token) ? token : null;
  };
  const creds = new TurnCredentials({
    authorize: () =>
      new Promise((resolve) => {
        const ready = admittedToken();
        if (ready) {
          resolve({ Authorization: `Bearer ${ready}` });
          return;
        }
        let stop = () => undefined;
        const timer = setTimeout(() => {
          stop();
          resolve(null);
        }, waitMs);
        stop = store.onSet(() => {
          const token = admittedToken();
          if (!token) return;
          clearTimeout(timer);
          stop();
          resolve({ Authorization: `Bearer ${token}` });
        });
      }),
  });
  // Fetch as soon as the admitted token arrives, so the first round need not wait (unless
  // the server pushed credentials with the admission, just before that token: then none).
  store.onSet((token) => {
    if (tokenAdmitted(token) && !creds.fresh()) creds.refresh();
  });
  return creds;
}
