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
import zoneinfo
from dataclasses import dataclass
from email.utils import parseaddr

import icalendar
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import DatabaseError, transaction
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils import timezone, translation
from django.utils.formats import date_format, time_format
from django.utils.translation import gettext as _

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
        planned = []
        for participant in participants:
            for channel in _channels(participant):
                planned.append(_plan(appointment, participant, kind, channel, due=now))
                if kind == NotificationKind.CANCELLED:
                    continue
                for reminder, before in REMINDERS.items():
                    if appointment.start - before > now:
                        planned.append(
                            _plan(appointment, participant, reminder, channel, due=appointment.start - before)
                        )
        if kind == NotificationKind.RESCHEDULED and appointment.rescheduled_from_id:
            # Someone who was in the old appointment but not in the new one (another practitioner took it over)
            # gets the old appointment's cancellation instead.
            old = Appointment.objects.get(pk=appointment.rescheduled_from_id)
            staying = {p.calendar for p in participants}
            for participant in old.participants.exclude(calendar__in=staying).order_by("pk"):
                for channel in _channels(participant):
                    planned.append(_plan(old, participant, NotificationKind.CANCELLED, channel, due=now))
        _enqueue_after_commit([n for n in planned if n is not None])


def join_link_send(*, participant_id: int) -> None:
    """Queue a message with the participant's current join link (a coordinator's "resend link")."""
    with transaction.atomic():
        participant = AppointmentParticipant.objects.select_related("appointment").get(pk=participant_id)
        planned = [
            # Every resend is a message of its own: the key names this request, not the link.
            _plan(
                participant.appointment,
                participant,
                NotificationKind.JOIN_LINK,
                channel,
                due=timezone.now(),
                unique=uuid.uuid4().hex,
            )
            for channel in _channels(participant)
        ]
        _enqueue_after_commit([n for n in planned if n is not None])


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


def _plan(
    appointment: Appointment,
    participant: AppointmentParticipant,
    kind: str,
    channel: str,
    *,
    due: dt.datetime,
    unique: str = "",
) -> Notification | None:
    key = f"a{appointment.pk}:p{participant.pk}:{kind}:{channel}"
    if kind in REMINDERS:
        # A reminder belongs to one start time: a moved appointment gets new reminders.
        key += f":{appointment.start.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}"
    if unique:
        key += f":{unique}"
    notification, created = Notification.objects.get_or_create(
        idempotency_key=key,
        defaults={
            "appointment": appointment,
            "participant": participant,
            "kind": kind,
            "channel": channel,
            "appointment_start": appointment.start,
            "next_attempt_at": due,
        },
    )
    return notification if created else None


def _enqueue_after_commit(notifications: list[Notification]) -> None:
    due: list[tuple[int, dt.datetime | None]] = [(n.pk, n.next_attempt_at) for n in notifications]
    transaction.on_commit(lambda: _enqueue_all(due))


def _enqueue_all(due: list[tuple[int, dt.datetime | None]]) -> None:
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
                _send_email(notification, recipient, join_url, now)
            else:
                assert text_backend is not None
                _send_text(notification, recipient, join_url, text_backend)
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


# --- Content ---


@dataclass(frozen=True)
class Recipient:
    address: str  # an e-mail address or a phone number, by channel
    language: str
    is_patient: bool
    # The participant's own zone when it differs from the establishment's (a specialist abroad, SCH-6).
    own_zone: str


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


def _root_of(appointment: Appointment) -> Appointment:
    # A rescheduled appointment is the same calendar event as the one it replaced: one UID for the chain.
    while appointment.rescheduled_from_id:
        appointment = Appointment.objects.only("pk", "public_id", "rescheduled_from_id").get(
            pk=appointment.rescheduled_from_id
        )
    return appointment


def _when(moment: dt.datetime, zone: str) -> str:
    local = moment.astimezone(zoneinfo.ZoneInfo(zone))
    return _("%(weekday)s %(date)s, %(time)s (hora de %(place)s)") % {
        "weekday": date_format(local, "l"),
        "date": date_format(local, "DATE_FORMAT"),
        "time": time_format(local, "TIME_FORMAT"),
        "place": zone.rsplit("/", 1)[-1].replace("_", " "),
    }


