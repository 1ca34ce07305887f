"""Recording in Debian's Chromium with fake camera and microphone, through a real daphne process: the practitioner
starts it from the room, the patient's page says "Grabando" (a live region; axe-core checks the page with it),
both pages send their media to the recorder, the practitioner stops it, and what is stored is an encrypted file
that decrypts to decodable video and audio."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest

from audit.actions import AuditAction
from audit.models import AuditEvent
from tests.browser_checks import assert_accessible
from tests.video.call_network_support import launch_chromium
from tests.video.daphne_processes import daphne_processes
from tests.video.recording_support import ciphertext, decide_recording, decode, frames_by_stream, plaintext
from tests.video.signalling_support import signed_in_cookie
from tests.video.test_call_browser import STATS, _page, _wait_for_media, wait_then_admit
from tests.video.test_call_pages import hosted_visit
from tests.video.test_recording_daphne import recordings_dirs  # noqa: F401 - a fixture
from video.models import Recording, RecordingStatus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def daphne(redis_url, recordings_dirs) -> Iterator[str]:  # noqa: F811 - the fixture imported above
    """One daphne process on this test's database and Redis, writing recordings where the test reads them."""
    with daphne_processes(1, redis_url=redis_url, extra_env=recordings_dirs) as (port,):
        yield f"http://127.0.0.1:{port}"


