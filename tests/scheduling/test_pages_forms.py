"""The staff scheduling forms end to end through the test client: booking with patient search and a slot
picker, conflicts, cancel / reschedule / no-show, join links, availability and visit types. Each bad input
gets its own translated message, an HTTP 400 (409 for a slot just taken) and saves nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from scheduling.availability import availability_rule_create
from scheduling.models import (
    Appointment,
    AppointmentStatus,
    AvailabilityException,
    AvailabilityRule,
    JoinLink,
    ServiceType,
    VisitType,
)
from scheduling.services import appointment_book
from tests.scheduling.factories import local, make_patient, make_visit_type
from tests.scheduling.pages_support import build_world


@pytest.fixture
def world(personas, clinic):
    return build_world(personas, clinic)


BOOK = "/scheduling/book/"


def _search(world, day=None):
    day = day or world.clinic.tomorrow
    return {
        "patient": world.clinic.patient.pk,
        "visit_type": world.clinic.visit_type.pk,
        "practitioner": world.personas.practitioner.pk,
        "date_from": day.isoformat(),
        "date_until": day.isoformat(),
    }


def _book(client, world, at, **extra):
    data = {
        "step": "book",
        **_search(world, at.date()),
        "start": at.astimezone(dt.UTC).isoformat(),
        "slot_practitioner": world.personas.practitioner.pk,
    }
    data.update(extra)
    return client.post(BOOK, data)


def test_coordinator_finds_the_patient_picks_a_slot_and_books(world, login_as):
    client = login_as(world.personas.coordinator)
    found = client.post(BOOK, {"step": "name", "name-name": "quispe"})
    assert found.status_code == 200
    assert f'name="patient" value="{world.clinic.patient.pk}"' in found.content.decode()
    assert AuditEvent.objects.filter(action="records.patient.searched", details__for="booking").exists()

    chosen = client.post(BOOK, {"step": "patient", "patient": world.clinic.patient.pk})
    assert "Tipo de cita y fechas" in chosen.content.decode()

    listed = client.post(BOOK, {"step": "slots", **_search(world)})
    html = listed.content.decode()
    assert listed.status_code == 200
    assert "09:00–09:30" not in html.split("Horarios libres")[1]  # booked already
    assert "09:30" in html

    start = local(world.clinic.tomorrow, "10:00")
    response = _book(client, world, start)
    assert response.status_code == 302
    appointment = Appointment.objects.get(start=start, status=AppointmentStatus.BOOKED)
    assert response["Location"] == reverse("scheduling:appointment", args=[appointment.public_id])
    assert appointment.booked_by == world.personas.coordinator
    page = client.get(response["Location"]).content.decode()
    assert "Cita reservada." in page


def test_document_search_posts_and_never_puts_the_number_in_a_url(world, login_as):
    client = login_as(world.personas.coordinator)
    document = world.clinic.patient.identifiers.first()
    assert document is not None
    response = client.post(BOOK, {"step": "document", "doc-document_type": "dni", "doc-number": "99999999"})
    assert response.status_code == 200
    assert "0 pacientes encontrados." in response.content.decode()


def test_slot_just_taken_is_a_friendly_409_with_the_form_kept(world, login_as):
    start = local(world.clinic.tomorrow, "10:00")
    appointment_book(
        visit_type=world.clinic.visit_type,
        practitioner=world.personas.practitioner,
        patient=world.clinic.other_patient,
        start=start,
        booked_by=world.personas.coordinator,
    )
    before = Appointment.objects.count()
    response = _book(login_as(world.personas.coordinator), world, start)
    assert response.status_code == 409
    html = response.content.decode()
    assert "Ese horario acaba de ser tomado. Elija otro, por favor." in html
    assert f'<option value="{world.clinic.visit_type.pk}" selected>' in html  # the form is kept
    assert Appointment.objects.count() == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"start": "mañana a las diez"}, "Elija un horario de la lista."),
        ({"start": "2030-01-01T10:00:00"}, "Elija un horario de la lista."),  # no offset
        ({"slot_practitioner": "abc"}, "Elija un horario de la lista."),
        ({"visit_type": "999999"}, "Elija un tipo de cita de la lista."),
        ({"date_until": "2000-01-01"}, "La fecha final no puede ser anterior a la inicial."),
        ({"date_from": "x" * 500}, "Escriba una fecha válida (día, mes y año)."),
    ],
)
def test_booking_bad_input(world, login_as, change, message):
    before = Appointment.objects.count()
    response = _book(login_as(world.personas.coordinator), world, local(world.clinic.tomorrow, "10:00"), **change)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert Appointment.objects.count() == before


def test_booking_in_the_past_or_outside_availability_is_refused(world, login_as):
    client = login_as(world.personas.coordinator)
    before = Appointment.objects.count()
    yesterday = world.clinic.tomorrow - dt.timedelta(days=2)
    past = _book(client, world, local(yesterday, "10:00"))
    assert past.status_code == 400
    assert "Ese horario ya pasó. Elija uno futuro." in past.content.decode()
    outside = _book(client, world, local(world.clinic.tomorrow, "15:00"))
    assert outside.status_code == 400
    assert "El profesional no atiende en ese horario." in outside.content.decode()
    assert Appointment.objects.count() == before


def test_booking_for_an_unknown_patient_is_a_404(world, login_as):
    response = login_as(world.personas.coordinator).post(BOOK, {"step": "patient", "patient": "987654"})
    assert response.status_code == 404


def test_cancel_requires_a_reason_then_cancels_with_a_note(world, login_as):
    client = login_as(world.personas.coordinator)
    url = reverse("scheduling:appointment_cancel", args=[world.appointment.public_id])
    bad = client.post(url, {"reason": "", "note": "x"})
    assert bad.status_code == 400
    assert "Elija el motivo de la cancelación." in bad.content.decode()
    world.appointment.refresh_from_db()
    assert world.appointment.status == AppointmentStatus.BOOKED
    too_long = client.post(url, {"reason": "patient_request", "note": "x" * 1001})
    assert too_long.status_code == 400
    good = client.post(url, {"reason": "patient_request", "note": "Viaja fuera de la ciudad"})
    assert good.status_code == 302
    world.appointment.refresh_from_db()
    assert world.appointment.status == AppointmentStatus.CANCELLED
    assert world.appointment.cancel_note == "Viaja fuera de la ciudad"
    page = client.get(reverse("scheduling:appointment", args=[world.appointment.public_id])).content.decode()
    assert "A pedido del paciente" in page
    again = client.post(url, {"reason": "other"})
    assert again.status_code == 400
    assert "Esta cita ya no se puede modificar." in again.content.decode()


def test_no_show_before_the_start_is_refused(world, login_as):
    client = login_as(world.personas.coordinator)
    response = client.post(reverse("scheduling:appointment_no_show", args=[world.appointment.public_id]))
    assert response.status_code == 400
    assert "Solo se puede marcar inasistencia cuando la cita ya comenzó." in response.content.decode()
    world.appointment.refresh_from_db()
    assert world.appointment.status == AppointmentStatus.BOOKED


def test_no_show_after_the_start(world, login_as):
    Appointment.objects.filter(pk=world.appointment.pk).update(
        start=timezone.now() - dt.timedelta(minutes=20), end=timezone.now() + dt.timedelta(minutes=10)
    )
    response = login_as(world.personas.practitioner).post(
        reverse("scheduling:appointment_no_show", args=[world.appointment.public_id])
    )
    assert response.status_code == 302
    world.appointment.refresh_from_db()
    assert world.appointment.status == AppointmentStatus.NO_SHOW


def test_reschedule_to_a_free_slot_and_refuse_a_past_one(world, login_as):
    client = login_as(world.personas.coordinator)
    url = reverse("scheduling:appointment_reschedule", args=[world.appointment.public_id])
    day = world.clinic.tomorrow.isoformat()
    listed = client.post(url, {"step": "slots", "date_from": day, "date_until": day})
    assert listed.status_code == 200 and "10:30" in listed.content.decode()
    past = client.post(
        url,
        {"step": "book", "date_from": day, "date_until": day, "start": "2020-01-01T15:00:00+00:00"},
    )
    assert past.status_code == 400
    assert "Ese horario ya pasó. Elija uno futuro." in past.content.decode()
    world.appointment.refresh_from_db()
    assert world.appointment.status == AppointmentStatus.BOOKED
    start = local(world.clinic.tomorrow, "10:30")
    moved = client.post(
        url, {"step": "book", "date_from": day, "date_until": day, "start": start.astimezone(dt.UTC).isoformat()}
    )
    assert moved.status_code == 302
    new = Appointment.objects.get(rescheduled_from=world.appointment)
    assert new.start == start and moved["Location"].endswith(f"{new.public_id}/")
    world.appointment.refresh_from_db()
    assert world.appointment.status == AppointmentStatus.RESCHEDULED


def test_revoke_and_resend_a_join_link(world, login_as):
    client = login_as(world.personas.coordinator)
    participant = world.appointment.participants.get(role="patient")
    assert JoinLink.objects.filter(participant=participant, revoked_at__isnull=True).count() == 1
    revoke = reverse("scheduling:join_link_revoke", args=[world.appointment.public_id, participant.pk])
    assert client.post(revoke).status_code == 302
    assert not JoinLink.objects.filter(participant=participant, revoked_at__isnull=True).exists()
    resend = reverse("scheduling:join_link_resend", args=[world.appointment.public_id, participant.pk])
    response = client.post(resend)
    assert response.status_code == 302
    assert JoinLink.objects.filter(participant=participant, revoked_at__isnull=True).count() == 1
    assert JoinLink.objects.filter(participant=participant).count() == 2
    # A participant of another appointment is not this appointment's participant.
    other = reverse("scheduling:join_link_revoke", args=[world.appointment.public_id, 987654])
    assert client.post(other).status_code == 404


def test_detail_shows_times_in_the_viewers_own_zone_when_different(world, login_as):
    coordinator = world.personas.coordinator
    coordinator.time_zone = "Europe/Madrid"
    coordinator.save(update_fields=["time_zone"])
    html = login_as(coordinator).get(reverse("scheduling:appointment", args=[world.appointment.public_id]))
    text = html.content.decode()
    assert "09:00–09:30" in text  # Lima
    assert "15:00 en Europe/Madrid" in text  # Madrid is 6 hours ahead in December


# --- availability -------------------------------------------------------------------------------------------------


def _rule(world, **change):
    data = {
        "action": "rule",
        "establishment": world.personas.establishment.pk,
        "weekday": "0",
        "start_time": "14:00",
        "end_time": "18:00",
        "valid_from": "2026-01-01",
        "valid_until": "",
        "visit_types": [world.clinic.visit_type.pk],
    }
    data.update(change)
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"end_time": "13:00"}, "La hora de fin debe ser posterior a la de inicio."),
        ({"end_time": "14:00"}, "La hora de fin debe ser posterior a la de inicio."),
        ({"start_time": "09:00", "end_time": "10:00"}, "Ese horario se superpone con otro horario semanal"),
        ({"start_time": "25:00"}, "Escriba una hora válida (HH:MM)."),
        ({"weekday": "9"}, "Elija un día de la semana."),
        ({"visit_types": []}, "Marque al menos un tipo de cita."),
        ({"valid_until": "2025-01-01"}, "La vigencia no puede terminar antes de empezar."),
        ({"establishment": "987654"}, "Elija un establecimiento de la lista."),
    ],
)
def test_availability_rule_bad_input(world, login_as, change, message):
    before = AvailabilityRule.objects.count()
    response = login_as(world.personas.practitioner).post("/scheduling/availability/", _rule(world, **change))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert AvailabilityRule.objects.count() == before


def test_practitioner_adds_and_removes_a_rule(world, login_as):
    client = login_as(world.personas.practitioner)
    response = client.post("/scheduling/availability/", _rule(world))
    assert response.status_code == 302
    rule = AvailabilityRule.objects.get(practitioner=world.personas.practitioner, start_time=dt.time(14))
    assert AuditEvent.objects.filter(action="scheduling.availability_rule.created", object_id=str(rule.pk)).exists()
    remove = reverse("scheduling:availability_rule_remove", args=[world.personas.practitioner.pk, rule.pk])
    assert client.post(remove).status_code == 302
    assert not AvailabilityRule.objects.filter(pk=rule.pk).exists()


def test_coordinator_edits_a_practitioners_availability(world, login_as):
    url = reverse("scheduling:availability", args=[world.personas.practitioner.pk])
    response = login_as(world.personas.coordinator).post(url, _rule(world, weekday="6", start_time="13:00"))
    assert response.status_code == 302 and response["Location"] == url
    assert AvailabilityRule.objects.get(weekday=6, start_time=dt.time(13)).created_by == world.personas.coordinator


def _exception(world, **change):
    later = (world.clinic.tomorrow + dt.timedelta(days=10)).isoformat()
    data = {
        "action": "exception",
        "kind": "leave",
        "establishment": "",
        "start": f"{later}T08:00",
        "end": f"{later}T12:00",
        "time_zone": "",
        "label": "Congreso",
    }
    data.update(change)
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"time_zone": "America/Atlantis"}, "Zona horaria desconocida."),
        ({"end": "2020-01-01T08:00"}, "La hora de fin debe ser posterior a la de inicio."),
        ({"start": "el lunes"}, "Escriba una fecha y hora válidas."),
        ({"kind": "block"}, "Un bloqueo o una sesión adicional es en un establecimiento."),
        ({"kind": "holiday"}, "Elija el tipo de excepción."),
    ],
)
def test_availability_exception_bad_input(world, login_as, change, message):
    before = AvailabilityException.objects.count()
    response = login_as(world.personas.practitioner).post("/scheduling/availability/", _exception(world, **change))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert AvailabilityException.objects.count() == before


def test_exception_times_are_read_in_the_zone_given(world, login_as):
    client = login_as(world.personas.practitioner)
    response = client.post("/scheduling/availability/", _exception(world, time_zone="Europe/Madrid"))
    assert response.status_code == 302
    created = AvailabilityException.objects.get(label="Congreso")
    assert created.during.lower.astimezone(dt.UTC).hour == 7  # 08:00 in Madrid (winter) is 07:00 UTC


def test_availability_page_without_an_action_is_a_400(world, login_as):
    response = login_as(world.personas.practitioner).post("/scheduling/availability/", {})
    assert response.status_code == 400


# --- visit types --------------------------------------------------------------------------------------------------


def _visit_type(world, **change):
    data = {
        "establishment": world.personas.establishment.pk,
        "name": "Control de diabetes",
        "specialty": "Endocrinología",
        "duration_minutes": "20",
        "buffer_minutes": "5",
        "service_type": "telemonitoreo",
        "modality": "audio",
    }
    data.update(change)
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"duration_minutes": "3"}, "La duración va de 5 a 240 minutos."),
        ({"duration_minutes": "veinte"}, "Escriba un número entero de minutos."),
        ({"buffer_minutes": "500"}, "La pausa va de 0 a 120 minutos."),
        ({"service_type": "telepizza"}, "Elija un tipo de servicio de la lista."),
        ({"modality": "holograma"}, "Elija una modalidad de la lista."),
        ({"name": "Consulta de medicina general"}, "Ya existe un tipo de cita con ese nombre en el establecimiento."),
        ({"name": "   "}, "Escriba el nombre del tipo de cita."),
    ],
)
def test_visit_type_bad_input(world, login_as, change, message):
    before = VisitType.objects.count()
    response = login_as(world.personas.admin).post("/scheduling/visit-types/", _visit_type(world, **change))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert VisitType.objects.count() == before


def test_admin_creates_and_edits_a_visit_type(world, login_as):
    client = login_as(world.personas.admin)
    assert client.post("/scheduling/visit-types/", _visit_type(world)).status_code == 302
    created = VisitType.objects.get(name="Control de diabetes")
    assert (created.duration_minutes, created.service_type, created.modality) == (20, "telemonitoreo", "audio")
    url = reverse("scheduling:visit_type_edit", args=[created.pk])
    edited = client.post(url, {**_visit_type(world, duration_minutes="40"), "is_active": ""})
    assert edited.status_code == 302
    created.refresh_from_db()
    assert created.duration_minutes == 40 and not created.is_active
    assert AuditEvent.objects.filter(action="scheduling.visit_type.updated", object_id=str(created.pk)).exists()


# --- teleinterconsulta --------------------------------------------------------------------------------------------


@pytest.fixture
def interconsultation(world):
    p = world.personas
    p.other_establishment.time_zone = "America/Santiago"
    p.other_establishment.save(update_fields=["time_zone"])
    visit_type = make_visit_type(
        establishment=p.establishment,
        by=p.admin,
        name="Teleinterconsulta de cardiología",
        specialty="Cardiología",
        service_type=ServiceType.TELEINTERCONSULTA,
    )
    remote_type = make_visit_type(
        establishment=p.other_establishment,
        by=p.admin,
        name="Interconsulta recibida",
        specialty="Cardiología",
        service_type=ServiceType.TELEINTERCONSULTA,
    )
    AvailabilityRule.objects.filter(practitioner=p.practitioner).delete()
    for weekday in range(7):
        availability_rule_create(
            practitioner=p.practitioner,
            establishment=p.establishment,
            weekday=weekday,
            start_time=dt.time(8),
            end_time=dt.time(12),
            valid_from=dt.date(2026, 1, 1),
            visit_types=[visit_type, world.clinic.visit_type],
            by=p.admin,
        )
        availability_rule_create(
            practitioner=p.outsider,
            establishment=p.other_establishment,
            weekday=weekday,
            start_time=dt.time(11),
            end_time=dt.time(15),
            valid_from=dt.date(2026, 1, 1),
            visit_types=[remote_type],
            by=p.outsider,
        )
    return visit_type


def test_coordinator_books_a_teleinterconsulta_at_a_common_time(world, interconsultation, login_as):
    p = world.personas
    client = login_as(p.coordinator)
    day = world.clinic.tomorrow.isoformat()
    data = {
        "patient": world.clinic.other_patient.pk,
        "visit_type": interconsultation.pk,
        "requesting": p.practitioner.pk,
        "requesting_establishment": p.establishment.pk,
        "consulted": p.outsider.pk,
        "consulted_establishment": p.other_establishment.pk,
        "interpreter": "",
        "date_from": day,
        "date_until": day,
    }
    listed = client.post("/scheduling/interconsultation/", {"step": "times", **data})
    html = listed.content.decode()
    assert listed.status_code == 200, html
    # Santiago is two hours ahead of Lima in December: 11:00 there is 09:00 here; 09:00 Lima is booked.
    assert "09:30–10:00" in html and "(" in html and "11:30–12:00" in html
    start = local(world.clinic.tomorrow, "10:00")
    booked = client.post(
        "/scheduling/interconsultation/", {"step": "book", **data, "start": start.astimezone(dt.UTC).isoformat()}
    )
    assert booked.status_code == 302
    appointment = Appointment.objects.get(start=start)
    roles = sorted(appointment.participants.values_list("role", flat=True))
    assert roles == ["consulted", "patient", "practitioner"]


def test_teleinterconsulta_bad_input(world, interconsultation, login_as):
    p = world.personas
    before = Appointment.objects.count()
    day = world.clinic.tomorrow.isoformat()
    response = login_as(p.coordinator).post(
        "/scheduling/interconsultation/",
        {
            "step": "times",
            "patient": world.clinic.other_patient.pk,
            "visit_type": interconsultation.pk,
            "requesting": p.practitioner.pk,
            "requesting_establishment": p.establishment.pk,
            "consulted": p.practitioner.pk,
            "consulted_establishment": p.establishment.pk,
            "date_from": day,
            "date_until": day,
        },
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "El especialista consultado debe ser otra persona." in html
    assert "La teleinterconsulta es con otro establecimiento." in html
    assert Appointment.objects.count() == before


# --- query counts -------------------------------------------------------------------------------------------------


def _more_appointments(world, count):
    for index in range(count):
        patient = make_patient(
            establishment=world.personas.establishment,
            registered_by=world.personas.coordinator,
            given_names=f"Ana {index}",
            surname="Flores",
        )
        appointment_book(
            visit_type=world.clinic.visit_type,
            practitioner=world.personas.practitioner,
            patient=patient,
            start=local(world.clinic.tomorrow, f"1{index}:00"),
            booked_by=world.personas.coordinator,
        )


@pytest.mark.parametrize(
    "page",
    ["calendar_day", "calendar_week", "today", "my_day"],
)
def test_calendar_lists_run_a_constant_number_of_queries(world, login_as, django_assert_num_queries, page):
    day = world.clinic.tomorrow.isoformat()
    user = world.personas.practitioner if page == "my_day" else world.personas.coordinator
    url = {
        "calendar_day": f"/scheduling/calendar/?date={day}",
        "calendar_week": f"/scheduling/calendar/?view=week&date={day}",
        "today": "/scheduling/today/",
        "my_day": f"/scheduling/my-day/?date={day}",
    }[page]
    client = login_as(user)
    client.get(url)  # the first request of a session loads keys and the device once
    with CaptureQueriesContext(connection) as few:
        assert client.get(url).status_code == 200
    _more_appointments(world, 2)
    with django_assert_num_queries(len(few)):
        assert client.get(url).status_code == 200


# --- today's overview and the practitioner's day: who is waiting, who is late -------------------------------------


def test_today_shows_who_is_waiting_and_who_is_late(world, login_as):
    import zoneinfo

    from scheduling.models import JoinLink

    now = timezone.now()
    lima = zoneinfo.ZoneInfo("America/Lima")
    midnight = dt.datetime.combine(now.astimezone(lima).date(), dt.time.min, tzinfo=lima)
    start = max(now - dt.timedelta(minutes=10), midnight)  # today in Lima, already begun
    late = appointment_book(
        visit_type=world.clinic.visit_type,
        practitioner=world.personas.practitioner,
        patient=world.clinic.other_patient,
        start=local(world.clinic.tomorrow, "11:00"),
        booked_by=world.personas.coordinator,
    )
    for appointment in (world.appointment, late):
        Appointment.objects.filter(pk=appointment.pk).update(start=start, end=now + dt.timedelta(minutes=20))
    JoinLink.objects.filter(
        participant__appointment=world.appointment, participant__role="patient", revoked_at__isnull=True
    ).update(first_used_at=now, last_used_at=now)

    html = login_as(world.personas.coordinator).get("/scheduling/today/").content.decode()
    waiting_part = html.split('id="waiting-heading"')[1].split('id="late-heading"')[0]
    late_part = html.split('id="late-heading"')[1].split('id="upcoming-heading"')[0]
    assert "Quispe, Rosa" in waiting_part and "Mamani" not in waiting_part
    assert "Mamani, Luis" in late_part and "Marcar que no se presentó" in late_part

    day = login_as(world.personas.practitioner).get("/scheduling/my-day/").content.decode()
    assert day.count("En sala de espera") == 1 and day.count("Retrasado") == 1
