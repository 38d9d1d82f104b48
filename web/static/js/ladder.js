// The call quality ladder: video -> low video -> audio only -> text only (ARCHITECTURE.md,
// "Call quality ladder"). A pure decision function over sampled stats: no DOM, no WebRTC, no
// clock of its own (every sample carries its time), so recorded sequences replay exactly.
// signaling/peer/quality.py is a line-by-line port for the Python peer: change both together
// (tests/vectors/ladder.json pins their agreement).
//
// The state keeps two levels: `net`, what the network supports, and `cap`, the person's choice
// ("Audio only", "Text only", data saver). The level used is the lower of the two, so a manual
// choice is never overridden upwards, and lifting it returns at once to what the network allows.
//
// Down: after a few bad samples, straight to the level the bad samples support (their median,
// so one outlier neither deepens nor softens the fall; a collapse reaches text at once).
// Up: one level at a time, after a hold, with hysteresis (tighter loss, an empty queue). A climb
// is always a probe: what a level needs can only be measured by sending it, so after a climb the
// probe window undoes it after fewer bad samples (back to the level it left, unless the loss is
// severe), and each failed climb doubles the hold before the next (flapping backs off, up to a
// ceiling). From text only nothing is sent, so nothing says whether a narrow link widened: the
// climb to audio is a blind probe, and the hold's ceiling bounds how long a recovery waits.
//
// What the samples can say depends on what is being sent (`effective`: the level the call runs
// at, the lower of both sides'). The bandwidth estimate is evidence only while video flows, and
// only about levels up to the one being sent, and not while it ramps up after a rise. A probe
// waits while the other side holds the call lower: it starts when the call really climbs.
// Loss while the estimate is below what the level sent needs is congestion of our own making,
// and says nothing about lighter levels: then the estimate decides, unless the loss is severe
// (random loss shows before the estimate falls: it is judged on the first samples).
// Climbing also needs an empty queue: the RTT near its minimum.

export const LEVELS = Object.freeze(["text", "audio", "low-video", "video"]);

export const DEFAULTS = Object.freeze({
  // What each level needs (bits/s of available outgoing bitrate; loss fraction; RTT seconds).
  // Reference numbers: OpenTok, Jitsi and Nextcloud Talk pre-call thresholds (ARCHITECTURE.md).
  minBitrate: { video: 300_000, "low-video": 150_000, audio: 30_000 },
  maxLoss: { video: 0.05, "low-video": 0.10, audio: 0.20 },
  maxRtt: { video: 1.0, "low-video": 1.2, audio: 1.5 },
  severeLoss: 0.6, // this much loss, lasting two samples (or not ours), supports text only
  // Climbing needs more than just enough: tighter loss, and no queue.
  upLossFactor: 0.5,
  upQueueDelay: 0.1,
  downSamples: 3, // consecutive bad samples before stepping down
  upSamples: 3, // consecutive good samples before stepping up
  climbSamples: 2, // ... when the last change was a climb (a recovery goes on)
  holdMs: 6_000, // minimum time at a level after stepping down, before climbing
  maxHoldMs: 12_000, // the backoff ceiling
  climbMs: 2_000, // minimum time between two climbs
  probeMs: 8_000, // after a climb, bad samples within this window undo it quickly
  probeBadSamples: 2,
  rampMs: 3_000, // after what is sent rises, the bandwidth estimate is not evidence yet
  settleMs: 12_000, // after what is sent falls, samples taken while the link drains are skipped
  rttWindowMs: 120_000, // the RTT minimum is forgotten after this long
});

export function rank(level) {
  const i = LEVELS.indexOf(level);
  if (i < 0) throw new RangeError(`unknown level ${level}`);
  return i;
}

export function lower(a, b) {
  return rank(a) <= rank(b) ? a : b;
}

const present = (x) => x !== null && x !== undefined;

