"""The relay load generator: a separate process, so the client side never shares the server's core.

It speaks Ruang's protocol (log in as a counselor, make one room per pair, counselor and client
sockets, knock, admit, then ``relay`` envelopes both ways) or PeerJS's (``/peerjs?key=&id=&token=``,
``OPEN``, then ``CANDIDATE`` messages with ``dst``; the server stamps ``src``). The bare aiohttp
floor (``bench.bare_relay``) speaks PeerJS's protocol too.

Every envelope carries the same ~600-character payload: the pair, the direction and a sequence
number, then filler (base64url characters, so Ruang accepts it as a ``box``). Each receiver checks
that it came from its own peer, belongs to its own pair and direction, and carries exactly the
next sequence number (a WebSocket is ordered, so "next, every time, and nothing missing at the
end" is exactly once).

Modes:

* ``throughput``: every direction of every pair keeps up to ``--window`` envelopes in flight; the
  result is envelopes delivered per second over ``--seconds``, after a warm-up.
* ``latency``: a fixed offered rate (``--rate`` envelopes/s across all pairs, round robin); the
  result is p50/p99 of send-to-delivery time (both ends live in this process: one clock).

With ``--server-pid`` it reads the server's utime+stime from ``/proc/<pid>/stat`` over the
measured interval (CPU seconds per delivered envelope). One JSON object goes to stdout.

    python -m bench.loadgen --protocol peerjs --url http://127.0.0.1:9000 --pairs 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import statistics
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp

PAYLOAD_CHARS = 600
EPOCH = "E" * 22  # Ruang's epoch: any id-shaped string (the server never looks inside)
PEERJS_KEY = "peerjs"
SETUP_TIMEOUT = 60.0
DRAIN_TIMEOUT = 15.0
_FILLER = ("Ab9-_Zx7" * (PAYLOAD_CHARS // 8 + 1))[:PAYLOAD_CHARS]
_HEAD_RE = re.compile(r"p(\d{6})([ab])(\d{10})")
# Delivered envelopes as each server writes them (checked whole; anything else is parsed as JSON)
_RUANG_FRAME = re.compile(
    r'\{"type":"relay","from":"([\w-]+)","epoch":"' + EPOCH + r'","box":"([\w-]+)"\}', re.ASCII
).fullmatch
_PEERJS_FRAME = re.compile(
    r'\{"type":"CANDIDATE","src":"(?P<src>\w+)","dst":"\w+","payload":"(?P<payload>[\w-]+)"\}',
    re.ASCII,
).fullmatch
_FLOOR_FRAME = re.compile(
    r'\{"type": "CANDIDATE", "dst": "\w+", "payload": "(?P<payload>[\w-]+)", '
    r'"src": "(?P<src>\w+)"\}',
    re.ASCII,
).fullmatch


class LoadError(RuntimeError):
    """Setup failed (a server refused a login, a room, a join): the run cannot be measured."""


def payload(pair: int, direction: str, seq: int) -> str:
    head = f"p{pair:06d}{direction}{seq:010d}"
    return head + _FILLER[len(head) :]


def stat_cpu(pid: int) -> float:
    """utime+stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


@dataclass(slots=True)
class Direction:
    """One sender -> receiver way of one pair."""

    pair: int
    name: str  # "a" (a -> b) or "b" (b -> a)
    ws: Any  # the sender's socket
    dst: str  # the receiver's id, as the sender addresses it
    src: str  # the sender's id, as the receiver sees it stamped
    sent: int = 0
    received: int = 0
    sent_at: deque[float] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def inflight(self) -> int:
        return self.sent - self.received


@dataclass
class Tally:
    delivered: int = 0
    errors: int = 0
    first_errors: list[str] = field(default_factory=list)
    counting: bool = False
    counted: int = 0
    latencies: list[float] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.first_errors) < 5:
            self.first_errors.append(what)


