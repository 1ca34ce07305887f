"""SCH-8 end to end: the appointment services plan the notifications after commit, the real worker sends them."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.db import transaction
from django_tasks_db.models import DBTaskResult

from scheduling import services
from scheduling.joinlinks import join_link_issue
from scheduling.models import AppointmentStatus, CancelReason, JoinLink, Notification, NotificationKind
from scheduling.notifications import join_link_send
from tests.scheduling.factories import local
from tests.scheduling.test_notifications import Clock, event_of, ics_of, run_worker

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def clock(monkeypatch):
    return Clock(monkeypatch)


@pytest.fixture
def sms_file(settings, tmp_path):
    settings.SMS_BACKEND = "scheduling.messaging.FileBackend"
    settings.SMS_FILE_PATH = str(tmp_path / "sms.jsonl")
    return tmp_path / "sms.jsonl"


def live_token(appointment, role):
    return JoinLink.objects.get(
        participant__appointment=appointment, participant__role=role, revoked_at__isnull=True
    ).token


def book(personas, clinic, day, hhmm="09:00"):
    return services.appointment_book(
        visit_type=clinic.visit_type,
        practitioner=personas.practitioner,
        patient=clinic.patient,
        start=local(day, hhmm),
        booked_by=personas.coordinator,
    )


def test_booking_rescheduling_and_cancelling_through_the_services(personas, clinic, sms_file, clock):
    day = clinic.tomorrow + dt.timedelta(days=2)
    with transaction.atomic():
        appointment = book(personas, clinic, day)
        assert not DBTaskResult.objects.exists()  # nothing queued until the booking commits
    run_worker()
    assert sorted(m.to[0] for m in mail.outbox) == ["medico@example.test", "rosa@example.test"]
    to_patient = next(m for m in mail.outbox if m.to == ["rosa@example.test"])
    assert to_patient.subject.startswith("Cita confirmada: ")
    assert live_token(appointment, "patient") in to_patient.body
    uid = f"{appointment.public_id}@teleconsult"
    assert str(event_of(ics_of(to_patient))["UID"]) == uid
    # The patient has no phone on file: no text message.
    assert not sms_file.exists()

    mail.outbox.clear()
    moved = services.appointment_reschedule(appointment=appointment, start=local(day, "10:30"), by=personas.coordinator)
    run_worker()
    assert sorted(m.to[0] for m in mail.outbox) == ["medico@example.test", "rosa@example.test"]
    notice = next(m for m in mail.outbox if m.to == ["rosa@example.test"])
    assert notice.subject.startswith("Cita reprogramada: ")
    assert live_token(moved, "patient") in notice.body
    event = event_of(ics_of(notice))
    assert (str(event["UID"]), int(event["SEQUENCE"])) == (uid, 1)
    assert event.decoded("DTSTART") == local(day, "10:30")

    mail.outbox.clear()
    clock.travel_to(local(day, "09:00") - dt.timedelta(hours=24))
    run_worker()
    assert mail.outbox == []  # the old time's reminders are skipped
    old_reminder = Notification.objects.filter(appointment=appointment, kind=NotificationKind.REMINDER_24H)
    assert {n.last_error for n in old_reminder} == {"appointment_rescheduled"}
    clock.travel_to(local(day, "10:30") - dt.timedelta(hours=24))
    run_worker()
    assert [m.subject.split(":")[0] for m in mail.outbox] == ["Recordatorio"] * 2

    mail.outbox.clear()
    cancelled = services.appointment_cancel(appointment=moved, reason=CancelReason.PATIENT_REQUEST, by=personas.patient)
    assert cancelled.status == AppointmentStatus.CANCELLED
    run_worker()
    notice = next(m for m in mail.outbox if m.to == ["rosa@example.test"])
    assert notice.subject.startswith("Cita cancelada: ")
    calendar = ics_of(notice)
    assert str(calendar["METHOD"]) == "CANCEL"
    assert (str(event_of(calendar)["UID"]), int(event_of(calendar)["SEQUENCE"])) == (uid, 2)

    mail.outbox.clear()
    clock.travel_to(local(day, "10:30") - dt.timedelta(hours=1))
    run_worker()
    assert mail.outbox == []
    one_hour = Notification.objects.filter(appointment=moved, kind=NotificationKind.REMINDER_1H)
    assert {n.last_error for n in one_hour} == {"appointment_cancelled"}


def test_a_coordinator_resends_a_reissued_link(personas, clinic, sms_file, client):
    appointment = book(personas, clinic, clinic.tomorrow + dt.timedelta(days=1))
    run_worker()
    mail.outbox.clear()
    participant = appointment.participants.get(role="patient")
    old_token = live_token(appointment, "patient")
    with transaction.atomic():
        new_token = join_link_issue(participant=participant, by=personas.coordinator)
        join_link_send(participant_id=participant.pk)
    run_worker()
    (message,) = mail.outbox
    assert message.to == ["rosa@example.test"]
    assert new_token in message.body
    assert old_token not in message.body
    # The link in the message is the one the join page accepts (not open yet: the visit is tomorrow);
    # the replaced one is refused as gone.
    sent_path = next(word for word in message.body.split() if "/j/" in word).removeprefix("http://localhost:8000")
    assert client.get(sent_path, follow=True).status_code == 403
    assert client.get(f"/j/{old_token}", follow=True).status_code == 410
