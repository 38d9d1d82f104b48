"""Test support for TURN: a real coturn (Debian ``coturn``) started by the test, and a STUN
probe that says when it answers.

coturn runs with the REST scheme (``use-auth-secret``), on loopback (or another address of the
test network namespace), on random free ports, with its CLI off and its log in a temporary file.
Tests are on loopback, so it must allow loopback peers explicitly (``allow-loopback-peers``);
a production coturn denies them (README, "TURN (coturn)").
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aioice import stun

from tests.support import ROOT

TURNSERVER = shutil.which("turnserver")
REALM = "ruang.test"

needs_coturn = pytest.mark.skipif(
    not os.environ.get("RUANG_TEST_NETNS") or TURNSERVER is None,
    reason=(
        "needs the test network namespace (scripts/run-tests.sh, as root) and coturn's "
        "turnserver (scripts/install-system-deps.sh installs Debian's coturn)"
    ),
)


def namespace_address() -> str:
    """An IPv4 address of the test namespace's veth pair (198.18.0.0/15), not loopback."""
    from aioice.ice import get_host_addresses

    for address in get_host_addresses(use_ipv4=True, use_ipv6=False):
        if address.startswith(("198.18.", "198.19.")):
            return address
    pytest.skip("the test namespace has no 198.18.0.0/15 address")


def free_udp_tcp_port(host: str) -> int:
    """A port free for both UDP and TCP on ``host`` (coturn listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = int(u.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind((host, port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port for coturn")


class Coturn:
    """``turnserver`` in the foreground of a subprocess; ``stop()`` kills it."""

    def __init__(
        self,
        tmp: Path,
        *,
        host: str = "127.0.0.1",
        secret: str | None = None,
        allow_loopback: bool = True,
        extra: tuple[str, ...] = (),
    ) -> None:
        assert TURNSERVER is not None
        self.tmp = tmp
        self.allow_loopback = allow_loopback
        self.extra = extra
        self.host = host
        self.secret = secret or secrets.token_urlsafe(24)
        self.port = free_udp_tcp_port(host)
        self.min_port = random.randrange(40000, 59000, 2)
        self.max_port = self.min_port + 199
        self.log_path = tmp / "turnserver.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"turn:{self.host}:{self.port}?transport=udp"

    def args(self) -> list[str]:
        assert TURNSERVER is not None
        return [
            TURNSERVER,
            "-n",  # no configuration file: everything is here
            f"--listening-ip={self.host}",
            f"--relay-ip={self.host}",
            f"--listening-port={self.port}",
            f"--min-port={self.min_port}",
            f"--max-port={self.max_port}",
            "--use-auth-secret",
            f"--static-auth-secret={self.secret}",
            f"--realm={REALM}",
            *(["--allow-loopback-peers"] if self.allow_loopback else []),  # tests only
            "--no-multicast-peers",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--no-rfc5780",
            "--no-software-attribute",
            "--fingerprint",
            "--user-quota=12",
            "--total-quota=100",
            f"--log-file={self.log_path}",
            "--simple-log",
            "--verbose",  # session lines: who allocated, with which username
            "--no-stdout-log",
            f"--pidfile={self.tmp / 'turnserver.pid'}",
            f"--db={self.tmp / 'turndb'}",
            *self.extra,
        ]

    async def start(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen(
            self.args(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.tmp,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"turnserver exited ({self.proc.returncode}):\n{self.log()}")
            if await stun_answers((self.host, self.port), 0.3):
                return
        self.stop()
        raise RuntimeError(f"turnserver did not answer STUN within {timeout} s:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM (coturn flushes its log), then SIGKILL if it lingers."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    async def wait_log(self, done: Callable[[str], bool], timeout: float = 5.0) -> str:
        """The log once ``done(log)`` holds, or as it is after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not done(text := self.log()) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        return text

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class _Probe(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answered = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.answered.done():
            self.answered.set_result(data)


async def stun_answers(addr: tuple[str, int], timeout: float) -> bool:
    """Whether a STUN Binding request to ``addr`` gets an answer within ``timeout`` s."""
    loop = asyncio.get_running_loop()
    transport, probe = await loop.create_datagram_endpoint(_Probe, remote_addr=addr)
    try:
        request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        transport.sendto(bytes(request))
        try:
            data = await asyncio.wait_for(probe.answered, timeout)
        except TimeoutError:
            return False
        return stun.parse_message(data).transaction_id == request.transaction_id
    except (OSError, ValueError):
        return False
    finally:
        transport.close()


def readme_peer_rules() -> tuple[str, ...]:
    """The README's hardened coturn configuration: its peer rules, as command-line options."""
    text = (ROOT / "README.md").read_text()
    block = text.split("```ini\n", 1)[1].split("```", 1)[0]
    rules = tuple(
        "--" + line.strip()
        for line in block.splitlines()
        if line.startswith(("denied-peer-ip=", "allowed-peer-ip=", "no-multicast-peers"))
    )
    assert any(r.startswith("--denied-peer-ip=10.") for r in rules), "README block not found"
    assert "allow-loopback-peers" not in [line.strip() for line in block.splitlines()]
    return rules
