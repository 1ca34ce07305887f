"""HTTP middleware shared by every app: request id, client address and the access log."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from teleconsult import request_context

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def client_address(meta: dict, trusted_proxies: int) -> str:
    """The client's address, trusting X-Forwarded-For only as far as our own proxies add to it."""
    remote = str(meta.get("REMOTE_ADDR") or "")
    if trusted_proxies <= 0:
        return remote
    forwarded = [part.strip() for part in str(meta.get("HTTP_X_FORWARDED_FOR", "")).split(",") if part.strip()]
    if len(forwarded) >= trusted_proxies:
        return forwarded[-trusted_proxies]
    return remote


class RequestIdMiddleware:
    """Assigns a request id (or accepts the proxy's, if well-formed), exposes it to logs and audit."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else request_context.new_request_id()
        address = client_address(request.META, settings.TRUSTED_PROXY_COUNT)
        user_agent = str(request.META.get("HTTP_USER_AGENT", ""))[:300]
        request.request_id = request_id  # type: ignore[attr-defined]
        request.client_address = address  # type: ignore[attr-defined]
        token = request_context.activate(
            request_context.RequestContext(request_id=request_id, source_address=address, user_agent=user_agent)
        )
        try:
            response = self.get_response(request)
        finally:
            request_context.deactivate(token)
        response["X-Request-ID"] = request_id
        return response


access_logger = logging.getLogger("teleconsult.access")

_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Probes arrive every few seconds from every orchestrator and proxy; they go to DEBUG so they don't drown
# the lines people read.
_PROBE_ROUTES = frozenset({"/healthz", "/readyz"})


class AccessLogMiddleware:
    """One line per request: method, route *pattern*, status, duration and (from the filter) the request id.

    It replaces daphne's access log, which prints the raw path with its query string; a path or query can
    carry an e-mail or a document number, so only the matched pattern is logged (`/records/<int:pk>/`),
    or "-" when nothing matched. Never the user, the query string, the referrer or the user agent.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        match = getattr(request, "resolver_match", None)
        route = f"/{match.route}" if match is not None else "-"
        method = request.method if request.method in _KNOWN_METHODS else "OTHER"
        level = logging.DEBUG if route in _PROBE_ROUTES else logging.INFO
        access_logger.log(
            level,
            "%s %s %s %sms",
            method,
            route,
            response.status_code,
            duration_ms,
            extra={"method": method, "route": route, "status": response.status_code, "duration_ms": duration_ms},
        )
        return response
