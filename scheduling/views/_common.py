"""What the staff pages share: the signed-in user, zones for display (SCH-6), calendar audit, waiting flags."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable
from typing import TYPE_CHECKING, TypedDict, cast

from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.access import request_user
from accounts.models import Establishment, Role, User
from audit import services as audit
from audit.actions import AuditAction, Purpose
from scheduling import selectors
from scheduling.access import establishments_for
from scheduling.models import Appointment

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

BOOKERS = (Role.COORDINATOR, Role.CLINIC_ADMIN)
DEFAULT_ZONE = "America/Lima"


def user_of(request: HttpRequest) -> User:
    return request_user(request)


def zone(name: str | None) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name or DEFAULT_ZONE)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo(DEFAULT_ZONE)


def viewer_zone(user: User, establishment_zone: str) -> zoneinfo.ZoneInfo | None:
    """The viewer's own zone when it differs from the establishment's (a specialist abroad), else None."""
    own = getattr(user, "time_zone", "") or ""
    if not own or own == establishment_zone:
        return None
    return zone(own)


class ShownTimes(TypedDict):
    local_start: dt.datetime
    local_end: dt.datetime
    viewer_start: dt.datetime | None
    viewer_end: dt.datetime | None
    viewer_zone: str


def with_local_times(
    appointments: Iterable[Appointment], viewer: User
) -> list[WithAnnotations[Appointment, ShownTimes]]:
    """Attach the times to show (SCH-6): `local_start/local_end` in the establishment's zone and, when the
    viewer's own zone differs, `viewer_start/viewer_end` and its name."""
    result = []
    for appointment in appointments:
        times = selectors.local_times(appointment, viewer)
        # The same instance, typed with the attributes set on it just below.
        shown = cast("WithAnnotations[Appointment, ShownTimes]", appointment)
        shown.local_start = times.start
        shown.local_end = times.end
        shown.viewer_start = times.viewer_start
        shown.viewer_end = times.viewer_end
        shown.viewer_zone = times.viewer_zone or ""
        result.append(shown)
    return result


def day_bounds(day: dt.date, tz: zoneinfo.ZoneInfo, days: int = 1) -> tuple[dt.datetime, dt.datetime]:
    """UTC instants of local midnight on `day` and `days` later (a DST day is 23 or 25 hours long)."""
    start = dt.datetime.combine(day, dt.time.min, tzinfo=tz)
    end = dt.datetime.combine(day + dt.timedelta(days=days), dt.time.min, tzinfo=tz)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def record_calendar_read(
    user: User,
    *,
    appointments: Iterable[Appointment],
    view: str,
    establishment: Establishment | None = None,
    practitioner: User | None = None,
) -> None:
    """A calendar names patients: one audit event with their ids (never names) per page shown."""
    patients = sorted({a.patient_id for a in appointments})
    audit.record(
        action=AuditAction.CALENDAR_VIEWED,
        purpose=Purpose.TREATMENT if user.role == Role.PRACTITIONER else Purpose.OPERATIONS,
        actor_user_id=user.pk,
        actor_role=user.role,
        actor_establishment_id=establishment.pk if establishment else None,
        object_type="calendar",
        object_id=view,
        details={
            "establishment": establishment.pk if establishment else None,
            "practitioner": practitioner.pk if practitioner else None,
            "patients": patients[:200],
        },
    )


def establishments_query(user: User) -> QuerySet[Establishment]:
    return establishments_for(user).order_by("name")


def practitioners_at(establishments: QuerySet[Establishment]) -> QuerySet[User]:
    return (
        User.objects.filter(role=Role.PRACTITIONER, is_active=True, memberships__establishment__in=establishments)
        .distinct()
        .order_by("full_name")
    )
