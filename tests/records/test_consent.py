"""Consent: versioned texts, grant/revoke ledger that is never edited, the visit and recording gates."""

import base64
import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from audit.models import AuditEvent
from records.consent import (
    OutdatedConsentVersion,
    Representative,
    consent_document_publish,
    consent_record,
    consent_states,
    current_document,
    may_record,
    may_start_visit,
)
from records.fhir import consent_resource
from records.models import ConsentDecision, ConsentKind, ConsentMethod, Decision, DocumentType, Sex
from records.services import DocumentInput, patient_register

PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


@pytest.fixture
def patient(personas):
    return patient_register(
        registered_by=personas.coordinator,
        establishment=personas.establishment,
        given_names="Rosa",
        paternal_surname="Quispe",
        sex=Sex.FEMALE,
        birth_date=dt.date(1984, 3, 9),
        documents=[DocumentInput(DocumentType.DNI, "10117410")],
    )


def publish(personas, kind, text="Acepto la atención por telemedicina.", validity_days=None):
    return consent_document_publish(
        kind=kind,
        texts={"es-pe": ("Consentimiento", text), "en": ("Consent", text + " (en)")},
        validity_days=validity_days,
        published_by=personas.admin,
    )[0]


def grant(patient, document, *, decision=Decision.GRANT, now=None, **extra):
    return consent_record(
        patient=patient,
        document=document,
        decision=decision,
        method=extra.pop("method", ConsentMethod.TYPED_NAME),
        shown_sha256=extra.pop("shown_sha256", document.text_sha256),
        actor=extra.pop("actor", None),
        typed_name=extra.pop("typed_name", "Rosa Quispe"),
        source_address="190.12.0.1",
        user_agent="Mozilla/5.0 (Linux; Android 13)",
        now=now,
        **extra,
    )


@pytest.mark.django_db
def test_visit_gate_needs_telemedicine_and_data_processing(personas, patient):
    tele = publish(personas, ConsentKind.TELEMEDICINE)
    data = publish(personas, ConsentKind.DATA_PROCESSING, "Autorizo el tratamiento de mis datos.")
    assert not may_start_visit(patient.pk).allowed
    grant(patient, tele)
    gate = may_start_visit(patient.pk)
    assert not gate.allowed and gate.missing == ["data_processing"]
    grant(patient, data)
    assert may_start_visit(patient.pk).allowed


@pytest.mark.django_db
def test_grant_revoke_regrant_keeps_every_record(personas, patient):
    tele = publish(personas, ConsentKind.TELEMEDICINE)
    data = publish(personas, ConsentKind.DATA_PROCESSING, "Datos.")
    grant(patient, data)
    t0 = timezone.now()
    first = grant(patient, tele, now=t0)
    grant(patient, tele, decision=Decision.REVOKE, now=t0 + dt.timedelta(minutes=1))
    assert not may_start_visit(patient.pk, at=t0 + dt.timedelta(minutes=2)).allowed
    assert (
        consent_states(patient.pk, ("telemedicine",), at=t0 + dt.timedelta(minutes=2))["telemedicine"].reason
        == "revoked"
    )
    grant(patient, tele, now=t0 + dt.timedelta(minutes=3))
    assert may_start_visit(patient.pk, at=t0 + dt.timedelta(minutes=4)).allowed
    assert ConsentDecision.objects.filter(patient=patient, kind="telemedicine").count() == 3
    ConsentDecision.objects.get(pk=first.pk)  # the original grant is untouched
    assert AuditEvent.objects.filter(action="records.consent.revoked", patient_id=patient.pk).count() == 1


@pytest.mark.django_db
def test_expired_grant_no_longer_counts(personas, patient):
    tele = publish(personas, ConsentKind.TELEMEDICINE, validity_days=365)
    publish(personas, ConsentKind.DATA_PROCESSING, "Datos.")
    data = current_document(ConsentKind.DATA_PROCESSING)
    t0 = timezone.now()
    grant(patient, tele, now=t0)
    grant(patient, data, now=t0)
    assert may_start_visit(patient.pk, at=t0 + dt.timedelta(days=364)).allowed
    later = may_start_visit(patient.pk, at=t0 + dt.timedelta(days=366))
    assert not later.allowed and later.states["telemedicine"].reason == "expired"


@pytest.mark.django_db
def test_new_version_supersedes_and_outdated_submissions_are_refused(personas, patient):
    v1 = publish(personas, ConsentKind.TELEMEDICINE, "Versión uno.")
    grant(patient, v1)
    v2 = publish(personas, ConsentKind.TELEMEDICINE, "Versión dos, con cambios.")
    assert v2.version == v1.version + 1
    assert consent_states(patient.pk, ("telemedicine",))["telemedicine"].reason == "superseded"
    with pytest.raises(OutdatedConsentVersion) as raised:
        grant(patient, v1)
    assert raised.value.current == v2  # the new text is what the page shows next
    with pytest.raises(OutdatedConsentVersion):
        grant(patient, v2, shown_sha256=v1.text_sha256)  # shown an older text than submitted


@pytest.mark.django_db
def test_english_text_is_served_and_spanish_is_the_fallback(personas):
    publish(personas, ConsentKind.TELEMEDICINE)
    assert current_document(ConsentKind.TELEMEDICINE, "en").language == "en"
    assert current_document(ConsentKind.TELEMEDICINE, "qu").language == "es-pe"


