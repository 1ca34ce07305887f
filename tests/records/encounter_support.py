"""Shared helpers for the encounter-record tests: a registered patient, a started encounter, a complete note."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from records.encounters import encounter_start
from records.models import DocumentType, Encounter, ParticipantRole, Patient, Sex
from records.services import DocumentInput, patient_register


def verified(user):
    """As after a sign-in with the second factor (what OTPMiddleware sets on request.user)."""
    user.is_verified = lambda: True
    return user


def registered_patient(personas, *, dni: str = "10117410") -> Patient:
    patient = patient_register(
        registered_by=personas.coordinator,
        establishment=personas.establishment,
        given_names="Rosa",
        paternal_surname="Quispe",
        sex=Sex.FEMALE,
        birth_date=dt.date(1984, 3, 9),
        documents=[DocumentInput(DocumentType.DNI, dni)],
    )
    patient.user = personas.patient
    patient.save(update_fields=["user"])
    return patient


def started_encounter(personas, patient: Patient, *, ref: str = "a1b2c3d4-appointment") -> Encounter:
    return encounter_start(
        patient=patient,
        appointment_ref=ref,
        service_type="teleconsulta",
        modality_planned="video",
        origin_establishment=personas.establishment,
        participants=[(personas.practitioner, ParticipantRole.ATTENDING, None)],
        by=personas.practitioner,
    )


COMPLETE: dict[str, Any] = {
    "reason": "Dolor de garganta y fiebre desde hace tres días.",
    "anamnesis": {
        "illness_duration": "3 días",
        "onset": "Brusco",
        "course": "Progresivo",
        "story": "Odinofagia intensa, fiebre de 38.5 °C, sin tos. Niega disnea.",
    },
    "history": "Sin antecedentes de importancia. Alergia a penicilina referida.",
    "examination": {
        "text": "Paciente lúcida, orofaringe congestiva por video, sin exudado visible.",
        "vital_signs": {
            "temperature_c": 38.2,
            "heart_rate": 96,
            "respiratory_rate": 18,
            "systolic": 118,
            "diastolic": 76,
            "spo2": 98,
            "weight_kg": 61.5,
            "height_cm": 158,
        },
        "patient_reported": True,
    },
    "diagnoses": [{"code": "J02.9", "type": "presumptive"}],
    "plan": "Control por teleconsulta en 72 horas; acudir a emergencia si hay dificultad respiratoria.",
    "prescriptions": [
        {
            "id": "6f1c2f4e-8a7b-4c1d-9e2f-3a4b5c6d7e8f",
            "drug": "Paracetamol",
            "concentration": "500 mg",
            "form": "Tableta",
            "dose": "1",
            "dose_unit": "tableta",
            "route": "Oral",
            "frequency": "Cada 8 horas",
            "duration": "3 días",
            "quantity": "9",
            "instructions": "Tomar después de las comidas.",
        }
    ],
    "treatment": "Medidas generales, hidratación.",
    "indications": "Reposo relativo, abundantes líquidos.",
    "next_appointment": "En 3 días",
}


def complete_content() -> dict[str, Any]:
    return copy.deepcopy(COMPLETE)
