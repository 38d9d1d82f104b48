"""Test doubles of the *transport* for the signaling core: sinks that record what they are given,
a generation counter in memory, and clocks the test moves by hand."""

from __future__ import annotations

from collections import defaultdict

from signaling.hub import InProcessHub, JoinRequest, RoomRef
from signaling.limits import RoomLimits
from signaling.messages import Message, Role, parse

KEY = b"k" * 32


class RecordingSink:
    """Records every frame; ``limit`` frames fit before ``send`` reports a full queue."""

    def __init__(self, limit: int = 10_000) -> None:
        self.frames: list[str] = []
        self.closed: tuple[int, str] | None = None
        self.limit = limit

    def send(self, text: str) -> bool:
        if self.closed is not None or len(self.frames) >= self.limit:
            return False
        self.frames.append(text)
        return True

    def close(self, code: int, reason: str) -> None:
        if self.closed is None:
            self.closed = (code, reason)

    @property
    def code(self) -> int | None:
        return None if self.closed is None else self.closed[0]

    def messages(self) -> list[Message]:
        return [parse(t) for t in self.frames]

    def take(self) -> list[Message]:
        """The messages since the last take."""
        out = self.messages()
        self.frames.clear()
        return out


class Generations:
    """The room generation counter (the server keeps it in the database)."""

    def __init__(self) -> None:
        self.values: defaultdict[int, int] = defaultdict(int)
        self.bumps = 0

    async def bump(self, room_pk: int) -> int:
        self.bumps += 1
        self.values[room_pk] += 1
        return self.values[room_pk]


class Clock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def make_hub(
    gens: Generations | None = None,
    *,
    limits: RoomLimits | None = None,
    clock: Clock | None = None,
    wall: Clock | None = None,
) -> InProcessHub:
    gens = gens or Generations()
    return InProcessHub(
        token_key=KEY,
        bump_generation=gens.bump,
        limits=limits or RoomLimits(),
        clock=clock or Clock(),
        wall_clock=wall or Clock(1_700_000_000.0),
    )


def request(
    room: str, role: Role, resume: str | None = None, pk: int = 1, gen: int = 0
) -> JoinRequest:
    return JoinRequest(RoomRef(room, pk, gen), role, resume)
