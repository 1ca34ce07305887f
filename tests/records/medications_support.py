"""Shared set-up for the allergy, problem, medication and prescription tests: a registered patient in the
care of the treating practitioner, who is signed in with the second factor."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from records.care import care_relationship_start
from records.models import CareSource, DocumentType, Patient, Sex
from records.services import DocumentInput, patient_register


def verified(user):
    """As after a sign-in with the second factor (what OTPMiddleware sets on request.user)."""
    user.is_verified = lambda: True
    return user


def patient_in_care(personas) -> Patient:
    now = timezone.now()
    patient = patient_register(
        registered_by=personas.coordinator,
        establishment=personas.establishment,
        given_names="Rosa",
        paternal_surname="Quispe",
        sex=Sex.FEMALE,
        birth_date=dt.date(1954, 3, 9),
        documents=[DocumentInput(DocumentType.DNI, "10117410")],
    )
    care_relationship_start(
        patient=patient,
        practitioner=personas.practitioner,
        source=CareSource.APPOINTMENT,
        source_id="42",
        valid_from=now - dt.timedelta(hours=1),
        valid_until=now + dt.timedelta(hours=2),
        created_by=personas.coordinator,
    )
    verified(personas.practitioner)
    verified(personas.outsider)
    return patient
