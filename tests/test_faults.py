"""Faults during a call, with real Python peers (``ruang join``) on the real server: a TURN
relay that is configured but down, the server stopped gracefully and killed outright mid-call.
(A full or read-only data dir at start: test_faults_startup.py. A dropped network: the ICE
restart tests.)"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.peer_support import PeerProcess, client_peer, counselor_peer, make_room, needs_netns
from tests.support import ServerProcess
from tests.turn_support import free_udp_tcp_port, namespace_address

EMAIL = "counselor@example.org"
RESUMED = "resumed the signaling connection"


async def participants(server: ServerProcess) -> float:
    """``ruang_participants`` from /metrics (loopback needs no token)."""
    async with server.client() as http, http.get("/metrics") as r:
        text = await r.text()
    for line in text.splitlines():
        if line.startswith("ruang_participants "):
            return float(line.split()[1])
    raise AssertionError("no ruang_participants on /metrics")


async def media_goes_on(peers: tuple[PeerProcess, ...], server: ServerProcess) -> None:
    """While the server is down: each peer receives 100 more audio frames (2 s) and more
    video, peer to peer."""
    marks = [(p, p.frames("audio"), p.frames("video"), len(p.events)) for p in peers]
    for peer, audio, video, after in marks:
        await peer.wait_for(
            lambda e, a=audio: (
                e["event"] == "media" and e["kind"] == "audio" and e["frames"] >= a + 100
            ),
            timeout=10,
            after=after,
        )
        await peer.wait_for(
            lambda e, v=video: e["event"] == "media" and e["kind"] == "video" and e["frames"] > v,
            timeout=10,
            after=after,
        )
    assert server.proc is not None and server.proc.poll() is not None, "the server was up"


async def resumed(peers: tuple[PeerProcess, ...], times: int, server: ServerProcess) -> None:
    """Each peer has resumed its signaling connection ``times`` times (its slot and token
    carried over), and the restarted server counts both as participants again."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if all(p.stderr().count(RESUMED) >= times for p in peers):
            break
        await asyncio.sleep(0.1)
    for peer in peers:
        assert peer.stderr().count(RESUMED) == times, peer.describe()
    while await participants(server) != 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert await participants(server) == 2


TURN_SECRET = "s3cret-for-tests-only-0123456789"


@pytest.mark.slow
@needs_netns
async def test_relay_down_server_stopped_and_killed_mid_call_media_never_stops(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """Three faults in one call (each phase asserted on its own):

    1. TURN is configured but coturn is not running: credentials are still handed out at
       once, the peers connect directly and chat both ways. (aioice gives up on the dead
       relay after its 5 s gathering timeout, on each side: the call is delayed, not stopped.)
    2. SIGTERM: the server exits cleanly, both peers are told 1001 (going away) and resume on
       the restarted server.
    3. SIGKILL: no shutdown code runs at all; they resume again.

    Media flows peer to peer all along, on the same peer connection with the same safety code;
    accounts, the room, the counselor's login session and both resume tokens survive; the
    call then ends normally through the twice-restarted server."""
    host = namespace_address()
    port = free_udp_tcp_port(host)  # nothing listens there: the relay is down
    server = make_server(
        RUANG_TURN_URLS=f"turn:{host}:{port}?transport=udp,turn:{host}:{port}?transport=tcp",
        RUANG_TURN_SECRET=TURN_SECRET,
    )
    server.add_counselor(EMAIL)
    await server.start()
    link = make_room(server, EMAIL)
    co, password = counselor_peer(server, link, EMAIL, tmp_path, "--seconds", "24", "--say", "halo")
    cl = client_peer(server, link, tmp_path, "--say", "terima kasih")
    peers = (co, cl)
    try:
        # 1. The credential endpoints do not depend on the relay being up.
        t = time.monotonic()
        async with server.client() as anon, anon.post("/api/precheck/turn") as r:
            assert r.status == 200 and (await r.json())["iceServers"]
        assert time.monotonic() - t < 2
        await co.start(password)
        await co.wait_log("joined the room as counselor")
        await cl.start()
        admitted = await cl.wait_for(lambda e: e["event"] == "admitted", timeout=20)
        connected = await cl.wait_for(lambda e: e["event"] == "connected", timeout=25)
        for p in peers:
            await p.wait_for(lambda e: e["event"] == "media" and e["frames"] >= 30, timeout=25)
        for p, heard in ((co, "terima kasih"), (cl, "halo")):
            await p.wait_for(lambda e, h=heard: e["event"] == "chat" and e["text"] == h)
            # Pushed with the admission (docs/protocol.md 13): nothing fetched on the way.
            assert "call ICE servers pushed (2 TURN URLs)" in p.stderr(), p.describe()

        # 2. Graceful: SIGTERM, a clean exit, and every socket told "going away".
        assert await server.stop(signal.SIGTERM) == 0
        for p in peers:
            await p.wait_log("signaling socket closed (1001)", timeout=5)
        await media_goes_on(peers, server)
        await server.start()
        await resumed(peers, 1, server)

        # 3. Killed: no shutdown code runs at all.
        assert await server.stop(signal.SIGKILL) == -signal.SIGKILL
        await media_goes_on(peers, server)
        await server.start()
        await resumed(peers, 2, server)

        # The counselor's time is up: it ends the session through the restarted server.
        assert await co.wait(40) == 0, co.describe()
        assert await cl.wait(15) == 0, cl.describe()
    finally:
        for p in peers:
            await p.stop()
        await server.stop()
    setup = connected["t"] - admitted["t"]
    print(f"admitted -> connected with the relay down: {setup:.1f} s")
    assert setup < 15, setup  # two 5 s gathering timeouts at most, and the handshakes
    for p in peers:
        assert [e["path"] for e in p.named("connected")] == ["direct"], p.describe()
        assert len(p.named("safety_code")) == 1, p.describe()  # one peer connection all along
        assert not p.named("error"), p.describe()
        assert p.frames("audio") >= 500, p.describe()
    assert [e["reason"] for e in cl.named("waiting")] == ["knocked"]  # never knocked again
    assert len(cl.named("admitted")) == 1
    assert cl.named("ended")[0]["reason"] == "ended"
    # The account is intact.
    listed = server.cli("counselor", "list")
    assert listed.returncode == 0 and EMAIL in listed.stdout and "active" in listed.stdout
