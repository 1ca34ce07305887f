"""The patient's appointment pages: specialty → earliest slots → hold → confirm; an expired hold and a taken slot
each get a clear message; my appointments in both zones; cancel and reschedule; other personas denied."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone

from audit.actions import AuditAction
from audit.models import AuditEvent
from scheduling.models import Appointment, AppointmentStatus, JoinLink
from scheduling.services import appointment_book, appointment_hold
from scheduling.slots import find_slots
from tests.factories import UserFactory
from tests.scheduling.factories import clinic, local, make_patient  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client, login_as, personas, clinic):  # noqa: F811
    login_as(personas.patient)
    return client


def first_slot(clinic):  # noqa: F811
    now = timezone.now()
    return find_slots(visit_type=clinic.visit_type, start=now, end=now + dt.timedelta(days=30), now=now, limit=1)[0]


def slot_data(slot, specialty="Medicina general"):
    return {
        "specialty": specialty,
        "start": slot.start.isoformat(),
        "practitioner": slot.practitioner_id,
        "visit_type": slot.visit_type_id,
    }


def booked(personas, clinic, start):  # noqa: F811
    return appointment_book(
        visit_type=clinic.visit_type,
        practitioner=personas.practitioner,
        patient=clinic.patient,
        start=start,
        booked_by=personas.coordinator,
    )


def test_book_by_specialty_slot_and_confirm(signed_in, personas, clinic):  # noqa: F811
    page = signed_in.get("/mine/appointments/book/")
    assert page.status_code == 200 and "Medicina general" in page.text
    slots = signed_in.get("/mine/appointments/book/slots/", {"specialty": "medicina general"})
    assert slots.status_code == 200 and personas.practitioner.full_name in slots.text
    slot = first_slot(clinic)
    held = signed_in.post("/mine/appointments/book/hold/", slot_data(slot))
    appointment = Appointment.objects.get(patient=clinic.patient)
    assert held.status_code == 302 and held["Location"] == f"/mine/appointments/{appointment.public_id}/confirm/"
    assert appointment.status == AppointmentStatus.HELD
    confirm = signed_in.get(held["Location"])
    assert confirm.status_code == 200 and "Tiempo restante" in confirm.text and "data-expires-at" in confirm.text
    done = signed_in.post(held["Location"])
    assert done.status_code == 302 and done["Location"] == "/mine/appointments/"
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.BOOKED
    assert JoinLink.objects.filter(participant__appointment=appointment, revoked_at__isnull=True).count() == 2
    mine = signed_in.get("/mine/appointments/")
    assert "Listo: su cita quedó confirmada" in mine.text and "Consulta de medicina general" in mine.text
    assert "Ir a la sala" in mine.text and "Cancelar cita" in mine.text


def test_unknown_specialty_is_not_found(signed_in):
    assert signed_in.get("/mine/appointments/book/slots/", {"specialty": "Astrología"}).status_code == 404
    assert signed_in.get("/mine/appointments/book/slots/").status_code == 404


def test_taken_slot_gets_a_friendly_message(signed_in, personas, clinic):  # noqa: F811
    slot = first_slot(clinic)
    booked_other = appointment_book(
        visit_type=clinic.visit_type,
        practitioner=personas.practitioner,
        patient=clinic.other_patient,
        start=slot.start,
        booked_by=personas.coordinator,
    )
    response = signed_in.post("/mine/appointments/book/hold/", slot_data(slot))
    assert response.status_code == 409 and "Ese horario acaba de ser tomado" in response.text
    assert not Appointment.objects.filter(patient=clinic.patient).exists()
    assert booked_other.status == AppointmentStatus.BOOKED


@pytest.mark.parametrize(
    "overrides",
    [{"start": "mañana"}, {"practitioner": "0"}, {"visit_type": "999999"}, {"start": "2020-01-01T13:00:00+00:00"}],
)
def test_bad_slot_input_is_refused(signed_in, clinic, overrides):  # noqa: F811
    response = signed_in.post("/mine/appointments/book/hold/", {**slot_data(first_slot(clinic)), **overrides})
    assert response.status_code == 400 and 'role="alert"' in response.text
    assert not Appointment.objects.exists()


def test_expired_hold_says_so_and_offers_to_pick_again(signed_in, personas, clinic):  # noqa: F811
    held = appointment_hold(
        visit_type=clinic.visit_type,
        practitioner=personas.practitioner,
        patient=clinic.patient,
        start=first_slot(clinic).start,
        booked_by=personas.patient,
    )
    Appointment.objects.filter(pk=held.pk).update(hold_expires_at=timezone.now() - dt.timedelta(seconds=1))
    url = f"/mine/appointments/{held.public_id}/confirm/"
    page = signed_in.get(url)
    assert "Pasó el tiempo para confirmar" in page.text and "Elegir otro horario" in page.text
    response = signed_in.post(url)
    assert response.status_code == 400 and "Pasó el tiempo para confirmar" in response.text
    held.refresh_from_db()
    assert held.status != AppointmentStatus.BOOKED


def test_my_appointments_in_both_zones(signed_in, personas, clinic):  # noqa: F811
    personas.patient.time_zone = "Europe/Madrid"
    personas.patient.save(update_fields=["time_zone"])
    booked(personas, clinic, local(clinic.tomorrow, "09:00"))
    with_zone = signed_in.get("/mine/appointments/")
    assert "hora de America/Lima" in with_zone.text and "Europe/Madrid" in with_zone.text
    assert re.search(r"De 09:00 a 09:30", with_zone.text) and "15:00" in with_zone.text
    assert AuditEvent.objects.filter(
        action=AuditAction.APPOINTMENT_VIEWED, object_type="appointment_list", patient_id=clinic.patient.pk
    ).exists()


def test_my_appointments_query_count(signed_in, personas, clinic, django_assert_max_num_queries):  # noqa: F811
    for hour in ("08:00", "09:00", "10:00"):
        booked(personas, clinic, local(clinic.tomorrow, hour))
    with django_assert_max_num_queries(12):
        assert signed_in.get("/mine/appointments/").status_code == 200


def test_cancel_with_confirmation(signed_in, personas, clinic):  # noqa: F811
    appointment = booked(personas, clinic, local(clinic.tomorrow, "09:00"))
    url = f"/mine/appointments/{appointment.public_id}/cancel/"
    page = signed_in.get(url)
    assert page.status_code == 200 and "Sí, cancelar la cita" in page.text
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.BOOKED
    too_long = signed_in.post(url, {"note": "x" * 501})
    assert too_long.status_code == 400
    done = signed_in.post(url, {"note": "Tengo un viaje"})
    assert done.status_code == 302
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.CANCELLED and appointment.cancel_reason == "patient_request"
    assert appointment.cancel_note == "Tengo un viaje"
    again = signed_in.get(url)
    assert again.status_code == 302


def test_reschedule_to_another_slot(signed_in, personas, clinic):  # noqa: F811
    appointment = booked(personas, clinic, local(clinic.tomorrow, "09:00"))
    url = f"/mine/appointments/{appointment.public_id}/reschedule/"
    page = signed_in.get(url)
    assert page.status_code == 200 and "Cambiar el horario" in page.text
    slot = find_slots(
        visit_type=clinic.visit_type,
        start=local(clinic.tomorrow, "10:00"),
        end=local(clinic.tomorrow, "12:00"),
        limit=1,
    )[0]
    done = signed_in.post(url, slot_data(slot))
    assert done.status_code == 302
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.RESCHEDULED
    new = appointment.rescheduled_to
    assert new.status == AppointmentStatus.BOOKED and new.start == slot.start


def test_reschedule_to_a_taken_slot(signed_in, personas, clinic):  # noqa: F811
    appointment = booked(personas, clinic, local(clinic.tomorrow, "09:00"))
    other = appointment_book(
        visit_type=clinic.visit_type,
        practitioner=personas.practitioner,
        patient=clinic.other_patient,
        start=local(clinic.tomorrow, "10:00"),
        booked_by=personas.coordinator,
    )
    response = signed_in.post(
        f"/mine/appointments/{appointment.public_id}/reschedule/",
        {
            "specialty": "Medicina general",
            "start": other.start.isoformat(),
            "practitioner": personas.practitioner.pk,
            "visit_type": clinic.visit_type.pk,
        },
    )
    assert response.status_code == 409 and "Ese horario acaba de ser tomado" in response.text
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.BOOKED


@pytest.mark.parametrize("who", ["other_patient", "outsider", "auditor", "practitioner"])
def test_others_are_denied(client, login_as, personas, clinic, who):  # noqa: F811
    appointment = booked(personas, clinic, local(clinic.tomorrow, "09:00"))
    if who == "other_patient":
        user = UserFactory(role="patient")
        make_patient(
            establishment=personas.establishment, registered_by=personas.coordinator, user=user, surname="Mamani"
        )
        login_as(user)
    else:
        login_as(getattr(personas, who))
    for suffix in ("confirm/", "cancel/", "reschedule/"):
        assert client.get(f"/mine/appointments/{appointment.public_id}/{suffix}").status_code == 404
        assert client.post(f"/mine/appointments/{appointment.public_id}/{suffix}", {}).status_code == 404
    listing = client.get("/mine/appointments/")
    if who == "other_patient":
        assert listing.status_code == 200 and "Consulta de medicina general" not in listing.text
    else:
        assert listing.status_code == 404
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.BOOKED


def test_anonymous_goes_to_sign_in(client, clinic):  # noqa: F811
    for url in ("/mine/appointments/", "/mine/appointments/book/", "/mine/appointments/book/slots/"):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_pages_in_english(signed_in, personas, clinic):  # noqa: F811
    booked(personas, clinic, local(clinic.tomorrow, "09:00"))
    page = signed_in.get("/mine/appointments/", HTTP_ACCEPT_LANGUAGE="en")
    assert "My appointments" in page.text and "Book an appointment" in page.text and "(America/Lima time)" in page.text
