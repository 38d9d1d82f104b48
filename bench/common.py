"""What every bench shares: its section of docs/performance.md, a network namespace to run in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
DOC_INTRO = """# Performance

Figures measured on this project's own machine (2 cores), with the commands to reproduce them.
Every figure is a time or a ratio from a real run, never an estimate; rerun the command after a
change that could move it.
"""


def write_section(begin: str, end: str, text: str, doc: Path = DOC) -> None:
    """Replace what is between ``begin`` and ``end`` in ``doc`` (append the section if the
    markers are missing); the rest of the file is kept."""
    body = doc.read_text() if doc.exists() else DOC_INTRO
    section = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in body and end in body:
        head, rest = body.split(begin, 1)
        body = head + section + rest.split(end, 1)[1]
    else:
        body = body.rstrip("\n") + "\n\n" + section + "\n"
    doc.write_text(body)


def in_namespace(module: str, argv: list[str], nice: int | None = None) -> int:
    """Run ``python -m module argv`` inside a new network namespace (lo and a veth pair, both
    ends inside, 198.18.0.0/15, as scripts/run-tests.sh makes), then remove the namespace.
    ``nice`` (root may lower it) runs the bench and what it starts at that priority."""
    ns = f"ruang-bench-{os.getpid()}"
    cmds = [
        ["ip", "netns", "add", ns],
        ["ip", "-n", ns, "link", "set", "lo", "up"],
        ["ip", "-n", ns, "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b"],
        ["ip", "-n", ns, "addr", "add", "198.18.0.1/24", "dev", "veth-a"],
        ["ip", "-n", ns, "addr", "add", "198.18.0.2/24", "dev", "veth-b"],
        ["ip", "-n", ns, "link", "set", "veth-a", "up"],
        ["ip", "-n", ns, "link", "set", "veth-b", "up"],
    ]
    try:
        for cmd in cmds:
            subprocess.run(cmd, check=True, timeout=10)
        inner = ["env", f"RUANG_TEST_NETNS={ns}", sys.executable, "-m", module, *argv]
        prefix = ["nice", "-n", str(nice)] if nice is not None else []
        return subprocess.run(["ip", "netns", "exec", ns, *prefix, *inner], cwd=ROOT).returncode
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
