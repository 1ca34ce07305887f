"""Signalling relay: N concurrent visits (2N websockets) on one daphne process with the Redis channel layer.

Each visit's practitioner and patient pass 2.5 KB offers/answers back and forth (closed loop) through the
real consumer (session cookies, waiting room, admit). Prints relay latency (one hop, p50/p95/p99),
messages a second, errors and daphne's memory per connection. Targets (issue 6): 200 visits, p95 <= 50 ms,
zero errors, >= 3,000 messages/s. Runs on a scratch database; needs DATABASE_URL and REDIS_URL.
Usage: .venv/bin/python -m bench.signalling_relay [--visits 50] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

SCRATCH = "tc_bench_signalling_relay"
PAYLOAD = 2_500


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _build(visits: int) -> list[tuple[str, str, str]]:
    """N booked visits, each with its own practitioner and patient (consented): (path, doctor, patient cookie)."""
    from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
    from django.test import Client
    from django.utils import timezone
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from accounts.models import Establishment, PractitionerProfile, Role, User
    from records.consent import consent_document_publish, consent_record
    from records.models import ConsentKind, ConsentMethod, Decision, Patient, Sex
    from scheduling.models import (
        Appointment,
        AppointmentParticipant,
        AppointmentStatus,
        Modality,
        ParticipantRole,
        ServiceType,
        VisitType,
    )

    establishment = Establishment.objects.create(name="Centro de Salud de prueba", renipress_code="00009999")
    admin = User.objects.create_user(email="admin@bench.test", password=None, role=Role.CLINIC_ADMIN)
    documents = [
        consent_document_publish(
            kind=kind, texts={"es-pe": ("Consentimiento", "Acepto.")}, validity_days=None, published_by=admin
        )[0]
        for kind in (ConsentKind.TELEMEDICINE, ConsentKind.DATA_PROCESSING)
    ]
    visit_type = VisitType.objects.create(
        establishment=establishment,
        name="Consulta",
        specialty="Medicina general",
        service_type=ServiceType.TELECONSULTA,
        modality=Modality.VIDEO,
        duration_minutes=30,
    )
    start = timezone.now() + dt.timedelta(minutes=5)
    during = DateTimeTZRange(start, start + dt.timedelta(minutes=30))
    built = []
    for index in range(visits):
        doctor = User.objects.create_user(email=f"medico{index}@bench.test", password=None, role=Role.PRACTITIONER)
        PractitionerProfile.objects.create(
            user=doctor, profession="physician", registry_body="CMP", registry_number=f"{30000 + index}"
        )
        device = TOTPDevice.objects.create(user=doctor, name="app", confirmed=True)
        person = User.objects.create_user(email=f"paciente{index}@bench.test", password=None, role=Role.PATIENT)
        patient = Patient.objects.create(
            given_names="Paciente",
            paternal_surname=f"Prueba{index}",
            search_name=f"prueba{index} paciente",
            sex=Sex.FEMALE,
            birth_date=dt.date(1980, 1, 1),
            user=person,
        )
        for document in documents:
            consent_record(
                patient=patient,
                document=document,
                decision=Decision.GRANT,
                method=ConsentMethod.TYPED_NAME,
                shown_sha256=document.text_sha256,
                actor=None,
                typed_name="Paciente Prueba",
            )
        appointment = Appointment.objects.create(
            establishment=establishment,
            visit_type=visit_type,
            service_type=visit_type.service_type,
            modality=visit_type.modality,
            patient=patient,
            start=start,
            end=start + dt.timedelta(minutes=30),
            status=AppointmentStatus.BOOKED,
            booked_by=admin,
        )
        for role, user, calendar, record in (
            (ParticipantRole.PATIENT, person, f"patient:{patient.pk}", patient),
            (ParticipantRole.PRACTITIONER, doctor, f"user:{doctor.pk}", None),
        ):
            AppointmentParticipant.objects.create(
                appointment=appointment,
                role=role,
                user=user,
                patient=record,
                establishment=establishment,
                calendar=calendar,
                during=during,
            )
        cookies = []
        for user in (doctor, person):
            client = Client()
            client.force_login(user)
            if user is doctor:
                session = client.session
                session[DEVICE_ID_SESSION_KEY] = device.persistent_id
                session.save()
            cookies.append(f"sessionid={client.cookies['sessionid'].value}")
        built.append((f"/ws/visit/{appointment.public_id}/", cookies[0], cookies[1]))
    return built


class Stats:
    def __init__(self, joins: int) -> None:
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.measuring = False
        self.in_call = 0
        self.handshakes: list[float] = []  # seconds from connecting to the accepted handshake, per websocket
        # Pairs start relaying together once every visit is in the call: a pair that started at once would
        # compete with the later joins for the server (their handshakes time out after 5 s under that load).
        self.go = asyncio.Event()
        # A few visits join at a time, as patients arrive: joins are database work, and on a loaded machine
        # a crowd of them at once outlasts daphne's 5 s handshake timeout (connections reset).
        # --joins 0: every visit at once (a join storm).
        self.joining: Any = asyncio.Semaphore(joins) if joins else contextlib.nullcontext()


async def _frames(ws: Any, kind: str) -> dict[str, Any]:
    import aiohttp

    while True:
        message = await ws.receive(timeout=30)
        if message.type != aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"socket closed ({ws.close_code})")
        data = json.loads(message.data)
        if data["type"] == "error":
            raise RuntimeError(f"error frame {data}")
        if data["type"] == kind:
            return data


async def _idle_until(ws: Any, go: asyncio.Event) -> None:
    """Keep reading (aiohttp answers daphne's pings only inside receive(): an unread socket is dropped
    after daphne's ping timeout, which a long setup on a loaded machine outlasts) until `go` is set."""
    import aiohttp

    while not go.is_set():
        try:
            message = await ws.receive(timeout=0.5)
        except TimeoutError:
            continue
        if message.type != aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"socket closed ({ws.close_code})")


