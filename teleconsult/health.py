"""Liveness and readiness probes (OPS-3): JSON, no authentication, no data, never a stack trace.

`/healthz` says the process serves requests. `/readyz` says this instance can do useful work: the database
answers `SELECT 1` and a message makes a round trip through the channel layer (Redis in production), each
within a short timeout. Both are coroutine views so a slow dependency never blocks daphne's event loop:
the database check runs on a small dedicated thread pool, the channel layer check is natively async.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from channels.layers import get_channel_layer
from django.db import connections
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0

# Two threads only: if the database hangs, probes queue here and time out rather than taking threads
# from the pools that serve requests.
_database_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="readyz-db")


def _database_select_one() -> None:
    connection = connections["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        # This thread is not a request thread, so nothing else would ever close its connection.
        connection.close()


async def check_database() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(_database_executor, _database_select_one)


async def check_channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    # A named channel, not new_channel(): a process-specific channel would be delivered inside this process
    # (teleconsult.channel_layer) and prove nothing about Redis.
    nonce = secrets.token_hex(8)
    channel = f"readyz.{nonce}"
    await layer.send(channel, {"type": "readyz.ping", "nonce": nonce})
    message = await layer.receive(channel)
    if message.get("nonce") != nonce:
        raise RuntimeError("channel layer returned a different message")


CHECKS: dict[str, Callable[[], Awaitable[None]]] = {
    "database": check_database,
    "channel_layer": check_channel_layer,
}


async def _run(name: str, check: Callable[[], Awaitable[None]]) -> str:
    try:
        await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        logger.warning("readiness check %s timed out", name, extra={"check": name})
        return "timeout"
    except Exception as error:
        logger.warning("readiness check %s failed: %s", name, type(error).__name__, extra={"check": name})
        return "failed"
    return "ok"


def _no_store(response: JsonResponse) -> JsonResponse:
    response["Cache-Control"] = "no-store"
    return response


async def healthz(request: HttpRequest) -> JsonResponse:
    return _no_store(JsonResponse({"status": "ok"}))


async def readyz(request: HttpRequest) -> JsonResponse:
    names = list(CHECKS)
    results = await asyncio.gather(*(_run(name, CHECKS[name]) for name in names))
    checks = dict(zip(names, results, strict=True))
    ready = all(result == "ok" for result in results)
    return _no_store(
        JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)
    )
