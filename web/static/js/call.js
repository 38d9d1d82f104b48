// The call with one other participant: commit rounds and the RTCPeerConnection of each, with
// the committed safety code before any SDP, perfect negotiation, ICE restart or rebuild, the
// data channel and the media path. No DOM; never logs SDP, candidates, names or chat.
//
// Order (ARCHITECTURE.md "Safety code and negotiation order"):
// * Each round is a new RTCPeerConnection with a fresh certificate
//   (RTCPeerConnection.generateCertificate, passed in `certificates`). Its sha-256 fingerprint is
//   committed (commit), revealed after holding the other's commit (reveal), and checked: no SDP
//   is sent before both reveals are verified, and every SDP must carry exactly one sha-256
//   fingerprint per m-section, equal to the revealed one (crypto.js fingerprintFromSdp). Anything
//   else is evidence of interception: the round is closed and a `bye {reason: "security"}` sent.
// * The counselor starts a round when a hello pair settles during the call (unless its round is
//   connected), when asked to `rebuild`, and with a new hello when a round stalls. A `commit` with
//   an unknown round id joins that round; when both start one at once the counselor's wins.
//   The counselor makes the first offer, once the client's reveal is verified.
// * Browser <-> browser (the other hello has `ice-restart` and `rollback`): perfect negotiation,
//   the client is the polite peer; when the path fails either side calls restartIce(), again
//   every ICE_RESTART_RETRY_MS while it does not reconnect; after ICE_RESTARTS_MAX restarts the
//   round is rebuilt. Candidates trickle.
// * With a peer whose hello lacks those capabilities (aiortc, the Python peer): nobody ever
//   renegotiates; when the path fails either side sends `rebuild`, both close, a new commit round
//   runs and the counselor offers again. Such a peer does not trickle: SDP is sent once ICE
//   gathering completes (bounded), with the candidates inside.
// * A peer whose hello has `text-only` gets no peer connection: chat goes over the server relay.
//
// The session (session.js) calls the on*() methods from its one serial queue, so they never
// overlap; peer connection events are fed into that same queue.

import { CommitRound, CommitmentError } from "./e2e.js";
import * as ladder from "./ladder.js";
import { StatsSampler } from "./quality.js";
import { FingerprintError, fingerprintFromRtc, fingerprintFromSdp } from "./crypto.js";
import {
  CAP_ICE_RESTART,
  CAP_ROLLBACK,
  CAP_TEXT_ONLY,
  InnerMessageError,
  LEVELS,
  isId,
  newId,
} from "./session.js";

export const CHAT_LABEL = "chat";
export const STALL_MS = 10000;
export const ICE_RESTART_AFTER_MS = 4000; // browser peer: not connected this long -> restartIce
export const ICE_RESTART_RETRY_MS = 5000; // ... again this often while it does not reconnect
export const ICE_RESTARTS_MAX = 4; // ... then the round is rebuilt
export const REBUILD_AFTER_MS = 15000; // rebuild peer: not connected this long -> rebuild
const PATH_POLL_MS = 2000;
const GATHER_MAX_MS = 4000;
const MEDIA_WAIT_MS = 20000;
const MAX_PENDING_CANDIDATES = 200;
const LOW_VIDEO = { maxBitrate: 150000, scaleResolutionDownBy: 2, maxFramerate: 15 };
// Audio only: Opus at 20 kbit/s (speech stays clear; with packet overhead each direction needs
// about 40 kbit/s, so a 100 kbit/s link carries both).
const LOW_AUDIO = { maxBitrate: 20000 };
export const SAMPLE_MS = 1000; // getStats() into the quality ladder about this often
const QUALITY_LOG_MAX = 600; // tests and the bench may read the last samples (no content)

export class CallError extends Error {
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}

/** Evidence of interception: an SDP fingerprint or a reveal that does not match. */
export class SecurityError extends CallError {}

function timeout(ms, value) {
  return new Promise((resolve) => setTimeout(() => resolve(value), ms));
}

