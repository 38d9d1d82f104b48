"""The browser call in real headless Chromium (Debian's binary, Playwright for Python), two
browser contexts playing counselor and client against the real server: pre-join, knock, the
waiting list, admit, end-to-end-encrypted P2P video and audio, the committed safety code,
the connection path, chat, end session, decline, a full room, hostile names and chat, quick
exit, and both languages. Screenshots of each screen at 360x640 go to docs/screenshots/.

Media tests run only inside the test network namespace (``make test`` /
``scripts/run-tests.sh`` set ``RUANG_TEST_NETNS``): WebRTC gathers candidates on every
interface.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tests.browser import chromium, needs_chromium, screenshots_dir
from tests.support import PASSWORD, ServerProcess

pytestmark = [needs_chromium, pytest.mark.browser]
needs_netns = pytest.mark.skipif(
    not os.environ.get("RUANG_TEST_NETNS"),
    reason="WebRTC media needs the test network namespace: run via scripts/run-tests.sh",
)
SHOTS = screenshots_dir()
LINK_RE = re.compile(r"^https://localhost:\d+/r/([A-Za-z0-9_-]{22})#([A-Za-z0-9_-]{43})$")
CODE_RE = re.compile(r"\b(\d{6})\b · ([a-z]+ [a-z]+ [a-z]+ [a-z]+)$")
EMAIL = "ana@example.org"
VIEWPORT = {"width": 360, "height": 640}
WAIT_MS = 20_000

# Runs before any page script (Playwright injects it outside the page's CSP): records CSP
# violations and every RTCPeerConnection, so the test can read getStats().
INIT_SCRIPT = """
(() => {
  window.__csp = [];
  document.addEventListener("securitypolicyviolation", (e) => {
    window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`);
  });
  window.__pwned = 0;
  const Native = window.RTCPeerConnection;
  if (Native) {
    window.__pcs = [];
    window.RTCPeerConnection = class extends Native {
      constructor(...args) {
        super(...args);
        window.__pcs.push(this);
      }
    };
  }
})();
"""

STATS_JS = """
async () => {
  const pcs = (window.__pcs || []).filter((pc) => pc.connectionState === "connected");
  const pc = pcs[pcs.length - 1];
  if (!pc) return null;
  const out = { frames: 0, audioPackets: 0, samples: 0 };
  (await pc.getStats()).forEach((s) => {
    if (s.type !== "inbound-rtp") return;
    if (s.kind === "video") out.frames += s.framesDecoded || 0;
    if (s.kind === "audio") {
      out.audioPackets += s.packetsReceived || 0;
      out.samples += s.totalSamplesReceived || 0;
    }
  });
  return out;
}
"""

SLOW_CAMERA_JS = """
(() => {
  const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (c) =>
    new Promise((resolve) => setTimeout(resolve, %d)).then(() => real(c));
})();
"""

HOSTILE_NAME = '<script>__pwned=1</script><img src=x onerror="__pwned=2">\u202eevil'  # 62
HOSTILE_CHAT = (
    '<script>window.__pwned=3</script><b>bold</b><img src=x onerror="window.__pwned=4">'
    "\u202etxt.exe <a href=javascript:alert(1)>x</a> &amp; &lt;"
)
LONG_CHAT = "".join(chr(ord("a") + i % 26) for i in range(10_000))


class Page:
    """A page plus what it reported: console lines and page errors."""

    def __init__(self, page: Any, name: str) -> None:
        self.page = page
        self.name = name
        self.console: list[str] = []
        self.errors: list[str] = []
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda err: self.errors.append(str(err)))
        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))

    async def csp(self) -> list[str]:
        try:
            return list(await self.page.evaluate("window.__csp || []"))
        except Exception:  # the page navigated away
            return []

    def problems(self) -> list[str]:
        bad = [c for c in self.console if "Content Security Policy" in c or "Refused to" in c]
        return bad + [f"pageerror: {e}" for e in self.errors]


@asynccontextmanager
async def new_page(browser: Any, name: str, camera_delay_ms: int = 0) -> AsyncIterator[Page]:
    context = await browser.new_context(ignore_https_errors=True, locale="en-US", viewport=VIEWPORT)
    await context.add_init_script(INIT_SCRIPT)
    if camera_delay_ms:  # a slow phone or a permission prompt: the camera opens late
        await context.add_init_script(SLOW_CAMERA_JS % camera_delay_ms)
    await context.grant_permissions(["camera", "microphone"])
    try:
        yield Page(await context.new_page(), name)
    finally:
        await context.close()


async def wait_until(predicate: Any, timeout: float = WAIT_MS / 1000, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what or predicate}: last {last!r}")


async def login_and_make_room(p: Page, server: ServerProcess) -> tuple[str, str]:
    page = p.page
    await page.goto(f"{server.origin}/login?lang=en")
    await page.get_by_label("Email").fill(EMAIL)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(f"{server.origin}/", timeout=WAIT_MS)
    await page.get_by_role("button", name="New room").click()
    field = page.get_by_label("Room link")
    await field.wait_for(timeout=WAIT_MS)
    link = await field.input_value()
    match = LINK_RE.match(link)
    assert match, link
    return link, match.group(1)


async def knock(p: Page, link: str, name: str, screenshot: str | None = None) -> None:
    page = p.page
    await page.goto(link)
    await page.get_by_role("button", name="Join").wait_for(timeout=WAIT_MS)
    await page.get_by_label("Your name").fill(name)
    if screenshot:
        await page.wait_for_function(
            "() => document.getElementById('preview').readyState >= 2", timeout=WAIT_MS
        )
        await page.screenshot(path=str(SHOTS / screenshot), full_page=True)
    await page.get_by_role("button", name="Join").click()
    await wait_text(p, "#waiting-text", "Your counselor will let you in.")


async def wait_text(p: Page, selector: str, expected: str) -> None:
    """Wait until the element's text contains expected."""
    locator = p.page.locator(selector)

    async def has() -> bool:
        return expected in (await locator.text_content() or "")

    await wait_until(has, what=f"{p.name}: {expected!r} in {selector}")


async def media_counts(p: Page) -> dict[str, int] | None:
    result: dict[str, int] | None = await p.page.evaluate(STATS_JS)
    return result


async def media_flows(p: Page) -> dict[str, int]:
    """Video frames decoded and audio received, rising between two samples."""
    first = await wait_until(lambda: media_counts(p), what=f"{p.name}: a connected peer")
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = await media_counts(p)
        if (
            now
            and now["frames"] >= first["frames"] + 10
            and now["audioPackets"] >= first["audioPackets"] + 20
            and now["samples"] > first["samples"]
        ):
            return now
    raise AssertionError(f"{p.name}: media did not flow: {first} -> {now}")


async def text_of(p: Page, label: str) -> str:
    return (await p.page.get_by_label(label, exact=True).text_content() or "").strip()


async def safety_code(p: Page) -> str:
    async def code() -> str | None:
        text = await text_of(p, "Safety code")
        return text if CODE_RE.search(text) else None

    found: str = await wait_until(code, what=f"{p.name}: a safety code")
    return found


async def chat_texts(p: Page) -> list[str]:
    texts: list[str] = await p.page.eval_on_selector_all(
        "#chat-log li.msg .text", "nodes => nodes.map(n => n.textContent)"
    )
    return texts


async def send_chat(p: Page, text: str) -> None:
    await p.page.get_by_label("Message", exact=True).fill(text)
    await p.page.get_by_role("button", name="Send", exact=True).click()


async def assert_inert(p: Page) -> None:
    """Nothing hostile became markup or ran."""
    page = p.page
    assert await page.evaluate("window.__pwned") == 0
    assert (
        await page.locator("#chat-log img, #chat-log script, #chat-log b, #chat-log a").count() == 0
    )
    assert await page.locator("#waiting-list img, #waiting-list script").count() == 0


async def establish_call(
    server: ServerProcess, counselor: Page, client: Page, *, shots: bool = False
) -> tuple[str, str]:
    """Counselor logs in and makes a room, the client knocks, the counselor admits; both
    decode video and receive audio, with the same safety code, on a direct path.
    Returns (link, safety code)."""
    link, room_id = await login_and_make_room(counselor, server)
    await counselor.page.goto(f"{server.origin}/rooms/{room_id}?lang=en")
    await counselor.page.get_by_text("Nobody is waiting.").wait_for(timeout=WAIT_MS)

    # The client: pre-join, the key leaves the address bar, knock, wait.
    await knock(
        client, link, "Dewi", screenshot="call-client-prejoin-360x640.png" if shots else None
    )
    assert "#" not in client.page.url
    if shots:
        await client.page.screenshot(
            path=str(SHOTS / "call-client-waiting-360x640.png"), full_page=True
        )

    # The counselor sees the decrypted name and "Admit".
    item = counselor.page.locator("#waiting-list li").filter(has_text="Dewi")
    await item.get_by_role("button", name="Admit").wait_for(timeout=WAIT_MS)
    if shots:
        await counselor.page.screenshot(
            path=str(SHOTS / "call-counselor-waiting-360x640.png"), full_page=True
        )
    await item.get_by_role("button", name="Admit").click()

    # Both: the same committed safety code, a direct path, video and audio both ways.
    code_counselor = await safety_code(counselor)
    code_client = await safety_code(client)
    assert code_counselor == code_client
    for p in (counselor, client):
        await wait_until(
            lambda p=p: _equals(text_of(p, "Connection path"), "Direct"),
            what=f"{p.name}: path Direct",
        )
        status = p.page.get_by_role("status")
        assert await status.count() == 1
        assert (await status.text_content() or "").startswith("Video")
    await media_flows(counselor)
    await media_flows(client)
    return link, code_client


@needs_netns
async def test_call_end_to_end(server: ServerProcess) -> None:
    server.add_counselor(EMAIL)
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with (
        chromium() as browser,
        new_page(browser, "counselor") as counselor,
        new_page(browser, "client") as client,
        new_page(browser, "second") as second,
    ):
        link, _code = await establish_call(server, counselor, client, shots=True)
        timer = counselor.page.locator("#session-timer")
        assert re.match(r"Session time \d\d:\d\d of 50:00$", await timer.text_content() or "")

        # Chat both ways (the data channel), shown once, acknowledged.
        await send_chat(client, "Hello from the client")
        await wait_until(
            lambda: _contains(chat_texts(counselor), "Hello from the client"), what="chat in"
        )
        await send_chat(counselor, "Hello from the counselor")
        await wait_until(
            lambda: _contains(chat_texts(client), "Hello from the counselor"), what="chat out"
        )
        await client.page.get_by_text("delivered").first.wait_for(timeout=WAIT_MS)
        for p, shot in ((client, "client"), (counselor, "counselor")):
            await p.page.evaluate("window.scrollTo(0, 0)")
            await p.page.screenshot(
                path=str(SHOTS / f"call-{shot}-incall-360x640.png"), full_page=True
            )

        # Hostile chat and a 10k-character message render as text.
        await send_chat(client, HOSTILE_CHAT)
        await send_chat(client, LONG_CHAT)
        await wait_until(
            lambda: _contains(chat_texts(counselor), HOSTILE_CHAT), what="hostile chat"
        )
        await wait_until(
            lambda: _joined_contains(chat_texts(counselor), LONG_CHAT), what="long chat"
        )
        await assert_inert(counselor)
        await assert_inert(client)

        # Mute, camera, and the call modes: announced to the other side, shown on both.
        await client.page.get_by_role("button", name="Mute", exact=True).click()
        await client.page.get_by_role("button", name="Unmute").click()
        await client.page.get_by_role("button", name="Camera off").click()
        await client.page.get_by_role("button", name="Camera on").click()
        await client.page.get_by_role("button", name="Audio only").click()
        for p in (client, counselor):
            await wait_until(
                lambda p=p: _starts(p.page.get_by_role("status").text_content(), "Audio only"),
                what=f"{p.name}: audio only",
            )
        await client.page.get_by_role("button", name="Video", exact=True).click()
        for p in (client, counselor):
            await wait_until(
                lambda p=p: _starts(p.page.get_by_role("status").text_content(), "Video"),
                what=f"{p.name}: video again",
            )
        await media_flows(counselor)

        # A second client (hostile name) knocks: listed as text, but the room is full.
        await knock(second, link, HOSTILE_NAME)
        shown = counselor.page.locator("#waiting-list li bdi.name")
        await wait_until(lambda: _equals(shown.first.text_content(), HOSTILE_NAME), what="name")
        await assert_inert(counselor)
        second_item = counselor.page.locator("#waiting-list li").first
        await second_item.get_by_role("button", name="Admit").click()
        await wait_text(counselor, "#room-notice", "The room is full")
        await asyncio.sleep(1)
        assert "Your counselor will let you in." in (
            await second.page.locator("#waiting-text").text_content() or ""
        )
        assert not await second.page.locator("#call").is_visible()

        # "End session" ends both.
        await counselor.page.get_by_role("button", name="End session").click()
        await wait_text(client, "#ended-text", "The session has ended.")
        await counselor.page.locator("#call").wait_for(state="hidden", timeout=WAIT_MS)
        assert not await client.page.locator("#call").is_visible()

        # The second client is declined: it sees so and stays out.
        await second_item.get_by_role("button", name="Decline").click()
        await wait_text(second, "#ended-text", "could not let you in")
        await counselor.page.get_by_text("Nobody is waiting.").wait_for(timeout=WAIT_MS)
        assert not await second.page.get_by_role("button", name="Join").is_visible()
        assert not await second.page.locator("#call").is_visible()

        for p in (counselor, client, second):
            assert await p.csp() == [], p.name
            assert p.problems() == [], (p.name, p.problems())

    log = server.log()
    assert "Dewi" not in log and "Hello from" not in log, "the server saw plaintext"


async def _equals(coro: Any, expected: str) -> bool:
    return ((await coro) or "").strip() == expected


async def _contains(coro: Any, expected: str) -> bool:
    return expected in (await coro)


async def _joined_contains(coro: Any, expected: str) -> bool:
    return expected in "".join(await coro)


# --- the browser and the Python peer (`ruang join`) ----------------------------------------------


@needs_netns
async def test_browser_counselor_calls_a_python_client(
    server: ServerProcess, tmp_path: Any
) -> None:
    from tests.peer_support import client_peer

    server.add_counselor(EMAIL)
    async with chromium() as browser, new_page(browser, "counselor") as counselor:
        link, room_id = await login_and_make_room(counselor, server)
        await counselor.page.goto(f"{server.origin}/rooms/{room_id}?lang=en")
        await counselor.page.get_by_text("Nobody is waiting.").wait_for(timeout=WAIT_MS)
        peer = client_peer(
            server, link, tmp_path, "--name", "Budi", "--say", "hi from python", "--seconds", "12"
        )
        await peer.start()
        try:
            item = counselor.page.locator("#waiting-list li").filter(has_text="Budi")
            await item.get_by_role("button", name="Admit").click(timeout=WAIT_MS)
            await peer.wait_for(lambda e: e["event"] == "admitted")
            code = await safety_code(counselor)
            event = await peer.wait_for(lambda e: e["event"] == "safety_code")
            assert code.startswith(event["code"]) and code.endswith(" ".join(event["words"]))
            connected = await peer.wait_for(lambda e: e["event"] == "connected")
            assert connected["path"] == "direct"
            await wait_until(
                lambda: _equals(text_of(counselor, "Connection path"), "Direct"), what="path"
            )
            await media_flows(counselor)
            await peer.wait_for(
                lambda e: e["event"] == "media" and e["kind"] == "video" and e["frames"] >= 10
            )
            await wait_until(
                lambda: _contains(chat_texts(counselor), "hi from python"), what="chat from python"
            )
            await send_chat(counselor, "hi from the browser")
            await peer.wait_for(
                lambda e: e["event"] == "chat" and e["text"] == "hi from the browser"
            )
            assert await peer.wait(40) == 0
            await wait_text(counselor, "#room-notice", "The client left the call.")
            assert await counselor.csp() == [] and counselor.problems() == []
        finally:
            await peer.stop()


@needs_netns
async def test_python_counselor_calls_a_browser_client(
    server: ServerProcess, tmp_path: Any
) -> None:
    from tests.peer_support import counselor_peer, make_room

    server.add_counselor(EMAIL)
    link = make_room(server, EMAIL)
    peer, stdin = counselor_peer(
        server, link, EMAIL, tmp_path, "--say", "hello from python", "--seconds", "12"
    )
    await peer.start(stdin)
    try:
        async with chromium() as browser, new_page(browser, "client") as client:
            await knock(client, link, "Sari")
            event = await peer.wait_for(lambda e: e["event"] == "safety_code")
            code = await safety_code(client)
            assert code.startswith(event["code"]) and code.endswith(" ".join(event["words"]))
            await wait_until(
                lambda: _equals(text_of(client, "Connection path"), "Direct"), what="path"
            )
            await media_flows(client)
            await peer.wait_for(
                lambda e: e["event"] == "media" and e["kind"] == "audio" and e["frames"] >= 10
            )
            await wait_until(
                lambda: _contains(chat_texts(client), "hello from python"), what="chat from python"
            )
            await send_chat(client, "hello from the browser")
            await peer.wait_for(
                lambda e: e["event"] == "chat" and e["text"] == "hello from the browser"
            )
            assert await peer.wait(40) == 0
            await wait_text(client, "#ended-text", "The session has ended.")
            assert await client.csp() == [] and client.problems() == []
    finally:
        await peer.stop()


@needs_netns
async def test_client_admitted_before_its_camera_opens_still_sends_media(
    server: ServerProcess, tmp_path: Any
) -> None:
    """Admission that beats getUserMedia (a slow phone, a permission prompt) must not start the
    call without the client's camera and microphone."""
    from tests.peer_support import counselor_peer, make_room

    server.add_counselor(EMAIL)
    link = make_room(server, EMAIL)
    peer, stdin = counselor_peer(server, link, EMAIL, tmp_path, "--seconds", "25")
    await peer.start(stdin)
    try:
        async with (
            chromium() as browser,
            new_page(browser, "client", camera_delay_ms=4000) as client,
        ):
            await knock(client, link, "Sari")
            await peer.wait_for(lambda e: e["event"] == "connected")
            await peer.wait_for(
                lambda e: e["event"] == "media" and e["kind"] == "audio" and e["frames"] >= 30
            )
            await peer.wait_for(lambda e: e["event"] == "media" and e["kind"] == "video")
            await wait_until(
                lambda: client.page.evaluate(
                    "() => !document.getElementById('local-video').hidden"
                ),
                what="self view",
            )
            assert await client.csp() == [] and client.problems() == []
    finally:
        await peer.stop()


# --- surviving a cut socket, a server restart and a broken media path ----------------------------

PC_JS = """
() => {
  const pcs = window.__pcs || [];
  const pc = pcs[pcs.length - 1];
  const sdp = pc && pc.localDescription ? pc.localDescription.sdp : "";
  const ufrag = (sdp.match(/a=ice-ufrag:(\\S+)/) || [])[1] || null;
  return { count: pcs.length, state: pc ? pc.connectionState : null, ufrag };
}
"""


async def pc_info(p: Page) -> dict[str, Any]:
    info: dict[str, Any] = await p.page.evaluate(PC_JS)
    return info


async def chat_both_ways(counselor: Page, client: Page, tag: str) -> None:
    await send_chat(client, f"client {tag}")
    await wait_until(lambda: _contains(chat_texts(counselor), f"client {tag}"), what=tag)
    await send_chat(counselor, f"counselor {tag}")
    await wait_until(lambda: _contains(chat_texts(client), f"counselor {tag}"), what=tag)


async def still_in_call(counselor: Page, client: Page, code: str) -> None:
    """Media flows again, nobody knocked again, the call (and its safety code) is the same."""
    await media_flows(counselor)
    await media_flows(client)
    assert await client.page.locator("#call").is_visible()
    assert not await client.page.locator("#waiting").is_visible()
    assert await counselor.page.locator("#call").is_visible()
    assert await safety_code(client) == code == await safety_code(counselor)
    for p in (counselor, client):
        assert (await pc_info(p))["count"] == 1, f"{p.name}: the peer connection was rebuilt"


@needs_netns
async def test_cut_socket_and_server_restart_mid_call(server: ServerProcess) -> None:
    server.add_counselor(EMAIL)
    sockets: list[Any] = []

    async def through(ws: Any) -> None:
        sockets.append(ws)
        ws.connect_to_server()

    async with (
        chromium() as browser,
        new_page(browser, "counselor") as counselor,
        new_page(browser, "client") as client,
    ):
        await client.page.route_web_socket(re.compile(r".*/ws$"), through)
        _link, code = await establish_call(server, counselor, client)
        await chat_both_ways(counselor, client, "before")

        # The client's socket is cut: it resumes on a new one; the call never stops.
        opened = len(sockets)
        await sockets[-1].close(code=1011, reason="cut by the test")
        await wait_until(lambda: _true(len(sockets) > opened), what="a new client socket")
        await chat_both_ways(counselor, client, "after the cut")
        await still_in_call(counselor, client, code)

        # The server is killed and restarted: media keeps flowing peer to peer meanwhile,
        # both resume with their tokens, chat still works, nobody knocks again.
        await server.stop()
        await asyncio.sleep(1)
        await media_flows(client)  # the server is down: media is peer to peer
        await server.start()
        await chat_both_ways(counselor, client, "after the restart")
        await still_in_call(counselor, client, code)
        for p in (counselor, client):
            assert await p.csp() == [] and p.problems() == [], p.name

        # The client reloads the page: back in the call without knocking, on a new peer
        # connection with a new safety code, and both screens say that the code changed.
        await client.page.reload()
        for p in (counselor, client):
            await p.page.locator("#safety-changed").wait_for(timeout=WAIT_MS)
        new_code = await safety_code(client)
        assert new_code != code
        await wait_until(lambda: _equals(safety_code(counselor), new_code), what="same new code")
        await media_flows(client)
        await media_flows(counselor)
        await chat_both_ways(counselor, client, "after the reload")
        assert not await client.page.locator("#waiting").is_visible()

        # "Remove": the client is out at once.
        await counselor.page.get_by_role("button", name="Remove").click()
        await wait_text(client, "#ended-text", "You were removed from the session.")
        await wait_text(counselor, "#room-notice", "The client was removed.")
        for p in (counselor, client):
            assert await p.csp() == [] and p.problems() == [], p.name


BLACKHOLE = [
    ["tc", "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "10"],
    ["tc", "class", "add", "dev", "lo", "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit"],
    [
        "tc",
        "class",
        "add",
        "dev",
        "lo",
        "parent",
        "1:",
        "classid",
        "1:20",
        "htb",
        "rate",
        "8bit",
        "ceil",
        "8bit",
    ],
    [
        "tc",
        "filter",
        "add",
        "dev",
        "lo",
        "parent",
        "1:",
        "protocol",
        "ip",
        "prio",
        "1",
        "u32",
        "match",
        "ip",
        "protocol",
        "17",
        "0xff",
        "flowid",
        "1:20",
    ],
]


def udp_blackhole(on: bool) -> None:
    """All UDP in the test namespace (the media; signaling is TCP) into an 8 bit/s class."""
    import subprocess

    if not on:
        subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True, timeout=10)
        return
    for cmd in BLACKHOLE:
        subprocess.run(cmd, check=True, capture_output=True, timeout=10)


@needs_netns
async def test_broken_media_path_recovers_by_ice_restart(server: ServerProcess) -> None:
    server.add_counselor(EMAIL)
    async with (
        chromium() as browser,
        new_page(browser, "counselor") as counselor,
        new_page(browser, "client") as client,
    ):
        _link, code = await establish_call(server, counselor, client)
        before = {p.name: (await pc_info(p))["ufrag"] for p in (counselor, client)}
        assert all(before.values()), before
        try:
            udp_blackhole(True)
            await wait_text(client, "#call-state", "Reconnecting")

            # Signaling still works: the restart's offer and answer carry new ICE credentials.
            async def restarted() -> bool:
                infos = [await pc_info(p) for p in (counselor, client)]
                return all(
                    i["ufrag"] != before[p.name]
                    for i, p in zip(infos, (counselor, client), strict=True)
                )

            await wait_until(restarted, timeout=30, what="an ICE restart")
        finally:
            udp_blackhole(False)
        for p in (counselor, client):
            await wait_text(p, "#call-state", "Connected")
        await still_in_call(counselor, client, code)
        await chat_both_ways(counselor, client, "after the ICE restart")


async def _true(value: bool) -> bool:
    return value


# --- no media: the closed room, quick exit, both languages ---------------------------------------


async def test_closed_room_texts_reach_the_counselor_and_quick_exit(
    server: ServerProcess,
) -> None:
    server.add_counselor(EMAIL)
    async with (
        chromium() as browser,
        new_page(browser, "counselor") as counselor,
        new_page(browser, "client") as client,
    ):
        link, room_id = await login_and_make_room(counselor, server)
        # The counselor is away: the room is closed, the client waits and writes.
        await client.page.goto(link)
        await client.page.get_by_label("Your name").fill("Rina")
        await client.page.get_by_role("button", name="Join").click()
        await wait_text(client, "#waiting-text", "Your counselor is not here yet")
        await send_chat(client, "I am here early <b>x</b>")
        await client.page.screenshot(
            path=str(SHOTS / "call-client-waiting-closed-360x640.png"), full_page=True
        )
        # The counselor arrives: the name, the text, and the client's screen changes.
        await counselor.page.goto(f"{server.origin}/rooms/{room_id}?lang=en")
        item = counselor.page.locator("#waiting-list li").filter(has_text="Rina")
        await item.get_by_text("I am here early <b>x</b>").wait_for(timeout=WAIT_MS)
        await wait_text(client, "#waiting-text", "Your counselor will let you in.")
        await client.page.get_by_text("delivered").wait_for(timeout=WAIT_MS)
        assert counselor.page.url.endswith(f"/rooms/{room_id}?lang=en")
        assert await counselor.page.title() == "(1) Room · Ruang"

        # Quick exit: a neutral page at once, the history entry replaced, the knock gone.
        page = client.page
        entries = await page.evaluate("history.length")
        await page.get_by_role("button", name="Quick exit").click()
        await page.wait_for_url(f"{server.origin}/bye", timeout=WAIT_MS)
        assert await page.evaluate("history.length") == entries
        assert await page.evaluate("sessionStorage.length") == 0
        await counselor.page.get_by_text("Nobody is waiting.").wait_for(timeout=WAIT_MS)
        assert await counselor.csp() == [] and counselor.problems() == []


LANG_CHECKS = {
    "en": {
        "join": "Join",
        "check": "Check connection",
        "verdict": "Video",
        "nobody": "Nobody is waiting.",
    },
    "id": {
        "join": "Gabung",
        "check": "Periksa koneksi",
        "verdict": "Video",
        "nobody": "Tidak ada yang menunggu.",
    },
}
RAW_KEY_RE = re.compile(r"\b(?:js|call|chat|client|room|dash)\.[a-z_]+\b")


async def test_pages_in_indonesian_and_english(server: ServerProcess) -> None:
    server.add_counselor(EMAIL)
    async with chromium() as browser, new_page(browser, "counselor") as counselor:
        link, room_id = await login_and_make_room(counselor, server)
        for lang, words in LANG_CHECKS.items():
            async with new_page(browser, f"client-{lang}") as client:
                room_link = link.replace("#", f"?lang={lang}#")
                await client.page.goto(room_link)
                await client.page.get_by_role("button", name=words["join"]).wait_for(
                    timeout=WAIT_MS
                )
                await client.page.get_by_role("button", name=words["check"]).click()
                label = "Connection check result" if lang == "en" else "Hasil pemeriksaan koneksi"
                verdict = await wait_until(
                    lambda c=client, label=label: _verdict(text_of(c, label)),
                    timeout=40,
                    what=f"{lang}: verdict",
                )
                assert verdict.startswith(words["verdict"]), (lang, verdict)
                text = await client.page.locator("body").inner_text()
                assert not RAW_KEY_RE.search(text), (lang, RAW_KEY_RE.findall(text))
                await client.page.screenshot(
                    path=str(SHOTS / f"call-client-prejoin-{lang}-360x640.png"), full_page=True
                )
                assert await client.csp() == [] and client.problems() == []
            await counselor.page.goto(f"{server.origin}/rooms/{room_id}?lang={lang}")
            await counselor.page.get_by_text(words["nobody"]).wait_for(timeout=WAIT_MS)
            text = await counselor.page.locator("body").inner_text()
            assert not RAW_KEY_RE.search(text), (lang, RAW_KEY_RE.findall(text))

        # A counselor on a device without the room's key is told so and pointed to "New link".
        async with new_page(browser, "other-device") as other:
            await other.page.goto(f"{server.origin}/login?lang=en")
            await other.page.get_by_label("Email").fill(EMAIL)
            await other.page.get_by_label("Password").fill(PASSWORD)
            await other.page.get_by_role("button", name="Log in").click()
            await other.page.wait_for_url(f"{server.origin}/", timeout=WAIT_MS)
            await other.page.goto(f"{server.origin}/rooms/{room_id}?lang=en")
            alert = other.page.get_by_role("alert")
            await alert.wait_for(timeout=WAIT_MS)
            assert "New link" in (await alert.text_content() or "")
            assert await other.csp() == [] and other.problems() == []
        assert await counselor.csp() == [] and counselor.problems() == []


async def _starts(coro: Any, prefix: str) -> bool:
    return ((await coro) or "").startswith(prefix)


VERDICTS = ("Video", "Audio only", "Text only", "Hanya suara", "Hanya teks")


async def _verdict(coro: Any) -> str:
    """The pre-call verdict once the check has finished (it begins with a level), else ""."""
    text = (await coro) or ""
    return text if text.startswith(VERDICTS) else ""


async def test_browser_counselor_and_a_text_only_python_client(
    server: ServerProcess, tmp_path: Any
) -> None:
    """No peer connection at all: chat over the encrypted relay, the mode says "Text only"."""
    from tests.peer_support import client_peer

    server.add_counselor(EMAIL)
    async with chromium() as browser, new_page(browser, "counselor") as counselor:
        link, room_id = await login_and_make_room(counselor, server)
        await counselor.page.goto(f"{server.origin}/rooms/{room_id}?lang=en")
        peer = client_peer(
            server,
            link,
            tmp_path,
            "--text-only",
            "--name",
            "Teks",
            "--say",
            "only text",
            "--seconds",
            "6",
        )
        await peer.start()
        try:
            item = counselor.page.locator("#waiting-list li").filter(has_text="Teks")
            await item.get_by_role("button", name="Admit").click(timeout=WAIT_MS)
            await wait_until(
                lambda: _contains(chat_texts(counselor), "only text"), what="text-only chat"
            )
            await wait_until(
                lambda: _starts(counselor.page.get_by_role("status").text_content(), "Text only"),
                what="text-only mode",
            )
            assert (await text_of(counselor, "Connection path")).startswith("Relayed")
            await send_chat(counselor, "reply over the relay")
            await peer.wait_for(
                lambda e: e["event"] == "chat" and e["text"] == "reply over the relay"
            )
            assert await peer.wait(40) == 0
            assert await counselor.page.evaluate("(window.__pcs || []).length") == 0
            assert await counselor.csp() == [] and counselor.problems() == []
        finally:
            await peer.stop()
