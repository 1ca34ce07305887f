"""Appointment notifications (SCH-8): planned into an outbox, delivered by the background worker, never in a request.

`appointment_event` and `join_link_send` write Notification rows (one per participant, kind and channel, made
unique by an idempotency key) and queue a delivery task for each once the transaction commits. The worker's
`notification_deliver` locks the row, sends it at most once, skips it when the appointment has changed since,
and retries a failed send with exponential backoff. `notifications_sweep` queues again whatever is due and
still pending, so a lost queue entry delays a message but never loses it.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from audit import services as audit
from audit.actions import AuditAction, Outcome
from scheduling import messaging
from scheduling.models import (
    Appointment,
    AppointmentParticipant,
    AppointmentStatus,
    JoinLink,
    Notification,
    NotificationChannel,
    NotificationKind,
    NotificationStatus,
    ParticipantRole,
)
from scheduling.notifications import content
from scheduling.notifications.content import Recipient

logger = logging.getLogger(__name__)

EVENTS = {
    "booked": NotificationKind.CONFIRMATION,
    "rescheduled": NotificationKind.RESCHEDULED,
    "cancelled": NotificationKind.CANCELLED,
}
REMINDERS = {NotificationKind.REMINDER_24H: dt.timedelta(hours=24), NotificationKind.REMINDER_1H: dt.timedelta(hours=1)}
# Attempts before a message is given up as failed, and the first retry delay (then doubled each time:
# 1, 2, 4, 8 minutes).
MAX_ATTEMPTS = 5
RETRY_BASE_DELAY = dt.timedelta(minutes=1)
# A task that starts a little before its row's due time (clocks of two machines) still sends.
EARLY_TOLERANCE = dt.timedelta(seconds=30)
# The sweep queues again only rows overdue by this much: their own task had its chance to run.
SWEEP_GRACE = dt.timedelta(minutes=2)
SWEEP_BATCH = 500


# --- Planning (called by the services after commit, or inside their transaction) ---


def appointment_event(*, appointment_id: int, event: str) -> None:
    """Plan the messages an appointment change calls for ("booked", "rescheduled", "cancelled") and queue
    them after commit. Planning again is harmless: the idempotency keys make each message exist once."""
    if event not in EVENTS:
        raise ValueError(f"Unknown appointment event: {event!r}")
    kind = EVENTS[event]
    now = timezone.now()
    with transaction.atomic():
        appointment = Appointment.objects.get(pk=appointment_id)
        participants = list(appointment.participants.order_by("pk"))
        if kind != NotificationKind.CANCELLED:
            # A cancellation ends the participants' calendar blocks; the notice still goes to all of them.
            participants = [p for p in participants if p.active]
        old = None
        if kind == NotificationKind.RESCHEDULED and appointment.rescheduled_from_id:
            old = Appointment.objects.get(pk=appointment.rescheduled_from_id)
        before = {p.calendar: p for p in old.participants.order_by("pk")} if old else {}
        wanted: list[Notification] = []
        for participant in participants:
            # Someone new to the appointment (a practitioner taking a rescheduled visit over) gets a confirmation.
            new_here = kind == NotificationKind.RESCHEDULED and participant.calendar not in before
            own_kind = NotificationKind.CONFIRMATION if new_here else kind
            for channel in _channels(participant):
                wanted.append(_unsaved(appointment, participant, own_kind, channel))
                if kind == NotificationKind.CANCELLED:
                    continue
                for reminder, ahead in REMINDERS.items():
                    due = appointment.start - ahead
                    if due > now:
                        wanted.append(_unsaved(appointment, participant, reminder, channel, due=due))
        if old is not None:
            # Someone in the old appointment but not in the new one gets the old appointment's cancellation.
            staying = {p.calendar for p in participants}
            for calendar, participant in before.items():
                if calendar not in staying:
                    for channel in _channels(participant):
                        wanted.append(_unsaved(old, participant, NotificationKind.CANCELLED, channel))
        _enqueue_after_commit(_create_missing(wanted))


def join_link_send(*, participant_id: int) -> None:
    """Queue a message with the participant's current join link (a coordinator's "resend link")."""
    with transaction.atomic():
        participant = AppointmentParticipant.objects.select_related("appointment").get(pk=participant_id)
        wanted = [
            # Every resend is a message of its own: the key names this request, not the link.
            _unsaved(
                participant.appointment,
                participant,
                NotificationKind.JOIN_LINK,
                channel,
                due=timezone.now(),
                unique=uuid.uuid4().hex,
            )
            for channel in _channels(participant)
        ]
        _enqueue_after_commit(_create_missing(wanted))


def notifications_sweep(*, now: dt.datetime | None = None) -> int:
    """Queue again the pending messages overdue by SWEEP_GRACE (their queue entry was lost or is stuck)."""
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(
            Notification.objects.select_for_update(skip_locked=True)
            .filter(status=NotificationStatus.PENDING, next_attempt_at__lte=now - SWEEP_GRACE)
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:SWEEP_BATCH]
        )
        # Not picked again before another grace period has passed.
        Notification.objects.filter(pk__in=ids).update(next_attempt_at=now)
        transaction.on_commit(lambda: _enqueue_all([(pk, None) for pk in ids]))
    if ids:
        logger.info("Notification sweep queued %d overdue messages.", len(ids))
    return len(ids)


def _channels(participant: AppointmentParticipant) -> list[str]:
    # Whether the patient has an e-mail or a phone is looked at when sending: planning reads no personal data.
    if participant.role == ParticipantRole.PATIENT:
        return [NotificationChannel.EMAIL, NotificationChannel.SMS]
    return [NotificationChannel.EMAIL]


def _key(appointment: Appointment, participant: AppointmentParticipant, kind: str, channel: str, unique: str) -> str:
    key = f"a{appointment.pk}:p{participant.pk}:{kind}:{channel}"
    if kind in REMINDERS:
        # A reminder belongs to one start time: a moved appointment gets new reminders.
        key += f":{appointment.start.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}"
    if unique:
        key += f":{unique}"
    return key


def _unsaved(
    appointment: Appointment,
    participant: AppointmentParticipant,
    kind: str,
    channel: str,
    *,
    due: dt.datetime | None = None,
    unique: str = "",
) -> Notification:
    return Notification(
        idempotency_key=_key(appointment, participant, kind, channel, unique),
        appointment=appointment,
        participant=participant,
        kind=kind,
        channel=channel,
        appointment_start=appointment.start,
        next_attempt_at=due or timezone.now(),
    )


def _create_missing(wanted: list[Notification]) -> list[Notification]:
    """Save the messages that do not exist yet (by idempotency key) and return them: two statements for a
    booking's nine messages, where one get_or_create each took four."""
    existing = set(
        Notification.objects.filter(idempotency_key__in=[n.idempotency_key for n in wanted]).values_list(
            "idempotency_key", flat=True
        )
    )
    missing = [n for n in wanted if n.idempotency_key not in existing]
    if not missing:
        return []
    try:
        with transaction.atomic():
            return Notification.objects.bulk_create(missing)
    except IntegrityError:
        # Another process planned some of them at the same moment: fall back to one at a time.
        return [n for n in (_plan_one(n) for n in missing) if n is not None]