/** "relayed" if the selected candidate pair uses a TURN relay, else "direct"; null if none yet. */
export async function selectedPath(pc) {
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId && !pair) {
      pair = stats.get(s.selectedCandidatePairId) || null;
    }
  });
  if (!pair) {
    stats.forEach((s) => {
      if (!pair && s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s;
    });
  }
  if (!pair) return null;
  const local = stats.get(pair.localCandidateId);
  const remote = stats.get(pair.remoteCandidateId);
  const relay = (c) => Boolean(c && c.candidateType === "relay");
  return relay(local) || relay(remote) ? "relayed" : "direct";
}

class Round {
  constructor(id, startedByMe, peerEpoch, pc, fingerprint, commit) {
    this.id = id;
    this.startedByMe = startedByMe;
    this.peerEpoch = peerEpoch;
    this.pc = pc;
    this.fingerprint = fingerprint;
    this.commit = commit;
    this.channel = null;
    this.revealed = false;
    this.offered = false;
    this.remoteSet = false;
    this.negotiated = false; // the first offer/answer completed
    this.localSent = false;
    this.localQueue = [];
    this.pendingRemote = [];
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.connected = false;
    this.closed = false;
    this.progressAt = Date.now();
    this.disconnectedAt = null;
    this.restartedAt = null;
    this.restarts = 0;
    this.pathPolledAt = 0;
    this.sampler = new StatsSampler();
    this.sampledAt = 0;
    this.senderState = new Map(); // sender -> "on"|"low"|"off" last applied
    this.paramChain = Promise.resolve();
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    try {
      if (this.channel) this.channel.close();
    } catch {
      /* closing */
    }
    try {
      this.pc.close();
    } catch {
      /* closing */
    }
  }
}

/**
 * Events (CustomEvent.detail):
 *   safety-code {digits, words, changed}    a round's code (changed: it replaced an earlier one)
 *   state  {state: "connecting"|"connected"|"reconnecting"}
 *   path   {path: "direct"|"relayed"|"server-relay"}
 *   remote-stream {stream}
 *   level  {level, own, peer, cause, ownCause, peerReason}
 *                                           the mode the call runs at (the lower of both);
 *                                           cause: "mine"|"theirs" (whose level decided),
 *                                           ownCause: "normal"|"network"|"manual",
 *                                           peerReason: "network"|"manual"|null
 *   quality {sample, level}                 a ladder sample (figures only, no content)
 *   bye    {reason}                         the other side said goodbye
 *   security {error?}                       a check failed here (error: a SecurityError) or
 *                                           on the other side: the call was not connected
 *   fault  {name}                           a local WebRTC error (no content)
 */
export class Call extends EventTarget {
  /**
   * session: the Session; peerId: the other participant; media: a Promise of the local
   * MediaStream (or null: receive only); iceServers: RTCIceServer list (none: host candidates).
   * iceConfig (turn.js): async () => {iceServers, iceTransportPolicy?}, asked for each new round
   * (fresh TURN credentials); it replaces iceServers when given.
   */
  constructor({ session, peerId, media, iceServers = [], iceConfig = null, level = "video", resumed = false }) {
    super();
    this.session = session;
    this.peerId = peerId;
    this.role = session.role;
    this.polite = this.role === "client";
    this.media = Promise.resolve(media).catch(() => null);
    this.stream = null;
    this.iceServers = iceServers;
    this.iceConfig = iceConfig;
    this.round = null;
    this.connected = false;
    this.everConnected = false;
    this.path = null;
    // My level: the quality ladder (ladder.js) over my stats, capped by the person's choice.
    this.ladder = ladder.initialState("video", LEVELS.includes(level) ? level : "video");
    this.announced = null; // the last {level, reason} sent in a mode message
    this.peerLevel = null;
    this.peerReason = null;
    this.level = null;
    this.levelKey = null;
    this.bye = null;
    this.securityFailed = false;
    this.lastCode = null;
    this.codeChangedPending = resumed;
    this.lastStallAction = Date.now();
    this.closed = false;
  }

  emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  peerCaps() {
    const hello = this.session.peerHello(this.peerId);
    return hello ? hello.caps : [];
  }

