"""The staff pages of records in Debian's Chromium, end to end, each page checked with axe-core (WCAG 2.1 AA):
register a patient, search by DNI, open the profile, record a verbal consent, break the glass, publish a
consent version, and work the data-protection queue."""

from __future__ import annotations

import re

import pytest
from django.conf import settings

from audit.models import AuditEvent
from records.models import ConsentDecision, ConsentDocument, DataRightsRequest, LegalHold, Patient
from tests.browser_checks import assert_accessible
from tests.records.pages_support import build_world

pytestmark = pytest.mark.browser


@pytest.fixture
def world(personas):
    return build_world(personas)


def sign_in(page, login_as, user, live_server) -> None:
    """Reuse a session made by the test client (second factor verified) instead of typing codes."""
    client = login_as(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.clear_cookies()
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])


def test_coordinator_registers_searches_and_opens_the_profile(page, world, login_as, live_server):
    sign_in(page, login_as, world.personas.coordinator, live_server)
    page.goto("/records/patients/new/")
    assert_accessible(page, context="registration form")
    page.get_by_label("Número de documento").fill("45451232-1")  # wrong check character
    page.get_by_label("Nombres", exact=True).fill("Juan Carlos")
    page.get_by_label("Apellido paterno").fill("Mamani")
    page.get_by_label("Apellido materno").fill("Choque")
    page.get_by_label("Sexo").select_option("male")
    page.get_by_label("Fecha de nacimiento").fill("1990-05-17")
    page.get_by_label("Teléfono", exact=True).fill("+51 912 345 678")
    page.get_by_label("Seguro", exact=True).select_option("sis")
    page.get_by_label("Número de historia clínica").fill("HC-0777")
    page.get_by_role("button", name="Registrar paciente").click()
    assert page.get_by_text("El carácter de verificación del DNI no corresponde.").is_visible()
    assert_accessible(page, context="registration form with errors")
    assert not Patient.objects.filter(search_name__startswith="MAMANI").exists()
    page.get_by_label("Número de documento").fill("45451232")
    page.get_by_role("button", name="Registrar paciente").click()
    page.wait_for_url(re.compile(r"/records/patients/\d+/$"))
    assert page.get_by_role("heading", name="Juan Carlos Mamani Choque").is_visible()
    assert page.get_by_text("HC-0777").is_visible()
    assert_accessible(page, context="patient profile")

    page.goto("/records/patients/search/")
    assert_accessible(page, context="search page")
    page.get_by_label("Número de documento").fill("45451232")
    page.get_by_role("button", name="Buscar por documento").click()
    page.get_by_role("heading", name="Resultados").wait_for()
    assert "45451232" not in page.url
    assert_accessible(page, context="search results")
    page.get_by_role("link", name="Ver ficha").click()
    page.wait_for_url(re.compile(r"/records/patients/\d+/$"))
    assert page.get_by_role("heading", name="Consentimientos").is_visible()
    page.select_option("#theme-select", "dark")
    assert_accessible(page, context="patient profile, dark theme")
    assert AuditEvent.objects.filter(action="records.patient.searched").exists()


