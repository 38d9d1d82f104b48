"""The Python peer's quality ladder (signaling/peer/quality.py): the same decisions as the
browser's (tests/vectors/ladder.json, made from web/static/js/ladder.js), the same behaviour on
the recorded links, and the sampler over aiortc's statistics."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from signaling.peer.config import Level
from signaling.peer.errors import InnerMessageError
from signaling.peer.inner import Mode, parse_inner
from signaling.peer.quality import (
    DEFAULTS,
    QualityMonitor,
    Sample,
    State,
    StatsSampler,
    call_level,
    cause,
    initial_state,
    rank,
    set_cap,
    step,
)
from tests.support import ROOT

VECTORS = json.loads((ROOT / "tests" / "vectors" / "ladder.json").read_text())


@pytest.mark.parametrize("seq", VECTORS["sequences"], ids=lambda s: s["name"])
def test_decides_as_the_browser_does(seq: dict[str, Any]) -> None:
    state = initial_state(seq["start"]["level"], seq["start"]["cap"])
    got = []
    for item in seq["steps"]:
        if "cap" in item:
            state = set_cap(state, item["cap"])
        else:
            state = step(state, Sample.from_js(item["sample"]))
        got.append([state.level, state.net, state.reason])
    assert got == seq["expect"]


# The recorded links of tests/js/ladder.test.mjs (what one side measures, by what is sent).
Link = Callable[[str], dict[str, Any]]
CLEAN = {"availableOutgoingBitrate": 3_500_000, "loss": 0, "rtt": 0.002}


def k100(level: str) -> dict[str, Any]:
    if rank(level) >= rank("low-video"):
        return {"availableOutgoingBitrate": 84_400, "loss": 0.35, "rtt": 0.46}
    return {"availableOutgoingBitrate": 54_400, "loss": 0.06, "rtt": 0.47}


def k20(level: str) -> dict[str, Any]:
    if level == "text":
        return {"availableOutgoingBitrate": 84_400, "loss": None, "rtt": 0.001}
    return {"availableOutgoingBitrate": 240_000, "loss": 0.85, "rtt": 0.46}


def run(link: Link, seconds: int, state: State, t0: int = 0) -> tuple[list[str], State]:
    levels = []
    for i in range(seconds):
        sample = {**link(state.level), "t": t0 + i * 1000, "effective": state.level}
        state = step(state, Sample.from_js(sample))
        levels.append(state.level)
    return levels, state


def test_collapse_reaches_text_in_three_samples_and_climbs_back() -> None:
    levels, state = run(lambda _l: CLEAN, 5, initial_state())
    levels, state = run(k20, 5, state, 5000)
    assert levels[1] == "video" and levels[2] == "text"
    levels, state = run(lambda _l: CLEAN, 40, state, 60_000)
    changes = [lvl for i, lvl in enumerate(levels) if i == 0 or lvl != levels[i - 1]]
    assert changes[-3:] == ["audio", "low-video", "video"], "one level at a time"
    assert changes[0] in ("text", "audio")


def test_100_kbits_settles_at_audio_only() -> None:
    _, state = run(lambda _l: CLEAN, 5, initial_state())
    levels, state = run(k100, 60, state, 5000)
    assert "text" not in levels
    assert levels[-1] == "audio" and set(levels[5:]) == {"audio"}


def test_manual_cap_and_causes() -> None:
    state = set_cap(initial_state(), "audio")
    assert state.level == "audio" and cause(state) == "manual"
    _, state = run(lambda _l: CLEAN, 30, state, 1000)
    assert state.level == "audio"
    state = set_cap(state, "video")
    assert state.level == "video" and cause(state) == "normal"
    assert initial_state("video", "text").level == "text"
    assert call_level("video", "audio") == ("audio", "theirs")
    assert call_level("text", None) == ("text", "mine")
    assert DEFAULTS.down_samples == 3


def test_mode_messages_carry_an_optional_reason() -> None:
    assert parse_inner({"type": "mode", "level": "audio"}) == Mode("audio", None)
    assert parse_inner({"type": "mode", "level": "text", "reason": "network"}) == Mode(
        "text", "network"
    )
    with pytest.raises(InnerMessageError):
        parse_inner({"type": "mode", "level": "text", "reason": "because"})


# --- the sampler over aiortc's statistics ---------------------------------------------------


def stats(**kinds: dict[str, Any]) -> dict[str, Any]:
    """A fake aiortc report: kind_way=dict(...) with way in inbound, outbound, remote."""
    report: dict[str, Any] = {}
    for name, fields in kinds.items():
        kind, way = name.split("_")
        kind_type = {"inbound": "inbound-rtp", "outbound": "outbound-rtp"}.get(
            way, "remote-inbound-rtp"
        )
        report[name] = SimpleNamespace(type=kind_type, kind=kind, **fields)
    return report


def report_at(
    i: int, *, audio_lost: int = 0, video: bool = True, remote_loss: int | None = None
) -> dict[str, Any]:
    """Second i of a call receiving audio (50 packets/s, audio_lost of them lost) and video."""
    parts = {
        "audio_inbound": {
            "packetsReceived": 50 * i - audio_lost * i,
            "packetsLost": audio_lost * i,
        },
        "audio_outbound": {"bytesSent": 4000 * i},
        "video_inbound": {"packetsReceived": 30 * i if video else 30, "packetsLost": 0},
        "video_outbound": {"bytesSent": (40_000 * i) if video else 40_000},
    }
    if remote_loss is not None:
        stamp = datetime.datetime(2024, 1, 1) + datetime.timedelta(seconds=i)
        parts["audio_remote"] = {
            "timestamp": stamp,
            "fractionLost": remote_loss,
            "roundTripTime": 0.05,
        }
    return stats(**parts)


def test_sampler_measures_loss_rtt_and_starvation() -> None:
    sampler = StatsSampler()
    level: Level = "video"
    samples = [sampler.sample(report_at(i), i * 1000.0, level) for i in range(1, 6)]
    assert samples[0].loss is None  # nothing to compare with yet
    assert samples[2].loss is None  # media just began: its first figures are skipped
    assert samples[-1].loss == 0 and not samples[-1].video_starved
    # 20% of the audio lost; the other side reports 64/256 of ours lost, RTT 50 ms.
    lossy = [
        sampler.sample(report_at(i, audio_lost=10, remote_loss=64), i * 1000.0, level)
        for i in range(6, 9)
    ]
    assert lossy[-1].loss == pytest.approx(0.25)
    assert lossy[-1].rtt == pytest.approx(0.05)
    # Video stops arriving while the call should carry it: starved after a few seconds.
    later = [sampler.sample(report_at(i, video=False), i * 1000.0, level) for i in range(8, 14)]
    assert later[-1].video_starved and not later[-1].audio_starved


def test_sampler_skips_the_loss_counted_when_a_kind_resumes() -> None:
    sampler = StatsSampler()
    sampler.sample(stats(audio_inbound={"packetsReceived": 0, "packetsLost": 0}), 0.0, "audio")
    sampler.sample(stats(audio_inbound={"packetsReceived": 0, "packetsLost": 0}), 1000.0, "audio")
    # The first packets after a pause: the sequence jumped over 200 lost before it.
    first = sampler.sample(
        stats(audio_inbound={"packetsReceived": 40, "packetsLost": 200}), 2000.0, "audio"
    )
    assert first.loss is None


async def test_monitor_samples_a_peer_connection_once_a_second() -> None:
    class FakePc:
        def __init__(self) -> None:
            self.i = 0

        async def getStats(self) -> dict[str, Any]:
            self.i += 1
            return report_at(self.i, audio_lost=40)

    clock = [100.0]
    monitor = QualityMonitor(clock=lambda: clock[0])
    pc = FakePc()
    assert await monitor.tick(pc, "video") is False
    assert await monitor.tick(pc, "video") is False  # too soon: not sampled
    assert pc.i == 1
    assert monitor.level == "video" and monitor.reason == "network"
    changed = []
    for _ in range(8):
        clock[0] += 1
        changed.append(await monitor.tick(pc, "video"))
    assert monitor.level == "text"  # 80% of the audio lost
    assert changed.count(True) == 1
    assert QualityMonitor("text").reason == "manual"
