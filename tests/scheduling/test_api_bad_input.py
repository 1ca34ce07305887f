"""The scheduling API on bad input: a 4xx with a code and a translated message, nothing saved, never a 500."""

from __future__ import annotations

import json

import pytest

from scheduling.models import Appointment, AppointmentStatus
from tests.scheduling.api_support import API, iso, make_clinic
from tests.scheduling.test_api import book, post

pytestmark = pytest.mark.django_db

HUGE = 10**30


# Replaces the folder's `clinic` fixture: the API needs two establishments' catalogues and patients who sign in.
@pytest.fixture
def clinic(personas):
    return make_clinic(personas)


@pytest.fixture
def patient_client(clinic, login_as):
    return login_as(clinic.personas.patient)


@pytest.fixture
def coordinator_client(clinic, login_as):
    return login_as(clinic.personas.coordinator)


def _error(response, status=400):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] and body["detail"]
    return body


@pytest.mark.parametrize(
    ("query", "field", "code"),
    [
        ({"specialty": "Medicina general", "from": "ayer"}, "from", "invalid"),
        ({"specialty": "Medicina general", "from": "2026-13-45T10:00"}, "from", "invalid"),
        ({"specialty": "Medicina general", "to": "2026-01-01", "from": "2026-02-01"}, "to", "invalid_range"),
        ({"specialty": "Medicina general", "from": "2026-01-01", "to": "2027-01-01"}, "to", "range_too_long"),
        ({"specialty": "Medicina general", "limit": "1000000000"}, "limit", "max_value"),
        ({"specialty": "Medicina general", "limit": "0"}, "limit", "min_value"),
        ({"specialty": "Medicina general", "limit": "muchos"}, "limit", "invalid"),
        ({"visit_type": "abc"}, "visit_type", "incorrect_type"),
        ({"visit_type": "987654"}, "visit_type", "does_not_exist"),
        ({"visit_type": str(HUGE)}, "visit_type", "does_not_exist"),
        ({"visit_type": "-1"}, "visit_type", "does_not_exist"),
        ({"practitioner": str(HUGE)}, "practitioner", "does_not_exist"),
        ({"specialty": "x" * 500}, "specialty", "max_length"),
        ({"specialty": "Medicina\x00general"}, "specialty", "null_characters_not_allowed"),
        ({}, "non_field_errors", "criteria_required"),
    ],
)
def test_bad_slot_queries(patient_client, query, field, code):
    body = _error(patient_client.get(f"{API}/slots", query))
    assert [e["code"] for e in body["errors"][field]] == [code]


def test_an_unknown_specialty_has_no_slots(patient_client):
    response = patient_client.get(f"{API}/slots", {"specialty": "Astrología"})
    assert response.status_code == 200
    assert response.json() == []


@pytest.mark.parametrize(
    ("query", "field", "code"),
    [
        ({"from": "mañana"}, "from", "invalid"),
        ({"practitioner": "abc"}, "practitioner", "invalid"),
        ({"practitioner": str(HUGE)}, "practitioner", "max_value"),
        ({"limit": "100000"}, "limit", "max_value"),
        ({"from": "2026-01-01", "to": "2030-01-01"}, "to", "range_too_long"),
    ],
)
def test_bad_list_queries(coordinator_client, query, field, code):
    body = _error(coordinator_client.get(f"{API}/appointments", query))
    assert [e["code"] for e in body["errors"][field]] == [code]


def _create_body(clinic, **changes):
    slot = clinic.free_slots(count=1)[0]
    body = {
        "visit_type": clinic.general.pk,
        "practitioner": clinic.personas.practitioner.pk,
        "start": iso(slot.start),
        "patient": clinic.walk_in.pk,
    }
    return body | changes


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"start": "mañana a las 10"}, "start", "invalid"),
        ({"start": None}, "start", "null"),
        ({"start": 12345}, "start", "invalid"),
        ({"visit_type": "general"}, "visit_type", "incorrect_type"),
        ({"visit_type": HUGE}, "visit_type", "does_not_exist"),
        ({"visit_type": [1]}, "visit_type", "incorrect_type"),
        ({"practitioner": {"id": 1}}, "practitioner", "incorrect_type"),
        ({"practitioner": 987654}, "practitioner", "does_not_exist"),
        ({"patient": "Rosa"}, "patient", "invalid"),
        ({"patient": HUGE}, "patient", "max_value"),
        ({"patient": 987654}, "patient", "does_not_exist"),
        ({"patient": -4}, "patient", "min_value"),
    ],
)
def test_bad_booking_bodies(clinic, coordinator_client, changes, field, code):
    body = _error(post(coordinator_client, f"{API}/appointments", _create_body(clinic, **changes)))
    assert body["code"] == "invalid"
    assert [e["code"] for e in body["errors"][field]] == [code]
    assert not Appointment.objects.exists()


def test_practitioner_who_is_not_one_is_refused(clinic, coordinator_client):
    body = _error(
        post(coordinator_client, f"{API}/appointments", _create_body(clinic, practitioner=clinic.personas.admin.pk))
    )
    assert body["errors"]["practitioner"][0]["code"] == "does_not_exist"


