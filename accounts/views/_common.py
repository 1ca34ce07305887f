"""Helpers the accounts views share: safe redirects and the client's address."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, resolve_url
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy as _

# The lockout message names no account and no address, so it says nothing about who exists.
LOCKED_OUT = _("Demasiados intentos fallidos. Espere unos minutos e inténtelo de nuevo.")


def safe_next(request: HttpRequest, *candidates: str | None) -> str:
    """The first candidate that stays on this site, else the home page (never an open redirect)."""
    for candidate in candidates:
        if candidate and url_has_allowed_host_and_scheme(
            candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return candidate
    return resolve_url(settings.LOGIN_REDIRECT_URL)


def requested_next(request: HttpRequest) -> str | None:
    value = request.POST.get("next") or request.GET.get("next")
    return value if value and len(value) <= 2000 else None


def client_address(request: HttpRequest) -> str:
    return str(getattr(request, "client_address", "") or request.META.get("REMOTE_ADDR", ""))


def end_locked(request: HttpRequest) -> HttpResponse:
    """A lockout reached after the password step (second factor, re-authentication) ends the session."""
    logout(request)
    messages.error(request, LOCKED_OUT)
    return redirect("accounts:login")
