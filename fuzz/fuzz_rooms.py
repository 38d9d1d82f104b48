"""Fuzz target: the room hub (``InProcessHub``) driven by a byte-decoded sequence of operations
over two rooms: counselor joins, knocks, resumes (with real, stale, foreign or forged tokens),
admit/decline/remove/end from anyone on anyone, relays to anyone, leaves, drops, time passing,
token refreshes and closed rooms.

After every operation: every frame anyone received parses; an envelope reaches exactly its
addressee in its own room, stamped with its true sender; a waiting client hears only from and
about the counselor; capacity and waiting-room bounds hold; every slot is in a documented state;
no closed socket holds a slot; every refusal is a named error with a documented code. Anything
else raises (a finding).

    .venv/bin/python fuzz/fuzz_rooms.py -max_total_time=60 fuzz/corpus/rooms
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz.common import Reader, Sink, atheris_main, check_code, close_codes, run_sync
from signaling import tokens
from signaling.errors import Departed, Fatal, Forbidden, Refused, WaitingRoomFull
from signaling.hub import Connection, InProcessHub, JoinRequest, RoomRef
from signaling.limits import RoomLimits
from signaling.messages import (
    COUNSELOR_ID,
    Admitted,
    Joined,
    Peer,
    PeerInfo,
    PeerState,
    Relay,
    Relayed,
    Role,
    Token,
    parse,
)

ROOMS = ("RoomAAAAAAAAAAAAAAAAAA", "RoomBBBBBBBBBBBBBBBBBB")
KEY = b"fuzz-rooms-key-fuzz-rooms-key-32"
EPOCH = "E" * 22
LIMITS = RoomLimits(capacity=1, max_waiting=3, waiting_held=2, resume_held=3, resume_seconds=60)
MAX_OPS = 64


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Sock:
    room: str
    role: Role
    sink: Sink = field(default_factory=Sink)
    conn: Connection | None = None
    pid: str = ""
    state: PeerState = PeerState.WAITING
    token: str = ""
    open: bool = True


class World:
    def __init__(self) -> None:
        self.clock = Clock(1_000.0)
        self.wall = Clock(1_700_000_000.0)
        self.gens = {room: 0 for room in ROOMS}
        self.hub = InProcessHub(
            token_key=KEY,
            bump_generation=self._bump,
            limits=LIMITS,
            clock=self.clock,
            wall_clock=self.wall,
        )
        self.socks: list[Sock] = []
        self.sent: dict[str, tuple[str, str, str]] = {}  # box -> (room, sender, to)
        self.admitted: set[tuple[str, str]] = set()
        self.pid_room: dict[str, str] = {}
        self.boxes = 0

    async def _bump(self, pk: int) -> int:
        room = ROOMS[pk - 1]
        self.gens[room] += 1
        return self.gens[room]

    def call(self, coro: object) -> Refused | None:
        """Run one hub operation: None when done, the ``Refused`` it raised otherwise."""
        try:
            run_sync(coro)  # type: ignore[arg-type]
        except Refused as exc:
            check_code(exc.code)
            return exc
        return None

    # --- operations -----------------------------------------------------------------------------

    def join(self, room: str, role: Role, resume: str | None) -> None:
        sock = Sock(room, role)
        ref = RoomRef(room, ROOMS.index(room) + 1, self.gens[room])
        try:
            sock.conn = run_sync(self.hub.join(JoinRequest(ref, role, resume), sock.sink))
        except WaitingRoomFull:
            assert role is Role.CLIENT and not sock.sink.frames
            return
        except Fatal as exc:  # pragma: no cover - the hub is never closed here
            raise AssertionError(f"unexpected fatal {exc.code}") from exc
        joined = parse(sock.sink.frames[0])
        assert isinstance(joined, Joined)
        if role is Role.CLIENT:
            assert self.pid_room.setdefault(joined.id, room) == room, "a client changed rooms"
        if resume is not None and not joined.resumed:
            assert joined.resume_error in ("invalid", "expired", "revoked")
        self.socks.append(sock)

    def step(self, r: Reader) -> None:
        op = r.pick(12)
        live = [s for s in self.socks if s.conn is not None]
        room = ROOMS[r.pick(2)]
        if op == 0:
            self.join(room, Role.COUNSELOR, None)
        elif op in (1, 2):
            self.join(room, Role.CLIENT, None)
        elif op == 3 and live:  # resume: own token, a foreign room, or a damaged token
            s = live[r.pick(len(live))]
            how = r.pick(4)
            token = s.token or "x.y"
            if how == 1:
                room = ROOMS[1 - ROOMS.index(s.room)]
            elif how == 2:
                token = token[:-2] + "AA"
            elif how == 3:
                token = tokens.issue(
                    b"f" * 32, tokens.ResumeClaims(s.room, s.pid or "p", s.role, True, 0, 2**40)
                )
            self.join(room if how == 1 else s.room, s.role, token)
        elif op in (4, 5, 6, 7) and live:
            s = live[r.pick(len(live))]
            targets = [COUNSELOR_ID, "nobody", *(x.pid for x in self.socks if x.pid)]
            target = targets[r.pick(len(targets))]
            assert s.conn is not None
            if op == 4:
                self.boxes += 1
                box = f"b{self.boxes}"
                self.sent[box] = (s.room, s.pid, target)
                refused = self.call(self.hub.relay(s.conn, Relay(target, EPOCH, box)))
            else:
                action = ("admit", "decline", "remove")[op - 5]
                refused = self.call(getattr(self.hub, action)(s.conn, target))
                if refused is None:
                    assert s.role is Role.COUNSELOR and self.pid_room.get(target) == s.room
                    if action == "admit":
                        self.admitted.add((s.room, target))
                elif s.open and s.role is Role.CLIENT:
                    assert isinstance(refused, Forbidden)
            if not s.open:
                assert isinstance(refused, Departed), "a departed connection acted"
        elif op == 8 and live:
            s = live[r.pick(len(live))]
            assert s.conn is not None
            refused = self.call(self.hub.end_session(s.conn))
            assert refused is None or not s.open or s.role is Role.CLIENT
        elif op == 9 and live:  # leave, or the socket drops
            s = live[r.pick(len(live))]
            assert s.conn is not None
            if r.pick(2):
                refused = self.call(self.hub.leave(s.conn))
                assert (refused is None) == s.open
            s.open = False
            s.sink.close(1006, "dropped")
            run_sync(self.hub.disconnect(s.conn))
        elif op == 10:
            seconds = (1, 20, 59, 61)[r.pick(4)]
            self.clock.now += seconds
            self.wall.now += seconds
            self.hub.expire_due()
            if seconds > 20:
                self.hub.refresh_tokens()
        elif op == 11:
            run_sync(self.hub.close_room(room))
            self.gens[room] += 1  # storage bumps the generation when a room closes
        self.check()

    # --- the properties -------------------------------------------------------------------------

    def _peer(self, s: Sock, info: PeerInfo | Peer) -> None:
        if info.id == COUNSELOR_ID:
            assert info.role is Role.COUNSELOR
            return
        assert self.pid_room.get(info.id) == s.room, "a notice about another room's participant"
        if s.role is Role.CLIENT:
            assert s.state is PeerState.ADMITTED, "a waiting client learned about another client"

    def _frame(self, s: Sock, text: str) -> None:
        m = parse(text)
        if isinstance(m, Joined):
            s.pid, s.state, s.token = m.id, m.state, m.resume
            assert m.role is s.role and (m.id == COUNSELOR_ID) == (s.role is Role.COUNSELOR)
            if s.role is Role.CLIENT:
                assert self.pid_room.setdefault(m.id, s.room) == s.room, "a client changed rooms"
                if m.state is PeerState.ADMITTED:
                    assert (s.room, m.id) in self.admitted, "admitted without admission"
            for info in m.peers:
                self._peer(s, info)
        elif isinstance(m, Admitted):
            assert s.role is Role.CLIENT and (s.room, s.pid) in self.admitted
            s.state = PeerState.ADMITTED
            for info in m.peers:
                self._peer(s, info)
        elif isinstance(m, Peer):
            self._peer(s, m)
        elif isinstance(m, Relayed):
            room, sender, to = self.sent[m.box]
            assert room == s.room and to == s.pid and m.sender == sender, "misdelivered"
            if s.role is Role.CLIENT and s.state is PeerState.WAITING:
                assert m.sender == COUNSELOR_ID, "a waiting client heard from another client"
        elif isinstance(m, Token):
            claims = tokens.decode(KEY, m.resume, now=self.wall.now)
            assert claims.room == s.room and claims.participant == s.pid
            assert claims.admitted == (s.state is PeerState.ADMITTED)
            s.token = m.resume
        else:
            raise AssertionError(f"unexpected {type(m).__name__}")

    def check(self) -> None:
        for s in self.socks:
            for text in s.sink.frames:
                self._frame(s, text)
            s.sink.frames.clear()
            if s.open and s.sink.closed is not None:
                assert s.sink.closed in close_codes()
                s.open = False
                assert s.conn is not None
                run_sync(self.hub.disconnect(s.conn))
        assert self.hub.stats.sends_dropped == 0, "something was sent to a closed socket"
        for room_id, room in self.hub._rooms.items():
            assert room_id in ROOMS
            assert len(room.clients(PeerState.ADMITTED)) <= LIMITS.capacity, "over capacity"
            assert len(room.clients(PeerState.WAITING)) <= LIMITS.max_waiting, "waiting overflow"
            assert room.counselor is room.participants.get(COUNSELOR_ID)
            for pid, p in room.participants.items():
                assert p.id == pid and p.state in (PeerState.WAITING, PeerState.ADMITTED)
                if p.sink is not None:
                    assert isinstance(p.sink, Sink) and p.sink.closed is None, "closed sink kept"


def TestOneInput(data: bytes) -> None:  # atheris calls it by this name
    r = Reader(data)
    world = World()
    for _ in range(MAX_OPS):
        if not r:
            break
        world.step(r)


if __name__ == "__main__":
    atheris_main(TestOneInput)