def test_a_start_between_slots_is_outside_availability_or_taken_never_saved(clinic, coordinator_client):
    slot = clinic.free_slots(count=1)[0]
    body = _create_body(clinic, start=iso(slot.start.replace(hour=3)))  # 22:00 in Lima the day before
    response = post(coordinator_client, f"{API}/appointments", body)
    assert _error(response)["code"] in ("outside_availability", "slot_in_past")
    assert not Appointment.objects.exists()


def test_patient_user_without_a_patient_record_cannot_book(clinic, login_as):
    from accounts.models import Role
    from tests.factories import UserFactory

    client = login_as(UserFactory(email="sin.historia@example.test", role=Role.PATIENT))
    body = _create_body(clinic)
    del body["patient"]
    response = post(client, f"{API}/appointments", body)
    assert _error(response)["errors"]["patient"][0]["code"] == "does_not_exist"
    assert not Appointment.objects.exists()


def test_slot_taken_is_translated(clinic, patient_client):
    slot = clinic.free_slots(count=1)[0]
    book(clinic, slot=slot, patient=clinic.other)
    body = _create_body(clinic, start=iso(slot.start))
    del body["patient"]
    response = patient_client.post(
        f"{API}/appointments", data=json.dumps(body), content_type="application/json", headers={"accept-language": "en"}
    )
    assert _error(response, 409) == {
        "code": "slot_taken",
        "detail": "That time has just been taken. Please choose another.",
    }


def test_malformed_json_is_400_parse_error(coordinator_client):
    response = coordinator_client.post(f"{API}/appointments", data="{not json", content_type="application/json")
    assert _error(response)["code"] == "parse_error"


def test_form_bodies_are_415(coordinator_client):
    response = coordinator_client.post(f"{API}/appointments", data={"start": "x"})
    assert _error(response, 415)["code"] == "unsupported_media_type"


@pytest.mark.parametrize("payload", ["[]", '"texto"', "42", "null"])
def test_a_body_that_is_not_an_object_is_400(coordinator_client, payload):
    response = coordinator_client.post(f"{API}/appointments", data=payload, content_type="application/json")
    body = _error(response)
    assert body["errors"]


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({}, "reason", "required"),
        ({"reason": "me aburrí"}, "reason", "invalid_choice"),
        ({"reason": ["other"]}, "reason", "invalid_choice"),
        ({"reason": "other", "note": "x" * 501}, "note", "max_length"),
        ({"reason": "other", "note": {"a": 1}}, "note", "invalid"),
    ],
)
def test_bad_cancel_bodies(clinic, coordinator_client, body, field, code):
    appointment = book(clinic)
    response = post(coordinator_client, f"{API}/appointments/{appointment.public_id}/cancel", body)
    assert [e["code"] for e in _error(response)["errors"][field]] == [code]
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.BOOKED


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({}, "start", "required"),
        ({"start": "pronto"}, "start", "invalid"),
        ({"start": "2026-12-24T10:00:00Z", "practitioner": "yo"}, "practitioner", "incorrect_type"),
        ({"start": "2026-12-24T10:00:00Z", "practitioner": HUGE}, "practitioner", "does_not_exist"),
    ],
)
def test_bad_reschedule_bodies(clinic, coordinator_client, body, field, code):
    appointment = book(clinic)
    response = post(coordinator_client, f"{API}/appointments/{appointment.public_id}/reschedule", body)
    assert [e["code"] for e in _error(response)["errors"][field]] == [code]
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.BOOKED
    assert Appointment.objects.count() == 1


def test_reschedule_into_the_past_is_400_and_keeps_the_appointment(clinic, coordinator_client):
    appointment = book(clinic)
    response = post(
        coordinator_client, f"{API}/appointments/{appointment.public_id}/reschedule", {"start": "2020-01-06T13:00Z"}
    )
    assert _error(response)["code"] == "slot_in_past"
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.BOOKED
    assert appointment.participants.filter(active=True).count() == 2


@pytest.mark.parametrize(
    "path", ["/appointments/123", "/appointments/%00", "/appointments/' OR 1=1 --", "/appointments/" + "f" * 500]
)
def test_odd_appointment_ids_are_404(coordinator_client, path):
    assert _error(coordinator_client.get(API + path), 404)["code"] == "not_found"
    assert _error(post(coordinator_client, API + path + "/cancel", {"reason": "other"}), 404)["code"] == "not_found"


def test_wrong_methods_are_405(coordinator_client, clinic):
    appointment = book(clinic)
    response = coordinator_client.delete(f"{API}/appointments/{appointment.public_id}")
    assert _error(response, 405)["code"] == "method_not_allowed"
    assert coordinator_client.get(f"{API}/appointments/{appointment.public_id}/cancel").status_code == 405


def test_errors_are_translated(clinic, coordinator_client):
    response = coordinator_client.get(f"{API}/slots", {"limit": "0"}, headers={"accept-language": "en"})
    body = _error(response)
    assert body["detail"] == "Check the data you sent."
    spanish = coordinator_client.get(f"{API}/slots", {"limit": "0"}, headers={"accept-language": "es-pe"})
    assert spanish.json()["detail"] == "Revise los datos enviados."
