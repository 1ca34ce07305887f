"""The waiting room's self-view, in Debian's Chromium with fake devices through a real daphne process: the
patient, on a phone-sized page, sees their own picture and a moving microphone level while waiting, with no
connection to anyone before the practitioner admits them; the camera turned off there stays off in the call
(the practitioner decodes sound but no picture, and is told the camera is off), and the call starts on the
tracks opened while waiting (no second request for the devices). A browser refusing the devices is said
clearly and the patient is still admitted (hearing and seeing the practitioner). The pre-call check's advice
of audio only opens the microphone alone; the camera can still be turned on; a waiting room hidden for long
lets the devices go and takes them again when shown; a declined patient's devices are released."""

from __future__ import annotations

import json
import time

import pytest

from tests.browser_checks import assert_accessible
from tests.video.signalling_support import signed_in_cookie
from tests.video.test_call_browser import STATS, _page, _wait_for_media, daphne  # noqa: F401
from tests.video.test_call_pages import hosted_visit

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Counts what the page asks of the browser: connections made and requests for the devices.
COUNTERS = """
(() => {
  window.connectionsMade = 0;
  window.deviceRequests = 0;
  const Original = window.RTCPeerConnection;
  window.RTCPeerConnection = function (...args) { window.connectionsMade += 1; return new Original(...args); };
  window.RTCPeerConnection.prototype = Original.prototype;
  const media = navigator.mediaDevices;
  const ask = media.getUserMedia.bind(media);
  media.getUserMedia = (constraints) => { window.deviceRequests += 1; return ask(constraints); };
})();
"""

# A browser whose devices are refused (the person said no, or a policy does).
REFUSED = """
navigator.mediaDevices.getUserMedia = () =>
  Promise.reject(new DOMException("Permission denied", "NotAllowedError"));
"""

# The page's visibility as the test sets it (a phone's other app, its screen off), and its one-minute wait before
# letting the devices go taken as a fifth of a second.
HIDEABLE = """
(() => {
  window.pageHidden = false;
  Object.defineProperty(document, "hidden", { get: () => window.pageHidden });
  Object.defineProperty(document, "visibilityState", { get: () => (window.pageHidden ? "hidden" : "visible") });
  const wait = window.setTimeout;
  window.setTimeout = (callback, ms, ...rest) => wait(callback, ms === 60000 ? 200 : ms, ...rest);
})();
"""

SET_HIDDEN = """(hidden) => {
  window.pageHidden = hidden;
  document.dispatchEvent(new Event("visibilitychange"));
}"""

PREVIEW_FRAMES = """() => {
  const video = document.querySelector("[data-preview-video]");
  return video.videoWidth > 0 ? video.getVideoPlaybackQuality().totalVideoFrames : 0;
}"""


def _phone(browser, base: str, cookie: str, *scripts: str):
    context = browser.new_context(
        locale="es-PE", base_url=base, viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True
    )
    for script in scripts:
        context.add_init_script(script)
    name, value = cookie.split("=", 1)
    context.add_cookies([{"name": name, "value": value, "url": base}])
    page = context.new_page()
    page.set_default_timeout(20_000)
    return page


def _until(page, expression: str, check, what: str, seconds: float = 20):
    deadline = time.monotonic() + seconds
    while True:
        value = page.evaluate(expression)
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: {value}")
        time.sleep(0.3)


