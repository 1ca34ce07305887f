"""Encryption at rest: AES-256-GCM envelope encryption, tamper detection, no plaintext in the database."""

import datetime as dt
import logging

import pytest
from django.core.exceptions import FieldError
from django.db import connection

from records.models import DocumentType, Patient, PatientIdentifier, Sex
from teleconsult import crypto
from teleconsult.models import DataKey, DataKeyStatus


def make_patient(**overrides):
    values = {
        "given_names": "Rosa Elena",
        "paternal_surname": "Quispe",
        "maternal_surname": "Mamani",
        "search_name": "QUISPE MAMANI ROSA ELENA",
        "sex": Sex.FEMALE,
        "birth_date": dt.date(1984, 3, 9),
        "phone": "+51 984 123 456",
        "email": "rosa.quispe@example.pe",
        "address": "Jr. Los Incas 123, Cusco",
    }
    values.update(overrides)
    return Patient.objects.create(**values)


def raw_row(table: str, pk: int) -> dict:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} WHERE id = %s", [pk])
        names = [c.name for c in cursor.description]
        return dict(zip(names, cursor.fetchone(), strict=True))


@pytest.mark.django_db
def test_round_trip_and_no_plaintext_in_raw_rows():
    patient = make_patient()
    identifier = PatientIdentifier.objects.create(
        patient=patient,
        document_type=DocumentType.DNI,
        value="10117410",
        lookup=crypto.blind_index("dni:PER:10117410", purpose="records.identifier"),
    )
    reread = Patient.objects.get(pk=patient.pk)
    assert reread.phone == "+51 984 123 456"
    assert reread.email == "rosa.quispe@example.pe"
    assert PatientIdentifier.objects.get(pk=identifier.pk).value == "10117410"

    row = raw_row("records_patient", patient.pk)
    dump = b"".join(bytes(v) if isinstance(v, (bytes, memoryview)) else str(v).encode() for v in row.values())
    for secret in (b"984 123 456", b"rosa.quispe", b"Los Incas"):
        assert secret not in dump
    id_row = raw_row("records_patientidentifier", identifier.pk)
    id_dump = b"".join(bytes(v) if isinstance(v, (bytes, memoryview)) else str(v).encode() for v in id_row.values())
    assert b"10117410" not in id_dump


@pytest.mark.django_db
def test_each_encryption_is_randomised_and_carries_the_key_id():
    first = crypto.encrypt_text("same", purpose="t.x")
    second = crypto.encrypt_text("same", purpose="t.x")
    assert first != second
    active = DataKey.objects.get(status=DataKeyStatus.ACTIVE)
    assert crypto.key_id_of(first) == active.pk
    assert crypto.decrypt_text(first, purpose="t.x") == "same"


@pytest.mark.django_db
def test_data_keys_are_stored_only_wrapped(settings):
    crypto.encrypt_text("x", purpose="t.x")
    key = DataKey.objects.get()
    assert len(bytes(key.wrapped_key)) == 40  # AES key wrap of a 32-byte key
    assert key.kek_id == crypto.kek_fingerprint(settings.TELECONSULT_KEK)


@pytest.mark.django_db
def test_tampered_ciphertext_raises_and_logs_without_data(caplog):
    patient = make_patient()
    with connection.cursor() as cursor:
        # Flip one bit of the stored ciphertext, as someone editing the table directly would.
        cursor.execute(
            "UPDATE records_patient SET phone = overlay(phone placing "
            "set_byte(substring(phone from 30 for 1), 0, get_byte(phone, 29) # 1) from 30 for 1) WHERE id = %s",
            [patient.pk],
        )
    with caplog.at_level(logging.ERROR), pytest.raises(crypto.CiphertextTampered):
        Patient.objects.get(pk=patient.pk)
    assert "ciphertext authentication failed" in caplog.text
    assert "984" not in caplog.text


@pytest.mark.django_db
def test_ciphertext_moved_to_another_column_fails():
    patient = make_patient()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE records_patient SET address = phone WHERE id = %s", [patient.pk])
    with pytest.raises(crypto.CiphertextTampered):
        Patient.objects.get(pk=patient.pk)


@pytest.mark.django_db
def test_truncated_or_unknown_version_ciphertext_raises():
    with pytest.raises(crypto.CiphertextTampered):
        crypto.decrypt_text(b"\x01\x00\x00", purpose="t.x")
    good = crypto.encrypt_text("v", purpose="t.x")
    with pytest.raises(crypto.CiphertextTampered):
        crypto.decrypt_text(b"\x09" + good[1:], purpose="t.x")


@pytest.mark.django_db
def test_wrong_kek_cannot_unwrap(settings):
    crypto.encrypt_text("x", purpose="t.x")
    blob = crypto.encrypt_text("secret", purpose="t.x")
    settings.TELECONSULT_KEK = b"\x07" * 32
    settings.TELECONSULT_KEK_PREVIOUS = []
    crypto.reset_keyring()
    with pytest.raises(crypto.UnknownKey):
        crypto.decrypt_text(blob, purpose="t.x")


@pytest.mark.django_db
def test_encrypted_fields_refuse_sql_search():
    with pytest.raises(FieldError, match="blind index"):
        list(Patient.objects.filter(phone="+51 984 123 456"))
    assert Patient.objects.filter(phone__isnull=True).count() == 0


def test_blind_index_normalises_and_is_keyed(settings):
    assert crypto.blind_index("10117410", purpose="p") == crypto.blind_index(" 1011-7410 ", purpose="p")
    assert crypto.blind_index("10117410", purpose="p") != crypto.blind_index("10117410", purpose="q")
    before = crypto.blind_index("10117410", purpose="p")
    settings.TELECONSULT_INDEX_KEY = b"\x01" * 32
    assert crypto.blind_index("10117410", purpose="p") != before
