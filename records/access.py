"""Access gates for patient data (SEC-1). Every view, API endpoint and consumer that touches a chart or a
patient's details goes through these; each raises AccessDenied alike for "missing" and "forbidden"."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.access import AccessDenied, require_role
from accounts.models import Role, User
from audit import services as audit
from audit.actions import AuditAction, Outcome, Purpose
from records.models import (
    BreakGlassAccess,
    CareRelationship,
    ClinicalNote,
    DataRightsRequest,
    Encounter,
    NoteStatus,
    Patient,
)


@dataclass(frozen=True)
class ChartAccess:
    patient: Patient
    purpose: Purpose
    via: str  # "self", "care_relationship", "break_glass"


def _has_care_relationship(user: User, patient_id: int, now: dt.datetime) -> bool:
    # A blocked record (cancellation granted inside retention) is out of routine care: checked in the same query.
    return CareRelationship.objects.filter(
        practitioner=user,
        patient_id=patient_id,
        valid_from__lte=now,
        valid_until__gt=now,
        ended_at__isnull=True,
        patient__blocked_at__isnull=True,
    ).exists()


def _has_break_glass(user: User, patient_id: int, now: dt.datetime) -> bool:
    return BreakGlassAccess.objects.filter(practitioner=user, patient_id=patient_id, expires_at__gt=now).exists()


def chart_policy(user: User, patient_id: int, *, now: dt.datetime | None = None) -> tuple[Purpose, str] | None:
    """Whether `user` may read `patient_id`'s clinical record, and under which purpose; None if not."""
    now = now or timezone.now()
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    if user.role == Role.PATIENT:
        own = Patient.objects.filter(pk=patient_id, user=user).exists()
        return (Purpose.PATIENT_REQUEST, "self") if own else None
    if user.role != Role.PRACTITIONER or not user.is_verified():
        # Coordinators, admins and auditors never read clinical content.
        return None
    if _has_care_relationship(user, patient_id, now):
        return Purpose.TREATMENT, "care_relationship"
    if _has_break_glass(user, patient_id, now):
        return Purpose.EMERGENCY, "break_glass"
    return None


def chart_for(user: User, patient_id: int, *, now: dt.datetime | None = None) -> ChartAccess:
    """Open a patient's chart: gate, then audit the read (or the refusal) with its purpose of use."""
    decision = chart_policy(user, patient_id, now=now)
    patient = Patient.objects.filter(pk=patient_id).first() if decision else None
    actor: audit.Actor = {
        "actor_user_id": getattr(user, "pk", None),
        "actor_role": getattr(user, "role", "") or "anonymous",
    }
    if decision is None or patient is None:
        audit.record(
            action=AuditAction.CHART_ACCESS_DENIED,
            outcome=Outcome.DENIED,
            patient_id=patient_id if isinstance(patient_id, int) else None,
            object_type="patient",
            object_id=patient_id,
            **actor,
        )
        raise AccessDenied
    purpose, via = decision
    audit.record(
        action=AuditAction.CHART_VIEWED,
        purpose=purpose,
        patient_id=patient.pk,
        object_type="patient",
        object_id=patient.pk,
        details={"via": via},
        **actor,
    )
    return ChartAccess(patient, purpose, via)


def demographics_for(user: User, patient_id: int) -> Patient:
    """Identity and contact details (no clinical content): coordinators and treating practitioners for
    booking and contact, the patient for themself. Audited like a chart read."""
    if getattr(user, "role", None) == Role.PATIENT and user.is_authenticated:
        patient = Patient.objects.filter(pk=patient_id, user=user).first()
        purpose = Purpose.PATIENT_REQUEST
    else:
        try:
            require_role(user, Role.COORDINATOR, Role.PRACTITIONER)
        except AccessDenied:
            patient = None
        else:
            allowed = user.role == Role.COORDINATOR or chart_policy(user, patient_id) is not None
            patient = Patient.objects.filter(pk=patient_id).first() if allowed else None
        purpose = Purpose.OPERATIONS if getattr(user, "role", None) == Role.COORDINATOR else Purpose.TREATMENT
    if patient is None:
        raise AccessDenied
    audit.record(
        action=AuditAction.DEMOGRAPHICS_VIEWED,
        purpose=purpose,
        actor_user_id=user.pk,
        actor_role=user.role,
        patient_id=patient.pk,
        object_type="patient",
        object_id=patient.pk,
    )
    return patient


BREAK_GLASS_DURATION = dt.timedelta(hours=4)


