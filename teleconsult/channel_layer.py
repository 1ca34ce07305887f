"""The Redis channel layer with a bounded, *waiting* connection pool, so message bursts queue instead of failing."""

from __future__ import annotations

from typing import Any

from channels_redis.core import RedisChannelLayer
from redis.asyncio import BlockingConnectionPool, ConnectionPool


class PooledRedisChannelLayer(RedisChannelLayer):
    """channels_redis' core layer, but each process holds at most `max_connections` Redis connections and a
    task that finds them all busy waits up to `pool_timeout` seconds for one.

    Why: redis-py's default asyncio pool raises MaxConnectionsError ("Too many connections") as soon as
    100 commands are in flight at once, which a burst of group sends from many consumers reaches easily
    (each send holds a connection for its round trip). Waiting a few milliseconds for a free connection is
    the right behaviour for signalling; failing the send is not. The bound also keeps the connections that
    several daphne processes open well below Redis' `maxclients`.
    """

    def __init__(self, *, max_connections: int = 50, pool_timeout: float = 10.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_connections = max_connections
        self.pool_timeout = pool_timeout

    def create_pool(self, index: int) -> ConnectionPool:
        host = dict(self.hosts[index])
        if "address" not in host:
            # Sentinel or host/port dicts keep the library's own pool (not used by our settings).
            return super().create_pool(index)
        address = host.pop("address")
        return BlockingConnectionPool.from_url(
            address, max_connections=self.max_connections, timeout=self.pool_timeout, **host
        )
