"""Care relationship services: written by booking, encounters, referrals and admins (records never imports them)."""

from __future__ import annotations

import datetime as dt

from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Role, User
from audit import services as audit
from audit.actions import AuditAction
from records.models import CareRelationship, CareSource, Patient

# Created unless the same source already gave this practitioner this patient, in one statement: the unique
# constraint decides (a concurrent start of the same relationship waits for the other transaction and then finds
# its row), with no look-up first and no savepoint to recover from a duplicate, as get_or_create needs.
_INSERT_UNLESS_PRESENT = (
    "INSERT INTO records_carerelationship"
    " (patient_id, practitioner_id, source, source_id, valid_from, valid_until, ended_at, created_by_id, created_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, NULL, %s, %s)"
    " ON CONFLICT ON CONSTRAINT records_care_unique_source DO NOTHING RETURNING id"
)


def care_relationship_start(
    *,
    patient: Patient,
    practitioner: User,
    source: CareSource,
    source_id: str,
    valid_from: dt.datetime,
    valid_until: dt.datetime,
    created_by: User | None,
    savepoint: bool = True,
) -> CareRelationship:
    """The practitioner takes part in the patient's care from this source; an existing relationship from the same
    source is returned as it is (starting it again changes nothing).

    Inside a caller's transaction it runs in a savepoint, so a caller may catch its error and carry on; a caller
    that lets every error roll its own transaction back passes `savepoint=False` and saves the two statements."""
    if practitioner.role != Role.PRACTITIONER:
        raise ValueError("Care relationships are for practitioners.")
    with transaction.atomic(savepoint=savepoint):
        return _start(
            patient=patient,
            practitioner=practitioner,
            source=source,
            source_id=str(source_id),
            valid_from=valid_from,
            valid_until=valid_until,
            created_by=created_by,
        )


def _start(
    *,
    patient: Patient,
    practitioner: User,
    source: CareSource,
    source_id: str,
    valid_from: dt.datetime,
    valid_until: dt.datetime,
    created_by: User | None,
) -> CareRelationship:
    relationship = CareRelationship(
        patient=patient,
        practitioner=practitioner,
        source=source,
        source_id=source_id,
        valid_from=valid_from,
        valid_until=valid_until,
        created_by=created_by,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            _INSERT_UNLESS_PRESENT,
            [
                patient.pk,
                practitioner.pk,
                source.value,
                relationship.source_id,
                valid_from,
                valid_until,
                created_by.pk if created_by else None,
                relationship.created_at,
            ],
        )
        inserted = cursor.fetchone()
    if inserted is None:
        return CareRelationship.objects.get(
            patient=patient, practitioner=practitioner, source=source, source_id=relationship.source_id
        )
    relationship.pk = inserted[0]
    relationship._state.adding = False
    relationship._state.db = connection.alias
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
