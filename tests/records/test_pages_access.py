"""SEC-1 on the staff pages of records: every page × every persona, allowed or denied exactly as the policy
says; denied looks the same as missing (404); reads are audited."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from tests.records.pages_support import MISSING_ID, PERSONAS, build_world


@pytest.fixture
def world(personas):
    return build_world(personas)


STAFF_SEARCH = {"treating", "unrelated", "coordinator"}

# (page, URL builder taking (world, id) — id None for pages without one, allowed personas)
PAGES = [
    ("register", lambda w, _id: reverse("records:patient_register"), STAFF_SEARCH, False),
    ("search", lambda w, _id: reverse("records:patient_search"), STAFF_SEARCH, False),
    (
        "profile",
        lambda w, i: reverse("records:patient_profile", args=[i or w.patient.pk]),
        {"treating", "coordinator"},
        True,
    ),
    ("chart", lambda w, i: reverse("records:patient_chart", args=[i or w.patient.pk]), {"treating"}, True),
    (
        "verbal_consent",
        lambda w, i: reverse("records:verbal_consent", args=[i or w.patient.pk, "telemedicine"]),
        {"treating"},
        True,
    ),
    # Registered summary: only for the practitioner who just registered that patient (in their session).
    ("registered", lambda w, i: reverse("records:patient_registered", args=[i or w.patient.pk]), set(), True),
    ("consent_documents", lambda w, _id: reverse("records:consent_documents"), {"admin"}, False),
    ("consent_new", lambda w, _id: reverse("records:consent_document_new"), {"admin"}, False),
    ("consent_kind", lambda w, _id: reverse("records:consent_kind", args=["telemedicine"]), {"admin"}, False),
    (
        "consent_document",
        lambda w, i: reverse("records:consent_document", args=[i or w.consent_document_id]),
        {"admin"},
        True,
    ),
    ("rights_queue", lambda w, _id: reverse("records:rights_queue"), {"admin", "coordinator"}, False),
    (
        "rights_request",
        lambda w, i: reverse("records:rights_request", args=[i or w.rights_request.pk]),
        {"admin", "coordinator"},
        True,
    ),
    (
        "rights_rectify",
        lambda w, i: reverse("records:rights_request_rectify", args=[i or w.rights_request.pk]),
        {"admin"},
        True,
    ),
    ("legal_holds", lambda w, i: reverse("records:legal_holds", args=[i or w.patient.pk]), {"admin"}, True),
]


def client_for(world, persona, login_as):
    user = world.user(persona)
    return Client() if user is None else login_as(user)


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize(("page", "url", "allowed", "has_id"), PAGES, ids=[p[0] for p in PAGES])
def test_page_by_persona(world, login_as, persona, page, url, allowed, has_id):
    client = client_for(world, persona, login_as)
    response = client.get(url(world, None))
    if persona == "anonymous":
        assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:login"))
        return
    if persona in allowed:
        assert response.status_code == 200, response.status_code
    else:
        assert response.status_code == 404
        assert [t.name for t in response.templates][:1] == ["404.html"]
        # Nothing about the patient leaks into the refusal.
        assert "Quispe" not in response.content.decode()
    if has_id:
        missing = client.get(url(world, MISSING_ID))
        assert missing.status_code == 404
        if persona not in allowed:
            # Denied and missing: the same status and the same page.
            assert [t.name for t in missing.templates] == [t.name for t in response.templates]


def test_emergency_access_form_for_practitioners_only(world, login_as):
    for persona, expected in [
        ("unrelated", 200),
        ("treating", 302),  # already in care: straight to the chart
        ("coordinator", 404),
        ("admin", 404),
        ("auditor", 404),
        ("patient_self", 404),
        ("other_patient", 404),
    ]:
        client = client_for(world, persona, login_as)
        url = reverse("records:emergency_access", args=[world.patient.pk])
        assert client.get(url).status_code == expected, persona
        if expected == 200:
            # The form looks the same whether or not the id exists: it reveals nothing.
            assert client.get(reverse("records:emergency_access", args=[MISSING_ID])).status_code == 200
        client.logout()


@pytest.mark.parametrize(
    ("persona", "page", "action", "about_patient"),
    [
        ("coordinator", "profile", "records.patient.viewed", True),
        ("treating", "profile", "records.patient.viewed", True),
        ("treating", "chart", "records.chart.viewed", True),
        ("admin", "rights_request", "records.rights_request.viewed", True),
        ("coordinator", "rights_queue", "records.rights_queue.viewed", False),
        ("admin", "legal_holds", "records.patient.viewed", True),
    ],
)
def test_reads_are_audited(world, login_as, persona, page, action, about_patient):
    url = next(p[1] for p in PAGES if p[0] == page)
    before = AuditEvent.objects.filter(action=action).count()
    assert client_for(world, persona, login_as).get(url(world, None)).status_code == 200
    event = AuditEvent.objects.filter(action=action).latest("id")
    assert AuditEvent.objects.filter(action=action).count() == before + 1
    assert event.actor_user_id == world.user(persona).pk
    assert event.patient_id == (world.patient.pk if about_patient else None)


def test_unrelated_practitioner_chart_refusal_is_audited(world, login_as):
    client = client_for(world, "unrelated", login_as)
    assert client.get(reverse("records:patient_chart", args=[world.patient.pk])).status_code == 404
    assert AuditEvent.objects.filter(
        action="records.chart.denied", patient_id=world.patient.pk, actor_user_id=world.personas.outsider.pk
    ).exists()


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("possible_duplicate_resolve", lambda w: [w.patient.pk, 1]),
        ("rights_request_extend", lambda w: [w.rights_request.pk]),
        ("rights_request_resolve", lambda w: [w.rights_request.pk]),
        ("legal_hold_release", lambda w: [w.patient.pk, 1]),
    ],
)
@pytest.mark.parametrize("persona", ["unrelated", "auditor", "patient_self", "other_patient"])
def test_outsiders_cannot_post_changes(world, login_as, persona, name, args):
    client = client_for(world, persona, login_as)
    assert client.post(reverse(f"records:{name}", args=args(world)), {"reason": "x" * 20}).status_code in (404, 405)


def test_coordinator_reads_but_does_not_act_on_requests(world, login_as):
    client = client_for(world, "coordinator", login_as)
    page = client.get(reverse("records:rights_request", args=[world.rights_request.pk])).content.decode()
    assert "Guardar respuesta" not in page and "Prorrogar" not in page
    response = client.post(
        reverse("records:rights_request_extend", args=[world.rights_request.pk]), {"reason": "Necesitamos más tiempo"}
    )
    assert response.status_code == 404
