// The pre-join "Check connection" (issue 6): the camera and microphone (the local preview
// stream), then a network test against the server's echo peer (docs/protocol.md section 13).
// No DOM of its own (strings via i18n.js); nothing is recorded: only synthetic probe bytes are
// sent, never the camera or microphone.
//
// 1. POST /api/precheck/turn: a one-minute TURN credential (or none: host candidates only).
// 2. Two echo sessions at once (non-trickle offer -> POST /api/precheck/echo -> answer):
//    - "direct": iceTransportPolicy "all"; if the selected pair's local candidate is host,
//      srflx or prflx over UDP, direct UDP works;
//    - "relay" (only with a TURN credential): iceTransportPolicy "relay"; connected and one
//      probe echoed means the TURN relay works. Closed as soon as that is known.
// 3. On the direct session (or the relayed one if direct failed): RTT from small timestamped
//    probes on an ordered channel, loss from probes on an unordered channel without
//    retransmits, then throughput from bulk data echoed for ~2.5 s (bounded bytes and buffer);
//    the echo is the smaller of upstream and downstream.
// 4. A verdict: "video" | "audio" | "text", with the thresholds of the call quality ladder
//    (ladder.js DEFAULTS: OpenTok/Jitsi reference numbers), and what to try.
// The whole check is bounded by TOTAL_MS (< 15 s).

import { t } from "./i18n.js";
import { DEFAULTS } from "./ladder.js";
import { wsUrl } from "./protocol.js";

