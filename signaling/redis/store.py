"""Rooms kept in Redis, for several server processes (``signaling.redis.hub`` uses this).

A room is one hash, ``<prefix>room:<room id>``: field ``~g`` is the room's generation, every other
field is a participant id whose value is ``role|state|node|connection`` (role ``c`` or ``k``, state
``w`` or ``a``; node and connection are empty while the participant is away). Changes to a room
happen under a short per-room lock: the room is loaded into the state machine of
``signaling.rooms`` (the same rules as in one process), changed there, and what changed is saved
in one MULTI/EXEC together with the PUBLISHes of what the state machine sent to participants on
other processes. The relay (the hot path) takes no lock: one Lua script checks the sender's
place and the relay rule and publishes, or holds the envelope.

Besides the room hash: the envelopes held for an away participant and those a waiting client left
for an absent counselor (lists with a byte counter and a TTL), the tombstones of clients gone for
good (keys with the token's lifetime), the resume deadlines (a sorted set), the waiting counts (a
hash), the processes' heartbeats (a hash) and, per process, the rooms it has participants in.

Nothing in Redis is written to disk by Ruang's choice: run Redis without persistence
(``--save ''``); held envelopes are ciphertext and live at most a resume window.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import redis.asyncio as aioredis

from signaling.limits import RoomLimits, SignalingStats
from signaling.messages import COUNSELOR_ID, PeerState, Role
from signaling.rooms import Participant, Room

ROLE_CODE: Mapping[Role, str] = MappingProxyType({Role.COUNSELOR: "c", Role.CLIENT: "k"})
CODE_ROLE: Mapping[str, Role] = MappingProxyType({v: k for k, v in ROLE_CODE.items()})
STATE_CODE: Mapping[PeerState, str] = MappingProxyType(
    {PeerState.WAITING: "w", PeerState.ADMITTED: "a"}
)
CODE_STATE: Mapping[str, PeerState] = MappingProxyType({v: k for k, v in STATE_CODE.items()})
GEN_FIELD = "~g"
LOCK_TTL_MS = 5000  # a process that dies holding a room's lock frees it after this
LOCK_WAIT = 5.0  # seconds to wait for a room's lock before giving up


class RedisUnavailable(Exception):
    """Redis does not answer, or a room's lock could not be had in time. The hub turns it into
    ``HubClosed`` (a join: GOING_AWAY, the peer tries again) or ``Departed``."""


class Keys:
    """Every key and channel name, under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.away = prefix + "away"
        self.waiting = prefix + "waiting"
        self.nodes = prefix + "nodes"
        self.waiting_channel = prefix + "w"

    def room(self, rid: str) -> str:
        return f"{self.prefix}room:{rid}"

    def lock(self, rid: str) -> str:
        return f"{self.prefix}lock:{rid}"

    def held(self, rid: str, pid: str) -> tuple[str, str]:
        return f"{self.prefix}held:{rid}:{pid}", f"{self.prefix}heldb:{rid}:{pid}"

    def outbox(self, rid: str, pid: str) -> tuple[str, str]:
        return f"{self.prefix}out:{rid}:{pid}", f"{self.prefix}outb:{rid}:{pid}"

    def tomb(self, pid: str) -> str:
        return f"{self.prefix}tomb:{pid}"

    def node_rooms(self, node: str) -> str:
        return f"{self.prefix}noderooms:{node}"

    def channel(self, node: str) -> str:
        return f"{self.prefix}n:{node}"

    def ips(self, node: str) -> str:
        return f"{self.prefix}ips:{node}"


def away_member(rid: str, pid: str) -> str:
    return f"{rid} {pid}"


def frame_data(rid: str, pid: str, cid: str, text: str) -> str:
    """What a process publishes to another's channel: deliver ``text`` to one connection."""
    return f"d {rid} {pid} {cid} {text}"


