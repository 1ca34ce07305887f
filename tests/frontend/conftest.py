"""Fixtures for the patient's pages: a patient record linked to the patient persona, published consent texts."""

from __future__ import annotations

import datetime as dt

import pytest

from accounts.models import Role
from records.consent import consent_document_publish
from records.models import ConsentKind, DocumentType, Sex
from records.services import DocumentInput, patient_register
from tests.factories import UserFactory

TEXTS = {
    ConsentKind.TELEMEDICINE: (
        ("Consentimiento informado para telemedicina", "Acepto ser atendido por telemedicina.\n\nPuedo revocarlo."),
        ("Telemedicine informed consent", "I agree to be cared for by telemedicine.\n\nI may revoke it."),
    ),
    ConsentKind.DATA_PROCESSING: (
        ("Tratamiento de datos personales", "Autorizo el tratamiento de mis datos personales (Ley 29733)."),
        ("Personal data processing", "I authorise the processing of my personal data (Law 29733)."),
    ),
    ConsentKind.RECORDING_VIDEO: (
        ("Grabación de video", "Autorizo grabar el video de mis consultas."),
        ("Video recording", "I authorise recording the video of my visits."),
    ),
}


def register(personas, *, given="Rosa", surname="Quispe", dni="10117410", birth=dt.date(1984, 3, 9), user=None):
    patient = patient_register(
        registered_by=personas.coordinator,
        establishment=personas.establishment,
        given_names=given,
        paternal_surname=surname,
        sex=Sex.FEMALE,
        birth_date=birth,
        documents=[DocumentInput(DocumentType.DNI, dni)],
    )
    if user is not None:
        patient.user = user
        patient.save(update_fields=["user"])
    return patient


def publish(personas, kind, *, suffix=""):
    (es_title, es_text), (en_title, en_text) = TEXTS[kind]
    return consent_document_publish(
        kind=kind,
        texts={"es-pe": (es_title, es_text + suffix), "en": (en_title, en_text + suffix)},
        validity_days=None,
        published_by=personas.admin,
    )


@pytest.fixture
def patient(personas):
    """Rosa Quispe's record, linked to the patient persona's login."""
    return register(personas, user=personas.patient)


@pytest.fixture
def other_patient_user(personas):
    user = UserFactory(email="otra.paciente@example.test", role=Role.PATIENT)
    register(personas, given="Luz", surname="Mamani", dni="44556677", birth=dt.date(1990, 1, 2), user=user)
    return user


@pytest.fixture
def unlinked_patient_user(db):
    return UserFactory(email="sin.historia@example.test", role=Role.PATIENT)


@pytest.fixture
def documents(personas):
    """The current texts of the two visit consents and the video-recording consent, in Spanish and English."""
    return {kind: publish(personas, kind) for kind in TEXTS}
