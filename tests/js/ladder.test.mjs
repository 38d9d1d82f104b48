// The quality ladder's decision function over stat sequences (node --test). The links below are
// figures recorded from Chromium calls on shaped links (tests/test_fallback_browser.py and
// bench/fallback.py save them to test-artifacts/fallback-*.json): what one side measures
// depends on what the call sends, so a link is a function of the level the call runs at.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import {
  DEFAULTS, LEVELS, assess, callLevel, cause, initialState, rank, setCap, step,
} from "../../web/static/js/ladder.js";

const video = (level) => rank(level) >= rank("low-video");
const CLEAN = { availableOutgoingBitrate: 3_500_000, loss: 0, rtt: 0.002 };
const LINKS = {
  clean: () => CLEAN,
  // 200 kbit/s upstream: enough for low video.
  k200: () => ({ availableOutgoingBitrate: 200_000, loss: 0.02, rtt: 0.05 }),
  // ~100 kbit/s (both directions together, a 250 ms queue): in the first second video loses
  // almost everything; then the estimate falls, the queue stays full, a third of the audio is
  // lost. Audio alone (Opus capped at 20 kbit/s) fits, and leaves the queue empty.
  k100first: () => ({ availableOutgoingBitrate: 359_574, loss: 0.34, rtt: 0.004 }),
  k100second: () => ({ availableOutgoingBitrate: 84_400, loss: 0.95, rtt: 0.24 }),
  k100: (level) => (video(level)
    ? { availableOutgoingBitrate: 84_400, loss: 0.35, rtt: 0.46 }
    : { availableOutgoingBitrate: 47_000, loss: 0, rtt: 0.002 }),
  // 20 kbit/s: any media floods it; text only leaves it idle (nothing to measure).
  k20: (level) => (level === "text"
    ? { availableOutgoingBitrate: 84_400, loss: null, rtt: 0.001 }
    : { availableOutgoingBitrate: 240_000, loss: 0.85, rtt: 0.46 }),
  // 40% random UDP loss, no queue; in text only the ICE consent checks show it.
  loss40: (level) => (level === "text"
    ? { availableOutgoingBitrate: 855_000, loss: 0.5, rtt: 0.001 }
    : { availableOutgoingBitrate: 855_000, loss: 0.42, rtt: 0.002 }),
};

// One sample a second on a link, the call running at my level (no other side).
function run(link, seconds, state = initialState(), t0 = 0) {
  const levels = [];
  let s = state;
  for (let i = 0; i < seconds; i += 1) {
    s = step(s, { ...link(s.level), t: t0 + i * 1000, effective: s.level });
    levels.push(s.level);
  }
  return { levels, state: s, t: t0 + seconds * 1000 };
}

// A run continued: several links one after the other.
function scenario(parts, state = initialState()) {
  let s = state;
  let t = 0;
  const levels = [];
  for (const [link, seconds] of parts) {
    const r = run(link, seconds, s, t);
    levels.push(...r.levels);
    s = r.state;
    t = r.t;
  }
  return { levels, state: s, t };
}

const changes = (levels) => levels.filter((l, i) => i === 0 || l !== levels[i - 1]);

test("assess maps reference conditions to levels", () => {
  assert.equal(assess(CLEAN), "video");
  assert.equal(assess(LINKS.k200()), "low-video");
  assert.equal(assess(LINKS.k20("video"), DEFAULTS, false, { severeBefore: true }), "text",
    "severe loss that lasts");
  assert.equal(assess(LINKS.k20("video")), "low-video", "the first second of a squeeze");
  assert.equal(assess({ ...CLEAN, loss: 0.7 }), "text", "severe loss, the estimate still high");
  assert.equal(assess(LINKS.loss40("video")), "text");
  assert.equal(assess({ ...CLEAN, rtt: 1.6 }), "text", "RTT over 1.5 s is very bad");
  assert.equal(assess({ ...CLEAN, loss: 0.08 }), "low-video");
  assert.equal(assess({ availableOutgoingBitrate: null, loss: null, rtt: 0.06 }), "video", "no evidence");
  assert.equal(assess({ ...CLEAN, connected: false }), "text");
  assert.equal(assess({ ...CLEAN, audioStarved: true }), "text");
  assert.equal(assess({ ...CLEAN, videoStarved: true }), "audio");
});

