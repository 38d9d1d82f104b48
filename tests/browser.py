"""Headless Chromium (Debian's binary) driven by Playwright for Python."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]

needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None, reason="Debian's chromium is not installed"
)


def screenshots_dir() -> Path:
    """Where browser tests put their screenshots: ``test-artifacts/screenshots`` (ignored by
    git), or ``RUANG_SCREENSHOTS`` (``RUANG_SCREENSHOTS=docs/screenshots make test`` refreshes
    the ones the docs show)."""
    root = Path(__file__).resolve().parent.parent
    chosen = os.environ.get("RUANG_SCREENSHOTS")
    where = Path(chosen) if chosen else root / "test-artifacts" / "screenshots"
    if not where.is_absolute():
        where = root / where
    where.mkdir(parents=True, exist_ok=True)
    return where


@asynccontextmanager
async def chromium() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()