def _until(page, check, what: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        stats = page.evaluate(STATS)
        if check(stats):
            return stats
        assert time.monotonic() < deadline, f"{what}: {stats}"
        time.sleep(0.3)


def test_the_practitioner_records_and_the_patient_sees_it(browser, personas, daphne):
    visit = hosted_visit(personas)
    decide_recording(personas, visit.patient)
    public_id = visit.appointment.public_id
    patient = _page(browser, daphne, signed_in_cookie(personas.patient))
    practitioner = _page(browser, daphne, signed_in_cookie(personas.practitioner))
    try:
        wait_then_admit(patient, practitioner, public_id)
        patient.locator("[data-call-stage]").wait_for(state="visible")
        _wait_for_media(patient)
        _wait_for_media(practitioner)
        # Nothing is being recorded: no indicator, and no start button for the patient.
        assert patient.locator("[data-recording-status]").inner_text() == ""
        assert patient.get_by_role("button", name="Grabar video y audio").count() == 0

        practitioner.get_by_role("button", name="Grabar video y audio").click()
        indicator = patient.get_by_role("status").filter(has_text="Grabando (video y audio)")
        indicator.wait_for()
        assert indicator.get_attribute("aria-live") == "polite"
        practitioner.get_by_role("status").filter(has_text="Grabando (video y audio)").wait_for()
        assert practitioner.get_by_role("button", name="Detener la grabación").is_visible()
        assert not practitioner.get_by_role("button", name="Grabar video y audio").is_visible()
        assert_accessible(patient, context="patient while recording")
        assert_accessible(practitioner, context="practitioner while recording")

        # Both pages connect to the recorder; the call goes on meanwhile (a few seconds of it are recorded).
        for page in (patient, practitioner):
            _until(page, lambda s: s["recording"]["connection"] == "connected", "recorder connection")
        frames = _wait_for_media(practitioner)["framesDecoded"]
        _wait_for_media(practitioner, frames_above=frames + 72)

        # The practitioner's websocket drops and comes back (within the server's reconnect grace): the recording
        # goes on — both indicators stay on through and past the grace, the practitioner's page keeps its
        # recorder connection, which goes on sending.
        recording_id = practitioner.evaluate(STATS)["recording"]["id"]
        sent = practitioner.evaluate(STATS)["recording"]["sent"]["audio"]
        practitioner.evaluate("() => window.teleconsultCall.dropSocket()")
        dropped_at = time.monotonic()
        while time.monotonic() - dropped_at < 7 or practitioner.evaluate(STATS)["welcomes"] < 2:
            assert time.monotonic() - dropped_at < 25, "the practitioner's websocket did not come back"
            for page in (patient, practitioner):
                shown = page.evaluate(STATS)["recording"]
                assert shown["id"] == recording_id and shown["indicator"] == "Grabando (video y audio)", shown
            time.sleep(0.3)
        stats = _until(practitioner, lambda s: s["recording"]["sent"]["audio"] > sent + 150, "sound goes on")
        assert stats["recording"]["id"] == recording_id and stats["recording"]["connection"] == "connected"

        practitioner.get_by_role("button", name="Detener la grabación").click()
        patient.locator("[data-call-notice]").get_by_text("La grabación se detuvo.").wait_for()
        _until(patient, lambda s: s["recording"]["indicator"] == "", "indicator gone")
        practitioner.get_by_role("button", name="Grabar video y audio").wait_for()
    finally:
        patient.context.close()
        practitioner.context.close()

    deadline = time.monotonic() + 90
    while not Recording.objects.filter(status__in=[RecordingStatus.STORED, RecordingStatus.FAILED]).exists():
        assert time.monotonic() < deadline, "the recording was not stored"
        time.sleep(0.3)
    recording = Recording.objects.get()
    assert recording.status == RecordingStatus.STORED, recording.stop_reason
    assert ciphertext(recording)[:4] == b"TCF1"
    decoded = decode(plaintext(recording))
    assert decoded.video_streams == 2 and decoded.audio_streams == 2, decoded
    assert decoded.video_frames > 20 and decoded.audio_frames > 50, decoded
    assert AuditEvent.objects.filter(action=AuditAction.RECORDING_STARTED).count() == 1
    assert AuditEvent.objects.filter(action=AuditAction.RECORDING_STOPPED, details__reason="host").count() == 1


def _stored_recording() -> Recording:
    deadline = time.monotonic() + 90
    while not Recording.objects.filter(status__in=[RecordingStatus.STORED, RecordingStatus.FAILED]).exists():
        assert time.monotonic() < deadline, "the recording was not stored"
        time.sleep(0.3)
    return Recording.objects.get()


@pytest.fixture
def three_cameras(browser) -> Iterator[object]:
    """Chromium whose fake capture has three cameras (1 is a 16-bit depth one that WebRTC does not encode)."""
    other = launch_chromium(browser, extra_args=("--use-fake-device-for-media-stream=device-count=3",))
    try:
        yield other
    finally:
        other.close()


def _sent_grows(page, kind: str, by: int, what: str) -> dict:
    before = page.evaluate(STATS)["recording"]["sent"][kind]
    return _until(page, lambda s: s["recording"]["sent"][kind] > before + by, what)


def test_the_recorder_follows_camera_switch_screen_share_and_audio_only(browser, three_cameras, personas, daphne):
    """During a video recording the recorder connection follows what each page sends the others: the patient's
    camera switch, the practitioner's screen share and its end, audio-only (no more pictures, the sound goes on)
    and back to video. The file shows the audio-only stretch as a hole in the pictures, none in the sound."""
    visit = hosted_visit(personas)
    decide_recording(personas, visit.patient)
    public_id = visit.appointment.public_id
    patient = _page(three_cameras, daphne, signed_in_cookie(personas.patient))
    practitioner = _page(browser, daphne, signed_in_cookie(personas.practitioner))
    try:
        wait_then_admit(patient, practitioner, public_id)
        _wait_for_media(practitioner)
        practitioner.get_by_role("button", name="Grabar video y audio").click()
        stats = _until(
            practitioner,
            lambda s: s["recording"]["connection"] == "connected" and s["recording"]["sent"]["video"] > 50,
            "pictures to the recorder",
        )
        me = stats["me"]
        assert stats["recording"]["video"] == "camera"

        # The patient switches camera, twice: the recorder's picture follows (the third camera's frames go out).
        _until(patient, lambda s: s["recording"]["videoLabel"] == "fake_device_0", "the patient's first camera")
        for camera in ("fake_device_1", "fake_device_2"):
            patient.get_by_role("button", name="Cambiar de cámara").click()
            _until(patient, lambda s, c=camera: s["recording"]["videoLabel"] == c, f"the recorder's picture: {camera}")
        _sent_grows(patient, "video", 30, "pictures of the other camera to the recorder")

        # The practitioner shares the screen, then stops: the recorder gets the screen, then the camera again.
        practitioner.get_by_role("button", name="Compartir pantalla").click()
        _until(practitioner, lambda s: s["recording"]["video"] == "screen", "the screen to the recorder")
        _sent_grows(practitioner, "video", 30, "pictures of the screen to the recorder")
        practitioner.get_by_role("button", name="Dejar de compartir pantalla").click()
        _until(practitioner, lambda s: s["recording"]["video"] == "camera", "the camera again to the recorder")

        practitioner.get_by_role("button", name="Solo audio").click()
        stats = _until(practitioner, lambda s: s["recording"]["video"] is None, "no picture to the recorder")
        pictures, sound = stats["recording"]["sent"]["video"], stats["recording"]["sent"]["audio"]
        # Three seconds of sound (50 packets a second) with no picture.
        stats = _until(practitioner, lambda s: s["recording"]["sent"]["audio"] > sound + 150, "sound goes on")
        assert stats["recording"]["sent"]["video"] <= pictures + 5, (pictures, stats["recording"])

        practitioner.get_by_role("button", name="Volver al video").click()
        stats = _until(practitioner, lambda s: s["recording"]["video"] == "camera", "the picture again")
        resumed = stats["recording"]["sent"]["video"]
        _until(practitioner, lambda s: s["recording"]["sent"]["video"] > resumed + 50, "pictures again")

        practitioner.get_by_role("button", name="Detener la grabación").click()
        practitioner.get_by_role("button", name="Grabar video y audio").wait_for()
    finally:
        patient.context.close()
        practitioner.context.close()

    recording = _stored_recording()
    assert recording.status == RecordingStatus.STORED, recording.stop_reason
    streams = frames_by_stream(plaintext(recording))
    pictures_at = [float(frame.time) for frame in streams[f"participant {me} video"]]
    sound_at = [float(frame.time) for frame in streams[f"participant {me} audio"]]

    def longest_gap(times: list[float]) -> tuple[float, float]:
        return max(((later - earlier), earlier) for earlier, later in itertools.pairwise(times))

    hole, hole_from = longest_gap(pictures_at)
    # No picture for the audio-only stretch (three seconds of sound at least), pictures before and after it.
    assert hole > 2.5, hole
    assert any(at < hole_from for at in pictures_at) and any(at > hole_from + hole for at in pictures_at)
    # The sound went on through it.
    assert longest_gap(sound_at)[0] < 1.0, longest_gap(sound_at)
    assert sound_at[0] < hole_from and sound_at[-1] > hole_from + hole


def test_the_host_records_again_with_someone_who_came_in_after_the_start(browser, personas, daphne):
    """The patient is out of the call when the practitioner starts an audio recording; let in again, the patient's
    page says it is being recorded, and the practitioner's says the patient is not in it, with one button that
    records again with everyone: the old recording stops, a new one starts, and the patient's page sends to it."""
    visit = hosted_visit(personas)
    decide_recording(personas, visit.patient)
    public_id = visit.appointment.public_id
    patient = _page(browser, daphne, signed_in_cookie(personas.patient))
    practitioner = _page(browser, daphne, signed_in_cookie(personas.practitioner))
    try:
        wait_then_admit(patient, practitioner, public_id)
        _wait_for_media(patient)
        patient.get_by_role("button", name="Salir").click()

        practitioner.get_by_role("button", name="Grabar solo el audio").click()
        practitioner.get_by_role("status").filter(has_text="Grabando (solo audio)").wait_for()
        first = _until(practitioner, lambda s: s["recording"]["connection"] == "connected", "recorder connection")

        patient.goto(f"/visit/{public_id}/waiting/")
        patient.get_by_text("Esperando a que el profesional lo admita.").wait_for()
        practitioner.get_by_role("button", name="Admitir", exact=True).click()
        # The patient is told it is recorded (even though not in this recording)...
        patient.get_by_role("status").filter(has_text="Grabando (solo audio)").wait_for()
        # ...and the practitioner that the patient is not in it, with the way to include everyone.
        practitioner.get_by_text("Paciente se unió después de iniciada la grabación y no está en ella.").wait_for()
        assert_accessible(practitioner, context="practitioner told someone is not in the recording")
        practitioner.get_by_role("button", name="Grabar de nuevo con todos").click()
        second = _until(
            practitioner,
            lambda s: (
                s["recording"]["id"] not in (None, first["recording"]["id"]) and s["recording"]["phase"] == "recording"
            ),
            "a new recording",
        )
        assert not practitioner.get_by_role("button", name="Grabar de nuevo con todos").is_visible()
        _until(
            patient,
            lambda s: s["recording"]["id"] == second["recording"]["id"] and s["recording"]["sent"]["audio"] > 100,
            "the patient's sound to the new recording",
        )
        practitioner.get_by_role("status").filter(has_text="Grabando (solo audio)").wait_for()
        practitioner.get_by_role("button", name="Detener la grabación").click()
        patient.locator("[data-call-notice]").get_by_text("La grabación se detuvo.").wait_for()
    finally:
        patient.context.close()
        practitioner.context.close()

    deadline = time.monotonic() + 90
    while Recording.objects.filter(status__in=[RecordingStatus.RECORDING, RecordingStatus.STOPPED]).exists():
        assert time.monotonic() < deadline, "the recordings were not stored"
        time.sleep(0.3)
    old, new = Recording.objects.order_by("requested_at")
    assert str(old.public_id) == first["recording"]["id"] and str(new.public_id) == second["recording"]["id"]
    assert old.stop_reason == "host" and new.status == RecordingStatus.STORED, new.stop_reason
    assert len(new.participants) == 2 and len(old.participants) == 1, (old.participants, new.participants)
