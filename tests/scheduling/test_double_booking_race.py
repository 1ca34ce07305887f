"""SCH-4, pretix style: concurrent bookings of one slot. Paired: without the exclusion constraint the test sees
the double booking; with it, exactly one booking wins and every other gets "slot taken"."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest
from django.db import connection, connections

from scheduling import services
from scheduling.errors import SlotTaken
from scheduling.models import Appointment, AppointmentParticipant, AppointmentStatus
from tests.scheduling.factories import local, make_patient

RACERS = 8


def race(personas, clinic, patients):
    barrier = threading.Barrier(len(patients))
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt(patient):
        try:
            barrier.wait(timeout=30)
            services.appointment_book(
                visit_type=clinic.visit_type,
                practitioner=personas.practitioner,
                patient=patient,
                start=local(clinic.tomorrow, "09:00"),
                booked_by=personas.coordinator,
            )
            result = "booked"
        except SlotTaken:
            result = "taken"
        except Exception as error:
            result = f"error: {type(error).__name__}: {error}"
        finally:
            connections.close_all()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=attempt, args=(p,)) for p in patients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


@pytest.fixture
def racers(personas, clinic):
    return [
        make_patient(establishment=personas.establishment, registered_by=personas.coordinator, surname=f"Racer{i}")
        for i in range(RACERS)
    ]


@contextmanager
def without_double_booking_constraint():
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE scheduling_appointmentparticipant DROP CONSTRAINT scheduling_no_double_booking")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("UPDATE scheduling_appointmentparticipant SET active = false")
            cursor.execute(
                "ALTER TABLE scheduling_appointmentparticipant ADD CONSTRAINT scheduling_no_double_booking "
                "EXCLUDE USING gist (calendar WITH =, during WITH &&) WHERE (active)"
            )


def practitioner_bookings(personas) -> int:
    return AppointmentParticipant.objects.filter(
        calendar=f"user:{personas.practitioner.pk}", active=True, appointment__status=AppointmentStatus.BOOKED
    ).count()


@pytest.mark.django_db(transaction=True)
def test_without_the_constraint_the_race_is_visible(personas, clinic, racers):
    with without_double_booking_constraint():
        outcomes = race(personas, clinic, racers)
        assert outcomes.count("booked") > 1, outcomes
        assert practitioner_bookings(personas) > 1


@pytest.mark.django_db(transaction=True)
def test_with_the_constraint_exactly_one_booking_wins(personas, clinic, racers):
    outcomes = race(personas, clinic, racers)
    assert sorted(outcomes) == ["booked"] + ["taken"] * (RACERS - 1), outcomes
    assert practitioner_bookings(personas) == 1
    assert Appointment.objects.filter(status=AppointmentStatus.BOOKED).count() == 1
