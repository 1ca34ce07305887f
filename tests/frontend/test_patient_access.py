"""Who may open the patient's own pages: the patient whose login is linked to a record, nobody else."""

from __future__ import annotations

import time

import pytest
from django.test import Client
from django.urls import reverse

from accounts.access import REAUTH_SESSION_KEY
from records.models import RightsKind
from records.rights import rights_request_file

pytestmark = pytest.mark.django_db

PAGES = [
    ("consents", reverse("mine:consents")),
    ("visit consents", reverse("mine:visit_consents")),
    ("consent capture", reverse("mine:consent", args=["telemedicine"])),
    ("revoke", reverse("mine:consent_revoke", args=["telemedicine"])),
    ("who opened my record", reverse("mine:access_log")),
    ("rights requests", reverse("mine:rights")),
    ("export json", reverse("mine:export", args=["json"])),
    ("export pdf", reverse("mine:export", args=["pdf"])),
]
STAFF = ["practitioner", "coordinator", "admin", "auditor", "outsider"]


def _reauthenticated(client: Client) -> Client:
    session = client.session
    session[REAUTH_SESSION_KEY] = time.time()
    session.save()
    return client


@pytest.mark.parametrize(("name", "url"), PAGES)
def test_the_patient_opens_each_page(name, url, personas, patient, documents, login_as):
    client = _reauthenticated(login_as(personas.patient))
    response = client.get(url)
    # Revoking with nothing granted sends the patient back to the list; everything else is shown.
    assert response.status_code == (302 if name == "revoke" else 200), name


@pytest.mark.parametrize(("name", "url"), PAGES)
@pytest.mark.parametrize("persona", STAFF)
def test_staff_are_denied_as_if_missing(name, url, persona, personas, patient, documents, login_as):
    client = _reauthenticated(login_as(getattr(personas, persona)))
    assert client.get(url).status_code == 404
    assert client.post(url, {}).status_code in (404, 405)


@pytest.mark.parametrize(("name", "url"), PAGES)
def test_a_patient_login_without_a_record_is_denied(name, url, unlinked_patient_user, patient, documents, login_as):
    client = _reauthenticated(login_as(unlinked_patient_user))
    assert client.get(url).status_code == 404
    assert client.post(url, {}).status_code in (404, 405)


@pytest.mark.parametrize(("name", "url"), PAGES)
def test_anonymous_goes_to_sign_in(name, url, patient, documents, client):
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:login"))
    assert client.post(url, {}).status_code in (302, 405)


def test_another_patient_sees_only_their_own_record(personas, patient, other_patient_user, documents, login_as):
    rights_request_file(
        patient=patient, kind=RightsKind.ACCESS, description="Quiero mi historia.", filed_by=personas.patient
    )
    client = _reauthenticated(login_as(other_patient_user))
    rights = client.get(reverse("mine:rights"))
    assert rights.status_code == 200 and rights.context["requests"] == []
    log = client.get(reverse("mine:access_log"))
    assert all(entry.who != "Usted" for entry in log.context["page"])  # the other record's events are not theirs
    assert len(log.context["page"].object_list) == 1  # only their own registration
    export = client.get(reverse("mine:export", args=["json"]))
    assert b"Quispe" not in export.content and b"Mamani" in export.content


def test_home_links_the_patient_pages_only_for_a_linked_patient(personas, patient, unlinked_patient_user, login_as):
    linked = login_as(personas.patient).get(reverse("frontend:home"))
    assert reverse("mine:consents").encode() in linked.content
    assert reverse("mine:access_log").encode() in linked.content
    assert reverse("mine:rights").encode() in linked.content
    unlinked = login_as(unlinked_patient_user).get(reverse("frontend:home"))
    assert reverse("mine:consents").encode() not in unlinked.content


def test_unknown_consent_kind_and_format_are_missing(personas, patient, documents, login_as):
    client = _reauthenticated(login_as(personas.patient))
    assert client.get(reverse("mine:consent", args=["not_a_kind"])).status_code == 404
    assert client.get(reverse("mine:export", args=["xml"])).status_code == 404
    # A kind without a published text yet has no capture page.
    assert client.get(reverse("mine:consent", args=["sharing"])).status_code == 404