def frame_close(rid: str, pid: str, cid: str, code: int, reason: str) -> str:
    return f"c {rid} {pid} {cid} {code} {reason}"


# The relay: KEYS room, held, held bytes, outbox, outbox bytes; ARGV sender, sender's connection,
# target, text, this node, channel prefix, room id, resume_held, waiting_held, held_bytes, ttl.
# Returns {code, connection}: 0 published, 1 the target is on this node (deliver locally),
# 2 held, -1 the sender no longer holds its place, -2 no such peer, -3 hold full.
RELAY_LUA = """
local function parse(v)
  return string.match(v, '^(.)|(.)|([^|]*)|([^|]*)$')
end
local function push(list, bytes, maxn)
  local n = redis.call('LLEN', list)
  local b = tonumber(redis.call('GET', bytes) or '0')
  if n >= maxn or b + #ARGV[4] > tonumber(ARGV[10]) then return {-3, ''} end
  redis.call('RPUSH', list, ARGV[4])
  redis.call('INCRBY', bytes, #ARGV[4])
  redis.call('EXPIRE', list, ARGV[11])
  redis.call('EXPIRE', bytes, ARGV[11])
  return {2, ''}
end
local s = redis.call('HGET', KEYS[1], ARGV[1])
if not s then return {-1, ''} end
local srole, sstate, snode, sconn = parse(s)
if sconn ~= ARGV[2] then return {-1, ''} end
if ARGV[3] == ARGV[1] then return {-2, ''} end
local t = redis.call('HGET', KEYS[1], ARGV[3])
if not t then
  if ARGV[3] == 'counselor' and srole == 'k' then
    return push(KEYS[4], KEYS[5], tonumber(ARGV[9]))
  end
  return {-2, ''}
end
local trole, tstate, tnode, tconn = parse(t)
if not (srole == 'c' or trole == 'c' or (sstate == 'a' and tstate == 'a')) then
  return {-2, ''}
end
if tnode == '' then return push(KEYS[2], KEYS[3], tonumber(ARGV[8])) end
if tnode == ARGV[5] then return {1, tconn} end
redis.call('PUBLISH', ARGV[6] .. tnode,
  'd ' .. ARGV[7] .. ' ' .. ARGV[3] .. ' ' .. tconn .. ' ' .. ARGV[4])
return {0, ''}
"""

# The per-IP connection cap across processes: KEYS the heartbeat hash; ARGV the per-process
# count hash prefix, this node, the IP, the cap. Counts of every live process are summed.
IP_ACQUIRE_LUA = """
local total = 0
for _, n in ipairs(redis.call('HKEYS', KEYS[1])) do
  total = total + tonumber(redis.call('HGET', ARGV[1] .. n, ARGV[3]) or '0')
end
if total >= tonumber(ARGV[4]) then return 0 end
redis.call('HINCRBY', ARGV[1] .. ARGV[2], ARGV[3], 1)
return 1
"""

IP_RELEASE_LUA = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""

UNLOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class Effect:
    """Something the state machine did to one connection, done once the room is saved."""

    node: str
    rid: str
    pid: str
    cid: str
    text: str | None  # a frame to deliver, or None for a close
    code: int = 0
    reason: str = ""

    def published(self) -> str:
        if self.text is not None:
            return frame_data(self.rid, self.pid, self.cid, self.text)
        return frame_close(self.rid, self.pid, self.cid, self.code, self.reason)


class OutSink:
    """A participant's connection as a loaded room sees it (on any process): what the state
    machine sends or closes is recorded, and done after the room is saved."""

    __slots__ = ("cid", "node", "pid", "txn")

    def __init__(self, txn: RoomTxn, node: str, pid: str, cid: str) -> None:
        self.txn = txn
        self.node = node
        self.pid = pid
        self.cid = cid

    def send(self, text: str) -> bool:
        self.txn.effects.append(Effect(self.node, self.txn.room.id, self.pid, self.cid, text))
        return True

    def close(self, code: int, reason: str) -> None:
        self.txn.effects.append(
            Effect(self.node, self.txn.room.id, self.pid, self.cid, None, int(code), reason)
        )


