"""EHR-1: encounters start from their appointment (idempotently) or unscheduled, record modality changes,
finish with the modality used, and start a care relationship; the encounter gate is audited."""

import datetime as dt

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.access import AccessDenied
from audit.models import AuditEvent
from records.access import chart_for, encounter_for
from records.encounters import (
    encounter_cancel,
    encounter_finish,
    encounter_record_modality,
    encounter_start,
    encounter_unscheduled,
)
from records.models import CareRelationship, CareSource, EncounterStatus, ParticipantRole, Patient
from tests.factories import EstablishmentFactory, PractitionerProfileFactory
from tests.records.encounter_support import registered_patient, started_encounter, verified

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(personas):
    return personas, registered_patient(personas)


def test_start_snapshots_participants_and_starts_care(world):
    personas, patient = world
    profile = personas.practitioner.practitioner_profile
    profile.rne = "31415"
    profile.save()
    encounter = started_encounter(personas, patient)
    assert encounter.status == EncounterStatus.IN_PROGRESS
    assert encounter.started_at is not None
    participant = encounter.participants.get()
    assert (participant.full_name, participant.registry_body, participant.registry_number, participant.rne) == (
        personas.practitioner.full_name,
        profile.registry_body,
        profile.registry_number,
        "31415",
    )
    assert participant.establishment.renipress_code == "00006210"
    relationship = CareRelationship.objects.get(source=CareSource.ENCOUNTER, source_id=str(encounter.pk))
    assert relationship.practitioner == personas.practitioner
    # The new relationship opens the chart to the practitioner.
    assert chart_for(verified(personas.practitioner), patient.pk).via == "care_relationship"
    event = AuditEvent.objects.get(action="records.encounter.started")
    assert event.patient_id == patient.pk and event.details["participants"] == [personas.practitioner.pk]
    # A later profile change does not rewrite the snapshot.
    profile.registry_number = "99999"
    profile.save()
    participant.refresh_from_db()
    assert participant.registry_number != "99999"


def test_start_is_idempotent_per_appointment_and_adds_late_participants(world):
    personas, patient = world
    first = started_encounter(personas, patient, ref="appt-7")
    consultant = PractitionerProfileFactory().user
    remote = EstablishmentFactory(renipress_code="00001234")
    again = encounter_start(
        patient=patient,
        appointment_ref="appt-7",
        service_type="teleconsulta",
        modality_planned="video",
        origin_establishment=personas.establishment,
        participants=[(consultant, ParticipantRole.CONSULTANT, remote)],
        by=consultant,
    )
    assert again.pk == first.pk
    assert set(first.participants.values_list("user_id", flat=True)) == {personas.practitioner.pk, consultant.pk}
    assert first.participants.get(user=consultant).establishment == remote
    assert AuditEvent.objects.filter(action="records.encounter.started").count() == 1


def test_one_encounter_per_appointment_is_a_database_constraint(world):
    personas, patient = world
    encounter = started_encounter(personas, patient, ref="appt-9")
    from records.models import Encounter

    with pytest.raises(IntegrityError), transaction.atomic():
        Encounter.objects.create(
            patient=patient,
            appointment_ref="appt-9",
            service_type="teleconsulta",
            modality_planned="video",
            origin_establishment=encounter.origin_establishment,
            created_by=personas.practitioner,
        )


def test_teleinterconsulta_names_both_establishments(world):
    personas, patient = world
    with pytest.raises(ValidationError) as error:
        encounter_start(
            patient=patient,
            appointment_ref="appt-10",
            service_type="teleinterconsulta",
            modality_planned="video",
            origin_establishment=personas.establishment,
            participants=[(personas.practitioner, ParticipantRole.ATTENDING, None)],
            by=personas.practitioner,
        )
    assert "consulted_establishment" in error.value.message_dict
    encounter = encounter_start(
        patient=patient,
        appointment_ref="appt-10",
        service_type="teleinterconsulta",
        modality_planned="video",
        origin_establishment=personas.establishment,
        consulted_establishment=personas.other_establishment,
        participants=[(personas.practitioner, ParticipantRole.ATTENDING, None)],
        by=personas.practitioner,
    )
    assert encounter.consulted_establishment.renipress_code == "00007380"


@pytest.mark.parametrize(("field", "value"), [("service_type", "teleconsejo"), ("modality_planned", "fax")])
def test_bad_choices_are_refused_and_nothing_is_saved(world, field, value):
    personas, patient = world
    arguments = {
        "patient": patient,
        "appointment_ref": "appt-11",
        "service_type": "teleconsulta",
        "modality_planned": "video",
        "origin_establishment": personas.establishment,
        "participants": [(personas.practitioner, ParticipantRole.ATTENDING, None)],
        "by": personas.practitioner,
    }
    arguments[field] = value
    with pytest.raises(ValidationError) as error:
        encounter_start(**arguments)
    assert field in error.value.message_dict
    assert not patient.encounters.exists()


