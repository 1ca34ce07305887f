"""What every patient page shares: the gate to the signed-in patient's own record, and request facts."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme

from accounts.access import AccessDenied, request_user, role_required
from accounts.models import Role
from records.models import Patient

ADULT_AGE = 18


def own_patient(request: HttpRequest) -> Patient:
    """The patient record linked to the signed-in login. A login without one gets the same 404 as anyone else."""
    patient = Patient.objects.filter(user=request_user(request)).first()
    if patient is None:
        raise AccessDenied
    return patient


def patient_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Patients only (anonymous → sign-in; staff and other roles → 404); the view receives their own record."""

    @role_required(Role.PATIENT)
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return view(request, own_patient(request), *args, **kwargs)

    return wrapped


def is_minor(patient: Patient, today: dt.date | None = None) -> bool:
    # Same rule as records.consent.consent_record, so the form asks for a representative exactly when needed.
    today = today or timezone.localdate()
    return (today - patient.birth_date).days // 365.2425 < ADULT_AGE


def source_address(request: HttpRequest) -> str | None:
    """The client's address as the request-id middleware resolved it (behind trusted proxies); None if unusable."""
    candidate = str(getattr(request, "client_address", "") or request.META.get("REMOTE_ADDR", ""))
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def user_agent(request: HttpRequest) -> str:
    return str(request.META.get("HTTP_USER_AGENT", ""))[:300]


def safe_next(request: HttpRequest, candidate: str | None) -> str | None:
    """A same-site path to continue to (the video lobby will send patients here and back); never an open redirect."""
    if (
        candidate
        and len(candidate) <= 500
        and candidate.startswith("/")
        and url_has_allowed_host_and_scheme(
            candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
    ):
        return candidate
    return None


def content_language(request: HttpRequest) -> str:
    """The consent-document language for this request: English if asked for, Spanish (Peru) otherwise."""
    return "en" if getattr(request, "LANGUAGE_CODE", "es-pe").startswith("en") else "es-pe"
