"""ASGI entry point: daphne serves HTTP and WebSocket from this one application."""

import os
import sys

from django.core.asgi import get_asgi_application

from teleconsult.config import ConfigError

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "teleconsult.settings")
try:
    django_asgi_app = get_asgi_application()
except ConfigError as error:
    # daphne imports this module before serving: a bad setting stops it with one line and status 2,
    # the same as manage.py, instead of a traceback that might be mistaken for a crash.
    print(f"Configuration error: {error}", file=sys.stderr)
    sys.exit(2)

from importlib import import_module
from typing import Any

from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import OriginValidator
from channels.sessions import CookieMiddleware
from django.conf import settings

from teleconsult.routing import websocket_urlpatterns


class AllowedHostsOriginValidator:
    """Websockets only from pages of our own hosts (a page elsewhere could otherwise use the visitor's session
    cookie to open a visit's socket). Channels' factory of the same name reads ALLOWED_HOSTS once, at import;
    this reads it per connection, so the setting in force is the one checked."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        return await OriginValidator(self.application, settings.ALLOWED_HOSTS)(scope, receive, send)


class WebsocketSessionMiddleware:
    """scope["session"]: the session the cookie names, loaded from the database when first read (in a consumer's
    database call). What channels' SessionMiddleware gives a websocket, without its wrapper around every message the
    consumer sends: that wrapper saves the session and sets its cookie only on `http.response.start`, which a
    websocket never sends, yet reads the session through Django's LazyObject for every frame (about 5 µs of a
    relayed signalling message, docs/benchmarks.md). Needs channels' CookieMiddleware above it."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        # The settings in force for this connection, as channels' middleware reads them.
        session_store = import_module(settings.SESSION_ENGINE).SessionStore
        session = session_store(scope["cookies"].get(settings.SESSION_COOKIE_NAME))
        return await self.application(dict(scope, session=session), receive, send)


# Websockets get the session but no scope["user"]: the consumers look the user up from the session inside their own
# first database call (accounts.signin_state.session_user). channels' AuthMiddleware would do it in a sync-thread hop
# of its own before the consumer can accept, and with many visits joining at once those hops queue past daphne's 5 s
# handshake timeout (docs/decisions.md).
application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            CookieMiddleware(WebsocketSessionMiddleware(URLRouter(websocket_urlpatterns)))
        ),
    }
)
