"""Recording a visit (VID-8, CON-4) with real aiortc participants through two real daphne processes sharing Redis:
the practitioner (and so the recorder) on one, the patient and a consulted specialist on the other. The patient's
stored consent and the specialist's agreement gate it, everybody sees it start and stop, the recorder receives
everybody's media, and what is stored is ciphertext that decrypts to a file PyAV decodes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import av
import pytest
from django.db import connection, connections, transaction

from audit.actions import AuditAction, Outcome
from audit.models import AuditEvent
from records.models import ConsentKind, Decision, Encounter
from teleconsult import crypto, keyrotation
from tests.teleconsult.support import run_in_own_loop
from tests.video.daphne_processes import daphne_processes
from tests.video.recording_support import (
    ColourTrack,
    RecorderClient,
    block_extent,
    ciphertext,
    decide_recording,
    decode,
    frames_by_stream,
    in_thread,
    plaintext,
    rgb_at,
)
from tests.video.signalling_support import add_participants, make_visit, signed_in_cookie
from tests.video.test_call_pages import hosted_visit
from video.models import Recording, RecordingStatus
from video.recorder import ORPHAN_AFTER_SECONDS, plaintext_sweep
from video.recording import recording_data_key_id

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

MATROSKA_MAGIC = bytes.fromhex("1a45dfa3")


@pytest.fixture
def recordings_dirs(tmp_path, settings) -> dict[str, str]:
    """The recordings storage and the recorder's scratch space, in this test's own directory (shared with the
    daphne processes, which write there)."""
    stored, scratch = tmp_path / "recordings", tmp_path / "scratch"
    settings.STORAGES = {
        **settings.STORAGES,
        "recordings": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": stored}},
    }
    settings.RECORDINGS_TMP_DIR = scratch
    return {"RECORDINGS_DIR": str(stored), "RECORDINGS_TMP_DIR": str(scratch)}


@pytest.fixture
def daphnes(redis_url, settings, recordings_dirs) -> Iterator[tuple[int, int]]:
    if settings.CHANNEL_LAYERS["default"]["BACKEND"] != "teleconsult.channel_layer.PooledRedisChannelLayer":
        pytest.fail("REDIS_URL must configure the Redis channel layer for this test")
    with daphne_processes(2, redis_url=redis_url, extra_env=recordings_dirs) as (first, second):
        yield first, second


class Participant:
    """A participant's websocket: every frame kept in order, so a test can wait for one without losing others."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.seen = 0
        self.closed: int | None = None
        self.arrived = asyncio.Event()
        self.reader = asyncio.get_running_loop().create_task(self._read())
        self.id = 0
        self.recorder: RecorderClient | None = None

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                self.frames.append(json.loads(message.data))
                self.arrived.set()
        self.closed = self.ws.close_code
        self.arrived.set()

    async def next(self, kind: str, timeout: float = 30) -> dict[str, Any]:
        """The next frame of `kind` after the last one taken (frames of other kinds stay readable)."""

        async def find() -> dict[str, Any]:
            while True:
                for index in range(self.seen, len(self.frames)):
                    if self.frames[index]["type"] == kind:
                        self.seen = index + 1
                        return self.frames[index]
                if self.closed is not None:
                    raise AssertionError(f"closed {self.closed} before {kind}: {self.frames[self.seen :]}")
                self.arrived.clear()
                await self.arrived.wait()

        try:
            return await asyncio.wait_for(find(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {kind} in {timeout} s; then: {self.frames[self.seen :]}") from None

    async def close_code(self, timeout: float = 30) -> int | None:
        await asyncio.wait_for(self.reader, timeout)
        return self.closed

    async def send(self, message_type: str, **fields: Any) -> None:
        await self.ws.send_str(json.dumps({"v": 1, "type": message_type, **fields}))

    async def connect_recorder(self, recording: str, client: RecorderClient | None = None) -> None:
        """What a page does on `recording_started`: one send-only connection to the recorder."""
        self.recorder = client or RecorderClient()
        await self.send("recording_offer", recording=recording, sdp=await self.recorder.offer())
        answer = await self.next("recording_answer")
        assert answer["recording"] == recording
        await self.recorder.accept(answer["sdp"])


async def _join(http: aiohttp.ClientSession, port: int, path: str, cookie: str) -> Participant:
    ws = await http.ws_connect(
        f"ws://127.0.0.1:{port}{path}", headers={"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"}
    )
    participant = Participant(ws)
    participant.id = (await participant.next("welcome"))["participant"]
    return participant


async def _in_call(http, ports, path, cookies) -> tuple[Participant, Participant]:
    doctor = await _join(http, ports[0], path, cookies["practitioner"])
    patient = await _join(http, ports[1], path, cookies["patient"])
    await doctor.next("waiting")
    await doctor.send("admit", participant=patient.id)
    await patient.next("admitted")
    return doctor, patient


def _stored(recording_id: str, timeout: float = 90) -> Recording:
    deadline = time.monotonic() + timeout
    while True:
        recording = Recording.objects.get(public_id=recording_id)
        if recording.status in (RecordingStatus.STORED, RecordingStatus.FAILED):
            return recording
        assert time.monotonic() < deadline, f"recording not stored: {recording.status}"
        time.sleep(0.3)


def _trail(action: AuditAction, **details: Any) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, **{f"details__{k}": v for k, v in details.items()}))


