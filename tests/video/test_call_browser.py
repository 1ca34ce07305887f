"""The call client in Debian's Chromium with fake camera and microphone, through a real daphne process: the
patient waits, the practitioner admits from the room, both decode the other's video and audio, chat arrives,
the patient's websocket drops and comes back with the call going on, then the practitioner's (within the
server's grace: the patient's page keeps its connection and decodes throughout), a poor link steps the patient
down to audio only and back up after a try of video, the practitioner switches the visit to audio only and the
patient's page shows it, then the visit ends. Waiting room and call pages are checked with axe-core.
The step-up decision, on made-up sample series, backs off on a link that stays too poor for video."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest
from django.conf import settings

from audit.actions import AuditAction
from audit.models import AuditEvent
from scheduling.models import Appointment, AppointmentStatus
from tests.browser_checks import assert_accessible
from tests.video.daphne_processes import daphne_processes
from tests.video.signalling_support import signed_in_cookie
from tests.video.test_call_pages import hosted_visit

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STATS = "() => window.teleconsultCall.stats()"

# A poor link as getStats reports it: while window.shapedRttSeconds is set, the selected candidate pair says
# that round-trip time. Browser-side shaping of the figures only; the client's reading and reaction are real.
SHAPED_STATS = """
(() => {
  const original = RTCPeerConnection.prototype.getStats;
  RTCPeerConnection.prototype.getStats = async function (...args) {
    const report = await original.apply(this, args);
    if (window.shapedRttSeconds === undefined) { return report; }
    const shaped = new Map();
    report.forEach((entry, id) => {
      const pair = entry.type === "candidate-pair";
      shaped.set(id, pair ? { ...entry, currentRoundTripTime: window.shapedRttSeconds } : entry);
    });
    return shaped;
  };
})();
"""


@pytest.fixture
def daphne(redis_url) -> Iterator[str]:
    """One daphne process (as production runs it) on this test's database, with the Redis channel layer."""
    with daphne_processes(1, redis_url=redis_url) as (port,):
        yield f"http://127.0.0.1:{port}"


def _page(browser, base: str, cookie: str):
    context = browser.new_context(locale="es-PE", base_url=base)
    context.add_init_script(SHAPED_STATS)
    name, value = cookie.split("=", 1)
    context.add_cookies([{"name": name, "value": value, "url": base}])
    page = context.new_page()
    page.set_default_timeout(20_000)
    return page


def wait_then_admit(patient, practitioner, public_id) -> None:
    """The patient opens the waiting room and waits; the practitioner opens the room and admits them."""
    patient.goto(f"/visit/{public_id}/waiting/")
    patient.get_by_text("Esperando a que el profesional lo admita.").wait_for()
    practitioner.goto(f"/visit/{public_id}/room/")
    practitioner.get_by_role("button", name="Admitir", exact=True).click()


