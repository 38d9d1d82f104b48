"""The signaling client: login (counselor), join, the waiting room, admission, resume, the end.

One queue serialises everything that changes state: frames from the WebSocket, its closing,
peer-connection events, a 4 Hz tick and signals. ``Call`` (``signaling.peer.call``) does what
happens inside the envelopes; this module does what the server sees (docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import traceback
from collections.abc import Coroutine
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

import aiohttp

from signaling.e2e import Role
from signaling.messages import (
    COUNSELOR_ID,
    PROTOCOL_VERSION,
    Admit,
    Admitted,
    CallServers,
    End,
    Error,
    GoneReason,
    Join,
    Joined,
    Leave,
    Message,
    Peer,
    PeerInfo,
    PeerState,
    ProtocolError,
    Relay,
    Relayed,
    Token,
    dump,
    parse,
)
from signaling.messages import Role as WireRole
from signaling.peer.call import Call
from signaling.peer.config import PeerConfig
from signaling.peer.errors import (
    Declined,
    ExitCode,
    PeerError,
    RoomUnavailable,
    SecurityError,
    SignalingError,
)
from signaling.peer.events import EventLog
from signaling.peer.rtc import RtcEvent
from signaling.peer.transport import login, make_http, open_socket
from signaling.peer.turn import (
    Fetched,
    IceCredentials,
    csrf_token,
    fetch_call_servers,
    from_message,
    token_admitted,
)

log = logging.getLogger("ruang.peer.session")

TICK: Final = 0.25
BYE_GRACE: Final = 3.0  # after the other's goodbye, wait this long for the server's word
CHAT_SETTLE: Final = 3.0  # at the end, wait this long for chat acknowledgements
LEAVE_WAIT: Final = 2.0
# Close codes after which the slot is kept and the peer resumes with its token.
RESUMABLE: Final = frozenset({1001, 1006, 1011, 4000, 4009, 4011, 4012, 4014})
CLOSE_TEXT: Final = MappingProxyType(
    {
        1000: "closed by the server",
        4001: "the server speaks another protocol version",
        4002: "the server does not accept this link's origin",
        4004: "not logged in as this room's counselor",
        4008: "another connection took over this place",
        4010: "too many connections from this address",
        4013: "the waiting room is full",
    }
)


@dataclass(frozen=True, slots=True)
class _Frame:
    gen: int
    text: str


@dataclass(frozen=True, slots=True)
class _Closed:
    gen: int
    code: int


@dataclass(frozen=True, slots=True)
class _Opened:
    ws: aiohttp.ClientWebSocketResponse


@dataclass(frozen=True, slots=True)
class _ReconnectFailed:
    reason: str


@dataclass(frozen=True, slots=True)
class _Tick:
    pass


@dataclass(frozen=True, slots=True)
class _Stop:
    pass


_Item = _Frame | _Closed | _Opened | _ReconnectFailed | _Tick | _Stop | RtcEvent


class Session:
    """One ``ruang join`` run."""

    def __init__(self, config: PeerConfig, events: EventLog) -> None:
        self.config = config
        self.events = events
        self.role: Role = "counselor" if config.counselor else "client"
        self._inbox: asyncio.Queue[_Item] = asyncio.Queue()
        wants_turn = config.fetch_turn and not config.text_only
        self.ice = IceCredentials(config.ice_servers, self._fetch_turn if wants_turn else None)
        self._csrf: str | None = None
        self.call = Call(
            config, self.role, events, self._send_relay, self._inbox.put_nowait, ice=self.ice
        )
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._gen = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._reconnector: asyncio.Task[None] | None = None
        self._token: str | None = None
        self._resume_seconds = 60
        self._my_id: str | None = None
        self._admitted = False  # client: admitted; counselor: its client admitted
        self._counselor_present = False
        self._waiting_reason: str | None = None
        self._target: str | None = None  # the counselor's one client
        self._target_gone = False
        self._exit: ExitCode | None = None
        self._leaving = False
        self._bye_at: float | None = None
        self._finish_deadline: float | None = None

    # --- running --------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._inbox.put_nowait, _Stop())
        try:
            async with make_http(self.config.insecure) as http:
                self._http = http
                try:
                    await self._start(http)
                    await self._loop()
                except PeerError as exc:
                    await self._fail(exc)
                finally:
                    await self._teardown()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        return int(self._exit if self._exit is not None else ExitCode.FAILED)

    async def _start(self, http: aiohttp.ClientSession) -> None:
        if self.role == "counselor":
            await login(http, self.config.link, self.config.email, self.config.password)
        self._attach(await open_socket(http, self.config.link, self._join_message()))
        self._spawn(self._ticker())

    async def _loop(self) -> None:
        while self._exit is None:
            item = await self._inbox.get()
            try:
                await self._handle(item)
                if self._inbox.empty() and self._exit is None:
                    await self.call.flush_hello()
                    if self._inbox.empty():
                        self.call.prepare()  # the next peer connection, while idle
                await self._check_progress()
            except PeerError as exc:
                await self._fail(exc)
            except Exception as exc:  # a bug, or a library failure: no message (it may quote SDP)
                log.error(
                    "internal error (%s):\n%s",
                    type(exc).__name__,
                    "".join(traceback.format_tb(exc.__traceback__)),
                )
                await self._fail(PeerError(f"internal error ({type(exc).__name__})"))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            self._inbox.put_nowait(_Tick())

    async def _teardown(self) -> None:
        await self.call.close()
        await self.ice.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()

    # --- the socket -----------------------------------------------------------------------------

    def _join_message(self) -> Join:
        return Join(
            v=PROTOCOL_VERSION,
            room=self.config.link.room_id,
            role=WireRole(self.role),
            resume=self._token,
        )

    def _attach(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._gen += 1
        self._ws = ws
        self._reader = self._spawn(self._read(ws, self._gen))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, gen: int) -> None:
        # autoclose is off: aiohttp would otherwise answer the server's close frame itself and,
        # if the server has already shut the TCP connection, report 1006 instead of its code.
        code: int | None = None
        try:
            while True:
                frame = await ws.receive()
                if frame.type is aiohttp.WSMsgType.TEXT:
                    self._inbox.put_nowait(_Frame(gen, frame.data))
                    continue
                if frame.type is aiohttp.WSMsgType.CLOSE:
                    code = int(frame.data)
                break
        except (aiohttp.ClientError, OSError) as exc:
            log.info("signaling read failed (%s)", type(exc).__name__)
        finally:
            code = code or ws.close_code or 1006
            log.debug("signaling socket closed (%d)", code)
            self._inbox.put_nowait(_Closed(gen, code))
            with contextlib.suppress(Exception):
                await ws.close()

    async def _send(self, msg: Message) -> bool:
        ws = self._ws
        if ws is None or ws.closed:
            return False
        try:
            await ws.send_str(dump(msg))
        except (aiohttp.ClientError, OSError, RuntimeError):
            return False
        return True

    async def _send_relay(self, to: str, epoch: str, box: str) -> bool:
        return await self._send(Relay(to=to, epoch=epoch, box=box))

    async def _reconnect(self) -> None:
        assert self._http is not None
        deadline = time.monotonic() + self._resume_seconds
        delay = 0.2
        while True:
            try:
                ws = await open_socket(self._http, self.config.link, self._join_message())
            except SignalingError as exc:
                if time.monotonic() + delay >= deadline:
                    self._inbox.put_nowait(_ReconnectFailed(str(exc)))
                    return
                log.info("reconnect failed; retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self._inbox.put_nowait(_Opened(ws))
            return

    async def _fetch_turn(self) -> Fetched | None:
        """Call credentials: the counselor with its session (cookie + CSRF token), the client
        with a resume token that says "admitted" (None until it has one)."""
        http, link = self._http, self.config.link
        if http is None:
            return None
        if self.role == "counselor":
            if self._csrf is None:
                self._csrf = await csrf_token(http, link)
            return await fetch_call_servers(http, link, csrf=self._csrf)
        token = self._token
        if not self._admitted or not token_admitted(token):
            return None
        return await fetch_call_servers(http, link, bearer=token)

    # --- dispatch -------------------------------------------------------------------------------

    async def _handle(self, item: _Item) -> None:
        if isinstance(item, RtcEvent):
            await self.call.on_rtc(item)
        elif isinstance(item, _Frame):
            if item.gen == self._gen:
                await self._on_frame(item.text)
        elif isinstance(item, _Closed):
            if item.gen == self._gen:
                await self._on_closed(item.code)
        elif isinstance(item, _Tick):
            await self.call.tick()
        elif isinstance(item, _Opened):
            log.info("signaling connection reopened")
            self._attach(item.ws)
        elif isinstance(item, _ReconnectFailed):
            raise SignalingError(f"could not resume the signaling connection: {item.reason}")
        elif isinstance(item, _Stop):
            await self._finish("interrupted", ExitCode.FAILED)

    async def _on_frame(self, text: str) -> None:
        try:
            msg = parse(text)
        except ProtocolError as exc:
            log.warning("ignored a malformed server message (%s)", exc.code)
            return
        if isinstance(msg, Relayed):
            await self.call.on_envelope(msg.sender, msg.epoch, msg.box)
        elif isinstance(msg, Joined):
            await self._on_joined(msg)
        elif isinstance(msg, Peer):
            await self._on_peer(msg)
        elif isinstance(msg, Admitted):
            await self._client_admitted()
        elif isinstance(msg, Token):
            self._token = msg.resume
        elif isinstance(msg, CallServers):  # the call may begin: no fetch on its path
            self.ice.offer(from_message(msg))
        elif isinstance(msg, Error):
            log.info("the server refused a %s: %s", msg.ref or "message", msg.code)

    async def _on_closed(self, code: int) -> None:
        self._ws = None
        if self._leaving:
            return
        if code == 4005:
            log.info("declined by the counselor")
            self.events.emit("declined")
            self._leaving = True
            self._exit = Declined.exit_code
            return
        if code == 4003:
            raise RoomUnavailable("unknown or closed room")
        if code in (4006, 4007):
            await self._finish("removed" if code == 4006 else "ended", ExitCode.OK)
            return
        if code in RESUMABLE:
            log.warning("signaling connection lost (%d): resuming", code)
            self._reconnector = self._spawn(self._reconnect())
            return
        raise SignalingError(CLOSE_TEXT.get(code, f"the server closed the connection ({code})"))

    # --- joining and the room -------------------------------------------------------------------

    async def _on_joined(self, j: Joined) -> None:
        self._token = j.resume
        self._resume_seconds = j.resume_seconds
        if j.resumed and j.id == self._my_id:
            log.info("resumed the signaling connection")
            return  # the other side sees us come back and says hello
        if self._my_id is not None:
            log.warning("the resume token was refused (%s)", j.resume_error or "unknown")
            if self.role == "client" and self._admitted:
                if self.call.bye is not None:  # the counselor had said goodbye: it ended
                    await self._finish("ended", ExitCode.OK)
                    return
                raise SignalingError(f"the session could not be resumed ({j.resume_error})")
        self._my_id = j.id
        log.info("joined the room as %s", self.role)
        await self.call.new_identity(self.config.link.room_id, j.id)
        if self.role == "client":
            await self._client_joined(j)
        else:
            await self._counselor_joined(j.peers)

    async def _client_joined(self, j: Joined) -> None:
        self.call.set_peer(COUNSELOR_ID)
        counselor = next((p for p in j.peers if p.id == COUNSELOR_ID), None)
        self._counselor_present = counselor is not None and counselor.connected
        if j.state is PeerState.ADMITTED:
            await self._client_admitted()
            return
        self._emit_waiting()
        self.call.peer_present()  # our hello (with the name) waits for the counselor

    def _emit_waiting(self) -> None:
        reason = "knocked" if self._counselor_present else "counselor-away"
        if reason != self._waiting_reason:
            self._waiting_reason = reason
            self.events.emit("waiting", reason=reason)

    async def _client_admitted(self) -> None:
        if self._admitted:
            return
        self._admitted = True
        self.events.emit("admitted")
        self.call.begin()

    async def _counselor_joined(self, peers: tuple[PeerInfo, ...]) -> None:
        clients = [p for p in peers if p.role is WireRole.CLIENT]
        if self._target is not None:
            mine = next((p for p in clients if p.id == self._target), None)
            if mine is None:
                await self._client_gone(GoneReason.EXPIRED)
            elif mine.connected:
                self.call.peer_present()
            return
        admitted = [p for p in clients if p.state is PeerState.ADMITTED]
        if admitted:
            self._target = admitted[0].id
            self.call.set_peer(self._target)
            await self._counselor_call_begins()
            return
        waiting = [p for p in clients if p.state is PeerState.WAITING and p.connected]
        if waiting:
            await self._admit(waiting[0].id)

    async def _admit(self, client_id: str) -> None:
        self._target = client_id
        self.call.set_peer(client_id)
        log.info("admitting the first client who knocked")
        await self._send(Admit(id=client_id))

    async def _counselor_call_begins(self) -> None:
        if self._admitted:
            return
        self._admitted = True
        self.events.emit("admitted", id=self._target)
        self.call.begin()

    async def _on_peer(self, p: Peer) -> None:
        if self.role == "client":
            if p.id == COUNSELOR_ID:
                await self._counselor_changed(p)
            return
        if p.role is not WireRole.CLIENT:
            return
        if self._target is None:
            if p.state is PeerState.WAITING and p.connected:
                await self._admit(p.id)
            return
        if p.id != self._target:
            return
        if p.state is PeerState.GONE:
            await self._client_gone(p.reason)
        elif p.state is PeerState.ADMITTED:
            if not self._admitted:
                await self._counselor_call_begins()
            elif p.connected:
                self.call.peer_present()  # the client came back: new hello

    async def _client_gone(self, reason: GoneReason | None) -> None:
        self._target_gone = True
        if reason is GoneReason.EXPIRED:
            raise SignalingError("the client's connection was lost")
        await self._finish("left", ExitCode.OK)

    async def _counselor_changed(self, p: Peer) -> None:
        was_present = self._counselor_present
        self._counselor_present = p.connected and p.state is not PeerState.GONE
        if self._admitted:
            if p.state is PeerState.GONE:
                if p.reason is GoneReason.EXPIRED:
                    raise SignalingError("the counselor's connection was lost")
                await self._finish("left", ExitCode.OK)
            elif p.connected:
                self.call.peer_present()
            return
        self._emit_waiting()
        if self._counselor_present and not was_present:
            self.call.peer_present()

    # --- the end --------------------------------------------------------------------------------

    async def _check_progress(self) -> None:
        if self._exit is not None:
            return
        now = time.monotonic()
        bye = self.call.bye
        if bye == "security":
            raise SecurityError("the other side refused the connection: its security check failed")
        if bye is not None:
            if self._bye_at is None:
                self._bye_at = now
            elif now - self._bye_at >= BYE_GRACE:
                await self._finish("left" if self.role == "counselor" else "ended", ExitCode.OK)
                return
        started = self.call.connected_at
        if self.config.seconds is not None and started is not None:
            if now >= started + self.config.seconds:
                if self._finish_deadline is None:
                    self._finish_deadline = now + CHAT_SETTLE
                if not self.call.chat.pending or now >= self._finish_deadline:
                    await self._finish("seconds", ExitCode.OK)

    async def _finish(self, reason: str, code: ExitCode) -> None:
        if self._exit is not None:
            return
        self.events.emit("ended", reason=reason)
        if reason in ("seconds", "interrupted"):
            await self.call.goodbye("ended" if self.role == "counselor" else "left")
        await self._leave()
        self._exit = code

    async def _fail(self, exc: PeerError) -> None:
        if self._exit is not None:
            return
        log.error("%s: %s", type(exc).__name__, exc)
        self.events.emit("error", message=str(exc))
        if isinstance(exc, SecurityError):
            await self.call.goodbye("security")
        elif self._admitted:
            await self.call.goodbye("ended" if self.role == "counselor" else "left")
        await self._leave()
        self._exit = exc.exit_code

    async def _leave(self) -> None:
        self._leaving = True
        if self._reconnector is not None:
            self._reconnector.cancel()
        if self._ws is None or self._ws.closed:
            return
        if self.role == "counselor" and self._admitted and not self._target_gone:
            await self._send(End())
        await self._send(Leave())
        reader = self._reader
        if reader is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(reader), LEAVE_WAIT)
