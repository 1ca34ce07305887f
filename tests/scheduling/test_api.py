"""The scheduling API: each endpoint for each role (the outsider denied), its answers, its audit trail."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.actions import AuditAction
from audit.models import AuditEvent
from scheduling import services
from scheduling.models import Appointment, AppointmentStatus
from tests.scheduling.api_support import API, iso, make_clinic, move_to_past

pytestmark = pytest.mark.django_db

ROLES = ["patient", "other_patient", "practitioner", "coordinator", "admin", "auditor", "outsider"]


# Replaces the folder's `clinic` fixture: the API needs two establishments' catalogues and patients who sign in.
@pytest.fixture
def clinic(personas):
    return make_clinic(personas)


def user_of(clinic, role):
    return clinic.other_user if role == "other_patient" else getattr(clinic.personas, role)


@pytest.fixture
def as_role(clinic, login_as):
    return lambda role: login_as(user_of(clinic, role))


def post(client, url, body=None):
    return client.post(url, data=json.dumps(body if body is not None else {}), content_type="application/json")


def book(clinic, *, slot=None, patient=None):
    """The coordinator books the patient into the first free slot (or the one given)."""
    slot = slot or clinic.free_slots(count=1)[0]
    return services.appointment_book(
        visit_type=clinic.general,
        practitioner=clinic.personas.practitioner,
        patient=patient or clinic.patient,
        start=slot.start,
        booked_by=clinic.personas.coordinator,
    )


def hold(clinic):
    slot = clinic.free_slots(count=1)[0]
    return services.appointment_hold(
        visit_type=clinic.general,
        practitioner=clinic.personas.practitioner,
        patient=clinic.patient,
        start=slot.start,
        booked_by=clinic.personas.patient,
    )


# --- anonymous, auditor, unverified staff: nothing ---

ENDPOINTS = [
    ("get", "/slots?specialty=Medicina%20general"),
    ("get", "/visit-types"),
    ("get", "/specialties"),
    ("get", "/appointments"),
    ("post", "/appointments"),
    ("get", "/appointments/{id}"),
    ("post", "/appointments/{id}/confirm"),
    ("post", "/appointments/{id}/cancel"),
    ("post", "/appointments/{id}/reschedule"),
    ("post", "/appointments/{id}/no-show"),
]


def _call(client, method, path, appointment):
    url = API + path.format(id=appointment.public_id)
    return client.get(url) if method == "get" else post(client, url, {"reason": "other", "start": iso(timezone.now())})


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_anonymous_gets_nothing(clinic, client, method, path):
    response = _call(client, method, path, book(clinic))
    assert response.status_code == 403
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_auditor_gets_nothing(clinic, as_role, method, path):
    appointment = book(clinic)
    response = _call(as_role("auditor"), method, path, appointment)
    assert response.status_code in (403, 404)
    assert set(response.json()) == {"code", "detail"}
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.BOOKED


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_staff_without_second_factor_gets_nothing(clinic, client, method, path):
    appointment = book(clinic)
    client.force_login(clinic.personas.coordinator)  # signed in, second factor not passed
    response = _call(client, method, path, appointment)
    # The staff session policy sends them to the second factor before any view runs.
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/")
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.BOOKED


def test_session_api_refuses_posts_without_csrf_token(clinic, personas):
    from django.test import Client

    from tests.factories import DEMO_PASSWORD

    strict = Client(enforce_csrf_checks=True)
    assert strict.login(email=personas.patient.email, password=DEMO_PASSWORD)
    slot = clinic.free_slots(count=1)[0]
    body = {"visit_type": clinic.general.pk, "practitioner": personas.practitioner.pk, "start": iso(slot.start)}
    response = post(strict, f"{API}/appointments", body)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert not Appointment.objects.exists()


# --- catalogue ---


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("patient", {"Consulta general", "Consulta cardiología"}),
        ("practitioner", {"Consulta general"}),
        ("coordinator", {"Consulta general"}),
        ("admin", {"Consulta general"}),
        ("outsider", {"Consulta cardiología"}),
    ],
)
def test_visit_types_by_role(clinic, as_role, role, expected):
    response = as_role(role).get(f"{API}/visit-types")
    assert response.status_code == 200
    assert {vt["name"] for vt in response.json()} == expected
    general = next((vt for vt in response.json() if vt["id"] == clinic.general.pk), None)
    if general:
        assert general["duration_minutes"] == 20
        assert general["establishment"]["time_zone"] == "America/Lima"


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("patient", ["Cardiología", "Medicina general"]),
        ("coordinator", ["Medicina general"]),
        ("outsider", ["Cardiología"]),
    ],
)
def test_specialties_by_role(clinic, as_role, role, expected):
    response = as_role(role).get(f"{API}/specialties")
    assert response.status_code == 200
    assert response.json() == expected


@pytest.mark.parametrize("role", ["patient", "coordinator", "admin", "practitioner"])
def test_slots_earliest_first(clinic, as_role, role):
    start = timezone.now() + dt.timedelta(days=1)
    expected = clinic.free_slots(count=5, start=start)
    response = as_role(role).get(
        f"{API}/slots", {"specialty": "Medicina general", "from": iso(start), "to": iso(start + dt.timedelta(days=7))}
    )
    assert response.status_code == 200
    found = response.json()
    assert [dt.datetime.fromisoformat(s["start"]) for s in found[:5]] == [s.start for s in expected]
    assert found[0]["practitioner"] == clinic.personas.practitioner.pk
    assert found[0]["practitioner_name"] == clinic.personas.practitioner.full_name
    assert found[0]["visit_type"] == clinic.general.pk
    assert found == sorted(found, key=lambda s: s["start"])


def test_slots_leave_out_the_booked_time(clinic, as_role):
    first = clinic.free_slots(count=1)[0]
    book(clinic, slot=first)
    response = as_role("patient").get(f"{API}/slots", {"visit_type": clinic.general.pk, "limit": 3})
    starts = [dt.datetime.fromisoformat(s["start"]) for s in response.json()]
    assert len(starts) == 3
    assert first.start not in starts


def test_slots_outsider_sees_none_of_the_home_establishment(clinic, as_role):
    client = as_role("outsider")
    by_practitioner = client.get(f"{API}/slots", {"practitioner": clinic.personas.practitioner.pk})
    assert by_practitioner.status_code == 400
    assert by_practitioner.json()["errors"]["practitioner"][0]["code"] == "does_not_exist"
    by_visit_type = client.get(f"{API}/slots", {"visit_type": clinic.general.pk})
    assert by_visit_type.status_code == 400
    assert by_visit_type.json()["errors"]["visit_type"][0]["code"] == "does_not_exist"
    by_specialty = client.get(f"{API}/slots", {"specialty": "Medicina general"})
    assert by_specialty.status_code == 200
    assert by_specialty.json() == []
    own = client.get(f"{API}/slots", {"specialty": "Cardiología", "limit": 2}).json()
    assert [s["practitioner"] for s in own] == [clinic.personas.outsider.pk] * 2


def test_coordinator_of_two_establishments_searches_both(clinic, as_role, personas):
    from tests.factories import StaffMembershipFactory

    client = as_role("coordinator")
    assert client.get(f"{API}/slots", {"specialty": "Cardiología"}).json() == []
    StaffMembershipFactory(user=personas.coordinator, establishment=personas.other_establishment)
    start = timezone.now() + dt.timedelta(days=1)
    both = client.get(f"{API}/slots", {"practitioner": personas.outsider.pk, "from": iso(start), "limit": 3}).json()
    assert [s["practitioner"] for s in both] == [personas.outsider.pk] * 3
    merged = client.get(f"{API}/slots", {"specialty": "Cardiología", "from": iso(start), "limit": 2}).json()
    assert [s["start"] for s in merged] == [s["start"] for s in both[:2]]


def test_practitioner_searches_only_their_own_slots(clinic, as_role):
    response = as_role("practitioner").get(f"{API}/slots", {"visit_type": clinic.general.pk, "limit": 4})
    assert response.status_code == 200
    assert {s["practitioner"] for s in response.json()} == {clinic.personas.practitioner.pk}


# --- booking ---


def _create_body(clinic, slot, **extra):
    return {
        "visit_type": clinic.general.pk,
        "practitioner": clinic.personas.practitioner.pk,
        "start": iso(slot.start),
        **extra,
    }


def test_patient_holds_a_slot_for_themself(clinic, as_role):
    slot = clinic.free_slots(count=1)[0]
    # A patient naming someone else's record still books for themself only.
    response = post(as_role("patient"), f"{API}/appointments", _create_body(clinic, slot, patient=clinic.other.pk))
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "held"
    assert body["hold_expires_at"]
    assert body["patient"]["id"] == clinic.patient.pk
    assert response["Location"] == f"{API}/appointments/{body['public_id']}"
    appointment = Appointment.objects.get(public_id=body["public_id"])
    assert appointment.patient == clinic.patient
    assert appointment.booked_by == clinic.personas.patient
    assert AuditEvent.objects.filter(action=AuditAction.APPOINTMENT_HELD, object_id=str(appointment.pk)).exists()


@pytest.mark.parametrize("role", ["coordinator", "admin"])
def test_staff_books_for_a_patient(clinic, as_role, role):
    slot = clinic.free_slots(count=1)[0]
    response = post(as_role(role), f"{API}/appointments", _create_body(clinic, slot, patient=clinic.walk_in.pk))
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "booked"
    assert body["patient"] == {"id": clinic.walk_in.pk, "name": "Luis Huamán"}
    roles = {p["role"]: p for p in body["participants"]}
    assert roles["practitioner"]["user"] == clinic.personas.practitioner.pk
    assert roles["practitioner"]["name"] == clinic.personas.practitioner.full_name
    assert dt.datetime.fromisoformat(body["start"]) == slot.start
    assert AuditEvent.objects.filter(action=AuditAction.APPOINTMENT_BOOKED, patient_id=clinic.walk_in.pk).exists()


@pytest.mark.parametrize("role", ["practitioner", "outsider", "auditor"])
def test_other_roles_cannot_book(clinic, as_role, role):
    slot = clinic.free_slots(count=1)[0]
    response = post(as_role(role), f"{API}/appointments", _create_body(clinic, slot, patient=clinic.patient.pk))
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert not Appointment.objects.exists()


def test_coordinator_must_name_a_patient_they_may_book_for(clinic, as_role):
    client = as_role("coordinator")
    slot = clinic.free_slots(count=1)[0]
    missing = post(client, f"{API}/appointments", _create_body(clinic, slot))
    assert missing.status_code == 400
    assert missing.json()["errors"]["patient"][0]["code"] == "required"
    unknown = post(client, f"{API}/appointments", _create_body(clinic, slot, patient=987654))
    assert unknown.status_code == 400
    assert unknown.json()["errors"]["patient"][0]["code"] == "does_not_exist"
    assert not Appointment.objects.exists()


def test_coordinator_cannot_book_another_establishments_visit_type(clinic, as_role):
    slot = clinic.free_slots(visit_type=clinic.cardiology, count=1)[0]
    body = {
        "visit_type": clinic.cardiology.pk,
        "practitioner": clinic.personas.outsider.pk,
        "start": iso(slot.start),
        "patient": clinic.patient.pk,
    }
    response = post(as_role("coordinator"), f"{API}/appointments", body)
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"visit_type", "practitioner"}
    assert not Appointment.objects.exists()


def test_taken_slot_is_409_slot_taken(clinic, as_role):
    slot = clinic.free_slots(count=1)[0]
    book(clinic, slot=slot, patient=clinic.other)
    response = post(as_role("patient"), f"{API}/appointments", _create_body(clinic, slot))
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "slot_taken"
    assert "tomado" in body["detail"]
    assert Appointment.objects.count() == 1
    assert AuditEvent.objects.filter(action=AuditAction.APPOINTMENT_BOOKING_REFUSED).exists()


def test_patient_already_busy_is_409_participant_busy(clinic, as_role, personas):
    # The patient has a visit with the outsider's clinic at the same time.
    slot = clinic.free_slots(count=1)[0]
    other_slot = clinic.free_slots(visit_type=clinic.cardiology, count=1)[0]
    assert other_slot.start == slot.start  # both open at 08:00 Lima tomorrow
    services.appointment_hold(
        visit_type=clinic.cardiology,
        practitioner=personas.outsider,
        patient=clinic.patient,
        start=other_slot.start,
        booked_by=personas.patient,
    )
    response = post(as_role("patient"), f"{API}/appointments", _create_body(clinic, slot))
    assert response.status_code == 409
    assert response.json()["code"] == "participant_busy"


@pytest.mark.parametrize(
    ("shift", "code"),
    [(dt.timedelta(days=-3), "slot_in_past"), (dt.timedelta(hours=12, minutes=7), "outside_availability")],
)
def test_refused_bookings_are_400_with_the_services_code(clinic, as_role, shift, code):
    slot = clinic.free_slots(count=1)[0]
    body = _create_body(clinic, slot) | {"start": iso(slot.start + shift)}
    response = post(as_role("patient"), f"{API}/appointments", body)
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert response.json()["errors"]["non_field_errors"][0]["code"] == code
    assert not Appointment.objects.exists()


# --- reading appointments ---

DETAIL_STATUS = {
    "patient": 200,
    "other_patient": 404,
    "practitioner": 200,
    "coordinator": 200,
    "admin": 200,
    "auditor": 403,
    "outsider": 404,
}


@pytest.mark.parametrize("role", ROLES)
def test_appointment_detail_by_role(clinic, as_role, role):
    appointment = book(clinic)
    user = user_of(clinic, role)
    response = as_role(role).get(f"{API}/appointments/{appointment.public_id}")
    assert response.status_code == DETAIL_STATUS[role]
    events = AuditEvent.objects.filter(actor_user_id=user.pk)
    if response.status_code == 200:
        assert response.json()["public_id"] == str(appointment.public_id)
        assert events.filter(action=AuditAction.APPOINTMENT_VIEWED, patient_id=clinic.patient.pk).exists()
    elif response.status_code == 404:
        # Denied reads exactly like missing, and is on the trail.
        missing = as_role(role).get(f"{API}/appointments/{uuid.uuid4()}")
        assert response.json() == missing.json() == {"code": "not_found", "detail": response.json()["detail"]}
        assert events.filter(action=AuditAction.APPOINTMENT_ACCESS_DENIED).exists()


def test_malformed_public_id_is_404_json(clinic, as_role):
    response = as_role("patient").get(f"{API}/appointments/not-a-uuid")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


LIST_SEES = {
    "patient": {"mine"},
    "other_patient": {"theirs"},
    "practitioner": {"mine", "theirs", "walk_in"},
    "coordinator": {"mine", "theirs", "walk_in"},
    "admin": {"mine", "theirs", "walk_in"},
    "outsider": set(),
}


@pytest.mark.parametrize("role", list(LIST_SEES))
def test_appointment_list_by_role(clinic, as_role, role):
    first, second, third = clinic.free_slots(count=3)
    made = {
        "mine": book(clinic, slot=first),
        "theirs": book(clinic, slot=second, patient=clinic.other),
        "walk_in": book(clinic, slot=third, patient=clinic.walk_in),
    }
    response = as_role(role).get(f"{API}/appointments")
    assert response.status_code == 200
    seen = {a["public_id"] for a in response.json()}
    assert seen == {str(made[name].public_id) for name in LIST_SEES[role]}
    assert AuditEvent.objects.filter(
        action=AuditAction.CALENDAR_VIEWED, actor_user_id=user_of(clinic, role).pk
    ).exists()


def test_auditor_cannot_list(clinic, as_role):
    book(clinic)
    response = as_role("auditor").get(f"{API}/appointments")
    assert response.status_code == 403


def test_appointment_list_filters_by_period_and_practitioner(clinic, as_role, personas):
    slots = clinic.free_slots(count=3)
    for slot in slots:
        book(clinic, slot=slot, patient=clinic.walk_in)
    client = as_role("coordinator")
    window = {"from": iso(slots[1].start), "to": iso(slots[1].end)}
    only_second = client.get(f"{API}/appointments", window).json()
    assert [dt.datetime.fromisoformat(a["start"]) for a in only_second] == [slots[1].start]
    nobody = client.get(f"{API}/appointments", {"practitioner": personas.outsider.pk}).json()
    assert nobody == []
    limited = client.get(f"{API}/appointments", {"limit": 2}).json()
    assert len(limited) == 2


def test_appointment_list_query_count_is_constant(clinic, as_role, django_assert_num_queries):
    free = clinic.free_slots(count=5)
    book(clinic, slot=free[0])
    client = as_role("coordinator")
    client.get(f"{API}/appointments")  # the session's first use writes its activity stamp
    with CaptureQueriesContext(connection) as one:
        assert len(client.get(f"{API}/appointments").json()) == 1
    for slot in free[1:]:
        book(clinic, slot=slot, patient=clinic.walk_in)
    with django_assert_num_queries(len(one)):
        assert len(client.get(f"{API}/appointments").json()) == 5


# --- changing appointments ---

CHANGE_STATUS = {
    "patient": 200,
    "other_patient": 404,
    "practitioner": 200,
    "coordinator": 200,
    "admin": 200,
    "auditor": 403,
    "outsider": 404,
}


@pytest.mark.parametrize("role", ROLES)
def test_cancel_by_role(clinic, as_role, role):
    appointment = book(clinic)
    body = {"reason": "patient_request", "note": "Viaja fuera de la ciudad."}
    response = post(as_role(role), f"{API}/appointments/{appointment.public_id}/cancel", body)
    assert response.status_code == CHANGE_STATUS[role]
    appointment.refresh_from_db()
    if response.status_code == 200:
        assert response.json()["status"] == "cancelled"
        assert response.json()["cancellation"]["reason"] == "patient_request"
        assert "note" not in json.dumps(response.json())
        assert appointment.status == AppointmentStatus.CANCELLED
        assert appointment.cancelled_by == user_of(clinic, role)
    else:
        assert appointment.status == AppointmentStatus.BOOKED


@pytest.mark.parametrize("role", ROLES)
def test_reschedule_by_role(clinic, as_role, role):
    first, later = clinic.free_slots(count=2)
    appointment = book(clinic, slot=first)
    response = post(
        as_role(role), f"{API}/appointments/{appointment.public_id}/reschedule", {"start": iso(later.start)}
    )
    expected = 201 if CHANGE_STATUS[role] == 200 else CHANGE_STATUS[role]
    assert response.status_code == expected
    appointment.refresh_from_db()
    if expected == 201:
        body = response.json()
        assert body["rescheduled_from"] == str(appointment.public_id)
        assert dt.datetime.fromisoformat(body["start"]) == later.start
        assert response["Location"] == f"{API}/appointments/{body['public_id']}"
        assert appointment.status == AppointmentStatus.RESCHEDULED
    else:
        assert appointment.status == AppointmentStatus.BOOKED
        assert Appointment.objects.count() == 1


def test_reschedule_onto_a_taken_slot_is_409(clinic, as_role):
    first, taken = clinic.free_slots(count=2)
    appointment = book(clinic, slot=first)
    book(clinic, slot=taken, patient=clinic.other)
    response = post(
        as_role("coordinator"), f"{API}/appointments/{appointment.public_id}/reschedule", {"start": iso(taken.start)}
    )
    assert response.status_code == 409
    assert response.json()["code"] == "slot_taken"
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.BOOKED


CONFIRM_STATUS = {
    "patient": 200,
    "other_patient": 404,
    "practitioner": 403,
    "coordinator": 403,
    "admin": 403,
    "auditor": 403,
    "outsider": 403,
}


@pytest.mark.parametrize("role", ROLES)
def test_confirm_by_role(clinic, as_role, role):
    held = hold(clinic)
    response = post(as_role(role), f"{API}/appointments/{held.public_id}/confirm")
    assert response.status_code == CONFIRM_STATUS[role]
    held.refresh_from_db()
    assert held.status == (AppointmentStatus.BOOKED if response.status_code == 200 else AppointmentStatus.HELD)


def test_confirming_a_lapsed_hold_is_400_hold_expired(clinic, as_role):
    held = hold(clinic)
    Appointment.objects.filter(pk=held.pk).update(hold_expires_at=timezone.now() - dt.timedelta(seconds=1))
    response = post(as_role("patient"), f"{API}/appointments/{held.public_id}/confirm")
    assert response.status_code == 400
    assert response.json()["code"] == "hold_expired"


NO_SHOW_STATUS = {
    "patient": 403,
    "other_patient": 403,
    "practitioner": 200,
    "coordinator": 200,
    "admin": 200,
    "auditor": 403,
    "outsider": 404,
}


@pytest.mark.parametrize("role", ROLES)
def test_no_show_by_role(clinic, as_role, role):
    appointment = move_to_past(book(clinic))
    response = post(as_role(role), f"{API}/appointments/{appointment.public_id}/no-show")
    assert response.status_code == NO_SHOW_STATUS[role]
    appointment.refresh_from_db()
    assert appointment.status == (
        AppointmentStatus.NO_SHOW if response.status_code == 200 else AppointmentStatus.BOOKED
    )


def test_no_show_before_the_start_is_400(clinic, as_role):
    appointment = book(clinic)
    response = post(as_role("coordinator"), f"{API}/appointments/{appointment.public_id}/no-show")
    assert response.status_code == 400
    assert response.json()["code"] == "not_started"


def test_cancelled_appointment_cannot_change_again(clinic, as_role):
    appointment = book(clinic)
    client = as_role("coordinator")
    assert (
        post(client, f"{API}/appointments/{appointment.public_id}/cancel", {"reason": "duplicate"}).status_code == 200
    )
    again = post(client, f"{API}/appointments/{appointment.public_id}/cancel", {"reason": "duplicate"})
    assert again.status_code == 400
    assert again.json()["code"] == "not_changeable"