class Protocol:
    """How one server speaks: connecting a pair, and the frames of one envelope."""

    name = ""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.http: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=self.url),
            connector=aiohttp.TCPConnector(limit=0),
        )

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()

    async def pair(self, index: int) -> tuple[Any, str, Any, str]:
        """Two connected sockets that may talk: (ws_a, id of a, ws_b, id of b)."""
        raise NotImplementedError

    async def idle(self, index: int) -> Any:
        """One connected, idle socket (memory bench)."""
        raise NotImplementedError

    def frame(self, dst: str, body: str) -> str:
        raise NotImplementedError

    def read(self, text: str) -> tuple[str, str] | tuple[()] | None:
        """(sender id, payload) of a delivered envelope, () for a control frame to ignore, or
        None for anything else (an error)."""
        raise NotImplementedError


class PeerJs(Protocol):
    name = "peerjs"

    async def _connect(self, peer_id: str) -> Any:
        assert self.http is not None
        ws = await self.http.ws_connect(
            f"{self.url}/peerjs?key={PEERJS_KEY}&id={peer_id}&token=t{peer_id}",
            autoping=True,
            max_msg_size=1 << 20,
        )
        first = await ws.receive(timeout=SETUP_TIMEOUT)
        if first.type is not aiohttp.WSMsgType.TEXT or json.loads(first.data).get("type") != "OPEN":
            raise LoadError(f"{self.name}: no OPEN for {peer_id}: {first.type}")
        return ws

    async def pair(self, index: int) -> tuple[Any, str, Any, str]:
        a, b = f"p{index}a{os.getpid()}", f"p{index}b{os.getpid()}"
        return await self._connect(a), a, await self._connect(b), b

    async def idle(self, index: int) -> Any:
        return await self._connect(f"i{index}x{os.getpid()}")

    def frame(self, dst: str, body: str) -> str:
        return '{"type":"CANDIDATE","dst":"' + dst + '","payload":"' + body + '"}'

    def read(self, text: str) -> tuple[str, str] | tuple[()] | None:
        # PeerJS writes {type, src, dst, payload}; the floor {type, dst, payload, src}.
        m = _PEERJS_FRAME(text) or _FLOOR_FRAME(text)
        if m is not None:
            return m.group("src"), m.group("payload")
        msg = json.loads(text)  # any other spelling: the slow way
        if msg.get("type") != "CANDIDATE":
            return None
        return msg.get("src", ""), msg.get("payload", "")


