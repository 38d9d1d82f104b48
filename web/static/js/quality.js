// Turns RTCPeerConnection.getStats() reports, taken about once a second, into the samples the
// quality ladder (ladder.js) decides on. Pure: no WebRTC, no DOM, no clock of its own; the
// report is anything with forEach() and get() (an RTCStatsReport, or a Map in the tests).
//
// What a Chromium call shows on a shaped link (measured in tests/test_fallback_browser.py):
// * availableOutgoingBitrate (the selected candidate pair) follows the link while video flows;
//   with audio only or nothing it goes stale or wrong, so the ladder only believes it with video.
// * remote-inbound-rtp (the other side's RTCP reports about what we send) stops coming when the
//   link is full: its loss is used only when a new report arrived (roundTripTimeMeasurements).
// * inbound-rtp (what we receive) is always fresh: packets lost against received, per kind.
// * No packet at all of a kind the call carries, for a while, is starvation.
// * With no media (text only) the ICE consent checks (requestsSent / responsesReceived of the
//   selected pair) are the only loss evidence: counted over a window, since they come about once
//   a second or less.

const present = (x) => x !== null && x !== undefined;

export const SAMPLER_DEFAULTS = Object.freeze({
  minPackets: 10, // packets (lost + received) of a kind in one interval before its loss counts
  starveMs: 3000, // no packet of an expected kind for this long: starved
  graceMs: 3000, // after the call's level changes, starvation is not judged for this long
  pingWindowMs: 6000, // consent checks counted over this window
  minPings: 2,
  resumeMs: 2500, // after a kind resumes, its loss figures are skipped for this long
  maxGapMs: 3500, // a longer gap between reports (not sampled while disconnected): start afresh
  drainBytes: 1000, // more than this of a kind the level excludes sent in an interval: draining
  drainPackets: 2, // ... or more than this many of its packets received
});

const VIDEO_LEVELS = ["low-video", "video"];
const carries = (level, kind) => (kind === "video" ? VIDEO_LEVELS.includes(level) : level !== "text");

