"""Prescriptions (EHR-4): validation naming each field (dose without unit refused), allergy and interaction
alerts from the drug knowledge table, acknowledgement with a reason (audited with ids only, append-only),
and the list of unacknowledged alerts that signing checks."""

from __future__ import annotations

import uuid

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.test import override_settings
from django.utils import translation

from accounts.access import AccessDenied
from audit.actions import AuditAction
from audit.models import AuditEvent
from records.drug_knowledge import DrugKnowledge, TableDrugKnowledge, drug_knowledge
from records.medications import (
    Alert,
    alert_acknowledge,
    allergy_record,
    allergy_update_status,
    medication_record,
    prescription_alerts,
    prescription_validate,
    unacknowledged_alerts,
)
from records.models import AllergyStatus, PrescriptionAlertAcknowledgement
from tests.records.medications_support import patient_in_care


@pytest.fixture
def patient(personas):
    return patient_in_care(personas)


@pytest.fixture
def note_id(personas, patient):
    """A real draft note of the patient's encounter, which acknowledgements belong to."""
    from records.notes import note_create
    from tests.records.encounter_support import started_encounter

    return note_create(encounter=started_encounter(personas, patient), author=personas.practitioner).pk


def rx(drug, **fields):
    data = {
        "id": str(uuid.uuid4()),
        "drug": drug,
        "concentration": "",
        "form": "tableta",
        "dose": "1",
        "dose_unit": "tableta",
        "route": "oral",
        "frequency": "cada 8 horas",
        "duration": "7 días",
        "quantity": "21",
        "instructions": "Después de los alimentos.",
    }
    data.update(fields)
    return data


# --- validation ------------------------------------------------------------------------------------------


def test_a_complete_prescription_is_cleaned():
    cleaned = prescription_validate(rx("  Amoxicilina ", concentration="500 mg", dose="500", dose_unit="mg"))
    assert cleaned["drug"] == "Amoxicilina" and cleaned["dose"] == "500" and cleaned["dose_unit"] == "mg"
    assert uuid.UUID(cleaned["id"])
    # A dose written with its unit in one field is split; a missing id is given one.
    split = prescription_validate(rx("Paracetamol", id=None, dose="1,5 g", dose_unit=""))
    assert (split["dose"], split["dose_unit"]) == ("1,5", "g") and uuid.UUID(split["id"])


@pytest.mark.parametrize("dose", ["500", "1/2", "0.5", "1-2"])
def test_a_dose_without_unit_is_refused_with_a_clear_message(dose):
    with pytest.raises(ValidationError) as refused:
        prescription_validate(rx("Amoxicilina", dose=dose, dose_unit=""))
    errors = refused.value.message_dict
    assert list(errors) == ["dose_unit"]
    assert "unidad" in errors["dose_unit"][0]


def test_missing_and_bad_fields_are_named_together():
    with pytest.raises(ValidationError) as refused:
        prescription_validate(
            rx("", dose="", route=" ", frequency="", duration="", instructions="x" * 1001, id="not-a-uuid")
        )
    assert set(refused.value.message_dict) == {"id", "drug", "dose", "route", "frequency", "duration", "instructions"}
    with pytest.raises(ValidationError) as words:
        prescription_validate(rx("Amoxicilina", dose="mucho", dose_unit="mg"))
    assert set(words.value.message_dict) == {"dose"}
    with translation.override("en"), pytest.raises(ValidationError) as english:
        prescription_validate(rx("Amoxicilina", dose="500", dose_unit=""))
    assert "unit" in english.value.message_dict["dose_unit"][0]


# --- alerts ----------------------------------------------------------------------------------------------


def test_penicillin_allergy_alerts_on_amoxicillin(personas, patient):
    allergy = allergy_record(
        patient=patient, substance="Penicilina", severity="severe", recorded_by=personas.practitioner
    )
    [alert] = prescription_alerts(patient=patient, prescription=rx("Amoxicilina", concentration="500 mg"))
    assert alert.kind == "allergy" and alert.severity == "high"
    assert alert.key == f"allergy:{allergy.pk}:amoxicillin"
    assert "Penicilina" in alert.message and "amoxicilina" in alert.message
    # A brand of a combination is matched through its ingredients.
    [brand] = prescription_alerts(patient=patient, prescription=rx("Augmentin"))
    assert brand.key == f"allergy:{allergy.pk}:amoxicillin"
    # A cephalosporin gets the cross-reactivity alert, weaker unless the reaction was severe.
    [cross] = prescription_alerts(patient=patient, prescription=rx("Cefalexina", concentration="500 mg"))
    assert cross.kind == "allergy" and cross.severity == "high" and "cruzada" in cross.message
    allergy_update_status(allergy=allergy, status=AllergyStatus.INACTIVE, by=personas.practitioner)
    allergy_record(patient=patient, substance="Amoxicilina", severity="mild", recorded_by=personas.practitioner)
    [mild] = prescription_alerts(patient=patient, prescription=rx("Ceftriaxona"))
    assert mild.severity == "moderate" and "cruzada" in mild.message


