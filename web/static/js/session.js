// One participant's session in a room: the signaling connection (protocol.js), the secure
// channels (e2e.js), the hello exchange, the messages inside the envelopes and reliable chat.
// No DOM. Never logs names, chat, SDP or keys. The call itself (commit rounds, the peer
// connection) is call.js; this module hands it what belongs to it, in order.
//
// The messages inside the envelopes after hello are exactly those of signaling/peer/inner.py
// (docs/protocol.md section 12):
//
//   hello      epoch, nonce, caps: [str], name?: str (client, <= 64)
//   commit     role, commit, round            reveal     fingerprint, nonce, round
//   offer      round, sdp                     answer     round, sdp
//   candidate  round, candidate: str ("" = end), sdpMid: str|null, sdpMLineIndex: int|null
//   rebuild    round                          chat       id, text (<= 4000)
//   ack        id                             mode       level: video|low-video|audio|text,
//                                                       reason?: network|manual
//   bye        reason?: left|ended|security
//
// round and chat ids are 1 to 64 base64url characters chosen by their sender. chat and ack also
// travel on the data channel (JSON text, no seq or bind: DTLS protects them).
//
// Hellos (ARCHITECTURE.md "Safety code", step 0), as the Python peer does them: a fresh hello
// (new nonce) when the other side becomes present or the call begins (an admitted client keeps
// the hello it knocked with; several triggers within HELLO_DEBOUNCE_MS make one hello); each hello nonce received for the first time is answered
// once with the current hello (same nonce). The pair (my nonce, their nonce) is settled once I
// accept a hello from them after making my current one; a newly settled pair during the call
// is when the call (re)starts.
//
// The counselor talks to several clients at once (waiting ones send their names and texts), so it
// keeps one SecureChannel per client, all with the page's one epoch: each channel's hello nonce
// then binds only that client's envelopes, and a knock never disturbs a call in progress.

import { Close, Signaling, sessionTokenStore, wsUrl } from "./protocol.js";
import { CryptoError, SecureChannel } from "./e2e.js";
import { b64uEncode, parseRoomKey, randomBytes } from "./crypto.js";

export const COUNSELOR_ID = "counselor";
export const CAP_ICE_RESTART = "ice-restart";
export const CAP_ROLLBACK = "rollback";
export const CAP_TEXT_ONLY = "text-only";
export const BROWSER_CAPS = Object.freeze([CAP_ICE_RESTART, CAP_ROLLBACK]);
export const MAX_SDP = 40000;
export const MAX_CHAT = 4000;
export const MAX_NAME = 64;
export const MAX_CANDIDATE = 1000;
export const LEVELS = Object.freeze(["text", "audio", "low-video", "video"]); // lowest first
export const BYE_REASONS = Object.freeze(["left", "ended", "security"]);
export const MODE_REASONS = Object.freeze(["network", "manual"]);
export const CHAT_RESEND_MS = 2000;
const HELLO_DEBOUNCE_MS = 40;
const TICK_MS = 1000;
const MAX_SEEN = 2000;
const MAX_OUTBOX = 200;
const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const EPOCH_BYTES = 16;

// --- errors ------------------------------------------------------------------------------------

export class SessionError extends Error {
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}

/** A message inside an envelope that is malformed: dropped, the call goes on. */
export class InnerMessageError extends SessionError {}

/** Too many chat messages are waiting for an acknowledgement. */
export class ChatFullError extends SessionError {}

/** The link or the stored key cannot be used. */
export class KeyError extends SessionError {}

// --- inner messages (signaling/peer/inner.py) ---------------------------------------------------

/** A fresh round or chat id: 12 random bytes, base64url (16 characters). */
export function newId() {
  return b64uEncode(randomBytes(12));
}

export function isId(value) {
  return typeof value === "string" && ID_RE.test(value);
}

function codePoints(text) {
  return Array.from(text).length;
}

function str(msg, key, max) {
  const value = msg[key];
  if (typeof value !== "string" || codePoints(value) > max) {
    throw new InnerMessageError(`${msg.type}.${key} is not a string of <= ${max}`);
  }
  return value;
}

function ident(msg, key) {
  if (!isId(msg[key])) throw new InnerMessageError(`${msg.type}.${key} is not an id`);
  return msg[key];
}

