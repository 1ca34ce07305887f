"""My visits, a signed note in plain words with its amendments, my prescriptions and the signed PDF of a visit:
only the patient's own signed notes, every read audited, everybody else a 404."""

from __future__ import annotations

import io

import pytest
from cryptography import x509
from django.urls import reverse
from pyhanko.keys.internal import translate_pyca_cryptography_cert_to_asn1
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from audit.models import AuditEvent
from records.encounters import encounter_finish
from records.models import SigningAuthority
from records.notes import note_create, note_save_draft
from records.signing import amendment_add, note_sign
from tests.factories import UserFactory
from tests.frontend.conftest import register
from tests.records.encounter_support import complete_content, registered_patient, started_encounter, verified

pytestmark = pytest.mark.django_db

VISITS = reverse("mine:visits")
PRESCRIPTIONS = reverse("mine:prescriptions")


def _note(personas, patient, *, ref="appointment-1", sign=True, content=None):
    practitioner = verified(personas.practitioner)
    encounter = started_encounter(personas, patient, ref=ref)
    encounter_finish(encounter=encounter, by=practitioner)
    note = note_create(encounter=encounter, author=practitioner)
    note = note_save_draft(
        note=note, content=content or complete_content(), by=practitioner, expected_version=note.version
    )
    return note_sign(note=note, signer=practitioner, reauthenticated=True) if sign else note


@pytest.fixture
def patient(personas):
    return registered_patient(personas)


@pytest.fixture
def signed(personas, patient):
    return _note(personas, patient)


def test_my_visits_lists_finished_visits_with_the_professional_and_is_audited(
    personas, patient, signed, login_as, django_assert_max_num_queries
):
    second = complete_content()
    second["reason"] = "Control"
    _note(personas, patient, ref="appointment-2", content=second)
    started_encounter(personas, patient, ref="appointment-3")  # still in progress: not a visit yet
    client = login_as(personas.patient)

    # Session, user, patient, gate (+ audit), encounters, participants, notes: the same for any number of visits.
    with django_assert_max_num_queries(12):
        response = client.get(VISITS)

    assert response.status_code == 200
    visits = response.context["visits"]
    assert len(visits) == 2
    profile = personas.practitioner.practitioner_profile
    body = response.content.decode()
    assert f"{profile.registry_body} {profile.registry_number}" in body
    assert "Teleconsulta" in body and "Video" in body
    assert reverse("mine:visit_note", args=[signed.pk]) in body
    assert "America/Lima" in body
    event = AuditEvent.objects.filter(action="records.chart.viewed").latest("occurred_at")
    assert event.actor_user_id == personas.patient.pk and event.purpose == "patient_request"


def test_a_visit_whose_note_is_not_signed_shows_no_note(personas, patient, login_as):
    draft = _note(personas, patient, sign=False)
    client = login_as(personas.patient)

    body = client.get(VISITS).content.decode()

    assert "todavía no está firmada" in body
    assert reverse("mine:visit_note", args=[draft.pk]) not in body
    assert client.get(reverse("mine:visit_note", args=[draft.pk])).status_code == 404
    assert client.get(reverse("mine:visit_note_pdf", args=[draft.pk])).status_code == 404


def test_the_signed_note_reads_in_plain_words_with_amendments_after_it(personas, patient, signed, login_as):
    amendment_add(
        note=signed,
        author=verified(personas.practitioner),
        reason="Corrección de la cantidad",
        text="Son 10 tabletas.",
        reauthenticated=True,
    )
    client = login_as(personas.patient)

    response = client.get(reverse("mine:visit_note", args=[signed.pk]))

    assert response.status_code == 200
    body = response.content.decode()
    for label in ("Motivo de la consulta", "Lo que usted contó", "Examen", "Diagnósticos", "Receta", "Próxima cita"):
        assert label in body
    assert "Dolor de garganta y fiebre desde hace tres días." in body
    assert "J02.9" in body and "Presuntivo" in body
    assert "Paracetamol 500 mg" in body and "Tomar después de las comidas." in body
    assert "Signos vitales tomados por usted en casa." in body
    assert body.index("Paracetamol 500 mg") < body.index("Corrección de la cantidad")
    assert "Son 10 tabletas." in body
    assert '"reason"' not in body and "anamnesis" not in body  # no raw keys
    event = AuditEvent.objects.get(action="records.note.viewed", actor_user_id=personas.patient.pk)
    assert (event.object_type, event.object_id, event.purpose) == ("note", str(signed.pk), "patient_request")


def test_the_note_reads_in_english_too(personas, patient, signed, login_as):
    client = login_as(personas.patient)

    body = client.get(reverse("mine:visit_note", args=[signed.pk]), HTTP_ACCEPT_LANGUAGE="en").content.decode()

    for label in ("Reason for the visit", "What you told us", "Diagnoses", "Prescription", "Download PDF"):
        assert label in body
    assert "Presumptive" in body


