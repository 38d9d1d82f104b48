// The quality ladder's decision function over recorded stat sequences (node --test).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  DEFAULTS, LEVELS, assess, callLevel, initialState, setCap, step,
} from "../../web/static/js/ladder.js";

const GOOD = { availableOutgoingBitrate: 1_500_000, loss: 0, rtt: 0.05 };
const LOW = { availableOutgoingBitrate: 200_000, loss: 0.02, rtt: 0.1 }; // low video
const K100 = { availableOutgoingBitrate: 90_000, loss: 0.03, rtt: 0.3 }; // ~100 kbit/s: audio
const K20 = { availableOutgoingBitrate: 18_000, loss: 0.15, rtt: 0.9 }; // ~20 kbit/s: text
const LOSS40 = { availableOutgoingBitrate: 800_000, loss: 0.4, rtt: 0.2 }; // 40% loss: text
const QUIET = { availableOutgoingBitrate: null, loss: null, rtt: 0.06 }; // text/audio: no media

// Replays samples one per second from t0; returns the level after each sample.
function replay(samples, state = initialState(), t0 = 0) {
  const levels = [];
  let s = state;
  samples.forEach((sample, i) => {
    s = step(s, { ...sample, t: t0 + i * 1000 });
    levels.push(s.level);
  });
  return { levels, state: s };
}

const times = (sample, n) => Array.from({ length: n }, () => sample);

test("assess maps reference conditions to levels", () => {
  assert.equal(assess(GOOD), "video");
  assert.equal(assess(LOW), "low-video");
  assert.equal(assess(K100), "audio");
  assert.equal(assess(K20), "text");
  assert.equal(assess(LOSS40), "text");
  assert.equal(assess({ ...GOOD, rtt: 1.6 }), "text", "RTT over 1.5 s is very bad");
  assert.equal(assess({ ...GOOD, loss: 0.08 }), "low-video");
  assert.equal(assess(QUIET), "video", "no evidence against");
  assert.equal(assess({ ...GOOD, connected: false }), "text");
});

test("steady good network stays at video", () => {
  const { levels } = replay(times(GOOD, 60));
  assert.ok(levels.every((l) => l === "video"));
});

test("a single bad sample does not step down", () => {
  const { levels } = replay([...times(GOOD, 5), K20, K20, ...times(GOOD, 10)]);
  assert.ok(levels.every((l) => l === "video"));
});

test("slow decline steps through the levels", () => {
  const { levels } = replay([...times(GOOD, 5), ...times(LOW, 6), ...times(K100, 6), ...times(K20, 6)]);
  assert.equal(levels[4], "video");
  assert.equal(levels[10], "low-video");
  assert.equal(levels[16], "audio");
  assert.equal(levels[22], "text");
});

test("a sudden collapse reaches text within the down window (3 samples)", () => {
  const { levels } = replay([...times(GOOD, 5), ...times(K20, 5)]);
  assert.equal(levels[6], "video");
  assert.equal(levels[7], "text");
  const loss = replay([...times(GOOD, 5), ...times(LOSS40, 5)]).levels;
  assert.equal(loss[7], "text");
});

test("recovery climbs one level at a time, slowly, back to video within 40 s", () => {
  const collapsed = replay([...times(GOOD, 3), ...times(K20, 4)]).state;
  assert.equal(collapsed.level, "text");
  const { levels } = replay(times(GOOD, 40), collapsed, 10_000);
  const changes = levels.filter((l, i) => i === 0 || l !== levels[i - 1]);
  assert.deepEqual(changes, ["text", "audio", "low-video", "video"], "one level at a time");
  assert.equal(levels[levels.length - 1], "video");
  assert.equal(levels[3], "text", "not immediately");
});

test("flapping backs off: each failed probe doubles the wait", () => {
  let s = replay([...times(GOOD, 3), ...times(K20, 4)]).state;
  assert.equal(s.level, "text");
  const holds = [];
  let t = 10_000;
  for (let round = 0; round < 3; round += 1) {
    // Quiet network until a probe climbs, then bad again.
    let climbed = false;
    for (let i = 0; i < 200 && !climbed; i += 1) {
      s = step(s, { ...QUIET, t });
      t += 1000;
      climbed = s.level !== "text";
    }
    assert.ok(climbed, "it probes upwards eventually");
    for (let i = 0; i < DEFAULTS.probeBadSamples; i += 1) {
      s = step(s, { ...K20, t });
      t += 1000;
    }
    assert.equal(s.level, "text");
    assert.equal(s.reason, "probe-failed");
    holds.push(s.holdMs);
  }
  assert.ok(holds[1] > holds[0] && holds[2] > holds[1], `holds grow: ${holds}`);
  assert.ok(holds[2] <= DEFAULTS.maxHoldMs);
});

test("a manual choice is never overridden upwards", () => {
  let s = setCap(initialState(), "audio", 0);
  assert.equal(s.level, "audio");
  assert.equal(s.reason, "manual");
  s = replay(times(GOOD, 60), s, 1000).state;
  assert.equal(s.level, "audio");
  s = replay(times(K20, 4), s, 70_000).state;
  assert.equal(s.level, "text", "but the network can still push it lower");
  s = setCap(s, "video", 80_000);
  s = replay(times(GOOD, 60), s, 81_000).state;
  assert.equal(s.level, "video");
});

test("the call runs at the lower of the two levels and says whose", () => {
  assert.deepEqual(callLevel("video", "audio"), { level: "audio", cause: "theirs" });
  assert.deepEqual(callLevel("text", "video"), { level: "text", cause: "mine" });
  assert.deepEqual(callLevel("low-video", null), { level: "low-video", cause: "mine" });
  assert.deepEqual(LEVELS, ["text", "audio", "low-video", "video"]);
});
