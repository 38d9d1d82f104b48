"""Limits of the signaling core: room bounds, a token bucket, a per-key connection counter, and
the counters the server exposes on /metrics."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RoomLimits:
    capacity: int = 1  # clients admitted at once, besides the counselor
    max_waiting: int = 10  # clients in the waiting room at once
    waiting_held: int = 20  # envelopes a client may leave for an absent counselor
    resume_held: int = 64  # envelopes held for a participant inside its resume window
    held_bytes: int = 1 << 20  # and their total size, per participant and per queue
    resume_seconds: float = 60.0  # how long a dropped participant keeps its slot

    def __post_init__(self) -> None:
        if self.capacity < 1 or self.max_waiting < 0 or self.resume_seconds <= 0:
            raise ValueError("room limits must be positive")

    @property
    def token_refresh_seconds(self) -> float:
        """How often connected participants get a fresh resume token."""
        return self.resume_seconds / 3

    @property
    def token_ttl_seconds(self) -> float:
        """A token outlives its refresh by the resume window, so any drop gets the full window."""
        return self.resume_seconds + self.token_refresh_seconds


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; each message takes one."""

    __slots__ = ("_burst", "_clock", "_last", "_rate", "_tokens")

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()

    def take(self) -> bool:
        now = self._clock()
        tokens = self._tokens + (now - self._last) * self._rate
        self._last = now
        if tokens > self._burst:
            tokens = self._burst
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True


class ConnectionCounter:
    """Open connections per key (the client IP), with a cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._open: dict[str, int] = {}

    def acquire(self, key: str) -> bool:
        count = self._open.get(key, 0)
        if count >= self.cap:
            return False
        self._open[key] = count + 1
        return True

    def release(self, key: str) -> None:
        count = self._open.get(key, 0) - 1
        if count > 0:
            self._open[key] = count
        else:
            self._open.pop(key, None)

    def count(self, key: str) -> int:
        return self._open.get(key, 0)


@dataclass
class SignalingStats:
    """Counters for /metrics: event kinds and counts only, never ids or payloads."""

    connections_open: int = 0
    connections_total: int = 0
    messages_received: int = 0
    envelopes_relayed: int = 0
    envelopes_held: int = 0  # kept for an away or absent recipient
    envelopes_dropped: int = 0  # refused because a hold queue was full
    sends_dropped: int = 0  # a send queue was full: the connection was closed as too slow
    protocol_errors: int = 0
    closes: Counter[int] = field(default_factory=Counter)  # by close code
