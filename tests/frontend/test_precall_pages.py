"""The pre-call check's pages (VID-5): for one visit from its lobby (the lobby's gate, verification first), and
for anyone signed in; optional from the lobby and the home page; translated words for the script."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone

from audit.actions import AuditAction
from audit.models import AuditEvent
from tests.factories import UserFactory
from tests.frontend.conftest import register
from tests.frontend.test_join_link_pages import WHATSAPP_ANDROID, opened, verified, visit_url
from tests.scheduling.test_joinlinks import make_appointment


@pytest.fixture
def appointment(personas):
    return make_appointment(personas, register(personas))


def catalog(page) -> dict[str, str]:
    return json.loads(page.text.split('id="precall-catalog" type="application/json">', 1)[1].split("</script>", 1)[0])


def give_consents(client, appointment):
    form = client.get(visit_url(appointment, "consents/")).context["form"].initial
    response = client.post(
        visit_url(appointment, "consents/"),
        {**form, "accept_telemedicine": "on", "accept_data_processing": "on", "typed_name": "Rosa Quispe"},
    )
    assert response.status_code == 302


def test_verified_link_session_gets_the_check(client, appointment):
    verified(client, appointment)
    page = client.get(visit_url(appointment, "check/"))
    assert page.status_code == 200
    assert page["Referrer-Policy"] == "no-referrer" and "no-store" in page["Cache-Control"]
    assert page["Permissions-Policy"] == "camera=(self), microphone=(self)"
    assert "Probar cámara y micrófono" in page.text and 'data-offer-url="/visit/network-test/offer"' in page.text
    assert "csrfmiddlewaretoken" in page.text
    words = catalog(page)
    assert {"not_allowed", "not_found", "not_readable", "insecure", "recommend_video", "recommend_audio"} <= set(words)
    # Without the consents the way on is back to the lobby (which asks for them), not the waiting room.
    assert f'href="{visit_url(appointment)}" data-continue' in page.text
    assert "Continuar a la sala de espera" not in page.text
    assert AuditEvent.objects.filter(
        action=AuditAction.APPOINTMENT_VIEWED, object_id=appointment.pk, actor_role="link"
    ).exists()


def test_after_consent_the_check_leads_to_the_waiting_room(client, appointment, documents):
    verified(client, appointment)
    give_consents(client, appointment)
    lobby = client.get(visit_url(appointment))
    # Optional: the lobby's "enter" stays one tap; the check is a second, secondary button.
    assert "Entrar a la sala de espera" in lobby.text
    assert f'href="{visit_url(appointment, "check/")}"' in lobby.text
    page = client.get(visit_url(appointment, "check/"))
    assert page.status_code == 200 and "Continuar a la sala de espera" in page.text
    assert f'href="{visit_url(appointment, "waiting/")}" data-continue' in page.text


def test_unverified_link_session_verifies_first(client, appointment):
    opened(client, appointment)
    response = client.get(visit_url(appointment, "check/"))
    assert response.status_code == 302 and response["Location"] == visit_url(appointment)


@pytest.mark.parametrize("who", ["anonymous", "other_patient", "outsider", "coordinator", "practitioner_elsewhere"])
def test_others_are_denied_the_visit_check(client, personas, appointment, login_as, who):
    if who == "other_patient":
        user = UserFactory(role="patient")
        register(personas, given="Luz", surname="Mamani", dni="44556677", user=user)
        login_as(user)
    elif who == "practitioner_elsewhere":
        login_as(personas.outsider)
    elif who != "anonymous":
        login_as(getattr(personas, who))
    response = client.get(visit_url(appointment, "check/"))
    assert response.status_code in (404, 302)
    if response.status_code == 302:  # staff without a verified second factor: sent to it, nothing shown
        assert "/accounts/" in response["Location"]
    assert not AuditEvent.objects.filter(action=AuditAction.APPOINTMENT_VIEWED, object_id=appointment.pk).exists()


def test_another_visits_link_session_is_denied(client, personas, appointment):
    luz = register(personas, given="Luz", surname="Mamani", dni="44556677")
    other = make_appointment(personas, luz, start=timezone.now() - dt.timedelta(minutes=15))
    verified(client, other, digits="6677")
    assert client.get(visit_url(other, "check/")).status_code == 200
    assert client.get(visit_url(appointment, "check/")).status_code == 404


def test_signed_in_patient_check(client, personas, login_as):
    register(personas, user=personas.patient)
    login_as(personas.patient)
    home = client.get("/")
    assert 'href="/check/"' in home.text and "Probar mi cámara y conexión" in home.text
    page = client.get("/check/")
    assert page.status_code == 200 and "Volver al inicio" in page.text


def test_practitioner_with_second_factor_may_check(client, personas, login_as):
    login_as(personas.practitioner)
    assert client.get("/check/").status_code == 200


def test_anonymous_is_sent_to_sign_in(client, db):
    response = client.get("/check/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_only_get(client, appointment, personas, login_as):
    verified(client, appointment)
    assert client.post(visit_url(appointment, "check/")).status_code == 405


def test_in_app_browser_gets_the_hint(client, appointment):
    verified(client, appointment)
    page = client.get(visit_url(appointment, "check/"), HTTP_USER_AGENT=WHATSAPP_ANDROID)
    section = page.text.split("data-in-app-help", 1)[1].split(">", 1)[0]
    assert "hidden" not in section and "Abrir en Chrome" in page.text


def test_check_in_english(client, appointment):
    verified(client, appointment)
    page = client.get(visit_url(appointment, "check/"), HTTP_ACCEPT_LANGUAGE="en")
    assert "Test my camera and connection" in page.text
    words = catalog(page)
    assert words["recommend_audio_short"] == "Audio only" and words["rtt"] == "{ms} ms"
