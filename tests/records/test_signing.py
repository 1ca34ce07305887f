"""EHR-5/6: signing needs a fresh second factor and complete sections; signed notes are locked in the service and
in the database; amendments keep the original; verify_signatures detects tampering; PKCS#12 keys import."""

import datetime as dt
import hashlib
import json

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.utils import timezone

from audit.models import AuditEvent
from records.models import ClinicalNote, KeySource, NoteAmendment, PractitionerKey, SigningAuthority
from records.notes import note_content, note_create, note_save_draft
from records.signing import (
    amendment_add,
    canonical_note_bytes,
    note_sign,
    practitioner_key_import,
    practitioner_signing_material,
    verify_amendment,
    verify_note,
)
from tests.records.encounter_support import complete_content, registered_patient, started_encounter

pytestmark = pytest.mark.django_db


@pytest.fixture
def draft(personas):
    patient = registered_patient(personas)
    note = note_create(encounter=started_encounter(personas, patient), author=personas.practitioner)
    return note_save_draft(note=note, content=complete_content(), by=personas.practitioner, expected_version=1)


@pytest.fixture
def signed(draft, personas):
    return note_sign(note=draft, signer=personas.practitioner, reauthenticated=True)


def test_signing_needs_a_fresh_second_factor(draft, personas):
    with pytest.raises(ValidationError) as error:
        note_sign(note=draft, signer=personas.practitioner, reauthenticated=False)
    assert error.value.code == "reauth_required"
    assert ClinicalNote.objects.get(pk=draft.pk).status == "draft"
    assert not PractitionerKey.objects.exists()


def test_missing_sections_are_named_and_nothing_is_signed(personas):
    patient = registered_patient(personas)
    note = note_create(encounter=started_encounter(personas, patient), author=personas.practitioner)
    note = note_save_draft(note=note, content={"reason": "Control"}, by=personas.practitioner, expected_version=1)
    with pytest.raises(ValidationError) as error:
        note_sign(note=note, signer=personas.practitioner, reauthenticated=True)
    assert error.value.code == "missing_sections"
    message = error.value.messages[0]
    for label in ("Relato de la enfermedad", "Examen clínico", "Diagnósticos (CIE-10)", "Plan de trabajo"):
        assert label in message
    assert "Motivo de consulta" not in message
    assert ClinicalNote.objects.get(pk=note.pk).status == "draft"


def test_only_the_author_signs(draft, personas):
    with pytest.raises(ValidationError) as error:
        note_sign(note=draft, signer=personas.outsider, reauthenticated=True)
    assert error.value.code == "not_author"


def test_signing_stores_signature_certificate_and_hash(signed, personas):
    note = ClinicalNote.objects.get(pk=signed.pk)
    assert note.status == "signed" and note.signed_by == personas.practitioner
    assert note.signature_algorithm == "ecdsa-p256-sha256"
    assert note.content_sha256 == hashlib.sha256(canonical_note_bytes(note)).hexdigest()
    assert verify_note(note)
    certificate = x509.load_pem_x509_certificate(note.certificate_pem.encode())
    profile = personas.practitioner.practitioner_profile
    serial = certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value
    assert serial == f"CMP {profile.registry_number}"
    # Issued by the installation's own authority, which is stored once, its key encrypted.
    authority = SigningAuthority.objects.get()
    authority_certificate = x509.load_pem_x509_certificate(authority.certificate_pem.encode())
    certificate.verify_directly_issued_by(authority_certificate)
    key = PractitionerKey.objects.get(user=personas.practitioner)
    assert key.source == KeySource.GENERATED
    with connection.cursor() as cursor:
        cursor.execute("SELECT private_key_pem FROM records_practitionerkey WHERE id = %s", [key.pk])
        assert b"PRIVATE KEY" not in bytes(cursor.fetchone()[0])
        cursor.execute("SELECT private_key_pem FROM records_signingauthority")
        assert b"PRIVATE KEY" not in bytes(cursor.fetchone()[0])
    event = AuditEvent.objects.get(action="records.note.signed")
    assert event.object_id == str(note.pk) and "Odinofagia" not in str(event.details)
    assert AuditEvent.objects.filter(action="records.signing_key.created").count() == 1