def test_my_prescriptions_newest_first_with_instructions(personas, patient, signed, login_as):
    newer = complete_content()
    newer["prescriptions"][0].update(id="", drug="Ibuprofeno", concentration="400 mg", instructions="Con alimentos.")
    _note(personas, patient, ref="appointment-2", content=newer)
    no_prescription = complete_content()
    no_prescription["prescriptions"] = []
    _note(personas, patient, ref="appointment-3", content=no_prescription)
    client = login_as(personas.patient)

    response = client.get(PRESCRIPTIONS)

    assert response.status_code == 200
    body = response.content.decode()
    assert body.index("Ibuprofeno 400 mg") < body.index("Paracetamol 500 mg")
    assert "Con alimentos." in body and "Tomar después de las comidas." in body
    assert len(response.context["rows"]) == 2
    event = AuditEvent.objects.get(action="records.note.viewed", actor_user_id=personas.patient.pk)
    assert event.details["page"] == "prescriptions" and len(event.details["notes"]) == 3
    assert "Paracetamol" not in str(event.details)


def test_the_pdf_downloads_as_a_signed_attachment_without_the_name(personas, patient, signed, login_as):
    client = login_as(personas.patient)

    response = client.get(reverse("mine:visit_note_pdf", args=[signed.pk]))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    disposition = response["Content-Disposition"]
    assert disposition.startswith('attachment; filename="atencion-') and disposition.endswith('.pdf"')
    assert "Rosa" not in disposition and "Quispe" not in disposition and "10117410" not in disposition
    assert "no-store" in response["Cache-Control"]
    (signature,) = PdfFileReader(io.BytesIO(response.content)).embedded_signatures
    authority = translate_pyca_cryptography_cert_to_asn1(
        x509.load_pem_x509_certificate(SigningAuthority.objects.get().certificate_pem.encode("ascii"))
    )
    status = validate_pdf_signature(signature, ValidationContext(trust_roots=[authority], allow_fetching=False))
    assert status.bottom_line and status.trusted
    event = AuditEvent.objects.get(action="records.note.pdf_downloaded")
    assert event.actor_user_id == personas.patient.pk and event.object_id == str(signed.pk)


@pytest.mark.parametrize("persona", ["practitioner", "coordinator", "admin", "auditor", "outsider"])
def test_staff_get_404_on_every_page(personas, signed, login_as, persona):
    client = login_as(getattr(personas, persona))

    for url in (
        VISITS,
        PRESCRIPTIONS,
        reverse("mine:visit_note", args=[signed.pk]),
        reverse("mine:visit_note_pdf", args=[signed.pk]),
    ):
        assert client.get(url).status_code == 404, url
    assert not AuditEvent.objects.filter(action="records.note.pdf_downloaded").exists()


def test_another_patient_sees_none_of_it(personas, signed, login_as):
    other_user = UserFactory(email="otra@example.test", role="patient")
    register(personas, given="Ana", surname="Mamani", dni="40000006", user=other_user)
    client = login_as(other_user)

    assert client.get(VISITS).context["visits"] == []
    assert client.get(PRESCRIPTIONS).context["rows"] == []
    assert client.get(reverse("mine:visit_note", args=[signed.pk])).status_code == 404
    assert client.get(reverse("mine:visit_note_pdf", args=[signed.pk])).status_code == 404
    assert AuditEvent.objects.filter(action="records.chart.denied", actor_user_id=other_user.pk).count() == 2
    assert not AuditEvent.objects.filter(action="records.note.pdf_downloaded").exists()


def test_a_login_without_a_patient_record_gets_404(personas, login_as):
    client = login_as(personas.patient)  # no record linked

    assert client.get(VISITS).status_code == 404
    assert client.get(PRESCRIPTIONS).status_code == 404


def test_anonymous_visitors_are_sent_to_sign_in(client, signed):
    response = client.get(reverse("mine:visit_note", args=[signed.pk]))

    assert response.status_code == 302 and "/accounts/" in response["Location"]


def test_an_absurd_note_id_is_a_404(personas, patient, login_as):
    client = login_as(personas.patient)

    assert client.get("/mine/visits/notes/999999999999999999/").status_code == 404
    assert client.get("/mine/visits/notes/9999999999999999999/").status_code == 404


@pytest.mark.parametrize("url", [VISITS, PRESCRIPTIONS])
def test_the_lists_take_the_same_number_of_queries_for_more_visits(personas, patient, signed, login_as, url):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = login_as(personas.patient)
    client.get(url)  # the session's first request loads what later ones find cached
    with CaptureQueriesContext(connection) as one:
        assert client.get(url).status_code == 200
    for number in range(2, 5):
        _note(personas, patient, ref=f"appointment-{number}")
    with CaptureQueriesContext(connection) as four:
        response = client.get(url)

    assert len(response.context["visits" if url == VISITS else "rows"]) == 4
    assert len(four.captured_queries) == len(one.captured_queries)
