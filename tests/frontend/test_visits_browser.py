"""My visits on a phone-sized Chromium (360×740, touch): the patient opens a visit's signed note, their
prescriptions, and downloads the signed PDF; a clinic admin creates a note template. Every page is checked with
axe-core (WCAG 2.1 AA)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings

from audit.models import AuditEvent
from records.encounters import encounter_finish
from records.models import NoteTemplate
from records.notes import note_create, note_save_draft
from records.signing import amendment_add, note_sign
from tests.browser_checks import assert_accessible
from tests.factories import DEMO_PASSWORD
from tests.records.encounter_support import complete_content, registered_patient, started_encounter, verified

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def phone(browser, live_server):
    context = browser.new_context(
        locale="es-PE",
        base_url=live_server.url,
        viewport={"width": 360, "height": 740},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        accept_downloads=True,
        user_agent="Mozilla/5.0 (Linux; Android 13; SM-A145M) AppleWebKit/537.36 Chrome/120 Mobile Safari/537.36",
    )
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    context.close()


@pytest.fixture
def signed_note(personas):
    patient = registered_patient(personas)
    practitioner = verified(personas.practitioner)
    encounter = started_encounter(personas, patient)
    encounter_finish(encounter=encounter, by=practitioner)
    note = note_create(encounter=encounter, author=practitioner)
    note = note_save_draft(note=note, content=complete_content(), by=practitioner, expected_version=note.version)
    note = note_sign(note=note, signer=practitioner, reauthenticated=True)
    amendment_add(
        note=note,
        author=practitioner,
        reason="Corrección de la cantidad",
        text="Son 10 tabletas.",
        reauthenticated=True,
    )
    return note


def test_patient_reads_a_signed_note_and_prescriptions_and_downloads_the_pdf(phone, personas, signed_note):
    page = phone
    page.goto("/accounts/login/")
    page.get_by_label("Correo electrónico").fill("paciente@example.test")
    page.get_by_label("Contraseña").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Ingresar").click()
    page.wait_for_url(re.compile(r"/$"))

    page.get_by_role("link", name="Mis visitas").click()
    page.wait_for_url("**/mine/visits/")
    profile = personas.practitioner.practitioner_profile
    assert page.get_by_text(f"Colegiatura: CMP {profile.registry_number}").is_visible()
    assert_accessible(page, context="my visits")

    page.get_by_role("link", name="Ver la nota de la visita").click()
    page.wait_for_url(f"**/mine/visits/notes/{signed_note.pk}/")
    assert page.get_by_role("heading", name="Motivo de la consulta").is_visible()
    assert page.get_by_text("Tomar después de las comidas.").is_visible()
    assert page.get_by_text("Son 10 tabletas.").is_visible()
    assert_accessible(page, context="a signed note with its amendment")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Descargar PDF").click()
    download = download_info.value
    assert download.suggested_filename.startswith("atencion-") and "Quispe" not in download.suggested_filename
    assert Path(download.path()).read_bytes().startswith(b"%PDF")
    assert AuditEvent.objects.filter(action="records.note.pdf_downloaded", actor_user_id=personas.patient.pk).exists()

    page.get_by_role("link", name="Volver a mis visitas").click()
    page.get_by_role("link", name="Mis recetas").click()
    page.wait_for_url("**/mine/prescriptions/")
    assert page.get_by_role("heading", name=re.compile("Paracetamol 500 mg")).is_visible()
    assert page.get_by_text("Tomar después de las comidas.").is_visible()
    assert_accessible(page, context="my prescriptions")


def test_clinic_admin_creates_a_note_template(phone, personas, login_as, live_server):
    page = phone
    client = login_as(personas.admin)  # a session with the second factor verified, reused in the browser
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])

    page.goto("/records/note-templates/")
    assert_accessible(page, context="note templates, none yet")
    page.get_by_role("link", name="Crear una plantilla").click()
    page.wait_for_url("**/records/note-templates/new/")
    assert_accessible(page, context="new note template")

    page.get_by_label("Nombre de la plantilla").fill("Control de niño sano")
    page.get_by_role("button", name="Guardar plantilla").click()  # no specialty yet
    assert page.get_by_text("Indique la especialidad.").is_visible()
    assert_accessible(page, context="note template form with an error")
    page.get_by_label("Especialidad").fill("Pediatría")
    page.get_by_label("Motivo de consulta").fill("Control de crecimiento y desarrollo.")
    page.get_by_role("button", name="Guardar plantilla").click()

    page.wait_for_url("**/records/note-templates/")
    assert page.get_by_text("Plantilla «Control de niño sano» creada.").is_visible()
    assert_accessible(page, context="note templates with one")
    template = NoteTemplate.objects.get()
    assert template.specialty == "Pediatría" and template.content["reason"] == "Control de crecimiento y desarrollo."
