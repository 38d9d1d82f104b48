// web/static/js/crypto.js against the pinned protocol v1 vectors (tests/vectors/v1.json), with
// expected values recomputed where cheap by an independent route (node:crypto) rather than the
// module under test. Run: node --test tests/js/
import assert from "node:assert/strict";
import { createHash, hkdfSync } from "node:crypto";
import { readFileSync } from "node:fs";
import test from "node:test";

import * as c from "../../web/static/js/crypto.js";

const V = JSON.parse(readFileSync(new URL("../vectors/v1.json", import.meta.url), "utf8"));

const fromHex = (h) => new Uint8Array(Buffer.from(h, "hex"));
const toHex = (u8) => Buffer.from(u8).toString("hex");
const utf8 = (s) => new TextEncoder().encode(s);
const aadOf = (k) => c.envelopeAad(k.room_id, k.sender_id, k.sender_epoch, k.recipient_id);
const signalKeyOf = (k) => c.deriveSignalKey(c.parseRoomKey(k.room_key), k.room_id);

async function rejectsWith(promiseOrFn, ErrorClass, what) {
  await assert.rejects(
    async () => (typeof promiseOrFn === "function" ? promiseOrFn() : promiseOrFn),
    (err) => {
      assert.ok(err instanceof ErrorClass, `${what}: ${err && err.name} is not ${ErrorClass.name}`);
      assert.equal(err.name, ErrorClass.name);
      return true;
    },
    what,
  );
}

test("constants", () => {
  const k = V.constants;
  assert.equal(V.version, 1);
  assert.equal(c.SIGNAL_INFO, k.signal_info);
  assert.equal(c.SAS_INFO, k.sas_info);
  assert.equal(toHex(utf8(c.AAD_PREFIX)), k.aad_prefix_hex);
  assert.deepEqual([c.IV_BYTES, c.TAG_BYTES, c.NONCE_BYTES], [k.iv_bytes, k.tag_bytes, 32]);
  assert.equal(k.nonce_bytes, 32);
});

test("error classes", () => {
  for (const E of [c.EncodingError, c.EnvelopeError, c.FingerprintError]) {
    const err = new E("x");
    assert.ok(err instanceof c.CryptoError && err instanceof Error);
    assert.equal(err.name, E.name);
  }
});

test("b64u valid", () => {
  for (const { hex, b64u } of V.b64u.valid) {
    assert.equal(c.b64uEncode(fromHex(hex)), b64u, hex);
    assert.equal(toHex(c.b64uDecode(b64u)), hex, b64u);
    assert.equal(Buffer.from(fromHex(hex)).toString("base64url"), b64u); // independent
  }
});

test("b64u invalid", () => {
  for (const { b64u, why } of V.b64u.invalid) {
    assert.throws(() => c.b64uDecode(b64u), c.EncodingError, why);
  }
  assert.throws(() => c.b64uDecode(null), c.EncodingError);
  assert.throws(() => c.b64uDecode(new Uint8Array(3)), c.EncodingError);
  assert.throws(() => c.b64uEncode("text"), c.EncodingError);
});

test("b64u round trip, every length and byte value", () => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  for (let n = 0; n <= 70; n += 1) {
    const data = all.subarray(256 - n);
    const text = c.b64uEncode(data);
    assert.equal(text, Buffer.from(data).toString("base64url"));
    assert.equal(toHex(c.b64uDecode(text)), toHex(data));
    assert.ok(!text.includes("="));
  }
  for (let i = 0; i < 200; i += 1) {
    const data = c.randomBytes(i % 40);
    assert.equal(toHex(c.b64uDecode(c.b64uEncode(data))), toHex(data));
  }
});

test("room ids and keys", () => {
  const r = V.rooms;
  for (const id of r.ids_valid) assert.ok(c.isRoomId(id), id);
  for (const id of r.ids_invalid) assert.ok(!c.isRoomId(id), id);
  assert.ok(!c.isRoomId(null) && !c.isRoomId(42));
  for (const { b64u, hex } of r.keys_valid) assert.equal(toHex(c.parseRoomKey(b64u)), hex);
  for (const bad of r.keys_invalid) assert.throws(() => c.parseRoomKey(bad), c.EncodingError, bad);
  const id = c.newRoomId();
  const key = c.newRoomKey();
  assert.ok(c.isRoomId(id) && id.length === 22);
  assert.ok(key.length === 43 && c.parseRoomKey(key).length === 32);
  assert.notEqual(c.newRoomId(), id);
  assert.notEqual(c.newRoomKey(), key);
});

