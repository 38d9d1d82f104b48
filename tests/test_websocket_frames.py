"""RFC 6455 at the frame level, against the real server over TLS: /ws speaks WebSocket itself
(``server.websocket``), so what a client library would hide is tested here byte by byte: the
handshake, fragmentation, control frames between fragments, frames split across reads, the
closing handshake, and every frame a client must not send (each refused with a precise close
code, while another room's call carries on)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import struct
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from signaling.errors import CloseCode
from tests.support import ServerProcess, api_token, login
from tests.test_ws import EPOCH, Room, Session, new_room

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
EMAIL = "frames@example.org"
TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True, rsv: int = 0
) -> bytes:
    """One client frame (masked unless told otherwise), any length."""
    b0 = (0x80 if fin else 0) | rsv << 4 | opcode
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head = struct.pack("!BB", b0, mask_bit | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", b0, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mask_bit | 127, n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + body


class Raw:
    """A WebSocket client that writes and reads raw frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(
        cls,
        server: ServerProcess,
        *,
        key: str | None = None,
        version: str = "13",
        behind: bytes = b"",
        cookie: str = "",
    ) -> tuple[Raw, int, dict[str, str]]:
        """Open /ws; ``behind`` goes out in the same write as the upgrade request."""
        reader, writer = await asyncio.open_connection(
            "localhost", server.port, ssl=server.ssl_context()
        )
        key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /ws HTTP/1.1\r\nHost: localhost:{server.port}\r\nUpgrade: websocket\r\n"
            f"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: {version}\r\nOrigin: {server.origin}\r\n"
            + (f"Cookie: {cookie}\r\n" if cookie else "")
            + "\r\n"
        )
        writer.write(request.encode() + behind)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        return cls(reader, writer), status, headers

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_text(self, text: str) -> None:
        await self.send(frame(TEXT, text.encode()))

    async def read_frame(self, timeout: float = 10.0) -> tuple[bool, int, bytes]:
        """One server frame: (fin, opcode, payload); servers never mask."""
        async with asyncio.timeout(timeout):
            b0, b1 = await self.reader.readexactly(2)
            assert not b1 & 0x80, "a server frame must not be masked"
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            return bool(b0 & 0x80), b0 & 0x0F, await self.reader.readexactly(n)

    async def read_json(self) -> dict[str, Any]:
        while True:
            fin, opcode, payload = await self.read_frame()
            assert fin and opcode == TEXT, (opcode, payload)
            msg: dict[str, Any] = json.loads(payload)
            if msg["type"] != "token":
                return msg

    async def read_close(self, *, reply: bool = False) -> tuple[int, str]:
        """Skip text frames to the server's close frame; with ``reply``, answer it (the closing
        handshake a server waits for after a message-level refusal; after a broken frame it
        does not wait); then the server ends TCP."""
        while True:
            _fin, opcode, payload = await self.read_frame()
            if opcode == CLOSE:
                break
            assert opcode == TEXT, (opcode, payload)
        code = struct.unpack("!H", payload[:2])[0]
        if reply:
            await self.send(frame(CLOSE, payload[:2]))
        assert await asyncio.wait_for(self.reader.read(), 10) == b"", "then the connection ends"
        return code, payload[2:].decode()

    def close(self) -> None:
        self.writer.close()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, dev_cert: tuple[Path, Path]
) -> Iterator[ServerProcess]:
    """One server for this module (frame rules need no fresh state), with one counselor."""
    proc = ServerProcess(tmp_path_factory.mktemp("frames"), *dev_cert)
    proc.add_counselor(EMAIL)
    asyncio.run(proc.start())
    try:
        yield proc
    finally:
        asyncio.run(proc.stop())


@asynccontextmanager
async def counselor(server: ServerProcess) -> AsyncIterator[Room]:
    """The module's counselor, logged in, with a new room."""
    async with server.client() as http:
        await login(http, EMAIL)
        h = {"X-CSRF-Token": await api_token(http)}
        async with http.post("/api/rooms", json={"label": "F."}, headers=h) as r:
            assert r.status == 201
            room_id = (await r.json())["id"]
        yield Room(server, http, room_id)


def join_text(room: str) -> str:
    return json.dumps({"type": "join", "v": 1, "room": room, "role": "client"})


