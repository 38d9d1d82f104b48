"""Several server processes: the Redis hub when ``RUANG_REDIS_URL`` is set, and its health."""

from __future__ import annotations

from collections.abc import Callable

import redis.asyncio as aioredis

from server.config import Config
from server.metrics import Metrics
from signaling.hub import BumpGeneration, CallServersFor, Hub
from signaling.limits import RoomLimits, SignalingStats
from signaling.redis import RedisHub, RedisUnavailable

REDIS_TIMEOUT = 2.0  # seconds for one Redis command; an outage is noticed within a few
# Connections to Redis per process. The pool blocks (up to REDIS_POOL_WAIT) when all are busy
# instead of failing: a burst of relays must queue, not look like Redis being down.
REDIS_POOL_SIZE = 256
REDIS_POOL_WAIT = 10.0  # seconds a command may wait for a free connection under a burst


async def start_redis_hub(
    config: Config,
    *,
    token_key: bytes,
    bump_generation: BumpGeneration,
    limits: RoomLimits,
    stats: SignalingStats,
    call_servers: CallServersFor | None = None,
) -> RedisHub:
    """Connect to Redis and start the hub; a Redis that does not answer stops the start."""
    from server.app import StartupError  # server.app imports this module's importer

    try:
        pool = aioredis.BlockingConnectionPool.from_url(
            config.redis_url,
            max_connections=REDIS_POOL_SIZE,
            timeout=REDIS_POOL_WAIT,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
        )
        client = aioredis.Redis.from_pool(pool)
    except ValueError as exc:
        raise StartupError(f"RUANG_REDIS_URL is not a Redis URL: {exc}") from None
    hub = RedisHub(
        client=client,
        token_key=token_key,
        bump_generation=bump_generation,
        limits=limits,
        stats=stats,
        max_frame=config.limits.ws_max_frame_bytes,
        call_servers=call_servers,
    )
    try:
        await hub.start()
    except RedisUnavailable as exc:
        await client.aclose()
        raise StartupError(f"RUANG_REDIS_URL: {exc}") from None
    return hub


def register_redis_metrics(metrics: Metrics, hub: Callable[[], Hub | None]) -> None:
    """/metrics with several processes: whether this process has Redis, and its outages."""

    def up() -> float:
        current = hub()
        return 1.0 if isinstance(current, RedisHub) and current.available else 0.0

    def outages() -> float:
        current = hub()
        return float(current.outages) if isinstance(current, RedisHub) else 0.0

    metrics.gauge("ruang_redis_up", "1 while this process can use Redis", up)
    metrics.gauge("ruang_redis_outages_total", "Times this process lost Redis", outages)
