"""The hub: what the /ws handler talks to. ``Hub`` is the interface; ``InProcessHub`` keeps every
room in this process (the default). A Redis backend (several processes) implements the same
interface later; the handler never reaches past it.

The handler parses frames, enforces transport limits, then calls one hub method per message.
The hub delivers to connections only through their ``Sink`` and reads the room's generation
counter from the ``RoomRef`` the handler looked up; it bumps the counter through the callable it
was built with (the server's is ``server.rooms_store.bump_generation``).

Waiting observers (the dashboard's live feed) are told ``(room id, number of waiting clients)``
whenever the number of clients waiting in a room changes: a knock, an admission, a decline, a
waiting client leaving or its slot expiring, the room closing. A backend that keeps rooms
elsewhere (Redis) calls ``_notify_waiting`` from whatever tells it of such a change, in every
process, and answers ``waiting_counts`` from its own store.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

from signaling import tokens
from signaling.errors import CloseCode, Departed, HubClosed
from signaling.limits import RoomLimits, SignalingStats
from signaling.messages import (
    PROTOCOL_VERSION,
    GoneReason,
    Joined,
    PeerState,
    Relay,
    Role,
    Token,
    dump,
)
from signaling.rooms import Participant, Room
from signaling.sink import Sink

__all__ = [
    "CallServersFor",
    "Connection",
    "Hub",
    "InProcessHub",
    "JoinRequest",
    "RoomRef",
    "Sink",
    "WaitingObserver",
]

log = logging.getLogger("ruang.hub")
BumpGeneration = Callable[[int], Awaitable[int]]
CallServersFor = Callable[[], str]
"""The text of a ``call_servers`` message with fresh credentials (the server's TURN settings;
``server.turn``). A hub built with one pushes it to whoever may start a peer connection: the
counselor when it joins and when it admits, a client when it is admitted and when it joins
as an admitted client; so nobody fetches credentials on the call-setup path."""
WaitingObserver = Callable[[str, int], None]
"""Called with (room id, clients now waiting there) when that number changes. It runs inside
the hub's call, so it must be quick and not block; whatever it raises is logged and dropped."""


@dataclass(frozen=True, slots=True)
class RoomRef:
    """The room as storage knows it: public id, primary key, current generation."""

    id: str
    pk: int
    generation: int


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """A ``join`` the handler has already authorised (origin, room exists, counselor session)."""

    room: RoomRef
    role: Role
    resume: str | None = None


class Connection:
    """A joined socket as the handler sees it. Backends subclass it with their own state."""

    __slots__ = ("participant_id", "role", "room")

    def __init__(self, room: RoomRef, participant_id: str, role: Role) -> None:
        self.room = room
        self.participant_id = participant_id
        self.role = role


class Hub(abc.ABC):
    stats: SignalingStats

    def __init__(self) -> None:
        self._waiting_observers: list[WaitingObserver] = []

    # --- waiting observers (the same for every backend) -----------------------------------------

    def add_waiting_observer(self, observer: WaitingObserver) -> None:
        """Be told of every change in the number of clients waiting in any room."""
        self._waiting_observers.append(observer)

    def remove_waiting_observer(self, observer: WaitingObserver) -> None:
        with contextlib.suppress(ValueError):
            self._waiting_observers.remove(observer)

    def _notify_waiting(self, room_id: str, count: int) -> None:
        for observer in list(self._waiting_observers):
            try:
                observer(room_id, count)
            except Exception:
                log.exception("waiting observer failed")

    @abc.abstractmethod
    async def waiting_counts(self, room_ids: Collection[str]) -> dict[str, int]:
        """How many clients wait in each of ``room_ids`` now (0 for a room nobody is in).
        Every waiting slot counts, connected or inside its resume window."""

    # --- lifetime and the protocol --------------------------------------------------------------

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None:
        """Close every joined socket with GOING_AWAY and stop; later joins raise HubClosed."""

    @abc.abstractmethod
    async def join(self, request: JoinRequest, sink: Sink) -> Connection:
        """Knock, take the counselor's place, or resume; send ``joined`` first on ``sink``.
        Raises ``Fatal`` subclasses (WaitingRoomFull, HubClosed)."""

    # Every method below but ``disconnect`` raises ``Departed`` (non-fatal) when ``conn`` no
    # longer holds its place (it left, or was replaced, declined, removed or ended), and
    # ``Forbidden`` when its role may not act.

    @abc.abstractmethod
    async def relay(self, conn: Connection, msg: Relay) -> None:
        """Raises UnknownPeer or HoldFull (non-fatal)."""

    @abc.abstractmethod
    async def admit(self, conn: Connection, target: str) -> None: ...

    @abc.abstractmethod
    async def decline(self, conn: Connection, target: str) -> None: ...

    @abc.abstractmethod
    async def remove(self, conn: Connection, target: str) -> None: ...

    @abc.abstractmethod
    async def end_session(self, conn: Connection) -> None: ...

    @abc.abstractmethod
    async def leave(self, conn: Connection) -> None:
        """Gone for good: no resume. The hub closes the sink with NORMAL."""

    @abc.abstractmethod
    async def disconnect(self, conn: Connection) -> None:
        """The socket closed: keep the slot for the resume window (no-op if already gone)."""

    @abc.abstractmethod
    async def close_room(self, room_id: str) -> None:
        """The room was closed or got a new link: every socket in it ends with UNKNOWN_ROOM."""

    @abc.abstractmethod
    def room_count(self) -> int: ...

    @abc.abstractmethod
    def participant_count(self) -> int: ...