/**
 * The typed body of an opened envelope that is not hello, commit or reveal (inner.py's
 * parse_inner): a fresh plain object with only the known fields. Throws InnerMessageError.
 */
export function parseInner(msg) {
  const kind = msg && msg.type;
  switch (kind) {
    case "offer":
    case "answer":
      return { type: kind, round: ident(msg, "round"), sdp: str(msg, "sdp", MAX_SDP) };
    case "candidate": {
      const mid = msg.sdpMid ?? null;
      const index = msg.sdpMLineIndex ?? null;
      if (mid !== null && (typeof mid !== "string" || mid.length > 64)) {
        throw new InnerMessageError("candidate.sdpMid is malformed");
      }
      if (index !== null && !(Number.isInteger(index) && index >= 0 && index < 64)) {
        throw new InnerMessageError("candidate.sdpMLineIndex is malformed");
      }
      return {
        type: kind, round: ident(msg, "round"), candidate: str(msg, "candidate", MAX_CANDIDATE),
        sdpMid: mid, sdpMLineIndex: index,
      };
    }
    case "rebuild":
      return { type: kind, round: ident(msg, "round") };
    case "chat":
      return { type: kind, id: ident(msg, "id"), text: str(msg, "text", MAX_CHAT) };
    case "ack":
      return { type: kind, id: ident(msg, "id") };
    case "mode":
      if (!LEVELS.includes(msg.level)) throw new InnerMessageError("mode.level is not a level");
      if (msg.reason !== undefined && !MODE_REASONS.includes(msg.reason)) {
        throw new InnerMessageError("mode.reason is not a reason");
      }
      return { type: kind, level: msg.level, reason: msg.reason === undefined ? null : msg.reason };
    case "bye": {
      const reason = msg.reason === undefined ? "left" : msg.reason;
      if (!BYE_REASONS.includes(reason)) throw new InnerMessageError("bye.reason is not a reason");
      return { type: kind, reason };
    }
    default:
      throw new InnerMessageError("unknown message type");
  }
}

/** The display name in a client's hello, if well-formed (1 to 64 code points). */
export function peerName(hello) {
  const name = hello && hello.name;
  if (typeof name === "string" && name.length > 0 && codePoints(name) <= MAX_NAME) return name;
  return null;
}

/** A name cut to MAX_NAME code points, trimmed. */
export function cleanName(text) {
  return Array.from(String(text || "").trim()).slice(0, MAX_NAME).join("");
}

/** text split into pieces of at most MAX_CHAT code points (long texts become several messages). */
export function splitChat(text) {
  const points = Array.from(text);
  const pieces = [];
  for (let i = 0; i < points.length; i += MAX_CHAT) pieces.push(points.slice(i, i + MAX_CHAT).join(""));
  return pieces;
}

/** A chat or ack received on the data channel; throws InnerMessageError. */
export function fromDataChannel(text) {
  let obj;
  try {
    obj = JSON.parse(text);
  } catch {
    throw new InnerMessageError("data channel message is not JSON");
  }
  if (!obj || typeof obj !== "object" || (obj.type !== "chat" && obj.type !== "ack")) {
    throw new InnerMessageError("data channel message is not chat or ack");
  }
  return parseInner(obj);
}

/** The lower of two levels. */
export function lowerLevel(a, b) {
  return LEVELS.indexOf(a) <= LEVELS.indexOf(b) ? a : b;
}

// --- reliable chat -------------------------------------------------------------------------------

/** Outgoing messages awaiting their ack, and the ids already seen (signaling/peer/chat.py). */
export class ChatBook {
  #outbox = new Map(); // id -> {text, lastSent, sent}
  #seen = new Map(); // id -> true, oldest first

  get pending() {
    return this.#outbox.size;
  }

