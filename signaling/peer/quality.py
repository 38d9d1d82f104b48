"""The call quality ladder for the Python peer: its own level from RTCP loss and RTT.

``step`` and friends are a line-by-line port of ``web/static/js/ladder.js`` (the reference: read
its comments for the reasons); ``tests/vectors/ladder.json`` pins that both decide alike.
``StatsSampler`` turns aiortc's ``getStats()`` into samples: aiortc has no bandwidth estimate
and no ICE statistics, so its evidence is the loss of what it receives (inbound-rtp), the other
side's receiver reports about what it sends (remote-inbound-rtp: fraction lost, RTT) and
starvation; with no media (text only) it has none, and climbs are probes.
``QualityMonitor`` is what the call uses: one sample about once a second while connected.

Times are milliseconds (as in the browser), the RTT is in seconds.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from signaling.peer.config import LEVELS, Level

_VIDEO: tuple[Level, ...] = ("low-video", "video")


def _carries(level: Level, kind: str) -> bool:
    return level in _VIDEO if kind == "video" else level != "text"


@dataclass(frozen=True, slots=True)
class LadderConfig:
    """ladder.js DEFAULTS."""

    min_bitrate: dict[str, float] = field(
        default_factory=lambda: {"video": 300_000, "low-video": 150_000, "audio": 30_000}
    )
    max_loss: dict[str, float] = field(
        default_factory=lambda: {"video": 0.05, "low-video": 0.10, "audio": 0.20}
    )
    max_rtt: dict[str, float] = field(
        default_factory=lambda: {"video": 1.0, "low-video": 1.2, "audio": 1.5}
    )
    severe_loss: float = 0.6
    up_loss_factor: float = 0.5
    up_queue_delay: float = 0.1
    down_samples: int = 3
    up_samples: int = 3
    climb_samples: int = 2
    hold_ms: int = 6_000
    max_hold_ms: int = 12_000
    climb_ms: int = 2_000
    probe_ms: int = 8_000
    probe_bad_samples: int = 2
    ramp_ms: int = 3_000
    settle_ms: int = 12_000
    rtt_window_ms: int = 120_000


DEFAULTS = LadderConfig()


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample: ``t`` in ms, bitrate in bit/s, loss 0..1, RTT in s (None: not measured)."""

    t: float
    effective: Level | None = None
    available_outgoing_bitrate: float | None = None
    loss: float | None = None
    rtt: float | None = None
    connected: bool | None = None
    audio_starved: bool = False
    video_starved: bool = False
    draining: bool = False

    @classmethod
    def from_js(cls, d: dict[str, Any]) -> Sample:
        """From a ladder.js sample (camelCase, as in tests/vectors/ladder.json)."""
        return cls(
            t=d["t"],
            effective=d.get("effective"),
            available_outgoing_bitrate=d.get("availableOutgoingBitrate"),
            loss=d.get("loss"),
            rtt=d.get("rtt"),
            connected=d.get("connected"),
            audio_starved=bool(d.get("audioStarved")),
            video_starved=bool(d.get("videoStarved")),
            draining=bool(d.get("draining")),
        )


@dataclass(frozen=True, slots=True)
class State:
    net: Level
    cap: Level
    level: Level
    effective: Level | None = None
    bad: int = 0
    bad_levels: tuple[int, ...] = ()
    good: int = 0
    changed_at: float | None = None
    hold_ms: float = DEFAULTS.hold_ms
    probe_until: float | None = None
    ramp_until: float | None = None
    fell_at: float | None = None
    severe: bool = False
    min_rtt: float | None = None
    min_rtt_at: float | None = None
    last_sample_at: float | None = None
    reason: str = "start"


def rank(level: str) -> int:
    if level not in LEVELS:
        raise ValueError(f"unknown level {level}")
    return LEVELS.index(level)


def lower(a: Level, b: Level) -> Level:
    return a if rank(a) <= rank(b) else b


@dataclass(frozen=True, slots=True)
class _Ctx:
    effective: Level = "video"
    ramping: bool = False
    queue_delay: float | None = None
    severe_before: bool = False


