"""Oversized and malformed input gives form errors or friendly pages, never a 500 or a leak (SEC-6)."""

from __future__ import annotations

import pytest
from django.template.loader import render_to_string
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from tests.accounts.helpers import LOGIN, OTP, post_password

ENROL = reverse("accounts:otp_enrol")


def test_ten_kilobyte_email_is_a_form_error(client, personas):
    response = post_password(client, "a" * 10_240 + "@example.test")
    assert response.status_code == 400
    assert "email" in response.context["form"].errors
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("email", ["not-an-email", "", "a@b@c", "\x00@example.test"])
def test_malformed_email_is_a_form_error(client, personas, email):
    assert post_password(client, email).status_code == 400


def test_huge_password_is_refused_before_hashing(client, personas):
    response = post_password(client, "paciente@example.test", "x" * 100_000)
    assert response.status_code == 400 and "password" in response.context["form"].errors


@pytest.mark.parametrize("token", ["abc!!!", "12345", "1234567", "١٢٣٤٥٦", "x" * 5000, "' OR 1=1 --"])
def test_malformed_codes_are_form_errors(client, personas, token):
    post_password(client, "medico@example.test")
    response = client.post(OTP, {"otp_token": token})
    assert response.status_code == 400
    assert "otp_token" in response.context["form"].errors


def test_malformed_enrolment_code_is_a_form_error(client, personas):
    from tests.factories import PractitionerProfileFactory

    PractitionerProfileFactory(user__email="nueva@example.test")
    post_password(client, "nueva@example.test")
    assert client.post(ENROL, {"otp_token": "abcdefgh"}).status_code == 400  # backup codes are not accepted here


def test_missing_csrf_token_gets_the_friendly_forbidden_page(personas):
    client = Client(enforce_csrf_checks=True)
    response = client.post(LOGIN, {"email": "paciente@example.test", "password": "x"})
    assert response.status_code == 403
    body = response.content.decode()
    assert "El formulario venció" in body and "CSRF" not in body and "paciente" not in body


def test_unknown_page_is_the_friendly_404_without_echoing_the_path(client, db):
    response = client.get("/no-existe/dni-12345678/")
    assert response.status_code == 404
    body = response.content.decode()
    assert "Página no encontrada" in body and "12345678" not in body


def test_server_error_page_renders_without_a_request():
    body = render_to_string("500.html")
    assert "Algo salió mal" in body and "Traceback" not in body


def test_forbidden_page_renders(rf):
    from django.views.defaults import permission_denied

    request = rf.get("/")
    from django.contrib.auth.models import AnonymousUser

    request.user = AnonymousUser()
    response = permission_denied(request, PermissionError("secret detail"))
    assert response.status_code == 403 and b"secret detail" not in response.content


def test_otp_page_without_a_sign_in_in_progress_goes_to_login(client, db):
    assert client.get(OTP).url.startswith(LOGIN)
    assert client.post(OTP, {"otp_token": "123456"}).url.startswith(LOGIN)
    assert client.get(ENROL).url.startswith(LOGIN)


def test_overlong_next_is_ignored(client, personas):
    response = post_password(client, "paciente@example.test", next="/" + "a" * 5000)
    assert response.url == reverse("frontend:home")