  /** A new outgoing message {id, text}. */
  add(text) {
    if (this.#outbox.size >= MAX_OUTBOX) throw new ChatFullError("too many unacknowledged messages");
    const id = newId();
    this.#outbox.set(id, { text, lastSent: null, sent: 0 });
    return { id, text };
  }

  /** Messages never sent, or last sent at least intervalMs ago. */
  due(now, intervalMs) {
    const out = [];
    for (const [id, p] of this.#outbox) {
      if (p.lastSent === null || now - p.lastSent >= intervalMs) out.push({ id, text: p.text });
    }
    return out;
  }

  /** How many times this message went out (0: never; re-sends go through the relay). */
  attempts(id) {
    const p = this.#outbox.get(id);
    return p ? p.sent : 0;
  }

  markSent(id, now) {
    const p = this.#outbox.get(id);
    if (p) {
      p.lastSent = now;
      p.sent += 1;
    }
  }

  /** True if this ack settled a pending message. */
  onAck(id) {
    return this.#outbox.delete(id);
  }

  /** True the first time this id is seen (show it); the caller acks every copy. */
  onChat(id) {
    if (this.#seen.has(id)) {
      this.#seen.delete(id);
      this.#seen.set(id, true);
      return false;
    }
    this.#seen.set(id, true);
    while (this.#seen.size > MAX_SEEN) this.#seen.delete(this.#seen.keys().next().value);
    return true;
  }
}

// --- one other participant -----------------------------------------------------------------------

class PeerLink {
  constructor(peerId, channel) {
    this.peerId = peerId;
    this.channel = channel; // SecureChannel
    this.hello = null; // my current hello body
    this.helloDue = false;
    this.settled = false;
    this.answered = new Set();
    this.pair = null;
    this.name = null;
    this.state = "waiting"; // the server's view: waiting / admitted
    this.connected = true;
    this.chat = new ChatBook();
    this.knockedAt = Date.now();
  }
}

// --- the session ---------------------------------------------------------------------------------

/**
 * Events (CustomEvent.detail):
 *   status   {state: "connecting"|"open"|"reconnecting"|"closed"}
 *   joined   {id, state, resumed}
 *   waiting  {reason: "knocked"|"counselor-away"}            (client)
 *   admitted {}                                               (client)
 *   roster   {peers: [{id, state, connected, name, knockedAt}]} (counselor: every client)
 *   call     {active, peerId}          the call with peerId began (active) or stopped
 *   counselor {present, reason}        (client) the counselor came, dropped or left
 *   chat     {peer, id, text}          a message from peer, shown once
 *   chat-state {peer, id, state: "delivered"}
 *   peer-gone {id, reason}
 *   refused  {code, ref}               the server refused something (e.g. room_full)
 *   ended    {reason: left|declined|removed|ended|unavailable|unauthorised|replaced|full|lost|error}
 *   rejected {count}                   envelopes that failed to open (no content)
 */
export class Session extends EventTarget {
  #key;

  /**
   * options: roomId, roomKey (the 43-character fragment), role ("client"|"counselor"), name
   * (client), tokenStore, url, signaling (tests: an object like protocol.js's Signaling).
   */
  constructor({ roomId, roomKey, role, name = "", tokenStore = null, url = null, signaling = null }) {
    super();
    if (role !== "client" && role !== "counselor") throw new SessionError("unknown role");
    try {
      this.#key = parseRoomKey(roomKey);
    } catch {
      throw new KeyError("the room key is not usable");
    }
    this.roomId = roomId;
    this.role = role;
    this.name = cleanName(name);
    this.signaling = signaling || new Signaling({
      url: url || wsUrl(globalThis.location),
      room: roomId,
      role,
      tokenStore: tokenStore || sessionTokenStore(`ruang.token.${role}.${roomId}`),
    });
    this.id = null;
    this.epoch = null;
    this.links = new Map(); // peer id -> PeerLink
    this.callPeer = null; // the peer id of the call (client: "counselor")
    this.inCall = false;
    this.admitted = false; // client
    this.counselorPresent = false; // client
    this.waitingReason = null;
    this.call = null; // the call.js Call attached for callPeer
    this.ended = null;
    this.rejected = 0;
    this.gaps = 0;
    this.resumedCall = false; // this page resumed a call that had begun before it loaded
    this.queue = Promise.resolve();
    this.sendChain = Promise.resolve();
    this.helloTimer = null;
    this.tickTimer = null;
    this.wire();
  }

  emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // Everything that changes state runs here, one task after another.
  enqueue(fn) {
    const run = this.queue.then(fn);
    this.queue = run.catch((error) => this.fault(error));
    return run;
  }

  fault(error) {
    // Programming or platform errors: reported without content.
    this.emit("fault", { name: (error && error.name) || "Error" });
  }

  wire() {
    const s = this.signaling;
    s.addEventListener("status", (e) => this.emit("status", e.detail));
    s.addEventListener("joined", (e) => this.enqueue(() => this.onJoined(e.detail)));
    s.addEventListener("admitted", () => this.enqueue(() => this.onAdmitted()));
    // At once, not queued: the round that follows must find them (turn.js offer()).
    s.addEventListener("call_servers", (e) => this.emit("call_servers", e.detail));
    s.addEventListener("peer", (e) => this.enqueue(() => this.onPeer(e.detail)));
    s.addEventListener("relay", (e) => this.enqueue(() => this.onRelay(e.detail)));
    s.addEventListener("error", (e) => this.emit("refused", { code: e.detail.code, ref: e.detail.ref }));
    s.addEventListener("closed", (e) => this.enqueue(() => this.onClosed(e.detail)));
  }

  start() {
    this.signaling.start();
    this.tickTimer = setInterval(() => this.enqueue(() => this.tick()), TICK_MS);
  }

  /** The call (call.js) that handles rounds, SDP and media with callPeer. */
  attachCall(call) {
    this.call = call;
  }

  detachCall(call) {
    if (this.call === call) this.call = null;
  }

  // --- the server's side --------------------------------------------------------------------------

  async onJoined(j) {
    if (j.resumed && j.id === this.id && this.epoch !== null) {
      this.emit("joined", { id: j.id, state: j.state, resumed: true });
      // Admitted while our socket was down: the admitted message was lost with it.
      if (this.role === "client" && j.state === "admitted" && !this.admitted) await this.onAdmitted();
      return; // the others see us come back and say hello
    }
    const previousId = this.id;
    const oldChat = this.links.get(COUNSELOR_ID)?.chat;
    this.id = j.id;
    this.epoch = b64uEncode(randomBytes(EPOCH_BYTES));
    this.links.clear();
    if (this.role === "client") {
      if (previousId !== null && this.admitted) {
        // The resume token was refused: the earlier call is over; this is a new knock.
        this.setInCall(false);
        this.admitted = false;
      }
      const counselor = j.peers.find((p) => p.id === COUNSELOR_ID);
      this.counselorPresent = Boolean(counselor && counselor.connected);
      const link = await this.link(COUNSELOR_ID);
      if (oldChat) link.chat = oldChat; // unacknowledged messages survive a new identity
      this.emit("joined", { id: j.id, state: j.state, resumed: j.resumed });
      if (j.state === "admitted") {
        this.resumedCall = true;
        await this.onAdmitted();
        return;
      }
      this.emitWaiting();
      this.markPresent(link); // our hello, with the name, waits for the counselor
      return;
    }
    // Counselor: every client the server lists; an admitted one means a call goes on.
    this.emit("joined", { id: j.id, state: j.state, resumed: j.resumed });
    const admitted = j.peers.find((p) => p.role === "client" && p.state === "admitted");
    if (this.callPeer !== null && (!admitted || admitted.id !== this.callPeer)) {
      this.setInCall(false); // that client is gone
      this.callPeer = null;
    }
    for (const p of j.peers) {
      if (p.role !== "client") continue;
      const link = await this.link(p.id);
      link.state = p.state;
      link.connected = p.connected;
      if (p.connected) this.markPresent(link);
    }
    if (admitted && this.callPeer === null) {
      this.callPeer = admitted.id;
      this.resumedCall = previousId === null; // this page joins a call that began before it
      this.setInCall(true);
    }
    this.emitRoster();
  }

  async onAdmitted() {
    if (this.role !== "client") return;
    if (!this.admitted) {
      this.admitted = true;
      this.emit("admitted", {});
    }
    this.callPeer = COUNSELOR_ID;
    this.setInCall(true);
    // The hello we knocked with stays (a fresh one only if we have none): the counselor's
    // fresh hello is the pair's new half, so the round it starts at once is never stale.
    const link = await this.link(COUNSELOR_ID);
    if (link.hello === null) this.markPresent(link);
  }

  async onPeer(p) {
    if (this.role === "client") {
      if (p.id === COUNSELOR_ID) await this.counselorChanged(p);
      return;
    }
    if (p.role !== "client") return;
    if (p.state === "gone") {
      this.links.delete(p.id);
      if (this.callPeer === p.id) {
        this.callPeer = null;
        this.setInCall(false);
      }
      this.emit("peer-gone", { id: p.id, reason: p.reason });
      this.emitRoster();
      return;
    }
    const link = await this.link(p.id);
    link.state = p.state;
    link.connected = p.connected;
    if (p.state === "admitted" && !this.inCall && this.callPeer === null) {
      this.callPeer = p.id;
      this.setInCall(true);
      this.markPresent(link); // the call begins: a fresh hello
    } else if (p.connected) {
      // A knock, or someone seen before coming back on a new socket: a fresh hello.
      this.markPresent(link);
    }
    this.emitRoster();
  }

  async counselorChanged(p) {
    this.counselorPresent = p.connected && p.state !== "gone";
    if (this.admitted) {
      if (p.state === "gone") {
        this.emit("counselor", { present: false, reason: p.reason || "left" });
        if (this.call) await this.call.pause();
      } else if (p.connected) {
        this.emit("counselor", { present: true, reason: null });
        this.markPresent(await this.link(COUNSELOR_ID));
      } else {
        this.emit("counselor", { present: false, reason: "away" });
      }
      return;
    }
    this.emitWaiting();
    // The counselor arrived, or a new counselor page took over: a fresh hello.
    if (this.counselorPresent) this.markPresent(await this.link(COUNSELOR_ID));
  }

  emitWaiting() {
    const reason = this.counselorPresent ? "knocked" : "counselor-away";
    if (reason !== this.waitingReason) {
      this.waitingReason = reason;
      this.emit("waiting", { reason });
    }
  }

  emitRoster() {
    if (this.role !== "counselor") return;
    const peers = [...this.links.values()].map((l) => ({
      id: l.peerId, state: l.state, connected: l.connected, name: l.name, knockedAt: l.knockedAt,
    }));
    this.emit("roster", { peers });
  }

  setInCall(active) {
    if (this.inCall === active) return;
    this.inCall = active;
    this.emit("call", { active, peerId: this.callPeer });
  }

  async onClosed({ code, final }) {
    if (!final) return;
    const reasons = {
      [Close.NORMAL]: "left", [Close.DECLINED]: "declined", [Close.REMOVED]: "removed",
      [Close.ENDED]: "ended", [Close.UNKNOWN_ROOM]: "unavailable",
      [Close.NOT_AUTHORISED]: "unauthorised", [Close.REPLACED]: "replaced",
      [Close.WAITING_FULL]: "full", [Close.ABNORMAL]: "lost",
    };
    this.finish(reasons[code] || "error");
  }

  finish(reason) {
    if (this.ended !== null) return;
    this.ended = reason;
    clearInterval(this.tickTimer);
    clearTimeout(this.helloTimer);
    this.setInCall(false);
    this.emit("ended", { reason });
  }

  // --- links and hellos ---------------------------------------------------------------------------

  async link(peerId) {
    let link = this.links.get(peerId);
    if (!link) {
      const channel = await SecureChannel.create(this.roomId, this.#key, this.id, this.epoch);
      link = this.links.get(peerId); // created meanwhile?
      if (!link) {
        link = new PeerLink(peerId, channel);
        this.links.set(peerId, link);
      }
    }
    return link;
  }

  /** The other side (re)appeared: a fresh hello is due (several triggers make one hello). */
  markPresent(link) {
    link.helloDue = true;
    clearTimeout(this.helloTimer);
    this.helloTimer = setTimeout(() => this.enqueue(() => this.flushHellos()), HELLO_DEBOUNCE_MS);
  }

  async flushHellos() {
    for (const link of this.links.values()) {
      if (link.helloDue) await this.freshHello(link);
    }
  }

  /** A new hello for peerId now (the call uses it when a round stalls). */
  async renewHello(peerId) {
    const link = this.links.get(peerId);
    if (link) await this.freshHello(link);
  }

  async freshHello(link) {
    if (this.ended !== null) return;
    link.helloDue = false;
    const body = link.channel.newHello([...BROWSER_CAPS]);
    if (this.role === "client" && this.name) body.name = this.name;
    link.hello = body;
    link.settled = false;
    this.sealTo(link, body);
  }

  async onHello(link, msg) {
    const hello = link.channel.peerHello(link.peerId);
    if (this.role === "counselor") {
      const name = peerName(msg);
      if (name !== link.name) {
        link.name = name;
        this.emitRoster();
      }
    }
    if (this.call && link.peerId === this.callPeer) await this.call.onPeerHello(hello);
    if (link.hello === null || link.helloDue) {
      link.answered.add(hello.nonce);
      await this.freshHello(link); // the answer; the pair settles when they answer it
    } else {
      link.settled = true;
      if (!link.answered.has(hello.nonce)) {
        link.answered.add(hello.nonce);
        this.sealTo(link, link.hello);
      }
    }
    await this.checkPair(link);
  }

  async checkPair(link) {
    if (!link.settled) return;
    const hello = link.channel.peerHello(link.peerId);
    const mine = link.channel.helloNonce;
    if (!hello || !mine) return;
    const pair = `${mine} ${hello.nonce}`;
    if (pair === link.pair) return;
    link.pair = pair;
    if (this.inCall && link.peerId === this.callPeer && this.call) await this.call.onNewPair();
    await this.flushChat(link, true);
  }

  /** The other side's latest hello ({epoch, nonce, caps}) or null. */
  peerHello(peerId) {
    const link = this.links.get(peerId);
    return link ? link.channel.peerHello(peerId) : null;
  }

  /** True once a hello pair with peerId is settled (envelopes can be sealed both ways). */
  paired(peerId) {
    const link = this.links.get(peerId);
    return Boolean(link && link.pair !== null);
  }

  // --- envelopes -----------------------------------------------------------------------------------

  // Seal now (seq and bind are taken at once) and send in the order sealed.
  sealTo(link, body) {
    const sealed = link.channel.seal(link.peerId, body);
    sealed.catch(() => undefined); // handled below, in order
    const sent = this.sendChain.then(() => sealed).then(
      ([epoch, box]) => this.signaling.relay(link.peerId, epoch, box),
      () => false, // not sealable (e.g. no hello yet): nothing sent
    );
    this.sendChain = sent.then(() => undefined, () => undefined);
    return sent;
  }

  /** Seal body for peerId and relay it; resolves false if it could not be sealed. */
  sendInner(peerId, body) {
    const link = this.links.get(peerId);
    return link ? this.sealTo(link, body) : Promise.resolve(false);
  }

  async onRelay({ from, epoch, box }) {
    if (this.id === null || this.ended !== null) return;
    if (this.role === "client" && from !== COUNSELOR_ID) return;
    const link = await this.link(from);
    let msg;
    try {
      msg = await link.channel.open(from, epoch, box);
    } catch (error) {
      if (!(error instanceof CryptoError)) throw error;
      this.rejected += 1;
      this.emit("rejected", { count: this.rejected });
      return;
    }
    if (link.channel.gapCount !== this.gaps) this.gaps = link.channel.gapCount;
    const kind = msg.type;
    try {
      if (kind === "hello") {
        await this.onHello(link, msg);
      } else if (kind === "commit" || kind === "reveal") {
        if (this.call && from === this.callPeer && this.inCall) {
          if (kind === "commit") await this.call.onCommit(msg);
          else await this.call.onReveal(msg);
        }
      } else {
        await this.onInner(link, parseInner(msg));
      }
    } catch (error) {
      if (!(error instanceof CryptoError) && !(error instanceof InnerMessageError)) throw error;
      this.rejected += 1;
      this.emit("rejected", { count: this.rejected });
    }
  }

  async onInner(link, msg) {
    if (msg.type === "chat" || msg.type === "ack") {
      await this.onChatMessage(link, msg, "relay");
      return;
    }
    if (!(this.call && link.peerId === this.callPeer)) return;
    switch (msg.type) {
      case "offer":
      case "answer":
        await this.call.onDescription(msg);
        break;
      case "candidate":
        await this.call.onCandidate(msg);
        break;
      case "rebuild":
        await this.call.onRebuild(msg);
        break;
      case "mode":
        this.call.onMode(msg.level, msg.reason);
        break;
      case "bye":
        await this.call.onBye(msg.reason);
        break;
      default:
        break;
    }
  }

  // --- chat ----------------------------------------------------------------------------------------

  /** Queue text for peerId (default: the call's peer, or the counselor); returns the ids. */
  sendChat(text, peerId = null) {
    const to = peerId || this.callPeer || (this.role === "client" ? COUNSELOR_ID : null);
    const link = to && this.links.get(to);
    if (!link) throw new SessionError("nobody to write to");
    const messages = splitChat(text).map((piece) => link.chat.add(piece));
    this.enqueue(() => this.flushChat(link, false));
    return messages.map((m) => ({ ...m, peer: to }));
  }

  // The data channel when it is open, else the relay. relayOnly: straight to the relay (a re-send:
  // an unacknowledged message may sit in a congested channel, e.g. while the call steps down).
  async sendChatWire(link, wire, relayOnly = false) {
    if (!relayOnly && this.call && link.peerId === this.callPeer
      && this.call.sendOnChannel(JSON.stringify(wire))) {
      return true;
    }
    return this.sealTo(link, wire);
  }

  async flushChat(link, force) {
    const now = Date.now();
    for (const chat of link.chat.due(now, force ? 0 : CHAT_RESEND_MS)) {
      const wire = { type: "chat", id: chat.id, text: chat.text };
      if (await this.sendChatWire(link, wire, !force && link.chat.attempts(chat.id) > 0)) {
        link.chat.markSent(chat.id, now);
      }
    }
  }

  async onChatMessage(link, msg, via) {
    if (msg.type === "ack") {
      if (link.chat.onAck(msg.id)) this.emit("chat-state", { peer: link.peerId, id: msg.id, state: "delivered" });
      return;
    }
    if (link.chat.onChat(msg.id)) {
      this.emit("chat", { peer: link.peerId, id: msg.id, text: msg.text, via });
    }
    await this.sendChatWire(link, { type: "ack", id: msg.id }, via === "relay");
  }

  /** A data channel message from the call's peer (call.js hands it over). */
  onChannelText(text) {
    this.enqueue(async () => {
      const link = this.callPeer && this.links.get(this.callPeer);
      if (!link) return;
      let msg;
      try {
        msg = fromDataChannel(text);
      } catch {
        this.rejected += 1;
        return;
      }
      await this.onChatMessage(link, msg, "channel");
    });
  }

  /** The data channel opened: whatever waits goes now. */
  onChannelOpen() {
    this.enqueue(async () => {
      const link = this.callPeer && this.links.get(this.callPeer);
      if (link) await this.flushChat(link, true);
    });
  }

  async tick() {
    if (this.ended !== null) return;
    for (const link of this.links.values()) await this.flushChat(link, false);
    if (this.call) await this.call.tick();
  }

  // --- the safety code (the key stays in here) ----------------------------------------------------

  /** The safety code {digits, words} of a verified CommitRound. */
  safetyCode(commitRound) {
    return commitRound.safetyCode(this.#key);
  }

  // --- actions -------------------------------------------------------------------------------------

  admit(id) { return this.signaling.admit(id); }
  decline(id) { return this.signaling.decline(id); }
  remove(id) { return this.signaling.remove(id); }

  /** Counselor: say goodbye to the call's peer, then end the session for everyone admitted. */
  async end() {
    await this.enqueue(async () => {
      if (this.callPeer) await this.sendInner(this.callPeer, { type: "bye", reason: "ended" });
    });
    await this.sendChain;
    this.signaling.end();
  }

  /** Leave for good (no resume), with a goodbye to the call's peer when there is one. */
  async leave(reason = "left") {
    const peer = this.callPeer;
    if (peer && this.inCall) {
      await this.enqueue(() => this.sendInner(peer, { type: "bye", reason }));
      await Promise.race([this.sendChain, new Promise((r) => setTimeout(r, 500))]);
    }
    this.signaling.leave();
    this.finish("left");
  }

  /** Leave at once: no goodbye, no waiting (Quick exit). */
  leaveNow() {
    try {
      this.signaling.leave();
    } catch {
      /* the page is going anyway */
    }
    this.finish("left");
  }
}
