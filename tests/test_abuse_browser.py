"""XSS through every user-controlled string, in a real headless Chromium against the real
server: the counselor's email (login form echo, dashboard), the room label (dashboard, the
rename, the knock notice, the counselor's room page), ``?lang=``, paths echoed by error pages,
the QR code and the WhatsApp share link, and the client's name on the counselor's waiting
list. Every hostile string carries a ``data-pwn`` attribute and sets ``window.__pwned`` if it
ever runs: on every page no such element exists, nothing ran, the Content Security Policy
reported nothing, and the strings that are meant to be shown are shown literally.

(Chat, and names inside a call, are covered with media by test_call_browser.py.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from tests.browser import chromium, needs_chromium
from tests.support import PASSWORD, ServerProcess, api_token, login
from tests.test_call_browser import WAIT_MS, Page, new_page, wait_text

pytestmark = [needs_chromium, pytest.mark.browser]

# No whitespace: the email pattern allows anything but "@" and spaces before the "@".
HOSTILE_EMAIL = '"><img/src=x/data-pwn/onerror=__pwned=1>@example.org'
HOSTILE_LABEL = '<img src=x data-pwn onerror="__pwned=2">&lt;b&gt;'
HOSTILE_LABEL_2 = "</h2><svg data-pwn onload=__pwned=3>{{7*7}}"
HOSTILE_NAME = '<svg data-pwn onload="__pwned=4">\u202eNama'
HOSTILE_LANG = '"><svg data-pwn onload=__pwned=5>'
HOSTILE_PATH = "<img src=x data-pwn onerror=__pwned=6>"
# Such an address is not a valid <input type=email> value: the browser would not submit it.
NO_EMAIL_CHECK = "document.querySelector('input[name=email]').type = 'text'"


async def assert_inert(p: Page, where: str) -> None:
    page = p.page
    found = await page.evaluate(
        "() => [window.__pwned, document.querySelectorAll('[data-pwn]').length]"
    )
    assert found == [0, 0], f"{p.name} at {where}: {found}"
    assert await p.csp() == [], f"{p.name} at {where}: {await p.csp()}"
    assert [e for e in p.problems() if "pageerror" in e or "Refused" in e] == [], where


async def body_text(p: Page) -> str:
    text: str = await p.page.evaluate("() => document.body.innerText")
    return text


async def test_hostile_strings_everywhere_render_as_text(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server(RUANG_MAX_ROOMS_PER_COUNSELOR="1")
    server.add_counselor(HOSTILE_EMAIL)
    await server.start()
    origin = server.origin
    try:
        async with (
            chromium() as browser,
            new_page(browser, "counselor") as co,
            new_page(browser, "client") as cl,
        ):
            page = co.page

            # ?lang= with markup: the page falls back to a known language; nothing is reflected.
            await page.goto(f"{origin}/login?lang={quote(HOSTILE_LANG)}")
            await assert_inert(co, "?lang=")
            assert await page.evaluate("document.documentElement.lang") in ("en", "id")

            # A failed login echoes the email into the form: as a value, not as markup.
            await page.goto(f"{origin}/login?lang=en")
            await page.evaluate(NO_EMAIL_CHECK)
            await page.get_by_label("Email").fill(HOSTILE_EMAIL)
            await page.get_by_label("Password").fill("wrong password, twelve+")
            await page.get_by_role("button", name="Log in").click()
            await page.get_by_label("Email").wait_for(timeout=WAIT_MS)
            assert await page.get_by_label("Email").input_value() == HOSTILE_EMAIL.lower()
            await assert_inert(co, "failed login")

            # The dashboard: the email and a hostile label, shown literally.
            await page.evaluate(NO_EMAIL_CHECK)
            await page.get_by_label("Password").fill(PASSWORD)
            await page.get_by_role("button", name="Log in").click()
            await page.wait_for_url(f"{origin}/", timeout=WAIT_MS)
            assert HOSTILE_EMAIL.lower() in await body_text(co)
            await page.locator("#new-room-label").fill(HOSTILE_LABEL)
            await page.get_by_role("button", name="New room").click()
            field = page.get_by_label("Room link")
            await field.wait_for(timeout=WAIT_MS)
            link = await field.input_value()
            room_id = link.split("/r/", 1)[1].split("#", 1)[0]
            await page.get_by_role("heading", name=HOSTILE_LABEL).wait_for(timeout=WAIT_MS)
            await assert_inert(co, "dashboard")

            # The share block: the QR code is an image of the link; WhatsApp gets an https URL
            # whose text holds the link, percent-encoded.
            qr = page.locator("img.qr")
            assert (await qr.get_attribute("src") or "").startswith("data:image/")
            whatsapp = page.get_by_role("link", name="WhatsApp")
            href = await whatsapp.get_attribute("href") or ""
            assert href.startswith("https://wa.me/?text=") and quote(link, safe="") in href, href

            # Renamed (through the API, with the dashboard's session) to another hostile label.
            async with server.client() as http:
                await login(http, HOSTILE_EMAIL)
                h = {"X-CSRF-Token": await api_token(http)}
                async with http.post(
                    f"/api/rooms/{room_id}/rename", json={"label": HOSTILE_LABEL_2}, headers=h
                ) as r:
                    assert r.status == 200
            await page.reload()
            await page.get_by_role("heading", name=HOSTILE_LABEL_2).wait_for(timeout=WAIT_MS)
            assert "49" not in await body_text(co)  # no template was evaluated either
            await assert_inert(co, "dashboard after rename")

            # The counselor's room page, open in a second tab; the dashboard stays open for the
            # knock notice.
            room_tab = Page(await page.context.new_page(), "counselor room")
            await room_tab.page.goto(f"{origin}/rooms/{room_id}?lang=en")
            await room_tab.page.get_by_text("Nobody is waiting.").wait_for(timeout=WAIT_MS)
            await assert_inert(room_tab, "room page")

            # The client knocks with a hostile name: the waiting list shows it as text.
            await cl.page.goto(link.replace("#", "?lang=en#"))
            await cl.page.get_by_label("Your name").fill(HOSTILE_NAME)
            await cl.page.get_by_role("button", name="Join").click()
            await wait_text(cl, "#waiting-text", "Your counselor will let you in.")
            await assert_inert(cl, "client waiting")
            waiting = room_tab.page.locator("#waiting-list li").filter(has_text=HOSTILE_NAME)
            await waiting.get_by_role("button", name="Admit").wait_for(timeout=WAIT_MS)
            await assert_inert(room_tab, "waiting list")
            notice = page.locator("#live-notice").filter(has_text=HOSTILE_LABEL_2)
            await notice.wait_for(state="attached", timeout=WAIT_MS)  # an aria-live region
            await assert_inert(co, "knock notice")

            # One room more than RUANG_MAX_ROOMS_PER_COUNSELOR: a message in the page's language.
            await page.locator("#new-room-label").fill(HOSTILE_LABEL)
            await page.get_by_role("button", name="New room").click()
            await wait_text(co, "#dash-notice", "You have reached the limit of open rooms.")
            assert await page.locator("li.room").count() == 1
            await assert_inert(co, "too many rooms")

            # Paths with markup, on every kind of page that could echo one: never reflected as
            # markup (the static handler's 404 is an empty body), and inert when opened.
            for path in (
                f"/r/{quote(HOSTILE_PATH)}",
                f"/rooms/{quote(HOSTILE_PATH)}",
                f"/nowhere/{quote(HOSTILE_PATH)}",
                f"/api/rooms/{quote(HOSTILE_PATH)}/close",
                f"/static/{quote(HOSTILE_PATH)}",
            ):
                response: Any = await page.request.get(origin + path)
                assert response.status in (404, 405), (path, response.status)
                assert HOSTILE_PATH not in await response.text(), path
                if not path.startswith("/static/"):  # an empty octet-stream: a "download"
                    await page.goto(origin + path)
                    await assert_inert(co, path)
    finally:
        await server.stop()
