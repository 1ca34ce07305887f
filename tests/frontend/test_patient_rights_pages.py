"""Who opened my record (AUD-3), data-protection requests (SEC-4) and the download of one's own data."""

from __future__ import annotations

import json
import time
import zoneinfo

import pytest
from django.urls import reverse
from django.utils import formats, translation

from accounts.access import REAUTH_SESSION_KEY
from audit import services as audit
from audit.actions import AuditAction, Outcome, Purpose
from audit.models import AuditEvent
from records.models import DataRightsRequest, RightsStatus
from records.rights import rights_request_extend, rights_request_resolve
from tests.factories import DEMO_PASSWORD

pytestmark = pytest.mark.django_db

LOG = reverse("mine:access_log")
RIGHTS = reverse("mine:rights")
EXPORT_JSON = reverse("mine:export", args=["json"])
EXPORT_PDF = reverse("mine:export", args=["pdf"])
LIMA = zoneinfo.ZoneInfo("America/Lima")


def _chart_read(personas, patient, **extra):
    return audit.record(
        action=AuditAction.CHART_VIEWED,
        purpose=Purpose.TREATMENT,
        actor_user_id=personas.practitioner.pk,
        actor_role="practitioner",
        patient_id=patient.pk,
        object_type="patient",
        object_id=patient.pk,
        **extra,
    )


def test_who_opened_my_record_in_plain_words_newest_first(personas, patient, login_as, django_assert_max_num_queries):
    read = _chart_read(personas, patient)
    audit.record(
        action=AuditAction.CHART_ACCESS_DENIED,
        outcome=Outcome.DENIED,
        actor_user_id=personas.outsider.pk,
        actor_role="practitioner",
        patient_id=patient.pk,
    )
    client = login_as(personas.patient)
    # Session, user, patient, events, their authors (and the session save): the same for any number of events.
    with django_assert_max_num_queries(8):
        response = client.get(LOG)
    entries = list(response.context["page"])
    assert [e.what for e in entries] == [
        "intentó abrir su historia clínica y no se le permitió",
        "abrió su historia clínica",
        "lo registró como paciente",
    ]
    assert entries[1].who == personas.practitioner.full_name and entries[1].role == "Profesional de salud"
    assert entries[1].purpose == "atención de salud"
    body = response.content.decode()
    with translation.override("es-pe"):
        shown = formats.date_format(read.occurred_at.astimezone(LIMA), "DATETIME_FORMAT")
    assert shown in body  # Lima time, not UTC
    assert "No se le permitió el acceso." in body


def test_who_opened_my_record_is_paged(personas, patient, login_as):
    for _ in range(25):
        _chart_read(personas, patient)
    client = login_as(personas.patient)
    first = client.get(LOG)
    assert len(first.context["page"].object_list) == 20 and first.context["page"].has_next()
    second = client.get(LOG, {"page": "2"})
    assert len(second.context["page"].object_list) == 6  # 25 reads and the registration
    assert client.get(LOG, {"page": "not-a-number"}).status_code == 200
    assert client.get(LOG, {"page": "999"}).status_code == 200


def test_filing_a_request_shows_it_with_its_due_date(personas, patient, login_as):
    client = login_as(personas.patient)
    page = client.get(RIGHTS)
    body = page.content.decode()
    assert "Portabilidad: recibir sus datos en un archivo" in body and "Rectificación: corregir" in body
    response = client.post(RIGHTS, {"kind": "rectification", "description": "Mi segundo apellido es Mamani."})
    assert response.status_code == 302
    request = DataRightsRequest.objects.get(patient=patient)
    assert request.kind == "rectification" and request.filed_by == personas.patient
    assert AuditEvent.objects.filter(action="records.rights_request.filed", patient_id=patient.pk).exists()
    listed = client.get(RIGHTS)
    (item,) = listed.context["requests"]
    assert item["kind"] == "Rectificación" and item["status"] == "Recibida" and item["due_date"] == request.due_date
    rights_request_extend(request=request, reason="Necesitamos revisar el archivo físico.", by=personas.coordinator)
    rights_request_resolve(
        request=request, status=RightsStatus.COMPLETED, resolution="Corregimos su apellido.", by=personas.coordinator
    )
    (item,) = client.get(RIGHTS).context["requests"]
    assert item["status"] == "Atendida" and item["extended"] and item["resolution"] == "Corregimos su apellido."


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"kind": "access"},
        {"kind": "access", "description": "   "},
        {"kind": "deletion", "description": "Bórrenlo todo."},
        {"kind": "access", "description": "x" * 5001},
    ],
    ids=["empty", "no-description", "blank-description", "unknown-right", "too-long"],
)
def test_bad_requests_give_form_errors_never_500(data, personas, patient, login_as):
    response = login_as(personas.patient).post(RIGHTS, data)
    assert response.status_code == 400 and response.context["form"].errors
    assert not DataRightsRequest.objects.exists()


def test_export_asks_to_reauthenticate_first(personas, patient, login_as):
    client = login_as(personas.patient)
    response = client.get(EXPORT_JSON)
    assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:reauth"))
    assert not AuditEvent.objects.filter(action=AuditAction.PATIENT_EXPORTED).exists()
    reauth = client.post(response["Location"], {"password": DEMO_PASSWORD, "next": EXPORT_JSON})
    assert reauth.status_code == 302 and reauth["Location"] == EXPORT_JSON
    download = client.get(EXPORT_JSON)
    assert download.status_code == 200 and download["Content-Type"] == "application/json"
    assert download["Content-Disposition"] == 'attachment; filename="mis-datos-teleconsult.json"'
    assert "no-store" in download["Cache-Control"] and "private" in download["Cache-Control"]
    bundle = json.loads(download.content)
    assert bundle["patient"]["given_names"] == "Rosa"
    event = AuditEvent.objects.get(action=AuditAction.PATIENT_EXPORTED)
    assert event.patient_id == patient.pk and event.actor_user_id == personas.patient.pk


def test_pdf_export(personas, patient, login_as):
    client = login_as(personas.patient)
    session = client.session
    session[REAUTH_SESSION_KEY] = time.time()
    session.save()
    response = client.get(EXPORT_PDF)
    assert response.status_code == 200 and response.content.startswith(b"%PDF-")
    assert response["Content-Disposition"] == 'attachment; filename="mis-datos-teleconsult.pdf"'
    assert "no-store" in response["Cache-Control"]
    assert client.post(EXPORT_PDF).status_code == 405