  /** The other side can renegotiate (rollback, ICE restart): a browser. */
  renegotiable() {
    const caps = this.peerCaps();
    return caps.includes(CAP_ICE_RESTART) && caps.includes(CAP_ROLLBACK);
  }

  textOnly() {
    return this.peerCaps().includes(CAP_TEXT_ONLY);
  }

  // --- from the session ---------------------------------------------------------------------------

  async onPeerHello(hello) {
    if (this.round && this.round.peerEpoch !== hello.epoch) {
      this.dropRound(); // the other side is a new instance: the old connection is gone
    }
  }

  async onNewPair() {
    if (this.closed || this.securityFailed) return;
    this.lastStallAction = Date.now();
    this.bye = null;
    if (this.textOnly()) {
      this.dropRound();
      if (!this.connected) this.setConnected("server-relay");
      return;
    }
    const r = this.round;
    if (this.role === "counselor" && (!r || r.closed || !r.connected)) {
      await this.startRound();
    } else if (r && !r.closed && r.negotiated && this.renegotiable()
      && r.pc.signalingState === "have-local-offer") {
      // An ICE restart's offer (or the answer to it) went into a signaling socket that died:
      // a resume does not bring that back, and no later restart can start while this one
      // waits. Offer it again (the same description, with the candidates gathered since);
      // if both sides do, perfect negotiation settles it.
      await this.sendLocalDescription(r, "offer");
    }
  }

  async startRound() {
    if (this.closed || this.securityFailed) return;
    this.dropRound();
    const r = await this.newRound(newId(), true);
    if (!r) return;
    this.round = r;
    await this.send({ ...(await r.commit.commitMsg()), round: r.id });
  }

  async onCommit(msg) {
    if (this.closed || this.securityFailed || this.textOnly()) return;
    const rid = msg.round;
    if (!isId(rid)) throw new InnerMessageError("commit without a round");
    let r = this.round;
    if (!r || r.closed || r.id !== rid) {
      if (this.role === "counselor" && r && !r.closed && r.startedByMe && !r.connected) {
        return; // mine is pending: the counselor's round wins
      }
      this.dropRound();
      r = await this.newRound(rid, false);
      if (!r) return;
      this.round = r;
      r.commit.onCommit(msg);
      await this.send({ ...(await r.commit.commitMsg()), round: rid });
    } else {
      r.commit.onCommit(msg);
    }
    r.progressAt = Date.now();
    if (!r.revealed) {
      r.revealed = true;
      await this.send({ ...r.commit.revealMsg(), round: rid });
    }
  }

  async onReveal(msg) {
    const r = this.round;
    if (!r || r.closed || msg.round !== r.id) return;
    try {
      await r.commit.onReveal(msg);
    } catch (error) {
      if (error instanceof CommitmentError && r.revealed) {
        await this.securityFailure(); // we hold their commit: a reveal that fails it is an attack
        return;
      }
      throw error;
    }
    r.progressAt = Date.now();
    const code = await this.session.safetyCode(r.commit);
    const changed = this.codeChangedPending || (this.lastCode !== null && this.lastCode !== code.digits);
    this.codeChangedPending = false;
    this.lastCode = code.digits;
    this.emit("safety-code", { digits: code.digits, words: [...code.words], changed });
    if (this.role === "counselor") await this.makeOffer(r);
  }

  async onDescription(d) {
    const r = this.round;
    if (!r || r.closed || r.id !== d.round || !r.commit.verified) return;
    if (!this.checkSdp(d.sdp, r.commit.peerFingerprint)) {
      await this.securityFailure();
      return;
    }
    r.progressAt = Date.now();
    const pc = r.pc;
    try {
      if (d.type === "offer") {
        const collision = r.makingOffer || pc.signalingState !== "stable";
        r.ignoreOffer = !this.polite && collision;
        if (r.ignoreOffer) return;
        if (!this.renegotiable() && r.remoteSet) return; // a rebuild peer never re-offers
        await pc.setRemoteDescription({ type: "offer", sdp: d.sdp }); // rolls back if needed
        r.remoteSet = true;
        await this.flushRemoteCandidates(r);
        await pc.setLocalDescription();
        r.negotiated = true; // an offer/answer exchange completed: later offers may follow
        await this.sendLocalDescription(r, "answer");
      } else {
        if (pc.signalingState !== "have-local-offer") return;
        await pc.setRemoteDescription({ type: "answer", sdp: d.sdp });
        r.remoteSet = true;
        r.negotiated = true;
        await this.flushRemoteCandidates(r);
      }
    } catch (error) {
      if (r.closed) return;
      this.emit("fault", { name: error && error.name });
      await this.rebuild(r);
    }
  }

