// The v1 secure channel between this peer and the others in one room: signaling/e2e.py in the
// browser. No DOM, no I/O, no logging.
//
// Every peer-to-peer message travels as an envelope (sender epoch, box); the server adds the sender
// id it stamped. box seals UTF-8 JSON of one object (see crypto.js for the bytes):
//
//   {"seq": <int>, "type": <str>, ...body, "bind": [<sender hello nonce>, <receiver hello nonce>]}
//
// * seq strictly increases per (sender, sender epoch, recipient), from 1, up to 2**53 - 1, written
//   as a JSON integer. The receiver drops anything not above the last seq it accepted for
//   (sender, epoch); a jump between two accepted envelopes is counted in gapCount (numbers only).
// * hello bodies are {"type": "hello", "epoch", "nonce": <32 bytes b64u>, "caps": [<str>, ...]}
//   (extra fields allowed, e.g. a name) and carry no bind. A valid hello records the sender's epoch
//   and nonce; from then on envelopes of the sender's older epochs are refused. Make a new hello
//   when the other side becomes present; answer its hello by sealing the current hello again (same
//   nonce), so two peers never ping-pong new nonces.
// * Every other message carries bind: it is accepted only if it equals (the sender's latest hello
//   nonce, my current hello nonce) and the envelope comes from the epoch of that hello. A new hello
//   therefore invalidates everything sealed for an earlier connection, so a server cannot replay
//   it into a new one.
//
// CommitRound runs the committed-SAS exchange: commit = {"type": "commit", "role", "commit":
// b64u(SHA-256(fingerprint || nonce))}, then reveal = {"type": "reveal", "fingerprint", "nonce"},
// sent only after holding the other's commit.
//
// Async where WebCrypto forces it: SecureChannel.create, seal, open, CommitRound.commitMsg,
// onReveal and safetyCode. seal() takes its seq and bind when called (before its first await), so
// send envelopes in the order seal() was called; open() applies its checks in the order it was
// called, whatever order the decryptions finish in.

import {
  CryptoError,
  EncodingError,
  EnvelopeError,
  FingerprintError,
  NONCE_BYTES,
  b64uDecode,
  b64uEncode,
  bytesEqual,
  commitment,
  deriveSignalKey,
  envelopeAad,
  isBytes,
  isWellFormed,
  openBox,
  parseFingerprint,
  randomBytes,
  safetyCode as computeSafetyCode,
  seal as sealBox,
  verifyReveal,
} from "./crypto.js";

export { CryptoError, EncodingError, EnvelopeError, FingerprintError };

export const EPOCH_BYTES = 16;
export const ROLES = Object.freeze(["counselor", "client"]);
const RETIRED_EPOCHS_MAX = 1024;
const SEQ_MAX = Number.MAX_SAFE_INTEGER; // 2**53 - 1
const MAX_DEPTH = 512;
const CREATE = Symbol("SecureChannel.create");
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** An envelope whose seq is not above the last accepted for its (sender, epoch). */
export class ReplayError extends CryptoError {}

/** An envelope from an epoch the sender has since replaced with a newer hello. */
export class StaleEpochError extends ReplayError {}

/** An envelope that claims to come from this peer, or one addressed to itself. */
export class ReflectionError extends CryptoError {}

/** An envelope not bound to both peers' current hello nonces (or sent before any hello). */
export class BindError extends CryptoError {}

/** A commit/reveal message out of order, malformed, or not matching the commitment. */
export class CommitmentError extends CryptoError {}

function own(obj, key) {
  return Object.hasOwn(obj, key) ? obj[key] : undefined;
}

function isPlainObject(value) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function isB64uOf(text, size) {
  if (typeof text !== "string") return false;
  try {
    return b64uDecode(text).length === size;
  } catch (err) {
    if (err instanceof EncodingError) return false;
    throw err;
  }
}

function isStringList(value) {
  return Array.isArray(value) && value.every((v) => typeof v === "string");
}

// --- plaintext JSON --------------------------------------------------------------------------

