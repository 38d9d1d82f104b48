// Ruang protocol v1 cryptography in the browser (WebCrypto): the same bytes as signaling/crypto.py.
// No DOM, no logging; error messages never contain plaintext or keys. tests/vectors/v1.json pins
// every value below (checked by tests/js/*.test.mjs under Node and in headless Chromium).
//
// Encodings
//   base64url: RFC 4648 section 5 alphabet, never padded. Decoding is strict: only A-Z a-z 0-9 - _,
//   never "=", length % 4 != 1, and the unused trailing bits of the last character must be zero
//   (so every byte string has exactly one encoding). Room id: 16 random bytes (22 characters).
//   Room key: 32 random bytes (43 characters, the link's whole fragment).
// Signaling key
//   HKDF-SHA256(ikm=room key, salt=utf8(room id), info="ruang/v1/signal", 32 bytes) -> AES-256-GCM.
// Envelope AAD
//   "ruang/v1/env" 0x00, then for room id, sender id, sender epoch, recipient id in that order:
//   u16 big-endian length of utf8(field), utf8(field). Fields: 1..65535 UTF-8 bytes, well-formed
//   Unicode (TextEncoder would silently turn a lone surrogate into U+FFFD, so it is checked first).
// Envelope box
//   base64url(12-byte IV || AES-256-GCM ciphertext || 16-byte tag); under 28 bytes is malformed.
// DTLS fingerprint, canonical form
//   "sha-256 " + 32 bytes as two uppercase hex digits each, joined by ":" (103 ASCII characters).
// Commitment
//   SHA-256(ascii(canonical fingerprint) || 32-byte nonce).
// Safety code
//   okm = HKDF-SHA256(ikm=room key, salt=fp_counselor || fp_client || nonce_counselor ||
//   nonce_client, info="ruang/v1/sas", 8 bytes); digits = uint32be(okm[0..4]) % 1e6, six digits;
//   words = SAS_WORDS[okm[4..8]]. Inputs are ordered by role (counselor first), never by who offered.
//
// Byte arguments are Uint8Arrays (a Node Buffer is one too). Functions that need WebCrypto are
// async; the others are synchronous.

export const ROOM_ID_BYTES = 16;
export const ROOM_KEY_BYTES = 32;
export const IV_BYTES = 12;
export const TAG_BYTES = 16;
export const NONCE_BYTES = 32;
export const DIGEST_BYTES = 32;
export const SIGNAL_INFO = "ruang/v1/signal";
export const SAS_INFO = "ruang/v1/sas";
/** The AAD's fixed prefix as a string: "ruang/v1/env" and one NUL (ASCII, 13 bytes). */
export const AAD_PREFIX = "ruang/v1/env\u0000";

const SIGNAL_KEY_BYTES = 32;
const AAD_FIELD_MAX = 0xffff;
const FINGERPRINT_PREFIX = "sha-256 ";
const FINGERPRINT_RE = /^sha-256 [0-9A-F]{2}(?::[0-9A-F]{2}){31}$/;
const B64U_RE = /^[A-Za-z0-9_-]*$/;
const B64U_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const B64U_VALUES = new Map([...B64U_ALPHABET].map((c, i) => [c, i]));

const encoder = new TextEncoder();

