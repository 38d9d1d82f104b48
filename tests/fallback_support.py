"""Shaped-network support for the quality ladder's end-to-end test and benchmark
(tests/test_fallback_browser.py, bench/fallback.py): UDP shaping with ``tc`` and ``nft`` in the
current network namespace, a watcher of both pages' mode status, and a chat ledger that checks
every message arrives exactly once.

Only UDP (the media, the data channel and ICE) is shaped: the signaling WebSocket and the
encrypted chat relay are TCP and stay usable. Traffic between local addresses crosses ``lo`` in
one direction per packet, so a rate is the aggregate of both directions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.test_call_browser import Page, chat_texts, send_chat

DEV = "lo"
TABLE = "ruang_fallback"  # the nftables table this module creates and deletes
QUALITY_SCRIPT = """
(() => {
  window.__ruangQuality = [];  // call.js records its ladder samples here (figures only)
  window.__sld = 0;            // setLocalDescription calls: a level change must make none
  const P = window.RTCPeerConnection && window.RTCPeerConnection.prototype;
  if (P) {
    const sld = P.setLocalDescription;
    P.setLocalDescription = function (...args) {
      window.__sld += 1;
      return sld.apply(this, args);
    };
  }
})();
"""


def tools_available() -> bool:
    return shutil.which("tc") is not None and shutil.which("nft") is not None


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=10)


class Shaper:
    """Rate limits (htb on ``lo``, UDP only, with a short queue) and random UDP loss (an nftables
    input chain). ``clear()`` removes both and is safe to call at any time."""

    def __init__(self, dev: str = DEV) -> None:
        self.dev = dev
        self.state = "none"

    def rate(self, kbit: int) -> None:
        self.clear()
        # A queue of about 250 ms at that rate (at least two full packets): a slow link, not a
        # bufferbloated one.
        limit = max(3000, kbit * 1000 // 8 // 4)
        dev = self.dev
        _run("tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10")
        _run(
            "tc", "class", "add", "dev", dev, "parent", "1:", "classid", "1:10",
            "htb", "rate", "10gbit",
        )  # fmt: skip
        _run(
            "tc", "class", "add", "dev", dev, "parent", "1:", "classid", "1:20",
            "htb", "rate", f"{kbit}kbit", "ceil", f"{kbit}kbit", "quantum", "1600",
        )  # fmt: skip
        _run(
            "tc", "qdisc", "add", "dev", dev, "parent", "1:20", "handle", "20:",
            "bfifo", "limit", str(limit),
        )  # fmt: skip
        _run(
            "tc", "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1",
            "u32", "match", "ip", "protocol", "17", "0xff", "flowid", "1:20",
        )  # fmt: skip
        self.state = f"{kbit} kbit/s"

    def loss(self, percent: int) -> None:
        self.clear()
        _run("nft", "add", "table", "inet", TABLE)
        _run(
            "nft", "add", "chain", "inet", TABLE, "input",
            "{ type filter hook input priority 0 ; policy accept ; }",
        )  # fmt: skip
        _run(
            "nft", "add", "rule", "inet", TABLE, "input", "meta", "l4proto", "udp",
            "numgen", "random", "mod", "100", "<", str(percent), "drop",
        )  # fmt: skip
        self.state = f"{percent}% UDP loss"

    def clear(self) -> None:
        _run("tc", "qdisc", "del", "dev", self.dev, "root", check=False)
        _run("nft", "delete", "table", "inet", TABLE, check=False)
        self.state = "none"


MODES = ("Video", "Low video", "Audio only", "Text only")


def mode_of(status: str) -> str | None:
    for mode in MODES:
        if status.startswith(mode):
            return mode
    return None


class ModeWatch:
    """Polls both pages' role="status" text (every 0.2 s) and keeps every change with its time."""

    def __init__(self, pages: Iterable[Page]) -> None:
        self.pages = list(pages)
        self.history: dict[str, list[tuple[float, str]]] = {p.name: [] for p in self.pages}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ModeWatch:
        self._task = asyncio.create_task(self._poll())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _poll(self) -> None:
        while True:
            for p in self.pages:
                text: str | None = None
                with contextlib.suppress(Exception):  # the page is busy: try again
                    text = (await p.page.get_by_role("status").text_content(timeout=2000)) or ""
                h = self.history[p.name]
                if text is not None and (not h or h[-1][1] != text):
                    h.append((time.monotonic(), text))
            await asyncio.sleep(0.2)

    def current(self, name: str) -> str:
        h = self.history[name]
        return h[-1][1] if h else ""

    def reached(self, name: str, mode: str, since: float) -> float | None:
        """When the page first showed mode at or after since (a mode already showing counts
        from since)."""
        before = [text for t, text in self.history[name] if t < since]
        if before and mode_of(before[-1]) == mode:
            return since
        for t, text in self.history[name]:
            if t >= since and mode_of(text) == mode:
                return t
        return None

    def both_reached(self, mode: str, since: float) -> float | None:
        times = [self.reached(p.name, mode, since) for p in self.pages]
        if any(t is None for t in times):
            return None
        return max(t for t in times if t is not None)

    def share(self, name: str, mode: str, since: float, until: float) -> float:
        """The fraction of [since, until] during which the page showed mode."""
        shown = 0.0
        h = self.history[name]
        for i, (t, text) in enumerate(h):
            end = h[i + 1][0] if i + 1 < len(h) else until
            a, b = max(t, since), min(end, until)
            if b > a and mode_of(text) == mode:
                shown += b - a
        return shown / max(until - since, 1e-9)

    def seen(self, mode: str, since: float, until: float | None = None) -> list[str]:
        """The pages that showed mode between since and until."""
        end = until if until is not None else float("inf")
        return [
            p.name
            for p in self.pages
            if any(since <= t <= end and mode_of(text) == mode for t, text in self.history[p.name])
        ]

    async def wait_both(self, mode: str, since: float, timeout: float) -> float:
        """Seconds from since until both pages showed mode (bounded by timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            at = self.both_reached(mode, since)
            if at is not None:
                return at - since
            await asyncio.sleep(0.2)
        raise AssertionError(
            f"both pages did not reach {mode!r} within {timeout:g} s:\n{self.dump(since)}"
        )

    def dump(self, since: float | None = None) -> str:
        t0 = since if since is not None else 0.0
        lines = []
        for name, h in self.history.items():
            for t, text in h:
                if t >= t0:
                    lines.append(f"{name} +{t - t0:.1f}s {text}")
        return "\n".join(lines[-40:])


class ChatLedger:
    """Messages sent through the UI, each with a unique text, checked to arrive exactly once."""

    def __init__(self) -> None:
        self.sent: list[tuple[Page, Page, str]] = []  # (from, to, text)

    async def send(self, sender: Page, receiver: Page, text: str) -> None:
        await send_chat(sender, text)
        self.sent.append((sender, receiver, text))

    async def missing(self) -> list[str]:
        logs: dict[str, list[str]] = {}
        out = []
        for _sender, receiver, text in self.sent:
            if receiver.name not in logs:
                logs[receiver.name] = await chat_texts(receiver)
            if text not in logs[receiver.name]:
                out.append(text)
        return out

    async def duplicates(self) -> list[str]:
        out = []
        for _sender, receiver, text in self.sent:
            if (await chat_texts(receiver)).count(text) != 1:
                out.append(text)
        return out

    async def wait_delivered(self, timeout: float) -> float:
        start = time.monotonic()
        deadline = start + timeout
        missing: list[str] = []
        while time.monotonic() < deadline:
            missing = await self.missing()
            if not missing:
                return time.monotonic() - start
            await asyncio.sleep(0.5)
        raise AssertionError(f"chat messages never arrived: {missing}")


async def install(pages: Iterable[Page]) -> None:
    """Before the pages load: the quality log and the renegotiation counter."""
    for p in pages:
        await p.page.context.add_init_script(QUALITY_SCRIPT)


async def renegotiations(p: Page) -> int:
    return int(await p.page.evaluate("window.__sld || 0"))


async def save_quality(pages: Iterable[Page], path: Path) -> None:
    """The ladder samples both pages recorded (figures only: no content), for diagnosis."""
    data: dict[str, Any] = {}
    for p in pages:
        try:
            data[p.name] = await p.page.evaluate("window.__ruangQuality || []")
        except Exception as exc:  # a closed page
            data[p.name] = f"unavailable: {type(exc).__name__}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
