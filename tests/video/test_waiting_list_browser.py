"""The practitioner's day list in Chromium marks, live, the appointment whose patient enters the video waiting
room, announces it, and clears the mark when the patient goes away; checked with axe-core while marked."""

from __future__ import annotations

import pytest
from django.utils import timezone

from tests.browser_checks import assert_accessible
from tests.video.signalling_support import make_visit, signed_in_cookie
from tests.video.test_call_browser import _page, daphne  # noqa: F401  (the forked daphne fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_my_day_marks_the_waiting_patient_live(browser, personas, daphne):  # noqa: F811
    # Starting now: the appointment is on today's list in every zone, and its window is open.
    visit = make_visit(personas, start=timezone.now())
    public_id = visit.appointment.public_id
    practitioner = _page(browser, daphne, signed_in_cookie(personas.practitioner))
    patient = _page(browser, daphne, signed_in_cookie(personas.patient))
    try:
        practitioner.goto("/scheduling/my-day/")
        status = practitioner.locator("#room-waiting-status")
        row = practitioner.locator(f'tr[data-appointment="{public_id}"]')
        badge = row.locator(".room-waiting")
        status.get_by_text("Nadie espera en la sala de video.").wait_for()
        assert badge.is_hidden()

        patient.goto(f"/visit/{public_id}/waiting/")
        patient.get_by_text("Esperando a que el profesional lo admita.").wait_for()
        badge.wait_for(state="visible")
        assert "En la sala de espera" in badge.inner_text()
        status.get_by_text("Un paciente espera en la sala de video.").wait_for()
        assert_accessible(practitioner, context="my day with a patient waiting")

        patient.close()
        badge.wait_for(state="hidden")
        status.get_by_text("Nadie espera en la sala de video.").wait_for()
    finally:
        practitioner.context.close()
        if not patient.is_closed():
            patient.context.close()
