"""WebSocket routes: the signalling of video visits."""

from django.urls import URLPattern, path

from video.consumers import VisitConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/visit/<uuid:public_id>/", VisitConsumer.as_asgi(), name="visit_signalling"),
]
