"""Allergies, problems and current medication (EHR-4): recorded by the treating practitioner only, validated,
never deleted (status changes, entered in error), encrypted at rest, audited with ids and codes only, and
read for the chart header in a constant number of queries."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from accounts.access import AccessDenied
from audit.actions import AuditAction
from audit.models import AuditEvent
from records.medications import (
    allergy_record,
    allergy_update_status,
    chart_header,
    medication_record,
    medication_update,
    problem_record,
    problem_update,
)
from records.models import (
    Allergy,
    AllergySeverity,
    AllergyStatus,
    Medication,
    MedicationSource,
    MedicationStatus,
    Problem,
    ProblemStatus,
)
from tests.records.medications_support import patient_in_care


@pytest.fixture
def patient(personas):
    return patient_in_care(personas)


def _events(action):
    return list(AuditEvent.objects.filter(action=action.value).order_by("id"))


def test_allergy_is_recorded_coded_encrypted_and_audited(personas, patient):
    doctor = personas.practitioner
    allergy = allergy_record(
        patient=patient,
        substance="Penicilina",
        reaction="Urticaria generalizada y edema de labios",
        severity=AllergySeverity.SEVERE,
        recorded_by=doctor,
    )
    allergy.refresh_from_db()
    assert allergy.substance == "Penicilina" and allergy.allergy_key == "class:penicillins"
    assert allergy.status == AllergyStatus.ACTIVE and allergy.recorded_by == doctor
    # Food and other non-drug substances are recorded without a key.
    shellfish = allergy_record(patient=patient, substance="Mariscos", severity="mild", recorded_by=doctor)
    assert shellfish.allergy_key == ""
    [event, _second] = _events(AuditAction.ALLERGY_RECORDED)
    assert event.patient_id == patient.pk and event.object_id == str(allergy.pk)
    assert event.details == {"severity": "severe", "in_drug_table": True}
    with connection.cursor() as cursor:
        cursor.execute("SELECT substance, reaction FROM records_allergy WHERE id = %s", [allergy.pk])
        raw = b"".join(bytes(value) for value in cursor.fetchone())
    assert b"Penicilina" not in raw and b"Urticaria" not in raw


@pytest.mark.parametrize(
    ("fields", "error_field"),
    [
        ({"substance": "   "}, "substance"),
        ({"substance": "x" * 201}, "substance"),
        ({"severity": "deadly"}, "severity"),
        ({"reaction": "y" * 501}, "reaction"),
    ],
)
def test_allergy_bad_input_is_refused_and_nothing_saved(personas, patient, fields, error_field):
    data = {"substance": "Ibuprofeno", "severity": "moderate", "reaction": ""} | fields
    with pytest.raises(ValidationError) as refused:
        allergy_record(patient=patient, recorded_by=personas.practitioner, **data)
    assert error_field in refused.value.message_dict
    assert not Allergy.objects.exists()
    assert not _events(AuditAction.ALLERGY_RECORDED)


def test_allergy_status_changes_are_audited_and_entered_in_error_is_final(personas, patient):
    doctor = personas.practitioner
    allergy = allergy_record(patient=patient, substance="Sulfas", severity="moderate", recorded_by=doctor)
    allergy_update_status(allergy=allergy, status=AllergyStatus.INACTIVE, by=doctor)
    allergy_update_status(allergy=allergy, status=AllergyStatus.ENTERED_IN_ERROR, by=doctor)
    with pytest.raises(ValidationError):
        allergy_update_status(allergy=allergy, status=AllergyStatus.ACTIVE, by=doctor)
    assert Allergy.objects.get(pk=allergy.pk).status == AllergyStatus.ENTERED_IN_ERROR
    details = [e.details for e in _events(AuditAction.ALLERGY_UPDATED)]
    assert details == [
        {"fields": ["status"], "status_from": "active", "status_to": "inactive"},
        {"fields": ["status"], "status_from": "inactive", "status_to": "entered_in_error"},
    ]


def test_only_the_treating_practitioner_writes(personas, patient):
    for intruder in (personas.outsider, personas.coordinator, personas.admin, personas.auditor, personas.patient):
        with pytest.raises(AccessDenied):
            allergy_record(patient=patient, substance="Penicilina", severity="mild", recorded_by=intruder)
        with pytest.raises(AccessDenied):
            problem_record(patient=patient, cie10_code="I10", recorded_by=intruder)
        with pytest.raises(AccessDenied):
            medication_record(patient=patient, drug_name="Enalapril", source="reported", recorded_by=intruder)
    doctor = personas.practitioner
    allergy = allergy_record(patient=patient, substance="Penicilina", severity="mild", recorded_by=doctor)
    with pytest.raises(AccessDenied):
        allergy_update_status(allergy=allergy, status=AllergyStatus.INACTIVE, by=personas.outsider)
    assert Allergy.objects.get().status == AllergyStatus.ACTIVE
    assert not Problem.objects.exists() and not Medication.objects.exists()


def test_problem_needs_a_valid_cie10_code_stored_in_its_printed_form(personas, patient):
    doctor = personas.practitioner
    problem = problem_record(
        patient=patient,
        cie10_code="e119",
        description="Diabetes tipo 2 en control irregular",
        onset_date=dt.date(2019, 5, 1),
        recorded_by=doctor,
    )
    assert Problem.objects.get(pk=problem.pk).cie10_code == "E11.9"
    with pytest.raises(ValidationError) as refused:
        problem_record(patient=patient, cie10_code="E11.99", recorded_by=doctor)
    assert "cie10_code" in refused.value.message_dict
    assert "no es un código CIE-10 válido" in refused.value.message_dict["cie10_code"][0]
    with pytest.raises(ValidationError) as future:
        tomorrow = timezone.localdate() + dt.timedelta(days=1)
        problem_record(patient=patient, cie10_code="I10", onset_date=tomorrow, recorded_by=doctor)
    assert "onset_date" in future.value.message_dict
    assert Problem.objects.count() == 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT description FROM records_problem WHERE id = %s", [problem.pk])
        assert b"Diabetes" not in bytes(cursor.fetchone()[0])


def test_problem_update_audits_field_names_only(personas, patient):
    doctor = personas.practitioner
    problem = problem_record(patient=patient, cie10_code="I10", recorded_by=doctor)
    assert problem_update(problem=problem, by=doctor) == problem  # nothing changed, nothing audited
    problem_update(problem=problem, by=doctor, status=ProblemStatus.RESOLVED, description="Controlada con dieta")
    [event] = _events(AuditAction.PROBLEM_UPDATED)
    assert event.details == {
        "fields": ["status", "description"],
        "status_from": "active",
        "status_to": "resolved",
    }
    assert "dieta" not in str(event.details)
    assert Problem.objects.get().description == "Controlada con dieta"


def test_medication_dose_needs_a_unit(personas, patient):
    doctor = personas.practitioner
    for dose in ("500", "2", "1/2", "tomar en la mañana"):
        with pytest.raises(ValidationError) as refused:
            medication_record(patient=patient, drug_name="Metformina", dose=dose, source="reported", recorded_by=doctor)
        assert "unidad" in refused.value.message_dict["dose"][0]
    assert not Medication.objects.exists()
    medication = medication_record(
        patient=patient, drug_name="Metformina 850", dose="850 mg c/12 h", source="reported", recorded_by=doctor
    )
    assert medication.ingredient_keys == ["metformin"] and medication.dose == "850 mg c/12 h"
    with pytest.raises(ValidationError):
        medication_update(medication=medication, by=doctor, dose="850")
    assert Medication.objects.get().dose == "850 mg c/12 h"


def test_medication_stop_dates_it_and_is_audited(personas, patient):
    doctor = personas.practitioner
    medication = medication_record(
        patient=patient,
        drug_name="Warfarina",
        dose="5 mg",
        source=MedicationSource.REPORTED,
        started_on=dt.date(2024, 1, 10),
        recorded_by=doctor,
    )
    medication_update(medication=medication, by=doctor, status=MedicationStatus.STOPPED)
    stopped = Medication.objects.get()
    assert stopped.status == MedicationStatus.STOPPED and stopped.stopped_on == timezone.localdate()
    [recorded] = _events(AuditAction.MEDICATION_RECORDED)
    [updated] = _events(AuditAction.MEDICATION_UPDATED)
    assert recorded.details == {"source": "reported"}
    assert updated.details == {"fields": ["status", "stopped_on"], "status_from": "active", "status_to": "stopped"}
    with connection.cursor() as cursor:
        cursor.execute("SELECT drug_name, dose FROM records_medication WHERE id = %s", [medication.pk])
        raw = b"".join(bytes(value) for value in cursor.fetchone())
    assert b"Warfarina" not in raw and b"5 mg" not in raw


def test_nothing_is_deleted_even_by_direct_sql(personas, patient):
    doctor = personas.practitioner
    allergy = allergy_record(patient=patient, substance="Penicilina", severity="mild", recorded_by=doctor)
    problem = problem_record(patient=patient, cie10_code="I10", recorded_by=doctor)
    medication = medication_record(patient=patient, drug_name="Enalapril", source="reported", recorded_by=doctor)
    for row in (allergy, problem, medication):
        with pytest.raises(DatabaseError), transaction.atomic():
            row.delete()
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {row._meta.db_table} WHERE id = %s", [row.pk])
    assert (Allergy.objects.count(), Problem.objects.count(), Medication.objects.count()) == (1, 1, 1)


def test_chart_header_lists_active_entries_in_three_queries(personas, patient, django_assert_num_queries):
    doctor = personas.practitioner
    for substance in ("Penicilina", "Ibuprofeno", "Látex"):
        allergy_record(patient=patient, substance=substance, severity="severe", recorded_by=doctor)
    gone = allergy_record(patient=patient, substance="Sulfas", severity="mild", recorded_by=doctor)
    allergy_update_status(allergy=gone, status=AllergyStatus.ENTERED_IN_ERROR, by=doctor)
    for code in ("I10", "E11.9"):
        problem_record(patient=patient, cie10_code=code, recorded_by=doctor)
    resolved = problem_record(patient=patient, cie10_code="J06.9", recorded_by=doctor)
    problem_update(problem=resolved, by=doctor, status=ProblemStatus.RESOLVED)
    for drug in ("Enalapril 10 mg", "Metformina 850 mg", "Warfarina 5 mg", "Omeprazol 20 mg"):
        medication_record(patient=patient, drug_name=drug, source="reported", recorded_by=doctor)
    with django_assert_num_queries(3):
        header = chart_header(patient)
        # Reading the decrypted fields costs no further query.
        substances = sorted(a.substance for a in header.allergies)
        codes = [p.cie10_code for p in header.problems]
        drugs = [m.drug_name for m in header.medications]
        titles = [p.cie10_entry.title_es for p in header.problems]
    assert substances == ["Ibuprofeno", "Látex", "Penicilina"]
    assert codes == ["I10", "E11.9"]
    assert titles[0] == "Hipertensión esencial (primaria)"
    assert len(drugs) == 4 and header.has_severe_allergy