def _supports(level: Level, s: Sample, cfg: LadderConfig, climbing: bool, ctx: _Ctx) -> bool:
    if level == "text":
        return True
    if s.connected is False or s.audio_starved:
        return False
    if s.video_starved and rank(level) >= rank("low-video"):
        return False
    effective = ctx.effective
    bitrate = s.available_outgoing_bitrate
    evidence = bitrate is not None and not ctx.ramping and rank(effective) >= rank("low-video")
    if evidence and bitrate is not None and bitrate < cfg.min_bitrate[lower(level, effective)]:
        return False
    queue = ctx.queue_delay
    if climbing and queue is not None and queue > cfg.up_queue_delay:
        return False
    loss = s.loss
    if loss is not None:
        self_made = (
            evidence
            and bitrate is not None
            and rank(level) < rank(effective)
            and bitrate < cfg.min_bitrate[effective]
        )
        if loss >= cfg.severe_loss and (not self_made or ctx.severe_before):
            return False
        limit = cfg.max_loss[level] * (cfg.up_loss_factor if climbing else 1)
        if not self_made and loss > limit:
            return False
    if s.rtt is not None and s.rtt > cfg.max_rtt[level]:
        return False
    return True


def assess(
    sample: Sample, cfg: LadderConfig = DEFAULTS, climbing: bool = False, ctx: _Ctx | None = None
) -> Level:
    """The highest level one sample supports."""
    c = ctx or _Ctx()
    for level in reversed(LEVELS[1:]):
        if _supports(level, sample, cfg, climbing, c):
            return level
    return "text"


def initial_state(
    level: Level = "video", cap: Level = "video", cfg: LadderConfig = DEFAULTS
) -> State:
    rank(level)
    rank(cap)
    low = lower(level, cap)
    return State(
        net=level,
        cap=cap,
        level=low,
        hold_ms=cfg.hold_ms,
        reason="start" if low == level else "manual",
    )


def set_cap(state: State, cap: Level) -> State:
    """A manual choice caps the level; lifting it returns at once to what the network allows."""
    rank(cap)
    reason = "manual" if lower(state.net, cap) != state.level else state.reason
    return replace(state, cap=cap, level=lower(state.net, cap), reason=reason)


def cause(state: State) -> str:
    """ "manual" (capped by a choice), "normal" (video) or "network"."""
    if rank(state.cap) < rank(state.net):
        return "manual"
    return "normal" if state.level == "video" else "network"


