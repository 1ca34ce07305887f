"""Join links (SCH-7): a personal, revocable, time-windowed link per participant of an appointment."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from accounts.models import User
from audit import services as audit
from audit.actions import AuditAction, Outcome
from audit.models import AuditEvent
from records.identifiers import document_lookup, normalise_document
from records.models import PatientIdentifier
from scheduling import notifications
from scheduling.errors import (
    LinkClosed,
    LinkInvalid,
    LinkLocked,
    LinkNotOpenYet,
    SchedulingError,
    VerificationFailed,
)
from scheduling.models import (
    Appointment,
    AppointmentParticipant,
    AppointmentStatus,
    JoinLink,
    ParticipantRole,
)
from teleconsult.crypto import normalise_identifier

# 32 random bytes (256 bits) in URL-safe base64: unguessable and short enough for an SMS.
TOKEN_BYTES = 32


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "ignore")).hexdigest()


def _actor(by: User | None) -> audit.Actor:
    return {"actor_user_id": by.pk if by else None, "actor_role": by.role if by else "system"}


@transaction.atomic
def join_link_issue(*, participant: AppointmentParticipant, by: User | None) -> str:
    """A new link for the participant; the previous live one stops working. Returns the token (not logged)."""
    now = timezone.now()
    JoinLink.objects.filter(participant=participant, revoked_at__isnull=True).update(revoked_at=now, revoked_by=by)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    link = JoinLink.objects.create(
        participant=participant, token_sha256=token_digest(token), token=token, created_by=by
    )
    audit.record(
        action=AuditAction.JOIN_LINK_ISSUED,
        patient_id=participant.appointment.patient_id,
        object_type="join_link",
        object_id=link.pk,
        details={"appointment": participant.appointment_id, "participant": participant.pk},
        **_actor(by),
    )
    return token


@transaction.atomic
def join_link_revoke(*, participant: AppointmentParticipant, by: User | None) -> None:
    """The participant's live link stops working (nothing replaces it until a new one is issued)."""
    revoked = list(
        JoinLink.objects.select_for_update()
        .filter(participant=participant, revoked_at__isnull=True)
        .values_list("pk", flat=True)
    )
    if not revoked:
        return
    JoinLink.objects.filter(pk__in=revoked).update(revoked_at=timezone.now(), revoked_by=by)
    for link_id in revoked:
        audit.record(
            action=AuditAction.JOIN_LINK_REVOKED,
            patient_id=participant.appointment.patient_id,
            object_type="join_link",
            object_id=link_id,
            details={"appointment": participant.appointment_id, "participant": participant.pk},
            **_actor(by),
        )


# --- Opening, verifying and recovering links (the patient side) ---

# Failed verifications after which a link stops accepting attempts; recovering the link issues a fresh one.
VERIFICATION_LIMIT = 5
# Lost-link recoveries answered per source address, and per matched patient, within the window.
RECOVERY_LIMIT_PER_ADDRESS = 5
RECOVERY_LIMIT_PER_PATIENT = 3
RECOVERY_WINDOW = dt.timedelta(minutes=30)
# Appointments whose links still lead somewhere (a held one has no links yet; the rest are over).
_OPEN_STATUSES = (AppointmentStatus.BOOKED, AppointmentStatus.IN_PROGRESS)


def _patient_audit(link: JoinLink) -> audit.Subject:
    return {
        "patient_id": link.participant.appointment.patient_id,
        "object_type": "join_link",
        "object_id": link.pk,
    }


def join_link_window(appointment: Appointment) -> tuple[dt.datetime, dt.datetime]:
    """When the appointment's links work: from a while before the start until a grace period after the end."""
    opens_at = appointment.start - dt.timedelta(minutes=settings.JOIN_LINK_OPENS_MINUTES_BEFORE)
    closes_at = appointment.end + dt.timedelta(minutes=settings.JOIN_LINK_GRACE_MINUTES_AFTER)
    return opens_at, closes_at


def _refuse(reason: str, link: JoinLink | None = None) -> None:
    # Written outside any transaction of ours so the refusal stays in the trail when the caller's error
    # response is sent; the token never goes in (only which link, when one matched).
    extra: audit.Subject = _patient_audit(link) if link else {"object_type": "join_link"}
    audit.record(action=AuditAction.JOIN_LINK_REFUSED, outcome=Outcome.DENIED, details={"reason": reason}, **extra)


