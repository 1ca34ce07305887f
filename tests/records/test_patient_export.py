"""Access and portability: the patient's own data as JSON and PDF, only for themself, audited."""

import datetime as dt
import json
import re
import zlib

import pytest

from accounts.access import AccessDenied
from audit.models import AuditEvent
from records.models import DocumentType, Sex
from records.rights import patient_export
from records.services import DocumentInput, patient_register


@pytest.fixture
def patient(personas):
    patient = patient_register(
        registered_by=personas.coordinator,
        establishment=personas.establishment,
        given_names="Rosa Elena",
        paternal_surname="Núñez",
        sex=Sex.FEMALE,
        birth_date=dt.date(1984, 3, 9),
        documents=[DocumentInput(DocumentType.DNI, "10117410")],
        phone="+51 984 123 456",
        history_number="HC-77",
    )
    patient.user = personas.patient
    patient.save(update_fields=["user"])
    return patient


@pytest.mark.django_db
def test_json_export_holds_own_data_and_is_audited(personas, patient):
    content, content_type = patient_export(user=personas.patient, patient_id=patient.pk, fmt="json")
    assert content_type == "application/json"
    bundle = json.loads(content)
    assert bundle["format"] == "teleconsult.patient-export/1"
    assert bundle["patient"]["phone"] == "+51 984 123 456"
    assert bundle["identifiers"] == [{"type": "dni", "country": "PER", "number": "10117410"}]
    assert bundle["clinical_history_numbers"][0]["number"] == "HC-77"
    assert any(e["action"] == "records.patient.registered" for e in bundle["access_log"])
    event = AuditEvent.objects.get(action="records.patient.exported")
    assert event.patient_id == patient.pk and event.details == {"format": "json"}


@pytest.mark.django_db
def test_pdf_export_is_a_pdf_with_the_name(personas, patient):
    content, content_type = patient_export(user=personas.patient, patient_id=patient.pk, fmt="pdf")
    assert content_type == "application/pdf" and content.startswith(b"%PDF-")

    streams = re.findall(rb"stream\r?\n(.*?)\r?\nendstream", content, re.S)
    text = b"".join(zlib.decompress(s) for s in streams if s[:1] == b"x")
    # The page content streams carry the name in the core font's Latin-1 encoding.
    assert "Núñez".encode("latin-1") in text


@pytest.mark.django_db
def test_only_the_patient_may_export(personas, patient):
    for user in (personas.practitioner, personas.coordinator, personas.admin, personas.auditor):
        with pytest.raises(AccessDenied):
            patient_export(user=user, patient_id=patient.pk, fmt="json")
    assert not AuditEvent.objects.filter(action="records.patient.exported").exists()


@pytest.mark.django_db
def test_export_includes_legal_representatives(personas, patient):
    from records.models import RepresentativeRelationship
    from records.services import legal_representative_add

    legal_representative_add(
        patient=patient,
        name="Juana Núñez",
        document_type=DocumentType.DNI,
        document_number="20000001",
        relationship=RepresentativeRelationship.MOTHER,
        phone="",
        added_by=personas.coordinator,
    )
    bundle = json.loads(patient_export(user=personas.patient, patient_id=patient.pk, fmt="json")[0])
    [representative] = bundle["legal_representatives"]
    assert representative["name"] == "Juana Núñez" and representative["document_number"] == "20000001"
