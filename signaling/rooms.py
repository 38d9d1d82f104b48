"""The room state machine and the relay rules (synchronous, no I/O, no clock of its own).

A room holds at most one counselor and some clients. A client is ``waiting`` until the counselor
admits it, then ``admitted`` until it leaves, is removed, the session ends or its slot expires.
Each participant is connected (it has a sink) or away (dropped, inside its resume window).

Who sees whom (``peer`` messages, rosters): the counselor sees every client; every client sees
the counselor; admitted clients see each other; a waiting client sees no other client.
Who may talk (``relay``): the counselor with any client of the room, admitted clients with each
other. Nothing is ever delivered outside the room.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType

from signaling.errors import (
    BadState,
    CloseCode,
    Forbidden,
    HoldFull,
    RoomFull,
    UnknownPeer,
    WaitingRoomFull,
)
from signaling.limits import RoomLimits, SignalingStats
from signaling.messages import (
    COUNSELOR_ID,
    Admitted,
    GoneReason,
    Peer,
    PeerInfo,
    PeerState,
    Relay,
    Role,
    dump,
    relayed_text,
)
from signaling.sink import Sink

_CLOSE_TEXT: Mapping[int, str] = MappingProxyType(
    {
        CloseCode.NORMAL: "left",
        CloseCode.DECLINED: "declined",
        CloseCode.REMOVED: "removed",
        CloseCode.SESSION_ENDED: "session ended",
        CloseCode.REPLACED: "replaced by a newer connection",
        CloseCode.UNKNOWN_ROOM: "unknown room",
        CloseCode.GOING_AWAY: "server going away",
    }
)


class _Queue:
    """A bounded FIFO of frames (by count and by total size). Its deque is made on the first
    push: every participant has two queues and most never hold anything (memory per idle
    connection, docs/performance.md)."""

    __slots__ = ("_items", "bytes", "max_bytes", "max_items")

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self._items: deque[str] | None = None
        self.bytes = 0
        self.max_items = max_items
        self.max_bytes = max_bytes

    @property
    def items(self) -> Sequence[str]:
        return () if self._items is None else self._items

    def push(self, text: str) -> bool:
        if len(self.items) >= self.max_items or self.bytes + len(text) > self.max_bytes:
            return False
        if self._items is None:
            self._items = deque()
        self._items.append(text)
        self.bytes += len(text)
        return True

    def drain(self) -> Iterator[str]:
        items = self._items
        while items:
            text = items.popleft()
            self.bytes -= len(text)
            yield text

    def clear(self) -> None:
        self._items = None
        self.bytes = 0


class Participant:
    __slots__ = ("held", "id", "outbox", "role", "sink", "state")

    def __init__(
        self, pid: str, role: Role, state: PeerState, sink: Sink, limits: RoomLimits
    ) -> None:
        self.id = pid
        self.role = role
        self.state = state
        self.sink: Sink | None = sink
        # Relayed to this participant while it is away; delivered when it resumes.
        self.held = _Queue(limits.resume_held, limits.held_bytes)
        # From this client to an absent counselor; kept only while this client's socket is open.
        self.outbox = _Queue(limits.waiting_held, limits.held_bytes)

    @property
    def connected(self) -> bool:
        return self.sink is not None

    def info(self) -> PeerInfo:
        return PeerInfo(self.id, self.role, self.state, self.sink is not None)


def sees(observer: Participant, subject: Participant) -> bool:
    if observer is subject:
        return False
    if observer.role is Role.COUNSELOR or subject.role is Role.COUNSELOR:
        return True
    return observer.state is PeerState.ADMITTED and subject.state is PeerState.ADMITTED


def may_talk(sender: Participant, target: Participant) -> bool:
    return sees(sender, target)  # the same rule: counselor <-> any client, admitted <-> admitted


class Room:
    def __init__(
        self, room_id: str, pk: int, generation: int, limits: RoomLimits, stats: SignalingStats
    ) -> None:
        self.id = room_id
        self.pk = pk
        self.generation = generation
        self.limits = limits
        self.stats = stats
        self.participants: dict[str, Participant] = {}
        self.counselor: Participant | None = None

    # --- queries --------------------------------------------------------------------------------

    def __bool__(self) -> bool:
        return bool(self.participants)

    def clients(self, state: PeerState | None = None) -> list[Participant]:
        return [
            p
            for p in self.participants.values()
            if p.role is Role.CLIENT and (state is None or p.state is state)
        ]

    def roster(self, viewer: Participant) -> tuple[PeerInfo, ...]:
        return tuple(p.info() for p in self.participants.values() if sees(viewer, p))

    def is_current(self, p: Participant, sink: Sink) -> bool:
        """True while ``sink`` is still the live connection of ``p`` in this room."""
        return p.sink is sink and self.participants.get(p.id) is p

    # --- delivery -------------------------------------------------------------------------------

    def send(self, p: Participant, text: str) -> None:
        sink = p.sink
        if sink is not None and not sink.send(text):
            self.stats.sends_dropped += 1
            sink.close(CloseCode.TOO_SLOW, "too slow")

    def _announce(self, subject: Participant, text: str) -> None:
        for observer in self.participants.values():
            if observer.sink is not None and sees(observer, subject):
                self.send(observer, text)

    def announce(self, p: Participant) -> None:
        """Tell everyone who sees ``p`` its current state and connectivity."""
        self._announce(p, dump(Peer(p.id, p.role, p.state, p.sink is not None)))

    def deliver_pending(self, p: Participant) -> None:
        """After ``p`` (re)connected and got ``joined``: what was held for it, in order."""
        for text in p.held.drain():
            self.send(p, text)
        if p.role is Role.COUNSELOR:
            for client in self.clients():
                for text in client.outbox.drain():
                    self.send(p, text)

    # --- arrivals -------------------------------------------------------------------------------

    def add_client(self, pid: str, sink: Sink, *, admitted: bool = False) -> Participant:
        if admitted and len(self.clients(PeerState.ADMITTED)) >= self.limits.capacity:
            admitted = False
        if not admitted and len(self.clients(PeerState.WAITING)) >= self.limits.max_waiting:
            raise WaitingRoomFull("the waiting room is full")
        state = PeerState.ADMITTED if admitted else PeerState.WAITING
        p = Participant(pid, Role.CLIENT, state, sink, self.limits)
        self.participants[pid] = p
        return p

    def add_counselor(self, sink: Sink) -> Participant:
        """A new counselor socket (not a resume) takes the counselor's place, id ``counselor``.
        A socket still open there is replaced, and envelopes held for the earlier page are
        dropped: they were sealed for its epoch and could not be opened by the new one."""
        p = self.counselor
        if p is None:
            p = Participant(COUNSELOR_ID, Role.COUNSELOR, PeerState.ADMITTED, sink, self.limits)
            self.participants[COUNSELOR_ID] = p
            self.counselor = p
            return p
        self.stats.envelopes_dropped += len(p.held.items)
        p.held.clear()
        self.attach(p, sink)
        return p

    def attach(self, p: Participant, sink: Sink) -> None:
        """``p`` resumes on a new socket; a socket it still had open is replaced."""
        old = p.sink
        if old is not None and old is not sink:
            old.close(CloseCode.REPLACED, _CLOSE_TEXT[CloseCode.REPLACED])
        p.sink = sink

    # --- departures -----------------------------------------------------------------------------

    def detach(self, p: Participant) -> None:
        """``p``'s socket closed: it keeps its slot (the hub times the resume window)."""
        p.sink = None
        dropped = len(p.outbox.items)
        if dropped:
            self.stats.envelopes_dropped += dropped
            p.outbox.clear()
        self.announce(p)

    def discard(self, p: Participant, reason: GoneReason, code: CloseCode | None) -> None:
        """``p`` leaves the room for good; its socket, if any, is closed with ``code``."""
        if self.participants.get(p.id) is not p:
            return
        text = dump(Peer(p.id, p.role, PeerState.GONE, False, reason))
        observers = [o for o in self.participants.values() if o.sink is not None and sees(o, p)]
        del self.participants[p.id]
        if self.counselor is p:
            self.counselor = None
        if p.sink is not None and code is not None:
            p.sink.close(code, _CLOSE_TEXT.get(code, reason.value))
        p.sink = None
        p.held.clear()
        p.outbox.clear()
        for observer in observers:
            self.send(observer, text)

    # --- the counselor's actions ----------------------------------------------------------------

    def _client(self, actor: Participant, target_id: str) -> Participant:
        if actor.role is not Role.COUNSELOR or self.counselor is not actor:
            raise Forbidden("only the room's counselor may do that")
        target = self.participants.get(target_id)
        if target is None or target.role is not Role.CLIENT:
            raise UnknownPeer("no such client in this room")
        return target

    def admit(self, actor: Participant, target_id: str) -> Participant:
        target = self._client(actor, target_id)
        if target.state is not PeerState.WAITING:
            raise BadState("that client is not waiting")
        if len(self.clients(PeerState.ADMITTED)) >= self.limits.capacity:
            raise RoomFull("the room is full")
        target.state = PeerState.ADMITTED
        self.send(target, dump(Admitted(self.roster(target))))
        self.announce(target)
        return target

    def decline(self, actor: Participant, target_id: str) -> Participant:
        target = self._client(actor, target_id)
        if target.state is not PeerState.WAITING:
            raise BadState("that client is not waiting")
        self.discard(target, GoneReason.DECLINED, CloseCode.DECLINED)
        return target

    def remove(self, actor: Participant, target_id: str) -> Participant:
        target = self._client(actor, target_id)
        if target.state is not PeerState.ADMITTED:
            raise BadState("that client is not admitted")
        self.discard(target, GoneReason.REMOVED, CloseCode.REMOVED)
        return target

    def end(self, actor: Participant) -> list[Participant]:
        """End the session: every admitted client goes; waiting clients keep waiting."""
        if actor.role is not Role.COUNSELOR or self.counselor is not actor:
            raise Forbidden("only the room's counselor may do that")
        ended = self.clients(PeerState.ADMITTED)
        for client in ended:
            self.discard(client, GoneReason.ENDED, CloseCode.SESSION_ENDED)
        return ended

    # --- relay ----------------------------------------------------------------------------------

    def relay(self, sender: Participant, msg: Relay) -> None:
        """Forward an envelope, stamped with the sender's id, or hold it, or refuse it."""
        to = msg.to
        target = self.participants.get(to)
        text = relayed_text(sender.id, msg.epoch, msg.box)
        if target is None:
            if to == COUNSELOR_ID and sender.role is Role.CLIENT:
                self._hold(sender.outbox, text)  # the counselor is absent: wait for them
                return
            raise UnknownPeer("no such participant")
        if not may_talk(sender, target):
            raise UnknownPeer("no such participant")  # the same answer: ids are not probed
        if target.sink is None:
            self._hold(target.held, text)
            return
        self.stats.envelopes_relayed += 1
        self.send(target, text)

    def _hold(self, queue: _Queue, text: str) -> None:
        if not queue.push(text):
            self.stats.envelopes_dropped += 1
            raise HoldFull("the recipient's hold queue is full")
        self.stats.envelopes_held += 1