def test_sulfa_allergy_alerts_on_cotrimoxazole_not_on_a_thiazide(personas, patient):
    allergy_record(patient=patient, substance="Sulfas", severity="moderate", recorded_by=personas.practitioner)
    for drug in ("Cotrimoxazol", "Sulfametoxazol + trimetoprima", "Bactrim forte"):
        [alert] = prescription_alerts(patient=patient, prescription=rx(drug))
        assert alert.kind == "allergy" and alert.key.endswith(":sulfamethoxazole"), drug
    assert prescription_alerts(patient=patient, prescription=rx("Hidroclorotiazida", concentration="25 mg")) == []


def test_warfarin_with_ibuprofen_alerts_as_an_interaction(personas, patient, django_assert_num_queries):
    medication_record(
        patient=patient, drug_name="Warfarina", dose="5 mg", source="reported", recorded_by=personas.practitioner
    )
    with django_assert_num_queries(2):  # active allergies, current medication
        [alert] = prescription_alerts(patient=patient, prescription=rx("Ibuprofeno", concentration="400 mg"))
    assert alert.kind == "interaction" and alert.severity == "high"
    assert alert.key == "interaction:warfarin-nsaid:ibuprofen+warfarin"
    assert "Warfarina" in alert.message and "sangrado" in alert.message
    with translation.override("en"):
        [english] = prescription_alerts(patient=patient, prescription=rx("Ibuprofeno"))
    assert "bleeding" in english.message and english.key == alert.key


def test_no_false_alert_for_paracetamol(personas, patient):
    doctor = personas.practitioner
    allergy_record(patient=patient, substance="Penicilina", severity="severe", recorded_by=doctor)
    allergy_record(patient=patient, substance="AINEs", severity="moderate", recorded_by=doctor)
    allergy_record(patient=patient, substance="Sulfas", severity="mild", recorded_by=doctor)
    for drug in ("Warfarina", "Enalapril", "Metformina"):
        medication_record(patient=patient, drug_name=drug, source="reported", recorded_by=doctor)
    assert prescription_alerts(patient=patient, prescription=rx("Paracetamol", concentration="500 mg")) == []
    assert (
        prescription_alerts(patient=patient, prescription=rx("Paracetamol"), other_prescriptions=[rx("Omeprazol")])
        == []
    )


def test_inactive_allergies_and_stopped_medication_do_not_alert(personas, patient):
    doctor = personas.practitioner
    allergy = allergy_record(patient=patient, substance="Penicilina", severity="mild", recorded_by=doctor)
    allergy_update_status(allergy=allergy, status=AllergyStatus.ENTERED_IN_ERROR, by=doctor)
    assert prescription_alerts(patient=patient, prescription=rx("Amoxicilina")) == []


def test_interaction_with_another_prescription_of_the_note(personas, patient):
    simvastatin = rx("Simvastatina", concentration="40 mg")
    [alert] = prescription_alerts(
        patient=patient, prescription=rx("Claritromicina", concentration="500 mg"), other_prescriptions=[simvastatin]
    )
    assert alert.kind == "interaction" and "rabdomiólisis" in alert.message and "esta nota" in alert.message
    # Hyperkalaemia: ACE inhibitor with spironolactone.
    [potassium] = prescription_alerts(
        patient=patient, prescription=rx("Espironolactona"), other_prescriptions=[rx("Enalapril")]
    )
    assert "hiperpotasemia" in potassium.message


def test_unknown_substances_are_matched_on_their_words(personas, patient):
    # "Ketoprofeno" is not in the starter table: the decrypted text is compared with the drug's name.
    allergy = allergy_record(
        patient=patient, substance="Ketoprofeno", severity="mild", recorded_by=personas.practitioner
    )
    assert allergy.allergy_key == ""
    [alert] = prescription_alerts(patient=patient, prescription=rx("Ketoprofeno gel"))
    assert alert.key == f"allergy:{allergy.pk}:text"
    assert prescription_alerts(patient=patient, prescription=rx("Paracetamol")) == []


