"""Recording in Debian's Chromium with fake camera and microphone, through a real daphne process: the practitioner
starts it from the room, the patient's page says "Grabando" (a live region; axe-core checks the page with it),
both pages send their media to the recorder, the practitioner stops it, and what is stored is an encrypted file
that decrypts to decodable video and audio."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.db import connection, connections

from audit.actions import AuditAction
from audit.models import AuditEvent
from tests.browser_checks import assert_accessible
from tests.video.recording_support import ciphertext, decide_recording, decode, plaintext
from tests.video.signalling_support import signed_in_cookie
from tests.video.test_call_browser import STATS, _free_port, _page, _wait_for_media
from tests.video.test_call_pages import hosted_visit
from tests.video.test_recording_daphne import recordings_dirs  # noqa: F401 - a fixture
from video.models import Recording, RecordingStatus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def daphne(redis_url, recordings_dirs) -> Iterator[str]:  # noqa: F811 - the fixture imported above
    """One daphne process on this test's database and Redis, writing recordings where the test reads them."""
    db = connection.settings_dict
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    env = (
        os.environ
        | recordings_dirs
        | {
            "DATABASE_URL": f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
            "REDIS_URL": redis_url,
            "SECRET_KEY": settings.SECRET_KEY,
            "TELECONSULT_KEK": base64.b64encode(settings.TELECONSULT_KEK).decode(),
            "TELECONSULT_AUDIT_KEY": base64.b64encode(settings.TELECONSULT_AUDIT_KEY).decode(),
            "TELECONSULT_INDEX_KEY": base64.b64encode(settings.TELECONSULT_INDEX_KEY).decode(),
            "ACCESS_LOG_LEVEL": "WARNING",
        }
    )
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "teleconsult.asgi:application"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("daphne did not start") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)
        connections.close_all()


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
        patient.goto(f"/visit/{public_id}/waiting/")
        patient.get_by_text("Esperando a que el profesional lo admita.").wait_for()
        practitioner.goto(f"/visit/{public_id}/room/")
        practitioner.get_by_role("button", name="Admitir", exact=True).click()
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
