"""Consent through the patient's pages: grant, revoke, re-grant, the two visit consents at once, a changed text,
drawn signatures, minors, CSRF and bad input (CON-1..3)."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from records.consent import MAX_SIGNATURE_BYTES, consent_states, may_start_visit
from records.models import ConsentDecision, ConsentKind
from tests.frontend.conftest import publish, register

pytestmark = pytest.mark.django_db

PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
CAPTURE = reverse("mine:consent", args=["telemedicine"])
REVOKE = reverse("mine:consent_revoke", args=["telemedicine"])
VISIT = reverse("mine:visit_consents")
ANDROID = "Mozilla/5.0 (Linux; Android 13; SM-A145M) AppleWebKit/537.36 Chrome/120 Mobile Safari/537.36"


def _shown(response) -> dict:
    form = response.context["form"]
    return {"version": form["version"].value(), "shown_sha256": form["shown_sha256"].value()}


def _grant(client, url=CAPTURE, **extra):
    shown = _shown(client.get(url))
    data = {**shown, "accept": "on", "method": "typed_name", "typed_name": "Rosa Quispe", **extra}
    return client.post(url, data, HTTP_USER_AGENT=ANDROID, REMOTE_ADDR="190.12.0.1")


def _actions(patient):
    return list(
        AuditEvent.objects.filter(patient_id=patient.pk, action__startswith="records.consent.")
        .values_list("action", flat=True)
        .order_by("id")
    )


def test_list_shows_each_kind_in_plain_words(personas, patient, documents, login_as, django_assert_max_num_queries):
    client = login_as(personas.patient)
    with django_assert_max_num_queries(8):
        response = client.get(reverse("mine:consents"))
    rows = {row.kind: row for row in response.context["rows"]}
    assert set(rows) == set(ConsentKind.values)
    assert rows["telemedicine"].state_words == "No otorgado" and rows["telemedicine"].available
    assert not rows["sharing"].available
    assert not response.context["visit_ready"]
    assert "Dar mis consentimientos para la teleconsulta" in response.content.decode()


def test_grant_revoke_regrant_through_the_pages(personas, patient, documents, login_as):
    client = login_as(personas.patient)
    page = client.get(CAPTURE)
    assert "Acepto ser atendido por telemedicina." in page.content.decode()
    assert page["Cache-Control"].startswith("max-age=0") or "no-cache" in page["Cache-Control"]

    response = _grant(client)
    assert response.status_code == 302 and response["Location"] == reverse("mine:consents")
    grant = ConsentDecision.objects.get(patient=patient)
    assert grant.decision == "grant" and grant.method == "typed_name" and grant.typed_name == "Rosa Quispe"
    assert grant.source_address == "190.12.0.1" and grant.user_agent == ANDROID
    assert grant.recorded_by == personas.patient
    assert grant.text_sha256 == documents[ConsentKind.TELEMEDICINE][0].text_sha256
    assert consent_states(patient.pk, ("telemedicine",))["telemedicine"].valid

    confirm = client.get(REVOKE)
    assert confirm.status_code == 200 and "Sí, revocar" in confirm.content.decode()
    assert ConsentDecision.objects.filter(patient=patient).count() == 1  # the confirmation step records nothing
    revoked = client.post(REVOKE, {"typed_name": "Rosa Quispe"}, REMOTE_ADDR="190.12.0.1")
    assert revoked.status_code == 302
    assert consent_states(patient.pk, ("telemedicine",))["telemedicine"].reason == "revoked"
    listed = client.get(reverse("mine:consents"))
    assert {r.kind: r for r in listed.context["rows"]}["telemedicine"].state_words == "Revocado"

    assert _grant(client).status_code == 302
    decisions = list(ConsentDecision.objects.filter(patient=patient).order_by("id").values_list("decision", flat=True))
    assert decisions == ["grant", "revoke", "grant"]  # the first grant is still there, unchanged
    assert _actions(patient) == ["records.consent.granted", "records.consent.revoked", "records.consent.granted"]
    event = AuditEvent.objects.filter(action="records.consent.revoked").get()
    assert event.actor_user_id == personas.patient.pk and event.purpose == "patient_request"


def test_revoke_needs_a_grant_and_a_typed_name(personas, patient, documents, login_as):
    client = login_as(personas.patient)
    nothing = client.post(REVOKE, {"typed_name": "Rosa Quispe"})
    assert nothing.status_code == 302 and not ConsentDecision.objects.exists()
    _grant(client)
    empty = client.post(REVOKE, {"typed_name": ""})
    assert empty.status_code == 400 and empty.context["form"].errors["typed_name"]
    short = client.post(REVOKE, {"typed_name": "Ro"})
    assert short.status_code == 400 and "Escriba su nombre completo" in short.content.decode()
    assert ConsentDecision.objects.filter(decision="revoke").count() == 0


def test_both_visit_consents_at_once_then_on_to_the_lobby(personas, patient, documents, login_as):
    client = login_as(personas.patient)
    page = client.get(VISIT, {"next": "/visits/lobby/"})
    form = page.context["form"]
    data = {name: form[name].value() for name in form.fields if name.endswith(("_version", "_sha256"))}
    data.update(accept_telemedicine="on", accept_data_processing="on", typed_name="Rosa Quispe")
    data["next"] = "/visits/lobby/"
    response = client.post(VISIT, data)
    assert response.status_code == 302 and response["Location"] == "/visits/lobby/"
    assert may_start_visit(patient.pk).allowed
    assert _actions(patient) == ["records.consent.granted", "records.consent.granted"]
    # Already given: the screen steps aside and sends the patient straight on.
    again = client.get(VISIT, {"next": "/visits/lobby/"})
    assert again.status_code == 302 and again["Location"] == "/visits/lobby/"


def test_visit_consents_never_redirect_off_site(personas, patient, documents, login_as):
    client = login_as(personas.patient)
    page = client.get(VISIT, {"next": "https://evil.example/"})
    assert page.context["next"] == ""
    form = page.context["form"]
    data = {name: form[name].value() for name in form.fields if name.endswith(("_version", "_sha256"))}
    data.update(accept_telemedicine="on", accept_data_processing="on", typed_name="Rosa Quispe", next="//evil.example/")
    response = client.post(VISIT, data)
    assert response["Location"] == reverse("mine:consents")


def test_visit_consents_need_both_ticks(personas, patient, documents, login_as):
    client = login_as(personas.patient)
    form = client.get(VISIT).context["form"]
    data = {name: form[name].value() for name in form.fields if name.endswith(("_version", "_sha256"))}
    response = client.post(VISIT, {**data, "accept_telemedicine": "on", "typed_name": "Rosa Quispe"})
    assert response.status_code == 400 and "accept_data_processing" in response.context["form"].errors
    assert not ConsentDecision.objects.exists()


def test_outdated_version_is_refused_with_the_new_text(personas, patient, documents, login_as):
    client = login_as(personas.patient)
    shown = _shown(client.get(CAPTURE))
    publish(personas, ConsentKind.TELEMEDICINE, suffix="\n\nNueva cláusula sobre grabaciones.")
    response = client.post(CAPTURE, {**shown, "accept": "on", "method": "typed_name", "typed_name": "Rosa Quispe"})
    assert response.status_code == 409
    body = response.content.decode()
    assert "Nueva cláusula sobre grabaciones." in body and "cambió mientras lo leía" in body
    assert response.context["document"].version == 2
    assert _shown(response) == {"version": 2, "shown_sha256": response.context["document"].text_sha256}
    assert not ConsentDecision.objects.exists()
    # Accepting the new text works.
    assert _grant(client).status_code == 302
    assert ConsentDecision.objects.get().document.version == 2


def test_outdated_visit_text_records_neither_consent(personas, patient, documents, login_as):
    client = login_as(personas.patient)
    form = client.get(VISIT).context["form"]
    data = {name: form[name].value() for name in form.fields if name.endswith(("_version", "_sha256"))}
    publish(personas, ConsentKind.DATA_PROCESSING, suffix=" Versión revisada.")
    response = client.post(
        VISIT, {**data, "accept_telemedicine": "on", "accept_data_processing": "on", "typed_name": "Rosa Quispe"}
    )
    assert response.status_code == 409 and "Versión revisada." in response.content.decode()
    assert not ConsentDecision.objects.exists()


def test_a_tampered_digest_is_treated_as_a_changed_text(personas, patient, documents, login_as):
    client = login_as(personas.patient)
    shown = _shown(client.get(CAPTURE))
    response = client.post(
        CAPTURE,
        {**shown, "shown_sha256": "0" * 64, "accept": "on", "method": "typed_name", "typed_name": "Rosa Quispe"},
    )
    assert response.status_code == 409 and not ConsentDecision.objects.exists()


def test_english_text_when_asked_for(personas, patient, documents, login_as):
    client = login_as(personas.patient)
    response = client.get(CAPTURE, HTTP_ACCEPT_LANGUAGE="en")
    assert "I agree to be cared for by telemedicine." in response.content.decode()
    assert response.context["document"].language == "en"
    shown = _shown(response)
    granted = client.post(
        CAPTURE,
        {**shown, "accept": "on", "method": "typed_name", "typed_name": "Rosa Quispe"},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert granted.status_code == 302
    assert ConsentDecision.objects.get().document.language == "en"


def test_drawn_signature_is_stored(personas, patient, documents, login_as):
    client = login_as(personas.patient)
    shown = _shown(client.get(CAPTURE))
    data_url = "data:image/png;base64," + base64.b64encode(PNG_1PX).decode()
    response = client.post(CAPTURE, {**shown, "accept": "on", "method": "drawn_signature", "signature": data_url})
    assert response.status_code == 302
    decision = ConsentDecision.objects.get()
    assert decision.method == "drawn_signature" and decision.signature_png == data_url and decision.typed_name is None


@pytest.mark.parametrize(
    ("signature", "message"),
    [
        ("data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8\xff\xe0JFIF").decode(), "debe ser una imagen PNG"),
        ("data:image/png;base64," + base64.b64encode(b"GIF89a not a png").decode(), "debe ser una imagen PNG"),
        (
            "data:image/png;base64," + base64.b64encode(PNG_1PX + b"\0" * (MAX_SIGNATURE_BYTES + 10)).decode(),
            "demasiado grande",
        ),
        ("data:image/png;base64,@@@not-base64@@@", "dañada"),
        ("", "debe ser una imagen PNG"),
    ],
    ids=["jpeg", "not-png", "too-big", "corrupt", "missing"],
)
def test_bad_signatures_are_refused_with_the_service_message(
    signature, message, personas, patient, documents, login_as
):
    client = login_as(personas.patient)
    shown = _shown(client.get(CAPTURE))
    response = client.post(CAPTURE, {**shown, "accept": "on", "method": "drawn_signature", "signature": signature})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ConsentDecision.objects.exists()


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"accept": "on", "method": "typed_name", "typed_name": ""},
        {"accept": "on", "method": "typed_name", "typed_name": "x" * 5000},
        {"method": "typed_name", "typed_name": "Rosa Quispe"},
        {"accept": "on", "method": "verbal_witnessed", "typed_name": "Rosa Quispe"},
        {"accept": "on", "method": "typed_name", "typed_name": "Rosa", "version": "abc", "shown_sha256": "x"},
        {"accept": "on", "method": "typed_name", "typed_name": "Rosa", "version": "99999999"},
        {"accept": "on", "method": "typed_name", "typed_name": "Rosa Quispe", "version": "7"},
    ],
    ids=[
        "empty",
        "no-name",
        "long-name",
        "not-accepted",
        "verbal-by-patient",
        "bad-hidden",
        "huge-version",
        "unknown-version",
    ],
)
def test_bad_input_gives_form_errors_never_500(data, personas, patient, documents, login_as):
    client = login_as(personas.patient)
    shown = _shown(client.get(CAPTURE))
    response = client.post(CAPTURE, {**shown, **data})
    assert response.status_code in (400, 409)
    assert not ConsentDecision.objects.exists()


def test_a_minor_decides_through_a_representative(personas, documents, login_as):
    from accounts.models import Role
    from tests.factories import UserFactory

    user = UserFactory(email="menor@example.test", role=Role.PATIENT)
    minor = register(
        personas,
        given="Ana",
        surname="Huamán",
        dni="70112233",
        birth=dt.date.today().replace(year=dt.date.today().year - 12),
        user=user,
    )
    client = login_as(user)
    page = client.get(CAPTURE)
    assert "representante legal" in page.content.decode()
    shown = _shown(page)
    missing = client.post(CAPTURE, {**shown, "accept": "on", "method": "typed_name", "typed_name": "Carmen Huamán"})
    assert missing.status_code == 400 and "representative_name" in missing.context["form"].errors
    response = client.post(
        CAPTURE,
        {
            **shown,
            "accept": "on",
            "method": "typed_name",
            "typed_name": "Carmen Huamán",
            "representative_name": "Carmen Huamán",
            "representative_relationship": "mother",
        },
    )
    assert response.status_code == 302
    decision = ConsentDecision.objects.get(patient=minor)
    assert decision.by_representative and decision.representative_name == "Carmen Huamán"
    assert decision.representative_relationship == "mother"
    revoke = client.post(
        REVOKE,
        {
            "typed_name": "Carmen Huamán",
            "representative_name": "Carmen Huamán",
            "representative_relationship": "mother",
        },
    )
    assert revoke.status_code == 302
    assert ConsentDecision.objects.filter(patient=minor, decision="revoke", by_representative=True).exists()


@pytest.mark.parametrize(
    "url",
    [CAPTURE, REVOKE, VISIT, reverse("mine:rights")],
    ids=["capture", "revoke", "visit", "rights"],
)
def test_every_post_needs_the_csrf_token(url, personas, patient, documents):
    client = Client(enforce_csrf_checks=True)
    client.force_login(personas.patient)
    response = client.post(
        url, {"accept": "on", "typed_name": "Rosa Quispe", "kind": "access", "description": "Quiero una copia."}
    )
    assert response.status_code == 403
    assert not ConsentDecision.objects.exists()


def test_pages_in_english(personas, patient, documents, login_as):
    client = login_as(personas.patient)
    _grant(client)
    listed = client.get(reverse("mine:consents"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "My consents" in listed and "Care by telemedicine" in listed and "Withdraw" in listed
    assert "Give my consents for the video visit" in listed
    capture = client.get(reverse("mine:consent", args=["recording_video"]), HTTP_ACCEPT_LANGUAGE="en")
    assert (
        "I have read and accept" in capture.content.decode() and "By drawing my signature" in capture.content.decode()
    )
    rights = client.get(reverse("mine:rights"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Portability: get your data in a file" in rights
