"""The whole way in, in Debian's Chromium with fake devices on a real daphne process with the Redis layer: a
patient without an account opens the join link on a phone, verifies, gives both consents, runs the pre-call
check, enters the waiting room; the practitioner sees them on "my day", opens the room and admits them; both
sides decode each other's video and hear audio. No address the patient's browser visits carries the token."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.utils import timezone

from audit.actions import AuditAction
from audit.models import AuditEvent
from records.care import care_relationship_start
from records.models import CareSource, Encounter
from scheduling.models import Appointment, AppointmentStatus
from tests.browser_checks import assert_accessible
from tests.frontend.conftest import documents, register  # noqa: F401  (the consent texts fixture)
from tests.scheduling.test_joinlinks import issue, make_appointment
from tests.video.signalling_support import signed_in_cookie
from tests.video.test_call_browser import STATS, _page, _wait_for_media, daphne  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ANDROID_CHROME = "Mozilla/5.0 (Linux; Android 13; SM-A145M) AppleWebKit/537.36 Chrome/120 Mobile Safari/537.36"


def _phone(browser, base: str):
    context = browser.new_context(
        locale="es-PE",
        base_url=base,
        viewport={"width": 360, "height": 740},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        user_agent=ANDROID_CHROME,
    )
    context.grant_permissions(["camera", "microphone"], origin=base)
    page = context.new_page()
    page.set_default_timeout(25_000)
    return page


def walk_in_visit(personas) -> tuple[Appointment, str]:
    """A patient without an account, registered at the desk, with a visit starting now and its join link."""
    walk_in = register(personas)
    appointment = make_appointment(personas, walk_in, start=timezone.now())
    care_relationship_start(
        patient=walk_in,
        practitioner=personas.practitioner,
        source=CareSource.APPOINTMENT,
        source_id=str(appointment.public_id),
        valid_from=timezone.now() - dt.timedelta(hours=1),
        valid_until=appointment.end + dt.timedelta(days=1),
        created_by=None,
    )
    return appointment, issue(appointment)


def open_link_and_verify(page, token: str, public_id) -> None:
    """The join link opened on `page`, and the walk-in's date of birth and document digits given."""
    page.goto(f"/j/{token}")
    page.wait_for_url(f"**/visit/{public_id}/")
    page.get_by_label("Fecha de nacimiento del paciente").fill("1984-03-09")
    page.get_by_label("Últimos 4 dígitos de su documento (DNI, carné o pasaporte)").fill("7410")
    page.get_by_role("button", name="Continuar").click()


def test_link_consent_check_lobby_admit_call(browser, personas, documents, daphne):  # noqa: F811
    appointment, token = walk_in_visit(personas)
    public_id = appointment.public_id
    patient = _phone(browser, daphne)
    practitioner = _page(browser, daphne, signed_in_cookie(personas.practitioner))
    visited: list[str] = []
    patient.on("framenavigated", lambda frame: visited.append(frame.url))
    try:
        # The link → verification → consents → lobby.
        open_link_and_verify(patient, token, public_id)
        patient.get_by_role("link", name="Dar mis consentimientos").click()
        patient.wait_for_url("**/consents/")
        patient.get_by_label("He leído y acepto el consentimiento para telemedicina").check()
        patient.get_by_label("He leído y acepto el tratamiento de mis datos personales").check()
        patient.get_by_label("Nombre completo de quien firma").fill("Rosa Quispe")
        patient.get_by_role("button", name="Aceptar y continuar").click()
        patient.wait_for_url(f"**/visit/{public_id}/")

        # The pre-call check: devices, then the network test against the server's echo peer.
        patient.get_by_role("link", name="Probar mi cámara y conexión").click()
        patient.wait_for_url(f"**/visit/{public_id}/check/")
        patient.get_by_role("button", name="Probar cámara y micrófono").click()
        patient.wait_for_selector("[data-network-result]:not([hidden])", timeout=40_000)
        assert patient.locator("[data-precall]").get_attribute("data-recommendation-value") == "video"
        patient.get_by_role("link", name="Continuar a la sala de espera").click()
        patient.wait_for_url(f"**/visit/{public_id}/waiting/")
        patient.get_by_text("Esperando a que el profesional lo admita.").wait_for()

        # The practitioner's day list shows them waiting; the room admits them.
        practitioner.goto("/scheduling/my-day/")
        practitioner.locator(f'tr[data-appointment="{public_id}"] .room-waiting').wait_for(state="visible")
        practitioner.locator(f'tr[data-appointment="{public_id}"]').get_by_role("link", name="Abrir la sala").click()
        practitioner.wait_for_url(f"**/visit/{public_id}/room/")
        practitioner.get_by_role("button", name="Admitir", exact=True).click()

        patient.locator("[data-call-stage]").wait_for(state="visible")
        first = {name: _wait_for_media(page) for name, page in (("patient", patient), ("practitioner", practitioner))}
        for name, page in (("patient", patient), ("practitioner", practitioner)):
            later = _wait_for_media(page, frames_above=first[name]["framesDecoded"])
            assert later["framesDecoded"] > first[name]["framesDecoded"], name
        assert patient.evaluate(STATS)["modality"] == "video"
        assert_accessible(patient, context="patient's phone in the call")

        # The visit started the encounter and the appointment; the way in is in the trail.
        assert Appointment.objects.get(pk=appointment.pk).status == AppointmentStatus.IN_PROGRESS
        assert Encounter.objects.filter(appointment_ref=str(public_id)).count() == 1
        assert AuditEvent.objects.filter(action=AuditAction.VISIT_ADMITTED).count() == 1
        assert not any(token in url for url in visited[1:]), visited
        assert token not in patient.url

        practitioner.get_by_role("button", name="Terminar la teleconsulta").click()
        patient.get_by_text("La teleconsulta terminó. Gracias.").first.wait_for()
        deadline = time.monotonic() + 10
        while Appointment.objects.get(pk=appointment.pk).status != AppointmentStatus.COMPLETED:
            assert time.monotonic() < deadline, "the appointment was not completed"
            time.sleep(0.2)
    finally:
        patient.context.close()
        practitioner.context.close()