def test_canonical_form_is_sorted_compact_utf8_with_metadata(signed):
    data = canonical_note_bytes(signed)
    reserialised = json.dumps(json.loads(data), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    assert data == reserialised.encode("utf-8")
    text = data.decode("utf-8")
    assert text.startswith('{"author":')
    assert f'"note_id":{signed.pk}' in text and f'"patient_id":{signed.patient_id}' in text
    assert '"signed_at":"' in text and "Z" in text
    assert "Odinofagia" in text  # the content itself, in clear UTF-8 (never escaped)


def test_signing_material_gives_key_certificate_and_chain(signed, personas):
    private_key, certificate, chain = practitioner_signing_material(personas.practitioner)
    assert isinstance(private_key, ec.EllipticCurvePrivateKey)
    assert certificate.public_key().public_numbers() == private_key.public_key().public_numbers()
    assert len(chain) == 1 and chain[0].subject == certificate.issuer
    assert PractitionerKey.objects.count() == 1  # the same key, not a new one


def test_a_signed_note_is_locked_in_the_service(signed, personas):
    with pytest.raises(ValidationError) as error:
        note_save_draft(note=signed, content={"reason": "cambio"}, by=personas.practitioner, expected_version=2)
    assert error.value.code == "signed"
    with pytest.raises(ValidationError):
        note_sign(note=signed, signer=personas.practitioner, reauthenticated=True)
    assert note_content(ClinicalNote.objects.get(pk=signed.pk)) == note_content(signed)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE records_clinicalnote SET content = content || '\\x00'::bytea WHERE id = {id}",
        "UPDATE records_clinicalnote SET status = 'draft' WHERE id = {id}",
        "UPDATE records_clinicalnote SET signature = '\\x00'::bytea WHERE id = {id}",
        "UPDATE records_clinicalnote SET content_sha256 = repeat('0', 64) WHERE id = {id}",
        "UPDATE records_clinicalnote SET certificate_pem = '' WHERE id = {id}",
        "UPDATE records_clinicalnote SET version = version + 1 WHERE id = {id}",
        "DELETE FROM records_clinicalnote WHERE id = {id}",
        "DELETE FROM records_noterevision WHERE note_id = {id}",
        "UPDATE records_noterevision SET version = version + 100 WHERE note_id = {id}",
        "TRUNCATE records_clinicalnote CASCADE",
    ],
)
def test_a_signed_note_is_locked_in_the_database(signed, statement):
    with pytest.raises(Exception, match="never changed"), transaction.atomic(), connection.cursor() as cursor:
        # Deferred foreign-key checks of this test's own inserts would block TRUNCATE before the trigger.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(statement.format(id=signed.pk))
    assert verify_note(ClinicalNote.objects.get(pk=signed.pk))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("flag", [None, "", "off"], ids=["never set", "empty", "off"])
