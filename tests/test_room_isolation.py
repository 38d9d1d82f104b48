"""Room isolation, as a property: random join / knock / admit / decline / remove / end / leave /
drop / resume / relay / time sequences over several rooms, against the real core.

After every step, every frame every socket received is checked:
- nothing crosses rooms (envelopes, peer notices, rosters, tokens);
- an envelope reaches exactly the participant it was addressed to, stamped with its true sender;
- a waiting client hears only from and about the counselor;
- no client is ever admitted (``admitted``, or ``joined`` in state admitted) unless the room's
  counselor admitted that very participant;
- nothing is ever sent to a socket after it was closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from signaling.errors import Refused, WaitingRoomFull
from signaling.hub import Connection
from signaling.limits import RoomLimits
from signaling.messages import (
    COUNSELOR_ID,
    Admitted,
    Joined,
    Message,
    Peer,
    PeerInfo,
    PeerState,
    Relay,
    Relayed,
    Role,
    Token,
    parse,
)
from signaling.tokens import decode
from tests.signaling_support import KEY, Clock, Generations, RecordingSink, make_hub, request

ROOMS = ["RoomAAAAAAAAAAAAAAAAAA", "RoomBBBBBBBBBBBBBBBBBB", "RoomCCCCCCCCCCCCCCCCCC"]
EPOCH = "E" * 22
T = TypeVar("T")


@dataclass
class Sock:
    """One socket as the test sees it."""

    sink: RecordingSink
    room: str
    role: Role
    conn: Connection | None = None
    pid: str = ""
    state: PeerState = PeerState.WAITING
    token: str = ""
    open: bool = True
    seen: list[Message] = field(default_factory=list)


@dataclass(frozen=True)
class Sent:
    room: str
    sender: str
    to: str


class RoomIsolation(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = Clock()
        self.wall = Clock(1_700_000_000.0)
        self.gens = Generations()
        self.hub = make_hub(
            self.gens,
            limits=RoomLimits(
                capacity=2, max_waiting=3, waiting_held=3, resume_held=4, resume_seconds=60
            ),
            clock=self.clock,
            wall=self.wall,
        )
        self.socks: list[Sock] = []
        self.sent: dict[str, Sent] = {}
        self.admitted: set[tuple[str, str]] = set()  # (room, client id) the counselor admitted
        self.pid_room: dict[str, str] = {}
        self.boxes = 0

    def teardown(self) -> None:
        self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    # --- helpers --------------------------------------------------------------------------------

    def _open(self, role: Role | None = None) -> list[Sock]:
        return [s for s in self.socks if s.open and s.conn and (role is None or s.role is role)]

    def _join(self, room: str, role: Role, resume: str | None) -> None:
        sock = Sock(RecordingSink(), room, role)
        pk = ROOMS.index(room) + 1
        try:
            sock.conn = self.run(
                self.hub.join(
                    request(room, role, resume, pk=pk, gen=self.gens.values[pk]), sock.sink
                )
            )
        except WaitingRoomFull:
            assert role is Role.CLIENT and not sock.sink.frames
            return
        joined = parse(sock.sink.frames[0])
        assert isinstance(joined, Joined)
        if role is Role.CLIENT:
            assert self.pid_room.setdefault(joined.id, room) == room, "a client changed rooms"
        self.socks.append(sock)

    # --- rules ----------------------------------------------------------------------------------

    @rule(room=st.sampled_from(ROOMS))
    def counselor_joins(self, room: str) -> None:
        self._join(room, Role.COUNSELOR, None)

    @rule(room=st.sampled_from(ROOMS))
    def client_knocks(self, room: str) -> None:
        self._join(room, Role.CLIENT, None)

    @precondition(lambda self: any(not s.open and s.token for s in self.socks))
    @rule(i=st.integers(0, 10_000), room_swap=st.booleans())
    def resume(self, i: int, room_swap: bool) -> None:
        closed = [s for s in self.socks if not s.open and s.token]
        old = closed[i % len(closed)]
        # Now and then try the token on the wrong room: it must not get in there.
        room = ROOMS[(ROOMS.index(old.room) + 1) % len(ROOMS)] if room_swap else old.room
        self._join(room, old.role, old.token)

    @precondition(lambda self: bool(self._open(Role.COUNSELOR)))
    @rule(
        i=st.integers(0, 10_000),
        j=st.integers(0, 10_000),
        action=st.sampled_from(["admit", "decline", "remove"]),
    )
    def counselor_acts(self, i: int, j: int, action: str) -> None:
        counselors = self._open(Role.COUNSELOR)
        c = counselors[i % len(counselors)]
        clients = [s for s in self.socks if s.role is Role.CLIENT and s.pid]
        target = clients[j % len(clients)].pid if clients else "nobody"
        assert c.conn is not None
        try:
            self.run(getattr(self.hub, action)(c.conn, target))
        except Refused:
            return
        assert self.pid_room.get(target) == c.room, "acted on a client of another room"
        if action == "admit":
            self.admitted.add((c.room, target))

    @precondition(lambda self: bool(self._open(Role.COUNSELOR)))
    @rule(i=st.integers(0, 10_000))
    def end_session(self, i: int) -> None:
        counselors = self._open(Role.COUNSELOR)
        c = counselors[i % len(counselors)]
        assert c.conn is not None
        try:
            self.run(self.hub.end_session(c.conn))
        except Refused:
            pass

    @precondition(lambda self: bool(self._open()))
    @rule(i=st.integers(0, 10_000), leave=st.booleans())
    def leave_or_drop(self, i: int, leave: bool) -> None:
        socks = self._open()
        s = socks[i % len(socks)]
        assert s.conn is not None
        if leave:
            self.run(self.hub.leave(s.conn))
        s.open = False
        s.sink.close(1006, "dropped")  # the transport is gone either way
        self.run(self.hub.disconnect(s.conn))

    @precondition(lambda self: bool(self._open()))
    @rule(i=st.integers(0, 10_000), j=st.integers(0, 10_000))
    def relay(self, i: int, j: int) -> None:
        senders = self._open()
        s = senders[i % len(senders)]
        targets = [COUNSELOR_ID, "nobody"] + [x.pid for x in self.socks if x.pid]
        to = targets[j % len(targets)]
        self.boxes += 1
        box = f"b{self.boxes}"
        self.sent[box] = Sent(s.room, s.pid, to)
        assert s.conn is not None
        try:
            self.run(self.hub.relay(s.conn, Relay(to, EPOCH, box)))
        except Refused:
            pass

    @rule(seconds=st.sampled_from([1, 20, 59, 61]))
    def time_passes(self, seconds: int) -> None:
        self.clock.now += seconds
        self.wall.now += seconds
        self.hub.expire_due()
        if seconds > 20:
            self.hub.refresh_tokens()

    # --- the properties -------------------------------------------------------------------------

    def _check_peer(self, s: Sock, info: PeerInfo | Peer) -> None:
        if info.id == COUNSELOR_ID:
            assert info.role is Role.COUNSELOR
            return
        assert self.pid_room.get(info.id) == s.room, "a notice about another room's participant"
        if s.role is Role.CLIENT:
            assert s.state is PeerState.ADMITTED, "a waiting client learned about another client"
            assert info.state is not PeerState.WAITING

    def _check(self, s: Sock, m: Message) -> None:
        if isinstance(m, Joined):
            assert not s.seen, "joined is always the first message"
            s.pid, s.state, s.token = m.id, m.state, m.resume
            assert m.role is s.role
            if s.role is Role.COUNSELOR:
                assert m.id == COUNSELOR_ID
            else:
                assert self.pid_room.setdefault(m.id, s.room) == s.room, "a client changed rooms"
                if m.state is PeerState.ADMITTED:
                    assert (s.room, m.id) in self.admitted, "admitted without admission"
            for info in m.peers:
                self._check_peer(s, info)
        elif isinstance(m, Admitted):
            assert s.role is Role.CLIENT and (s.room, s.pid) in self.admitted
            s.state = PeerState.ADMITTED
            for info in m.peers:
                self._check_peer(s, info)
        elif isinstance(m, Peer):
            self._check_peer(s, m)
        elif isinstance(m, Relayed):
            sent = self.sent[m.box]
            assert sent.room == s.room, "an envelope crossed rooms"
            assert sent.to == s.pid, "an envelope reached someone it was not addressed to"
            assert m.sender == sent.sender, "the sender was stamped wrongly"
            if s.role is Role.CLIENT and s.state is PeerState.WAITING:
                assert m.sender == COUNSELOR_ID
        elif isinstance(m, Token):
            claims = decode(KEY, m.resume, now=self.wall.now)
            assert claims.room == s.room and claims.participant == s.pid
            assert claims.admitted == (s.state is PeerState.ADMITTED)
            s.token = m.resume
        else:
            raise AssertionError(f"unexpected {type(m).__name__}")
        s.seen.append(m)

    @invariant()
    def every_frame_is_allowed(self) -> None:
        for s in self.socks:
            for m in s.sink.take():
                self._check(s, m)
            if s.open and s.sink.closed is not None:
                # The hub closed it (declined, removed, ended, replaced, left): the handler
                # would now report the socket gone.
                s.open = False
                assert s.conn is not None
                self.run(self.hub.disconnect(s.conn))
        assert self.hub.stats.sends_dropped == 0, "something was sent to a closed socket"


RoomIsolation.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_room_isolation = RoomIsolation.TestCase