async def test_the_handshake_answers_rfc6455(server: ServerProcess) -> None:
    key = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's own example
    raw, status, headers = await Raw.connect(server, key=key)
    try:
        assert status == 101
        assert headers["upgrade"].lower() == "websocket"
        assert headers["connection"].lower() == "upgrade"
        assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        assert (
            headers["sec-websocket-accept"]
            == base64.b64encode(
                hashlib.sha1(key.encode() + GUID).digest()  # noqa: S324 - the protocol's own hash
            ).decode()
        )
        assert "sec-websocket-extensions" not in headers, "no compression"
    finally:
        raw.close()
    for kwargs in ({"version": "8"}, {"key": "short"}, {"key": "not base64 at all!!"}):
        raw, status, _ = await Raw.connect(server, **kwargs)  # type: ignore[arg-type]
        raw.close()
        assert status == 426, kwargs


async def test_fragments_with_a_ping_between_them_make_one_join(server: ServerProcess) -> None:
    async with counselor(server) as room:
        raw, status, _ = await Raw.connect(server)
        try:
            assert status == 101
            text = join_text(room.id).encode()
            parts = [text[:5], text[5:20], text[20:]]
            await raw.send(frame(TEXT, parts[0], fin=False))
            await raw.send(frame(PING, b"are you there"))  # control frames may come between
            await raw.send(frame(CONT, parts[1], fin=False))
            await raw.send(frame(CONT, parts[2]))
            assert await raw.read_frame() == (True, PONG, b"are you there")
            joined = await raw.read_json()
            assert joined["type"] == "joined" and joined["state"] == "waiting"
            await raw.send(frame(PONG, b"unsolicited"))  # ignored, as RFC 6455 allows
            await raw.send_text('{"type": "ping"}')
            assert await raw.read_json() == {"type": "pong"}
        finally:
            raw.close()


async def test_frames_split_across_reads_and_packed_into_one(server: ServerProcess) -> None:
    async with counselor(server) as room:
        raw, _, _ = await Raw.connect(server)
        try:
            join = frame(TEXT, join_text(room.id).encode())
            for i in range(len(join)):  # one byte per write: every header boundary split
                await raw.send(join[i : i + 1])
                await asyncio.sleep(0.002)
            assert (await raw.read_json())["type"] == "joined"
            # Three frames in one write, one of them 16-bit-length and one 64-bit-length.
            pings = [
                frame(PING, b"a"),
                frame(TEXT, b'{"type": "ping"' + b" " * 200 + b"}"),
                frame(TEXT, b'{"type": "ping"' + b" " * 60_000 + b"}"),
            ]
            await raw.send(b"".join(pings))
            assert await raw.read_frame() == (True, PONG, b"a")
            assert await raw.read_json() == {"type": "pong"}
            assert await raw.read_json() == {"type": "pong"}
        finally:
            raw.close()


async def test_bytes_right_behind_the_upgrade_request_are_read(server: ServerProcess) -> None:
    async with counselor(server) as room:
        raw, status, _ = await Raw.connect(server, behind=frame(TEXT, join_text(room.id).encode()))
        try:
            assert status == 101
            assert (await raw.read_json())["type"] == "joined"
        finally:
            raw.close()


async def test_the_closing_handshake(server: ServerProcess) -> None:
    async with counselor(server) as room:
        raw, _, _ = await Raw.connect(server)
        try:
            await raw.send_text(join_text(room.id))
            assert (await raw.read_json())["type"] == "joined"
            await raw.send(frame(CLOSE, struct.pack("!H", 1000) + b"bye"))
            assert await raw.read_close() == (1000, ""), "the code echoed, then TCP ends"
        finally:
            raw.close()
        for sent, echoed in ((4321, 4321), (1005, 1002), (1006, 1002), (999, 1002), (5000, 1002)):
            raw, _, _ = await Raw.connect(server)
            try:
                await raw.send(frame(CLOSE, struct.pack("!H", sent)))
                assert await raw.read_close() == (echoed, ""), sent
            finally:
                raw.close()
        raw, _, _ = await Raw.connect(server)
        try:  # no code at all: a close frame with no code back
            await raw.send(frame(CLOSE, b""))
            _fin, opcode, payload = await raw.read_frame()
            assert (opcode, payload) == (CLOSE, b"")
        finally:
            raw.close()


