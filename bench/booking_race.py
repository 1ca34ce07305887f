"""Booking through real HTTP against daphne on PostgreSQL (SCH-4):

1. 100 concurrent patients, each with their own signed-in session, race for 10 slots of one practitioner
   (10 per slot) through POST /api/v1/appointments: target exactly 10 appointments, 0 double bookings,
   90 clear 409 answers.
2. Booking latency: 20 concurrent coordinators each book free slots for different patients, pausing
   `--pause` seconds between bookings (people at a booking desk), and once more with no pause at all
   (closed loop: the server's capacity, where latency is the queue): target p95 <= 100 ms.

    .venv/bin/python -m bench.booking_race [--racers 100] [--slots 10] [--clients 20] [--bookings 10] [--processes 1]

Runs against a throwaway test database on the server named by DATABASE_URL (the audit trail is append-only,
so a benchmark never writes into a real database).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _session(user) -> tuple[str, str]:
    """Cookie header and CSRF token of a real signed-in session (second factor verified for staff)."""
    from django.conf import settings
    from django.middleware.csrf import CSRF_ALLOWED_CHARS, CSRF_SECRET_LENGTH
    from django.test import Client
    from django.utils.crypto import get_random_string
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    client = Client()
    client.force_login(user)
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is not None:
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    csrf = get_random_string(CSRF_SECRET_LENGTH, allowed_chars=CSRF_ALLOWED_CHARS)
    return f"{settings.SESSION_COOKIE_NAME}={key}; {settings.CSRF_COOKIE_NAME}={csrf}", csrf


def _post(connection: http.client.HTTPConnection, body: dict, cookie: str, csrf: str) -> tuple[int, dict, float]:
    started = time.perf_counter()
    connection.request(
        "POST",
        "/api/v1/appointments",
        body=json.dumps(body),
        headers={"Content-Type": "application/json", "Cookie": cookie, "X-CSRFToken": csrf, "Host": "localhost"},
    )
    response = connection.getresponse()
    payload = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    return response.status, json.loads(payload or b"{}"), elapsed


def _build(racers: int, clients: int, bookings: int):
    from django.utils import timezone
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from accounts.models import Role
    from accounts.services import establishment_create, user_create
    from records.models import Patient, Sex
    from records.services import search_name
    from scheduling.availability import availability_rule_create, visit_type_create

    admin = user_create(
        email="admin@bench.test", full_name="Admin", role=Role.CLINIC_ADMIN, password=None, created_by=None
    )
    home = establishment_create(name="Centro", renipress_code="00004321", time_zone="America/Lima", created_by=None)
    visit_type = visit_type_create(
        establishment=home,
        name="Medicina general",
        specialty="Medicina general",
        service_type="teleconsulta",
        modality="video",
        duration_minutes=20,
        buffer_minutes=0,
        by=admin,
    )
    practitioners = []
    for n in range(4):
        practitioner = user_create(
            email=f"gp{n}@bench.test",
            full_name=f"GP {n}",
            role=Role.PRACTITIONER,
            password=None,
            establishments=[home],
            created_by=None,
            practitioner={"profession": "physician", "registry_body": "CMP", "registry_number": f"{7000 + n}"},
        )
        for weekday in range(7):
            availability_rule_create(
                practitioner=practitioner,
                establishment=home,
                weekday=weekday,
                start_time=dt.time(7),
                end_time=dt.time(19),
                valid_from=timezone.localdate() - dt.timedelta(days=1),
                visit_types=[visit_type],
                by=admin,
            )
        practitioners.append(practitioner)
    patients = []
    for n in range(max(racers, clients * bookings)):
        user = user_create(
            email=f"p{n}@bench.test", full_name=f"P {n}", role=Role.PATIENT, password=None, created_by=None
        )
        patients.append(
            Patient.objects.create(
                user=user,
                given_names=f"P{n}",
                paternal_surname="Bench",
                search_name=search_name(f"Bench P{n}"),
                sex=Sex.FEMALE,
                birth_date=dt.date(1980, 1, 1),
            )
        )
    coordinators = []
    for n in range(clients):
        coordinator = user_create(
            email=f"c{n}@bench.test",
            full_name=f"C {n}",
            role=Role.COORDINATOR,
            password=None,
            establishments=[home],
            created_by=None,
        )
        TOTPDevice.objects.create(user=coordinator, name="app", confirmed=True)
        coordinators.append(coordinator)
    return visit_type, practitioners, patients, coordinators


def _race(ports: list[int], visit_type, practitioner, patients, slot_count: int) -> None:
    from django.db import connection

    from scheduling.models import Appointment
    from scheduling.slots import find_slots

    now = dt.datetime.now(dt.UTC)
    slots = find_slots(
        visit_type=visit_type,
        practitioner=practitioner,
        start=now + dt.timedelta(days=1),
        end=now + dt.timedelta(days=8),
        limit=slot_count,
    )
    sessions = [_session(p.user) for p in patients]
    barrier = threading.Barrier(len(patients))
    results: list[tuple[int, str, float]] = []
    lock = threading.Lock()

    def racer(index: int) -> None:
        cookie, csrf = sessions[index]
        slot = slots[index % len(slots)]
        body = {"visit_type": visit_type.pk, "practitioner": practitioner.pk, "start": slot.start.isoformat()}
        # Clients spread over the processes, as a proxy in front of several replicas would spread them.
        connection_ = http.client.HTTPConnection("127.0.0.1", ports[index % len(ports)], timeout=120)
        try:
            barrier.wait(60)
            status, payload, elapsed = _post(connection_, body, cookie, csrf)
        except Exception as error:
            status, payload, elapsed = 0, {"code": repr(error)}, 0.0
        finally:
            connection_.close()
        with lock:
            results.append((status, payload.get("code", ""), elapsed))

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(len(patients))]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    created = sum(1 for status, _, _ in results if status == 201)
    taken = sum(1 for status, code, _ in results if status == 409 and code == "slot_taken")
    errors = len(results) - created - taken
    appointments = Appointment.objects.filter(participants__user=practitioner, status__in=["held", "booked"]).count()
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT count(*) FROM scheduling_appointmentparticipant a JOIN scheduling_appointmentparticipant b
               ON a.calendar = b.calendar AND a.id < b.id AND a.during && b.during WHERE a.active AND b.active"""
        )
        overlaps = cursor.fetchone()[0]
    latencies = [e for _, _, e in results if e]
    print(
        f"race: {len(patients)} patients for {len(slots)} slots in {wall:.2f} s: {created} booked (201), "
        f"{taken} slot taken (409), {errors} other answers; {appointments} appointments in the database; "
        f"{overlaps} double bookings; latency p50 {statistics.median(latencies):.0f} ms, "
        f"p95 {_percentile(latencies, 0.95):.0f} ms (targets: exactly {len(slots)} appointments, 0 double bookings)"
    )


