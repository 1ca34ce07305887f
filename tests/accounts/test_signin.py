"""Signing in end to end with the Django test client: patients with a password, staff with TOTP (SEC-2)."""

from __future__ import annotations

import base64
import re

import pytest
from django.contrib.auth import SESSION_KEY
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Role, SignInThrottle
from accounts.signin_state import PENDING_AT_KEY, PENDING_USER_KEY
from audit.actions import AuditAction, Outcome
from audit.models import AuditEvent
from tests.accounts.helpers import ENROL, LOGIN, OTP, events, fresh_code, post_password
from tests.factories import PractitionerProfileFactory, StaffMembershipFactory, UserFactory

HOME = reverse("frontend:home")
GENERIC = "Correo o contraseña incorrectos."


def _signed_in_user_id(client):
    return client.session.get(SESSION_KEY)


def test_patient_signs_in_with_password_only(client, personas):
    client.get(LOGIN)
    anonymous_key = client.session.session_key
    response = post_password(client, "paciente@example.test")
    assert response.status_code == 302 and response.url == HOME
    assert int(_signed_in_user_id(client)) == personas.patient.pk
    assert client.session.session_key != anonymous_key  # session key cycled at sign-in
    assert client.get(HOME).status_code == 200
    (event,) = events(AuditAction.SIGNIN_SUCCEEDED)
    assert event.actor_user_id == personas.patient.pk and event.actor_role == Role.PATIENT
    assert event.outcome == Outcome.SUCCESS and event.details == {"second_factor": "none"}
    assert event.source_address == "127.0.0.1" and event.request_id


def test_email_is_case_and_space_insensitive(client, personas):
    response = post_password(client, "  Paciente@Example.TEST ")
    assert response.status_code == 302


def test_wrong_password_and_unknown_email_get_the_same_generic_message(client, personas):
    wrong = post_password(client, "paciente@example.test", "not-the-password-1")
    unknown = post_password(client, "nadie@example.test", "not-the-password-1")
    for response in (wrong, unknown):
        assert response.status_code == 200
        assert GENERIC in response.content.decode()
    assert _signed_in_user_id(client) is None
    failed = events(AuditAction.SIGNIN_FAILED)
    assert [e.actor_user_id for e in failed] == [personas.patient.pk, None]
    assert all(e.outcome == Outcome.FAILURE and e.details == {"reason": "bad_credentials"} for e in failed)
    # Nothing anywhere keeps the e-mail that was typed.
    for event in AuditEvent.objects.all():
        assert "nadie" not in str(event.details) and "nadie" not in event.object_id
    assert not SignInThrottle.objects.filter(key_hash__icontains="nadie").exists()


def test_inactive_account_gets_the_generic_message(client, personas):
    personas.patient.is_active = False
    personas.patient.save()
    response = post_password(client, "paciente@example.test")
    assert response.status_code == 200 and GENERIC in response.content.decode()
    (event,) = events(AuditAction.SIGNIN_FAILED)
    assert event.details == {"reason": "inactive_account"}


def test_staff_first_sign_in_enrols_totp_then_shows_backup_codes_once(client, personas):
    member = StaffMembershipFactory(
        user__email="nuevo@example.test", user__role=Role.COORDINATOR, establishment=personas.establishment
    ).user
    response = post_password(client, "nuevo@example.test")
    assert response.status_code == 302 and response.url == ENROL
    # Half-way: not signed in, so nothing else is reachable.
    assert _signed_in_user_id(client) is None
    assert client.get(HOME).url.startswith(LOGIN)

    page = client.get(ENROL)
    html = page.content.decode()
    assert page.status_code == 200 and "<svg" in html
    secret = re.search(r'id="totp-secret"[^>]*>([A-Z2-7]+)<', html).group(1)
    device = TOTPDevice.objects.get(user=member, confirmed=False)
    assert base64.b32decode(secret) == device.bin_key
    assert 'autocomplete="one-time-code"' in html and 'inputmode="numeric"' in html

    wrong = client.post(ENROL, {"otp_token": "000000" if device else ""})
    assert wrong.status_code == 200 and _signed_in_user_id(client) is None
    device.refresh_from_db()
    device.throttle_reset()
    code = f"{TOTP(base64.b32decode(secret), 30, 0, 6, 0).token():06d}"
    response = client.post(ENROL, {"otp_token": code})
    assert response.status_code == 302 and response.url == reverse("accounts:backup_codes")
    assert int(_signed_in_user_id(client)) == member.pk

    shown = client.get(reverse("accounts:backup_codes")).content.decode()
    codes = re.findall(r"<li><code>([a-z2-7]{8})</code></li>", shown)
    assert len(codes) == 10
    assert set(codes) == set(StaticToken.objects.filter(device__user=member).values_list("token", flat=True))
    again = client.get(reverse("accounts:backup_codes")).content.decode()
    assert not re.findall(r"<li><code>", again)  # shown once only

    assert client.get(HOME).status_code == 200
    assert TOTPDevice.objects.get(user=member).confirmed
    for action in (AuditAction.OTP_ENROLLED, AuditAction.BACKUP_CODES_GENERATED, AuditAction.SIGNIN_SUCCEEDED):
        (event,) = events(action)
        assert event.actor_user_id == member.pk and event.outcome == Outcome.SUCCESS
    (failure,) = events(AuditAction.OTP_FAILED)
    assert failure.details == {"reason": "wrong_code", "stage": "enrolment"}
    # The code itself is never in the trail.
    assert code not in str(list(AuditEvent.objects.values_list("details", flat=True)))


