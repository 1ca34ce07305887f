"""The patient's pages on a phone-sized Chromium (360×740, touch): both visit consents by typed name, a drawn
signature with mouse and touch, revocation, who opened my record, a rights request and the JSON download after
re-authentication. Every page is checked with axe-core (WCAG 2.1 AA)."""

from __future__ import annotations

import base64
import json
import re

import pytest

from audit.actions import AuditAction
from audit.models import AuditEvent
from records.consent import MAX_SIGNATURE_BYTES, consent_states, may_start_visit
from records.models import ConsentDecision, DataRightsRequest
from tests.browser_checks import assert_accessible
from tests.factories import DEMO_PASSWORD

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
        user_agent="Mozilla/5.0 (Linux; Android 13; SM-A145M) AppleWebKit/537.36 Chrome/120 Mobile Safari/537.36",
    )
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    context.close()


def _sign_in(page, email: str = "paciente@example.test") -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Correo electrónico").fill(email)
    page.get_by_label("Contraseña").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Ingresar").click()
    page.wait_for_url(re.compile(r"/$"))


def _touch_stroke(page, points: list[tuple[float, float]]) -> None:
    """A finger stroke through Chrome's touch input (the page sees real touch and pointer events)."""
    cdp = page.context.new_cdp_session(page)
    x, y = points[0]
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
    for x, y in points[1:]:
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def test_visit_consents_by_typed_name_then_revoke(phone, personas, patient, documents):
    page = phone
    _sign_in(page)
    assert_accessible(page, context="patient home with its links")
    page.get_by_role("link", name="Mis consentimientos").click()
    page.wait_for_url("**/mine/consents/")
    assert_accessible(page, context="my consents, nothing given")

    page.get_by_role("link", name="Dar mis consentimientos para la teleconsulta").click()
    page.wait_for_url("**/mine/consents/visit/")
    assert_accessible(page, context="visit consents")
    page.get_by_text("Leer: Consentimiento informado para telemedicina").click()
    assert page.get_by_text("Acepto ser atendido por telemedicina.").is_visible()
    page.get_by_label("He leído y acepto el consentimiento para telemedicina").check()
    page.get_by_label("He leído y acepto el tratamiento de mis datos personales").check()
    page.get_by_label("Nombre completo de quien firma").fill("Rosa Quispe")
    page.get_by_role("button", name="Aceptar y continuar").click()
    page.wait_for_url("**/mine/consents/")
    assert page.get_by_text("Listo: ya otorgó los dos consentimientos").is_visible()
    assert may_start_visit(patient.pk).allowed
    grants = ConsentDecision.objects.filter(patient=patient)
    assert grants.count() == 2 and all("Android" in g.user_agent and g.source_address for g in grants)
    assert_accessible(page, context="my consents, visit consents given")

    page.get_by_role("link", name=re.compile(r"^Revocar\W+Atención por telemedicina$")).click()
    page.wait_for_url("**/mine/consents/telemedicine/revoke/")
    assert_accessible(page, context="revocation confirmation")
    page.get_by_label("Escriba su nombre completo para confirmar").fill("Rosa Quispe")
    page.get_by_role("button", name="Sí, revocar").click()
    page.wait_for_url("**/mine/consents/")
    assert page.get_by_text("Consentimiento revocado.").is_visible()
    assert consent_states(patient.pk, ("telemedicine",))["telemedicine"].reason == "revoked"
    assert not may_start_visit(patient.pk).allowed
    actions = list(
        AuditEvent.objects.filter(patient_id=patient.pk, action__startswith="records.consent.")
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == ["records.consent.granted", "records.consent.granted", "records.consent.revoked"]


def test_drawn_signature_with_mouse_and_touch(phone, personas, patient, documents):
    page = phone
    _sign_in(page)
    page.goto("/mine/consents/recording_video/")
    page.get_by_label("He leído y acepto").check()
    page.get_by_label("Dibujando mi firma").check()
    canvas = page.locator("#signature-canvas")
    assert canvas.is_visible() and not page.get_by_label("Nombre completo de quien firma").is_visible()
    assert_accessible(page, context="consent capture, drawn signature")

    # Sending without drawing is stopped in the page with a message.
    page.get_by_role("button", name="Otorgar mi consentimiento").click()
    assert page.get_by_text("Dibuje su firma antes de enviar.").is_visible()
    assert not ConsentDecision.objects.exists()

    box = canvas.bounding_box()
    left, top = box["x"] + 20, box["y"] + box["height"] / 2
    page.mouse.move(left, top)
    page.mouse.down()
    for step in range(1, 12):
        page.mouse.move(left + step * 20, top + (15 if step % 2 else -15))
    page.mouse.up()
    _touch_stroke(page, [(left + 10 * i, top + 30 - 4 * i) for i in range(15)])
    page.select_option("#theme-select", "dark")
    assert_accessible(page, context="consent capture, dark theme, signature drawn")
    page.get_by_role("button", name="Otorgar mi consentimiento").click()
    page.wait_for_url("**/mine/consents/")

    decision = ConsentDecision.objects.get(patient=patient)
    assert decision.method == "drawn_signature" and decision.kind == "recording_video"
    prefix = "data:image/png;base64,"
    assert decision.signature_png.startswith(prefix)
    png = base64.b64decode(decision.signature_png[len(prefix) :])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) < MAX_SIGNATURE_BYTES


def test_who_opened_my_record_a_request_and_the_json_download(phone, personas, patient, documents):
    page = phone
    _sign_in(page)
    page.get_by_role("link", name="Quién abrió mi historia").click()
    page.wait_for_url("**/mine/record-access/")
    assert page.get_by_text("lo registró como paciente").is_visible()
    assert_accessible(page, context="who opened my record")

    page.goto("/")
    page.get_by_role("link", name="Mis derechos sobre mis datos").click()
    page.wait_for_url("**/mine/requests/")
    assert_accessible(page, context="my data-protection requests")
    page.get_by_label("Acceso: saber qué datos suyos tenemos y recibir una copia.").check()
    page.get_by_label("Describa su solicitud").fill("Quiero saber quién tiene mis datos.")
    page.get_by_role("button", name="Enviar solicitud").click()
    page.wait_for_url("**/mine/requests/")
    assert page.get_by_text("Recibimos su solicitud.").is_visible()
    assert page.get_by_role("heading", name="Acceso", exact=True).is_visible()
    assert DataRightsRequest.objects.filter(patient=patient, kind="access").exists()
    assert_accessible(page, context="my requests with one filed")

    page.get_by_role("link", name="Descargar en JSON (para otros sistemas)").click()
    page.wait_for_url(re.compile(r"/accounts/reauth/"))
    assert_accessible(page, context="re-authentication before the export")
    page.get_by_label("Contraseña").fill(DEMO_PASSWORD)
    with page.expect_download() as info:
        page.get_by_role("button", name="Confirmar").click()
    download = info.value
    assert download.suggested_filename == "mis-datos-teleconsult.json"
    bundle = json.loads(download.path().read_text(encoding="utf-8"))
    assert bundle["patient"]["paternal_surname"] == "Quispe"
    assert AuditEvent.objects.filter(action=AuditAction.PATIENT_EXPORTED, patient_id=patient.pk).exists()
