"""The staff pages of records at work: registration with field errors and nothing partial saved, search by
POST with a fixed query count, profile actions, verbal consent, break-the-glass, consent publishing and the
data-protection queue. Bad input is a form error, never a 500."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from records.models import (
    ConsentDecision,
    ConsentDocument,
    ConsentKind,
    DataRightsRequest,
    LegalHold,
    Patient,
    PatientRevision,
    PossibleDuplicate,
    RightsKind,
)
from records.rights import rights_request_file
from records.services import DocumentInput, patient_register
from tests.records.pages_support import build_world, publish_all


@pytest.fixture
def world(personas):
    return build_world(personas)


REGISTER = reverse("records:patient_register")
SEARCH = reverse("records:patient_search")


def registration(**overrides):
    data = {
        "document_type": "dni",
        "document_number": "45451232",
        "issuing_country": "",
        "second_document_type": "",
        "second_document_number": "",
        "second_issuing_country": "",
        "given_names": "Juan Carlos",
        "paternal_surname": "Mamani",
        "maternal_surname": "Choque",
        "sex": "male",
        "birth_date": "1990-05-17",
        "phone": "+51 912 345 678",
        "email": "juan@example.test",
        "address": "Jr. Puno 123, Juliaca",
        "insurance": "sis",
        "insurance_number": "SIS-123",
        "emergency_contact_name": "Rosa Choque",
        "emergency_contact_phone": "+51 955 111 222",
        "history_number": "HC-0002",
    }
    data.update(overrides)
    return data


@pytest.fixture
def coordinator(world, login_as):
    client = login_as(world.personas.coordinator)
    return client


def _form_data(client, world, **overrides):
    data = registration(**overrides)
    data.setdefault("establishment", world.personas.establishment.pk)
    return data


def test_coordinator_registers_a_patient_and_lands_on_the_profile(world, coordinator):
    response = coordinator.post(REGISTER, _form_data(coordinator, world))
    patient = Patient.objects.get(search_name="MAMANI CHOQUE JUAN CARLOS")
    assert response.status_code == 302 and response["Location"] == reverse("records:patient_profile", args=[patient.pk])
    assert patient.insurance == "sis" and patient.emergency_contact_name == "Rosa Choque"
    assert patient.history_numbers.get().number == "HC-0002"
    event = AuditEvent.objects.get(action="records.patient.registered", patient_id=patient.pk)
    assert event.actor_user_id == world.personas.coordinator.pk
    profile = coordinator.get(response["Location"]).content.decode()
    assert "45451232" in profile and "HC-0002" in profile


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"document_number": "10117410-5"}, "document_number", "carácter de verificación del DNI no corresponde"),
        ({"document_number": "1234"}, "document_number", "El DNI tiene 8 dígitos"),
        ({"document_type": "licencia"}, "document_type", "Tipo de documento desconocido"),
        ({"birth_date": "2999-01-01"}, "birth_date", "no puede estar en el futuro"),
        ({"birth_date": "17/13/1990"}, "birth_date", "fecha válida"),
        ({"birth_date": "9" * 5000}, "birth_date", "fecha válida"),
        ({"document_type": "passport", "document_number": "AB12345"}, "issuing_country", "país emisor"),
        ({"given_names": "x" * 5000}, "given_names", "120 caracteres"),
        ({"email": "no-es-correo"}, "email", "correo"),
        ({"second_document_type": "dni", "second_document_number": "10117410"}, "second_document_type", "una sola vez"),
        ({"establishment": "999999"}, "establishment", "válida"),
        ({"establishment": "abc"}, "establishment", "válida"),
    ],
)
def test_registration_field_errors(world, coordinator, overrides, field, message):
    before = Patient.objects.count()
    data = _form_data(coordinator, world)
    data.update(overrides)
    response = coordinator.post(REGISTER, data)
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert field in errors, errors
    assert message.lower() in " ".join(errors[field]).lower(), errors[field]
    assert Patient.objects.count() == before


def test_duplicate_identifier_and_taken_history_number_save_nothing(world, coordinator):
    before = (Patient.objects.count(), AuditEvent.objects.filter(action="records.patient.registered").count())
    response = coordinator.post(REGISTER, _form_data(coordinator, world, document_number="10117410-G"))
    assert response.status_code == 400
    assert "Ya existe un paciente registrado" in " ".join(response.context["form"].errors["document_number"])
    response = coordinator.post(REGISTER, _form_data(coordinator, world, history_number="HC-0001"))
    assert response.status_code == 400
    assert "historia clínica ya está asignado" in " ".join(response.context["form"].errors["history_number"])
    after = (Patient.objects.count(), AuditEvent.objects.filter(action="records.patient.registered").count())
    assert after == before


def test_second_document_duplicate_lands_on_its_field(world, coordinator):
    data = _form_data(
        coordinator,
        world,
        document_type="ce",
        document_number="CE123456",
        second_document_type="dni",
        second_document_number="10117410",
    )
    response = coordinator.post(REGISTER, data)
    assert response.status_code == 400 and "second_document_number" in response.context["form"].errors


def test_possible_duplicate_is_flagged_shown_and_resolved_without_merging(world, coordinator):
    twin = _form_data(
        coordinator,
        world,
        document_type="ce",
        document_number="X1234567",
        given_names="Rosa",
        paternal_surname="Quispe",
        maternal_surname="Huamán",
        sex="female",
        birth_date="1984-03-09",
        history_number="",
    )
    response = coordinator.post(REGISTER, twin)
    new_id = int(response["Location"].rstrip("/").rsplit("/", 1)[1])
    flag = PossibleDuplicate.objects.get()
    profile = coordinator.get(response["Location"]).content.decode()
    assert "Posibles duplicados" in profile and f"Paciente n.º {world.patient.pk}" in profile
    url = reverse("records:possible_duplicate_resolve", args=[new_id, flag.pk])
    assert coordinator.post(url, {"status": "merge"}).status_code == 400
    assert coordinator.post(url, {"status": "same_person"}).status_code == 302
    flag.refresh_from_db()
    assert flag.status == "same_person" and flag.resolved_by == world.personas.coordinator
    assert Patient.objects.filter(pk__in=[new_id, world.patient.pk]).count() == 2  # never merged
    assert AuditEvent.objects.filter(action="records.duplicate.resolved", object_id=str(flag.pk)).exists()
    # A flag of another patient cannot be resolved through this patient's URL.
    other = patient_register(
        registered_by=world.personas.coordinator,
        establishment=world.personas.establishment,
        given_names="Luis",
        paternal_surname="Apaza",
        sex="male",
        birth_date=dt.date(1970, 1, 1),
        documents=[DocumentInput("dni", "41234567")],
    )
    bad = reverse("records:possible_duplicate_resolve", args=[other.pk, flag.pk])
    assert coordinator.post(bad, {"status": "distinct"}).status_code == 404


def test_practitioner_registration_shows_a_summary_without_opening_the_record(world, login_as):
    client = login_as(world.personas.outsider)
    data = registration(establishment=world.personas.other_establishment.pk, history_number="")
    response = client.post(REGISTER, data)
    patient = Patient.objects.get(search_name="MAMANI CHOQUE JUAN CARLOS")
    assert response["Location"] == reverse("records:patient_registered", args=[patient.pk])
    assert "quedó registrado" in client.get(response["Location"]).content.decode()
    # No care relationship: the profile stays closed.
    assert client.get(reverse("records:patient_profile", args=[patient.pk])).status_code == 404
    # The practitioner may only pick their own establishments.
    response = client.post(REGISTER, registration(establishment=world.personas.establishment.pk))
    assert response.status_code == 400 and "establishment" in response.context["form"].errors


def test_search_by_document_is_posted_and_audited(world, login_as):
    client = login_as(world.personas.practitioner)
    response = client.post(SEARCH, {"by": "document", "doc-document_type": "dni", "doc-number": "10117410-G"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "Quispe" in page and reverse("records:patient_chart", args=[world.patient.pk]) in page
    assert "10117410" not in page.split("<main", 1)[1].split("Resultados", 1)[1]  # the number is not echoed back
    event = AuditEvent.objects.filter(action="records.patient.searched").latest("id")
    assert event.patient_id == world.patient.pk and event.details["by"] == "document"
    assert "10117410" not in json.dumps(event.details)
    # The unrelated practitioner finds the patient too, but is offered emergency access, not the chart.
    outsider = login_as(world.personas.outsider)
    page = outsider.post(SEARCH, {"by": "document", "doc-document_type": "dni", "doc-number": "10117410"})
    assert reverse("records:emergency_access", args=[world.patient.pk]) in page.content.decode()


@pytest.mark.parametrize(
    "data",
    [
        {"by": "document", "doc-document_type": "dni", "doc-number": "123"},
        {"by": "document", "doc-document_type": "rut", "doc-number": "10117410"},
        {"by": "document", "doc-document_type": "dni", "doc-number": "1" * 10_000},
        {"by": "name", "name-name": "a"},
        {"by": "name", "name-name": "Q" * 10_000},
        {"by": "other"},
        {},
    ],
)
def test_search_bad_input_is_a_form_error(world, coordinator, data):
    assert coordinator.post(SEARCH, data).status_code == 400


def test_name_search_query_count_does_not_grow_with_results(world, login_as, django_assert_num_queries):
    for index in range(6):
        patient_register(
            registered_by=world.personas.coordinator,
            establishment=world.personas.establishment,
            given_names=f"Ana {index}",
            paternal_surname="Quispe",
            sex="female",
            birth_date=dt.date(1990, 1, 1 + index),
            documents=[DocumentInput("ce", f"CE10000{index}")],
        )
    client = login_as(world.personas.practitioner)
    client.get(SEARCH)  # warm the session
    with CaptureQueriesContext(connection) as one:
        page = client.post(SEARCH, {"by": "name", "name-name": "quispe hua"})
    assert page.context["results"] and len(page.context["results"]) == 1
    # Session, user, second factor, results (one query with the care flag), audit event.
    with django_assert_num_queries(len(one.captured_queries)):
        page = client.post(SEARCH, {"by": "name", "name-name": "quispe"})
    assert len(page.context["results"]) == 7


def test_verbal_consent_with_a_witness_and_outdated_version(world, login_as):
    client = login_as(world.personas.practitioner)
    url = reverse("records:verbal_consent", args=[world.patient.pk, "telemedicine"])
    page = client.get(url)
    document = page.context["document"]
    assert document.language == "es-pe" and document.text in page.content.decode()
    data = {"decision": "grant", "witness_name": "", "document": document.pk, "shown_sha256": document.text_sha256}
    response = client.post(url, data)
    assert response.status_code == 400 and "witness_name" in response.context["form"].errors
    response = client.post(url, {**data, "witness_name": "Carmen Rojas Díaz"})
    assert response.status_code == 302
    decision = ConsentDecision.objects.get(patient=world.patient)
    assert decision.method == "verbal_witnessed" and decision.recorded_by == world.personas.practitioner
    assert decision.witness_name == "Carmen Rojas Díaz"
    assert AuditEvent.objects.filter(action="records.consent.granted", patient_id=world.patient.pk).exists()
    profile = client.get(reverse("records:patient_profile", args=[world.patient.pk])).content.decode()
    assert "Vigente" in profile
    # A new version is published meanwhile: the old form is refused and the new text shown.
    publish_all(world.personas.admin, version_note="v2")
    response = client.post(url, {**data, "witness_name": "Carmen Rojas Díaz"})
    assert response.status_code == 400
    assert "El texto del consentimiento cambió" in response.content.decode()
    assert "Texto en español v2." in response.content.decode()
    assert ConsentDecision.objects.count() == 1
    for bad in ({**data, "document": "x"}, {**data, "shown_sha256": "zz"}, {**data, "decision": "maybe"}):
        assert client.post(url, bad).status_code == 400
    assert client.get(reverse("records:verbal_consent", args=[world.patient.pk, "nonsense"])).status_code == 404


def test_break_the_glass_opens_the_chart_with_a_banner(world, login_as, django_capture_on_commit_callbacks):
    client = login_as(world.personas.outsider)
    chart = reverse("records:patient_chart", args=[world.patient.pk])
    url = reverse("records:emergency_access", args=[world.patient.pk])
    assert client.get(chart).status_code == 404
    response = client.post(url, {"reason": "corto"})
    assert response.status_code == 400 and "reason" in response.context["form"].errors
    assert client.post(url, {"reason": "x" * 5000}).status_code == 400
    assert (
        client.post(reverse("records:emergency_access", args=[987654]), {"reason": "Paciente inconsciente"}).status_code
        == 404
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"reason": "Paciente inconsciente llega a emergencia"})
    assert response.status_code == 302 and response["Location"] == chart
    page = client.get(chart).content.decode()
    assert "Acceso de emergencia" in page and "Quispe" in page
    assert AuditEvent.objects.filter(action="records.chart.break_glass", patient_id=world.patient.pk).exists()
    assert AuditEvent.objects.filter(action="records.chart.viewed", purpose="emergency").exists()
    # The treating practitioner sees no banner.
    treating = login_as(world.personas.practitioner).get(chart).content.decode()
    assert "emergency-banner" not in treating


def test_admin_publishes_a_consent_version_and_old_versions_stay_readable(world, login_as):
    client = login_as(world.personas.admin)
    old = ConsentDocument.objects.get(kind="telemedicine", language="es-pe")
    new = reverse("records:consent_document_new")
    base = {"kind": "telemedicine", "validity_days": "180", "title_es": "Telemedicina", "text_es": "Nuevo texto."}
    assert client.post(new, {**base, "text_es": ""}).status_code == 400
    assert client.post(new, {**base, "title_en": "Telemedicine"}).status_code == 400  # English title without text
    assert client.post(new, {**base, "validity_days": "-3"}).status_code == 400
    assert client.post(new, {**base, "kind": "nonsense"}).status_code == 400
    assert client.post(new, {**base, "text_es": "x" * 30_000}).status_code == 400
    response = client.post(new, {**base, "title_en": "Telemedicine", "text_en": "New text."})
    assert response["Location"] == reverse("records:consent_kind", args=["telemedicine"])
    current = ConsentDocument.objects.filter(kind="telemedicine").order_by("-version")
    assert sorted((d.version, d.language) for d in current[:2]) == [(2, "en"), (2, "es-pe")]
    assert AuditEvent.objects.filter(action="records.consent_document.published").count() == len(ConsentKind) + 1
    listing = client.get(reverse("records:consent_documents")).content.decode()
    assert "Nuevo texto" not in listing and "180" in listing
    old_page = client.get(reverse("records:consent_document", args=[old.pk]))
    assert old.text in old_page.content.decode() and "reemplazada" in old_page.content.decode()
    # Published versions are read-only: there is no way to post to them.
    assert client.post(reverse("records:consent_document", args=[old.pk]), {"text": "x"}).status_code == 405
    assert client.get(reverse("records:consent_kind", args=["nonsense"])).status_code == 404


def test_rights_queue_orders_by_due_date_and_marks_overdue(world, login_as, django_assert_num_queries):
    late = rights_request_file(
        patient=world.patient,
        kind=RightsKind.ACCESS,
        description="Quiero una copia de mi historia.",
        filed_by=world.personas.patient,
        now=timezone.now() - dt.timedelta(days=60),
    )
    client = login_as(world.personas.admin)
    url = reverse("records:rights_queue")
    client.get(url)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    rows = response.context["requests"]
    assert [r.pk for r in rows] == [late.pk, world.rights_request.pk]
    assert rows[0].overdue and not rows[1].overdue
    assert 'class="overdue"' in response.content.decode()
    for index in range(5):
        rights_request_file(
            patient=world.patient,
            kind=RightsKind.OPPOSITION,
            description=f"Oposición {index}",
            filed_by=world.personas.patient,
        )
    with django_assert_num_queries(len(queries.captured_queries)):
        assert len(client.get(url).context["requests"]) == 7


def test_extend_once_and_resolve_with_explanation(world, login_as):
    client = login_as(world.personas.admin)
    rid = world.rights_request.pk
    extend = reverse("records:rights_request_extend", args=[rid])
    resolve = reverse("records:rights_request_resolve", args=[rid])
    assert client.post(extend, {"reason": "corto"}).status_code == 400
    assert client.post(extend, {"reason": "Requiere revisar documentos en archivo"}).status_code == 302
    response = client.post(extend, {"reason": "Otra vez necesitamos más tiempo"})
    assert response.status_code == 400 and "ya fue prorrogada" in response.content.decode()
    request = DataRightsRequest.objects.get(pk=rid)
    assert request.extended_due_date > request.due_date
    assert client.post(resolve, {"status": "completed", "resolution": "ok"}).status_code == 400
    assert client.post(resolve, {"status": "merged", "resolution": "x" * 20}).status_code == 400
    assert client.post(resolve, {"status": "completed", "resolution": "x" * 6000}).status_code == 400
    ok = client.post(resolve, {"status": "completed", "resolution": "Se corrigieron sus datos personales."})
    assert ok.status_code == 302
    assert DataRightsRequest.objects.get(pk=rid).status == "completed"
    assert client.post(resolve, {"status": "rejected", "resolution": "Ya no corresponde hacerlo."}).status_code == 400


def test_granted_cancellation_blocks_the_record_and_says_so(world, login_as):
    request = rights_request_file(
        patient=world.patient,
        kind=RightsKind.CANCELLATION,
        description="Borren mis datos.",
        filed_by=world.personas.patient,
    )
    client = login_as(world.personas.admin)
    response = client.post(
        reverse("records:rights_request_resolve", args=[request.pk]),
        {"status": "completed", "resolution": "Su historia queda bloqueada mientras dure la retención legal."},
        follow=True,
    )
    assert "quedó bloqueado" in response.content.decode()
    world.patient.refresh_from_db()
    assert world.patient.blocked_at is not None
    assert AuditEvent.objects.filter(action="records.patient.blocked", patient_id=world.patient.pk).exists()


def test_rectification_keeps_the_old_values(world, login_as):
    client = login_as(world.personas.admin)
    url = reverse("records:rights_request_rectify", args=[world.rights_request.pk])
    form = client.get(url).context["form"]
    data = {name: ("" if value is None else value) for name, value in form.initial.items()}
    data["birth_date"] = "1984-03-09"
    assert client.post(url, {**data, "birth_date": "2999-01-01"}).status_code == 400
    assert client.post(url, {**data, "given_names": ""}).status_code == 400
    response = client.post(url, {**data, "maternal_surname": "Huaman", "phone": "+51 900 000 001"})
    assert response.status_code == 302
    world.patient.refresh_from_db()
    assert world.patient.maternal_surname == "Huaman" and world.patient.phone == "+51 900 000 001"
    assert world.patient.search_name == "QUISPE HUAMAN ROSA"
    revision = PatientRevision.objects.get(patient=world.patient)
    assert revision.changed_fields == ["maternal_surname", "phone"]
    assert json.loads(revision.previous_values) == {"maternal_surname": "Huamán", "phone": "+51 987 654 321"}
    with connection.cursor() as cursor:
        cursor.execute("SELECT previous_values FROM records_patientrevision WHERE id = %s", [revision.pk])
        raw = bytes(cursor.fetchone()[0])
    assert b"987" not in raw and "Huamán".encode() not in raw  # encrypted at rest
    event = AuditEvent.objects.get(action="records.patient.rectified")
    assert event.details["fields"] == ["maternal_surname", "phone"] and "987" not in json.dumps(event.details)
    # Unchanged resubmission: no new revision.
    data.update(maternal_surname="Huaman", phone="+51 900 000 001")
    client.post(url, data)
    assert PatientRevision.objects.count() == 1
    # Only rectification requests have this page.
    other = rights_request_file(
        patient=world.patient, kind=RightsKind.ACCESS, description="Copia", filed_by=world.personas.patient
    )
    assert client.get(reverse("records:rights_request_rectify", args=[other.pk])).status_code == 404


def test_legal_hold_place_and_release(world, login_as):
    client = login_as(world.personas.admin)
    url = reverse("records:legal_holds", args=[world.patient.pk])
    assert client.post(url, {"reason": "x"}).status_code == 400
    assert client.post(url, {"reason": "Proceso judicial 123-2026"}).status_code == 302
    hold = LegalHold.objects.get(patient=world.patient)
    assert "Proceso judicial" in client.get(url).content.decode()
    release = reverse("records:legal_hold_release", args=[world.patient.pk, hold.pk])
    assert client.post(release).status_code == 302
    assert client.post(release).status_code == 404  # already released
    hold.refresh_from_db()
    assert hold.released_by == world.personas.admin
    actions = set(AuditEvent.objects.filter(patient_id=world.patient.pk).values_list("action", flat=True))
    assert {"records.legal_hold.placed", "records.legal_hold.released"} <= actions


@pytest.mark.parametrize(
    "path",
    [
        "/records/patients/abc/",
        "/records/patients/99999999999999999999999/",
        "/records/patients/-1/chart/",
        "/records/rights/0x10/",
        "/records/consent-documents/99999999999999999999/",
    ],
)
def test_bad_ids_are_404_not_500(world, coordinator, path):
    assert coordinator.get(path).status_code == 404
