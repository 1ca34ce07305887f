"""Races on the encounter record: two participants starting the same appointment's encounter at once, and two
tabs autosaving the same draft version at once. Each pair shows the race exists and that the protection holds."""

import threading

import pytest
from django.db import IntegrityError, connection, transaction

from records.encounters import encounter_start
from records.models import ClinicalNote, Encounter, NoteRevision, ParticipantRole
from records.notes import note_create, note_save_draft
from tests.factories import PractitionerProfileFactory
from tests.records.encounter_support import registered_patient

pytestmark = pytest.mark.django_db(transaction=True)


def _together(*callables):
    """Run the callables in threads released at the same moment; return their results or exceptions."""
    barrier = threading.Barrier(len(callables))
    results: list[object] = [None] * len(callables)

    def run(index, function):
        try:
            barrier.wait()
            results[index] = function()
        except Exception as exc:
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, f)) for i, f in enumerate(callables)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.fixture
def world(personas):
    return personas, registered_patient(personas), PractitionerProfileFactory().user


def _start(personas, patient, user, role):
    return lambda: encounter_start(
        patient=patient,
        appointment_ref="appt-race",
        service_type="teleconsulta",
        modality_planned="video",
        origin_establishment=personas.establishment,
        participants=[(user, role, None)],
        by=user,
    )


def test_without_the_lock_a_second_start_would_collide(world):
    """The race is real: a plain check-then-insert by two joiners hits the unique index."""
    personas, patient, _consultant = world
    gate = threading.Barrier(2)

    def naive():
        with transaction.atomic():
            exists = Encounter.objects.filter(appointment_ref="appt-race").exists()
            gate.wait()
            if not exists:
                return Encounter.objects.create(
                    patient=patient,
                    appointment_ref="appt-race",
                    service_type="teleconsulta",
                    modality_planned="video",
                    origin_establishment=personas.establishment,
                    created_by=personas.practitioner,
                )
            return None

    results = _together(naive, naive)
    assert sum(isinstance(r, IntegrityError) for r in results) == 1


def test_two_participants_starting_at_once_share_one_encounter(world):
    personas, patient, consultant = world
    results = _together(
        _start(personas, patient, personas.practitioner, ParticipantRole.ATTENDING),
        _start(personas, patient, consultant, ParticipantRole.CONSULTANT),
    )
    assert all(isinstance(r, Encounter) for r in results), results
    assert results[0].pk == results[1].pk
    encounter = Encounter.objects.get(appointment_ref="appt-race")
    assert set(encounter.participants.values_list("user_id", flat=True)) == {personas.practitioner.pk, consultant.pk}


def test_two_tabs_saving_the_same_version_one_wins_the_other_is_told(world):
    personas, patient, _consultant = world
    encounter = _start(personas, patient, personas.practitioner, ParticipantRole.ATTENDING)()
    note = note_create(encounter=encounter, author=personas.practitioner)
    tab_a, tab_b = ClinicalNote.objects.get(pk=note.pk), ClinicalNote.objects.get(pk=note.pk)
    results = _together(
        lambda: note_save_draft(note=tab_a, content={"reason": "A"}, by=personas.practitioner, expected_version=1),
        lambda: note_save_draft(note=tab_b, content={"reason": "B"}, by=personas.practitioner, expected_version=1),
    )
    saved = [r for r in results if isinstance(r, ClinicalNote)]
    refused = [r for r in results if not isinstance(r, ClinicalNote)]
    assert len(saved) == 1 and len(refused) == 1
    assert refused[0].code == "stale_version"
    assert ClinicalNote.objects.get(pk=note.pk).version == 2
    assert NoteRevision.objects.filter(note=note).count() == 2
