// The signaling protocol, version 1 (docs/protocol.md): one WebSocket to /ws, the join
// handshake, resume after a drop, and typed events. No DOM. What travels inside envelopes is
// another module's business (e2e.js); this one moves opaque boxes.

export const PROTOCOL_VERSION = 1;

// Close codes (docs/protocol.md §8). Those in RESUMABLE are worth reconnecting after.
export const Close = Object.freeze({
  NORMAL: 1000, GOING_AWAY: 1001, ABNORMAL: 1006, INTERNAL: 1011,
  PROTOCOL: 4000, VERSION: 4001, ORIGIN: 4002, UNKNOWN_ROOM: 4003, NOT_AUTHORISED: 4004,
  DECLINED: 4005, REMOVED: 4006, ENDED: 4007, REPLACED: 4008, RATE_LIMITED: 4009,
  TOO_MANY: 4010, TOO_BIG: 4011, TOO_SLOW: 4012, WAITING_FULL: 4013, JOIN_TIMEOUT: 4014,
});
const RESUMABLE = new Set([
  Close.GOING_AWAY, Close.ABNORMAL, Close.INTERNAL, Close.PROTOCOL, Close.RATE_LIMITED,
  Close.TOO_MANY, Close.TOO_BIG, Close.TOO_SLOW, Close.JOIN_TIMEOUT, 1005, 1012, 1013, 1014,
]);

export class ProtocolError extends Error {
  constructor(message) {
    super(message);
    this.name = "ProtocolError";
  }
}

export function isResumable(code) {
  return RESUMABLE.has(code);
}

// Reconnect delays: quick first, then backing off with jitter, like LiveKit's default policy.
export function reconnectDelay(attempt) {
  const base = [0, 300, 1200, 2700, 4800, 7000][Math.min(attempt, 5)];
  return base + Math.floor(Math.random() * 250);
}

export function wsUrl(location) {
  const scheme = location.protocol === "http:" ? "ws:" : "wss:";
  return `${scheme}//${location.host}/ws`;
}

