"""The soak's load generator (tests/test_soak.py): many rooms, each with a counselor and an
admitted client on real WebSockets, relaying opaque envelopes both ways at a steady rate.

Every envelope's box is base64url of ``"<room>:<role>:<seq>:"`` plus padding, so the receiver
checks what the server must guarantee without the server being able to help: the envelope is
for this room (not misrouted), from the other side (``from`` and the payload agree), and the
next in that sender's sequence (nothing lost, duplicated or reordered).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import WSMsgType

from tests.support import ServerProcess, api_token, login

Json = dict[str, Any]
BOX_BYTES = 450  # base64url: 600 characters, a typical sealed SDP/candidate envelope
STEP_TIMEOUT = 20.0  # one join/admit step, seconds
CONNECT_AT_ONCE = 32  # concurrent WebSocket handshakes (TLS) while setting up


class SoakFailure(AssertionError):
    """The soak saw something the server must never do (named so the report says what)."""


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclass
class Side:
    """One socket of a room: what it sent and what it received from the other side."""

    room: int
    role: str  # "counselor" or "client"
    ws: aiohttp.ClientWebSocketResponse
    id: str = ""
    epoch: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    pad: bytes = field(default_factory=lambda: secrets.token_bytes(BOX_BYTES))
    sent: int = 0
    received: int = 0
    last_seq: int = 0
    lost: int = 0
    duplicated: int = 0
    misrouted: int = 0
    unexpected: list[str] = field(default_factory=list)
    close_code: int | None = None

    def box(self, seq: int) -> str:
        head = f"{self.room}:{self.role}:{seq}:".encode()
        return base64.urlsafe_b64encode(head + self.pad[len(head) :]).rstrip(b"=").decode()

    def check(self, msg: Json, peer: Side) -> None:
        """An envelope arrived at this side; ``peer`` is the only one who may have sent it."""
        box = msg["box"]
        raw = base64.urlsafe_b64decode(box + "=" * (-len(box) % 4))
        room, role, seq, _ = raw.split(b":", 3)
        if int(room) != self.room or role.decode() != peer.role or msg["from"] != peer.id:
            self.misrouted += 1
            return
        if msg["epoch"] != peer.epoch:
            self.misrouted += 1
            return
        n = int(seq)
        if n <= self.last_seq:
            self.duplicated += 1
            return
        self.lost += n - self.last_seq - 1  # a gap; a late arrival would count as duplicated
        self.last_seq = n
        self.received += 1


@dataclass
class Pair:
    room_id: str
    index: int
    counselor: Side
    client: Side

    def sides(self) -> tuple[Side, Side]:
        return self.counselor, self.client


async def recv(ws: aiohttp.ClientWebSocketResponse, timeout: float = STEP_TIMEOUT) -> Json:
    msg = await ws.receive(timeout=timeout)
    if msg.type is not WSMsgType.TEXT:
        raise SoakFailure(f"expected a text frame, got {msg.type} {msg.data!r}")
    data: Json = json.loads(msg.data)
    return data


async def recv_type(ws: aiohttp.ClientWebSocketResponse, kind: str) -> Json:
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline:
        m = await recv(ws, max(0.1, deadline - time.monotonic()))
        if m["type"] == kind:
            return m
        if m["type"] not in ("token", "peer", "call_servers"):
            raise SoakFailure(f"waiting for {kind}, got {m['type']}")
    raise SoakFailure(f"no {kind} within {STEP_TIMEOUT} s")


class Load:
    """Rooms, two HTTP sessions (the counselor's, logged in, and an anonymous one) and the
    sockets of the current round."""

    def __init__(self, server: ServerProcess, rooms: int) -> None:
        self.server = server
        self.n_rooms = rooms
        self.room_ids: list[str] = []
        self.pairs: list[Pair] = []
        self._sessions: list[aiohttp.ClientSession] = []

    def _session(self) -> aiohttp.ClientSession:
        # limit=0: the default connector allows 100 connections, and every socket holds one.
        connector = aiohttp.TCPConnector(ssl=self.server.ssl_context(), limit=0)
        session = aiohttp.ClientSession(
            base_url=self.server.origin, connector=connector, cookie_jar=aiohttp.CookieJar()
        )
        self._sessions.append(session)
        return session

    async def __aenter__(self) -> Load:
        self.counselor_http = self._session()
        self.client_http = self._session()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for pair in self.pairs:
            for side in pair.sides():
                await side.ws.close()
        for session in self._sessions:
            await session.close()

    async def create_rooms(self, email: str) -> None:
        self.server.add_counselor(email)
        http = self.counselor_http
        response = await login(http, email)
        assert response.status == 303, response.status
        headers = {"X-CSRF-Token": await api_token(http)}
        gate = asyncio.Semaphore(CONNECT_AT_ONCE)

        async def create(i: int) -> str:
            async with gate, http.post("/api/rooms", json={"label": f"S{i}"}, headers=headers) as r:
                assert r.status == 201, await r.text()
                return str((await r.json())["id"])

        self.room_ids = list(await asyncio.gather(*(create(i) for i in range(self.n_rooms))))

    async def _ws(self, http: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
        return await http.ws_connect(
            "/ws", headers={"Origin": self.server.origin}, autoping=True, heartbeat=None
        )

    async def _open_pair(self, index: int, gate: asyncio.Semaphore) -> Pair:
        room_id = self.room_ids[index]
        async with gate:
            c = Side(index, "counselor", await self._ws(self.counselor_http))
            await c.ws.send_json({"type": "join", "v": 1, "room": room_id, "role": "counselor"})
            joined = await recv_type(c.ws, "joined")
            c.id = joined["id"]
            k = Side(index, "client", await self._ws(self.client_http))
            await k.ws.send_json({"type": "join", "v": 1, "room": room_id, "role": "client"})
            joined = await recv_type(k.ws, "joined")
            if joined["state"] != "waiting":
                raise SoakFailure(f"a fresh client is {joined['state']}")
            k.id = joined["id"]
            knock = await recv_type(c.ws, "peer")
            if knock["id"] != k.id or knock["state"] != "waiting":
                raise SoakFailure(f"the knock names {knock}")
            await c.ws.send_json({"type": "admit", "id": k.id})
            await recv_type(k.ws, "admitted")
            seen = await recv_type(c.ws, "peer")
            if seen["state"] != "admitted":
                raise SoakFailure(f"after admit the counselor saw {seen}")
        return Pair(room_id, index, c, k)

    async def open_all(self) -> float:
        """Every room gets its counselor and an admitted client; returns the seconds it took."""
        start = time.monotonic()
        gate = asyncio.Semaphore(CONNECT_AT_ONCE)
        self.pairs = list(
            await asyncio.gather(*(self._open_pair(i, gate) for i in range(self.n_rooms)))
        )
        return time.monotonic() - start

    async def relay(self, seconds: float, rate: float) -> float:
        """Both sides of every room send ``rate`` envelopes/s for ``seconds``, then wait until
        everything sent has arrived (bounded); returns the seconds until the last arrival."""
        stop = asyncio.Event()
        readers = [
            asyncio.create_task(self._read(side, peer))
            for pair in self.pairs
            for side, peer in ((pair.counselor, pair.client), (pair.client, pair.counselor))
        ]
        start = time.monotonic()
        senders = [
            asyncio.create_task(self._send(side, peer, start, seconds, rate, stop))
            for pair in self.pairs
            for side, peer in ((pair.counselor, pair.client), (pair.client, pair.counselor))
        ]
        try:
            await asyncio.wait_for(asyncio.gather(*senders), seconds + 30)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not self.settled():
                await asyncio.sleep(0.1)
            return time.monotonic() - start
        finally:
            stop.set()
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

    def settled(self) -> bool:
        return all(
            side.last_seq + side.duplicated >= peer.sent
            for pair in self.pairs
            for side, peer in ((pair.counselor, pair.client), (pair.client, pair.counselor))
        )

    @staticmethod
    async def _send(
        side: Side, peer: Side, start: float, seconds: float, rate: float, stop: asyncio.Event
    ) -> None:
        interval = 1.0 / rate
        at = start + secrets.randbelow(1000) / 1000 * interval  # spread the senders out
        end = start + seconds
        while at < end and not stop.is_set():
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            seq = side.sent + 1
            await side.ws.send_str(
                json.dumps(
                    {"type": "relay", "to": peer.id, "epoch": side.epoch, "box": side.box(seq)}
                )
            )
            side.sent = seq
            at += interval

    @staticmethod
    async def _read(side: Side, peer: Side) -> None:
        while True:
            msg = await side.ws.receive()
            if msg.type is WSMsgType.TEXT:
                data = json.loads(msg.data)
                kind = data["type"]
                if kind == "relay":
                    side.check(data, peer)
                elif kind not in ("token", "call_servers"):
                    side.unexpected.append(str(data.get("code") or data.get("state") or kind))
            else:
                side.close_code = int(msg.data) if msg.type is WSMsgType.CLOSE else -1
                side.unexpected.append(f"closed {msg.type.name} {msg.data}")
                return

    async def close_all(self) -> None:
        """Both sides leave (no resume slot is kept) and their sockets close."""

        async def leave(side: Side) -> None:
            await side.ws.send_json({"type": "leave"})
            deadline = time.monotonic() + STEP_TIMEOUT
            while time.monotonic() < deadline:
                msg = await side.ws.receive(timeout=max(0.1, deadline - time.monotonic()))
                if msg.type is WSMsgType.CLOSE:
                    side.close_code = int(msg.data)  # what the server sent
                    break
                if msg.type is not WSMsgType.TEXT:
                    side.close_code = -1
                    break
            await side.ws.close()

        await asyncio.gather(*(leave(p.client) for p in self.pairs))
        await asyncio.gather(*(leave(p.counselor) for p in self.pairs))


METRIC_RE = re.compile(r"^(ruang_[a-z_]+) ([0-9.e+-]+)$", re.M)


async def metrics(server: ServerProcess) -> dict[str, float]:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.origin + "/metrics", ssl=server.ssl_context()) as r:
            assert r.status == 200
            text = await r.text()
    return {name: float(value) for name, value in METRIC_RE.findall(text)}


async def wait_idle(server: ServerProcess, timeout: float = 15.0) -> dict[str, float]:
    """Poll /metrics until no room, participant or socket is left; return the last reading."""
    deadline = time.monotonic() + timeout
    while True:
        m = await metrics(server)
        idle = (
            m.get("ruang_rooms_active") == 0
            and m.get("ruang_participants") == 0
            and m.get("ruang_ws_connections_open") == 0
        )
        if idle or time.monotonic() > deadline:
            return m
        await asyncio.sleep(0.2)