def _median_rank(ranks: tuple[int, ...]) -> int:
    ordered = sorted(ranks)
    return ordered[len(ordered) // 2]


def step(state: State, sample: Sample, cfg: LadderConfig = DEFAULTS) -> State:
    """One decision (ladder.js ``step``)."""
    now = sample.t
    s: dict[str, Any] = dataclasses.asdict(state)
    s["last_sample_at"] = now
    s["bad_levels"] = tuple(state.bad_levels)
    effective: Level = sample.effective if sample.effective is not None else state.level
    rank(effective)
    if state.effective is not None and rank(effective) > rank(state.effective):
        s["ramp_until"] = now + cfg.ramp_ms
    if state.effective is not None and rank(effective) < rank(state.effective):
        s["fell_at"] = now
    if state.effective is not None and effective != state.effective:
        s["bad"], s["bad_levels"], s["good"] = 0, (), 0
    s["effective"] = effective
    severe_now = sample.loss is not None and sample.loss >= cfg.severe_loss
    settling = s["fell_at"] is not None and now - s["fell_at"] < cfg.settle_ms
    if sample.draining and not severe_now and settling:
        return _with_level(s)
    rtt = sample.rtt
    if rtt is not None and (
        s["min_rtt"] is None or rtt <= s["min_rtt"] or now - s["min_rtt_at"] > cfg.rtt_window_ms
    ):
        s["min_rtt"], s["min_rtt_at"] = rtt, now
    ctx = _Ctx(
        effective=effective,
        ramping=s["ramp_until"] is not None and now < s["ramp_until"],
        queue_delay=rtt - s["min_rtt"] if rtt is not None and s["min_rtt"] is not None else None,
        severe_before=state.severe,
    )
    s["severe"] = severe_now
    current = rank(state.net)
    pending = rank(effective) < current
    if pending and s["probe_until"] is not None:
        s["probe_until"] = now + cfg.probe_ms
    in_probe = not pending and s["probe_until"] is not None and now <= s["probe_until"]
    supported = rank(assess(sample, cfg, False, ctx))

    if supported < current:
        s["good"] = 0
        s["bad"] += 1
        s["bad_levels"] = (*s["bad_levels"], supported)[-cfg.down_samples :]
        needed = cfg.probe_bad_samples if in_probe else cfg.down_samples
        if s["bad"] >= needed:
            probe_back = in_probe and not s["severe"]
            target = current - 1 if probe_back else _median_rank(s["bad_levels"])
            s["net"] = LEVELS[min(target, current - 1)]
            s["bad"], s["bad_levels"] = 0, ()
            s["reason"] = "probe-failed" if in_probe else "network-down"
            recent_climb = (
                not pending
                and state.reason == "network-up"
                and state.changed_at is not None
                and now - state.changed_at < state.hold_ms * 2
            )
            if in_probe or recent_climb:
                s["hold_ms"] = min(state.hold_ms * 2, cfg.max_hold_ms)
            s["changed_at"] = now
            s["probe_until"] = None
        return _with_level(s)

    s["bad"], s["bad_levels"] = 0, ()
    if s["probe_until"] is not None and now > s["probe_until"]:
        s["probe_until"] = None
        s["hold_ms"] = max(cfg.hold_ms, state.hold_ms // 2)
    climbable = rank(assess(sample, cfg, True, ctx)) > current
    if pending or current == len(LEVELS) - 1 or not climbable:
        s["good"] = 0
        return _with_level(s)
    s["good"] += 1
    climbing = state.reason == "network-up"
    wait = cfg.climb_ms if climbing else state.hold_ms
    held = state.changed_at is None or now - state.changed_at >= wait
    needed = cfg.climb_samples if climbing else cfg.up_samples
    if s["good"] >= needed and held and not ctx.ramping:
        s["net"] = LEVELS[current + 1]
        s["good"] = 0
        s["changed_at"] = now
        s["reason"] = "network-up"
        s["probe_until"] = now + cfg.probe_ms
    return _with_level(s)


def _with_level(s: dict[str, Any]) -> State:
    s["level"] = lower(s["net"], s["cap"])
    return State(**s)


def call_level(mine: Level, theirs: Level | None) -> tuple[Level, str]:
    """The call runs at the lower of the two; ("mine" | "theirs") says whose decided."""
    if theirs is not None and rank(theirs) < rank(mine):
        return theirs, "theirs"
    return mine, "mine"


# --- aiortc's statistics ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Figures:
    t: float
    received: dict[str, int]
    lost: dict[str, int]
    sent: dict[str, int]
    remote: dict[str, tuple[Any, float | None, float | None]]  # kind -> (stamp, loss, rtt)


def _figures(report: Any, now: float) -> _Figures:
    received = {"audio": 0, "video": 0}
    lost = {"audio": 0, "video": 0}
    sent = {"audio": 0, "video": 0}
    remote: dict[str, tuple[Any, float | None, float | None]] = {}
    for stats in report.values():
        kind = getattr(stats, "kind", None)
        if kind not in received:
            continue
        if stats.type == "inbound-rtp":
            received[kind] += stats.packetsReceived or 0
            lost[kind] += max(0, stats.packetsLost or 0)
        elif stats.type == "outbound-rtp":
            sent[kind] += stats.bytesSent or 0
        elif stats.type == "remote-inbound-rtp":
            fraction = stats.fractionLost
            loss = None if fraction is None else fraction / 256  # RTCP's 8-bit fixed point
            remote[kind] = (stats.timestamp, loss, stats.roundTripTime)
    return _Figures(now, received, lost, sent, remote)


class StatsSampler:
    """quality.js ``StatsSampler`` for aiortc: one per peer connection."""

    MIN_PACKETS = 10
    STARVE_MS = 3000
    GRACE_MS = 3000
    RESUME_MS = 2500
    MAX_GAP_MS = 3500
    DRAIN_BYTES = 1000
    DRAIN_PACKETS = 2

    def __init__(self) -> None:
        self._prev: _Figures | None = None
        self._last_packet: dict[str, float | None] = {"audio": None, "video": None}
        self._flowing = {
            "received": {"audio": False, "video": False},
            "sent": {"audio": False, "video": False},
        }
        self._resumed: dict[str, dict[str, float | None]] = {
            "received": {"audio": None, "video": None},
            "sent": {"audio": None, "video": None},
        }
        self._level: Level | None = None
        self._level_at: float | None = None

    def sample(self, report: Any, now: float, level: Level) -> Sample:
        cur = _figures(report, now)
        if level != self._level:
            for kind in ("audio", "video"):
                if _carries(level, kind) and (
                    self._level is None or not _carries(self._level, kind)
                ):
                    self._resumed["received"][kind] = now
                    self._resumed["sent"][kind] = now
            self._level, self._level_at = level, now
        prev = self._prev
        if prev is not None and now - prev.t > self.MAX_GAP_MS:
            prev = None
            for kind, at in self._last_packet.items():
                if at is not None:
                    self._last_packet[kind] = now
        self._prev = cur
        if prev is None:
            return Sample(t=now, effective=level)

        def recent(at: float | None) -> bool:
            return at is not None and now - at < self.RESUME_MS

        losses: list[float] = []
        rtts: list[float] = []
        got: dict[str, int] = {}
        for kind in ("audio", "video"):
            got[kind] = max(0, cur.received[kind] - prev.received[kind])
            flows = {"received": got[kind] > 0, "sent": cur.sent[kind] > prev.sent[kind]}
            for way, now_flowing in flows.items():
                if now_flowing and not self._flowing[way][kind]:
                    self._resumed[way][kind] = now
                self._flowing[way][kind] = now_flowing
            lost = max(0, cur.lost[kind] - prev.lost[kind])
            if got[kind] > 0:
                self._last_packet[kind] = now
            elif cur.received[kind] > 0 and self._last_packet[kind] is None:
                self._last_packet[kind] = now
            if got[kind] + lost >= self.MIN_PACKETS and not recent(self._resumed["received"][kind]):
                losses.append(lost / (got[kind] + lost))
            r, p = cur.remote.get(kind), prev.remote.get(kind)
            if r is not None and (p is None or r[0] != p[0]):
                if r[1] is not None and not recent(self._resumed["sent"][kind]):
                    losses.append(r[1])
                if r[2] is not None:
                    rtts.append(r[2])
        settled = self._level_at is not None and now - self._level_at >= self.GRACE_MS

        def starved(kind: str) -> bool:
            at = self._last_packet[kind]
            return settled and at is not None and now - at >= self.STARVE_MS

        video_off = level not in _VIDEO
        sent_video = max(0, cur.sent["video"] - prev.sent["video"])
        sent_audio = max(0, cur.sent["audio"] - prev.sent["audio"])
        draining = (
            video_off and (sent_video > self.DRAIN_BYTES or got["video"] > self.DRAIN_PACKETS)
        ) or (
            level == "text" and (sent_audio > self.DRAIN_BYTES or got["audio"] > self.DRAIN_PACKETS)
        )
        return Sample(
            t=now,
            effective=level,
            loss=max(losses) if losses else None,
            rtt=max(rtts) if rtts else None,
            audio_starved=level != "text" and starved("audio"),
            video_starved=level in _VIDEO and starved("video"),
            draining=draining,
        )


class QualityMonitor:
    """This peer's own level: the ladder over its stats, capped by ``--text-only``."""

    SAMPLE_MS = 1000

    def __init__(self, cap: Level = "video", clock: Callable[[], float] = time.monotonic) -> None:
        self.state = initial_state("video", cap)
        self._clock = clock
        self._sampler = StatsSampler()
        self._pc: object | None = None
        self._sampled_at = 0.0

    @property
    def level(self) -> Level:
        return self.state.level

    @property
    def reason(self) -> str:
        """What a ``mode`` message says about it: ``manual`` or ``network``."""
        return "manual" if cause(self.state) == "manual" else "network"

    async def tick(self, pc: Any, call_level: Level) -> bool:
        """Sample ``pc`` if a second has passed; True if my level changed."""
        now = self._clock() * 1000
        if now - self._sampled_at < self.SAMPLE_MS * 0.9:
            return False
        self._sampled_at = now
        if pc is not self._pc:  # a new peer connection: new counters
            self._pc = pc
            self._sampler = StatsSampler()
        try:
            report = await pc.getStats()
        except Exception:  # a closing connection
            return False
        before = self.state.level
        self.state = step(self.state, self._sampler.sample(report, now, call_level))
        return self.state.level != before
