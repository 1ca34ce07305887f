"""The API's OpenAPI schema: generated without warnings, served, and true to what the API really answers."""

from __future__ import annotations

import copy
import json
import uuid

import jsonschema
import pytest
from django.core.management import call_command
from django.test import Client
from drf_spectacular.generators import SchemaGenerator

from tests.scheduling.api_support import API, iso, make_clinic, move_to_past
from tests.scheduling.test_api import book, hold, post

pytestmark = pytest.mark.django_db


def test_schema_generates_without_warnings(tmp_path):
    # --fail-on-warn turns any warning about our views (an unresolvable field, a clashing enum) into an error.
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    text = target.read_text()
    for route in ("/api/v1/slots", "/api/v1/appointments/{public_id}/reschedule", "/api/v1/specialties"):
        assert route in text


def test_schema_is_served_as_json():
    response = Client().get("/api/schema/", headers={"accept": "application/vnd.oai.openapi+json"})
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["info"]["title"] == "Teleconsult API"
    create = schema["paths"]["/api/v1/appointments"]["post"]
    assert set(create["responses"]) == {"201", "400", "403", "409"}


def _json_schema(node):
    """OpenAPI 3.0's `nullable` as JSON Schema's null type, so jsonschema can check answers against it."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _json_schema(value) for key, value in node.items()}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


@pytest.fixture(scope="module")
def openapi():
    return SchemaGenerator().get_schema(request=None, public=True)


@pytest.fixture
def conforms(openapi):
    components = _json_schema(copy.deepcopy(openapi["components"]))

    def check(method, route, response):
        declared = openapi["paths"][route][method]["responses"]
        assert str(response.status_code) in declared, (route, response.status_code)
        schema = declared[str(response.status_code)]["content"]["application/json"]["schema"]
        root = {**_json_schema(copy.deepcopy(schema)), "components": components}
        jsonschema.validate(response.json(), root)

    return check


def test_answers_match_the_schema(personas, login_as, conforms):
    clinic = make_clinic(personas)
    coordinator = login_as(personas.coordinator)
    first, second, third = clinic.free_slots(count=3)
    booked = book(clinic, slot=first)
    cancelled = book(clinic, slot=second, patient=clinic.walk_in)
    post(coordinator, f"{API}/appointments/{cancelled.public_id}/cancel", {"reason": "duplicate"})

    conforms("get", "/api/v1/slots", coordinator.get(f"{API}/slots", {"specialty": "Medicina general"}))
    conforms("get", "/api/v1/slots", coordinator.get(f"{API}/slots", {"limit": "0"}))
    conforms("get", "/api/v1/visit-types", coordinator.get(f"{API}/visit-types"))
    conforms("get", "/api/v1/specialties", coordinator.get(f"{API}/specialties"))
    conforms("get", "/api/v1/appointments", coordinator.get(f"{API}/appointments"))
    conforms("get", "/api/v1/appointments/{public_id}", coordinator.get(f"{API}/appointments/{booked.public_id}"))
    conforms("get", "/api/v1/appointments/{public_id}", coordinator.get(f"{API}/appointments/{uuid.uuid4()}"))
    conforms(
        "post",
        "/api/v1/appointments",
        post(
            coordinator,
            f"{API}/appointments",
            {"visit_type": clinic.general.pk, "practitioner": personas.practitioner.pk, "start": iso(first.start)},
        ),
    )
    moved = post(coordinator, f"{API}/appointments/{booked.public_id}/reschedule", {"start": iso(third.start)})
    conforms("post", "/api/v1/appointments/{public_id}/reschedule", moved)
    conforms(
        "post",
        "/api/v1/appointments/{public_id}/cancel",
        post(coordinator, f"{API}/appointments/{cancelled.public_id}/cancel", {"reason": "other"}),
    )
    late = move_to_past(book(clinic, slot=second))
    conforms(
        "post",
        "/api/v1/appointments/{public_id}/no-show",
        post(coordinator, f"{API}/appointments/{late.public_id}/no-show"),
    )

    patient = login_as(personas.patient)
    held = hold(clinic)
    conforms(
        "post",
        "/api/v1/appointments/{public_id}/confirm",
        post(patient, f"{API}/appointments/{held.public_id}/confirm"),
    )
    conforms("post", "/api/v1/appointments", post(patient, f"{API}/appointments", {"start": iso(first.start)}))
    conforms("get", "/api/v1/appointments", patient.get(f"{API}/appointments"))
    conforms(
        "post",
        "/api/v1/appointments/{public_id}/no-show",
        post(patient, f"{API}/appointments/{held.public_id}/no-show"),
    )
    conforms("get", "/api/v1/appointments", Client().get(f"{API}/appointments"))