def join_link_open(*, token: str, now: dt.datetime | None = None) -> JoinLink:
    """The live link a token names, inside its window; records the use. Refusals are audited and raised:
    LinkInvalid (unknown, revoked, or its appointment no longer stands), LinkNotOpenYet, LinkClosed."""
    now = now or timezone.now()
    link = (
        JoinLink.objects.select_related("participant__appointment__establishment", "participant__patient")
        .filter(token_sha256=token_digest(token or ""))
        .first()
        if token and len(token) <= 100
        else None
    )
    if link is None:
        _refuse("unknown")
        raise LinkInvalid()
    appointment = link.participant.appointment
    if link.revoked_at is not None or not link.participant.active or appointment.status not in _OPEN_STATUSES:
        _refuse("revoked" if link.revoked_at is not None else "appointment_not_active", link)
        error = LinkInvalid()
        error.gone = True  # type: ignore[attr-defined]  # the link existed: pages answer 410, not 404
        raise error
    opens_at, closes_at = join_link_window(appointment)
    if now < opens_at:
        _refuse("not_open_yet", link)
        raise LinkNotOpenYet(opens_at)
    if now > closes_at:
        _refuse("closed", link)
        raise LinkClosed()
    with transaction.atomic():
        JoinLink.objects.filter(pk=link.pk, first_used_at__isnull=True).update(first_used_at=now)
        JoinLink.objects.filter(pk=link.pk).update(last_used_at=now)
        audit.record(
            action=AuditAction.JOIN_LINK_OPENED,
            actor_role="link",
            details={"appointment": appointment.pk, "participant": link.participant_id},
            **_patient_audit(link),
        )
    link.first_used_at = link.first_used_at or now
    link.last_used_at = now
    return link


def _last_digits_match(patient_id: int, digits: str) -> bool:
    wanted = normalise_identifier(digits or "")
    if len(wanted) != 4:
        return False
    matched = False
    for value in PatientIdentifier.objects.filter(patient_id=patient_id).values_list("value", flat=True):
        # Every identifier is compared (no early exit), in constant time each.
        matched |= constant_time_compare(normalise_identifier(value or "")[-4:], wanted)
    return matched


def join_link_verify(
    *, link: JoinLink, birth_date: dt.date | None, document_last_digits: str, now: dt.datetime | None = None
) -> JoinLink:
    """A patient opening their link without being signed in proves who they are: birth date and the last four
    characters of one of their identity documents. VERIFICATION_LIMIT failures lock the link (LinkLocked)."""
    now = now or timezone.now()
    error: SchedulingError | None = None
    with transaction.atomic():
        locked = JoinLink.objects.select_for_update(of=("self",)).select_related("participant__patient").get(pk=link.pk)
        participant = locked.participant
        if locked.revoked_at is not None or participant.role != ParticipantRole.PATIENT:
            error = LinkInvalid()
        elif locked.verification_failures >= VERIFICATION_LIMIT:
            error = LinkLocked()
            audit.record(
                action=AuditAction.JOIN_LINK_VERIFICATION_FAILED,
                outcome=Outcome.DENIED,
                details={"reason": "locked"},
                **_patient_audit(locked),
            )
        else:
            patient = participant.patient
            assert patient is not None  # the participant check constraint: a patient participant names one
            # Both checks always run, so the answer's timing does not tell which one failed.
            digits_ok = _last_digits_match(patient.pk, document_last_digits)
            if birth_date == patient.birth_date and digits_ok:
                locked.verified_at = locked.verified_at or now
                locked.verification_failures = 0
                locked.save(update_fields=["verified_at", "verification_failures"])
                audit.record(action=AuditAction.JOIN_LINK_VERIFIED, actor_role="link", **_patient_audit(locked))
            else:
                locked.verification_failures += 1
                locked.save(update_fields=["verification_failures"])
                audit.record(
                    action=AuditAction.JOIN_LINK_VERIFICATION_FAILED,
                    outcome=Outcome.FAILURE,
                    details={"failures": locked.verification_failures},
                    **_patient_audit(locked),
                )
                error = LinkLocked() if locked.verification_failures >= VERIFICATION_LIMIT else VerificationFailed()
    # Raised after the commit: the failure count and its audit event must stay.
    if error is not None:
        raise error
    link.verified_at, link.verification_failures = locked.verified_at, locked.verification_failures
    return link


