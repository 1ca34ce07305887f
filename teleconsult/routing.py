"""WebSocket routes: the signalling of video visits and the practitioner's live waiting list."""

from django.urls import URLPattern, path

from video.consumers import VisitConsumer
from video.waiting_list import WaitingListConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/visit/<uuid:public_id>/", VisitConsumer.as_asgi(), name="visit_signalling"),
    path("ws/waiting/", WaitingListConsumer.as_asgi(), name="waiting_list"),
]
