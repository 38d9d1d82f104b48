"""/ws on the real server (a subprocess on a real TLS socket): origins, authorisation, bad input,
limits, resume and takeover, each with the answer docs/protocol.md documents."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import WSMsgType

from signaling.errors import CloseCode
from tests.support import ServerProcess, api_token, login

Json = dict[str, Any]
EPOCH = "E" * 22


class Room:
    def __init__(self, server: ServerProcess, http: aiohttp.ClientSession, room_id: str) -> None:
        self.server = server
        self.http = http  # logged in as the room's counselor
        self.id = room_id


@asynccontextmanager
async def counselor(server: ServerProcess, email: str = "ana@example.org") -> AsyncIterator[Room]:
    """A logged-in counselor with one new room."""
    server.add_counselor(email)
    async with server.client() as http:
        await login(http, email)
        h = {"X-CSRF-Token": await api_token(http)}
        async with http.post("/api/rooms", json={"label": "R."}, headers=h) as r:
            assert r.status == 201
            room_id = (await r.json())["id"]
        yield Room(server, http, room_id)


async def new_room(room: Room) -> str:
    h = {"X-CSRF-Token": await api_token(room.http)}
    async with room.http.post("/api/rooms", json={"label": "S."}, headers=h) as r:
        return str((await r.json())["id"])


async def connect(
    http: aiohttp.ClientSession, server: ServerProcess, origin: str | None = ""
) -> aiohttp.ClientWebSocketResponse:
    headers = {} if origin is None else {"Origin": origin or server.origin}
    return await http.ws_connect("/ws", headers=headers, autoping=True)


async def recv(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> Json:
    msg = await ws.receive(timeout=timeout)
    assert msg.type is WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
    data: Json = json.loads(msg.data)
    return data


async def recv_until(ws: aiohttp.ClientWebSocketResponse, pred: Callable[[Json], bool]) -> Json:
    while True:
        m = await recv(ws)
        if pred(m):
            return m


def is_peer(m: Json) -> bool:
    return m["type"] == "peer"


def not_pushed(m: Json) -> bool:
    """Not a message the server pushes between anything else: token refreshes (every
    resume_seconds / 3) and call credentials (``call_servers``, at joining and admission)."""
    return m["type"] not in ("token", "call_servers")


async def closed(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10.0) -> tuple[int, str]:
    """Skip text frames until the close; return (code, reason)."""
    while True:
        msg = await ws.receive(timeout=timeout)
        if msg.type is WSMsgType.TEXT:
            continue
        assert msg.type is WSMsgType.CLOSE, (msg.type, msg.data)
        return int(msg.data), str(msg.extra)


async def join(
    ws: aiohttp.ClientWebSocketResponse, room: str, role: str, resume: str | None = None
) -> Json:
    msg: Json = {"type": "join", "v": 1, "room": room, "role": role}
    if resume:
        msg["resume"] = resume
    await ws.send_json(msg)
    joined = await recv(ws)
    assert joined["type"] == "joined", joined
    return joined


class Session:
    """A counselor and an admitted client in one room, with their sockets."""

    def __init__(self) -> None:
        self.stack: list[Any] = []

    async def open(self, room: Room, anon: aiohttp.ClientSession) -> Session:
        self.c = await connect(room.http, room.server)
        await join(self.c, room.id, "counselor")
        self.k = await connect(anon, room.server)
        self.kj = await join(self.k, room.id, "client")
        await recv_until(self.c, is_peer)  # the knock
        await self.c.send_json({"type": "admit", "id": self.kj["id"]})
        assert (await recv_until(self.k, not_pushed))["type"] == "admitted"
        # The call may begin: both get call credentials (no TURN here: none to hand out).
        assert await recv(self.k) == {"type": "call_servers", "iceServers": []}
        self.token = (await recv_until(self.k, lambda m: m["type"] == "token"))["resume"]
        assert (await recv_until(self.c, is_peer))["state"] == "admitted"
        assert await recv(self.c) == {"type": "call_servers", "iceServers": []}
        return self

    async def exchange(self, n: int = 1) -> None:
        """Envelopes both ways arrive stamped and intact."""
        for i in range(n):
            await self.k.send_json(
                {"type": "relay", "to": "counselor", "epoch": EPOCH, "box": f"K{i}"}
            )
            got = await recv_until(self.c, not_pushed)
            assert got == {"type": "relay", "from": self.kj["id"], "epoch": EPOCH, "box": f"K{i}"}
            await self.c.send_json(
                {"type": "relay", "to": self.kj["id"], "epoch": EPOCH, "box": f"C{i}"}
            )
            got = await recv_until(self.k, not_pushed)
            assert got == {"type": "relay", "from": "counselor", "epoch": EPOCH, "box": f"C{i}"}


async def test_plain_http_gets_426(server: ServerProcess) -> None:
    async with server.client() as http, http.get("/ws") as r:
        assert r.status == 426


async def test_origin_allowlist(server: ServerProcess) -> None:
    async with counselor(server) as room, server.client() as anon:
        for origin in (None, "https://evil.example", "null", f"http://localhost:{server.port}x"):
            ws = await connect(anon, server, origin)
            assert await closed(ws) == (CloseCode.BAD_ORIGIN, "origin not allowed")
        # The counselor's own cookie does not help a foreign page either.
        ws = await connect(room.http, server, "https://evil.example")
        assert (await closed(ws))[0] == CloseCode.BAD_ORIGIN
        ws = await connect(anon, server, server.origin.upper())  # case does not matter
        assert (await join(ws, room.id, "client"))["state"] == "waiting"


async def test_public_origin_setting(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server(RUANG_PUBLIC_ORIGIN="https://ruang.example.org")
    await server.start()
    try:
        async with counselor(server) as room, server.client() as anon:
            ws = await connect(anon, server)  # same-origin is no longer enough
            assert (await closed(ws))[0] == CloseCode.BAD_ORIGIN
            ws = await connect(anon, server, "https://ruang.example.org")
            assert (await join(ws, room.id, "client"))["state"] == "waiting"
    finally:
        await server.stop()


async def test_handshake_errors_are_fatal(server: ServerProcess) -> None:
    async with counselor(server) as room, server.client() as anon:
        cases: list[tuple[Any, int]] = [
            ("{nope", CloseCode.PROTOCOL_ERROR),
            ({"type": "ping"}, CloseCode.PROTOCOL_ERROR),
            ({"type": "join", "v": 1, "room": room.id}, CloseCode.PROTOCOL_ERROR),
            (
                {"type": "join", "v": 2, "room": room.id, "role": "client"},
                CloseCode.UNSUPPORTED_VERSION,
            ),
            (b"\x00binary", CloseCode.PROTOCOL_ERROR),
        ]
        for frame, code in cases:
            ws = await connect(anon, server)
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            elif isinstance(frame, str):
                await ws.send_str(frame)
            else:
                await ws.send_json(frame)
            assert (await closed(ws))[0] == code, frame


async def test_unknown_and_closed_rooms_get_identical_answers(server: ServerProcess) -> None:
    async with counselor(server) as room, server.client() as anon:
        closed_id = await new_room(room)
        h = {"X-CSRF-Token": await api_token(room.http)}
        async with room.http.post(f"/api/rooms/{closed_id}/close", headers=h) as r:
            assert r.status == 200
        unknown_id = "A" * 22
        answers = []
        for http in (anon, room.http):
            for room_id in (unknown_id, closed_id):
                for role in ("client", "counselor"):
                    ws = await connect(http, server)
                    await ws.send_json({"type": "join", "v": 1, "room": room_id, "role": role})
                    answers.append(await closed(ws))
        assert set(answers) == {(CloseCode.UNKNOWN_ROOM, "unknown_room")}


async def test_counselor_role_needs_the_rooms_counselor(server: ServerProcess) -> None:
    async with counselor(server) as room, server.client() as anon:
        ws = await connect(anon, server)
        await ws.send_json({"type": "join", "v": 1, "room": room.id, "role": "counselor"})
        assert await closed(ws) == (CloseCode.NOT_AUTHORISED, "not_authorised")
        # Another counselor's session: the same answer as a room that does not exist.
        async with counselor(server, "budi@example.org") as other:
            ws = await connect(other.http, server)
            await ws.send_json({"type": "join", "v": 1, "room": room.id, "role": "counselor"})
            assert (await closed(ws))[0] == CloseCode.UNKNOWN_ROOM
        # A client cannot act as the counselor.
        ws = await connect(anon, server)
        kj = await join(ws, room.id, "client")
        await ws.send_json({"type": "admit", "id": kj["id"]})
        assert await recv(ws) == {
            "type": "error",
            "code": "forbidden",
            "message": "only the room's counselor may do that",
            "ref": "admit",
        }


async def test_bad_frames_after_join_get_errors_and_other_rooms_carry_on(
    server: ServerProcess,
) -> None:
    async with counselor(server) as room, server.client() as anon:
        good = await Session().open(room, anon)
        other_room = await new_room(room)
        ws = await connect(anon, server)
        await join(ws, other_room, "client")
        for frame, code in (
            ("{nope", "bad_json"),
            ("[1]", "bad_json"),
            ('{"type": "shout"}', "unknown_type"),
            ('{"type": "relay", "to": "counselor", "epoch": "e"}', "missing_field"),
            (
                '{"type": "relay", "to": "counselor", "epoch": "e", "box": "A", "x": 1}',
                "extra_field",
            ),
            ('{"type": "admit", "id": 7}', "wrong_type"),
            (
                '{"type": "relay", "to": "counselor", "epoch": "e", "box": "not base64!"}',
                "bad_value",
            ),
            ('{"type": "admit", "id": "' + "a" * 99 + '"}', "too_long"),
            ('{"type": "join", "v": 1, "room": "r", "role": "client"}', "unexpected"),
            ('{"type": "relay", "to": "nobody", "epoch": "e", "box": "A"}', "unknown_peer"),
        ):
            await ws.send_str(frame)
            answer = await recv(ws)
            assert answer["type"] == "error" and answer["code"] == code, (frame, answer)
            assert "not base64!" not in answer["message"]
        await ws.send_json({"type": "ping"})
        assert await recv(ws) == {"type": "pong"}
        # Nothing leaked into the first room, which still works.
        await good.exchange(3)


async def test_oversized_frame_closes_only_that_socket(server: ServerProcess) -> None:
    async with counselor(server) as room, server.client() as anon:
        good = await Session().open(room, anon)
        ws = await connect(anon, server)
        await join(ws, await new_room(room), "client")
        big = json.dumps({"type": "relay", "to": "counselor", "epoch": "e", "box": "A" * 70_000})
        await ws.send_str(big)
        assert (await closed(ws))[0] == CloseCode.FRAME_TOO_BIG
        # Up to the cap is fine.
        await good.k.send_json(
            {"type": "relay", "to": "counselor", "epoch": EPOCH, "box": "B" * 60_000}
        )
        assert len((await recv(good.c))["box"]) == 60_000
        await good.exchange()


async def test_flood_and_connection_cap(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server(RUANG_WS_RATE="20", RUANG_WS_BURST="30", RUANG_WS_MAX_PER_IP="4")
    await server.start()
    try:
        async with counselor(server) as room, server.client() as anon:
            good = await Session().open(room, anon)  # two connections
            ws = await connect(anon, server)  # the third
            await join(ws, await new_room(room), "client")
            for _ in range(60):
                await ws.send_json({"type": "ping"})
            assert await closed(ws) == (CloseCode.RATE_LIMITED, "rate limited")
            await good.exchange(3)  # the other room's pair was never throttled
            held = [await connect(anon, server) for _ in range(2)]
            extra = await connect(anon, server)
            assert await closed(extra) == (CloseCode.TOO_MANY_CONNECTIONS, "too many connections")
            await held[0].close()
            await asyncio.sleep(0.2)
            again = await connect(anon, server)
            await join(again, await new_room(room), "client")
            await good.exchange()
    finally:
        await server.stop()


async def test_resume_within_the_window_without_knocking(server: ServerProcess) -> None:
    async with counselor(server) as room, server.client() as anon:
        s = await Session().open(room, anon)
        await s.k.close()  # the network drops (no leave)
        gone = await recv(s.c)
        assert gone == {
            "type": "peer",
            "id": s.kj["id"],
            "role": "client",
            "state": "admitted",
            "connected": False,
        }
        # What the counselor sends meanwhile is held for the client.
        await s.c.send_json({"type": "relay", "to": s.kj["id"], "epoch": EPOCH, "box": "HELD"})
        k2 = await connect(anon, server)
        j2 = await join(k2, room.id, "client", resume=s.token)
        assert j2["resumed"] is True and j2["id"] == s.kj["id"] and j2["state"] == "admitted"
        assert await recv(k2) == {"type": "call_servers", "iceServers": []}, (
            "an admitted client may call"
        )
        assert await recv(k2) == {
            "type": "relay",
            "from": "counselor",
            "epoch": EPOCH,
            "box": "HELD",
        }
        back = await recv(s.c)
        assert back["id"] == s.kj["id"] and back["connected"] is True
        s.k = k2
        await s.exchange()
        # The counselor ends the session: the client's socket closes, its token is dead.
        await s.c.send_json({"type": "end"})
        assert (await closed(k2))[0] == CloseCode.SESSION_ENDED
        k3 = await connect(anon, server)
        j3 = await join(k3, room.id, "client", resume=s.token)
        assert j3["resumed"] is False and j3["resume_error"] == "revoked"
        assert j3["state"] == "waiting" and j3["id"] != s.kj["id"]


async def test_slot_expires_after_the_window(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server(RUANG_RESUME_SECONDS="1")
    await server.start()
    try:
        async with counselor(server) as room, server.client() as anon:
            s = await Session().open(room, anon)
            await s.k.close()
            assert (await recv_until(s.c, is_peer))["connected"] is False
            expired = await recv_until(s.c, is_peer)
            assert expired["state"] == "gone" and expired["reason"] == "expired"
            k2 = await connect(anon, server)
            j2 = await join(k2, room.id, "client", resume=s.token)
            assert j2["resumed"] is False and j2["state"] == "waiting"
    finally:
        await server.stop()


async def test_newer_counselor_socket_takes_over(server: ServerProcess) -> None:
    async with counselor(server) as room, server.client() as anon:
        s = await Session().open(room, anon)
        c2 = await connect(room.http, server)
        j = await join(c2, room.id, "counselor")
        assert j["id"] == "counselor" and j["peers"] == [
            {"id": s.kj["id"], "role": "client", "state": "admitted", "connected": True}
        ]
        assert await closed(s.c) == (CloseCode.REPLACED, "replaced by a newer connection")
        assert await recv(s.k) == {
            "type": "peer",
            "id": "counselor",
            "role": "counselor",
            "state": "admitted",
            "connected": True,
        }
        s.c = c2
        await s.exchange()


async def test_decline_and_remove(server: ServerProcess) -> None:
    async with counselor(server) as room, server.client() as anon:
        c = await connect(room.http, server)
        await join(c, room.id, "counselor")
        k = await connect(anon, server)
        kj = await join(k, room.id, "client")
        await recv_until(c, is_peer)
        await c.send_json({"type": "decline", "id": kj["id"]})
        assert await closed(k) == (CloseCode.DECLINED, "declined")
        gone = await recv_until(c, lambda m: m["type"] == "peer")
        assert gone["state"] == "gone" and gone["reason"] == "declined"
        k = await connect(anon, server)
        kj = await join(k, room.id, "client")
        await recv_until(c, lambda m: m["type"] == "peer")
        await c.send_json({"type": "remove", "id": kj["id"]})
        assert (await recv_until(c, lambda m: m["type"] == "error"))["code"] == "bad_state"
        await c.send_json({"type": "admit", "id": kj["id"]})
        await c.send_json({"type": "remove", "id": kj["id"]})
        assert (await closed(k))[0] == CloseCode.REMOVED


class RawClient:
    """A WebSocket client on a bare socket (TLS or not) with a tiny receive buffer: it upgrades
    and reads by hand, so it reads nothing unless told to. (aiohttp's client keeps reading in the
    background, into its own buffers.) Blocking calls: use it from a thread."""

    def __init__(
        self,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        origin: str = "",
        rcvbuf: int = 4096,
    ) -> None:
        self.port = port
        self.origin = origin
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: small window
        sock.settimeout(10)
        try:
            sock.connect(("127.0.0.1", port))
            if tls is not None:  # keep an abrupt end visible: no suppress_ragged_eofs
                sock = tls.wrap_socket(
                    sock, server_hostname="localhost", suppress_ragged_eofs=False
                )
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    @classmethod
    def to(cls, server: ServerProcess) -> RawClient:
        return cls(server.port, tls=server.ssl_context(), origin=server.origin)

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "connection closed"
            data += chunk
        return data

    def upgrade(self) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        origin = f"Origin: {self.origin}\r\n" if self.origin else ""
        self.sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: localhost:{self.port}\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{origin}\r\n"
            ).encode()
        )
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += self._exact(1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def send_text(self, text: str) -> None:
        payload = text.encode()
        assert len(payload) < 126
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    def read_text(self) -> str:
        first, size = self._exact(2)
        assert first == 0x81, first  # one unfragmented text frame
        if size == 126:
            size = struct.unpack("!H", self._exact(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", self._exact(8))[0]
        return self._exact(size).decode()

    def join(self, room_id: str) -> Json:
        self.upgrade()
        self.send_text(json.dumps({"type": "join", "v": 1, "room": room_id, "role": "client"}))
        joined: Json = json.loads(self.read_text())
        assert joined["type"] == "joined", joined
        return joined

    def read_to_the_end(self, timeout: float) -> tuple[str, int]:
        """Read (at last) until the server's side is gone. Returns how it ended, "cut" (a reset,
        or TCP closed without TLS close_notify) or "closed" (EOF, after a TLS close_notify if
        TLS), and the number of bytes read."""
        self.sock.settimeout(timeout)
        n = 0
        try:
            while chunk := self.sock.recv(1 << 16):
                n += len(chunk)
        except (ConnectionResetError, ssl.SSLEOFError):
            return "cut", n
        return "closed", n

    def close(self) -> None:
        self.sock.close()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_a_client_that_does_not_read_is_dropped(
    make_server: Callable[..., ServerProcess],
) -> None:
    """~100 MB for a client that never reads: it is closed with 4012 (and its socket cut) within
    seconds, the server's memory stays put, and another room keeps talking meanwhile. The default
    send queue (256 frames) would hold ~15 MB of these frames: the byte bound trips first."""
    server = make_server(RUANG_WS_RATE="100000", RUANG_WS_BURST="100000")
    await server.start()
    assert server.proc is not None
    pid = server.proc.pid
    raw = None
    try:
        async with counselor(server) as room, server.client() as anon:
            other = await Session().open(Room(server, room.http, await new_room(room)), anon)
            c = await connect(room.http, server)
            await join(c, room.id, "counselor")
            raw = RawClient.to(server)
            rid = (await asyncio.to_thread(raw.join, room.id))["id"]
            assert (await recv_until(c, is_peer))["id"] == rid  # the knock

            seen: list[Json] = []  # the counselor reads everything, so only the raw client lags

            async def counselor_reads() -> None:
                while True:
                    msg = await c.receive()
                    if msg.type is not WSMsgType.TEXT:
                        return
                    seen.append(json.loads(msg.data))

            def dropped() -> bool:
                return any(
                    m["type"] == "peer" and m["id"] == rid and not m["connected"] for m in seen
                )

            lags: list[float] = []
            flooding = True

            async def other_room_talks() -> None:
                while flooding:
                    t = time.monotonic()
                    await other.exchange()
                    lags.append(time.monotonic() - t)
                    await asyncio.sleep(0.05)

            reader = asyncio.create_task(counselor_reads())
            talker = asyncio.create_task(other_room_talks())
            frame = json.dumps({"type": "relay", "to": rid, "epoch": EPOCH, "box": "Z" * 60_000})
            base = peak = rss_kib(pid)
            t0 = time.monotonic()
            dropped_after: float | None = None
            async with asyncio.timeout(120):
                for i in range(1700):  # ~100 MB
                    await c.send_str(frame)
                    if i % 25 == 0:
                        peak = max(peak, rss_kib(pid))
                        await asyncio.sleep(0)  # let the readers run
                    if dropped_after is None and dropped():
                        dropped_after = time.monotonic() - t0
                while not dropped():
                    await asyncio.sleep(0.05)
                if dropped_after is None:
                    dropped_after = time.monotonic() - t0
                while "ws closed code=4012" not in server.log():  # after the cut
                    await asyncio.sleep(0.05)
                closed_after = time.monotonic() - t0
                peak = max(peak, rss_kib(pid))
                flooding = False
                await talker
                await other.exchange(3)  # the other room was never held up, and still works
            # The server gave up on the client while the flood was still going...
            assert dropped_after < 20, dropped_after
            # ... and cut its socket at most CLOSE_TIMEOUT (5 s) later: a reset, not a flush.
            assert closed_after - dropped_after < 15, (dropped_after, closed_after)
            # Of the megabytes in flight only what sat in its tiny receive buffer ever arrives.
            end, got = await asyncio.to_thread(raw.read_to_the_end, 5.0)
            assert end == "cut" and got < 64 * 1024, (end, got)
            # Memory stayed put: the queue is bounded in bytes, the transport's buffer too.
            assert (peak - base) < 12 * 1024, f"RSS grew by {(peak - base) // 1024} MiB"
            assert len(lags) >= 3 and max(lags) < 5.0, lags
            await c.close()
            await reader
            log = server.log()
            assert log.count("ws closed code=4012") == 1, log
    finally:
        if raw is not None:
            raw.close()
        await server.stop()


async def test_shutdown_says_going_away(server: ServerProcess) -> None:
    async with counselor(server) as room, server.client() as anon:
        s = await Session().open(room, anon)
        waiting = await connect(anon, server)  # not even joined yet
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        for ws in (s.c, s.k, waiting):
            assert (await closed(ws))[0] == 1001


async def test_logs_carry_no_payload_ids_or_tokens(server: ServerProcess) -> None:
    async with counselor(server) as room, server.client() as anon:
        s = await Session().open(room, anon)
        secret = "U2VjcmV0TmFtZUJ1ZGk"
        await s.k.send_json({"type": "relay", "to": "counselor", "epoch": EPOCH, "box": secret})
        assert (await recv(s.c))["box"] == secret
        await s.k.send_str(
            '{"type": "relay", "to": "counselor", "epoch": "e", "box": "' + secret + '!"}'
        )
        await recv(s.k)
        await s.k.close()
        await s.c.close()
        for _ in range(50):
            if len(re.findall(r"ws closed code=\d+", server.log())) == 2:
                break
            await asyncio.sleep(0.1)
    log = server.log()
    assert len(re.findall(r"ws closed code=\d+", log)) == 2
    for needle in (secret, s.kj["id"], s.token, EPOCH):
        assert needle not in log
