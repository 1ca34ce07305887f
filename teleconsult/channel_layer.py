"""The Redis channel layer with a bounded, *waiting* connection pool and process-local delivery."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from channels_redis.core import RedisChannelLayer
from redis.asyncio import BlockingConnectionPool, ConnectionPool

logger = logging.getLogger(__name__)


class PooledRedisChannelLayer(RedisChannelLayer):
    """channels_redis' core layer, with two changes.

    A bounded, waiting pool: each process holds at most `max_connections` Redis connections and a task that
    finds them all busy waits up to `pool_timeout` seconds for one. redis-py's default asyncio pool raises
    MaxConnectionsError ("Too many connections") as soon as 100 commands are in flight at once, which a
    burst of group sends from many consumers reaches easily (each send holds a connection for its round
    trip). Waiting a few milliseconds for a free connection is the right behaviour for signalling; failing
    the send is not. The bound also keeps the connections that several daphne processes open well below
    Redis' `maxclients`.

    Process-local delivery: a message for a channel of a consumer in this same process (the `specific.…!…`
    names this layer handed out) goes straight into that consumer's buffer, without Redis; so does each
    local member's copy of a group message (the group's members still come from Redis, which holds them for
    every process). The library would write it to Redis and read it back through this process's single
    inbox, one blocking pop at a time (about eight Redis commands per message): with every participant of
    a visit on one process, that round trip was most of the cost of relaying a negotiation message
    (docs/benchmarks.md). Channels of other processes go through Redis exactly as before. Messages are
    serialised and read back even when local, so a receiver never shares objects with the sender.
    A single reader task per process empties the Redis inbox into the consumers' buffers.

    Liveness: while it has consumers, each process writes the time into the Redis hash `<prefix>:processes` under
    its client prefix every `heartbeat_interval` seconds, the first time before it hands out a channel name. A
    process killed outright (SIGKILL, out of memory, its machine lost) never runs its consumers' disconnect();
    the periodic sweep finds its channels by that prefix and its silence in the hash (video.services).
    """

    def __init__(
        self,
        *,
        max_connections: int = 50,
        pool_timeout: float = 10.0,
        heartbeat_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.max_connections = max_connections
        self.pool_timeout = pool_timeout
        self.heartbeat_interval = heartbeat_interval
        self._heartbeat: asyncio.Task[None] | None = None
        # "<client prefix>!" is in every process-specific channel name this instance makes, and in no other
        # (the prefix is a random UUID per instance).
        self._local_marker = self.client_prefix + "!"
        # Channels handed out by new_channel() whose consumer is still receiving; a consumer that stops
        # (its receive is cancelled) leaves, and messages still addressed to it are dropped.
        self._live: set[str] = set()
        # Inbox name ("specific.<prefix>!") → the task moving its Redis messages into the buffers.
        self._readers: dict[str, asyncio.Task[None]] = {}

    def create_pool(self, index: int) -> ConnectionPool:
        host = dict(self.hosts[index])
        if "address" not in host:
            # Sentinel or host/port dicts keep the library's own pool (not used by our settings).
            return super().create_pool(index)
        address = host.pop("address")
        return BlockingConnectionPool.from_url(
            address, max_connections=self.max_connections, timeout=self.pool_timeout, **host
        )

    # --- Process-local delivery ---

    def _is_local(self, channel: str) -> bool:
        """A channel of this process whose inbox is read in the running event loop (the buffers are asyncio
        queues of that loop; a sender in another loop or thread goes through Redis, as before)."""
        if self._local_marker not in channel:
            return False
        reader = self._readers.get(self.non_local_name(channel))
        return reader is not None and not reader.done() and reader.get_loop() is asyncio.get_running_loop()

    def _copy(self, message: dict[str, Any]) -> dict[str, Any]:
        """The message as a receiver through Redis would get it (the layer's serialiser, msgpack, and back), without
        the random prefix and encryption that only matter to what is stored in Redis."""
        copied: dict[str, Any] = self._serializer.from_bytes(self._serializer.as_bytes(message))
        return copied

    def _deliver(self, channel: str, message: dict[str, Any]) -> None:
        """Into the buffer of a consumer of this process; nothing when it has stopped receiving.

        The buffer is the library's bounded queue (the oldest message goes when `capacity` is exceeded), the
        same a message read from Redis lands in."""
        if channel in self._live:
            self.receive_buffer[channel].put_nowait(message)

    async def new_channel(self, prefix: str = "specific") -> str:
        channel: str = await super().new_channel(prefix)
        heartbeat = self._heartbeat
        if heartbeat is None or heartbeat.done() or heartbeat.get_loop() is not asyncio.get_running_loop():
            # Beat once before the name is handed out: no presence ever names a channel of a process the sweep
            # has not seen alive (one it has never seen is left alone, as processes of an older release are).
            # With Redis unreachable the consumer still gets its channel (local delivery works without Redis);
            # the beats that follow try again.
            await self._beat_logged()
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat_forever())
        self._live.add(channel)
        return channel

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        if not self._is_local(channel):
            await super().send(channel, message)
            return
        assert isinstance(message, dict), "message is not a dict"
        # A channel new_channel() handed out is valid by construction (the library's check is a regular expression
        # per message); any other name is checked as the library does.
        assert channel in self._live or self.require_valid_channel_name(channel), "Channel name not valid"
        assert "__asgi_channel__" not in message
        self._deliver(channel, self._copy(message))

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert self.require_valid_group_name(group), "Group name not valid"
        key = self._group_key(group)
        connection = self.connection(self.consistent_hash(group))
        # As the library: membership lapses after group_expiry; the members come from Redis (all processes).
        await connection.zremrangebyscore(key, min=0, max=int(time.time()) - self.group_expiry)
        members = [name.decode("utf8") for name in await connection.zrange(key, 0, -1)]
        remote = [channel for channel in members if not self._is_local(channel)]
        local = [channel for channel in members if self._is_local(channel)]
        if local:
            serialised = self._serializer.as_bytes(message)
            for channel in local:
                self._deliver(channel, self._serializer.from_bytes(serialised))
        if remote:
            await self._group_send_remote(group, remote, message)

    async def _group_send_remote(self, group: str, channel_names: list[str], message: dict[str, Any]) -> None:
        # channels_redis 4.3's group_send after its membership read, unchanged: one pipeline of expiry trims
        # and one script per Redis host, respecting each channel's capacity.
        connection_to_keys, key_to_message, key_to_capacity = self._map_channel_keys_to_connection(
            channel_names, message
        )
        for index, keys in connection_to_keys.items():
            connection = self.connection(index)
            pipe = connection.pipeline()
            for key in keys:
                pipe.zremrangebyscore(key, min=0, max=int(time.time()) - int(self.expiry))
            await pipe.execute()
            args = [key_to_message[key] for key in keys] + [key_to_capacity[key] for key in keys]
            args += [time.time(), self.expiry]
            over_capacity = await connection.eval(_GROUP_SEND_LUA, len(keys), *keys, *args)
            if over_capacity > 0:
                logger.info("%s of %s channels over capacity in group %s", over_capacity, len(channel_names), group)

    async def receive(self, channel: str) -> dict[str, Any]:
        if "!" not in channel:  # a named channel (a worker's): the library's direct receive
            return await super().receive(channel)
        assert channel in self._live or self.require_valid_channel_name(channel)
        inbox = self.non_local_name(channel)
        assert inbox.endswith(self._local_marker), "Wrong client prefix"
        self._ensure_reader(inbox)
        buffer = self.receive_buffer[channel]
        try:
            message: dict[str, Any] = await buffer.get()
        except asyncio.CancelledError:
            # The consumer stopped (channels cancels its pending receive): forget its channel and buffer.
            self._live.discard(channel)
            self.receive_buffer.pop(channel, None)
            if not self._live:
                self._stop_readers()
            raise
        return message

    def _ensure_reader(self, inbox: str) -> None:
        loop = asyncio.get_running_loop()
        reader = self._readers.get(inbox)
        if reader is not None and not reader.done():
            if reader.get_loop() is loop:
                return
            if not reader.get_loop().is_closed():
                raise RuntimeError("Two event loops are trying to receive() on one channel layer at once!")
        self._readers[inbox] = loop.create_task(self._read_inbox(inbox))

    def _stop_readers(self) -> None:
        # The heartbeat stops with the readers, when the process has no consumer left: a process without
        # connections has none to lose, and its next new_channel() beats again before handing out a name.
        tasks = [*self._readers.values(), *([self._heartbeat] if self._heartbeat is not None else [])]
        self._heartbeat = None
        for reader in tasks:
            # A reader of a loop that has been closed (a test's, an async_to_sync call's) is gone with it;
            # cancelling would schedule a callback on that closed loop and fail.
            if not reader.get_loop().is_closed():
                reader.cancel()
        self._readers.clear()

    async def _read_inbox(self, inbox: str) -> None:
        """Move messages from this process's Redis inbox into the consumers' buffers, one at a time.

        A cancelled pop loses nothing (the library keeps a backup of the message being popped and puts it
        back on the next pop). A Redis error is logged and the pop retried with a growing pause, while local
        delivery goes on: consumers wait instead of failing one by one."""
        pause = 0.1
        while True:
            try:
                channel, message = await self.receive_single(inbox)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("reading the channel layer inbox failed; retrying in %.1f s", pause, exc_info=True)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            pause = 0.1
            for name in channel if isinstance(channel, list) else [channel]:
                self._deliver(name, message)

    # --- Liveness ---

    def _processes_key(self) -> str:
        return f"{self.prefix}:processes"

    async def _beat(self) -> None:
        await self.connection(0).hset(self._processes_key(), self.client_prefix, repr(time.time()))

    async def _beat_logged(self) -> None:
        try:
            await self._beat()
        except asyncio.CancelledError:
            raise
        except Exception:  # Redis unreachable: the next beat tries again; the sweep's margin covers a few
            logger.warning("the channel layer's liveness beat failed", exc_info=True)

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            await self._beat_logged()

    async def processes_seen(self) -> dict[str, float]:
        """Client prefix → when that process last beat (a Unix time), for every process that ever beat."""
        beats = await self.connection(0).hgetall(self._processes_key())
        return {name.decode(): float(seen) for name, seen in beats.items()}

    async def processes_forget(self, *, before: float) -> None:
        """Drop the beats older than `before` (processes long gone, whose channels were swept long ago)."""
        old = [name for name, seen in (await self.processes_seen()).items() if seen < before]
        if old:
            await self.connection(0).hdel(self._processes_key(), *old)

    async def close_pools(self) -> None:
        self._stop_readers()
        await super().close_pools()


def process_of(channel: str) -> str:
    """The client prefix of the process that made a channel name ("specific.<prefix>!<suffix>"); "" for a named
    channel."""
    head, marker, _suffix = channel.partition("!")
    return head.rpartition(".")[2] if marker else ""


_GROUP_SEND_LUA = """
    local over_capacity = 0
    local current_time = ARGV[#ARGV - 1]
    local expiry = ARGV[#ARGV]
    for i=1,#KEYS do
        if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i + #KEYS]) then
            redis.call('ZADD', KEYS[i], current_time, ARGV[i])
            redis.call('EXPIRE', KEYS[i], expiry)
        else
            over_capacity = over_capacity + 1
        end
    end
    return over_capacity
"""
