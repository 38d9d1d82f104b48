"""Issue 4: the dashboard shows waiting clients live, and the owner's full link opens the room.

- the hub's waiting observers hear every change in the number of waiting clients (real core);
- /api/events on the real server: 401 without a session, headers, the counts for the counselor's
  own rooms only, a bounded number of streams, a heartbeat, and streams ended at shutdown;
- in headless Chromium: raw protocol clients knock and the dashboard shows "1 waiting", "2
  waiting" and "(n)" in the title (also as a background tab), knocks synthesised with Web Audio,
  and a decline and a leave bring the count down;
- the room's counselor opening its full link lands on /rooms/<id> with the key in local storage,
  and the key is never sent anywhere; anyone else gets the ordinary client page, identical for an
  unknown room.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType

from signaling.errors import CloseCode
from signaling.hub import InProcessHub
from signaling.limits import RoomLimits
from signaling.messages import Role
from tests.browser import chromium, needs_chromium
from tests.signaling_support import Clock, RecordingSink, make_hub, request
from tests.support import PASSWORD, ServerProcess, api_token, login

Json = dict[str, Any]
LINK_RE = re.compile(r"^https://localhost:\d+/r/([A-Za-z0-9_-]{22})#([A-Za-z0-9_-]{43})$")
UNKNOWN_ROOM = "A" * 21 + "g"
WAIT = 10.0  # seconds: every wait in this file is bounded


# --- the hub seam ---------------------------------------------------------------------------------


class Seen:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, room_id: str, count: int) -> None:
        self.calls.append((room_id, count))

    def take(self) -> list[tuple[str, int]]:
        out, self.calls = self.calls, []
        return out


async def test_hub_tells_waiting_observers_of_every_change() -> None:
    clock = Clock()
    hub: InProcessHub = make_hub(limits=RoomLimits(resume_seconds=60), clock=clock)
    seen = Seen()
    hub.add_waiting_observer(seen)

    def broken(room_id: str, count: int) -> None:
        raise RuntimeError("an observer's bug never breaks the hub")

    hub.add_waiting_observer(broken)
    a, b = "RoomAAAAAAAAAAAAAAAAAA", "RoomBBBBBBBBBBBBBBBBBB"

    async def knock(room: str = a, pk: int = 1) -> Any:
        return await hub.join(request(room, Role.CLIENT, pk=pk), RecordingSink())

    k1 = await knock()
    assert seen.take() == [(a, 1)]
    k2 = await knock()
    assert seen.take() == [(a, 2)]
    await knock(b, pk=2)
    assert seen.take() == [(b, 1)]
    assert await hub.waiting_counts([a, b, "RoomCCCCCCCCCCCCCCCCCC"]) == {
        a: 2,
        b: 1,
        "RoomCCCCCCCCCCCCCCCCCC": 0,
    }

    counselor = await hub.join(request(a, Role.COUNSELOR), RecordingSink())
    assert seen.take() == [], "the counselor arriving changes no count"
    await hub.admit(counselor, k1.participant_id)
    assert seen.take() == [(a, 1)]
    await hub.end_session(counselor)
    assert seen.take() == [], "ending a session leaves the waiting clients waiting"
    await hub.decline(counselor, k2.participant_id)
    assert seen.take() == [(a, 0)]

    k3 = await knock()
    await hub.leave(k3)
    assert seen.take() == [(a, 1), (a, 0)]

    k4 = await knock()
    await hub.disconnect(k4)  # the slot is kept for the resume window: still waiting
    assert seen.take() == [(a, 1)]
    clock.now += 61
    hub.expire_due()
    assert seen.take() == [(a, 0)]

    await hub.close_room(b)
    assert seen.take() == [(b, 0)]
    assert await hub.waiting_counts([a, b]) == {a: 0, b: 0}

    hub.remove_waiting_observer(seen)
    hub.remove_waiting_observer(seen)  # twice is harmless
    await knock()
    assert seen.take() == []
    await hub.close()


# --- helpers for the real server ------------------------------------------------------------------


async def new_room(http: aiohttp.ClientSession, label: str) -> str:
    headers = {"X-CSRF-Token": await api_token(http)}
    async with http.post("/api/rooms", json={"label": label}, headers=headers) as r:
        assert r.status == 201
        return str((await r.json())["id"])


async def close_room(http: aiohttp.ClientSession, room_id: str) -> None:
    headers = {"X-CSRF-Token": await api_token(http)}
    async with http.post(f"/api/rooms/{room_id}/close", headers=headers) as r:
        assert r.status == 200


@asynccontextmanager
async def logged_in(server: ServerProcess, email: str) -> AsyncIterator[aiohttp.ClientSession]:
    async with server.client() as http:
        response = await login(http, email)
        assert response.status == 303
        yield http


async def ws_join(
    http: aiohttp.ClientSession, server: ServerProcess, room_id: str, role: str
) -> tuple[aiohttp.ClientWebSocketResponse, Json]:
    """A raw protocol peer, with the page's Origin as a browser would send it."""
    ws = await http.ws_connect("/ws", headers={"Origin": server.origin})
    await ws.send_json({"type": "join", "v": 1, "room": room_id, "role": role})
    joined = await ws_recv(ws)
    assert joined["type"] == "joined", joined
    return ws, joined


