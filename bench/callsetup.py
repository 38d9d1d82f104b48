"""Call setup: from the knock to the first decoded video frame, through Ruang vs direct.

Through Ruang: a real server process (``ruang serve``), and two real Python peers (the code of
``ruang join``: ``signaling.peer.session.Session``), a counselor already in its room and a
client who knocks; the counselor admits it, hellos, commit and reveal, offer and answer go
through the server's relay, sealed, as in production. Direct: the same two aiortc peer
connections (``signaling.peer.rtc.CallRound``: same codecs, same synthetic tracks, same data
channel, same candidate gathering, no ICE servers in either case) exchanging commit, reveal and
SDP in memory, with no server. Both peers run in this one process (one event loop) in both
cases, so the comparison is like for like; the server is its own process.

Each run measures, from the client's knock (Ruang: the client starts connecting its signaling
socket; direct: the two peer connections are made): the client in the room, admitted, the
commit round started (counselor), the hello pair settled (client), both reveals verified (the
counselor's safety code), the offer sent and the answer applied, ICE connected and DTLS
connected (the later side), the first decoded video frame at each side. Runs alternate Ruang
and direct (the first of each is a warm-up, not counted); the table gives medians, the ratio is
the median of the per-pair ratios. It runs inside a network namespace it creates (as root):
aiortc gathers candidates on every interface. The table goes into docs/performance.md between
the ``callsetup`` markers, unless --no-write.

    sudo .venv/bin/python -m bench.callsetup [--runs N] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import gc
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, cast

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import in_namespace, write_section  # noqa: E402

BEGIN = "<!-- callsetup:begin -->"
END = "<!-- callsetup:end -->"
GOAL = 1.25
RUN_TIMEOUT = 60.0
NICE = -10
EMAIL = "bench@example.org"

# Milestones, in their usual order: (key, label, in the direct exchange too). The counselor
# starts its round right behind its hello of the call, so its commit follows that hello to the
# client, who settles the pair on the hello and then joins the round.
MARKS: list[tuple[str, str, bool]] = [
    ("joined", "client in the room (TLS, WebSocket, join)", False),
    ("admitted", "admitted (the counselor admits)", False),
    ("round", "commit round started (counselor)", False),
    ("settled", "hello pair settled (client)", False),
    ("verified", "both reveals verified (counselor's safety code)", True),
    ("offer", "offer sent (counselor)", True),
    ("answer", "answer applied (counselor)", True),
    ("ice", "ICE connected (both sides)", True),
    ("dtls", "DTLS connected (both sides)", True),
    ("frame", "first decoded video frame (both sides)", True),
]

SIDE: contextvars.ContextVar[str] = contextvars.ContextVar("side", default="?")


class Recorder:
    """Timestamps (monotonic, seconds) of what each side did, keyed by (side, what)."""

    def __init__(self) -> None:
        self.t: dict[tuple[str, str], float] = {}
        self.changed = asyncio.Event()

    def mark(self, side: str, what: str, at: float | None = None) -> None:
        self.t.setdefault((side, what), time.monotonic() if at is None else at)
        self.changed.set()

    def get(self, side: str, what: str) -> float | None:
        return self.t.get((side, what))

    def both(self, what: str) -> float | None:
        a, b = self.get("counselor", what), self.get("client", what)
        return None if a is None or b is None else max(a, b)


# The peer's own log lines (no content in any of them) that mark a milestone.
LOG_MARKS = {
    "joined the room as client": "joined",
    "hello exchange settled": "settled",
    "commit round started": "round",
    "joined a commit round": "round",
    "offer sent": "offer",
    "answer sent": "answer",
    "answer applied": "answer",
    "ICE state completed": "ice",
    "connection state connected": "dtls",
}


class MarkHandler(logging.Handler):
    """Turns the peer's log lines into milestones of the side whose task logged them."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__(logging.DEBUG)
        self.recorder = recorder

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        what = LOG_MARKS.get(message)
        if what is None and message.startswith("call ICE servers "):
            what = "turn"
        if what is not None:
            self.recorder.mark(SIDE.get(), what)