def _plan_one(candidate: Notification) -> Notification | None:
    notification, created = Notification.objects.get_or_create(
        idempotency_key=candidate.idempotency_key,
        defaults={
            "appointment": candidate.appointment,
            "participant": candidate.participant,
            "kind": candidate.kind,
            "channel": candidate.channel,
            "appointment_start": candidate.appointment_start,
            "next_attempt_at": candidate.next_attempt_at,
        },
    )
    return notification if created else None


def _enqueue_after_commit(notifications: list[Notification]) -> None:
    due: list[tuple[int, dt.datetime | None]] = [(n.pk, n.next_attempt_at) for n in notifications]
    transaction.on_commit(lambda: _enqueue_all(due))


def _enqueue_all(due: list[tuple[int, dt.datetime | None]]) -> None:
    # One transaction for the batch: one commit instead of one per queued message.
    with transaction.atomic():
        for notification_id, run_after in due:
            _enqueue(notification_id, run_after)


def _enqueue(notification_id: int, run_after: dt.datetime | None = None) -> None:
    from scheduling import tasks  # the task module imports this one

    task = tasks.deliver_notification
    if run_after is not None and run_after > timezone.now():
        task = task.using(run_after=run_after)
    task.enqueue(notification_id=notification_id)


# --- Delivery (runs in the worker) ---


def notification_deliver(*, notification_id: int) -> str:
    """Send one planned message unless it was sent, is being sent, or no longer applies. Returns its outcome."""
    with transaction.atomic():
        notification = (
            Notification.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("appointment__establishment", "participant__user", "participant__patient__user")
            .filter(pk=notification_id)
            .first()
        )
        if notification is None:
            return "busy"  # another worker holds it (or it does not exist)
        if notification.status != NotificationStatus.PENDING:
            return str(notification.status)
        now = timezone.now()
        if notification.next_attempt_at > now + EARLY_TOLERANCE:
            due = notification.next_attempt_at
            transaction.on_commit(lambda: _enqueue(notification_id, due))
            return "not_due"
        reason = _skip_reason(notification, now)
        if reason:
            return _skip(notification, reason)
        try:
            recipient = _recipient(notification)  # decrypts the patient's contact data
        except DatabaseError:
            raise
        except Exception as exc:
            # A key that cannot be unwrapped (say) is retried like a send error, then marked failed.
            return _failed_attempt(notification, exc, now)
        if recipient is None:
            return _skip(notification, "no_address")
        text_backend = messaging.get_backend() if notification.channel == NotificationChannel.SMS else None
        if notification.channel == NotificationChannel.SMS and text_backend is None:
            return _skip(notification, "no_text_backend")
        join_url = _join_url(notification.participant) if notification.kind != NotificationKind.CANCELLED else None
        if notification.kind == NotificationKind.JOIN_LINK and join_url is None:
            return _skip(notification, "no_join_link")
        try:
            if notification.channel == NotificationChannel.EMAIL:
                content.email_message(notification, recipient, join_url, now).send()
            else:
                assert text_backend is not None
                body = content.text_body(notification, recipient, join_url)
                text_backend.send(messaging.TextMessage(to=recipient.address, body=body))
        except Exception as exc:
            # Whatever the mail server or the messaging provider raised: retried later; only the exception's
            # class name is kept, its message may quote an address.
            return _failed_attempt(notification, exc, now)
        notification.attempts += 1
        notification.status = NotificationStatus.SENT
        notification.sent_at = now
        notification.last_error = ""
        notification.save(update_fields=["attempts", "status", "sent_at", "last_error"])
        _audit(notification, AuditAction.NOTIFICATION_SENT, Outcome.SUCCESS)
        logger.info("Notification %s sent (%s, %s).", notification.pk, notification.kind, notification.channel)
        return "sent"