async def ws_recv(ws: aiohttp.ClientWebSocketResponse) -> Json:
    msg = await ws.receive(timeout=WAIT)
    assert msg.type is WSMsgType.TEXT, (msg.type, msg.data)
    data: Json = json.loads(msg.data)
    return data


async def ws_closed(ws: aiohttp.ClientWebSocketResponse) -> int:
    while True:
        msg = await ws.receive(timeout=WAIT)
        if msg.type is WSMsgType.TEXT:
            continue
        assert msg.type is WSMsgType.CLOSE, msg.type
        return int(msg.data)


class Feed:
    """A raw /api/events reader: every byte kept, events parsed."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.raw = b""

    async def line(self, timeout: float = WAIT) -> bytes:
        async with asyncio.timeout(timeout):
            line = await self.response.content.readline()
        self.raw += line
        return line

    async def event(self, timeout: float = WAIT) -> Json:
        """The next ``data:`` event's ``rooms`` map (comments and retry lines skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            line = await self.line(max(0.01, deadline - time.monotonic()))
            if not line:
                raise EOFError("the stream ended")
            if line.startswith(b"data: "):
                data = json.loads(line[len(b"data: ") :])
                assert set(data) == {"rooms"}, data
                rooms: Json = data["rooms"]
                return rooms

    async def until(self, expected: Json, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while await self.event(max(0.01, deadline - time.monotonic())) != expected:
            pass

    async def drain(self, seconds: float = 0.5) -> None:
        """Read whatever arrives within ``seconds``."""
        try:
            async with asyncio.timeout(seconds):
                while await self.line(seconds):
                    pass
        except TimeoutError:
            pass


@asynccontextmanager
async def feed(http: aiohttp.ClientSession) -> AsyncIterator[Feed]:
    async with http.get("/api/events", headers={"Accept": "text/event-stream"}) as r:
        assert r.status == 200, await r.text()
        yield Feed(r)


# --- /api/events on the real server ---------------------------------------------------------------


async def test_events_need_a_counselor_session(server: ServerProcess) -> None:
    async with server.client() as anonymous, anonymous.get("/api/events") as r:
        assert r.status == 401
        assert r.content_type == "application/json"
        assert (await r.json())["error"] == "login"
        assert "__Host-ruang" not in r.cookies


async def test_feed_counts_own_rooms_only(server: ServerProcess) -> None:
    server.add_counselor("ana@example.org")
    server.add_counselor("budi@example.org")
    async with (
        logged_in(server, "ana@example.org") as ana,
        logged_in(server, "budi@example.org") as budi,
        server.client() as anonymous,
    ):
        ana_room = await new_room(ana, "A.")
        budi_room = await new_room(budi, "B.")
        async with ana.get("/api/events") as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "text/event-stream"
            assert r.headers["Cache-Control"] == "no-store"
            assert "Content-Security-Policy" in r.headers
            assert (await Feed(r).event()) == {ana_room: 0}
        async with feed(ana) as mine, feed(budi) as theirs:
            assert await mine.event() == {ana_room: 0}
            assert await theirs.event() == {budi_room: 0}

            k1, j1 = await ws_join(anonymous, server, ana_room, "client")
            assert await mine.event() == {ana_room: 1}
            k2, j2 = await ws_join(anonymous, server, ana_room, "client")
            assert await mine.event() == {ana_room: 2}
            # A room made after the stream opened is picked up at its first knock.
            later = await new_room(ana, "C.")
            k3, _ = await ws_join(anonymous, server, later, "client")
            await mine.until({ana_room: 2, later: 1})

            counselor, joined = await ws_join(ana, server, ana_room, "counselor")
            assert {p["id"] for p in joined["peers"]} == {j1["id"], j2["id"]}
            await counselor.send_json({"type": "decline", "id": j1["id"]})
            assert await ws_closed(k1) == CloseCode.DECLINED
            await mine.until({ana_room: 1, later: 1})
            await k2.send_json({"type": "leave"})
            assert await ws_closed(k2) == 1000
            await mine.until({ana_room: 0, later: 1})
            await k3.close()  # a dropped socket keeps its slot (and its place in the count)
            await close_room(ana, later)  # closing the room ends it
            await mine.until({ana_room: 0})
            await counselor.close()

            # The other counselor's stream is alive and hears only of budi's room.
            k4, _ = await ws_join(anonymous, server, budi_room, "client")
            await theirs.until({budi_room: 1})
            await theirs.drain()
            await k4.close()
            assert ana_room.encode() not in theirs.raw and later.encode() not in theirs.raw
            assert budi_room.encode() not in mine.raw
    log = server.log()
    assert ana_room not in log and budi_room not in log, "the log names rooms"


async def test_streams_per_counselor_are_bounded(server: ServerProcess) -> None:
    server.add_counselor("ana@example.org")
    async with logged_in(server, "ana@example.org") as ana:
        await new_room(ana, "A.")
        held = [await ana.get("/api/events") for _ in range(3)]
        assert [r.status for r in held] == [200, 200, 200]
        async with ana.get("/api/events") as r:
            assert r.status == 429
            assert (await r.json())["error"] == "too_many_streams"
        held.pop().close()  # a tab closes: its place is free again
        deadline = time.monotonic() + WAIT
        while True:
            async with ana.get("/api/events") as r:
                if r.status == 200:
                    break
            assert time.monotonic() < deadline, "a closed stream kept its place"
            await asyncio.sleep(0.1)
        for r in held:
            r.close()


async def test_heartbeat_and_shutdown_end_streams(server: ServerProcess) -> None:
    server.add_counselor("ana@example.org")
    async with logged_in(server, "ana@example.org") as ana:
        room = await new_room(ana, "A.")
        async with feed(ana) as live:
            assert await live.event() == {room: 0}
            started = time.monotonic()
            while await live.line(20.0) != b": heartbeat\n":
                pass
            assert 10.0 < time.monotonic() - started < 20.0
            # SIGTERM: on_shutdown ends the stream, so the server need not wait for it (it
            # would, for its 5 s shutdown timeout).
            stop_started = time.monotonic()
            stopping = asyncio.create_task(server.stop())
            async with asyncio.timeout(WAIT):
                while await live.line():
                    pass  # until the end of the stream
            assert await stopping == 0
            assert time.monotonic() - stop_started < 4.0, "shutdown waited for the stream"


# --- the dashboard in Chromium --------------------------------------------------------------------

# Counts the knocks the page synthesises (the Web Audio API itself, not our code, is observed).
COUNT_OSCILLATORS = """
(() => {
  window.__oscillators = 0;
  const original = AudioContext.prototype.createOscillator;
  AudioContext.prototype.createOscillator = function (...args) {
    window.__oscillators += 1;
    return original.apply(this, args);
  };
})();
"""


def badge(page: Any, room_id: str) -> Any:
    return page.locator(f'li[data-room-id="{room_id}"] .waiting-badge')


async def wait_js(page: Any, expression: str, arg: object = None) -> None:
    """Poll with timers, not animation frames (a background tab has none)."""
    await page.wait_for_function(expression, arg=arg, polling=100, timeout=WAIT * 1000)


async def wait_title(page: Any, prefix: str | None) -> None:
    if prefix is None:
        await wait_js(page, "() => !/^\\(\\d+\\) /.test(document.title)")
    else:
        await wait_js(page, "p => document.title.startsWith(p)", prefix)


async def browser_login(context: Any, server: ServerProcess, email: str) -> Any:
    page = await context.new_page()
    await page.goto(f"{server.origin}/login?lang=en")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(f"{server.origin}/", timeout=WAIT * 1000)
    return page


@needs_chromium
@pytest.mark.browser
async def test_dashboard_shows_knocks_live(server: ServerProcess) -> None:
    server.add_counselor("ana@example.org")
    console: list[str] = []
    async with chromium() as browser, server.client() as anonymous:
        context = await browser.new_context(  # type: ignore[attr-defined]
            ignore_https_errors=True, locale="en-US", viewport={"width": 360, "height": 640}
        )
        await context.add_init_script(COUNT_OSCILLATORS)
        page = await browser_login(context, server, "ana@example.org")
        page.on("console", lambda msg: console.append(msg.text))
        page.on("pageerror", lambda err: console.append(f"pageerror: {err}"))
        # The knock sound needs a first gesture on the page; the hint says so until then.
        hint = page.get_by_text("click anywhere on this page once")
        assert await hint.is_visible()
        assert await page.evaluate("window.__oscillators") == 0
        await page.get_by_role("button", name="New room").click()
        await hint.wait_for(state="hidden", timeout=WAIT * 1000)
        await page.get_by_label("Room link").wait_for()
        room_id = await page.locator("li.room").first.get_attribute("data-room-id")
        assert room_id
        assert await badge(page, room_id).is_hidden()
        base_title = await page.title()
        assert not base_title.startswith("(")

        k1, j1 = await ws_join(anonymous, server, room_id, "client")
        await page.get_by_text("1 waiting", exact=True).wait_for(timeout=WAIT * 1000)
        await wait_title(page, "(1) ")
        notice = page.locator("#live-notice")
        assert await notice.get_attribute("aria-live") == "polite"
        assert await notice.get_attribute("role") is None
        assert "1 waiting" in await notice.text_content()
        await wait_js(page, "() => window.__oscillators > 0")
        knocks = await page.evaluate("window.__oscillators")

        # Another tab in front: the dashboard, now in the background, still counts and knocks.
        other = await context.new_page()
        await other.goto(f"{server.origin}/bye")
        await other.bring_to_front()
        k2, _ = await ws_join(anonymous, server, room_id, "client")
        await wait_title(page, "(2) ")
        assert await badge(page, room_id).text_content() == "2 waiting"
        await wait_js(page, "n => window.__oscillators > n", knocks)
        knocks = await page.evaluate("window.__oscillators")
        await page.bring_to_front()

        # The counselor (here a raw socket with the same account) declines one; the other leaves.
        async with logged_in(server, "ana@example.org") as ana:
            counselor, _ = await ws_join(ana, server, room_id, "counselor")
            await counselor.send_json({"type": "decline", "id": j1["id"]})
            assert await ws_closed(k1) == CloseCode.DECLINED
            await wait_title(page, "(1) ")
            assert await badge(page, room_id).text_content() == "1 waiting"
            await k2.send_json({"type": "leave"})
            assert await ws_closed(k2) == 1000
            await wait_title(page, None)
            await badge(page, room_id).wait_for(state="hidden", timeout=WAIT * 1000)
            assert await page.title() == base_title
            assert await page.evaluate("window.__oscillators") == knocks, "no knock on the way down"
            await counselor.close()

        # Rooms re-rendered (a new room) keep their badges.
        k3, _ = await ws_join(anonymous, server, room_id, "client")
        await wait_title(page, "(1) ")
        await page.get_by_label("Label (optional").fill("Second")
        await page.get_by_role("button", name="New room").click()
        await page.locator("li.room").nth(1).wait_for()
        assert await badge(page, room_id).text_content() == "1 waiting"
        await k3.send_json({"type": "leave"})
        await wait_title(page, None)
        await context.close()
    assert [c for c in console if "Content Security Policy" in c or "pageerror" in c] == []


# --- the owner's full link ------------------------------------------------------------------------


def room_link(server: ServerProcess, email: str) -> tuple[str, str, str]:
    """A room made by ``ruang room add``: (link, room id, key)."""
    made = server.cli("room", "add", email, "--origin", server.origin)
    assert made.returncode == 0, made.stderr
    link = made.stdout.strip()
    match = LINK_RE.match(link)
    assert match, link
    return link, match.group(1), match.group(2)


@needs_chromium
@pytest.mark.browser
async def test_owner_link_opens_the_room_page_with_the_key(server: ServerProcess) -> None:
    server.add_counselor("ana@example.org")
    server.add_counselor("budi@example.org")
    link, room_id, key = room_link(server, "ana@example.org")
    seen: list[str] = []
    console: list[str] = []
    read_key = f"localStorage.getItem('ruang.key.{room_id}')"
    async with chromium() as browser:

        async def record(req: Any) -> None:
            seen.append(req.url)
            seen.append(repr(await req.all_headers()))
            seen.append(req.post_data or "")

        async def open_context() -> Any:
            context = await browser.new_context(  # type: ignore[attr-defined]
                ignore_https_errors=True, locale="en-US"
            )
            context.on("request", record)
            return context

        # The owner: straight on to the room page, the key kept in this browser.
        ana = await open_context()
        page = await browser_login(ana, server, "ana@example.org")
        page.on("console", lambda msg: console.append(msg.text))
        page.on("pageerror", lambda err: console.append(f"pageerror: {err}"))
        await page.goto(link)
        await page.wait_for_url(f"{server.origin}/rooms/{room_id}", timeout=WAIT * 1000)
        assert await page.evaluate(read_key) == key
        assert key not in page.url
        # The link's page was replaced, not left in the history with the key in it.
        await page.go_back()
        await page.wait_for_url(f"{server.origin}/", timeout=WAIT * 1000)
        # The dashboard now shows the whole link, ready to copy.
        await page.reload()
        field = page.get_by_label("Room link")
        await field.wait_for(timeout=WAIT * 1000)
        await wait_js(page, "v => document.querySelector('input.link-field').value === v", link)

        # Another counselor and an anonymous visitor: the ordinary client page, key not kept.
        budi = await open_context()
        other = await browser_login(budi, server, "budi@example.org")
        anonymous = await open_context()
        for context, tab in ((budi, other), (anonymous, await anonymous.new_page())):
            await tab.goto(link)
            await tab.get_by_role("button", name="Join").wait_for(timeout=WAIT * 1000)
            assert tab.url == f"{server.origin}/r/{room_id}"  # the fragment stripped, no redirect
            assert await tab.evaluate(read_key) is None
            await context.close()
        await ana.close()

    everything = "\n".join(seen) + server.log()
    assert room_id in everything, "the capture saw the traffic"
    assert key not in everything, "the room key reached the server"
    assert [c for c in console if "Content Security Policy" in c or "pageerror" in c] == []


async def test_client_page_is_the_same_for_everyone_but_the_owner(server: ServerProcess) -> None:
    server.add_counselor("ana@example.org")
    server.add_counselor("budi@example.org")
    _, owned, _ = room_link(server, "ana@example.org")
    async with logged_in(server, "ana@example.org") as ana:
        closed = await new_room(ana, "Closed")
        await close_room(ana, closed)

        async def answer(http: aiohttp.ClientSession, room_id: str) -> tuple[Any, ...]:
            async with http.get(f"/r/{room_id}") as r:
                body = (await r.text()).replace(room_id, "ROOM")
                headers = sorted(
                    (k, v)
                    for k, v in r.headers.items()
                    if k.lower() not in {"date", "content-length", "set-cookie"}
                )
                cookies = sorted(r.cookies)
                return r.status, headers, body, cookies

        owner_page = await answer(ana, owned)
        assert owner_page[0] == 200 and 'id="owner-redirect"' in owner_page[2]
        # The owner's closed room and an unknown id: the ordinary client page.
        ana_answers = [await answer(ana, room) for room in (closed, UNKNOWN_ROOM)]
        assert ana_answers[0] == ana_answers[1]
        assert "owner-redirect" not in ana_answers[0][2]

        async with logged_in(server, "budi@example.org") as budi, server.client() as anon:
            budi_answers = [await answer(budi, room) for room in (owned, closed, UNKNOWN_ROOM)]
            anon_answers = [await answer(anon, room) for room in (owned, closed, UNKNOWN_ROOM)]
        assert budi_answers[0] == budi_answers[1] == budi_answers[2]
        assert anon_answers[0] == anon_answers[1] == anon_answers[2]
        assert anon_answers[0][0] == 200 and anon_answers[0][3] == []
        assert "owner-redirect" not in budi_answers[0][2]
        # Whoever is logged in, the page itself is the same (the session only decides "owner").
        assert budi_answers[0][:3] == anon_answers[0][:3] == ana_answers[0][:3]
