"""The URL map: each app mounts its own routes."""

from django.urls import include, path
from django.views.i18n import set_language
from drf_spectacular.views import SpectacularAPIView

from teleconsult import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("i18n/setlang/", set_language, name="set_language"),
    path("accounts/", include("accounts.urls")),
    # The auditor's pages live in frontend (audit is the lowest app and knows nothing of users or roles).
    path("audit/", include("frontend.auditor")),
    path("records/", include("records.urls")),
    path("scheduling/", include("scheduling.urls")),
    path("mine/", include("frontend.patient_urls")),
    path("visit/", include("video.urls")),
    path("api/v1/", include("scheduling.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path("", include("frontend.urls")),
]
