"""Routes of the video app, mounted under /visit/."""

from django.urls import path

from video import views

app_name = "video"

urlpatterns = [
    path("network-test/offer", views.network_test_offer, name="network_test_offer"),
]
