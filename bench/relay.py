"""Relay throughput and latency: Ruang against the PeerJS server and a bare aiohttp floor.

All three servers run at once, each on core 0 (``taskset``); the load generator
(``bench.loadgen``, a separate process) runs on core 1. Each run measures every server in turn,
in an order that rotates from run to run (ruang, peerjs, bare; then peerjs, bare, ruang; ...), so
load drift on the machine hits all of them alike:

* throughput: ``--pairs`` room pairs (Ruang: one room each, counselor and admitted client;
  PeerJS and the floor: two peer ids), both directions, ``--window`` envelopes in flight per
  direction, ~600-character payloads, for ``--seconds`` after a warm-up;
* latency: the same pairs at a fixed offered rate (``--rate`` envelopes/s in all), p50 and p99
  of send-to-delivery time;
* server CPU per delivered envelope: utime+stime from ``/proc/<pid>/stat`` over the interval.

Every envelope is checked for exactly-once, in-order delivery to the right peer (the load
generator exits non-zero otherwise, and the table says so). Ratios are computed within each run
and reported as the median over runs; absolute figures on a shared machine are noise.

    .venv/bin/python -m bench.relay [--runs 3] [--no-write]
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
from bench.loadgen import PAYLOAD_CHARS  # noqa: E402

BEGIN = "<!-- relay:begin -->"
END = "<!-- relay:end -->"
SERVER_CPU = 0
LOADGEN_CPU = 1
LABEL = {
    "ruang": "Ruang",
    "ruang-asyncio": "Ruang on asyncio's loop",
    "peerjs": "PeerJS",
    "bare": "bare aiohttp",
}


class LoadFailed(RuntimeError):
    """The load generator crashed or printed no result."""


def loadgen(server: servers.Server, extra: list[str], timeout: float = 300) -> dict[str, Any]:
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
        "--server-pid",
        str(server.pid),
        *extra,
    ]
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise LoadFailed(f"{server.name}: no result\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["ok"] = done.returncode == 0
    return result


def order(targets: list[str], run: int) -> list[str]:
    k = run % len(targets)
    return targets[k:] + targets[:k]


def bench(args: argparse.Namespace, tmp: Path) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """results[mode][target] = one result per run."""
    script = (
        peerjs.install(args.peerjs_prefix or tmp / "peerjs") if "peerjs" in args.targets else None
    )
    running = {t: servers.start(t, tmp / t, SERVER_CPU, script) for t in args.targets}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        m: {t: [] for t in args.targets} for m in ("throughput", "latency")
    }
    common = ["--pairs", str(args.pairs), "--seconds", str(args.seconds)]
    try:
        for run in range(args.runs):
            for target in order(args.targets, run):
                r = loadgen(
                    running[target], [*common, "--mode", "throughput", "--window", str(args.window)]
                )
                results["throughput"][target].append(r)
                print(json.dumps({"run": run + 1, "target": target, **r}), file=sys.stderr)
            for target in order(args.targets, run):
                r = loadgen(
                    running[target], [*common, "--mode", "latency", "--rate", str(args.rate)]
                )
                results["latency"][target].append(r)
                print(json.dumps({"run": run + 1, "target": target, **r}), file=sys.stderr)
    finally:
        for server in running.values():
            server.stop()
    return results


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _ratios(mine: list[dict[str, Any]], theirs: list[dict[str, Any]], key: str) -> float | None:
    """The median over runs of mine/theirs, each ratio within one run."""
    pairs = [
        (a.get(key), b.get(key))
        for a, b in zip(mine, theirs, strict=False)
        if a.get(key) and b.get(key)
    ]
    return _median([a / b for a, b in pairs])


def _fmt(x: float | None, digits: int = 0, unit: str = "") -> str:
    if x is None:
        return "-"
    return f"{x:,.{digits}f}{unit}"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


ROWS = (
    # (mode, key, label, digits, goal: "higher"/"lower" than PeerJS or "")
    ("throughput", "per_second", "Throughput (envelopes/s delivered)", 0, "higher"),
    ("throughput", "cpu_us_per_msg", "Server CPU per envelope (µs), at full load", 1, ""),
    ("throughput", "busy", "Server busy (% of its core) during the throughput run", 0, ""),
    ("throughput", "lg_busy", "Load generator busy (% of its core), same run", 0, ""),
    ("latency", "p50_ms", "Latency p50 (ms)", 2, ""),
    ("latency", "p99_ms", "Latency p99 (ms)", 2, "lower"),
    ("latency", "cpu_us_per_msg", "Server CPU per envelope (µs), at the fixed rate", 1, ""),
)


def table(args: argparse.Namespace, results: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    targets = args.targets
    for rs in results["throughput"].values():
        for r in rs:
            r["busy"] = 100.0 * r["server_cpu_s"] / r["seconds"]
            r["lg_busy"] = 100.0 * r["loadgen_cpu_s"] / r["seconds"]
    others = [t for t in targets if t != "ruang"]
    head = "| Measure | " + " | ".join(LABEL[t] for t in targets)
    head += " | " + " | ".join(f"Ruang / {LABEL[t]}" for t in others) + " |"
    lines = [head, "|---" * (1 + len(targets) + len(others)) + "|"]
    verdicts = []
    for mode, key, label, digits, goal in ROWS:
        cells = [
            _fmt(_median([r[key] for r in results[mode][t] if r.get(key)]), digits) for t in targets
        ]
        ratios = [_ratio(_ratios(results[mode]["ruang"], results[mode][t], key)) for t in others]
        lines.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
        if goal and "peerjs" in targets:
            ratio = _ratios(results[mode]["ruang"], results[mode]["peerjs"], key)
            met = ratio is not None and (ratio >= 1.0 if goal == "higher" else ratio <= 1.0)
            verdicts.append(
                f"{label.split(' (')[0].lower()} {'>=' if goal == 'higher' else '<='} PeerJS's: "
                f"{'met' if met else 'NOT met'} ({_ratio(ratio)})"
            )
    checked = []
    for t in targets:
        rs = results["throughput"][t] + results["latency"][t]
        total = sum(r["delivered_total"] for r in rs)
        bad = sum(r["errors"] + r["missing"] for r in rs)
        checked.append(f"{_fmt(total)} checked, {bad} wrong" if rs else "-")
    lines.append(
        "| Envelopes lost, duplicated, reordered or misrouted | "
        + " | ".join(checked)
        + " |"
        + " |" * len(others)
    )
    return "\n".join(lines) + "\n\nGoals: " + "; ".join(verdicts) + ".\n"


def render(args: argparse.Namespace, results: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    prefix = args.peerjs_prefix
    versions = servers.versions(prefix if prefix and prefix.exists() else None)
    extra = "" if args.targets == list(servers.TARGETS) else f" --targets {','.join(args.targets)}"
    cmd = f"`.venv/bin/python -m bench.relay --runs {args.runs}{extra}`"
    return (
        f"## Relay: throughput, latency, CPU ({time.strftime('%Y-%m-%d')})\n\n"
        f"{cmd} ({platform.machine()}, {os.cpu_count()} cores shared with other work; "
        f"{versions}). Each server on core 0, the load generator (`bench.loadgen`, one "
        f"process) on core 1 (`taskset`); every server measured in each run, in rotating "
        f"order. {args.pairs} room pairs, both directions, {PAYLOAD_CHARS}"
        f"-character payloads; throughput with {args.window} envelopes in flight per direction "
        f"for {args.seconds:g} s; latency at a fixed {args.rate:g} envelopes/s. Figures are "
        f"medians of {args.runs} runs; each ratio is taken within a run, then the median. "
        f"Ruang runs as `ruang serve` with `RUANG_PLAIN_HTTP=true` (as behind a TLS proxy; the "
        f"others speak plain HTTP too) and its per-connection rate limits raised through "
        f"`RUANG_*` variables; it checks every frame, room membership and who may talk, and "
        f"stamps the sender. PeerJS (npm `peer`) and the bare aiohttp relay "
        f"(`bench/bare_relay.py`, PeerJS's protocol, no checks: the floor) only stamp `src` and "
        f"forward. The busy rows say which process set the pace: when the load generator is "
        f"the busier one, throughput compares what each server sustains for the same client, "
        f"and the server's CPU per envelope says how much it could carry on its own core."
        + (
            " `ruang-asyncio` is an ablation: Ruang with `RUANG_EVENT_LOOP=asyncio` instead of "
            "uvloop."
            if "ruang-asyncio" in args.targets
            else ""
        )
        + "\n\n"
        + table(args, results)
    )


def replay(args: argparse.Namespace) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """The results of an earlier run, from the JSON lines it printed on stderr."""
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        m: {t: [] for t in args.targets} for m in ("throughput", "latency")
    }
    for line in args.replay.read_text().splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            r.setdefault("ok", not r["errors"] and not r["missing"])
            results[r["mode"]][r["target"]].append(r)
    args.runs = len(results["throughput"]["ruang"])
    for m in results.values():
        for rs in m.values():
            rs.sort(key=lambda r: r["run"])
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--pairs", type=int, default=50)
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rate", type=float, default=2000.0)
    p.add_argument("--targets", default=",".join(servers.TARGETS))
    p.add_argument("--peerjs-prefix", type=Path, default=None, help="reuse an npm install here")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument(
        "--replay", type=Path, default=None, help="render the table from a run's stderr lines"
    )
    args = p.parse_args(argv)
    args.targets = [t for t in args.targets.split(",") if t]
    if "ruang" not in args.targets:
        p.error("--targets must include ruang")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replay is not None:
        results = replay(args)
        text = render(args, results)
    else:
        with tempfile.TemporaryDirectory(prefix="ruang-bench-") as tmp:
            if args.peerjs_prefix is None:
                args.peerjs_prefix = Path(tmp) / "peerjs"
            results = bench(args, Path(tmp))
            text = render(args, results)
    print(text)
    if not args.no_write:
        write_section(BEGIN, END, text)
    bad = any(not r["ok"] for m in results.values() for rs in m.values() for r in rs)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
