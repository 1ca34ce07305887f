"""The access gate of stored recordings (VID-8): who may retrieve one or see an encounter's list of them, audited
every time, allowed or not."""

from __future__ import annotations

import uuid
from typing import Any

from accounts.access import AccessDenied
from accounts.models import Role, User
from audit import services as audit
from audit.actions import AuditAction, Outcome, Purpose
from records.access import chart_policy
from video.models import Recording, RecordingStatus


def _decide(user: User, patient_id: int | None) -> tuple[tuple[Purpose, str] | None, int | None, str]:
    """The one rule of retrieval and listing: a practitioner the chart's policy lets at the patient (its purpose
    and how), else None; with who asks, as the audit names them."""
    decision = None
    if patient_id is not None and getattr(user, "role", None) == Role.PRACTITIONER:
        decision = chart_policy(user, patient_id)
    return decision, getattr(user, "pk", None), str(getattr(user, "role", "") or "anonymous")


def recording_for(user: User, public_id: Any) -> Recording:
    """A stored recording, for a practitioner of the patient's care team (a current care relationship, or a
    break-glass access, as for the chart). Everyone else — patients included: they ask through their data
    rights — gets AccessDenied, the same for a recording that does not exist. Both outcomes are audited."""
    try:
        wanted = uuid.UUID(str(public_id))
    except ValueError:
        wanted = None
    recording = (
        Recording.objects.select_related("visit__appointment", "encounter")
        .filter(public_id=wanted, status=RecordingStatus.STORED)
        .first()
        if wanted is not None
        else None
    )
    patient_id = recording.visit.appointment.patient_id if recording is not None else None
    decision, actor_user_id, actor_role = _decide(user, patient_id)
    if decision is None:
        audit.record(
            action=AuditAction.RECORDING_ACCESSED,
            outcome=Outcome.DENIED,
            patient_id=patient_id,
            object_type="recording",
            object_id=recording.pk if recording is not None else "",
            details={"recording": str(wanted) if wanted else "", "found": recording is not None},
            actor_user_id=actor_user_id,
            actor_role=actor_role,
        )
        raise AccessDenied
    purpose, via = decision
    audit.record(
        action=AuditAction.RECORDING_ACCESSED,
        purpose=purpose,
        patient_id=patient_id,
        object_type="recording",
        object_id=recording.pk,  # type: ignore[union-attr]
        details={"recording": str(wanted), "via": via, "encounter": recording.encounter_id},  # type: ignore[union-attr]
        actor_user_id=actor_user_id,
        actor_role=actor_role,
    )
    return recording  # type: ignore[return-value]


def recordings_listed(user: User, *, encounter_id: int) -> list[Recording]:
    """The encounter's recordings (stored ones, and those destroyed past retention, whose rows are the trace), oldest
    first, for whoever may retrieve them: the same rule as `recording_for`. Anyone else gets an empty list. When
    there is something to list, the decision is audited (`video.recording.listed`, with the recordings' ids, or
    denied); an encounter without recordings shows nothing and reads nothing."""
    recordings = list(
        Recording.objects.select_related("visit__appointment")
        .filter(encounter_id=encounter_id, status__in=[RecordingStatus.STORED, RecordingStatus.DESTROYED])
        .order_by("started_at", "pk")
    )
    if not recordings:
        return []
    patient_id = recordings[0].visit.appointment.patient_id
    decision, actor_user_id, actor_role = _decide(user, patient_id)
    if decision is None:
        audit.record(
            action=AuditAction.RECORDING_LISTED,
            outcome=Outcome.DENIED,
            patient_id=patient_id,
            object_type="encounter",
            object_id=encounter_id,
            actor_user_id=actor_user_id,
            actor_role=actor_role,
        )
        return []
    purpose, via = decision
    audit.record(
        action=AuditAction.RECORDING_LISTED,
        purpose=purpose,
        patient_id=patient_id,
        object_type="encounter",
        object_id=encounter_id,
        details={"recordings": [str(r.public_id) for r in recordings], "via": via},
        actor_user_id=actor_user_id,
        actor_role=actor_role,
    )
    return recordings