class EventTap:
    """The stream an ``EventLog`` writes its JSON lines to: milestones from the events."""

    def __init__(self, recorder: Recorder, side: str) -> None:
        self.recorder = recorder
        self.side = side
        self.names: list[str] = []

    def write(self, text: str) -> int:
        now = time.monotonic()
        for line in text.splitlines():
            event = json.loads(line)
            self.names.append(event["event"])
            if event["event"] in ("admitted", "connected", "error", "ended"):
                self.recorder.mark(self.side, event["event"], now)
            elif event["event"] == "safety_code":
                self.recorder.mark(self.side, "verified", now)
            elif event["event"] == "media" and event["kind"] == "video":
                self.recorder.mark(self.side, "frame", now)
        return len(text)

    def flush(self) -> None:
        pass


# --- through Ruang ------------------------------------------------------------------------------


async def ruang_run(server: Any, link: str) -> dict[str, float | None]:
    from signaling.peer.config import PeerConfig
    from signaling.peer.events import EventLog
    from signaling.peer.link import parse_link
    from signaling.peer.session import Session
    from tests.support import PASSWORD

    rec = Recorder()
    handler = MarkHandler(rec)
    peer_log = logging.getLogger("ruang.peer")
    peer_log.addHandler(handler)
    parsed = parse_link(link)
    counselor = Session(
        PeerConfig(link=parsed, counselor=True, email=EMAIL, password=PASSWORD),
        EventLog(cast(TextIO, EventTap(rec, "counselor"))),
    )
    client = Session(
        PeerConfig(link=parsed, name="Bench", seconds=1.0),
        EventLog(cast(TextIO, EventTap(rec, "client"))),
    )
    tasks: list[asyncio.Task[int]] = []
    try:
        SIDE.set("counselor")
        tasks.append(asyncio.create_task(counselor.run()))
        deadline = time.monotonic() + 20
        while counselor._my_id is None:  # logged in, in its room, waiting for a knock
            if tasks[0].done() or time.monotonic() > deadline:
                raise RuntimeError("the counselor did not reach its room")
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # settle: its TURN prefetch and page fetches are done
        SIDE.set("client")
        t0 = time.monotonic()
        tasks.append(asyncio.create_task(client.run()))
        SIDE.set("bench")
        async with asyncio.timeout(RUN_TIMEOUT):
            codes = await asyncio.gather(*tasks)
        if codes != [0, 0]:
            raise RuntimeError(f"the peers exited with {codes}")
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        peer_log.removeHandler(handler)
    return {
        "joined": rel(rec.get("client", "joined"), t0),
        "admitted": rel(rec.get("client", "admitted"), t0),
        "settled": rel(rec.get("client", "settled"), t0),
        "round": rel(rec.get("counselor", "round"), t0),
        "verified": rel(rec.get("counselor", "verified"), t0),
        "offer": rel(rec.get("counselor", "offer"), t0),
        "answer": rel(rec.get("counselor", "answer"), t0),
        "ice": rel(rec.both("ice"), t0),
        "dtls": rel(rec.both("dtls"), t0),
        "frame": rel(rec.both("frame"), t0),
        "turn": rel(rec.get("client", "turn"), t0),  # call credentials in (not a step)
    }


def rel(at: float | None, t0: float) -> float | None:
    return None if at is None else at - t0


# --- direct, in one process ---------------------------------------------------------------------