def _skip_reason(notification: Notification, now: dt.datetime) -> str:
    appointment = notification.appointment
    if notification.kind == NotificationKind.CANCELLED:
        return ""
    if notification.kind == NotificationKind.JOIN_LINK:
        allowed = {AppointmentStatus.BOOKED, AppointmentStatus.IN_PROGRESS}
    else:
        allowed = {AppointmentStatus.BOOKED}
    if appointment.status not in allowed:
        return f"appointment_{appointment.status}"
    if not notification.participant.active:
        return "participant_removed"
    if appointment.start != notification.appointment_start:
        return "appointment_moved"
    if notification.kind in REMINDERS and now >= appointment.start:
        return "too_late"
    return ""


def _skip(notification: Notification, reason: str) -> str:
    notification.status = NotificationStatus.SKIPPED
    notification.last_error = reason
    notification.save(update_fields=["status", "last_error"])
    logger.info("Notification %s skipped (%s).", notification.pk, reason)
    return "skipped"


def _failed_attempt(notification: Notification, exc: Exception, now: dt.datetime) -> str:
    notification.attempts += 1
    notification.last_error = type(exc).__name__[:64]
    final = notification.attempts >= MAX_ATTEMPTS
    if final:
        notification.status = NotificationStatus.FAILED
    else:
        notification.next_attempt_at = now + RETRY_BASE_DELAY * 2 ** (notification.attempts - 1)
        retry_at = notification.next_attempt_at
        transaction.on_commit(lambda: _enqueue(notification.pk, retry_at))
    notification.save(update_fields=["attempts", "last_error", "status", "next_attempt_at"])
    _audit(notification, AuditAction.NOTIFICATION_FAILED, Outcome.FAILURE, error=notification.last_error, final=final)
    logger.warning(
        "Notification %s attempt %d failed with %s%s.",
        notification.pk,
        notification.attempts,
        notification.last_error,
        "; giving up" if final else "; will retry",
    )
    return "failed" if final else "retry"


def _audit(notification: Notification, action: AuditAction, outcome: Outcome, **extra: object) -> None:
    audit.record(
        action=action,
        outcome=outcome,
        actor_role="system",
        patient_id=notification.appointment.patient_id,
        object_type="notification",
        object_id=notification.pk,
        details={
            "appointment": notification.appointment_id,
            "participant": notification.participant_id,
            "kind": notification.kind,
            "channel": notification.channel,
            "attempt": notification.attempts,
            **extra,
        },
    )


# --- Who and where ---


def _recipient(notification: Notification) -> Recipient | None:
    participant = notification.participant
    establishment_zone = notification.appointment.establishment.time_zone
    if participant.role == ParticipantRole.PATIENT:
        patient = participant.patient
        assert patient is not None
        if notification.channel == NotificationChannel.EMAIL:
            address = patient.email or (patient.user.email if patient.user else "")
        else:
            address = patient.phone or ""
        return Recipient(address.strip(), _language(patient.preferred_language), True, "") if address.strip() else None
    user = participant.user
    assert user is not None
    if notification.channel != NotificationChannel.EMAIL or not user.email:
        return None
    zone = user.time_zone or (participant.establishment.time_zone if participant.establishment else "")
    return Recipient(user.email, _language(user.preferred_language), False, zone if zone != establishment_zone else "")


def _language(code: str | None) -> str:
    known = {language for language, _name in settings.LANGUAGES}
    return code if code and code in known else str(settings.LANGUAGE_CODE)


def _join_url(participant: AppointmentParticipant) -> str | None:
    # The live link, read now: a link revoked or reissued since the message was planned is never sent.
    link = JoinLink.objects.filter(participant=participant, revoked_at__isnull=True).order_by("-created_at").first()
    if link is None:
        return None
    try:
        path = reverse("join", args=[link.token])
    except NoReverseMatch:
        path = f"/j/{link.token}"
    return f"{settings.PUBLIC_BASE_URL}{path}"
