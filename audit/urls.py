from django.urls import path

from audit import views

app_name = "audit"

# Placeholder; the auditor pages replace it.
urlpatterns = [path("events/", views.events, name="events")]