async def direct_run() -> dict[str, float | None]:
    from signaling.peer.media import FrameCounter
    from signaling.peer.rtc import CallRound, RtcEvent

    rec = Recorder()
    consumers: list[asyncio.Task[None]] = []

    def notify_for(side: str) -> Callable[[RtcEvent], None]:
        def notify(ev: RtcEvent) -> None:
            if ev.kind == "state" and ev.state == "connected":
                rec.mark(side, "dtls")
            elif ev.kind == "track" and ev.track is not None and ev.track.kind == "video":

                def report(kind: str, frames: int) -> None:
                    rec.mark(side, "frame")

                consumers.append(
                    asyncio.create_task(FrameCounter("video", report).consume(ev.track))
                )

        return notify

    t0 = time.monotonic()
    co = CallRound(
        "direct",
        "counselor",
        peer_epoch="x",
        started_by_me=True,
        ice_servers=(),
        notify=notify_for("counselor"),
    )
    cl = CallRound(
        "direct", "client", peer_epoch="y", started_by_me=False, ice_servers=(),
        notify=notify_for("client"),
    )  # fmt: skip
    for side, r in (("counselor", co), ("client", cl)):
        r.pc.on("iceconnectionstatechange", ice_watch(rec, side, r))
    try:
        async with asyncio.timeout(RUN_TIMEOUT):
            cl.commit.on_commit(co.commit.commit_msg())
            co.commit.on_commit(cl.commit.commit_msg())
            co.commit.on_reveal(cl.commit.reveal_msg())
            cl.commit.on_reveal(co.commit.reveal_msg())
            rec.mark("counselor", "verified")
            offer = await co.make_offer()
            rec.mark("counselor", "offer")
            answer = await cl.accept_offer(offer)
            await co.accept_answer(answer)
            rec.mark("counselor", "answer")
            while rec.both("frame") is None:
                rec.changed.clear()
                await rec.changed.wait()
    finally:
        await co.close()
        await cl.close()
        for task in consumers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    out: dict[str, float | None] = {key: None for key, _, _ in MARKS}
    out["verified"] = rel(rec.get("counselor", "verified"), t0)
    out["offer"] = rel(rec.get("counselor", "offer"), t0)
    out["answer"] = rel(rec.get("counselor", "answer"), t0)
    for key in ("ice", "dtls", "frame"):
        out[key] = rel(rec.both(key), t0)
    return out


def ice_watch(rec: Recorder, side: str, r: Any) -> Callable[[], None]:
    def watch() -> None:
        if r.pc.iceConnectionState == "completed":
            rec.mark(side, "ice")

    return watch


# --- the runs -----------------------------------------------------------------------------------


