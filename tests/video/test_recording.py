"""Recording gates and refusals on the visit's websocket, in one process (the in-memory layer; the media path
across two daphne processes is in test_recording_daphne.py): who may start and stop, what stops a recording,
and what a malformed or misdirected recording message gets."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import connections
from django.utils import timezone

from audit.actions import AuditAction
from audit.models import AuditEvent
from records.models import ConsentKind, Decision
from tests.video.recording_support import decide_recording
from tests.video.signalling_support import (
    add_participants,
    close_code,
    frame,
    make_visit,
    receive,
    receive_until,
    signed_in_cookie,
    socket,
)
from tests.video.test_signalling import _in_call
from video import recording as recordings
from video.models import Presence, Recording, RecordingStatus
from video.protocol import MAX_SDP, CloseCode

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@pytest_asyncio.fixture(autouse=True)
async def _close_thread_connections():
    yield
    await database_sync_to_async(connections.close_all)()


@pytest.fixture(autouse=True)
def _one_process(settings, tmp_path):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.VIDEO_RECONNECT_GRACE_SECONDS = 1  # a dropped participant's departure is announced after it
    settings.RECORDINGS_TMP_DIR = tmp_path / "scratch"
    settings.STORAGES = {
        **settings.STORAGES,
        "recordings": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "recordings"},
        },
    }


@pytest.fixture
def visit(personas):
    visit = make_visit(personas)
    decide_recording(personas, visit.patient)
    return visit


@pytest.fixture
def cookies(personas):
    return {"patient": signed_in_cookie(personas.patient), "practitioner": signed_in_cookie(personas.practitioner)}


async def _settled(recording_id: str) -> Recording:
    """The row once its recorder finished with it (no media was sent here: it ends as failed, "no_media")."""
    deadline = time.monotonic() + 30
    while True:
        recording = await Recording.objects.aget(public_id=recording_id)
        if recording.status in (RecordingStatus.FAILED, RecordingStatus.STORED, RecordingStatus.CANCELLED):
            return recording
        assert time.monotonic() < deadline, recording.status
        await asyncio.sleep(0.1)


async def _stops(recording_id: str, reason: str) -> int:
    return await AuditEvent.objects.filter(
        action=AuditAction.RECORDING_STOPPED, details__recording=recording_id, details__reason=reason
    ).acount()


async def test_only_hosts_start_and_stop(visit, cookies):
    doctor, patient, _doctor_id, _patient_id = await _in_call(visit, cookies)
    await patient.send_to(text_data=frame("recording_start", kind="audio"))
    assert (await receive_until(patient, "error"))["code"] == "forbidden"
    await patient.send_to(text_data=frame("recording_stop"))
    assert (await receive_until(patient, "error"))["code"] == "forbidden"
    assert not await Recording.objects.aexists()

    # Nobody else on the staff is in the call: the host's request starts it at once.
    await doctor.send_to(text_data=frame("recording_start", kind="audio"))
    started = await receive_until(patient, "recording_started")
    assert (await receive_until(doctor, "recording_started")) == started
    # One at a time.
    await doctor.send_to(text_data=frame("recording_start", kind="video"))
    assert (await receive_until(doctor, "error"))["code"] == "recording_active"
    await patient.send_to(text_data=frame("recording_stop"))
    assert (await receive_until(patient, "error"))["code"] == "forbidden"
    await doctor.send_to(text_data=frame("recording_stop"))
    stopped = await receive_until(patient, "recording_stopped")
    assert stopped["recording"] == started["recording"] and stopped["reason"] == "host"
    recording = await _settled(started["recording"])
    assert recording.status == RecordingStatus.FAILED and recording.stop_reason == "host"
    await doctor.disconnect()
    await patient.disconnect()


async def test_staff_joining_without_agreeing_stops_it(visit, cookies, personas):
    extra = await database_sync_to_async(add_participants)(visit, personas)
    doctor, patient, _doctor_id, _patient_id = await _in_call(visit, cookies)
    await doctor.send_to(text_data=frame("recording_start", kind="video"))
    started = await receive_until(patient, "recording_started")
    interpreter = socket(visit.path, extra["interpreter"])
    assert (await interpreter.connect())[0]
    for someone in (doctor, patient):
        stopped = await receive_until(someone, "recording_stopped")
        assert stopped["reason"] == "participant_without_consent"
    assert await _stops(started["recording"], "participant_without_consent") == 1
    await _settled(started["recording"])

    # A request waiting for agreement is withdrawn the same way.
    await doctor.send_to(text_data=frame("recording_start", kind="video"))
    asked = await receive_until(interpreter, "recording_requested")
    consulted = socket(visit.path, extra["consulted"])
    assert (await consulted.connect())[0]
    withdrawn = await receive_until(interpreter, "recording_stopped")
    assert withdrawn["recording"] == asked["recording"] and withdrawn["reason"] == "participant_without_consent"
    recording = await Recording.objects.aget(public_id=asked["recording"])
    assert recording.status == RecordingStatus.CANCELLED and recording.started_at is None
    # Agreeing to a withdrawn request does nothing.
    await interpreter.send_to(text_data=frame("recording_agree", recording=asked["recording"]))
    assert (await receive_until(interpreter, "error"))["code"] == "no_recording"
    for someone in (doctor, patient, interpreter, consulted):
        await someone.disconnect()


async def test_staff_leaving_without_answering_are_not_asked_any_more(visit, cookies, personas):
    extra = await database_sync_to_async(add_participants)(visit, personas)
    doctor, patient, doctor_id, patient_id = await _in_call(visit, cookies)
    interpreter = socket(visit.path, extra["interpreter"])
    assert (await interpreter.connect())[0]
    interpreter_id = (await receive_until(interpreter, "welcome"))["participant"]
    await doctor.send_to(text_data=frame("recording_start", kind="audio"))
    asked = await receive_until(patient, "recording_requested")
    assert asked["awaiting"] == [interpreter_id]
    await interpreter.disconnect()
    # Whoever is not in the call is not recorded: the request was complete without them.
    started = await receive_until(patient, "recording_started")
    assert started["recording"] == asked["recording"] and started["participants"] == sorted([doctor_id, patient_id])
    # Coming back without having agreed stops it.
    interpreter = socket(visit.path, extra["interpreter"])
    assert (await interpreter.connect())[0]
    assert (await receive_until(patient, "recording_stopped"))["reason"] == "participant_without_consent"
    await _settled(started["recording"])
    for someone in (doctor, patient, interpreter):
        await someone.disconnect()


async def test_a_revocation_stops_it_even_with_the_patient_away(visit, cookies, personas):
    doctor, patient, doctor_id, patient_id = await _in_call(visit, cookies)
    await doctor.send_to(text_data=frame("recording_start", kind="video"))
    started = await receive_until(patient, "recording_started")
    assert started["participants"] == sorted([doctor_id, patient_id])
    await patient.disconnect()
    await receive_until(doctor, "peer_left")
    await database_sync_to_async(decide_recording)(
        personas, visit.patient, (ConsentKind.RECORDING_VIDEO,), decision=Decision.REVOKE
    )
    stopped = await receive_until(doctor, "recording_stopped")
    assert stopped["reason"] == "consent_revoked"
    await _settled(started["recording"])
    # The audio consent stands, the video one does not: video is refused, audio may still be recorded.
    await doctor.send_to(text_data=frame("recording_start", kind="video"))
    assert (await receive_until(doctor, "error"))["code"] == "no_recording_consent"
    await doctor.send_to(text_data=frame("recording_start", kind="audio"))
    audio = await receive_until(doctor, "recording_started")
    assert audio["kind"] == "audio"
    await doctor.disconnect()
    await _settled(audio["recording"])


async def test_the_host_leaving_or_the_end_stops_it(visit, cookies):
    doctor, patient, _doctor_id, _patient_id = await _in_call(visit, cookies)
    await doctor.send_to(text_data=frame("recording_start", kind="audio"))
    first = await receive_until(patient, "recording_started")
    await doctor.disconnect()
    stopped = await receive_until(patient, "recording_stopped")
    assert stopped == {"v": 1, "type": "recording_stopped", "recording": first["recording"], "reason": "host_left"}
    await _settled(first["recording"])

    doctor = socket(visit.path, cookies["practitioner"])
    assert (await doctor.connect())[0]
    await receive_until(doctor, "welcome")
    await doctor.send_to(text_data=frame("recording_start", kind="audio"))
    second = await receive_until(patient, "recording_started")
    await doctor.send_to(text_data=frame("end"))
    stopped = await receive_until(patient, "recording_stopped")
    assert stopped["recording"] == second["recording"] and stopped["reason"] == "visit_ended"
    assert (await receive_until(patient, "end"))["reason"] == "ended"
    assert await close_code(patient) == CloseCode.ENDED
    recording = await _settled(second["recording"])
    assert recording.stop_reason == "visit_ended" and recording.stopped_at is not None


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (frame("recording_start", kind="screen"), CloseCode.MALFORMED),
        (frame("recording_start"), CloseCode.MALFORMED),
        (frame("recording_offer", recording="../../etc", sdp="v=0"), CloseCode.MALFORMED),
        (frame("recording_offer", recording="6F1C0000-0000-4000-8000-000000000000", sdp="v=0"), CloseCode.MALFORMED),
        (frame("recording_agree", recording="6f1c0000-0000-4000-8000-000000000000", to=3), CloseCode.MALFORMED),
        (frame("recording_stop", reason="host"), CloseCode.MALFORMED),
        (
            frame("recording_offer", recording="6f1c0000-0000-4000-8000-000000000000", sdp="x" * (MAX_SDP + 1)),
            CloseCode.TOO_LARGE,
        ),
    ],
)
async def test_malformed_recording_messages_close_the_sender(visit, cookies, message, code):
    doctor, patient, _doctor_id, _patient_id = await _in_call(visit, cookies)
    await patient.send_to(text_data=message)
    assert await close_code(patient) == code
    # The visit goes on for the others.
    await receive_until(doctor, "peer_left")
    await doctor.send_to(text_data=frame("chat", text="¿Sigue ahí?"))
    assert (await receive_until(doctor, "chat"))["text"] == "¿Sigue ahí?"
    await doctor.disconnect()


async def test_misdirected_recording_messages_get_an_error_and_floods_are_closed(visit, cookies):
    doctor, patient, _doctor_id, _patient_id = await _in_call(visit, cookies)
    unknown = "6f1c0000-0000-4000-8000-000000000000"
    await patient.send_to(text_data=frame("recording_offer", recording=unknown, sdp="v=0\r\n"))
    assert (await receive_until(patient, "error")) == {
        "v": 1,
        "type": "error",
        "code": "no_recording",
        "about": "recording_offer",
    }
    await doctor.send_to(text_data=frame("recording_start", kind="audio"))
    started = await receive_until(patient, "recording_started")
    # An SDP the recorder cannot take: the sender is told, the recording goes on.
    await patient.send_to(text_data=frame("recording_offer", recording=started["recording"], sdp="v=0\r\nnonsense"))
    assert (await receive_until(patient, "error"))["code"] == "bad_recording_offer"
    await doctor.send_to(text_data=frame("recording_agree", recording=started["recording"]))
    assert (await receive_until(doctor, "error"))["code"] == "no_recording"
    assert (await Recording.objects.aget(public_id=started["recording"])).status == RecordingStatus.RECORDING
    await doctor.send_to(text_data=frame("recording_stop"))
    await receive_until(patient, "recording_stopped")
    await _settled(started["recording"])
    # Requests cost more than other messages: a page asking in a loop is cut off long before the usual limit.
    for _ in range(8):
        await doctor.send_to(text_data=frame("recording_start", kind="audio"))
    assert await close_code(doctor) == CloseCode.RATE_LIMITED
    assert await Recording.objects.filter(status=RecordingStatus.RECORDING).acount() <= 1
    await patient.disconnect()
    # Whatever started in the flood stopped with the host who left.
    for recording in [r async for r in Recording.objects.all()]:
        await _settled(str(recording.public_id))


async def test_plaintext_left_by_a_dead_recorder_is_swept(settings):
    from video.recorder import ORPHAN_AFTER_SECONDS, plaintext_sweep

    scratch = settings.RECORDINGS_TMP_DIR
    scratch.mkdir(parents=True)
    (scratch / "rec-old.mkv").write_bytes(b"\x1a\x45\xdf\xa3 plaintext")
    (scratch / "rec-live.mkv").write_bytes(b"\x1a\x45\xdf\xa3 being written")
    (scratch / "other.txt").write_bytes(b"not ours")
    old = time.time() - ORPHAN_AFTER_SECONDS - 5
    os.utime(scratch / "rec-old.mkv", (old, old))
    os.utime(scratch / "other.txt", (old, old))
    assert plaintext_sweep() == 1
    assert sorted(p.name for p in scratch.iterdir()) == ["other.txt", "rec-live.mkv"]


async def test_a_recorder_that_cannot_start_withdraws_the_request(visit, cookies, settings, tmp_path):
    blocked = tmp_path / "not-a-directory"
    blocked.write_bytes(b"")
    settings.RECORDINGS_TMP_DIR = blocked
    doctor, patient, _doctor_id, _patient_id = await _in_call(visit, cookies)
    await doctor.send_to(text_data=frame("recording_start", kind="audio"))
    stopped = await receive_until(patient, "recording_stopped")
    assert stopped["reason"] == "recorder_failed"
    recording = await Recording.objects.aget(public_id=stopped["recording"])
    assert recording.status == RecordingStatus.CANCELLED and recording.started_at is None
    # Nothing is left live: a new request is possible once the problem is fixed.
    settings.RECORDINGS_TMP_DIR = tmp_path / "scratch"
    await doctor.send_to(text_data=frame("recording_start", kind="audio"))
    started = await receive_until(patient, "recording_started")
    await doctor.send_to(text_data=frame("recording_stop"))
    await receive_until(patient, "recording_stopped")
    await _settled(started["recording"])
    await doctor.disconnect()
    await patient.disconnect()


async def test_a_patient_let_in_again_during_a_recording_is_told(visit, cookies):
    doctor, patient, _doctor_id, patient_id = await _in_call(visit, cookies)
    await doctor.send_to(text_data=frame("recording_start", kind="audio"))
    started = await receive_until(patient, "recording_started")
    await patient.send_to(text_data=frame("leave"))
    await receive_until(doctor, "peer_left")
    back = socket(visit.path, cookies["patient"])
    assert (await back.connect())[0]
    assert (await receive_until(back, "welcome"))["state"] == "waiting"
    await receive_until(doctor, "waiting")
    await doctor.send_to(text_data=frame("admit", participant=patient_id))
    await receive_until(back, "admitted")
    again = await receive_until(back, "recording_started")
    assert again["recording"] == started["recording"]
    await doctor.send_to(text_data=frame("recording_stop"))
    await receive_until(back, "recording_stopped")
    await _settled(started["recording"])
    await doctor.disconnect()
    await back.disconnect()


async def test_a_recording_begun_after_the_admit_looked_is_still_shown(visit, cookies):
    # The admit says whether a recording was running when it was decided. One that began after that, whose event
    # reached the waiting room before the admission did, is looked up once the patient is in.
    doctor, patient, _doctor_id, patient_id = await _in_call(visit, cookies)
    await patient.send_to(text_data=frame("leave"))
    await receive_until(doctor, "peer_left")
    back = socket(visit.path, cookies["patient"])
    assert (await back.connect())[0]
    assert (await receive_until(back, "welcome"))["state"] == "waiting"
    await receive_until(doctor, "waiting")
    await doctor.send_to(text_data=frame("recording_start", kind="audio"))
    started = await receive_until(doctor, "recording_started", timeout=30)  # aiortc loads with the first recorder
    presence = await Presence.objects.aget(participant_id=patient_id)
    await get_channel_layer().send(
        presence.channel_name, {"type": "room.admitted", "connection": presence.connection, "recording": False}
    )
    await receive_until(back, "admitted")
    shown = await receive_until(back, "recording_started")
    assert shown["recording"] == started["recording"]
    await doctor.send_to(text_data=frame("recording_stop"))
    await _settled(started["recording"])
    await doctor.disconnect()
    await back.disconnect()


async def test_with_nothing_recorded_the_admitted_patient_costs_no_more_queries(visit, cookies, monkeypatch):
    asked = []
    real = recordings.live_recording_event
    monkeypatch.setattr(recordings, "live_recording_event", lambda **kwargs: asked.append(kwargs) or real(**kwargs))
    doctor, patient, _doctor_id, patient_id = await _in_call(visit, cookies)
    await doctor.send_to(text_data=frame("chat", text="Buenos días"))
    await receive_until(patient, "chat")
    assert asked == []
    # While a recording runs, the admitted patient is told (the admit said so).
    await patient.send_to(text_data=frame("leave"))
    await receive_until(doctor, "peer_left")
    await doctor.send_to(text_data=frame("recording_start", kind="audio"))
    started = await receive_until(doctor, "recording_started", timeout=30)
    back = socket(visit.path, cookies["patient"])
    assert (await back.connect())[0]
    await receive_until(doctor, "waiting")
    await doctor.send_to(text_data=frame("admit", participant=patient_id))
    await receive_until(back, "admitted")
    assert (await receive_until(back, "recording_started"))["recording"] == started["recording"]
    assert len(asked) == 1
    await doctor.send_to(text_data=frame("recording_stop"))
    await _settled(started["recording"])
    await doctor.disconnect()
    await back.disconnect()


async def test_a_host_back_within_the_grace_keeps_recording_and_a_leave_stops_it_at_once(visit, cookies, settings):
    """The host's websocket drops and comes back within VIDEO_RECONNECT_GRACE_SECONDS: the recording goes on (the
    new connection is told it runs, right behind its welcome) and nobody hears it stopped. A `leave` on purpose
    then stops it at once, grace or not."""
    settings.VIDEO_RECONNECT_GRACE_SECONDS = 60
    doctor, patient, doctor_id, _patient_id = await _in_call(visit, cookies)
    await doctor.send_to(text_data=frame("recording_start", kind="audio"))
    started = await receive_until(patient, "recording_started")
    await doctor.disconnect()
    back = socket(visit.path, cookies["practitioner"])
    assert (await back.connect())[0]
    welcome = await receive(back)
    assert welcome["type"] == "welcome" and welcome["participant"] == doctor_id
    assert (await receive(back)) == started
    resumed = await receive_until(patient, "peer_joined")
    assert resumed["participant"] == doctor_id and resumed["resumed"] is True
    recording = await Recording.objects.aget(public_id=started["recording"])
    assert recording.status == RecordingStatus.RECORDING
    assert await _stops(started["recording"], "host_left") == 0

    await back.send_to(text_data=frame("leave"))
    stopped = await receive_until(patient, "recording_stopped")
    assert stopped == {"v": 1, "type": "recording_stopped", "recording": started["recording"], "reason": "host_left"}
    await _settled(started["recording"])
    await patient.disconnect()


async def test_a_host_not_back_within_the_grace_stops_it_with_the_departure(visit, cookies):
    doctor, patient, doctor_id, _patient_id = await _in_call(visit, cookies)
    await doctor.send_to(text_data=frame("recording_start", kind="audio"))
    started = await receive_until(patient, "recording_started")
    await doctor.disconnect()
    # Told together once the grace is over: the host left, and so the recording stopped.
    assert (await receive(patient)) == {"v": 1, "type": "peer_left", "participant": doctor_id}
    stopped = await receive(patient)
    assert stopped == {"v": 1, "type": "recording_stopped", "recording": started["recording"], "reason": "host_left"}
    await _settled(started["recording"])
    await patient.disconnect()


async def test_staff_asked_who_drop_and_come_back_are_asked_again(visit, cookies, personas, settings):
    settings.VIDEO_RECONNECT_GRACE_SECONDS = 60
    extra = await database_sync_to_async(add_participants)(visit, personas)
    doctor, patient, _doctor_id, _patient_id = await _in_call(visit, cookies)
    interpreter = socket(visit.path, extra["interpreter"])
    assert (await interpreter.connect())[0]
    interpreter_id = (await receive_until(interpreter, "welcome"))["participant"]
    await doctor.send_to(text_data=frame("recording_start", kind="audio"))
    asked = await receive_until(interpreter, "recording_requested")
    await interpreter.disconnect()
    interpreter = socket(visit.path, extra["interpreter"])
    assert (await interpreter.connect())[0]
    assert (await receive_until(interpreter, "recording_requested")) == asked
    assert asked["awaiting"] == [interpreter_id]
    # The host who asked drops too and comes back: the request is still theirs, and their page is told of it.
    await doctor.disconnect()
    doctor = socket(visit.path, cookies["practitioner"])
    assert (await doctor.connect())[0]
    assert (await receive_until(doctor, "recording_requested")) == asked
    # Away again, the interpreter agrees meanwhile: it starts when the host is back (it waits for them).
    await doctor.disconnect()
    await interpreter.send_to(text_data=frame("recording_agree", recording=asked["recording"]))
    await receive_until(interpreter, "recording_agreed")
    assert (await Recording.objects.aget(public_id=asked["recording"])).status == RecordingStatus.REQUESTED
    doctor = socket(visit.path, cookies["practitioner"])
    assert (await doctor.connect())[0]
    started = await receive_until(patient, "recording_started")
    assert started["recording"] == asked["recording"] and interpreter_id in started["participants"]
    await doctor.send_to(text_data=frame("recording_stop"))
    await receive_until(patient, "recording_stopped")
    await _settled(started["recording"])
    for someone in (doctor, patient, interpreter):
        await someone.disconnect()


async def test_the_sweep_stops_a_recording_whose_recorder_went_silent(visit, cookies):
    """The recorder's process died (its host may be back on another process): its beats stop, and the periodic
    sweep stops the recording for everyone and marks it failed (nothing could be stored)."""
    doctor, patient, _doctor_id, _patient_id = await _in_call(visit, cookies)
    await doctor.send_to(text_data=frame("recording_start", kind="audio"))
    started = await receive_until(patient, "recording_started")

    def sweep(after: dt.timedelta) -> None:
        from scheduling.signals import periodic_upkeep

        Recording.objects.filter(public_id=started["recording"]).update(recorder_seen_at=timezone.now() - after)
        periodic_upkeep.send(sender=None)

    await database_sync_to_async(sweep)(dt.timedelta(seconds=10))  # beating: left alone
    assert (await Recording.objects.aget(public_id=started["recording"])).status == RecordingStatus.RECORDING
    await database_sync_to_async(sweep)(dt.timedelta(minutes=5))
    for someone in (doctor, patient):
        stopped = await receive_until(someone, "recording_stopped")
        assert stopped == {
            "v": 1,
            "type": "recording_stopped",
            "recording": started["recording"],
            "reason": "recorder_lost",
        }
    recording = await _settled(started["recording"])
    assert recording.status == RecordingStatus.FAILED and recording.stop_reason == "recorder_lost"
    assert await _stops(started["recording"], "recorder_lost") == 1
    await doctor.disconnect()
    await patient.disconnect()


async def test_someone_in_the_call_after_the_start_is_reported_to_the_hosts(visit, cookies):
    """The patient was away when the recording started (no stream for them in its file): let in again, the hosts
    hear they are not in it; a stop and a new start of the same kind (the page's one click) includes them."""
    doctor, patient, doctor_id, patient_id = await _in_call(visit, cookies)
    await patient.send_to(text_data=frame("leave"))
    await receive_until(doctor, "peer_left")
    await doctor.send_to(text_data=frame("recording_start", kind="audio"))
    started = await receive_until(doctor, "recording_started")
    assert started["participants"] == [doctor_id]
    back = socket(visit.path, cookies["patient"])
    assert (await back.connect())[0]
    await receive_until(doctor, "waiting")
    await doctor.send_to(text_data=frame("admit", participant=patient_id))
    await receive_until(back, "admitted")
    assert (await receive_until(back, "recording_started")) == started
    incomplete = await receive_until(doctor, "recording_incomplete")
    assert incomplete == {
        "v": 1,
        "type": "recording_incomplete",
        "recording": started["recording"],
        "participant": patient_id,
        "role": "patient",
    }
    # The one click: stop, then the same kind again, now with everyone in the call.
    await doctor.send_to(text_data=frame("recording_stop"))
    await doctor.send_to(text_data=frame("recording_start", kind="audio"))
    assert (await receive_until(back, "recording_stopped"))["reason"] == "host"
    again = await receive_until(back, "recording_started")
    assert again["recording"] != started["recording"] and again["participants"] == sorted([doctor_id, patient_id])
    await doctor.send_to(text_data=frame("recording_stop"))
    await receive_until(back, "recording_stopped")
    for recording_id in (started["recording"], again["recording"]):
        await _settled(recording_id)
    await doctor.disconnect()
    await back.disconnect()
