"""The practitioner's pages of the encounter record: chart, note editor with autosave, CIE-10 search, alerts,
signing, amendments and the signed PDF. Who may open each, bad input, and the chart's query count."""

from __future__ import annotations

import time
import zoneinfo

import pytest
from django.urls import reverse

from accounts.access import REAUTH_SESSION_KEY
from records.encounters import encounter_finish
from records.medications import allergy_record
from records.models import ClinicalNote, Encounter, NoteAmendment, NoteStatus, PrescriptionAlertAcknowledgement
from records.notes import note_content, note_create, note_save_draft, template_create
from records.signing import note_sign
from tests.factories import UserFactory
from tests.records.encounter_support import complete_content, registered_patient, started_encounter, verified

pytestmark = pytest.mark.django_db


class World:
    def __init__(self, personas):
        self.personas = personas
        self.patient = registered_patient(personas)
        self.encounter = started_encounter(personas, self.patient)
        self.note = note_create(encounter=self.encounter, author=personas.practitioner)
        self.other_patient_user = UserFactory(email="otro.paciente@example.test")


@pytest.fixture
def world(personas):
    return World(personas)


def reauthenticated(client):
    session = client.session
    session[REAUTH_SESSION_KEY] = time.time()
    session.save()
    return client


def form_data(content, version):
    """The editor's POST fields for a note content (what the browser sends, autosave included)."""
    data = {"version": str(version)}
    for key in ("reason", "history", "plan", "treatment", "indications", "next_appointment"):
        data[key] = content[key]
    for key, value in content["anamnesis"].items():
        data[f"anamnesis.{key}"] = value
    data["examination.text"] = content["examination"]["text"]
    for key, value in content["examination"]["vital_signs"].items():
        data[f"examination.vital_signs.{key}"] = "" if value is None else str(value)
    if content["examination"]["patient_reported"]:
        data["examination.patient_reported"] = "on"
    for index, diagnosis in enumerate(content["diagnoses"]):
        data[f"diagnoses.{index}.code"] = diagnosis["code"]
        data[f"diagnoses.{index}.type"] = diagnosis["type"]
    for index, item in enumerate(content["prescriptions"]):
        for key, value in item.items():
            data[f"prescriptions.{index}.{key}"] = value
    return data


def signed_note(world):
    note = note_save_draft(
        note=world.note, content=complete_content(), by=world.personas.practitioner, expected_version=world.note.version
    )
    return note_sign(note=note, signer=verified(world.personas.practitioner), reauthenticated=True)


# --- who may open what ---------------------------------------------------------------------------------


def _pages(world):
    note_id, patient_id = world.note.pk, world.patient.pk
    return [
        ("get", reverse("records:patient_chart", args=[patient_id]), {}),
        ("get", reverse("records:note", args=[note_id]), {}),
        ("post", reverse("records:note", args=[note_id]), {"version": "1", "reason": "x"}),
        ("post", reverse("records:note_autosave", args=[note_id]), {"version": "1", "reason": "x"}),
        ("post", reverse("records:note_apply_template", args=[note_id]), {"version": "1", "template": "1"}),
        ("post", reverse("records:alert_acknowledge", args=[note_id]), {"reason": "x"}),
        ("get", reverse("records:note_sign", args=[note_id]), {}),
        ("get", reverse("records:note_amend", args=[note_id]), {}),
        ("get", reverse("records:note_pdf", args=[note_id]), {}),
        ("get", reverse("records:cie10_search") + "?q=faringitis", {}),
        ("post", reverse("records:note_open", args=[world.encounter.pk]), {}),
        ("post", reverse("records:allergy_add", args=[patient_id]), {"substance": "Penicilina", "severity": "severe"}),
        ("post", reverse("records:problem_add", args=[patient_id]), {"cie10_code": "J02.9"}),
        ("post", reverse("records:medication_add", args=[patient_id]), {"drug_name": "Losartán", "source": "reported"}),
        ("post", reverse("records:encounter_unscheduled", args=[patient_id]), {"service_type": "teleconsulta"}),
    ]


