"""Signing in and out: password, second factor (TOTP or backup code), enrolment, backup codes, re-authentication."""

from __future__ import annotations

import base64
from urllib.parse import urlencode

import segno
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST
from django_otp import login as otp_login

from accounts import selectors, services, signin_state
from accounts.access import mark_reauthenticated, reauthenticated_recently, request_user
from accounts.forms import BackupCodeForm, EnrolForm, OtpForm, ReauthForm, SignInForm
from accounts.models import User
from accounts.services.signin import Status, device_kind
from accounts.views._common import LOCKED_OUT, client_address, end_locked, requested_next, safe_next

# One message for every failure: it must not tell a wrong password from an unknown e-mail.
SIGNIN_FAILED = _("Correo o contraseña incorrectos.")
WRONG_CODE = _("El código no es correcto o ya venció. Inténtelo de nuevo.")


def _with_next(url: str, next_url: str | None) -> str:
    return f"{url}?{urlencode({'next': next_url})}" if next_url else url


def _second_factor_subject(request: HttpRequest) -> tuple[User | None, bool]:
    """Whose second factor is being checked: the half-signed-in user (pending=True), or a signed-in user who
    has not verified one in this session (e.g. their authenticator was reset by an admin)."""
    pending = signin_state.pending_user(request)
    if pending is not None:
        return pending, True
    if request.user.is_authenticated:
        return request.user, False
    return None, False


@never_cache
@sensitive_post_parameters("password")
@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    next_url = requested_next(request)
    user = request.user
    if user.is_authenticated and (not user.is_staff_member or user.is_verified()):
        return redirect(safe_next(request, next_url))
    form = SignInForm(request.POST if request.method == "POST" else None)
    status = 200
    if form.is_valid():
        result = services.signin_check_password(
            email=form.cleaned_data["email"], password=form.cleaned_data["password"], address=client_address(request)
        )
        if result.ok:
            assert result.user is not None  # an OK result always carries the user
            return _after_password(request, result.user, next_url)
        form.add_error(None, LOCKED_OUT if result.status == Status.LOCKED else SIGNIN_FAILED)
        status = 429 if result.status == Status.LOCKED else 200
    elif form.is_bound:
        status = 400
    return render(request, "accounts/login.html", {"form": form, "next": next_url or ""}, status=status)


def _after_password(request: HttpRequest, user: User, next_url: str | None) -> HttpResponse:
    has_authenticator = selectors.has_confirmed_authenticator(user)
    if not user.is_staff_member and not has_authenticator:
        signin_state.complete_signin(request, user, None)
        services.signin_record_success(user=user, second_factor="none")
        return redirect(safe_next(request, next_url))
    signin_state.begin_pending(request, user, safe_next(request, next_url) if next_url else None)
    return redirect("accounts:otp" if has_authenticator else "accounts:otp_enrol")


@never_cache
@require_http_methods(["GET", "POST"])
def otp_view(request: HttpRequest) -> HttpResponse:
    subject, pending = _second_factor_subject(request)
    next_url = requested_next(request)
    if subject is None:
        return redirect(_with_next(reverse("accounts:login"), next_url))
    if not pending and subject.is_verified():
        return redirect(safe_next(request, next_url))
    if not selectors.has_confirmed_authenticator(subject):
        return redirect(_with_next(reverse("accounts:otp_enrol"), next_url))
    bound = request.POST if request.method == "POST" else None
    # Two forms post the same `otp_token`: one with a numeric keyboard, one (folded) for backup codes.
    use_backup = request.POST.get("kind") == "backup"
    form = OtpForm(None if use_backup else bound)
    backup_form = BackupCodeForm(bound if use_backup else None)
    active = backup_form if use_backup else form
    status = 200
    if active.is_valid():
        result = services.otp_check(
            user=subject, token=active.cleaned_data["otp_token"], address=client_address(request)
        )
        if result.ok:
            destination = safe_next(request, next_url, signin_state.pending_next(request))
            if pending:
                signin_state.complete_signin(request, subject, result.device)
            else:
                otp_login(request, result.device)
            services.signin_record_success(user=subject, second_factor=device_kind(result.device))
            if device_kind(result.device) == "backup_code":
                remaining = selectors.backup_codes_remaining(subject)
                messages.warning(
                    request,
                    _("Usó un código de respaldo; le quedan %(count)s. Puede generar nuevos en Seguridad de la cuenta.")
                    % {"count": remaining},
                )
            return redirect(destination)
        if result.status == Status.LOCKED:
            return end_locked(request)
        active.add_error("otp_token", WRONG_CODE)
    elif active.is_bound:
        status = 400
    context = {"form": form, "backup_form": backup_form, "use_backup": use_backup, "next": next_url or ""}
    return render(request, "accounts/otp.html", context, status=status)


