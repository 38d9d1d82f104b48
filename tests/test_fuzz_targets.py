"""The atheris targets in fuzz/ cannot rot: each one's ``TestOneInput`` runs over its seed corpus
here (no atheris needed), and the seeds reach the deep paths they were written for."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from fuzz import fuzz_rooms
from fuzz.common import Reader

CORPUS = Path(__file__).resolve().parent.parent / "fuzz" / "corpus"
TARGETS = ["messages", "envelope", "rooms"]


@pytest.mark.parametrize("target", TARGETS)
def test_target_runs_over_its_seed_corpus(target: str) -> None:
    module = importlib.import_module(f"fuzz.fuzz_{target}")
    seeds = sorted((CORPUS / target).iterdir())
    assert len(seeds) >= 5, f"fuzz/corpus/{target} needs seeds"
    for seed in seeds:
        module.TestOneInput(seed.read_bytes())
    module.TestOneInput(b"")  # and the empty input
    assert callable(module.atheris_main)


def test_room_seeds_reach_admission_and_relay() -> None:
    world = fuzz_rooms.World()
    r = Reader((CORPUS / "rooms" / "session").read_bytes())
    while r:
        world.step(r)
    assert world.admitted, "the session seed admits nobody"
    assert world.hub.stats.envelopes_relayed >= 2, world.hub.stats
    assert any(s.sink.closed == 4007 for s in world.socks), "the session seed never ends a session"


def test_a_target_reports_a_finding() -> None:
    """A target must be able to fail: a frame the checks refuse raises."""
    world = fuzz_rooms.World()
    world.sent["b1"] = ("RoomBBBBBBBBBBBBBBBBBB", "counselor", "nobody")
    world.join("RoomAAAAAAAAAAAAAAAAAA", fuzz_rooms.Role.CLIENT, None)
    world.socks[0].sink.frames.append(
        '{"type":"relay","from":"counselor","epoch":"' + "E" * 22 + '","box":"b1"}'
    )
    with pytest.raises(AssertionError, match="misdelivered"):
        world.check()
