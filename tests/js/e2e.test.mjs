// web/static/js/e2e.js: the vectors' channel script, then the same behaviour tests as
// tests/test_crypto_v1.py (SecureChannel, CommitRound), so both implementations agree.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import test from "node:test";

import * as c from "../../web/static/js/crypto.js";
import {
  BindError,
  CommitmentError,
  CommitRound,
  CryptoError,
  EncodingError,
  EnvelopeError,
  FingerprintError,
  ReflectionError,
  ReplayError,
  SecureChannel,
  StaleEpochError,
} from "../../web/static/js/e2e.js";

const V = JSON.parse(readFileSync(new URL("../vectors/v1.json", import.meta.url), "utf8"));
const ROOM_ID = V.rooms.ids_valid[0];
const ROOM_KEY = c.parseRoomKey(V.rooms.keys_valid[0].b64u);
const FP_A = V.fingerprints.valid[0].fingerprint;
const FP_B = V.commitments.ok[1].fingerprint;
const SECRET = "very-private-words";
const utf8 = (s) => new TextEncoder().encode(s);

async function rejectsWith(fn, ErrorClass, what) {
  await assert.rejects(
    async () => fn(),
    (err) => {
      assert.equal(err.constructor, ErrorClass, `${what}: got ${err && err.name}`);
      assert.equal(err.name, ErrorClass.name);
      assert.ok(!String(err.message).includes(SECRET), "an error message holds plaintext");
      return true;
    },
    what,
  );
}

const chan = (id, roomId = ROOM_ID, epoch = undefined) =>
  SecureChannel.create(roomId, ROOM_KEY, id, epoch);
const chat = (text = SECRET) => ({ type: "chat", id: "m1", text });

/** A counselor ("c") and a client ("k") channel that have exchanged hellos. */
async function pair(roomId = ROOM_ID) {
  const ch = await chan("c", roomId);
  const k = await chan("k", roomId);
  await k.open("c", ...(await ch.seal("k", ch.newHello(["ice-restart"]))));
  await ch.open("k", ...(await k.seal("c", k.newHello(["rollback"]))));
  return [ch, k];
}

test("error classes mirror Python", () => {
  assert.ok(new StaleEpochError("x") instanceof ReplayError);
  for (const E of [ReplayError, StaleEpochError, ReflectionError, BindError, CommitmentError]) {
    const err = new E("x");
    assert.ok(err instanceof CryptoError && err instanceof Error);
    assert.equal(err.name, E.name);
  }
  assert.equal(CryptoError, c.CryptoError);
  assert.equal(EnvelopeError, c.EnvelopeError);
});

test("channel script (vectors)", async () => {
  const script = V.channel;
  const key = c.parseRoomKey(script.room_key);
  const peers = script.peers;
  const chans = {};
  for (const [side, p] of Object.entries(peers)) {
    chans[side] = await SecureChannel.create(script.room_id, key, p.id, p.epoch);
  }
  for (const [i, step] of script.steps.entries()) {
    if (step.op === "hello") {
      chans[step.side].newHello(["ice-restart"], { nonce: c.b64uDecode(step.nonce) });
      continue;
    }
    const receiver = chans[step.to];
    const open = () => receiver.open(peers[step.from].id, step.epoch, step.box);
    if (step.expect === "ok") {
      assert.deepStrictEqual(await open(), JSON.parse(step.plaintext), `step ${i}`);
    } else {
      await assert.rejects(open, (err) => err instanceof CryptoError && err.name === step.expect, `step ${i}`);
    }
  }
  const gaps = Object.fromEntries(Object.entries(chans).map(([s, ch]) => [s, ch.gapCount]));
  assert.deepStrictEqual(gaps, script.final_gap_count);
});

