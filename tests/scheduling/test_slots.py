"""SCH-1/2/5/6: free slots from weekly rules and exceptions, earliest first, correct across time zones and DST."""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo

import pytest
from django.core.exceptions import ValidationError

from accounts.models import Establishment
from scheduling import services
from scheduling.availability import availability_exception_create
from scheduling.errors import OutsideAvailability, ParticipantBusy
from scheduling.models import AppointmentParticipant, ExceptionKind, ServiceType
from scheduling.selectors import local_times
from scheduling.slots import common_free_times, find_slots, specialties
from tests.factories import PractitionerProfileFactory, StaffMembershipFactory
from tests.scheduling.factories import local, make_visit_type, weekly_rules

UTC = dt.UTC


def day_slots(clinic, day, **kwargs):
    start = local(day, "00:00")
    return find_slots(visit_type=clinic.visit_type, start=start, end=start + dt.timedelta(days=1), limit=100, **kwargs)


@pytest.mark.django_db
def test_a_day_of_slots_earliest_first_and_booked_ones_left_out(personas, clinic):
    slots = day_slots(clinic, clinic.tomorrow)
    assert [s.start for s in slots] == [
        local(clinic.tomorrow, f"{h:02d}:{m:02d}") for h in range(8, 12) for m in (0, 30)
    ]
    assert {s.practitioner_id for s in slots} == {personas.practitioner.pk}
    services.appointment_book(
        visit_type=clinic.visit_type,
        practitioner=personas.practitioner,
        patient=clinic.patient,
        start=local(clinic.tomorrow, "09:00"),
        booked_by=personas.coordinator,
    )
    assert local(clinic.tomorrow, "09:00") not in [s.start for s in day_slots(clinic, clinic.tomorrow)]
    assert len(day_slots(clinic, clinic.tomorrow)) == 7


@pytest.mark.django_db
def test_leave_blocks_and_extra_sessions(personas, clinic):
    tomorrow = clinic.tomorrow
    availability_exception_create(
        practitioner=personas.practitioner,
        establishment=None,
        kind=ExceptionKind.LEAVE,
        start=local(tomorrow, "00:00"),
        end=local(tomorrow, "23:59"),
        label="Vacaciones",
        by=personas.coordinator,
    )
    assert day_slots(clinic, tomorrow) == []
    after = tomorrow + dt.timedelta(days=1)
    availability_exception_create(
        practitioner=personas.practitioner,
        establishment=personas.establishment,
        kind=ExceptionKind.BLOCK,
        start=local(after, "08:00"),
        end=local(after, "10:00"),
        by=personas.coordinator,
    )
    availability_exception_create(
        practitioner=personas.practitioner,
        establishment=personas.establishment,
        kind=ExceptionKind.EXTRA,
        start=local(after, "15:00"),
        end=local(after, "16:00"),
        by=personas.coordinator,
    )
    starts = [s.start.astimezone(zoneinfo.ZoneInfo("America/Lima")).strftime("%H:%M") for s in day_slots(clinic, after)]
    assert starts == ["10:00", "10:30", "11:00", "11:30", "15:00", "15:30"]
    with pytest.raises(ValidationError) as bad:
        availability_exception_create(
            practitioner=personas.practitioner,
            establishment=personas.establishment,
            kind=ExceptionKind.BLOCK,
            start=local(after, "10:00"),
            end=local(after, "09:00"),
            by=personas.coordinator,
        )
    assert bad.value.code == "invalid_range"


