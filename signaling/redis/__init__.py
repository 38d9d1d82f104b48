"""The Redis backend of the hub, for several server processes (``RUANG_REDIS_URL``)."""

from signaling.redis.hub import RedisConnection, RedisHub
from signaling.redis.store import RedisUnavailable

__all__ = ["RedisConnection", "RedisHub", "RedisUnavailable"]
