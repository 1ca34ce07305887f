"""The encounter's note page lists its visit's recordings (VID-8) through the same gate as their retrieval: the
patient's care team sees them with their download links; the listing and each download are audited; anyone else
sees nothing (and the attempt is audited); a recording destroyed past retention stays listed as a trace, without
a link. Records shows the section without importing video (records.signals.encounter_page_sections)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.actions import AuditAction, Outcome
from audit.models import AuditEvent
from records.notes import note_create
from tests.browser_checks import assert_accessible
from tests.records.encounter_support import verified
from tests.records.test_clinical_browser import sign_in
from tests.scheduling.test_joinlinks import make_appointment
from tests.video.recording_support import stored_recording
from tests.video.test_call_pages import hosted_visit
from video.models import Recording, RecordingStatus
from video.recording_access import recordings_listed

MEDIA = b"\x1aE\xdf\xa3 the visit of 1 December"
HEADING = "Grabaciones de la atención"


@pytest.fixture(autouse=True)
def _recordings_storage(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "recordings": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": tmp_path}},
    }


def _listed(**details) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=AuditAction.RECORDING_LISTED, **details).order_by("pk"))


@pytest.mark.django_db
def test_the_care_team_sees_the_encounters_recordings_on_its_note(personas, login_as):
    visit = hosted_visit(personas)
    recording = stored_recording(personas, visit, MEDIA)
    audio = stored_recording(personas, visit, MEDIA + b" sound")
    Recording.objects.filter(pk=audio.pk).update(kind="audio")
    note = note_create(encounter=recording.encounter, author=personas.practitioner)
    client = login_as(personas.practitioner)

    page = client.get(reverse("records:note", args=[note.pk])).content.decode()
    assert HEADING in page
    for shown in (recording, audio):
        assert f'href="/visit/recordings/{shown.public_id}/"' in page
    assert "Video y audio" in page and "Solo el audio" in page
    listed = _listed()
    assert len(listed) == 1 and listed[0].outcome == Outcome.SUCCESS
    assert listed[0].actor_user_id == personas.practitioner.pk and listed[0].patient_id == visit.patient.pk
    assert listed[0].object_id == str(recording.encounter_id)
    assert listed[0].details == {
        "recordings": [str(recording.public_id), str(audio.public_id)],
        "via": "care_relationship",
    }
    # The listing's queries do not grow with the number of recordings.
    with CaptureQueriesContext(connection) as two:
        recordings_listed(verified(personas.practitioner), encounter_id=recording.encounter_id)
    third = stored_recording(personas, visit, MEDIA)
    with CaptureQueriesContext(connection) as three:
        assert len(recordings_listed(verified(personas.practitioner), encounter_id=recording.encounter_id)) == 3
    assert len(three.captured_queries) == len(two.captured_queries), [q["sql"] for q in three.captured_queries]
    Recording.objects.filter(pk=third.pk).update(status=RecordingStatus.FAILED)

    # The link downloads it, through the retrieval gate and its own audit.
    response = client.get(f"/visit/recordings/{recording.public_id}/")
    assert response.status_code == 200 and b"".join(response.streaming_content) == MEDIA
    assert AuditEvent.objects.filter(
        action=AuditAction.RECORDING_ACCESSED, outcome=Outcome.SUCCESS, details__recording=str(recording.public_id)
    ).exists()

    # Past retention the file goes, the row stays: listed as destroyed, with no link.
    Recording.objects.filter(pk=audio.pk).update(
        status=RecordingStatus.DESTROYED, destroyed_at=audio.stored_at, file_key=None
    )
    page = client.get(reverse("records:note", args=[note.pk])).content.decode()
    assert f'href="/visit/recordings/{audio.public_id}/"' not in page
    assert "destruida al terminar su plazo de conservación" in page
    assert f'href="/visit/recordings/{recording.public_id}/"' in page
    assert len(_listed()) == 4  # the two pages, and the two listings counted above


@pytest.mark.django_db
def test_nobody_else_gets_the_list_and_an_encounter_without_recordings_shows_none(personas, login_as):
    visit = hosted_visit(personas)
    recording = stored_recording(personas, visit, MEDIA)
    # Not of the care team, a patient (theirs included), a coordinator: an empty list, the attempt in the trail.
    for someone in (personas.outsider, personas.patient, personas.coordinator):
        assert recordings_listed(verified(someone), encounter_id=recording.encounter_id) == []
    denied = _listed(outcome=Outcome.DENIED)
    assert [event.actor_user_id for event in denied] == [
        personas.outsider.pk,
        personas.patient.pk,
        personas.coordinator.pk,
    ]
    assert all(event.details == {} and event.patient_id == visit.patient.pk for event in denied)

    # Another encounter of the same patient, without recordings: no section, nothing read, nothing audited.
    later = stored_recording(
        personas, SimpleNamespace(appointment=make_appointment(personas, visit.patient, start=visit.appointment.end))
    )
    Recording.objects.filter(pk=later.pk).update(status=RecordingStatus.FAILED)
    note = note_create(encounter=later.encounter, author=personas.practitioner)
    page = login_as(personas.practitioner).get(reverse("records:note", args=[note.pk])).content.decode()
    assert HEADING not in page
    assert len(_listed()) == 3


@pytest.mark.browser
def test_the_note_page_with_recordings_is_accessible(page, personas, login_as, live_server):
    visit = hosted_visit(personas)
    recording = stored_recording(personas, visit, MEDIA)
    note = note_create(encounter=recording.encounter, author=personas.practitioner)
    sign_in(page, login_as, personas.practitioner, live_server.url)
    page.goto(reverse("records:note", args=[note.pk]))
    section = page.get_by_role("region", name=HEADING)
    section.wait_for()
    link = section.get_by_role("link")
    assert link.count() == 1 and link.get_attribute("href") == f"/visit/recordings/{recording.public_id}/"
    assert_accessible(page, context="note page with recordings")
