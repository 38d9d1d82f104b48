"""Per-key sliding-window rate limits (e.g. requests per IP), in memory per process.

Used by the pre-call check (its TURN credential and its echo peer). Bounded memory: at most
``max_keys`` keys; the oldest key is forgotten first.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable


class RateLimit:
    """At most ``limit`` events per key in any ``window`` seconds."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a rate limit needs limit >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._events: dict[str, deque[float]] = {}

    def _prune(self, key: str, now: float) -> deque[float] | None:
        events = self._events.get(key)
        if events is None:
            return None
        while events and events[0] <= now - self.window:
            events.popleft()
        if not events:
            del self._events[key]
            return None
        return events

    def retry_after(self, key: str) -> int:
        """0 when ``key`` may have one more event now, else whole seconds until it may."""
        now = self.clock()
        events = self._prune(key, now)
        if events is None or len(events) < self.limit:
            return 0
        oldest_needed = events[len(events) - self.limit]
        return max(1, math.ceil(oldest_needed + self.window - now))

    def hit(self, key: str) -> None:
        """Record one event for ``key`` (whether or not it was allowed)."""
        now = self.clock()
        if key not in self._events and len(self._events) >= self.max_keys:
            self._events.pop(next(iter(self._events)))  # dicts keep insertion order
        events = self._events.setdefault(key, deque())
        events.append(now)
        while len(events) > self.limit:
            events.popleft()

    def take(self, key: str) -> int:
        """Record an event if allowed and return 0; else return the seconds to wait."""
        wait = self.retry_after(key)
        if not wait:
            self.hit(key)
        return wait