def _recoveries_since(since: dt.datetime, **match: object) -> int:
    return AuditEvent.objects.filter(
        action=AuditAction.JOIN_LINK_RECOVERY_REQUESTED, occurred_at__gte=since, **match
    ).count()


def join_link_recover(
    *,
    document_type: str,
    number: str,
    birth_date: dt.date | None,
    source_address: str | None = None,
    now: dt.datetime | None = None,
) -> None:
    """A lost link: when the document and birth date match a patient with an upcoming appointment, a fresh
    link is issued (the lost one stops working) and sent to the contact on file. Returns nothing, whatever
    happened, so the page gives everyone the same answer; throttled per address and per patient; audited.
    Malformed documents raise ValidationError (the form shows it; nothing about any patient is revealed)."""
    now = now or timezone.now()
    stored, country = normalise_document(document_type, number)
    since = now - RECOVERY_WINDOW
    # The trail is the counter: every request is recorded with its source address, so the throttle holds
    # across processes without a table of its own.
    if source_address and _recoveries_since(since, source_address=source_address) >= RECOVERY_LIMIT_PER_ADDRESS:
        audit.record(
            action=AuditAction.JOIN_LINK_RECOVERY_REQUESTED,
            outcome=Outcome.DENIED,
            details={"reason": "throttled"},
            source_address=source_address,
        )
        return
    identifier = (
        PatientIdentifier.objects.select_related("patient")
        .filter(lookup=document_lookup(document_type, stored, country))
        .first()
    )
    patient = identifier.patient if identifier else None
    participant = None
    reason = "no_match"
    if patient is not None and patient.birth_date == birth_date and patient.anonymised_at is None:
        if _recoveries_since(since, patient_id=patient.pk) >= RECOVERY_LIMIT_PER_PATIENT:
            reason = "throttled"
        else:
            participant = (
                AppointmentParticipant.objects.filter(
                    patient=patient,
                    role=ParticipantRole.PATIENT,
                    active=True,
                    appointment__status__in=_OPEN_STATUSES,
                    appointment__end__gte=now - dt.timedelta(minutes=settings.JOIN_LINK_GRACE_MINUTES_AFTER),
                )
                .select_related("appointment")
                .order_by("appointment__start")
                .first()
            )
            reason = "sent" if participant else "no_upcoming_appointment"
    with transaction.atomic():
        audit.record(
            action=AuditAction.JOIN_LINK_RECOVERY_REQUESTED,
            outcome=Outcome.SUCCESS if participant else Outcome.FAILURE,
            patient_id=patient.pk if patient is not None and reason != "no_match" else None,
            details={"reason": reason},
            source_address=source_address,
        )
        if participant is not None:
            join_link_issue(participant=participant, by=None)
            participant_id = participant.pk
            transaction.on_commit(lambda: notifications.join_link_send(participant_id=participant_id))


# --- The browser session a link opened (read by the lobby pages and by the visit's websocket consumer) ---

# What the session holds after a link was opened: ids and a flag, never the token or personal data.
LINK_SESSION_KEY = "visit_link"


def link_session_binding(session: Any) -> dict[str, Any] | None:
    """The binding a session holds ({"participant", "appointment", "link", "verified"}), well-formed, or None."""
    data = session.get(LINK_SESSION_KEY) if session is not None else None
    if not isinstance(data, dict):
        return None
    try:
        return {
            "participant": int(data["participant"]),
            "appointment": str(data["appointment"]),
            "link": int(data["link"]),
            "verified": bool(data["verified"]),
        }
    except (KeyError, TypeError, ValueError):
        return None


def participant_from_link_session(session: Any) -> AppointmentParticipant | None:
    """The participant a verified link session speaks for, while their link is still live; else None.

    One definition for pages (request.session) and the websocket consumer (scope["session"]): verified, the
    same link unrevoked, the participant still active in that appointment."""
    binding = link_session_binding(session)
    if binding is None or not binding["verified"]:
        return None
    try:
        uuid.UUID(binding["appointment"])
    except ValueError:
        return None
    return (
        AppointmentParticipant.objects.select_related("appointment__establishment", "patient", "user")
        .filter(
            pk=binding["participant"],
            active=True,
            appointment__public_id=binding["appointment"],
            join_links__pk=binding["link"],
            join_links__revoked_at__isnull=True,
        )
        .first()
    )
