"""Writes for patients: registration with identifier checks, duplicate flagging, history numbers."""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Establishment, User
from audit import services as audit
from audit.actions import AuditAction
from records.identifiers import document_lookup, normalise_document
from records.models import ClinicalHistoryNumber, Patient, PatientIdentifier, PossibleDuplicate


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
    registered_by: User,
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
) -> Patient:
    """Register a patient with at least one identity document; flag (never merge) possible duplicates."""
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
            raise DuplicateIdentifier(
                _("Ya existe un paciente registrado con ese documento."), code="duplicate_identifier"
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
        actor_user_id=registered_by.pk,
        actor_role=registered_by.role,
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
