"""The /ws signaling endpoint (docs/protocol.md): a thin transport around the hub.

Here: the Origin allowlist, the per-IP connection cap, the frame cap, the per-connection token
bucket, who may join as what (room lookup, the counselor's session), the audit trail, and the
mapping of named errors to close codes. Rooms, relay rules and resume are the hub's
(``signaling.hub``); the bounded send queue with its writer task is ``server.socket_sink``.

Nothing here logs a payload, a name, a box, a token, a room id or a participant id: only event
kinds, close codes and counts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from types import MappingProxyType
from urllib.parse import urlsplit

from aiohttp import web

from server import auth
from server.audit import AuditEvent, record
from server.config import Config
from server.keys import CONFIG, ENGINE, METRICS, SECRET
from server.netutil import client_ip
from server.ratelimit import RateLimit
from server.rooms_store import bump_generation, get_open_room
from server.scaleout import register_redis_metrics, start_redis_hub
from server.secrets_store import derive_key
from server.socket_sink import CLOSE_TIMEOUT, WRITE_BUFFER_HIGH, SocketSink
from server.turn import call_servers_message
from server.websocket import FrameErrors, Handed, Kind, WebSocket, accept, is_upgrade
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
SEND_BUFFER_BYTES = 4 << 20  # per connection: queued frames plus the transport's unsent bytes

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
FRAME_ERRORS = FrameErrors(
    too_big=(CloseCode.FRAME_TOO_BIG, "frame too big"),
    protocol=(CloseCode.PROTOCOL_ERROR, "protocol error"),
)


class WsState:
    """Per-application transport state: open sockets and connections per IP."""

    def __init__(self, per_ip_cap: int, probes: RateLimit) -> None:
        self.per_ip = ConnectionCounter(per_ip_cap)
        self.probes = probes  # joins that found no room, per IP
        self.sockets: set[SocketSink] = set()
        self.sessions: set[asyncio.Task[None]] = set()  # one per socket, from upgrade to close
        self.audits: set[asyncio.Task[None]] = set()  # audit rows being written
        self.closing = False


HUB: web.AppKey[Hub] = web.AppKey("ruang_hub", Hub)
WS_STATE: web.AppKey[WsState] = web.AppKey("ruang_ws_state", WsState)
WS_STATS: web.AppKey[SignalingStats] = web.AppKey("ruang_ws_stats", SignalingStats)


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
    call_servers = call_servers_message(config, app[METRICS])
    if config.redis_url:  # several processes (server.scaleout)
        hub = await start_redis_hub(
            config,
            token_key=derive_key(app[SECRET], "ruang/resume"),
            bump_generation=bump,
            limits=room_limits(config),
            stats=app[WS_STATS],
            call_servers=call_servers,
        )
    else:
        hub = InProcessHub(
            token_key=derive_key(app[SECRET], "ruang/resume"),
            bump_generation=bump,
            limits=room_limits(config),
            stats=app[WS_STATS],
            max_frame=config.limits.ws_max_frame_bytes,
            call_servers=call_servers,
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
    # aiohttp no longer knows these connections: wait for their closing handshakes here.
    sessions = list(state.sessions) + list(state.audits)
    if sessions:
        _, left = await asyncio.wait(sessions, timeout=CLOSE_TIMEOUT + 1.0)
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=1.0)


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
    if not is_upgrade(request):
        return web.Response(status=426, text="WebSocket only\n", headers={"Upgrade": "websocket"})
    limits = config.limits
    try:
        ws = accept(
            request,
            max_size=limits.ws_max_frame_bytes,
            heartbeat=HEARTBEAT,
            errors=FRAME_ERRORS,
            write_high=WRITE_BUFFER_HIGH,
        )
    except ConnectionResetError:
        return Handed()  # the client went away: nothing to answer
    sink = SocketSink(
        ws, limits.ws_send_queue, max(SEND_BUFFER_BYTES, 4 * limits.ws_max_frame_bytes), stats
    )
    state.sockets.add(sink)
    stats.connections_open += 1
    stats.connections_total += 1
    # The socket lives in its own task: aiohttp's request handler (and the request, once the
    # join is done) are let go, which is most of what an idle socket would otherwise hold.
    allowed = origin_allowed(request, config)
    ip = client_ip(request)
    task = asyncio.create_task(_session([request], ws, sink, allowed, ip))
    state.sessions.add(task)
    task.add_done_callback(state.sessions.discard)
    return Handed()


async def _session(
    upgrade: list[web.Request], ws: WebSocket, sink: SocketSink, allowed: bool, ip: str
) -> None:
    """``upgrade`` holds the request until the join is done (``_serve`` takes it out)."""
    app = upgrade[0].app
    config, state, stats = app[CONFIG], app[WS_STATE], app[WS_STATS]
    limits = config.limits
    try:
        if state.closing:
            sink.close(CloseCode.GOING_AWAY, "server going away")
        elif not allowed:
            sink.close(CloseCode.BAD_ORIGIN, "origin not allowed")
        else:
            current = app.get(HUB)  # several processes: the cap counts every process's sockets
            shared = current if isinstance(current, RedisHub) else None
            if not state.per_ip.acquire(ip):
                sink.close(CloseCode.TOO_MANY_CONNECTIONS, "too many connections")
            elif shared and not await shared.acquire_ip(ip, limits.ws_connections_per_ip):
                state.per_ip.release(ip)
                sink.close(CloseCode.TOO_MANY_CONNECTIONS, "too many connections")
            else:
                try:
                    await _serve(upgrade, ws, sink, ip)
                finally:
                    state.per_ip.release(ip)
                    if shared:
                        await shared.release_ip(ip)
    except Exception:
        log.exception("ws session failed")
        sink.close(CloseCode.INTERNAL_ERROR, "internal error")
    finally:
        state.sockets.discard(sink)
        stats.connections_open -= 1
        await sink.wait_closed()
        log.debug("ws closed code=%s", sink.close_code)


def _reply(sink: SocketSink, stats: SignalingStats, text: str) -> None:
    if not sink.send(text) and sink.close_code is None:
        stats.sends_dropped += 1
        sink.close(CloseCode.TOO_SLOW, "too slow")


async def _serve(upgrade: list[web.Request], ws: WebSocket, sink: SocketSink, ip: str) -> None:
    request = upgrade.pop()
    app = request.app
    limits, stats, hub = app[CONFIG].limits, app[WS_STATS], app[HUB]
    bucket = TokenBucket(limits.ws_rate_per_second, limits.ws_burst)
    relay_now = hub.relay_now if isinstance(hub, InProcessHub) else None
    try:
        async with asyncio.timeout(JOIN_TIMEOUT):
            first = await ws.receive()
    except TimeoutError:
        sink.close(CloseCode.JOIN_TIMEOUT, "no join")
        return
    if first.kind is not Kind.TEXT:
        if first.kind is Kind.BINARY:
            sink.close(CloseCode.PROTOCOL_ERROR, "text frames only")
        return  # closed, or a frame the socket refused (it closed with our code already)
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
    del request  # the request (headers, aiohttp's handler) is not kept for the socket's life
    try:
        while True:  # not ``async for``: its __anext__ frame would live as long as the socket
            frame = ws.ready() or await ws.receive()
            if frame.kind is not Kind.TEXT:  # CLOSE, CLOSING and CLOSED end the loop too
                if frame.kind is Kind.BINARY:
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
                    if relay_now is not None:
                        relay_now(conn, msg)
                    else:
                        await hub.relay(conn, msg)
                else:
                    await _dispatch(app, hub, conn, msg, counselor_id, ip)
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
    app: web.Application,
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
    # Written beside the socket, not in its way: the counselor's next frames (after an admit,
    # the hello and commit of the call) need not wait for the database.
    task = asyncio.create_task(
        _audit(app, _AUDITED[type(msg)], counselor_id=counselor_id, room_pk=conn.room.pk, ip=ip)
    )
    audits = app[WS_STATE].audits
    audits.add(task)
    task.add_done_callback(audits.discard)


async def _audit(
    app: web.Application, event: AuditEvent, *, counselor_id: int | None, room_pk: int, ip: str
) -> None:
    try:
        await record(app[ENGINE], event, counselor_id=counselor_id, room_pk=room_pk, ip=ip)
    except Exception:
        log.exception("audit record failed")


def _reader(stats: SignalingStats, attr: str) -> Callable[[], float]:
    return lambda: float(getattr(stats, attr))


def register_signaling_metrics(app: web.Application) -> None:
    """Signaling counters and gauges on /metrics: counts only, never ids or payloads."""

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
