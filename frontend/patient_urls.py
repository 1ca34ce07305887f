"""The patient's own pages, mounted at /mine/. URLs carry consent kinds, formats and appointments' public ids
only, never personal data."""

from django.urls import path, register_converter

from frontend.patient import appointments, consents, rights, visits

app_name = "mine"


class NoteIdConverter:
    """A note's database id: at most 18 digits, so an absurd number is a 404 rather than an out-of-range query."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(NoteIdConverter, "note")

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
    path("visits/", visits.my_visits, name="visits"),
    path("visits/notes/<note:note_id>/", visits.visit_note, name="visit_note"),
    path("visits/notes/<note:note_id>/pdf/", visits.visit_note_pdf, name="visit_note_pdf"),
    path("prescriptions/", visits.my_prescriptions, name="prescriptions"),
]
