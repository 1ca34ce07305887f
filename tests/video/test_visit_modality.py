"""The visit's modality in the encounter is the most limited one its participants in the call use: each page says
its own (`media_state`), and a patient who can only chat (a browser without WebRTC) or only hear makes the visit
a chat or an audio one however often the practitioner's page repeats that it runs video."""

from __future__ import annotations

import pytest

from audit.actions import AuditAction
from audit.models import AuditEvent
from tests.video.test_room_statements import admitted_call
from video.models import Presence, PresenceState, VisitSession
from video.services import visit_departure_announce, visit_leave, visit_media_state

pytestmark = pytest.mark.django_db


def _call(personas):
    """A visit in progress: the practitioner admitted the patient. Returns a way for each of them to say their
    modality (True when the encounter recorded a change), and both joins."""
    _visit, host, patient = admitted_call(personas)

    def speaker(joined, user):
        def says(modality: str, *, automatic: bool = False) -> bool:
            return visit_media_state(
                visit_id=joined.visit_id,
                participant_id=joined.participant_id,
                user=user,
                modality=modality,
                automatic=automatic,
            )

        return says

    return speaker(host, personas.practitioner), speaker(patient, personas.patient), host, patient


def _leave(joined, user, *, explicit: bool) -> None:
    visit_leave(
        visit_id=joined.visit_id,
        participant_id=joined.participant_id,
        connection=joined.connection,
        user=user,
        explicit=explicit,
    )


def _recorded(host) -> list[str]:
    encounter = VisitSession.objects.get(pk=host.visit_id).encounter
    return list(encounter.modality_changes.order_by("changed_at", "pk").values_list("modality", flat=True))


def test_a_patient_who_can_only_chat_makes_it_a_chat_visit_whoever_speaks_last(personas):
    doctor_says, patient_says, host, patient = _call(personas)
    assert _recorded(host) == ["video"]  # the admit starts it as planned

    # The practitioner's page says "video" (as it does on every join and mute) before and after the patient's
    # page says it can only chat: the record goes to chat once and stays there.
    assert not doctor_says("video")
    assert patient_says("chat", automatic=True)
    assert not doctor_says("video")
    assert not doctor_says("audio")
    assert _recorded(host) == ["video", "chat"]
    assert Presence.objects.get(visit_id=host.visit_id, participant_id=patient.participant_id).modality == "chat"
    event = AuditEvent.objects.filter(action=AuditAction.VISIT_MODALITY_CHANGED).latest("pk")
    assert event.details["modality"] == "chat" and event.details["previous"] == "video"
    assert event.details["automatic"] is True and event.details["participant"] == patient.participant_id


def test_the_visit_follows_the_most_limited_link_and_comes_back_when_it_recovers(personas):
    doctor_says, patient_says, host, _patient = _call(personas)
    assert patient_says("audio", automatic=True)  # the patient's link stepped down
    assert not doctor_says("video")  # the practitioner still sends video: the visit is still audio
    assert patient_says("video", automatic=True)  # the patient's link came back
    assert doctor_says("audio")  # the practitioner chose audio only
    assert not patient_says("audio")  # the patient's page follows: nothing new
    assert _recorded(host) == ["video", "audio", "video", "audio"]


def test_a_participant_who_left_no_longer_limits_the_visit(personas):
    doctor_says, patient_says, host, patient = _call(personas)
    assert patient_says("chat", automatic=True)
    assert not doctor_says("video")
    _leave(patient, personas.patient, explicit=True)
    assert Presence.objects.get(visit_id=host.visit_id, participant_id=patient.participant_id).state == (
        PresenceState.LEFT
    )
    # Their leaving gives the visit back its fuller modality at once, without waiting for a page to speak.
    assert _recorded(host) == ["video", "chat", "video"]
    event = AuditEvent.objects.filter(action=AuditAction.VISIT_MODALITY_CHANGED).latest("pk")
    assert event.details["participant"] == patient.participant_id and event.details["automatic"] is True


def test_a_dropped_participant_limits_the_visit_until_their_departure_is_announced(personas, settings):
    settings.VIDEO_RECONNECT_GRACE_SECONDS = 5
    doctor_says, patient_says, host, patient = _call(personas)
    assert patient_says("audio", automatic=True)
    assert not doctor_says("video")
    _leave(patient, personas.patient, explicit=False)
    # Within the grace they may come back as they were: still audio, and a page speaking changes nothing.
    assert not doctor_says("video")
    assert _recorded(host) == ["video", "audio"]
    visit_departure_announce(
        visit_id=patient.visit_id, participant_id=patient.participant_id, connection=patient.connection
    )
    assert _recorded(host) == ["video", "audio", "video"]
    # A departure of one in video changes nothing.
    _leave(host, personas.practitioner, explicit=True)
    assert _recorded(host) == ["video", "audio", "video"]
    assert AuditEvent.objects.filter(action=AuditAction.VISIT_MODALITY_CHANGED).count() == 2
