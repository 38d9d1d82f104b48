// getStats() reports into ladder samples (web/static/js/quality.js), with Maps standing in for
// RTCStatsReport.
import assert from "node:assert/strict";
import { test } from "node:test";

import { StatsSampler } from "../../web/static/js/quality.js";

// Second i of a call: the selected pair, audio received at 50 packets/s (lost of them lost),
// video at 30, what we send, and optionally a fresh report from the other side.
function report(i, { lost = 0, video = true, pings = [i, i], remote = null, sentVideo = null } = {}) {
  const m = new Map();
  m.set("T", { type: "transport", selectedCandidatePairId: "P" });
  m.set("P", {
    type: "candidate-pair", id: "P", availableOutgoingBitrate: 2_000_000, currentRoundTripTime: 0.004,
    requestsSent: pings[0], responsesReceived: pings[1],
  });
  m.set("IA", { type: "inbound-rtp", kind: "audio", packetsReceived: (50 - lost) * i, packetsLost: lost * i });
  m.set("IV", { type: "inbound-rtp", kind: "video", packetsReceived: video ? 30 * i : 30, packetsLost: 0, framesDecoded: video ? 15 * i : 15 });
  m.set("OA", { type: "outbound-rtp", kind: "audio", bytesSent: 4000 * i, headerBytesSent: 0 });
  m.set("OV", { type: "outbound-rtp", kind: "video", bytesSent: sentVideo ?? 60_000 * i, headerBytesSent: 0 });
  if (remote) {
    m.set("RA", { type: "remote-inbound-rtp", kind: "audio", roundTripTimeMeasurements: i, fractionLost: remote, roundTripTime: 0.2 });
  }
  return m;
}

test("loss, RTT and the estimate; media that just began is not judged yet", () => {
  const sampler = new StatsSampler();
  const out = [];
  for (let i = 1; i <= 6; i += 1) out.push(sampler.sample(report(i), i * 1000, { level: "video" }));
  assert.equal(out[0].loss, null, "nothing to compare with");
  assert.equal(out[1].loss, null, "just began");
  assert.equal(out[5].loss, 0);
  assert.equal(out[5].availableOutgoingBitrate, 2_000_000);
  assert.equal(out[5].rtt, 0.004);
  assert.equal(out[5].effective, "video");
  const lossy = new StatsSampler();
  let s;
  for (let i = 1; i <= 6; i += 1) {
    s = lossy.sample(report(i, { lost: 10, remote: i === 6 ? 0.3 : null }), i * 1000, { level: "video" });
  }
  assert.ok(Math.abs(s.loss - 0.3) < 1e-9, `the worse of received and reported: ${s.loss}`);
  assert.equal(s.rtt, 0.2, "a fresh report's RTT");
  s = lossy.sample(report(7, { lost: 10, remote: 0.3 }), 7000, { level: "video" });
  assert.ok(Math.abs(s.loss - 0.3) < 1e-9);
  s = lossy.sample(report(8, { lost: 10 }), 8000, { level: "video" });
  assert.ok(Math.abs(s.loss - 0.2) < 1e-9, "no new report: what is received");
});

test("a kind the call carries that stops arriving is starved; one it does not carry is not", () => {
  const sampler = new StatsSampler();
  let s;
  for (let i = 1; i <= 10; i += 1) {
    s = sampler.sample(report(i, { video: i < 4 }), i * 1000, { level: "video" });
  }
  assert.equal(s.videoStarved, true);
  assert.equal(s.audioStarved, false);
  const other = new StatsSampler();
  for (let i = 1; i <= 10; i += 1) {
    s = other.sample(report(i, { video: i < 4, sentVideo: 0 }), i * 1000, { level: "audio" });
  }
  assert.equal(s.videoStarved, false);
});

test("after a step down, media of the level left still flowing is draining", () => {
  const sampler = new StatsSampler();
  for (let i = 1; i <= 4; i += 1) sampler.sample(report(i), i * 1000, { level: "video" });
  const s = sampler.sample(report(5), 5000, { level: "audio" });
  assert.equal(s.draining, true);
});

test("with no media, ICE consent checks over a window give the loss", () => {
  const sampler = new StatsSampler();
  let s;
  for (let i = 1; i <= 6; i += 1) {
    const m = report(1, { pings: [i * 2, i] }); // media counters frozen; half the checks answered
    s = sampler.sample(m, i * 1000, { level: "text" });
  }
  assert.ok(s.loss > 0.3 && s.loss < 0.6, String(s.loss));
  const clean = new StatsSampler();
  for (let i = 1; i <= 6; i += 1) s = clean.sample(report(1, { pings: [i, i] }), i * 1000, { level: "text" });
  assert.equal(s.loss, 0);
});
