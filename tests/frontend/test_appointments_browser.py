"""The patient side of scheduling on a phone-sized Chromium (360×740, touch): booking by specialty → slot →
confirm, a patient without an account going from a join link to the waiting state, and the in-app browser help.
Every page is checked with axe-core (WCAG 2.1 AA), and no page's address carries the token."""

from __future__ import annotations

import re

import pytest

from records.consent import may_start_visit
from scheduling.models import Appointment, AppointmentStatus
from tests.browser_checks import assert_accessible
from tests.factories import DEMO_PASSWORD
from tests.frontend.conftest import register
from tests.frontend.test_join_link_pages import WHATSAPP_ANDROID
from tests.scheduling.factories import clinic  # noqa: F401
from tests.scheduling.test_joinlinks import issue, make_appointment

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ANDROID_CHROME = "Mozilla/5.0 (Linux; Android 13; SM-A145M) AppleWebKit/537.36 Chrome/120 Mobile Safari/537.36"


def _phone(browser, live_server, agent=ANDROID_CHROME):
    context = browser.new_context(
        locale="es-PE",
        base_url=live_server.url,
        viewport={"width": 360, "height": 740},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        user_agent=agent,
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    return context, opened


@pytest.fixture
def phone(browser, live_server):
    context, opened = _phone(browser, live_server)
    yield opened
    context.close()


@pytest.fixture
def in_app_phone(browser, live_server):
    context, opened = _phone(browser, live_server, WHATSAPP_ANDROID)
    yield opened
    context.close()


def test_patient_books_and_sees_it_in_my_appointments(phone, personas, clinic):  # noqa: F811
    page = phone
    page.goto("/accounts/login/")
    page.get_by_label("Correo electrónico").fill("paciente@example.test")
    page.get_by_label("Contraseña").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Ingresar").click()
    page.wait_for_url(re.compile(r"/$"))

    page.goto("/mine/appointments/")
    assert page.get_by_text("No tiene citas próximas.").is_visible()
    assert_accessible(page, context="my appointments, none yet")
    page.get_by_role("link", name="Pedir una cita").click()
    page.wait_for_url("**/mine/appointments/book/")
    assert_accessible(page, context="booking: specialty")
    page.get_by_role("link", name="Medicina general").click()
    page.wait_for_url(re.compile(r"/mine/appointments/book/slots/\?specialty="))
    assert_accessible(page, context="booking: slots")
    first = page.locator(".slot-list button").first
    assert first.bounding_box()["height"] >= 48
    first.click()
    page.wait_for_url(re.compile(r"/mine/appointments/[0-9a-f-]{36}/confirm/$"))
    assert page.get_by_text("Tiempo restante:").is_visible()
    assert re.match(r"^\d+:\d\d$", page.locator("[data-remaining]").inner_text())
    assert_accessible(page, context="booking: confirm within the hold")
    page.get_by_role("button", name="Confirmar la cita").click()
    page.wait_for_url("**/mine/appointments/")
    assert page.get_by_text("Listo: su cita quedó confirmada.").is_visible()
    assert page.get_by_role("heading", name="Consulta de medicina general").is_visible()
    assert_accessible(page, context="my appointments, one booked")
    assert Appointment.objects.get(patient=clinic.patient).status == AppointmentStatus.BOOKED


def test_walk_in_patient_from_link_to_waiting(phone, personas, documents):
    page = phone
    walk_in = register(personas)
    appointment = make_appointment(personas, walk_in)
    token = issue(appointment)
    visited = []
    page.on("framenavigated", lambda frame: visited.append(frame.url))

    page.goto(f"/j/{token}")  # tap 0: the link in the message
    page.wait_for_url(f"**/visit/{appointment.public_id}/")
    assert page.get_by_role("heading", name="Confirme que es usted").is_visible()
    assert_accessible(page, context="join link: verification")
    page.get_by_label("Fecha de nacimiento del paciente").fill("1984-03-09")
    page.get_by_label("Últimos 4 dígitos de su documento (DNI, carné o pasaporte)").fill("7410")
    page.get_by_role("button", name="Continuar").click()
    page.wait_for_url(f"**/visit/{appointment.public_id}/")
    assert page.get_by_text("Falta su consentimiento").is_visible()
    assert_accessible(page, context="lobby before consent")

    page.get_by_role("link", name="Dar mis consentimientos").click()
    page.wait_for_url("**/consents/")
    assert_accessible(page, context="lobby consents")
    page.get_by_label("He leído y acepto el consentimiento para telemedicina").check()
    page.get_by_label("He leído y acepto el tratamiento de mis datos personales").check()
    page.get_by_label("Nombre completo de quien firma").fill("Rosa Quispe")
    page.get_by_role("button", name="Aceptar y continuar").click()
    page.wait_for_url(f"**/visit/{appointment.public_id}/")
    assert may_start_visit(walk_in.pk).allowed
    assert_accessible(page, context="lobby after consent")

    # After consent: one tap to the waiting state (UX-2 allows three).
    page.get_by_role("link", name="Entrar a la sala de espera").click()
    page.wait_for_url("**/waiting/")
    assert page.get_by_role("heading", name="Esperando a que el profesional inicie la teleconsulta").is_visible()
    assert_accessible(page, context="waiting state")
    assert visited and not any(token in url for url in visited[1:])
    assert token not in page.url


def test_in_app_browser_sees_how_to_open_the_phone_browser(in_app_phone, personas):
    page = in_app_phone
    appointment = make_appointment(personas, register(personas))
    token = issue(appointment)
    page.goto(f"/j/{token}")
    page.wait_for_url(f"**/visit/{appointment.public_id}/")
    help_box = page.locator("[data-in-app-help]")
    assert help_box.is_visible()
    assert page.get_by_text("elija «Abrir en Chrome»").is_visible()
    assert not page.get_by_text("elija «Abrir en Safari»").is_visible()
    assert_accessible(page, context="in-app browser help")
    page.get_by_role("button", name="Copiar enlace").click()
    page.get_by_text("Enlace copiado.").wait_for()
    assert page.evaluate("navigator.clipboard.readText()").endswith(f"/j/{token}")
