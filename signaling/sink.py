"""The per-connection delivery interface between a hub and a transport (the /ws handler's socket,
a Redis subscriber, or a test double)."""

from __future__ import annotations

from typing import Protocol


class Sink(Protocol):
    def send(self, text: str) -> bool:
        """Queue one text frame without blocking. False when the bounded queue is full (the hub
        then closes the sink as too slow) or the sink is closing."""
        ...

    def close(self, code: int, reason: str) -> None:
        """Close the connection with this WebSocket close code, without blocking. Idempotent:
        the first code wins. Frames queued before are still sent, unless the code is
        ``TOO_SLOW``."""
        ...