def _where(p: Participant) -> tuple[str, str]:
    sink = p.sink
    if isinstance(sink, OutSink):
        return sink.node, sink.cid
    return "", ""


def encode(p: Participant) -> str:
    node, cid = _where(p)
    return f"{ROLE_CODE[p.role]}|{STATE_CODE[p.state]}|{node}|{cid}"


@dataclass
class RoomTxn:
    """One room loaded under its lock: change ``room``, then ``RoomStore.save``."""

    room: Room
    before: dict[str, str]
    generation: int
    waiting_before: int
    effects: list[Effect] = field(default_factory=list)
    drains: list[tuple[str, str]] = field(default_factory=list)  # (list, bytes) keys to take
    clears: list[str] = field(default_factory=list)  # keys to delete
    away: dict[str, float] = field(default_factory=dict)  # pid -> resume deadline (wall clock)
    present: set[str] = field(default_factory=set)  # pids back from away
    tombs: list[str] = field(default_factory=list)  # clients gone for good

    def sink(self, node: str, pid: str, cid: str) -> OutSink:
        return OutSink(self, node, pid, cid)

    def current(self, pid: str, cid: str) -> Participant | None:
        """The participant if ``cid`` is still its connection."""
        p = self.room.participants.get(pid)
        if p is None or _where(p)[1] != cid:
            return None
        return p


@dataclass(frozen=True, slots=True)
class Saved:
    drained: list[list[str]]  # per ``drains`` entry, the frames taken, oldest first
    waiting: int | None  # the room's new waiting count if it changed, else None