def test_a_signed_note_is_locked_in_a_fresh_session(signed, flag):
    """In a session that never set teleconsult.rekey, current_setting() is NULL, not '': the lock holds there
    too (it once did not: NOT (NULL AND true) is NULL and did not raise)."""
    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
        user=settings["USER"],
        password=settings["PASSWORD"] or None,
        dbname=settings["NAME"],
    ) as fresh:
        if flag is not None:
            fresh.execute(f"SET teleconsult.rekey = '{flag}'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="never changed"):
            fresh.execute(
                "UPDATE records_clinicalnote SET content = content || '\\x00'::bytea WHERE id = %s", [signed.pk]
            )
    assert verify_note(ClinicalNote.objects.get(pk=signed.pk))


def test_a_draft_can_still_be_updated_but_never_deleted(draft):
    with connection.cursor() as cursor:
        cursor.execute("UPDATE records_clinicalnote SET version = version WHERE id = %s", [draft.pk])
    with pytest.raises(Exception, match="never changed"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM records_clinicalnote WHERE id = %s", [draft.pk])


def test_amendments_are_signed_and_keep_the_original(signed, personas):
    original = note_content(signed)
    with pytest.raises(ValidationError) as error:
        amendment_add(note=signed, author=personas.practitioner, reason="Error", text="x", reauthenticated=False)
    assert error.value.code == "reauth_required"
    with pytest.raises(ValidationError) as error:
        amendment_add(note=signed, author=personas.practitioner, reason="", text="", reauthenticated=True)
    assert set(error.value.message_dict) == {"reason", "text"}
    amendment = amendment_add(
        note=signed,
        author=personas.practitioner,
        reason="Dosis mal transcrita",
        text="La dosis de paracetamol es 500 mg cada 8 horas, no 1 g.",
        reauthenticated=True,
    )
    assert verify_amendment(NoteAmendment.objects.select_related("note").get(pk=amendment.pk))
    stored = ClinicalNote.objects.get(pk=signed.pk)
    assert note_content(stored) == original and verify_note(stored)
    assert list(stored.amendments.values_list("pk", flat=True)) == [amendment.pk]
    event = AuditEvent.objects.get(action="records.note.amended")
    assert event.details["amendment"] == amendment.pk and "paracetamol" not in str(event.details)
    with pytest.raises(Exception, match="never changed"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE records_noteamendment SET reason = reason WHERE id = %s", [amendment.pk])
    with connection.cursor() as cursor:
        cursor.execute("SELECT text, reason FROM records_noteamendment WHERE id = %s", [amendment.pk])
        text, reason = (bytes(value) for value in cursor.fetchone())
    assert b"paracetamol" not in text and b"transcrita" not in reason


def test_drafts_are_not_amended(draft, personas):
    with pytest.raises(ValidationError) as error:
        amendment_add(note=draft, author=personas.practitioner, reason="Motivo", text="Texto", reauthenticated=True)
    assert error.value.code == "not_signed"


def _tamper(sql, params):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params)


def test_verify_signatures_passes_then_detects_tampered_content(signed, personas):
    amendment_add(note=signed, author=personas.practitioner, reason="Aclaración", text="Texto", reauthenticated=True)
    call_command("verify_signatures")
    # Replace the content with a valid ciphertext of different text: only the signature can tell.
    forged = complete_content()
    forged["diagnoses"] = [{"code": "J03.9", "type": "definitive"}]
    from records.notes import dump_content
    from teleconsult import crypto

    ciphertext = crypto.encrypt_text(dump_content(forged), purpose="records.note.content")
    _tamper("UPDATE records_clinicalnote SET content = %s WHERE id = %s", [ciphertext, signed.pk])
    assert not verify_note(ClinicalNote.objects.get(pk=signed.pk))
    with pytest.raises(CommandError, match=f"first at note #{signed.pk}") as error:
        call_command("verify_signatures")
    assert error.value.returncode == 1


def test_verify_signatures_detects_a_tampered_signature(signed, capsys):
    signature = bytearray(ClinicalNote.objects.get(pk=signed.pk).signature)
    signature[-1] ^= 0x01
    _tamper("UPDATE records_clinicalnote SET signature = %s WHERE id = %s", [bytes(signature), signed.pk])
    with pytest.raises(CommandError):
        call_command("verify_signatures")
    assert "Signed notes: 0 valid, 1 invalid." in capsys.readouterr().out


def test_verify_signatures_detects_a_tampered_amendment(signed, personas):
    amendment = amendment_add(
        note=signed, author=personas.practitioner, reason="Aclaración", text="Texto", reauthenticated=True
    )
    from teleconsult import crypto

    forged = crypto.encrypt_text("Otro texto", purpose="records.note_amendment.text")
    _tamper("UPDATE records_noteamendment SET text = %s WHERE id = %s", [forged, amendment.pk])
    with pytest.raises(CommandError, match=f"amendment #{amendment.pk}"):
        call_command("verify_signatures")


def _p12(*, key=None, password=b"clave-secreta", valid_days=365, self_signed_name="Dra. Ana Torres"):
    key = key or ec.generate_private_key(ec.SECP256R1())
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Entidad de Certificación de prueba")])
    now = timezone.now()
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self_signed_name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=2))
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .sign(ca_key, hashes.SHA256())
    )
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return pkcs12.serialize_key_and_certificates(b"firma", key, certificate, [ca], encryption), certificate, ca