def test_consented_recording_across_two_processes(personas, daphnes, client, login_as):
    visit = hosted_visit(personas)  # the practitioner is in the patient's care team
    extra = add_participants(visit, personas)
    cookies = {
        "practitioner": signed_in_cookie(personas.practitioner),
        "patient": signed_in_cookie(personas.patient),
        "consulted": extra["consulted"],
    }
    connections.close_all()
    path = visit.path
    ids: dict[str, Any] = {}

    async def scenario() -> None:
        async with aiohttp.ClientSession() as http:
            doctor, patient = await _in_call(http, daphnes, path, cookies)
            specialist = await _join(http, daphnes[1], path, cookies["consulted"])
            await doctor.next("peer_joined")
            everyone = (doctor, patient, specialist)

            # A patient cannot start a recording.
            await patient.send("recording_start", kind="video")
            assert (await patient.next("error")) == {
                "v": 1,
                "type": "error",
                "code": "forbidden",
                "about": "recording_start",
            }

            # Without the patient's stored consent the host's request is refused at once.
            await doctor.send("recording_start", kind="video")
            error = await doctor.next("error")
            assert error["code"] == "no_recording_consent" and error["about"] == "recording_start"
            await asyncio.to_thread(in_thread(decide_recording), personas, visit.patient)

            # With it, the specialist in the call is asked, and refuses: it never starts.
            await doctor.send("recording_start", kind="video")
            for someone in everyone:
                asked = await someone.next("recording_requested")
                assert asked["kind"] == "video" and asked["by"] == doctor.id and asked["awaiting"] == [specialist.id]
            await specialist.send("recording_refuse", recording=asked["recording"])
            for someone in everyone:
                refused = await someone.next("recording_refused")
                assert refused == {
                    "v": 1,
                    "type": "recording_refused",
                    "recording": asked["recording"],
                    "by": specialist.id,
                }
            ids["refused"] = asked["recording"]

            # Asked again, the specialist agrees: it starts, and everybody is told who is recorded.
            await doctor.send("recording_start", kind="video")
            asked = await specialist.next("recording_requested")
            await specialist.send("recording_agree", recording=asked["recording"])
            for someone in everyone:
                started = await someone.next("recording_started")
                assert started["recording"] == asked["recording"] and started["kind"] == "video"
                assert sorted(started["participants"]) == sorted(p.id for p in everyone)
            ids["recording"] = asked["recording"]
            ids["participants"] = sorted(p.id for p in everyone)

            # Each page connects to the recorder (on the practitioner's process, whatever process it is on).
            await asyncio.gather(*(someone.connect_recorder(asked["recording"]) for someone in everyone))
            # A page's new connection (a reload, a reconnect) replaces its previous one, in the same file.
            replacement = RecorderClient()
            await doctor.send("recording_offer", recording=asked["recording"], sdp=await replacement.offer())
            await replacement.accept((await doctor.next("recording_answer"))["sdp"])
            await doctor.recorder.close()
            doctor.recorder = replacement
            for someone in everyone:
                await someone.recorder.until_sent("video", 150)
                await someone.recorder.until_sent("audio", 150)

            await doctor.send("recording_stop")
            for someone in everyone:
                stopped = await someone.next("recording_stopped")
                assert stopped["recording"] == asked["recording"] and stopped["reason"] == "host"
            # An offer for a recording that is over is refused, and the connection stays.
            await patient.send("recording_offer", recording=asked["recording"], sdp="v=0\r\n")
            assert (await patient.next("error"))["code"] == "no_recording"
            for someone in everyone:
                await someone.recorder.close()
            await doctor.send("end")
            for someone in everyone:
                assert await someone.close_code() == 4410

    run_in_own_loop(lambda: asyncio.wait_for(scenario(), 240))

    refused = Recording.objects.get(public_id=ids["refused"])
    assert refused.status == RecordingStatus.REFUSED and refused.stop_reason == "refused"
    assert Recording.objects.filter(status=RecordingStatus.REFUSED, stop_reason="no_recording_consent").count() == 1

    recording = _stored(ids["recording"])
    assert recording.status == RecordingStatus.STORED, recording.stop_reason
    encounter = Encounter.objects.get(appointment_ref=str(visit.appointment.public_id))
    assert recording.encounter_id == encounter.pk and recording.visit.appointment_id == visit.appointment.pk
    assert recording.kind == "video" and recording.stop_reason == "host"
    assert recording.started_by_id == personas.practitioner.pk
    assert recording.started_at <= recording.stopped_at <= recording.stored_at
    assert sorted(recording.participants) == ids["participants"]

    # At rest: ciphertext only — no container magic, not decodable — whose size and SHA-256 the row holds.
    sealed = ciphertext(recording)
    assert len(sealed) == recording.size and hashlib.sha256(sealed).hexdigest() == recording.sha256
    assert MATROSKA_MAGIC not in sealed[:64] and sealed[:4] == b"TCF1"
    with pytest.raises(av.FFmpegError):
        decode(sealed)
    # The file key is kept encrypted by the keyring's data key (key rotation re-encrypts it with the others).
    with connection.cursor() as cursor:
        cursor.execute("SELECT file_key FROM video_recording WHERE id = %s", [recording.pk])
        raw = bytes(cursor.fetchone()[0])
    assert crypto.key_id_of(raw) == crypto.keyring().active_key_id() == recording_data_key_id(recording)
    assert base64.b64decode(recording.file_key) not in raw

    # Decrypted: a Matroska file with the three participants' pictures and sound, decoded frame by frame.
    media = plaintext(recording)
    assert media[:4] == MATROSKA_MAGIC
    decoded = decode(media)
    assert decoded.video_streams == 3 and decoded.audio_streams == 3, decoded
    assert decoded.video_frames > 30 and decoded.audio_frames > 30, decoded
    # Nothing in plaintext is left behind.
    scratch = recording_scratch()
    assert not [name for name in os.listdir(scratch) if name.startswith("rec-")]

    # Retrieval: the care team's practitioner downloads it decrypted (no-store, the opaque id only in the URL);
    # the outsider, the patient and anyone with a made-up id get the same 404. Every attempt is in the trail.
    url = f"/visit/recordings/{recording.public_id}/"
    for outsider in (personas.outsider, personas.patient, personas.coordinator):
        login_as(outsider)
        assert client.get(url).status_code == 404
    login_as(personas.practitioner)
    room = client.get(f"/visit/{visit.appointment.public_id}/room/").content.decode()
    assert f'href="{url}"' in room and "Grabaciones de esta teleconsulta" in room
    listed = _trail(AuditAction.RECORDING_LISTED)
    assert len(listed) == 1 and listed[0].outcome == Outcome.SUCCESS
    assert listed[0].details == {"recordings": [str(recording.public_id)], "via": "care_relationship"}
    assert client.get("/visit/recordings/6f1c0000-0000-4000-8000-000000000000/").status_code == 404
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "video/x-matroska"
    assert "no-store" in response["Cache-Control"] and "attachment" in response["Content-Disposition"]
    assert b"".join(response.streaming_content) == media
    accesses = AuditEvent.objects.filter(action=AuditAction.RECORDING_ACCESSED).order_by("pk")
    # (Patients and coordinators are turned away by role before the gate, as on every practitioners' page.)
    assert [(a.outcome, a.details["found"] if a.outcome == Outcome.DENIED else None) for a in accesses] == [
        (Outcome.DENIED, True),
        (Outcome.DENIED, False),
        (Outcome.SUCCESS, None),
    ]
    assert accesses.first().actor_user_id == personas.outsider.pk
    assert accesses.last().actor_user_id == personas.practitioner.pk
    assert accesses.last().patient_id == visit.patient.pk
    assert accesses.last().details == {
        "recording": str(recording.public_id),
        "via": "care_relationship",
        "encounter": encounter.pk,
    }
    # Key rotation covers it: the file key moves to the new data key, the file itself is untouched and decrypts.
    before = recording_data_key_id(recording)
    fresh = keyrotation.introduce_new_key()
    column = next(c for c in keyrotation.encrypted_columns() if c.label == "video.Recording.file_key")
    assert keyrotation.reencrypt_column(column) == 1
    recording.refresh_from_db()
    assert recording_data_key_id(recording) == fresh.pk != before
    assert ciphertext(recording) == sealed and plaintext(recording) == media

    # A recording row is never deleted.
    with pytest.raises(Exception, match="never deleted"), transaction.atomic():
        Recording.objects.filter(pk=recording.pk).delete()

    # The trail: asked three times, refused twice (the consent, the specialist), agreed, started, stopped, stored.
    assert len(_trail(AuditAction.RECORDING_REQUESTED)) == 3
    denied = _trail(AuditAction.RECORDING_REFUSED, reason="no_recording_consent")
    assert len(denied) == 1 and denied[0].outcome == Outcome.DENIED
    assert sorted(denied[0].details["missing"]) == ["recording_audio", "recording_video"]
    assert len(_trail(AuditAction.RECORDING_REFUSED, reason="refused", recording=ids["refused"])) == 1
    assert len(_trail(AuditAction.RECORDING_AGREED, recording=ids["recording"])) == 1
    started = _trail(AuditAction.RECORDING_STARTED, recording=ids["recording"])
    assert len(started) == 1 and started[0].actor_user_id == personas.practitioner.pk
    assert len(_trail(AuditAction.RECORDING_STOPPED, recording=ids["recording"], reason="host")) == 1
    assert len(_trail(AuditAction.RECORDING_STORED, recording=ids["recording"], sha256=recording.sha256)) == 1


