"""What the practitioner's record pages share: the signed-in user, rendering in their zone, the chart header."""

from __future__ import annotations

import zoneinfo
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from accounts.access import request_user
from accounts.models import Establishment, User
from records import cie10, medications
from records.models import (
    NoteTemplate,
    Patient,
)


def user_of(request: HttpRequest) -> User:
    return request_user(request)


def establishments_of(user: User) -> QuerySet[Establishment]:
    return Establishment.objects.filter(memberships__user=user, is_active=True).distinct().order_by("name")


def render_in_zone(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    """Render with times in the practitioner's own zone (the server keeps UTC): a clinician in Lima reads
    encounter and signature times as they lived them."""
    zone_name = getattr(request.user, "time_zone", "") or settings.DEFAULT_ESTABLISHMENT_TIME_ZONE
    try:
        zone = zoneinfo.ZoneInfo(zone_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = zoneinfo.ZoneInfo(settings.DEFAULT_ESTABLISHMENT_TIME_ZONE)
    with timezone.override(zone):
        return render(request, template, context, status=status)


def first_message(error: ValidationError) -> str:
    return error.messages[0] if error.messages else _("Datos no válidos.")


def header_context(patient: Patient) -> dict[str, Any]:
    """What every chart page shows on top: active allergies, problems and current medication (three queries)."""
    header = medications.chart_header(patient)
    for problem in header.problems:
        problem.title = cie10_title(problem.cie10_code)  # type: ignore[attr-defined]
    return {"header": header}


def cie10_title(code: str) -> str:
    entry = cie10.lookup(code)
    if entry is None:
        return ""
    return entry.title_en if (get_language() or "").startswith("en") else entry.title_es


def template_from(request: HttpRequest) -> NoteTemplate | None:
    raw = request.POST.get("template", "")
    if not raw.isdigit():
        return None
    return NoteTemplate.objects.filter(pk=int(raw), is_active=True).first()


def search_language() -> str:
    return "en" if (get_language() or "").startswith("en") else "es-pe"


def errors_of(error: ValidationError) -> tuple[dict[str, list[str]], str]:
    if hasattr(error, "error_dict"):
        by_field = {key: list(value) for key, value in error.message_dict.items()}
        return by_field, ""
    return {}, first_message(error)