async def bench(runs: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from server.tls import ensure_dev_certificate
    from tests.peer_support import make_room
    from tests.support import ServerProcess

    for name in ("aioice", "aiortc"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("ruang.peer").setLevel(logging.DEBUG)
    logging.getLogger("ruang.peer").propagate = False
    ruang: list[dict[str, Any]] = []
    direct: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        cert, key = ensure_dev_certificate(base / "certs")
        os.environ["SSL_CERT_FILE"] = str(cert)  # the peers trust the development certificate
        server = ServerProcess(base / "server", cert, key, {"RUANG_LOG_LEVEL": "INFO"})
        (base / "server").mkdir()
        server.add_counselor(EMAIL)
        await server.start()
        try:
            for i in range(runs + 1):  # run 0 is a warm-up of each
                link = await asyncio.to_thread(make_room, server, EMAIL)
                order = ("ruang", "direct") if i % 2 == 0 else ("direct", "ruang")
                for kind in order:
                    gc.collect()  # no run pays for the garbage of the runs before it
                    result = (
                        await ruang_run(server, link) if kind == "ruang" else await direct_run()
                    )
                    print(f"run {i} {kind}: {json.dumps(rounded(result))}", file=sys.stderr)
                    if i > 0:
                        (ruang if kind == "ruang" else direct).append(result)
                    await asyncio.sleep(0.5)
        finally:
            await server.stop()
    return ruang, direct


def rounded(result: dict[str, float | None]) -> dict[str, float | None]:
    return {k: None if v is None else round(v, 4) for k, v in result.items()}


def median(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if len(got) == len(values) and got else None


def ms(x: float | None) -> str:
    return "–" if x is None else f"{x * 1000:.0f} ms"


def table(ruang: list[dict[str, Any]], direct: list[dict[str, Any]]) -> tuple[str, float | None]:
    lines = [
        "| Milestone (since the knock) | Through Ruang | Step | Direct, in one process | Step |",
        "|---|---|---|---|---|",
    ]
    prev_r: float | None = 0.0
    prev_d: float | None = 0.0
    for key, label, in_direct in MARKS:
        r = median([x[key] for x in ruang])
        d = median([x[key] for x in direct]) if in_direct else None
        step_r = median(
            [None if x[key] is None else x[key] - (prev_of(x, key) or 0.0) for x in ruang]
        )
        step_d = (
            median([None if x[key] is None else x[key] - (prev_of(x, key) or 0.0) for x in direct])
            if in_direct
            else None
        )
        lines.append(f"| {label} | {ms(r)} | {ms(step_r)} | {ms(d)} | {ms(step_d)} |")
        prev_r, prev_d = r, d
    del prev_r, prev_d
    ratios = [
        x["frame"] / y["frame"]
        for x, y in zip(ruang, direct, strict=True)
        if x["frame"] is not None and y["frame"]
    ]
    ratio = statistics.median(ratios) if len(ratios) == len(ruang) and ratios else None
    met = ratio is not None and ratio <= GOAL
    lines.append("")
    lines.append(
        f"Ratio (Ruang / direct, knock to the first decoded frame at both sides; median of the "
        f"{len(ratios)} per-run ratios: {', '.join(f'{x:.2f}' for x in ratios)}): "
        f"**{'–' if ratio is None else f'{ratio:.2f}'}**; goal <= {GOAL:g}: "
        f"{'met' if met else 'NOT met'}."
    )
    return "\n".join(lines) + "\n", ratio


def prev_of(x: dict[str, Any], key: str) -> float | None:
    """The run's previous milestone that it has (direct runs start at "verified")."""
    keys = [k for k, _, _ in MARKS]
    for k in reversed(keys[: keys.index(key)]):
        if x.get(k) is not None:
            return float(x[k])
    return 0.0


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.callsetup", description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="measured runs of each (>= 3)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args(args_list)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if not os.environ.get("RUANG_TEST_NETNS"):
        if os.geteuid() != 0:
            print("bench.callsetup: needs root (a network namespace)", file=sys.stderr)
            return 2
        return in_namespace("bench.callsetup", args_list, nice=NICE)
    started = time.strftime("%Y-%m-%d")
    load_before = os.getloadavg()[0]
    ruang, direct = asyncio.run(bench(args.runs))
    load_after = os.getloadavg()[0]
    body, _ratio = table(ruang, direct)
    text = (
        f"## Call setup: knock to first frame, through Ruang vs direct ({started})\n\n"
        f"`sudo .venv/bin/python -m bench.callsetup --runs {args.runs}` ({platform.machine()}, "
        f"{os.cpu_count()} cores, one network namespace). Through Ruang: the real server "
        f"process and two real Python peers (`ruang join`'s code; the counselor already in its "
        f"room), over TLS on loopback, the counselor admitting the client; direct: the same two "
        f"aiortc peer connections (same codecs, synthetic tracks, data channel and candidate "
        f"gathering) exchanging commit, reveal and SDP in memory. Both peers share one process "
        f"in both cases (at nice {NICE}, as is the server; the machine's 1-minute load average "
        f"was {load_before:.1f} before and {load_after:.1f} after). Medians of {len(ruang)} runs "
        f"of each, alternating, after one warm-up of each, each run after a full garbage "
        f"collection of the peers' process (else a run sometimes pays a 40-70 ms collection of "
        f"its predecessors' garbage in the middle of its setup); a step is the median time "
        f"from the previous milestone.\n\n" + body
    )
    print(text)
    if not args.no_write:
        write_section(BEGIN, END, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