def recording_scratch() -> str:
    from django.conf import settings

    return str(settings.RECORDINGS_TMP_DIR)


def test_revoking_the_consent_stops_the_recording_and_keeps_what_was_recorded(personas, daphnes):
    visit = make_visit(personas)
    decide_recording(personas, visit.patient, (ConsentKind.RECORDING_AUDIO,))
    cookies = {"practitioner": signed_in_cookie(personas.practitioner), "patient": signed_in_cookie(personas.patient)}
    connections.close_all()
    ids: dict[str, Any] = {}

    async def scenario() -> None:
        async with aiohttp.ClientSession() as http:
            doctor, patient = await _in_call(http, daphnes, visit.path, cookies)
            # Consent to audio only: a video recording is refused, an audio one starts at once (no other staff).
            await doctor.send("recording_start", kind="video")
            assert (await doctor.next("error"))["code"] == "no_recording_consent"
            await doctor.send("recording_start", kind="audio")
            started = await patient.next("recording_started")
            assert started["kind"] == "audio" and (await doctor.next("recording_started")) == started
            ids["recording"] = started["recording"]
            await asyncio.gather(
                doctor.connect_recorder(started["recording"]), patient.connect_recorder(started["recording"])
            )
            for someone in (doctor, patient):
                await someone.recorder.until_sent("audio", 150)

            # The patient revokes the audio recording consent (on the consent page, i.e. another process).
            await asyncio.to_thread(
                in_thread(decide_recording),
                personas,
                visit.patient,
                (ConsentKind.RECORDING_AUDIO,),
                decision=Decision.REVOKE,
            )
            for someone in (doctor, patient):
                stopped = await someone.next("recording_stopped")
                assert stopped == {
                    "v": 1,
                    "type": "recording_stopped",
                    "recording": started["recording"],
                    "reason": "consent_revoked",
                }
            # And it cannot start again.
            await doctor.send("recording_start", kind="audio")
            assert (await doctor.next("error"))["code"] == "no_recording_consent"
            for someone in (doctor, patient):
                await someone.recorder.close()
            await doctor.send("end")
            await doctor.close_code()

    run_in_own_loop(lambda: asyncio.wait_for(scenario(), 180))
    recording = _stored(ids["recording"])
    assert recording.status == RecordingStatus.STORED and recording.stop_reason == "consent_revoked"
    decoded = decode(plaintext(recording))
    assert decoded.video_streams == 0 and decoded.audio_streams == 2 and decoded.audio_frames > 30, decoded
    assert len(_trail(AuditAction.RECORDING_STOPPED, recording=ids["recording"], reason="consent_revoked")) == 1


