"""EHR-2/3: the clinical note's sections, strict validation per section, versioned drafts (stale versions refused),
templates, the note gate across personas, and no plaintext in the database."""

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.access import AccessDenied
from audit.models import AuditEvent
from records.access import note_for
from records.models import ClinicalNote, NoteRevision
from records.notes import (
    NOTE_SECTIONS,
    empty_content,
    missing_sections_for_signing,
    note_content,
    note_create,
    note_save_draft,
    template_create,
    template_update,
)
from records.signing import note_sign
from tests.records.encounter_support import complete_content, registered_patient, started_encounter, verified

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(personas):
    patient = registered_patient(personas)
    encounter = started_encounter(personas, patient)
    note = note_create(encounter=encounter, author=personas.practitioner)
    return personas, patient, encounter, note


def test_new_note_is_an_empty_draft_with_every_section(world):
    personas, patient, encounter, note = world
    assert note.status == "draft" and note.version == 1 and note.patient_id == patient.pk
    assert note_content(note) == empty_content()
    assert set(empty_content()) == set(NOTE_SECTIONS)
    assert NoteRevision.objects.get(note=note).version == 1
    assert note_create(encounter=encounter, author=personas.practitioner).pk == note.pk  # resumes, no second note


def test_only_participating_practitioners_write_notes(world):
    personas, _patient, encounter, _note = world
    for user in (personas.outsider, personas.coordinator):
        with pytest.raises(ValidationError):
            note_create(encounter=encounter, author=user)