class Ruang(Protocol):
    name = "ruang"

    def __init__(self, url: str, email: str, password: str) -> None:
        super().__init__(url)
        self.email = email
        self.password = password
        self.csrf = ""
        self.rooms: list[str] = []

    async def login(self) -> None:
        assert self.http is not None
        async with self.http.get(self.url + "/login") as r:
            page = await r.text()
        m = re.search(r'name="csrf" value="([^"]+)"', page)
        if not m:
            raise LoadError("ruang: no CSRF token on /login")
        form = {"email": self.email, "password": self.password, "csrf": m.group(1), "next": "/"}
        async with self.http.post(
            self.url + "/login", data=form, allow_redirects=False, headers=self._origin()
        ) as r:
            if r.status != 303:
                raise LoadError(f"ruang: login answered {r.status}")
        async with self.http.get(self.url + "/") as r:
            page = await r.text()
        m = re.search(r'data-csrf="([^"]+)"', page)
        if not m:
            raise LoadError("ruang: no CSRF token on the dashboard")
        self.csrf = m.group(1)

    def _origin(self) -> dict[str, str]:
        return {"Origin": self.url}

    async def room(self) -> str:
        assert self.http is not None
        headers = {**self._origin(), "X-CSRF-Token": self.csrf}
        async with self.http.post(
            self.url + "/api/rooms", json={"label": "bench"}, headers=headers
        ) as r:
            if r.status != 201:
                raise LoadError(f"ruang: POST /api/rooms answered {r.status}")
            room_id: str = (await r.json())["id"]
        return room_id

    async def open(self) -> None:
        await super().open()
        # Clients have no account: their sockets carry no counselor cookie.
        self.anon = aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(), connector=aiohttp.TCPConnector(limit=0)
        )

    async def close(self) -> None:
        await self.anon.close()
        await super().close()

    async def _join(self, room: str, role: str) -> tuple[Any, dict[str, Any]]:
        assert self.http is not None
        http = self.http if role == "counselor" else self.anon
        ws = await http.ws_connect(
            self.url + "/ws", headers=self._origin(), autoping=True, max_msg_size=1 << 20
        )
        await ws.send_str(json.dumps({"type": "join", "v": 1, "room": room, "role": role}))
        first = await ws.receive(timeout=SETUP_TIMEOUT)
        if first.type is not aiohttp.WSMsgType.TEXT:
            raise LoadError(f"ruang: join as {role} closed: {first.type} {first.data}")
        joined: dict[str, Any] = json.loads(first.data)
        if joined.get("type") != "joined":
            raise LoadError(f"ruang: join as {role} answered {joined.get('type')}")
        return ws, joined

    async def _expect(self, ws: Any, kind: str, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + SETUP_TIMEOUT
        while time.monotonic() < deadline:
            msg = await ws.receive(timeout=SETUP_TIMEOUT)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                raise LoadError(f"ruang: socket closed waiting for {kind}: {msg.data}")
            obj: dict[str, Any] = json.loads(msg.data)
            if obj.get("type") == kind and all(obj.get(k) == v for k, v in match.items()):
                return obj
        raise LoadError(f"ruang: no {kind}")

    async def pair(self, index: int) -> tuple[Any, str, Any, str]:
        room = await self.room()
        counselor, _ = await self._join(room, "counselor")
        client, joined = await self._join(room, "client")
        client_id = joined["id"]
        await self._expect(counselor, "peer", id=client_id, state="waiting")
        await counselor.send_str(json.dumps({"type": "admit", "id": client_id}))
        await self._expect(client, "admitted")
        await self._expect(counselor, "peer", id=client_id, state="admitted")
        return counselor, "counselor", client, client_id

    async def idle(self, index: int) -> Any:
        room = self.rooms[index % len(self.rooms)]
        ws, joined = await self._join(room, "client")
        if joined.get("state") != "waiting":
            raise LoadError("ruang: an idle client was not waiting")
        return ws

    def frame(self, dst: str, body: str) -> str:
        return '{"type":"relay","to":"' + dst + '","epoch":"' + EPOCH + '","box":"' + body + '"}'

    def read(self, text: str) -> tuple[str, str] | tuple[()] | None:
        m = _RUANG_FRAME(text)
        if m is not None:
            return m.group(1), m.group(2)
        msg = json.loads(text)  # any other frame: the slow way
        kind = msg.get("type")
        if kind in ("token", "peer", "call_servers"):
            return ()
        if kind != "relay":
            return None
        return msg.get("from", ""), msg.get("box", "")


def make_protocol(args: argparse.Namespace) -> Protocol:
    if args.protocol == "ruang":
        return Ruang(args.url, args.email, os.environ.get("BENCH_PASSWORD", ""))
    return PeerJs(args.url)


async def reader(
    proto: Protocol, ws: Any, incoming: dict[str, Direction], tally: Tally, latency: bool
) -> None:
    """Deliveries to one socket; ``incoming`` maps a payload's (pair, direction) to its way."""
    async for msg in ws:
        if msg.type is not aiohttp.WSMsgType.TEXT:
            break
        now = time.perf_counter()
        got = proto.read(msg.data)
        if got is None:
            tally.error(f"unexpected frame: {msg.data[:80]}")
            continue
        if not got:
            continue  # a control frame the protocol sends on its own (Ruang's token refresh)
        sender, body = got
        m = _HEAD_RE.match(body)
        way = incoming.get(body[:8]) if m else None
        if m is None or way is None:
            tally.error("an envelope for another pair or direction")
            continue
        if sender != way.src:
            tally.error("wrong sender stamped")
            continue
        if int(m.group(3)) != way.received or len(body) != PAYLOAD_CHARS:
            tally.error(f"out of order, duplicate or altered: {m.group(3)} != {way.received}")
            continue
        way.received += 1
        tally.delivered += 1
        if tally.counting:
            tally.counted += 1
        if latency:
            sent = way.sent_at.popleft()
            if tally.counting:
                tally.latencies.append(now - sent)
        way.wake.set()


async def sender(proto: Protocol, way: Direction, window: int, stop: asyncio.Event) -> None:
    ws, dst, pair, name = way.ws, way.dst, way.pair, way.name
    while not stop.is_set():
        while way.inflight >= window:
            way.wake.clear()
            await way.wake.wait()
            if stop.is_set():
                return
        await ws.send_str(proto.frame(dst, payload(pair, name, way.sent)))
        way.sent += 1


async def paced(
    proto: Protocol, ways: list[Direction], rate: float, stop: asyncio.Event, tally: Tally
) -> None:
    """A fixed offered rate across all ways, round robin; a way with ``window`` in flight skips
    its turn (counted, so an overloaded server shows)."""
    loop = asyncio.get_running_loop()
    interval = 1.0 / rate
    start = loop.time()
    n = 0
    while not stop.is_set():
        due = start + n * interval
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        way = ways[n % len(ways)]
        way.sent_at.append(time.perf_counter())
        await way.ws.send_str(proto.frame(way.dst, payload(way.pair, way.name, way.sent)))
        way.sent += 1
        n += 1


async def connect_pairs(proto: Protocol, pairs: int) -> list[Direction]:
    ways: list[Direction] = []
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> tuple[int, tuple[Any, str, Any, str]]:
        async with sem:
            return i, await proto.pair(i)

    for i, (ws_a, id_a, ws_b, id_b) in await asyncio.gather(*(one(i) for i in range(pairs))):
        ways.append(Direction(i, "a", ws_a, id_b, id_a))
        ways.append(Direction(i, "b", ws_b, id_a, id_b))
    return ways


async def relay_run(args: argparse.Namespace) -> dict[str, Any]:
    proto = make_protocol(args)
    await proto.open()
    try:
        if isinstance(proto, Ruang):
            await proto.login()
        ways = await asyncio.wait_for(connect_pairs(proto, args.pairs), SETUP_TIMEOUT * 2)
        tally = Tally()
        latency = args.mode == "latency"
        readers = []
        for w in ways[::2]:
            other = ways[ways.index(w) + 1]
            # a's socket receives b's envelopes and the other way round
            readers.append(
                asyncio.create_task(reader(proto, w.ws, {f"p{w.pair:06d}b": other}, tally, latency))
            )
            readers.append(
                asyncio.create_task(reader(proto, other.ws, {f"p{w.pair:06d}a": w}, tally, latency))
            )
        stop = asyncio.Event()
        if latency:
            senders = [asyncio.create_task(paced(proto, ways, args.rate, stop, tally))]
        else:
            senders = [asyncio.create_task(sender(proto, w, args.window, stop)) for w in ways]
        await asyncio.sleep(args.warmup)
        cpu0 = stat_cpu(args.server_pid) if args.server_pid else 0.0
        own0 = stat_cpu(os.getpid())
        t0 = time.perf_counter()
        tally.counting = True
        await asyncio.sleep(args.seconds)
        tally.counting = False
        elapsed = time.perf_counter() - t0
        cpu = (stat_cpu(args.server_pid) - cpu0) if args.server_pid else 0.0
        own_cpu = stat_cpu(os.getpid()) - own0
        counted = tally.counted
        stop.set()
        for w in ways:
            w.wake.set()
        await asyncio.gather(*senders, return_exceptions=True)
        # Everything sent must arrive, once: wait for the stragglers (bounded).
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while any(w.inflight for w in ways) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        missing = sum(w.inflight for w in ways)
        sent = sum(w.sent for w in ways)
        for w in ways:
            await w.ws.close()
        await asyncio.gather(*readers, return_exceptions=True)
        result: dict[str, Any] = {
            "protocol": proto.name,
            "mode": args.mode,
            "pairs": args.pairs,
            "window": args.window,
            "seconds": elapsed,
            "delivered": counted,
            "per_second": counted / elapsed,
            "sent_total": sent,
            "delivered_total": tally.delivered,
            "missing": missing,
            "errors": tally.errors,
            "first_errors": tally.first_errors,
            "server_cpu_s": cpu,
            "cpu_us_per_msg": (cpu / counted * 1e6) if counted else None,
            "loadgen_cpu_s": own_cpu,
        }
        if latency:
            lat = sorted(tally.latencies)
            result["offered_rate"] = args.rate
            result["latency_n"] = len(lat)
            if lat:
                result["p50_ms"] = statistics.median(lat) * 1e3
                result["p99_ms"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3
        return result
    finally:
        await proto.close()


async def idle_run(args: argparse.Namespace) -> dict[str, Any]:
    """Open ``--idle`` sockets, report, then hold them until stdin closes (the orchestrator
    measures the server's memory meanwhile)."""
    proto = make_protocol(args)
    await proto.open()
    sockets: list[Any] = []
    try:
        if isinstance(proto, Ruang):
            await proto.login()
            proto.rooms = [await proto.room() for _ in range(args.rooms)]
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> Any:
            async with sem:
                return await proto.idle(i)

        sockets = await asyncio.wait_for(
            asyncio.gather(*(one(i) for i in range(args.idle))), SETUP_TIMEOUT * 4
        )
        print(json.dumps({"protocol": proto.name, "open": len(sockets)}), flush=True)
        heartbeat = json.dumps({"type": "HEARTBEAT"})
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        loop.add_reader(sys.stdin.fileno(), lambda: done.done() or done.set_result(None))
        while not done.done():  # PeerJS drops a peer that sends no heartbeat for 60 s
            await asyncio.wait([done], timeout=5.0)
            if isinstance(proto, PeerJs) and not done.done():
                for ws in sockets:
                    await ws.send_str(heartbeat)
        loop.remove_reader(sys.stdin.fileno())
        return {"protocol": proto.name, "closed": len(sockets)}
    finally:
        for ws in sockets:
            await ws.close()
        await proto.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n")[0])
    p.add_argument("--protocol", choices=["ruang", "peerjs"], required=True)
    p.add_argument("--url", required=True, help="http://host:port of the server")
    p.add_argument("--email", default="bench@example.org", help="Ruang counselor (BENCH_PASSWORD)")
    p.add_argument("--mode", choices=["throughput", "latency", "idle"], default="throughput")
    p.add_argument("--pairs", type=int, default=50)
    p.add_argument("--window", type=int, default=8, help="in flight per direction")
    p.add_argument("--rate", type=float, default=2000.0, help="latency mode: envelopes/s")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=1.5)
    p.add_argument("--server-pid", type=int, default=0)
    p.add_argument("--idle", type=int, default=1000, help="idle mode: sockets")
    p.add_argument("--rooms", type=int, default=50, help="idle mode (Ruang): rooms to wait in")
    args = p.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    runner = idle_run if args.mode == "idle" else relay_run
    result = asyncio.run(runner(args))
    print(json.dumps(result), flush=True)
    return 0 if not result.get("errors") and not result.get("missing") else 1


if __name__ == "__main__":
    sys.exit(main())
