"""``RedisHub``: the hub for several server processes sharing one Redis (``RUANG_REDIS_URL``).

Room state lives in Redis (``signaling.redis.store``); each process keeps only its own sockets
(``signaling.redis.node``: fan-out, presence, outages). The rules are those of one process: a
change loads the room into ``signaling.rooms.Room`` under the room's lock, applies the same state
machine, and saves it with what it sent. Ordering: a connection's messages are handled one after
another and each is one Redis command (the relay script, or the MULTI/EXEC that saves a change
and publishes), so what one sender sends arrives in order.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Collection
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from signaling import tokens
from signaling.errors import CloseCode, Departed, HoldFull, HubClosed, Unavailable, UnknownPeer
from signaling.hub import (
    BumpGeneration,
    CallServersFor,
    Connection,
    Hub,
    JoinRequest,
    RoomRef,
    new_participant_id,
    resume_token,
    welcome,
)
from signaling.limits import RoomLimits, SignalingStats
from signaling.messages import (
    COUNSELOR_ID,
    GoneReason,
    Relay,
    Role,
    Token,
    dump,
    relayed_text,
)
from signaling.redis.node import FAILURES, Local, Node
from signaling.redis.store import Keys, RoomTxn
from signaling.rooms import Participant, Room
from signaling.sink import Sink

log = logging.getLogger("ruang.hub.redis")
T = TypeVar("T")


class RedisConnection(Connection):
    __slots__ = ("cid",)

    def __init__(self, room: RoomRef, participant_id: str, role: Role, cid: str) -> None:
        super().__init__(room, participant_id, role)
        self.cid = cid


class RedisHub(Hub):
    def __init__(
        self,
        *,
        client: aioredis.Redis,
        token_key: bytes,
        bump_generation: BumpGeneration,
        limits: RoomLimits | None = None,
        stats: SignalingStats | None = None,
        max_frame: int = 64 * 1024,
        prefix: str = "ruang:",
        heartbeat: float = 1.0,
        node_ttl: float = 5.0,
        wall_clock: Callable[[], float] = time.time,
        call_servers: CallServersFor | None = None,
    ) -> None:
        super().__init__()
        self._call_servers = call_servers
        self.limits = limits or RoomLimits()
        self.stats = stats or SignalingStats()
        self._keys = Keys(prefix)
        self._node = Node(
            client,
            self._keys,
            self.limits,
            self.stats,
            token=self._token,
            on_waiting=self._notify_waiting,
            heartbeat=heartbeat,
            node_ttl=node_ttl,
            wall_clock=wall_clock,
        )
        self._key = token_key
        self._bump = bump_generation
        self._max_frame = max_frame
        self._now = wall_clock

    # --- lifetime (the process's presence is ``signaling.redis.node``) --------------------------

    @property
    def node(self) -> Node:
        return self._node

    @property
    def available(self) -> bool:
        return self._node.available

    @property
    def outages(self) -> int:
        return self._node.outages

    async def start(self) -> None:
        await self._node.start()

    async def close(self) -> None:
        await self._node.close()

    async def ping(self) -> bool:
        """For /healthz: Redis answers and this process is registered with it."""
        return await self._node.ping()

    async def acquire_ip(self, ip: str, cap: int) -> bool:
        """One more socket from ``ip`` if all processes together hold fewer than ``cap``."""
        return await self._node.acquire_ip(ip, cap)

    async def release_ip(self, ip: str) -> None:
        await self._node.release_ip(ip)

    def room_count(self) -> int:
        """Rooms with a socket on this process."""
        return len({entry.rid for entry in self._node.local.values()})

    def participant_count(self) -> int:
        """Sockets on this process (participants inside a resume window are in Redis)."""
        return len(self._node.local)

    def _mine(self, conn: Connection) -> RedisConnection:
        assert isinstance(conn, RedisConnection), "a connection from another hub"
        if conn.cid not in self._node.local:
            raise Departed("this connection no longer holds a place in the room")
        if not self._node.available:
            raise Unavailable("the server cannot reach its shared store")
        return conn

    @staticmethod
    def _current(txn: RoomTxn, conn: RedisConnection) -> Participant:
        p = txn.current(conn.participant_id, conn.cid)
        if p is None:
            raise Departed("this connection no longer holds a place in the room")
        return p

    async def _act(self, conn: Connection, act: Callable[[RoomTxn, Participant], T]) -> T:
        c = self._mine(conn)
        ref = c.room
        try:
            result, _, _ = await self._node.change(
                ref.id, ref.pk, ref.generation, lambda txn: act(txn, self._current(txn, c))
            )
        except FAILURES as exc:
            raise Unavailable("the server cannot reach its shared store") from exc
        return result

    def _token(self, room: Room, p: Participant) -> str:
        return resume_token(self._key, room, p, self._now() + self.limits.token_ttl_seconds)

    # --- waiting counts -------------------------------------------------------------------------

    async def waiting_counts(self, room_ids: Collection[str]) -> dict[str, int]:
        ids = list(room_ids)
        if not ids:
            return {}
        values = await self._node.r.hmget(self._keys.waiting, ids)
        return {rid: int(v or 0) for rid, v in zip(ids, values, strict=True)}

    # --- joining --------------------------------------------------------------------------------

    async def join(self, request: JoinRequest, sink: Sink) -> Connection:
        if self._node.closed or not self._node.available:
            raise HubClosed("the server is going away")
        ref, role = request.room, request.role
        claims: tokens.ResumeClaims | None = None
        resume_error: str | None = None
        try:
            if request.resume is not None:
                try:
                    claims = tokens.decode(self._key, request.resume, now=self._now())
                    tokens.check_target(claims, room_id=ref.id, role=role)
                    if await self._node.r.exists(self._keys.tomb(claims.participant)):
                        raise tokens.RevokedToken("that participant has left")
                except tokens.TokenError as exc:
                    claims, resume_error = None, exc.reason
            cid = secrets.token_urlsafe(9)
            entry = Local(ref.id, sink)
            self._node.local[cid] = entry
            try:
                p, txn, drained = await self._node.change(
                    ref.id,
                    ref.pk,
                    ref.generation,
                    lambda txn: self._join(txn, role, claims, resume_error, cid),
                    direct=cid,
                )
            except BaseException:
                self._node.local.pop(cid, None)
                raise
        except FAILURES as exc:
            raise HubClosed("the server cannot reach its shared store") from exc
        entry.pid = p.id
        if self._node.local.get(cid) is entry:
            for frames in drained:
                for text in frames:
                    self._node.deliver(cid, text, direct=True)
            pending, entry.pending = entry.pending or [], None
            for text in pending:
                self._node.deliver(cid, text)
        return RedisConnection(RoomRef(ref.id, ref.pk, txn.room.generation), p.id, p.role, cid)

    def _join(
        self,
        txn: RoomTxn,
        role: Role,
        claims: tokens.ResumeClaims | None,
        resume_error: str | None,
        cid: str,
    ) -> Participant:
        room, node, keys = txn.room, self._node.node, self._keys
        p: Participant | None = None
        cleared = False
        if claims is not None:
            p = room.participants.get(claims.participant)
            if p is not None:  # the slot is here (on this process or another): take it over
                room.attach(p, txn.sink(node, p.id, cid))
            else:  # no slot (Redis restarted, or it expired): the token alone speaks
                try:
                    tokens.check_generation(claims, room.generation)
                except tokens.TokenError as exc:
                    resume_error = exc.reason
                else:
                    s = txn.sink(node, claims.participant, cid)
                    if role is Role.COUNSELOR:
                        p = room.add_counselor(s)
                    else:
                        p = room.add_client(claims.participant, s, admitted=claims.admitted)
        resumed = p is not None
        if p is None:
            if role is Role.COUNSELOR:
                cleared = room.counselor is not None  # held for the earlier page: dropped
                p = room.add_counselor(txn.sink(node, COUNSELOR_ID, cid))
                if cleared:
                    txn.clears.extend(keys.held(room.id, COUNSELOR_ID))
            else:
                pid = new_participant_id()
                p = room.add_client(pid, txn.sink(node, pid, cid))
        txn.present.add(p.id)
        welcome(
            room,
            p,
            token=self._token(room, p),
            resumed=resumed,
            resume_error=resume_error,
            resume_seconds=self.limits.resume_seconds,
            max_frame=self._max_frame,
            call_servers=self._call_servers,
        )
        if not cleared:
            txn.drains.append(keys.held(room.id, p.id))
        if p.role is Role.COUNSELOR:
            for client in room.clients():
                txn.drains.append(keys.outbox(room.id, client.id))
        return p

    # --- messages -------------------------------------------------------------------------------

    async def relay(self, conn: Connection, msg: Relay) -> None:
        c = self._mine(conn)
        text = relayed_text(c.participant_id, msg.epoch, msg.box)
        try:
            code, target = await self._node.store.relay(
                c.room.id, c.participant_id, c.cid, msg.to, text
            )
        except (RedisError, OSError) as exc:
            raise Unavailable("the server cannot reach its shared store") from exc
        if code == 1:
            self._node.deliver(target, text)
        if code in (0, 1):
            self.stats.envelopes_relayed += 1
        elif code == 2:
            self.stats.envelopes_held += 1
        elif code == -1:
            raise Departed("this connection no longer holds a place in the room")
        elif code == -3:
            self.stats.envelopes_dropped += 1
            raise HoldFull("the recipient's hold queue is full")
        else:
            raise UnknownPeer("no such participant")

    async def admit(self, conn: Connection, target: str) -> None:
        def act(txn: RoomTxn, p: Participant) -> None:
            admitted = txn.room.admit(p, target)
            if self._call_servers is not None:  # the call begins: both sides may need a relay
                txn.room.send(p, self._call_servers())
                if admitted.sink is not None:
                    txn.room.send(admitted, self._call_servers())
            if admitted.sink is not None:  # its token now says "admitted"
                txn.room.send(admitted, dump(Token(self._token(txn.room, admitted))))

        await self._act(conn, act)

    def _gone(self, txn: RoomTxn, *gone: Participant) -> None:
        txn.tombs.extend(p.id for p in gone if p.role is Role.CLIENT)

    async def decline(self, conn: Connection, target: str) -> None:
        await self._act(conn, lambda txn, p: self._gone(txn, txn.room.decline(p, target)))
        await self._bump_generation(conn)

    async def remove(self, conn: Connection, target: str) -> None:
        await self._act(conn, lambda txn, p: self._gone(txn, txn.room.remove(p, target)))
        await self._bump_generation(conn)

    async def end_session(self, conn: Connection) -> None:
        await self._act(conn, lambda txn, p: self._gone(txn, *txn.room.end(p)))
        await self._bump_generation(conn)

    async def _bump_generation(self, conn: Connection) -> None:
        ref = conn.room
        generation = await self._bump(ref.pk)

        def act(txn: RoomTxn) -> None:
            room = txn.room
            room.generation = max(room.generation, generation)
            for p in room.participants.values():  # everyone still here: a current token
                if p.sink is not None:
                    room.send(p, dump(Token(self._token(room, p))))

        try:
            await self._node.change(ref.id, ref.pk, generation, act)
        except FAILURES as exc:
            raise Unavailable("the server cannot reach its shared store") from exc

    async def leave(self, conn: Connection) -> None:
        def act(txn: RoomTxn, p: Participant) -> None:
            txn.room.discard(p, GoneReason.LEFT, CloseCode.NORMAL)
            self._gone(txn, p)

        await self._act(conn, act)

    async def disconnect(self, conn: Connection) -> None:
        assert isinstance(conn, RedisConnection), "a connection from another hub"
        if (
            self._node.local.pop(conn.cid, None) is None
            or self._node.closed
            or not self._node.available
        ):
            return
        ref = conn.room

        def act(txn: RoomTxn) -> None:
            p = txn.current(conn.participant_id, conn.cid)
            if p is not None:
                txn.room.detach(p)
                txn.away[p.id] = self._now() + self.limits.resume_seconds

        try:
            await self._node.change(ref.id, ref.pk, ref.generation, act)
        except FAILURES as exc:
            # Its record still names this process: the next outage recovery or a restart of
            # this process takes it away.
            log.info("disconnect not recorded (%s)", type(exc).__name__)

    async def close_room(self, room_id: str) -> None:
        def act(txn: RoomTxn) -> None:
            room = txn.room
            gone = list(room.participants.values())
            for p in gone:
                if p.sink is not None:
                    p.sink.close(CloseCode.UNKNOWN_ROOM, "unknown room")
                    p.sink = None
            room.participants.clear()
            room.counselor = None
            self._gone(txn, *gone)

        await self._node.change(room_id, 0, 0, act)