def test_practitioner_records_verbal_consent_and_an_outsider_breaks_the_glass(page, world, login_as, live_server):
    sign_in(page, login_as, world.personas.practitioner, live_server)
    page.set_viewport_size({"width": 820, "height": 1180})  # a tablet
    page.goto(f"/records/patients/{world.patient.pk}/chart/")
    assert page.get_by_role("heading", name="Historia clínica de Rosa Quispe").is_visible()
    assert_accessible(page, context="chart header")
    page.goto(f"/records/patients/{world.patient.pk}/")
    page.get_by_role("link", name=re.compile("Registrar consentimiento verbal: Consentimiento informado")).click()
    assert_accessible(page, context="verbal consent form")
    page.get_by_label("Otorga").check()
    page.get_by_label("Nombre completo del testigo").fill("Carmen Rojas Díaz")
    page.get_by_role("button", name="Registrar decisión").click()
    page.wait_for_url(re.compile(rf"/records/patients/{world.patient.pk}/$"))
    assert page.get_by_text("Consentimiento verbal registrado.").is_visible()
    assert ConsentDecision.objects.filter(patient=world.patient, method="verbal_witnessed").count() == 1

    sign_in(page, login_as, world.personas.outsider, live_server)
    page.goto("/records/patients/search/")
    page.get_by_label("Número de documento").fill("10117410")
    page.get_by_role("button", name="Buscar por documento").click()
    page.get_by_role("link", name="Acceso de emergencia").click()
    assert_accessible(page, context="break-the-glass form")
    page.get_by_label("Motivo de la emergencia").fill("Paciente inconsciente traído a emergencia")
    page.get_by_role("button", name="Abrir por emergencia").click()
    page.wait_for_url(re.compile(r"/chart/$"))
    assert page.locator(".emergency-banner").is_visible()
    assert_accessible(page, context="chart opened by break-the-glass")


def test_admin_publishes_a_consent_version(page, world, login_as, live_server):
    sign_in(page, login_as, world.personas.admin, live_server)
    page.goto("/records/consent-documents/")
    assert_accessible(page, context="consent documents")
    page.get_by_role("link", name="Publicar una nueva versión").click()
    assert_accessible(page, context="publish form")
    page.get_by_label("Tipo de consentimiento").select_option("sharing")
    page.get_by_label("Título en español").fill("Compartir mi historia")
    page.get_by_label("Texto en español").fill("Acepto compartir mi historia con la red nacional.")
    page.get_by_label("Título en inglés").fill("Sharing my record")
    page.get_by_label("Texto en inglés").fill("I agree to share my record with the national network.")
    page.get_by_role("button", name="Publicar").click()
    page.wait_for_url(re.compile(r"/records/consent-documents/kind/sharing/$"))
    assert page.get_by_text("Versión 2 publicada").is_visible()
    assert_accessible(page, context="versions of a kind")
    page.get_by_role(
        "link", name="Consentimiento Compartir con otros establecimientos y el registro nacional de HCE"
    ).click()
    assert page.get_by_text("reemplazada").is_visible()
    assert_accessible(page, context="an old version")
    assert ConsentDocument.objects.filter(kind="sharing", version=2).count() == 2


def test_admin_works_the_data_protection_queue(page, world, login_as, live_server):
    sign_in(page, login_as, world.personas.admin, live_server)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.goto("/records/rights/")
    assert_accessible(page, context="rights queue")
    page.get_by_role("link", name=str(world.rights_request.pk), exact=True).click()
    assert_accessible(page, context="rights request")
    page.get_by_label("Motivo de la prórroga").fill("Se revisan documentos del archivo central")
    page.get_by_role("button", name="Prorrogar").click()
    assert page.get_by_text("Plazo prorrogado una vez.").is_visible()
    page.get_by_role("link", name="Rectificar los datos personales").click()
    assert_accessible(page, context="rectification form")
    page.get_by_label("Apellido materno").fill("Huaman")
    page.get_by_role("button", name="Guardar rectificación").click()
    assert page.get_by_text("Datos rectificados").is_visible()
    page.get_by_label("Nuevo estado").select_option("completed")
    page.get_by_label("Respuesta al paciente").fill("Corregimos su apellido materno como pidió.")
    page.get_by_role("button", name="Guardar respuesta").click()
    assert page.get_by_text("Solicitud actualizada.").is_visible()
    assert DataRightsRequest.objects.get(pk=world.rights_request.pk).status == "completed"
    page.get_by_role("link", name="Retenciones legales de este paciente").click()
    page.get_by_label("Motivo de la retención legal").fill("Proceso judicial 123-2026")
    page.get_by_role("button", name="Registrar retención").click()
    assert page.get_by_role("button", name="Levantar retención").is_visible()
    assert_accessible(page, context="legal holds")
    assert LegalHold.objects.filter(patient=world.patient, released_at__isnull=True).count() == 1