test("channel script: JS seals the same plaintexts the vectors hold", async () => {
  // Replaying the script's sends through JS channels gives plaintexts that JSON-equal the
  // vectors' (the byte layout differs only in the random IV, which the vectors fix).
  const script = V.channel;
  const key = c.parseRoomKey(script.room_key);
  const { counselor, client } = script.peers;
  const co = await SecureChannel.create(script.room_id, key, counselor.id, counselor.epoch);
  const cl = await SecureChannel.create(script.room_id, key, client.id, client.epoch);
  const [h1, h2] = script.steps.filter((s) => s.op === "hello");
  const clHello = cl.newHello(["ice-restart"], { nonce: c.b64uDecode(h1.nonce) });
  const coHello = co.newHello(["ice-restart"], { nonce: c.b64uDecode(h2.nonce) });
  const signal = await c.deriveSignalKey(key, script.room_id);
  const sent = [await co.seal(client.id, coHello), await cl.seal(counselor.id, clHello)];
  await cl.open(counselor.id, ...sent[0]);
  await co.open(client.id, ...sent[1]);
  const [epoch, box] = await co.seal(client.id, {
    type: "commit",
    role: "counselor",
    commit: "FU5mpZB--M22ghNYrP9MYOuZoRO0immWQcZve2zLRXI",
  });
  const aad = c.envelopeAad(script.room_id, counselor.id, epoch, client.id);
  const plaintext = new TextDecoder().decode(await c.openBox(signal, aad, box));
  assert.equal(plaintext, script.steps[4].plaintext); // byte-identical to Python's json.dumps
  const helloText = new TextDecoder().decode(
    await c.openBox(signal, c.envelopeAad(script.room_id, counselor.id, epoch, client.id), sent[0][1]),
  );
  assert.equal(helloText, script.steps[2].plaintext);
});

test("round trip and schema", async () => {
  const [ch, k] = await pair();
  const [epoch, box] = await ch.seal("k", chat());
  assert.equal(epoch, ch.epoch);
  assert.equal(c.b64uDecode(epoch).length, 16);
  const got = await k.open("c", epoch, box);
  assert.deepStrictEqual(got, { ...chat(), seq: 2, bind: [ch.helloNonce, k.helloNonce] });
  assert.deepStrictEqual(Object.keys(got).slice(0, 2), ["seq", "type"]);
  const hello = k.peerHello("c");
  assert.equal(hello.epoch, ch.epoch);
  assert.deepStrictEqual([...hello.caps], ["ice-restart"]);
  assert.ok(Object.isFrozen(hello));
  assert.equal(k.peerHello("nobody"), null);
  assert.equal(k.gapCount, 0);
  // Key order on the wire: seq, type, the body in its order (integer-like keys included), bind.
  const signal = await c.deriveSignalKey(ROOM_KEY, ROOM_ID);
  const [, box2] = await ch.seal("k", { type: "x", b: 1, a: [1.5, null, true, "ü"], c: { d: {} } });
  const text = new TextDecoder().decode(await c.openBox(signal, c.envelopeAad(ROOM_ID, "c", ch.epoch, "k"), box2));
  assert.equal(
    text,
    `{"seq":3,"type":"x","b":1,"a":[1.5,null,true,"ü"],"c":{"d":{}},"bind":${JSON.stringify([ch.helloNonce, k.helloNonce])}}`,
  );
});

test("hello answers and extra fields", async () => {
  const co = await chan("counselor");
  const k = await chan("k");
  const hello = { ...k.newHello(["ice-restart"]), name: "Ayu" };
  assert.equal((await co.open("k", ...(await k.seal("counselor", hello)))).name, "Ayu");
  const coHello = co.newHello([]);
  await k.open("counselor", ...(await co.seal("k", coHello)));
  const again = await co.seal("k", coHello); // answering a hello again keeps the current nonce
  assert.equal((await k.open("counselor", ...again)).nonce, co.helloNonce);
  const msg = await k.open("counselor", ...(await co.seal("k", chat())));
  assert.deepStrictEqual(msg.bind, [co.helloNonce, k.helloNonce]);
  await rejectsWith(() => co.seal("k", { ...coHello, nonce: k.helloNonce }), EncodingError, "foreign hello");
  const fresh = await chan("z");
  await rejectsWith(() => fresh.seal("k", { type: "hello", epoch: fresh.epoch }), EncodingError, "no newHello");
  assert.throws(() => fresh.newHello(["x", 1]), EncodingError);
  assert.throws(() => fresh.newHello("ice-restart"), EncodingError);
  assert.throws(() => fresh.newHello([], { nonce: new Uint8Array(31) }), EncodingError);
});

