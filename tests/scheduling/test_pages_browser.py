"""The staff scheduling pages in Debian's Chromium, each checked with axe-core (WCAG 2.1 AA): a coordinator
books an appointment through the form and finds it in the calendar; a practitioner adds a weekly session."""

from __future__ import annotations

import re

import pytest
from django.conf import settings

from scheduling.models import Appointment, AppointmentStatus, AvailabilityRule
from tests.browser_checks import assert_accessible
from tests.scheduling.pages_support import build_world

pytestmark = pytest.mark.browser


@pytest.fixture
def world(personas, clinic):
    return build_world(personas, clinic)


def sign_in(page, login_as, user, live_server) -> None:
    """Reuse a session made by the test client (second factor verified) instead of typing codes."""
    client = login_as(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.clear_cookies()
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])


def test_coordinator_books_through_the_form_and_sees_it_in_the_calendar(page, world, login_as, live_server):
    sign_in(page, login_as, world.personas.coordinator, live_server)
    page.goto("/scheduling/today/")
    assert page.get_by_role("heading", name="Citas de hoy").is_visible()
    assert_accessible(page, context="today overview")

    page.goto("/scheduling/book/")
    assert_accessible(page, context="booking: patient search")
    page.get_by_label("Apellidos y nombres (el comienzo)").fill("Mamani")
    page.get_by_role("button", name="Buscar por nombre").click()
    page.get_by_role("heading", name="Resultados").wait_for()
    assert "Mamani" not in page.url
    assert_accessible(page, context="booking: search results")
    page.get_by_role("button", name="Elegir a Luis Mamani").click()
    page.get_by_role("heading", name="Tipo de cita y fechas").wait_for()
    page.get_by_label("Tipo de cita", exact=True).select_option(str(world.clinic.visit_type.pk))
    page.get_by_label("Desde", exact=True).fill(world.clinic.tomorrow.isoformat())
    page.get_by_label("Hasta", exact=True).fill(world.clinic.tomorrow.isoformat())
    page.get_by_role("button", name="Buscar horarios").click()
    page.get_by_role("heading", name="Horarios libres").wait_for()
    assert_accessible(page, context="booking: slot picker")
    page.get_by_role("button", name=re.compile(r"10:00–10:30")).click()
    page.wait_for_url(re.compile(r"/scheduling/appointments/[0-9a-f-]{36}/$"))
    assert page.get_by_text("Cita reservada.").is_visible()
    assert_accessible(page, context="appointment page")
    booked = Appointment.objects.get(patient=world.clinic.other_patient)
    assert booked.status == AppointmentStatus.BOOKED

    page.goto(f"/scheduling/calendar/?view=week&date={world.clinic.tomorrow.isoformat()}")
    assert page.get_by_role("link", name=re.compile(r"10:00–10:30 · Mamani, Luis")).is_visible()
    assert page.get_by_role("link", name=re.compile(r"09:00–09:30 · Quispe, Rosa")).is_visible()
    assert_accessible(page, context="week calendar")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.goto(f"/scheduling/calendar/?date={world.clinic.tomorrow.isoformat()}")
    page.select_option("#theme-select", "dark")
    assert_accessible(page, context="day calendar, phone, dark theme")


def test_practitioner_adds_a_weekly_session(page, world, login_as, live_server):
    sign_in(page, login_as, world.personas.practitioner, live_server)
    page.set_viewport_size({"width": 820, "height": 1180})  # a tablet
    page.goto(f"/scheduling/my-day/?date={world.clinic.tomorrow.isoformat()}")
    assert page.get_by_role("link", name="Abrir historia").is_visible()
    assert_accessible(page, context="my day")

    page.goto("/scheduling/availability/")
    assert_accessible(page, context="availability editor")
    form = page.locator("form", has=page.get_by_role("button", name="Agregar horario"))
    form.get_by_label("Día de la semana").select_option("0")
    form.get_by_label("Desde (hora)").fill("15:00")
    form.get_by_label("Hasta (hora)").fill("14:00")
    form.get_by_label("Consulta de medicina general").check()
    form.get_by_role("button", name="Agregar horario").click()
    assert page.get_by_text("La hora de fin debe ser posterior a la de inicio.").first.is_visible()
    assert_accessible(page, context="availability editor with errors")
    form = page.locator("form", has=page.get_by_role("button", name="Agregar horario"))
    form.get_by_label("Hasta (hora)").fill("18:00")
    form.get_by_label("Consulta de medicina general").check()
    form.get_by_role("button", name="Agregar horario").click()
    page.get_by_text("Horario semanal agregado.").wait_for()
    assert page.get_by_role("cell", name="15:00–18:00").is_visible()
    assert AvailabilityRule.objects.filter(practitioner=world.personas.practitioner, start_time="15:00").exists()

    sign_in(page, login_as, world.personas.admin, live_server)
    page.goto("/scheduling/visit-types/")
    assert_accessible(page, context="visit types")
