"""Per-request (and per-websocket-message) context: the request id and source, read by audit and logging."""

from __future__ import annotations

import contextvars
import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    source_address: str = ""
    user_agent: str = ""


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("teleconsult_request", default=None)


def new_request_id() -> str:
    return secrets.token_hex(12)


def current() -> RequestContext | None:
    return _current.get()


def activate(context: RequestContext) -> contextvars.Token[RequestContext | None]:
    return _current.set(context)


def deactivate(token: contextvars.Token[RequestContext | None]) -> None:
    _current.reset(token)
