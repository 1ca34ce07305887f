"""Opening a patient's chart page (target p95 <= 150 ms) and audited chart reads per second with 4 concurrent
clients (target >= 250/s), for a patient with 500 encounters (each with a signed note) and 5,000 audit events.

The page is requested through Django's test client: the full middleware stack (sessions, CSRF, authentication,
second factor), the gate with its audit event, the chart header, identification, consents and the first page
of the timeline, rendered. Everything but the network. The query count of one open is printed too (it does
not depend on the number of encounters; tests/records/test_clinical_pages.py asserts it).
Usage: .venv/bin/python -m bench.chart_open [--requests 300] [--threads 4]
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import statistics
import sys
import threading
import time

SCRATCH = "tc_bench_chart_open"
ENCOUNTERS = 500
AUDIT_EVENTS = 5_000


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("ACCESS_LOG_LEVEL", "WARNING")  # one log line per request would time the terminal
    from bench.scratch import scratch_database

    with scratch_database(SCRATCH):
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from django.db import connection
        from django.test import Client
        from django_otp import DEVICE_ID_SESSION_KEY
        from django_otp.plugins.otp_totp.models import TOTPDevice

        from accounts.models import Establishment, Role
        from accounts.services import user_create
        from audit import services as audit
        from audit.actions import AuditAction, Purpose
        from audit.models import AuditEvent
        from records.access import chart_for
        from records.encounters import encounter_finish, encounter_start
        from records.medications import allergy_record, chart_header, medication_record, problem_record
        from records.models import ParticipantRole, Patient, Sex
        from records.notes import note_create, note_save_draft
        from records.signing import note_sign
        from records.views.clinical import encounter_timeline
        from tests.records.encounter_support import COMPLETE

        establishment = Establishment.objects.create(name="Centro de Salud", renipress_code="00006210")
        practitioner = user_create(
            email="gp@bench.test",
            full_name="Dra. Ana Torres",
            role=Role.PRACTITIONER,
            password=None,
            practitioner={"profession": "physician", "registry_body": "CMP", "registry_number": "12345"},
            created_by=None,
        )
        device = TOTPDevice.objects.create(user=practitioner, name="app", confirmed=True)
        practitioner.is_verified = lambda: True  # as after the second factor, for the services' checks
        patient = Patient.objects.create(
            given_names="Rosa",
            paternal_surname="Quispe",
            search_name="QUISPE ROSA",
            sex=Sex.FEMALE,
            birth_date=dt.date(1954, 3, 9),
        )
        t0 = time.perf_counter()
        for index in range(ENCOUNTERS):
            encounter = encounter_start(
                patient=patient,
                appointment_ref=f"bench-{index}",
                service_type="teleconsulta",
                modality_planned="video",
                origin_establishment=establishment,
                participants=[(practitioner, ParticipantRole.ATTENDING, None)],
                by=practitioner,
            )
            encounter_finish(encounter=encounter, by=practitioner)
            note = note_create(encounter=encounter, author=practitioner)
            note = note_save_draft(note=note, content=copy.deepcopy(COMPLETE), by=practitioner, expected_version=1)
            note_sign(note=note, signer=practitioner, reauthenticated=True)
        allergy_record(patient=patient, substance="Penicilina", severity="severe", recorded_by=practitioner)
        problem_record(patient=patient, cie10_code="I10", recorded_by=practitioner)
        medication_record(
            patient=patient, drug_name="Losartán 50 mg", dose="50 mg", source="reported", recorded_by=practitioner
        )
        # Top the patient's audit trail up to 5,000 events with past chart reads.
        missing = AUDIT_EVENTS - AuditEvent.objects.filter(patient_id=patient.pk).count()
        for _ in range(max(0, missing)):
            audit.record(
                action=AuditAction.CHART_VIEWED,
                purpose=Purpose.TREATMENT,
                actor_user_id=practitioner.pk,
                actor_role=practitioner.role,
                patient_id=patient.pk,
                object_type="patient",
                object_id=patient.pk,
                details={"via": "care_relationship"},
            )
        events = AuditEvent.objects.filter(patient_id=patient.pk).count()
        print(
            f"set-up: {ENCOUNTERS} encounters with signed notes, {events} audit events of the patient "
            f"({time.perf_counter() - t0:.0f} s); {os.cpu_count()} CPUs, PostgreSQL on this machine"
        )
        url = f"/records/patients/{patient.pk}/chart/"

        def signed_in_client() -> Client:
            client = Client()
            client.force_login(practitioner)
            session = client.session
            session[DEVICE_ID_SESSION_KEY] = device.persistent_id
            session.save()
            return client

        client = signed_in_client()
        for _ in range(20):  # warm up: templates, CIE-10 list, data keys
            assert client.get(url).status_code == 200
        queries: list[str] = []

        def count(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
            queries.append(sql)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(count):
            client.get(url)
        timings = []
        for _ in range(args.requests):
            t0 = time.perf_counter()
            response = client.get(url)
            timings.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200
        print(
            f"chart open: p50 {statistics.median(timings):.1f} ms, p95 {_percentile(timings, 0.95):.1f} ms, "
            f"p99 {_percentile(timings, 0.99):.1f} ms over {len(timings)} (target p95 <= 150 ms); "
            f"{len(queries)} queries per open"
        )

        page_rate = _concurrent(
            args.threads, args.requests // 2, lambda own: own.get(url).status_code == 200, signed_in_client
        )
        print(f"full chart page with {args.threads} concurrent threads: {page_rate:.0f}/s")

        # An audited chart read: the gate (care relationship, then the audit event in its own transaction) and
        # the selectors the page reads (header lists, first timeline page with notes, amendments, participants).
        def audited_read(_own: object) -> bool:
            access = chart_for(practitioner, patient.pk)
            chart_header(access.patient)
            list(encounter_timeline(access.patient, None).object_list)
            return True

        gate_rate = _concurrent(
            args.threads, args.requests * 2, lambda _own: bool(chart_for(practitioner, patient.pk)), lambda: None
        )
        print(
            f"audited chart reads (the gate and its audit event alone) with {args.threads} concurrent threads: "
            f"{gate_rate:.0f}/s"
        )
        before = AuditEvent.objects.filter(action=AuditAction.CHART_VIEWED, patient_id=patient.pk).count()
        read_rate = _concurrent(args.threads, args.requests * 2, audited_read, lambda: None)
        written = AuditEvent.objects.filter(action=AuditAction.CHART_VIEWED, patient_id=patient.pk).count() - before
        print(
            f"audited chart reads (gate + selectors) with {args.threads} concurrent threads: {read_rate:.0f}/s "
            f"({written} audit events written; target >= 250/s)"
        )


def _concurrent(threads: int, per_thread: int, action, make_state) -> float:  # type: ignore[no-untyped-def]
    """Reads per second with `threads` threads doing `per_thread` actions each after one untimed warm-up."""
    from django.db import connections

    barrier = threading.Barrier(threads + 1)
    failures: list[int] = []

    def work() -> None:
        state = make_state()
        action(state)  # this thread's database connection opens before timing
        barrier.wait()
        for _ in range(per_thread):
            if not action(state):
                failures.append(1)
        connections.close_all()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    t0 = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - t0
    if failures:
        raise SystemExit(f"{len(failures)} failed reads")
    return threads * per_thread / elapsed


if __name__ == "__main__":
    sys.exit(main())
