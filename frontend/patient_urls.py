"""The patient's own pages, mounted at /mine/. URLs carry consent kinds and formats only, never personal data."""

from django.urls import path

from frontend.patient import consents, rights

app_name = "mine"

urlpatterns = [
    path("consents/", consents.consent_list, name="consents"),
    path("consents/visit/", consents.visit_consents, name="visit_consents"),
    path("consents/<slug:kind>/", consents.consent_capture, name="consent"),
    path("consents/<slug:kind>/revoke/", consents.consent_revoke, name="consent_revoke"),
    path("record-access/", rights.access_log, name="access_log"),
    path("requests/", rights.rights_requests, name="rights"),
    path("export/<slug:fmt>/", rights.export, name="export"),
]
