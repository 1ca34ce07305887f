"""The printable record of a real signed note: what it shows, who may download it, and the audit of each download."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io

import pytest
from django.utils import translation
from pyhanko.keys.internal import translate_pyca_cryptography_cert_to_asn1
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

from accounts.access import AccessDenied
from audit.models import AuditEvent
from records.access import break_glass
from records.encounters import encounter_finish, encounter_unscheduled
from records.models import DocumentType, PractitionerKey, Sex, SigningAuthority
from records.notes import note_create, note_save_draft
from records.printable import encounter_pdf, encounter_pdf_for_download, printable_encounter, render_encounter_pdf
from records.services import DocumentInput, patient_register
from records.signing import amendment_add, note_sign
from tests.records.test_printable import extract_text

CONTENT = {
    "reason": "Dolor de garganta y fiebre.",
    "anamnesis": {"illness_duration": "3 días", "onset": "Brusco", "course": "Progresivo", "story": "Odinofagia."},
    "history": "Alergia a penicilina referida.",
    "examination": {
        "text": "Orofaringe congestiva por video.",
        "vital_signs": {
            "temperature_c": 38.2,
            "heart_rate": 96,
            "respiratory_rate": None,
            "systolic": None,
            "diastolic": None,
            "spo2": 98,
            "weight_kg": None,
            "height_cm": None,
        },
        "patient_reported": True,
    },
    "diagnoses": [{"code": "J02.9", "type": "definitive"}],
    "plan": "Control en 72 horas.",
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
            "instructions": "Después de las comidas.",
        }
    ],
    "treatment": "Hidratación.",
    "indications": "Reposo relativo.",
    "next_appointment": "En 3 días",
}


def _verified(user):
    """As after a sign-in with the second factor (what OTPMiddleware sets on request.user)."""
    user.is_verified = lambda: True
    return user


@pytest.fixture
def signed_note(personas):
    patient = patient_register(
        registered_by=personas.coordinator,
        establishment=personas.establishment,
        given_names="Rosa Elena",
        paternal_surname="Núñez",
        maternal_surname="Peña",
        sex=Sex.FEMALE,
        birth_date=dt.date(1984, 3, 9),
        documents=[DocumentInput(DocumentType.DNI, "10117410")],
        history_number="HC-77",
    )
    patient.user = personas.patient
    patient.save(update_fields=["user"])
    practitioner = _verified(personas.practitioner)
    profile = practitioner.practitioner_profile
    profile.rne = "31245"
    profile.save(update_fields=["rne"])
    encounter = encounter_unscheduled(
        patient=patient, by=practitioner, origin_establishment=personas.establishment, modality="video"
    )
    encounter_finish(encounter=encounter, by=practitioner)
    note = note_create(encounter=encounter, author=practitioner)
    note = note_save_draft(note=note, content=CONTENT, by=practitioner, expected_version=note.version)
    return note_sign(note=note, signer=practitioner, reauthenticated=True)


def _clinic_authority():
    from cryptography import x509

    return translate_pyca_cryptography_cert_to_asn1(
        x509.load_pem_x509_certificate(SigningAuthority.objects.get().certificate_pem.encode("ascii"))
    )


@pytest.mark.django_db
def test_the_record_is_built_from_the_signed_note(personas, signed_note):
    with translation.override("en"):  # the reader's language does not change the record
        data = printable_encounter(signed_note)

    assert data.establishment.name == "Centro de Salud Belén"
    assert data.establishment.renipress == "00006210"
    assert data.consulted_establishment is None
    assert data.patient.full_name == "Rosa Elena Núñez Peña"
    assert data.patient.document == "DNI 10117410"
    assert data.patient.sex == "Femenino"
    assert data.patient.history_number == "HC-77"
    assert data.patient.age.endswith(" años")
    assert data.service_type == "Teleconsulta"
    assert data.modality == "Video"
    assert data.content["reason"] == "Dolor de garganta y fiebre."
    assert [(d.code, d.type) for d in data.diagnoses] == [("J02.9", "definitive")]
    profile = personas.practitioner.practitioner_profile
    assert data.signer.full_name == personas.practitioner.full_name
    assert data.signer.profession == "Médico(a)"
    assert (data.signer.registry_body, data.signer.registry_number) == ("CMP", profile.registry_number)
    assert data.signer.content_sha256 == signed_note.content_sha256
    assert data.time_zone == "America/Lima"


@pytest.mark.django_db
def test_the_pdf_is_signed_with_the_practitioners_certificate(personas, signed_note):
    amendment_add(
        note=signed_note,
        author=personas.practitioner,
        reason="Corrección de la cantidad",
        text="Son 10 tabletas.",
        reauthenticated=True,
    )

    pdf = encounter_pdf(note=signed_note)

    reader = PdfFileReader(io.BytesIO(pdf))
    (signature,) = reader.embedded_signatures
    status = validate_pdf_signature(
        signature, ValidationContext(trust_roots=[_clinic_authority()], allow_fetching=False)
    )
    assert status.bottom_line and status.trusted
    assert status.coverage == SignatureCoverageLevel.ENTIRE_FILE
    key = PractitionerKey.objects.get(user=personas.practitioner, revoked_at__isnull=True)
    assert status.signing_cert.dump() == _pem_to_der(key.certificate_pem)
    text = extract_text(pdf)
    profile = personas.practitioner.practitioner_profile
    assert f"CMP {profile.registry_number}" in text
    assert "RNE: 31245" in text
    assert signed_note.content_sha256 in text
    assert "Rosa Elena Núñez Peña" in text
    assert "Corrección de la cantidad" in text and "Son 10 tabletas." in text
    assert "1. J02.9" in text and "(Definitivo)" in text
    assert text.index("Firma\n") < text.index("Enmiendas\n")


def _pem_to_der(pem: str) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_pem_x509_certificate(pem.encode("ascii")).public_bytes(Encoding.DER)


@pytest.mark.django_db
def test_the_patient_downloads_their_own_record_and_it_is_audited(personas, signed_note):
    pdf = encounter_pdf_for_download(user=personas.patient, note_id=signed_note.pk)

    assert pdf.startswith(b"%PDF-")
    event = AuditEvent.objects.get(action="records.note.pdf_downloaded")
    assert event.actor_user_id == personas.patient.pk
    assert event.patient_id == signed_note.patient_id
    assert (event.object_type, event.object_id) == ("note", str(signed_note.pk))
    assert event.purpose == "patient_request"
    assert "Rosa" not in str(event.details)


@pytest.mark.django_db
def test_the_treating_practitioner_may_print_it(personas, signed_note):
    _verified(personas.practitioner)

    assert encounter_pdf_for_download(user=personas.practitioner, note_id=signed_note.pk).startswith(b"%PDF-")
    assert AuditEvent.objects.get(action="records.note.pdf_downloaded").purpose == "treatment"


@pytest.mark.django_db
def test_a_download_under_break_glass_is_audited_as_an_emergency(personas, signed_note):
    outsider = _verified(personas.outsider)
    break_glass(user=outsider, patient_id=signed_note.patient_id, reason="Paciente inconsciente en emergencia")

    encounter_pdf_for_download(user=outsider, note_id=signed_note.pk)

    assert AuditEvent.objects.get(action="records.note.pdf_downloaded").purpose == "emergency"


@pytest.mark.django_db
def test_others_are_refused_alike_and_nothing_is_downloaded(personas, signed_note):
    for user in (personas.outsider, personas.coordinator, personas.admin, personas.auditor):
        _verified(user)
        with pytest.raises(AccessDenied):
            encounter_pdf_for_download(user=user, note_id=signed_note.pk)
    with pytest.raises(AccessDenied):
        encounter_pdf_for_download(user=personas.patient, note_id=signed_note.pk + 1000)

    assert not AuditEvent.objects.filter(action="records.note.pdf_downloaded").exists()
    assert AuditEvent.objects.filter(action="records.chart.denied").count() == 5


@pytest.mark.django_db
def test_a_draft_has_no_printable_record(personas, signed_note):
    practitioner = _verified(personas.practitioner)
    encounter = encounter_unscheduled(
        patient=signed_note.patient, by=practitioner, origin_establishment=personas.establishment
    )
    draft = note_create(encounter=encounter, author=practitioner)

    with pytest.raises(AccessDenied):
        encounter_pdf_for_download(user=practitioner, note_id=draft.pk)
    with pytest.raises(AccessDenied):  # the patient does not even see that a draft exists
        encounter_pdf_for_download(user=personas.patient, note_id=draft.pk)
    assert not AuditEvent.objects.filter(action="records.note.pdf_downloaded").exists()


# Fingerprints that, written after their label, ran out of line before their last character.
_WRAPPING_FINGERPRINTS = (
    "498e61832e7770a840247b91d338a78919ed4fc5937a5825327cb1ec30e68567",
    "810deab531d7bbefdcaae9c667114da2717893620c8c74ba8b7e3d94651e5300",
    "cb4917078399d53dfd3a934065063624bd127d51be87eab4173a887e77c450e9",
)


@pytest.mark.django_db
def test_the_fingerprint_of_the_signed_note_is_printed_whole(signed_note):
    data = printable_encounter(signed_note)
    fingerprints = (*_WRAPPING_FINGERPRINTS, "f" * 64, "0" * 64, "d" * 64, "1" * 64)
    for fingerprint in fingerprints:
        printed = dataclasses.replace(data, signer=dataclasses.replace(data.signer, content_sha256=fingerprint))
        text = extract_text(render_encounter_pdf(printed))
        assert f"SHA-256 de la nota firmada:\n{fingerprint}\n" in text, fingerprint
