"""The practitioner's encounter record in Debian's Chromium, each page checked with axe-core (WCAG 2.1 AA):
chart with its header → note editor → autosave survives a reload → a prescription matching an allergy raises
an alert → acknowledged with a reason → signed after re-entering the second factor → signed PDF downloaded.
And a draft typed in the editor survives a restart of the server process (a real daphne, killed outright)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django_otp.plugins.otp_totp.models import TOTPDevice

from records.medications import allergy_record
from records.models import ClinicalNote, NoteStatus, PrescriptionAlertAcknowledgement
from records.notes import note_content, note_create
from tests.browser_checks import assert_accessible
from tests.factories import DEMO_PASSWORD, current_totp_token
from tests.records.encounter_support import registered_patient, started_encounter, verified

pytestmark = pytest.mark.browser

SAVED = re.compile(r"Guardado \d\d:\d\d:\d\d")


def sign_in(page, login_as, user, url) -> None:
    """Reuse a session made by the test client (second factor verified) instead of typing codes."""
    client = login_as(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.clear_cookies()
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": url}])


def test_chart_note_alert_sign_and_pdf(page, personas, login_as, live_server):
    patient = registered_patient(personas)
    started_encounter(personas, patient)
    allergy_record(
        patient=patient, substance="Penicilina", severity="severe", recorded_by=verified(personas.practitioner)
    )
    sign_in(page, login_as, personas.practitioner, live_server.url)

    page.goto(f"/records/patients/{patient.pk}/chart/")
    header = page.get_by_role("region", name=re.compile("datos críticos"))
    assert header.get_by_text("Penicilina").is_visible()
    assert page.get_by_role("heading", name="Consentimientos").is_visible()
    assert_accessible(page, context="chart")

    page.get_by_role("button", name="Escribir la nota").click()
    page.wait_for_url(re.compile(r"/records/notes/\d+/$"))
    note = ClinicalNote.objects.get()
    assert page.get_by_role("region", name=re.compile("datos críticos")).get_by_text("Penicilina").is_visible()
    assert_accessible(page, context="note editor")

    # Typed, never explicitly saved: the autosave keeps it across a reload.
    page.get_by_label("Motivo de consulta").fill("Dolor de garganta y fiebre desde hace tres días.")
    page.get_by_text(SAVED).wait_for()
    page.reload()
    assert page.get_by_label("Motivo de consulta").input_value() == "Dolor de garganta y fiebre desde hace tres días."

    page.get_by_label("Relato de la enfermedad").fill("Odinofagia intensa, fiebre de 38.5 °C, sin tos.")
    page.get_by_label("Examen clínico", exact=True).fill("Orofaringe congestiva por video.")
    page.get_by_label("Código CIE-10 del diagnóstico 1").fill("J02.9")
    page.get_by_label("Plan de trabajo (exámenes, interconsultas, referencias)").fill("Control en 72 horas.")
    page.get_by_label("Medicamento (DCI)").fill("Amoxicilina")
    page.get_by_label("Concentración").fill("500 mg")
    page.get_by_label("Forma farmacéutica").fill("Cápsula")
    page.get_by_label("Dosis", exact=True).fill("1")
    page.get_by_label("Unidad de la dosis").fill("cápsula")
    page.get_by_label("Vía de administración").fill("Oral")
    page.get_by_label("Frecuencia", exact=True).fill("Cada 8 horas")
    page.get_by_label("Duración").fill("7 días")
    # The autosave answers with the alert at once; the page shows it before anything else is done.
    page.get_by_role("alert").filter(has_text="Alergia registrada a Penicilina").wait_for()
    assert note_content(ClinicalNote.objects.get())["prescriptions"][0]["drug"] == "Amoxicilina"

    page.get_by_role("button", name="Guardar borrador").click()
    page.get_by_text("Borrador guardado.").wait_for()
    assert page.get_by_role("heading", name="Alertas de la receta").is_visible()
    assert_accessible(page, context="note editor with an alert")
    page.get_by_label("Motivo para continuar pese a la alerta").fill("Tolerada en 2023 sin reacción; sin alternativa.")
    page.get_by_role("button", name="Confirmar la alerta").click()
    page.get_by_text("Alerta confirmada con su motivo.").wait_for()
    assert PrescriptionAlertAcknowledgement.objects.filter(note=note).count() == 1

    # Signing asks for the password and a code from the authenticator again.
    page.get_by_role("button", name="Guardar y firmar").click()
    page.wait_for_url(re.compile(r"/accounts/"))
    assert_accessible(page, context="re-authentication")
    page.get_by_label("Contraseña").fill(DEMO_PASSWORD)
    device = TOTPDevice.objects.get(user=personas.practitioner)
    page.get_by_label(re.compile("[Cc]ódigo")).fill(current_totp_token(device))
    page.get_by_role("button", name="Confirmar").click()
    page.wait_for_url(re.compile(rf"/records/notes/{note.pk}/sign/$"))
    assert_accessible(page, context="signing page")
    page.get_by_role("button", name="Firmar la nota").click()
    page.get_by_text("Nota firmada.").wait_for()
    assert ClinicalNote.objects.get().status == NoteStatus.SIGNED
    assert page.get_by_role("heading", name="Nota firmada: no se puede modificar").is_visible()
    assert page.locator("#note-form").count() == 0
    assert_accessible(page, context="signed note")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Descargar PDF firmado").click()
    download = download_info.value
    assert Path(download.path()).read_bytes().startswith(b"%PDF")
    assert download.suggested_filename.startswith(f"atencion-{note.pk}-")
    assert "Quispe" not in download.suggested_filename


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_daphne(port: int) -> subprocess.Popen[bytes]:
    """The real server on the test database, as a separate process that can be killed like a crash."""
    db = settings.DATABASES["default"]
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {**os.environ, "DATABASE_URL": url, "ACCESS_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "teleconsult.daphne_main",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "teleconsult.asgi:application",
        ],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    raise AssertionError("daphne did not start")


def test_draft_survives_a_server_restart(page, personas, login_as, live_server):
    patient = registered_patient(personas)
    encounter = started_encounter(personas, patient)
    note = note_create(encounter=encounter, author=personas.practitioner)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    sign_in(page, login_as, personas.practitioner, base)
    server = _start_daphne(port)
    try:
        page.goto(f"{base}/records/notes/{note.pk}/")
        page.get_by_label("Relato de la enfermedad").fill("Tos seca de dos semanas, peor de noche.")
        page.get_by_text(SAVED).wait_for()
        os.killpg(server.pid, signal.SIGKILL)  # a crash: no clean shutdown
        server.wait()
        server = _start_daphne(port)
        page.reload()
        assert page.get_by_label("Relato de la enfermedad").input_value() == "Tos seca de dos semanas, peor de noche."
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
