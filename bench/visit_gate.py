""" "May this visit start?" (valid consent + the practitioner's care relationship): target p95 <= 5 ms.

Builds 2,000 patients with consent histories (grants, revocations, re-grants, superseded versions) in a
scratch database, then times the gate for random patients.
Usage: .venv/bin/python -m bench.visit_gate
"""

from __future__ import annotations

import datetime as dt
import random
import statistics
import sys
import time

SCRATCH = "tc_bench_visit_gate"


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    from bench.scratch import scratch_database

    with scratch_database(SCRATCH):
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from django.db import connection
        from django.utils import timezone

        from accounts.models import Role
        from accounts.services import user_create
        from records.access import chart_policy
        from records.consent import consent_document_publish, may_start_visit, text_digest
        from records.models import (
            CareRelationship,
            CareSource,
            ConsentDecision,
            ConsentKind,
            ConsentMethod,
            Patient,
            Sex,
        )

        rng = random.Random(11)
        admin = user_create(
            email="admin@bench.test", full_name="Admin", role=Role.CLINIC_ADMIN, password=None, created_by=None
        )
        practitioner = user_create(
            email="gp@bench.test",
            full_name="GP",
            role=Role.PRACTITIONER,
            password=None,
            practitioner={"profession": "physician", "registry_body": "CMP", "registry_number": "12345"},
            created_by=None,
        )
        practitioner.is_verified = lambda: True
        documents = {}
        for kind in (ConsentKind.TELEMEDICINE, ConsentKind.DATA_PROCESSING):
            for version in range(3):
                documents[(kind, version)] = consent_document_publish(
                    kind=kind, texts={"es-pe": ("T", f"{kind} v{version}")}, validity_days=365, published_by=admin
                )[0]
        now = timezone.now()
        patients = Patient.objects.bulk_create(
            Patient(
                given_names="P",
                paternal_surname=f"S{i}",
                search_name=f"S{i} P",
                sex=Sex.FEMALE,
                birth_date=dt.date(1980, 1, 1),
            )
            for i in range(2_000)
        )
        decisions, relationships = [], []
        for patient in patients:
            moment = now - dt.timedelta(days=300)
            for _ in range(rng.randint(2, 8)):
                kind = rng.choice([ConsentKind.TELEMEDICINE, ConsentKind.DATA_PROCESSING])
                document = documents[(kind, rng.randint(0, 2))]
                moment += dt.timedelta(days=rng.randint(1, 30))
                decisions.append(
                    ConsentDecision(
                        patient=patient,
                        document=document,
                        kind=kind,
                        decision=rng.choice(["grant", "grant", "revoke"]),
                        method=ConsentMethod.TYPED_NAME,
                        text_sha256=text_digest(document.text),
                        decided_at=moment,
                        valid_until=moment + dt.timedelta(days=365),
                        typed_name="P",
                    )
                )
            relationships.append(
                CareRelationship(
                    patient=patient,
                    practitioner=practitioner,
                    source=CareSource.APPOINTMENT,
                    source_id=str(patient.pk),
                    valid_from=now - dt.timedelta(hours=1),
                    valid_until=now + dt.timedelta(hours=rng.choice([-0.5, 2])),
                )
            )
        ConsentDecision.objects.bulk_create(decisions, batch_size=2_000)
        CareRelationship.objects.bulk_create(relationships, batch_size=2_000)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")

        timings, allowed = [], 0
        for _ in range(5_000):
            patient = rng.choice(patients)
            t0 = time.perf_counter()
            ok = may_start_visit(patient.pk).allowed and chart_policy(practitioner, patient.pk) is not None
            timings.append((time.perf_counter() - t0) * 1000)
            allowed += ok
        print(f"consent decisions: {len(decisions)} for {len(patients)} patients; {allowed}/5000 visits allowed")
        print(
            f"may this visit start (consent + care relationship): p50 {statistics.median(timings):.2f} ms, "
            f"p95 {_percentile(timings, 0.95):.2f} ms, p99 {_percentile(timings, 0.99):.2f} ms (target p95 <= 5 ms)"
        )


if __name__ == "__main__":
    sys.exit(main())
