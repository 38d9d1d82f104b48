// The call quality ladder: video -> low video -> audio only -> text only (ARCHITECTURE.md,
// "Call quality ladder"). A pure decision function over sampled stats: no DOM, no WebRTC, no
// clock of its own (every sample carries its time), so recorded sequences replay exactly.
//
// Steps down after a few bad samples, straight to the level the samples support (a collapse
// reaches text at once); steps up one level at a time, slowly, with hysteresis: a level must be
// comfortably supported for a while, and every failed climb doubles the wait before the next
// (flapping backs off). From audio or text, where there is too little traffic to measure
// headroom, a climb is a probe: it is taken after the wait, and undone quickly if the samples
// turn bad within the probe window.

export const LEVELS = Object.freeze(["text", "audio", "low-video", "video"]);

export const DEFAULTS = Object.freeze({
  // What each level needs (bits/s of available outgoing bitrate; loss fraction; RTT seconds).
  // Reference numbers: OpenTok, Jitsi and Nextcloud Talk pre-call thresholds (ARCHITECTURE.md).
  minBitrate: { video: 300_000, "low-video": 150_000, audio: 30_000 },
  maxLoss: { video: 0.05, "low-video": 0.10, audio: 0.20 },
  maxRtt: { video: 1.0, "low-video": 1.2, audio: 1.5 },
  // Climbing needs more than just enough: headroom factor on bitrate, tighter loss.
  upBitrateFactor: 1.3,
  upLossFactor: 0.5,
  downSamples: 3, // consecutive bad samples before stepping down
  upSamples: 5, // consecutive good samples before stepping up
  holdMs: 8_000, // minimum time at a level after stepping down, before climbing
  maxHoldMs: 64_000, // the backoff ceiling
  probeMs: 6_000, // after a probing climb, bad samples within this window undo it quickly
  probeBadSamples: 2,
  staleMs: 5_000, // no fresh sample for this long counts as a bad sample ("text")
});

export function rank(level) {
  const i = LEVELS.indexOf(level);
  if (i < 0) throw new RangeError(`unknown level ${level}`);
  return i;
}

export function lower(a, b) {
  return rank(a) <= rank(b) ? a : b;
}

function supports(level, sample, cfg, climbing) {
  if (level === "text") return true;
  const bitrate = sample.availableOutgoingBitrate;
  const factor = climbing ? cfg.upBitrateFactor : 1;
  if (bitrate !== null && bitrate !== undefined && bitrate < cfg.minBitrate[level] * factor) {
    return false;
  }
  const loss = sample.loss;
  const lossLimit = cfg.maxLoss[level] * (climbing ? cfg.upLossFactor : 1);
  if (loss !== null && loss !== undefined && loss > lossLimit) return false;
  const rtt = sample.rtt;
  if (rtt !== null && rtt !== undefined && rtt > cfg.maxRtt[level]) return false;
  if (sample.connected === false) return false;
  return true;
}

// The highest level one sample supports (missing measurements count as no evidence against).
export function assess(sample, cfg = DEFAULTS, climbing = false) {
  for (let i = LEVELS.length - 1; i > 0; i -= 1) {
    if (supports(LEVELS[i], sample, cfg, climbing)) return LEVELS[i];
  }
  return "text";
}

export function initialState(level = "video", cap = "video") {
  return Object.freeze({
    level: lower(level, cap),
    cap,
    bad: 0,
    good: 0,
    changedAt: null,
    holdMs: DEFAULTS.holdMs,
    probeUntil: null,
    lastSampleAt: null,
    reason: "start",
  });
}

// A manual choice ("Audio only", "Text only", data saver) caps the level; automatic steps
// never go above it. Raising the cap never raises the level by itself beyond one probe.
export function setCap(state, cap, now) {
  rank(cap);
  const level = lower(state.level, cap);
  return Object.freeze({
    ...state, cap, level, bad: 0, good: 0,
    changedAt: level !== state.level ? now : state.changedAt,
    reason: level !== state.level ? "manual" : state.reason,
  });
}

// One decision. Returns the new (frozen) state; `state.level !== previous.level` means change,
// `state.reason` says why: "network-down", "network-up", "probe-failed", "manual", "stale".
export function step(state, sample, cfg = DEFAULTS) {
  const now = sample.t;
  const next = { ...state, lastSampleAt: now };
  const current = rank(state.level);
  const supported = rank(assess(sample, cfg, false));
  const climbable = rank(assess(sample, cfg, true));
  const inProbe = state.probeUntil !== null && now <= state.probeUntil;

  if (supported < current) {
    next.good = 0;
    next.bad = state.bad + 1;
    const needed = inProbe ? cfg.probeBadSamples : cfg.downSamples;
    if (next.bad >= needed) {
      next.level = LEVELS[supported];
      next.bad = 0;
      next.changedAt = now;
      next.reason = inProbe ? "probe-failed" : "network-down";
      // A climb that failed, or a fall soon after a climb, doubles the wait (flapping).
      const recentClimb = state.reason === "network-up" && state.changedAt !== null
        && now - state.changedAt < cfg.holdMs * 2;
      next.holdMs = inProbe || recentClimb
        ? Math.min(state.holdMs * 2, cfg.maxHoldMs) : state.holdMs;
      next.probeUntil = null;
    }
    return Object.freeze(next);
  }

  next.bad = 0;
  if (state.probeUntil !== null && now > state.probeUntil) {
    next.probeUntil = null;
    next.holdMs = Math.max(cfg.holdMs, Math.floor(state.holdMs / 2)); // a success relaxes
  }
  // Climb only one level, only with headroom for it. From audio or text there is too little
  // traffic to measure bitrate or loss: missing evidence does not block, so the climb is a
  // probe, undone after probeBadSamples bad samples inside the probe window.
  const canClimb = current < rank(state.cap) && climbable > current;
  if (!canClimb) {
    next.good = 0;
    return Object.freeze(next);
  }
  next.good = state.good + 1;
  const held = state.changedAt === null || now - state.changedAt >= state.holdMs;
  if (next.good >= cfg.upSamples && held) {
    next.level = LEVELS[current + 1];
    next.good = 0;
    next.changedAt = now;
    next.reason = "network-up";
    next.probeUntil = now + cfg.probeMs;
  }
  return Object.freeze(next);
}

// The call runs at the lower of the two announced levels; say whose connection decided.
export function callLevel(mine, theirs) {
  if (theirs === null || theirs === undefined) return { level: mine, cause: "mine" };
  if (rank(theirs) < rank(mine)) return { level: theirs, cause: "theirs" };
  return { level: mine, cause: "mine" };
}
