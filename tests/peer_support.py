"""Test support for the Python peer: ``ruang join`` as a subprocess, and a WebSocket proxy that
sits between peers and the real server, records every frame, and can inject, alter or cut.

The proxy is TLS with the development certificate (so the counselor's ``__Host-`` cookie works
through it), forwards plain HTTP too (the counselor logs in through it), and rewrites the
Origin to the server's own, as a reverse proxy in front of the server would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from server.tls import ssl_context
from tests.support import PASSWORD, ROOT, ServerProcess, free_port

needs_netns = pytest.mark.skipif(
    not os.environ.get("RUANG_TEST_NETNS"),
    reason="needs the test network namespace; run via make test / scripts/run-tests.sh",
)

Event = dict[str, Any]


class PeerProcess:
    """``python -m server join LINK ...``; stdout parsed as JSON-line events as they come."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], tmp: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.stderr_path = tmp / f"{name}.stderr"
        self.events: list[Event] = []
        self.raw_stdout: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self, stdin: str | None = None) -> None:
        self._stderr = open(self.stderr_path, "wb")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server",
            "join",
            *self.args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._stderr,
            env=self.env,
            cwd=ROOT,
        )
        if stdin is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(stdin.encode())
            await self.proc.stdin.drain()
            self.proc.stdin.close()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            text = line.decode()
            self.raw_stdout.append(text)
            self.events.append(json.loads(text))  # stdout holds only JSON lines
            self._changed.set()
        self._changed.set()

    def named(self, event: str) -> list[Event]:
        return [e for e in self.events if e["event"] == event]

    def frames(self, kind: str) -> int:
        counts = [e["frames"] for e in self.named("media") if e["kind"] == kind]
        return max(counts, default=0)

    async def wait_for(
        self, predicate: Callable[[Event], bool], timeout: float = 20.0, after: int = 0
    ) -> Event:
        """The first event (from index ``after``) matching ``predicate``; fails after
        ``timeout`` seconds or when the process ends without one."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events[after:]:
                if predicate(event):
                    return event
            if self._reader is not None and self._reader.done():
                raise AssertionError(f"{self.name} ended without it:\n{self.describe()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.name}: timed out waiting:\n{self.describe()}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"{self.name} did not exit:\n{self.describe()}") from None
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5)
        return code

    async def wait_log(self, text: str, timeout: float = 20.0) -> None:
        """Until ``text`` appears in the process's stderr (bounded)."""
        deadline = time.monotonic() + timeout
        while text not in self.stderr():
            if time.monotonic() >= deadline or (self.proc and self.proc.returncode is not None):
                raise AssertionError(f"{self.name}: no {text!r} in the log:\n{self.describe()}")
            await asyncio.sleep(0.05)

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def describe(self) -> str:
        return "stdout:\n" + "".join(self.raw_stdout) + "stderr (tail):\n" + self.stderr()[-4000:]

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if getattr(self, "_stderr", None) is not None:
            self._stderr.close()