def _latency(
    ports: list[int], visit_type, practitioners, patients, coordinators, bookings: int, pause: float, offset: int
) -> None:
    from scheduling.slots import find_slots

    now = dt.datetime.now(dt.UTC)
    wanted = len(coordinators) * bookings
    slots = find_slots(
        visit_type=visit_type, start=now + dt.timedelta(days=9), end=now + dt.timedelta(days=30), limit=wanted
    )
    assert len(slots) == wanted, "not enough free slots for the latency run"
    sessions = [_session(c) for c in coordinators]
    barrier = threading.Barrier(len(coordinators))
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def coordinator(index: int) -> None:
        cookie, csrf = sessions[index]
        connection_ = http.client.HTTPConnection("127.0.0.1", ports[index % len(ports)], timeout=120)
        mine = slots[index :: len(coordinators)]
        try:
            barrier.wait(60)
            # People do not press "book" in step: spread the first bookings over one pause.
            time.sleep(pause * index / len(coordinators))
            for n, slot in enumerate(mine):
                patient = patients[(index * bookings + n + offset * len(coordinators) * bookings) % len(patients)]
                body = {
                    "visit_type": visit_type.pk,
                    "practitioner": slot.practitioner_id,
                    "start": slot.start.isoformat(),
                    "patient": patient.pk,
                }
                status, payload, elapsed = _post(connection_, body, cookie, csrf)
                if pause:
                    time.sleep(pause)
                with lock:
                    if status == 201:
                        latencies.append(elapsed)
                    else:
                        failures.append(f"{status} {payload.get('code', '')}")
        finally:
            connection_.close()

    threads = [threading.Thread(target=coordinator, args=(i,)) for i in range(len(coordinators))]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    print(
        f"latency, {len(coordinators)} concurrent coordinators, pause {pause:g} s: {len(latencies)} bookings "
        f"in {wall:.2f} s "
        f"({len(latencies) / wall:.0f}/s), {len(failures)} failures {failures[:3]}; "
        f"p50 {statistics.median(latencies):.0f} ms, p95 {_percentile(latencies, 0.95):.0f} ms, "
        f"max {max(latencies):.0f} ms (target p95 <= 100 ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--racers", type=int, default=100)
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--bookings", type=int, default=10, help="bookings per coordinator in the latency run")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between one coordinator's bookings")
    parser.add_argument("--processes", type=int, default=1, help="daphne processes (production runs two replicas)")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "teleconsult.settings")
    os.environ.setdefault("ACCESS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.db import connections
    from django.test.utils import setup_databases, teardown_databases

    from teleconsult.daphne_main import daphne_process

    old_config = setup_databases(verbosity=0, interactive=False, aliases={"default"})
    try:
        visit_type, practitioners, patients, coordinators = _build(args.racers, args.clients, args.bookings)
        # The servers are forked: each must open its own connections and its own pool (a pool copied by fork has
        # no worker threads and stalls once its idle connections are taken).
        for connection in connections.all():
            connection.close()
            if getattr(connection, "pool", None) is not None:
                connection.close_pool()

        def application() -> Callable[..., object]:
            from django.core.asgi import get_asgi_application

            return get_asgi_application()

        servers = [
            daphne_process(host="127.0.0.1", get_application=application, kwargs={"verbosity": 0})
            for _ in range(args.processes)
        ]
        for server in servers:
            server.daemon = True
            server.start()
        try:
            for server in servers:
                if not server.ready.wait(30):
                    raise RuntimeError("daphne did not start")
            ports = [server.port.value for server in servers]
            print(f"{len(ports)} daphne process(es) on 127.0.0.1:{', '.join(map(str, ports))}; {os.cpu_count()} CPUs")
            _race(ports, visit_type, practitioners[0], patients[: args.racers], args.slots)
            _latency(ports, visit_type, practitioners, patients, coordinators, args.bookings, args.pause, 0)
            _latency(ports, visit_type, practitioners, patients, coordinators, args.bookings, 0.0, 10)
        finally:
            for server in servers:
                server.terminate()
                server.join(10)
    finally:
        connections.close_all()
        teardown_databases(old_config, verbosity=0)


if __name__ == "__main__":
    main()
    sys.exit(0)