class _Conn(Connection):
    __slots__ = ("participant", "room_state", "sink")

    def __init__(self, room: Room, participant: Participant, sink: Sink) -> None:
        ref = RoomRef(room.id, room.pk, room.generation)
        super().__init__(ref, participant.id, participant.role)
        self.room_state = room
        self.participant = participant
        self.sink = sink

    def live(self) -> bool:
        return self.room_state.is_current(self.participant, self.sink)


def resume_token(key: bytes, room: Room, p: Participant, expires: float) -> str:
    """The resume token for ``p``'s place in ``room`` (valid on any process sharing ``key``)."""
    claims = tokens.ResumeClaims(
        room=room.id,
        participant=p.id,
        role=p.role,
        admitted=p.state is PeerState.ADMITTED,
        generation=room.generation,
        expires=int(expires),
    )
    return tokens.issue(key, claims)


def welcome(
    room: Room,
    p: Participant,
    *,
    token: str,
    resumed: bool,
    resume_error: str | None,
    resume_seconds: float,
    max_frame: int,
    call_servers: CallServersFor | None = None,
) -> None:
    """Send ``joined`` to a participant who just took (or took back) a place (and, if it may
    call, ``call_servers``), and announce it."""
    joined = Joined(
        v=PROTOCOL_VERSION,
        id=p.id,
        role=p.role,
        state=p.state,
        resumed=resumed,
        resume=token,
        resume_seconds=max(1, math.ceil(resume_seconds)),
        max_frame=max_frame,
        peers=room.roster(p),
        resume_error=resume_error,
    )
    room.send(p, dump(joined))
    if call_servers is not None and may_call(p):
        room.send(p, call_servers())
    room.announce(p)


def may_call(p: Participant) -> bool:
    """Whether ``p`` may start a peer connection now: the counselor, or an admitted client."""
    return p.role is Role.COUNSELOR or p.state is PeerState.ADMITTED


def new_participant_id() -> str:
    return secrets.token_urlsafe(9)  # 72 random bits, 12 characters


