"""Scheduling reads for pages and the API: calendars, a practitioner's day, a patient's appointments, times."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Exists, OuterRef, Prefetch, QuerySet
from django.utils import timezone

from accounts.models import Establishment, User
from records.models import Patient
from scheduling.models import Appointment, AppointmentParticipant, AppointmentStatus, JoinLink


def _participants_prefetch() -> Prefetch:
    return Prefetch(
        "participants",
        queryset=AppointmentParticipant.objects.select_related("user", "establishment").order_by("pk"),
    )


def _with_details(queryset: QuerySet[Appointment]) -> QuerySet[Appointment]:
    return queryset.select_related("establishment", "visit_type", "patient").prefetch_related(_participants_prefetch())


def appointments_for_calendar(
    *, establishment: Establishment, start: dt.datetime, end: dt.datetime, practitioner: User | None = None
) -> list[Appointment]:
    """Appointments of one establishment (or one practitioner there) in [start, end), cancelled ones included
    for the record; two queries whatever their number."""
    queryset = Appointment.objects.filter(start__lt=end, end__gt=start).exclude(status=AppointmentStatus.EXPIRED)
    queryset = queryset.filter(establishment=establishment) | queryset.filter(participants__establishment=establishment)
    if practitioner is not None:
        queryset = queryset.filter(participants__user=practitioner)
    return list(_with_details(queryset.distinct()).order_by("start", "pk"))


def appointments_of_patient(patient: Patient) -> list[Appointment]:
    queryset = Appointment.objects.filter(patient=patient).exclude(status=AppointmentStatus.EXPIRED)
    return list(_with_details(queryset).order_by("-start"))


def practitioner_day(practitioner: User, day: dt.date, tz: zoneinfo.ZoneInfo) -> list[Appointment]:
    start = dt.datetime.combine(day, dt.time.min, tzinfo=tz)
    end = start + dt.timedelta(days=1)
    queryset = Appointment.objects.filter(participants__user=practitioner, start__lt=end, end__gt=start).exclude(
        status__in=[AppointmentStatus.EXPIRED, AppointmentStatus.HELD]
    )
    return list(_annotate_waiting(_with_details(queryset.distinct())).order_by("start"))


def _annotate_waiting(queryset: QuerySet[Appointment]) -> QuerySet[Appointment]:
    """`waiting`: the patient opened their link (the lobby) and the visit has not ended."""
    opened = JoinLink.objects.filter(
        participant__appointment=OuterRef("pk"), participant__role="patient", last_used_at__isnull=False
    )
    return queryset.annotate(lobby_opened=Exists(opened))


@dataclass(frozen=True)
class OverviewRow:
    appointment: Appointment
    waiting: bool
    late: bool  # started, patient not in the lobby, not yet marked


def today_overview(*, establishment: Establishment, now: dt.datetime | None = None) -> list[OverviewRow]:
    """Today at one establishment, in its zone: who is waiting, who is late, who did not come."""
    now = now or timezone.now()
    zone = zoneinfo.ZoneInfo(establishment.time_zone)
    local_day = now.astimezone(zone).date()
    start = dt.datetime.combine(local_day, dt.time.min, tzinfo=zone)
    queryset = Appointment.objects.filter(start__gte=start, start__lt=start + dt.timedelta(days=1)).exclude(
        status__in=[AppointmentStatus.EXPIRED, AppointmentStatus.HELD]
    )
    queryset = queryset.filter(establishment=establishment) | queryset.filter(participants__establishment=establishment)
    rows = []
    for appointment in _annotate_waiting(_with_details(queryset.distinct())).order_by("start", "pk"):
        active = appointment.status == AppointmentStatus.BOOKED
        waiting = active and appointment.lobby_opened and now < appointment.end  # type: ignore[attr-defined]
        late = active and not appointment.lobby_opened and appointment.start <= now  # type: ignore[attr-defined]
        rows.append(OverviewRow(appointment, waiting, late))
    return rows


@dataclass(frozen=True)
class LocalTimes:
    start: dt.datetime  # in the establishment's zone
    end: dt.datetime
    zone: str
    viewer_start: dt.datetime | None  # in the viewer's zone, when it differs
    viewer_end: dt.datetime | None
    viewer_zone: str | None


def viewer_zone(viewer: object) -> str | None:
    name = getattr(viewer, "time_zone", "") or ""
    return name or None


def local_times(appointment: Appointment, viewer: object = None) -> LocalTimes:
    """SCH-6: the establishment's wall-clock time, and the viewer's own when they live in another zone."""
    zone_name = appointment.establishment.time_zone or settings.DEFAULT_ESTABLISHMENT_TIME_ZONE
    zone = zoneinfo.ZoneInfo(zone_name)
    start, end = appointment.start.astimezone(zone), appointment.end.astimezone(zone)
    other = viewer_zone(viewer)
    if other and other != zone_name:
        other_zone = zoneinfo.ZoneInfo(other)
        # Same offset right now is not the same zone (DST rules differ), so compare names, then show both.
        return LocalTimes(start, end, zone_name, appointment.start.astimezone(other_zone),
                          appointment.end.astimezone(other_zone), other)  # fmt: skip
    return LocalTimes(start, end, zone_name, None, None, None)
