"""A daphne process on the test database, and HTTP helpers for the network-test endpoint."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.db import connections

from teleconsult import daphne_main

OFFER_PATH = "/visit/network-test/offer"


def _application() -> object:
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


def daphne_on_test_database(**overrides: object) -> Iterator[str]:
    """A real daphne process (forked, so it inherits the test database's settings) serving the project, on the
    event loop production runs (uvloop, teleconsult.daphne_main).

    aiortc peers live in the server process, on daphne's event loop, which Django's live_server (threads,
    WSGI) would not give them.
    """
    previous = {name: getattr(settings, name) for name in overrides}
    for name, value in overrides.items():
        setattr(settings, name, value)
    # The child must not share this process's connection, nor its pool: a pool copied by fork has no worker
    # threads, so once its idle connections are taken, getconn() waits until it times out (a 500 after 10 s).
    for connection in connections.all():
        connection.close()
        if getattr(connection, "pool", None) is not None:
            connection.close_pool()
    server = daphne_main.daphne_process(host="127.0.0.1", get_application=_application, kwargs={"verbosity": 0})
    server.daemon = True
    server.start()
    try:
        if not server.ready.wait(30):
            raise RuntimeError("daphne did not start")
        yield f"http://127.0.0.1:{server.port.value}"
    finally:
        server.terminate()
        server.join(10)
        for name, value in previous.items():
            setattr(settings, name, value)


@dataclass
class Browser:
    """The cookies a browser would hold: a session (or none) and a CSRF token."""

    session_key: str | None
    csrf: str

    def cookie_header(self, *, with_csrf: bool = True) -> str:
        cookies = [f"{settings.SESSION_COOKIE_NAME}={self.session_key}"] if self.session_key else []
        if with_csrf:
            cookies.append(f"{settings.CSRF_COOKIE_NAME}={self.csrf}")
        return "; ".join(cookies)


def signed_in(user: object, *, otp_device: object | None = None) -> Browser:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)  # type: ignore[attr-defined]
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()  # type: ignore[attr-defined]
    if otp_device is not None:
        from django_otp import DEVICE_ID_SESSION_KEY

        session[DEVICE_ID_SESSION_KEY] = otp_device.persistent_id  # type: ignore[attr-defined]
    session.create()
    return Browser(session.session_key, secrets.token_hex(16))


def anonymous() -> Browser:
    return Browser(None, secrets.token_hex(16))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def post(
    base: str, browser: Browser, body: bytes, *, csrf_header: bool = True, language: str = "es-pe"
) -> tuple[int, dict[str, object]]:
    headers = {"Content-Type": "application/json", "Cookie": browser.cookie_header(), "Accept-Language": language}
    if csrf_header:
        headers["X-CSRFToken"] = browser.csrf
    request = urllib.request.Request(base + OFFER_PATH, data=body, headers=headers, method="POST")  # noqa: S310
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = {"body": raw[:200].decode(errors="replace")}
        return error.code, payload


def post_offer(base: str, browser: Browser, sdp: str) -> tuple[int, dict[str, object]]:
    return post(base, browser, json.dumps({"sdp": sdp, "type": "offer"}).encode())
