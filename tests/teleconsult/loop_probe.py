"""An ASGI application answering every HTTP request with what test_daphne_main checks in the serving process:
the class of the event loop running it, and whether autobahn's debug log values are deferred."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    loop = type(asyncio.get_running_loop())
    protocol = sys.modules.get("autobahn.websocket.protocol")
    body = json.dumps(
        {
            "loop": f"{loop.__module__}.{loop.__qualname__}",
            "autobahn_hltype": type(getattr(protocol, "hltype", None)).__qualname__,
        }
    ).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
