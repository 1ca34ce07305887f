"""Shared by the call benchmarks: booked video visits in a scratch database, and a daphne process serving it.

The daphne process is started as a fresh interpreter in its own process group (not forked from the benchmark,
which may hold threads, a browser driver and aiortc's event loop by then), so killing the group leaves nothing
behind, and it can be killed and started again on the same port to play a server restart.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with at least `fraction` of the sample at or below it."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def summary(values: list[float], unit: str = "ms") -> str:
    import statistics

    return (
        f"p50 {statistics.median(values):7.1f} {unit}  p95 {percentile(values, 0.95):7.1f} {unit}"
        f"  max {max(values):7.1f} {unit}  (n={len(values)})"
    )


def load() -> str:
    """The load averages (1, 5, 15 minutes), printed with every figure: the machine is shared."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class BookedVisit:
    public_id: str
    doctor_cookie: str  # "sessionid=…" of the practitioner, second factor passed
    patient_cookie: str

    @property
    def path(self) -> str:
        return f"/ws/visit/{self.public_id}/"


def build_visits(count: int) -> list[BookedVisit]:
    """`count` booked video visits starting in five minutes, each with its own practitioner and consenting patient
    (so no visit waits on another's lock), a care relationship so the practitioner's room shows the chart
    header, and real signed-in sessions for both."""
    from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
    from django.test import Client
    from django.utils import timezone
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from accounts.models import Establishment, PractitionerProfile, Role, StaffMembership, User
    from records.care import care_relationship_start
    from records.consent import consent_document_publish, consent_record
    from records.models import CareSource, ConsentKind, ConsentMethod, Decision, Patient, Sex
    from scheduling.models import (
        Appointment,
        AppointmentParticipant,
        AppointmentStatus,
        Modality,
        ParticipantRole,
        ServiceType,
        VisitType,
    )

    establishment = Establishment.objects.create(name="Centro de Salud de prueba", renipress_code="00009998")
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
    for index in range(count):
        doctor = User.objects.create_user(email=f"medico{index}@bench.test", password=None, role=Role.PRACTITIONER)
        PractitionerProfile.objects.create(
            user=doctor, profession="physician", registry_body="CMP", registry_number=f"{40000 + index}"
        )
        StaffMembership.objects.create(user=doctor, establishment=establishment)
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
        care_relationship_start(
            patient=patient,
            practitioner=doctor,
            source=CareSource.APPOINTMENT,
            source_id=str(appointment.public_id),
            valid_from=timezone.now() - dt.timedelta(hours=1),
            valid_until=appointment.end + dt.timedelta(days=1),
            created_by=None,
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
        built.append(BookedVisit(str(appointment.public_id), cookies[0], cookies[1]))
    return built


class Daphne:
    """One daphne process on the scratch database with the Redis channel layer, as production runs it."""

    def __init__(self, database_url: str, port: int | None = None) -> None:
        from django.conf import settings

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cwd = settings.BASE_DIR
        self.env = os.environ | {
            "DATABASE_URL": database_url,
            "SECRET_KEY": settings.SECRET_KEY,
            "TELECONSULT_KEK": base64.b64encode(settings.TELECONSULT_KEK).decode(),
            "TELECONSULT_AUDIT_KEY": base64.b64encode(settings.TELECONSULT_AUDIT_KEY).decode(),
            "TELECONSULT_INDEX_KEY": base64.b64encode(settings.TELECONSULT_INDEX_KEY).decode(),
            "ACCESS_LOG_LEVEL": "WARNING",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.listening_at: float | None = None  # time.monotonic() when the last start accepted connections

    def start(self, timeout: float = 60) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "teleconsult.daphne_main",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "teleconsult.asgi:application",
            ],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: killing the group leaves nothing behind
        )
        self.listening_at: float | None = None
        deadline = time.monotonic() + timeout
        while True:
            if self.listening_at is None:
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                        self.listening_at = time.monotonic()
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:  # noqa: S310 (loopback)
                    if response.status == 200:
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("daphne did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        """A crash: SIGKILL to the whole group, no clean shutdown, the sockets simply vanish."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, number: int) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it died by itself meanwhile
                os.killpg(process.pid, number)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def __enter__(self) -> Daphne:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def setup_scratch(name: str):  # type: ignore[no-untyped-def]
    """Enter the scratch database (created now, dropped on exit), set Django up and migrate it."""
    from bench.scratch import scratch_database

    @contextlib.contextmanager
    def scratch():  # type: ignore[no-untyped-def]
        with scratch_database(name) as database_url:
            import django

            django.setup()
            from django.core.management import call_command

            call_command("migrate", verbosity=0)
            yield database_url

    return scratch()
