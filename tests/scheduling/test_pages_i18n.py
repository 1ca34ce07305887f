"""UX-1 for the staff scheduling pages: Spanish (Peru) first, English on request, errors included."""

from __future__ import annotations

import datetime as dt

from django.urls import reverse

from tests.scheduling.factories import local
from tests.scheduling.pages_support import build_world


def test_booking_page_and_its_errors_in_spanish_then_english(personas, clinic, login_as):
    world = build_world(personas, clinic)
    client = login_as(personas.coordinator)
    url = reverse("scheduling:book")
    assert "Paciente por documento" in client.get(url).content.decode()
    client.post(reverse("set_language"), {"language": "en", "next": url})
    assert "Patient by document" in client.get(url).content.decode()
    day = clinic.tomorrow.isoformat()
    taken = local(clinic.tomorrow, "09:00").astimezone(dt.UTC).isoformat()
    response = client.post(
        url,
        {
            "step": "book",
            "patient": clinic.other_patient.pk,
            "visit_type": clinic.visit_type.pk,
            "practitioner": personas.practitioner.pk,
            "date_from": day,
            "date_until": day,
            "start": taken,
            "slot_practitioner": personas.practitioner.pk,
        },
    )
    assert response.status_code == 409
    assert "That time has just been taken. Please choose another." in response.content.decode()
    page = client.get(reverse("scheduling:appointment", args=[world.appointment.public_id])).content.decode()
    assert "Treating practitioner" in page and "Resend link" in page
