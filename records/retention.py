"""Retention (SEC-5): how long a record must be kept, legal holds, blocking, and the purge that only ever
acts outside retention. Clinical rows themselves are never deleted; the purge removes identity."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from audit import services as audit
from audit.actions import AuditAction, Purpose
from records.models import LegalHold, LegalRepresentative, Patient, PatientIdentifier, PatientRevision
from records.signals import patient_anonymised

ANONYMISED = "ANONIMIZADO"


def _add_years(moment: dt.datetime, years: int) -> dt.datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year + years, day=28)


def retention_until(patient: Patient) -> dt.datetime:
    anchor = patient.last_encounter_at or patient.created_at
    return _add_years(anchor, settings.CLINICAL_RETENTION_YEARS)


def has_open_hold(patient: Patient) -> bool:
    return LegalHold.objects.filter(patient=patient, released_at__isnull=True).exists()


@transaction.atomic
def legal_hold_place(*, patient: Patient, reason: str, by: User) -> LegalHold:
    hold = LegalHold.objects.create(patient=patient, reason=reason.strip(), placed_by=by)
    audit.record(
        action=AuditAction.LEGAL_HOLD_PLACED,
        actor_user_id=by.pk,
        actor_role=by.role,
        patient_id=patient.pk,
        object_type="legal_hold",
        object_id=hold.pk,
    )
    return hold


@transaction.atomic
def legal_hold_release(*, hold: LegalHold, by: User) -> LegalHold:
    hold.released_at = timezone.now()
    hold.released_by = by
    hold.save(update_fields=["released_at", "released_by"])
    audit.record(
        action=AuditAction.LEGAL_HOLD_RELEASED,
        actor_user_id=by.pk,
        actor_role=by.role,
        patient_id=hold.patient_id,
        object_type="legal_hold",
        object_id=hold.pk,
    )
    return hold


@transaction.atomic
def patient_block(*, patient: Patient, by: User) -> Patient:
    """A granted cancellation inside retention: the record leaves routine use but is kept."""
    locked = Patient.objects.select_for_update().get(pk=patient.pk)
    if locked.blocked_at is None:
        locked.blocked_at = timezone.now()
        locked.save(update_fields=["blocked_at"])
        audit.record(
            action=AuditAction.PATIENT_BLOCKED,
            purpose=Purpose.PATIENT_REQUEST,
            actor_user_id=by.pk,
            actor_role=by.role,
            patient_id=locked.pk,
            object_type="patient",
            object_id=locked.pk,
        )
    return locked


def purge_candidates(*, now: dt.datetime | None = None) -> list[Patient]:
    """Blocked patients whose retention has ended and who have no open legal hold."""
    now = now or timezone.now()
    candidates = Patient.objects.filter(blocked_at__isnull=False, anonymised_at__isnull=True).exclude(
        Q(legal_holds__released_at__isnull=True) & Q(legal_holds__isnull=False)
    )
    # The retention date depends on each record's last encounter, so it is checked per patient, in Python,
    # with the same function the rest of the code uses: one definition of "inside retention".
    return [p for p in candidates.distinct() if retention_until(p) <= now and not has_open_hold(p)]


@transaction.atomic
def purge_expired(*, now: dt.datetime | None = None) -> list[int]:
    """Remove identity (names, contact, documents) from eligible records, and, through `patient_anonymised`, what
    other apps keep of them (visit recordings). Never touches anything inside retention or under hold: each patient
    is re-checked under a row lock right before it is changed. One transaction: all of it or nothing."""
    now = now or timezone.now()
    purged = []
    for candidate in purge_candidates(now=now):
        patient = Patient.objects.select_for_update().get(pk=candidate.pk)
        if patient.anonymised_at or retention_until(patient) > now or has_open_hold(patient):
            continue
        PatientIdentifier.objects.filter(patient=patient).delete()
        # Rectifications keep old names and contact data: they go with the identity they belonged to.
        PatientRevision.objects.filter(patient=patient).delete()
        # Representatives' names, documents and phones are identity too.
        LegalRepresentative.objects.filter(patient=patient).delete()
        for field in (
            "address",
            "phone",
            "email",
            "insurance_number",
            "emergency_contact_name",
            "emergency_contact_phone",
        ):
            setattr(patient, field, None)
        patient.given_names = ANONYMISED
        patient.paternal_surname = ANONYMISED
        patient.maternal_surname = ""
        patient.search_name = ANONYMISED
        patient.anonymised_at = now
        patient.save()
        audit.record(
            action=AuditAction.PATIENT_ANONYMISED,
            actor_role="system",
            patient_id=patient.pk,
            object_type="patient",
            object_id=patient.pk,
        )
        # What other apps keep of this patient goes with the identity (recordings: file and key destroyed).
        patient_anonymised.send(sender=Patient, patient_id=patient.pk, now=now)
        purged.append(patient.pk)
    return purged
