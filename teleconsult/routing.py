"""WebSocket routes (the video app adds its signalling consumer here)."""

from django.urls import URLPattern

websocket_urlpatterns: list[URLPattern] = []
