"""An ASGI application answering every HTTP request with the class of the event loop running it (for
test_daphne_main: which loop a daphne started one way or another really serves on)."""

from __future__ import annotations

import asyncio
from typing import Any


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    loop = type(asyncio.get_running_loop())
    body = f"{loop.__module__}.{loop.__qualname__}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
