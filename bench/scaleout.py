"""Relay throughput with one and two server processes on the same machine (scale-out).

Three set-ups, each measured N times (default 3; the median is reported):

* ``1 process, in-process hub``: one ``ruang serve``, no Redis (the default deployment);
* ``1 process, Redis hub``: the same process with ``RUANG_REDIS_URL`` (every relay goes through
  Redis pub/sub, even though both ends are local);
* ``2 processes, Redis hub``: two ``ruang serve`` sharing the secret, the database and a Redis;
  in every pair the counselor is on the first process and the client on the second, so every
  envelope crosses from one process to the other.

The load is bench.loadgen's (F's relay load generator, reused, not copied): ``--pairs`` rooms,
each a counselor and an admitted client, every direction keeping up to ``--window`` envelopes of
~600 characters in flight; each receiver checks sender, pair, direction and the exact next
sequence number, and after the run everything sent must have arrived (exactly once). The result
is envelopes delivered per second over ``--seconds`` after a warm-up, and the CPU seconds the
server side spent per envelope (all Ruang processes plus Redis).

Servers speak plain HTTP on loopback (as behind the TLS proxy), with the limits the load would
exceed raised through ``RUANG_*`` variables. Nothing is pinned: the servers, Redis and the load
generator share the machine's cores, which is the point of the comparison. The set-ups take turns
within each run, so a slow patch of the machine hits them alike. The table goes into
docs/performance.md between the ``scaleout`` markers (the rest of the file is kept), unless
``--no-write``.

    sudo .venv/bin/python -m bench.scaleout [--runs 3] [--pairs 50] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from bench.common import write_section  # noqa: E402
from bench.loadgen import (  # noqa: E402
    DRAIN_TIMEOUT,
    SETUP_TIMEOUT,
    Direction,
    LoadError,
    Ruang,
    Tally,
    connect_pairs,
    reader,
    sender,
    stat_cpu,
)
from bench.servers import EMAIL, free_port, ruang_env  # noqa: E402

DOC = ROOT / "docs" / "performance.md"
BEGIN = "<!-- scaleout:begin -->"
END = "<!-- scaleout:end -->"
START_TIMEOUT = 30.0
REDIS = shutil.which("redis-server")


class SetupFailed(RuntimeError):
    """A server or Redis did not start, or the load could not be set up."""


@dataclass(frozen=True)
class Setup:
    key: str
    label: str
    processes: int
    redis: bool


SETUPS = (
    Setup("1-local", "1 process, in-process hub", 1, False),
    Setup("1-redis", "1 process, Redis hub", 1, True),
    Setup("2-redis", "2 processes, Redis hub (counselor on one, client on the other)", 2, True),
)


# --- processes -------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SetupFailed(f"{self.name} exited:\n{self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise SetupFailed(f"{self.name} did not listen within {START_TIMEOUT:g} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _spawn(name: str, argv: list[str], env: dict[str, str], tmp: Path, port: int) -> Proc:
    log = tmp / f"{name}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    return Proc(name, proc, port, log)


def start_redis(tmp: Path) -> Proc:
    """redis-server on a free loopback port, nothing written to disk."""
    if REDIS is None:
        raise SetupFailed("redis-server is not installed (scripts/install-system-deps.sh)")
    port = free_port()
    argv = [
        REDIS,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--dir", str(tmp),
        "--protected-mode", "yes",
    ]  # fmt: skip
    redis = _spawn("redis", argv, dict(os.environ), tmp, port)
    redis.wait_listening()
    return redis


@contextlib.contextmanager
def deployment(setup: Setup, tmp: Path) -> Iterator[tuple[list[Proc], Proc | None, str]]:
    """Start the set-up's Redis and Ruang processes; yield (processes, redis, password)."""
    tmp.mkdir(parents=True, exist_ok=True)
    started: list[Proc] = []
    redis: Proc | None = None
    try:
        if setup.redis:
            redis = start_redis(tmp)
            started.append(redis)
        ports = [free_port() for _ in range(setup.processes)]
        secret = secrets.token_urlsafe(32)
        password = secrets.token_urlsafe(18)
        envs = []
        for port in ports:
            env = ruang_env(tmp, port, secret)  # the same data dir (database) and secret
            env["RUANG_PUBLIC_ORIGIN"] = ",".join(f"http://127.0.0.1:{p}" for p in ports)
            if redis is not None:
                env["RUANG_REDIS_URL"] = f"redis://127.0.0.1:{redis.port}/0"
            envs.append(env)
        added = subprocess.run(
            [sys.executable, "-m", "server", "counselor", "add", EMAIL, "--password-stdin"],
            input=password + "\n",
            env=envs[0],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if added.returncode != 0:
            raise SetupFailed(f"ruang counselor add: {added.stderr[-2000:]}")
        procs = []
        for i, (port, env) in enumerate(zip(ports, envs, strict=True)):
            p = _spawn(f"ruang{i + 1}", [sys.executable, "-m", "server", "serve"], env, tmp, port)
            started.append(p)
            p.wait_listening()
            procs.append(p)
        if redis is not None:
            wait_redis_clients(redis, len(procs))
        yield procs, redis, password
    finally:
        for p in reversed(started):
            p.stop()


# --- load ------------------------------------------------------------------------------------


class SplitRuang(Ruang):
    """bench.loadgen's Ruang protocol, with each pair's client on another process."""

    def __init__(self, url: str, client_url: str, email: str, password: str) -> None:
        super().__init__(url, email, password)
        self.client_url = client_url.rstrip("/")

    async def _join(self, room: str, role: str) -> tuple[Any, dict[str, Any]]:
        assert self.http is not None
        url = self.client_url if role == "client" else self.url
        ws = await self.http.ws_connect(
            url + "/ws", headers={"Origin": url}, autoping=True, max_msg_size=1 << 20
        )
        await ws.send_str(json.dumps({"type": "join", "v": 1, "room": room, "role": role}))
        first = await ws.receive(timeout=SETUP_TIMEOUT)
        if first.type is not aiohttp.WSMsgType.TEXT:
            raise LoadError(f"ruang: join as {role} closed: {first.type} {first.data}")
        joined: dict[str, Any] = json.loads(first.data)
        if joined.get("type") != "joined":
            raise LoadError(f"ruang: join as {role} answered {joined.get('type')}")
        return ws, joined


@dataclass
class Result:
    per_second: float
    delivered: int
    sent_total: int
    missing: int
    errors: int
    first_errors: list[str] = field(default_factory=list)
    cpu_us_per_msg: float | None = None

    @property
    def clean(self) -> bool:
        """Everything sent arrived exactly once, in order, from the right sender."""
        return self.missing == 0 and self.errors == 0


async def measure(
    proto: SplitRuang,
    *,
    pairs: int,
    window: int,
    seconds: float,
    warmup: float,
    pids: Sequence[int],
) -> Result:
    """bench.loadgen's throughput mode on ``proto``: every direction keeps ``window`` in flight."""
    await proto.open()
    try:
        await proto.login()
        ways: list[Direction] = await asyncio.wait_for(
            connect_pairs(proto, pairs), SETUP_TIMEOUT * 2
        )
        tally = Tally()
        readers = []
        for a, b in zip(ways[::2], ways[1::2], strict=True):
            # a's socket receives b's envelopes and the other way round
            readers.append(
                asyncio.create_task(reader(proto, a.ws, {f"p{a.pair:06d}b": b}, tally, False))
            )
            readers.append(
                asyncio.create_task(reader(proto, b.ws, {f"p{a.pair:06d}a": a}, tally, False))
            )
        stop = asyncio.Event()
        senders = [asyncio.create_task(sender(proto, w, window, stop)) for w in ways]
        await asyncio.sleep(warmup)
        cpu0 = sum(stat_cpu(pid) for pid in pids)
        t0 = time.perf_counter()
        tally.counting = True
        await asyncio.sleep(seconds)
        tally.counting = False
        elapsed = time.perf_counter() - t0
        cpu = sum(stat_cpu(pid) for pid in pids) - cpu0
        counted = tally.counted
        stop.set()
        for w in ways:
            w.wake.set()
        await asyncio.gather(*senders, return_exceptions=True)
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while any(w.inflight for w in ways) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        missing = sum(w.inflight for w in ways)
        sent = sum(w.sent for w in ways)
        for w in ways:
            await w.ws.close()
        await asyncio.gather(*readers, return_exceptions=True)
        return Result(
            per_second=counted / elapsed,
            delivered=tally.delivered,
            sent_total=sent,
            missing=missing,
            errors=tally.errors,
            first_errors=tally.first_errors,
            cpu_us_per_msg=(cpu / counted * 1e6) if counted else None,
        )
    finally:
        await proto.close()


def run_setup(setup: Setup, tmp: Path, args: argparse.Namespace) -> Result:
    with deployment(setup, tmp) as (procs, redis, password):
        client = procs[-1]
        proto = SplitRuang(procs[0].url, client.url, EMAIL, password)
        pids = [p.proc.pid for p in procs] + ([redis.proc.pid] if redis else [])
        return asyncio.run(
            measure(
                proto,
                pairs=args.pairs,
                window=args.window,
                seconds=args.seconds,
                warmup=args.warmup,
                pids=pids,
            )
        )


def redis_clients(port: int) -> int:
    """How many clients a local Redis has connected (``INFO clients``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"INFO clients\r\n")
        data = b""
        while b"connected_clients:" not in data or not data.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    match = re.search(rb"connected_clients:(\d+)", data)
    return int(match.group(1)) - 1 if match else 0  # not counting this connection


def wait_redis_clients(redis: Proc, want: int, timeout: float = 10.0) -> None:
    """Every Ruang process connected to Redis: RUANG_REDIS_URL really selects the Redis hub."""
    deadline = time.monotonic() + timeout
    have = 0
    while time.monotonic() < deadline:
        have = redis_clients(redis.port)
        if have >= want:
            return
        time.sleep(0.1)
    raise SetupFailed(f"{want} Ruang processes started with RUANG_REDIS_URL, {have} Redis clients")


# --- report ----------------------------------------------------------------------------------


def table(
    results: dict[str, list[Result]],
    skipped: dict[str, str],
    args: argparse.Namespace,
    load: float | None = None,
    failures: dict[str, list[str]] | None = None,
) -> str:
    """The markdown section: medians over the clean runs (everything delivered exactly once);
    runs that lost, duplicated or could not set up are counted and named, never averaged in."""
    failures = failures or {}
    day = time.strftime("%Y-%m-%d", time.gmtime())
    busy = f" Load average when the bench started: {load:.1f}." if load is not None else ""
    lines = [
        f"## Relay throughput: one process or two ({day})",
        "",
        f"`sudo .venv/bin/python -m bench.scaleout --runs {args.runs}` ({platform.machine()}, "
        f"{os.cpu_count()} cores shared by the servers, Redis and the load generator, nothing "
        f"pinned; Python {platform.python_version()}). {args.pairs} rooms, each a counselor and "
        f"an admitted client, every direction keeping {args.window} envelopes of about 600 "
        f"characters in flight; delivered envelopes per second over {args.seconds:g} s after a "
        f"{args.warmup:g} s warm-up (bench.loadgen's generator). Server CPU counts every Ruang "
        "process and Redis. A run is clean when every envelope arrived exactly once, in order, "
        f"from the right sender; the figures are over the clean runs.{busy}",
        "",
        "| Set-up | Envelopes/s (median) | Min | Max | Server CPU per envelope | Clean runs |",
        "|---|---|---|---|---|---|",
    ]
    base: float | None = None
    notes = []
    for setup in SETUPS:
        if setup.key in skipped:
            lines.append(f"| {setup.label} | not measured: {skipped[setup.key]} | | | | 0 |")
            continue
        rs = results.get(setup.key, [])
        failed = failures.get(setup.key, [])
        if not rs and not failed:
            continue
        clean = [r for r in rs if r.clean]
        total = len(rs) + len(failed)
        if failed:
            notes.append(f"{setup.label}: {len(failed)} of {total} runs not clean ({failed[0]})")
        if not clean:
            lines.append(f"| {setup.label} | no clean run | | | | 0 of {total} |")
            continue
        rates = [r.per_second for r in clean]
        med = statistics.median(rates)
        if setup.key == "1-local":
            base = med
        ratio = f" ({med / base:.2f}x)" if base and setup.key != "1-local" else ""
        cpus = [r.cpu_us_per_msg for r in clean if r.cpu_us_per_msg is not None]
        cpu = f"{statistics.median(cpus):.0f} µs" if cpus else ""
        lines.append(
            f"| {setup.label} | {med:,.0f}{ratio} | {min(rates):,.0f} | {max(rates):,.0f} | "
            f"{cpu} | {len(clean)} of {total} |"
        )
    if notes:
        lines += ["", "Runs that were not clean: " + "; ".join(notes) + "."]
    return "\n".join(lines) + "\n"


def write_doc(section: str, doc: Path = DOC) -> None:
    """Put ``section`` between the scaleout markers of ``doc`` (appended if they are missing)."""
    write_section(BEGIN, END, section, doc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--pairs", type=int, default=50)
    p.add_argument("--window", type=int, default=8, help="envelopes in flight per direction")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=1.5)
    p.add_argument(
        "--only", choices=[s.key for s in SETUPS], action="append", help="measure only these"
    )
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument("--json", type=Path, help="also write every run's figures here")
    args = p.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    chosen = [s for s in SETUPS if not args.only or s.key in args.only]
    skipped: dict[str, str] = {}
    if REDIS is None:
        for s in chosen:
            if s.redis:
                skipped[s.key] = "redis-server is not installed"
    load = os.getloadavg()[0]
    results: dict[str, list[Result]] = {s.key: [] for s in chosen}
    failures: dict[str, list[str]] = {s.key: [] for s in chosen}
    with tempfile.TemporaryDirectory(prefix="ruang-scaleout-") as tmp_dir:
        for run in range(args.runs):
            for setup in chosen:
                if setup.key in skipped:
                    continue
                tmp = Path(tmp_dir) / f"{setup.key}-{run}"
                name = f"{setup.label}, run {run + 1}"
                try:
                    r = run_setup(setup, tmp, args)
                except (SetupFailed, LoadError, TimeoutError, OSError) as exc:
                    print(f"scaleout: {name}: {exc}", file=sys.stderr)
                    why = f"{type(exc).__name__}: {str(exc)[:120]}"
                    failures[setup.key].append(why + keep_logs(tmp, f"{setup.key}-{run + 1}"))
                    continue
                print(
                    f"scaleout: {name}: {r.per_second:,.0f} envelopes/s, "
                    f"missing {r.missing}, errors {r.errors}",
                    file=sys.stderr,
                )
                if r.clean:
                    results[setup.key].append(r)
                else:
                    print(f"scaleout: first errors: {r.first_errors}", file=sys.stderr)
                    first = r.first_errors[0][:100] if r.first_errors else ""
                    why = f"{r.missing} missing, {r.errors} errors, the first `{first}`"
                    failures[setup.key].append(why + keep_logs(tmp, f"{setup.key}-{run + 1}"))
    section = table(results, skipped, args, load, failures)
    print(section)
    if args.json:
        args.json.write_text(
            json.dumps({k: [vars(r) for r in v] for k, v in results.items()}, indent=2)
        )
    if not args.no_write and any(results.values()):
        write_doc(section)
    return 1 if any(failures.values()) else 0


def keep_logs(tmp: Path, name: str) -> str:
    """A run that was not clean: its servers' and Redis's logs go to
    test-artifacts/scaleout-<set-up>-<run>/; returns the first warning a server logged (Ruang
    logs event kinds and counts, never content), as a note for the table."""
    dest = ROOT / "test-artifacts" / f"scaleout-{name}"
    dest.mkdir(parents=True, exist_ok=True)
    first = ""
    for log in sorted(tmp.glob("*.log")):
        shutil.copyfile(log, dest / log.name)
        if log.name.startswith("ruang") and not first:
            for line in log.read_text(errors="replace").splitlines():
                match = re.search(r" (?:WARNING|ERROR) (\S+: .*)", line)
                if match:
                    first = match.group(1)[:120]
                    break
    print(f"scaleout: logs kept in {dest}", file=sys.stderr)
    return f"; server log: `{first}`" if first else ""


if __name__ == "__main__":
    sys.exit(main())
