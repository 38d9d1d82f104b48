"""The /ws signaling endpoint (docs/protocol.md): a thin transport around the hub.

Here: the Origin allowlist, the per-IP connection cap, the frame cap, the per-connection token
bucket, the bounded send queue with its writer task, who may join as what (room lookup, the
counselor's session), the audit trail, and the mapping of named errors to close codes. Rooms,
relay rules and resume are the hub's (``signaling.hub``).

Nothing here logs a payload, a name, a box, a token, a room id or a participant id: only event
kinds, close codes and counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import socket
import struct
import sys
import termios
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.abc import AbstractStreamWriter

from server import auth
from server.audit import AuditEvent, record
from server.config import Config
from server.keys import CONFIG, ENGINE, SECRET
from server.netutil import client_ip
from server.ratelimit import RateLimit
from server.rooms_store import bump_generation, get_open_room
from server.scaleout import register_redis_metrics, start_redis_hub
from server.secrets_store import derive_key
from signaling.errors import (
    CloseCode,
    Fatal,
    HubClosed,
    NotAuthorised,
    Refused,
    Unexpected,
    UnknownRoom,
    UnsupportedVersion,
    WaitingRoomFull,
)
from signaling.hub import Connection, Hub, InProcessHub, JoinRequest, RoomRef
from signaling.limits import ConnectionCounter, RoomLimits, SignalingStats, TokenBucket
from signaling.messages import (
    PROTOCOL_VERSION,
    Admit,
    Decline,
    End,
    Error,
    Join,
    Leave,
    Message,
    Ping,
    Pong,
    ProtocolError,
    Relay,
    Remove,
    Role,
    dump,
    parse,
)
from signaling.redis import RedisHub

log = logging.getLogger("ruang.ws")


class RoomProbesExceeded(Fatal):
    """Too many joins of unknown or closed rooms from this IP (``RUANG_ROOM_PROBES_PER_IP`` per
    ``RUANG_ROOM_PROBE_WINDOW_SECONDS``): every join from it is refused alike until the window
    moves on, open rooms too, so the refusal says nothing about the room."""

    code = "too_many_unknown_rooms"


JOIN_TIMEOUT = 10.0  # seconds from upgrade to a valid join
HEARTBEAT = 20.0  # WebSocket ping interval; no pong within half of it drops the connection
CLOSE_TIMEOUT = 5.0  # for the closing handshake before the transport is cut
SEND_STALL = 5.0  # the writer waits this long and the peer took nothing: too slow (4012)
SEND_BUFFER_BYTES = 4 << 20  # per connection: queued frames plus the transport's unsent bytes
WRITE_BUFFER_HIGH = 256 << 10  # the transport's high-water mark; the writer waits above it
LINGER_POLL = 0.02  # while a closed connection is still flushing
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() resets the connection
_OUTQ: int | None = getattr(termios, "TIOCOUTQ", None) if sys.platform == "linux" else None
_HEADER_MAX = 10  # bytes of a server-to-client WebSocket frame header (no mask)
DIRECT_MAX = 16 << 10  # frames up to this size may skip the queue (SocketSink._write_now)


def _text_frame(data: bytes) -> bytes:
    """One unmasked, uncompressed, final text frame (RFC 6455 section 5.2) around ``data``:
    what aiohttp's writer makes for ``send_str`` with compression off."""
    n = len(data)
    if n < 126:
        return struct.pack("!BB", 0x81, n) + data
    if n < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, n) + data
    return struct.pack("!BBQ", 0x81, 127, n) + data


FATAL_CLOSE: Mapping[type[Fatal], CloseCode] = MappingProxyType(
    {
        UnsupportedVersion: CloseCode.UNSUPPORTED_VERSION,
        UnknownRoom: CloseCode.UNKNOWN_ROOM,
        NotAuthorised: CloseCode.NOT_AUTHORISED,
        WaitingRoomFull: CloseCode.WAITING_ROOM_FULL,
        HubClosed: CloseCode.GOING_AWAY,
        RoomProbesExceeded: CloseCode.RATE_LIMITED,
    }
)
_PONG = dump(Pong())


