"""server.socket_sink.SocketSink against a peer that does not read: an in-process aiohttp server
on a plain TCP socket (what runs behind a TLS-terminating proxy), a raw client with a tiny receive
buffer, and short timeouts. tests/test_ws.py does the same end to end on the real TLS server."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from server import socket_sink as ws_module
from server.socket_sink import WRITE_BUFFER_HIGH, SocketSink
from server.websocket import FrameErrors, Handed, Kind, WebSocket, accept
from signaling.errors import CloseCode
from signaling.limits import SignalingStats
from tests.test_ws import RawClient

FRAME = "Z" * 60_000
STALL = 0.5
CLOSE = 1.0

Body = Callable[[SocketSink, WebSocket], Awaitable[None]]


class Served:
    """What the handler saw: the sink, when it closed, when the handler was done."""

    def __init__(self) -> None:
        self.stats = SignalingStats()
        self.sink: SocketSink | None = None
        self.done = asyncio.Event()
        self.closed_at = 0.0
        self.done_at = 0.0
        self.max_buffered = 0


@pytest.fixture
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ws_module, "SEND_STALL", STALL)
    monkeypatch.setattr(ws_module, "CLOSE_TIMEOUT", CLOSE)


@asynccontextmanager
async def serving(
    body: Body, *, limit: int = 10_000, max_bytes: int = 4 << 20, sndbuf: int = 0
) -> AsyncIterator[tuple[int, Served]]:
    """A /ws like the real one: a sink, ``body`` feeding it, a reader until the socket closes.
    ``sndbuf`` pins the kernel's send buffer (else it grows to megabytes), so that what the peer
    has not taken piles up in the transport, where the writer waits for it."""
    served = Served()
    sessions: list[asyncio.Task[None]] = []

    async def session(ws: WebSocket, sink: SocketSink) -> None:
        feeder = asyncio.create_task(body(sink, ws))
        try:
            while (await ws.receive()).kind in (Kind.TEXT, Kind.BINARY):
                pass
            served.closed_at = time.monotonic()
        finally:
            await sink.wait_closed()
            await feeder
            served.done_at = time.monotonic()
            served.done.set()

    async def handler(request: web.Request) -> web.StreamResponse:
        if sndbuf:
            assert request.transport is not None
            sock = request.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        ws = accept(
            request,
            max_size=65536,
            heartbeat=None,
            errors=FrameErrors((CloseCode.FRAME_TOO_BIG, "big"), (CloseCode.PROTOCOL_ERROR, "bad")),
            write_high=WRITE_BUFFER_HIGH,
        )
        sink = served.sink = SocketSink(ws, limit, max_bytes, served.stats)
        sessions.append(asyncio.create_task(session(ws, sink)))
        return Handed()

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield int(runner.addresses[0][1]), served
    finally:
        if sessions:
            await asyncio.wait(sessions, timeout=10)
        await runner.cleanup()


@asynccontextmanager
async def non_reader(port: int) -> AsyncIterator[RawClient]:
    raw = RawClient(port)
    try:
        await asyncio.to_thread(raw.upgrade)
        yield raw
    finally:
        raw.close()


async def test_a_stalled_writer_is_too_slow(short_timeouts: None) -> None:
    """The queue never fills (frames only go in while little is buffered), yet a peer that takes
    nothing for SEND_STALL seconds is closed with 4012 and its socket cut."""

    async def trickle(sink: SocketSink, _ws: WebSocket) -> None:
        while sink.close_code is None:
            if sink.buffered < WRITE_BUFFER_HIGH + 2 * len(FRAME):
                assert sink.send(FRAME)
            served.max_buffered = max(served.max_buffered, sink.buffered)
            await asyncio.sleep(0.005)

    async with serving(trickle) as (port, served), non_reader(port) as raw:
        t0 = time.monotonic()
        async with asyncio.timeout(20):
            await served.done.wait()
        assert served.sink is not None and served.sink.close_code == CloseCode.TOO_SLOW
        assert served.stats.closes[CloseCode.TOO_SLOW] == 1 and served.stats.sends_dropped == 1
        # Filling the kernel's buffers takes a moment, then STALL, then CLOSE to cut.
        assert served.done_at - t0 < 10, served.done_at - t0
        assert served.done_at - served.closed_at < CLOSE + 1.0
        assert served.max_buffered < WRITE_BUFFER_HIGH + 4 * len(FRAME)
        end, got = await asyncio.to_thread(raw.read_to_the_end, 5.0)
        assert end == "cut", (end, got)


async def test_the_queue_is_bounded_in_bytes(short_timeouts: None) -> None:
    """Frames to spare (10,000) but 1 MiB of room: a non-reader is refused once queue plus
    transport buffer would pass 1 MiB, however fast or slowly it is fed."""
    refused = asyncio.Event()
    pushed = 0

    async def flood(sink: SocketSink, _ws: WebSocket) -> None:
        nonlocal pushed
        while pushed < 100 << 20:
            if not sink.send(FRAME):
                refused.set()
                sink.close(CloseCode.TOO_SLOW, "too slow")  # as the hub does
                return
            pushed += len(FRAME)
            served.max_buffered = max(served.max_buffered, sink.buffered)
            await asyncio.sleep(0)  # the writer runs: the kernel and the transport fill first

    async with serving(flood, max_bytes=1 << 20) as (port, served), non_reader(port) as raw:
        async with asyncio.timeout(20):
            await served.done.wait()
        assert refused.is_set(), pushed
        assert served.max_buffered <= 1 << 20
        assert pushed < 40 << 20  # the kernel's buffers, then 1 MiB, not 100 MB
        end, _ = await asyncio.to_thread(raw.read_to_the_end, 5.0)
        assert end == "cut"


async def test_a_burst_over_the_byte_bound_is_refused_at_once() -> None:
    """Synchronous sends (nothing written yet): exactly what fits in the bound is taken."""
    took = 0

    async def burst(sink: SocketSink, ws: WebSocket) -> None:
        nonlocal took
        while sink.send(FRAME):
            took += 1
        await ws.close(CloseCode.NORMAL, "", linger=CLOSE)

    async with serving(burst, max_bytes=1 << 20) as (port, served):
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"http://127.0.0.1:{port}/ws") as c,
        ):
            async with asyncio.timeout(10):
                while (await c.receive()).type is WSMsgType.TEXT:
                    pass
            await served.done.wait()
    assert took == (1 << 20) // len(FRAME)


async def test_a_reader_gets_everything_queued_then_the_close_code(short_timeouts: None) -> None:
    """The normal close: what was queued goes first, then our code; nothing is cut."""

    async def decline(sink: SocketSink, _ws: WebSocket) -> None:
        for i in range(50):
            assert sink.send(f"{i:02d}" + "x" * 10_000)
        sink.close(CloseCode.DECLINED, "declined")

    async with serving(decline) as (port, served):
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"http://127.0.0.1:{port}/ws") as c,
        ):
            got = []
            async with asyncio.timeout(10):
                while (msg := await c.receive()).type is WSMsgType.TEXT:
                    got.append(msg.data[:2])
            assert msg.type is WSMsgType.CLOSE and (msg.data, msg.extra) == (4005, "declined")
            assert got == [f"{i:02d}" for i in range(50)]
            async with asyncio.timeout(10):
                await served.done.wait()
        assert served.done_at - served.closed_at < CLOSE  # no waiting for a cut


def read_slowly(raw: RawClient, want: int) -> int:
    """About 200 KB/s: far slower than loopback, far faster than nothing."""
    raw.sock.settimeout(10)
    got = 0
    while got < want:
        chunk = raw.sock.recv(2048)
        if not chunk:
            break
        got += len(chunk)
        time.sleep(0.01)
    return got


async def test_a_slow_reader_is_not_too_slow(short_timeouts: None) -> None:
    """The writer waits seconds on the transport here (~400 KB at ~200 KB/s), many times
    SEND_STALL, but the peer keeps taking bytes: a slow link, not a peer that does not read."""
    frames = 8

    async def burst(sink: SocketSink, _ws: WebSocket) -> None:
        for _ in range(frames):
            assert sink.send(FRAME)

    async with serving(burst, sndbuf=16384) as (port, served), non_reader(port) as raw:
        want = frames * (len(FRAME) + 4)  # each with a 4-byte header
        got = await asyncio.to_thread(read_slowly, raw, want)
        assert got == want
        assert served.sink is not None and served.sink.close_code is None
        assert served.stats.sends_dropped == 0
