// Writes tests/vectors/ladder.json: stat sequences and the levels ladder.js decides on them.
// The JS and the Python ladders (web/static/js/ladder.js, signaling/peer/quality.py) are both
// checked against it. Run after changing the decision rules (node tests/js/make-ladder-vectors.mjs),
// then make the Python port agree.
import { writeFileSync } from "node:fs";

import { LEVELS, initialState, lower, rank, setCap, step } from "../../web/static/js/ladder.js";

const video = (level) => rank(level) >= rank("low-video");
const LINKS = {
  clean: () => ({ availableOutgoingBitrate: 3_500_000, loss: 0, rtt: 0.002 }),
  k200: () => ({ availableOutgoingBitrate: 200_000, loss: 0.02, rtt: 0.05 }),
  k100first: () => ({ availableOutgoingBitrate: 359_574, loss: 0.34, rtt: 0.004 }),
  k100second: () => ({ availableOutgoingBitrate: 84_400, loss: 0.95, rtt: 0.24 }),
  k100: (l) => (video(l) ? { availableOutgoingBitrate: 84_400, loss: 0.35, rtt: 0.46 }
    : { availableOutgoingBitrate: 47_000, loss: 0, rtt: 0.002 }),
  k20: (l) => (l === "text" ? { availableOutgoingBitrate: 84_400, loss: null, rtt: 0.001 }
    : { availableOutgoingBitrate: 240_000, loss: 0.85, rtt: 0.46 }),
  loss40: (l) => (l === "text" ? { availableOutgoingBitrate: 855_000, loss: 0.5, rtt: 0.001 }
    : { availableOutgoingBitrate: 855_000, loss: 0.42, rtt: 0.002 }),
};

// A small deterministic PRNG (mulberry32).
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function record(name, start, plan) {
  let s = initialState(start.level, start.cap);
  const steps = [];
  let t = 0;
  for (const part of plan) {
    if (part.cap) {
      s = setCap(s, part.cap, t);
      steps.push({ cap: part.cap, t });
      continue;
    }
    for (let i = 0; i < part.seconds; i += 1) {
      const peer = part.peer ? part.peer(i) : "video";
      const effective = lower(s.level, peer);
      const sample = { ...part.link(effective, i), t, effective };
      s = step(s, sample);
      steps.push({ sample });
      t += 1000;
    }
  }
  return { name, start, steps, expect: replayExpect(start, steps) };
}

function replayExpect(start, steps) {
  let s = initialState(start.level, start.cap);
  return steps.map((item) => {
    s = item.cap ? setCap(s, item.cap, item.t) : step(s, item.sample);
    return [s.level, s.net, s.reason];
  });
}

const sequences = [
  record("100 kbit/s, then lifted", { level: "video", cap: "video" },
    [{ link: LINKS.clean, seconds: 5 }, { link: LINKS.k100first, seconds: 1 }, { link: LINKS.k100second, seconds: 1 }, { link: LINKS.k100, seconds: 60 },
      { link: LINKS.clean, seconds: 40 }]),
  record("20 kbit/s collapse with probes, then lifted", { level: "video", cap: "video" },
    [{ link: LINKS.clean, seconds: 5 }, { link: LINKS.k20, seconds: 70 }, { link: LINKS.clean, seconds: 40 }]),
  record("40% loss, then lifted", { level: "video", cap: "video" },
    [{ link: LINKS.clean, seconds: 5 }, { link: LINKS.loss40, seconds: 40 }, { link: LINKS.clean, seconds: 40 }]),
  record("slow decline and manual caps", { level: "video", cap: "low-video" },
    [{ link: LINKS.clean, seconds: 5 }, { cap: "video" }, { link: LINKS.k200, seconds: 10 },
      { cap: "audio" }, { link: LINKS.k100, seconds: 10 }, { cap: "video" }, { link: LINKS.k20, seconds: 10 },
      { cap: "text" }, { link: LINKS.clean, seconds: 20 }, { cap: "video" }, { link: LINKS.clean, seconds: 30 }]),
  record("the other side holds the call lower", { level: "video", cap: "video" },
    [{ link: LINKS.clean, seconds: 3 }, { link: LINKS.k20, seconds: 10 },
      { link: LINKS.clean, seconds: 30, peer: (i) => (i < 20 ? "text" : "audio") },
      { link: LINKS.k20, seconds: 5, peer: () => "audio" }, { link: LINKS.clean, seconds: 40 }]),
];

const rand = prng(20241125);
const pick = (xs) => xs[Math.floor(rand() * xs.length)];
for (let n = 0; n < 4; n += 1) {
  const link = (effective) => ({
    availableOutgoingBitrate: rand() < 0.2 ? null : Math.round(10_000 + rand() * 3_000_000 * rand()),
    loss: rand() < 0.3 ? null : Math.round(rand() * rand() * 1000) / 1000,
    rtt: rand() < 0.1 ? null : Math.round(rand() * rand() * 2000) / 1000,
    connected: rand() > 0.03,
    audioStarved: rand() < 0.03,
    videoStarved: video(effective) && rand() < 0.05,
    draining: rand() < 0.1,
  });
  const plan = [];
  for (let k = 0; k < 12; k += 1) {
    if (rand() < 0.2) plan.push({ cap: pick(LEVELS) });
    else plan.push({ link, seconds: 5 + Math.floor(rand() * 20), peer: () => pick(["video", "video", "audio", "text"]) });
  }
  sequences.push(record(`random ${n}`, { level: pick(LEVELS), cap: pick(LEVELS) }, plan));
}

const out = new URL("../vectors/ladder.json", import.meta.url);
writeFileSync(out, `${JSON.stringify({
  about: "Stat sequences and the ladder's decisions ([level, net, reason] after each step). Made by tests/js/make-ladder-vectors.mjs from web/static/js/ladder.js; signaling/peer/quality.py must agree.",
  sequences,
})}\n`);
console.log(`wrote ${sequences.length} sequences`);
