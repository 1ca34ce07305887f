"""The Redis channel layer as configured in settings, under bursts and idleness, on the real Redis.

Paired tests: each shows the failure with the library's stock configuration, then that ours holds.
"""

from __future__ import annotations

import asyncio
import copy
import itertools

import pytest
import redis.exceptions
from channels_redis.core import RedisChannelLayer
from django.conf import settings

from teleconsult.channel_layer import PooledRedisChannelLayer
from tests.teleconsult.support import in_own_loop

pytestmark = pytest.mark.redis

BURST_MESSAGES = 2_000
SENDER_TASKS = 200
PROCESSES = 3  # layer instances, each standing in for one daphne process
CONSUMERS_PER_PROCESS = 2
_group_numbers = itertools.count()


def _configured_layer(redis_url: str) -> PooledRedisChannelLayer:
    """A layer built from settings.CHANNEL_LAYERS, pointed at the test Redis."""
    config = copy.deepcopy(settings.CHANNEL_LAYERS["default"].get("CONFIG", {}))
    if settings.CHANNEL_LAYERS["default"]["BACKEND"] != "teleconsult.channel_layer.PooledRedisChannelLayer":
        # Without REDIS_URL the settings use the in-memory layer; rebuild the production configuration.
        pytest.fail("these tests need REDIS_URL set so settings configure the Redis channel layer")
    hosts = [{**config["hosts"][0], "address": redis_url}]
    return PooledRedisChannelLayer(**{**config, "hosts": hosts, "prefix": "test-burst"})


async def _burst(sender: RedisChannelLayer, receivers: list[RedisChannelLayer]) -> dict[str, list[int]]:
    group = f"burst{next(_group_numbers)}"
    channels: list[tuple[RedisChannelLayer, str]] = []
    for layer in receivers:
        for _ in range(CONSUMERS_PER_PROCESS):
            channel = await layer.new_channel()
            await layer.group_add(group, channel)
            channels.append((layer, channel))
    received: dict[str, list[int]] = {channel: [] for _, channel in channels}

    async def consume(layer: RedisChannelLayer, channel: str) -> None:
        while len(received[channel]) < BURST_MESSAGES:
            message = await layer.receive(channel)
            received[channel].append(message["seq"])

    async def send(task: int) -> None:
        for seq in range(task, BURST_MESSAGES, SENDER_TASKS):
            await sender.group_send(group, {"type": "signal.message", "seq": seq, "payload": "x" * 200})

    consumers = [asyncio.create_task(consume(layer, channel)) for layer, channel in channels]
    try:
        await asyncio.gather(*(send(task) for task in range(SENDER_TASKS)))
        # Everything sent must arrive; a lost message would leave a consumer waiting until the timeout.
        await asyncio.wait_for(asyncio.gather(*consumers), timeout=60)
    finally:
        for task in consumers:
            task.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
        for layer, channel in channels:
            await layer.group_discard(group, channel)
    return received


async def _close(*layers: RedisChannelLayer) -> None:
    for layer in layers:
        await layer.close_pools()


@in_own_loop
async def test_stock_pool_fails_under_the_burst(redis_url):
    # Control: channels_redis' default pool (redis-py: at most 100 connections, then an error at once).
    sender = RedisChannelLayer(hosts=[redis_url], prefix="test-burst", capacity=100_000)
    receiver = RedisChannelLayer(hosts=[redis_url], prefix="test-burst", capacity=100_000)
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            await _burst(sender, [receiver])
    finally:
        await _close(sender, receiver)


@in_own_loop
async def test_configured_layer_delivers_a_burst_to_every_consumer(redis_url):
    sender = _configured_layer(redis_url)
    receivers = [_configured_layer(redis_url) for _ in range(PROCESSES)]
    try:
        received = await _burst(sender, receivers)
    finally:
        await _close(sender, *receivers)
    assert len(received) == PROCESSES * CONSUMERS_PER_PROCESS
    for sequence in received.values():
        # Every message, once: nothing dropped for capacity, nothing duplicated.
        assert sorted(sequence) == list(range(BURST_MESSAGES))