// 256 distinct words, 3 to 7 lowercase ASCII letters, spelled the same in Indonesian and English
// (international loanwords), sorted; index = byte value. Pinned in tests/vectors/v1.json.
export const SAS_WORDS = Object.freeze([
  "admiral", "agar", "agenda", "aikido", "album", "alto", "analog", "anime", "arena", "argon",
  "aria", "aroma", "atlas", "atom", "aurora", "avatar", "bandana", "banjo", "bank", "barista",
  "basket", "batik", "begonia", "bento", "beta", "bison", "bistro", "bit", "blender", "blog",
  "bolero", "bonsai", "bonus", "boron", "bravo", "burger", "burrito", "bus", "chef", "corgi",
  "dahlia", "data", "delta", "depot", "detail", "diagram", "diesel", "digital", "dingo",
  "domino", "drum", "duet", "durian", "editor", "emoji", "epsilon", "fiesta", "film", "filter",
  "flora", "format", "formula", "forum", "futsal", "gala", "gamelan", "gamma", "gas", "gazebo",
  "gelato", "global", "golf", "gondola", "gong", "gram", "granola", "guru", "haiku", "halo",
  "hamster", "helium", "horizon", "hotel", "hummus", "husky", "iguana", "ikebana", "impala",
  "indigo", "jaguar", "jet", "judo", "jumbo", "kaftan", "karate", "kayak", "kebab", "kendo",
  "kilo", "kimchi", "kiwi", "koala", "koi", "komodo", "lambda", "laptop", "laser", "latte",
  "lava", "lemur", "level", "liter", "lobster", "logo", "lotus", "maestro", "magenta", "magma",
  "magnet", "manual", "marimba", "marlin", "masala", "matcha", "melon", "mentor", "menu",
  "metal", "mineral", "mint", "miso", "mochi", "model", "motif", "motor", "mug", "mural",
  "museum", "mustard", "nano", "natural", "nebula", "neon", "neutron", "ninja", "novel", "oasis",
  "ohm", "okapi", "omega", "opal", "opera", "orbit", "orca", "oregano", "origami", "pagoda",
  "panda", "panini", "paprika", "parade", "pasta", "pergola", "pesto", "petunia", "piano",
  "pilot", "pizza", "planet", "plaza", "plum", "podium", "polo", "popcorn", "portal", "poster",
  "premium", "program", "promo", "proton", "pulsar", "puma", "radar", "radio", "ramen", "rap",
  "ravioli", "remix", "rendang", "risotto", "robot", "roti", "royal", "safari", "salad", "salsa",
  "samba", "samosa", "samurai", "sandal", "sauna", "sedan", "sensor", "sepia", "sigma", "sitar",
  "ski", "snorkel", "sofa", "solar", "sonata", "soprano", "spa", "spiral", "status", "stereo",
  "studio", "sultan", "sumo", "super", "sushi", "tandem", "tango", "tapir", "tempo", "tempura",
  "tenor", "tiara", "titan", "ton", "total", "trio", "tripod", "tulip", "tuna", "tundra",
  "turbo", "tutor", "udon", "ultra", "urban", "video", "villa", "violet", "visa", "volt",
  "walrus", "wasabi", "watt", "wombat", "yak", "yeti", "yoga", "yogurt", "yoyo", "zebra",
]);

// --- errors ----------------------------------------------------------------------------------

/** Base class of every v1 cryptography error. Messages never contain plaintext or keys. */
export class CryptoError extends Error {
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}

/** Malformed input: not canonical base64url, wrong length, bad UTF-8, bad AAD field. */
export class EncodingError extends CryptoError {}

/** An envelope that cannot be opened: malformed, truncated, tampered, wrong key or AAD. */
export class EnvelopeError extends CryptoError {}

/** A DTLS fingerprint not in the canonical "sha-256 AB:CD:..." form. */
export class FingerprintError extends CryptoError {}

// --- small helpers ---------------------------------------------------------------------------

function subtle() {
  const s = globalThis.crypto && globalThis.crypto.subtle;
  if (!s) throw new CryptoError("WebCrypto is unavailable (a secure context is required)");
  return s;
}

/** True for a Uint8Array from any realm (a Node Buffer included). */
export function isBytes(value) {
  return Object.prototype.toString.call(value) === "[object Uint8Array]";
}

function requireLen(data, size, what) {
  if (!isBytes(data) || data.length !== size) throw new EncodingError(`${what} must be ${size} bytes`);
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** n bytes from the platform CSPRNG. */
export function randomBytes(n) {
  const out = new Uint8Array(n);
  globalThis.crypto.getRandomValues(out);
  return out;
}

/** Whether a and b hold the same bytes, without an early exit on the first difference. */
export function bytesEqual(a, b) {
  if (!isBytes(a) || !isBytes(b) || a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i += 1) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** True when text holds no lone surrogate (what String.prototype.isWellFormed answers). */
export function isWellFormed(text) {
  for (let i = 0; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = text.charCodeAt(i + 1); // NaN past the end
      if (!(d >= 0xdc00 && d <= 0xdfff)) return false;
      i += 1;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      return false;
    }
  }
  return true;
}

/** UTF-8 of a well-formed string; EncodingError for a non-string or a lone surrogate. */
export function utf8(text, what = "text") {
  if (typeof text !== "string") throw new EncodingError(`${what} must be a string`);
  if (!isWellFormed(text)) throw new EncodingError(`${what} is not well-formed Unicode`);
  return encoder.encode(text);
}

// --- base64url -------------------------------------------------------------------------------

/** base64url without padding. */
export function b64uEncode(bytes) {
  if (!isBytes(bytes)) throw new EncodingError("b64uEncode needs a Uint8Array");
  let out = "";
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += B64U_ALPHABET[n >> 18] + B64U_ALPHABET[(n >> 12) & 63];
    out += B64U_ALPHABET[(n >> 6) & 63] + B64U_ALPHABET[n & 63];
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i] << 16;
    out += B64U_ALPHABET[n >> 18] + B64U_ALPHABET[(n >> 12) & 63];
  } else if (rest === 2) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += B64U_ALPHABET[n >> 18] + B64U_ALPHABET[(n >> 12) & 63] + B64U_ALPHABET[(n >> 6) & 63];
  }
  return out;
}

