"""SCH-8: appointment notifications planned into the outbox and delivered by the real task worker."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import secrets
import signal
import stat
import threading
import time
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

import icalendar
import pytest
from django.core import mail
from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends import locmem
from django.core.mail.backends.base import BaseEmailBackend
from django.core.management import call_command
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django_tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult
from psycopg.types.range import Range

from accounts.models import User
from audit.actions import AuditAction
from audit.models import AuditEvent
from records.models import Patient, Sex
from scheduling import messaging, tasks
from scheduling.models import (
    Appointment,
    AppointmentParticipant,
    AppointmentStatus,
    JoinLink,
    Modality,
    Notification,
    NotificationChannel,
    NotificationKind,
    NotificationStatus,
    ParticipantRole,
    ServiceType,
    VisitType,
)
from scheduling.notifications import (
    MAX_ATTEMPTS,
    SWEEP_GRACE,
    appointment_event,
    join_link_send,
    notification_deliver,
    notifications_sweep,
)
from tests.factories import PractitionerProfileFactory


@dataclass
class Booking:
    appointment: Appointment
    patient: Patient
    patient_participant: AppointmentParticipant
    practitioner_participant: AppointmentParticipant
    patient_token: str
    practitioner_token: str


def make_patient(**overrides: object) -> Patient:
    values: dict[str, object] = {
        "given_names": "Rosa Elena",
        "paternal_surname": "Quispe",
        "maternal_surname": "Mamani",
        "search_name": "QUISPE MAMANI ROSA ELENA",
        "sex": Sex.FEMALE,
        "birth_date": dt.date(1984, 3, 9),
        "phone": "+51 984 123 456",
        "email": "rosa.quispe@example.pe",
    }
    values.update(overrides)
    return Patient.objects.create(**values)


def issue_link(participant: AppointmentParticipant) -> str:
    now = timezone.now()
    JoinLink.objects.filter(participant=participant, revoked_at__isnull=True).update(revoked_at=now)
    token = secrets.token_urlsafe(32)
    JoinLink.objects.create(
        participant=participant, token_sha256=hashlib.sha256(token.encode()).hexdigest(), token=token
    )
    return token


def participant_for(
    appointment: Appointment, *, role: str, user: User | None = None, patient: Patient | None = None
) -> AppointmentParticipant:
    return AppointmentParticipant.objects.create(
        appointment=appointment,
        role=role,
        user=user,
        patient=patient,
        establishment=appointment.establishment if user else None,
        calendar=f"user:{user.pk}" if user else f"patient:{patient.pk}",  # type: ignore[union-attr]
        during=Range(appointment.start, appointment.end),
    )


def book(
    personas: object,
    *,
    start: dt.datetime,
    patient: Patient | None = None,
    rescheduled_from: Appointment | None = None,
    practitioner: User | None = None,
) -> Booking:
    """A booked teleconsulta for the patient with the practitioner, each with a live join link."""
    establishment = personas.establishment  # type: ignore[attr-defined]
    practitioner = practitioner or personas.practitioner  # type: ignore[attr-defined]
    visit_type, _created = VisitType.objects.get_or_create(
        establishment=establishment,
        name="Consulta de medicina general",
        defaults={
            "specialty": "Medicina general",
            "service_type": ServiceType.TELECONSULTA,
            "modality": Modality.VIDEO,
            "duration_minutes": 20,
        },
    )
    patient = patient or make_patient()
    appointment = Appointment.objects.create(
        establishment=establishment,
        visit_type=visit_type,
        service_type=visit_type.service_type,
        modality=visit_type.modality,
        patient=patient,
        start=start,
        end=start + dt.timedelta(minutes=20),
        status=AppointmentStatus.BOOKED,
        booked_by=personas.coordinator,  # type: ignore[attr-defined]
        confirmed_at=timezone.now(),
        rescheduled_from=rescheduled_from,
        sequence=(rescheduled_from.sequence + 1) if rescheduled_from else 0,
    )
    patient_participant = participant_for(appointment, role=ParticipantRole.PATIENT, patient=patient)
    practitioner_participant = participant_for(appointment, role=ParticipantRole.PRACTITIONER, user=practitioner)
    return Booking(
        appointment,
        patient,
        patient_participant,
        practitioner_participant,
        issue_link(patient_participant),
        issue_link(practitioner_participant),
    )


def cancel(appointment: Appointment, *, status: str = AppointmentStatus.CANCELLED) -> None:
    appointment.status = status
    appointment.cancelled_at = timezone.now()
    appointment.sequence += 1
    appointment.save()
    appointment.participants.update(active=False)


def run_worker() -> None:
    """The real task worker, in batch mode: runs every task that is due, then returns."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)}
    try:
        call_command("db_worker", batch=True, reload=False, startup_delay=False, verbosity=0)
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


