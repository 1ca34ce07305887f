"""Slot search for one specialty across 20 practitioners over 30 days: target p95 <= 100 ms.

Builds, in a scratch database, an establishment with 20 practitioners of one specialty, each working
Monday to Saturday 08:00-13:00 and 14:00-18:00 (20-minute visits, 5-minute pause), with about a third of
their time already booked, a week of leave for two of them and a few blocks. Then times
`find_slots(specialty=..., start=now, end=now + 30 days)` for the first page (20 slots) and for every free
slot of the month, and prints the p50/p95 of each.
Usage: .venv/bin/python -m bench.slot_search [--runs 200]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import time

SCRATCH = "tc_bench_slot_search"
PRACTITIONERS = 20
DAYS = 30


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _build(rng: random.Random) -> None:
    from django.db import transaction
    from django.utils import timezone

    from accounts.models import Role
    from accounts.services import establishment_create, user_create
    from records.models import Patient, Sex
    from scheduling.availability import (
        availability_exception_create,
        availability_rule_create,
        visit_type_create,
    )
    from scheduling.models import Appointment, AppointmentParticipant, AppointmentStatus, ExceptionKind
    from scheduling.slots import find_slots

    admin = user_create(
        email="admin@bench.test", full_name="Admin", role=Role.CLINIC_ADMIN, password=None, created_by=None
    )
    home = establishment_create(name="Hospital", renipress_code="00001234", time_zone="America/Lima", created_by=None)
    visit_type = visit_type_create(
        establishment=home,
        name="Cardiología",
        specialty="Cardiología",
        service_type="teleconsulta",
        modality="video",
        duration_minutes=20,
        buffer_minutes=5,
        by=admin,
    )
    today = timezone.localdate()
    practitioners = []
    with transaction.atomic():
        for n in range(PRACTITIONERS):
            user = user_create(
                email=f"cardio{n}@bench.test",
                full_name=f"Cardio {n}",
                role=Role.PRACTITIONER,
                password=None,
                establishments=[home],
                created_by=None,
                practitioner={
                    "profession": "physician",
                    "registry_body": "CMP",
                    "registry_number": f"{5000 + n}",
                    "specialty": "Cardiología",
                },
            )
            practitioners.append(user)
            for weekday in range(6):
                for start, end in (("08:00", "13:00"), ("14:00", "18:00")):
                    availability_rule_create(
                        practitioner=user,
                        establishment=home,
                        weekday=weekday,
                        start_time=dt.time.fromisoformat(start),
                        end_time=dt.time.fromisoformat(end),
                        valid_from=today - dt.timedelta(days=1),
                        visit_types=[visit_type],
                        by=admin,
                    )
        for user in practitioners[:2]:
            begin = timezone.now() + dt.timedelta(days=rng.randint(3, 20))
            availability_exception_create(
                practitioner=user,
                establishment=None,
                kind=ExceptionKind.LEAVE,
                start=begin,
                end=begin + dt.timedelta(days=7),
                by=admin,
            )
        for user in practitioners[2:8]:
            begin = timezone.now() + dt.timedelta(days=rng.randint(1, 25), hours=rng.randint(0, 8))
            availability_exception_create(
                practitioner=user,
                establishment=home,
                kind=ExceptionKind.BLOCK,
                start=begin,
                end=begin + dt.timedelta(hours=3),
                by=admin,
            )
    now = timezone.now()
    every = find_slots(specialty="Cardiología", start=now, end=now + dt.timedelta(days=DAYS), limit=100_000)
    patients = Patient.objects.bulk_create(
        Patient(
            given_names=f"P{n}",
            paternal_surname="Bench",
            search_name=f"BENCH P{n}",
            sex=Sex.FEMALE,
            birth_date=dt.date(1980, 1, 1),
        )
        for n in range(len(every) // 3 + 1)
    )
    chosen = rng.sample(every, len(every) // 3)
    with transaction.atomic():
        appointments = Appointment.objects.bulk_create(
            Appointment(
                establishment=home,
                visit_type=visit_type,
                service_type="teleconsulta",
                modality="video",
                patient=patients[i],
                start=slot.start,
                end=slot.end,
                status=AppointmentStatus.BOOKED,
                booked_by=admin,
            )
            for i, slot in enumerate(chosen)
        )
        AppointmentParticipant.objects.bulk_create(
            participant
            for appointment, slot in zip(appointments, chosen, strict=True)
            for participant in (
                AppointmentParticipant(
                    appointment=appointment,
                    role="patient",
                    patient_id=appointment.patient_id,
                    calendar=f"patient:{appointment.patient_id}",
                    during=(slot.start, slot.end),
                ),
                AppointmentParticipant(
                    appointment=appointment,
                    role="practitioner",
                    user_id=slot.practitioner_id,
                    establishment=home,
                    calendar=f"user:{slot.practitioner_id}",
                    during=(slot.start, slot.end + dt.timedelta(minutes=5)),
                ),
            )
        )
    print(f"Built: {PRACTITIONERS} practitioners, {len(every)} slots in {DAYS} days, {len(chosen)} booked.")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    from bench.scratch import scratch_database

    with scratch_database(SCRATCH):
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from django.db import connection, reset_queries
        from django.utils import timezone

        from scheduling.slots import find_slots

        _build(random.Random(7))
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        for label, limit in (("first page (20 slots)", 20), ("whole month", 100_000)):
            timings, found, queries = [], 0, 0
            for _ in range(args.runs if limit == 20 else max(20, args.runs // 5)):
                now = timezone.now()
                reset_queries()
                started = time.perf_counter()
                slots = find_slots(specialty="Cardiología", start=now, end=now + dt.timedelta(days=DAYS), limit=limit)
                timings.append((time.perf_counter() - started) * 1000)
                found = len(slots)
            del queries
            print(
                f"slot search, {label}: {found} slots; p50 {statistics.median(timings):.1f} ms, "
                f"p95 {_percentile(timings, 0.95):.1f} ms, max {max(timings):.1f} ms (target p95 <= 100 ms)"
            )


if __name__ == "__main__":
    main()