test("signal keys", async () => {
  for (const k of V.rooms.signal_keys) {
    const roomKey = c.parseRoomKey(k.room_key);
    assert.equal(toHex(await c.deriveSignalKeyBytes(roomKey, k.room_id)), k.signal_key_hex);
    const independent = hkdfSync("sha256", roomKey, utf8(k.room_id), "ruang/v1/signal", 32);
    assert.equal(Buffer.from(independent).toString("hex"), k.signal_key_hex);
    const key = await c.deriveSignalKey(roomKey, k.room_id);
    assert.equal(key.type, "secret");
    assert.equal(key.extractable, false);
    assert.deepEqual([key.algorithm.name, key.algorithm.length], ["AES-GCM", 256]);
    assert.deepEqual([...key.usages].sort(), ["decrypt", "encrypt"]);
    await assert.rejects(crypto.subtle.exportKey("raw", key));
  }
  const k = V.rooms.signal_keys[0];
  const roomKey = c.parseRoomKey(k.room_key);
  await rejectsWith(c.deriveSignalKey(roomKey.subarray(1), k.room_id), c.EncodingError, "short");
  await rejectsWith(c.deriveSignalKey(k.room_key, k.room_id), c.EncodingError, "string key");
  await rejectsWith(c.deriveSignalKey(roomKey, "not-a-room"), c.EncodingError, "bad room id");
});

test("aad valid", () => {
  for (const k of V.aad.valid) {
    assert.equal(toHex(aadOf(k)), k.aad_hex);
    // Independent: the documented layout with Buffer.
    const parts = [Buffer.from("ruang/v1/env\0")];
    for (const f of [k.room_id, k.sender_id, k.sender_epoch, k.recipient_id]) {
      const raw = Buffer.from(f, "utf8");
      const len = Buffer.alloc(2);
      len.writeUInt16BE(raw.length);
      parts.push(len, raw);
    }
    assert.equal(Buffer.concat(parts).toString("hex"), k.aad_hex);
  }
});

test("aad invalid", () => {
  for (const k of V.aad.invalid) assert.throws(() => aadOf(k), c.EncodingError, k.why);
  const ok = V.aad.valid[0];
  const bad = [
    [ok.room_id, ok.sender_id, ok.sender_epoch, "\udc00x"], // lone low surrogate
    [ok.room_id, ok.sender_id, ok.sender_epoch, "x\ud83d"], // high surrogate at the end
    [ok.room_id, 7, ok.sender_epoch, ok.recipient_id],
    [ok.room_id, ok.sender_id, ok.sender_epoch, "é".repeat(32768)], // 65536 bytes
  ];
  for (const args of bad) assert.throws(() => c.envelopeAad(...args), c.EncodingError);
  assert.equal(c.envelopeAad("r", "s", "e", "é".repeat(32767) + "x").length, 13 + 9 + 2 + 65535);
  assert.equal(toHex(c.envelopeAad("r", "s", "e", "\ud83d\udc4b")).slice(-12), "0004f09f918b");
});

test("seal vectors (fixed iv) and open", async () => {
  for (const k of V.seal.ok) {
    const key = await signalKeyOf(k);
    const aad = aadOf(k);
    const plaintext = fromHex(k.plaintext_hex);
    assert.equal(await c.seal(key, aad, plaintext, fromHex(k.iv_hex)), k.box, k.name);
    assert.equal(toHex(await c.openBox(key, aad, k.box)), k.plaintext_hex, k.name);
    const raw = c.b64uDecode(k.box);
    assert.equal(toHex(raw.subarray(0, 12)), k.iv_hex);
    assert.equal(raw.length, 12 + plaintext.length + 16);
  }
});

