"""Care relationship services: written by booking, encounters, referrals and admins (records never imports them)."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone

from accounts.models import Role, User
from audit import services as audit
from audit.actions import AuditAction
from records.models import CareRelationship, CareSource, Patient


@transaction.atomic
def care_relationship_start(
    *,
    patient: Patient,
    practitioner: User,
    source: CareSource,
    source_id: str,
    valid_from: dt.datetime,
    valid_until: dt.datetime,
    created_by: User | None,
) -> CareRelationship:
    if practitioner.role != Role.PRACTITIONER:
        raise ValueError("Care relationships are for practitioners.")
    relationship, created = CareRelationship.objects.get_or_create(
        patient=patient,
        practitioner=practitioner,
        source=source,
        source_id=str(source_id),
        defaults={"valid_from": valid_from, "valid_until": valid_until, "created_by": created_by},
    )
    if created:
        audit.record(
            action=AuditAction.CARE_RELATIONSHIP_STARTED,
            actor_user_id=created_by.pk if created_by else None,
            actor_role=created_by.role if created_by else "system",
            patient_id=patient.pk,
            object_type="care_relationship",
            object_id=relationship.pk,
            details={"source": source.value, "practitioner": practitioner.pk},
        )
    return relationship


@transaction.atomic
def care_relationship_end(*, source: CareSource, source_id: str, ended_by: User | None) -> int:
    """End every relationship that came from one source (e.g. a cancelled appointment)."""
    ended = 0
    for relationship in CareRelationship.objects.select_for_update().filter(
        source=source, source_id=str(source_id), ended_at__isnull=True
    ):
        relationship.ended_at = timezone.now()
        relationship.save(update_fields=["ended_at"])
        ended += 1
        audit.record(
            action=AuditAction.CARE_RELATIONSHIP_ENDED,
            actor_user_id=ended_by.pk if ended_by else None,
            actor_role=ended_by.role if ended_by else "system",
            patient_id=relationship.patient_id,
            object_type="care_relationship",
            object_id=relationship.pk,
        )
    return ended
