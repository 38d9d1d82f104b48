"""The pre-call check's echo peer (``POST /api/precheck/echo``) on the real server: it answers a
real aiortc offer, echoes data-channel probes (RTT, a bulk transfer) and media, closes on time
and on shutdown, and holds its limits under a burst with clear errors. Through a real coturn,
the same check with a relay-only peer proves that TURN carries it.

Tests that connect run only inside the test network namespace (``scripts/run-tests.sh``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.echo import MAX_CANDIDATES, sanitize_offer
from signaling.peer.media import SyntheticVideoTrack, ToneAudioTrack
from tests.peer_support import needs_netns
from tests.support import ServerProcess
from tests.turn_support import Coturn, namespace_address, needs_coturn

Json = dict[str, Any]


# --- the offer filter ---------------------------------------------------------------------------

SDP_HEAD = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"


def _cand(n: int, address: str, transport: str = "udp") -> str:
    return f"a=candidate:{n} 1 {transport} 2130706431 {address} {9000 + n} typ host"


def test_the_offer_filter_keeps_only_candidates_the_echo_peer_may_contact() -> None:
    kept = ["198.18.0.1", "203.0.113.7", "10.1.2.3", "2001:db8::1", "a1b2c3d4-e5f6.local"]
    dropped = ["127.0.0.1", "::1", "169.254.1.1", "fe80::1", "224.0.0.1", "0.0.0.0", "evil.example"]  # noqa: S104
    lines = [_cand(i, a) for i, a in enumerate(kept + dropped)]
    lines.append(_cand(99, "198.18.0.9", "tcp"))
    sdp = SDP_HEAD + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n" + "\r\n".join(lines)
    out = sanitize_offer(sdp)
    for address in kept:
        assert f" {address} " in out
    for address in [*dropped, "198.18.0.9"]:
        assert f" {address} " not in out
    many = "\r\n".join(_cand(i, f"198.18.1.{i}") for i in range(50))
    out = sanitize_offer(SDP_HEAD + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" + many)
    assert out.count("a=candidate:") == MAX_CANDIDATES
    for bad in (
        "hello",
        SDP_HEAD,  # no section
        SDP_HEAD + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n",
        SDP_HEAD + "m=text 9 RTP/AVP 0\r\n",
        SDP_HEAD + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" + "a=x\r\n" * 20000,
    ):
        try:
            sanitize_offer(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad[:40]!r}")


# --- helpers ------------------------------------------------------------------------------------


class Prober:
    """The browser's side of the check, in aiortc: a data channel, and optionally media."""

    def __init__(self, config: RTCConfiguration | None = None, media: bool = False) -> None:
        self.pc = RTCPeerConnection(config or RTCConfiguration(iceServers=[]))
        self.channel = self.pc.createDataChannel("probe")
        self.echoes: asyncio.Queue[str | bytes] = asyncio.Queue()
        self.opened = asyncio.Event()
        self.frames: dict[str, int] = {"audio": 0, "video": 0}
        self._readers: list[asyncio.Task[None]] = []
        self.tracks: list[MediaStreamTrack] = []
        if media:
            self.tracks = [SyntheticVideoTrack(), ToneAudioTrack()]
            for track in self.tracks:
                self.pc.addTrack(track)
        self.channel.on("open", self.opened.set)
        self.channel.on("message", self.echoes.put_nowait)

        @self.pc.on("track")
        def _track(track: MediaStreamTrack) -> None:
            self._readers.append(asyncio.ensure_future(self._count(track)))

    async def _count(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                self.frames[track.kind] += 1

    async def offer(self, strip_candidates: bool = False) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        assert self.pc.localDescription is not None
        sdp = self.pc.localDescription.sdp
        if strip_candidates:  # nothing the echo peer could send to
            sdp = "\r\n".join(
                line for line in sdp.split("\r\n") if not line.startswith("a=candidate:")
            )
        return sdp

    async def connect(self, http: aiohttp.ClientSession) -> Json:
        status, body = await post_offer(http, await self.offer())
        assert status == 200, body
        assert body["type"] == "answer" and body["sdp"].count("a=fingerprint:sha-256 ") >= 1
        assert "a=fingerprint:sha-512" not in body["sdp"]
        await self.pc.setRemoteDescription(RTCSessionDescription(body["sdp"], "answer"))
        await asyncio.wait_for(self.opened.wait(), 15)
        return body

    async def probe(self, payload: str | bytes, timeout: float = 5.0) -> float:
        """Round-trip time of one echoed message, in seconds."""
        start = time.perf_counter()
        self.channel.send(payload)
        got = await asyncio.wait_for(self.echoes.get(), timeout)
        assert got == payload
        return time.perf_counter() - start

    def selected_types(self) -> set[str]:
        """The local candidate types of the nominated pairs (``relay`` through TURN)."""
        types = set()
        for t in self.pc.getTransceivers():
            connection = t.receiver.transport.transport._connection
            types |= {p.local_candidate.type for p in connection._nominated.values()}
        if self.pc.sctp is not None:
            connection = self.pc.sctp.transport.transport._connection
            types |= {p.local_candidate.type for p in connection._nominated.values()}
        return types

    async def close(self) -> None:
        for reader in self._readers:
            reader.cancel()
        await self.pc.close()
        for track in self.tracks:
            track.stop()


async def post_offer(http: aiohttp.ClientSession, sdp: str, **extra: Any) -> tuple[int, Json]:
    body = {"type": "offer", "sdp": sdp, **extra}
    async with http.post("/api/precheck/echo", json=body) as r:
        data: Json = await r.json()
        if r.status in (429, 503):
            assert int(r.headers["Retry-After"]) >= 1
        return r.status, data


async def echo_active(http: aiohttp.ClientSession) -> int:
    async with http.get("/metrics") as r:
        match = re.search(r"^ruang_echo_active (\d+)$", await r.text(), re.M)
    assert match
    return int(match.group(1))


async def until_idle(http: aiohttp.ClientSession, timeout: float) -> float:
    start = time.monotonic()
    while await echo_active(http):
        assert time.monotonic() - start < timeout, "echo sessions outlived their time"
        await asyncio.sleep(0.2)
    return time.monotonic() - start


# --- on the real server -------------------------------------------------------------------------


@needs_netns
async def test_echo_peer_echoes_probes_and_media_and_closes_on_shutdown(
    server: ServerProcess,
) -> None:
    prober = Prober(media=True)
    try:
        async with server.client() as http:
            body = await prober.connect(http)
            assert body["seconds"] == 30
            # Round-trip time: 20 small probes, one at a time.
            rtts = [await prober.probe(json.dumps({"seq": i})) for i in range(20)]
            assert statistics.median(rtts) < 0.2, rtts
            # Throughput: 512 KiB in 16 KiB binary messages, all of it back, in order.
            chunk, count = bytes(range(256)) * 64, 32
            start = time.perf_counter()
            for i in range(count):
                prober.channel.send(bytes([i]) + chunk[1:])
            for i in range(count):
                got = await asyncio.wait_for(prober.echoes.get(), 10)
                assert got == bytes([i]) + chunk[1:]
            rate = count * len(chunk) * 2 / (time.perf_counter() - start)
            assert rate > 100_000, rate  # bytes/s both ways, on loopback
            # Media: what we send comes back.
            deadline = time.monotonic() + 10
            while min(prober.frames.values()) < 20 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert prober.frames["video"] >= 20 and prober.frames["audio"] >= 20, prober.frames
            assert await echo_active(http) == 1
        # Shutdown closes it (and the server still exits promptly and cleanly).
        assert server.proc is not None
        start = time.monotonic()
        assert await server.stop(signal.SIGTERM) == 0
        assert time.monotonic() - start < 10
    finally:
        await prober.close()
        await server.stop()
    log = server.log()
    assert "echo session started; 1 active" in log
    assert "echo session ended after" in log and "(server going away)" in log
    assert "a=fingerprint" not in log and "candidate" not in log


async def test_echo_limits_hold_under_a_burst(make_server: Callable[..., ServerProcess]) -> None:
    """No media flows here (the offers carry no candidates), so no namespace is needed."""
    server = make_server(RUANG_ECHO_MAX="2", RUANG_ECHO_PER_IP="4", RUANG_ECHO_SECONDS="5")
    await server.start()
    prober = Prober(media=True)
    try:
        sdp = await prober.offer(strip_candidates=True)
        async with server.client() as http:
            # 30 at once: two sessions, 28 clear "busy" answers.
            results = await asyncio.gather(*(post_offer(http, sdp) for _ in range(30)))
            statuses = sorted(s for s, _ in results)
            assert statuses == [200] * 2 + [503] * 28, statuses
            for status, body in results:
                if status == 503:
                    assert body["error"] == "busy" and "try again" in body["message"]
                else:
                    assert body["type"] == "answer" and body["seconds"] == 5
            assert await echo_active(http) == 2
            async with http.get("/healthz") as r:
                assert r.status == 200
            # Bad offers are refused before any limit is touched.
            for bad in ({"type": "answer", "sdp": sdp}, {"type": "offer"}, ["offer"]):
                async with http.post("/api/precheck/echo", json=bad) as r:
                    assert (r.status, (await r.json())["error"]) == (400, "bad_offer")
            async with http.post("/api/precheck/echo", data=b"{") as r:
                assert (r.status, (await r.json())["error"]) == (400, "bad_offer")
            async with http.post("/api/precheck/echo", data=b"x" * 200_000) as r:
                assert r.status in (400, 413)
            # A foreign page cannot drive it.
            async with http.post(
                "/api/precheck/echo",
                json={"type": "offer", "sdp": sdp},
                headers={"Origin": "https://evil.example"},
            ) as r:
                assert (r.status, (await r.json())["error"]) == (403, "csrf")
            # Each session ends after RUANG_ECHO_SECONDS (5 s here; 30 by default).
            waited = await until_idle(http, 12)
            assert waited > 2, waited
            # The per-IP rate: 4 in the window, then 429 with Retry-After.
            assert (await post_offer(http, sdp))[0] == 200
            assert (await post_offer(http, sdp))[0] == 200
            status, body = await post_offer(http, sdp)
            assert (status, body["error"]) == (429, "rate_limited"), body
            results = await asyncio.gather(*(post_offer(http, sdp) for _ in range(30)))
            assert {s for s, _ in results} == {429}
            async with http.get("/healthz") as r:
                assert r.status == 200
            async with http.get("/metrics") as r:
                text = await r.text()
            assert 'ruang_echo_sessions_total{result="started"} 4' in text
            assert 'ruang_echo_sessions_total{result="busy"} 28' in text
            assert 'ruang_echo_sessions_total{result="rate_limited"} 31' in text
    finally:
        await prober.close()
        await server.stop()


@needs_coturn
async def test_precheck_through_turn_reaches_the_echo_peer(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    # On the namespace's veth address: the echo peer refuses loopback candidates (it must not
    # be pointed at the server's own loopback services), so the relay must not be on loopback.
    coturn = Coturn(tmp_path, host=namespace_address())
    await coturn.start()
    server = make_server(RUANG_TURN_URLS=coturn.url, RUANG_TURN_SECRET=coturn.secret)
    prober: Prober | None = None
    try:
        await server.start()
        async with server.client() as http:
            async with http.post("/api/precheck/turn") as r:
                assert r.status == 200
                turn = (await r.json())["iceServers"][0]
            prober = Prober(
                RTCConfiguration(
                    iceServers=[RTCIceServer(**turn)],
                    iceTransportPolicy=RTCIceTransportPolicy.RELAY,
                )
            )
            await prober.connect(http)
            rtts = [await prober.probe(f"probe {i}") for i in range(10)]
            assert statistics.median(rtts) < 0.5, rtts
            assert prober.selected_types() == {"relay"}
    finally:
        if prober is not None:
            await prober.close()
        await server.stop()
        coturn.stop()
    assert "ALLOCATE processed, success" in coturn.log()