def test_self_view_while_waiting_and_camera_off_carries_into_the_call(browser, personas, daphne):  # noqa: F811
    visit = hosted_visit(personas)
    public_id = visit.appointment.public_id
    patient = _phone(browser, daphne, signed_in_cookie(personas.patient), COUNTERS)
    practitioner = _page(browser, daphne, signed_in_cookie(personas.practitioner))
    try:
        patient.goto(f"/visit/{public_id}/waiting/")
        patient.get_by_text("Esperando a que el profesional lo admita.").wait_for()
        patient.get_by_text("Así lo verán y escucharán.").wait_for()
        # The picture moves, and so does the level meter (the fake microphone beeps once a second).
        first = _until(patient, PREVIEW_FRAMES, lambda frames: frames > 0, "no picture in the self-view")
        _until(patient, PREVIEW_FRAMES, lambda frames: frames > first + 10, "the self-view froze")
        levels = set()
        deadline = time.monotonic() + 10
        while len(levels) < 3 or max(levels) == 0:
            assert time.monotonic() < deadline, f"the meter did not move: {levels}"
            levels.add(patient.evaluate(STATS)["level"])
            time.sleep(0.2)
        assert patient.evaluate("() => window.connectionsMade") == 0
        assert patient.evaluate("() => window.deviceRequests") == 1
        # The call's controls and chat are not shown before the call.
        assert patient.locator("[data-call-stage]").is_hidden()
        assert_accessible(patient, context="waiting room with the self-view")

        # The camera turned off from the keyboard, before entering.
        camera = patient.get_by_role("button", name="Apagar cámara")
        camera.focus()
        patient.keyboard.press("Enter")
        patient.get_by_role("button", name="Encender cámara").wait_for()
        patient.get_by_text("Cámara apagada: entrará a la teleconsulta sin video.").wait_for()
        assert patient.get_by_role("button", name="Encender cámara").get_attribute("aria-pressed") == "true"
        # Still nothing sent to anyone, while waiting for several seconds.
        time.sleep(2)
        assert patient.evaluate("() => window.connectionsMade") == 0

        practitioner.goto(f"/visit/{public_id}/room/")
        practitioner.get_by_text("Paciente en la sala de espera").wait_for()
        practitioner.get_by_role("button", name="Admitir", exact=True).click()
        patient.locator("[data-call-stage]").wait_for(state="visible")

        # The patient decodes the practitioner; the practitioner hears the patient and sees no picture.
        _wait_for_media(patient)
        heard = _until(
            practitioner,
            STATS,
            lambda stats: stats["peers"] and stats["peers"][0]["audioEnergy"] > 0,
            "the practitioner does not hear the patient",
        )
        practitioner.locator("[data-peer-media]").get_by_text("(cámara apagada)").wait_for()
        time.sleep(2)
        assert practitioner.evaluate(STATS)["peers"][0]["framesDecoded"] == 0, heard
        stats = patient.evaluate(STATS)
        assert stats["sending"] == {"audio": True, "video": False}, stats
        assert stats["local"] == {"audio": True, "video": True}, stats
        # The call took the tracks opened while waiting.
        assert patient.evaluate("() => window.deviceRequests") == 1
        assert patient.evaluate("() => window.connectionsMade") >= 1
        assert patient.locator("[data-call-stage]").get_by_role("button", name="Encender cámara").is_visible()

        # Turned on in the call, the picture reaches the practitioner.
        patient.locator("[data-call-stage]").get_by_role("button", name="Encender cámara").click()
        _wait_for_media(practitioner)
        practitioner.locator("[data-peer-media]").get_by_text("(cámara apagada)").wait_for(state="detached")
        assert_accessible(patient, context="patient's phone in the call")
    finally:
        patient.context.close()
        practitioner.context.close()


