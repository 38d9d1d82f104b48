"""A relay-only call between two browsers through a real coturn: the counselor's page fetches
call credentials at start (cookie + CSRF), the client's page after the post-admission `token`
(Bearer), both pass them into every new RTCPeerConnection, and the diagnostics option
``?relay=1`` forces ``iceTransportPolicy: "relay"``. Media flows both ways, both "Connection
path" indicators read "Relayed", and coturn logged allocations with both credentials.

Runs only inside the test network namespace (``scripts/run-tests.sh``) with Debian's coturn.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.browser import chromium, needs_chromium
from tests.support import ServerProcess
from tests.test_call_browser import (
    EMAIL,
    WAIT_MS,
    _equals,
    knock,
    login_and_make_room,
    media_flows,
    new_page,
    safety_code,
    text_of,
    wait_until,
)
from tests.turn_support import Coturn, namespace_address, needs_coturn

pytestmark = [needs_chromium, needs_coturn, pytest.mark.browser]

SELECTED_TYPES_JS = """
async () => {
  const pcs = (window.__pcs || []).filter((pc) => pc.connectionState === "connected");
  const pc = pcs[pcs.length - 1];
  if (!pc) return null;
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) {
      pair = stats.get(s.selectedCandidatePairId);
    }
  });
  if (!pair) return null;
  return {
    local: stats.get(pair.localCandidateId).candidateType,
    remote: stats.get(pair.remoteCandidateId).candidateType,
    policy: pc.getConfiguration().iceTransportPolicy,
    servers: pc.getConfiguration().iceServers.length,
  };
}
"""


async def test_relay_only_browser_call(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
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
            link, room_id = await login_and_make_room(counselor, server)
            await counselor.page.goto(f"{server.origin}/rooms/{room_id}?lang=en&relay=1")
            await counselor.page.get_by_text("Nobody is waiting.").wait_for(timeout=WAIT_MS)

            # The link's fragment carries the key; the query goes before it.
            base, fragment = link.split("#", 1)
            await knock(client, f"{base}?relay=1#{fragment}", "Dewi")
            item = counselor.page.locator("#waiting-list li").filter(has_text="Dewi")
            await item.get_by_role("button", name="Admit").click()

            assert await safety_code(counselor) == await safety_code(client)
            for p in (counselor, client):
                await wait_until(
                    lambda p=p: _equals(text_of(p, "Connection path"), "Relayed"),
                    what=f"{p.name}: path Relayed",
                )
            await media_flows(counselor)
            await media_flows(client)
            for p in (counselor, client):
                selected = await p.page.evaluate(SELECTED_TYPES_JS)
                assert selected is not None, p.name
                assert selected["local"] == "relay" and selected["remote"] == "relay", selected
                assert selected["policy"] == "relay" and selected["servers"] >= 1, selected
                assert await p.csp() == [], p.name
                assert p.problems() == [], (p.name, p.problems())
    finally:
        await server.stop()
        coturn.stop()
    log = await coturn.wait_log(lambda text: text.count("ALLOCATE processed, success") >= 2)
    assert log.count("ALLOCATE processed, success") >= 2, log[-3000:]