test("tampered box", async () => {
  const [ch, k] = await pair();
  const [epoch, box] = await ch.seal("k", chat());
  const raw = c.b64uDecode(box);
  raw[20] ^= 0x01;
  await rejectsWith(() => k.open("c", epoch, c.b64uEncode(raw)), EnvelopeError, "tampered");
  assert.equal((await k.open("c", epoch, box)).text, SECRET); // the tampered copy changed nothing
});

test("every bit flip is rejected", async () => {
  const [ch, k] = await pair();
  const [epoch, box] = await ch.seal("k", { type: "chat", n: 1 });
  const raw = c.b64uDecode(box);
  for (let bit = 0; bit < raw.length * 8; bit += 7) {
    const copy = raw.slice();
    copy[bit >> 3] ^= 1 << (bit & 7);
    await rejectsWith(() => k.open("c", epoch, c.b64uEncode(copy)), EnvelopeError, `bit ${bit}`);
  }
  assert.equal((await k.open("c", epoch, box)).n, 1);
});

test("relabelled sender", async () => {
  const [ch, k] = await pair();
  const third = await chan("x");
  const [epoch, box] = await ch.seal("k", chat());
  await rejectsWith(() => k.open("x", epoch, box), EnvelopeError, "other sender id");
  await rejectsWith(() => k.open("c", third.epoch, box), EnvelopeError, "other epoch");
  await rejectsWith(() => third.open("c", epoch, box), EnvelopeError, "other recipient");
});

test("reflected message", async () => {
  const [ch] = await pair();
  const [epoch, box] = await ch.seal("k", chat());
  await rejectsWith(() => ch.open("c", epoch, box), ReflectionError, "from myself");
  await rejectsWith(() => ch.open("k", epoch, box), EnvelopeError, "reflected and relabelled");
  await rejectsWith(() => ch.seal("c", chat()), ReflectionError, "to myself");
});

test("replayed envelope", async () => {
  const [ch, k] = await pair();
  const first = await ch.seal("k", chat());
  const second = await ch.seal("k", chat("two"));
  await k.open("c", ...first);
  await k.open("c", ...second);
  await rejectsWith(() => k.open("c", ...first), ReplayError, "first again");
  await rejectsWith(() => k.open("c", ...second), ReplayError, "second again");
});

test("reordered envelope is dropped and the gap counted", async () => {
  const [ch, k] = await pair();
  const one = await ch.seal("k", chat("1"));
  const two = await ch.seal("k", chat("2"));
  const three = await ch.seal("k", chat("3"));
  assert.equal((await k.open("c", ...one)).text, "1");
  assert.equal((await k.open("c", ...three)).text, "3");
  assert.equal(k.gapCount, 1);
  await rejectsWith(() => k.open("c", ...two), ReplayError, "late");
  for (let i = 0; i < 3; i += 1) await ch.seal("k", chat("lost"));
  await k.open("c", ...(await ch.seal("k", chat("4"))));
  assert.equal(k.gapCount, 4);
});