def test_refused_devices_are_explained_and_the_patient_is_still_admitted(browser, personas, daphne):  # noqa: F811
    visit = hosted_visit(personas)
    public_id = visit.appointment.public_id
    patient = _phone(browser, daphne, signed_in_cookie(personas.patient), REFUSED)
    practitioner = _page(browser, daphne, signed_in_cookie(personas.practitioner))
    try:
        patient.goto(f"/visit/{public_id}/waiting/")
        patient.get_by_text("El navegador no tiene permiso para usar su cámara ni su micrófono.").wait_for()
        assert patient.get_by_role("button", name="Intentar de nuevo").is_visible()
        # Nothing shown that has no device behind it: no picture, no meter, no mute or camera button.
        for hidden in (
            "[data-preview-tile]",
            "[data-preview-meter]",
            "[data-preview] [data-action]:not([data-preview-retry])",
        ):
            assert all(not element.is_visible() for element in patient.locator(hidden).all()), hidden
        assert patient.get_by_text("Esperando a que el profesional lo admita.").is_visible()
        assert patient.evaluate(STATS)["mediaError"] == "NotAllowedError"
        assert_accessible(patient, context="waiting room without devices")
        # Dark and the largest letters, still within a phone's width and accessible.
        patient.select_option("#theme-select", "dark")
        patient.select_option("#font-select", "xlarge")
        assert patient.locator("html").get_attribute("data-font") == "xlarge"
        assert patient.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        assert_accessible(patient, context="waiting room without devices, dark, largest letters")

        practitioner.goto(f"/visit/{public_id}/room/")
        practitioner.get_by_role("button", name="Admitir", exact=True).click()
        patient.locator("[data-call-stage]").wait_for(state="visible")
        # Without devices the patient still sees and hears the practitioner, and can write.
        _wait_for_media(patient)
        practitioner.locator("[data-peer-media]").get_by_text("(cámara apagada)").wait_for()
        patient.get_by_label("Mensaje").fill("No tengo cámara.")
        patient.get_by_role("button", name="Enviar").click()
        practitioner.locator("[data-chat-log]").get_by_text("No tengo cámara.").wait_for()
    finally:
        patient.context.close()
        practitioner.context.close()


def test_audio_only_advice_then_the_camera_on_request_and_declined_frees_devices(browser, personas, daphne):  # noqa: F811
    visit = hosted_visit(personas)
    public_id = visit.appointment.public_id
    advice = json.dumps({"recommendation": "audio", "rtt_ms": 700, "loss": 0.08, "bitrate_kbps": 90})
    stored = f"""sessionStorage.setItem("teleconsult.precall.recommendation",
        JSON.stringify(Object.assign({advice}, {{ at: Date.now() }})));"""
    patient = _phone(browser, daphne, signed_in_cookie(personas.patient), stored, HIDEABLE)
    practitioner = _page(browser, daphne, signed_in_cookie(personas.practitioner))
    try:
        patient.goto(f"/visit/{public_id}/waiting/")
        patient.get_by_text("Su conexión funciona mejor solo con audio").wait_for()
        assert patient.evaluate(STATS)["local"] == {"audio": True, "video": False}
        _until(patient, STATS, lambda stats: stats["level"] > 0, "the meter did not move")

        # The person's choice wins over the advice: the camera opens on request.
        patient.get_by_role("button", name="Encender cámara").click()
        patient.get_by_role("button", name="Apagar cámara").wait_for()
        _until(patient, PREVIEW_FRAMES, lambda frames: frames > 0, "no picture after turning the camera on")
        assert patient.evaluate(STATS)["local"] == {"audio": True, "video": True}

        # Hidden for long (another app on the phone): the devices are let go; back, they open again, the camera
        # too (the person's choice holds).
        patient.evaluate(SET_HIDDEN, True)
        _until(patient, STATS, lambda stats: stats["local"] == {"audio": False, "video": False}, "still held")
        patient.evaluate(SET_HIDDEN, False)
        _until(patient, STATS, lambda stats: stats["local"] == {"audio": True, "video": True}, "not reopened")
        _until(patient, PREVIEW_FRAMES, lambda frames: frames > 0, "no picture after coming back")

        # Declined: the camera and microphone are released.
        practitioner.goto(f"/visit/{public_id}/room/")
        practitioner.get_by_role("button", name="No admitir").click()
        patient.get_by_text("El profesional no pudo admitirlo en esta teleconsulta.").first.wait_for()
        _until(
            patient,
            STATS,
            lambda stats: stats["local"] == {"audio": False, "video": False} and stats["level"] == 0,
            "the devices stayed open",
        )
    finally:
        patient.context.close()
        practitioner.context.close()