/** Strict base64url decoding; EncodingError for anything non-canonical. */
export function b64uDecode(text) {
  if (typeof text !== "string" || text.length % 4 === 1 || !B64U_RE.test(text)) {
    throw new EncodingError("not canonical base64url");
  }
  const out = new Uint8Array(Math.floor((text.length * 3) / 4));
  let bits = 0;
  let nbits = 0;
  let at = 0;
  for (const c of text) {
    bits = ((bits << 6) | B64U_VALUES.get(c)) & 0xffffff;
    nbits += 6;
    if (nbits >= 8) {
      nbits -= 8;
      out[at] = (bits >> nbits) & 0xff;
      at += 1;
    }
  }
  if (bits & ((1 << nbits) - 1)) throw new EncodingError("not canonical base64url (trailing bits)");
  return out;
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

// --- rooms -----------------------------------------------------------------------------------

/** 16 CSPRNG bytes, base64url: 22 characters. */
export function newRoomId() {
  return b64uEncode(randomBytes(ROOM_ID_BYTES));
}

/** 32 CSPRNG bytes, base64url: 43 characters (the link's whole fragment). */
export function newRoomKey() {
  return b64uEncode(randomBytes(ROOM_KEY_BYTES));
}

/** True for a canonical 22-character base64url encoding of 16 bytes. */
export function isRoomId(text) {
  return typeof text === "string" && text.length === 22 && isB64uOf(text, ROOM_ID_BYTES);
}

/** The 32 key bytes of a link fragment (43 characters); EncodingError otherwise. */
export function parseRoomKey(text) {
  if (typeof text !== "string" || text.length !== 43) {
    throw new EncodingError("room key must be 43 base64url characters");
  }
  const raw = b64uDecode(text);
  requireLen(raw, ROOM_KEY_BYTES, "room key");
  return raw;
}

// --- keys ------------------------------------------------------------------------------------

async function hkdf(ikm, salt, info, length) {
  const s = subtle();
  const base = await s.importKey("raw", ikm, "HKDF", false, ["deriveBits"]);
  const params = { name: "HKDF", hash: "SHA-256", salt, info: encoder.encode(info) };
  return new Uint8Array(await s.deriveBits(params, base, length * 8));
}

function checkSignalInputs(roomKey, roomId) {
  requireLen(roomKey, ROOM_KEY_BYTES, "room key");
  if (!isRoomId(roomId)) throw new EncodingError("room id must be 22 base64url characters");
}

/**
 * The raw 32 signaling-key bytes: HKDF-SHA256(room key, utf8(room id), "ruang/v1/signal").
 * For the test vectors and for callers that must hand the key to another API; everything else
 * uses deriveSignalKey, whose CryptoKey cannot be read back.
 */
export async function deriveSignalKeyBytes(roomKey, roomId) {
  checkSignalInputs(roomKey, roomId);
  return hkdf(roomKey, encoder.encode(roomId), SIGNAL_INFO, SIGNAL_KEY_BYTES);
}

/** The signaling key as a non-extractable AES-256-GCM CryptoKey (encrypt, decrypt). */
export async function deriveSignalKey(roomKey, roomId) {
  const raw = await deriveSignalKeyBytes(roomKey, roomId);
  try {
    return await subtle().importKey("raw", raw, { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
  } finally {
    raw.fill(0); // importKey copied it
  }
}

function requireSignalKey(key, usage) {
  const ok =
    key !== null &&
    typeof key === "object" &&
    key.type === "secret" &&
    key.algorithm &&
    key.algorithm.name === "AES-GCM" &&
    key.algorithm.length === 256 &&
    Array.isArray(key.usages) &&
    key.usages.includes(usage);
  if (!ok) throw new EncodingError(`signal key must be an AES-256-GCM CryptoKey for ${usage}`);
}

// --- envelopes -------------------------------------------------------------------------------

/** The canonical AAD bytes (layout at the top of this file); EncodingError for a bad field. */
export function envelopeAad(roomId, senderId, senderEpoch, recipientId) {
  const parts = [encoder.encode(AAD_PREFIX)];
  const fields = [
    ["room id", roomId],
    ["sender id", senderId],
    ["sender epoch", senderEpoch],
    ["recipient id", recipientId],
  ];
  for (const [what, value] of fields) {
    const raw = utf8(value, what);
    if (raw.length < 1 || raw.length > AAD_FIELD_MAX) {
      throw new EncodingError(`${what} must be 1..${AAD_FIELD_MAX} UTF-8 bytes`);
    }
    parts.push(new Uint8Array([raw.length >> 8, raw.length & 0xff]), raw);
  }
  return concat(...parts);
}

/** base64url(iv || AES-256-GCM ciphertext || tag). iv is random unless given (tests only). */
export async function seal(key, aad, plaintext, iv = undefined) {
  requireSignalKey(key, "encrypt");
  if (!isBytes(aad)) throw new EncodingError("aad must be a Uint8Array");
  if (!isBytes(plaintext)) throw new EncodingError("plaintext must be a Uint8Array");
  const nonce = iv === undefined ? randomBytes(IV_BYTES) : iv;
  requireLen(nonce, IV_BYTES, "iv");
  const params = { name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: TAG_BYTES * 8 };
  const sealed = new Uint8Array(await subtle().encrypt(params, key, plaintext));
  return b64uEncode(concat(nonce, sealed));
}

/** The plaintext bytes of box; EnvelopeError on any failure (never a partial plaintext). */
export async function openBox(key, aad, box) {
  requireSignalKey(key, "decrypt");
  if (!isBytes(aad)) throw new EncodingError("aad must be a Uint8Array");
  let raw;
  try {
    raw = b64uDecode(box);
  } catch (err) {
    if (err instanceof EncodingError) throw new EnvelopeError("envelope is not canonical base64url");
    throw err;
  }
  if (raw.length < IV_BYTES + TAG_BYTES) throw new EnvelopeError("envelope too short");
  const params = {
    name: "AES-GCM",
    iv: raw.subarray(0, IV_BYTES),
    additionalData: aad,
    tagLength: TAG_BYTES * 8,
  };
  try {
    return new Uint8Array(await subtle().decrypt(params, key, raw.subarray(IV_BYTES)));
  } catch {
    throw new EnvelopeError("envelope authentication failed");
  }
}

// --- DTLS fingerprints -----------------------------------------------------------------------

/** "sha-256 AB:CD:..." for a 32-byte SHA-256 certificate digest. */
export function canonicalFingerprint(digest) {
  if (!isBytes(digest) || digest.length !== DIGEST_BYTES) {
    throw new FingerprintError("a sha-256 digest is 32 bytes");
  }
  const hex = Array.from(digest, (b) => b.toString(16).toUpperCase().padStart(2, "0"));
  return FINGERPRINT_PREFIX + hex.join(":");
}

/** The 32 digest bytes of a canonical fingerprint; anything else throws FingerprintError. */
export function parseFingerprint(text) {
  if (typeof text !== "string" || !FINGERPRINT_RE.test(text)) {
    throw new FingerprintError("fingerprint is not canonical 'sha-256 AB:CD:...'");
  }
  const hex = text.slice(FINGERPRINT_PREFIX.length).split(":");
  return Uint8Array.from(hex, (h) => parseInt(h, 16));
}

function fingerprintFromParts(algorithm, value) {
  if (typeof algorithm !== "string" || algorithm.toLowerCase() !== "sha-256") {
    throw new FingerprintError("only sha-256 DTLS fingerprints are accepted");
  }
  if (typeof value !== "string") throw new FingerprintError("fingerprint value must be a string");
  const text = FINGERPRINT_PREFIX + value.toUpperCase();
  parseFingerprint(text);
  return text;
}

/**
 * The canonical fingerprint of this browser's certificate, from RTCCertificate.getFingerprints()
 * (a list of {algorithm, value}; Chrome writes lowercase hex). Exactly one sha-256 entry must be
 * present; entries for other algorithms describe the same certificate and are ignored.
 */
export function fingerprintFromRtc(fingerprints) {
  if (!Array.isArray(fingerprints)) throw new FingerprintError("expected a list of fingerprints");
  const sha256 = fingerprints.filter(
    (f) => f && typeof f.algorithm === "string" && f.algorithm.toLowerCase() === "sha-256",
  );
  if (sha256.length !== 1) throw new FingerprintError("expected exactly one sha-256 fingerprint");
  return fingerprintFromParts(sha256[0].algorithm, sha256[0].value);
}

const SDP_FINGERPRINT_LINE = /^a=fingerprint:/i;
const SDP_FINGERPRINT_VALUE = /^a=fingerprint:([!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+) ([0-9A-Fa-f:]+)$/i;

/**
 * The one DTLS fingerprint an SDP carries, in canonical form (hex uppercased), or
 * FingerprintError. Every a=fingerprint line anywhere must be "sha-256 <32 hex bytes>" (the
 * algorithm name in any case), and all must be equal; each m-section must carry exactly one of its
 * own, or none when exactly one session-level line covers it (RFC 8122: Firefox writes it there).
 * aiortc's extra sha-384/sha-512 lines are refused: Chrome keeps only the last line it parses.
 */
export function fingerprintFromSdp(sdp) {
  if (typeof sdp !== "string") throw new FingerprintError("SDP must be a string");
  const sections = [[]]; // [session-level lines, m-section 1 lines, ...]
  for (const line of sdp.split(/\r\n|\n|\r/)) {
    if (line.startsWith("m=")) sections.push([]);
    if (!SDP_FINGERPRINT_LINE.test(line)) continue;
    const match = SDP_FINGERPRINT_VALUE.exec(line);
    if (!match) throw new FingerprintError("malformed a=fingerprint line");
    sections[sections.length - 1].push(fingerprintFromParts(match[1], match[2]));
  }
  const [session, ...media] = sections;
  if (media.length === 0) throw new FingerprintError("SDP has no m-section");
  if (session.length > 1) throw new FingerprintError("more than one session-level fingerprint");
  const all = [...session];
  for (const lines of media) {
    if (lines.length > 1) throw new FingerprintError("more than one fingerprint in an m-section");
    if (lines.length === 0 && session.length === 0) {
      throw new FingerprintError("an m-section has no fingerprint");
    }
    all.push(...lines);
  }
  if (!all.every((fp) => fp === all[0])) throw new FingerprintError("fingerprints differ");
  return all[0];
}

// --- commitments and the safety code ---------------------------------------------------------

/** SHA-256(ascii(canonical fingerprint) || 32-byte nonce), 32 bytes. */
export async function commitment(fingerprint, nonce) {
  parseFingerprint(fingerprint);
  requireLen(nonce, NONCE_BYTES, "nonce");
  const digest = await subtle().digest("SHA-256", concat(encoder.encode(fingerprint), nonce));
  return new Uint8Array(digest);
}

/** Whether (fingerprint, nonce) opens commit; constant-time, false on malformed input. */
export async function verifyReveal(commit, fingerprint, nonce) {
  let expected;
  try {
    expected = await commitment(fingerprint, nonce);
  } catch (err) {
    if (err instanceof CryptoError) return false;
    throw err;
  }
  return bytesEqual(expected, commit);
}

/**
 * The committed short authentication string shown on both screens: {digits, words}.
 * Arguments are ordered by role (counselor first), never by who offered.
 */
export async function safetyCode(roomKey, fpCounselor, fpClient, nonceCounselor, nonceClient) {
  requireLen(roomKey, ROOM_KEY_BYTES, "room key");
  parseFingerprint(fpCounselor);
  parseFingerprint(fpClient);
  requireLen(nonceCounselor, NONCE_BYTES, "counselor nonce");
  requireLen(nonceClient, NONCE_BYTES, "client nonce");
  const salt = concat(
    encoder.encode(fpCounselor),
    encoder.encode(fpClient),
    nonceCounselor,
    nonceClient,
  );
  const okm = await hkdf(roomKey, salt, SAS_INFO, 8);
  const number = new DataView(okm.buffer, okm.byteOffset, okm.byteLength).getUint32(0, false);
  const digits = String(number % 1_000_000).padStart(6, "0");
  const words = Object.freeze(Array.from(okm.subarray(4, 8), (b) => SAS_WORDS[b]));
  return Object.freeze({ digits, words });
}