const WS_TIMEOUT_MS = 5000;
const TOTAL_MS = 14_000;
const CRED_TIMEOUT_MS = 2500;
const GATHER_MS = 2500;
const CONNECT_MS = 5000;
const RTT_PROBES = 8;
const RTT_GAP_MS = 100;
const LOSS_PROBES = 40;
const LOSS_GAP_MS = 25;
const PROBE_GRACE_MS = 800;
const BULK_MS = 2500;
const BULK_DRAIN_MS = 800;
const BULK_CHUNK = 2 * 1024; // small: on a slow link whole messages must come back in time
const BULK_MAX_BUFFERED = 256 * 1024;
const BULK_MAX_BYTES = 6 * 1024 * 1024;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function within(promise, ms, fallback) {
  let timer;
  return Promise.race([
    promise,
    new Promise((resolve) => {
      timer = setTimeout(() => resolve(fallback), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Whether a WebSocket to the server's /ws opens (closed at once, before any join). */
export function serverReachable(url = wsUrl(globalThis.location), timeoutMs = WS_TIMEOUT_MS) {
  return new Promise((resolve) => {
    let ws;
    let done = false;
    const finish = (ok) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try {
        ws.close(1000);
      } catch {
        /* not open */
      }
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    try {
      ws = new WebSocket(url);
    } catch {
      finish(false);
      return;
    }
    ws.addEventListener("open", () => finish(true));
    ws.addEventListener("error", () => finish(false));
    ws.addEventListener("close", () => finish(false));
  });
}

async function postJson(path, body, timeoutMs) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const response = await fetch(path, {
      method: "POST",
      headers: { Accept: "application/json", "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
      signal: controller.signal,
    });
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    return { status: response.status, data };
  } catch {
    return { status: 0, data: null };
  } finally {
    clearTimeout(timer);
  }
}

/** The pre-call TURN credential's iceServers ([] without TURN or on any error). */
export async function precheckIceServers() {
  const { status, data } = await postJson("/api/precheck/turn", undefined, CRED_TIMEOUT_MS);
  return status === 200 && data && Array.isArray(data.iceServers) ? data.iceServers : [];
}

function waitOpen(channel, ms) {
  if (channel.readyState === "open") return Promise.resolve(true);
  return within(
    new Promise((resolve) => {
      channel.addEventListener("open", () => resolve(true), { once: true });
      channel.addEventListener("close", () => resolve(false), { once: true });
    }),
    ms,
    false,
  );
}

function gathered(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return within(
    new Promise((resolve) => {
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") resolve();
      });
    }),
    ms,
    undefined,
  );
}

/** One session with the echo peer; `error` says why it did not connect. */
class EchoSession {
  constructor(config, { measure }) {
    this.pc = new RTCPeerConnection(config);
    this.rtt = this.pc.createDataChannel("rtt");
    this.loss = measure ? this.pc.createDataChannel("loss", { ordered: false, maxRetransmits: 0 }) : null;
    this.bulk = measure ? this.pc.createDataChannel("bulk") : null;
    for (const channel of [this.rtt, this.loss, this.bulk]) if (channel) channel.binaryType = "arraybuffer";
    this.error = null;
    this.connected = false;
  }

  async connect(deadline) {
    try {
      await this.pc.setLocalDescription(await this.pc.createOffer());
      await gathered(this.pc, Math.min(GATHER_MS, deadline - Date.now()));
      const offer = this.pc.localDescription;
      const { status, data } = await postJson(
        "/api/precheck/echo",
        { type: "offer", sdp: offer.sdp },
        Math.max(500, deadline - Date.now()),
      );
      if (status !== 200 || !data || data.type !== "answer") {
        this.error = (data && data.error) || (status ? `http_${status}` : "unreachable");
        return false;
      }
      await this.pc.setRemoteDescription({ type: "answer", sdp: data.sdp });
      this.connected = await waitOpen(this.rtt, Math.max(0, Math.min(CONNECT_MS, deadline - Date.now())));
      if (!this.connected) this.error = "no_connection";
      return this.connected;
    } catch {
      this.error = this.error || "webrtc";
      return false;
    }
  }

  /** {local, protocol} of the selected candidate pair, or null. */
  async selected() {
    try {
      const stats = await this.pc.getStats();
      let pair = null;
      stats.forEach((s) => {
        if (s.type === "transport" && s.selectedCandidatePairId && !pair) pair = stats.get(s.selectedCandidatePairId);
      });
      if (!pair) {
        stats.forEach((s) => {
          if (!pair && s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s;
        });
      }
      const local = pair && stats.get(pair.localCandidateId);
      return local ? { local: local.candidateType, protocol: local.protocol } : null;
    } catch {
      return null;
    }
  }

  /** Send `count` probes `gap` ms apart on `channel`; resolves to the RTTs (ms) that came back. */
  async probes(channel, count, gap) {
    const sent = new Map();
    const rtts = [];
    const onMessage = (e) => {
      if (typeof e.data !== "string") return;
      const at = sent.get(e.data);
      if (at !== undefined) {
        rtts.push(performance.now() - at);
        sent.delete(e.data);
      }
    };
    channel.addEventListener("message", onMessage);
    try {
      for (let i = 0; i < count && channel.readyState === "open"; i += 1) {
        const probe = `${channel.label}:${i}`;
        sent.set(probe, performance.now());
        channel.send(probe);
        await sleep(gap);
      }
      await sleep(PROBE_GRACE_MS);
    } catch {
      /* the channel closed: what came back counts */
    } finally {
      channel.removeEventListener("message", onMessage);
    }
    return rtts;
  }

  /** Bulk echo for BULK_MS (bounded bytes and buffer): bits/s of echoed data. */
  async throughput() {
    const channel = this.bulk;
    if (!channel || channel.readyState !== "open") return 0;
    const chunk = new ArrayBuffer(BULK_CHUNK);
    const start = performance.now();
    let received = 0;
    let lastAt = start;
    const onMessage = (e) => {
      received += e.data.byteLength || e.data.length || 0;
      lastAt = performance.now();
    };
    channel.addEventListener("message", onMessage);
    let sent = 0;
    try {
      while (performance.now() - start < BULK_MS && channel.readyState === "open") {
        while (channel.bufferedAmount < BULK_MAX_BUFFERED && sent < BULK_MAX_BYTES) {
          channel.send(chunk);
          sent += BULK_CHUNK;
        }
        await sleep(10);
      }
      await sleep(BULK_DRAIN_MS);
    } catch {
      /* closed under us */
    } finally {
      channel.removeEventListener("message", onMessage);
    }
    const seconds = Math.max(0.5, (lastAt - start) / 1000);
    return (received * 8) / seconds;
  }

  close() {
    try {
      this.pc.close();
    } catch {
      /* closed */
    }
  }
}

function median(values) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/**
 * The network level the measurements support ("video", "low-video", "audio", "text"), with
 * the call ladder's thresholds (bitrate in bits/s, loss fraction, RTT seconds).
 */
export function networkLevel({ bitrate, loss, rttMs }, cfg = DEFAULTS) {
  const rtt = rttMs === null ? null : rttMs / 1000;
  for (const level of ["video", "low-video", "audio"]) {
    if (
      bitrate >= cfg.minBitrate[level] &&
      loss <= cfg.maxLoss[level] &&
      (rtt === null || rtt <= cfg.maxRtt[level])
    ) {
      return level;
    }
  }
  return "text";
}

/** Measure the network against the echo peer. Never throws; bounded by TOTAL_MS. */
export async function networkTest({ onStep = () => undefined } = {}) {
  const deadline = Date.now() + TOTAL_MS;
  const result = {
    connected: false, error: null, udp: false, turn: null, rttMs: null, loss: null, bitrate: 0,
  };
  const servers = await precheckIceServers();
  const hasTurn = servers.some((s) => [].concat(s.urls || []).some((u) => /^turns?:/.test(u)));
  const direct = new EchoSession({ iceServers: servers }, { measure: true });
  const relay = hasTurn ? new EchoSession({ iceServers: servers, iceTransportPolicy: "relay" }, { measure: false }) : null;
  try {
    onStep("connecting");
    const connectBy = Math.min(deadline - BULK_MS - 3000, Date.now() + CONNECT_MS + GATHER_MS);
    const relayDone = relay
      ? relay.connect(connectBy).then(async (ok) => {
          const echoed = ok ? (await relay.probes(relay.rtt, 2, 50)).length > 0 : false;
          const path = ok ? await relay.selected() : null;
          result.turn = Boolean(echoed && path && path.local === "relay");
          relay.close();
        })
      : Promise.resolve();
    const directOk = await direct.connect(connectBy);
    if (directOk) {
      const path = await direct.selected();
      result.udp = Boolean(path && path.local !== "relay" && path.protocol === "udp");
    }
    await relayDone;
    let main = direct;
    if (!directOk && result.turn) {
      // Direct UDP is blocked but the relay works: measure through a relayed session.
      main = new EchoSession({ iceServers: servers, iceTransportPolicy: "relay" }, { measure: true });
      if (!(await main.connect(Math.min(deadline - BULK_MS - 2000, Date.now() + CONNECT_MS)))) {
        main.close();
        main = null;
      }
    }
    if (!main || !main.connected) {
      result.error = direct.error || "no_connection";
      return result;
    }
    result.connected = true;
    onStep("measuring");
    const [rtts, answered] = await Promise.all([
      main.probes(main.rtt, RTT_PROBES, RTT_GAP_MS),
      main.probes(main.loss, LOSS_PROBES, LOSS_GAP_MS),
    ]);
    result.rttMs = median(rtts);
    result.loss = 1 - answered.length / LOSS_PROBES;
    if (Date.now() + BULK_MS + BULK_DRAIN_MS < deadline) result.bitrate = await main.throughput();
    if (main !== direct) main.close();
    return result;
  } catch {
    result.error = result.error || "webrtc";
    return result;
  } finally {
    direct.close();
    if (relay) relay.close();
  }
}

const pct = (x) => Math.round(x * 100);

/** The plain-language details line of a network result. */
function details(net) {
  const parts = [];
  if (net.rttMs !== null) parts.push(t("precheck_rtt", { ms: Math.round(net.rttMs) }));
  if (net.loss !== null) parts.push(t("precheck_loss", { pct: pct(net.loss) }));
  if (net.connected) parts.push(t("precheck_speed", { kbps: Math.round(net.bitrate / 1000) }));
  parts.push(t(net.udp ? "precheck_udp_yes" : "precheck_udp_no"));
  if (net.turn !== null) parts.push(t(net.turn ? "precheck_turn_yes" : "precheck_turn_no"));
  return parts.join(" · ");
}

/**
 * {verdict, server, text, net}: the best call mode the camera, microphone and network support,
 * and a sentence that begins with "Video", "Audio only" or "Text only" and says what to try.
 */
export async function checkConnection({ stream, onProgress = () => undefined }) {
  const live = (kind) => Boolean(stream && stream.getTracks().some((x) => x.kind === kind && x.readyState === "live"));
  onProgress(t("precheck_devices"));
  const devices = live("audio") && live("video") ? "video" : live("audio") ? "audio" : "text";
  onProgress(t("precheck_network"));
  const [server, net] = await Promise.all([
    serverReachable(),
    networkTest({ onStep: () => onProgress(t("precheck_network")) }),
  ]);
  if (!net.connected) {
    if (net.error === "busy" || net.error === "rate_limited" || net.error === "timeout") {
      // The echo peer is busy: only the local check can be given.
      const base = server ? t(`check_${devices}`) : t("check_no_server");
      return { verdict: server ? devices : "text", server, net, text: `${base} ${t("precheck_busy")}` };
    }
    return { verdict: "text", server, net, text: `${t("precheck_text_blocked")} (${details(net)})` };
  }
  const level = networkLevel(net);
  let key;
  let verdict;
  if (level === "text") {
    verdict = "text";
    key = "precheck_text_net";
  } else if (devices === "text") {
    verdict = "text";
    key = "check_text";
  } else if (level === "audio") {
    verdict = "audio";
    key = "precheck_audio_net";
  } else if (devices === "audio") {
    verdict = "audio";
    key = "check_audio";
  } else {
    verdict = "video";
    key = level === "video" ? "precheck_video" : "precheck_video_low";
  }
  let text = `${t(key)} (${details(net)})`;
  if (!net.udp && net.turn) text += ` ${t("precheck_relay_only")}`;
  return { verdict, server, net, level, text };
}
