"""Writes for patients: registration with identifier checks, duplicate flagging, history numbers."""

from __future__ import annotations

import datetime as dt
import json
import unicodedata
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Establishment, User
from audit import services as audit
from audit.actions import AuditAction, Purpose
from records.identifiers import document_lookup, normalise_document
from records.models import (
    ClinicalHistoryNumber,
    DataRightsRequest,
    DuplicateStatus,
    Insurance,
    LegalRepresentative,
    Patient,
    PatientIdentifier,
    PatientRevision,
    PossibleDuplicate,
    RepresentativeRelationship,
)


@dataclass(frozen=True)
class DocumentInput:
    document_type: str
    number: str
    issuing_country: str = "PER"


def search_name(*parts: str) -> str:
    """Upper case without accents or extra spaces: "Núñez  de la Cruz" → "NUNEZ DE LA CRUZ"."""
    text = " ".join(p for p in parts if p)
    folded = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return " ".join(folded.upper().split())


class DuplicateIdentifier(ValidationError):
    """The document already belongs to a registered patient."""


@transaction.atomic
def patient_register(
    *,
    registered_by: User | None,
    establishment: Establishment,
    given_names: str,
    paternal_surname: str,
    maternal_surname: str = "",
    sex: str,
    birth_date: dt.date,
    documents: list[DocumentInput],
    phone: str | None = None,
    email: str | None = None,
    address: str | None = None,
    history_number: str | None = None,
    insurance: str = Insurance.NONE,
    insurance_number: str | None = None,
    emergency_contact_name: str | None = None,
    emergency_contact_phone: str | None = None,
    user: User | None = None,
) -> Patient:
    """Register a patient with at least one identity document; flag (never merge) possible duplicates.

    `registered_by` None means the system (demo seeding); `user` links the patient's own sign-in.
    """
    if not documents:
        raise ValidationError(_("Registre al menos un documento de identidad."), code="no_document")
    if birth_date > timezone.localdate():
        raise ValidationError(_("La fecha de nacimiento no puede estar en el futuro."), code="future_birth_date")
    normalised = [normalise_document(d.document_type, d.number, d.issuing_country) for d in documents]
    patient = Patient(
        given_names=given_names.strip(),
        paternal_surname=paternal_surname.strip(),
        maternal_surname=maternal_surname.strip(),
        search_name=search_name(paternal_surname, maternal_surname, given_names),
        sex=sex,
        birth_date=birth_date,
        phone=phone or None,
        email=email or None,
        address=address or None,
        insurance=insurance,
        insurance_number=insurance_number or None,
        emergency_contact_name=emergency_contact_name or None,
        emergency_contact_phone=emergency_contact_phone or None,
        user=user,
    )
    patient.full_clean(exclude=["search_name"])
    patient.save()
    for document, (number, country) in zip(documents, normalised, strict=True):
        try:
            # A savepoint, so the unique violation can be turned into a field error cleanly.
            with transaction.atomic():
                PatientIdentifier.objects.create(
                    patient=patient,
                    document_type=document.document_type,
                    issuing_country=country,
                    value=number,
                    lookup=document_lookup(document.document_type, number, country),
                )
        except IntegrityError:
            # `params` names the document, so a form can put the error on the right field.
            raise DuplicateIdentifier(
                _("Ya existe un paciente registrado con ese documento."),
                code="duplicate_identifier",
                params={"document_type": document.document_type},
            ) from None
    if history_number:
        try:
            with transaction.atomic():
                ClinicalHistoryNumber.objects.create(
                    patient=patient, establishment=establishment, number=history_number.strip()
                )
        except IntegrityError:
            raise ValidationError(
                _("Ese número de historia clínica ya está asignado en este establecimiento."),
                code="history_number_taken",
            ) from None
    audit.record(
        action=AuditAction.PATIENT_REGISTERED,
        actor_user_id=registered_by.pk if registered_by else None,
        actor_role=registered_by.role if registered_by else "system",
        actor_establishment_id=establishment.pk,
        patient_id=patient.pk,
        object_type="patient",
        object_id=patient.pk,
        details={"document_types": [d.document_type for d in documents]},
    )
    _flag_possible_duplicates(patient)
    return patient


def _flag_possible_duplicates(patient: Patient) -> None:
    twins = Patient.objects.filter(search_name=patient.search_name, birth_date=patient.birth_date).exclude(
        pk=patient.pk
    )
    for twin in twins.only("pk"):
        low, high = sorted((patient.pk, twin.pk))
        flag, created = PossibleDuplicate.objects.get_or_create(patient_id=low, other_id=high)
        if created:
            audit.record(
                action=AuditAction.DUPLICATE_FLAGGED,
                actor_role="system",
                patient_id=patient.pk,
                object_type="possible_duplicate",
                object_id=flag.pk,
                details={"other_patient": twin.pk},
            )


@transaction.atomic
def possible_duplicate_resolve(*, flag: PossibleDuplicate, status: DuplicateStatus, by: User) -> PossibleDuplicate:
    """A person decides whether two flagged records are the same person. Nothing is merged either way:
    "same person" is a finding for the data-protection officer to act on, not an automatic merge."""
    if status not in (DuplicateStatus.DISTINCT, DuplicateStatus.SAME_PERSON):
        raise ValidationError(_("Estado no válido."), code="status")
    locked = PossibleDuplicate.objects.select_for_update().get(pk=flag.pk)
    locked.status = status
    locked.resolved_by = by
    locked.resolved_at = timezone.now()
    locked.save(update_fields=["status", "resolved_by", "resolved_at"])
    audit.record(
        action=AuditAction.DUPLICATE_RESOLVED,
        actor_user_id=by.pk,
        actor_role=by.role,
        patient_id=locked.patient_id,
        object_type="possible_duplicate",
        object_id=locked.pk,
        details={"status": status.value, "other_patient": locked.other_id},
    )
    return locked


