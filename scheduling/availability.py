"""Availability writes (SCH-1): visit types, weekly rules and one-off exceptions. Each is audited."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.utils.translation import gettext as _

from accounts.models import Establishment, Role, User
from audit import services as audit
from audit.actions import AuditAction
from scheduling.errors import InvalidRange, OverlappingRule
from scheduling.models import AvailabilityException, AvailabilityRule, ExceptionKind, VisitType

VISIT_TYPE_FIELDS = ("name", "specialty", "service_type", "modality", "duration_minutes", "buffer_minutes", "is_active")


def _audit(action: AuditAction, by: User, object_type: str, object_id: int, **details: Any) -> None:
    audit.record(
        action=action, actor_user_id=by.pk, actor_role=by.role, object_type=object_type, object_id=object_id,
        details=details,
    )  # fmt: skip


def _lock_practitioner(practitioner: User) -> None:
    # Overlap checks read then write: serialise writers of one practitioner's availability.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('scheduling.availability'), %s)", [practitioner.pk])


def _practitioner(user: User) -> User:
    if user.role != Role.PRACTITIONER or not user.is_active:
        raise ValidationError(_("La disponibilidad es de un profesional de salud activo."), code="not_a_practitioner")
    return user


@transaction.atomic
def visit_type_create(
    *,
    establishment: Establishment,
    name: str,
    specialty: str,
    service_type: str,
    modality: str,
    duration_minutes: int,
    buffer_minutes: int = 0,
    by: User,
) -> VisitType:
    visit_type = VisitType(
        establishment=establishment,
        name=(name or "").strip(),
        specialty=(specialty or "").strip(),
        service_type=service_type,
        modality=modality,
        duration_minutes=duration_minutes,
        buffer_minutes=buffer_minutes,
    )
    visit_type.full_clean()
    visit_type.save()
    _audit(AuditAction.VISIT_TYPE_CREATED, by, "visit_type", visit_type.pk, establishment=establishment.pk)
    return visit_type


@transaction.atomic
def visit_type_update(*, visit_type: VisitType, by: User, **fields: Any) -> VisitType:
    unknown = set(fields) - set(VISIT_TYPE_FIELDS)
    if unknown:
        raise ValueError(f"Not a visit type field: {sorted(unknown)}")
    locked = VisitType.objects.select_for_update().get(pk=visit_type.pk)
    changed = [name for name, value in fields.items() if getattr(locked, name) != value]
    for name in changed:
        setattr(locked, name, value.strip() if isinstance(value := fields[name], str) else value)
    locked.full_clean()
    locked.save()
    _audit(AuditAction.VISIT_TYPE_UPDATED, by, "visit_type", locked.pk, fields=sorted(changed))
    return locked


@transaction.atomic
def availability_rule_create(
    *,
    practitioner: User,
    establishment: Establishment,
    weekday: int,
    start_time: dt.time,
    end_time: dt.time,
    valid_from: dt.date,
    valid_until: dt.date | None = None,
    visit_types: Iterable[VisitType],
    by: User,
) -> AvailabilityRule:
    _practitioner(practitioner)
    if end_time <= start_time:
        raise InvalidRange
    if valid_until is not None and valid_until < valid_from:
        raise ValidationError(_("La vigencia termina antes de empezar."), code="invalid_validity")
    offered = list(visit_types)
    if not offered:
        raise ValidationError(_("Elija al menos un tipo de cita para este horario."), code="visit_types_required")
    if any(vt.establishment_id != establishment.pk for vt in offered):
        raise ValidationError(
            _("Los tipos de cita deben ser del mismo establecimiento."), code="visit_type_establishment"
        )
    if not establishment.memberships.filter(user=practitioner).exists():
        raise ValidationError(_("El profesional no trabaja en ese establecimiento."), code="not_a_member")
    _lock_practitioner(practitioner)
    # The same person cannot be in two places: a rule may not overlap another of theirs on the same weekday
    # with overlapping validity, at any establishment. (Wall-clock times of different zones are compared as
    # written; establishments of one practitioner normally share a zone.)
    clash = AvailabilityRule.objects.filter(
        practitioner=practitioner, weekday=weekday, start_time__lt=end_time, end_time__gt=start_time
    ).filter(Q(valid_until__isnull=True) | Q(valid_until__gte=valid_from))
    if valid_until is not None:
        clash = clash.filter(valid_from__lte=valid_until)
    if clash.exists():
        raise OverlappingRule
    rule = AvailabilityRule(
        practitioner=practitioner,
        establishment=establishment,
        weekday=weekday,
        start_time=start_time,
        end_time=end_time,
        valid_from=valid_from,
        valid_until=valid_until,
        created_by=by,
    )
    rule.full_clean()
    rule.save()
    rule.visit_types.set(offered)
    _audit(
        AuditAction.AVAILABILITY_RULE_CREATED, by, "availability_rule", rule.pk,
        practitioner=practitioner.pk, establishment=establishment.pk,
    )  # fmt: skip
    return rule


@transaction.atomic
def availability_rule_remove(*, rule: AvailabilityRule, by: User) -> None:
    """Weekly rules are configuration, not clinical data: removing one frees no booked appointment."""
    _audit(AuditAction.AVAILABILITY_RULE_REMOVED, by, "availability_rule", rule.pk, practitioner=rule.practitioner_id)
    rule.visit_types.clear()
    rule.delete()


@transaction.atomic
def availability_exception_create(
    *,
    practitioner: User,
    establishment: Establishment | None,
    kind: str,
    start: dt.datetime,
    end: dt.datetime,
    label: str = "",
    by: User,
    visit_types: Iterable[VisitType] = (),
) -> AvailabilityException:
    _practitioner(practitioner)
    if kind not in ExceptionKind.values:
        raise ValidationError(_("Tipo de excepción desconocido."), code="exception_kind")
    if start.tzinfo is None or end.tzinfo is None:
        raise ValidationError(_("La hora debe indicar su zona horaria."), code="naive_datetime")
    if end <= start:
        raise InvalidRange
    if kind != ExceptionKind.LEAVE and establishment is None:
        raise ValidationError(_("Indique el establecimiento."), code="establishment_required")
    if kind == ExceptionKind.LEAVE:
        establishment = None
    offered = list(visit_types) if kind == ExceptionKind.EXTRA else []
    if establishment is not None and any(vt.establishment_id != establishment.pk for vt in offered):
        raise ValidationError(
            _("Los tipos de cita deben ser del mismo establecimiento."), code="visit_type_establishment"
        )
    _lock_practitioner(practitioner)
    if (
        kind == ExceptionKind.EXTRA
        and AvailabilityException.objects.filter(
            practitioner=practitioner, kind=ExceptionKind.EXTRA, during__overlap=(start, end)
        ).exists()
    ):
        raise ValidationError(_("Ya hay una sesión adicional en ese horario."), code="overlapping_extra")
    exception = AvailabilityException(
        practitioner=practitioner,
        establishment=establishment,
        kind=kind,
        during=(start.astimezone(dt.UTC), end.astimezone(dt.UTC)),
        label=(label or "").strip()[:120],
        created_by=by,
    )
    exception.full_clean()
    exception.save()
    if offered:
        exception.visit_types.set(offered)
    _audit(
        AuditAction.AVAILABILITY_EXCEPTION_CREATED, by, "availability_exception", exception.pk,
        practitioner=practitioner.pk, kind=kind,
    )  # fmt: skip
    return exception


@transaction.atomic
def availability_exception_remove(*, exception: AvailabilityException, by: User) -> None:
    _audit(
        AuditAction.AVAILABILITY_EXCEPTION_REMOVED, by, "availability_exception", exception.pk,
        practitioner=exception.practitioner_id, kind=exception.kind,
    )  # fmt: skip
    exception.visit_types.clear()
    exception.delete()
