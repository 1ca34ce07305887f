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

    async def idle_then_receive(layer: RedisChannelLayer) -> dict:
        channel = await layer.new_channel()

        async def later() -> None:
            await asyncio.sleep(6.5)
            await layer.send(channel, {"type": "late.message"})

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
        await _close(stock, ours)
    assert isinstance(stock_result, redis.exceptions.TimeoutError)
    assert our_result == {"type": "late.message"}