def test_the_host_leaving_stops_and_finalises_it(personas, daphnes):
    visit = make_visit(personas)
    decide_recording(personas, visit.patient)
    cookies = {"practitioner": signed_in_cookie(personas.practitioner), "patient": signed_in_cookie(personas.patient)}
    connections.close_all()
    ids: dict[str, Any] = {}

    async def scenario() -> None:
        async with aiohttp.ClientSession() as http:
            doctor, patient = await _in_call(http, daphnes, visit.path, cookies)
            await doctor.send("recording_start", kind="video")
            started = await patient.next("recording_started")
            ids["recording"] = started["recording"]
            await asyncio.gather(*(p.connect_recorder(started["recording"]) for p in (doctor, patient)))
            for someone in (doctor, patient):
                await someone.recorder.until_sent("video", 100)
            # The practitioner's page goes away (closed tab) and does not come back within the reconnect grace:
            # then, with the departure (announced by the process that saw the drop, the recorder's), the recording
            # stops; the recorder, in that process, finalises anyway.
            await doctor.ws.close()
            stopped = await patient.next("recording_stopped")
            assert stopped == {
                "v": 1,
                "type": "recording_stopped",
                "recording": ids["recording"],
                "reason": "host_left",
            }
            kinds = [frame["type"] for frame in patient.frames]
            assert kinds.index("peer_left") < kinds.index("recording_stopped"), kinds
            for someone in (doctor, patient):
                await someone.recorder.close()
            await patient.ws.close()

    run_in_own_loop(lambda: asyncio.wait_for(scenario(), 180))
    recording = _stored(ids["recording"])
    assert recording.status == RecordingStatus.STORED and recording.stop_reason == "host_left"
    decoded = decode(plaintext(recording))
    assert decoded.video_streams == 2 and decoded.video_frames > 10 and decoded.audio_frames > 10, decoded