@pytest.mark.django_db
def test_recording_gate_needs_every_patient_and_every_kind(personas, patient):
    video = publish(personas, ConsentKind.RECORDING_VIDEO, "Grabar video.")
    audio = publish(personas, ConsentKind.RECORDING_AUDIO, "Grabar audio.")
    grant(patient, video)
    assert may_record([patient.pk], (ConsentKind.RECORDING_VIDEO,)).allowed
    assert not may_record([patient.pk], (ConsentKind.RECORDING_VIDEO, ConsentKind.RECORDING_AUDIO)).allowed
    grant(patient, audio)
    assert may_record([patient.pk], (ConsentKind.RECORDING_VIDEO, ConsentKind.RECORDING_AUDIO)).allowed
    assert not may_record([], (ConsentKind.RECORDING_VIDEO,)).allowed


@pytest.mark.django_db
def test_drawn_signature_and_verbal_consent_rules(personas, patient):
    tele = publish(personas, ConsentKind.TELEMEDICINE)
    signed = grant(
        patient,
        tele,
        method=ConsentMethod.DRAWN_SIGNATURE,
        signature_data_url="data:image/png;base64," + base64.b64encode(PNG_1PX).decode(),
    )
    assert ConsentDecision.objects.get(pk=signed.pk).signature_png.startswith("data:image/png")
    for bad, code in [
        ("data:image/svg+xml;base64,PHN2Zz4=", "signature_type"),
        ("data:image/png;base64," + base64.b64encode(b"GIF89a....").decode(), "signature_type"),
        ("data:image/png;base64," + base64.b64encode(PNG_1PX + b"\0" * 250_000).decode(), "signature_size"),
        ("data:image/png;base64,@@@", "signature_corrupt"),
    ]:
        with pytest.raises(ValidationError) as raised:
            grant(patient, tele, method=ConsentMethod.DRAWN_SIGNATURE, signature_data_url=bad)
        assert raised.value.code == code
    with pytest.raises(ValidationError) as raised:
        grant(patient, tele, method=ConsentMethod.VERBAL_WITNESSED, actor=personas.coordinator, witness_name="Ana")
    assert raised.value.code == "verbal_actor"
    with pytest.raises(ValidationError) as raised:
        grant(patient, tele, method=ConsentMethod.VERBAL_WITNESSED, actor=personas.practitioner)
    assert raised.value.code == "witness_required"
    verbal = grant(
        patient, tele, method=ConsentMethod.VERBAL_WITNESSED, actor=personas.practitioner, witness_name="Ana Torres"
    )
    assert verbal.recorded_by == personas.practitioner


@pytest.mark.django_db
def test_minors_consent_through_their_representative(personas):
    child = patient_register(
        registered_by=personas.coordinator,
        establishment=personas.establishment,
        given_names="Lucía",
        paternal_surname="Quispe",
        sex=Sex.FEMALE,
        birth_date=timezone.localdate() - dt.timedelta(days=365 * 9),
        documents=[DocumentInput(DocumentType.DNI, "70000001")],
    )
    tele = publish(personas, ConsentKind.TELEMEDICINE)
    with pytest.raises(ValidationError) as raised:
        grant(child, tele)
    assert raised.value.code == "representative_required"
    row = grant(child, tele, representative=Representative("Rosa Quispe", "madre"))
    assert row.by_representative and ConsentDecision.objects.get(pk=row.pk).representative_name == "Rosa Quispe"


@pytest.mark.django_db
def test_decisions_and_published_texts_cannot_be_edited_or_deleted(personas, patient):
    tele = publish(personas, ConsentKind.TELEMEDICINE)
    row = grant(patient, tele)
    for statement in (
        "UPDATE records_consentdecision SET decision = 'revoke' WHERE id = %s",
        "DELETE FROM records_consentdecision WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="never changed or deleted"), transaction.atomic():
            connection.cursor().execute(statement, [row.pk])
    with pytest.raises(DatabaseError, match="never changed or deleted"), transaction.atomic():
        connection.cursor().execute("UPDATE records_consentdocument SET text = 'changed' WHERE id = %s", [tele.pk])
    with pytest.raises(DatabaseError, match="never changed or deleted"), transaction.atomic():
        cursor = connection.cursor()
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # fire pending FK checks so TRUNCATE reaches our trigger
        cursor.execute("TRUNCATE records_consentdecision CASCADE")


@pytest.mark.django_db
def test_consent_renders_as_valid_fhir_r4_consent(personas, patient):
    tele = publish(personas, ConsentKind.TELEMEDICINE, validity_days=30)
    granted = grant(patient, tele)
    resource = consent_resource(ConsentDecision.objects.get(pk=granted.pk))
    data = resource.model_dump(mode="json")
    assert data["resourceType"] == "Consent" and data["status"] == "active"
    assert data["provision"]["type"] == "permit" and "end" in data["provision"]["period"]
    assert data["patient"]["reference"] == f"Patient/{patient.pk}"
    revoked = grant(patient, tele, decision=Decision.REVOKE)
    assert consent_resource(revoked).model_dump(mode="json")["provision"]["type"] == "deny"
    assert "Rosa" not in resource.model_dump_json()  # no names inside the consent resource
