"""Re-authentication before sensitive actions: password plus second factor, safe redirect, audited (SEC-2)."""

from __future__ import annotations

import re

from django.urls import reverse

from accounts.access import REAUTH_SESSION_KEY
from audit.actions import AuditAction, Outcome
from tests.accounts.helpers import LOGIN, events, fresh_code
from tests.factories import DEMO_PASSWORD

REAUTH = reverse("accounts:reauth")
SECURITY = reverse("accounts:security")
BACKUP = reverse("accounts:backup_codes")


def test_staff_reauth_needs_password_and_code(client, personas, login_as):
    login_as(personas.practitioner)
    page = client.get(f"{REAUTH}?next={SECURITY}").content.decode()
    assert 'name="otp_token"' in page and 'autocomplete="current-password"' in page

    wrong = client.post(f"{REAUTH}?next={SECURITY}", {"password": "wrong-password-1", "otp_token": "123456"})
    assert wrong.status_code == 200 and REAUTH_SESSION_KEY not in client.session
    no_code = client.post(REAUTH, {"password": DEMO_PASSWORD, "next": SECURITY})
    assert no_code.status_code == 400

    response = client.post(
        REAUTH, {"password": DEMO_PASSWORD, "otp_token": fresh_code(personas.practitioner), "next": SECURITY}
    )
    assert response.status_code == 302 and response.url == SECURITY
    assert REAUTH_SESSION_KEY in client.session
    failed = events(AuditAction.REAUTH_FAILED)
    assert [e.details["reason"] for e in failed] == ["bad_credentials"]
    (ok,) = events(AuditAction.REAUTH_SUCCEEDED)
    assert ok.actor_user_id == personas.practitioner.pk and ok.details == {"method": "totp"}


def test_right_password_wrong_code_fails(client, personas, login_as):
    login_as(personas.auditor)
    response = client.post(REAUTH, {"password": DEMO_PASSWORD, "otp_token": "000000"})
    assert response.status_code == 200 and REAUTH_SESSION_KEY not in client.session
    assert events(AuditAction.REAUTH_FAILED)[0].details["reason"] == "wrong_code"


def test_patient_without_authenticator_reauths_with_password(client, personas, login_as):
    login_as(personas.patient)
    assert 'name="otp_token"' not in client.get(REAUTH).content.decode()
    response = client.post(REAUTH, {"password": DEMO_PASSWORD, "next": "https://evil.example/"})
    assert response.url == reverse("frontend:home")
    assert events(AuditAction.REAUTH_SUCCEEDED)[0].details == {"method": "password"}


def test_reauth_requires_sign_in(client, db):
    assert client.get(REAUTH).url.startswith(LOGIN)


def test_repeated_reauth_failures_lock_and_end_the_session(client, personas, login_as, settings):
    login_as(personas.patient)
    for _ in range(settings.LOGIN_FAILURE_LIMIT_ACCOUNT):
        response = client.post(REAUTH, {"password": "wrong-password-1"})
    assert response.status_code == 302 and response.url == LOGIN
    assert "_auth_user_id" not in client.session
    assert events(AuditAction.SIGNIN_LOCKED_OUT)[0].outcome == Outcome.DENIED


def test_regenerating_backup_codes_requires_recent_reauth(client, personas, login_as):
    login_as(personas.practitioner)
    response = client.post(BACKUP)
    assert response.url == f"{REAUTH}?next=%2Faccounts%2Fbackup-codes%2F"
    client.post(REAUTH, {"password": DEMO_PASSWORD, "otp_token": fresh_code(personas.practitioner)})
    assert client.post(BACKUP).url == BACKUP
    codes = re.findall(r"<li><code>([a-z2-7]{8})</code></li>", client.get(BACKUP).content.decode())
    assert len(codes) == 10
    (event,) = events(AuditAction.BACKUP_CODES_GENERATED)
    assert event.actor_user_id == personas.practitioner.pk and event.details == {"count": 10}
