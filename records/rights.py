"""Law 29733 rights requests: legal due dates in Peruvian business days, extension, resolution, export."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import TYPE_CHECKING, TypedDict

import holidays
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import BooleanField, Case, QuerySet, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Role, User
from audit import services as audit
from audit.actions import AuditAction, Purpose
from records.models import DataRightsRequest, Patient, RightsKind, RightsStatus
from records.models.rights import OPEN_STATUSES

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

# Business days the law gives to answer: access 20, the other rights 10.
ANSWER_DAYS = {RightsKind.ACCESS: 20}
DEFAULT_ANSWER_DAYS = 10


@lru_cache(maxsize=64)
def _peru_holidays(year: int) -> frozenset[dt.date]:
    return frozenset(holidays.country_holidays("PE", years=year).keys())


def is_business_day(day: dt.date) -> bool:
    return day.weekday() < 5 and day not in _peru_holidays(day.year)


def add_business_days(start: dt.date, days: int) -> dt.date:
    """The date `days` business days after `start` (the filing day itself does not count)."""
    current = start
    counted = 0
    while counted < days:
        current += dt.timedelta(days=1)
        if is_business_day(current):
            counted += 1
    return current


def _lima_date(moment: dt.datetime) -> dt.date:
    from zoneinfo import ZoneInfo

    return moment.astimezone(ZoneInfo("America/Lima")).date()


@transaction.atomic
def rights_request_file(
    *, patient: Patient, kind: RightsKind, description: str, filed_by: User, now: dt.datetime | None = None
) -> DataRightsRequest:
    """A patient (or staff on their behalf) files a request; its due date is set from the filing day in Lima."""
    if filed_by.role == Role.PATIENT and getattr(patient, "user_id", None) != filed_by.pk:
        raise ValidationError(_("Solo puede presentar solicitudes sobre sus propios datos."), code="not_own")
    if not description.strip():
        raise ValidationError(_("Describa su solicitud."), code="description_required")
    if len(description) > 5000:
        raise ValidationError(_("La descripción es demasiado larga (máximo 5000 caracteres)."), code="too_long")
    now = now or timezone.now()
    days = ANSWER_DAYS.get(kind, DEFAULT_ANSWER_DAYS)
    request = DataRightsRequest.objects.create(
        patient=patient,
        kind=kind,
        description=description.strip(),
        filed_at=now,
        filed_by=filed_by,
        due_date=add_business_days(_lima_date(now), days),
    )
    audit.record(
        action=AuditAction.RIGHTS_REQUEST_FILED,
        purpose=Purpose.PATIENT_REQUEST,
        actor_user_id=filed_by.pk,
        actor_role=filed_by.role,
        patient_id=patient.pk,
        object_type="rights_request",
        object_id=request.pk,
        details={"kind": kind.value},
    )
    return request


@transaction.atomic
def rights_request_extend(*, request: DataRightsRequest, reason: str, by: User) -> DataRightsRequest:
    """The one extension the law allows, of the same length as the original term, with its reason."""
    locked = DataRightsRequest.objects.select_for_update().get(pk=request.pk)
    if locked.extended_due_date is not None:
        raise ValidationError(_("Esta solicitud ya fue prorrogada una vez."), code="already_extended")
    if locked.status not in OPEN_STATUSES:
        raise ValidationError(_("La solicitud ya está cerrada."), code="closed")
    if len(reason.strip()) < 10:
        raise ValidationError(_("Indique el motivo de la prórroga."), code="reason_required")
    days = ANSWER_DAYS.get(RightsKind(locked.kind), DEFAULT_ANSWER_DAYS)
    locked.extended_due_date = add_business_days(locked.due_date, days)
    locked.extension_reason = reason.strip()
    locked.save(update_fields=["extended_due_date", "extension_reason"])
    audit.record(
        action=AuditAction.RIGHTS_REQUEST_EXTENDED,
        purpose=Purpose.PATIENT_REQUEST,
        actor_user_id=by.pk,
        actor_role=by.role,
        patient_id=locked.patient_id,
        object_type="rights_request",
        object_id=locked.pk,
    )
    return locked


@transaction.atomic
def rights_request_resolve(
    *, request: DataRightsRequest, status: RightsStatus, resolution: str, by: User
) -> DataRightsRequest:
    if status not in (RightsStatus.IN_PROGRESS, RightsStatus.WAITING, RightsStatus.COMPLETED, RightsStatus.REJECTED):
        raise ValidationError(_("Estado no válido."), code="status")
    locked = DataRightsRequest.objects.select_for_update().get(pk=request.pk)
    if locked.status not in OPEN_STATUSES:
        raise ValidationError(_("La solicitud ya está cerrada."), code="closed")
    if status in (RightsStatus.COMPLETED, RightsStatus.REJECTED) and len(resolution.strip()) < 10:
        raise ValidationError(_("Explique la respuesta al paciente."), code="resolution_required")
    locked.status = status
    locked.resolution = resolution.strip() or locked.resolution
    if status in (RightsStatus.COMPLETED, RightsStatus.REJECTED):
        locked.resolved_at = timezone.now()
        locked.resolved_by = by
    locked.save(update_fields=["status", "resolution", "resolved_at", "resolved_by"])
    audit.record(
        action=AuditAction.RIGHTS_REQUEST_RESOLVED,
        purpose=Purpose.PATIENT_REQUEST,
        actor_user_id=by.pk,
        actor_role=by.role,
        patient_id=locked.patient_id,
        object_type="rights_request",
        object_id=locked.pk,
        details={"status": status.value},
    )
    return locked


class QueueAnnotations(TypedDict):
    effective_due: dt.date
    overdue: bool


def rights_queue(*, today: dt.date | None = None) -> QuerySet[WithAnnotations[DataRightsRequest, QueueAnnotations]]:
    """Open requests, most urgent first, each annotated with whether it is overdue."""
    today = today or _lima_date(timezone.now())
    due = Coalesce("extended_due_date", "due_date")
    return (
        DataRightsRequest.objects.filter(status__in=OPEN_STATUSES)
        .annotate(effective_due=due)
        .annotate(
            overdue=Case(
                When(effective_due__lt=today, then=Value(True)), default=Value(False), output_field=BooleanField()
            )
        )
        .order_by("effective_due", "pk")
    )


def patient_export(*, user: User, patient_id: int, fmt: str) -> tuple[bytes, str]:
    """The patient's own data, for themself only (access and portability). Audited; returns (content, type)."""
    from accounts.access import AccessDenied
    from records.export import bundle_json, bundle_pdf, patient_bundle

    if fmt not in ("json", "pdf"):
        raise ValidationError(_("Formato desconocido."), code="format")
    patient = Patient.objects.filter(pk=patient_id, user=user).first() if user.is_authenticated else None
    if patient is None:
        raise AccessDenied
    bundle = patient_bundle(patient)
    audit.record(
        action=AuditAction.PATIENT_EXPORTED,
        purpose=Purpose.PATIENT_REQUEST,
        actor_user_id=user.pk,
        actor_role=user.role,
        patient_id=patient.pk,
        object_type="patient",
        object_id=patient.pk,
        details={"format": fmt},
    )
    if fmt == "json":
        return bundle_json(bundle), "application/json"
    return bundle_pdf(bundle), "application/pdf"
