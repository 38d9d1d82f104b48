"""The pre-call check's echo peer: an aiortc peer connection in the server process that sends
back whatever the browser sends it, so the browser can measure round-trip time, loss and
throughput, and see whether UDP (and, with the pre-call TURN credential, TURN) carries media.

``POST /api/precheck/echo`` takes ``{"type": "offer", "sdp": "..."}`` (non-trickle: the offer
holds its candidates) and answers ``{"type": "answer", "sdp": "...", "seconds": 30}`` once this
side has gathered its own. Each data channel the browser opens echoes every message on the same
channel; each audio or video track the browser sends is sent back on its own transceiver.

Bounded: at most ``RUANG_ECHO_MAX`` at once (503 ``busy``), ``RUANG_ECHO_PER_IP`` per IP in
``RUANG_PRECHECK_WINDOW_SECONDS`` (429 ``rate_limited``), each closed after
``RUANG_ECHO_SECONDS`` and after ``RUANG_ECHO_MAX_BYTES`` of echoed data-channel bytes it stops
echoing. Nothing is recorded or logged but counts and durations: no SDP, no address, no media.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from server.auth import csrf_exempt
from server.config import Config
from server.keys import CONFIG, METRICS
from server.netutil import client_ip
from server.ratelimit import RateLimit
from signaling.peer.sdp import strip_extra_fingerprints

if TYPE_CHECKING:
    from aiortc import RTCDataChannel
    from aiortc.mediastreams import MediaStreamTrack

log = logging.getLogger("ruang.echo")
routes = web.RouteTableDef()

MAX_OFFER = 48 * 1024  # a browser's offer (audio, video, data, candidates) is ~5-10 KiB
MAX_CANDIDATES = 20
MAX_SECTIONS = {"audio": 1, "video": 1, "application": 1}
ANSWER_TIMEOUT = 10.0  # setting the offer, answering, gathering this side's candidates
CLOSE_TIMEOUT = 5.0
MAX_BUFFERED = 4 * 1024 * 1024  # a channel with this much unsent: further echoes are dropped


class OfferError(ValueError):
    """An offer the echo peer will not take (the message says why, for the browser)."""


def _candidate_ok(line: str) -> bool:
    """``a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ ..``:
    UDP only; an address that is not loopback, link-local, multicast, unspecified or reserved;
    a name only if it is an mDNS ``.local`` name (nothing else is looked up)."""
    parts = line[len("a=candidate:") :].split()
    if len(parts) < 8 or parts[2].lower() != "udp":
        return False
    address = parts[4]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address.endswith(".local") and len(address) <= 64
    return not (
        ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved
    )


def sanitize_offer(sdp: str) -> str:
    """The offer with only candidates the echo peer may contact (at most ``MAX_CANDIDATES``);
    raises ``OfferError`` for anything else than one audio, one video and one data section."""
    if len(sdp) > MAX_OFFER:
        raise OfferError("the offer is too large")
    lines = sdp.replace("\r\n", "\n").split("\n")
    if not lines or lines[0] != "v=0":
        raise OfferError("the offer is not an SDP")
    sections: dict[str, int] = {}
    kept: list[str] = []
    candidates = dropped = 0
    for line in lines:
        if line.startswith("m="):
            kind = line[2:].split(" ", 1)[0]
            if kind not in MAX_SECTIONS:
                raise OfferError(f"unsupported media section {kind[:16]!r}")
            sections[kind] = sections.get(kind, 0) + 1
            if sections[kind] > MAX_SECTIONS[kind]:
                raise OfferError("at most one audio, one video and one data section")
        elif line.startswith("a=candidate:"):
            if candidates >= MAX_CANDIDATES or not _candidate_ok(line):
                dropped += 1
                continue
            candidates += 1
        kept.append(line)
    if not sections:
        raise OfferError("the offer has no media or data section")
    if dropped:
        # Without its candidates the end-of-candidates mark would make aioice give up at once;
        # the echo peer can still learn the browser's address from its checks (peer-reflexive).
        kept = [line for line in kept if line != "a=end-of-candidates"]
    return "\r\n".join(kept).rstrip("\r\n") + "\r\n"


class Refused(Exception):
    """The pool refused a new echo session: ``status`` 429 or 503, ``retry_after`` seconds."""

    def __init__(self, status: int, code: str, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after


class EchoSession:
    """One peer connection that echoes, closed after its time is up (or when it fails)."""

    def __init__(self, pool: EchoPool) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection  # only when a check runs

        self.pool = pool
        # No ICE servers: host candidates only (never None: aiortc would use a public STUN).
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.started = time.monotonic()
        self.echoed_bytes = 0
        self.closed = False
        self._closer: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None
        self._wire()

    def _wire(self) -> None:
        pc = self.pc

        @pc.on("datachannel")
        def _channel(channel: RTCDataChannel) -> None:
            self._echo_channel(channel)

        @pc.on("track")
        def _track(track: MediaStreamTrack) -> None:
            for transceiver in pc.getTransceivers():
                if transceiver.receiver.track is track and transceiver.sender.track is None:
                    transceiver.sender.replaceTrack(track)
                    transceiver.direction = "sendrecv"
                    return

        @pc.on("connectionstatechange")
        def _state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self.close_soon(pc.connectionState)

    def _echo_channel(self, channel: RTCDataChannel) -> None:
        limit = self.pool.max_bytes

        @channel.on("message")
        def _message(data: Any) -> None:
            if not isinstance(data, str | bytes) or channel.readyState != "open":
                return
            size = len(data.encode() if isinstance(data, str) else data)
            if self.echoed_bytes + size > limit or channel.bufferedAmount > MAX_BUFFERED:
                return  # over the budget, or the way back is full: dropped, like a lost packet
            self.echoed_bytes += size
            with contextlib.suppress(Exception):  # a channel closing under us
                channel.send(data)

    async def answer(self, offer: str) -> str:
        from aiortc import RTCSessionDescription

        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())  # gathers: non-trickle
        description = self.pc.localDescription
        if description is None:
            raise RuntimeError("no local description")
        return strip_extra_fingerprints(description.sdp)

    def start_timer(self, seconds: float) -> None:
        async def expire() -> None:
            await asyncio.sleep(seconds)
            await self.close("time up")

        self._timer = asyncio.get_running_loop().create_task(expire())

    def close_soon(self, reason: str) -> None:
        if self._closer is None and not self.closed:
            self._closer = asyncio.get_running_loop().create_task(self.close(reason))

    async def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        timer = self._timer
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.pc.close()
        self.pool.release(self)
        log.info(
            "echo session ended after %.1f s (%s); %d active",
            time.monotonic() - self.started,
            reason,
            len(self.pool.active),
        )


class EchoPool:
    """Every echo session, their limits, and the per-IP rate."""

    def __init__(self, config: Config) -> None:
        limits = config.limits
        self.max_sessions = limits.echo_max
        self.seconds = float(limits.echo_seconds)
        self.max_bytes = limits.echo_max_bytes
        self.rate = RateLimit(limits.echo_per_ip, limits.precheck_window_seconds)
        self.active: set[EchoSession] = set()
        self.closing = False

    def reserve(self, ip: str) -> EchoSession:
        """A new session, counted at once (no await here: the checks and the count are one
        step), or ``Refused``."""
        if self.closing:
            raise Refused(503, "going_away", "the server is going away", 5)
        wait = self.rate.retry_after(ip)
        if wait:
            raise Refused(
                429,
                "rate_limited",
                f"too many connection checks from this address; try again in {wait} s",
                wait,
            )
        if len(self.active) >= self.max_sessions:
            raise Refused(
                503,
                "busy",
                "the connection check is busy; try again in a moment",
                max(1, int(self.seconds // 2)),
            )
        self.rate.hit(ip)
        session = EchoSession(self)
        self.active.add(session)
        return session

    def release(self, session: EchoSession) -> None:
        self.active.discard(session)

    async def close(self) -> None:
        self.closing = True
        await asyncio.gather(
            *(s.close("server going away") for s in list(self.active)), return_exceptions=True
        )


ECHO_POOL: web.AppKey[EchoPool] = web.AppKey("ruang_echo_pool", EchoPool)


def _error(status: int, code: str, message: str, retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


async def _offer(request: web.Request) -> str:
    if request.content_length is not None and request.content_length > MAX_OFFER + 1024:
        raise OfferError("the offer is too large")
    raw = await request.content.read(MAX_OFFER + 1025)
    if len(raw) > MAX_OFFER + 1024:
        raise OfferError("the offer is too large")
    try:
        data = json.loads(raw)
    except ValueError:
        raise OfferError("the body is not valid JSON") from None
    if not isinstance(data, dict) or data.get("type") != "offer":
        raise OfferError('send {"type": "offer", "sdp": "..."}')
    sdp = data.get("sdp")
    if not isinstance(sdp, str):
        raise OfferError("sdp must be a string")
    return sanitize_offer(sdp)


@routes.post("/api/precheck/echo")
@csrf_exempt  # anonymous: nothing to forge
async def echo(request: web.Request) -> web.Response:
    pool = request.app[ECHO_POOL]
    metrics = request.app[METRICS]
    try:
        offer = await _offer(request)
    except OfferError as exc:
        metrics.inc("ruang_echo_sessions_total", result="bad_offer")
        return _error(400, "bad_offer", str(exc))
    try:
        session = pool.reserve(client_ip(request))
    except Refused as exc:
        metrics.inc("ruang_echo_sessions_total", result=exc.code)
        return _error(exc.status, exc.code, str(exc), exc.retry_after)
    try:
        async with asyncio.timeout(ANSWER_TIMEOUT):
            sdp = await session.answer(offer)
    except TimeoutError:
        await session.close("no answer in time")
        metrics.inc("ruang_echo_sessions_total", result="timeout")
        return _error(503, "timeout", "the echo peer could not answer in time", 5)
    except Exception as exc:  # aiortc's errors may quote the SDP: keep only the type
        await session.close(f"offer refused ({type(exc).__name__})")
        metrics.inc("ruang_echo_sessions_total", result="bad_offer")
        return _error(400, "bad_offer", "the echo peer cannot use this offer")
    session.start_timer(pool.seconds)
    metrics.inc("ruang_echo_sessions_total", result="started")
    log.info("echo session started; %d active", len(pool.active))
    return web.json_response({"type": "answer", "sdp": sdp, "seconds": int(pool.seconds)})


async def _echo_context(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[ECHO_POOL].close()


async def _going_away(app: web.Application) -> None:
    app[ECHO_POOL].closing = True


def setup_echo(app: web.Application) -> None:
    """Register ``/api/precheck/echo`` and close every echo session on shutdown."""
    pool = EchoPool(app[CONFIG])
    app[ECHO_POOL] = pool
    metrics = app[METRICS]
    metrics.describe("ruang_echo_sessions_total", "counter", "Echo peer requests by result")
    metrics.gauge("ruang_echo_active", "Echo peer sessions open now", lambda: len(pool.active))
    app.add_routes(routes)
    app.cleanup_ctx.append(_echo_context)
    app.on_shutdown.append(_going_away)