test("concurrent seals take distinct seqs; opens apply in call order", async () => {
  const [ch, k] = await pair();
  const envelopes = await Promise.all([1, 2, 3, 4, 5].map((n) => ch.seal("k", chat(String(n)))));
  const opened = await Promise.all(envelopes.map((e) => k.open("c", ...e)));
  assert.deepStrictEqual(opened.map((m) => [m.seq, m.text]), [[2, "1"], [3, "2"], [4, "3"], [5, "4"], [6, "5"]]);
  assert.equal(k.gapCount, 0);
  // A failing open in the middle of a burst does not disturb the others.
  const more = await Promise.all([6, 7].map((n) => ch.seal("k", chat(String(n)))));
  const results = await Promise.allSettled([
    k.open("c", ...more[0]),
    k.open("c", ...envelopes[0]),
    k.open("c", ...more[1]),
  ]);
  assert.deepStrictEqual(results.map((r) => r.status), ["fulfilled", "rejected", "fulfilled"]);
  assert.ok(results[1].reason instanceof ReplayError);
});

test("envelope moved to another room", async () => {
  const [ch] = await pair();
  const [, k2] = await pair(V.rooms.ids_valid[1]); // same key, other room id
  const [epoch, box] = await ch.seal("k", chat());
  await rejectsWith(() => k2.open("c", epoch, box), EnvelopeError, "other room");
});

test("earlier connection replayed after a new hello", async () => {
  const ch = await chan("c");
  const k = await chan("k");
  const cHello = await ch.seal("k", ch.newHello([]));
  await k.open("c", ...cHello);
  await ch.open("k", ...(await k.seal("c", k.newHello([]))));
  const delivered = await ch.seal("k", chat("seen"));
  await k.open("c", ...delivered);
  const heldBack = await ch.seal("k", chat("held back by the server"));
  // The client says hello again (a new connection): the held-back envelope is now refused.
  await ch.open("k", ...(await k.seal("c", k.newHello([]))));
  await rejectsWith(() => k.open("c", ...heldBack), BindError, "held back");
  await rejectsWith(() => k.open("c", ...delivered), ReplayError, "delivered");
  // A new page (new epoch, same participant id) refuses the old connection's envelopes too.
  const kNew = await chan("k");
  const hello = kNew.newHello([]);
  await kNew.open("c", ...cHello); // the old hello itself is harmless...
  for (const envelope of [delivered, heldBack]) {
    await rejectsWith(() => kNew.open("c", ...envelope), BindError, "old connection"); // ...the rest is not
  }
  await ch.open("k", ...(await kNew.seal("c", hello)));
  assert.equal((await kNew.open("c", ...(await ch.seal("k", chat("fresh"))))).text, "fresh");
  const [, oldBox] = await k.seal("c", chat());
  await rejectsWith(() => ch.open("k", k.epoch, oldBox), StaleEpochError, "old page");
});

test("bind required before hello, and stale epochs", async () => {
  const lone = await chan("c");
  await rejectsWith(() => lone.seal("k", chat()), BindError, "before hello");
  const [ch, k] = await pair();
  const old = await ch.seal("k", chat("from the old page"));
  const reloaded = await chan("c");
  await k.open("c", ...(await reloaded.seal("k", reloaded.newHello([]))));
  await rejectsWith(() => k.open("c", ...old), StaleEpochError, "old page");
  await rejectsWith(() => reloaded.seal("k", chat()), BindError, "no client hello yet");
});

