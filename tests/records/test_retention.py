"""SEC-5: nothing is purged inside retention or under a legal hold, checked with the clock set forward."""

import datetime as dt

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.access import AccessDenied
from audit.models import AuditEvent
from records.access import chart_for
from records.care import care_relationship_start
from records.models import CareSource, DocumentType, Patient, PatientIdentifier, Sex
from records.retention import legal_hold_place, legal_hold_release, patient_block, purge_expired, retention_until
from records.selectors import patient_by_document, patients_by_name_prefix
from records.services import DocumentInput, patient_register


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
        phone="+51 984 123 456",
    )


@pytest.mark.django_db
def test_retention_runs_twenty_years_from_the_last_encounter(patient):
    last = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)
    patient.last_encounter_at = last
    assert retention_until(patient) == dt.datetime(2046, 5, 1, 12, tzinfo=dt.UTC)


@pytest.mark.django_db
def test_purge_never_acts_inside_retention_nor_under_hold(personas, patient):
    patient.last_encounter_at = timezone.now()
    patient.save(update_fields=["last_encounter_at"])
    patient_block(patient=patient, by=personas.admin)
    years = lambda n: timezone.now() + dt.timedelta(days=365.25 * n)  # noqa: E731
    for moment in (timezone.now(), years(10), years(19.9)):
        assert purge_expired(now=moment) == []
    assert PatientIdentifier.objects.filter(patient=patient).exists()

    hold = legal_hold_place(patient=patient, reason="Proceso judicial 123-2046", by=personas.admin)
    assert purge_expired(now=years(25)) == []
    legal_hold_release(hold=hold, by=personas.admin)

    assert purge_expired(now=years(20.1)) == [patient.pk]
    purged = Patient.objects.get(pk=patient.pk)
    assert purged.given_names == "ANONIMIZADO" and purged.phone is None and purged.anonymised_at
    assert not PatientIdentifier.objects.filter(patient=patient).exists()
    assert AuditEvent.objects.filter(action="records.patient.anonymised", patient_id=patient.pk).exists()


@pytest.mark.django_db
def test_unblocked_records_are_never_purged(patient):
    assert purge_expired(now=timezone.now() + dt.timedelta(days=365 * 100)) == []
    assert patient_by_document(DocumentType.DNI, "10117410") == patient


@pytest.mark.django_db
def test_blocked_record_leaves_routine_use_but_is_kept(personas, patient):
    now = timezone.now()
    care_relationship_start(
        patient=patient,
        practitioner=personas.practitioner,
        source=CareSource.ADMIN_ASSIGNMENT,
        source_id="1",
        valid_from=now - dt.timedelta(hours=1),
        valid_until=now + dt.timedelta(days=1),
        created_by=personas.admin,
    )
    practitioner = personas.practitioner
    practitioner.is_verified = lambda: True
    assert chart_for(practitioner, patient.pk).via == "care_relationship"
    patient_block(patient=patient, by=personas.admin)
    with pytest.raises(AccessDenied):
        chart_for(practitioner, patient.pk)
    assert list(patients_by_name_prefix("quispe")) == []
    assert Patient.objects.filter(pk=patient.pk).exists()


@pytest.mark.django_db
def test_purge_command_dry_run_lists_nothing_inside_retention(personas, patient, capsys):
    patient_block(patient=patient, by=personas.admin)
    call_command("purge_expired_records", "--dry-run")
    assert "0 record(s) eligible" in capsys.readouterr().out
