"""Join links (SCH-7): a personal, revocable, time-windowed link per participant of an appointment."""

from __future__ import annotations

import hashlib
import secrets

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from audit import services as audit
from audit.actions import AuditAction
from scheduling.models import AppointmentParticipant, JoinLink

# 32 random bytes (256 bits) in URL-safe base64: unguessable and short enough for an SMS.
TOKEN_BYTES = 32


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "ignore")).hexdigest()


def _actor(by: User | None) -> dict[str, object]:
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