def _wait_for_media(page, *, frames_above: int = 0) -> dict:
    """Until the one remote connection decodes video frames beyond `frames_above` and audio with energy."""
    deadline = time.monotonic() + 25
    while True:
        stats = page.evaluate(STATS)
        peers = stats["peers"]
        if peers and peers[0]["framesDecoded"] > frames_above and peers[0]["audioEnergy"] > 0:
            return peers[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no media decoded: {stats}")
        time.sleep(0.5)


def _wait_for_rising_media(page) -> None:
    """Until the one remote connection is connected and decodes more video frames from one reading to the next."""
    deadline = time.monotonic() + 25
    previous = None
    while True:
        peers = page.evaluate(STATS)["peers"]
        peer = peers[0] if peers else None
        if peer and peer["connection"] == "connected":
            if previous is not None and peer["framesDecoded"] > previous and peer["audioEnergy"] > 0:
                return
            previous = peer["framesDecoded"]
        else:
            previous = None
        if time.monotonic() > deadline:
            raise AssertionError(f"media did not come back: {peers}")
        time.sleep(0.5)


def test_waiting_admit_call_chat_audio_only_and_end(browser, personas, daphne):
    visit = hosted_visit(personas)
    public_id = visit.appointment.public_id
    patient = _page(browser, daphne, signed_in_cookie(personas.patient))
    practitioner = _page(browser, daphne, signed_in_cookie(personas.practitioner))
    try:
        patient.goto(f"/visit/{public_id}/waiting/")
        patient.get_by_text("Esperando a que el profesional lo admita.").wait_for()
        assert_accessible(patient, context="waiting room")

        practitioner.goto(f"/visit/{public_id}/room/")
        assert practitioner.get_by_role("region", name="Rosa Quispe: datos críticos").is_visible()
        practitioner.get_by_text("Paciente en la sala de espera").wait_for()
        practitioner.get_by_role("button", name="Admitir", exact=True).click()

        patient.locator("[data-call-stage]").wait_for(state="visible")
        first = {side: _wait_for_media(page) for side, page in (("patient", patient), ("practitioner", practitioner))}
        for side, page in (("patient", patient), ("practitioner", practitioner)):
            later = _wait_for_media(page, frames_above=first[side]["framesDecoded"])
            assert later["framesDecoded"] > first[side]["framesDecoded"], side
        assert_accessible(practitioner, context="practitioner in the call")
        assert_accessible(patient, context="patient in the call")

        patient.get_by_label("Mensaje").fill("Se congeló la imagen, ¿me escucha?")
        patient.get_by_role("button", name="Enviar").click()
        practitioner.locator("[data-chat-log]").get_by_text("Se congeló la imagen, ¿me escucha?").wait_for()
        assert practitioner.locator("[data-chat-log]").get_by_text("Paciente").is_visible()

        # The patient's websocket drops (a network change): it comes back by itself, the same visit goes on,
        # media keeps flowing after the ICE restart, and the chat works again.
        before = _wait_for_media(practitioner)["framesDecoded"]
        patient.evaluate("() => window.teleconsultCall.dropSocket()")
        deadline = time.monotonic() + 20
        while patient.evaluate(STATS)["welcomes"] < 2:
            assert time.monotonic() < deadline, "the websocket did not come back"
            time.sleep(0.2)
        patient.locator("[data-call-status]").get_by_text("En la teleconsulta.").wait_for()
        _wait_for_media(practitioner, frames_above=before + 24)
        patient.get_by_label("Mensaje").fill("Ya volví.")
        patient.get_by_role("button", name="Enviar").click()
        practitioner.locator("[data-chat-log]").get_by_text("Ya volví.").wait_for()

        # Now the practitioner's websocket drops and comes back within the server's grace: the patient's page is
        # told the practitioner resumed, not that they left, so it keeps its connection to them (the practitioner's
        # page restarts ICE on it) and the picture never stops on the patient's side — read before, during and
        # after the blip, past the moment the grace's timer runs on the server.
        kept = _wait_for_media(patient)
        practitioner.evaluate("() => window.teleconsultCall.dropSocket()")
        readings = []
        dropped_at = time.monotonic()
        while time.monotonic() - dropped_at < 7 or practitioner.evaluate(STATS)["welcomes"] < 2:
            assert time.monotonic() - dropped_at < 25, "the practitioner's websocket did not come back"
            readings.append(patient.evaluate(STATS)["peers"])
            time.sleep(0.3)
        # Always the one connection of before (a peer_left would have closed it, and a new one starts at 0 frames).
        assert all([peer["serial"] for peer in peers] == [kept["serial"]] for peers in readings), readings
        frames = [kept["framesDecoded"]] + [peers[0]["framesDecoded"] for peers in readings]
        assert frames == sorted(frames) and frames[-1] > frames[0] + 24, frames
        for page in (patient, practitioner):
            _wait_for_rising_media(page)

        # The patient's link turns poor: after a few seconds the patient's page stops sending video and says
        # so, the practitioner sees it; when the link recovers, video comes back by itself.
        patient.evaluate("() => { window.shapedRttSeconds = 1.2; }")
        patient.locator("[data-quality]").get_by_text("Conexión débil").wait_for()
        patient.locator("[data-call-notice]").get_by_text("La conexión es débil").wait_for()
        practitioner.locator("[data-peer-media]").get_by_text("(solo audio)").wait_for()
        patient.evaluate("() => { delete window.shapedRttSeconds; }")
        patient.locator("[data-call-notice]").get_by_text("El video se reanudó.").wait_for()
        practitioner.locator("[data-peer-media]").get_by_text("(solo audio)").wait_for(state="detached")
        assert patient.evaluate(STATS)["modality"] == "video"

        practitioner.get_by_role("button", name="Silenciar micrófono").click()
        patient.locator("[data-peer-media]").get_by_text("(micrófono silenciado)").wait_for()
        practitioner.get_by_role("button", name="Activar micrófono").click()
        patient.locator("[data-peer-media]").get_by_text("(micrófono silenciado)").wait_for(state="detached")
        assert patient.get_by_role("heading", name="Teleconsulta", exact=True).is_visible()

        practitioner.get_by_role("button", name="Solo audio").click()
        patient.locator("[data-call-notice]").get_by_text("La consulta sigue solo con audio.").wait_for()
        patient.locator("[data-peer-media]").get_by_text("(solo audio)").wait_for()
        assert patient.evaluate(STATS)["modality"] == "audio"
        assert not patient.locator("[data-remotes] video").is_visible()

        practitioner.get_by_role("button", name="Terminar la teleconsulta").click()
        patient.get_by_text("La teleconsulta terminó. Gracias.").first.wait_for()
        deadline = time.monotonic() + 10
        while Appointment.objects.get(pk=visit.appointment.pk).status != AppointmentStatus.COMPLETED:
            assert time.monotonic() < deadline, "the appointment was not completed"
            time.sleep(0.2)
        # What the client sent is in the trail: the chat messages and the modality changes (down, up, forced).
        assert AuditEvent.objects.filter(action=AuditAction.VISIT_CHAT_SENT).count() == 2
        assert AuditEvent.objects.filter(action=AuditAction.VISIT_MODALITY_CHANGED).count() >= 3
    finally:
        patient.context.close()
        practitioner.context.close()


def test_declined_patient_is_told_clearly(browser, personas, daphne):
    visit = hosted_visit(personas)
    public_id = visit.appointment.public_id
    patient = _page(browser, daphne, signed_in_cookie(personas.patient))
    practitioner = _page(browser, daphne, signed_in_cookie(personas.practitioner))
    try:
        patient.goto(f"/visit/{public_id}/waiting/")
        patient.get_by_text("Esperando a que el profesional lo admita.").wait_for()
        practitioner.goto(f"/visit/{public_id}/room/")
        practitioner.get_by_role("button", name="No admitir").click()
        patient.get_by_role("region", name="Teleconsulta").get_by_text(
            "El profesional no pudo admitirlo en esta teleconsulta."
        ).wait_for()
        assert practitioner.get_by_text("Nadie está esperando.").is_visible()
        # Turned away means turned away: the page does not knock again by itself.
        time.sleep(2)
        assert patient.evaluate(STATS)["welcomes"] == 1
        assert_accessible(patient, context="declined")
    finally:
        patient.context.close()
        practitioner.context.close()


# The client's step-down/step-up decision (window.teleconsultCall.QualityPolicy, the one the page runs on its
# getStats samples) fed a series of samples, one every 2 s, from a made-up link: `carries_video_after` is the
# sample index from which the link carries video (None: never). Audio alone always goes through cleanly, as on a
# link that is merely too narrow for video; while video is sent on a link that cannot carry it, the round trip
# grows and the bandwidth estimate stays low. Returns the actions with their sample index.
POLICY_RUN = """({ samples, carriesVideoAfter, poorAgainAt }) => {
  const policy = new window.teleconsultCall.QualityPolicy();
  const actions = [];
  let modality = "video", probing = false;
  for (let index = 0; index < samples; index += 1) {
    const sendingVideo = modality === "video" || probing;
    const carries = (carriesVideoAfter !== null && index >= carriesVideoAfter) &&
      !(poorAgainAt !== null && index >= poorAgainAt);
    const sample = sendingVideo && !carries ? { rtt: 0.9, loss: 0.01, bitrate: 120 }
      : { rtt: 0.05, loss: 0, bitrate: sendingVideo ? 1500 : 120 };
    const level = sample.rtt > 0.6 || (sendingVideo && sample.bitrate < 150) ? "poor" : "good";
    const action = policy.next(modality === "video" ? "video" : "audio", level, sample, index * 2000);
    if (action === "down") { modality = "audio"; }
    if (action === "probe") { probing = true; }
    if (action === "abort") { probing = false; }
    if (action === "up") { probing = false; modality = "video"; }
    if (action) { actions.push([index, action]); }
  }
  return actions;
}"""


def test_audio_only_steps_up_only_on_evidence_and_backs_off(browser):
    # The script itself, on a page with just the markup it needs: the decision needs no server (the page's
    # websocket to the stub origin fails and keeps retrying, which changes nothing here).
    script = (settings.BASE_DIR / "frontend/static/frontend/visit/call.js").read_text()
    html = (
        '<div data-call data-visit="0"><p data-call-status></p></div>'
        '<script id="call-strings" type="application/json">{}</script>'
        f"<script>{script}</script>"
    )
    context = browser.new_context()
    page = context.new_page()
    page.route("http://localhost/", lambda route: route.fulfill(body=html, content_type="text/html"))
    try:
        page.goto("http://localhost/")
        page.wait_for_function("() => window.teleconsultCall && window.teleconsultCall.QualityPolicy")

        def run(samples: int, carries_video_after: int | None, poor_again_at: int | None = None) -> list:
            return page.evaluate(
                POLICY_RUN,
                {"samples": samples, "carriesVideoAfter": carries_video_after, "poorAgainAt": poor_again_at},
            )

        # A link that never carries video, for half an hour: one step down, never a step up (each try of video
        # fails unannounced), and the tries come ever less often, at most every five minutes in the end.
        actions = run(900, None)
        assert [action for _index, action in actions if action in ("down", "up")] == ["down"], actions
        probes = [index for index, action in actions if action == "probe"]
        gaps = [later - earlier for earlier, later in itertools.pairwise(probes)]
        assert len(probes) <= 12 and gaps == sorted(gaps) and gaps[0] < gaps[-1] <= 152, probes
        assert all(action in ("probe", "abort") for _index, action in actions[1:]), actions

        # The link recovers after four minutes: the next try finds it carries video and steps up, once.
        actions = run(300, 120)
        ups = [index for index, action in actions if action == "up"]
        assert len(ups) == 1 and ups[0] > 120, actions
        assert [action for _index, action in actions if action == "down"] == ["down"]

        # A step up that does not hold (poor again within a minute) counts as failed: after the next step down
        # the try waits twice as long as the first did.
        actions = run(100, 3, poor_again_at=20)
        downs = [index for index, action in actions if action == "down"]
        probes = [index for index, action in actions if action == "probe"]
        assert [action for _index, action in actions][:3] == ["down", "probe", "up"], actions
        assert len(downs) == 2 and probes[0] - downs[0] == 5 and probes[1] - downs[1] == 10, actions

        # Video that held for a minute after a step up clears the failed tries before it.
        actions = run(100, 15, poor_again_at=60)
        downs = [index for index, action in actions if action == "down"]
        probes = [index for index, action in actions if action == "probe"]
        assert [action for _index, action in actions][:5] == ["down", "probe", "abort", "probe", "up"], actions
        assert probes[1] - probes[0] > 5 and len(downs) == 2 and probes[2] - downs[1] == 5, actions
    finally:
        page.context.close()
