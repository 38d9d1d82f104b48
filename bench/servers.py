"""The three servers the relay and memory benchmarks compare, each in its own process on loopback,
pinned to one core (the load generator gets the other):

* ``ruang``: ``python -m server serve`` over plain HTTP (as behind a TLS proxy; the others speak
  plain HTTP too), its limits raised through ``RUANG_*`` variables so the load is not refused:
  per-connection rate and burst, connections per IP, waiting clients per room, rooms per counselor;
* ``peerjs``: the PeerJS server (npm ``peer``, ``bench.peerjs``);
* ``bare``: ``bench.bare_relay``, an aiohttp relay speaking PeerJS's protocol (the floor).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import peerjs

ROOT = Path(__file__).resolve().parent.parent
EMAIL = "bench@example.org"
TARGETS = ("ruang", "peerjs", "bare")
# An ablation (--targets ruang,ruang-asyncio): Ruang on asyncio's own loop instead of uvloop.
PROTOCOL = {"ruang": "ruang", "ruang-asyncio": "ruang", "peerjs": "peerjs", "bare": "peerjs"}
START_TIMEOUT = 30.0


class StartFailed(RuntimeError):
    """A server did not start listening in time."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(cpu: int | None) -> list[str]:
    if cpu is None or (os.cpu_count() or 1) < 2:
        return []
    return ["taskset", "-c", str(cpu)]


def rss_kib(pid: int) -> int:
    """Resident set size of a process, KiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    password: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StartFailed(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise StartFailed(f"{self.name} did not listen within {START_TIMEOUT:g} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def ruang_env(tmp: Path, port: int, password_secret: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUANG_")}
    env.update(
        {
            "RUANG_HOST": "127.0.0.1",
            "RUANG_PORT": str(port),
            "RUANG_DATA_DIR": str(tmp / "data"),
            "RUANG_CERT_DIR": str(tmp / "certs"),
            "RUANG_PLAIN_HTTP": "true",
            "RUANG_PUBLIC_ORIGIN": f"http://127.0.0.1:{port}",
            "RUANG_SECRET_KEY": password_secret,
            "RUANG_LOG_LEVEL": "WARNING",
            # The load would exceed these; raised, never patched.
            "RUANG_WS_RATE": "1000000",
            "RUANG_WS_BURST": "1000000",
            "RUANG_WS_MAX_PER_IP": "1000000",
            "RUANG_MAX_WAITING": "1000",
            "RUANG_MAX_ROOMS_PER_COUNSELOR": "100000",
            "RUANG_LOGIN_MAX_PER_IP": "100000",
            "RUANG_LOGIN_MAX_PER_ACCOUNT": "100000",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def start(
    name: str,
    tmp: Path,
    cpu: int | None,
    peerjs_script: Path | None = None,
    profile: Path | None = None,
    report: str = "text",
) -> Server:
    """Start one server; ``tmp`` is a fresh directory for its data and log. With ``profile``,
    Ruang runs under pyinstrument, which writes its report (``report``: text or json) there when
    it stops."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = tmp / f"{name}.log"
    out = open(log, "ab")  # the child keeps its own copy
    password = ""
    if name in ("ruang", "ruang-asyncio"):
        password = secrets.token_urlsafe(18)
        env = ruang_env(tmp, port, secrets.token_urlsafe(32))
        env["RUANG_EVENT_LOOP"] = "asyncio" if name == "ruang-asyncio" else "auto"
        added = subprocess.run(
            [sys.executable, "-m", "server", "counselor", "add", EMAIL, "--password-stdin"],
            input=password + "\n",
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if added.returncode != 0:
            raise StartFailed(f"ruang counselor add: {added.stderr[-2000:]}")
        argv = [sys.executable, "-m", "server", "serve"]
        if profile is not None:
            wrap = ["-m", "pyinstrument", "-r", report, "--show-all", "-o", str(profile)]
            argv = [sys.executable, *wrap, "-m", "server", "serve"]
    elif name == "peerjs":
        assert peerjs_script is not None
        env = dict(os.environ)
        argv = peerjs.command(peerjs_script, port)
    elif name == "bare":
        env = dict(os.environ)
        argv = [sys.executable, "-m", "bench.bare_relay", "--port", str(port)]
    else:
        raise ValueError(name)
    proc = subprocess.Popen(
        [*pin(cpu), *argv], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
    )
    out.close()
    server = Server(name, proc, port, log, password)
    try:
        server.wait_listening()
    except BaseException:
        server.stop()
        raise
    return server


def versions(peerjs_prefix: Path | None) -> str:
    import platform

    import aiohttp

    parts = [f"Python {platform.python_version()}", f"aiohttp {aiohttp.__version__}"]
    try:
        import uvloop

        parts.append(f"uvloop {uvloop.__version__} (Ruang's loop)")
    except ImportError:
        parts.append("no uvloop (Ruang on asyncio's loop)")
    if peerjs_prefix is not None:
        parts += [f"node {peerjs.node_version()}", f"peer {peerjs.version(peerjs_prefix)}"]
    return ", ".join(parts)