@transaction.atomic
def break_glass(*, user: User, patient_id: int, reason: str) -> BreakGlassAccess:
    """Emergency access for a practitioner without a care relationship; auditors are told at once."""
    require_role(user, Role.PRACTITIONER)
    if len(reason.strip()) < 10:
        raise ValidationError(_("Explique el motivo de la emergencia (al menos 10 caracteres)."), code="reason")
    if not Patient.objects.filter(pk=patient_id).exists():
        raise AccessDenied
    now = timezone.now()
    access = BreakGlassAccess.objects.create(
        patient_id=patient_id,
        practitioner=user,
        reason=reason.strip(),
        granted_at=now,
        expires_at=now + BREAK_GLASS_DURATION,
    )
    audit.record(
        action=AuditAction.BREAK_GLASS,
        purpose=Purpose.EMERGENCY,
        actor_user_id=user.pk,
        actor_role=user.role,
        patient_id=patient_id,
        object_type="break_glass",
        object_id=access.pk,
        details={"expires_minutes": int(BREAK_GLASS_DURATION.total_seconds() // 60)},
    )
    transaction.on_commit(lambda: _notify_auditors(access.pk))
    return access


def _notify_auditors(access_id: int) -> None:
    """E-mail the auditors: who, which patient id and when; never the reason (it may be clinical)."""
    from django.core.mail import send_mail

    access = BreakGlassAccess.objects.get(pk=access_id)
    recipients = list(User.objects.filter(role=Role.AUDITOR, is_active=True).values_list("email", flat=True))
    if not recipients:
        return
    send_mail(
        subject="Teleconsult: acceso de emergencia a una historia clínica",
        message=(
            f"El usuario #{access.practitioner_id} abrió por emergencia la historia del paciente "
            f"#{access.patient_id} el {access.granted_at:%Y-%m-%d %H:%M} UTC. Revíselo en el módulo de auditoría."
        ),
        from_email=None,
        recipient_list=recipients,
        fail_silently=True,
    )


def rights_request_for(user: User, request_id: int, *, to_act: bool = False) -> DataRightsRequest:
    """A data-protection request for the staff who work the queue: the clinic admin (acting as the
    data-protection officer) reads and acts; coordinators may only read. Audited; denied looks missing."""
    roles = (Role.CLINIC_ADMIN,) if to_act else (Role.CLINIC_ADMIN, Role.COORDINATOR)
    require_role(user, *roles)
    request = DataRightsRequest.objects.select_related("patient").filter(pk=request_id).first()
    if request is None:
        raise AccessDenied
    audit.record(
        action=AuditAction.RIGHTS_REQUEST_VIEWED,
        purpose=Purpose.PATIENT_REQUEST,
        actor_user_id=user.pk,
        actor_role=user.role,
        patient_id=request.patient_id,
        object_type="rights_request",
        object_id=request.pk,
    )
    return request


def patient_for_data_protection(user: User, patient_id: int) -> Patient:
    """The patient's identity for the data-protection officer (clinic admin): rectification and legal holds.
    Never clinical content. Audited like a demographics read."""
    require_role(user, Role.CLINIC_ADMIN)
    patient = Patient.objects.filter(pk=patient_id).first()
    if patient is None:
        raise AccessDenied
    audit.record(
        action=AuditAction.DEMOGRAPHICS_VIEWED,
        purpose=Purpose.PATIENT_REQUEST,
        actor_user_id=user.pk,
        actor_role=user.role,
        patient_id=patient.pk,
        object_type="patient",
        object_id=patient.pk,
        details={"for": "data_protection"},
    )
    return patient


def _deny(user: User, *, patient_id: int | None, object_type: str, object_id: object) -> AccessDenied:
    audit.record(
        action=AuditAction.CHART_ACCESS_DENIED,
        outcome=Outcome.DENIED,
        actor_user_id=getattr(user, "pk", None),
        actor_role=getattr(user, "role", "") or "anonymous",
        patient_id=patient_id,
        object_type=object_type,
        object_id=object_id if isinstance(object_id, (int, str)) and not isinstance(object_id, bool) else "",
    )
    return AccessDenied()


def encounter_for(user: User, encounter_id: int) -> Encounter:
    """One encounter (its metadata: service, modality, participants) for whoever may read the patient's chart:
    a treating practitioner (care relationship or break-glass) or the patient themself. Audited."""
    encounter = (
        Encounter.objects.select_related("patient", "origin_establishment", "consulted_establishment")
        .filter(pk=encounter_id)
        .first()
        if isinstance(encounter_id, int)
        else None
    )
    decision = chart_policy(user, encounter.patient_id) if encounter else None
    if encounter is None or decision is None:
        raise _deny(
            user,
            patient_id=encounter.patient_id if encounter else None,
            object_type="encounter",
            object_id=encounter_id,
        )
    purpose, via = decision
    audit.record(
        action=AuditAction.ENCOUNTER_VIEWED,
        purpose=purpose,
        actor_user_id=user.pk,
        actor_role=user.role,
        patient_id=encounter.patient_id,
        object_type="encounter",
        object_id=encounter.pk,
        details={"via": via},
    )
    return encounter


def note_for(user: User, note_id: int, *, to_edit: bool = False) -> ClinicalNote:
    """A clinical note. Practitioners with access to the chart read every note of it; patients read only their
    own signed notes. To edit: a draft only by its author; a signed note (to amend it) by any practitioner with
    access. Coordinators, admins and auditors never. Audited; denied looks missing."""
    note = (
        ClinicalNote.objects.select_related("encounter", "patient").filter(pk=note_id).first()
        if isinstance(note_id, int)
        else None
    )
    decision = chart_policy(user, note.patient_id) if note else None
    if note is not None and decision is not None:
        purpose, via = decision
        if via == "self":
            allowed = note.status == NoteStatus.SIGNED and not to_edit
        else:
            allowed = not to_edit or note.status == NoteStatus.SIGNED or note.author_id == user.pk
    else:
        allowed = False
    if note is None or not allowed:
        raise _deny(user, patient_id=note.patient_id if note else None, object_type="note", object_id=note_id)
    audit.record(
        action=AuditAction.NOTE_VIEWED,
        purpose=purpose,
        actor_user_id=user.pk,
        actor_role=user.role,
        patient_id=note.patient_id,
        object_type="note",
        object_id=note.pk,
        details={"via": via, "to_edit": to_edit},
    )
    return note