class Clock:
    """Moves `django.utils.timezone.now` (which our code, the task queue and the worker all read) forward."""

    def __init__(self, monkeypatch: object) -> None:
        self.offset = dt.timedelta(0)
        real_now = timezone.now

        def now() -> dt.datetime:
            return real_now() + self.offset

        monkeypatch.setattr(timezone, "now", now)  # type: ignore[attr-defined]

    def travel_to(self, moment: dt.datetime) -> None:
        self.offset += moment - timezone.now()

    def advance(self, delta: dt.timedelta) -> None:
        self.offset += delta


# --- Tests ---

pytestmark = pytest.mark.django_db(transaction=True)

LIMA = zoneinfo.ZoneInfo("America/Lima")


class FailingEmailBackend(BaseEmailBackend):
    """An SMTP server that refuses every message."""

    def send_messages(self, email_messages):  # type: ignore[no-untyped-def]
        raise ConnectionRefusedError("smtp.example.invalid refused the connection")


class SlowEmailBackend(locmem.EmailBackend):
    """A mail server that takes a while to accept a message: two deliveries of one row overlap."""

    def send_messages(self, messages):  # type: ignore[no-untyped-def]
        time.sleep(1)
        return super().send_messages(messages)


class FailingTextBackend(messaging.BaseBackend):
    def send(self, message: messaging.TextMessage) -> None:
        raise messaging.MessagingError("gateway down")


@pytest.fixture
def sms_file(settings, tmp_path):
    settings.SMS_BACKEND = "scheduling.messaging.FileBackend"
    settings.SMS_FILE_PATH = str(tmp_path / "sms.jsonl")
    return tmp_path / "sms.jsonl"


@pytest.fixture
def clock(monkeypatch):
    return Clock(monkeypatch)


