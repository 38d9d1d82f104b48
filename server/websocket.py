"""A lean server WebSocket (RFC 6455) on the connection aiohttp hands over after the upgrade.

aiohttp checks the request (routing, middlewares, the Origin and the session are ``server.ws``'s
business) and then lets go of the connection: ``accept`` answers 101 itself, moves the transport
to a ``WebSocket`` protocol and tells aiohttp's request handler that its connection is gone. An
idle socket then costs a transport and this object, not aiohttp's request, its headers, its
request handler task and its WebSocket reader and writer (about 15 KiB per connection for a
bare ``WebSocketResponse``, more than the whole PeerJS server spends): see docs/performance.md.

What this speaks: text and binary frames (fragmented or not) up to ``max_size`` bytes per
message, ping (answered) and pong, the closing handshake, no extensions (no compression), no
subprotocols. Frames a client must not send (unmasked, reserved bits, unknown opcodes, control
frames over 125 bytes or fragmented, bad UTF-8, a continuation with nothing to continue) end the
connection with a close code the caller chose (``errors``), as does a message over ``max_size``
(refused from its header, before its payload is buffered). The heartbeat is a ping after
``heartbeat`` seconds without any frame from the peer; no frame within half that again drops
the connection.

Nothing here logs: frames are never looked into beyond their header.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import struct
from collections import deque
from enum import IntEnum
from typing import NamedTuple, cast

from aiohttp import web

try:  # aiohttp's Cython mask (in place, on a bytearray)
    from aiohttp._websocket.helpers import websocket_mask as _mask_in_place
except ImportError:  # pragma: no cover - aiohttp without the helper

    def _mask_in_place(mask: bytes, data: bytearray) -> None:
        n = len(data)
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
        data[:] = (int.from_bytes(data, "little") ^ key).to_bytes(n, "little")


_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_PAUSE_FRAMES = 64  # received frames waiting for the reader before the transport is paused
_RESUME_FRAMES = 8


class Kind(IntEnum):
    """What ``WebSocket.receive`` returns."""

    TEXT = 1
    BINARY = 2
    CLOSE = 8  # the peer closed (its code is ``WebSocket.peer_code``)
    CLOSING = 256  # we are closing
    CLOSED = 257  # the connection is gone (or was refused: a bad frame, no pong)


class Frame(NamedTuple):
    kind: Kind
    data: str = ""  # a TEXT message's text (a BINARY message's bytes are not kept)


_CLOSING = Frame(Kind.CLOSING)
_CLOSED = Frame(Kind.CLOSED)


class FrameErrors(NamedTuple):
    """The close code and reason for each way a peer can break the protocol."""

    too_big: tuple[int, str]
    protocol: tuple[int, str]


class Handed(web.StreamResponse):
    """What a view returns after ``accept``: aiohttp no longer has the connection and writes
    nothing of it."""

    async def prepare(self, request: web.BaseRequest) -> None:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


class HandshakeError(Exception):
    """Not a WebSocket upgrade we accept (the view answers 426 or 400)."""


def _frame(opcode: int, data: bytes) -> bytes:
    """One unmasked, final frame (servers never mask)."""
    n = len(data)
    if n < 126:
        return struct.pack("!BB", 0x80 | opcode, n) + data
    if n < 1 << 16:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + data
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + data


def text_frame(data: bytes) -> bytes:
    """A final text frame around UTF-8 ``data``."""
    return _frame(0x1, data)


def _sendable(code: int) -> bool:
    """A close code an endpoint may put in a close frame (RFC 6455 7.4, IANA's registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _close_payload(code: int, reason: str) -> bytes:
    return struct.pack("!H", code) + reason.encode()[:123]


def _handshake_key(request: web.Request) -> str:
    """The Sec-WebSocket-Accept value; HandshakeError if this is not an upgrade we accept."""
    headers = request.headers
    if request.method != "GET" or headers.get("Upgrade", "").lower().strip() != "websocket":
        raise HandshakeError("not a WebSocket upgrade")
    tokens = {t.strip().lower() for t in headers.get("Connection", "").split(",")}
    if "upgrade" not in tokens:
        raise HandshakeError("not a WebSocket upgrade")
    if headers.get("Sec-WebSocket-Version", "").strip() != "13":
        raise HandshakeError("WebSocket version 13 only")
    key = headers.get("Sec-WebSocket-Key", "").strip()
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise HandshakeError("bad Sec-WebSocket-Key")
    except binascii.Error:
        raise HandshakeError("bad Sec-WebSocket-Key") from None
    digest = hashlib.sha1(key.encode() + _GUID, usedforsecurity=False).digest()
    return base64.b64encode(digest).decode()


def is_upgrade(request: web.Request) -> bool:
    try:
        _handshake_key(request)
    except HandshakeError:
        return False
    return True


def accept(
    request: web.Request,
    *,
    max_size: int,
    heartbeat: float | None,
    errors: FrameErrors,
    write_high: int,
) -> WebSocket:
    """Answer the upgrade and take the connection from aiohttp. The handler must return right
    after (what it returns is never written: aiohttp no longer has the connection)."""
    accept_key = _handshake_key(request)
    transport = request.transport
    handler = request.protocol
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the client went away before the upgrade")
    transport.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key.encode() + b"\r\n\r\n"
    )
    # Bytes the client sent behind its upgrade request before it saw the 101 (clients wait for
    # it, so this is nearly always empty); aiohttp keeps them for the protocol it would attach.
    tail: bytes = getattr(handler, "_message_tail", b"")
    ws = WebSocket(max_size=max_size, heartbeat=heartbeat, errors=errors)
    transport.set_write_buffer_limits(high=write_high, low=write_high // 4)
    transport.set_protocol(ws)
    ws.connection_made(transport)
    # aiohttp forgets the connection: out of its server's list (shutdown is ours: server.ws),
    # no keep-alive timer, and its transport None so nothing of it writes to or closes ours.
    handler.transport = None
    handler.connection_lost(None)
    if tail:
        ws.data_received(tail)
    return ws


class WebSocket(asyncio.Protocol):
    """One server-side WebSocket on a transport: frames in (``receive``), frames out
    (``write``/``send_str``/``drain``), the closing handshake (``close``) and the heartbeat."""

    __slots__ = (
        "_buf",
        "_close_sent",
        "_drain_waiter",
        "_errors",
        "_frag",
        "_frag_kind",
        "_frames",
        "_gone",
        "_heartbeat",
        "_loop",
        "_max_size",
        "_paused_read",
        "_paused_write",
        "_peer_closed",
        "_pinged",
        "_seen",
        "_timer",
        "_waiter",
        "peer_code",
        "transport",
    )

    def __init__(self, *, max_size: int, heartbeat: float | None, errors: FrameErrors) -> None:
        self._loop = asyncio.get_running_loop()
        self._max_size = max_size
        self._heartbeat = heartbeat
        self._errors = errors
        self.transport: asyncio.Transport | None = None
        self._buf = b""
        self._frag: bytearray | None = None  # a fragmented message being put together
        self._frag_kind = Kind.TEXT
        self._frames: deque[Frame] | None = None  # made when a frame waits for the reader
        self._waiter: asyncio.Future[None] | None = None
        self._gone: asyncio.Future[None] | None = None  # for close(): the connection is lost
        self._drain_waiter: asyncio.Future[None] | None = None
        self._paused_read = False
        self._paused_write = False
        self._close_sent = False
        self._peer_closed = False
        self._seen = False  # a frame since the heartbeat last looked
        self._pinged = False
        self._timer: asyncio.TimerHandle | None = None
        self.peer_code: int | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        if self._heartbeat:
            self._timer = self._loop.call_later(self._heartbeat, self._beat)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._push(_CLOSED)
        self._frag = None
        self._buf = b""
        for fut in (self._gone, self._drain_waiter):
            if fut is not None and not fut.done():
                fut.set_result(None)
        self._drain_waiter = None

    def pause_writing(self) -> None:
        self._paused_write = True

    def resume_writing(self) -> None:
        self._paused_write = False
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def eof_received(self) -> bool:
        return False  # the transport closes itself; connection_lost follows

    def data_received(self, data: bytes) -> None:
        self._seen = True
        if self._buf:
            data = self._buf + data
            self._buf = b""
        pos, end = 0, len(data)
        while end - pos >= 2 and self.transport is not None:
            b0, b1 = data[pos], data[pos + 1]
            size = b1 & 0x7F
            head = pos + 2
            if size == 126:
                if end - head < 2:
                    break
                size = data[head] << 8 | data[head + 1]
                head += 2
            elif size == 127:
                if end - head < 8:
                    break
                size = int.from_bytes(data[head : head + 8], "big")
                head += 8
            opcode = b0 & 0x0F
            if b0 & 0x70 or not b1 & 0x80:  # reserved bits (no extension) or not masked
                self._fail(self._errors.protocol)
                return
            if opcode >= 0x8:
                if size > 125 or not b0 & 0x80:
                    self._fail(self._errors.protocol)
                    return
            elif size + (len(self._frag) if self._frag is not None else 0) > self._max_size:
                self._fail(self._errors.too_big)
                return
            if end - head < 4 + size:
                break
            payload = bytearray(data[head + 4 : head + 4 + size])
            if size:
                _mask_in_place(data[head : head + 4], payload)
            pos = head + 4 + size
            if b0 == 0x81 and self._frag is None and not self._close_sent:  # a whole text message
                try:
                    self._push(Frame(Kind.TEXT, payload.decode()))
                except UnicodeDecodeError:
                    self._fail(self._errors.protocol)
                    return
            else:
                self._on_frame(b0 & 0x80 != 0, opcode, payload)
        if pos < end and self.transport is not None:
            self._buf = data[pos:]

    # -- frames in -----------------------------------------------------------------------------

    def _on_frame(self, fin: bool, opcode: int, payload: bytearray) -> None:
        if opcode in (0x1, 0x2):
            if self._frag is not None:  # a new message inside a fragmented one
                self._fail(self._errors.protocol)
            elif fin:
                self._message(Kind(opcode), payload)
            else:
                self._frag, self._frag_kind = payload, Kind(opcode)
        elif opcode == 0x0:
            frag = self._frag
            if frag is None:
                self._fail(self._errors.protocol)
                return
            frag += payload
            if fin:
                self._frag = None
                self._message(self._frag_kind, frag)
        elif opcode == 0x9:  # ping: pong with the same payload
            if not self._close_sent:
                self.write(_frame(0xA, bytes(payload)))
        elif opcode == 0xA:  # pong
            pass
        elif opcode == 0x8:
            self._on_close(payload)
        else:
            self._fail(self._errors.protocol)

    def _message(self, kind: Kind, payload: bytearray) -> None:
        if self._close_sent:
            return  # after our close frame, the peer's data is not read (RFC 6455 5.5.1)
        if kind is Kind.TEXT:
            try:
                self._push(Frame(Kind.TEXT, payload.decode()))
            except UnicodeDecodeError:
                self._fail(self._errors.protocol)
        else:
            self._push(Frame(Kind.BINARY))

    def _on_close(self, payload: bytearray) -> None:
        code = 1005  # no code given: the reply carries none either
        reply = b""
        if len(payload) >= 2:
            code = int.from_bytes(payload[:2], "big")
            # A code a peer may send is echoed; any other (1005, 1006, 1015, unassigned ones,
            # a 1-byte body) gets 1002, protocol error (RFC 6455 7.4).
            reply = struct.pack("!H", code if _sendable(code) else 1002)
        elif payload:
            code = 1002
            reply = struct.pack("!H", 1002)
        self.peer_code = code
        self._peer_closed = True
        transport = self.transport
        if not self._close_sent:
            self._close_sent = True
            if transport is not None:
                transport.write(_frame(0x8, bytes(reply)))
            self._push(Frame(Kind.CLOSE))
        if transport is not None:
            transport.close()  # the server ends TCP first (RFC 6455 7.1.1); flushes what is queued

    def _fail(self, error: tuple[int, str]) -> None:
        """The peer broke the protocol: close with ``error`` and stop reading."""
        code, reason = error
        self._buf = b""
        self._frag = None
        transport = self.transport
        if transport is None:
            return
        if not self._close_sent:
            self._close_sent = True
            transport.write(_frame(0x8, _close_payload(code, reason)))
        self.peer_code = None
        self._push(_CLOSED)
        transport.close()

    def _push(self, frame: Frame) -> None:
        frames = self._frames
        if frames is None:
            frames = self._frames = deque()
        elif frames and frames[-1].kind >= Kind.CLOSING:
            return  # nothing after the end
        frames.append(frame)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if len(frames) >= _PAUSE_FRAMES and not self._paused_read and self.transport is not None:
            self._paused_read = True
            self.transport.pause_reading()

    def ready(self) -> Frame | None:
        """What ``receive`` would return at once, or None if it would wait (the hot path: a
        frame already read costs no coroutine)."""
        if self._frames:
            return self._next()
        return _CLOSED if self.transport is None else None

    async def receive(self) -> Frame:
        """The next message, or CLOSE/CLOSING/CLOSED (for ever after)."""
        if not self._frames:
            if self.transport is None:
                return _CLOSED
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
            assert self._frames
        return self._next()

    def _next(self) -> Frame:
        frames = self._frames
        assert frames
        frame = frames[0]
        if frame.kind < Kind.CLOSING:
            frames.popleft()
            if not frames:
                self._frames = None  # an idle socket keeps no deque
            if self._paused_read and len(frames) <= _RESUME_FRAMES and self.transport is not None:
                self._paused_read = False
                self.transport.resume_reading()
        return frame

    # -- frames out ------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Our close frame went out (or the peer's came in), or the connection is gone."""
        return self._close_sent or self.transport is None

    def write(self, frame: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(frame)

    async def send_str(self, text: str) -> None:
        if self.closed:
            raise ConnectionResetError("the WebSocket is closing")
        self.write(text_frame(text.encode()))

    async def drain(self) -> None:
        """Wait while the transport is over its high-water mark; ConnectionResetError once the
        connection is going."""
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the connection is gone")
        if not self._paused_write:
            return
        waiter = self._drain_waiter
        if waiter is None or waiter.done():
            waiter = self._drain_waiter = self._loop.create_future()
        await asyncio.shield(waiter)  # one waiter for all: cancelling one writer spares others
        if self.transport is None:
            raise ConnectionResetError("the connection is gone")

    async def close(self, code: int, reason: str, *, linger: float) -> bool:
        """Send our close frame (unless one went already), wake the reader (CLOSING), wait up
        to ``linger`` seconds for the peer's close frame and the connection's end. False if the
        close frame had gone out before."""
        if self._close_sent:
            return False
        self._close_sent = True
        self._frag = None
        transport = self.transport
        if transport is None:
            return False
        transport.write(_frame(0x8, _close_payload(code, reason)))
        self._push(_CLOSING)
        if self.transport is not None:
            gone = self._gone = self._loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(gone), linger)
            except TimeoutError:
                pass
        return True

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- heartbeat -------------------------------------------------------------------------------

    def _beat(self) -> None:
        """Every ``heartbeat`` seconds: a frame came since the last look, or ping; a ping with
        no frame (a pong is one) by the next look, half a period later, drops the connection."""
        self._timer = None
        transport, period = self.transport, self._heartbeat
        if transport is None or period is None or self._close_sent:
            return
        if self._seen:
            self._seen = self._pinged = False
            self._timer = self._loop.call_later(period, self._beat)
        elif not self._pinged:
            self._pinged = True
            transport.write(_frame(0x9, b""))
            self._timer = self._loop.call_later(period / 2, self._beat)
        else:
            self._push(_CLOSED)
            transport.abort()