test("loss while the estimate says our own video is too much says nothing about audio", () => {
  const k100 = LINKS.k100("video");
  assert.equal(assess(k100, DEFAULTS, false, { effective: "video" }), "audio");
  assert.equal(assess(k100, DEFAULTS, false, { effective: "audio" }), "text", "audio's own loss");
  assert.equal(assess(LINKS.loss40("video"), DEFAULTS, false, { effective: "video" }), "text",
    "random loss, the estimate still high");
  assert.equal(assess({ ...k100, loss: 0.7 }, DEFAULTS, false, { effective: "video" }), "audio",
    "severe loss for one second: the squeeze before the encoder adapts");
  assert.equal(
    assess({ ...k100, loss: 0.7 }, DEFAULTS, false, { effective: "video", severeBefore: true }),
    "text",
    "severe loss that lasts",
  );
});

test("the bandwidth estimate is evidence only while video flows, up to what is sent", () => {
  const starved = { availableOutgoingBitrate: 10_000, loss: 0, rtt: 0.01 };
  assert.equal(assess(starved, DEFAULTS, false, { effective: "audio" }), "video");
  assert.equal(assess(starved, DEFAULTS, false, { effective: "low-video" }), "text");
  assert.equal(assess(starved, DEFAULTS, false, { effective: "low-video", ramping: true }), "video");
  const lowVideo = { availableOutgoingBitrate: 200_000, loss: 0, rtt: 0.01 };
  assert.equal(assess(lowVideo, DEFAULTS, false, { effective: "low-video" }), "video");
  assert.equal(assess(lowVideo, DEFAULTS, false, { effective: "video" }), "low-video");
});

test("a steady clean link stays at video", () => {
  const { levels } = run(LINKS.clean, 120);
  assert.ok(levels.every((l) => l === "video"));
});

test("a single bad sample does not step down", () => {
  const { levels } = scenario([[LINKS.clean, 5], [LINKS.k20, 1], [LINKS.clean, 1], [LINKS.k20, 2],
    [LINKS.clean, 20]]);
  assert.ok(levels.every((l) => l === "video"));
});

test("slow decline steps through the levels", () => {
  const { levels } = scenario([[LINKS.clean, 5], [LINKS.k200, 6], [LINKS.k100, 6], [LINKS.k20, 6]]);
  assert.equal(levels[4], "video");
  assert.equal(levels[10], "low-video");
  assert.equal(levels[16], "audio");
  assert.equal(levels[22], "text");
});

test("a collapse reaches text within the down window (3 samples)", () => {
  for (const link of [LINKS.k20, LINKS.loss40]) {
    const { levels } = scenario([[LINKS.clean, 5], [link, 5]]);
    assert.equal(levels[6], "video");
    assert.equal(levels[7], "text");
  }
});

test("at 100 kbit/s the call settles at audio only, probing for more ever more rarely", () => {
  const { levels } = scenario([[LINKS.clean, 5], [LINKS.k100first, 1], [LINKS.k100second, 1], [LINKS.k100, 150]]);
  assert.equal(levels[8], "audio");
  assert.ok(!levels.includes("text"), "never text");
  const after = levels.slice(8);
  const probes = [];
  after.forEach((l, i) => {
    if (l === "low-video" && after[i - 1] === "audio") probes.push(i);
  });
  assert.ok(probes.length >= 2, "it looks for headroom");
  const gaps = probes.slice(1).map((p, i) => p - probes[i]);
  assert.ok(gaps.every((g, i) => i === 0 || g >= gaps[i - 1]), `the waits grow: ${gaps}`);
  assert.ok(after.filter((l) => l === "audio").length / after.length > 0.85, "mostly audio");
});

test("a bad sample in the first second of a squeeze does not make it text", () => {
  const { levels } = scenario([[LINKS.clean, 5], [LINKS.k100first, 1], [LINKS.k100second, 1], [LINKS.k100, 3]]);
  assert.ok(!levels.includes("text"));
  const lasting = scenario([[LINKS.clean, 5], [LINKS.k20, 4]]).levels;
  assert.equal(lasting[7], "text", "lasting severe loss is a collapse");
});

