"""Test support for several server processes: a real ``redis-server`` (Debian package) on a free
loopback port, restartable on the same port, and a cluster of Ruang processes sharing
``RUANG_SECRET_KEY``, ``RUANG_REDIS_URL`` and a database, behind nginx (tests/proxy_support.py).

    redis = RedisServer(tmp); await redis.start()   # --save '' --appendonly no: nothing on disk
    await redis.restart()                           # the same port, empty (as after a crash)
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import pytest

from tests.proxy_support import BEHIND_PROXY_ENV, NginxProxy
from tests.support import ServerProcess, free_port

REDIS = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
)
needs_redis = pytest.mark.skipif(
    REDIS is None, reason="needs redis-server (scripts/install-system-deps.sh installs it)"
)


class RedisServer:
    """``redis-server`` on 127.0.0.1 with no persistence, in ``tmp``; restartable."""

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log_path = self.dir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self, timeout: float = 10.0) -> None:
        assert REDIS is not None, "redis-server is not installed"
        self.proc = subprocess.Popen(
            [
                REDIS,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--logfile",
                str(self.log_path),
                "--protected-mode",
                "yes",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited:\n{self.log()}")
            if await self._ping():
                return
            await asyncio.sleep(0.05)
        await self.stop()
        raise RuntimeError(f"redis-server did not answer:\n{self.log()}")

    async def _ping(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 2)
            return line.startswith(b"+PONG")
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def stop(self, sig: int = signal.SIGKILL) -> None:
        """SIGKILL by default: a crash, nothing saved (there is nothing to save anyway)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            await asyncio.to_thread(self.proc.wait, 10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait, 5)

    async def restart(self, down_for: float = 0.0) -> None:
        await self.stop()
        if down_for:
            await asyncio.sleep(down_for)
        await self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


@contextlib.asynccontextmanager
async def running_redis(tmp: Path) -> AsyncIterator[RedisServer]:
    redis = RedisServer(tmp)
    await redis.start()
    try:
        yield redis
    finally:
        await redis.stop()


class Cluster:
    """N Ruang processes on one Redis and one database, behind nginx."""

    def __init__(
        self,
        tmp: Path,
        cert: Path,
        key: Path,
        redis: RedisServer,
        database_url: str,
        count: int = 2,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.tmp = tmp
        self.redis = redis
        self.secret = secrets.token_urlsafe(32)
        shared = {
            **BEHIND_PROXY_ENV,
            "RUANG_SECRET_KEY": self.secret,
            "RUANG_REDIS_URL": redis.url,
            "RUANG_DATABASE_URL": database_url,
            **(env or {}),
        }
        self.servers: list[ServerProcess] = []
        self.links: list[str] = []  # room links made for the test (the key after the #)
        for i in range(count):
            root = tmp / f"ruang{i + 1}"
            root.mkdir(exist_ok=True)
            self.servers.append(ServerProcess(root, cert, key, extra_env=shared))
        self.proxy = NginxProxy(tmp, [s.port for s in self.servers], cert, key)

    async def start(self) -> None:
        # One process first: it creates the schema; then the others at once.
        await self.servers[0].start()
        await asyncio.gather(*(s.start() for s in self.servers[1:]))
        await self.proxy.start()

    async def stop(self) -> None:
        await self.proxy.stop()
        for server in self.servers:
            await server.stop()

    def logs(self) -> str:
        return (
            "\n".join(f"--- {s.tmp.name} ---\n{s.log()[-3000:]}" for s in self.servers)
            + f"\n--- nginx ---\n{self.proxy.error_log()[-2000:]}"
        )

    async def metric(self, server: ServerProcess, name: str) -> float:
        """One value from a process's /metrics (loopback)."""
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.origin}/metrics") as response:
                text = await response.text()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"no {name} on /metrics")

    async def sockets(self, server: ServerProcess) -> int:
        """Signaling sockets open on one process (its hub's count)."""
        return int(await self.metric(server, "ruang_participants"))

    async def health(self, server: ServerProcess) -> tuple[int, dict[str, str]]:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.origin}/healthz") as response:
                return response.status, await response.json()