@in_own_loop
async def test_idle_receive_outlives_the_blocking_pop(redis_url):
    # channels_redis waits for messages with a 5 s blocking pop; redis-py 8's default 5 s read timeout
    # makes an idle receive() fail. Both run side by side: the stock one must fail, ours must wait.
    stock = RedisChannelLayer(hosts=[redis_url], prefix="test-idle")
    ours = _configured_layer(redis_url)
    # The message comes from another process (another layer instance): within one process our layer
    # delivers without Redis, which would not exercise the blocking pop at all.
    elsewhere = _configured_layer(redis_url)

    async def idle_then_receive(layer: RedisChannelLayer) -> dict:
        channel = await layer.new_channel()
        sender_layer = elsewhere if layer is ours else layer

        async def later() -> None:
            await asyncio.sleep(6.5)
            await sender_layer.send(channel, {"type": "late.message"})

        sender = asyncio.create_task(later())
        try:
            return await asyncio.wait_for(layer.receive(channel), timeout=15)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    try:
        stock_result, our_result = await asyncio.gather(
            idle_then_receive(stock), idle_then_receive(ours), return_exceptions=True
        )
    finally:
        await _close(stock, ours, elsewhere)
    assert isinstance(stock_result, redis.exceptions.TimeoutError)
    assert our_result == {"type": "late.message"}


# --- Process-local delivery: a channel of the same process is served without Redis ---

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


async def _stop(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@in_own_loop
async def test_stock_layer_needs_redis_to_reach_its_own_consumer():
    # Control: the library writes even a message for a consumer of its own process to Redis.
    stock = RedisChannelLayer(hosts=[{"address": UNREACHABLE_REDIS, "socket_connect_timeout": 1}])
    channel = await stock.new_channel()
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            await stock.send(channel, {"type": "room.relay", "seq": 1})
    finally:
        await _close(stock)


@in_own_loop
async def test_a_consumer_of_the_same_process_is_reached_without_redis(redis_url):
    layer = _configured_layer(redis_url)
    layer.hosts = [{**layer.hosts[0], "address": UNREACHABLE_REDIS, "socket_connect_timeout": 1}]
    channel = await layer.new_channel()
    receiving = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(0)  # the consumer is waiting (and its process's inbox reader failing to reach Redis)
    sent = {"type": "room.relay", "event": {"type": "offer", "sdp": "v=0", "from": 7}}
    try:
        await layer.send(channel, sent)
        received = await asyncio.wait_for(receiving, timeout=10)
    finally:
        await _stop(receiving)
        await _close(layer)
    assert received == sent
    assert received is not sent and received["event"] is not sent["event"]  # a copy, as through Redis


@in_own_loop
async def test_groups_reach_local_and_remote_members_in_the_order_sent(redis_url):
    here, elsewhere = _configured_layer(redis_url), _configured_layer(redis_url)
    group = f"order{next(_group_numbers)}"
    local, remote = await here.new_channel(), await elsewhere.new_channel()
    for layer, channel in ((here, local), (elsewhere, remote)):
        await layer.group_add(group, channel)
    received: dict[str, list[int]] = {local: [], remote: []}

    async def consume(layer: RedisChannelLayer, channel: str, count: int) -> None:
        while len(received[channel]) < count:
            received[channel].append((await layer.receive(channel))["seq"])

    consumers = [
        asyncio.create_task(consume(here, local, 6)),
        asyncio.create_task(consume(elsewhere, remote, 3)),
    ]
    await asyncio.sleep(0)
    try:
        # One process's direct sends and group sends to a consumer beside it arrive as they were sent (the
        # service pushes "admitted" to the patient, then "peer_joined" to the visit; offers follow).
        for seq in range(3):
            await here.send(local, {"type": "room.relay", "seq": 2 * seq})
            await here.group_send(group, {"type": "room.event", "seq": 2 * seq + 1})
        await asyncio.wait_for(asyncio.gather(*consumers), timeout=30)
    finally:
        for task in consumers:
            await _stop(task)
        for layer, channel in ((here, local), (elsewhere, remote)):
            await layer.group_discard(group, channel)
        await _close(here, elsewhere)
    assert received[local] == [0, 1, 2, 3, 4, 5]
    assert received[remote] == [1, 3, 5]  # the other process's member, through Redis


@in_own_loop
async def test_a_stopped_consumer_keeps_no_messages(redis_url):
    layer = _configured_layer(redis_url)
    channel = await layer.new_channel()
    other = await layer.new_channel()
    receiving = asyncio.create_task(layer.receive(channel))
    keeps_reader = asyncio.create_task(layer.receive(other))  # another consumer goes on in the process
    await asyncio.sleep(0)
    try:
        await _stop(receiving)  # what channels does when a consumer's connection ends
        for seq in range(5):
            await layer.send(channel, {"type": "room.relay", "seq": seq})
        # Nothing buffered for a consumer that is gone (the library's buffers would keep them for good).
        assert channel not in layer.receive_buffer
        await layer.send(other, {"type": "room.relay", "seq": 9})
        assert (await asyncio.wait_for(keeps_reader, timeout=10))["seq"] == 9
    finally:
        await _stop(keeps_reader)
        await _close(layer)
