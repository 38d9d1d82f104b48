// session.js: the in-envelope messages (signaling/peer/inner.py), reliable chat, and the hello
// exchange between two JS sessions through an in-memory stand-in for the server (it stamps
// `from`, holds envelopes for an absent counselor, admits). No browser, no network.
import assert from "node:assert/strict";
import test from "node:test";

import {
  ChatBook,
  InnerMessageError,
  MAX_CHAT,
  Session,
  cleanName,
  fromDataChannel,
  lowerLevel,
  newId,
  parseInner,
  peerName,
  splitChat,
} from "../../web/static/js/session.js";
import { b64uEncode } from "../../web/static/js/crypto.js";

const ROOM = "AAAAAAAAAAAAAAAAAAAAAA";
const KEY = b64uEncode(new Uint8Array(32).fill(7));

// --- parseInner ---------------------------------------------------------------------------------

test("parseInner accepts every message inner.py accepts, keeping only known fields", () => {
  const round = newId();
  assert.match(round, /^[A-Za-z0-9_-]{16}$/);
  assert.deepEqual(parseInner({ type: "offer", round, sdp: "v=0", extra: 1 }), {
    type: "offer", round, sdp: "v=0",
  });
  assert.deepEqual(parseInner({ type: "answer", round, sdp: "" }), { type: "answer", round, sdp: "" });
  assert.deepEqual(
    parseInner({ type: "candidate", round, candidate: "", sdpMid: null, sdpMLineIndex: null }),
    { type: "candidate", round, candidate: "", sdpMid: null, sdpMLineIndex: null },
  );
  assert.deepEqual(
    parseInner({ type: "candidate", round, candidate: "candidate:1 1 udp 1 198.18.0.1 9 typ host", sdpMid: "0", sdpMLineIndex: 0 }).sdpMid,
    "0",
  );
  assert.deepEqual(parseInner({ type: "rebuild", round: "none" }), { type: "rebuild", round: "none" });
  assert.deepEqual(parseInner({ type: "chat", id: "abc", text: "hi" }), { type: "chat", id: "abc", text: "hi" });
  assert.deepEqual(parseInner({ type: "ack", id: "abc" }), { type: "ack", id: "abc" });
  for (const level of ["video", "low-video", "audio", "text"]) {
    assert.equal(parseInner({ type: "mode", level }).level, level);
  }
  assert.deepEqual(parseInner({ type: "mode", level: "audio", reason: "network" }),
    { type: "mode", level: "audio", reason: "network" });
  assert.equal(parseInner({ type: "bye" }).reason, "left");
  assert.equal(parseInner({ type: "bye", reason: "security" }).reason, "security");
});

test("parseInner refuses what inner.py refuses", () => {
  const bad = [
    { type: "offer", round: "has space", sdp: "" },
    { type: "offer", round: "x".repeat(65), sdp: "" },
    { type: "offer", round: "r", sdp: "x".repeat(40001) },
    { type: "answer", round: "r" },
    { type: "candidate", round: "r", candidate: "x".repeat(1001), sdpMid: null, sdpMLineIndex: null },
    { type: "candidate", round: "r", candidate: "", sdpMid: 3, sdpMLineIndex: null },
    { type: "candidate", round: "r", candidate: "", sdpMid: null, sdpMLineIndex: 64 },
    { type: "candidate", round: "r", candidate: "", sdpMid: null, sdpMLineIndex: 1.5 },
    { type: "chat", id: "a", text: "x".repeat(MAX_CHAT + 1) },
    { type: "chat", id: "", text: "x" },
    { type: "chat", id: "a", text: 5 },
    { type: "ack" },
    { type: "mode", level: "hd" },
    { type: "mode", level: "audio", reason: "bored" },
    { type: "bye", reason: "bored" },
    { type: "hug" },
    null,
  ];
  for (const msg of bad) assert.throws(() => parseInner(msg), InnerMessageError, JSON.stringify(msg));
});

