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


@pytest.fixture
def clinical_record(personas, patient):
    """A finished visit with a signed note and its amendment, a draft of another visit, and the chart's lists."""
    from records.encounters import encounter_finish
    from records.medications import allergy_record, medication_record, medication_update, problem_record
    from records.notes import note_create, note_save_draft
    from records.signing import amendment_add, note_sign
    from tests.records.encounter_support import complete_content, started_encounter, verified

    practitioner = verified(personas.practitioner)
    encounter = started_encounter(personas, patient, ref="appointment-1")
    encounter_finish(encounter=encounter, by=practitioner)
    note = note_create(encounter=encounter, author=practitioner)
    note = note_save_draft(note=note, content=complete_content(), by=practitioner, expected_version=note.version)
    signed = note_sign(note=note, signer=practitioner, reauthenticated=True)
    amendment_add(
        note=signed,
        author=practitioner,
        reason="Corrección de la cantidad",
        text="Son 10 tabletas.",
        reauthenticated=True,
    )
    other = started_encounter(personas, patient, ref="appointment-2")
    draft = note_create(encounter=other, author=practitioner)
    draft_content = complete_content()
    draft_content["reason"] = "Borrador sin firmar"
    note_save_draft(note=draft, content=draft_content, by=practitioner, expected_version=draft.version)
    allergy_record(
        patient=patient, substance="Penicilina", severity="severe", reaction="Urticaria", recorded_by=practitioner
    )
    problem_record(patient=patient, cie10_code="I10", description="Hipertensión controlada", recorded_by=practitioner)
    medication_record(
        patient=patient,
        drug_name="Losartán 50 mg",
        dose="1 tableta al día",
        source="reported",
        recorded_by=practitioner,
    )
    stopped = medication_record(patient=patient, drug_name="Omeprazol", source="reported", recorded_by=practitioner)
    medication_update(medication=stopped, status="stopped", by=practitioner)
    return signed


@pytest.mark.django_db
def test_json_export_holds_the_clinical_record_signed_notes_only(personas, patient, clinical_record):
    bundle = json.loads(patient_export(user=personas.patient, patient_id=patient.pk, fmt="json")[0])

    encounters = bundle["encounters"]
    assert [e["status"] for e in encounters] == ["finished", "in_progress"]
    first = encounters[0]
    profile = personas.practitioner.practitioner_profile
    assert first["participants"][0]["registry_number"] == profile.registry_number
    assert first["establishment"] == {"name": "Centro de Salud Belén", "renipress": "00006210"}
    [note] = first["notes"]
    assert note["id"] == clinical_record.pk and note["content_sha256"] == clinical_record.content_sha256
    assert note["content"]["reason"] == "Dolor de garganta y fiebre desde hace tres días."
    assert note["content"]["prescriptions"][0]["drug"] == "Paracetamol"
    assert [(a["reason"], a["text"]) for a in note["amendments"]] == [("Corrección de la cantidad", "Son 10 tabletas.")]
    assert encounters[1]["notes"] == []  # a draft is not part of the record yet
    assert "Borrador sin firmar" not in json.dumps(bundle, ensure_ascii=False)
    [allergy] = bundle["allergies"]
    assert (allergy["substance"], allergy["severity"], allergy["reaction"]) == ("Penicilina", "severe", "Urticaria")
    [problem] = bundle["problems"]
    assert problem["cie10_code"] == "I10" and problem["description"] == "Hipertensión controlada"
    assert [(m["drug"], m["status"]) for m in bundle["medications"]] == [
        ("Losartán 50 mg", "active"),
        ("Omeprazol", "stopped"),
    ]
    # The export's own audit event names the format only: no clinical text.
    assert AuditEvent.objects.get(action="records.patient.exported").details == {"format": "json"}


@pytest.mark.django_db
def test_pdf_export_shows_the_signed_note_and_the_lists(personas, patient, clinical_record):
    content, _ = patient_export(user=personas.patient, patient_id=patient.pk, fmt="pdf")

    streams = re.findall(rb"stream\r?\n(.*?)\r?\nendstream", content, re.S)
    text = b"".join(zlib.decompress(s) for s in streams if s[:1] == b"x").decode("latin-1")
    for expected in (
        "Atenciones y notas firmadas",
        "Dolor de garganta",
        "Paracetamol",
        "Son 10 tabletas.",
        "Penicilina",
        "Hipertensi",
        "Losart",
    ):
        assert expected in text, expected
    assert "Borrador sin firmar" not in text


@pytest.mark.django_db
def test_the_export_takes_the_same_number_of_queries_for_more_visits(personas, patient, clinical_record):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from records.encounters import encounter_finish
    from records.notes import note_create, note_save_draft
    from records.signing import note_sign
    from tests.records.encounter_support import complete_content, started_encounter

    with CaptureQueriesContext(connection) as before:
        patient_export(user=personas.patient, patient_id=patient.pk, fmt="json")
    for number in range(3, 6):
        encounter = started_encounter(personas, patient, ref=f"appointment-{number}")
        encounter_finish(encounter=encounter, by=personas.practitioner)
        note = note_create(encounter=encounter, author=personas.practitioner)
        note = note_save_draft(
            note=note, content=complete_content(), by=personas.practitioner, expected_version=note.version
        )
        note_sign(note=note, signer=personas.practitioner, reauthenticated=True)
    with CaptureQueriesContext(connection) as after:
        bundle = json.loads(patient_export(user=personas.patient, patient_id=patient.pk, fmt="json")[0])

    assert len(bundle["encounters"]) == 5
    assert len(after.captured_queries) == len(before.captured_queries)