def test_only_practitioners_with_registry_data_take_part(world):
    personas, patient = world
    with pytest.raises(ValidationError):
        encounter_start(
            patient=patient,
            appointment_ref="appt-12",
            service_type="teleconsulta",
            modality_planned="video",
            origin_establishment=personas.establishment,
            participants=[(personas.coordinator, ParticipantRole.ATTENDING, None)],
            by=personas.coordinator,
        )
    assert not patient.encounters.exists()


def test_modality_changes_and_finish_record_the_modality_used(world):
    personas, patient = world
    encounter = started_encounter(personas, patient)
    encounter_record_modality(encounter=encounter, modality="audio", by=personas.practitioner)
    encounter_record_modality(encounter=encounter, modality="audio", by=personas.practitioner)  # no-op
    encounter_record_modality(encounter=encounter, modality="chat", by=None)
    assert list(encounter.modality_changes.values_list("modality", flat=True)) == ["video", "audio", "chat"]
    assert AuditEvent.objects.filter(action="records.encounter.modality_changed").count() == 2
    finished = encounter_finish(encounter=encounter, by=personas.practitioner)
    assert finished.status == EncounterStatus.FINISHED
    assert finished.modality_used == "chat"
    assert finished.modality_planned == "video"
    patient.refresh_from_db()
    assert patient.last_encounter_at == finished.ended_at
    with pytest.raises(ValidationError):
        encounter_record_modality(encounter=encounter, modality="video", by=personas.practitioner)
    with pytest.raises(ValidationError):
        encounter_finish(encounter=encounter, by=personas.practitioner)


def test_finish_never_moves_the_retention_clock_backwards(world):
    personas, patient = world
    later = timezone.now() + dt.timedelta(hours=1)
    Patient.objects.filter(pk=patient.pk).update(last_encounter_at=later)
    encounter_finish(encounter=started_encounter(personas, patient), by=personas.practitioner)
    patient.refresh_from_db()
    assert patient.last_encounter_at == later


def test_cancel_keeps_the_row(world):
    personas, patient = world
    encounter = encounter_cancel(encounter=started_encounter(personas, patient), by=personas.coordinator)
    assert encounter.status == EncounterStatus.CANCELLED
    assert AuditEvent.objects.filter(action="records.encounter.cancelled", object_id=str(encounter.pk)).exists()


def test_unscheduled_contact_by_a_practitioner(world):
    personas, patient = world
    encounter = encounter_unscheduled(
        patient=patient, by=personas.practitioner, origin_establishment=personas.establishment, modality="audio"
    )
    assert encounter.appointment_ref == ""
    assert encounter.participants.get().role == ParticipantRole.ATTENDING
    # Two unscheduled contacts are two encounters (the one-per-appointment rule ignores empty references).
    encounter_unscheduled(patient=patient, by=personas.practitioner, origin_establishment=personas.establishment)
    assert patient.encounters.count() == 2
    with pytest.raises(ValidationError):
        encounter_unscheduled(patient=patient, by=personas.coordinator, origin_establishment=personas.establishment)


def test_encounters_are_never_deleted_and_snapshots_never_change(world):
    personas, patient = world
    encounter = started_encounter(personas, patient)
    statements = [
        f"DELETE FROM records_encounter WHERE id = {encounter.pk}",
        "TRUNCATE records_encounter CASCADE",
        f"UPDATE records_encounterparticipant SET registry_number = '1' WHERE encounter_id = {encounter.pk}",
        f"DELETE FROM records_encountermodalitychange WHERE encounter_id = {encounter.pk}",
    ]
    for statement in statements:
        # Deferred foreign-key checks of this test's own inserts would block TRUNCATE before the trigger.
        with (
            pytest.raises(Exception, match="never changed or deleted"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(statement)


PERSONAS = ["patient_self", "treating", "outsider", "coordinator", "admin", "auditor", "anonymous"]


@pytest.mark.parametrize("who", PERSONAS)
def test_encounter_gate(world, who):
    personas, patient = world
    encounter = started_encounter(personas, patient)
    user = {
        "patient_self": personas.patient,
        "treating": verified(personas.practitioner),
        "outsider": verified(personas.outsider),
        "coordinator": personas.coordinator,
        "admin": personas.admin,
        "auditor": personas.auditor,
        "anonymous": AnonymousUser(),
    }[who]
    if who in {"patient_self", "treating"}:
        assert encounter_for(user, encounter.pk) == encounter
        assert AuditEvent.objects.filter(action="records.encounter.viewed", object_id=str(encounter.pk)).exists()
    else:
        with pytest.raises(AccessDenied):
            encounter_for(user, encounter.pk)
        assert AuditEvent.objects.filter(action="records.chart.denied", object_type="encounter").exists()


def test_missing_encounter_looks_like_forbidden(world):
    personas, _patient = world
    with pytest.raises(AccessDenied):
        encounter_for(verified(personas.practitioner), 999_999)