@pytest.mark.parametrize("key_kind", ["ecdsa", "rsa"])
def test_pkcs12_import_signs_and_verifies(signed, personas, key_kind):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if key_kind == "rsa" else None
    p12, certificate, ca = _p12(key=key)
    imported = practitioner_key_import(
        user=personas.practitioner, p12_bytes=p12, password="clave-secreta", by=personas.practitioner
    )
    assert imported.source == KeySource.PKCS12
    assert PractitionerKey.objects.filter(user=personas.practitioner, revoked_at__isnull=True).get() == imported
    _private, material_certificate, chain = practitioner_signing_material(personas.practitioner)
    assert material_certificate == certificate and chain == [ca]
    # A new note is signed with the imported key; the earlier one still verifies with its own certificate.
    patient = signed.patient
    note = note_create(encounter=started_encounter(personas, patient, ref="appt-p12"), author=personas.practitioner)
    note = note_save_draft(note=note, content=complete_content(), by=personas.practitioner, expected_version=1)
    note = note_sign(note=note, signer=personas.practitioner, reauthenticated=True)
    assert note.signature_algorithm == ("rsa-pkcs1v15-sha256" if key_kind == "rsa" else "ecdsa-p256-sha256")
    assert x509.load_pem_x509_certificate(note.certificate_pem.encode()) == certificate
    assert verify_note(note) and verify_note(ClinicalNote.objects.get(pk=signed.pk))
    assert AuditEvent.objects.filter(action="records.signing_key.imported").count() == 1


def test_pkcs12_bad_input_is_refused(personas):
    p12, _certificate, _ca = _p12()
    cases = [
        (b"not a pkcs12 file", "clave-secreta", "pkcs12_unreadable"),
        (p12, "wrong password", "pkcs12_unreadable"),
        (_p12(valid_days=-1)[0], "clave-secreta", "certificate_expired"),
    ]
    for data, password, code in cases:
        with pytest.raises(ValidationError) as error:
            practitioner_key_import(
                user=personas.practitioner, p12_bytes=data, password=password, by=personas.practitioner
            )
        assert error.value.code == code
    with pytest.raises(ValidationError):
        practitioner_key_import(user=personas.practitioner, p12_bytes=p12, password="clave-secreta", by=personas.admin)
    assert not PractitionerKey.objects.exists()


def test_signing_waits_for_prescription_alerts_to_be_acknowledged(personas):
    """Runs once records.medications is merged (it lives on another branch while issue 5 is built)."""
    medications = pytest.importorskip("records.medications")
    from tests.records.encounter_support import verified

    patient = registered_patient(personas)
    doctor = verified(personas.practitioner)
    note = note_create(encounter=started_encounter(personas, patient), author=doctor)
    medications.allergy_record(patient=patient, substance="Penicilina", severity="severe", recorded_by=doctor)
    content = complete_content()
    content["prescriptions"][0]["drug"] = "Amoxicilina"
    note = note_save_draft(note=note, content=content, by=doctor, expected_version=1)
    with pytest.raises(ValidationError) as error:
        note_sign(note=note, signer=doctor, reauthenticated=True)
    assert error.value.code == "unacknowledged_alerts"
    assert ClinicalNote.objects.get(pk=note.pk).status == "draft"
    pending = medications.unacknowledged_alerts(
        note_id=note.pk, patient=patient, prescriptions=note_content(note)["prescriptions"]
    )
    for prescription_id, alert in pending:
        medications.alert_acknowledge(
            patient=patient,
            note_id=note.pk,
            prescription_id=prescription_id,
            alert=alert,
            reason="Sin alternativa disponible",
            by=doctor,
        )
    assert note_sign(note=note, signer=doctor, reauthenticated=True).status == "signed"
