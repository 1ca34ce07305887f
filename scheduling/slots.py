"""Free time (SCH-1, SCH-2, SCH-5, SCH-6): availability windows from weekly rules and exceptions, minus what is
already booked, cut into slots. Pure reads, a fixed number of queries whatever the range.

Rules are wall-clock times in the establishment's zone, so a session at 08:00 stays at 08:00 local across a
DST change; each window is turned into UTC instants on its own date, and slots step through it in real
(elapsed) time, so a session on a transition day is as long as it really is.
"""

from __future__ import annotations

import bisect
import datetime as dt
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import F, FloatField, Func, Q
from django.utils import timezone

from accounts.models import Establishment, User
from records.models import Patient
from scheduling.models import (
    ACTIVE_STATUSES,
    AppointmentParticipant,
    AppointmentStatus,
    AvailabilityException,
    AvailabilityRule,
    ExceptionKind,
    VisitType,
)


@dataclass(frozen=True)
class Slot:
    start: dt.datetime
    end: dt.datetime
    practitioner_id: int
    establishment_id: int
    visit_type_id: int


@dataclass(frozen=True)
class Window:
    """A stretch of time a practitioner works at an establishment, for some visit types (None: any)."""

    start: dt.datetime
    end: dt.datetime
    establishment_id: int
    visit_type_ids: frozenset[int] | None

    def admits(self, visit_type_id: int | None) -> bool:
        return visit_type_id is None or self.visit_type_ids is None or visit_type_id in self.visit_type_ids


def user_calendar(user_id: int) -> str:
    return f"user:{user_id}"


def patient_calendar(patient_id: int) -> str:
    return f"patient:{patient_id}"