def test_staff_with_authenticator_must_pass_otp(client, personas):
    response = post_password(client, "medico@example.test")
    assert response.status_code == 302 and response.url == OTP
    assert _signed_in_user_id(client) is None
    assert client.get(reverse("accounts:staff_list")).status_code == 302

    wrong = client.post(OTP, {"otp_token": "123456"})
    assert wrong.status_code == 200
    assert "El código no es correcto" in wrong.content.decode()
    (failure,) = events(AuditAction.OTP_FAILED)
    assert failure.actor_user_id == personas.practitioner.pk and failure.outcome == Outcome.FAILURE

    response = client.post(OTP, {"otp_token": fresh_code(personas.practitioner)})
    assert response.status_code == 302 and response.url == HOME
    assert int(_signed_in_user_id(client)) == personas.practitioner.pk
    (verified,) = events(AuditAction.OTP_VERIFIED)
    assert verified.details == {"method": "totp"}
    (signin,) = events(AuditAction.SIGNIN_SUCCEEDED)
    assert signin.details == {"second_factor": "totp"} and signin.actor_role == Role.PRACTITIONER


def test_backup_code_signs_in_once(client, personas):
    device = StaticDevice.objects.create(user=personas.coordinator, name="backup", confirmed=True)
    device.token_set.create(token="abcdefgh")
    device.token_set.create(token="ijklmnop")
    post_password(client, "coordinacion@example.test")
    response = client.post(OTP, {"otp_token": "ABCD-EFGH", "kind": "backup"})
    assert response.status_code == 302
    (used,) = events(AuditAction.BACKUP_CODE_USED)
    assert used.details == {"remaining": 1}
    client.post(reverse("accounts:logout"))
    post_password(client, "coordinacion@example.test")
    reused = client.post(OTP, {"otp_token": "abcdefgh", "kind": "backup"})
    assert reused.status_code == 200 and _signed_in_user_id(client) is None


def test_half_way_sign_in_expires(client, personas):
    post_password(client, "medico@example.test")
    session = client.session
    session[PENDING_AT_KEY] -= 3600
    session.save()
    response = client.post(OTP, {"otp_token": fresh_code(personas.practitioner)})
    assert response.status_code == 302 and response.url.startswith(LOGIN)
    assert PENDING_USER_KEY not in client.session


def test_patient_with_optional_authenticator_is_asked_for_it(client, personas):
    TOTPDevice.objects.create(user=personas.patient, name="app", confirmed=True)
    response = post_password(client, "paciente@example.test")
    assert response.url == OTP
    response = client.post(OTP, {"otp_token": fresh_code(personas.patient)})
    assert response.url == HOME


def test_patient_can_enrol_from_the_security_page(client, personas):
    post_password(client, "paciente@example.test")
    assert "otp/enrol" in client.get(reverse("accounts:security")).content.decode()
    client.get(ENROL)
    device = TOTPDevice.objects.get(user=personas.patient)
    from tests.factories import current_totp_token

    response = client.post(ENROL, {"otp_token": current_totp_token(device)})
    assert response.url == reverse("accounts:backup_codes")
    assert TOTPDevice.objects.get(user=personas.patient).confirmed
    (event,) = events(AuditAction.OTP_ENROLLED)
    assert event.actor_user_id == personas.patient.pk


@pytest.mark.parametrize(
    ("next_url", "expected"),
    [
        ("/accounts/security/", "/accounts/security/"),
        ("https://evil.example/steal", HOME),
        ("//evil.example/", HOME),
        ("javascript:alert(1)", HOME),
    ],
)
def test_next_is_followed_only_when_it_stays_on_the_site(client, personas, next_url, expected):
    response = post_password(client, "paciente@example.test", next=next_url)
    assert response.url == expected


def test_next_survives_the_second_factor(client, personas):
    post_password(client, "admin@example.test", next="/accounts/security/")
    response = client.post(OTP, {"otp_token": fresh_code(personas.admin)})
    assert response.url == "/accounts/security/"


def test_sign_out_is_post_only_and_audited(client, personas, login_as):
    login_as(personas.patient)
    assert client.get(reverse("accounts:logout")).status_code == 405
    response = client.post(reverse("accounts:logout"))
    assert response.url == LOGIN
    assert _signed_in_user_id(client) is None
    (event,) = events(AuditAction.SIGNOUT)
    assert event.actor_user_id == personas.patient.pk


def test_signed_in_user_visiting_login_is_sent_on(client, personas, login_as):
    login_as(personas.patient)
    assert client.get(LOGIN).url == HOME


def test_staff_member_without_device_created_by_factory_is_sent_to_enrol(client, db):
    PractitionerProfileFactory(user__email="sin-dispositivo@example.test")
    UserFactory(email="otro@example.test")
    assert post_password(client, "sin-dispositivo@example.test").url == ENROL


def test_signing_in_as_someone_else_starts_a_fresh_session(client, personas):
    client.force_login(personas.coordinator)  # signed in, second factor not yet verified
    old_key = client.session.session_key
    post_password(client, "medico@example.test")
    assert _signed_in_user_id(client) is None
    assert client.session.session_key != old_key
    response = client.post(OTP, {"otp_token": fresh_code(personas.practitioner)})
    assert response.url == HOME and int(_signed_in_user_id(client)) == personas.practitioner.pk