# Y, U, V of the synthetic cameras: a green picture with a white block, and a magenta one with a white block.
GREEN, MAGENTA, WHITE = (150, 44, 21), (105, 212, 234), (235, 128, 128)


def _green(rgb: tuple[int, int, int]) -> bool:
    return rgb[1] > rgb[0] + 60 and rgb[1] > rgb[2] + 60


def _magenta(rgb: tuple[int, int, int]) -> bool:
    return rgb[0] > rgb[1] + 60 and rgb[2] > rgb[1] + 60


def _white(rgb: tuple[int, int, int]) -> bool:
    return min(rgb) > 200


def test_a_page_reloaded_mid_recording_goes_on_in_the_same_file(personas, daphnes):
    """The patient's page reloads while the visit is recorded (its websocket and its recorder connection go; a new
    page comes, on the other process): told again, it connects to the recorder again and what it sends from then
    on is in the same file, in the patient's own streams. Its camera is a portrait one: the file keeps its shape."""
    visit = make_visit(personas)
    decide_recording(personas, visit.patient)
    cookies = {"practitioner": signed_in_cookie(personas.practitioner), "patient": signed_in_cookie(personas.patient)}
    connections.close_all()
    ids: dict[str, Any] = {}

    async def scenario() -> None:
        async with aiohttp.ClientSession() as http:
            doctor, patient = await _in_call(http, daphnes, visit.path, cookies)
            ids["patient"], ids["doctor"] = patient.id, doctor.id
            await doctor.send("recording_start", kind="video")
            started = await patient.next("recording_started")
            await doctor.next("recording_started")
            ids["recording"] = started["recording"]
            await asyncio.gather(
                doctor.connect_recorder(started["recording"]),
                patient.connect_recorder(
                    started["recording"], RecorderClient(video=ColourTrack(320, 240, GREEN, WHITE))
                ),
            )
            await patient.recorder.until_sent("video", 60)

            # The reload: the old page's connections end with it.
            await patient.recorder.close()
            await patient.ws.close()
            back = await _join(http, daphnes[0], visit.path, cookies["patient"])
            if back.frames[0].get("state") == "waiting":
                await doctor.next("waiting")
                await doctor.send("admit", participant=back.id)
                await back.next("admitted")
            again = await back.next("recording_started")
            assert again["recording"] == started["recording"] and back.id in again["participants"]
            # A portrait camera (a phone held upright) this time.
            await back.connect_recorder(again["recording"], RecorderClient(video=ColourTrack(180, 320, MAGENTA, WHITE)))
            await back.recorder.until_sent("video", 60)
            await back.recorder.until_sent("audio", 150)

            await doctor.send("recording_stop")
            await back.next("recording_stopped")
            for client in (doctor.recorder, back.recorder):
                await client.close()
            await doctor.send("end")
            await doctor.close_code()

    run_in_own_loop(lambda: asyncio.wait_for(scenario(), 180))
    recording = _stored(ids["recording"])
    assert recording.status == RecordingStatus.STORED, recording.stop_reason
    assert sorted(recording.participants) == sorted([ids["doctor"], ids["patient"]])
    streams = frames_by_stream(plaintext(recording))
    assert sorted(streams) == sorted(
        f"participant {p} {kind}" for p in (ids["doctor"], ids["patient"]) for kind in ("audio", "video")
    )
    pictures = streams[f"participant {ids['patient']} video"]
    middle = [(frame.time, rgb_at(frame, 320, 100)) for frame in pictures]
    before = [at for at, rgb in middle if _green(rgb)]
    after = [at for at, rgb in middle if _magenta(rgb)]
    # The patient's pictures before the reload and after it, in that order, in the same stream.
    assert len(before) > 10 and len(after) > 10, (len(before), len(after), len(pictures))
    assert max(before) < min(after)
    # Sound after the reload too.
    sound = streams[f"participant {ids['patient']} audio"]
    assert sum(1 for frame in sound if frame.time > min(after)) > 50
    # The portrait picture kept its shape: fitted to the frame's height with black bars at the sides, its square
    # block still square (squeezed to 640×360 it would be over three times wider than high).
    last = next(frame for frame in reversed(pictures) if _magenta(rgb_at(frame, 320, 100)))
    assert max(rgb_at(last, 20, 180)) < 40 and max(rgb_at(last, 620, 180)) < 40
    width, height = block_extent(last, _white)
    assert height > 55 and abs(width - height) <= 6, (width, height)