def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def _local_instant(day: dt.date, wall: dt.time, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    # A wall time inside a spring-forward gap does not exist; zoneinfo (fold=0) reads it with the offset from
    # before the change, i.e. it lands just after the gap, which is when such a session can really start.
    return dt.datetime.combine(day, wall, tzinfo=zone).astimezone(dt.UTC)


def _subtract(windows: list[Window], removals: Iterable[tuple[dt.datetime, dt.datetime, int | None]]) -> list[Window]:
    """Cut leave (any establishment: None) and blocks (one establishment) out of the windows."""
    result = windows
    for r_start, r_end, r_establishment in removals:
        cut: list[Window] = []
        for w in result:
            applies = r_establishment is None or r_establishment == w.establishment_id
            if not applies or r_end <= w.start or r_start >= w.end:
                cut.append(w)
                continue
            if r_start > w.start:
                cut.append(Window(w.start, r_start, w.establishment_id, w.visit_type_ids))
            if r_end < w.end:
                cut.append(Window(r_end, w.end, w.establishment_id, w.visit_type_ids))
        result = cut
    return result


def availability_windows(
    practitioner_ids: Iterable[int],
    start: dt.datetime,
    end: dt.datetime,
    *,
    visit_type_ids: Iterable[int] | None = None,
) -> dict[int, list[Window]]:
    """Each practitioner's working windows overlapping [start, end), leave and blocks removed (3 queries).

    With `visit_type_ids`, only rules and extra sessions offering one of those visit types count.
    """
    ids = list(set(practitioner_ids))
    windows: dict[int, list[Window]] = defaultdict(list)
    if not ids or end <= start:
        return windows
    # Local dates can be a day off the UTC ones on either side.
    first_day, last_day = (start - dt.timedelta(days=1)).date(), (end + dt.timedelta(days=1)).date()
    rules = AvailabilityRule.objects.filter(
        practitioner_id__in=ids, practitioner__is_active=True, valid_from__lte=last_day
    ).filter(Q(valid_until__isnull=True) | Q(valid_until__gte=first_day))
    if visit_type_ids is not None:
        rules = rules.filter(visit_types__in=list(visit_type_ids)).distinct()
    # Plain rows, not model instances: this runs for every slot search (two queries, nothing per rule).
    rule_rows = list(
        rules.values_list(
            "pk",
            "practitioner_id",
            "establishment_id",
            "establishment__time_zone",
            "weekday",
            "start_time",
            "end_time",
            "valid_from",
            "valid_until",
        )
    )
    offered: dict[int, set[int]] = defaultdict(set)
    for rule_id, visit_type_id in AvailabilityRule.visit_types.through.objects.filter(
        availabilityrule_id__in=[row[0] for row in rule_rows], visittype__is_active=True
    ).values_list("availabilityrule_id", "visittype_id"):
        offered[rule_id].add(visit_type_id)
    by_weekday: dict[int, list[tuple]] = defaultdict(list)
    for row in rule_rows:
        by_weekday[row[4]].append(row)
    zones: dict[str, zoneinfo.ZoneInfo] = {}
    day = first_day
    while day <= last_day:
        for (
            rule_id,
            pid,
            establishment_id,
            zone_name,
            _,
            start_time,
            end_time,
            valid_from,
            valid_until,
        ) in by_weekday.get(day.weekday(), ()):
            if day < valid_from or (valid_until is not None and day > valid_until):
                continue
            zone = zones.get(zone_name) or zones.setdefault(zone_name, _zone(zone_name))
            w_start, w_end = _local_instant(day, start_time, zone), _local_instant(day, end_time, zone)
            if w_end > start and w_start < end and w_end > w_start:
                windows[pid].append(Window(w_start, w_end, establishment_id, frozenset(offered.get(rule_id, ()))))
        day += dt.timedelta(days=1)

    exceptions = AvailabilityException.objects.filter(
        practitioner_id__in=ids, during__overlap=(start, end)
    ).prefetch_related("visit_types")
    removals: dict[int, list[tuple[dt.datetime, dt.datetime, int | None]]] = defaultdict(list)
    wanted = set(visit_type_ids) if visit_type_ids is not None else None
    for exception in exceptions:
        lower, upper = exception.during.lower, exception.during.upper
        if exception.kind == ExceptionKind.EXTRA:
            offered_ids = frozenset(vt.pk for vt in exception.visit_types.all()) or None
            if wanted is not None and offered_ids is not None and not (offered_ids & wanted):
                continue
            assert exception.establishment_id is not None
            windows[exception.practitioner_id].append(Window(lower, upper, exception.establishment_id, offered_ids))
        else:
            scope = None if exception.kind == ExceptionKind.LEAVE else exception.establishment_id
            removals[exception.practitioner_id].append((lower, upper, scope))
    return {pid: sorted(_subtract(ws, removals.get(pid, ())), key=lambda w: w.start) for pid, ws in windows.items()}


def busy_ranges(
    calendars: Iterable[str], start: dt.datetime, end: dt.datetime, *, now: dt.datetime | None = None
) -> dict[str, list[tuple[dt.datetime, dt.datetime]]]:
    """What blocks each calendar in [start, end): active appointments, not counting holds that lapsed."""
    now = now or timezone.now()
    # The bounds as epoch seconds: parsing thousands of range literals costs more than the query itself.
    rows = (
        AppointmentParticipant.objects.filter(
            calendar__in=list(calendars),
            active=True,
            during__overlap=(start, end),
            appointment__status__in=ACTIVE_STATUSES,
        )
        .exclude(appointment__status=AppointmentStatus.HELD, appointment__hold_expires_at__lte=now)
        .annotate(
            lo=Func(
                Func(F("during"), function="lower"),
                function="extract",
                template="extract(epoch from %(expressions)s)",
                output_field=FloatField(),
            ),
            hi=Func(
                Func(F("during"), function="upper"),
                function="extract",
                template="extract(epoch from %(expressions)s)",
                output_field=FloatField(),
            ),
        )
        .values_list("calendar", "lo", "hi")
    )
    busy: dict[str, list[tuple[dt.datetime, dt.datetime]]] = defaultdict(list)
    from_epoch = dt.datetime.fromtimestamp
    for calendar, lo, hi in rows:
        busy[calendar].append((from_epoch(float(lo), dt.UTC), from_epoch(float(hi), dt.UTC)))
    for ranges in busy.values():
        ranges.sort()
    return busy


def _overlaps(ranges: list[tuple[dt.datetime, dt.datetime]], start: dt.datetime, end: dt.datetime) -> bool:
    # Ranges are sorted by start and never overlap each other (the exclusion constraint), so only the
    # last range starting before `end` can reach into [start, end).
    index = bisect.bisect_left(ranges, (end,)) - 1
    return index >= 0 and ranges[index][1] > start


def _earliest(now: dt.datetime, start: dt.datetime) -> dt.datetime:
    return max(start, now + dt.timedelta(minutes=settings.BOOKING_MIN_NOTICE_MINUTES))


def find_slots(
    *,
    visit_type: VisitType | None = None,
    specialty: str | None = None,
    practitioner: User | None = None,
    establishment: Establishment | None = None,
    start: dt.datetime,
    end: dt.datetime,
    limit: int = 20,
    now: dt.datetime | None = None,
) -> list[Slot]:
    """The earliest free slots, by practitioner or across every practitioner of a specialty."""
    now = now or timezone.now()
    start = _earliest(now, start)
    if end <= start or limit <= 0:
        return []
    visit_types = VisitType.objects.filter(is_active=True, establishment__is_active=True)
    if visit_type is not None:
        visit_types = visit_types.filter(pk=visit_type.pk)
    if specialty:
        visit_types = visit_types.filter(specialty__iexact=specialty.strip())
    if establishment is not None:
        visit_types = visit_types.filter(establishment=establishment)
    types = {vt.pk: vt for vt in visit_types}
    if not types:
        return []
    rule_practitioners = AvailabilityRule.objects.filter(visit_types__in=list(types)).values_list(
        "practitioner_id", flat=True
    )
    extra_practitioners = AvailabilityException.objects.filter(
        kind=ExceptionKind.EXTRA, during__overlap=(start, end)
    ).values_list("practitioner_id", flat=True)
    ids = set(rule_practitioners) | set(extra_practitioners)
    if practitioner is not None:
        ids &= {practitioner.pk}
    if not ids:
        return []
    # Earliest first: look one day ahead, then three times further each round, so the usual first page
    # reads a day of rules and bookings rather than the whole range.
    slots: list[Slot] = []
    chunk_start, horizon = start, dt.timedelta(days=1)
    while chunk_start < end and len(slots) < limit:
        chunk_end = min(end, chunk_start + horizon)
        slots += _slots_between(ids, types, chunk_start, chunk_end, limit - len(slots), now)
        chunk_start, horizon = chunk_end, horizon * 3
    return slots[:limit]


def _slots_between(
    ids: set[int], types: dict[int, VisitType], start: dt.datetime, end: dt.datetime, limit: int, now: dt.datetime
) -> list[Slot]:
    """Free slots starting in [start, end), earliest first, at most `limit`."""
    windows = availability_windows(ids, start, end, visit_type_ids=types.keys())
    longest = max(dt.timedelta(minutes=vt.duration_minutes + vt.buffer_minutes) for vt in types.values())
    busy = busy_ranges([user_calendar(pid) for pid in windows], start, end + longest, now=now)
    # Windows in time order, so the search can stop once the first `limit` slots are certain: no later
    # window can hold a slot earlier than the limit-th one found.
    ordered = sorted(((w, pid) for pid, ws in windows.items() for w in ws), key=lambda item: item[0].start)
    slots: list[Slot] = []
    cutoff: dt.datetime | None = None
    for window, pid in ordered:
        if cutoff is not None and window.start > cutoff:
            break
        taken = busy.get(user_calendar(pid), [])
        for vt in types.values():
            if vt.establishment_id != window.establishment_id or not window.admits(vt.pk):
                continue
            length = dt.timedelta(minutes=vt.duration_minutes)
            step = length + dt.timedelta(minutes=vt.buffer_minutes)
            t = window.start
            while t + length <= window.end and t < end:
                if t >= start and not _overlaps(taken, t, t + step):
                    slots.append(Slot(t, t + length, pid, window.establishment_id, vt.pk))
                t += step
        if len(slots) >= limit:
            slots.sort(key=lambda s: (s.start, s.practitioner_id, s.visit_type_id))
            del slots[limit:]
            cutoff = slots[-1].start
    slots.sort(key=lambda s: (s.start, s.practitioner_id, s.visit_type_id))
    return slots[:limit]


def fits_availability(
    *,
    practitioner_id: int,
    establishment_id: int | None,
    visit_type_id: int | None,
    start: dt.datetime,
    end: dt.datetime,
) -> bool:
    """Whether [start, end) lies inside one of the practitioner's windows (at that establishment, for that type)."""
    for window in availability_windows([practitioner_id], start, end).get(practitioner_id, []):
        if establishment_id is not None and window.establishment_id != establishment_id:
            continue
        if window.admits(visit_type_id) and window.start <= start and end <= window.end:
            return True
    return False


def specialties() -> list[str]:
    """Specialties that patients can book: an active visit type offered in some weekly rule."""
    names = (
        VisitType.objects.filter(is_active=True, establishment__is_active=True, availability_rules__isnull=False)
        .values_list("specialty", flat=True)
        .distinct()
    )
    return sorted(set(names), key=str.casefold)


def _intersect(a: list[tuple[dt.datetime, dt.datetime]], b: list[tuple[dt.datetime, dt.datetime]]):
    result, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            result.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return result


def _merge(ranges: list[tuple[dt.datetime, dt.datetime]]) -> list[tuple[dt.datetime, dt.datetime]]:
    merged: list[tuple[dt.datetime, dt.datetime]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def common_free_times(
    *,
    practitioners: list[tuple[User, Establishment]],
    patient: Patient,
    interpreter: User | None = None,
    duration_minutes: int,
    start: dt.datetime,
    end: dt.datetime,
    limit: int = 20,
    now: dt.datetime | None = None,
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Times when every practitioner works (each at their own establishment) and nobody involved is booked:
    the requesting practitioner, the consulted specialist (often in another zone), the patient, an interpreter."""
    now = now or timezone.now()
    start = _earliest(now, start)
    if end <= start or not practitioners:
        return []
    windows = availability_windows([u.pk for u, _ in practitioners], start, end)
    common: list[tuple[dt.datetime, dt.datetime]] | None = None
    for user, establishment in practitioners:
        own = _merge([(w.start, w.end) for w in windows.get(user.pk, []) if w.establishment_id == establishment.pk])
        common = own if common is None else _intersect(common, own)
    calendars = [user_calendar(u.pk) for u, _ in practitioners] + [patient_calendar(patient.pk)]
    if interpreter is not None:
        calendars.append(user_calendar(interpreter.pk))
    busy = busy_ranges(calendars, start - dt.timedelta(hours=6), end, now=now)
    taken = _merge([r for ranges in busy.values() for r in ranges])
    length = dt.timedelta(minutes=duration_minutes)
    found: list[tuple[dt.datetime, dt.datetime]] = []
    for lo, hi in common or []:
        t = lo
        while t + length <= hi and len(found) < limit:
            if t >= start and not _overlaps(taken, t, t + length):
                found.append((t, t + length))
            t += length
    return sorted(found)[:limit]
