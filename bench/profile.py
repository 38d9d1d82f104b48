"""A profile of the relay hot path: Ruang under pyinstrument while the load generator runs the
throughput load, and where the server's time goes, by function, as a table in
docs/performance.md.

The server runs as in ``bench.relay`` (core 0, plain HTTP, limits raised), started under
``python -m pyinstrument``; ``bench.loadgen`` (core 1) runs ``--pairs`` room pairs at full speed
for ``--seconds``; the server is then stopped (SIGTERM: a graceful exit, so pyinstrument writes
its report). The table lists the functions with the largest *own* time (time in the function
itself, not in what it calls), as a share of all samples: the hot path's cost centres. Shares
only: pyinstrument slows the server down, so absolute times here are not the server's.

    .venv/bin/python -m bench.profile [--seconds 10] [--pairs 50] [--top 15] [--no-write]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import servers  # noqa: E402
from bench.common import write_section  # noqa: E402
from bench.relay import SERVER_CPU, loadgen  # noqa: E402

BEGIN = "<!-- profile:begin -->"
END = "<!-- profile:end -->"


class ProfileFailed(RuntimeError):
    """pyinstrument wrote no report (the server did not exit cleanly)."""


def own_times(session: dict[str, Any]) -> tuple[float, dict[str, float]]:
    """Total sampled time and own time per function (``file:function``) from a pyinstrument
    session's frame tree (``-r json``)."""
    own: collections.Counter[str] = collections.Counter()

    def walk(frame: dict[str, Any], parent: str) -> None:
        children = frame.get("children", [])
        mine = frame["time"] - sum(c["time"] for c in children)
        func = str(frame.get("function", "?"))
        if func.startswith("[self]"):  # pyinstrument's node for its parent's own time
            name = parent
        else:
            path = str(frame.get("file_path") or frame.get("file_path_short") or "")
            cls = frame.get("class_name")
            name = f"{short(path)}:{cls}.{func}" if cls else f"{short(path)}:{func}"
        own[name] += max(0.0, mine)
        for child in children:
            walk(child, name)

    root = session["root_frame"]
    walk(root, "?")
    return float(root["time"]), dict(own)


def short(path: str) -> str:
    """A path as the reader knows it: ``server/ws.py``, ``aiohttp/web_ws.py``, ``asyncio/...``."""
    for marker in ("site-packages/", "python3.11/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    root = str(ROOT) + "/"
    return path[len(root) :] if path.startswith(root) else path


def area(name: str) -> str:
    path, func = name.split(":", 1)
    if path == "aiohttp/web.py" and func == "run_app":  # uvloop's C code runs under run_app
        return "event loop (uvloop, in C: polling, socket reads and writes, idle)"
    if path.startswith(("server/", "signaling/")):
        return "Ruang"
    if path.startswith(("aiohttp/", "multidict", "yarl")):
        return "aiohttp"
    if path.startswith(("asyncio/", "uvloop")) or "selector" in path:
        return "event loop (Python parts)"
    if path.startswith("<"):
        return "interpreter / C"
    return "other"


def run(args: argparse.Namespace, tmp: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    report = tmp / "profile.json"
    server = servers.start("ruang", tmp / "ruang", SERVER_CPU, profile=report, report="json")
    try:
        load = loadgen(
            server,
            ["--pairs", str(args.pairs), "--seconds", str(args.seconds), "--mode", "throughput"],
        )
    finally:
        server.stop()
    deadline = time.monotonic() + 60
    while not report.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    if not report.exists():
        tail = server.log.read_text()[-2000:]
        raise ProfileFailed(f"no pyinstrument report; server log:\n{tail}")
    return json.loads(report.read_text()), load


def render(args: argparse.Namespace, session: dict[str, Any], load: dict[str, Any]) -> str:
    total, own = own_times(session)
    by_area: collections.Counter[str] = collections.Counter()
    for name, t in own.items():
        by_area[area(name)] += t
    lines = [
        f"## Relay hot path profile ({time.strftime('%Y-%m-%d')})",
        "",
        f"`.venv/bin/python -m bench.profile --seconds {args.seconds:g}` ({platform.machine()}, "
        f"{os.cpu_count()} cores; {servers.versions(None)}). Ruang under pyinstrument (core 0) "
        f"while `bench.loadgen` (core 1) runs {args.pairs} room pairs at full speed for "
        f"{args.seconds:g} s ({load.get('delivered', 0):,} envelopes delivered under the "
        f"profiler, {'none' if load.get('ok') else 'SOME'} lost or wrong). Own time is time in "
        f"the function itself; shares of all {total:.1f} s sampled (profiling slows the server, "
        "so only the shares mean anything).",
        "",
        "| Where | Share of samples |",
        "|---|---|",
    ]
    for name, t in by_area.most_common():
        lines.append(f"| {name} | {100 * t / total:.1f}% |")
    lines += ["", "| Function (own time) | Share |", "|---|---|"]
    for name, t in sorted(own.items(), key=lambda kv: -kv[1])[: args.top]:
        lines.append(f"| `{name}` | {100 * t / total:.1f}% |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--pairs", type=int, default=50)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--runs", type=int, default=1, help="ignored (one profile is enough)")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ruang-bench-") as tmp:
        session, load = run(args, Path(tmp))
    text = render(args, session, load)
    print(text)
    if not args.no_write:
        write_section(BEGIN, END, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
