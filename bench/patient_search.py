"""Exact DNI search among 100,000 encrypted patients (target p95 <= 20 ms), and name-prefix search.

Runs against a scratch database on the PostgreSQL named by DATABASE_URL (created and dropped here).
Usage: .venv/bin/python -m bench.patient_search [--patients N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import time

SCRATCH = "tc_bench_patients"


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=2_000)
    args = parser.parse_args()

    from bench.scratch import scratch_database

    with scratch_database(SCRATCH):
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from stdnum.pe import cui

        from records.identifiers import document_lookup
        from records.models import DocumentType, Patient, PatientIdentifier, Sex
        from records.selectors import patient_by_document, patients_by_name_prefix
        from records.services import search_name

        rng = random.Random(7)
        surnames = ["QUISPE", "MAMANI", "FLORES", "RODRIGUEZ", "SANCHEZ", "GARCIA", "HUAMAN", "CHAVEZ", "TORRES"]
        given = ["ROSA", "JUAN", "MARIA", "LUIS", "ANA", "JOSE", "CARMEN", "JORGE", "ELENA"]
        dnis = rng.sample(range(10_000_000, 99_999_999), args.patients)
        started = time.perf_counter()
        batch = 2_000
        for offset in range(0, args.patients, batch):
            chunk = dnis[offset : offset + batch]
            patients = [
                Patient(
                    given_names=rng.choice(given),
                    paternal_surname=rng.choice(surnames),
                    maternal_surname=rng.choice(surnames),
                    search_name="",
                    sex=rng.choice([Sex.FEMALE, Sex.MALE]),
                    birth_date=dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(30_000)),
                    phone=f"+51 9{rng.randrange(10**7, 10**8)}",
                )
                for _ in chunk
            ]
            for p in patients:
                p.search_name = search_name(p.paternal_surname, p.maternal_surname, p.given_names)
            Patient.objects.bulk_create(patients)
            PatientIdentifier.objects.bulk_create(
                PatientIdentifier(
                    patient=p,
                    document_type=DocumentType.DNI,
                    value=str(d),
                    lookup=document_lookup(DocumentType.DNI, str(d), "PER"),
                )
                for p, d in zip(patients, chunk, strict=True)
            )
        load_seconds = time.perf_counter() - started
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")

        timings = []
        for _ in range(args.queries):
            dni = str(rng.choice(dnis))
            with_check = f"{dni}-{cui.calc_check_digits(dni)[rng.randrange(2)]}" if rng.random() < 0.5 else dni
            t0 = time.perf_counter()
            found = patient_by_document(DocumentType.DNI, with_check)
            timings.append((time.perf_counter() - t0) * 1000)
            assert found is not None
        prefix_timings = []
        for _ in range(500):
            t0 = time.perf_counter()
            list(patients_by_name_prefix(f"{rng.choice(surnames)} {rng.choice(surnames)[:2]}", limit=20))
            prefix_timings.append((time.perf_counter() - t0) * 1000)

        print(f"patients loaded: {args.patients} in {load_seconds:.1f} s (encrypted phone + DNI, blind index)")
        print(
            f"exact DNI search: p50 {statistics.median(timings):.2f} ms, p95 {_percentile(timings, 0.95):.2f} ms, "
            f"p99 {_percentile(timings, 0.99):.2f} ms over {args.queries} queries (target p95 <= 20 ms)"
        )
        print(
            f"name prefix search (20 rows, decrypting none): p50 {statistics.median(prefix_timings):.2f} ms, "
            f"p95 {_percentile(prefix_timings, 0.95):.2f} ms"
        )


if __name__ == "__main__":
    sys.exit(main())