function supports(level, sample, cfg, climbing, ctx) {
  if (level === "text") return true;
  if (sample.connected === false || sample.audioStarved) return false;
  if (sample.videoStarved && rank(level) >= rank("low-video")) return false;
  const effective = ctx.effective;
  const bitrate = sample.availableOutgoingBitrate;
  // The estimate says something only while video flows, and only up to what is sent: a level
  // above needs at least what the level sent needs.
  const bitrateEvidence = present(bitrate) && !ctx.ramping && rank(effective) >= rank("low-video");
  if (bitrateEvidence && bitrate < cfg.minBitrate[lower(level, effective)]) return false;
  const queue = ctx.queueDelay;
  if (climbing && present(queue) && queue > cfg.upQueueDelay) return false;
  const loss = sample.loss;
  if (present(loss)) {
    const selfMade = bitrateEvidence && rank(level) < rank(effective)
      && bitrate < cfg.minBitrate[effective];
    // The first second of a sudden squeeze loses almost everything until the encoder adapts:
    // severe loss of our own making counts once it lasts (two samples running).
    if (loss >= cfg.severeLoss && (!selfMade || ctx.severeBefore)) return false;
    const limit = cfg.maxLoss[level] * (climbing ? cfg.upLossFactor : 1);
    if (!selfMade && loss > limit) return false;
  }
  const rtt = sample.rtt;
  if (present(rtt) && rtt > cfg.maxRtt[level]) return false;
  return true;
}

/**
 * The highest level one sample supports (missing measurements count as no evidence against).
 * ctx: {effective: the level being sent (default "video"), ramping, queueDelay (s),
 * severeBefore: the sample before had severe loss}.
 */
export function assess(sample, cfg = DEFAULTS, climbing = false, ctx = {}) {
  const c = { effective: "video", ramping: false, queueDelay: null, severeBefore: false, ...ctx };
  for (let i = LEVELS.length - 1; i > 0; i -= 1) {
    if (supports(LEVELS[i], sample, cfg, climbing, c)) return LEVELS[i];
  }
  return "text";
}

export function initialState(level = "video", cap = "video", cfg = DEFAULTS) {
  rank(level);
  rank(cap);
  return Object.freeze({
    net: level,
    cap,
    level: lower(level, cap),
    effective: null,
    bad: 0,
    badLevels: Object.freeze([]),
    good: 0,
    changedAt: null,
    holdMs: cfg.holdMs,
    probeUntil: null,
    rampUntil: null,
    fellAt: null,
    severe: false,
    minRtt: null,
    minRttAt: null,
    lastSampleAt: null,
    reason: lower(level, cap) === level ? "start" : "manual",
  });
}

function withLevel(s) {
  s.level = lower(s.net, s.cap);
  return Object.freeze(s);
}

// A manual choice ("Audio only", "Text only", data saver) caps the level; automatic steps never
// go above it. Lifting it returns at once to what the network supports.
export function setCap(state, cap, _now = null) {
  rank(cap);
  const s = { ...state, cap };
  if (lower(state.net, cap) !== state.level) s.reason = "manual";
  return withLevel(s);
}

/** Why the level is what it is: "manual" (capped by a choice), "normal" (video), "network". */
export function cause(state) {
  if (rank(state.cap) < rank(state.net)) return "manual";
  return state.level === "video" ? "normal" : "network";
}