@pytest.mark.django_db
def test_buffer_spaces_the_slots(personas):
    visit_type = make_visit_type(
        establishment=personas.establishment, by=personas.admin, name="Control", duration_minutes=20, buffer_minutes=10
    )
    weekly_rules(
        practitioner=personas.practitioner,
        establishment=personas.establishment,
        visit_types=[visit_type],
        by=personas.admin,
        start="08:00",
        end="09:00",
    )
    tomorrow = dt.datetime.now(zoneinfo.ZoneInfo("America/Lima")).date() + dt.timedelta(days=1)
    start = local(tomorrow, "00:00")
    slots = find_slots(visit_type=visit_type, start=start, end=start + dt.timedelta(days=1))
    assert [(s.start.minute, (s.end - s.start).seconds // 60) for s in slots] == [(0, 20), (30, 20)]


@pytest.mark.django_db
def test_specialty_search_interleaves_practitioners_earliest_first(personas, clinic):
    colleague = PractitionerProfileFactory().user
    StaffMembershipFactory(user=colleague, establishment=personas.establishment)
    weekly_rules(
        practitioner=colleague,
        establishment=personas.establishment,
        visit_types=[clinic.visit_type],
        by=personas.admin,
        start="07:00",
        end="08:00",
    )
    start = local(clinic.tomorrow, "00:00")
    slots = find_slots(specialty="medicina GENERAL", start=start, end=start + dt.timedelta(days=1), limit=4)
    assert [(s.practitioner_id, s.start) for s in slots] == [
        (colleague.pk, local(clinic.tomorrow, "07:00")),
        (colleague.pk, local(clinic.tomorrow, "07:30")),
        (personas.practitioner.pk, local(clinic.tomorrow, "08:00")),
        (personas.practitioner.pk, local(clinic.tomorrow, "08:30")),
    ]
    assert specialties() == ["Medicina general"]
    assert find_slots(specialty="Cardiología", start=start, end=start + dt.timedelta(days=1)) == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("zone", "day", "window", "expected_local_starts", "utc_offsets"),
    [
        # Santiago moves clocks forward at 00:00 on 2026-09-06: the 08:00 session stays at 08:00 local.
        ("America/Santiago", dt.date(2026, 9, 5), ("08:00", "09:00"), ["08:00", "08:30"], {-4}),
        ("America/Santiago", dt.date(2026, 9, 6), ("08:00", "09:00"), ["08:00", "08:30"], {-3}),
        # New York falls back at 02:00 on 2026-11-01: a 00:00-03:00 session lasts four real hours.
        (
            "America/New_York",
            dt.date(2026, 11, 1),
            ("00:00", "03:00"),
            ["00:00", "00:30", "01:00", "01:30", "01:00", "01:30", "02:00", "02:30"],
            {-4, -5},
        ),
        # Madrid springs forward at 02:00 on 2026-03-29: a 01:00-04:00 session lasts two real hours.
        ("Europe/Madrid", dt.date(2026, 3, 29), ("01:00", "04:00"), ["01:00", "01:30", "03:00", "03:30"], {1, 2}),
        # Lima has no DST.
        ("America/Lima", dt.date(2026, 11, 1), ("08:00", "09:00"), ["08:00", "08:30"], {-5}),
    ],
)
def test_slots_across_dst_changes(personas, zone, day, window, expected_local_starts, utc_offsets):
    Establishment.objects.filter(pk=personas.establishment.pk).update(time_zone=zone)
    personas.establishment.refresh_from_db()
    visit_type = make_visit_type(establishment=personas.establishment, by=personas.admin)
    weekly_rules(
        practitioner=personas.practitioner,
        establishment=personas.establishment,
        visit_types=[visit_type],
        by=personas.admin,
        start=window[0],
        end=window[1],
        valid_from=day - dt.timedelta(days=30),
    )
    tz = zoneinfo.ZoneInfo(zone)
    start = dt.datetime.combine(day, dt.time(0), tzinfo=tz)
    now = start - dt.timedelta(days=10)
    slots = find_slots(visit_type=visit_type, start=start, end=start + dt.timedelta(days=1), limit=50, now=now)
    assert [s.start.astimezone(tz).strftime("%H:%M") for s in slots] == expected_local_starts
    assert {int(s.start.astimezone(tz).utcoffset().total_seconds() // 3600) for s in slots} == utc_offsets
    assert all(s.start.tzinfo is not None and s.end - s.start == dt.timedelta(minutes=30) for s in slots)
    # Elapsed time, not wall time: consecutive slots never overlap, even through the repeated hour.
    assert all(a.end <= b.start for a, b in itertools.pairwise(slots))


@pytest.mark.django_db
def test_a_viewer_abroad_sees_both_zones(personas, clinic):
    appointment = services.appointment_book(
        visit_type=clinic.visit_type,
        practitioner=personas.practitioner,
        patient=clinic.patient,
        start=local(clinic.tomorrow, "09:00"),
        booked_by=personas.coordinator,
    )
    personas.outsider.time_zone = "Europe/Madrid"
    times = local_times(appointment, personas.outsider)
    assert times.start.strftime("%H:%M") == "09:00" and times.zone == "America/Lima"
    madrid_offset = times.viewer_start.utcoffset()
    assert times.viewer_zone == "Europe/Madrid"
    assert (times.viewer_start.replace(tzinfo=None) - times.start.replace(tzinfo=None)) == madrid_offset + dt.timedelta(
        hours=5
    )
    assert local_times(appointment, personas.practitioner).viewer_start is None


@pytest.fixture
def interconsultation(personas, clinic):
    """A specialist in Madrid (outsider's establishment moved there) available 14:00-18:00 Madrid time."""
    Establishment.objects.filter(pk=personas.other_establishment.pk).update(time_zone="Europe/Madrid")
    away = Establishment.objects.get(pk=personas.other_establishment.pk)
    specialist = personas.outsider
    remote_type = make_visit_type(establishment=away, by=personas.admin, name="Cardiología", specialty="Cardiología")
    weekly_rules(
        practitioner=specialist,
        establishment=away,
        visit_types=[remote_type],
        by=personas.admin,
        start="14:00",
        end="18:00",
    )
    visit_type = make_visit_type(
        establishment=personas.establishment,
        by=personas.admin,
        name="Teleinterconsulta cardiología",
        specialty="Cardiología",
        service_type=ServiceType.TELEINTERCONSULTA,
        duration_minutes=30,
    )
    return visit_type, specialist, away


@pytest.mark.django_db
def test_teleinterconsulta_common_times_and_atomic_booking(personas, clinic, interconsultation):
    visit_type, specialist, away = interconsultation
    interpreter = StaffMembershipFactory(establishment=personas.establishment).user
    start = local(clinic.tomorrow, "00:00")
    madrid = zoneinfo.ZoneInfo("Europe/Madrid")
    times = common_free_times(
        practitioners=[(personas.practitioner, personas.establishment), (specialist, away)],
        patient=clinic.patient,
        interpreter=interpreter,
        duration_minutes=30,
        start=start,
        end=start + dt.timedelta(days=1),
        limit=50,
    )
    assert times, "the Lima morning and the Madrid afternoon overlap"
    for lo, hi in times:
        assert dt.time(8) <= lo.astimezone(zoneinfo.ZoneInfo("America/Lima")).time() < dt.time(12)
        assert dt.time(14) <= lo.astimezone(madrid).time() and hi.astimezone(madrid).time() <= dt.time(18)
    first = times[0][0]
    appointment = services.appointment_book_interconsultation(
        visit_type=visit_type,
        patient=clinic.patient,
        requesting=personas.practitioner,
        requesting_establishment=personas.establishment,
        consulted=specialist,
        consulted_establishment=away,
        interpreter=interpreter,
        start=first,
        booked_by=personas.coordinator,
    )
    roles = sorted(appointment.participants.filter(active=True).values_list("role", flat=True))
    assert roles == ["consulted", "interpreter", "patient", "practitioner"]
    later = common_free_times(
        practitioners=[(personas.practitioner, personas.establishment), (specialist, away)],
        patient=clinic.patient,
        interpreter=interpreter,
        duration_minutes=30,
        start=start,
        end=start + dt.timedelta(days=1),
        limit=50,
    )
    assert first not in [lo for lo, _ in later]


@pytest.mark.django_db
def test_teleinterconsulta_is_all_or_nothing(personas, clinic, interconsultation):
    visit_type, specialist, away = interconsultation
    # The interpreter (a colleague) already sees another patient at that time.
    interpreter = PractitionerProfileFactory().user
    StaffMembershipFactory(user=interpreter, establishment=personas.establishment)
    weekly_rules(
        practitioner=interpreter,
        establishment=personas.establishment,
        visit_types=[clinic.visit_type],
        by=personas.admin,
    )
    when = local(clinic.tomorrow, "09:00")
    services.appointment_book(
        visit_type=clinic.visit_type,
        practitioner=interpreter,
        patient=clinic.other_patient,
        start=when,
        booked_by=personas.coordinator,
    )
    before = AppointmentParticipant.objects.count()
    with pytest.raises(ParticipantBusy):
        services.appointment_book_interconsultation(
            visit_type=visit_type,
            patient=clinic.patient,
            requesting=personas.practitioner,
            requesting_establishment=personas.establishment,
            consulted=specialist,
            consulted_establishment=away,
            interpreter=interpreter,
            start=when,
            booked_by=personas.coordinator,
        )
    assert AppointmentParticipant.objects.count() == before
    with pytest.raises(OutsideAvailability):
        services.appointment_book_interconsultation(
            visit_type=visit_type,
            patient=clinic.patient,
            requesting=personas.practitioner,
            requesting_establishment=personas.establishment,
            consulted=specialist,
            consulted_establishment=away,
            start=local(clinic.tomorrow, "13:00"),
            booked_by=personas.coordinator,
        )
    with pytest.raises(ValidationError) as same:
        services.appointment_book_interconsultation(
            visit_type=visit_type,
            patient=clinic.patient,
            requesting=personas.practitioner,
            requesting_establishment=personas.establishment,
            consulted=personas.practitioner,
            consulted_establishment=personas.establishment,
            start=local(clinic.tomorrow, "10:00"),
            booked_by=personas.coordinator,
        )
    assert same.value.code == "same_practitioner"
