"""The pages of the call client: the practitioner's room (who waits, the call, the chart header, the note) and
the patient's waiting room, for every persona; the outsider and everyone not hosting the visit are denied."""

from __future__ import annotations

import datetime as dt
import json
import re
from zoneinfo import ZoneInfo

import pytest
from django.test import Client
from django.utils import timezone

from audit.actions import AuditAction
from audit.models import AuditEvent
from records.care import care_relationship_start
from records.models import CareSource
from tests.video.signalling_support import Visit, make_visit
from video.call_strings import CALL_STRINGS

pytestmark = pytest.mark.django_db


def hosted_visit(personas) -> Visit:
    """A visit whose practitioner may read the chart (the care relationship booking gives in production)."""
    visit = make_visit(personas)
    care_relationship_start(
        patient=visit.patient,
        practitioner=personas.practitioner,
        source=CareSource.APPOINTMENT,
        source_id=str(visit.appointment.public_id),
        valid_from=timezone.now() - dt.timedelta(hours=1),
        valid_until=visit.appointment.end + dt.timedelta(days=1),
        created_by=None,
    )
    return visit


def room_url(visit) -> str:
    return f"/visit/{visit.appointment.public_id}/room/"


def catalog(html: str) -> dict[str, str]:
    match = re.search(r'<script id="call-strings" type="application/json">(.*?)</script>', html, re.S)
    assert match, "the page renders the call client's catalog"
    return json.loads(match.group(1))


def test_practitioner_room_shows_call_chart_header_and_note(personas, login_as):
    visit = hosted_visit(personas)
    client = login_as(personas.practitioner)
    response = client.get(room_url(visit))
    assert response.status_code == 200
    html = response.text
    assert "data-call" in html and "data-host" in html
    assert "datos críticos" in html  # the chart header
    assert f"/scheduling/appointments/{visit.appointment.public_id}/encounter/" in html
    assert set(catalog(html)) == set(CALL_STRINGS)
    assert "no-cache" in response["Cache-Control"]
    assert AuditEvent.objects.filter(action=AuditAction.CHART_VIEWED, patient_id=visit.patient.pk).exists()


def test_room_without_a_care_relationship_has_the_call_but_not_the_chart(personas, login_as):
    visit = make_visit(personas)
    response = login_as(personas.practitioner).get(room_url(visit))
    assert response.status_code == 200
    assert "data-call" in response.text and "datos críticos" not in response.text
    assert AuditEvent.objects.filter(action=AuditAction.CHART_ACCESS_DENIED).exists()


@pytest.mark.parametrize("persona", ["outsider", "coordinator", "auditor", "admin", "patient"])
def test_room_is_denied_to_everyone_but_the_visit_hosts(personas, login_as, persona):
    visit = make_visit(personas)
    response = login_as(getattr(personas, persona)).get(room_url(visit))
    assert response.status_code == 404
    assert "data-call" not in response.text


def test_room_of_a_missing_visit_is_the_same_404(personas, login_as):
    response = login_as(personas.practitioner).get("/visit/00000000-0000-4000-8000-000000000000/room/")
    assert response.status_code == 404


def test_room_needs_sign_in(personas):
    visit = make_visit(personas)
    response = Client().get(room_url(visit))
    assert response.status_code == 302 and "/accounts/" in response["Location"]


def test_room_refuses_post(personas, login_as):
    visit = make_visit(personas)
    assert login_as(personas.practitioner).post(room_url(visit)).status_code == 405


def test_patient_waiting_page_is_the_waiting_room(personas, login_as):
    visit = make_visit(personas)
    response = login_as(personas.patient).get(f"/visit/{visit.appointment.public_id}/waiting/")
    assert response.status_code == 200
    html = response.text
    assert f'data-visit="{visit.appointment.public_id}"' in html
    assert "data-host" not in html
    assert "frontend/visit/call" in html
    assert catalog(html)["closed_declined"] == "El profesional no pudo admitirlo en esta teleconsulta."


def test_waiting_page_in_english(personas, login_as):
    visit = make_visit(personas)
    client = login_as(personas.patient)
    client.cookies["django_language"] = "en"
    response = client.get(f"/visit/{visit.appointment.public_id}/waiting/", HTTP_ACCEPT_LANGUAGE="en")
    assert catalog(response.text)["waiting"] == "Waiting for the practitioner to admit you."


def test_waiting_room_has_the_self_view_in_both_languages(personas, login_as):
    visit = make_visit(personas)
    client = login_as(personas.patient)
    html = client.get(f"/visit/{visit.appointment.public_id}/waiting/").text
    assert "data-preview-video" in html and 'for="call-preview-level"' in html
    assert "Nivel de su micrófono" in html
    spanish = {key: text for key, text in catalog(html).items() if key.startswith("preview_")}
    assert spanish["preview_denied"].startswith("El navegador no tiene permiso")
    client.cookies["django_language"] = "en"
    english_html = client.get(f"/visit/{visit.appointment.public_id}/waiting/", HTTP_ACCEPT_LANGUAGE="en").text
    english = {key: text for key, text in catalog(english_html).items() if key.startswith("preview_")}
    # Every word of the self-view has its English (none left in Spanish), the markup's too.
    assert english.keys() == spanish.keys() and len(spanish) >= 8
    assert all(english[key] != spanish[key] for key in spanish), english
    assert "Your microphone level" in english_html and "Nivel de su micrófono" not in english_html


def test_waiting_page_denied_to_the_outsider(personas, login_as):
    visit = make_visit(personas)
    response = login_as(personas.outsider).get(f"/visit/{visit.appointment.public_id}/waiting/")
    assert response.status_code == 404


def test_my_day_links_each_booked_visit_to_its_room(personas, login_as):
    visit = make_visit(personas)
    zone = ZoneInfo(personas.practitioner.time_zone or personas.establishment.time_zone)
    day = visit.appointment.start.astimezone(zone).date()
    response = login_as(personas.practitioner).get("/scheduling/my-day/", {"date": day.isoformat()})
    assert response.status_code == 200
    assert room_url(visit) in response.text and "Abrir la sala" in response.text
