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

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator

from teleconsult.routing import websocket_urlpatterns

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
