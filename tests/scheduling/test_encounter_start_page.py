"""The practitioner starts a booked appointment's encounter from their day and lands in the note editor."""

from __future__ import annotations

import pytest
from django.urls import reverse

from records.models import ClinicalNote, Encounter
from scheduling.services import appointment_book
from tests.scheduling.factories import local

pytestmark = pytest.mark.django_db


@pytest.fixture
def appointment(personas, clinic):
    return appointment_book(
        visit_type=clinic.visit_type,
        practitioner=personas.practitioner,
        patient=clinic.patient,
        start=local(clinic.tomorrow, "09:00"),
        booked_by=personas.coordinator,
    )


def test_practitioner_starts_the_encounter_of_their_appointment(personas, appointment, login_as):
    client = login_as(personas.practitioner)
    url = reverse("scheduling:encounter_start", args=[appointment.public_id])
    response = client.post(url)
    note = ClinicalNote.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("records:note", args=[note.pk])
    assert note.encounter.appointment_ref == str(appointment.public_id)
    assert note.encounter.modality_planned == appointment.modality
    # Again (a second click, another tab): the same encounter and note.
    assert client.post(url)["Location"] == response["Location"]
    assert Encounter.objects.count() == 1
    day = client.get(reverse("scheduling:my_day"), {"date": appointment.start.date().isoformat()}).content.decode()
    assert url in day


@pytest.mark.parametrize("persona", ["outsider", "coordinator", "auditor", "admin", "patient"])
def test_only_a_practitioner_of_the_appointment_starts_it(personas, appointment, login_as, persona):
    response = login_as(getattr(personas, persona)).post(
        reverse("scheduling:encounter_start", args=[appointment.public_id])
    )
    assert response.status_code == 404
    assert not Encounter.objects.exists()


def test_get_is_not_allowed(personas, appointment, login_as):
    response = login_as(personas.practitioner).get(reverse("scheduling:encounter_start", args=[appointment.public_id]))
    assert response.status_code == 405
