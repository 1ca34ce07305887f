"""My account: password change (audited, other sessions end), second-factor overview."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse

from audit.actions import AuditAction, Outcome
from tests.accounts.helpers import events
from tests.factories import DEMO_PASSWORD

SECURITY = reverse("accounts:security")
NEW = "otra-clave-segura-2026"


def test_password_change_keeps_this_session_and_ends_others(client, personas, login_as):
    other = Client()
    other.force_login(personas.patient)
    login_as(personas.patient)
    response = client.post(
        SECURITY, {"current_password": DEMO_PASSWORD, "new_password": NEW, "new_password_again": NEW}
    )
    assert response.status_code == 302
    personas.patient.refresh_from_db()
    assert personas.patient.check_password(NEW)
    assert client.get(SECURITY).status_code == 200
    assert other.get(SECURITY).status_code == 302
    (event,) = events(AuditAction.PASSWORD_CHANGED)
    assert event.actor_user_id == personas.patient.pk and event.outcome == Outcome.SUCCESS


def test_password_change_errors(client, personas, login_as):
    login_as(personas.patient)
    cases = [
        ({"current_password": "wrong-password-1", "new_password": NEW, "new_password_again": NEW}, "current_password"),
        (
            {"current_password": DEMO_PASSWORD, "new_password": NEW, "new_password_again": NEW + "x"},
            "new_password_again",
        ),
        (
            {"current_password": DEMO_PASSWORD, "new_password": "1234567890", "new_password_again": "1234567890"},
            "new_password",
        ),
    ]
    for data, field in cases:
        response = client.post(SECURITY, data)
        assert response.status_code == 400 and field in response.context["form"].errors
    personas.patient.refresh_from_db()
    assert personas.patient.check_password(DEMO_PASSWORD)
    (refused,) = events(AuditAction.PASSWORD_CHANGED)
    assert refused.outcome == Outcome.FAILURE and refused.details == {"reason": "bad_credentials"}


def test_security_page_shows_second_factor_state(client, personas, login_as):
    login_as(personas.practitioner)
    page = client.get(SECURITY).content.decode()
    assert "otp/enrol" not in page and reverse("accounts:backup_codes") in page
    login_as(personas.patient)
    assert reverse("accounts:otp_enrol") in client.get(SECURITY).content.decode()