test("lengths are code points, as in Python", () => {
  const emoji = "\u{1F600}";
  assert.equal(parseInner({ type: "chat", id: "a", text: emoji.repeat(MAX_CHAT) }).text.length, 2 * MAX_CHAT);
  assert.equal(peerName({ name: emoji.repeat(64) }), emoji.repeat(64));
  assert.equal(peerName({ name: emoji.repeat(65) }), null);
  assert.equal(peerName({ name: "" }), null);
  assert.equal(peerName({ name: 7 }), null);
  assert.equal(cleanName(`  ${"n".repeat(70)}  `), "n".repeat(64));
});

test("splitChat cuts long texts at code points", () => {
  const pieces = splitChat("a".repeat(10000));
  assert.deepEqual(pieces.map((p) => p.length), [4000, 4000, 2000]);
  const emoji = splitChat("\u{1F600}".repeat(4001));
  assert.deepEqual(emoji.map((p) => Array.from(p).length), [4000, 1]);
  assert.equal(emoji.join(""), "\u{1F600}".repeat(4001));
});

test("data channel messages are chat or ack only", () => {
  assert.deepEqual(fromDataChannel('{"type":"ack","id":"x"}'), { type: "ack", id: "x" });
  assert.throws(() => fromDataChannel('{"type":"offer","round":"r","sdp":""}'), InnerMessageError);
  assert.throws(() => fromDataChannel("not json"), InnerMessageError);
});

test("lowerLevel picks the lower of two levels", () => {
  assert.equal(lowerLevel("video", "audio"), "audio");
  assert.equal(lowerLevel("text", "video"), "text");
  assert.equal(lowerLevel("low-video", "video"), "low-video");
});

test("ChatBook re-sends until acknowledged and shows each id once", () => {
  const book = new ChatBook();
  const m = book.add("hello");
  assert.deepEqual(book.due(0, 2000), [m]);
  assert.equal(book.attempts(m.id), 0, "the first send may take the data channel");
  book.markSent(m.id, 0);
  assert.equal(book.attempts(m.id), 1, "re-sends go through the relay");
  assert.deepEqual(book.due(1000, 2000), []);
  assert.deepEqual(book.due(2000, 2000), [m]);
  assert.equal(book.onAck(m.id), true);
  assert.equal(book.onAck(m.id), false);
  assert.equal(book.pending, 0);
  assert.equal(book.onChat("x"), true);
  assert.equal(book.onChat("x"), false);
});

// --- two sessions through a stand-in server ------------------------------------------------------

class Hub {
  constructor() {
    this.counselor = null;
    this.clients = new Map();
    this.held = [];
    this.next = 0;
    this.log = []; // [from, to, type-free length] only: the hub never sees plaintext
  }

  deliver(sig, type, detail) {
    setTimeout(() => sig.emit(type, detail), 0);
  }

  join(sig) {
    if (sig.role === "counselor") {
      this.counselor = sig;
      sig.id = "counselor";
      const peers = [...this.clients.values()].map((c) => ({
        id: c.id, role: "client", state: c.state, connected: true,
      }));
      this.deliver(sig, "joined", { id: "counselor", role: "counselor", state: "admitted", resumed: false, peers });
      for (const c of this.clients.values()) {
        this.deliver(c, "peer", { id: "counselor", role: "counselor", state: "admitted", connected: true });
      }
      for (const [from, epoch, box] of this.held.splice(0)) this.deliver(sig, "relay", { from, epoch, box });
      return;
    }
    this.next += 1;
    sig.id = `client${this.next}`;
    sig.state = "waiting";
    this.clients.set(sig.id, sig);
    const peers = this.counselor ? [{ id: "counselor", role: "counselor", state: "admitted", connected: true }] : [];
    this.deliver(sig, "joined", { id: sig.id, role: "client", state: "waiting", resumed: false, peers });
    if (this.counselor) {
      this.deliver(this.counselor, "peer", { id: sig.id, role: "client", state: "waiting", connected: true });
    }
  }

  relay(sig, to, epoch, box) {
    this.log.push([sig.id, to, box.length]);
    const target = to === "counselor" ? this.counselor : this.clients.get(to);
    if (!target) {
      if (to === "counselor") this.held.push([sig.id, epoch, box]);
      return true;
    }
    this.deliver(target, "relay", { from: sig.id, epoch, box });
    return true;
  }

  admit(id) {
    const c = this.clients.get(id);
    c.state = "admitted";
    this.deliver(c, "admitted", { peers: [] });
    this.deliver(this.counselor, "peer", { id, role: "client", state: "admitted", connected: true });
  }
}