  async onCandidate(c) {
    const r = this.round;
    if (!r || r.closed || r.id !== c.round) return;
    const init = { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex };
    if (!r.pc.remoteDescription) {
      if (r.pendingRemote.length < MAX_PENDING_CANDIDATES) r.pendingRemote.push(init);
      return;
    }
    await this.addCandidate(r, init);
  }

  async addCandidate(r, init) {
    try {
      await r.pc.addIceCandidate(init);
    } catch {
      /* a candidate of an ignored offer, or a malformed one: without consequence */
    }
  }

  async flushRemoteCandidates(r) {
    const pending = r.pendingRemote;
    r.pendingRemote = [];
    for (const init of pending) await this.addCandidate(r, init);
  }

  async onRebuild(msg) {
    const r = this.round;
    if (r && r.connected && r.id !== msg.round) return; // about an older connection
    this.dropRound();
    if (this.role === "counselor" && this.session.inCall && !this.textOnly()) await this.startRound();
  }

  onMode(level, reason = null) {
    this.peerLevel = level;
    this.peerReason = reason;
    this.applyLevel();
  }

  async onBye(reason) {
    this.bye = reason;
    this.dropRound();
    this.emit("bye", { reason });
    if (reason === "security") {
      this.securityFailed = true;
      this.emit("security", {});
    }
  }

  /** The counselor left (or the call is on hold): close the peer connection, keep the call. */
  async pause() {
    this.dropRound();
  }

  // --- rounds -------------------------------------------------------------------------------------

  async localMedia() {
    if (this.stream === null) {
      this.stream = (await Promise.race([this.media, timeout(MEDIA_WAIT_MS, null)])) || false;
    }
    return this.stream || null;
  }

  async newRound(id, startedByMe) {
    const hello = this.session.peerHello(this.peerId);
    if (!hello) return null;
    const stream = await this.localMedia();
    const certificate = await RTCPeerConnection.generateCertificate({
      name: "ECDSA",
      namedCurve: "P-256",
    });
    const fingerprint = fingerprintFromRtc(certificate.getFingerprints());
    const ice = this.iceConfig ? await this.iceConfig() : { iceServers: this.iceServers };
    const pc = new RTCPeerConnection({ ...ice, certificates: [certificate] });
    const r = new Round(id, startedByMe, hello.epoch, pc, fingerprint, new CommitRound(this.role, fingerprint));
    for (const kind of ["audio", "video"]) {
      const track = stream ? stream.getTracks().find((t) => t.kind === kind) : null;
      if (track) pc.addTrack(track, stream);
      else if (this.role === "counselor") pc.addTransceiver(kind, { direction: "recvonly" });
    }
    if (this.role === "counselor") this.attachChannel(r, pc.createDataChannel(CHAT_LABEL));
    this.wire(r);
    return r;
  }

  wire(r) {
    const pc = r.pc;
    const queue = (fn) => this.session.enqueue(fn);
    pc.addEventListener("icecandidate", (event) => {
      if (r.closed || !this.renegotiable()) return; // a rebuild peer gets its candidates in SDP
      const c = event.candidate;
      const body = {
        type: "candidate",
        round: r.id,
        candidate: c ? c.candidate : "",
        sdpMid: c ? c.sdpMid ?? null : null,
        sdpMLineIndex: c ? c.sdpMLineIndex ?? null : null,
      };
      queue(async () => {
        if (r.closed) return;
        if (r.localSent) await this.send(body);
        else r.localQueue.push(body);
      });
    });
    pc.addEventListener("connectionstatechange", () => queue(() => this.onPcState(r)));
    pc.addEventListener("negotiationneeded", () => queue(() => this.negotiate(r)));
    pc.addEventListener("track", () => {
      if (r !== this.round || r.closed) return;
      const tracks = pc.getReceivers().map((rx) => rx.track).filter(Boolean);
      this.emit("remote-stream", { stream: new MediaStream(tracks) });
    });
    pc.addEventListener("datachannel", (event) => {
      if (event.channel.label === CHAT_LABEL && !r.channel) this.attachChannel(r, event.channel);
    });
  }

