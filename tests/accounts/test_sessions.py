"""Inactivity logoff (staff 15 min, patients longer) and the second-factor gate on every page (SEC-2)."""

from __future__ import annotations

from django.contrib.auth import SESSION_KEY
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.signin_state import LAST_ACTIVITY_KEY
from audit.actions import AuditAction
from tests.accounts.helpers import LOGIN, OTP, events

HOME = reverse("frontend:home")
SECURITY = reverse("accounts:security")


def _idle_for(client, seconds: int) -> None:
    session = client.session
    session[LAST_ACTIVITY_KEY] -= seconds
    session.save()


def test_staff_session_expires_after_idle_timeout(client, personas, login_as, settings):
    login_as(personas.coordinator)
    assert client.get(SECURITY).status_code == 200
    _idle_for(client, settings.STAFF_IDLE_TIMEOUT_SECONDS - 60)
    assert client.get(SECURITY).status_code == 200  # activity renews the session
    _idle_for(client, settings.STAFF_IDLE_TIMEOUT_SECONDS + 1)
    response = client.get(SECURITY)
    assert response.status_code == 302 and response.url == f"{LOGIN}?next=%2Faccounts%2Fsecurity%2F"
    assert SESSION_KEY not in client.session
    (event,) = events(AuditAction.SESSION_EXPIRED)
    assert event.actor_user_id == personas.coordinator.pk
    assert event.details["idle_seconds"] > settings.STAFF_IDLE_TIMEOUT_SECONDS
    assert "inactividad" in client.get(LOGIN).content.decode()


def test_patient_session_uses_the_patient_timeout(client, personas, login_as, settings):
    login_as(personas.patient)
    client.get(SECURITY)
    _idle_for(client, settings.STAFF_IDLE_TIMEOUT_SECONDS + 60)
    assert client.get(SECURITY).status_code == 200
    _idle_for(client, settings.PATIENT_IDLE_TIMEOUT_SECONDS + 1)
    assert client.get(SECURITY).status_code == 302
    assert events(AuditAction.SESSION_EXPIRED)[0].actor_user_id == personas.patient.pk


def test_expired_post_does_not_carry_next(client, personas, login_as, settings):
    login_as(personas.coordinator)
    client.get(SECURITY)
    _idle_for(client, settings.STAFF_IDLE_TIMEOUT_SECONDS + 1)
    response = client.post(reverse("accounts:logout"))
    assert response.url == LOGIN


def test_signed_in_staff_without_verified_second_factor_reach_only_sign_in_pages(client, personas):
    # E.g. an admin reset this person's authenticator while their session was open.
    client.force_login(personas.practitioner)
    response = client.get(HOME)
    assert response.status_code == 302 and response.url.startswith(OTP)
    assert client.get(reverse("accounts:staff_list")).url.startswith(OTP)
    assert client.get(OTP).status_code == 200
    TOTPDevice.objects.filter(user=personas.practitioner).delete()
    assert client.get(OTP).url.startswith(reverse("accounts:otp_enrol"))
    assert client.get(reverse("accounts:otp_enrol")).status_code == 200