test("seal with a random iv, and bad arguments", async () => {
  const k = V.seal.ok[1];
  const key = await signalKeyOf(k);
  const aad = aadOf(k);
  const a = await c.seal(key, aad, utf8("same"));
  const b = await c.seal(key, aad, utf8("same"));
  assert.notEqual(a, b);
  assert.equal(new TextDecoder().decode(await c.openBox(key, aad, a)), "same");
  const raw = await c.deriveSignalKeyBytes(c.parseRoomKey(k.room_key), k.room_id);
  await rejectsWith(c.seal(raw, aad, utf8("x")), c.EncodingError, "raw bytes as key");
  await rejectsWith(c.seal(key, aad, "text"), c.EncodingError, "string plaintext");
  await rejectsWith(c.seal(key, aad, utf8("x"), new Uint8Array(16)), c.EncodingError, "iv length");
  const hmac = await crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  await rejectsWith(c.openBox(hmac, aad, a), c.EncodingError, "not an AES-GCM key");
});

test("every must-fail open case", async () => {
  for (const k of V.seal.fail) {
    const key = await signalKeyOf(k);
    await rejectsWith(c.openBox(key, aadOf(k), k.box), c.EnvelopeError, k.name);
  }
  const k = V.seal.ok[1];
  await rejectsWith(c.openBox(await signalKeyOf(k), aadOf(k), 12), c.EnvelopeError, "non-string");
});

test("fingerprints valid and invalid", () => {
  for (const { digest_hex: hex, fingerprint } of V.fingerprints.valid) {
    assert.equal(c.canonicalFingerprint(fromHex(hex)), fingerprint);
    assert.equal(toHex(c.parseFingerprint(fingerprint)), hex);
    const independent = "sha-256 " + hex.toUpperCase().match(/../g).join(":");
    assert.equal(independent, fingerprint);
  }
  for (const bad of V.fingerprints.invalid) {
    assert.throws(() => c.parseFingerprint(bad), c.FingerprintError, JSON.stringify(bad));
  }
  assert.throws(() => c.canonicalFingerprint(new Uint8Array(31)), c.FingerprintError);
  assert.throws(() => c.canonicalFingerprint("00".repeat(32)), c.FingerprintError);
  assert.throws(() => c.parseFingerprint(undefined), c.FingerprintError);
});

test("fingerprintFromRtc (RTCCertificate.getFingerprints)", () => {
  const { digest_hex: hex, fingerprint } = V.fingerprints.valid[0];
  const value = hex.match(/../g).join(":"); // Chrome writes lowercase
  assert.equal(c.fingerprintFromRtc([{ algorithm: "sha-256", value }]), fingerprint);
  const mixed = [
    { algorithm: "sha-384", value: "AB:".repeat(47) + "AB" },
    { algorithm: "sha-256", value },
  ];
  assert.equal(c.fingerprintFromRtc(mixed), fingerprint);
  assert.throws(() => c.fingerprintFromRtc([]), c.FingerprintError);
  assert.throws(() => c.fingerprintFromRtc([mixed[0]]), c.FingerprintError);
  assert.throws(() => c.fingerprintFromRtc([mixed[1], mixed[1]]), c.FingerprintError);
  assert.throws(() => c.fingerprintFromRtc([{ algorithm: "sha-256", value: "ab" }]), c.FingerprintError);
  assert.throws(() => c.fingerprintFromRtc(null), c.FingerprintError);
});

test("commitments", async () => {
  for (const k of V.commitments.ok) {
    const nonce = fromHex(k.nonce_hex);
    assert.equal(toHex(await c.commitment(k.fingerprint, nonce)), k.commit_hex);
    const independent = createHash("sha256").update(k.fingerprint, "ascii").update(nonce);
    assert.equal(independent.digest("hex"), k.commit_hex);
    assert.equal(await c.verifyReveal(fromHex(k.commit_hex), k.fingerprint, nonce), true);
  }
  for (const k of V.commitments.mismatch) {
    const got = await c.verifyReveal(fromHex(k.commit_hex), k.fingerprint, fromHex(k.nonce_hex));
    assert.equal(got, false, k.why);
  }
  const k = V.commitments.ok[0];
  assert.equal(await c.verifyReveal(k.commit_hex, k.fingerprint, fromHex(k.nonce_hex)), false);
  assert.equal(await c.verifyReveal(fromHex(k.commit_hex), k.fingerprint, new Uint8Array(31)), false);
  await rejectsWith(c.commitment(k.fingerprint.toLowerCase(), fromHex(k.nonce_hex)), c.FingerprintError, "lower");
  await rejectsWith(c.commitment(k.fingerprint, new Uint8Array(31)), c.EncodingError, "short nonce");
});

