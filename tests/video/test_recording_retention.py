"""SEC-5 for recordings: they follow the clinical record's retention. The purge of a record past retention (and
under no legal hold) destroys its recordings' files and keys with its identity; the rows stay as the trace, in
the trail; nothing inside retention, under a hold, or of another patient is touched."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from django.core.files.storage import storages
from django.db import DatabaseError, connection
from django.utils import timezone

from accounts.access import AccessDenied
from audit.actions import AuditAction, Outcome
from audit.models import AuditEvent
from records.models import DocumentType, Patient, Sex
from records.retention import legal_hold_place, legal_hold_release, patient_block, purge_expired
from records.services import DocumentInput, patient_register
from tests.scheduling.test_joinlinks import make_appointment
from tests.video.recording_support import plaintext, stored_recording
from tests.video.test_call_pages import hosted_visit
from video.models import Recording, RecordingStatus
from video.recording import recording_data_key_id
from video.recording_access import recording_for

pytestmark = pytest.mark.django_db

MEDIA = b"\x1aE\xdf\xa3 the visit of 1 December"


@pytest.fixture(autouse=True)
def _recordings_storage(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "recordings": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": tmp_path}},
    }


def _years(n: float) -> dt.datetime:
    return timezone.now() + dt.timedelta(days=365.25 * n)


def _intact(recording: Recording) -> bool:
    recording.refresh_from_db()
    return (
        recording.status == RecordingStatus.STORED
        and storages["recordings"].exists(recording.file_name)
        and plaintext(recording) == MEDIA
    )


def _other_patients_recording(personas) -> Recording:
    other = patient_register(
        registered_by=personas.coordinator,
        establishment=personas.establishment,
        given_names="Juan",
        paternal_surname="Mamani",
        sex=Sex.MALE,
        birth_date=dt.date(1979, 7, 2),
        documents=[DocumentInput(DocumentType.DNI, "20117410")],
    )
    return stored_recording(
        personas,
        SimpleNamespace(appointment=make_appointment(personas, other, start=timezone.now() + dt.timedelta(hours=3))),
        MEDIA,
    )


def test_recordings_go_with_the_record_past_retention_and_never_before(personas, django_capture_on_commit_callbacks):
    visit = hosted_visit(personas)
    recording = stored_recording(personas, visit, MEDIA)
    others = _other_patients_recording(personas)
    patient = Patient.objects.get(pk=visit.patient.pk)
    patient.last_encounter_at = timezone.now()
    patient.save(update_fields=["last_encounter_at"])
    patient_block(patient=patient, by=personas.admin)
    # The other patient is blocked too, but was seen a year later: still inside their retention.
    Patient.objects.filter(pk=others.visit.appointment.patient_id).update(
        last_encounter_at=_years(1), blocked_at=timezone.now()
    )

    # Inside retention: nothing happens to the file, its key or the row.
    for moment in (timezone.now(), _years(10), _years(19.9)):
        with django_capture_on_commit_callbacks(execute=True):
            assert purge_expired(now=moment) == []
        assert _intact(recording)
    # Past retention but under a legal hold: nothing either.
    hold = legal_hold_place(patient=patient, reason="Proceso judicial 123-2046", by=personas.admin)
    with django_capture_on_commit_callbacks(execute=True):
        assert purge_expired(now=_years(20.5)) == []
    assert _intact(recording)
    assert not AuditEvent.objects.filter(action=AuditAction.RECORDING_DESTROYED).exists()

    # The hold released, the purge anonymises the record and destroys the recording: key and file.
    legal_hold_release(hold=hold, by=personas.admin)
    with django_capture_on_commit_callbacks(execute=True):
        assert purge_expired(now=_years(20.5)) == [patient.pk]
    recording.refresh_from_db()
    assert recording.status == RecordingStatus.DESTROYED and recording.destroyed_at is not None
    assert recording.file_key is None and recording_data_key_id(recording) is None
    assert not storages["recordings"].exists(recording.file_name)
    # The row is the trace: what was recorded, when, and the digest of what was kept.
    assert recording.sha256 and recording.size and recording.started_at and recording.encounter_id
    trail = AuditEvent.objects.get(action=AuditAction.RECORDING_DESTROYED)
    assert trail.outcome == Outcome.SUCCESS and trail.actor_role == "system" and trail.patient_id == patient.pk
    assert trail.details == {
        "recording": str(recording.public_id),
        "kind": "video",
        "reason": "retention_expired",
        "sha256": recording.sha256,
    }
    # Nobody can retrieve it any more (the gate lets stored recordings only), and its row is still never deleted.
    with pytest.raises(AccessDenied):
        recording_for(personas.practitioner, recording.public_id)
    # The other patient's recording, inside retention, is untouched.
    assert _intact(others)

    # A second purge finds nothing more to do.
    with django_capture_on_commit_callbacks(execute=True):
        assert purge_expired(now=_years(20.6)) == []
    assert AuditEvent.objects.filter(action=AuditAction.RECORDING_DESTROYED).count() == 1


def test_a_purge_that_cannot_destroy_a_recording_changes_nothing(personas):
    """The recordings go in the purge's own transaction: if the database refuses to change one, the record keeps
    its identity too (and the file its key)."""
    visit = hosted_visit(personas)
    recording = stored_recording(personas, visit, MEDIA)
    patient = Patient.objects.get(pk=visit.patient.pk)
    patient_block(patient=patient, by=personas.admin)
    # A real refusal by PostgreSQL (gone with the test's transaction): any change to a recording row fails.
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION test_refuse_recording_update() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'recording rows are read-only in this test'; END; $$"
        )
        cursor.execute(
            "CREATE TRIGGER test_refuse_recording_update BEFORE UPDATE ON video_recording "
            "FOR EACH ROW EXECUTE FUNCTION test_refuse_recording_update()"
        )
    with pytest.raises(DatabaseError, match="read-only in this test"):
        purge_expired(now=_years(21))
    patient.refresh_from_db()
    assert patient.anonymised_at is None and patient.given_names == "Rosa"
    assert _intact(recording)
    assert not AuditEvent.objects.filter(action=AuditAction.PATIENT_ANONYMISED).exists()
