"""The pre-call check in real headless Chromium against the real server's echo peer and a real
coturn: on the unshaped test namespace it says "Video" (and that UDP and the relay work);
shaping the namespace's loopback with ``tc`` (tbf, ~100 kbit/s) or dropping 40% of UDP with an
nftables rule turns the verdict into "Audio only" or "Text only". Every shaping is torn down in
``finally``.

Runs only inside the test network namespace (``scripts/run-tests.sh``, as root): the shaping
changes the namespace's own interfaces, never the host's.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.browser import chromium, needs_chromium
from tests.support import ServerProcess
from tests.test_call_browser import EMAIL, login_and_make_room, new_page, wait_until
from tests.turn_support import Coturn, namespace_address, needs_coturn

pytestmark = [needs_chromium, needs_coturn, pytest.mark.browser]

VERDICT_RE = re.compile(r"^(Video|Audio only|Text only):")
NFT_TABLE = "ruang_precheck_test"


@contextmanager
def tbf_on_lo(rate: str = "100kbit") -> Iterator[None]:
    subprocess.run(
        [
            "tc",
            "qdisc",
            "add",
            "dev",
            "lo",
            "root",
            "tbf",
            *("rate", rate, "burst", "4kb"),
            *("latency", "300ms"),
        ],
        check=True,
    )
    try:
        yield
    finally:
        subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], check=False)


@contextmanager
def udp_loss(percent: int = 40) -> Iterator[None]:
    rules = (
        f"table inet {NFT_TABLE} {{\n"
        "  chain input {\n"
        "    type filter hook input priority 0; policy accept;\n"
        f"    meta l4proto udp numgen random mod 100 < {percent} drop\n"
        "  }\n"
        "}\n"
    )
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True)
    try:
        yield
    finally:
        subprocess.run(["nft", "delete", "table", "inet", NFT_TABLE], check=False)


async def run_check(
    make_server: Callable[..., ServerProcess], tmp_path: Path, shaping: Callable[[], object] | None
) -> tuple[str, float]:
    """Open a client's pre-join page, (shape,) click "Check connection": the verdict text and
    how long the check took."""
    coturn = Coturn(tmp_path, host=namespace_address())
    await coturn.start()
    server = make_server(RUANG_TURN_URLS=coturn.url, RUANG_TURN_SECRET=coturn.secret)
    try:
        await server.start()
        server.add_counselor(EMAIL)
        async with (
            chromium() as browser,
            new_page(browser, "counselor") as counselor,
            new_page(browser, "client") as client,
        ):
            link, _room = await login_and_make_room(counselor, server)
            page = client.page
            await page.goto(link)
            check = page.get_by_role("button", name="Check connection")
            await check.wait_for(timeout=20_000)
            await page.wait_for_function(
                "() => document.getElementById('preview').readyState >= 2", timeout=20_000
            )
            result = page.get_by_label("Connection check result", exact=True)

            async def verdict() -> str | None:
                text = (await result.text_content() or "").strip()
                return text if VERDICT_RE.match(text) else None

            with shaping() if shaping else _nothing():  # type: ignore[attr-defined]
                started = time.monotonic()
                await check.click()
                text: str = await wait_until(verdict, timeout=25, what="a verdict")
                took = time.monotonic() - started
            print(f"precheck: {took:.1f} s: {text}")
            assert await client.csp() == []
            assert client.problems() == [], client.problems()
            return text, took
    finally:
        await server.stop()
        coturn.stop()


@contextmanager
def _nothing() -> Iterator[None]:
    yield


async def test_precheck_says_video_on_the_unshaped_namespace(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    text, took = await run_check(make_server, tmp_path, None)
    assert text.startswith("Video:"), text
    assert "UDP works" in text and "relay works" in text, text
    assert took < 16, took


async def test_precheck_on_a_100kbit_link_says_audio_or_text(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    text, took = await run_check(make_server, tmp_path, tbf_on_lo)
    assert text.startswith(("Audio only:", "Text only:")), text
    assert took < 18, took


async def test_precheck_with_40_percent_udp_loss_says_audio_or_text(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    text, took = await run_check(make_server, tmp_path, udp_loss)
    assert text.startswith(("Audio only:", "Text only:")), text
    assert took < 18, took