test("recovery climbs one level at a time, not at once, back to video within 20 s", () => {
  const collapsed = scenario([[LINKS.clean, 3], [LINKS.loss40, 20]]).state;
  assert.equal(collapsed.level, "text");
  const { levels } = run(LINKS.clean, 40, collapsed, 60_000);
  assert.deepEqual(changes(levels), ["text", "audio", "low-video", "video"], "one level at a time");
  assert.ok(levels.slice(0, DEFAULTS.upSamples - 1).every((l) => l === "text"), "not at once");
  assert.equal(levels[19], "video");
});

test("flapping backs off: each failed probe doubles the wait, up to a ceiling", () => {
  let { state: s, t } = scenario([[LINKS.clean, 3], [LINKS.k20, 4]]);
  assert.equal(s.level, "text");
  const holds = [];
  const gaps = [];
  let last = t;
  for (let round = 0; round < 4; round += 1) {
    let climbed = false;
    for (let i = 0; i < 200 && !climbed; i += 1) {
      s = step(s, { ...LINKS.k20(s.level), t, effective: s.level });
      t += 1000;
      climbed = s.level !== "text";
    }
    assert.ok(climbed, "it probes upwards eventually");
    gaps.push(t - last);
    for (let i = 0; i < DEFAULTS.probeBadSamples; i += 1) {
      s = step(s, { ...LINKS.k20(s.level), t, effective: s.level });
      t += 1000;
    }
    last = t;
    assert.equal(s.level, "text");
    assert.equal(s.reason, "probe-failed");
    holds.push(s.holdMs);
  }
  const expected = [];
  for (let h = DEFAULTS.holdMs * 2; expected.length < 4; h *= 2) {
    expected.push(Math.min(h, DEFAULTS.maxHoldMs));
  }
  assert.deepEqual(holds, expected, "doubled each time, up to the ceiling");
  assert.ok(gaps.every((g, i) => i === 0 || g >= gaps[i - 1]), `the waits grow: ${gaps}`);
  assert.ok(gaps[gaps.length - 1] > gaps[0], `the waits grow: ${gaps}`);
});

test("with loss in text only the consent checks forbid probing; it climbs once they clear", () => {
  const { state, levels } = scenario([[LINKS.clean, 3], [LINKS.loss40, 90]]);
  assert.ok(levels.slice(5).every((l) => l === "text"), "no blind probe into a lossy link");
  assert.equal(state.reason, "network-down");
  const back = run(LINKS.clean, 30, state, 100_000).levels;
  assert.equal(back[14], "video");
});

test("a manual choice is never overridden upwards, and lifting it returns at once", () => {
  let s = setCap(initialState(), "audio", 0);
  assert.equal(s.level, "audio");
  assert.equal(s.reason, "manual");
  assert.equal(cause(s), "manual");
  s = run(LINKS.clean, 60, s, 1000).state;
  assert.equal(s.level, "audio");
  s = setCap(s, "video", 62_000);
  assert.equal(s.level, "video", "the network supports video all along");
  s = setCap(s, "audio", 63_000);
  s = run(LINKS.k20, 6, s, 64_000).state;
  assert.equal(s.level, "text", "the network can still push it lower");
  assert.equal(cause(s), "network");
  s = setCap(s, "video", 80_000);
  assert.equal(s.level, "text");
  s = run(LINKS.clean, 60, s, 81_000).state;
  assert.equal(s.level, "video");
  assert.equal(cause(s), "normal");
});

