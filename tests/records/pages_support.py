"""Shared set-up for the tests of records' staff pages: one registered patient in the care of the treating
practitioner, published consent texts, an open data-protection request, and every persona signed in."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone

from records.care import care_relationship_start
from records.consent import consent_document_publish
from records.models import CareSource, ConsentKind, DataRightsRequest, DocumentType, Patient, RightsKind, Sex
from records.rights import rights_request_file
from records.services import DocumentInput, patient_register
from tests.factories import UserFactory

PERSONAS = ["patient_self", "other_patient", "treating", "unrelated", "coordinator", "admin", "auditor", "anonymous"]
MISSING_ID = 987_654


@dataclass
class World:
    personas: object
    patient: Patient
    other_patient_user: object
    rights_request: DataRightsRequest
    consent_document_id: int

    def user(self, persona: str):
        p = self.personas
        return {
            "patient_self": p.patient,
            "other_patient": self.other_patient_user,
            "treating": p.practitioner,
            "unrelated": p.outsider,
            "coordinator": p.coordinator,
            "admin": p.admin,
            "auditor": p.auditor,
            "anonymous": None,
        }[persona]


def publish_all(admin, *, version_note: str = "") -> None:
    for kind in ConsentKind:
        consent_document_publish(
            kind=kind,
            texts={
                "es-pe": (f"Consentimiento {kind.label}", f"Texto en español {version_note}."),
                "en": (f"Consent {kind.value}", f"English text {version_note}."),
            },
            validity_days=365 if kind == ConsentKind.TELEMEDICINE else None,
            published_by=admin,
        )


def build_world(personas) -> World:
    now = timezone.now()
    patient = patient_register(
        registered_by=personas.coordinator,
        establishment=personas.establishment,
        given_names="Rosa",
        paternal_surname="Quispe",
        maternal_surname="Huamán",
        sex=Sex.FEMALE,
        birth_date=dt.date(1984, 3, 9),
        documents=[DocumentInput(DocumentType.DNI, "10117410")],
        phone="+51 987 654 321",
        history_number="HC-0001",
        user=personas.patient,
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
    publish_all(personas.admin)
    request = rights_request_file(
        patient=patient,
        kind=RightsKind.RECTIFICATION,
        description="Mi teléfono cambió y mi apellido materno está mal escrito.",
        filed_by=personas.patient,
    )
    from records.models import ConsentDocument

    document_id = ConsentDocument.objects.filter(kind=ConsentKind.TELEMEDICINE).values_list("pk", flat=True).first()
    other = UserFactory(email="otro.paciente@example.test")
    return World(personas, patient, other, request, document_id)