def test_a_host_back_on_the_other_process_within_the_grace_goes_on_recording(personas, daphnes):
    """The practitioner who started the recording (its recorder in their process) loses their websocket and comes
    back within the reconnect grace on the other process: the recording is not stopped, the new connection is told
    it runs, the page connects to the recorder again through that process, and the practitioner's pictures from
    before and after are in their own stream of the same file."""
    visit = make_visit(personas)
    decide_recording(personas, visit.patient)
    cookies = {"practitioner": signed_in_cookie(personas.practitioner), "patient": signed_in_cookie(personas.patient)}
    connections.close_all()
    ids: dict[str, Any] = {}

    async def scenario() -> None:
        async with aiohttp.ClientSession() as http:
            doctor, patient = await _in_call(http, daphnes, visit.path, cookies)
            ids["doctor"], ids["patient"] = doctor.id, patient.id
            await doctor.send("recording_start", kind="video")
            started = await patient.next("recording_started")
            await doctor.next("recording_started")
            ids["recording"] = started["recording"]
            await asyncio.gather(
                doctor.connect_recorder(
                    started["recording"], RecorderClient(video=ColourTrack(320, 240, GREEN, WHITE))
                ),
                patient.connect_recorder(started["recording"]),
            )
            await doctor.recorder.until_sent("video", 60)

            # The drop (no leave), and the practitioner back on the other process within the grace.
            await doctor.ws.close()
            back = await _join(http, daphnes[1], visit.path, cookies["practitioner"])
            assert back.id == doctor.id
            again = await back.next("recording_started")
            assert again == started
            resumed = await patient.next("peer_joined")
            assert resumed["participant"] == doctor.id and resumed.get("resumed") is True
            # The page's recorder connection again (a reloaded page's, with another camera this time): its offer
            # goes through this process to the recorder in the first one.
            await doctor.recorder.close()
            await back.connect_recorder(again["recording"], RecorderClient(video=ColourTrack(320, 240, MAGENTA, WHITE)))
            await back.recorder.until_sent("video", 60)
            await back.recorder.until_sent("audio", 150)

            await back.send("recording_stop")
            stopped = await patient.next("recording_stopped")
            assert stopped["reason"] == "host"
            # Nothing else stopped it meanwhile, and the patient never heard the host leave.
            assert [f for f in patient.frames if f["type"] in ("recording_stopped", "peer_left")] == [stopped]
            for client in (back.recorder, patient.recorder):
                await client.close()
            await back.send("end")
            await back.close_code()

    run_in_own_loop(lambda: asyncio.wait_for(scenario(), 180))
    recording = _stored(ids["recording"])
    assert recording.status == RecordingStatus.STORED and recording.stop_reason == "host", recording.stop_reason
    assert sorted(recording.participants) == sorted([ids["doctor"], ids["patient"]])
    assert not _trail(AuditAction.RECORDING_STOPPED, recording=ids["recording"], reason="host_left")
    streams = frames_by_stream(plaintext(recording))
    pictures = streams[f"participant {ids['doctor']} video"]
    middle = [(frame.time, rgb_at(frame, 320, 60)) for frame in pictures]
    before = [at for at, rgb in middle if _green(rgb)]
    after = [at for at, rgb in middle if _magenta(rgb)]
    assert len(before) > 10 and len(after) > 10, (len(before), len(after), len(pictures))
    assert max(before) < min(after)
    sound = streams[f"participant {ids['doctor']} audio"]
    assert sum(1 for frame in sound if frame.time > min(after)) > 50


