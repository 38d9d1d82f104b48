"""Login throttling: failures per account and per IP in a sliding window (defaults 10 and 50
in 15 minutes). In memory per process; the Redis backend of a later issue can share it."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable


class Throttled(Exception):
    """Too many failures: try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many attempts; retry after {retry_after} s")
        self.retry_after = retry_after


class _Window:
    __slots__ = ("events", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.events: deque[float] = deque()


class LoginThrottle:
    MAX_KEYS = 100_000

    def __init__(
        self,
        per_account: int,
        per_ip: int,
        window_seconds: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_account = per_account
        self.per_ip = per_ip
        self.window = window_seconds
        self.clock = clock
        self._accounts: dict[str, _Window] = {}
        self._ips: dict[str, _Window] = {}

    def _prune(self, table: dict[str, _Window], key: str, now: float) -> _Window | None:
        win = table.get(key)
        if win is None:
            return None
        while win.events and win.events[0] <= now - self.window:
            win.events.popleft()
        if not win.events:
            del table[key]
            return None
        return win

    def _retry_after(self, win: _Window | None, now: float) -> int:
        if win is None or len(win.events) < win.limit:
            return 0
        oldest_needed = win.events[len(win.events) - win.limit]
        return max(1, math.ceil(oldest_needed + self.window - now))

    def check(self, account: str, ip: str) -> None:
        """Raise Throttled when this account or this IP is over its limit."""
        now = self.clock()
        wait = max(
            self._retry_after(self._prune(self._accounts, account, now), now),
            self._retry_after(self._prune(self._ips, ip, now), now),
        )
        if wait:
            raise Throttled(wait)

    def failure(self, account: str, ip: str) -> None:
        now = self.clock()
        for table, key, limit in (
            (self._accounts, account, self.per_account),
            (self._ips, ip, self.per_ip),
        ):
            if len(table) >= self.MAX_KEYS and key not in table:
                # Bounded memory: forget the oldest key (dicts keep insertion order).
                table.pop(next(iter(table)))
            win = table.setdefault(key, _Window(limit))
            win.events.append(now)
            while len(win.events) > limit * 2:
                win.events.popleft()

    def success(self, account: str) -> None:
        self._accounts.pop(account, None)