// JSON text of value, refusing what Python's json.dumps(allow_nan=False) + utf-8 would refuse
// (NaN, Infinity, lone surrogates, cycles) and what JSON.stringify would silently drop or change
// (undefined, functions, symbols, BigInt, class instances, sparse arrays).
function toJson(value, depth, path) {
  if (value === null || typeof value === "boolean") return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new EncodingError("message is not JSON-serialisable");
    return JSON.stringify(value);
  }
  if (typeof value === "string") {
    if (!isWellFormed(value)) throw new EncodingError("message is not JSON-serialisable");
    return JSON.stringify(value);
  }
  if (depth >= MAX_DEPTH || path.has(value)) {
    throw new EncodingError("message is not JSON-serialisable");
  }
  path.add(value);
  let out;
  if (Array.isArray(value)) {
    const items = [];
    for (let i = 0; i < value.length; i += 1) {
      if (!(i in value)) throw new EncodingError("message is not JSON-serialisable");
      items.push(toJson(value[i], depth + 1, path));
    }
    out = `[${items.join(",")}]`;
  } else if (isPlainObject(value)) {
    out = `{${objectMembers(value, Object.keys(value), depth, path).join(",")}}`;
  } else {
    throw new EncodingError("message is not JSON-serialisable");
  }
  path.delete(value);
  return out;
}

function objectMembers(obj, keys, depth, path) {
  return keys.map((key) => {
    if (!isWellFormed(key)) throw new EncodingError("message is not JSON-serialisable");
    return `${JSON.stringify(key)}:${toJson(obj[key], depth + 1, path)}`;
  });
}

// End index (exclusive) of the JSON string starting at text[i] === '"'.
function skipString(text, i) {
  for (let j = i + 1; ; j += 1) {
    if (text[j] === "\\") j += 1;
    else if (text[j] === '"') return j + 1;
  }
}

function skipSpace(text, i) {
  while (i < text.length && " \t\n\r".includes(text[i])) i += 1;
  return i;
}

// End index (exclusive) of the JSON value starting at text[i].
function skipValue(text, i) {
  const c = text[i];
  if (c === '"') return skipString(text, i);
  if (c === "{" || c === "[") {
    let depth = 0;
    for (let j = i; ; j += 1) {
      const d = text[j];
      if (d === '"') {
        j = skipString(text, j) - 1;
      } else if (d === "{" || d === "[") {
        depth += 1;
      } else if (d === "}" || d === "]") {
        depth -= 1;
        if (depth === 0) return j + 1;
      }
    }
  }
  let j = i;
  while (j < text.length && !",}] \t\n\r".includes(text[j])) j += 1;
  return j;
}

// The source text of the top-level member named key (the last one, as JSON.parse keeps), in
// text that JSON.parse already accepted as an object. Python's json gives an int only for a
// token without fraction or exponent, so "seq": 2.0 must be refused here too.
function topLevelSource(text, key) {
  let found;
  let i = skipSpace(text, 0) + 1; // past "{"
  for (;;) {
    i = skipSpace(text, i);
    if (text[i] === "}") return found;
    const keyEnd = skipString(text, i);
    const name = JSON.parse(text.slice(i, keyEnd));
    i = skipSpace(text, skipSpace(text, keyEnd) + 1); // past ":"
    const end = skipValue(text, i);
    if (name === key) found = text.slice(i, end);
    i = skipSpace(text, end);
    if (text[i] === ",") i += 1;
  }
}

function decodePlaintext(plaintext) {
  let text;
  let msg;
  try {
    text = decoder.decode(plaintext);
    msg = JSON.parse(text);
  } catch {
    throw new EnvelopeError("envelope plaintext is not UTF-8 JSON");
  }
  if (!isPlainObject(msg)) throw new EnvelopeError("envelope plaintext is not a JSON object");
  const seq = own(msg, "seq");
  const ok =
    Number.isSafeInteger(seq) &&
    seq >= 1 &&
    seq <= SEQ_MAX &&
    /^[1-9][0-9]*$/.test(topLevelSource(text, "seq")) &&
    typeof own(msg, "type") === "string";
  if (!ok) throw new EnvelopeError("envelope plaintext lacks a valid seq or type");
  return msg;
}

