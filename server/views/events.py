"""GET /api/events: the dashboard's live feed of waiting clients (Server-Sent Events).

Each stream belongs to one logged-in counselor and carries only
``{"rooms": {"<room id>": <clients waiting>, ...}}`` for that counselor's own open rooms: once at
connect, then whenever one of those numbers changes (and when the set of rooms changed, seen at
the next change or heartbeat). Never a name (the server has none), never another counselor's room.

The hub tells ``LiveFeed.on_waiting`` of every change in any room; the feed wakes the streams
whose counselor owns that room (looking the owner up once when no stream knows the room yet),
and each woken stream reads its rooms and their counts afresh and sends them if they differ from
what it sent last. A comment line goes out every ``HEARTBEAT_SECONDS`` so proxies keep the
stream open and a dead one is noticed; the stream also ends when the counselor's session would
no longer be accepted (idle or absolute timeout, password change, account disabled), and the
browser's ``EventSource`` reconnects with whatever cookie it has by then. A counselor may hold
``MAX_STREAMS_PER_COUNSELOR`` streams at once (browsers allow few connections per host over
HTTP/1.1). Nothing here logs a room id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp_session import get_session
from sqlalchemy.ext.asyncio import AsyncEngine

from server.accounts import get_by_id
from server.auth import require_counselor
from server.keys import CONFIG, ENGINE
from server.rooms_store import get_open_room, list_rooms
from server.ws import HUB
from signaling.hub import Hub

log = logging.getLogger("ruang.events")
routes = web.RouteTableDef()

HEARTBEAT_SECONDS = 15.0
MAX_STREAMS_PER_COUNSELOR = 3
MAX_OWNER_LOOKUPS = 32  # concurrent "whose room is this?" queries; beyond, the heartbeat catches up
RETRY_MS = 3000  # EventSource's reconnection delay


class _Stream:
    __slots__ = ("counselor_id", "request", "rooms", "wake")

    def __init__(self, counselor_id: int, request: web.Request) -> None:
        self.counselor_id = counselor_id
        self.request = request
        self.rooms: frozenset[str] = frozenset()  # the counselor's open rooms, as last read
        self.wake = asyncio.Event()

    def alive(self) -> bool:
        transport = self.request.transport
        return transport is not None and not transport.is_closing()


class LiveFeed:
    """Every open stream, by counselor; the hub's waiting observer."""

    def __init__(self) -> None:
        self.streams: dict[int, set[_Stream]] = {}
        self.closing = False
        self._hub: Hub | None = None
        self._engine: AsyncEngine | None = None
        self._lookups: dict[str, asyncio.Task[None]] = {}

    @property
    def hub(self) -> Hub:
        assert self._hub is not None, "the live feed is not started"
        return self._hub

    @property
    def engine(self) -> AsyncEngine:
        assert self._engine is not None, "the live feed is not started"
        return self._engine

    def start(self, hub: Hub, engine: AsyncEngine) -> None:
        self._hub, self._engine = hub, engine
        hub.add_waiting_observer(self.on_waiting)

    async def stop(self) -> None:
        self.shut()
        if self._hub is not None:
            self._hub.remove_waiting_observer(self.on_waiting)
        tasks = list(self._lookups.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def shut(self) -> None:
        """Shutdown: every stream ends now (the browser reconnects to whatever comes next)."""
        self.closing = True
        for streams in self.streams.values():
            for stream in streams:
                stream.wake.set()

    # --- streams --------------------------------------------------------------------------------

    def open(self, counselor_id: int, request: web.Request) -> _Stream | None:
        """A new stream, or None when the counselor already holds the most allowed."""
        streams = self.streams.setdefault(counselor_id, set())
        for stale in [s for s in streams if not s.alive()]:  # closed tabs not yet noticed
            streams.discard(stale)
            stale.wake.set()
        if len(streams) >= MAX_STREAMS_PER_COUNSELOR:
            return None
        stream = _Stream(counselor_id, request)
        streams.add(stream)
        return stream

    def close(self, stream: _Stream) -> None:
        streams = self.streams.get(stream.counselor_id)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self.streams[stream.counselor_id]

    async def snapshot(self, stream: _Stream) -> dict[str, int]:
        """The counselor's open rooms and how many clients wait in each, read now."""
        rooms = await list_rooms(self.engine, stream.counselor_id)
        stream.rooms = frozenset(r.id for r in rooms)
        counts = await self.hub.waiting_counts(stream.rooms)
        return {r.id: counts.get(r.id, 0) for r in rooms}

    # --- the hub's observer ---------------------------------------------------------------------

    def on_waiting(self, room_id: str, count: int) -> None:
        known = False
        for streams in self.streams.values():
            for stream in streams:
                if room_id in stream.rooms:
                    stream.wake.set()
                    known = True
        if known or not self.streams or self.closing:
            return
        # A room no stream has read yet (made after the stream opened, or of a counselor who is
        # not watching): find its owner once.
        if room_id not in self._lookups and len(self._lookups) < MAX_OWNER_LOOKUPS:
            task = asyncio.get_running_loop().create_task(self._wake_owner(room_id))
            self._lookups[room_id] = task
            task.add_done_callback(lambda _t: self._lookups.pop(room_id, None))

    async def _wake_owner(self, room_id: str) -> None:
        try:
            room = await get_open_room(self.engine, room_id)
        except Exception:
            log.exception("owner lookup failed")
            return
        if room is not None:
            for stream in self.streams.get(room.counselor_id, ()):
                stream.wake.set()


LIVE_FEED: web.AppKey[LiveFeed] = web.AppKey("ruang_live_feed", LiveFeed)


def _error(status: type[web.HTTPException], code: str, message: str) -> web.HTTPException:
    return status(
        text=json.dumps({"error": code, "message": message}), content_type="application/json"
    )


def _event(data: dict[str, int]) -> bytes:
    return b"data: " + json.dumps({"rooms": data}, separators=(",", ":")).encode() + b"\n\n"


@routes.get("/api/events")
async def events(request: web.Request) -> web.StreamResponse:
    # The session's own timestamps, as the cookie has them (this stream never refreshes them).
    session = await get_session(request)
    iat, seen = session.get("iat"), session.get("seen")
    counselor = await require_counselor(request)  # 401 JSON otherwise
    config, feed = request.app[CONFIG], request.app[LIVE_FEED]
    if feed.closing:
        raise _error(web.HTTPServiceUnavailable, "going_away", "the server is going away")
    now = time.time()
    deadline = min(
        (iat if isinstance(iat, int | float) else now) + config.session_max_hours * 3600,
        (seen if isinstance(seen, int | float) else now) + config.session_minutes * 60,
    )
    stream = feed.open(counselor.id, request)
    if stream is None:
        raise _error(
            web.HTTPTooManyRequests, "too_many_streams", "too many live feeds open for this account"
        )
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
        }
    )
    loop = asyncio.get_running_loop()
    try:
        await response.prepare(request)
        await response.write(f"retry: {RETRY_MS}\n\n".encode())
        last: dict[str, int] | None = None
        fresh = True  # read rooms and counts now
        next_beat = loop.time() + HEARTBEAT_SECONDS
        while not feed.closing and stream.alive():
            if fresh:
                fresh = False
                current = await feed.snapshot(stream)
                if current != last:
                    await response.write(_event(current))
                    last = current
            if loop.time() >= next_beat:
                if not await _still_valid(feed.engine, counselor.id, counselor.session_epoch):
                    break
                if time.time() >= deadline:
                    break
                await response.write(b": heartbeat\n\n")
                next_beat = loop.time() + HEARTBEAT_SECONDS
                fresh = True  # rooms made, renamed or closed meanwhile
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_beat - loop.time())):
                    await stream.wake.wait()
            if stream.wake.is_set():
                stream.wake.clear()
                fresh = True
    except ConnectionError:
        pass  # the browser went away
    finally:
        feed.close(stream)
    return response


async def _still_valid(engine: AsyncEngine, counselor_id: int, epoch: int) -> bool:
    counselor = await get_by_id(engine, counselor_id)
    return counselor is not None and counselor.active and counselor.session_epoch == epoch


async def _feed_context(app: web.Application) -> AsyncIterator[None]:
    app[LIVE_FEED].start(app[HUB], app[ENGINE])
    yield
    await app[LIVE_FEED].stop()


async def _shutdown(app: web.Application) -> None:
    app[LIVE_FEED].shut()


def setup_events(app: web.Application) -> None:
    """Register /api/events. Call after ``setup_ws`` (the hub's context must come first)."""
    app[LIVE_FEED] = LiveFeed()
    app.add_routes(routes)
    app.cleanup_ctx.append(_feed_context)
    app.on_shutdown.append(_shutdown)
