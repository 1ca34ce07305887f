"""Routes of the staff scheduling pages, mounted at /scheduling/. URLs carry ids, dates and appointments'
public ids only, never personal data."""

from django.urls import path, register_converter

from scheduling.views import appointments, availability, calendar, encounters


class IdConverter:
    """A database id: at most 18 digits, so an absurd number is a 404 rather than an out-of-range query."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "sid")

app_name = "scheduling"

urlpatterns = [
    path("calendar/", calendar.calendar, name="calendar"),
    path("today/", calendar.today, name="today"),
    path("my-day/", calendar.my_day, name="my_day"),
    path("book/", appointments.book, name="book"),
    path("interconsultation/", appointments.book_interconsultation, name="book_interconsultation"),
    path("appointments/<uuid:public_id>/", appointments.appointment_detail, name="appointment"),
    path("appointments/<uuid:public_id>/cancel/", appointments.appointment_cancel, name="appointment_cancel"),
    path(
        "appointments/<uuid:public_id>/reschedule/", appointments.appointment_reschedule, name="appointment_reschedule"
    ),
    path("appointments/<uuid:public_id>/encounter/", encounters.encounter_start_view, name="encounter_start"),
    path("appointments/<uuid:public_id>/no-show/", appointments.appointment_no_show, name="appointment_no_show"),
    path(
        "appointments/<uuid:public_id>/participants/<sid:participant_id>/resend-link/",
        appointments.join_link_resend,
        name="join_link_resend",
    ),
    path(
        "appointments/<uuid:public_id>/participants/<sid:participant_id>/revoke-link/",
        appointments.join_link_revoke,
        name="join_link_revoke",
    ),
    path("availability/", availability.availability_editor, name="my_availability"),
    path("availability/<sid:practitioner_id>/", availability.availability_editor, name="availability"),
    path(
        "availability/<sid:practitioner_id>/rules/<sid:rule_id>/remove/",
        availability.availability_rule_remove,
        name="availability_rule_remove",
    ),
    path(
        "availability/<sid:practitioner_id>/exceptions/<sid:exception_id>/remove/",
        availability.availability_exception_remove,
        name="availability_exception_remove",
    ),
    path("visit-types/", availability.visit_types, name="visit_types"),
    path("visit-types/<sid:visit_type_id>/", availability.visit_type_edit, name="visit_type_edit"),
]