BAD_FRAMES: list[tuple[str, bytes, int]] = [  # (what, bytes, close code)
    ("unmasked", frame(TEXT, b'{"type": "ping"}', masked=False), CloseCode.PROTOCOL_ERROR),
    ("reserved bit", frame(TEXT, b'{"type": "ping"}', rsv=4), CloseCode.PROTOCOL_ERROR),
    ("unknown opcode", frame(0x3, b"x"), CloseCode.PROTOCOL_ERROR),
    ("control frame over 125 bytes", frame(PING, b"p" * 126), CloseCode.PROTOCOL_ERROR),
    ("fragmented control frame", frame(PING, b"p", fin=False), CloseCode.PROTOCOL_ERROR),
    ("continuation of nothing", frame(CONT, b"x"), CloseCode.PROTOCOL_ERROR),
    (
        "a new message inside a fragmented one",
        frame(TEXT, b'{"ty', fin=False) + frame(TEXT, b'pe": "ping"}'),
        CloseCode.PROTOCOL_ERROR,
    ),
    ("bad UTF-8", frame(TEXT, b'{"type": "\xff"}'), CloseCode.PROTOCOL_ERROR),
    (
        "bad UTF-8 across fragments",
        frame(TEXT, b'{"type": "\xe2\x82', fin=False) + frame(CONT, b'"}'),
        CloseCode.PROTOCOL_ERROR,
    ),
    (
        "fragments adding up to more than the frame cap",
        b"".join(frame(TEXT if i == 0 else CONT, b" " * 30_000, fin=i == 2) for i in range(3)),
        CloseCode.FRAME_TOO_BIG,
    ),
]


async def test_a_binary_message_is_refused_with_a_closing_handshake(
    server: ServerProcess,
) -> None:
    """A well-formed binary message breaks no frame rule: the refusal is the protocol's (text
    frames only), so the server closes cleanly and waits for the client's close frame."""
    async with counselor(server) as room:
        raw, _, _ = await Raw.connect(server)
        try:
            await raw.send_text(join_text(room.id))
            assert (await raw.read_json())["type"] == "joined"
            await raw.send(frame(BINARY, b"\x00\x01"))
            assert await raw.read_close(reply=True) == (
                CloseCode.PROTOCOL_ERROR,
                "text frames only",
            )
        finally:
            raw.close()


@pytest.mark.parametrize(("what", "data", "code"), BAD_FRAMES, ids=[b[0] for b in BAD_FRAMES])
async def test_a_frame_a_client_must_not_send_closes_only_its_socket(
    server: ServerProcess, what: str, data: bytes, code: int
) -> None:
    async with counselor(server) as room, server.client() as anon:
        good = await Session().open(room, anon)
        raw, _, _ = await Raw.connect(server)
        try:
            await raw.send_text(join_text(await new_room(room)))  # waiting in another room
            assert (await raw.read_json())["type"] == "joined"
            await raw.send(data)
            assert (await raw.read_close())[0] == code, what
        finally:
            raw.close()
        await good.exchange(2)  # the call in the same room never noticed


async def test_an_oversized_frame_is_refused_from_its_header(server: ServerProcess) -> None:
    """The server answers a frame announcing 1 GiB before any of its payload arrives."""
    raw, _, _ = await Raw.connect(server)
    try:
        await raw.send(struct.pack("!BBQ", 0x81, 0x80 | 127, 1 << 30) + os.urandom(4))
        assert (await raw.read_close())[0] == CloseCode.FRAME_TOO_BIG
    finally:
        raw.close()


async def test_a_reply_to_a_relay_arrives_intact_over_raw_frames(server: ServerProcess) -> None:
    """Relays between a raw socket and a library client: the server's own frames (7-bit,
    16-bit and 64-bit lengths) parse as RFC 6455 says."""
    async with counselor(server) as room, server.client() as anon:
        good = await Session().open(room, anon)
        raw, _, _ = await Raw.connect(server)
        try:
            await raw.send_text(join_text(room.id))
            joined = await raw.read_json()
            for size in (10, 200, 60_000):
                box = "B" * size
                await good.c.send_json(
                    {"type": "relay", "to": joined["id"], "epoch": EPOCH, "box": box}
                )
                assert await raw.read_json() == {
                    "type": "relay",
                    "from": "counselor",
                    "epoch": EPOCH,
                    "box": box,
                }
        finally:
            raw.close()