# --- acknowledgement and signing -------------------------------------------------------------------------


def test_acknowledgement_needs_a_reason_and_is_audited_without_clinical_text(personas, patient, note_id):
    doctor = personas.practitioner
    medication_record(patient=patient, drug_name="Warfarina", dose="5 mg", source="reported", recorded_by=doctor)
    ibuprofen = rx("Ibuprofeno")
    [alert] = prescription_alerts(patient=patient, prescription=ibuprofen)
    with pytest.raises(ValidationError) as refused:
        alert_acknowledge(
            patient=patient, note_id=note_id, prescription_id=ibuprofen["id"], alert=alert, reason="  ", by=doctor
        )
    assert "reason" in refused.value.message_dict
    assert not PrescriptionAlertAcknowledgement.objects.exists()
    reason = "Dolor agudo; dosis única con control de INR mañana"
    acknowledgement = alert_acknowledge(
        patient=patient, note_id=note_id, prescription_id=ibuprofen["id"], alert=alert, reason=reason, by=doctor
    )
    assert acknowledgement.reason == reason and acknowledgement.acknowledged_by == doctor
    [event] = AuditEvent.objects.filter(action=AuditAction.PRESCRIPTION_ALERT_ACKNOWLEDGED.value)
    assert event.patient_id == patient.pk and event.actor_user_id == doctor.pk
    assert event.object_id == str(acknowledgement.pk)
    assert event.details == {
        "note": note_id,
        "prescription": ibuprofen["id"],
        "kind": "interaction",
        "severity": "high",
    }
    flat = str(event.details).lower()
    for clinical in ("warfar", "ibupro", "inr", "dolor", "nsaid"):
        assert clinical not in flat
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reason FROM records_prescriptionalertacknowledgement WHERE id = %s", [acknowledgement.pk]
        )
        assert b"Dolor" not in bytes(cursor.fetchone()[0])
    # A double submit keeps the first acknowledgement and audits nothing new.
    again = alert_acknowledge(
        patient=patient, note_id=note_id, prescription_id=ibuprofen["id"], alert=alert, reason="otra", by=doctor
    )
    assert again.pk == acknowledgement.pk and PrescriptionAlertAcknowledgement.objects.count() == 1
    assert AuditEvent.objects.filter(action=AuditAction.PRESCRIPTION_ALERT_ACKNOWLEDGED.value).count() == 1


def test_acknowledgements_are_append_only(personas, patient, note_id):
    doctor = personas.practitioner
    allergy_record(patient=patient, substance="Penicilina", severity="severe", recorded_by=doctor)
    amoxicillin = rx("Amoxicilina")
    [alert] = prescription_alerts(patient=patient, prescription=amoxicillin)
    row = alert_acknowledge(
        patient=patient, note_id=note_id, prescription_id=amoxicillin["id"], alert=alert, reason="Prueba", by=doctor
    )
    for statement in (
        "UPDATE records_prescriptionalertacknowledgement SET alert_key = 'x' WHERE id = %s",
        "DELETE FROM records_prescriptionalertacknowledgement WHERE id = %s",
    ):
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, [row.pk])
    assert PrescriptionAlertAcknowledgement.objects.get().alert_key == alert.key


def test_only_the_treating_practitioner_acknowledges(personas, patient, note_id):
    allergy_record(patient=patient, substance="Penicilina", severity="severe", recorded_by=personas.practitioner)
    amoxicillin = rx("Amoxicilina")
    [alert] = prescription_alerts(patient=patient, prescription=amoxicillin)
    for intruder in (personas.outsider, personas.coordinator, personas.patient):
        with pytest.raises(AccessDenied):
            alert_acknowledge(
                patient=patient,
                note_id=note_id,
                prescription_id=amoxicillin["id"],
                alert=alert,
                reason="Sin motivo",
                by=intruder,
            )
    assert not PrescriptionAlertAcknowledgement.objects.exists()