@pytest.mark.parametrize("persona", ["outsider", "coordinator", "auditor", "admin", "patient", "other_patient"])
def test_every_page_is_a_404_for_whoever_is_not_the_treating_practitioner(world, persona, login_as):
    user = world.other_patient_user if persona == "other_patient" else getattr(world.personas, persona)
    client = reauthenticated(login_as(user))
    before = (ClinicalNote.objects.get(pk=world.note.pk).version, Encounter.objects.count())
    for method, url, data in _pages(world):
        if persona == "outsider" and "cie10" in url:
            continue  # the code list names no patient: any practitioner may search it (below)
        response = getattr(client, method)(url, data)
        assert response.status_code == 404, (persona, url, response.status_code)
    assert (ClinicalNote.objects.get(pk=world.note.pk).version, Encounter.objects.count()) == before
    assert not world.patient.allergies.exists()


def test_anonymous_is_sent_to_sign_in(world, client):
    for method, url, data in _pages(world):
        response = getattr(client, method)(url, data)
        assert response.status_code == 302 and "/accounts/" in response["Location"], url


# --- the chart ------------------------------------------------------------------------------------------


def test_chart_shows_header_timeline_and_consents(world, login_as):
    practitioner = verified(world.personas.practitioner)
    allergy_record(patient=world.patient, substance="Penicilina", severity="severe", recorded_by=practitioner)
    signed = signed_note(world)
    response = login_as(world.personas.practitioner).get(reverse("records:patient_chart", args=[world.patient.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Penicilina" in page and "Grave" in page
    assert "Consentimientos" in page
    assert reverse("records:note", args=[signed.pk]) in page
    assert "Firmada" in page
    # Times in the practitioner's zone (Lima by default), not the server's UTC.
    lima = world.encounter.started_at.astimezone(zoneinfo.ZoneInfo("America/Lima"))
    assert lima.strftime("%d/%m/%Y %H:%M") in page


def test_allergy_problem_and_medication_forms(world, login_as):
    client = login_as(world.personas.practitioner)
    chart = reverse("records:patient_chart", args=[world.patient.pk])
    response = client.post(
        reverse("records:allergy_add", args=[world.patient.pk]), {"substance": "Penicilina", "severity": "severe"}
    )
    assert response.status_code == 302 and response["Location"] == chart
    response = client.post(reverse("records:problem_add", args=[world.patient.pk]), {"cie10_code": "Z99.99"})
    assert response.status_code == 400
    assert not world.patient.problems.exists()
    response = client.post(reverse("records:problem_add", args=[world.patient.pk]), {"cie10_code": "I10"})
    assert response.status_code == 302
    response = client.post(
        reverse("records:medication_add", args=[world.patient.pk]),
        {"drug_name": "Losartán", "dose": "50", "source": "reported"},
    )
    assert response.status_code == 400
    assert "unidad" in response.content.decode()
    assert not world.patient.medications.exists()
    page = client.get(chart).content.decode()
    assert "Penicilina" in page and "I10" in page


def _many_encounters(world, count):
    for index in range(count):
        encounter = started_encounter(world.personas, world.patient, ref=f"appointment-{index}")
        encounter_finish(encounter=encounter, by=world.personas.practitioner)
        note = note_create(encounter=encounter, author=world.personas.practitioner)
        note_save_draft(note=note, content=complete_content(), by=world.personas.practitioner, expected_version=1)
        note_sign(note=note, signer=verified(world.personas.practitioner), reauthenticated=True)


@pytest.mark.parametrize("count", [3, 30])
def test_chart_query_count_does_not_grow_with_encounters(world, count, login_as, django_assert_num_queries):
    _many_encounters(world, count)
    client = login_as(world.personas.practitioner)
    url = reverse("records:patient_chart", args=[world.patient.pk])
    client.get(url)  # warm caches (CIE-10 list, consent texts) like any page after the first
    with django_assert_num_queries(QUERIES_PER_CHART):
        response = client.get(url)
    assert response.status_code == 200


# Session, user and second factor; the gate and its audit row; identification and consents; the header (3);
# the timeline page (count, encounters, notes with their amendment counts, participants: 4); templates and
# establishments. The same for 3 encounters as for 30: nothing is loaded per encounter.
QUERIES_PER_CHART = 21


# --- note editor and autosave ---------------------------------------------------------------------------


def test_editor_renders_sections_and_autosave_saves_a_new_version(world, login_as):
    client = login_as(world.personas.practitioner)
    page = client.get(reverse("records:note", args=[world.note.pk])).content.decode()
    assert "Motivo de consulta" in page and "Relato de la enfermedad" in page and 'name="version" value="1"' in page
    response = client.post(
        reverse("records:note_autosave", args=[world.note.pk]), {"version": "1", "reason": "Fiebre y tos"}
    )
    assert response.status_code == 200
    assert response.json()["version"] == 2
    note = ClinicalNote.objects.get(pk=world.note.pk)
    assert note_content(note)["reason"] == "Fiebre y tos" and note.version == 2


def test_stale_autosave_is_a_conflict_and_saves_nothing(world, login_as):
    client = login_as(world.personas.practitioner)
    url = reverse("records:note_autosave", args=[world.note.pk])
    assert client.post(url, {"version": "1", "reason": "Primera pestaña"}).status_code == 200
    response = client.post(url, {"version": "1", "reason": "Segunda pestaña"})
    assert response.status_code == 409
    assert "otra ventana" in response.json()["error"]
    assert note_content(ClinicalNote.objects.get(pk=world.note.pk))["reason"] == "Primera pestaña"


def test_form_save_without_javascript(world, login_as):
    client = login_as(world.personas.practitioner)
    data = form_data(complete_content(), 1)
    response = client.post(reverse("records:note", args=[world.note.pk]), data)
    assert response.status_code == 302
    saved = note_content(ClinicalNote.objects.get(pk=world.note.pk))
    assert saved["diagnoses"] == [{"code": "J02.9", "type": "presumptive"}]
    assert saved["examination"]["vital_signs"]["temperature_c"] == 38.2
    assert saved["prescriptions"][0]["dose_unit"] == "tableta"


def test_unknown_cie10_code_is_refused_and_nothing_saved(world, login_as):
    client = login_as(world.personas.practitioner)
    content = complete_content()
    content["diagnoses"] = [{"code": "X99.999", "type": "presumptive"}]
    response = client.post(reverse("records:note", args=[world.note.pk]), form_data(content, 1))
    assert response.status_code == 400
    assert "no existe" in response.content.decode()
    assert ClinicalNote.objects.get(pk=world.note.pk).version == 1
    autosave = client.post(reverse("records:note_autosave", args=[world.note.pk]), form_data(content, 1))
    assert autosave.status_code == 400 and "diagnoses.0.code" in autosave.json()["errors"]
    assert ClinicalNote.objects.get(pk=world.note.pk).version == 1


def test_dose_without_unit_is_refused_and_nothing_saved(world, login_as):
    client = login_as(world.personas.practitioner)
    content = complete_content()
    content["prescriptions"][0].update(dose="500", dose_unit="")
    response = client.post(reverse("records:note", args=[world.note.pk]), form_data(content, 1))
    assert response.status_code == 400
    assert "unidad" in response.content.decode()
    assert ClinicalNote.objects.get(pk=world.note.pk).version == 1


def test_dose_with_its_unit_in_one_field_is_split(world, login_as):
    client = login_as(world.personas.practitioner)
    content = complete_content()
    content["prescriptions"][0].update(dose="500 mg", dose_unit="")
    assert client.post(reverse("records:note", args=[world.note.pk]), form_data(content, 1)).status_code == 302
    item = note_content(ClinicalNote.objects.get(pk=world.note.pk))["prescriptions"][0]
    assert (item["dose"], item["dose_unit"]) == ("500", "mg")


def test_cie10_search_endpoint_and_plain_form(world, login_as):
    outsider = login_as(world.personas.outsider).get(reverse("records:cie10_search"), {"q": "J02"})
    assert outsider.status_code == 200  # a reference list: no patient, no audit needed
    client = login_as(world.personas.practitioner)
    results = client.get(reverse("records:cie10_search"), {"q": "J02"}).json()["results"]
    assert any(entry["code"] == "J02.9" for entry in results)
    page = client.get(reverse("records:note", args=[world.note.pk]), {"cie10": "faringitis"}).content.decode()
    assert "J02" in page


# --- alerts, signing, amendments, PDF -------------------------------------------------------------------


def _prescribe_amoxicillin(world, client):
    practitioner = verified(world.personas.practitioner)
    allergy_record(patient=world.patient, substance="Penicilina", severity="severe", recorded_by=practitioner)
    content = complete_content()
    content["prescriptions"][0].update(drug="Amoxicilina", concentration="500 mg", form="Cápsula", dose="1")
    content["prescriptions"][0]["dose_unit"] = "cápsula"
    assert client.post(reverse("records:note", args=[world.note.pk]), form_data(content, 1)).status_code == 302
    return content


def test_alert_is_shown_and_must_be_acknowledged_before_signing(world, login_as):
    client = reauthenticated(login_as(world.personas.practitioner))
    _prescribe_amoxicillin(world, client)
    page = client.get(reverse("records:note", args=[world.note.pk])).content.decode()
    assert "Alerta de alergia" in page and "Penicilina" in page
    sign_page = client.get(reverse("records:note_sign", args=[world.note.pk])).content.decode()
    assert "Alertas de la receta sin confirmar" in sign_page
    refused = client.post(reverse("records:note_sign", args=[world.note.pk]))
    assert refused.status_code == 400
    assert ClinicalNote.objects.get(pk=world.note.pk).status == NoteStatus.DRAFT

    prescription_id = note_content(ClinicalNote.objects.get(pk=world.note.pk))["prescriptions"][0]["id"]
    key = page.split('name="alert_key" value="')[1].split('"')[0]
    ack_url = reverse("records:alert_acknowledge", args=[world.note.pk])
    no_reason = client.post(ack_url, {"prescription_id": prescription_id, "alert_key": key, "reason": " "})
    assert no_reason.status_code == 400 and not PrescriptionAlertAcknowledgement.objects.exists()
    forged = client.post(ack_url, {"prescription_id": prescription_id, "alert_key": "allergy:1:x", "reason": "Ok"})
    assert forged.status_code == 400 and not PrescriptionAlertAcknowledgement.objects.exists()
    done = client.post(
        ack_url, {"prescription_id": prescription_id, "alert_key": key, "reason": "Tolerada antes sin reacción"}
    )
    assert done.status_code == 302
    signed = client.post(reverse("records:note_sign", args=[world.note.pk]))
    assert signed.status_code == 302
    assert ClinicalNote.objects.get(pk=world.note.pk).status == NoteStatus.SIGNED


def test_missing_sections_are_listed_by_name_at_signing(world, login_as):
    client = reauthenticated(login_as(world.personas.practitioner))
    client.post(reverse("records:note_autosave", args=[world.note.pk]), {"version": "1", "reason": "Fiebre"})
    page = client.get(reverse("records:note_sign", args=[world.note.pk])).content.decode()
    for section in ("Relato de la enfermedad", "Examen clínico", "Diagnósticos (CIE-10)", "Plan de trabajo"):
        assert section in page
    response = client.post(reverse("records:note_sign", args=[world.note.pk]))
    assert response.status_code == 400 and "Complete antes de firmar" in response.content.decode()
    assert ClinicalNote.objects.get(pk=world.note.pk).status == NoteStatus.DRAFT


def test_signing_without_a_fresh_second_factor_goes_to_reauthentication(world, login_as):
    client = login_as(world.personas.practitioner)
    note_save_draft(note=world.note, content=complete_content(), by=world.personas.practitioner, expected_version=1)
    for method in ("get", "post"):
        response = getattr(client, method)(reverse("records:note_sign", args=[world.note.pk]))
        assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:reauth"))
    # "Save and sign" saves, then goes to the signing page, which asks for the second factor again.
    response = client.post(
        reverse("records:note", args=[world.note.pk]), {**form_data(complete_content(), 2), "action": "sign"}
    )
    assert response["Location"] == reverse("records:note_sign", args=[world.note.pk])
    assert client.get(response["Location"])["Location"].startswith(reverse("accounts:reauth"))
    assert ClinicalNote.objects.get(pk=world.note.pk).status == NoteStatus.DRAFT


def test_signed_note_is_locked_against_form_and_autosave(world, login_as):
    signed = signed_note(world)
    client = login_as(world.personas.practitioner)
    page = client.get(reverse("records:note", args=[signed.pk])).content.decode()
    assert "Nota firmada: no se puede modificar" in page and signed.content_sha256 in page
    assert 'id="note-form"' not in page
    form = client.post(reverse("records:note", args=[signed.pk]), form_data(complete_content(), signed.version))
    assert form.status_code == 400 and "enmienda" in form.content.decode()
    autosave = client.post(
        reverse("records:note_autosave", args=[signed.pk]), {"version": str(signed.version), "reason": "Cambio"}
    )
    assert autosave.status_code == 409 and "firmada" in autosave.json()["error"]
    assert note_content(ClinicalNote.objects.get(pk=signed.pk))["reason"] == complete_content()["reason"]


def test_amendment_behind_reauthentication(world, login_as):
    signed = signed_note(world)
    client = login_as(world.personas.practitioner)
    url = reverse("records:note_amend", args=[signed.pk])
    assert client.get(url)["Location"].startswith(reverse("accounts:reauth"))
    reauthenticated(client)
    bad = client.post(url, {"reason": "", "text": ""})
    assert bad.status_code == 400 and not NoteAmendment.objects.exists()
    done = client.post(url, {"reason": "Dosis mal transcrita", "text": "Paracetamol cada 8 horas, no cada 6."})
    assert done.status_code == 302
    page = client.get(reverse("records:note", args=[signed.pk])).content.decode()
    assert "Dosis mal transcrita" in page


def test_signed_pdf_download_has_no_patient_name_in_its_file_name(world, login_as):
    signed = signed_note(world)
    response = login_as(world.personas.practitioner).get(reverse("records:note_pdf", args=[signed.pk]))
    assert response.status_code == 200
    assert response.content.startswith(b"%PDF")
    disposition = response["Content-Disposition"]
    assert disposition.startswith("attachment;") and f"atencion-{signed.pk}-" in disposition
    assert "Quispe" not in disposition and "Rosa" not in disposition


def test_pdf_of_a_draft_is_a_404(world, login_as):
    assert (
        login_as(world.personas.practitioner).get(reverse("records:note_pdf", args=[world.note.pk])).status_code == 404
    )


# --- starting encounters --------------------------------------------------------------------------------


def test_unscheduled_contact_starts_an_encounter_and_opens_the_note(world, login_as):
    client = login_as(world.personas.practitioner)
    response = client.post(
        reverse("records:encounter_unscheduled", args=[world.patient.pk]),
        {"establishment": world.personas.establishment.pk, "service_type": "telemonitoreo", "modality": "audio"},
    )
    assert response.status_code == 302
    note = ClinicalNote.objects.exclude(pk=world.note.pk).get()
    assert response["Location"] == reverse("records:note", args=[note.pk])
    assert note.encounter.appointment_ref == "" and note.encounter.service_type == "telemonitoreo"
    bad = client.post(
        reverse("records:encounter_unscheduled", args=[world.patient.pk]),
        {"establishment": world.personas.other_establishment.pk, "service_type": "teleconsulta", "modality": "audio"},
    )
    assert bad.status_code == 400 and Encounter.objects.count() == 2
    garbage = client.post(
        reverse("records:encounter_unscheduled", args=[world.patient.pk]),
        {"establishment": "abc", "service_type": "nada", "modality": "audio"},
    )
    assert garbage.status_code == 400 and "establecimiento" in garbage.content.decode()
    assert Encounter.objects.count() == 2


def test_template_fills_only_the_empty_sections(world, login_as):
    template = template_create(
        specialty="Medicina general",
        name="Infección respiratoria",
        content={"reason": "Plantilla: motivo", "plan": "Plantilla: control en 72 horas"},
        by=world.personas.admin,
    )
    client = login_as(world.personas.practitioner)
    client.post(reverse("records:note_autosave", args=[world.note.pk]), {"version": "1", "reason": "Tos y fiebre"})
    page = client.get(reverse("records:note", args=[world.note.pk])).content.decode()
    assert "Infección respiratoria" in page
    url = reverse("records:note_apply_template", args=[world.note.pk])
    assert client.post(url, {"version": "1", "template": template.pk}).status_code == 400  # stale version
    assert client.post(url, {"version": "2", "template": template.pk}).status_code == 302
    saved = note_content(ClinicalNote.objects.get(pk=world.note.pk))
    assert saved["reason"] == "Tos y fiebre" and saved["plan"] == "Plantilla: control en 72 horas"