def peer_env(server: ServerProcess) -> dict[str, str]:
    """The environment of a peer: trusts the development certificate through SSL_CERT_FILE."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUANG_")}
    env.update(SSL_CERT_FILE=str(server.cafile), PYTHONUNBUFFERED="1", RUANG_LOG_LEVEL="DEBUG")
    return env


def make_room(server: ServerProcess, email: str) -> str:
    result = server.cli("room", "add", email, "--origin", server.origin)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def counselor_peer(
    server: ServerProcess, link: str, email: str, tmp: Path, *extra: str
) -> tuple[PeerProcess, str]:
    args = [link, "--counselor", "--email", email, "--password-stdin", *extra]
    return PeerProcess("counselor", args, peer_env(server), tmp), PASSWORD + "\n"


def client_peer(server: ServerProcess, link: str, tmp: Path, *extra: str) -> PeerProcess:
    return PeerProcess("client", [link, *extra], peer_env(server), tmp)


# --- the proxy ----------------------------------------------------------------------------------

Hook = Callable[["ProxyConn", str], Awaitable[list[str]]]


class ProxyConn:
    """One proxied WebSocket: the peer side, the server side, what it learnt."""

    def __init__(self, index: int, request: web.Request, peer_ws: web.WebSocketResponse) -> None:
        self.index = index
        self.request = request
        self.peer_ws = peer_ws
        self.server_ws: aiohttp.ClientWebSocketResponse | None = None
        self.participant_id: str | None = None
        self.join: dict[str, Any] | None = None
        self.joined: dict[str, Any] | None = None

    async def inject_to_peer(self, text: str) -> None:
        await self.peer_ws.send_str(text)


class RelayProxy:
    """Records every frame between peers and the server (``frames``: (direction, conn, text),
    direction ``up`` = peer to server, ``down`` = server to peer)."""

    def __init__(self, server: ServerProcess, cert: Path, key: Path) -> None:
        self.upstream = server.origin
        self.port = free_port()
        self._server_ssl = ssl_context(cert, key)
        self._client_ssl = ssl.create_default_context(cafile=str(cert))
        self.frames: list[tuple[str, int, str]] = []
        self.conns: list[ProxyConn] = []
        self.on_down: Hook | None = None
        self.on_up: Hook | None = None
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._pumps: set[asyncio.Task[None]] = set()

    @property
    def origin(self) -> str:
        return f"https://localhost:{self.port}"

    def link_for(self, link: str) -> str:
        """The same room link, through this proxy."""
        return self.origin + link[len(self.upstream) :]

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._client_ssl),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        app = web.Application()
        app.router.add_get("/ws", self._ws)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self._server_ssl)
        await site.start()

    async def stop(self) -> None:
        for task in list(self._pumps):
            task.cancel()
        for task in list(self._pumps):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._http is not None
        keep = (
            "cookie",
            "content-type",
            "accept",
            "accept-language",
            "x-csrf-token",
            "authorization",  # a client's resume token (POST /api/turn)
        )
        headers = {k: v for k, v in request.headers.items() if k.lower() in keep}
        body = await request.read()
        async with self._http.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as upstream:
            data = await upstream.read()
            response = web.Response(status=upstream.status, body=data)
            for name in ("Content-Type", "Location", "Retry-After"):
                if name in upstream.headers:
                    response.headers[name] = upstream.headers[name]
            for cookie in upstream.headers.getall("Set-Cookie", []):
                response.headers.add("Set-Cookie", cookie)
            return response

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        assert self._http is not None
        peer_ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await peer_ws.prepare(request)
        conn = ProxyConn(len(self.conns), request, peer_ws)
        self.conns.append(conn)
        headers = {"Cookie": request.headers["Cookie"]} if "Cookie" in request.headers else {}
        conn.server_ws = await self._http.ws_connect(
            self.upstream.replace("https://", "wss://") + "/ws",
            origin=self.upstream,
            headers=headers,
            max_msg_size=1 << 20,
            autoclose=False,
        )
        up = asyncio.create_task(self._pump_up(conn))
        down = asyncio.create_task(self._pump_down(conn))
        self._pumps.update((up, down))
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        for task in (up, down):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            self._pumps.discard(task)
        return peer_ws

    async def _pump_up(self, conn: ProxyConn) -> None:
        assert conn.server_ws is not None
        async for msg in conn.peer_ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            self.frames.append(("up", conn.index, msg.data))
            if conn.join is None:
                conn.join = json.loads(msg.data)
            texts = [msg.data] if self.on_up is None else await self.on_up(conn, msg.data)
            for text in texts:
                await conn.server_ws.send_str(text)
        code = conn.peer_ws.close_code or 1000
        await conn.server_ws.close(code=code if code < 1004 or code >= 3000 else 1000)

    async def _pump_down(self, conn: ProxyConn) -> None:
        assert conn.server_ws is not None
        code = 1006
        while True:
            msg = await conn.server_ws.receive()
            if msg.type is aiohttp.WSMsgType.CLOSE:
                code = int(msg.data)
                break
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            self.frames.append(("down", conn.index, msg.data))
            if conn.joined is None:
                conn.joined = json.loads(msg.data)
                conn.participant_id = conn.joined.get("id")
            texts = [msg.data] if self.on_down is None else await self.on_down(conn, msg.data)
            for text in texts:
                await conn.peer_ws.send_str(text)
        await conn.peer_ws.close(code=code)

    async def cut(self, conn: ProxyConn) -> None:
        """A network drop: the peer's TCP connection vanishes without a closing handshake;
        the server sees its socket go away (no ``leave``), so the slot is kept."""
        transport = conn.request.transport
        assert transport is not None
        transport.abort()
        if conn.server_ws is not None:
            await conn.server_ws.close(code=1001)

    def texts(self) -> list[str]:
        return [text for _, _, text in self.frames]
