"""Legal representatives (PAT-2): the service validates the document and audits with ids only, the staff
profile lists them and adds one (same gate as the profile, denied looks like missing), and the patient-side
consent page of a minor is pre-filled from the current representative."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Role
from audit.models import AuditEvent
from records.models import DocumentType, LegalRepresentative, Sex
from records.services import DocumentInput, legal_representative_add, patient_register
from tests.factories import UserFactory
from tests.records.pages_support import MISSING_ID, build_world


@pytest.fixture
def world(personas):
    return build_world(personas)


def _add(world, **overrides):
    data = {
        "patient": world.patient,
        "name": "Carmen Huamán Quispe",
        "document_type": DocumentType.DNI,
        "document_number": "45451232-0",
        "relationship": "mother",
        "phone": "+51 944 333 222",
        "added_by": world.personas.coordinator,
    }
    data.update(overrides)
    return legal_representative_add(**data)


def _url(patient_id):
    return reverse("records:legal_representative_add", args=[patient_id])


def _form(**overrides):
    data = {
        "name": "Carmen Huamán Quispe",
        "relationship": "mother",
        "document_type": "dni",
        "document_number": "45451232",
        "phone": "+51 944 333 222",
    }
    data.update(overrides)
    return data


# --- service ---------------------------------------------------------------------------------------------


def test_service_adds_a_representative_and_audits_ids_only(world):
    representative = _add(world)
    representative.refresh_from_db()
    assert representative.name == "Carmen Huamán Quispe"
    assert representative.document_number == "45451232"  # check character validated, not stored
    assert representative.relationship == "mother"
    assert representative.valid_from == timezone.localdate() and representative.valid_until is None
    event = AuditEvent.objects.get(action="records.legal_representative.added")
    assert event.patient_id == world.patient.pk
    assert str(event.object_id) == str(representative.pk)
    assert event.actor_user_id == world.personas.coordinator.pk
    flat = str(event.details)
    assert "Carmen" not in flat and "45451232" not in flat and "944" not in flat


def test_service_refuses_a_wrong_dni_check_character(world):
    with pytest.raises(ValidationError) as error:
        _add(world, document_number="45451232-7")
    assert error.value.code == "dni_check"
    assert not LegalRepresentative.objects.exists()
    assert not AuditEvent.objects.filter(action="records.legal_representative.added").exists()


@pytest.mark.parametrize(
    ("overrides", "code"),
    [({"relationship": "neighbour"}, "relationship"), ({"name": "  "}, "name_required")],
)
def test_service_refuses_bad_relationship_or_name(world, overrides, code):
    with pytest.raises(ValidationError) as error:
        _add(world, **overrides)
    assert error.value.code == code


def test_no_plaintext_in_the_raw_row(world):
    representative = _add(world, relationship="curator")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, document_number, phone FROM records_legalrepresentative WHERE id = %s", [representative.pk]
        )
        row = cursor.fetchone()
    raw = b"".join(bytes(value) for value in row)
    for plaintext in ("Carmen", "Huamán", "45451232", "944 333"):
        assert plaintext.encode() not in raw


# --- staff profile page ----------------------------------------------------------------------------------


def test_coordinator_adds_one_and_sees_it_on_the_profile(world, login_as):
    client = login_as(world.personas.coordinator)
    profile = reverse("records:patient_profile", args=[world.patient.pk])
    assert "No hay representantes legales registrados." in client.get(profile).content.decode()
    response = client.post(_url(world.patient.pk), _form())
    assert response.status_code == 302 and response["Location"] == profile
    page = client.get(profile).content.decode()
    assert "Carmen Huamán Quispe" in page and "Madre" in page and "45451232" in page
    assert LegalRepresentative.objects.filter(patient=world.patient, created_by=world.personas.coordinator).count() == 1


def test_treating_practitioner_may_add_one(world, login_as):
    client = login_as(world.personas.practitioner)
    response = client.post(_url(world.patient.pk), _form(relationship="guardian"))
    assert response.status_code == 302
    assert LegalRepresentative.objects.get(patient=world.patient).relationship == "guardian"


@pytest.mark.parametrize("persona", ["unrelated", "auditor", "admin", "patient_self", "other_patient"])
def test_others_are_denied_like_missing(world, login_as, persona):
    client = login_as(world.user(persona))
    response = client.post(_url(world.patient.pk), _form())
    missing = client.post(_url(MISSING_ID), _form())
    assert response.status_code == 404 and missing.status_code == 404
    assert [t.name for t in response.templates] == [t.name for t in missing.templates]
    assert "Quispe" not in response.content.decode()
    assert not LegalRepresentative.objects.exists()


def test_anonymous_is_sent_to_sign_in(world):
    response = Client().post(_url(world.patient.pk), _form())
    assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:login"))
    assert not LegalRepresentative.objects.exists()


def test_get_is_not_allowed(world, login_as):
    client = login_as(world.personas.coordinator)
    assert client.get(_url(world.patient.pk)).status_code == 405


def test_csrf_is_required(world, login_as):
    client = login_as(world.personas.coordinator)
    client.handler.enforce_csrf_checks = True
    assert client.post(_url(world.patient.pk), _form()).status_code == 403
    assert not LegalRepresentative.objects.exists()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"document_number": "45451232-7"}, "document_number"),
        ({"document_number": "123"}, "document_number"),
        ({"document_number": ""}, "document_number"),
        ({"document_type": "licencia"}, "document_type"),
        ({"relationship": "vecino"}, "relationship"),
        ({"relationship": ""}, "relationship"),
        ({"name": ""}, "name"),
        ({"name": "x" * 5000}, "name"),
        ({"phone": "9" * 5000}, "phone"),
    ],
)
def test_bad_input_shows_form_errors_never_500(world, login_as, data, field):
    client = login_as(world.personas.coordinator)
    response = client.post(_url(world.patient.pk), _form(**data))
    assert response.status_code == 200
    assert field in response.context["representative_form"].errors
    assert not LegalRepresentative.objects.exists()


# --- patient side: consent page of a minor ---------------------------------------------------------------


@pytest.fixture
def minor(world):
    user = UserFactory(email="menor@example.test", role=Role.PATIENT)
    today = timezone.localdate()
    return patient_register(
        registered_by=world.personas.coordinator,
        establishment=world.personas.establishment,
        given_names="Ana",
        paternal_surname="Huamán",
        sex=Sex.FEMALE,
        birth_date=dt.date(today.year - 12, 1, 15),
        documents=[DocumentInput(DocumentType.DNI, "70112233")],
        user=user,
    )


CAPTURE = reverse("mine:consent", args=["telemedicine"])


def test_minor_consent_page_is_prefilled_from_the_current_representative(world, minor, login_as):
    _add(world, patient=minor, name="Carmen Huamán", relationship="mother")
    client = login_as(minor.user)
    form = client.get(CAPTURE).context["form"]
    assert form["representative_name"].value() == "Carmen Huamán"
    assert form["representative_relationship"].value() == "mother"
    visit = client.get(reverse("mine:visit_consents")).context["form"]
    assert visit["representative_name"].value() == "Carmen Huamán"


def test_expired_representative_is_not_used(world, minor, login_as):
    past = timezone.localdate() - dt.timedelta(days=30)
    rep = _add(world, patient=minor, name="Pedro Huamán", relationship="father")
    LegalRepresentative.objects.filter(pk=rep.pk).update(valid_from=past, valid_until=past + dt.timedelta(days=1))
    client = login_as(minor.user)
    form = client.get(CAPTURE).context["form"]
    assert not form["representative_name"].value()


def test_minor_without_representative_keeps_the_empty_fields(world, minor, login_as):
    client = login_as(minor.user)
    form = client.get(CAPTURE).context["form"]
    assert "representative_name" in form.fields and not form["representative_name"].value()


def test_adult_patient_page_has_no_representative_fields(world, login_as):
    _add(world)
    client = login_as(world.personas.patient)
    form = client.get(CAPTURE).context["form"]
    assert "representative_name" not in form.fields