// --- SecureChannel ---------------------------------------------------------------------------

/** Seals and opens this peer's envelopes in one room, with replay and binding rules. */
export class SecureChannel {
  #key;
  #myNonce = null;
  #sendSeq = new Map(); // recipient id -> last seq sealed
  #recvSeq = new Map(); // sender id -> Map(epoch -> last seq accepted)
  #peers = new Map(); // sender id -> frozen {epoch, nonce, caps}
  #retired = new Map(); // sender id -> Set(epochs replaced by a newer hello), oldest first
  #gaps = 0;
  #opening = Promise.resolve();

  /**
   * A channel for participant myId in room roomId. roomKey: the 32 key bytes (parseRoomKey of
   * the link fragment). epoch: 16 bytes base64url, random unless given (tests only).
   */
  static async create(roomId, roomKey, myId, epoch = undefined) {
    if (epoch === undefined) {
      epoch = b64uEncode(randomBytes(EPOCH_BYTES));
    } else if (!isB64uOf(epoch, EPOCH_BYTES)) {
      throw new EncodingError("epoch must be 16 bytes base64url");
    }
    envelopeAad(roomId, myId, epoch, myId); // validates the fields early
    const key = await deriveSignalKey(roomKey, roomId);
    return new SecureChannel(CREATE, roomId, key, myId, epoch);
  }

  constructor(token, roomId, key, myId, epoch) {
    if (token !== CREATE) throw new TypeError("use SecureChannel.create()");
    this.#key = key;
    Object.defineProperties(this, {
      roomId: { value: roomId, enumerable: true },
      myId: { value: myId, enumerable: true },
      epoch: { value: epoch, enumerable: true },
    });
    Object.freeze(this);
  }

  /** My current hello nonce (base64url), or null before newHello(). */
  get helloNonce() {
    return this.#myNonce;
  }

  /** How many envelopes were skipped (seq jumps) across all senders; no content kept. */
  get gapCount() {
    return this.#gaps;
  }

  /** The latest valid hello from peerId ({epoch, nonce, caps}), or null. */
  peerHello(peerId) {
    return this.#peers.get(peerId) ?? null;
  }

