"""Routes of the video app, mounted under /visit/."""

from django.urls import path

from video import pages, recording_views, views

app_name = "video"

urlpatterns = [
    path("<uuid:public_id>/room/", pages.room, name="room"),
    path("network-test/offer", views.network_test_offer, name="network_test_offer"),
    path("recordings/<uuid:public_id>/", recording_views.recording_download, name="recording_download"),
]