  attachChannel(r, channel) {
    r.channel = channel;
    channel.addEventListener("open", () => {
      if (r === this.round) this.session.onChannelOpen();
    });
    channel.addEventListener("message", (event) => {
      if (r === this.round && typeof event.data === "string") this.session.onChannelText(event.data);
    });
  }

  /** Send on the data channel if it is open; false otherwise (the session then relays). */
  sendOnChannel(text) {
    const r = this.round;
    if (!r || r.closed || !r.channel || r.channel.readyState !== "open") return false;
    try {
      r.channel.send(text);
      return true;
    } catch {
      return false;
    }
  }

  dropRound() {
    const r = this.round;
    this.round = null;
    if (r) r.close();
    if (this.connected) {
      this.connected = false;
      this.emit("state", { state: "connecting" });
    }
  }

  send(body) {
    return this.session.sendInner(this.peerId, body);
  }

  checkSdp(sdp, expected) {
    try {
      return fingerprintFromSdp(sdp) === expected;
    } catch (error) {
      if (error instanceof FingerprintError) return false;
      throw error;
    }
  }

  async gathered(r) {
    const pc = r.pc;
    if (pc.iceGatheringState === "complete") return;
    await Promise.race([
      new Promise((resolve) => {
        const check = () => {
          if (pc.iceGatheringState === "complete") {
            pc.removeEventListener("icegatheringstatechange", check);
            resolve();
          }
        };
        pc.addEventListener("icegatheringstatechange", check);
      }),
      timeout(GATHER_MAX_MS),
    ]);
  }

  async sendLocalDescription(r, type) {
    if (!this.renegotiable()) await this.gathered(r);
    if (r.closed) return;
    const description = r.pc.localDescription;
    if (!description || description.type !== type) return;
    if (!this.checkSdp(description.sdp, r.fingerprint)) {
      throw new CallError("the local SDP does not carry the committed fingerprint");
    }
    await this.send({ type, round: r.id, sdp: description.sdp });
    r.localSent = true;
    const queued = r.localQueue;
    r.localQueue = [];
    for (const body of queued) await this.send(body);
  }

  async makeOffer(r) {
    if (r.closed || r.offered) return;
    r.offered = true;
    try {
      r.makingOffer = true;
      await r.pc.setLocalDescription();
    } finally {
      r.makingOffer = false;
    }
    await this.sendLocalDescription(r, "offer");
  }

  // Later offers (ICE restart) between browsers: perfect negotiation, either side. The only
  // renegotiation this call makes is an ICE restart it asked for.
  async negotiate(r) {
    if (r !== this.round || r.closed || !r.negotiated || !this.renegotiable()) return;
    if (r.restartedAt === null) return;
    if (r.pc.signalingState !== "stable") return;
    try {
      r.makingOffer = true;
      await r.pc.setLocalDescription();
    } catch {
      return;
    } finally {
      r.makingOffer = false;
    }
    await this.sendLocalDescription(r, "offer");
  }

  async securityFailure() {
    if (this.securityFailed) return;
    this.securityFailed = true;
    await this.send({ type: "bye", reason: "security" });
    this.dropRound();
    this.emit("security", { error: new SecurityError("a fingerprint or a reveal did not match") });
  }

  // --- the path -----------------------------------------------------------------------------------