  /**
   * A hello body with a fresh 32-byte nonce, which becomes my current hello nonce.
   * options.nonce (32 bytes) is for test vectors only.
   */
  newHello(capabilities, { nonce = undefined } = {}) {
    if (!isStringList(capabilities)) throw new EncodingError("capabilities must be strings");
    const raw = nonce === undefined ? randomBytes(NONCE_BYTES) : nonce;
    if (!isBytes(raw) || raw.length !== NONCE_BYTES) {
      throw new EncodingError("hello nonce must be 32 bytes");
    }
    this.#myNonce = b64uEncode(raw);
    return { type: "hello", epoch: this.epoch, nonce: this.#myNonce, caps: [...capabilities] };
  }

  /** [my epoch, box] for msg addressed to toId; adds seq (and bind). */
  async seal(toId, msg) {
    // Everything up to sealBox runs synchronously when seal() is called.
    if (toId === this.myId) throw new ReflectionError("cannot address an envelope to myself");
    if (!isPlainObject(msg)) throw new EncodingError("message must be a plain object");
    const kind = own(msg, "type");
    if (typeof kind !== "string" || Object.hasOwn(msg, "seq") || Object.hasOwn(msg, "bind")) {
      throw new EncodingError("message needs a string type and no seq or bind");
    }
    const seq = (this.#sendSeq.get(toId) ?? 0) + 1;
    let bind = null;
    if (kind === "hello") {
      const mine = this.#myNonce;
      if (mine === null || own(msg, "epoch") !== this.epoch || own(msg, "nonce") !== mine) {
        throw new EncodingError("hello must come from newHello()");
      }
    } else {
      const peer = this.#peers.get(toId);
      if (this.#myNonce === null || peer === undefined) {
        throw new BindError("no hello exchanged with the recipient yet");
      }
      bind = [this.#myNonce, peer.nonce];
    }
    const keys = Object.keys(msg).filter((k) => k !== "type");
    const path = new Set([msg]);
    const members = [`"seq":${seq}`, `"type":${toJson(kind, 1, path)}`];
    members.push(...objectMembers(msg, keys, 0, path));
    if (bind !== null) members.push(`"bind":${JSON.stringify(bind)}`);
    const plaintext = encoder.encode(`{${members.join(",")}}`);
    const aad = envelopeAad(this.roomId, this.myId, this.epoch, toId);
    this.#sendSeq.set(toId, seq);
    const box = await sealBox(this.#key, aad, plaintext);
    return [this.epoch, box];
  }

  /** The message in an envelope from fromId, after every check; throws otherwise. */
  open(fromId, epoch, box) {
    const result = this.#opening.then(() => this.#open(fromId, epoch, box));
    this.#opening = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  async #open(fromId, epoch, box) {
    if (fromId === this.myId) throw new ReflectionError("envelope claims to come from myself");
    if (!isB64uOf(epoch, EPOCH_BYTES)) throw new EnvelopeError("malformed sender epoch");
    let aad;
    try {
      aad = envelopeAad(this.roomId, fromId, epoch, this.myId);
    } catch (err) {
      if (err instanceof EncodingError) throw new EnvelopeError("malformed sender id");
      throw err;
    }
    const msg = decodePlaintext(await openBox(this.#key, aad, box));
    // From here on: synchronous, so checks and state changes happen together.
    if (this.#retired.get(fromId)?.has(epoch)) {
      throw new StaleEpochError("envelope from a replaced epoch");
    }
    const last = this.#recvSeq.get(fromId)?.get(epoch) ?? 0;
    const seq = msg.seq;
    if (seq <= last) throw new ReplayError("envelope replayed or reordered");
    if (msg.type === "hello") {
      this.#acceptHello(fromId, epoch, msg);
    } else {
      this.#checkBind(fromId, epoch, msg);
    }
    if (last) this.#gaps += seq - last - 1;
    if (!this.#recvSeq.has(fromId)) this.#recvSeq.set(fromId, new Map());
    this.#recvSeq.get(fromId).set(epoch, seq);
    return msg;
  }

  #acceptHello(fromId, epoch, msg) {
    const caps = own(msg, "caps");
    if (
      own(msg, "epoch") !== epoch ||
      !isB64uOf(own(msg, "nonce"), NONCE_BYTES) ||
      !isStringList(caps) ||
      Object.hasOwn(msg, "bind")
    ) {
      throw new EnvelopeError("malformed hello");
    }
    const previous = this.#peers.get(fromId);
    if (previous !== undefined && previous.epoch !== epoch) {
      if (!this.#retired.has(fromId)) this.#retired.set(fromId, new Set());
      const retired = this.#retired.get(fromId);
      retired.add(previous.epoch);
      this.#recvSeq.get(fromId)?.delete(previous.epoch);
      while (retired.size > RETIRED_EPOCHS_MAX) retired.delete(retired.values().next().value);
    }
    const hello = { epoch, nonce: msg.nonce, caps: Object.freeze([...caps]) };
    this.#peers.set(fromId, Object.freeze(hello));
  }

  #checkBind(fromId, epoch, msg) {
    const peer = this.#peers.get(fromId);
    if (peer === undefined || this.#myNonce === null) {
      throw new BindError("envelope before the hello exchange");
    }
    if (peer.epoch !== epoch) throw new BindError("envelope from an epoch without a hello");
    const bind = own(msg, "bind");
    const ok =
      Array.isArray(bind) &&
      bind.length === 2 &&
      bind[0] === peer.nonce &&
      bind[1] === this.#myNonce;
    if (!ok) throw new BindError("envelope bound to another connection");
  }
}

// --- CommitRound -----------------------------------------------------------------------------

/** One commit/reveal round for the committed safety code (fresh nonce per round). */
export class CommitRound {
  #nonce;
  #committed = false;
  #peerCommit = null;
  #peerFp = null;
  #peerNonce = null;

  /** role: "counselor" or "client"; options.nonce (32 bytes) is for test vectors only. */
  constructor(role, myFingerprint, { nonce = undefined } = {}) {
    if (!ROLES.includes(role)) throw new TypeError("role must be 'counselor' or 'client'");
    parseFingerprint(myFingerprint);
    const raw = nonce === undefined ? randomBytes(NONCE_BYTES) : nonce;
    if (!isBytes(raw) || raw.length !== NONCE_BYTES) {
      throw new EncodingError("commit nonce must be 32 bytes");
    }
    this.#nonce = Uint8Array.from(raw);
    Object.defineProperties(this, {
      role: { value: role, enumerable: true },
      myFingerprint: { value: myFingerprint, enumerable: true },
    });
    Object.freeze(this);
  }

  /** True once the other side's reveal matched its commitment. */
  get verified() {
    return this.#peerFp !== null;
  }

  /** The other side's verified fingerprint (null until verified). */
  get peerFingerprint() {
    return this.#peerFp;
  }

  async commitMsg() {
    this.#committed = true;
    const digest = await commitment(this.myFingerprint, this.#nonce);
    return { type: "commit", role: this.role, commit: b64uEncode(digest) };
  }

  onCommit(msg) {
    if (!isPlainObject(msg) || own(msg, "type") !== "commit" || !ROLES.includes(own(msg, "role"))) {
      throw new CommitmentError("malformed commit");
    }
    if (msg.role === this.role) throw new CommitmentError("both sides claim the same role");
    const digestText = own(msg, "commit");
    if (!isB64uOf(digestText, 32)) throw new CommitmentError("malformed commit");
    const digest = b64uDecode(digestText);
    if (this.#peerCommit !== null && !bytesEqual(this.#peerCommit, digest)) {
      throw new CommitmentError("a second, different commit in one round");
    }
    this.#peerCommit = digest;
  }

  revealMsg() {
    if (!this.#committed || this.#peerCommit === null) {
      throw new CommitmentError("reveal only after both commits");
    }
    return { type: "reveal", fingerprint: this.myFingerprint, nonce: b64uEncode(this.#nonce) };
  }

  async onReveal(msg) {
    const peerCommit = this.#peerCommit;
    if (peerCommit === null) throw new CommitmentError("reveal before commit");
    if (!isPlainObject(msg) || own(msg, "type") !== "reveal") {
      throw new CommitmentError("malformed reveal");
    }
    const fingerprint = own(msg, "fingerprint");
    const nonceText = own(msg, "nonce");
    if (typeof fingerprint !== "string" || !isB64uOf(nonceText, NONCE_BYTES)) {
      throw new CommitmentError("malformed reveal");
    }
    try {
      parseFingerprint(fingerprint);
    } catch (err) {
      if (err instanceof FingerprintError) throw new CommitmentError("malformed reveal");
      throw err;
    }
    const nonce = b64uDecode(nonceText);
    if (!(await verifyReveal(peerCommit, fingerprint, nonce))) {
      throw new CommitmentError("reveal does not match the commitment");
    }
    if (fingerprint === this.myFingerprint || bytesEqual(nonce, this.#nonce)) {
      throw new CommitmentError("the other side revealed my own values");
    }
    this.#peerFp = fingerprint;
    this.#peerNonce = nonce;
  }

  /** The safety code {digits, words} for roomKey (32 bytes), once the reveal is verified. */
  async safetyCode(roomKey) {
    if (this.#peerFp === null || this.#peerNonce === null) {
      throw new CommitmentError("safety code before a verified reveal");
    }
    const mine = [this.myFingerprint, this.#nonce];
    const theirs = [this.#peerFp, this.#peerNonce];
    const [counselor, client] = this.role === "counselor" ? [mine, theirs] : [theirs, mine];
    return computeSafetyCode(roomKey, counselor[0], client[0], counselor[1], client[1]);
  }
}
