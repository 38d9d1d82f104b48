"""Every benchmark section, one after the other, each writing its own part of
docs/performance.md (between its markers; the rest of the file is kept):

* ``relay``: relay throughput, latency and CPU per envelope against PeerJS and a bare aiohttp
  floor (``bench.relay``);
* ``memory``: memory per idle connection, the same three (``bench.memory``);
* ``profile``: where the relay hot path spends its time, under pyinstrument (``bench.profile``);
* ``callsetup``: call setup times (``bench.callsetup``, when present);
* ``scaleout``: several processes over Redis (``bench.scaleout``, when present);
* ``fallback``: the call quality ladder on shaped links (``bench.fallback``).

Sections that need a network namespace (callsetup, fallback) need root and say so.

    .venv/bin/python -m bench [--only relay,memory] [--runs 3] [--no-write]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SECTIONS = ("relay", "memory", "profile", "callsetup", "scaleout", "fallback")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--only", default="", help=f"comma-separated, from: {', '.join(SECTIONS)}")
    p.add_argument("--runs", type=int, default=3, help="runs per section (medians need >= 3)")
    p.add_argument("--no-write", action="store_true", help="print the tables only")
    args = p.parse_args(argv)
    chosen = [s for s in args.only.split(",") if s] or list(SECTIONS)
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        p.error(f"unknown section(s): {', '.join(unknown)}")
    failed = []
    for name in chosen:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{name}":
                print(f"bench: no section {name} here; skipped", file=sys.stderr)
                continue
            raise
        section_argv = ["--runs", str(args.runs)] + (["--no-write"] if args.no_write else [])
        started = time.monotonic()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        code = module.main(section_argv)
        took = time.monotonic() - started
        print(f"bench: {name} exited {code} after {took:.0f} s", file=sys.stderr, flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