  async onPcState(r) {
    if (r !== this.round || r.closed) return;
    const state = r.pc.connectionState;
    if (state === "connected") {
      r.disconnectedAt = null;
      r.restartedAt = null;
      r.restarts = 0;
      r.progressAt = Date.now();
      if (!r.connected) {
        r.connected = true;
        this.setConnected(null);
        this.announced = null;
        await this.announce();
        this.applyLevel();
      } else {
        this.emit("state", { state: "connected" });
      }
      await this.pollPath(r, true);
    } else if (r.connected) {
      // It was connected and is not any more (disconnected, failed, or checking again).
      if (r.disconnectedAt === null) r.disconnectedAt = Date.now();
      this.emit("state", { state: "reconnecting" });
      if (state === "failed") await this.pathFailed(r);
    } else if (state === "failed") {
      await this.pathFailed(r);
    }
  }

  setConnected(path) {
    this.connected = true;
    this.everConnected = true;
    this.emit("state", { state: "connected" });
    if (path) this.setPath(path);
    if (path === "server-relay") this.applyLevel();
  }

  setPath(path) {
    if (path && path !== this.path) {
      this.path = path;
      this.emit("path", { path });
    }
  }

  async pollPath(r, now = false) {
    const t = Date.now();
    if (!now && t - r.pathPolledAt < PATH_POLL_MS) return;
    r.pathPolledAt = t;
    try {
      const path = await selectedPath(r.pc);
      if (r === this.round && !r.closed) this.setPath(path);
    } catch {
      /* stats unavailable on a closing connection */
    }
  }

  async pathFailed(r) {
    if (r !== this.round || r.closed) return;
    if (r.connected) this.emit("state", { state: "reconnecting" });
    if (this.renegotiable() && r.negotiated) {
      const now = Date.now();
      if (r.restartedAt !== null && now - r.restartedAt < ICE_RESTART_RETRY_MS) return;
      if (r.restarts < ICE_RESTARTS_MAX) {
        r.restarts += 1;
        r.restartedAt = now;
        r.pc.restartIce(); // negotiationneeded -> negotiate()
        return;
      }
    }
    await this.rebuild(r);
  }

  async rebuild(r) {
    await this.send({ type: "rebuild", round: r.id });
    this.dropRound();
    if (this.role === "counselor") await this.startRound();
  }

  /** About once a second (from the session's queue): timers, path polling, stalls. */
  async tick() {
    if (this.closed) return;
    const now = Date.now();
    const r = this.round;
    if (r && !r.closed) {
      if (r.connected && r.pc.connectionState === "connected") {
        await this.pollPath(r);
        await this.sampleQuality(r);
      }
      if (r.disconnectedAt !== null && r.pc.connectionState !== "connected") {
        const grace = this.renegotiable() ? ICE_RESTART_AFTER_MS : REBUILD_AFTER_MS;
        if (now - r.disconnectedAt >= grace) await this.pathFailed(r); // restarts, or rebuilds
      }
    }
    if (!this.session.inCall || this.connected || this.bye !== null || this.securityFailed) return;
    if (this.textOnly()) return;
    if (now - this.lastStallAction < STALL_MS) return;
    const current = this.round;
    if (current && now - current.progressAt < STALL_MS) return;
    if (!this.session.paired(this.peerId)) return;
    this.lastStallAction = now;
    if (this.role === "counselor") {
      if (current) current.progressAt = now;
      await this.session.renewHello(this.peerId); // its answer settles a new pair: a new round
    } else {
      await this.send({ type: "rebuild", round: current ? current.id : "none" });
    }
  }

  // --- modes and local media ----------------------------------------------------------------------

  /** My own level: what my connection supports, capped by the person's choice. */
  get ownLevel() {
    return this.ladder.level;
  }

  /** The person's choice (a button, or data saver) caps my level; the call runs at the lower. */
  setLevel(level) {
    if (!LEVELS.includes(level)) return;
    this.ladder = ladder.setCap(this.ladder, level, Date.now());
    this.ownChanged();
  }

  ownChanged() {
    this.applyLevel();
    if (this.connected) this.session.enqueue(() => this.announce());
  }