def _sdp() -> str:
    stamp = f"{time.perf_counter():.9f} "
    return stamp + "a" * (PAYLOAD - len(stamp))


async def _visit(
    http: Any, url: str, visit: tuple[str, str, str], stats: Stats, stop: asyncio.Event, rate: float
) -> None:
    try:
        await _pair(http, url, visit, stats, stop, rate)
    except Exception as error:
        stats.errors.append(f"joining: {error!r}")


async def _connect(http: Any, url: str, cookie: str, origin: dict[str, str], stats: Stats) -> Any:
    """The websocket, once its handshake is accepted (daphne drops one still waiting after 5 s); its time is kept."""
    started = time.perf_counter()
    ws = await http.ws_connect(url, headers={"Cookie": cookie, **origin}, max_msg_size=0)
    stats.handshakes.append(time.perf_counter() - started)
    return ws


async def _pair(
    http: Any, url: str, visit: tuple[str, str, str], stats: Stats, stop: asyncio.Event, rate: float
) -> None:
    path, doctor_cookie, patient_cookie = visit
    origin = {"Origin": url.replace("ws://", "http://")}
    async with stats.joining:
        doctor = await _connect(http, url + path, doctor_cookie, origin, stats)
        doctor_id = (await _frames(doctor, "welcome"))["participant"]
        patient = await _connect(http, url + path, patient_cookie, origin, stats)
        patient_id = (await _frames(patient, "welcome"))["participant"]
        await _frames(doctor, "waiting")
        await doctor.send_str(json.dumps({"v": 1, "type": "admit", "participant": patient_id}))
        await _frames(patient, "admitted")
        await _frames(doctor, "peer_joined")
    stats.in_call += 1
    gap = 1 / rate if rate else 0.0

    async def side(ws: Any, kind: str, reply: str, to: int, starts: bool) -> None:
        last = 0.0
        if starts:
            await _idle_until(ws, stats.go)
            await ws.send_str(json.dumps({"v": 1, "type": "offer", "to": to, "sdp": _sdp()}))
        while not stop.is_set():
            message = await _frames(ws, kind)
            if stats.measuring:
                stats.latencies.append(time.perf_counter() - float(message["sdp"].split(" ", 1)[0]))
            if gap:  # --rate: pace this connection (back to back otherwise, as the target asks)
                wait = last + gap - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                last = time.perf_counter()
            await ws.send_str(json.dumps({"v": 1, "type": reply, "to": to, "sdp": _sdp()}))

    try:
        await asyncio.gather(
            side(patient, "answer", "offer", doctor_id, True), side(doctor, "offer", "answer", patient_id, False)
        )
    except Exception as error:
        if not stop.is_set():
            stats.errors.append(f"relaying: {error!r}")
    finally:
        await doctor.close()
        await patient.close()


def _watched(server: Any) -> dict[str, Any]:
    """The processes whose CPU time is reported: daphne, this client, and the Redis server when visible."""
    import psutil

    watched = {"daphne": server, "client": psutil.Process()}
    for candidate in psutil.process_iter(["name"]):
        if candidate.info["name"] == "redis-server":
            watched["redis"] = candidate
            break
    return watched