class InProcessHub(Hub):
    def __init__(
        self,
        *,
        token_key: bytes,
        bump_generation: BumpGeneration,
        limits: RoomLimits | None = None,
        stats: SignalingStats | None = None,
        max_frame: int = 64 * 1024,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        call_servers: CallServersFor | None = None,
    ) -> None:
        super().__init__()
        self._call_servers = call_servers
        self.limits = limits or RoomLimits()
        self.stats = stats or SignalingStats()
        self._key = token_key
        self._bump = bump_generation
        self._max_frame = max_frame
        self._clock = clock  # resume windows
        self._now = wall_clock  # token expiry: tokens outlive this process
        self._rooms: dict[str, Room] = {}
        self._away: dict[Participant, tuple[Room, float]] = {}  # -> (room, slot deadline)
        self._tombstones: dict[str, float] = {}  # client id -> until (wall clock)
        self._waiting: dict[str, int] = {}  # room id -> clients waiting, as last told (not 0)
        self._maintainer: asyncio.Task[None] | None = None
        self._closed = False

    # --- lifetime -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._maintainer = asyncio.create_task(self._maintain())

    async def close(self) -> None:
        self._closed = True
        if self._maintainer is not None:
            self._maintainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintainer
            self._maintainer = None
        self._away.clear()
        for room in self._rooms.values():
            for p in room.participants.values():
                if p.sink is not None:
                    p.sink.close(CloseCode.GOING_AWAY, "server going away")
        self._rooms.clear()
        self._waiting.clear()

    def room_count(self) -> int:
        return len(self._rooms)

    def participant_count(self) -> int:
        return sum(len(room.participants) for room in self._rooms.values())

    # --- waiting counts -------------------------------------------------------------------------

    async def waiting_counts(self, room_ids: Collection[str]) -> dict[str, int]:
        return {room_id: self._waiting.get(room_id, 0) for room_id in room_ids}

    def _note_waiting(self, room: Room) -> None:
        """Tell the observers if the number of clients waiting in ``room`` changed. Called
        after every operation that may change it (cheap: a room has a handful of clients)."""
        live = self._rooms.get(room.id) is room
        count = len(room.clients(PeerState.WAITING)) if live else 0
        if count == self._waiting.get(room.id, 0):
            return
        if count:
            self._waiting[room.id] = count
        else:
            self._waiting.pop(room.id, None)
        self._notify_waiting(room.id, count)

    # --- tokens ---------------------------------------------------------------------------------

    def _token(self, room: Room, p: Participant) -> str:
        return resume_token(self._key, room, p, self._now() + self.limits.token_ttl_seconds)

    def _send_tokens(self, room: Room) -> None:
        for p in room.participants.values():
            if p.sink is not None:
                room.send(p, dump(Token(self._token(room, p))))

    def refresh_tokens(self) -> None:
        """Send every connected participant a fresh token; forget expired tombstones."""
        now = self._now()
        self._tombstones = {pid: t for pid, t in self._tombstones.items() if t > now}
        for room in list(self._rooms.values()):
            self._send_tokens(room)

    def expire_due(self) -> None:
        """End the slots whose resume window has run out."""
        now = self._clock()
        due = [(p, room) for p, (room, deadline) in self._away.items() if deadline <= now]
        for p, room in due:
            self._away.pop(p, None)
            if room.participants.get(p.id) is p and p.sink is None:
                room.discard(p, GoneReason.EXPIRED, None)
                self._bury(p)
                self._forget_if_empty(room)
                self._note_waiting(room)

    async def _maintain(self) -> None:
        tick = min(1.0, self.limits.resume_seconds / 4)
        refresh = self.limits.token_refresh_seconds
        next_refresh = self._clock() + refresh
        while True:
            await asyncio.sleep(tick)
            self.expire_due()
            if self._clock() >= next_refresh:
                next_refresh += refresh
                self.refresh_tokens()

    def _forget_away(self, p: Participant) -> None:
        self._away.pop(p, None)

    def _bury(self, *gone: Participant) -> None:
        """Clients gone for good: their tokens are refused for as long as they could live.
        (The counselor's id is the same for every counselor, so it is never buried.)"""
        until = self._now() + self.limits.token_ttl_seconds
        for p in gone:
            self._forget_away(p)
            if p.role is Role.CLIENT:
                self._tombstones[p.id] = until

    # --- joining --------------------------------------------------------------------------------

    async def join(self, request: JoinRequest, sink: Sink) -> Connection:
        if self._closed:
            raise HubClosed("the server is going away")
        ref = request.room
        room = self._rooms.get(ref.id)
        if room is None:
            room = Room(ref.id, ref.pk, ref.generation, self.limits, self.stats)
            self._rooms[ref.id] = room
        room.generation = max(room.generation, ref.generation)
        try:
            p: Participant | None = None
            resume_error: str | None = None
            if request.resume is not None:
                try:
                    p = self._resume(room, request, sink)
                except tokens.TokenError as exc:
                    resume_error = exc.reason
            resumed = p is not None
            if p is None:
                if request.role is Role.COUNSELOR:
                    p = room.add_counselor(sink)
                    self._forget_away(p)
                else:
                    p = room.add_client(new_participant_id(), sink)
        finally:
            if not room:
                del self._rooms[ref.id]
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
        room.deliver_pending(p)
        self._note_waiting(room)
        return _Conn(room, p, sink)

    def _resume(self, room: Room, request: JoinRequest, sink: Sink) -> Participant:
        assert request.resume is not None
        claims = tokens.decode(self._key, request.resume, now=self._now())
        tokens.check_target(claims, room_id=room.id, role=request.role)
        if claims.participant in self._tombstones:
            raise tokens.RevokedToken("that participant has left")
        p = room.participants.get(claims.participant)
        if p is not None:
            # The slot is still here: it was neither removed nor ended (those bury it), so the
            # token is good even if the generation moved on because of someone else.
            self._forget_away(p)
            room.attach(p, sink)
            return p
        # No slot (a restart, or another process): the token alone speaks, so it must be current.
        tokens.check_generation(claims, room.generation)
        if claims.role is Role.COUNSELOR:
            return room.add_counselor(sink)
        return room.add_client(claims.participant, sink, admitted=claims.admitted)

    # --- messages -------------------------------------------------------------------------------

    @staticmethod
    def _live(conn: Connection) -> _Conn:
        assert isinstance(conn, _Conn), "a connection from another hub"
        if not conn.live():
            raise Departed("this connection no longer holds a place in the room")
        return conn

    async def relay(self, conn: Connection, msg: Relay) -> None:
        self.relay_now(conn, msg)

    def relay_now(self, conn: Connection, msg: Relay) -> None:
        """``relay`` without a coroutine: this hub never waits to relay (the hot path)."""
        c = self._live(conn)
        c.room_state.relay(c.participant, msg)

    async def admit(self, conn: Connection, target: str) -> None:
        c = self._live(conn)
        room = c.room_state
        admitted = room.admit(c.participant, target)
        self._note_waiting(room)
        if self._call_servers is not None:  # the call begins: both sides may need a relay
            room.send(c.participant, self._call_servers())
            if admitted.sink is not None:
                room.send(admitted, self._call_servers())
        if admitted.sink is not None:  # its token now says "admitted"
            room.send(admitted, dump(Token(self._token(room, admitted))))

    async def decline(self, conn: Connection, target: str) -> None:
        c = self._live(conn)
        self._bury(c.room_state.decline(c.participant, target))
        self._note_waiting(c.room_state)
        await self._bump_generation(c.room_state)

    async def remove(self, conn: Connection, target: str) -> None:
        c = self._live(conn)
        self._bury(c.room_state.remove(c.participant, target))
        await self._bump_generation(c.room_state)

    async def end_session(self, conn: Connection) -> None:
        c = self._live(conn)
        self._bury(*c.room_state.end(c.participant))
        await self._bump_generation(c.room_state)

    async def _bump_generation(self, room: Room) -> None:
        room.generation = max(room.generation, await self._bump(room.pk))
        if self._rooms.get(room.id) is room:
            self._send_tokens(room)  # everyone still here gets a token for the new generation

    async def leave(self, conn: Connection) -> None:
        c = self._live(conn)
        room = c.room_state
        room.discard(c.participant, GoneReason.LEFT, CloseCode.NORMAL)
        self._bury(c.participant)
        self._forget_if_empty(room)
        self._note_waiting(room)

    async def disconnect(self, conn: Connection) -> None:
        assert isinstance(conn, _Conn), "a connection from another hub"
        if self._closed or not conn.live():
            return
        p, room = conn.participant, conn.room_state
        room.detach(p)
        self._away[p] = (room, self._clock() + self.limits.resume_seconds)

    def _forget_if_empty(self, room: Room) -> None:
        if not room and self._rooms.get(room.id) is room:
            del self._rooms[room.id]

    async def close_room(self, room_id: str) -> None:
        room = self._rooms.pop(room_id, None)
        if room is None:
            return
        gone = list(room.participants.values())
        for p in gone:
            if p.sink is not None:
                p.sink.close(CloseCode.UNKNOWN_ROOM, "unknown room")
                p.sink = None
        room.participants.clear()
        room.counselor = None
        self._bury(*gone)
        self._note_waiting(room)