function selectedPair(report) {
  let pair = null;
  report.forEach((s) => {
    if (!pair && s.type === "transport" && s.selectedCandidatePairId) {
      pair = report.get(s.selectedCandidatePairId) || null;
    }
  });
  if (!pair) {
    report.forEach((s) => {
      if (!pair && s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s;
    });
  }
  return pair;
}

function collect(report) {
  const out = {
    pair: selectedPair(report),
    inbound: { audio: { received: 0, lost: 0, frames: 0 }, video: { received: 0, lost: 0, frames: 0 } },
    remote: { audio: null, video: null },
    sentBytes: { audio: 0, video: 0 },
  };
  report.forEach((s) => {
    const kind = s.kind || s.mediaType;
    if (kind !== "audio" && kind !== "video") return;
    if (s.type === "inbound-rtp") {
      const k = out.inbound[kind];
      k.received += s.packetsReceived || 0;
      k.lost += Math.max(0, s.packetsLost || 0);
      k.frames += s.framesDecoded || 0;
    } else if (s.type === "outbound-rtp") {
      out.sentBytes[kind] += (s.bytesSent || 0) + (s.headerBytesSent || 0);
    } else if (s.type === "remote-inbound-rtp") {
      const r = out.remote[kind];
      const n = s.roundTripTimeMeasurements || 0;
      if (!r || n > r.n) {
        out.remote[kind] = { n, fractionLost: s.fractionLost, rtt: s.roundTripTime };
      }
    }
  });
  return out;
}

/** One sampler per peer connection: feed it each report; it answers ladder samples. */
export class StatsSampler {
  constructor(cfg = SAMPLER_DEFAULTS) {
    this.cfg = { ...SAMPLER_DEFAULTS, ...cfg };
    this.prev = null;
    this.pings = []; // [{t, requests, responses}] deltas of the selected pair
    this.lastPacketAt = { audio: null, video: null }; // null: none of that kind seen yet
    // When each kind last started flowing again, received and sent: the first figures after a
    // pause count the packets lost before it (the sequence numbers jump), so they are skipped.
    this.resumedAt = { received: { audio: null, video: null }, sent: { audio: null, video: null } };
    this.flowing = { received: { audio: false, video: false }, sent: { audio: false, video: false } };
    this.level = null;
    this.levelAt = null;
  }

  /**
   * report: the getStats() report; now: ms; level: the call's level (what both sides send);
   * connected: the peer connection's state is "connected". Returns a ladder sample with `t`,
   * `effective` and the figures, plus `packetsPerSecond` and `framesPerSecond` (received).
   */
  sample(report, now, { level, connected = true }) {
    const cfg = this.cfg;
    const cur = collect(report);
    if (level !== this.level) {
      // A kind the call starts carrying again: its first figures count what was lost before
      // the pause (Chromium's bandwidth probes keep paused streams' packet counts moving, so
      // the level, not only the packets, says when a kind resumes).
      for (const kind of ["audio", "video"]) {
        if (carries(level, kind) && (this.level === null || !carries(this.level, kind))) {
          this.resumedAt.received[kind] = now;
          this.resumedAt.sent[kind] = now;
        }
      }
      this.level = level;
      this.levelAt = now;
    }
    let prev = this.prev;
    if (prev && now - prev.t > cfg.maxGapMs) {
      prev = null;
      this.pings = [];
      for (const kind of ["audio", "video"]) {
        if (this.lastPacketAt[kind] !== null) this.lastPacketAt[kind] = now;
      }
    }
    this.prev = { t: now, ...cur };
    const sample = {
      t: now,
      effective: level,
      connected,
      availableOutgoingBitrate: null,
      loss: null,
      rtt: null,
      audioStarved: false,
      videoStarved: false,
      draining: false,
      packetsPerSecond: null,
      framesPerSecond: null,
      sentBitrate: null,
    };
    const pair = cur.pair;
    if (pair) {
      if (present(pair.availableOutgoingBitrate)) sample.availableOutgoingBitrate = pair.availableOutgoingBitrate;
      if (present(pair.currentRoundTripTime)) sample.rtt = pair.currentRoundTripTime;
    }
    if (!prev) return sample;
    const dt = Math.max(1, now - prev.t) / 1000;

    const recent = (t) => t !== null && now - t < cfg.resumeMs;
    for (const kind of ["audio", "video"]) {
      const flows = {
        received: cur.inbound[kind].received > prev.inbound[kind].received,
        sent: cur.sentBytes[kind] > prev.sentBytes[kind],
      };
      for (const way of ["received", "sent"]) {
        if (flows[way] && !this.flowing[way][kind]) this.resumedAt[way][kind] = now;
        this.flowing[way][kind] = flows[way];
      }
    }

    // Received media: loss per kind, starvation, rates.
    const losses = [];
    let packets = 0;
    let frames = 0;
    for (const kind of ["audio", "video"]) {
      const a = cur.inbound[kind];
      const b = prev.inbound[kind];
      const received = Math.max(0, a.received - b.received);
      const lost = Math.max(0, a.lost - b.lost);
      packets += received;
      frames += kind === "video" ? Math.max(0, a.frames - b.frames) : 0;
      if (received > 0) this.lastPacketAt[kind] = now;
      else if (a.received > 0 && this.lastPacketAt[kind] === null) this.lastPacketAt[kind] = now;
      if (received + lost >= cfg.minPackets && !recent(this.resumedAt.received[kind])) {
        losses.push(lost / (received + lost));
      }
    }
    sample.packetsPerSecond = packets / dt;
    sample.sentBitrate = {
      audio: Math.round((Math.max(0, cur.sentBytes.audio - prev.sentBytes.audio) * 8) / dt),
      video: Math.round((Math.max(0, cur.sentBytes.video - prev.sentBytes.video) * 8) / dt),
    };
    sample.framesPerSecond = frames / dt;
    // Media of a kind the level no longer carries still flowing (either way): after a step down
    // a congested link drains for seconds (video retransmissions answer repeated NACKs), and
    // what is measured meanwhile belongs to the level that was left.
    const videoOff = !VIDEO_LEVELS.includes(level);
    const sentVideo = Math.max(0, cur.sentBytes.video - prev.sentBytes.video);
    const sentAudio = Math.max(0, cur.sentBytes.audio - prev.sentBytes.audio);
    const got = (kind) => Math.max(0, cur.inbound[kind].received - prev.inbound[kind].received);
    sample.draining = (videoOff && (sentVideo > cfg.drainBytes || got("video") > cfg.drainPackets))
      || (level === "text" && (sentAudio > cfg.drainBytes || got("audio") > cfg.drainPackets));
    const settled = this.levelAt !== null && now - this.levelAt >= cfg.graceMs;
    const starved = (kind) => settled && this.lastPacketAt[kind] !== null
      && now - this.lastPacketAt[kind] >= cfg.starveMs;
    if (level !== "text" && starved("audio")) sample.audioStarved = true;
    if (VIDEO_LEVELS.includes(level) && starved("video")) sample.videoStarved = true;

    // What the other side reports about what we send: only fresh reports.
    const rtts = [];
    for (const kind of ["audio", "video"]) {
      const r = cur.remote[kind];
      const p = prev.remote[kind];
      if (r && (!p || r.n > p.n)) {
        if (present(r.fractionLost) && !recent(this.resumedAt.sent[kind])) losses.push(r.fractionLost);
        if (present(r.rtt)) rtts.push(r.rtt);
      }
    }
    if (rtts.length) sample.rtt = Math.max(sample.rtt ?? 0, ...rtts);

    // Consent checks of the selected pair, over a window (a new pair starts a new count).
    if (pair && prev.pair && pair.id === prev.pair.id) {
      this.pings.push({
        t: now,
        requests: Math.max(0, (pair.requestsSent || 0) - (prev.pair.requestsSent || 0)),
        responses: Math.max(0, (pair.responsesReceived || 0) - (prev.pair.responsesReceived || 0)),
      });
    } else {
      this.pings = [];
    }
    this.pings = this.pings.filter((p) => now - p.t < cfg.pingWindowMs);

    if (losses.length) {
      sample.loss = Math.max(...losses);
    } else {
      const requests = this.pings.reduce((n, p) => n + p.requests, 0);
      const responses = this.pings.reduce((n, p) => n + p.responses, 0);
      // A check may still be in flight at the window's end: half a response is granted.
      if (requests >= cfg.minPings) sample.loss = Math.max(0, 1 - (responses + 0.5) / requests);
    }
    return sample;
  }
}