def test_unacknowledged_alerts_until_each_is_acknowledged(personas, patient, note_id, django_assert_num_queries):
    doctor = personas.practitioner
    allergy_record(patient=patient, substance="Penicilina", severity="severe", recorded_by=doctor)
    medication_record(patient=patient, drug_name="Warfarina", dose="5 mg", source="reported", recorded_by=doctor)
    amoxicillin, naproxen, diclofenac, paracetamol = (
        rx("Amoxicilina"),
        rx("Naproxeno"),
        rx("Diclofenaco"),
        rx("Paracetamol"),
    )
    prescriptions = [amoxicillin, naproxen, diclofenac, paracetamol]
    with django_assert_num_queries(3):
        pending = unacknowledged_alerts(note_id=note_id, patient=patient, prescriptions=prescriptions)
    keys = {(prescription_id, alert.key) for prescription_id, alert in pending}
    # Amoxicillin (allergy); each NSAID with warfarin; the two NSAIDs together, shown on both.
    assert {k for _p, k in keys} == {
        next(k for _p, k in keys if k.startswith("allergy:")),
        "interaction:warfarin-nsaid:naproxen+warfarin",
        "interaction:warfarin-nsaid:diclofenac+warfarin",
        "interaction:nsaid-nsaid:diclofenac+naproxen",
    }
    assert paracetamol["id"] not in {p for p, _k in keys}
    assert (naproxen["id"], "interaction:nsaid-nsaid:diclofenac+naproxen") in keys
    assert (diclofenac["id"], "interaction:nsaid-nsaid:diclofenac+naproxen") in keys
    # One acknowledgement per alert, whichever prescription it was given on, answers it note-wide.
    seen = set()
    for prescription_id, alert in pending:
        if alert.key in seen:
            continue
        seen.add(alert.key)
        alert_acknowledge(
            patient=patient, note_id=note_id, prescription_id=prescription_id, alert=alert, reason="Indicado", by=doctor
        )
    assert unacknowledged_alerts(note_id=note_id, patient=patient, prescriptions=prescriptions) == []
    # Acknowledgements belong to their note: the same prescriptions in another note alert again.
    assert len(unacknowledged_alerts(note_id=note_id + 1, patient=patient, prescriptions=prescriptions)) == len(pending)


# --- the knowledge base is replaceable -------------------------------------------------------------------


class _NoInteractions(TableDrugKnowledge):
    """A stand-in for a fuller knowledge base: same names and allergies, but it knows no interactions."""

    def interactions(self, ingredients_a, ingredients_b):
        return []


def test_the_backend_comes_from_settings(personas, patient):
    assert isinstance(drug_knowledge(), DrugKnowledge)
    medication_record(patient=patient, drug_name="Warfarina", source="reported", recorded_by=personas.practitioner)
    assert prescription_alerts(patient=patient, prescription=rx("Ibuprofeno"))
    with override_settings(DRUG_KNOWLEDGE_BACKEND="tests.records.test_prescriptions._NoInteractions"):
        assert isinstance(drug_knowledge(), _NoInteractions)
        assert prescription_alerts(patient=patient, prescription=rx("Ibuprofeno")) == []


def test_alert_is_plain_data():
    alert = Alert(kind="allergy", key="allergy:1:amoxicillin", message="m", severity="high")
    assert alert == Alert("allergy", "allergy:1:amoxicillin", "m", "high")


def test_the_shipped_table_is_consistent():
    """Every name means one thing, every rule and cross-reactivity refers to known ingredients or classes,
    and every severity is one the alerts know: a typo in the table would otherwise silently never alert."""
    import json

    from records.cie10 import fold
    from records.drug_knowledge import TABLE_FILE

    table = json.loads(TABLE_FILE.read_text(encoding="utf-8"))
    drugs, classes = table["drugs"], table["classes"]
    names = [fold(n) for d in drugs.values() for n in d["names"]] + [fold(n) for n in table["combinations"]]
    class_names = [fold(n) for c in classes.values() for n in c["names"]]
    assert len(names) == len(set(names)) and len(class_names) == len(set(class_names))
    assert not set(names) & set(class_names)
    assert all(set(keys) <= set(drugs) for keys in table["combinations"].values())
    used_classes = {c for d in drugs.values() for c in d["classes"]}
    assert set(classes) <= used_classes  # an allergy class nobody belongs to would never match
    for rule in table["interactions"]:
        assert rule["severity"] in {"high", "moderate", "low"} and rule["es"] and rule["en"], rule["id"]
        for side in rule["a"] + rule["b"]:
            assert side.removeprefix("class:") in used_classes if side.startswith("class:") else side in drugs, side
    for cls in classes.values():
        for cross in cls["cross_reactive"]:
            assert cross["class"] in classes and cross["severity"] in {"high", "moderate", "low"}
    assert len({rule["id"] for rule in table["interactions"]}) == len(table["interactions"])