class FakeSignaling extends EventTarget {
  constructor(hub, role) {
    super();
    this.hub = hub;
    this.role = role;
    this.id = null;
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  start() { this.hub.join(this); }
  relay(to, epoch, box) { return this.hub.relay(this, to, epoch, box); }
  admit(id) { this.hub.admit(id); }
  decline() {}
  remove() {}
  end() {}
  leave() {}
}

async function until(predicate, ms = 5000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 10));
  }
}

function events(target, type) {
  const seen = [];
  target.addEventListener(type, (e) => seen.push(e.detail));
  return seen;
}

function fakeCall(session) {
  const call = {
    pairs: 0,
    commits: [],
    async onPeerHello() {},
    async onNewPair() { call.pairs += 1; },
    async onCommit(msg) { call.commits.push(msg); },
    async onReveal() {},
    sendOnChannel() { return false; },
    async tick() {},
  };
  session.attachCall(call);
  return call;
}

test("a waiting client's name and texts reach a counselor who arrives later; admission settles a new pair", async (t) => {
  const hub = new Hub();
  const client = new Session({
    roomId: ROOM, roomKey: KEY, role: "client", name: "Dewi <b>", signaling: new FakeSignaling(hub, "client"),
  });
  const counselor = new Session({ roomId: ROOM, roomKey: KEY, role: "counselor", signaling: new FakeSignaling(hub, "counselor") });
  t.after(() => {
    client.finish("left");
    counselor.finish("left");
  });
  const waiting = events(client, "waiting");
  const states = events(client, "chat-state");
  const rosters = events(counselor, "roster");
  const chats = events(counselor, "chat");

  client.start();
  await until(() => waiting.length === 1);
  assert.equal(waiting[0].reason, "counselor-away");
  const [sent] = client.sendChat("early text");

  counselor.start();
  await until(() => rosters.some((r) => r.peers.some((p) => p.name === "Dewi <b>")));
  await until(() => chats.length === 1);
  assert.equal(chats[0].text, "early text");
  assert.equal(chats[0].peer, "client1");
  await until(() => states.some((s) => s.id === sent.id && s.state === "delivered"));
  await until(() => waiting.length === 2);
  assert.equal(waiting[1].reason, "knocked");

  // Admission: each side makes a fresh hello; the new pair starts the call once on each side.
  const counselorCall = fakeCall(counselor);
  const clientCall = fakeCall(client);
  const calls = events(client, "call");
  counselor.admit("client1");
  await until(() => calls.length === 1 && counselorCall.pairs === 1 && clientCall.pairs === 1);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(counselorCall.pairs, 1);
  assert.equal(clientCall.pairs, 1);
  assert.equal(counselor.callPeer, "client1");
  assert.equal(client.rejected + counselor.rejected, 0);

  // The relay carried only boxes: nothing in the clear.
  for (const [, , length] of hub.log) assert.ok(length > 28);
});

test("a commit sealed for the call reaches the call; an unusable key is refused", async (t) => {
  const hub = new Hub();
  const counselor = new Session({ roomId: ROOM, roomKey: KEY, role: "counselor", signaling: new FakeSignaling(hub, "counselor") });
  const client = new Session({ roomId: ROOM, roomKey: KEY, role: "client", signaling: new FakeSignaling(hub, "client") });
  t.after(() => {
    client.finish("left");
    counselor.finish("left");
  });
  counselor.start();
  await until(() => counselor.id === "counselor");
  client.start();
  await until(() => counselor.links.has("client1") && counselor.paired("client1") && client.paired("counselor"));
  const clientCall = fakeCall(client);
  fakeCall(counselor);
  counselor.admit("client1");
  await until(() => client.inCall && counselor.inCall);
  await until(() => counselor.paired("client1"));
  assert.equal(await counselor.sendInner("client1", { type: "commit", role: "counselor", commit: "x", round: "r1" }), true);
  await until(() => clientCall.commits.length === 1);
  assert.equal(clientCall.commits[0].round, "r1");
  assert.throws(() => new Session({ roomId: ROOM, roomKey: "short", role: "client", signaling: new FakeSignaling(hub, "client") }));
});