class RoomStore:
    """Loading and saving rooms; the per-room lock."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        limits: RoomLimits,
        stats: SignalingStats,
        node: str,
    ) -> None:
        self.r = client
        self.keys = keys
        self.limits = limits
        self.stats = stats
        self.node = node
        self._relay = client.register_script(RELAY_LUA)
        self._unlock = client.register_script(UNLOCK_LUA)
        self._ip_acquire = client.register_script(IP_ACQUIRE_LUA)
        self._ip_release = client.register_script(IP_RELEASE_LUA)

    async def ip_acquire(self, ip: str, cap: int) -> bool:
        keys = self.keys
        ok = await self._ip_acquire(
            keys=[keys.nodes], args=[keys.prefix + "ips:", self.node, ip, cap]
        )
        return bool(ok)

    async def ip_release(self, ip: str) -> None:
        await self._ip_release(keys=[self.keys.ips(self.node)], args=[ip])

    @contextlib.asynccontextmanager
    async def lock(self, rid: str) -> AsyncIterator[None]:
        key = self.keys.lock(rid)
        token = secrets.token_hex(8)
        deadline = time.monotonic() + LOCK_WAIT
        delay = 0.002
        while not await self.r.set(key, token, nx=True, px=LOCK_TTL_MS):
            if time.monotonic() + delay > deadline:
                raise RedisUnavailable("a room stayed locked")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        try:
            yield
        finally:
            with contextlib.suppress(aioredis.RedisError, OSError):
                await self._unlock(keys=[key], args=[token])

    async def load(self, rid: str, pk: int, generation: int) -> RoomTxn:
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(self.keys.room(rid))
        pipe.hget(self.keys.waiting, rid)
        stored, waiting = await pipe.execute()
        fields: dict[str, str] = {_s(k): _s(v) for k, v in stored.items()}
        gen = max(generation, int(fields.pop(GEN_FIELD, "0")))
        room = Room(rid, pk, gen, self.limits, self.stats)
        txn = RoomTxn(room, dict(fields), gen, int(waiting or 0))
        for pid, value in fields.items():
            role_code, state_code, node, cid = value.split("|")
            role = CODE_ROLE[role_code]
            sink = txn.sink(node, pid, cid)
            p = Participant(pid, role, CODE_STATE[state_code], sink, self.limits)
            if not node:
                p.sink = None
            room.participants[pid] = p
            if role is Role.COUNSELOR and pid == COUNSELOR_ID:
                room.counselor = p
        return txn

    async def save(self, txn: RoomTxn, extra: list[tuple[str, Any]] | None = None) -> Saved:
        """Write what changed, publish the effects for other processes, take the drained
        lists; all in one MULTI/EXEC. ``extra``: (method, args) more commands for it."""
        keys, room, rid = self.keys, txn.room, txn.room.id
        after = {pid: encode(p) for pid, p in room.participants.items()}
        pipe = self.r.pipeline(transaction=True)
        room_key = keys.room(rid)
        for pid, value in after.items():
            if txn.before.get(pid) != value:
                pipe.hset(room_key, pid, value)
            old = txn.before.get(pid)
            if old is not None and old.split("|")[2] and not value.split("|")[2]:
                pipe.delete(*keys.outbox(rid, pid))  # detached: its outbox goes
        for pid in txn.before.keys() - after.keys():
            pipe.hdel(room_key, pid)
            pipe.delete(*keys.held(rid, pid), *keys.outbox(rid, pid))
            pipe.zrem(keys.away, away_member(rid, pid))
        if after:
            pipe.hset(room_key, GEN_FIELD, str(room.generation))
        else:
            pipe.delete(room_key)
        for pid, deadline in txn.away.items():
            pipe.zadd(keys.away, {away_member(rid, pid): deadline})
        for pid in txn.present:
            pipe.zrem(keys.away, away_member(rid, pid))
        ttl = max(1, int(self.limits.token_ttl_seconds) + 1)
        for pid in txn.tombs:
            pipe.set(keys.tomb(pid), "1", ex=ttl)
        for key in txn.clears:
            pipe.delete(key)
        waiting = len(room.clients(PeerState.WAITING))
        changed = waiting != txn.waiting_before
        if changed:
            if waiting:
                pipe.hset(keys.waiting, rid, str(waiting))
            else:
                pipe.hdel(keys.waiting, rid)
            pipe.publish(keys.waiting_channel, f"{self.node} {rid} {waiting}")
        if any(_where(p)[0] == self.node for p in room.participants.values()):
            pipe.sadd(keys.node_rooms(self.node), rid)
        else:  # no socket of this process left in the room (another's record may stay: harmless)
            pipe.srem(keys.node_rooms(self.node), rid)
        for effect in txn.effects:
            if effect.node != self.node:
                pipe.publish(keys.channel(effect.node), effect.published())
        for method, args in extra or []:
            getattr(pipe, method)(*args)
        marks: list[int] = []
        for list_key, bytes_key in txn.drains:
            marks.append(len(pipe.command_stack))
            pipe.lrange(list_key, 0, -1)
            pipe.delete(list_key, bytes_key)
        results = await pipe.execute()
        drained = [[_s(x) for x in results[i]] for i in marks]
        return Saved(drained, waiting if changed else None)

    async def relay(self, rid: str, sender: str, cid: str, to: str, text: str) -> tuple[int, str]:
        keys, limits = self.keys, self.limits
        held, held_bytes = keys.held(rid, to)
        out, out_bytes = keys.outbox(rid, sender)
        ttl = max(1, int(limits.resume_seconds) + 5)
        code, conn = await self._relay(
            keys=[keys.room(rid), held, held_bytes, out, out_bytes],
            args=[
                sender,
                cid,
                to,
                text,
                self.node,
                keys.prefix + "n:",
                rid,
                limits.resume_held,
                limits.waiting_held,
                limits.held_bytes,
                ttl,
            ],
        )
        return int(code), _s(conn)


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