def _cpu(process: Any) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def _run(url: str, visits: list[tuple[str, str, str]], seconds: float, rate: float, joins: int, pid: int) -> None:
    import aiohttp
    import psutil

    process = psutil.Process(pid)
    before = process.memory_info().rss
    stats = Stats(joins)
    stop = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        tasks = []
        for visit in visits:
            tasks.append(asyncio.create_task(_visit(http, url, visit, stats, stop, rate)))
        setup = time.perf_counter()
        # Every visit in the call or failed to join (a failure is an error of the run).
        while stats.in_call + len(stats.errors) < len(visits) and time.perf_counter() - setup < 300:
            await asyncio.sleep(0.2)
        print(
            f"  {stats.in_call} visits in the call {time.perf_counter() - setup:.1f} s after the first connect "
            f"({joins or len(visits)} joining at a time; {len(stats.errors)} failed to join)"
        )
        handshakes = [value * 1000 for value in stats.handshakes]
        print(
            f"  handshakes accepted: {len(handshakes)}, p50 {_percentile(handshakes, 0.5):.0f} ms, "
            f"p95 {_percentile(handshakes, 0.95):.0f} ms, max {max(handshakes, default=float('nan')):.0f} ms"
        )
        stats.go.set()
        await asyncio.sleep(2)  # warm up
        after = process.memory_info().rss
        watched = _watched(process)
        cpu_before = {name: _cpu(proc) for name, proc in watched.items()}
        stats.measuring = True
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        stats.measuring = False
        elapsed = time.perf_counter() - started
        cpu = {name: (_cpu(proc) - cpu_before[name]) / elapsed for name, proc in watched.items()}
        count = len(stats.latencies)
        stop.set()
        await asyncio.wait(tasks, timeout=10)
    ms = [value * 1000 for value in stats.latencies]
    print(f"{len(visits)} visits, {2 * len(visits)} websockets, {seconds:.0f} s closed loop of {PAYLOAD} B messages")
    print(f"  relayed: {count} messages, {count / elapsed:,.0f} messages/s")
    print(
        f"  relay latency: p50 {_percentile(ms, 0.5):.1f} ms, p95 {_percentile(ms, 0.95):.1f} ms, "
        f"p99 {_percentile(ms, 0.99):.1f} ms"
    )
    print(f"  errors: {len(stats.errors)}" + (f" (first: {stats.errors[0]})" if stats.errors else ""))
    print(f"  daphne memory: {(after - before) / (2 * len(visits)) / 1024:.0f} KiB per connection (RSS growth)")
    # Client, server and Redis share the machine's cores: a client near 100 % of a core would be the limit.
    print("  CPU (share of one core): " + ", ".join(f"{name} {share:.0%}" for name, share in cpu.items()))
    if count:
        print(f"  daphne CPU per relayed message: {cpu['daphne'] * elapsed / count * 1e6:.0f} µs")
    print(f"  load average at the end: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument(
        "--rate", type=float, default=0, help="pace each connection to this many messages a second (0: back to back)"
    )
    parser.add_argument(
        "--joins", type=int, default=8, help="visits joining at a time before the relay starts (0: all at once)"
    )
    parser.add_argument(
        "--profile", metavar="PATH", help="run daphne under cProfile (CPU time), statistics written to PATH"
    )
    parser.add_argument(
        "--asyncio", action="store_true", help="daphne on asyncio's own loop instead of uvloop's (not production's)"
    )
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        raise SystemExit("Set REDIS_URL: the benchmark measures the Redis channel layer.")
    from bench.scratch import scratch_database

    with scratch_database(SCRATCH) as database_url:
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connections

        call_command("migrate", verbosity=0)
        built = time.perf_counter()
        visits = _build(args.visits)
        print(f"built {args.visits} visits in {time.perf_counter() - built:.1f} s")
        connections.close_all()
        port = _free_port()
        env = os.environ | {
            "DATABASE_URL": database_url,
            "SECRET_KEY": settings.SECRET_KEY,
            "TELECONSULT_KEK": base64.b64encode(settings.TELECONSULT_KEK).decode(),
            "TELECONSULT_AUDIT_KEY": base64.b64encode(settings.TELECONSULT_AUDIT_KEY).decode(),
            "TELECONSULT_INDEX_KEY": base64.b64encode(settings.TELECONSULT_INDEX_KEY).decode(),
            "ACCESS_LOG_LEVEL": "WARNING",
        }
        daphne = ["-m", "teleconsult.daphne_main"]
        if args.profile or args.asyncio:
            daphne = ["-m", "bench._daphne", *(["--profile", args.profile] if args.profile else [])]
            daphne += ["--asyncio"] if args.asyncio else []
        server = subprocess.Popen(  # one daphne, as production runs it
            [
                sys.executable,
                *daphne,
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "teleconsult.asgi:application",
            ],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("daphne did not start")
                time.sleep(0.2)
            print(f"daphne on 127.0.0.1:{port}, Redis layer at {redis_url.rsplit('@', 1)[-1]}; {os.cpu_count()} CPUs")
            asyncio.run(_run(f"ws://127.0.0.1:{port}", visits, args.seconds, args.rate, args.joins, server.pid))
        finally:
            # SIGTERM: daphne stops its reactor and returns, so cProfile writes its statistics. (Not SIGINT: a
            # benchmark started in the background of a shell inherits SIGINT ignored, and so does daphne.)
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(10)
                raise SystemExit("daphne did not stop within 30 s of SIGTERM") from None


if __name__ == "__main__":
    main()