test("forged bodies are refused", async () => {
  const [ch, k] = await pair();
  const signal = await c.deriveSignalKey(ROOM_KEY, ROOM_ID);
  const raw = async (body, epoch = ch.epoch) => {
    const bytes = typeof body === "string" ? utf8(body) : body;
    return [epoch, await c.seal(signal, c.envelopeAad(ROOM_ID, "c", epoch, "k"), bytes)];
  };
  const bodies = [
    "not json",
    "[1]",
    "null",
    '"text"',
    '{"seq":true,"type":"x"}',
    '{"seq":9,"type":"x","n":NaN}',
    '{"seq":9}',
    '{"seq":9,"type":7}',
    '{"seq":0,"type":"x"}',
    '{"seq":-3,"type":"x"}',
    '{"seq":"9","type":"x"}',
    '{"seq":9.5,"type":"x"}',
    '{"seq":9.0,"type":"x"}', // Python's json reads a float: refused there, so here too
    '{"seq":9e0,"type":"x"}',
    '{"seq":9,"type":"x","seq":1.0E1}', // the last duplicate wins, in both
    '{"seq":9007199254740992,"type":"x"}',
    "\ufeff{\"seq\":9,\"type\":\"x\"}", // a BOM: Python's json refuses it
    new Uint8Array([0xff, 0xfe]),
    new Uint8Array([0x7b, 0xed, 0xa0, 0x80, 0x7d]), // an encoded surrogate is not UTF-8
  ];
  for (const body of bodies) {
    await rejectsWith(async () => k.open("c", ...(await raw(body))), EnvelopeError, String(body));
  }
  // Valid but unusual spellings are accepted (and Python accepts them too).
  const bind = JSON.stringify([ch.helloNonce, k.helloNonce]);
  const odd = ` { "type" : "x" , "seq" : 50 , "n" : {"seq": 1.5, "s": "}\\"{"} , "bind" : ${bind} } `;
  assert.equal((await k.open("c", ...(await raw(odd)))).seq, 50);
  const other = (await chan("c")).epoch;
  const badHello = JSON.stringify({ seq: 90, type: "hello", epoch: other, nonce: c.b64uEncode(new Uint8Array(32)), caps: [] });
  await rejectsWith(async () => k.open("c", ...(await raw(badHello))), EnvelopeError, "hello from another epoch");
  const helloBind = JSON.stringify({ seq: 91, type: "hello", epoch: ch.epoch, nonce: ch.helloNonce, caps: [], bind: [] });
  await rejectsWith(async () => k.open("c", ...(await raw(helloBind))), EnvelopeError, "hello with bind");
  const helloCaps = JSON.stringify({ seq: 92, type: "hello", epoch: ch.epoch, nonce: ch.helloNonce, caps: [1] });
  await rejectsWith(async () => k.open("c", ...(await raw(helloCaps))), EnvelopeError, "hello caps");
  await rejectsWith(async () => k.open("c", "not-an-epoch", (await ch.seal("k", chat()))[1]), EnvelopeError, "epoch");
  await rejectsWith(async () => k.open("", ...(await ch.seal("k", chat()))), EnvelopeError, "empty sender id");
  // Correctly bound, but from an epoch that never said hello (e.g. a second page of "c").
  const bound = JSON.stringify({ seq: 1, type: "chat", bind: [ch.helloNonce, k.helloNonce] });
  await rejectsWith(async () => k.open("c", ...(await raw(bound, other))), BindError, "epoch without hello");
  const bindWrongShape = `{"seq":95,"type":"chat","bind":${JSON.stringify([ch.helloNonce, k.helloNonce, "x"])}}`;
  await rejectsWith(async () => k.open("c", ...(await raw(bindWrongShape))), BindError, "bind of three");
});

test("what a sender may not seal, and no seq is used up by a refused seal", async () => {
  const [ch, k] = await pair();
  const notJson = [
    { type: "chat", seq: 99 },
    { type: "chat", bind: [] },
    { type: 5 },
    { text: "no type" },
    { type: "chat", x: new Date(0) },
    { type: "chat", x: undefined },
    { type: "chat", x: () => 1 },
    { type: "chat", x: 1n },
    { type: "chat", x: NaN },
    { type: "chat", x: [1, , 3] }, // a hole
    { type: "chat", x: "\ud800" },
    { type: "chat", ["\udc00"]: 1 },
    { type: "\ud800" },
  ];
  const cyclic = { type: "chat", inner: {} };
  cyclic.inner.self = cyclic.inner;
  notJson.push(cyclic);
  for (const msg of notJson) await rejectsWith(() => ch.seal("k", msg), EncodingError, "seal");
  await rejectsWith(() => ch.seal("k", ["chat"]), EncodingError, "an array");
  await rejectsWith(() => ch.seal("", chat()), BindError, "to nobody"); // as in Python: bind first
  const hello = { type: "hello", epoch: ch.epoch, nonce: ch.helloNonce, caps: [] };
  await rejectsWith(() => ch.seal("", hello), EncodingError, "empty recipient id");
  assert.equal((await k.open("c", ...(await ch.seal("k", chat())))).seq, 2);
  assert.equal(k.gapCount, 0);
});

