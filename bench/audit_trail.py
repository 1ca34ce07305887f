"""Audit trail benchmark: appends by concurrent writers, then sealing and verification (docs/benchmarks.md).

    .venv/bin/python -m bench.audit_trail [--writers 16] [--seconds 15] [--verify-events 200000]

Runs against the PostgreSQL server of DATABASE_URL (or the embedded one), in a scratch database
(tc_bench_audit) that it creates and drops: it never touches real data. Each writer is a separate process with its own
connection, writing one event per transaction through audit.record(), as services do.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

SCRATCH_DATABASE = "tc_bench_audit"


def _scratch_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{SCRATCH_DATABASE}", parts.query, parts.fragment))


def _maintenance(database: dict[str, Any], statement: str) -> None:
    """Run `statement` on the server's maintenance database, with the project's own connection settings."""
    import psycopg

    options = {
        "host": database.get("HOST") or None,
        "port": database.get("PORT") or None,
        "user": database.get("USER") or None,
        "password": database.get("PASSWORD") or None,
    }
    with psycopg.connect(dbname="postgres", autocommit=True, **{k: v for k, v in options.items() if v}) as connection:
        connection.execute(statement)


def _setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "teleconsult.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def _writer(url: str, number: int, ready: Any, start: Any, stop_at: Any, results: Any) -> None:
    _setup_django(url)
    from django.db import connection, transaction

    from audit import services as audit
    from audit.actions import AuditAction, Purpose

    connection.ensure_connection()
    latencies: list[float] = []
    ready.put(number)
    start.wait()
    count = 0
    while time.time() < stop_at.value:
        tick = time.perf_counter()
        with transaction.atomic():
            audit.record(
                action=AuditAction.TRAIL_VIEWED,
                purpose=Purpose.TREATMENT,
                actor_user_id=1000 + number,
                actor_role="practitioner",
                actor_establishment_id=1,
                patient_id=count % 5000,
                object_type="chart",
                object_id=count,
                source_address="192.0.2.44",
                user_agent="Mozilla/5.0 (Linux; Android 13) bench",
                request_id=f"bench{number:02d}{count:012d}",
                details={"fields": ["allergies", "problems", "medication"], "section": "header"},
            )
        latencies.append(time.perf_counter() - tick)
        count += 1
    connection.close()
    results.put((count, latencies))


def _append(url: str, writers: int, seconds: float) -> tuple[int, float, list[float]]:
    context = multiprocessing.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    start = context.Event()
    stop_at = context.Value("d", 0.0)
    processes = [
        context.Process(target=_writer, args=(url, number, ready, start, stop_at, results)) for number in range(writers)
    ]
    for process in processes:
        process.start()
    # Every writer loads Django and connects first; then all start together.
    for _ in processes:
        ready.get(timeout=300)
    began = time.time()
    stop_at.value = began + seconds
    start.set()
    totals = [results.get(timeout=seconds + 300) for _ in processes]
    elapsed = time.time() - began
    for process in processes:
        process.join(60)
    return sum(count for count, _ in totals), elapsed, [latency for _, latencies in totals for latency in latencies]


def _pad(target: int) -> int:
    """More events for the verifier to chew on: same record() path, 1,000 per transaction (not an append figure)."""
    from django.db import transaction

    from audit import services as audit
    from audit.actions import AuditAction
    from audit.models import AuditEvent

    missing = target - AuditEvent.objects.count()
    written = 0
    while written < missing:
        with transaction.atomic():
            for _ in range(min(1000, missing - written)):
                audit.record(
                    action=AuditAction.SIGNIN_SUCCEEDED,
                    actor_user_id=written % 300,
                    actor_role="patient",
                    source_address="2001:db8::1",
                    request_id=f"pad{written:012d}",
                    details={"method": "password+totp"},
                )
                written += 1
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of one append round")
    parser.add_argument("--rounds", type=int, default=3, help="append rounds (the machine may be shared)")
    parser.add_argument("--verify-events", type=int, default=200_000, help="pad the trail to this many events")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database afterwards")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "teleconsult.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    from django.conf import settings

    # DATABASE_URL's server, or the embedded one that settings start without it (OPS-1).
    url: str = settings.DATABASE_URL
    database = dict(settings.DATABASES["default"])
    scratch = _scratch_url(url)
    _maintenance(database, f"DROP DATABASE IF EXISTS {SCRATCH_DATABASE}")
    _maintenance(database, f"CREATE DATABASE {SCRATCH_DATABASE}")
    # This process and every writer (which reads DATABASE_URL afresh) use the scratch database only.
    settings.DATABASES["default"]["NAME"] = SCRATCH_DATABASE
    try:
        _setup_django(scratch)
        from django.core.management import call_command
        from django.db import connection

        from audit.sealing import seal_pending
        from audit.verification import verify_trail

        call_command("migrate", verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute("SELECT version(), current_setting('synchronous_commit')")
            version, synchronous_commit = cursor.fetchone()
        connection.close()
        print(
            f"PostgreSQL: {version.split(' on ')[0]}; synchronous_commit={synchronous_commit}; cores={os.cpu_count()}"
        )

        rates = []
        for round_number in range(1, args.rounds + 1):
            events, elapsed, latencies = _append(scratch, args.writers, args.seconds)
            latencies.sort()
            p50, p99 = statistics.median(latencies) * 1000, latencies[int(len(latencies) * 0.99)] * 1000
            rates.append(events / elapsed)
            print(
                f"Append round {round_number}: {events} events by {args.writers} writer processes in {elapsed:.1f} s"
                f" = {events / elapsed:,.0f} events/s (one transaction per event; latency p50 {p50:.1f} ms,"
                f" p99 {p99:.1f} ms)"
            )
        print(f"Append: median {statistics.median(rates):,.0f} events/s over {args.rounds} rounds")

        started = time.perf_counter()
        first = seal_pending()  # everything the rounds wrote, in seals of at most 10,000 events
        seal_seconds = time.perf_counter() - started
        print(
            f"Seal: {first.events} events in {first.seals} seals in {seal_seconds:.2f} s"
            f" = {first.events / max(seal_seconds, 1e-9):,.0f} events/s"
        )
        padded = _pad(args.verify_events)
        seal_pending()
        report = verify_trail()
        print(
            f"Verify: {report.events} events ({padded} added to reach the size), {report.seals} seals,"
            f" in {report.seconds:.2f} s = {report.events / report.seconds:,.0f} events/s;"
            f" trail {'intact' if report.ok else 'NOT intact: ' + report.finding.message}"  # type: ignore[union-attr]
        )
        connection.close()
        return 0 if report.ok else 1
    finally:
        if not args.keep:
            from django.db import connections

            connections.close_all()
            _maintenance(database, f"DROP DATABASE IF EXISTS {SCRATCH_DATABASE} WITH (FORCE)")


if __name__ == "__main__":
    sys.exit(main())
