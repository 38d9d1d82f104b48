"""The quality ladder end to end: two Chromium pages in a call, inside the test network
namespace, on a link shaped with ``tc`` (htb, UDP only) and nftables (random UDP loss).

At about 100 kbit/s both sides step down to audio only; at 20 kbit/s, and separately with 40%
UDP loss, both reach text only while chat keeps delivering every message exactly once (several
are sent during each switch, both ways); when the shaping is lifted both climb back to video.
No level change renegotiates, and the peer connection (and its safety code) stays the same.
The bounds are generous (correctness); bench/fallback.py measures the real times.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from tests.browser import chromium, needs_chromium
from tests.fallback_support import (
    ChatLedger,
    ModeWatch,
    Shaper,
    install,
    mode_of,
    renegotiations,
    save_quality,
    tools_available,
)
from tests.support import ROOT, ServerProcess
from tests.test_call_browser import EMAIL, Page, establish_call, new_page, pc_info, safety_code

pytestmark = [
    needs_chromium,
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("RUANG_TEST_NETNS"),
        reason="shaping needs the test network namespace: run via scripts/run-tests.sh",
    ),
    pytest.mark.skipif(not tools_available(), reason="tc and nft are needed"),
]

DOWN_S = 60.0  # generous bounds per phase (the bench reports the real times)
UP_S = 90.0
ARTIFACTS = ROOT / "test-artifacts"
NETWORK_REASONS = ("your connection", "the other person's connection")


async def chat_during_switch(ledger: ChatLedger, a: Page, b: Page, tag: str) -> None:
    """Three messages each way, a second apart, while the call is switching."""
    for i in range(3):
        await ledger.send(a, b, f"{tag} from {a.name} {i}")
        await ledger.send(b, a, f"{tag} from {b.name} {i}")
        await asyncio.sleep(1)


async def test_call_steps_down_and_back_on_shaped_links(server: ServerProcess) -> None:
    server.add_counselor(EMAIL)
    shaper = Shaper()
    async with (
        chromium() as browser,
        new_page(browser, "counselor") as counselor,
        new_page(browser, "client") as client,
    ):
        pages = (counselor, client)
        await install(pages)
        _link, code = await establish_call(server, counselor, client)
        before = {p.name: await renegotiations(p) for p in pages}
        ledger = ChatLedger()
        try:
            async with ModeWatch(pages) as watch:
                await asyncio.sleep(3)  # a few samples of the clean link (the RTT baseline)

                # ~100 kbit/s (both directions together): audio only, never text. It may
                # probe low video now and then (undone within seconds): mostly audio only.
                start = time.monotonic()
                shaper.rate(100)
                reached = start + await watch.wait_both("Audio only", start, DOWN_S)
                await asyncio.sleep(10)
                until = time.monotonic()
                for p in pages:
                    share = watch.share(p.name, "Audio only", reached, until)
                    assert share >= 0.6, (p.name, share, watch.dump(start))
                    audio = [t for _, t in watch.history[p.name] if mode_of(t) == "Audio only"]
                    assert all(t.endswith(NETWORK_REASONS) for t in audio), audio
                assert not watch.seen("Text only", start), watch.dump(start)
                lifted = time.monotonic()
                shaper.clear()
                await watch.wait_both("Video", lifted, UP_S)

                # 20 kbit/s, then 40% UDP loss: text only, chat delivers everything; then back.
                shapes = (("20k", lambda: shaper.rate(20)), ("loss", lambda: shaper.loss(40)))
                for label, shape in shapes:
                    await asyncio.sleep(3)
                    start = time.monotonic()
                    shape()
                    await chat_during_switch(ledger, client, counselor, label)
                    await watch.wait_both("Text only", start, DOWN_S)
                    for p in pages:
                        assert watch.current(p.name).endswith(NETWORK_REASONS), watch.dump(start)
                    await ledger.send(counselor, client, f"{label} in text only")
                    await ledger.send(client, counselor, f"{label} reply in text only")
                    await ledger.wait_delivered(DOWN_S)
                    lifted = time.monotonic()
                    shaper.clear()
                    await chat_during_switch(ledger, counselor, client, f"{label} lifted")
                    await watch.wait_both("Video", lifted, UP_S)
                    await ledger.wait_delivered(DOWN_S)
        except BaseException:
            await save_quality(pages, ARTIFACTS / "fallback-browser-quality.json")
            raise
        finally:
            shaper.clear()

        assert await ledger.duplicates() == []
        # No renegotiation for any level change; the same peer connection and safety code.
        for p in pages:
            assert await renegotiations(p) == before[p.name], p.name
            assert (await pc_info(p))["count"] == 1, p.name
        assert await safety_code(client) == code == await safety_code(counselor)
        for p in pages:
            assert await p.csp() == [] and p.problems() == [], p.name
