"""The patient's own pages, mounted at /mine/. URLs carry consent kinds, formats and appointments' public ids
only, never personal data."""

from django.urls import path

from frontend.patient import appointments, consents, rights

app_name = "mine"

urlpatterns = [
    path("consents/", consents.consent_list, name="consents"),
    path("consents/visit/", consents.visit_consents, name="visit_consents"),
    path("consents/<slug:kind>/", consents.consent_capture, name="consent"),
    path("consents/<slug:kind>/revoke/", consents.consent_revoke, name="consent_revoke"),
    path("record-access/", rights.access_log, name="access_log"),
    path("requests/", rights.rights_requests, name="rights"),
    path("export/<slug:fmt>/", rights.export, name="export"),
    path("appointments/", appointments.my_appointments, name="appointments"),
    path("appointments/book/", appointments.book, name="book"),
    path("appointments/book/slots/", appointments.book_slots, name="book_slots"),
    path("appointments/book/hold/", appointments.hold, name="appointment_hold"),
    path("appointments/<uuid:public_id>/confirm/", appointments.confirm, name="appointment_confirm"),
    path("appointments/<uuid:public_id>/cancel/", appointments.cancel, name="appointment_cancel"),
    path("appointments/<uuid:public_id>/reschedule/", appointments.reschedule, name="appointment_reschedule"),
]