test("create() validates its arguments", async () => {
  await rejectsWith(() => SecureChannel.create(ROOM_ID, ROOM_KEY, "c", "short"), EncodingError, "epoch");
  await rejectsWith(() => SecureChannel.create(ROOM_ID, ROOM_KEY, ""), EncodingError, "empty id");
  await rejectsWith(() => SecureChannel.create("bad", ROOM_KEY, "c"), EncodingError, "room id");
  await rejectsWith(() => SecureChannel.create(ROOM_ID, ROOM_KEY.subarray(2), "c"), EncodingError, "key");
  assert.throws(() => new SecureChannel(ROOM_ID, ROOM_KEY, "c"), TypeError);
  const ch = await chan("c");
  assert.equal(ch.helloNonce, null);
  assert.deepStrictEqual([ch.roomId, ch.myId], [ROOM_ID, "c"]);
  assert.throws(() => {
    ch.epoch = "x"; // modules are strict: a frozen property throws
  }, TypeError);
});

// --- CommitRound ---------------------------------------------------------------------------

async function runRound(fpCounselor, fpClient) {
  const [ch, k] = await pair();
  const rc = new CommitRound("counselor", fpCounselor);
  const rk = new CommitRound("client", fpClient);
  const kCommit = await k.open("c", ...(await ch.seal("k", await rc.commitMsg())));
  const cCommit = await ch.open("k", ...(await k.seal("c", await rk.commitMsg())));
  rk.onCommit(kCommit);
  rc.onCommit(cCommit);
  await rk.onReveal(await k.open("c", ...(await ch.seal("k", rc.revealMsg()))));
  await rc.onReveal(await ch.open("k", ...(await k.seal("c", rk.revealMsg()))));
  return [rc, rk];
}

test("commit round gives equal codes", async () => {
  const [rc, rk] = await runRound(FP_A, FP_B);
  assert.ok(rc.verified && rk.verified);
  assert.deepStrictEqual([rc.peerFingerprint, rk.peerFingerprint], [FP_B, FP_A]);
  const code = await rc.safetyCode(ROOM_KEY);
  assert.deepStrictEqual(await rk.safetyCode(ROOM_KEY), code);
  assert.match(code.digits, /^\d{6}$/);
  assert.ok(code.words.every((w) => c.SAS_WORDS.includes(w)));
  const [again] = await runRound(FP_A, FP_B); // fresh nonces per round: a new code
  assert.notDeepStrictEqual(await again.safetyCode(ROOM_KEY), code);
});

test("commit round with fixed nonces matches the safety-code vector", async () => {
  const v = V.safety_codes[0];
  const nc = new Uint8Array(Buffer.from(v.nonce_counselor_hex, "hex"));
  const nk = new Uint8Array(Buffer.from(v.nonce_client_hex, "hex"));
  const rc = new CommitRound("counselor", v.fp_counselor, { nonce: nc });
  const rk = new CommitRound("client", v.fp_client, { nonce: nk });
  const commit = await rc.commitMsg();
  const expected = createHash("sha256").update(v.fp_counselor).update(nc).digest("base64url");
  assert.deepStrictEqual(commit, { type: "commit", role: "counselor", commit: expected });
  rk.onCommit(commit);
  rc.onCommit(await rk.commitMsg());
  await rk.onReveal(rc.revealMsg());
  await rc.onReveal(rk.revealMsg());
  const key = c.parseRoomKey(v.room_key);
  for (const round of [rc, rk]) {
    const code = await round.safetyCode(key);
    assert.deepStrictEqual([code.digits, [...code.words]], [v.digits, v.words]);
  }
});