// The median of the bad samples' levels (of two, the higher: a fall goes no deeper than the
// evidence agrees on).
function medianRank(ranks) {
  const sorted = [...ranks].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

// One decision. Returns the new (frozen) state; `state.level !== previous.level` means change,
// `state.reason` says why the network level last moved: "network-down", "network-up",
// "probe-failed" ("manual" after setCap). The sample: {t (ms), availableOutgoingBitrate (bit/s),
// loss (0..1), rtt (s), connected, audioStarved, videoStarved, draining, effective (the call's
// level)}.
export function step(state, sample, cfg = DEFAULTS) {
  const now = sample.t;
  const s = { ...state, lastSampleAt: now };
  const effective = sample.effective ?? state.level;
  rank(effective);
  if (state.effective !== null && rank(effective) > rank(state.effective)) {
    s.rampUntil = now + cfg.rampMs; // more is sent: the estimate needs time to follow
  }
  if (state.effective !== null && rank(effective) < rank(state.effective)) s.fellAt = now;
  if (state.effective !== null && effective !== state.effective) {
    // Samples taken while another level was sent do not add up with these.
    s.bad = 0;
    s.badLevels = Object.freeze([]);
    s.good = 0;
  }
  s.effective = effective;
  // Less is sent, but the link still drains what the level above left (retransmissions): what
  // this sample measures is not about the new level. Skipped, for a while at most, unless its
  // loss is severe (the new level does not fit either).
  const severeNow = present(sample.loss) && sample.loss >= cfg.severeLoss;
  if (sample.draining && !severeNow && s.fellAt !== null && now - s.fellAt < cfg.settleMs) {
    return withLevel(s);
  }
  const rtt = sample.rtt;
  if (present(rtt) && (s.minRtt === null || rtt <= s.minRtt || now - s.minRttAt > cfg.rttWindowMs)) {
    s.minRtt = rtt;
    s.minRttAt = now;
  }
  const ctx = {
    effective,
    ramping: s.rampUntil !== null && now < s.rampUntil,
    queueDelay: present(rtt) && s.minRtt !== null ? rtt - s.minRtt : null,
    severeBefore: state.severe,
  };
  s.severe = severeNow;
  const current = rank(state.net);
  // A climb the call has not taken yet (the other side, or a cap, holds it lower) is not tested:
  // its probe window starts when it is.
  const pending = rank(effective) < current;
  if (pending && s.probeUntil !== null) s.probeUntil = now + cfg.probeMs;
  const inProbe = !pending && s.probeUntil !== null && now <= s.probeUntil;
  const supported = rank(assess(sample, cfg, false, ctx));

  if (supported < current) {
    s.good = 0;
    s.bad += 1;
    s.badLevels = Object.freeze([...s.badLevels, supported].slice(-cfg.downSamples));
    const needed = inProbe ? cfg.probeBadSamples : cfg.downSamples;
    if (s.bad >= needed) {
      // A failed probe goes back where it came from (that level was fine just before), unless
      // the loss is severe (the link collapsed meanwhile): then as any fall.
      const target = inProbe && !s.severe ? current - 1 : medianRank(s.badLevels);
      s.net = LEVELS[Math.min(target, current - 1)];
      s.bad = 0;
      s.badLevels = Object.freeze([]);
      s.reason = inProbe ? "probe-failed" : "network-down";
      // A climb that failed, or a fall soon after a climb, doubles the wait (flapping).
      const recentClimb = !pending && state.reason === "network-up" && state.changedAt !== null
        && now - state.changedAt < state.holdMs * 2;
      s.holdMs = inProbe || recentClimb ? Math.min(state.holdMs * 2, cfg.maxHoldMs) : state.holdMs;
      s.changedAt = now;
      s.probeUntil = null;
    }
    return withLevel(s);
  }

  s.bad = 0;
  s.badLevels = Object.freeze([]);
  if (s.probeUntil !== null && now > s.probeUntil) {
    s.probeUntil = null;
    s.holdMs = Math.max(cfg.holdMs, Math.floor(state.holdMs / 2)); // a success relaxes
  }
  // Climb one level at a time, once the last climb is really in use, with headroom for it.
  const climbable = rank(assess(sample, cfg, true, ctx)) > current;
  if (pending || current === LEVELS.length - 1 || !climbable) {
    s.good = 0;
    return withLevel(s);
  }
  s.good += 1;
  const climbing = state.reason === "network-up";
  const held = state.changedAt === null
    || now - state.changedAt >= (climbing ? cfg.climbMs : state.holdMs);
  if (s.good >= (climbing ? cfg.climbSamples : cfg.upSamples) && held && !ctx.ramping) {
    s.net = LEVELS[current + 1];
    s.good = 0;
    s.changedAt = now;
    s.reason = "network-up";
    s.probeUntil = now + cfg.probeMs;
  }
  return withLevel(s);
}

// The call runs at the lower of the two announced levels; say whose connection decided.
export function callLevel(mine, theirs) {
  if (theirs === null || theirs === undefined) return { level: mine, cause: "mine" };
  if (rank(theirs) < rank(mine)) return { level: theirs, cause: "theirs" };
  return { level: mine, cause: "mine" };
}
