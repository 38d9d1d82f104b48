"""The dashboard in a real headless Chromium: log in, make a room, read its link, decode its
QR code, and prove the key in the fragment never reached the server."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.browser import chromium, needs_chromium, screenshots_dir
from tests.support import PASSWORD, ServerProcess

pytestmark = [needs_chromium, pytest.mark.browser]
SHOTS = screenshots_dir()
LINK_RE = re.compile(r"^https://localhost:\d+/r/([A-Za-z0-9_-]{22})#([A-Za-z0-9_-]{43})$")


async def test_dashboard_room_link_key_never_reaches_the_server(
    server: ServerProcess, tmp_path: Path
) -> None:
    server.add_counselor("ana@example.org")
    seen: list[str] = []
    console: list[str] = []
    async with chromium() as browser:
        context = await browser.new_context(  # type: ignore[attr-defined]
            ignore_https_errors=True, locale="en-US", viewport={"width": 360, "height": 640}
        )
        await context.grant_permissions(["clipboard-read", "clipboard-write"])

        async def record(request: Any) -> None:
            headers = await request.all_headers()
            seen.append(request.url)
            seen.append(repr(headers))
            seen.append(request.post_data or "")

        context.on("request", record)
        page = await context.new_page()
        page.on("console", lambda msg: console.append(msg.text))
        page.on("pageerror", lambda err: console.append(f"pageerror: {err}"))
        page.on("dialog", lambda dialog: dialog.accept())

        await page.goto(f"{server.origin}/login?lang=en")
        SHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SHOTS / "login-360x640.png"), full_page=True)
        await page.get_by_label("Email").fill("ana@example.org")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        await page.wait_for_url(f"{server.origin}/")
        await page.get_by_role("button", name="New room").click()
        field = page.get_by_label("Room link")
        await field.wait_for()
        link = await field.input_value()
        match = LINK_RE.match(link)
        assert match, link
        room_id, key = match.groups()
        for name in ("Copy", "New link", "Rename", "Close room", "Open room"):
            assert await page.get_by_role("button", name=name).count() == 1, name
        await page.get_by_role("button", name="Copy").click()
        assert await page.evaluate("navigator.clipboard.readText()") == link
        await page.screenshot(path=str(SHOTS / "dashboard-360x640.png"), full_page=True)

        # The QR code decodes to the same link (zbar, from Debian's zbar-tools).
        qr = page.get_by_role("img", name=re.compile("QR code"))
        qr_png = tmp_path / "qr.png"
        await qr.screenshot(path=str(qr_png))
        if shutil.which("zbarimg"):
            decoded = subprocess.run(
                ["zbarimg", "--raw", "-q", str(qr_png)], capture_output=True, text=True, timeout=30
            )
            assert decoded.stdout.strip() == link
        whatsapp = page.get_by_role("link", name="Share on WhatsApp")
        href = await whatsapp.get_attribute("href")
        assert href and href.startswith("https://wa.me/?text=")

        # The client opens the link: the key is stripped from the address bar at once.
        client = await browser.new_context(  # type: ignore[attr-defined]
            ignore_https_errors=True, locale="en-US", viewport={"width": 360, "height": 640}
        )
        client.on("request", record)
        cpage = await client.new_page()
        cpage.on("console", lambda msg: console.append(msg.text))
        await cpage.goto(link)
        await cpage.get_by_role("button", name="Join").wait_for()
        assert key not in cpage.url
        assert await cpage.get_by_role("button", name="Join").is_enabled()
        for label in ("Your name",):
            await cpage.get_by_label(label).wait_for()
        await cpage.get_by_role("button", name="Check connection").wait_for()
        await cpage.get_by_label("Data saver").wait_for()
        await cpage.screenshot(path=str(SHOTS / "client-prejoin-360x640.png"), full_page=True)
        await cpage.reload()  # the key survives a reload in this tab only
        assert await cpage.get_by_role("button", name="Join").is_enabled()

        # New link: the old link is replaced and the old key forgotten.
        await page.get_by_role("button", name="New link").click()
        await page.wait_for_function(
            "old => document.querySelector('input.link-field').value !== old", arg=link
        )
        new_link = await page.get_by_label("Room link").input_value()
        new_match = LINK_RE.match(new_link)
        assert new_match and new_match.group(1) != room_id and new_match.group(2) != key
        await context.close()
        await client.close()

    log = server.log()
    assert "ana@example.org" not in log and PASSWORD not in log, "the log leaks account data"
    assert "SELECT" not in log and "INSERT" not in log, "the log echoes SQL"
    everything = "\n".join(seen) + log
    assert room_id in everything, "the capture did see the traffic"
    assert key not in everything, "the room key reached the server"
    assert new_match.group(2) not in everything
    violations = [c for c in console if "Content Security Policy" in c or "pageerror" in c]
    assert violations == []
