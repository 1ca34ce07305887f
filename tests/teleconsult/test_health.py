"""Liveness and readiness (OPS-3): against the real database and the real Redis channel layer."""

from __future__ import annotations

import json

import pytest
from channels.layers import get_channel_layer
from django.test import AsyncClient

from tests.teleconsult.support import run_in_own_loop

pytestmark = pytest.mark.django_db


def _redis_layer(url: str) -> dict:
    return {
        "default": {
            "BACKEND": "teleconsult.channel_layer.PooledRedisChannelLayer",
            "CONFIG": {"hosts": [{"address": url, "socket_connect_timeout": 1, "socket_timeout": 15}]},
        }
    }


def _get(path: str):
    """GET through the ASGI stack, then close the channel layer's connections on that same loop."""

    async def get():
        try:
            return await AsyncClient().get(path)
        finally:
            layer = get_channel_layer()
            if hasattr(layer, "close_pools"):
                await layer.close_pools()

    return run_in_own_loop(get)


def test_healthz_is_json_without_authentication():
    response = _get("/healthz")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    assert json.loads(response.content) == {"status": "ok"}


def test_readyz_checks_database_and_redis_layer(settings, redis_url):
    settings.CHANNEL_LAYERS = _redis_layer(redis_url)
    response = _get("/readyz")
    assert response.status_code == 200
    assert json.loads(response.content) == {"status": "ok", "checks": {"database": "ok", "channel_layer": "ok"}}


def test_readyz_names_the_channel_layer_when_redis_is_unreachable(settings):
    # Port 1 on loopback: nothing listens there, the connection is refused at once.
    settings.CHANNEL_LAYERS = _redis_layer("redis://127.0.0.1:1/0")
    response = _get("/readyz")
    assert response.status_code == 503
    body = json.loads(response.content)
    assert body == {"status": "unavailable", "checks": {"database": "ok", "channel_layer": "failed"}}
    # No stack trace, no exception text, no connection details in the answer.
    assert b"Traceback" not in response.content
    assert b"127.0.0.1" not in response.content


def test_readyz_reports_a_hung_dependency_as_timeout(settings, monkeypatch):
    import asyncio

    from teleconsult import health

    async def hangs() -> None:
        await asyncio.sleep(30)

    monkeypatch.setattr(health, "CHECK_TIMEOUT_SECONDS", 0.2)
    monkeypatch.setitem(health.CHECKS, "database", hangs)
    response = _get("/readyz")
    assert response.status_code == 503
    assert json.loads(response.content)["checks"] == {"database": "timeout", "channel_layer": "ok"}


def test_readyz_names_the_database_when_it_is_unreachable(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    from teleconsult import health

    # The database "goes away": a closed port on loopback. A fresh probe thread builds its connection from
    # these settings (connections are per thread), without the process's already-open pool.
    current = connections.settings["default"]
    options = {key: value for key, value in current["OPTIONS"].items() if key != "pool"}
    broken = {**current, "HOST": "127.0.0.1", "PORT": "1", "OPTIONS": options}
    monkeypatch.setitem(connections.settings, "default", broken)
    executor = ThreadPoolExecutor(max_workers=1)
    monkeypatch.setattr(health, "_database_executor", executor)
    try:
        response = _get("/readyz")
    finally:
        executor.shutdown()
    assert response.status_code == 503
    assert json.loads(response.content)["checks"] == {"database": "failed", "channel_layer": "ok"}