test("swapped fingerprint at reveal", async () => {
  const rc = new CommitRound("counselor", FP_A);
  const rk = new CommitRound("client", FP_B);
  rc.onCommit(await rk.commitMsg());
  rk.onCommit(await rc.commitMsg());
  const digest = new Uint8Array(createHash("sha256").update("attacker").digest());
  const reveal = { ...rc.revealMsg(), fingerprint: c.canonicalFingerprint(digest) };
  await rejectsWith(() => rk.onReveal(reveal), CommitmentError, "swapped fingerprint");
  assert.ok(!rk.verified);
  assert.equal(rk.peerFingerprint, null);
  await rejectsWith(() => rk.safetyCode(ROOM_KEY), CommitmentError, "code before verified");
  const zero = c.b64uEncode(new Uint8Array(32));
  await rejectsWith(() => rk.onReveal({ ...rc.revealMsg(), nonce: zero }), CommitmentError, "other nonce");
  for (const bad of [
    { ...rc.revealMsg(), type: "commit" },
    { ...rc.revealMsg(), fingerprint: FP_A.toLowerCase() },
    { ...rc.revealMsg(), fingerprint: 5 },
    { ...rc.revealMsg(), nonce: "short" },
    null,
  ]) {
    await rejectsWith(() => rk.onReveal(bad), CommitmentError, "malformed reveal");
  }
  await rk.onReveal(rc.revealMsg()); // the genuine reveal still verifies
  assert.equal(rk.peerFingerprint, FP_A);
});

test("commit round order and roles", async () => {
  const rc = new CommitRound("counselor", FP_A);
  const rk = new CommitRound("client", FP_B);
  assert.throws(() => rc.revealMsg(), CommitmentError); // not before holding the other's commit
  const zero = c.b64uEncode(new Uint8Array(32));
  await rejectsWith(() => rc.onReveal({ type: "reveal", fingerprint: FP_B, nonce: zero }), CommitmentError, "early");
  assert.throws(() => rc.onCommit({ type: "commit", role: "counselor", commit: zero }), CommitmentError);
  assert.throws(() => rc.onCommit({ type: "commit", role: "client", commit: "short" }), CommitmentError);
  assert.throws(() => rc.onCommit({ type: "commit", role: "admin", commit: zero }), CommitmentError);
  assert.throws(() => rc.onCommit({ type: "reveal", role: "client", commit: zero }), CommitmentError);
  assert.throws(() => new CommitRound("client", FP_A.toLowerCase()), FingerprintError);
  assert.throws(() => new CommitRound("admin", FP_A), TypeError);
  assert.throws(() => new CommitRound("client", FP_A, { nonce: new Uint8Array(8) }), EncodingError);
  rc.onCommit(await rk.commitMsg());
  rc.onCommit(await rk.commitMsg()); // the same commit again is harmless
  assert.throws(() => rc.revealMsg(), CommitmentError); // nor before sending my own commit
  await rc.commitMsg();
  const other = await new CommitRound("client", FP_B).commitMsg();
  assert.throws(() => rc.onCommit(other), CommitmentError); // a second, different commit
  assert.equal(rc.revealMsg().fingerprint, FP_A);
});

test("commit round refuses my own fingerprint", async () => {
  const rc = new CommitRound("counselor", FP_A);
  const mirror = new CommitRound("client", FP_A);
  rc.onCommit(await mirror.commitMsg());
  mirror.onCommit(await rc.commitMsg());
  await rejectsWith(() => rc.onReveal(mirror.revealMsg()), CommitmentError, "mirror");
});
