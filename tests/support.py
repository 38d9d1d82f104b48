"""Test support: the real server in a subprocess on a real socket, and HTTP helpers."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``python -m server serve`` with its own data dir, on a free loopback port."""

    def __init__(
        self, tmp: Path, cert: Path, key: Path, extra_env: Mapping[str, str] | None = None
    ):
        self.tmp = tmp
        self.data_dir = tmp / "data"
        self.port = free_port()
        self.log_path = tmp / "server.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("RUANG_")},
            "RUANG_HOST": "127.0.0.1",
            "RUANG_PORT": str(self.port),
            "RUANG_DATA_DIR": str(self.data_dir),
            "RUANG_CERT_DIR": str(tmp / "certs"),
            "RUANG_TLS_CERT": str(cert),
            "RUANG_TLS_KEY": str(key),
            "RUANG_LOG_LEVEL": "DEBUG",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self.cafile = cert
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = None

    @property
    def origin(self) -> str:
        scheme = "http" if self.env.get("RUANG_PLAIN_HTTP") else "https"
        return f"{scheme}://localhost:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cafile))

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "server", *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )

    def add_counselor(self, email: str, password: str = PASSWORD) -> None:
        result = self.cli("counselor", "add", email, "--password-stdin", stdin=password + "\n")
        assert result.returncode == 0, result.stderr

    async def start(self, timeout: float = 20.0) -> None:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve"],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    await self.stop()
                    raise RuntimeError(f"server exited early:\n{self.log()}")
                try:
                    async with http.get(
                        self.origin + "/healthz", ssl=self.ssl_context()
                    ) as response:
                        if response.status == 200:
                            return
                except (aiohttp.ClientError, OSError):  # not listening, or no certificate yet
                    pass
                await asyncio.sleep(0.1)
        await self.stop()
        raise RuntimeError(f"server did not become healthy:\n{self.log()}")

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        code = 0
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                code = await asyncio.to_thread(self.proc.wait, 15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = await asyncio.to_thread(self.proc.wait, 5)
        if self._log:
            self._log.close()
            self._log = None
        return code

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def client(self, **kwargs: object) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(ssl=self.ssl_context())
        return aiohttp.ClientSession(
            base_url=self.origin, connector=connector, cookie_jar=aiohttp.CookieJar(), **kwargs
        )


CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


async def csrf_from(http: aiohttp.ClientSession, path: str = "/login") -> str:
    async with http.get(path) as response:
        text = await response.text()
    match = CSRF_RE.search(text)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


async def login(
    http: aiohttp.ClientSession, email: str, password: str = PASSWORD
) -> aiohttp.ClientResponse:
    token = await csrf_from(http, "/login")
    response = await http.post(
        "/login",
        data={"email": email, "password": password, "csrf": token, "next": "/"},
        allow_redirects=False,
    )
    await response.read()
    return response


async def api_token(http: aiohttp.ClientSession) -> str:
    """The CSRF token of the logged-in session (the dashboard carries it)."""
    async with http.get("/") as response:
        text = await response.text()
    match = re.search(r'data-csrf="([^"]+)"', text)
    assert match, "no CSRF token on the dashboard"
    return match.group(1)
