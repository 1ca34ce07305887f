"""What notifications say: e-mail (text, HTML and an iCalendar file) and text messages, in the recipient's
language, with times in the establishment's zone (and the recipient's own zone when it differs)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from email.utils import parseaddr

import icalendar
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.formats import date_format, time_format
from django.utils.translation import gettext as _

from scheduling.models import Appointment, AppointmentStatus, Notification, NotificationKind


@dataclass(frozen=True)
class Recipient:
    address: str  # an e-mail address or a phone number, by channel
    language: str
    is_patient: bool
    # The participant's own zone when it differs from the establishment's (a specialist abroad, SCH-6).
    own_zone: str


def root_of(appointment: Appointment) -> Appointment:
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


def email_message(
    notification: Notification, recipient: Recipient, join_url: str | None, now: dt.datetime
) -> EmailMultiAlternatives:
    """The e-mail for one notification: text and HTML in the recipient's language, with the .ics attached."""
    cancelled = notification.kind == NotificationKind.CANCELLED
    with translation.override(recipient.language):
        context = _context(notification, recipient, join_url)
        text = render_to_string("scheduling/email/notification.txt", context)
        html = render_to_string("scheduling/email/notification.html", context)
        ics = appointment_ics(
            notification.appointment, recipient=recipient.address, join_url=join_url, cancel=cancelled, now=now
        )
        filename = _("cita.ics")
    message = EmailMultiAlternatives(str(context["subject"]), text, to=[recipient.address])
    message.attach_alternative(html, "text/html")
    method = "CANCEL" if cancelled else "REQUEST"
    message.attach(filename, ics, f"text/calendar; method={method}; charset=utf-8")
    return message


def text_body(notification: Notification, recipient: Recipient, join_url: str | None) -> str:
    """The text message (SMS or WhatsApp) for one notification: one sentence and the link, nothing clinical."""
    with translation.override(recipient.language):
        body = str(_context(notification, recipient, join_url)["lead"])
        if join_url:
            body += " " + _("Para unirse: %(url)s") % {"url": join_url}
    return "Teleconsult: " + body


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
    event.add("uid", f"{root_of(appointment).public_id}@teleconsult")
    # A participant dropped by a reschedule gets the old appointment's cancellation: one version past the
    # invitation they hold, as the new appointment's is (RFC 5546: a CANCEL must raise SEQUENCE).
    bump = 1 if cancel and appointment.status == AppointmentStatus.RESCHEDULED else 0
    event.add("sequence", appointment.sequence + bump)
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