test("a climb the other side holds back is not tested until the call takes it", () => {
  let s = scenario([[LINKS.clean, 3], [LINKS.k20, 20]]).state;
  let t = 30_000;
  const other = "text";
  for (let i = 0; i < 30; i += 1) {
    s = step(s, { ...CLEAN, loss: null, t, effective: other });
    t += 1000;
  }
  assert.equal(s.level, "audio", "one climb, then it waits");
  assert.ok(s.probeUntil > t, "its probe has not started");
  // The other side climbs too: now it is tested, and a bad link undoes it quickly.
  for (let i = 0; i < DEFAULTS.probeBadSamples; i += 1) {
    s = step(s, { ...LINKS.k20("audio"), t, effective: "audio" });
    t += 1000;
  }
  assert.equal(s.level, "text");
  assert.equal(s.reason, "probe-failed");
  // Bad samples while a climb waits are not a failed probe (no doubled hold).
  s = run(LINKS.clean, 30, s, t).state;
  t += 30_000;
  s = step(s, { ...CLEAN, t, effective: "text" });
  const waiting = s.level;
  const hold = s.holdMs;
  for (let i = 0; i < DEFAULTS.downSamples; i += 1) {
    t += 1000;
    s = step(s, { ...LINKS.loss40("text"), t, effective: "text" });
  }
  assert.notEqual(waiting, "text");
  assert.equal(s.level, "text");
  assert.equal(s.reason, "network-down");
  assert.equal(s.holdMs, hold);
});

test("after a step down, samples of a draining link are skipped, for a while at most", () => {
  let { state: s, t } = scenario([[LINKS.clean, 5], [LINKS.k100, 3]]);
  assert.equal(s.level, "audio");
  // The link drains video retransmissions: a third of the audio is lost meanwhile.
  for (let i = 0; i < 8; i += 1) {
    s = step(s, { ...LINKS.k100("video"), t, effective: "audio", draining: true });
    t += 1000;
  }
  assert.equal(s.level, "audio");
  for (let i = 0; i < 8; i += 1) {
    s = step(s, { ...LINKS.k100("video"), t, effective: "audio", draining: true });
    t += 1000;
  }
  assert.equal(s.level, "text", `no longer than settleMs (${DEFAULTS.settleMs} ms)`);
});

test("right after video resumes, a low estimate does not fail the probe; later it does", () => {
  let s = scenario([[LINKS.clean, 3], [LINKS.loss40, 10]]).state;
  assert.equal(s.level, "text");
  let t = 20_000;
  let steps = 0;
  while (s.level !== "low-video" && steps < 60) {
    s = step(s, { ...CLEAN, t, effective: s.level });
    t += 1000;
    steps += 1;
  }
  assert.equal(s.level, "low-video");
  const slow = { availableOutgoingBitrate: 60_000, loss: 0, rtt: 0.002 };
  for (let i = 0; i * 1000 < DEFAULTS.rampMs; i += 1) {
    s = step(s, { ...slow, t, effective: "low-video" });
    t += 1000;
  }
  assert.equal(s.level, "low-video", "ramping");
  for (let i = 0; i < DEFAULTS.probeBadSamples; i += 1) {
    s = step(s, { ...slow, t, effective: "low-video" });
    t += 1000;
  }
  assert.equal(s.level, "audio");
  assert.equal(s.reason, "probe-failed");
});

test("the call runs at the lower of the two levels and says whose", () => {
  assert.deepEqual(callLevel("video", "audio"), { level: "audio", cause: "theirs" });
  assert.deepEqual(callLevel("text", "video"), { level: "text", cause: "mine" });
  assert.deepEqual(callLevel("low-video", null), { level: "low-video", cause: "mine" });
  assert.deepEqual(LEVELS, ["text", "audio", "low-video", "video"]);
});

// The Python peer's port (signaling/peer/quality.py) must decide exactly as this one does: the
// same sequences, the same levels (tests/test_peer_quality.py replays the same file).
test("recorded sequences replay to the pinned levels (shared with the Python port)", () => {
  const vectors = JSON.parse(readFileSync(new URL("../vectors/ladder.json", import.meta.url)));
  assert.ok(vectors.sequences.length >= 5);
  for (const seq of vectors.sequences) {
    let s = initialState(seq.start.level, seq.start.cap);
    const got = [];
    for (const item of seq.steps) {
      s = item.cap ? setCap(s, item.cap, item.t) : step(s, item.sample);
      got.push([s.level, s.net, s.reason]);
    }
    assert.deepEqual(got, seq.expect, seq.name);
  }
});