def _daphne_pid(port: int) -> int:
    """The id of the daphne process this test started listening on `port` (read from /proc)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                args = cmdline.read().split(b"\0")
        except OSError:
            continue
        if b"teleconsult.asgi:application" in args and str(port).encode() in args:
            return int(entry)
    raise AssertionError(f"no daphne process on port {port}")


def test_a_recorder_whose_process_died_is_stopped_as_lost(personas, daphnes):
    """The daphne process holding the recorder (the host's) dies; the host comes back on the other process within
    the grace, so nothing stops the recording there. The recorder's beats have stopped: the periodic sweep stops it
    for everyone (recorder_lost), the row is failed, and the plaintext the dead process left is swept."""
    visit = make_visit(personas)
    decide_recording(personas, visit.patient)
    cookies = {"practitioner": signed_in_cookie(personas.practitioner), "patient": signed_in_cookie(personas.patient)}
    connections.close_all()
    ids: dict[str, Any] = {}

    def sweep(recording_id: str) -> None:
        from datetime import timedelta

        from django.utils import timezone

        from scheduling.signals import periodic_upkeep

        # As if the sweep ran a minute later (the dead recorder beats no more).
        Recording.objects.filter(public_id=recording_id).update(recorder_seen_at=timezone.now() - timedelta(minutes=1))
        periodic_upkeep.send(sender=None)

    async def scenario() -> None:
        async with aiohttp.ClientSession() as http:
            doctor, patient = await _in_call(http, daphnes, visit.path, cookies)
            await doctor.send("recording_start", kind="audio")
            started = await patient.next("recording_started")
            ids["recording"] = started["recording"]
            await asyncio.gather(*(p.connect_recorder(started["recording"]) for p in (doctor, patient)))
            await patient.recorder.until_sent("audio", 100)

            os.killpg(_daphne_pid(daphnes[0]), signal.SIGKILL)
            await doctor.close_code()
            back = await _join(http, daphnes[1], visit.path, cookies["practitioner"])
            assert (await back.next("recording_started")) == started  # the row still says it records

            await asyncio.to_thread(in_thread(sweep), started["recording"])
            for someone in (back, patient):
                stopped = await someone.next("recording_stopped")
                assert stopped == {
                    "v": 1,
                    "type": "recording_stopped",
                    "recording": started["recording"],
                    "reason": "recorder_lost",
                }
            for someone in (doctor, patient):
                await someone.recorder.close()
            await back.send("end")
            await back.close_code()

    run_in_own_loop(lambda: asyncio.wait_for(scenario(), 180))
    recording = Recording.objects.get(public_id=ids["recording"])
    assert recording.status == RecordingStatus.FAILED and recording.stop_reason == "recorder_lost"
    assert recording.file_name == "" and recording.file_key is None
    assert len(_trail(AuditAction.RECORDING_FAILED, recording=ids["recording"], reason="recorder_lost")) == 1
    # The dead process's plaintext is left, and goes once nobody has written to it for ten minutes.
    scratch = recording_scratch()
    left = [name for name in os.listdir(scratch) if name.startswith("rec-")]
    assert len(left) == 1
    assert plaintext_sweep(now=time.time() + ORPHAN_AFTER_SECONDS + 1) == 1
    assert not [name for name in os.listdir(scratch) if name.startswith("rec-")]