class WsState:
    """Per-application transport state: open sockets and connections per IP."""

    def __init__(self, per_ip_cap: int, probes: RateLimit) -> None:
        self.per_ip = ConnectionCounter(per_ip_cap)
        self.probes = probes  # joins that found no room, per IP
        self.sockets: set[SocketSink] = set()
        self.closing = False


HUB: web.AppKey[Hub] = web.AppKey("ruang_hub", Hub)
WS_STATE: web.AppKey[WsState] = web.AppKey("ruang_ws_state", WsState)
WS_STATS: web.AppKey[SignalingStats] = web.AppKey("ruang_ws_stats", SignalingStats)


class _Socket(web.WebSocketResponse):
    """aiohttp closes with RFC 6455 codes for an oversized or broken frame; we answer with ours."""

    async def close(
        self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True
    ) -> bool:
        if code == WSCloseCode.MESSAGE_TOO_BIG:
            code, message = CloseCode.FRAME_TOO_BIG, b"frame too big"
        elif code in (WSCloseCode.PROTOCOL_ERROR, WSCloseCode.INVALID_TEXT):
            code, message = CloseCode.PROTOCOL_ERROR, b"protocol error"
        return await super().close(code=code, message=message, drain=drain)


class SocketSink:
    """The hub's view of one socket: a bounded send queue drained by a writer task.

    A peer that does not read must cost a bounded amount of memory and be dropped (4012) quickly:

    - the queue is bounded by frames (``RUANG_WS_SEND_QUEUE``) and, together with what the
      transport has not sent yet, by bytes (``max_bytes``); a frame that does not fit closes the
      socket with 4012 (the hub does that when ``send`` says no);
    - the writer waits for the transport after every frame while it is over ``WRITE_BUFFER_HIGH``
      (so it holds at most that plus one frame); if the peer takes nothing at all for
      ``SEND_STALL`` seconds while the writer waits, it is too slow too, even if nothing more is
      queued (a slow link that keeps taking bytes is not);
    - once closed (any code), the closing handshake gets ``CLOSE_TIMEOUT`` seconds; then the
      connection is cut (RST), so an unread backlog never keeps the socket, its buffers or its
      handler alive.

    The writer is never cancelled while it waits for the transport to drain: aiohttp shares one
    drain future between everyone writing to the socket, and cancelling a waiter cancels it for
    all of them. Cutting the transport is what releases a stuck writer.
    """

    def __init__(
        self,
        ws: _Socket,
        request: web.Request,
        out: AbstractStreamWriter,
        limit: int,
        max_bytes: int,
        stats: SignalingStats,
    ) -> None:
        """``out`` is what ``ws.prepare(request)`` returned."""
        self._ws = ws
        self._out = out
        self._protocol = request.protocol  # its .transport is None once the connection is gone
        self._limit = limit
        self._max_bytes = max_bytes
        self._stats = stats
        # The queue, its event and the writer task are made on first use: most frames take the
        # fast path (``_write_now``), and an idle socket (a client in the waiting room) never
        # needs them, which keeps its memory down.
        self._queue: deque[str] | None = None
        self._queued = 0  # characters queued; server frames are ASCII JSON, so also bytes
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self.close_code: int | None = None
        self._reason = ""
        transport = request.transport
        if transport is not None:
            transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH, low=WRITE_BUFFER_HIGH // 4)
        self._stall: asyncio.TimerHandle | None = None
        self._closer: asyncio.Task[None] | None = None
        # Fast-path frames of this turn of the event loop, written together at its end (one
        # send() for all the envelopes a burst brings to this peer).
        self._pending: list[bytes] | None = None
        self._pending_bytes = 0

    def _unsent(self) -> int:
        """Bytes the transport holds that the peer has not taken yet."""
        transport = self._protocol.transport
        if transport is None or transport.is_closing():
            return 0
        return transport.get_write_buffer_size()

    @property
    def buffered(self) -> int:
        """What this connection holds for its peer: queued frames plus the transport's buffer."""
        return self._queued + self._pending_bytes + self._unsent()

    def _write_now(self, text: str) -> bool:
        """The fast path for small frames (envelopes are mostly a few hundred bytes): nothing is
        queued and the transport is under its high-water mark even with this frame, so the writer
        would not wait after it and no stall clock would run: the frame goes to the transport at
        the end of this turn of the event loop (``_flush``, with the others of the turn), without
        waking the writer task. False when it does not apply; the frame then goes through the
        queue (large frames always do, so a burst of them is bounded by ``max_bytes`` before
        anything is written)."""
        if len(text) > DIRECT_MAX:
            return False
        transport = self._protocol.transport
        if transport is None or transport.is_closing() or self._ws.closed:
            return False
        data = text.encode()
        size = transport.get_write_buffer_size() + self._pending_bytes + len(data)
        if size > WRITE_BUFFER_HIGH - _HEADER_MAX:
            return False
        frame = _text_frame(data)
        pending = self._pending
        if pending is None:
            self._pending = [frame]
            asyncio.get_running_loop().call_soon(self._flush)
        else:
            pending.append(frame)
        self._pending_bytes += len(frame)
        return True

    def _flush(self) -> None:
        """Write the fast-path frames of this turn (before anything queued or a close frame)."""
        pending = self._pending
        if pending is None:
            return
        self._pending = None
        self._pending_bytes = 0
        transport = self._protocol.transport
        if transport is None or transport.is_closing() or self._ws.closed:
            return  # the connection is going: the peer would not read them
        transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def send(self, text: str) -> bool:
        if self.close_code is not None:
            return False
        queue = self._queue
        if not queue and self._write_now(text):
            return True
        if queue is not None and len(queue) >= self._limit:
            return False
        if self.buffered + len(text) > self._max_bytes:
            return False
        if queue is None:
            queue = self._queue = deque()
        queue.append(text)
        self._queued += len(text)
        self._kick()
        return True

    def _kick(self) -> None:
        """Wake the writer, starting it on first use."""
        if self._wake is None:
            self._wake = asyncio.Event()
            self._writer = asyncio.create_task(self._write())
        self._wake.set()

    def close(self, code: int, reason: str) -> None:
        if self.close_code is not None:
            return
        self.close_code = code
        self._reason = reason
        self._stats.closes[code] += 1
        if code == CloseCode.TOO_SLOW and self._queue:
            self._queue.clear()  # what was queued is lost (docs/protocol.md section 5)
            self._queued = 0
        if self._wake is not None:
            self._wake.set()  # a writer that is running flushes what is queued, then ends
        self._closer = asyncio.create_task(self._shut())

    def _socket(self) -> Any:
        transport = self._protocol.transport
        if transport is None:
            return None
        try:
            return transport.get_extra_info("socket")
        except AttributeError:  # Python 3.11's TLS transport, once close() was called twice
            return None

    def _untaken(self) -> int:
        """Bytes on their way to the peer that it has not taken: the transport's buffer and, on
        Linux, the kernel's send queue (sent but not acknowledged, or not sent yet)."""
        untaken = self._unsent()
        sock = self._socket()
        if sock is not None and _OUTQ is not None:
            with contextlib.suppress(OSError, ValueError):
                untaken += struct.unpack("i", fcntl.ioctl(sock.fileno(), _OUTQ, bytes(4)))[0]
        return untaken

    def _watch(self, mark: int) -> None:
        loop = asyncio.get_running_loop()
        self._stall = loop.call_later(SEND_STALL, self._stalled, mark)

    def _unwatch(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def _stalled(self, mark: int) -> None:
        """The writer has waited ``SEND_STALL`` seconds; ``mark`` is what was untaken then."""
        self._stall = None
        if self.close_code is not None:
            return
        untaken = self._untaken()
        if untaken < mark:  # it took something: a slow link, not a peer that does not read
            self._watch(untaken)
            return
        self._stats.sends_dropped += 1
        self.close(CloseCode.TOO_SLOW, "too slow")

    async def _write(self) -> None:
        ws, wake, queue = self._ws, self._wake, self._queue
        assert wake is not None and queue is not None  # made before the writer is started
        while True:
            await wake.wait()
            wake.clear()
            while queue and not ws.closed:
                text = queue.popleft()
                self._queued -= len(text)
                if self._write_now(text):
                    continue
                self._flush()  # what took the fast path goes first
                self._watch(self._untaken() + len(text))  # the frame is not written yet
                try:
                    await ws.send_str(text)
                    # send_str waits for the transport only every 64 KiB: wait after each frame,
                    # so a transport over its high-water mark always has a writer on the clock.
                    await self._out.drain()
                except ConnectionError:
                    return  # the transport is gone (or closing); the reader sees it too
                finally:
                    self._unwatch()
            if self.close_code is not None:
                return

    async def _shut(self) -> None:
        """Flush what was queued before the close, close with our code, and make sure the
        connection is gone ``CLOSE_TIMEOUT`` seconds later at the latest."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_TIMEOUT
        code = self.close_code or CloseCode.NORMAL
        too_slow = code == CloseCode.TOO_SLOW
        self._flush()
        writer = self._writer
        if not too_slow and writer is not None:
            # the peer reads: what was queued goes first, then the close frame
            await asyncio.wait([writer], timeout=CLOSE_TIMEOUT)
        closing: asyncio.Task[bool] | None = None
        if writer is None or writer.done() or too_slow:
            self._flush()  # what the writer passed to the fast path, before the close frame
            # For 4012 the close frame goes out behind the backlog without waiting for it
            # (drain=False); it also wakes the reader, so the hub lets the peer go at once.
            closing = asyncio.create_task(
                self._ws.close(code=code, message=self._reason.encode(), drain=not too_slow)
            )
            await asyncio.wait([closing], timeout=max(0.0, deadline - loop.time()))
        # A graceful TCP/TLS close may still be flushing; aiohttp 3.14 has no event for the
        # connection going away, but the protocol drops its transport then.
        while self._protocol.transport is not None and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(LINGER_POLL)
        if self._protocol.transport is not None:
            self._cut()
        # Cutting released anything waiting on the transport; nothing here is left hanging.
        pending = [t for t in (self._writer, closing) if t is not None and not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=CLOSE_TIMEOUT)
        for task in pending:
            task.cancel()  # only if aiohttp did not let go after the cut (never seen)
        if closing is not None and closing.done() and not closing.cancelled():
            closing.exception()  # retrieved: a failed close is expected for a peer we cut

    def _cut(self) -> None:
        """Drop the connection now: no flushing, and an RST so the kernel frees its buffers."""
        transport = self._protocol.transport
        if transport is None:
            return
        sock = self._socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        transport.abort()

    async def wait_closed(self) -> None:
        """Close (if nobody did) and wait for the writer and the closing handshake."""
        if self.close_code is None:
            self.close_code = CloseCode.NORMAL  # the peer closed first: nothing to count
            if self._wake is not None:
                self._wake.set()
            self._closer = asyncio.create_task(self._shut())
        tasks = [t for t in (self._writer, self._closer) if t is not None]
        await asyncio.gather(*tasks, return_exceptions=True)


def origin_allowed(request: web.Request, config: Config) -> bool:
    """``RUANG_PUBLIC_ORIGIN`` if set, else same-origin: the Origin's host equals Host."""
    origin = request.headers.get("Origin")
    if not origin:
        return False
    origin = origin.strip().rstrip("/").lower()
    if config.public_origins:
        return origin in {o.lower() for o in config.public_origins}
    try:
        parts = urlsplit(origin)
        default = {"https": 443, "http": 80}.get(parts.scheme)
        if default is None or not parts.hostname or parts.path or parts.query:
            return False
        host = urlsplit("//" + request.host)
        return bool(
            parts.hostname == (host.hostname or "").lower()
            and (parts.port or default) == (host.port or default)
        )
    except ValueError:
        return False


def room_limits(config: Config) -> RoomLimits:
    return RoomLimits(
        capacity=config.limits.room_capacity,
        max_waiting=config.limits.max_waiting,
        waiting_held=config.limits.waiting_held_envelopes,
        resume_seconds=float(config.limits.resume_seconds),
    )


async def _hub_context(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]

    async def bump(room_pk: int) -> int:
        return await bump_generation(app[ENGINE], room_pk)

    hub: Hub
    if config.redis_url:  # several processes (server.scaleout)
        hub = await start_redis_hub(
            config,
            token_key=derive_key(app[SECRET], "ruang/resume"),
            bump_generation=bump,
            limits=room_limits(config),
            stats=app[WS_STATS],
        )
    else:
        hub = InProcessHub(
            token_key=derive_key(app[SECRET], "ruang/resume"),
            bump_generation=bump,
            limits=room_limits(config),
            stats=app[WS_STATS],
            max_frame=config.limits.ws_max_frame_bytes,
        )
        await hub.start()
    app[HUB] = hub
    yield
    await hub.close()


async def _going_away(app: web.Application) -> None:
    """Shutdown: every open socket, joined or not, gets 1001 so peers resume elsewhere."""
    state = app[WS_STATE]
    state.closing = True
    if HUB in app:
        await app[HUB].close()
    for sink in list(state.sockets):
        sink.close(CloseCode.GOING_AWAY, "server going away")


async def close_room_sockets(app: web.Application, room_id: str) -> None:
    """Call after a room is closed or gets a new link: every socket in it ends with 4003."""
    if HUB in app:
        await app[HUB].close_room(room_id)


def setup_ws(app: web.Application) -> None:
    """Register /ws. Call after ``app[CONFIG]`` and ``app[SECRET]`` are set and after the
    database context (``app[ENGINE]``) is in ``cleanup_ctx``."""
    limits = app[CONFIG].limits
    probes = RateLimit(limits.room_probes_per_ip, limits.room_probe_window_seconds)
    app[WS_STATE] = WsState(limits.ws_connections_per_ip, probes)
    app[WS_STATS] = SignalingStats()
    app.router.add_get("/ws", ws_handler, name="ws")
    app.cleanup_ctx.append(_hub_context)
    app.on_shutdown.append(_going_away)


async def ws_handler(request: web.Request) -> web.StreamResponse:
    app = request.app
    config, state, stats = app[CONFIG], app[WS_STATE], app[WS_STATS]
    ws = _Socket(
        heartbeat=HEARTBEAT,
        max_msg_size=config.limits.ws_max_frame_bytes,
        compress=False,
        timeout=CLOSE_TIMEOUT,
    )
    if not ws.can_prepare(request).ok:
        return web.Response(status=426, text="WebSocket only\n", headers={"Upgrade": "websocket"})
    out = await ws.prepare(request)
    limits = config.limits
    sink = SocketSink(
        ws,
        request,
        out,
        limits.ws_send_queue,
        max(SEND_BUFFER_BYTES, 4 * limits.ws_max_frame_bytes),
        stats,
    )
    state.sockets.add(sink)
    stats.connections_open += 1
    stats.connections_total += 1
    try:
        if state.closing:
            sink.close(CloseCode.GOING_AWAY, "server going away")
        elif not origin_allowed(request, config):
            sink.close(CloseCode.BAD_ORIGIN, "origin not allowed")
        else:
            ip = client_ip(request)
            current = app.get(HUB)  # several processes: the cap counts every process's sockets
            shared = current if isinstance(current, RedisHub) else None
            if not state.per_ip.acquire(ip):
                sink.close(CloseCode.TOO_MANY_CONNECTIONS, "too many connections")
            elif shared and not await shared.acquire_ip(ip, limits.ws_connections_per_ip):
                state.per_ip.release(ip)
                sink.close(CloseCode.TOO_MANY_CONNECTIONS, "too many connections")
            else:
                try:
                    await _serve(request, ws, sink, ip)
                finally:
                    state.per_ip.release(ip)
                    if shared:
                        await shared.release_ip(ip)
    finally:
        state.sockets.discard(sink)
        stats.connections_open -= 1
        await sink.wait_closed()
        log.debug("ws closed code=%s", sink.close_code)
    return ws


def _reply(sink: SocketSink, stats: SignalingStats, text: str) -> None:
    if not sink.send(text) and sink.close_code is None:
        stats.sends_dropped += 1
        sink.close(CloseCode.TOO_SLOW, "too slow")


async def _serve(request: web.Request, ws: _Socket, sink: SocketSink, ip: str) -> None:
    app = request.app
    limits, stats, hub = app[CONFIG].limits, app[WS_STATS], app[HUB]
    bucket = TokenBucket(limits.ws_rate_per_second, limits.ws_burst)
    try:
        first = await ws.receive(timeout=JOIN_TIMEOUT)
    except TimeoutError:
        sink.close(CloseCode.JOIN_TIMEOUT, "no join")
        return
    if first.type is not WSMsgType.TEXT:
        if first.type is WSMsgType.BINARY:
            sink.close(CloseCode.PROTOCOL_ERROR, "text frames only")
        return  # closed, or a frame aiohttp refused (it closed with our code already)
    stats.messages_received += 1
    bucket.take()
    try:
        join = parse(first.data)
    except ProtocolError:
        stats.protocol_errors += 1
        join = None
    if not isinstance(join, Join):
        sink.close(CloseCode.PROTOCOL_ERROR, "the first message must be a join")
        return
    try:
        counselor_id, conn = await _join(request, join, sink)
    except Fatal as exc:
        sink.close(FATAL_CLOSE.get(type(exc), CloseCode.PROTOCOL_ERROR), exc.code)
        return
    except Exception:
        log.exception("ws join failed")
        sink.close(CloseCode.INTERNAL_ERROR, "internal error")
        return
    log.debug("ws joined role=%s", join.role.value)
    try:
        async for frame in ws:
            if frame.type is not WSMsgType.TEXT:
                if frame.type is WSMsgType.BINARY:
                    sink.close(CloseCode.PROTOCOL_ERROR, "text frames only")
                break
            if sink.close_code is not None:
                break  # the hub let this connection go (left, replaced, declined, ...)
            stats.messages_received += 1
            if not bucket.take():
                sink.close(CloseCode.RATE_LIMITED, "rate limited")
                break
            try:
                msg = parse(frame.data)
            except ProtocolError as exc:
                stats.protocol_errors += 1
                _reply(sink, stats, dump(Error(exc.code, str(exc))))
                continue
            if type(msg) is Ping:
                _reply(sink, stats, _PONG)
                continue
            try:
                if type(msg) is Relay:  # the hot path: straight to the hub
                    await hub.relay(conn, msg)
                else:
                    await _dispatch(request, hub, conn, msg, counselor_id, ip)
            except Refused as exc:
                _reply(sink, stats, dump(Error(exc.code, str(exc), msg.type)))
    except Exception:
        log.exception("ws handler failed")
        sink.close(CloseCode.INTERNAL_ERROR, "internal error")
    finally:
        await hub.disconnect(conn)


async def _join(
    request: web.Request, join: Join, sink: SocketSink
) -> tuple[int | None, Connection]:
    app = request.app
    if join.v != PROTOCOL_VERSION:
        raise UnsupportedVersion(f"this server speaks v{PROTOCOL_VERSION}")
    probes, ip = app[WS_STATE].probes, client_ip(request)
    if probes.retry_after(ip):
        raise RoomProbesExceeded("too many unknown rooms from this address; try again later")
    room = await get_open_room(app[ENGINE], join.room)
    if room is None:
        probes.hit(ip)
        raise UnknownRoom("unknown room")
    counselor_id: int | None = None
    if join.role is Role.COUNSELOR:
        counselor = await auth.current_counselor(request)
        if counselor is None:
            raise NotAuthorised("log in as this room's counselor")
        if counselor.id != room.counselor_id:
            probes.hit(ip)
            raise UnknownRoom("unknown room")  # the same answer as for a room that is not there
        counselor_id = counselor.id
    ref = RoomRef(room.id, room.pk, room.generation)
    conn = await app[HUB].join(JoinRequest(ref, join.role, join.resume), sink)
    return counselor_id, conn


_AUDITED: Mapping[type, AuditEvent] = MappingProxyType(
    {
        Admit: AuditEvent.CLIENT_ADMITTED,
        Decline: AuditEvent.CLIENT_DECLINED,
        Remove: AuditEvent.CLIENT_REMOVED,
        End: AuditEvent.SESSION_ENDED,
    }
)


async def _dispatch(
    request: web.Request,
    hub: Hub,
    conn: Connection,
    msg: Message,
    counselor_id: int | None,
    ip: str,
) -> None:
    if type(msg) is Relay:
        await hub.relay(conn, msg)
        return
    if isinstance(msg, Admit):
        await hub.admit(conn, msg.id)
    elif isinstance(msg, Decline):
        await hub.decline(conn, msg.id)
    elif isinstance(msg, Remove):
        await hub.remove(conn, msg.id)
    elif isinstance(msg, End):
        await hub.end_session(conn)
    elif isinstance(msg, Leave):
        await hub.leave(conn)
        return
    else:
        raise Unexpected("not a message a peer sends after joining")
    try:
        await record(
            request.app[ENGINE],
            _AUDITED[type(msg)],
            counselor_id=counselor_id,
            room_pk=conn.room.pk,
            ip=ip,
        )
    except Exception:
        log.exception("audit record failed")


def _reader(stats: SignalingStats, attr: str) -> Callable[[], float]:
    return lambda: float(getattr(stats, attr))


def register_signaling_metrics(app: web.Application) -> None:
    """Signaling counters and gauges on /metrics: counts only, never ids or payloads."""
    from server.keys import METRICS

    metrics = app[METRICS]
    stats = app[WS_STATS]
    for name, attr, text in (
        ("ruang_ws_connections_open", "connections_open", "Open signaling WebSockets"),
        ("ruang_ws_connections_total", "connections_total", "Signaling WebSockets accepted"),
        ("ruang_ws_messages_received_total", "messages_received", "Frames received"),
        ("ruang_ws_envelopes_relayed_total", "envelopes_relayed", "Envelopes relayed"),
        ("ruang_ws_envelopes_held_total", "envelopes_held", "Envelopes held for a recipient"),
        ("ruang_ws_envelopes_dropped_total", "envelopes_dropped", "Envelopes dropped: hold full"),
        ("ruang_ws_sends_dropped_total", "sends_dropped", "Slow readers disconnected"),
        ("ruang_ws_protocol_errors_total", "protocol_errors", "Refused frames"),
    ):
        metrics.gauge(name, text, _reader(stats, attr))

    def rooms() -> float:
        return float(app[HUB].room_count()) if HUB in app else 0.0

    def participants() -> float:
        return float(app[HUB].participant_count()) if HUB in app else 0.0

    metrics.gauge("ruang_rooms_active", "Rooms with someone in them", rooms)
    metrics.gauge(
        "ruang_participants", "Participants connected or inside a resume window", participants
    )
    if app[CONFIG].redis_url:  # several processes
        register_redis_metrics(metrics, lambda: app.get(HUB))
