"""The PeerJS server (npm ``peer``), installed into a temporary directory and run on loopback.

    install(prefix)  ->  npm install --prefix PREFIX peer   (needs node and npm)
    command(prefix, port)  ->  the argv of ``peerjs`` on 127.0.0.1:PORT, limits raised

The bench raises ``--concurrent_limit`` (default 5,000) so the 5,000-socket memory run fits,
and ``--alive_timeout`` so idle sockets are not dropped mid-measurement.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path


class PeerJsUnavailable(RuntimeError):
    """node or npm is missing, or ``npm install peer`` failed."""


def install(prefix: Path) -> Path:
    """Install npm ``peer`` under ``prefix``; return its bin script."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise PeerJsUnavailable(
            "the relay and memory benchmarks compare against the PeerJS server: install node "
            "and npm (Debian: apt-get install nodejs npm)"
        )
    script = prefix / "node_modules" / "peer" / "dist" / "bin" / "peerjs.js"
    if not script.exists():
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix), "peer"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0 or not script.exists():
            raise PeerJsUnavailable(f"npm install peer failed:\n{done.stderr[-2000:]}")
    return script


def version(prefix: Path) -> str:
    meta = prefix / "node_modules" / "peer" / "package.json"
    return str(json.loads(meta.read_text())["version"])


def node_version() -> str:
    node = shutil.which("node") or "node"
    return subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()


def command(script: Path, port: int) -> list[str]:
    return [
        shutil.which("node") or "node",
        str(script),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--concurrent_limit",
        "1000000",
        "--alive_timeout",
        "3600000",
    ]
