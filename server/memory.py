"""Giving memory back after a crowd leaves.

When many signaling sockets close (a busy hour ends, a load balancer moves clients away), their
objects wait for the cyclic garbage collector, and the C heap keeps the freed pages: the next
crowd then grows the process instead of reusing them. Once the number of open sockets has fallen
by ``drop`` from its last high-water mark, the reclaimer runs a full collection and, on glibc,
``malloc_trim(0)``, which returns free heap pages to the system. Both take milliseconds and run
only after such a fall, never per socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from server.metrics import Metrics

log = logging.getLogger("ruang.memory")

CHECK_EVERY = 1.0  # seconds between looks at the open-socket count
DROP = 100  # sockets closed since the high-water mark that call for a reclaim


def heap_trimmer() -> Callable[[], None] | None:
    """glibc's ``malloc_trim(0)``, or None where there is no such call (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def run() -> None:
        trim(0)

    return run


class MemoryReclaimer:
    """Collects and trims once the open-socket count has fallen by ``drop``."""

    def __init__(self, open_count: Callable[[], int], drop: int = DROP) -> None:
        self._open_count = open_count
        self._drop = drop
        self._high = 0
        self._trim = heap_trimmer()
        self.reclaims = 0

    def check(self) -> bool:
        """Reclaim if due; True when it did."""
        now = self._open_count()
        if now >= self._high:
            self._high = now
            return False
        if self._high - now < self._drop:
            return False
        gc.collect()
        if self._trim is not None:
            self._trim()
        self._high = now
        self.reclaims += 1
        log.debug("memory reclaimed after sockets closed")
        return True


def setup_memory_reclaim(
    app: web.Application, metrics: Metrics, open_count: Callable[[], int]
) -> None:
    """Run a MemoryReclaimer for the app's lifetime and count its reclaims on /metrics."""
    reclaimer = MemoryReclaimer(open_count)
    metrics.gauge(
        "ruang_memory_reclaims_total",
        "Collections and heap trims run after many sockets closed",
        lambda: float(reclaimer.reclaims),
    )

    async def lifetime(_app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(CHECK_EVERY)
                reclaimer.check()

        task = asyncio.create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(lifetime)
