"""How fast a call steps down to text and back on shaped links (the quality ladder).

Repeats the shaped scenario of tests/test_fallback_browser.py N times (default 3), each in a new
call between two Chromium pages inside a network namespace it creates (as root), and reports the
median and worst time for both pages to show each level after the network changes:

* 100 kbit/s (UDP, both directions together): video -> audio only;
* 20 kbit/s, and 40% random UDP loss: video -> text only, chat sent during the switch;
* each time the shaping is lifted: back to audio only, low video and video;
* chat messages lost or shown twice across all switches.

Each collapse lasts SHAPED_S seconds. The table goes into docs/performance.md (between the
``fallback`` markers; the rest of the file is kept), unless --no-write.

    sudo .venv/bin/python -m bench.fallback [--runs N] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import in_namespace, write_section  # noqa: E402

SHAPED_S = 25.0  # how long each collapse lasts
DOWN_S = 60.0  # bounds: a level not reached by then counts as missed
UP_S = 90.0
SETTLE_S = 5.0  # clean link between phases
BEGIN = "<!-- fallback:begin -->"
END = "<!-- fallback:end -->"
# What is measured: (key, label, goal in seconds or None).
ROWS: list[tuple[str, str, float | None]] = [
    ("100k.down.Audio only", "100 kbit/s: video -> audio only", None),
    ("100k.up.Video", "100 kbit/s lifted: audio only -> video", 20.0),
    ("20k.down.Text only", "20 kbit/s: video -> text only", 5.0),
    ("20k.up.Audio only", "20 kbit/s lifted: text only -> audio only", None),
    ("20k.up.Low video", "20 kbit/s lifted: text only -> low video", None),
    ("20k.up.Video", "20 kbit/s lifted: text only -> video", 20.0),
    ("loss.down.Text only", "40% UDP loss: video -> text only", 5.0),
    ("loss.up.Audio only", "40% UDP loss lifted: text only -> audio only", None),
    ("loss.up.Low video", "40% UDP loss lifted: text only -> low video", None),
    ("loss.up.Video", "40% UDP loss lifted: text only -> video", 20.0),
]


async def one_run(index: int, browser: Any, server: Any) -> dict[str, Any]:
    from tests.fallback_support import ChatLedger, ModeWatch, Shaper, install, save_quality
    from tests.test_call_browser import establish_call, new_page

    shaper = Shaper()
    times: dict[str, float | None] = {}
    async with new_page(browser, "counselor") as counselor, new_page(browser, "client") as client:
        pages = (counselor, client)
        await install(pages)
        await establish_call(server, counselor, client)
        ledger = ChatLedger()
        phases: list[tuple[str, Callable[[], None], str]] = [
            ("100k", lambda: shaper.rate(100), "Audio only"),
            ("20k", lambda: shaper.rate(20), "Text only"),
            ("loss", lambda: shaper.loss(40), "Text only"),
        ]
        try:
            async with ModeWatch(pages) as watch:
                await asyncio.sleep(3)
                for name, shape, target in phases:
                    start = time.monotonic()
                    shape()
                    for i in range(3):  # chat during the switch, both ways
                        await ledger.send(client, counselor, f"run {index} {name} c{i}")
                        await ledger.send(counselor, client, f"run {index} {name} k{i}")
                        await asyncio.sleep(1)
                    with_deadline = max(0.0, SHAPED_S - (time.monotonic() - start))
                    await asyncio.sleep(with_deadline)
                    for mode in ("Audio only", "Text only"):
                        at = watch.both_reached(mode, start)
                        times[f"{name}.down.{mode}"] = None if at is None else at - start
                    if times[f"{name}.down.{target}"] is None:  # not yet: wait, bounded
                        try:
                            times[f"{name}.down.{target}"] = await watch.wait_both(
                                target, start, DOWN_S - SHAPED_S
                            )
                        except AssertionError:
                            pass
                    lifted = time.monotonic()
                    shaper.clear()
                    try:
                        await watch.wait_both("Video", lifted, UP_S)
                    except AssertionError:
                        pass
                    for mode in ("Audio only", "Low video", "Video"):
                        at = watch.both_reached(mode, lifted)
                        times[f"{name}.up.{mode}"] = None if at is None else at - lifted
                    print(f"run {index} {name}: {watch.dump(start)}", file=sys.stderr)
                    await asyncio.sleep(SETTLE_S)
                try:
                    await ledger.wait_delivered(30)
                except AssertionError:
                    pass
                lost = len(await ledger.missing())
                twice = len(await ledger.duplicates())
        finally:
            shaper.clear()
            await save_quality(pages, ROOT / "test-artifacts" / f"fallback-bench-{index}.json")
    return {"times": times, "sent": len(ledger.sent), "lost": lost, "twice": twice}


async def bench(runs: int) -> list[dict[str, Any]]:
    from server.tls import ensure_dev_certificate
    from tests.browser import chromium
    from tests.support import ServerProcess
    from tests.test_call_browser import EMAIL

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        cert, key = ensure_dev_certificate(base / "certs")
        async with chromium() as browser:
            for i in range(runs):
                root = base / f"run{i + 1}"  # a new server (and room) for each run
                root.mkdir()
                server = ServerProcess(root, cert, key)
                server.add_counselor(EMAIL)
                await server.start()
                try:
                    result = await one_run(i + 1, browser, server)
                finally:
                    await server.stop()
                print(json.dumps(result), file=sys.stderr)
                results.append(result)
    return results


def fmt(x: float | None) -> str:
    return "missed" if x is None else f"{x:.1f} s"


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| Transition (both pages show the level) | Goal | Median | Worst | Runs |",
        "|---|---|---|---|---|",
    ]
    verdicts = []
    for key, label, goal in ROWS:
        values = [r["times"].get(key) for r in results]
        got = [v for v in values if v is not None]
        median = statistics.median(got) if got else None
        worst = None if len(got) < len(values) or not got else max(got)
        goal_text = f"<= {goal:g} s" if goal is not None else ""
        lines.append(f"| {label} | {goal_text} | {fmt(median)} | {fmt(worst)} | {len(values)} |")
        if goal is not None:
            met = worst is not None and worst <= goal
            verdicts.append(f"{label}: {'met' if met else 'NOT met'} (worst {fmt(worst)})")
    sent = sum(r["sent"] for r in results)
    lost = sum(r["lost"] for r in results)
    twice = sum(r["twice"] for r in results)
    lines.append(
        f"| Chat messages lost / shown twice (of {sent}, sent during the switches) | 0 | "
        f"{lost} / {twice} | | {len(results)} |"
    )
    verdicts.append(f"no message lost: {'met' if lost == 0 and twice == 0 else 'NOT met'}")
    return "\n".join(lines) + "\n\nGoals: " + "; ".join(verdicts) + ".\n"


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.fallback", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args(args_list)
    if not os.environ.get("RUANG_TEST_NETNS"):
        if os.geteuid() != 0:
            print("bench.fallback: needs root (a network namespace, tc, nft)", file=sys.stderr)
            return 2
        return in_namespace("bench.fallback", args_list)
    started = time.strftime("%Y-%m-%d")
    results = asyncio.run(bench(args.runs))
    text = (
        f"## Call quality ladder: stepping down and back ({started})\n\n"
        f"`sudo .venv/bin/python -m bench.fallback --runs {args.runs}` "
        f"({platform.machine()}, {os.cpu_count()} cores, Debian's Chromium, two pages in one "
        f"network namespace). Times from the moment the shaping starts or is lifted until both "
        f"pages' mode status shows the level; each collapse lasts {SHAPED_S:g} s. Rates shape "
        f"UDP on `lo` (htb, both directions together, a queue of about 250 ms); loss is an "
        f"nftables rule dropping that share of UDP packets. Chat messages are sent both ways "
        f"during every switch.\n\n" + table(results)
    )
    print(text)
    if not args.no_write:
        write_section(BEGIN, END, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