// A signaling connection that survives drops. Events (CustomEvent.detail):
//   joined {id, role, state, resumed, peers, resumeError}   admitted {peers}
//   peer {id, role, state, connected, reason}               relay {from, epoch, box}
//   error {code, message, ref}   status {state: "connecting"|"open"|"reconnecting"|"closed"}
//   closed {code, reason, final}
export class Signaling extends EventTarget {
  constructor({ url, room, role, tokenStore = null, maxAttempts = 40, pingMs = 15000 }) {
    super();
    this.url = url;
    this.room = room;
    this.role = role;
    this.tokenStore = tokenStore; // {get(): string|null, set(token), clear()}
    this.maxAttempts = maxAttempts;
    this.pingMs = pingMs;
    this.ws = null;
    this.id = null;
    this.attempt = 0;
    this.stopped = false;
    this.joined = false;
    this.timer = null;
    this.pingTimer = null;
    this.lastPong = 0;
    this.outbox = []; // relays written while the socket is down, sent after the next joined
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  start() {
    this.stopped = false;
    this.open();
  }

  open() {
    clearTimeout(this.timer);
    this.joined = false;
    this.emit("status", { state: this.attempt === 0 ? "connecting" : "reconnecting" });
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (error) {
      this.scheduleReconnect(Close.ABNORMAL);
      return;
    }
    this.ws = ws;
    ws.addEventListener("open", () => {
      const join = { type: "join", v: PROTOCOL_VERSION, room: this.room, role: this.role };
      const token = this.tokenStore && this.tokenStore.get();
      if (token) join.resume = token;
      ws.send(JSON.stringify(join));
    });
    ws.addEventListener("message", (event) => this.onMessage(ws, event));
    ws.addEventListener("close", (event) => this.onClose(ws, event));
  }

  onMessage(ws, event) {
    if (ws !== this.ws || typeof event.data !== "string") return;
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch {
      return;
    }
    if (!msg || typeof msg.type !== "string") return;
    switch (msg.type) {
      case "joined":
        this.id = msg.id;
        this.joined = true;
        this.attempt = 0;
        if (this.tokenStore && msg.resume) this.tokenStore.set(msg.resume);
        this.startPings();
        this.emit("status", { state: "open" });
        this.emit("joined", {
          id: msg.id, role: msg.role, state: msg.state, resumed: Boolean(msg.resumed),
          peers: msg.peers || [], resumeError: msg.resume_error || null,
          maxFrame: msg.max_frame,
        });
        this.flushOutbox();
        break;
      case "token":
        if (this.tokenStore && msg.resume) this.tokenStore.set(msg.resume);
        break;
      case "admitted":
        this.emit("admitted", { peers: msg.peers || [] });
        break;
      case "call_servers": // credentials for the next peer connections (docs/protocol.md 13)
        this.emit("call_servers", { iceServers: msg.iceServers, ttl: msg.ttl, expires: msg.expires });
        break;
      case "peer":
        this.emit("peer", {
          id: msg.id, role: msg.role, state: msg.state, connected: msg.connected,
          reason: msg.reason || null,
        });
        break;
      case "relay":
        this.emit("relay", { from: msg.from, epoch: msg.epoch, box: msg.box });
        break;
      case "error":
        this.emit("error", { code: msg.code, message: msg.message, ref: msg.ref || null });
        break;
      case "pong":
        this.lastPong = Date.now();
        break;
      default:
        break; // newer servers may add messages: ignore what we do not know
    }
  }

  onClose(ws, event) {
    if (ws !== this.ws) return;
    this.stopPings();
    this.ws = null;
    this.joined = false;
    const code = event.code;
    if (this.stopped) {
      this.emit("closed", { code, reason: event.reason, final: true });
      return;
    }
    if (!isResumable(code)) {
      if (this.tokenStore && code !== Close.REPLACED) this.tokenStore.clear();
      this.stopped = true;
      this.emit("status", { state: "closed" });
      this.emit("closed", { code, reason: event.reason, final: true });
      return;
    }
    this.emit("closed", { code, reason: event.reason, final: false });
    this.scheduleReconnect(code);
  }

  scheduleReconnect() {
    if (this.attempt >= this.maxAttempts) {
      this.stopped = true;
      this.emit("status", { state: "closed" });
      this.emit("closed", { code: Close.ABNORMAL, reason: "gave up", final: true });
      return;
    }
    const delay = reconnectDelay(this.attempt);
    this.attempt += 1;
    this.emit("status", { state: "reconnecting" });
    this.timer = setTimeout(() => this.open(), delay);
  }

  startPings() {
    this.stopPings();
    this.lastPong = Date.now();
    this.pingTimer = setInterval(() => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
      if (Date.now() - this.lastPong > this.pingMs * 2 + 5000) {
        // A half-dead link: drop it and resume on a fresh socket.
        const dead = this.ws;
        this.onClose(dead, { code: Close.ABNORMAL, reason: "no pong" });
        try { dead.close(); } catch { /* already closing */ }
        return;
      }
      this.sendRaw({ type: "ping" });
    }, this.pingMs);
  }

  stopPings() {
    clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  sendRaw(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(msg));
      return true;
    }
    return false;
  }

  // An envelope for participant `to`. Queued (bounded) while the socket is down.
  relay(to, epoch, box) {
    const msg = { type: "relay", to, epoch, box };
    if (this.joined && this.sendRaw(msg)) return true;
    if (this.outbox.length < 64) this.outbox.push(msg);
    return false;
  }

  flushOutbox() {
    const pending = this.outbox;
    this.outbox = [];
    for (const msg of pending) this.sendRaw(msg);
  }

  admit(id) { return this.sendRaw({ type: "admit", id }); }
  decline(id) { return this.sendRaw({ type: "decline", id }); }
  remove(id) { return this.sendRaw({ type: "remove", id }); }
  end() { return this.sendRaw({ type: "end" }); }

  // Leave for good: no resume.
  leave() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.stopPings();
    if (this.tokenStore) this.tokenStore.clear();
    if (!this.sendRaw({ type: "leave" }) && this.ws) {
      try { this.ws.close(1000); } catch { /* closing */ }
    }
  }

  // Test hook and "network changed" handler: drop the socket as if the network had, and resume.
  drop() {
    if (this.ws) {
      const ws = this.ws;
      this.onClose(ws, { code: Close.ABNORMAL, reason: "dropped" });
      try { ws.close(); } catch { /* closing */ }
    }
  }
}

export function sessionTokenStore(key) {
  return {
    get() { try { return sessionStorage.getItem(key); } catch { return null; } },
    set(token) { try { sessionStorage.setItem(key, token); } catch { /* no storage */ } },
    clear() { try { sessionStorage.removeItem(key); } catch { /* no storage */ } },
  };
}
