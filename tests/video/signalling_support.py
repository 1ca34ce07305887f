"""Helpers for the signalling tests: a visit ready to take place, session cookies of real users, sockets."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from channels.testing import WebsocketCommunicator
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client
from django.utils import timezone
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import User
from records.consent import consent_record, current_document, may_start_visit
from records.models import ConsentKind, ConsentMethod, Decision, Patient
from scheduling.joinlinks import LINK_SESSION_KEY, join_link_issue
from scheduling.models import Appointment, AppointmentParticipant, ParticipantRole
from tests.frontend.conftest import publish, register
from tests.scheduling.test_joinlinks import make_appointment

ORIGIN = b"http://localhost"


@dataclass
class Visit:
    appointment: Appointment
    patient: Patient

    @property
    def path(self) -> str:
        return f"/ws/visit/{self.appointment.public_id}/"

    def participant(self, role: str = ParticipantRole.PATIENT) -> AppointmentParticipant:
        return self.appointment.participants.get(role=role)


def consent_to_visits(personas: Any, patient: Patient) -> None:
    for kind in (ConsentKind.TELEMEDICINE, ConsentKind.DATA_PROCESSING):
        document = current_document(kind, "es-pe") or publish(personas, kind)[0]
        consent_record(
            patient=patient,
            document=document,
            decision=Decision.GRANT,
            method=ConsentMethod.TYPED_NAME,
            shown_sha256=document.text_sha256,
            actor=None,
            typed_name="Rosa Quispe",
        )


def make_visit(personas: Any, *, start: dt.datetime | None = None, consent: bool = True) -> Visit:
    """A booked video appointment of Rosa Quispe (linked to the patient persona) with the practitioner."""
    patient = Patient.objects.filter(user=personas.patient).first() or register(personas, user=personas.patient)
    if consent and not may_start_visit(patient.pk).allowed:
        consent_to_visits(personas, patient)
    appointment = make_appointment(personas, patient, start=start or timezone.now() + dt.timedelta(minutes=5))
    return Visit(appointment, patient)


def signed_in_cookie(user: User, *, verified: bool = True) -> str:
    """The session cookie of a real sign-in (staff with the second factor passed unless `verified` is False)."""
    client = Client()
    client.force_login(user)
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is not None and verified:
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()
    return f"sessionid={client.cookies['sessionid'].value}"


def link_cookie(participant: AppointmentParticipant, *, verified: bool = True) -> str:
    """The session a join link leaves behind once opened (and verified): ids and a flag, no token."""
    join_link_issue(participant=participant, by=None)
    link = participant.join_links.get(revoked_at__isnull=True)
    session = SessionStore()
    session[LINK_SESSION_KEY] = {
        "participant": participant.pk,
        "appointment": str(participant.appointment.public_id),
        "link": link.pk,
        "verified": verified,
    }
    session.create()
    return f"sessionid={session.session_key}"


def socket(path: str, cookie: str | None = None, origin: bytes = ORIGIN) -> WebsocketCommunicator:
    from teleconsult.asgi import application

    headers = [(b"origin", origin), (b"host", b"localhost")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, path, headers=headers)


def frame(kind: str, /, **fields: Any) -> str:
    return json.dumps({"v": 1, "type": kind, **fields})


async def receive(communicator: WebsocketCommunicator, timeout: float = 5) -> dict[str, Any]:
    return json.loads(await communicator.receive_from(timeout=timeout))


async def receive_until(communicator: WebsocketCommunicator, kind: str, timeout: float = 5) -> dict[str, Any]:
    """The next frame of `kind`, skipping others (peer and media events that may come first)."""
    while True:
        message = await receive(communicator, timeout)
        if message["type"] == kind:
            return message


async def closed_with(communicator: WebsocketCommunicator, timeout: float = 5) -> int:
    """Connect and return the close code the server refused with (after skipping any frames)."""
    connected, _ = await communicator.connect(timeout=timeout)
    assert connected
    return await close_code(communicator, timeout)


async def close_code(communicator: WebsocketCommunicator, timeout: float = 5) -> int:
    while True:
        output = await communicator.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return int(output["code"])


def add_participants(visit: Visit, personas: Any) -> dict[str, str]:
    """A consulted specialist (elsewhere), an interpreter and one more specialist: the session cookie of each."""
    from django.db.backends.postgresql.psycopg_any import DateTimeTZRange

    from accounts.models import Role
    from tests.factories import PractitionerProfileFactory, StaffMembershipFactory, confirmed_totp_device

    appointment = visit.appointment
    during = DateTimeTZRange(appointment.start, appointment.end)
    cookies = {}
    for name, role in (
        ("consulted", ParticipantRole.CONSULTED),
        ("interpreter", ParticipantRole.INTERPRETER),
        ("fifth", ParticipantRole.CONSULTED),
    ):
        if role == ParticipantRole.INTERPRETER:
            user = StaffMembershipFactory(user__role=Role.COORDINATOR, establishment=personas.establishment).user
        else:
            user = PractitionerProfileFactory().user
            StaffMembershipFactory(user=user, establishment=personas.other_establishment)
        confirmed_totp_device(user)
        AppointmentParticipant.objects.create(
            appointment=appointment,
            role=role,
            user=user,
            establishment=personas.other_establishment,
            calendar=f"user:{user.pk}",
            during=during,
        )
        cookies[name] = signed_in_cookie(user)
    return cookies


def another_visit(personas: Any) -> Visit:
    """Someone else's visit with the same practitioner, just after the first one (inside its window too)."""
    other = register(personas, given="Juan", surname="Mamani", dni="40221133", birth=dt.date(1990, 1, 2))
    consent_to_visits(personas, other)
    start = timezone.now() + dt.timedelta(minutes=26)
    return Visit(make_appointment(personas, other, start=start), other)