def sms_lines(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def ics_of(message: EmailMultiAlternatives) -> icalendar.Calendar:
    (attachment,) = [a for a in message.attachments if a[2].startswith("text/calendar")]
    return icalendar.Calendar.from_ical(attachment[1])


def event_of(calendar: icalendar.Calendar) -> icalendar.Event:
    (event,) = calendar.walk("VEVENT")
    return event


def rows(**filters: object) -> list[Notification]:
    return list(Notification.objects.filter(**filters).order_by("pk"))


def in_days(days: int, hour: int = 10) -> dt.datetime:
    local = (timezone.now().astimezone(LIMA) + dt.timedelta(days=days)).replace(
        hour=hour, minute=0, second=0, microsecond=0
    )
    return local.astimezone(dt.UTC)


def test_booking_sends_a_confirmation_with_an_invitation_to_each_participant(personas, sms_file):
    start = in_days(3)
    booking = book(personas, start=start)
    with transaction.atomic():
        appointment_event(appointment_id=booking.appointment.pk, event="booked")
        # Planned, but nothing queued or sent while the transaction is open.
        assert Notification.objects.count() > 0
        assert not DBTaskResult.objects.exists()
    assert DBTaskResult.objects.exists()
    assert mail.outbox == []

    run_worker()

    by_address = {message.to[0]: message for message in mail.outbox}
    assert set(by_address) == {"rosa.quispe@example.pe", "medico@example.test"}
    to_patient = by_address["rosa.quispe@example.pe"]
    assert to_patient.subject.startswith("Cita confirmada: ")
    assert "10:00" in to_patient.subject
    text = to_patient.body
    assert f"http://localhost:8000/j/{booking.patient_token}" in text
    assert booking.practitioner_token not in text
    html = to_patient.alternatives[0][0]
    assert f"http://localhost:8000/j/{booking.patient_token}" in html
    for content in (text, html, to_patient.subject):
        # No name and no clinical detail (the specialty) anywhere in the message.
        assert "Quispe" not in content
        assert "Rosa" not in content
        assert "Medicina general" not in content

    calendar = ics_of(to_patient)
    assert str(calendar["METHOD"]) == "REQUEST"
    event = event_of(calendar)
    assert str(event["UID"]) == f"{booking.appointment.public_id}@teleconsult"
    assert int(event["SEQUENCE"]) == 0
    assert event.decoded("DTSTART") == start
    assert event.decoded("DTSTART").utcoffset() == dt.timedelta(0)
    assert event.decoded("DTEND") == start + dt.timedelta(minutes=20)
    assert "Quispe" not in str(event["SUMMARY"]) and "Rosa" not in str(event["SUMMARY"])
    assert "Teleconsulta" in str(event["SUMMARY"])
    assert booking.patient_token in str(event["DESCRIPTION"])
    assert str(event["STATUS"]) == "CONFIRMED"

    to_practitioner = by_address["medico@example.test"]
    assert booking.practitioner_token in to_practitioner.body
    assert booking.patient_token not in to_practitioner.body
    assert booking.patient_token not in ics_of(to_practitioner).to_ical().decode()
    assert str(event_of(ics_of(to_practitioner))["UID"]) == str(event["UID"])

    (sms,) = sms_lines(sms_file)
    assert sms["to"] == "+51 984 123 456"
    assert sms["body"].startswith("Teleconsult: Su cita está confirmada")
    assert f"/j/{booking.patient_token}" in sms["body"]
    assert "Quispe" not in sms["body"]

    confirmations = rows(kind=NotificationKind.CONFIRMATION)
    assert [n.status for n in confirmations] == [NotificationStatus.SENT] * 3
    sent = AuditEvent.objects.filter(action=AuditAction.NOTIFICATION_SENT.value)
    assert sent.count() == 3
    assert {e.object_id for e in sent} == {str(n.pk) for n in confirmations}
    for event_row in sent:
        assert set(event_row.details) == {"appointment", "participant", "kind", "channel", "attempt"}
    # Both reminders wait in the outbox for their time.
    reminders = rows(kind__in=[NotificationKind.REMINDER_24H, NotificationKind.REMINDER_1H])
    assert len(reminders) == 6
    assert {n.status for n in reminders} == {NotificationStatus.PENDING}
    assert {n.next_attempt_at for n in reminders} == {start - dt.timedelta(hours=24), start - dt.timedelta(hours=1)}


def test_each_participant_reads_in_their_language_and_time_zone(personas, sms_file):
    personas.practitioner.preferred_language = "en"
    personas.practitioner.time_zone = "Europe/Madrid"
    personas.practitioner.save()
    start = in_days(3)
    booking = book(personas, start=start, patient=make_patient(preferred_language="en"))
    appointment_event(appointment_id=booking.appointment.pk, event="booked")
    run_worker()

    by_address = {message.to[0]: message for message in mail.outbox}
    english = by_address["rosa.quispe@example.pe"]
    assert english.subject.startswith("Appointment confirmed: ")
    assert "Your appointment is confirmed" in english.body
    assert "Cita" not in english.body
    assert "Lima time" in english.body
    assert "Teleconsultation" in str(event_of(ics_of(english))["SUMMARY"])
    assert json.loads(sms_file.read_text().splitlines()[0])["body"].startswith("Teleconsult: Your appointment")
    # The specialist abroad also sees the time in their own zone (SCH-6).
    madrid = start.astimezone(zoneinfo.ZoneInfo("Europe/Madrid"))
    assert "Madrid time" in by_address["medico@example.test"].body
    assert madrid.strftime("%-I") in by_address["medico@example.test"].body

    spanish_patient = make_patient(given_names="Luz", search_name="MAMANI LUZ", email="luz@example.pe", phone=None)
    other = book(personas, start=in_days(4), patient=spanish_patient)
    mail.outbox.clear()
    appointment_event(appointment_id=other.appointment.pk, event="booked")
    run_worker()
    to_luz = next(m for m in mail.outbox if m.to == ["luz@example.pe"])
    assert to_luz.subject.startswith("Cita confirmada: ")
    assert "hora de Lima" in to_luz.body
    # No phone: the text message is skipped, not failed.
    (text_row,) = rows(
        appointment=other.appointment, channel=NotificationChannel.SMS, kind=NotificationKind.CONFIRMATION
    )
    assert (text_row.status, text_row.last_error) == (NotificationStatus.SKIPPED, "no_address")


def test_a_reminder_is_sent_once_even_when_its_task_runs_twice(personas, sms_file, clock):
    start = in_days(3)
    booking = book(personas, start=start)
    appointment_event(appointment_id=booking.appointment.pk, event="booked")
    run_worker()
    mail.outbox.clear()
    sms_file.unlink()

    clock.travel_to(start - dt.timedelta(hours=24) + dt.timedelta(seconds=5))
    run_worker()
    assert sorted(m.to[0] for m in mail.outbox) == ["medico@example.test", "rosa.quispe@example.pe"]
    assert all(m.subject.startswith("Recordatorio: su cita es mañana") for m in mail.outbox)
    assert len(sms_lines(sms_file)) == 1
    reminders = rows(kind=NotificationKind.REMINDER_24H)
    assert {n.status for n in reminders} == {NotificationStatus.SENT}

    # The same tasks queued again (a worker restarted mid-batch, a duplicate from the sweep), and the event
    # planned again: nothing new goes out.
    for notification in reminders:
        tasks.deliver_notification.enqueue(notification_id=notification.pk)
    appointment_event(appointment_id=booking.appointment.pk, event="booked")
    run_worker()
    assert len(mail.outbox) == 2
    assert len(sms_lines(sms_file)) == 1
    assert AuditEvent.objects.filter(action=AuditAction.NOTIFICATION_SENT.value).count() == 3 + 3

    clock.travel_to(start - dt.timedelta(hours=1))
    run_worker()
    assert len(mail.outbox) == 4
    assert mail.outbox[-1].subject.startswith("Recordatorio: su cita empieza en una hora")


def test_reminders_of_a_cancelled_appointment_are_skipped_and_a_cancellation_is_sent(personas, sms_file, clock):
    start = in_days(3)
    booking = book(personas, start=start)
    appointment_event(appointment_id=booking.appointment.pk, event="booked")
    run_worker()
    mail.outbox.clear()

    cancel(booking.appointment)
    appointment_event(appointment_id=booking.appointment.pk, event="cancelled")
    run_worker()
    assert sorted(m.to[0] for m in mail.outbox) == ["medico@example.test", "rosa.quispe@example.pe"]
    notice = next(m for m in mail.outbox if m.to == ["rosa.quispe@example.pe"])
    assert notice.subject.startswith("Cita cancelada: ")
    assert booking.patient_token not in notice.body
    calendar = ics_of(notice)
    assert str(calendar["METHOD"]) == "CANCEL"
    event = event_of(calendar)
    assert str(event["UID"]) == f"{booking.appointment.public_id}@teleconsult"
    assert int(event["SEQUENCE"]) == 1
    assert str(event["STATUS"]) == "CANCELLED"
    assert "cancelada" in sms_lines(sms_file)[-1]["body"]

    mail.outbox.clear()
    clock.travel_to(start - dt.timedelta(hours=1))
    run_worker()
    assert mail.outbox == []
    reminders = rows(kind__in=[NotificationKind.REMINDER_24H, NotificationKind.REMINDER_1H])
    assert {(n.status, n.last_error) for n in reminders} == {(NotificationStatus.SKIPPED, "appointment_cancelled")}


def test_a_reschedule_sends_the_new_time_under_the_same_uid_and_only_the_new_reminders(personas, sms_file, clock):
    old_start = in_days(2)
    old = book(personas, start=old_start)
    appointment_event(appointment_id=old.appointment.pk, event="booked")
    run_worker()
    mail.outbox.clear()

    cancel(old.appointment, status=AppointmentStatus.RESCHEDULED)
    new_start = in_days(4, hour=15)
    new = book(personas, start=new_start, patient=old.patient, rescheduled_from=old.appointment)
    appointment_event(appointment_id=new.appointment.pk, event="rescheduled")
    run_worker()
    notice = next(m for m in mail.outbox if m.to == ["rosa.quispe@example.pe"])
    assert notice.subject.startswith("Cita reprogramada: ")
    assert "15:00" in notice.subject
    assert new.patient_token in notice.body
    event = event_of(ics_of(notice))
    # The same calendar event as the first invitation, one version later.
    assert str(event["UID"]) == f"{old.appointment.public_id}@teleconsult"
    assert int(event["SEQUENCE"]) == new.appointment.sequence > 0
    assert event.decoded("DTSTART") == new_start

    mail.outbox.clear()
    clock.travel_to(old_start - dt.timedelta(hours=24) + dt.timedelta(minutes=1))
    run_worker()
    assert mail.outbox == []
    old_reminders = rows(appointment=old.appointment, kind=NotificationKind.REMINDER_24H)
    assert {(n.status, n.last_error) for n in old_reminders} == {
        (NotificationStatus.SKIPPED, "appointment_rescheduled")
    }

    clock.travel_to(new_start - dt.timedelta(hours=24) + dt.timedelta(minutes=1))
    run_worker()
    assert sorted(m.to[0] for m in mail.outbox) == ["medico@example.test", "rosa.quispe@example.pe"]
    assert all(new.patient_token in m.body or new.practitioner_token in m.body for m in mail.outbox)


def test_a_reminder_planned_for_another_start_is_skipped(personas, sms_file, clock):
    start = in_days(3)
    booking = book(personas, start=start)
    appointment_event(appointment_id=booking.appointment.pk, event="booked")
    run_worker()
    mail.outbox.clear()
    # Moved in place (not through a reschedule): the planned reminders no longer match its start.
    Appointment.objects.filter(pk=booking.appointment.pk).update(
        start=start + dt.timedelta(hours=3), end=start + dt.timedelta(hours=3, minutes=20)
    )
    clock.travel_to(start - dt.timedelta(hours=24))
    run_worker()
    assert mail.outbox == []
    assert {n.last_error for n in rows(kind=NotificationKind.REMINDER_24H)} == {"appointment_moved"}


def test_a_failing_send_is_retried_with_backoff_then_given_up(personas, sms_file, settings, clock):
    settings.EMAIL_BACKEND = f"{__name__}.FailingEmailBackend"
    settings.SMS_BACKEND = f"{__name__}.FailingTextBackend"
    booking = book(personas, start=in_days(5))
    appointment_event(appointment_id=booking.appointment.pk, event="booked")
    started = timezone.now()
    run_worker()

    (to_patient,) = rows(
        kind=NotificationKind.CONFIRMATION, channel=NotificationChannel.EMAIL, participant__role="patient"
    )
    assert (to_patient.status, to_patient.attempts, to_patient.last_error) == (
        NotificationStatus.PENDING,
        1,
        "ConnectionRefusedError",
    )
    assert started + dt.timedelta(minutes=1) <= to_patient.next_attempt_at <= timezone.now() + dt.timedelta(minutes=1)
    (text,) = rows(kind=NotificationKind.CONFIRMATION, channel=NotificationChannel.SMS)
    assert (text.attempts, text.last_error) == (1, "MessagingError")
    retry = DBTaskResult.objects.filter(
        args_kwargs__kwargs__notification_id=to_patient.pk, status=TaskResultStatus.READY
    ).get()
    assert retry.run_after == to_patient.next_attempt_at

    # Not due yet: the worker leaves it alone.
    run_worker()
    to_patient.refresh_from_db()
    assert to_patient.attempts == 1

    delays = []
    for attempt in range(2, MAX_ATTEMPTS + 1):
        previous = to_patient.next_attempt_at
        clock.travel_to(previous)
        run_worker()
        to_patient.refresh_from_db()
        assert to_patient.attempts == attempt
        if attempt < MAX_ATTEMPTS:
            delays.append(to_patient.next_attempt_at - previous)
    # Exponential backoff: 2, 4, 8 minutes after the first one-minute wait.
    assert [round(d.total_seconds() / 60) for d in delays] == [2, 4, 8]
    assert to_patient.status == NotificationStatus.FAILED
    assert mail.outbox == []

    failures = AuditEvent.objects.filter(action=AuditAction.NOTIFICATION_FAILED.value, object_id=str(to_patient.pk))
    assert failures.count() == MAX_ATTEMPTS
    assert [e.details["final"] for e in failures.order_by("id")] == [False] * (MAX_ATTEMPTS - 1) + [True]
    assert all(e.details["error"] == "ConnectionRefusedError" for e in failures)

    # Given up for good: once the server works again the sweep leaves it alone, while the practitioner's
    # message, a few milliseconds behind on the same schedule and still being retried, goes out.
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    clock.advance(dt.timedelta(hours=1))
    notifications_sweep()
    run_worker()
    assert [m.to for m in mail.outbox] == [["medico@example.test"]]


def test_nothing_is_queued_before_commit_and_nothing_sent_after_a_rollback(personas, sms_file):
    booking = book(personas, start=in_days(3))

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        appointment_event(appointment_id=booking.appointment.pk, event="booked")
        assert Notification.objects.exists()
        assert not DBTaskResult.objects.exists()
        raise Abort
    assert not Notification.objects.exists()
    assert not DBTaskResult.objects.exists()
    run_worker()
    assert mail.outbox == []
    assert sms_lines(sms_file) == []


def test_an_unknown_event_is_refused(personas):
    booking = book(personas, start=in_days(3))
    with pytest.raises(ValueError, match="Unknown appointment event"):
        appointment_event(appointment_id=booking.appointment.pk, event="deleted")


def test_resending_a_link_sends_the_link_that_is_live_at_send_time(personas, sms_file):
    booking = book(personas, start=in_days(2))
    join_link_send(participant_id=booking.patient_participant.pk)
    join_link_send(participant_id=booking.practitioner_participant.pk)
    # Reissued before the worker got to the message: only the new link may go out.
    new_token = issue_link(booking.patient_participant)
    run_worker()
    to_patient = next(m for m in mail.outbox if m.to == ["rosa.quispe@example.pe"])
    assert to_patient.subject.startswith("Su enlace para la cita del ")
    assert new_token in to_patient.body
    assert booking.patient_token not in to_patient.body
    assert new_token in sms_lines(sms_file)[0]["body"]
    assert any(booking.practitioner_token in m.body for m in mail.outbox if m.to == ["medico@example.test"])

    # Each resend is a message of its own; a participant without a live link gets nothing.
    JoinLink.objects.filter(participant=booking.patient_participant).update(revoked_at=timezone.now())
    join_link_send(participant_id=booking.patient_participant.pk)
    run_worker()
    assert len(mail.outbox) == 2
    latest = rows(participant=booking.patient_participant, kind=NotificationKind.JOIN_LINK)[-2:]
    assert {(n.status, n.last_error) for n in latest} == {(NotificationStatus.SKIPPED, "no_join_link")}


def test_the_sweep_queues_a_message_whose_task_was_lost(personas, sms_file, clock):
    booking = book(personas, start=in_days(3))
    appointment_event(appointment_id=booking.appointment.pk, event="booked")
    DBTaskResult.objects.all().delete()  # the queue lost every entry (or the enqueue after commit never ran)
    run_worker()
    assert mail.outbox == []

    assert notifications_sweep() == 0  # not overdue yet: their own tasks may still come
    clock.advance(SWEEP_GRACE + dt.timedelta(seconds=1))
    assert notifications_sweep() == 3  # the three confirmations; the reminders are not due
    assert notifications_sweep() == 0  # not queued again right away
    run_worker()
    assert sorted(m.to[0] for m in mail.outbox) == ["medico@example.test", "rosa.quispe@example.pe"]
    assert len(sms_lines(sms_file)) == 1


def test_reminders_already_past_at_booking_are_not_planned(personas, sms_file):
    start = timezone.now() + dt.timedelta(minutes=90)
    booking = book(personas, start=start)
    appointment_event(appointment_id=booking.appointment.pk, event="booked")
    assert {n.kind for n in rows()} == {NotificationKind.CONFIRMATION, NotificationKind.REMINDER_1H}


def test_no_join_token_reaches_the_logs_the_audit_trail_or_the_queue(personas, sms_file, settings, clock, caplog):
    caplog.set_level(logging.DEBUG)
    booking = book(personas, start=in_days(2))
    appointment_event(appointment_id=booking.appointment.pk, event="booked")
    join_link_send(participant_id=booking.patient_participant.pk)
    run_worker()
    settings.EMAIL_BACKEND = f"{__name__}.FailingEmailBackend"
    clock.travel_to(booking.appointment.start - dt.timedelta(hours=24))
    run_worker()
    assert mail.outbox and rows(status=NotificationStatus.PENDING, attempts=1)

    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "Notification" in logged  # the records were captured
    stored = [
        *(str(row) for row in AuditEvent.objects.values_list("details", "object_id")),
        *(str(row) for row in DBTaskResult.objects.values_list("args_kwargs", "return_value", "traceback")),
        *(n.last_error for n in Notification.objects.all()),
    ]
    for token in (booking.patient_token, booking.practitioner_token):
        assert token not in logged
        assert not any(token in text for text in stored)
    for personal in ("rosa.quispe@example.pe", "+51 984 123 456", "Quispe"):
        assert personal not in logged
        assert not any(personal in text for text in stored)


def test_the_file_backend_appends_private_json_lines(tmp_path):
    path = tmp_path / "out" / "sms.jsonl"
    backend = messaging.FileBackend(path)
    backend.send(messaging.TextMessage(to="+51 900 000 001", body="Hola ñandú"))
    backend.send(messaging.TextMessage(to="+51 900 000 002", body="Segundo"))
    lines = sms_lines(path)
    assert [(line["to"], line["body"]) for line in lines] == [
        ("+51 900 000 001", "Hola ñandú"),
        ("+51 900 000 002", "Segundo"),
    ]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_console_backend_prints_the_message():
    stream = io.StringIO()
    messaging.ConsoleBackend(stream).send(messaging.TextMessage(to="+51 900 000 001", body="Hola"))
    assert "+51 900 000 001" in stream.getvalue()
    assert "Hola" in stream.getvalue()


def test_the_backend_is_chosen_by_the_setting(settings):
    settings.SMS_BACKEND = "scheduling.messaging.ConsoleBackend"
    assert isinstance(messaging.get_backend(), messaging.ConsoleBackend)
    del settings.SMS_BACKEND
    assert isinstance(messaging.get_backend(), messaging.FileBackend)
    # In production nothing is written to disk by default: without a configured provider, no text messages.
    settings.PRODUCTION = True
    assert messaging.get_backend() is None


def test_without_a_text_backend_in_production_text_messages_are_skipped(personas, settings, sms_file):
    settings.PRODUCTION = True
    del settings.SMS_BACKEND
    booking = book(personas, start=in_days(3))
    appointment_event(appointment_id=booking.appointment.pk, event="booked")
    run_worker()
    (text,) = rows(kind=NotificationKind.CONFIRMATION, channel=NotificationChannel.SMS)
    assert (text.status, text.last_error) == (NotificationStatus.SKIPPED, "no_text_backend")
    assert len(mail.outbox) == 2


def test_the_sweep_command_queues_overdue_notifications_and_expires_lapsed_holds(personas, sms_file, clock):
    booking = book(personas, start=in_days(3))
    appointment_event(appointment_id=booking.appointment.pk, event="booked")
    DBTaskResult.objects.all().delete()
    held = book(personas, start=in_days(4), patient=make_patient(given_names="Luz", search_name="MAMANI LUZ"))
    Appointment.objects.filter(pk=held.appointment.pk).update(
        status=AppointmentStatus.HELD, hold_expires_at=timezone.now() + dt.timedelta(minutes=10)
    )
    clock.advance(dt.timedelta(minutes=11))
    out = io.StringIO()
    call_command("scheduling_sweep", stdout=out)
    assert out.getvalue().strip() == "Queued 3 overdue notifications; expired 1 lapsed holds."
    held.appointment.refresh_from_db()
    assert held.appointment.status == AppointmentStatus.EXPIRED
    run_worker()
    assert len(mail.outbox) == 2


def deliver_concurrently(notification_id: int, workers: int = 2) -> list[str]:
    """The same row delivered by several workers at once (a duplicate queue entry, two worker processes)."""
    barrier = threading.Barrier(workers)
    outcomes: list[str] = []

    def deliver() -> None:
        try:
            barrier.wait()
            outcomes.append(notification_deliver(notification_id=notification_id))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return sorted(outcomes)


@pytest.fixture
def confirmation_to_patient(personas, settings, sms_file):
    settings.EMAIL_BACKEND = f"{__name__}.SlowEmailBackend"
    booking = book(personas, start=in_days(3))
    appointment_event(appointment_id=booking.appointment.pk, event="booked")
    (notification,) = rows(
        kind=NotificationKind.CONFIRMATION, channel=NotificationChannel.EMAIL, participant__role="patient"
    )
    return notification


def test_without_the_row_lock_two_workers_send_the_same_message_twice(confirmation_to_patient, monkeypatch):
    # The race the lock prevents, made visible: with the lock gone both workers see the row pending.
    monkeypatch.setattr(QuerySet, "select_for_update", lambda self, **kwargs: self)
    assert deliver_concurrently(confirmation_to_patient.pk) == ["sent", "sent"]
    assert len(mail.outbox) == 2


def test_with_the_row_lock_two_workers_send_the_message_once(confirmation_to_patient):
    # The second worker skips the locked row ("busy"), or, had it come after the first one committed, finds
    # it sent: either way one message.
    assert deliver_concurrently(confirmation_to_patient.pk) in (["busy", "sent"], ["sent", "sent"])
    assert [m.to for m in mail.outbox] == [["rosa.quispe@example.pe"]]
    assert (
        AuditEvent.objects.filter(
            action=AuditAction.NOTIFICATION_SENT.value, object_id=str(confirmation_to_patient.pk)
        ).count()
        == 1
    )


def test_a_reschedule_to_another_practitioner_cancels_for_one_and_confirms_for_the_other(personas, sms_file):
    old = book(personas, start=in_days(2))
    appointment_event(appointment_id=old.appointment.pk, event="booked")
    run_worker()
    mail.outbox.clear()

    colleague = PractitionerProfileFactory(user__email="colega@example.test").user
    cancel(old.appointment, status=AppointmentStatus.RESCHEDULED)
    old.appointment.refresh_from_db()
    new = book(
        personas, start=in_days(3), patient=old.patient, rescheduled_from=old.appointment, practitioner=colleague
    )
    appointment_event(appointment_id=new.appointment.pk, event="rescheduled")
    run_worker()
    by_address = {m.to[0]: m for m in mail.outbox}
    assert set(by_address) == {"rosa.quispe@example.pe", "medico@example.test", "colega@example.test"}
    assert by_address["rosa.quispe@example.pe"].subject.startswith("Cita reprogramada: ")
    assert by_address["colega@example.test"].subject.startswith("Cita confirmada: ")
    dropped = by_address["medico@example.test"]
    assert dropped.subject.startswith("Cita cancelada: ")
    calendar = ics_of(dropped)
    assert str(calendar["METHOD"]) == "CANCEL"
    # The event the first practitioner holds, one version later than their invitation.
    event = event_of(calendar)
    assert str(event["UID"]) == f"{old.appointment.public_id}@teleconsult"
    assert int(event["SEQUENCE"]) == old.appointment.sequence + 1
    for message in mail.outbox:
        assert str(event_of(ics_of(message))["UID"]) == f"{old.appointment.public_id}@teleconsult"
