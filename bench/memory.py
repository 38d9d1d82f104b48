"""Memory per idle connection: server RSS delta over 1,000 and 5,000 waiting clients, for Ruang,
the PeerJS server and the bare aiohttp floor.

For each count, each server and each run: a fresh server (pinned to core 0), a warm-up of a few
connections opened and closed (so lazily built code paths are not counted), its RSS (VmRSS),
then the load generator (core 1) opens N sockets and keeps them idle (Ruang: clients knocking
on rooms whose counselor is away, ``state: waiting``; PeerJS and the floor: peers that got
``OPEN`` and send their heartbeat), the server's RSS again after a settling pause; the figure is
the delta over N. Servers take turns in rotating order from run to run; medians over runs.

    .venv/bin/python -m bench.memory [--runs 3] [--counts 1000,5000] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import peerjs, servers  # noqa: E402
from bench.common import write_section  # noqa: E402
from bench.relay import LABEL, LOADGEN_CPU, SERVER_CPU, order  # noqa: E402

BEGIN = "<!-- memory:begin -->"
END = "<!-- memory:end -->"
WARMUP = 20
SETTLE_S = 3.0
OPEN_TIMEOUT = 300.0
PER_ROOM = 100  # Ruang: waiting clients per room (RUANG_MAX_WAITING is raised above it)


class IdleFailed(RuntimeError):
    """The load generator could not open its sockets."""


def hold(server: servers.Server, count: int) -> subprocess.Popen[str]:
    """Start the load generator with ``count`` idle sockets; return once they are open."""
    env = dict(os.environ, BENCH_PASSWORD=server.password)
    argv = [
        *servers.pin(LOADGEN_CPU),
        sys.executable,
        "-m",
        "bench.loadgen",
        "--protocol",
        servers.PROTOCOL[server.name],
        "--url",
        server.url,
        "--mode",
        "idle",
        "--idle",
        str(count),
        "--rooms",
        str(max(1, -(-count // PER_ROOM))),
    ]
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + OPEN_TIMEOUT
    line = proc.stdout.readline()  # the generator prints one line once every socket is open
    if not line or time.monotonic() > deadline:
        err = release(proc)
        raise IdleFailed(f"{server.name}: {count} sockets did not open: {err[-2000:]}")
    opened = json.loads(line).get("open")
    if opened != count:
        release(proc)
        raise IdleFailed(f"{server.name}: opened {opened} of {count}")
    return proc


def release(proc: subprocess.Popen[str]) -> str:
    """Close the generator's stdin (it closes its sockets and exits); its stderr."""
    try:
        return proc.communicate(input="", timeout=120)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[1]


def one(name: str, count: int, tmp: Path, script: Path | None) -> dict[str, Any]:
    server = servers.start(name, tmp, SERVER_CPU, script)
    try:
        release(hold(server, WARMUP))
        time.sleep(SETTLE_S)
        before = servers.rss_kib(server.pid)
        proc = hold(server, count)
        try:
            time.sleep(SETTLE_S)
            after = servers.rss_kib(server.pid)
        finally:
            release(proc)
    finally:
        server.stop()
    return {
        "target": name,
        "count": count,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_conn": (after - before) / count,
    }


def bench(args: argparse.Namespace, tmp: Path) -> dict[int, dict[str, list[dict[str, Any]]]]:
    script = peerjs.install(args.peerjs_prefix) if "peerjs" in args.targets else None
    results: dict[int, dict[str, list[dict[str, Any]]]] = {
        n: {t: [] for t in args.targets} for n in args.counts
    }
    k = 0
    for run in range(args.runs):
        for count in args.counts:
            for target in order(args.targets, run):
                k += 1
                r = one(target, count, tmp / f"m{k}-{target}", script)
                results[count][target].append(r)
                print(json.dumps({"run": run + 1, **r}), file=sys.stderr)
    return results


def table(args: argparse.Namespace, results: dict[int, dict[str, list[dict[str, Any]]]]) -> str:
    targets = args.targets
    others = [t for t in targets if t != "ruang"]
    head = "| Idle connections | " + " | ".join(f"{LABEL[t]} (KiB each)" for t in targets)
    head += " | " + " | ".join(f"Ruang / {LABEL[t]}" for t in others) + " |"
    lines = [head, "|---" * (1 + len(targets) + len(others)) + "|"]
    verdicts = []
    for count in args.counts:
        per = {t: [r["kib_per_conn"] for r in results[count][t]] for t in targets}
        cells = [f"{statistics.median(per[t]):.1f}" for t in targets]
        ratios = []
        for t in others:
            within = [a / b for a, b in zip(per["ruang"], per[t], strict=False) if b > 0]
            ratio = statistics.median(within) if within else None
            ratios.append("-" if ratio is None else f"{ratio:.2f}x")
            if t == "peerjs":
                met = ratio is not None and ratio <= 1.0
                verdicts.append(
                    f"{count:,} idle: {'met' if met else 'NOT met'} "
                    f"({'-' if ratio is None else f'{ratio:.2f}x'})"
                )
        lines.append(f"| {count:,} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    goal = "Goal, memory per idle connection <= PeerJS's: " + "; ".join(verdicts) + ".\n"
    return "\n".join(lines) + "\n\n" + goal


def render(args: argparse.Namespace, results: dict[int, dict[str, list[dict[str, Any]]]]) -> str:
    versions = servers.versions(args.peerjs_prefix if "peerjs" in args.targets else None)
    return (
        f"## Memory per idle connection ({time.strftime('%Y-%m-%d')})\n\n"
        f"`.venv/bin/python -m bench.memory --runs {args.runs}` ({platform.machine()}, "
        f"{os.cpu_count()} cores; {versions}). A fresh server per measurement (core 0), warmed "
        f"up with {WARMUP} connections; server RSS (VmRSS) before and {SETTLE_S:g} s after the "
        f"load generator (core 1) opened N idle WebSockets; KiB per connection is the delta over "
        f"N, the median of {args.runs} runs (ratios within each run, then the median). Ruang's "
        f"sockets are clients waiting in rooms whose counselor is away ({PER_ROOM} per room); "
        f"PeerJS's and the floor's are peers that got `OPEN`.\n\n" + table(args, results)
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--counts", default="1000,5000")
    p.add_argument("--targets", default=",".join(servers.TARGETS))
    p.add_argument("--peerjs-prefix", type=Path, default=None, help="reuse an npm install here")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    args = p.parse_args(argv)
    args.counts = [int(c) for c in args.counts.split(",") if c]
    args.targets = [t for t in args.targets.split(",") if t]
    if "ruang" not in args.targets:
        p.error("--targets must include ruang")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ruang-bench-") as tmp:
        if args.peerjs_prefix is None:
            args.peerjs_prefix = Path(tmp) / "peerjs"
        results = bench(args, Path(tmp))
        text = render(args, results)
    print(text)
    if not args.no_write:
        write_section(BEGIN, END, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
