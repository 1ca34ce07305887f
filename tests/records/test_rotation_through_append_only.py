"""Key rotation re-encrypts append-only and signed rows (consent decisions, signed notes, revisions,
amendments), and the triggers still refuse every other change to them, with or without the rotation's flag."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from records.models import ClinicalNote, ConsentDecision, ConsentKind, NoteAmendment, NoteRevision
from records.notes import note_create, note_save_draft
from records.signing import amendment_add, note_sign, verify_amendment, verify_note
from teleconsult import crypto
from teleconsult.models import DataKey, DataKeyStatus
from tests.records.encounter_support import complete_content, registered_patient, started_encounter
from tests.records.test_consent import grant, publish


def key_ids(table: str, column: str) -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL")
        return {crypto.key_id_of(bytes(row[0])) for row in cursor.fetchall()}


def refused(sql: str, *, rekey: bool) -> bool:
    """Whether the statement was refused by the records triggers (any other error fails the test)."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            if rekey:
                cursor.execute("SET LOCAL teleconsult.rekey = 'on'")
            cursor.execute(sql)
    except DatabaseError as error:
        assert "never changed" in str(error), error
        return True
    return False


@pytest.mark.django_db
def test_rotation_reencrypts_signed_and_append_only_rows(personas):
    patient = registered_patient(personas)
    decision = grant(patient, publish(personas, ConsentKind.TELEMEDICINE))
    note = note_create(encounter=started_encounter(personas, patient), author=personas.practitioner)
    note = note_save_draft(
        note=note, content=complete_content(), by=personas.practitioner, expected_version=note.version
    )
    note = note_sign(note=note, signer=personas.practitioner, reauthenticated=True)
    amendment = amendment_add(
        note=note, author=personas.practitioner, reason="Dato omitido", text="Refiere tos seca.", reauthenticated=True
    )
    old = DataKey.objects.get(status=DataKeyStatus.ACTIVE)

    call_command("rotate_keys", "--no-wait", stdout=io.StringIO())

    new = DataKey.objects.get(status=DataKeyStatus.ACTIVE)
    for table, column in (
        ("records_consentdecision", "typed_name"),
        ("records_clinicalnote", "content"),
        ("records_noterevision", "content"),
        ("records_noteamendment", "text"),
    ):
        assert key_ids(table, column) == {new.pk}, table
    assert DataKey.objects.get(pk=old.pk).status == DataKeyStatus.RETIRED
    crypto.reset_keyring()
    assert ConsentDecision.objects.get(pk=decision.pk).typed_name == "Rosa Quispe"
    assert verify_note(ClinicalNote.objects.get(pk=note.pk))
    assert verify_amendment(NoteAmendment.objects.get(pk=amendment.pk))
    assert NoteRevision.objects.filter(note=note).exists()


@pytest.mark.django_db
def test_the_rotation_flag_opens_encrypted_columns_only(personas):
    patient = registered_patient(personas)
    decision = grant(patient, publish(personas, ConsentKind.TELEMEDICINE))
    note = note_create(encounter=started_encounter(personas, patient), author=personas.practitioner)
    note = note_save_draft(
        note=note, content=complete_content(), by=personas.practitioner, expected_version=note.version
    )
    note_sign(note=note, signer=personas.practitioner, reauthenticated=True)
    d, n = decision.pk, note.pk
    # Without the flag nothing changes, not even ciphertext.
    assert refused(f"UPDATE records_consentdecision SET typed_name = typed_name || '\\x00' WHERE id = {d}", rekey=False)
    assert refused(f"UPDATE records_clinicalnote SET content = content || '\\x00' WHERE id = {n}", rekey=False)
    # With it, any other column is still refused, and deleting too.
    assert refused(f"UPDATE records_consentdecision SET decision = 'revoke' WHERE id = {d}", rekey=True)
    assert refused(f"UPDATE records_clinicalnote SET content_sha256 = 'x' WHERE id = {n}", rekey=True)
    assert refused(f"UPDATE records_clinicalnote SET content = content, status = 'draft' WHERE id = {n}", rekey=True)
    assert refused(f"DELETE FROM records_consentdecision WHERE id = {d}", rekey=True)
    assert refused(f"DELETE FROM records_clinicalnote WHERE id = {n}", rekey=True)
    # The encrypted column alone, under the flag: allowed (what rotate_keys does).
    assert not refused(f"UPDATE records_consentdecision SET typed_name = typed_name WHERE id = {d}", rekey=True)
    assert not refused(f"UPDATE records_clinicalnote SET content = content WHERE id = {n}", rekey=True)
