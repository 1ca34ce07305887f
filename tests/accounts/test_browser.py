"""Sign-in pages in Debian's Chromium: enrolment, patient sign-in, language, theme and text size, lockout.
Every page is checked with axe-core (WCAG 2.1 AA)."""

from __future__ import annotations

import base64
import re

import pytest
from django_otp.oath import TOTP

from accounts.models import Role
from audit.actions import AuditAction
from tests.accounts.helpers import events, fresh_code
from tests.browser_checks import assert_accessible
from tests.factories import DEMO_PASSWORD, PractitionerProfileFactory, StaffMembershipFactory

pytestmark = pytest.mark.browser


def _sign_in(page, email: str, password: str = DEMO_PASSWORD) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Correo electrónico").fill(email)
    page.get_by_label("Contraseña").fill(password)
    page.get_by_role("button", name="Ingresar").click()


def test_staff_first_sign_in_enrols_an_authenticator(page, personas):
    member = PractitionerProfileFactory(user__email="nueva.medica@example.test").user
    StaffMembershipFactory(user=member, establishment=personas.establishment)
    page.goto("/accounts/login/")
    assert_accessible(page, context="sign-in page")
    _sign_in(page, "nueva.medica@example.test")
    page.wait_for_url(re.compile(r"/accounts/otp/enrol/$"))
    assert page.locator(".qr svg").count() == 1
    assert_accessible(page, context="enrolment page")

    secret = page.locator("#totp-secret").inner_text().strip()
    code = TOTP(base64.b32decode(secret), 30, 0, 6, 0).token()
    field = page.get_by_label("Código de verificación")
    assert field.get_attribute("autocomplete") == "one-time-code"
    assert field.get_attribute("inputmode") == "numeric"
    field.fill(f"{code:06d}")
    page.get_by_role("button", name="Confirmar").click()

    page.wait_for_url(re.compile(r"/accounts/backup-codes/$"))
    assert page.locator(".backup-codes li").count() == 10
    assert_accessible(page, context="backup codes page")
    page.get_by_role("link", name="Ya los guardé, continuar").click()
    page.wait_for_url(re.compile(r"/$"))
    assert page.get_by_role("heading", name="Inicio").is_visible()
    for action in (AuditAction.OTP_ENROLLED, AuditAction.BACKUP_CODES_GENERATED, AuditAction.SIGNIN_SUCCEEDED):
        assert events(action, actor_user_id=member.pk), action


def test_staff_with_authenticator_passes_the_code_step(page, personas):
    _sign_in(page, "admin@example.test")
    page.wait_for_url(re.compile(r"/accounts/otp/$"))
    assert_accessible(page, context="code page")
    page.get_by_text("¿No tiene su teléfono? Use un código de respaldo").click()
    assert page.get_by_label("Código de respaldo").get_attribute("inputmode") == "text"
    assert_accessible(page, context="code page with backup form open")
    page.get_by_label("Código de verificación").fill(fresh_code(personas.admin))
    page.get_by_role("button", name="Verificar").click()
    page.wait_for_url(re.compile(r"/accounts/staff/$"))
    assert_accessible(page, context="staff list")
    page.get_by_role("link", name=personas.practitioner.full_name).click()
    page.wait_for_url(re.compile(r"/accounts/staff/\d+/$"))
    assert_accessible(page, context="staff detail")
    page.goto("/accounts/staff/new/")
    page.get_by_role("button", name="Registrar").click()  # browser validation, then server errors
    assert_accessible(page, context="staff create form")
    assert events(AuditAction.OTP_VERIFIED, actor_user_id=personas.admin.pk)


def test_patient_sign_in_language_theme_and_text_size(page, personas):
    _sign_in(page, "paciente@example.test")
    page.wait_for_url(re.compile(r"/$"))
    assert page.get_by_role("heading", name="Inicio").is_visible()
    assert_accessible(page, context="patient home")
    assert events(AuditAction.SIGNIN_SUCCEEDED, actor_user_id=personas.patient.pk)

    page.select_option("#language-select", "en")
    page.wait_for_function("document.documentElement.lang === 'en'")
    assert page.get_by_role("heading", name="Home").is_visible()
    assert page.get_by_role("button", name="Sign out").is_visible()

    page.select_option("#theme-select", "dark")
    page.select_option("#font-select", "xlarge")
    html = page.locator("html")
    assert html.get_attribute("data-theme") == "dark" and html.get_attribute("data-font") == "xlarge"
    page.goto("/accounts/security/")
    # Remembered across pages, rendered by the server the first time.
    assert html.get_attribute("data-theme") == "dark" and html.get_attribute("data-font") == "xlarge"
    assert page.get_by_role("heading", name="Account security", exact=True).is_visible()
    assert_accessible(page, context="security page, English, dark, extra-large text")
    page.select_option("#theme-select", "light")
    assert_accessible(page, context="security page, light")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/accounts/login/$"))
    assert page.get_by_text("You have signed out.").is_visible()
    assert events(AuditAction.SIGNOUT, actor_user_id=personas.patient.pk)


def test_lockout_message(page, personas, settings):
    for _ in range(settings.LOGIN_FAILURE_LIMIT_ACCOUNT - 1):
        _sign_in(page, "paciente@example.test", "wrong-password-1")
        assert page.get_by_role("alert").inner_text().strip() == "Correo o contraseña incorrectos."
    _sign_in(page, "paciente@example.test", "wrong-password-1")
    alert = page.get_by_role("alert")
    assert "Demasiados intentos fallidos" in alert.inner_text()
    assert_accessible(page, context="lockout message")
    _sign_in(page, "paciente@example.test")  # the right password does not help while locked
    assert "Demasiados intentos fallidos" in page.get_by_role("alert").inner_text()
    (lockout,) = events(AuditAction.SIGNIN_LOCKED_OUT)
    assert lockout.actor_user_id == personas.patient.pk
    assert personas.patient.role == Role.PATIENT