test("safety codes", async () => {
  for (const k of V.safety_codes) {
    const roomKey = c.parseRoomKey(k.room_key);
    const nc = fromHex(k.nonce_counselor_hex);
    const nk = fromHex(k.nonce_client_hex);
    const code = await c.safetyCode(roomKey, k.fp_counselor, k.fp_client, nc, nk);
    assert.deepEqual({ digits: code.digits, words: [...code.words] }, { digits: k.digits, words: k.words }, k.name);
    assert.ok(Object.isFrozen(code) && Object.isFrozen(code.words));
    // Independent: node's HKDF, then digits and words from the pinned list.
    const salt = Buffer.concat([Buffer.from(k.fp_counselor), Buffer.from(k.fp_client), nc, nk]);
    const okm = Buffer.from(hkdfSync("sha256", roomKey, salt, "ruang/v1/sas", 8));
    assert.equal(okm.toString("hex"), k.okm_hex);
    assert.equal(String(okm.readUInt32BE(0) % 1e6).padStart(6, "0"), k.digits);
    assert.deepEqual([...okm.subarray(4)].map((b) => V.sas_words[b]), k.words);
  }
  const byName = Object.fromEntries(V.safety_codes.map((k) => [k.name, k]));
  const basic = byName.basic;
  const swapped = byName["roles swapped (must differ from basic)"];
  assert.deepEqual([basic.fp_counselor, basic.fp_client], [swapped.fp_client, swapped.fp_counselor]);
  assert.notEqual(basic.digits, swapped.digits);
  assert.ok(V.safety_codes.some((k) => k.digits.startsWith("0")));
  const roomKey = c.parseRoomKey(basic.room_key);
  const nc = fromHex(basic.nonce_counselor_hex);
  const nk = fromHex(basic.nonce_client_hex);
  await rejectsWith(c.safetyCode(roomKey.subarray(1), basic.fp_counselor, basic.fp_client, nc, nk), c.EncodingError, "key");
  await rejectsWith(c.safetyCode(roomKey, basic.fp_counselor.toLowerCase(), basic.fp_client, nc, nk), c.FingerprintError, "fp");
  await rejectsWith(c.safetyCode(roomKey, basic.fp_counselor, basic.fp_client, nc, nk.subarray(1)), c.EncodingError, "nonce");
});

test("SAS word list", () => {
  assert.deepEqual([...c.SAS_WORDS], V.sas_words);
  const digest = createHash("sha256").update(c.SAS_WORDS.join("\n"), "utf8").digest("hex");
  assert.equal(digest, V.sas_words_sha256);
  assert.equal(new Set(c.SAS_WORDS).size, 256);
  assert.ok(c.SAS_WORDS.every((w) => /^[a-z]{3,7}$/.test(w)));
  assert.deepEqual([...c.SAS_WORDS].sort(), [...c.SAS_WORDS]);
  assert.ok(Object.isFrozen(c.SAS_WORDS));
});

test("helpers", () => {
  assert.ok(c.isWellFormed("a\ud83d\udc4bb") && !c.isWellFormed("\ud800") && !c.isWellFormed("\udc00\ud800"));
  assert.ok(c.bytesEqual(new Uint8Array([1, 2]), Buffer.from([1, 2])));
  assert.ok(!c.bytesEqual(new Uint8Array([1, 2]), new Uint8Array([1, 3])));
  assert.ok(!c.bytesEqual(new Uint8Array([1]), new Uint8Array([1, 0])));
  assert.ok(!c.bytesEqual([1], [1]));
});
