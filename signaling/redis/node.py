"""One server process as the other processes see it: its sockets, its channel, its heartbeat.

Fan-out: one pub/sub channel per process, not per room. Each participant's record names the
process and connection that hold its socket, so whatever the state machine sends to it is
published on that process's channel (or delivered directly when it is this process). A process
subscribes once, whatever the number of rooms, there is no SUBSCRIBE churn as rooms come and go,
and a message reaches exactly the processes with a recipient: this scales to thousands of rooms,
where a channel per room would cost every process a subscription per room it serves.

Presence: every process writes a heartbeat every ``heartbeat`` seconds. A process whose heartbeat
is older than ``node_ttl`` is dead: the first live process to notice takes its participants away
(the others see them ``connected: false``) and their resume windows start; they expire as in one
process (whichever process sees the deadline first), and their tokens work on any process.

Redis outage: a process that loses Redis (the subscription breaks, heartbeats fail twice, or
Redis no longer knows the process: a restart without persistence) closes its sockets with
GOING_AWAY and refuses joins until Redis answers again (reconnecting with a bounded backoff);
peers resume with their tokens, which rebuild their places from the claims.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from signaling.errors import CloseCode
from signaling.limits import RoomLimits, SignalingStats
from signaling.messages import GoneReason, Role, Token, dump
from signaling.redis.store import Effect, Keys, RedisUnavailable, RoomStore, RoomTxn
from signaling.rooms import Participant, Room
from signaling.sink import Sink

log = logging.getLogger("ruang.hub.redis")
T = TypeVar("T")
FAILURES = (RedisError, OSError, RedisUnavailable)
MAX_BACKOFF = 2.0
EXPIRE_BATCH = 100
TokenFor = Callable[[Room, Participant], str]
OnWaiting = Callable[[str, int], None]


class Local:
    """A socket of this process: while ``pending`` is a list, its joined frame and held frames
    are not out yet, and what arrives for it waits there."""

    __slots__ = ("pending", "pid", "rid", "sink")

    def __init__(self, rid: str, sink: Sink) -> None:
        self.rid = rid
        self.pid = ""
        self.sink = sink
        self.pending: list[str] | None = []


class Node:
    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        limits: RoomLimits,
        stats: SignalingStats,
        *,
        token: TokenFor,
        on_waiting: OnWaiting,
        heartbeat: float,
        node_ttl: float,
        wall_clock: Callable[[], float],
    ) -> None:
        self.node = secrets.token_hex(6)
        self.r = client
        self.keys = keys
        self.limits = limits
        self.stats = stats
        self.store = RoomStore(client, keys, limits, stats, self.node)
        self._token = token
        self._on_waiting = on_waiting
        self._heartbeat = heartbeat
        self._node_ttl = node_ttl
        self._now = wall_clock
        self.local: dict[str, Local] = {}  # connection id -> this process's socket
        self._available = False
        self.closed = False
        self._pubsub: aioredis.client.PubSub | None = None
        self._listener: asyncio.Task[None] | None = None
        self._maintainer: asyncio.Task[None] | None = None
        self._recovery: asyncio.Task[None] | None = None
        self.outages = 0  # how many times Redis was lost

    @property
    def available(self) -> bool:
        return self._available

    async def start(self) -> None:
        try:
            await self._connect()
        except (*FAILURES, TimeoutError) as exc:
            raise RedisUnavailable(f"cannot reach Redis ({type(exc).__name__})") from None
        self._maintainer = asyncio.create_task(self._maintain())

    async def _connect(self) -> None:
        """Subscribe, clear what Redis says this process held (a previous life), register."""
        await self.r.ping()
        await self._stop_listener()
        pubsub = self.r.pubsub()
        await pubsub.subscribe(self.keys.channel(self.node), self.keys.waiting_channel)
        self._pubsub = pubsub
        await self._reap(self.node)
        await self.r.hset(self.keys.nodes, self.node, str(self._now()))
        self._listener = asyncio.create_task(self._listen(pubsub))
        self._available = True

    async def _stop_listener(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                aclose: Any = self._pubsub.aclose  # typed in some redis-py releases only
                await aclose()
            self._pubsub = None

    async def close(self) -> None:
        self.closed = True
        self._available = False
        for task in (self._maintainer, self._recovery):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._close_local()
        await self._stop_listener()
        with contextlib.suppress(*FAILURES, TimeoutError):
            # Leave now rather than after ``node_ttl``: our participants go away at once.
            async with asyncio.timeout(2.0):
                await self._reap(self.node)
                await self.r.hdel(self.keys.nodes, self.node)
        with contextlib.suppress(Exception):
            await self.r.aclose()

    def halt(self) -> None:
        """Stop heartbeats and listening without a word, as a killed process would (tests)."""
        self.closed = True
        for task in (self._maintainer, self._listener):
            if task is not None:
                task.cancel()

    def _close_local(self) -> None:
        local, self.local = self.local, {}
        for entry in local.values():
            entry.sink.close(CloseCode.GOING_AWAY, "server going away")

    def _lost(self, why: str) -> None:
        if not self._available or self.closed:
            return
        self._available = False
        self.outages += 1
        log.warning("redis unavailable (%s): closing %d sockets", why, len(self.local))
        self._close_local()
        self._recovery = asyncio.create_task(self._recover())

    async def _recover(self) -> None:
        delay = 0.1
        while not self.closed:
            await asyncio.sleep(delay)
            try:
                await self._connect()
            except (*FAILURES, TimeoutError) as exc:
                log.info("redis still unavailable (%s)", type(exc).__name__)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            log.info("redis available again")
            return

    async def ping(self) -> bool:
        """For /healthz: Redis answers and this process is registered with it."""
        if not self._available:
            return False
        try:
            async with asyncio.timeout(2.0):
                await self.r.ping()
        except (*FAILURES, TimeoutError):
            return False
        return True

    async def acquire_ip(self, ip: str, cap: int) -> bool:
        """One more socket from ``ip`` if all processes together hold fewer than ``cap``.
        Without Redis it says yes: the process's own cap still holds, and joins are refused."""
        try:
            return await self.store.ip_acquire(ip, cap)
        except (RedisError, OSError):
            return True

    async def release_ip(self, ip: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.store.ip_release(ip)

    # --- listening ------------------------------------------------------------------------------

    async def _listen(self, pubsub: aioredis.client.PubSub) -> None:
        try:
            while True:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if msg is None:
                    continue
                try:
                    self._on_message(_s(msg["channel"]), _s(msg["data"]))
                except ValueError:  # not one of ours: never let it stop the listener
                    log.warning("ignored a malformed message on this process's channel")
        except (RedisError, OSError) as exc:
            self._lost(f"subscription: {type(exc).__name__}")

    def _on_message(self, channel: str, data: str) -> None:
        if channel == self.keys.waiting_channel:
            node, rid, count = data.split(" ")
            if node != self.node:
                self._on_waiting(rid, int(count))
            return
        kind, _rid, _pid, cid, rest = data.split(" ", 4)
        if kind == "d":
            self.deliver(cid, rest)
        else:
            code, reason = rest.split(" ", 1)
            self.deliver(cid, None, int(code), reason)

    def deliver(
        self, cid: str, text: str | None, code: int = 0, reason: str = "", direct: bool = False
    ) -> None:
        entry = self.local.get(cid)
        if entry is None:
            return
        if text is None:
            del self.local[cid]
            entry.sink.close(code, reason)
        elif entry.pending is not None and not direct:
            entry.pending.append(text)
        elif not entry.sink.send(text):
            self.stats.sends_dropped += 1
            entry.sink.close(CloseCode.TOO_SLOW, "too slow")

    def _apply(self, effects: list[Effect], direct: str = "") -> None:
        for e in effects:
            if e.node == self.node:
                self.deliver(e.cid, e.text, e.code, e.reason, direct=e.cid == direct)

    # --- maintenance: heartbeat, dead processes, expiry, token refresh --------------------------

    async def _maintain(self) -> None:
        refresh = self.limits.token_refresh_seconds
        next_refresh = time.monotonic() + refresh
        failures = 0
        while True:
            await asyncio.sleep(self._heartbeat)
            if not self._available:
                failures = 0
                continue
            try:
                async with asyncio.timeout(max(2.0, self._node_ttl)):
                    if await self.r.hset(self.keys.nodes, self.node, str(self._now())):
                        self._lost("redis no longer knew this process")
                        continue
                    await self._reap_dead()
                    await self.expire_due()
                    if time.monotonic() >= next_refresh:
                        next_refresh += refresh
                        await self._refresh_tokens()
                failures = 0
            except (*FAILURES, TimeoutError) as exc:
                failures += 1
                log.info("redis maintenance failed (%s)", type(exc).__name__)
                if failures >= 2:
                    self._lost(type(exc).__name__)

    async def _reap_dead(self) -> None:
        now = self._now()
        for node, seen in (await self.r.hgetall(self.keys.nodes)).items():
            name = _s(node)
            if name != self.node and float(seen) < now - self._node_ttl:
                if await self.r.hdel(self.keys.nodes, name):  # the first to notice reaps
                    log.info("a server process stopped answering: its participants are away")
                    await self._reap(name)

    async def _reap(self, node: str) -> None:
        """Every participant whose socket was on ``node`` is away from now on."""
        key = self.keys.node_rooms(node)
        for rid in await self.r.smembers(key):
            room_id = _s(rid)

            def act(txn: RoomTxn) -> None:
                for p in list(txn.room.participants.values()):
                    if p.sink is not None and getattr(p.sink, "node", "") == node:
                        txn.room.detach(p)
                        txn.away[p.id] = self._now() + self.limits.resume_seconds

            await self.change(room_id, 0, 0, act)
        await self.r.delete(key, self.keys.ips(node))

    async def expire_due(self) -> None:
        """End the slots whose resume window has run out (whichever process sees it first)."""
        due = await self.r.zrangebyscore(
            self.keys.away, "-inf", self._now(), start=0, num=EXPIRE_BATCH
        )
        for raw in due:
            member = _s(cast(bytes, raw))
            if not await self.r.zrem(self.keys.away, member):
                continue  # another process took it
            rid, pid = member.split(" ")

            def act(txn: RoomTxn, pid: str = pid) -> None:
                p = txn.room.participants.get(pid)
                if p is not None and p.sink is None:
                    txn.room.discard(p, GoneReason.EXPIRED, None)
                    if p.role is Role.CLIENT:
                        txn.tombs.append(p.id)

            await self.change(rid, 0, 0, act)

    async def _refresh_tokens(self) -> None:
        by_room: dict[str, list[tuple[str, Local]]] = {}
        for cid, entry in self.local.items():
            if entry.pending is None:
                by_room.setdefault(entry.rid, []).append((cid, entry))
        for rid, entries in by_room.items():
            txn = await self.store.load(rid, 0, 0)
            for cid, entry in entries:
                p = txn.current(entry.pid, cid)
                if p is not None and self.local.get(cid) is entry:
                    self.deliver(cid, dump(Token(self._token(txn.room, p))))

    # --- changes --------------------------------------------------------------------------------

    async def change(
        self, rid: str, pk: int, generation: int, act: Callable[[RoomTxn], T], direct: str = ""
    ) -> tuple[T, RoomTxn, list[list[str]]]:
        """Load the room under its lock, ``act``, save, and do what concerns this process."""
        async with self.store.lock(rid):
            txn = await self.store.load(rid, pk, generation)
            result = act(txn)
            saved = await self.store.save(txn)
        self._apply(txn.effects, direct)
        if saved.waiting is not None:
            self._on_waiting(rid, saved.waiting)
        return result, txn, saved.drained


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
