"""SocketSink: the hub's view of one /ws socket (a bounded send queue drained by a writer task,
a fast path for small frames, the stall clock and the closing handshake) on a
``server.websocket.WebSocket``. ``server.ws`` is the handler around it.

Nothing here logs: a payload, a name or an id never passes through a log call.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import struct
import sys
import termios
from collections import deque
from typing import Any

from server.websocket import WebSocket, text_frame
from signaling.errors import CloseCode
from signaling.limits import SignalingStats

CLOSE_TIMEOUT = 5.0  # for the closing handshake before the transport is cut
SEND_STALL = 5.0  # the writer waits this long and the peer took nothing: too slow (4012)
WRITE_BUFFER_HIGH = 256 << 10  # the transport's high-water mark; the writer waits above it
LINGER_POLL = 0.02  # while a closed connection is still flushing
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() resets the connection
_OUTQ: int | None = getattr(termios, "TIOCOUTQ", None) if sys.platform == "linux" else None
_HEADER_MAX = 10  # bytes of a server-to-client WebSocket frame header (no mask)
DIRECT_MAX = 16 << 10  # frames up to this size may skip the queue (SocketSink._write_now)


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

    The writer is never cancelled while it waits for the transport to drain; cutting the
    transport is what releases a stuck writer.
    """

    __slots__ = (
        "_closer",
        "_limit",
        "_max_bytes",
        "_pending",
        "_pending_bytes",
        "_queue",
        "_queued",
        "_reason",
        "_stall",
        "_stats",
        "_wake",
        "_writer",
        "_ws",
        "close_code",
    )

    def __init__(
        self,
        ws: WebSocket,
        limit: int,
        max_bytes: int,
        stats: SignalingStats,
    ) -> None:
        self._ws = ws  # its .transport is None once the connection is gone
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
        self._stall: asyncio.TimerHandle | None = None
        self._closer: asyncio.Task[None] | None = None
        # Fast-path frames of this turn of the event loop after its first (which is written at
        # once), written together at its end: one send() for the rest of a burst to this peer.
        self._pending: list[bytes] | None = None
        self._pending_bytes = 0

    def _unsent(self) -> int:
        """Bytes the transport holds that the peer has not taken yet."""
        transport = self._ws.transport
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
        would not wait after it and no stall clock would run. The first such frame of a turn of
        the event loop goes to the transport at once, later ones at the end of the turn
        (``_flush``, together), without waking the writer task. False when it does not apply; the
        frame then goes through the queue (large frames always do, so a burst of them is bounded
        by ``max_bytes`` before anything is written)."""
        if len(text) > DIRECT_MAX:
            return False
        transport = self._ws.transport
        if transport is None or transport.is_closing() or self._ws.closed:
            return False
        data = text.encode()
        size = transport.get_write_buffer_size() + self._pending_bytes + len(data)
        if size > WRITE_BUFFER_HIGH - _HEADER_MAX:
            return False
        frame = text_frame(data)
        pending = self._pending
        if pending is None:
            # The first frame of this turn goes out at once (no extra turn of latency when the
            # loop is not busy); the others of the turn are written together at its end.
            self._pending = []
            asyncio.get_running_loop().call_soon(self._flush)
            transport.write(frame)
            return True
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
        if not pending:
            return
        transport = self._ws.transport
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
        transport = self._ws.transport
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
                    # wait after each frame, so a transport over its high-water mark always has
                    # a writer on the clock
                    await ws.drain()
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
        left = max(0.0, deadline - loop.time())
        if writer is None or writer.done() or too_slow:
            self._flush()  # what the writer passed to the fast path, before the close frame
            # For 4012 the close frame goes out behind the backlog without waiting for it
            # (drain=False); it also wakes the reader, so the hub lets the peer go at once.
            closing = asyncio.create_task(
                self._ws.close(code, self._reason, linger=0.0 if too_slow else left)
            )
            await asyncio.wait([closing], timeout=max(0.0, deadline - loop.time()))
        # A graceful TCP/TLS close may still be flushing; the protocol drops its transport
        # once the connection is gone.
        while self._ws.transport is not None and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(LINGER_POLL)
        if self._ws.transport is not None:
            self._cut()
        # Cutting released anything waiting on the transport; nothing here is left hanging.
        pending = [t for t in (self._writer, closing) if t is not None and not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=CLOSE_TIMEOUT)
        for task in pending:
            task.cancel()  # only if nothing let go after the cut (never seen)
        if closing is not None and closing.done() and not closing.cancelled():
            closing.exception()  # retrieved: a failed close is expected for a peer we cut

    def _cut(self) -> None:
        """Drop the connection now: no flushing, and an RST so the kernel frees its buffers."""
        transport = self._ws.transport
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