# Demographic fields a rectification may change (identifiers are not among them: a wrong document is a
# new registration question, decided by the data-protection officer outside this form).
RECTIFIABLE_FIELDS = (
    "given_names",
    "paternal_surname",
    "maternal_surname",
    "sex",
    "birth_date",
    "address",
    "phone",
    "email",
    "insurance",
    "insurance_number",
    "emergency_contact_name",
    "emergency_contact_phone",
)


_ENCRYPTED_OPTIONAL = frozenset(
    {"address", "phone", "email", "insurance_number", "emergency_contact_name", "emergency_contact_phone"}
)


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


@transaction.atomic
def patient_rectify(
    *, patient: Patient, changes: dict[str, object], by: User, rights_request: DataRightsRequest | None = None
) -> PatientRevision | None:
    """Rectify demographic data (Law 29733): the new values replace the old, which are kept, encrypted, in
    a PatientRevision. Returns None when nothing actually changed. Audited with field names only."""
    unknown = set(changes) - set(RECTIFIABLE_FIELDS)
    if unknown:
        raise ValueError(f"Not rectifiable: {sorted(unknown)}")
    locked = Patient.objects.select_for_update().get(pk=patient.pk)
    previous: dict[str, str | None] = {}
    for name, value in changes.items():
        if isinstance(value, str):
            value = value.strip()
            if not value and name in _ENCRYPTED_OPTIONAL:
                value = None  # encrypted columns store "nothing" as NULL, not an encrypted empty string
        if _as_text(getattr(locked, name)) != _as_text(value):
            previous[name] = _as_text(getattr(locked, name))
            setattr(locked, name, value)
    if not previous:
        return None
    if locked.birth_date > timezone.localdate():
        raise ValidationError(_("La fecha de nacimiento no puede estar en el futuro."), code="future_birth_date")
    locked.search_name = search_name(locked.paternal_surname, locked.maternal_surname, locked.given_names)
    locked.full_clean(exclude=["search_name"])
    locked.save()
    revision = PatientRevision.objects.create(
        patient=locked,
        changed_fields=sorted(previous),
        previous_values=json.dumps(previous, ensure_ascii=False),
        changed_by=by,
        rights_request=rights_request,
    )
    audit.record(
        action=AuditAction.PATIENT_RECTIFIED,
        purpose=Purpose.PATIENT_REQUEST if rights_request else Purpose.OPERATIONS,
        actor_user_id=by.pk,
        actor_role=by.role,
        patient_id=locked.pk,
        object_type="patient_revision",
        object_id=revision.pk,
        details={"fields": sorted(previous), "rights_request": rights_request.pk if rights_request else None},
    )
    if {"given_names", "paternal_surname", "maternal_surname", "birth_date"} & set(previous):
        _flag_possible_duplicates(locked)
    patient.refresh_from_db()
    return revision


@transaction.atomic
def legal_representative_add(
    *,
    patient: Patient,
    name: str,
    document_type: str,
    document_number: str,
    relationship: str,
    phone: str | None,
    added_by: User,
    valid_from: dt.date | None = None,
    valid_until: dt.date | None = None,
) -> LegalRepresentative:
    """Name a person who may consent for a minor or a dependent adult (PAT-2). The document is validated like
    a patient's (DNI check character included); audited with ids only, never the name or the number."""
    name = " ".join((name or "").split())
    if len(name) < 3:
        raise ValidationError(_("Escriba el nombre completo del representante."), code="name_required")
    if relationship not in RepresentativeRelationship.values:
        raise ValidationError(_("Elija la relación del representante con el paciente."), code="relationship")
    number, _country = normalise_document(document_type, document_number)
    valid_from = valid_from or timezone.localdate()
    if valid_until is not None and valid_until < valid_from:
        raise ValidationError(
            _("La fecha de fin no puede ser anterior a la fecha de inicio."), code="valid_until_before_from"
        )
    representative = LegalRepresentative(
        patient=patient,
        name=name,
        document_type=document_type,
        document_number=number,
        relationship=relationship,
        phone=(phone or "").strip() or None,
        valid_from=valid_from,
        valid_until=valid_until,
        created_by=added_by,
    )
    representative.full_clean()
    representative.save()
    audit.record(
        action=AuditAction.LEGAL_REPRESENTATIVE_ADDED,
        actor_user_id=added_by.pk,
        actor_role=added_by.role,
        patient_id=patient.pk,
        object_type="legal_representative",
        object_id=representative.pk,
        details={"document_type": document_type, "relationship": relationship},
    )
    return representative


def legal_representatives_current(patient: Patient, today: dt.date | None = None) -> list[LegalRepresentative]:
    """The representatives in force today, newest first."""
    today = today or timezone.localdate()
    return list(
        LegalRepresentative.objects.filter(patient=patient, valid_from__lte=today)
        .filter(models.Q(valid_until__isnull=True) | models.Q(valid_until__gte=today))
        .order_by("-valid_from", "-pk")
    )