def _qr_svg(config_url: str) -> str:
    # Inline SVG (no image request, works offline); dark modules on white even in dark mode for scanners.
    return segno.make(config_url, error="m").svg_inline(
        scale=5, border=2, dark="#000000", light="#ffffff", title=str(_("Código QR para su aplicación"))
    )


@never_cache
@require_http_methods(["GET", "POST"])
def otp_enrol_view(request: HttpRequest) -> HttpResponse:
    subject, pending = _second_factor_subject(request)
    next_url = requested_next(request)
    if subject is None:
        return redirect(_with_next(reverse("accounts:login"), next_url))
    if selectors.has_confirmed_authenticator(subject):
        if pending or not subject.is_verified():
            return redirect(_with_next(reverse("accounts:otp"), next_url))
        return redirect("accounts:security")
    device = services.totp_device_start(user=subject)
    form = EnrolForm(request.POST if request.method == "POST" else None)
    status = 200
    if form.is_valid():
        confirmed = services.totp_enrolment_confirm(
            user=subject, device_id=device.pk, token=form.cleaned_data["otp_token"]
        )
        if confirmed is not None:
            device, codes = confirmed
            destination = safe_next(request, next_url, signin_state.pending_next(request))
            if pending:
                signin_state.complete_signin(request, subject, device)
                services.signin_record_success(user=subject, second_factor="totp")
            else:
                otp_login(request, device)
            # Shown once on the next page, then gone from the session.
            request.session[signin_state.BACKUP_CODES_KEY] = codes
            request.session[signin_state.BACKUP_NEXT_KEY] = destination
            messages.success(request, _("Verificación en dos pasos activada."))
            return redirect("accounts:backup_codes")
        form.add_error("otp_token", WRONG_CODE)
    elif form.is_bound:
        status = 400
    secret = base64.b32encode(device.bin_key).decode("ascii")
    context = {
        "form": form,
        "qr_svg": _qr_svg(device.config_url),
        "secret": secret,
        "required": subject.is_staff_member,
        "next": next_url or "",
    }
    return render(request, "accounts/otp_enrol.html", context, status=status)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def backup_codes_view(request: HttpRequest) -> HttpResponse:
    user = request_user(request)
    has_authenticator = selectors.has_confirmed_authenticator(user)
    if request.method == "POST":
        if not has_authenticator:
            return redirect("accounts:security")
        if not reauthenticated_recently(request):
            return redirect(_with_next(reverse("accounts:reauth"), reverse("accounts:backup_codes")))
        request.session[signin_state.BACKUP_CODES_KEY] = services.backup_codes_generate(user=user)
        request.session[signin_state.BACKUP_NEXT_KEY] = reverse("accounts:security")
        return redirect("accounts:backup_codes")
    codes = request.session.pop(signin_state.BACKUP_CODES_KEY, None)
    continue_to = safe_next(request, request.session.pop(signin_state.BACKUP_NEXT_KEY, None))
    context = {
        "codes": codes,
        "continue_to": continue_to,
        "has_authenticator": has_authenticator,
        "remaining": selectors.backup_codes_remaining(user),
    }
    return render(request, "accounts/backup_codes.html", context)


@never_cache
@login_required
@sensitive_post_parameters("password")
@require_http_methods(["GET", "POST"])
def reauth_view(request: HttpRequest) -> HttpResponse:
    user = request_user(request)
    next_url = requested_next(request)
    needs_code = selectors.has_confirmed_authenticator(user)
    form = ReauthForm(request.POST if request.method == "POST" else None, needs_code=needs_code)
    status = 200
    if form.is_valid():
        result = services.reauth_check(
            user=user,
            password=form.cleaned_data["password"],
            token=form.cleaned_data.get("otp_token", ""),
            address=client_address(request),
        )
        if result.ok:
            mark_reauthenticated(request)
            return redirect(safe_next(request, next_url))
        if result.status == Status.LOCKED:
            return end_locked(request)
        form.add_error(None, _("Los datos no son correctos. Inténtelo de nuevo."))
    elif form.is_bound:
        status = 400
    context = {"form": form, "needs_code": needs_code, "next": next_url or ""}
    return render(request, "accounts/reauth.html", context, status=status)


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        services.signout_record(user=request.user)
    logout(request)  # flushes the session, half-way sign-in state included
    messages.success(request, _("Cerró sesión."))
    return redirect("accounts:login")