  /** Send my level (and why) when it changed since the last announcement. */
  async announce() {
    const level = this.ownLevel;
    const reason = ladder.cause(this.ladder) === "manual" ? "manual" : "network";
    const a = this.announced;
    if (a && a.level === level && a.reason === reason) return;
    this.announced = { level, reason };
    await this.send({ type: "mode", level, reason });
  }

  /** About once a second while connected: getStats() into the ladder. */
  async sampleQuality(r) {
    const now = Date.now();
    if (now - r.sampledAt < SAMPLE_MS * 0.9) return;
    r.sampledAt = now;
    let report;
    try {
      report = await r.pc.getStats();
    } catch {
      return; // a closing connection
    }
    if (r !== this.round || r.closed) return;
    const sample = r.sampler.sample(report, now, {
      level: this.level || "video",
      connected: r.pc.connectionState === "connected",
    });
    const before = this.ladder;
    this.ladder = ladder.step(before, sample);
    this.record(sample);
    this.emit("quality", { sample, level: this.ladder.level });
    if (this.ladder.level !== before.level) this.ownChanged();
  }

  record(sample) {
    const log = globalThis.__ruangQuality;
    if (!Array.isArray(log)) return; // only when a test or the bench asked for it
    const s = this.ladder;
    log.push({ ...sample, net: s.net, own: s.level, call: this.level, peer: this.peerLevel, reason: s.reason });
    if (log.length > QUALITY_LOG_MAX) log.splice(0, log.length - QUALITY_LOG_MAX);
  }

  applyLevel() {
    const own = this.ownLevel;
    let { level, cause } = ladder.callLevel(own, this.peerLevel);
    if (this.textOnly()) {
      level = "text";
      cause = "theirs";
    }
    const ownCause = ladder.cause(this.ladder);
    const key = [level, own, this.peerLevel, cause, ownCause, this.peerReason].join(" ");
    this.level = level;
    if (key !== this.levelKey) {
      this.levelKey = key;
      this.emit("level", {
        level, own, peer: this.peerLevel, cause, ownCause, peerReason: this.peerReason,
      });
    }
    const r = this.round;
    if (!r || r.closed) return;
    const stream = this.stream || null;
    for (const sender of r.pc.getSenders()) {
      const kind = sender.track ? sender.track.kind : this.senderKind(r, sender);
      if (!kind) continue;
      const track = stream ? stream.getTracks().find((t) => t.kind === kind) : null;
      let want = "off";
      if (kind === "audio" && level !== "text") want = level === "audio" ? "low" : "on";
      if (kind === "video" && level === "video") want = "on";
      if (kind === "video" && level === "low-video") want = "low";
      this.configureSender(r, sender, kind, want === "off" ? null : track, want);
    }
  }

  senderKind(r, sender) {
    const t = r.pc.getTransceivers().find((x) => x.sender === sender);
    return t && t.receiver && t.receiver.track ? t.receiver.track.kind : null;
  }

  // No renegotiation: replaceTrack() and setParameters() only. A paused sender also has its
  // encoding inactive, so nothing of it (not even retransmissions or padding) is sent.
  configureSender(r, sender, kind, track, want) {
    if (r.senderState.get(sender) === want && sender.track === track) return;
    r.senderState.set(sender, want);
    r.paramChain = r.paramChain.then(async () => {
      if (r.closed) return;
      if (want === "off" && sender.track !== null) await sender.replaceTrack(null).catch(() => undefined);
      let params;
      try {
        params = sender.getParameters();
      } catch {
        params = null;
      }
      if (params && params.encodings && params.encodings.length > 0) {
        const enc = params.encodings[0];
        enc.active = want !== "off";
        if (want === "low") Object.assign(enc, kind === "video" ? LOW_VIDEO : LOW_AUDIO);
        else {
          delete enc.maxBitrate;
          delete enc.maxFramerate;
          if (kind === "video") enc.scaleResolutionDownBy = 1;
        }
        await sender.setParameters(params).catch(() => undefined);
      }
      if (want !== "off" && sender.track !== track) await sender.replaceTrack(track).catch(() => undefined);
    });
  }

  close() {
    this.closed = true;
    this.dropRound();
  }
}