def _headline(kind: str, when: str) -> tuple[str, str]:
    """(subject, first sentence) of a message, in the active language."""
    return {
        NotificationKind.CONFIRMATION: (
            _("Cita confirmada: %(when)s") % {"when": when},
            _("Su cita está confirmada para el %(when)s.") % {"when": when},
        ),
        NotificationKind.REMINDER_24H: (
            _("Recordatorio: su cita es mañana, %(when)s") % {"when": when},
            _("Le recordamos su cita de mañana, %(when)s.") % {"when": when},
        ),
        NotificationKind.REMINDER_1H: (
            _("Recordatorio: su cita empieza en una hora (%(when)s)") % {"when": when},
            _("Su cita empieza en una hora: %(when)s.") % {"when": when},
        ),
        NotificationKind.RESCHEDULED: (
            _("Cita reprogramada: %(when)s") % {"when": when},
            _("Su cita fue reprogramada. La nueva fecha es el %(when)s.") % {"when": when},
        ),
        NotificationKind.CANCELLED: (
            _("Cita cancelada: %(when)s") % {"when": when},
            _("Su cita del %(when)s fue cancelada.") % {"when": when},
        ),
        NotificationKind.JOIN_LINK: (
            _("Su enlace para la cita del %(when)s") % {"when": when},
            _("Este es su enlace personal para la cita del %(when)s.") % {"when": when},
        ),
    }[NotificationKind(kind)]


def _context(notification: Notification, recipient: Recipient, join_url: str | None) -> dict[str, object]:
    appointment = notification.appointment
    establishment = appointment.establishment
    when = _when(appointment.start, establishment.time_zone)
    subject, lead = _headline(notification.kind, when)
    return {
        "subject": subject,
        "lead": lead,
        "when": when,
        "when_own_zone": _when(appointment.start, recipient.own_zone) if recipient.own_zone else "",
        "duration_minutes": int((appointment.end - appointment.start).total_seconds() // 60),
        "establishment": establishment.name,
        "service": appointment.get_service_type_display(),
        "modality": appointment.get_modality_display(),
        "join_url": join_url,
        "is_patient": recipient.is_patient,
        "cancelled": notification.kind == NotificationKind.CANCELLED,
        "site_url": settings.PUBLIC_BASE_URL,
    }


def _send_email(notification: Notification, recipient: Recipient, join_url: str | None, now: dt.datetime) -> None:
    with translation.override(recipient.language):
        context = _context(notification, recipient, join_url)
        text = render_to_string("scheduling/email/notification.txt", context)
        html = render_to_string("scheduling/email/notification.html", context)
        cancelled = notification.kind == NotificationKind.CANCELLED
        ics = appointment_ics(
            notification.appointment, recipient=recipient.address, join_url=join_url, cancel=cancelled, now=now
        )
        filename = _("cita.ics")
    message = EmailMultiAlternatives(str(context["subject"]), text, to=[recipient.address])
    message.attach_alternative(html, "text/html")
    method = "CANCEL" if cancelled else "REQUEST"
    message.attach(filename, ics, f"text/calendar; method={method}; charset=utf-8")
    message.send()


def _send_text(
    notification: Notification, recipient: Recipient, join_url: str | None, backend: messaging.BaseBackend
) -> None:
    with translation.override(recipient.language):
        context = _context(notification, recipient, join_url)
        body = str(context["lead"])
        if join_url:
            body += " " + _("Para unirse: %(url)s") % {"url": join_url}
        body = "Teleconsult: " + body
    backend.send(messaging.TextMessage(to=recipient.address, body=body))


def appointment_ics(
    appointment: Appointment, *, recipient: str, join_url: str | None, cancel: bool, now: dt.datetime
) -> bytes:
    """The appointment as an iCalendar invitation (or its cancellation) for one participant's calendar.

    Times in UTC; the summary names the service and the establishment, never the patient or the reason.
    Must run with the recipient's language active.
    """
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//Teleconsult//Citas//ES")
    calendar.add("version", "2.0")
    calendar.add("method", "CANCEL" if cancel else "REQUEST")
    event = icalendar.Event()
    event.add("uid", f"{_root_of(appointment).public_id}@teleconsult")
    event.add("sequence", appointment.sequence)
    event.add("dtstamp", now.astimezone(dt.UTC))
    event.add("dtstart", appointment.start.astimezone(dt.UTC))
    event.add("dtend", appointment.end.astimezone(dt.UTC))
    event.add(
        "summary",
        _("%(service)s · %(establishment)s")
        % {"service": appointment.get_service_type_display(), "establishment": appointment.establishment.name},
    )
    description = [_("Cita en línea (%(modality)s).") % {"modality": appointment.get_modality_display()}]
    if join_url:
        description.append(_("Para unirse, abra su enlace personal: %(url)s") % {"url": join_url})
        event.add("url", join_url)
        event.add("location", join_url)
    event.add("description", "\n".join(description))
    event.add("status", "CANCELLED" if cancel else "CONFIRMED")
    _name, sender = parseaddr(settings.DEFAULT_FROM_EMAIL)
    if sender:
        event.add("organizer", f"mailto:{sender}")
    attendee = icalendar.vCalAddress(f"mailto:{recipient}")
    attendee.params["ROLE"] = icalendar.vText("REQ-PARTICIPANT")
    event.add("attendee", attendee, encode=False)
    calendar.add_component(event)
    return calendar.to_ical()