def test_autosave_keeps_every_version(world):
    personas, _patient, _encounter, note = world
    first = {"reason": "Cefalea"}
    second = {"reason": "Cefalea intensa", "anamnesis": {"story": "Desde ayer."}}
    # One UPDATE, one revision INSERT and its audit event (plus the savepoint of the service's own
    # transaction, which is a no-op outside a test): an autosave round trip stays cheap.
    with CaptureQueriesContext(connection) as captured:
        note = note_save_draft(note=note, content=first, by=personas.practitioner, expected_version=1)
    statements = [q["sql"].split()[0] for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert statements == ["UPDATE", "INSERT", "INSERT"]
    note = note_save_draft(note=note, content=second, by=personas.practitioner, expected_version=2)
    assert note.version == 3
    stored = ClinicalNote.objects.get(pk=note.pk)
    assert stored.version == 3
    assert note_content(stored)["anamnesis"] == {
        "illness_duration": "",
        "onset": "",
        "course": "",
        "story": "Desde ayer.",
    }
    revisions = list(NoteRevision.objects.filter(note=note).order_by("version"))
    assert [r.version for r in revisions] == [1, 2, 3]
    assert '"reason":"Cefalea"' in revisions[1].content
    event = AuditEvent.objects.filter(action="records.note.draft_saved").latest("pk")
    assert event.details == {"version": 3}


def test_stale_version_is_refused_as_edited_elsewhere(world):
    personas, _patient, _encounter, note = world
    other_tab = ClinicalNote.objects.get(pk=note.pk)
    note_save_draft(note=note, content={"reason": "Primera pestaña"}, by=personas.practitioner, expected_version=1)
    with pytest.raises(ValidationError) as error:
        note_save_draft(note=other_tab, content={"reason": "Segunda"}, by=personas.practitioner, expected_version=1)
    assert error.value.code == "stale_version"
    assert "otra ventana" in error.value.messages[0]
    stored = ClinicalNote.objects.get(pk=note.pk)
    assert note_content(stored)["reason"] == "Primera pestaña"
    assert stored.version == 2 and NoteRevision.objects.filter(note=note).count() == 2


def test_only_the_author_edits_the_draft(world):
    personas, _patient, _encounter, note = world
    with pytest.raises(ValidationError) as error:
        note_save_draft(note=note, content={"reason": "x"}, by=personas.outsider, expected_version=1)
    assert error.value.code == "not_author"


LONG = "x" * 10_001
BAD_INPUT = [
    ({"motivo": "x"}, "motivo"),
    ({"reason": 5}, "reason"),
    ({"reason": LONG}, "reason"),
    ({"anamnesis": "texto"}, "anamnesis"),
    ({"anamnesis": {"story": ["a"]}}, "anamnesis.story"),
    ({"anamnesis": {"illness_duration": "x" * 201}}, "anamnesis.illness_duration"),
    ({"anamnesis": {"feelings": "x"}}, "anamnesis.feelings"),
    ({"history": None}, "history"),
    ({"examination": {"text": 1}}, "examination.text"),
    ({"examination": {"vital_signs": {"spo2": 120}}}, "examination.vital_signs.spo2"),
    ({"examination": {"vital_signs": {"heart_rate": 80.5}}}, "examination.vital_signs.heart_rate"),
    ({"examination": {"vital_signs": {"temperature_c": "38"}}}, "examination.vital_signs.temperature_c"),
    ({"examination": {"vital_signs": {"temperature_c": True}}}, "examination.vital_signs.temperature_c"),
    ({"examination": {"vital_signs": {"weight_kg": 900}}}, "examination.vital_signs.weight_kg"),
    ({"examination": {"vital_signs": {"systolic": 80, "diastolic": 90}}}, "examination.vital_signs.diastolic"),
    ({"examination": {"vital_signs": {"glucose": 90}}}, "examination.vital_signs.glucose"),
    ({"examination": {"patient_reported": "sí"}}, "examination.patient_reported"),
    ({"diagnoses": {"code": "J06.9"}}, "diagnoses"),
    ({"diagnoses": [{"code": "ZZZ", "type": "definitive"}]}, "diagnoses.0.code"),
    ({"diagnoses": [{"code": "J06.9", "type": "probable"}]}, "diagnoses.0.type"),
    ({"diagnoses": [{"code": "J06.9", "type": "definitive", "note": "x"}]}, "diagnoses.0.note"),
    (
        {"diagnoses": [{"code": "J06.9", "type": "definitive"}, {"code": "j06.9", "type": "repeat"}]},
        "diagnoses.1.code",
    ),
    ({"diagnoses": [{"code": "J06.9", "type": "definitive"}] * 21}, "diagnoses"),
    ({"plan": 3.5}, "plan"),
    ({"prescriptions": [{"drug": "Amoxicilina", "dose": "500"}]}, "prescriptions.0.dose_unit"),
    ({"prescriptions": [{"id": "not-a-uuid", "drug": "Amoxicilina"}]}, "prescriptions.0.id"),
    ({"prescriptions": [{"drug": "Amoxicilina", "color": "rojo"}]}, "prescriptions.0.color"),
    ({"prescriptions": ["Amoxicilina"]}, "prescriptions.0"),
    ({"treatment": {"a": 1}}, "treatment"),
    ({"indications": "a\x00b"}, "indications"),
    ({"next_appointment": "x" * 201}, "next_appointment"),
]


@pytest.mark.parametrize(("content", "field"), BAD_INPUT, ids=[field for _content, field in BAD_INPUT])
def test_bad_input_names_the_field_and_saves_nothing(world, content, field):
    personas, _patient, _encounter, note = world
    with pytest.raises(ValidationError) as error:
        note_save_draft(note=note, content=content, by=personas.practitioner, expected_version=1)
    assert field in error.value.message_dict, error.value.message_dict
    stored = ClinicalNote.objects.get(pk=note.pk)
    assert stored.version == 1 and NoteRevision.objects.filter(note=note).count() == 1


def test_content_that_is_not_an_object_is_refused(world):
    personas, _patient, _encounter, note = world
    with pytest.raises(ValidationError):
        note_save_draft(note=note, content=["reason"], by=personas.practitioner, expected_version=1)


def test_codes_are_normalised_and_prescriptions_get_ids(world):
    personas, _patient, _encounter, note = world
    content = {
        "diagnoses": [{"code": " j06.9 ", "type": "definitive"}],
        "prescriptions": [{"drug": "Paracetamol", "dose": "500", "dose_unit": "mg"}],
    }
    note = note_save_draft(note=note, content=content, by=personas.practitioner, expected_version=1)
    saved = note_content(note)
    assert saved["diagnoses"] == [{"code": "J06.9", "type": "definitive"}]
    assert len(saved["prescriptions"][0]["id"]) == 36


def test_missing_sections_are_listed_by_name():
    assert missing_sections_for_signing(empty_content()) == [
        "Motivo de consulta",
        "Relato de la enfermedad",
        "Examen clínico",
        "Diagnósticos (CIE-10)",
        "Plan de trabajo (exámenes, interconsultas, referencias)",
    ]
    assert missing_sections_for_signing(complete_content()) == []
    incomplete = complete_content()
    incomplete["prescriptions"][0]["route"] = ""
    assert missing_sections_for_signing(incomplete) == ["Receta, medicamento 1: Vía de administración"]


def test_templates_prefill_and_are_admin_managed(world):
    personas, patient, _encounter, _note = world
    defaults = {"examination": {"text": "Paciente en buen estado general."}, "plan": "Control en 1 semana."}
    with pytest.raises(ValidationError):
        template_create(specialty="Medicina general", name="Control", content=defaults, by=personas.practitioner)
    template = template_create(specialty="Medicina general", name="Control", content=defaults, by=personas.admin)
    with pytest.raises(ValidationError) as error:
        template_create(specialty="Pediatría", name="Mala", content={"plan": 1}, by=personas.admin)
    assert "plan" in error.value.message_dict
    with pytest.raises(ValidationError):
        template_create(
            specialty="Pediatría",
            name="Con diagnóstico",
            content={"diagnoses": [{"code": "J06.9", "type": "definitive"}]},
            by=personas.admin,
        )
    encounter = started_encounter(personas, patient, ref="appt-template")
    note = note_create(encounter=encounter, author=personas.practitioner, template=template)
    content = note_content(note)
    assert content["examination"]["text"] == "Paciente en buen estado general."
    assert content["examination"]["vital_signs"]["spo2"] is None
    assert content["plan"] == "Control en 1 semana."
    template_update(template=template, by=personas.admin, is_active=False)
    other = started_encounter(personas, patient, ref="appt-template-2")
    with pytest.raises(ValidationError):
        note_create(encounter=other, author=personas.practitioner, template=template)
    assert AuditEvent.objects.filter(action="records.note_template.updated").get().details == {"fields": ["is_active"]}


def test_raw_rows_hold_no_plaintext(world):
    personas, _patient, _encounter, note = world
    content = complete_content()
    note_save_draft(note=note, content=content, by=personas.practitioner, expected_version=1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT content FROM records_clinicalnote WHERE id = %s", [note.pk])
        note_bytes = bytes(cursor.fetchone()[0])
        cursor.execute("SELECT content FROM records_noterevision WHERE note_id = %s", [note.pk])
        revision_bytes = [bytes(row[0]) for row in cursor.fetchall()]
    for raw in [note_bytes, *revision_bytes]:
        for secret in ("Odinofagia", "penicilina", "J02.9", "Paracetamol"):
            assert secret.encode() not in raw
    for event in AuditEvent.objects.filter(object_type="note"):
        assert "Odinofagia" not in str(event.details)


PERSONAS = ["patient_self", "treating", "outsider", "coordinator", "admin", "auditor", "anonymous"]


def _user(personas, who):
    return {
        "patient_self": personas.patient,
        "treating": verified(personas.practitioner),
        "outsider": verified(personas.outsider),
        "coordinator": personas.coordinator,
        "admin": personas.admin,
        "auditor": personas.auditor,
        "anonymous": AnonymousUser(),
    }[who]


@pytest.mark.parametrize("who", PERSONAS)
@pytest.mark.parametrize("signed", [False, True])
def test_note_gate(world, who, signed):
    personas, _patient, _encounter, note = world
    if signed:
        note = note_save_draft(note=note, content=complete_content(), by=personas.practitioner, expected_version=1)
        note = note_sign(note=note, signer=personas.practitioner, reauthenticated=True)
    user = _user(personas, who)
    readers = {"treating", "patient_self"} if signed else {"treating"}
    if who in readers:
        assert note_for(user, note.pk).pk == note.pk
        event = AuditEvent.objects.filter(action="records.note.viewed").latest("pk")
        assert event.object_id == str(note.pk) and event.actor_user_id == user.pk
    else:
        with pytest.raises(AccessDenied):
            note_for(user, note.pk)
        assert AuditEvent.objects.filter(action="records.chart.denied", object_type="note").exists()
    # To edit: only the treating practitioner (the author for a draft; any treating one amends a signed note).
    if who == "treating":
        assert note_for(user, note.pk, to_edit=True).pk == note.pk
    else:
        with pytest.raises(AccessDenied):
            note_for(user, note.pk, to_edit=True)


def test_a_draft_is_edited_only_by_its_author(world, personas):
    import datetime as dt

    from django.utils import timezone

    from records.care import care_relationship_start
    from records.models import CareSource

    _personas, patient, _encounter, note = world
    now = timezone.now()
    care_relationship_start(
        patient=patient,
        practitioner=personas.outsider,
        source=CareSource.REFERRAL,
        source_id="r1",
        valid_from=now - dt.timedelta(hours=1),
        valid_until=now + dt.timedelta(hours=1),
        created_by=personas.admin,
    )
    colleague = verified(personas.outsider)
    assert note_for(colleague, note.pk).pk == note.pk
    with pytest.raises(AccessDenied):
        note_for(colleague, note.pk, to_edit=True)


def test_missing_note_looks_like_forbidden(world):
    personas, *_ = world
    with pytest.raises(AccessDenied):
        note_for(verified(personas.practitioner), 999_999)
