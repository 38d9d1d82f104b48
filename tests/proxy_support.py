"""Test support: a real nginx (Debian ``nginx-light``) on loopback in front of Ruang processes.

The server block is ``deploy/nginx/ruang.conf`` itself, rendered with the test's values: its
``upstream`` servers become the given backend ports, its listeners a free loopback port (HTTPS)
and another (the plain-HTTP redirect), its certificate the test's. A small main configuration
around it keeps every file nginx writes (pid, error log, temp dirs) in the test's directory;
nginx runs in the foreground (``-g 'daemon off;'``) and ``stop()`` ends it.

    proxy = NginxProxy(tmp, [server1.port, server2.port], cert, key)
    await proxy.start()
    ... https://localhost:{proxy.port}/ ... (proxy.client() is an aiohttp session for it)
    await proxy.stop()

The backends are Ruang processes with ``RUANG_PLAIN_HTTP=true`` and
``RUANG_TRUSTED_PROXIES=127.0.0.1`` (``BEHIND_PROXY_ENV``).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support import ROOT, free_port

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
TEMPLATE = ROOT / "deploy" / "nginx" / "ruang.conf"
BEHIND_PROXY_ENV = {"RUANG_PLAIN_HTTP": "true", "RUANG_TRUSTED_PROXIES": "127.0.0.1"}

needs_nginx = pytest.mark.skipif(
    NGINX is None,
    reason="needs nginx (scripts/install-system-deps.sh installs Debian's nginx-light)",
)

_UPSTREAM_RE = re.compile(r"(upstream ruang \{\n)(.*?)(\n\})", re.S)
_SERVER_LINE_RE = re.compile(r"^(\s*)server \S+( max_fails=\d+ fail_timeout=\d+s;)$", re.M)


class TemplateError(RuntimeError):
    """deploy/nginx/ruang.conf no longer has a line the harness substitutes."""


def _replace_once(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise TemplateError(f"expected exactly one {old!r} in {TEMPLATE}")
    return text.replace(old, new)


def render_site(
    backends: Sequence[int | tuple[str, int]],
    *,
    https_port: int,
    http_port: int,
    cert: Path,
    key: Path,
    host: str = "127.0.0.1",
    template: str | None = None,
) -> str:
    """deploy/nginx/ruang.conf with the test's backends, listeners and certificate."""
    text = TEMPLATE.read_text() if template is None else template
    if not backends:
        raise ValueError("at least one backend")
    match = _UPSTREAM_RE.search(text)
    if match is None:
        raise TemplateError(f"no 'upstream ruang {{ ... }}' block in {TEMPLATE}")
    body = match.group(2)
    lines = list(_SERVER_LINE_RE.finditer(body))
    if not lines:
        raise TemplateError(f"no 'server HOST:PORT max_fails=.. fail_timeout=..;' in {TEMPLATE}")
    indent, tail = lines[0].group(1), lines[0].group(2)
    servers = "\n".join(
        f"{indent}server {h}:{p}{tail}"
        for h, p in (b if isinstance(b, tuple) else ("127.0.0.1", b) for b in backends)
    )
    body = body[: lines[0].start()] + servers + _SERVER_LINE_RE.sub("", body[lines[0].end() :])
    body = re.sub(r"\n\s*\n(?=\s*keepalive)", "\n", body)
    text = text[: match.start(2)] + body + text[match.end(2) :]
    text = _replace_once(text, "    listen 80;\n", f"    listen {host}:{http_port};\n")
    text = _replace_once(text, "    listen [::]:80;\n", "")
    text = _replace_once(text, "    listen 443 ssl;\n", f"    listen {host}:{https_port} ssl;\n")
    text = _replace_once(text, "    listen [::]:443 ssl;\n", "")
    text = _replace_once(text, "/etc/nginx/certs/fullchain.pem", str(cert))
    text = _replace_once(text, "/etc/nginx/certs/privkey.pem", str(key))
    return text


def main_conf(prefix: Path, site: Path) -> str:
    """A main configuration that keeps nginx's files under ``prefix`` and includes ``site``."""
    # As root, workers would run as "nobody", which cannot enter pytest's 0700 temp dirs.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {name}_temp_path {prefix / (name + '_temp')};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}worker_processes 1;\n"
        f"pid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} info;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        "    default_type application/octet-stream;\n"
        f"{temp}\n"
        f"    include {site};\n"
        "}\n"
    )


class NginxProxy:
    """nginx from deploy/nginx/ruang.conf on free loopback ports, in front of ``backends``."""

    def __init__(
        self,
        tmp: Path,
        backends: Sequence[int | tuple[str, int]],
        cert: Path,
        key: Path,
    ) -> None:
        assert NGINX is not None, "nginx is not installed"
        self.prefix = tmp / "nginx"
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.cafile = cert
        self.port = free_port()
        self.http_port = free_port()
        self.site_path = self.prefix / "ruang.conf"
        self.conf_path = self.prefix / "nginx.conf"
        self.site_path.write_text(
            render_site(
                backends, https_port=self.port, http_port=self.http_port, cert=cert, key=key
            )
        )
        self.conf_path.write_text(main_conf(self.prefix, self.site_path))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def origin(self) -> str:
        return f"https://localhost:{self.port}"

    def _cmd(self, *extra: str) -> list[str]:
        assert NGINX is not None
        return [NGINX, "-p", str(self.prefix), "-c", str(self.conf_path), *extra]

    def check(self) -> subprocess.CompletedProcess[str]:
        """``nginx -t`` on the rendered configuration."""
        return subprocess.run(
            self._cmd("-t", "-q"), capture_output=True, text=True, timeout=20, check=False
        )

    async def start(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen(
            self._cmd("-g", "daemon off;"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited ({self.proc.returncode}):\n{self.error_log()}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            return
        await self.stop()
        raise RuntimeError(f"nginx did not listen within {timeout} s:\n{self.error_log()}")

    async def stop(self) -> None:
        """Fast shutdown (SIGTERM: open WebSockets are cut), SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.proc.wait, 5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait, 5)

    def error_log(self) -> str:
        try:
            return (self.prefix / "error.log").read_text(errors="replace")
        except OSError:
            return ""

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cafile))

    def client(self, **kwargs: Any) -> aiohttp.ClientSession:
        """A session for the proxy's HTTPS origin, trusting the test certificate."""
        connector = aiohttp.TCPConnector(ssl=self.ssl_context())
        return aiohttp.ClientSession(
            base_url=self.origin, connector=connector, cookie_jar=aiohttp.CookieJar(), **kwargs
        )
