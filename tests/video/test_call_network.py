"""The call client on real networks (VID-3, VID-4, VID-6), with Debian's Chromium and fake devices through a real
daphne process and Redis:

- a poor link shaped in the kernel (tbf and a random drop, inside a network namespace the patient's Chromium
  runs in) steps the patient down to audio only, and back up to video once the shaping is removed; then the
  media path is cut for a while: the client restarts ICE and media comes back;
- a link too narrow for video (tbf alone) keeps the patient in audio only: the tries of video fail unannounced;
- the daphne process serving both pages is killed and another started on the same port: both pages come
  back to the same visit and decode again, and the trail records the reconnects;
- participants restricted to relay candidates connect through Debian's coturn on loopback;
- the camera switch and the practitioner's screen share replace the outgoing track without renegotiation.

Harness: tests/video/call_network_support.py; how it works: docs/video-network.md ("Tests on real networks").
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from audit.actions import AuditAction
from audit.models import AuditEvent
from tests.video.call_network_support import (
    STATS,
    Daphne,
    Namespace,
    admit,
    frames,
    launch_chromium,
    open_page,
    require_netns,
    wait_for_frames,
    wait_until,
)
from tests.video.signalling_support import signed_in_cookie
from tests.video.test_call_pages import hosted_visit
from tests.video.test_turn_relay import SECRET, coturn  # noqa: F401  (the fixture: coturn on loopback)
from video.models import VisitSession

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Instrumentation of the browser's own API (the client is untouched): every RTCPeerConnection the page makes is
# kept in window.tcPeers, and restartIce() calls are counted, so the test can read what getStats and the
# descriptions say about the path in use.
OBSERVE = """
(() => {
  const Native = window.RTCPeerConnection;
  window.tcPeers = [];
  window.tcIceRestarts = 0;
  const restartIce = Native.prototype.restartIce;
  Native.prototype.restartIce = function () { window.tcIceRestarts += 1; return restartIce.call(this); };
  window.RTCPeerConnection = function (...args) { const pc = new Native(...args); window.tcPeers.push(pc); return pc; };
  window.RTCPeerConnection.prototype = Native.prototype;
})();
"""

# The live connection's selected candidate pair, its ICE username fragment and the received video's size.
PATH = """async () => {
  const pc = window.tcPeers.filter((p) => p.connectionState === "connected").pop();
  if (!pc) { return null; }
  const report = await pc.getStats();
  let pair = null, width = null;
  report.forEach((entry) => {
    if (entry.type === "transport" && entry.selectedCandidatePairId) {
      pair = report.get(entry.selectedCandidatePairId);
    }
    if (entry.type === "inbound-rtp" && entry.kind === "video" && entry.frameWidth) { width = entry.frameWidth; }
  });
  if (!pair) { return null; }
  const local = report.get(pair.localCandidateId), remote = report.get(pair.remoteCandidateId);
  const ufrag = (pc.localDescription.sdp.match(/a=ice-ufrag:(\\S+)/) || [])[1];
  return { local: local.candidateType, remote: remote.candidateType, localAddress: local.address, localPort: local.port,
           relayProtocol: local.relayProtocol || null, ufrag: ufrag, restarts: window.tcIceRestarts,
           frameWidth: width };
}"""


@pytest.fixture
def netns(tmp_path) -> Iterator[Namespace]:
    require_netns()
    space = Namespace.create(tmp_path)
    try:
        yield space
    finally:
        space.destroy()


@pytest.fixture
def daphne_on_veth(netns, redis_url) -> Iterator[Daphne]:
    """daphne on 127.0.0.1 and on this namespace's end of the veth pair (the patient's page loads from there)."""
    server = Daphne(redis_url=redis_url, also=netns.host_ip)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def patient_browser(browser, netns, daphne_on_veth) -> Iterator[object]:
    """Chromium inside the namespace: everything the patient sends or receives crosses the veth pair."""
    inner = launch_chromium(
        browser,
        executable=netns.chromium_wrapper(),
        extra_args=(f"--unsafely-treat-insecure-origin-as-secure={daphne_on_veth.inner_url}",),
    )
    try:
        yield inner
    finally:
        inner.close()


def _start_call(personas, patient_browser, patient_base: str, browser, base: str):
    visit = hosted_visit(personas)
    patient = open_page(patient_browser, patient_base, signed_in_cookie(personas.patient), init_script=OBSERVE)
    practitioner = open_page(browser, base, signed_in_cookie(personas.practitioner), init_script=OBSERVE)
    admit(patient, practitioner, str(visit.appointment.public_id))
    return visit, patient, practitioner


def _video_both_ways(patient, practitioner) -> None:
    for side, page in (("patient", patient), ("practitioner", practitioner)):
        wait_for_frames(page, above=frames(page) + 24, side=side)


def test_shaped_link_steps_down_to_audio_and_back_up_then_ice_restarts(
    browser, patient_browser, personas, netns, daphne_on_veth
):
    _, patient, practitioner = _start_call(
        personas, patient_browser, daphne_on_veth.inner_url, browser, daphne_on_veth.url
    )
    try:
        # The call starts with video both ways, over the veth pair (the patient's only way out).
        _video_both_ways(patient, practitioner)
        path = patient.evaluate(PATH)
        assert path["localAddress"] == netns.inner_ip, path
        assert patient.evaluate(STATS)["modality"] == "video"

        # A poor mobile link: 160 kbit/s each way with a 400 ms queue, and a fifth of the UDP packets lost.
        # getStats on the patient's side shows it (loss, and while video is sent, the queue's delay and a low
        # available bitrate); after three poor samples the page stops sending video and says so.
        netns.shape(rate="160kbit", burst="4kb", latency="400ms", loss_percent=20)
        patient.locator("[data-quality]").get_by_text("Conexión débil").wait_for(timeout=40_000)
        patient.locator("[data-call-notice]").get_by_text(
            "La conexión es débil: la consulta sigue solo con audio."
        ).wait_for(timeout=40_000)
        assert patient.locator("[data-call-stage]").get_attribute("data-modality") == "audio"
        stats = patient.evaluate(STATS)
        assert stats["modality"] == "audio", stats
        practitioner.locator("[data-peer-media]").get_by_text("(solo audio)").wait_for(timeout=40_000)
        # The call goes on with sound while the link stays poor.
        energy = stats["peers"][0]["audioEnergy"]
        wait_until(
            lambda: patient.evaluate(STATS)["peers"][0]["audioEnergy"] > energy,
            timeout=30,
            message="no audio over the shaped link",
        )
        assert patient.evaluate(STATS)["modality"] == "audio"

        # The link recovers: five good samples later video comes back by itself and decodes on the other side.
        netns.clear()
        patient.locator("[data-call-notice]").get_by_text("El video se reanudó.").wait_for(timeout=60_000)
        assert patient.locator("[data-call-stage]").get_attribute("data-modality") == "video"
        practitioner.locator("[data-peer-media]").get_by_text("(solo audio)").wait_for(state="detached")
        _video_both_ways(patient, practitioner)
        patient.locator("[data-quality]").get_by_text("Conexión buena").wait_for()

        # The media path is cut (every UDP packet over the pair dropped; the websocket, over TCP, stays): the
        # connection goes "disconnected", the client restarts ICE (a new username fragment is negotiated), and
        # when the path is back media flows on the new ICE session.
        before = patient.evaluate(PATH)
        netns.block()
        practitioner.locator("[data-peer-media]").get_by_text("(reconectando…)").wait_for(timeout=40_000)
        restarts = "() => window.tcIceRestarts"
        wait_until(
            lambda: patient.evaluate(restarts) + practitioner.evaluate(restarts),
            timeout=40,
            message="no ICE restart while the media path was cut",
        )
        netns.unblock()
        _video_both_ways(patient, practitioner)
        after = wait_until(
            lambda: (path := patient.evaluate(PATH)) and path["ufrag"] != before["ufrag"] and path,
            timeout=40,
            message=f"the ICE session was not restarted (before: {before})",
        )
        assert after["localAddress"] == netns.inner_ip
        practitioner.locator("[data-peer-media]").get_by_text("(reconectando…)").wait_for(state="detached")

        # The visit's modality changes went into the trail: down to audio, and back to video.
        changes = [
            (event.details["modality"], event.details["automatic"])
            for event in AuditEvent.objects.filter(action=AuditAction.VISIT_MODALITY_CHANGED).order_by("pk")
        ]
        modalities = [modality for modality, _automatic in changes]
        assert "audio" in modalities and modalities[-1] == "video", changes
        # The client did it by itself, and the trail says so.
        assert ("audio", True) in changes and changes[-1] == ("video", True), changes
    finally:
        patient.context.close()
        practitioner.context.close()


# Counts the page's video sender being given a track again (a try of video, or a step up), over the browser's API.
COUNT_VIDEO_BACK = """
(() => {
  window.tcVideoBack = 0;
  const replaceTrack = RTCRtpSender.prototype.replaceTrack;
  RTCRtpSender.prototype.replaceTrack = function (track) {
    if (track && track.kind === "video") { window.tcVideoBack += 1; }
    return replaceTrack.call(this, track);
  };
})();
"""


def test_a_link_too_narrow_for_video_stays_in_audio_only(browser, patient_browser, personas, netns, daphne_on_veth):
    """100 kbit/s with a 400 ms queue and no loss: audio alone goes through cleanly, video does not fit. The page
    steps down once; its tries of video (unannounced) fail on what they measure, so it stays in audio only,
    where before it stepped back up on the clean audio figures and flipped every quarter of a minute."""
    visit = hosted_visit(personas)
    patient = open_page(
        patient_browser,
        daphne_on_veth.inner_url,
        signed_in_cookie(personas.patient),
        init_script=OBSERVE + COUNT_VIDEO_BACK,
    )
    practitioner = open_page(browser, daphne_on_veth.url, signed_in_cookie(personas.practitioner), init_script=OBSERVE)
    try:
        admit(patient, practitioner, str(visit.appointment.public_id))
        _video_both_ways(patient, practitioner)
        netns.shape(rate="100kbit", burst="4kb", latency="400ms", loss_percent=0)
        patient.locator("[data-call-notice]").get_by_text(
            "La conexión es débil: la consulta sigue solo con audio."
        ).wait_for(timeout=40_000)
        tries = patient.evaluate("() => window.tcVideoBack")
        # Two tries of video later (the second waits twice as long as the first), still audio only.
        wait_until(
            lambda: patient.evaluate("() => window.tcVideoBack") >= tries + 2,
            timeout=120,
            message="the page never tried video again",
        )
        assert patient.evaluate(STATS)["modality"] == "audio"
        assert patient.locator("[data-call-stage]").get_attribute("data-modality") == "audio"
        practitioner.locator("[data-peer-media]").get_by_text("(solo audio)").wait_for()
        # In the encounter: down to audio once, never back up meanwhile.
        modalities = list(
            AuditEvent.objects.filter(action=AuditAction.VISIT_MODALITY_CHANGED)
            .order_by("pk")
            .values_list("details__modality", flat=True)
        )
        assert modalities == ["audio"], modalities
    finally:
        patient.context.close()
        practitioner.context.close()


@pytest.fixture
def daphne(redis_url) -> Iterator[Daphne]:
    server = Daphne(redis_url=redis_url)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_daphne_restart_brings_both_pages_back_to_the_same_visit(browser, personas, daphne):
    visit, patient, practitioner = _start_call(personas, browser, daphne.url, browser, daphne.url)
    try:
        _video_both_ways(patient, practitioner)
        session = VisitSession.objects.get(appointment=visit.appointment)
        rejoined = AuditEvent.objects.filter(action=AuditAction.VISIT_REJOINED).count()

        # The process serving both pages dies (SIGKILL: no close frame, no disconnect handler) and another is
        # started on the same port, as a supervisor would.
        daphne.kill()
        for page in (patient, practitioner):
            page.locator("[data-call-status]").get_by_text("Se perdió la conexión. Reconectando…").wait_for()
        daphne.start()
        for page in (patient, practitioner):
            wait_until(lambda page=page: page.evaluate(STATS)["welcomes"] >= 2, timeout=60, message="no new welcome")
            page.locator("[data-call-status]").get_by_text("En la teleconsulta.").wait_for()
            assert page.evaluate(STATS)["phase"] == "call"
        _video_both_ways(patient, practitioner)
        for page in (patient, practitioner):
            assert [peer["connection"] for peer in page.evaluate(STATS)["peers"]] == ["connected"]

        # The same visit and encounter go on; the trail shows both reconnects.
        assert VisitSession.objects.filter(appointment=visit.appointment).count() == 1
        again = VisitSession.objects.get(appointment=visit.appointment)
        assert (again.pk, again.encounter_id) == (session.pk, session.encounter_id)
        assert again.encounter_id is not None
        wait_until(
            lambda: AuditEvent.objects.filter(action=AuditAction.VISIT_REJOINED).count() >= rejoined + 2,
            timeout=20,
            message="the reconnects are not in the trail",
        )
        participants = {
            event.details.get("participant")
            for event in AuditEvent.objects.filter(action=AuditAction.VISIT_REJOINED).order_by("-pk")[:2]
        }
        assert len(participants) == 2
    finally:
        patient.context.close()
        practitioner.context.close()


@pytest.fixture
def daphne_relay_only(coturn, redis_url) -> Iterator[Daphne]:  # noqa: F811
    port, _ = coturn
    server = Daphne(
        redis_url=redis_url,
        extra_env={
            "ICE_SERVERS": json.dumps([{"urls": [f"turn:127.0.0.1:{port}?transport=udp"]}]),
            "STUN_URLS": "",
            "TURN_URLS": "",
            "TURN_SECRET": SECRET,
            "ICE_TRANSPORT_POLICY": "relay",
        },
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_relay_only_participants_connect_through_coturn(browser, personas, coturn, daphne_relay_only):  # noqa: F811
    _, relay_base = coturn
    base = daphne_relay_only.url
    _, patient, practitioner = _start_call(personas, browser, base, browser, base)
    try:
        _video_both_ways(patient, practitioner)
        for side, page in (("patient", patient), ("practitioner", practitioner)):
            path = page.evaluate(PATH)
            # Both ends of the selected pair are relay candidates allocated by this coturn.
            assert (path["local"], path["remote"]) == ("relay", "relay"), (side, path)
            assert path["localAddress"] == "127.0.0.1" and path["relayProtocol"] == "udp", (side, path)
            assert relay_base <= path["localPort"] <= relay_base + 999, (side, path)
            # Chromium put no other kind of candidate in its description.
            sdp = page.evaluate(
                "() => window.tcPeers.filter((p) => p.connectionState === 'connected').pop().localDescription.sdp"
            )
            kinds = {line.split(" typ ")[1].split()[0] for line in sdp.splitlines() if line.startswith("a=candidate:")}
            assert kinds <= {"relay"}, (side, kinds)
    finally:
        patient.context.close()
        practitioner.context.close()


LOCAL_TRACK = """() => {
  const track = document.querySelector("[data-local-video]").srcObject.getVideoTracks()[0];
  return { id: track.id, label: track.label, readyState: track.readyState, settings: track.getSettings() };
}"""
SENT_TRACK = """() => {
  const pc = window.tcPeers.filter((p) => p.connectionState === "connected").pop();
  const sender = pc.getSenders().find((s) => s.track && s.track.kind === "video");
  return sender ? { id: sender.track.id, settings: sender.track.getSettings(), label: sender.track.label } : null;
}"""


@pytest.fixture
def three_camera_browser(browser) -> Iterator[object]:
    """Chromium whose fake capture has three cameras (none says which way it faces, like a laptop's).

    Chromium's fake cameras differ in pixel format: 0 is I420, 1 is Y16 (16-bit depth, which WebRTC does not
    encode: a sender given that track sends no frames), 2 is MJPEG."""
    other = launch_chromium(browser, extra_args=("--use-fake-device-for-media-stream=device-count=3",))
    try:
        yield other
    finally:
        other.close()


def _cameras(page) -> list[str]:
    return page.evaluate(
        "async () => (await navigator.mediaDevices.enumerateDevices())"
        ".filter((d) => d.kind === 'videoinput').map((d) => d.label)"
    )


# A phone that holds one camera at a time (many Android phones): while a camera track it gave is live, asking
# for another camera fails with NotReadableError. Installed in the running page, over the browser's own API.
ONE_CAMERA_AT_A_TIME = """() => {
  const devices = navigator.mediaDevices;
  const native = devices.getUserMedia.bind(devices);
  const cameras = [document.querySelector("[data-local-video]").srcObject.getVideoTracks()[0]];
  window.tcCameraRefusals = 0;
  devices.getUserMedia = async (constraints) => {
    if (constraints && constraints.video && cameras.some((track) => track.readyState === "live")) {
      window.tcCameraRefusals += 1;
      throw new DOMException("Could not start video source", "NotReadableError");
    }
    const stream = await native(constraints);
    stream.getVideoTracks().forEach((track) => cameras.push(track));
    return stream;
  };
}"""


def _switch_camera(page, to: str) -> dict:
    before = page.evaluate(LOCAL_TRACK)
    page.get_by_role("button", name="Cambiar de cámara").click()
    switched = wait_until(
        lambda: (track := page.evaluate(LOCAL_TRACK))["id"] != before["id"] and track,
        timeout=20,
        message="the camera track was not replaced",
    )
    assert (switched["label"], switched["readyState"]) == (to, "live")
    assert switched["settings"]["deviceId"] != before["settings"]["deviceId"]
    # On the sender in place of the old one (replaceTrack: no renegotiation); the old camera is released.
    assert page.evaluate(SENT_TRACK)["id"] == switched["id"]
    return switched


def test_camera_switch_and_screen_share_keep_the_remote_decoding(browser, three_camera_browser, personas, daphne):
    _, patient, practitioner = _start_call(personas, three_camera_browser, daphne.url, browser, daphne.url)
    try:
        _video_both_ways(patient, practitioner)

        # The patient's cameras are taken in turn (they do not say which way they face); the one whose frames
        # the encoder takes (MJPEG) decodes on the practitioner's side, and so does the first one again.
        assert _cameras(patient) == ["fake_device_0", "fake_device_1", "fake_device_2"]
        assert patient.evaluate(LOCAL_TRACK)["label"] == "fake_device_0"
        _switch_camera(patient, "fake_device_1")
        _switch_camera(patient, "fake_device_2")
        wait_for_frames(practitioner, above=frames(practitioner) + 24, side="practitioner after the switch")
        _switch_camera(patient, "fake_device_0")
        wait_for_frames(practitioner, above=frames(practitioner) + 24, side="practitioner after switching back")

        # On a phone that cannot open a second camera while one is open, the switch frees the current camera
        # first, then opens the other.
        patient.evaluate(ONE_CAMERA_AT_A_TIME)
        _switch_camera(patient, "fake_device_1")
        _switch_camera(patient, "fake_device_2")
        assert patient.evaluate("() => window.tcCameraRefusals") == 2
        wait_for_frames(practitioner, above=frames(practitioner) + 24, side="practitioner after the phone's switch")
        assert "otra cámara" not in patient.locator("[data-call-notice]").inner_text()

        # The practitioner's browser has one camera: the switch says there is no other and changes nothing.
        assert len(_cameras(practitioner)) == 1
        sent = practitioner.evaluate(SENT_TRACK)
        practitioner.get_by_role("button", name="Cambiar de cámara").click()
        practitioner.locator("[data-call-notice]").get_by_text("No se encontró otra cámara.").wait_for()
        assert practitioner.evaluate(SENT_TRACK)["id"] == sent["id"]

        # The practitioner shares the screen: the sender's track becomes a display capture, the patient keeps
        # decoding, now the screen's picture (another frame size), and the button says how to stop.
        camera_width = wait_until(lambda: patient.evaluate(PATH)["frameWidth"], timeout=20, message="no frame size")
        practitioner.get_by_role("button", name="Compartir pantalla").click()
        shared = wait_until(
            lambda: (track := practitioner.evaluate(SENT_TRACK)) and "displaySurface" in track["settings"] and track,
            timeout=20,
            message="the screen did not replace the camera on the sender",
        )
        stop = practitioner.get_by_role("button", name="Dejar de compartir pantalla")
        assert stop.get_attribute("aria-pressed") == "true"
        wait_for_frames(patient, above=frames(patient) + 24, side="patient while the screen is shared")
        wait_until(
            lambda: patient.evaluate(PATH)["frameWidth"] not in (None, camera_width),
            timeout=30,
            message=f"the patient still receives {camera_width}-wide frames (screen: {shared['settings']})",
        )
        patient.locator("[data-peer-media]").get_by_text("(cámara apagada)").wait_for(state="detached")

        # Back to the camera.
        stop.click()
        wait_until(
            lambda: "displaySurface" not in practitioner.evaluate(SENT_TRACK)["settings"],
            timeout=20,
            message="the camera did not come back on the sender",
        )
        wait_for_frames(patient, above=frames(patient) + 24, side="patient after the share")
        # All of it on the connection of the start: replaceTrack, never a new connection.
        for page in (patient, practitioner):
            assert page.evaluate("() => window.tcPeers.length") == 1
    finally:
        patient.context.close()
        practitioner.context.close()


# The device list of a laptop with a Windows Hello infrared camera and of a phone that lists its depth sensors:
# Chromium's three fake cameras renamed (fake_device_1 is the one with 16-bit depth frames), and two sensors that
# name no kind in their label but whose capabilities tell: a depth kind, and a time-of-flight sensor's frame size.
# Those two have no device behind them: asking for either fails, as the test would see.
SENSORS_LISTED = """
(() => {
  const devices = navigator.mediaDevices;
  const native = devices.enumerateDevices.bind(devices);
  const labels = { fake_device_0: "Integrated Camera (04f2:b6d9)", fake_device_1: "Integrated IR Camera (04f2:b6da)",
                   fake_device_2: "USB2.0 HD UVC WebCam (0bda:58b0)" };
  const listed = (device, label, capabilities) => ({
    deviceId: device.deviceId, groupId: device.groupId, kind: device.kind, label: label,
    getCapabilities: () => capabilities || device.getCapabilities(), toJSON: () => ({ label: label }),
  });
  devices.enumerateDevices = async () => {
    const list = (await native()).map((d) => (d.kind === "videoinput" ? listed(d, labels[d.label] || d.label) : d));
    const sensor = { groupId: "sensors", kind: "videoinput" };
    list.push(listed({ ...sensor, deviceId: "sensor-depth" }, "camera2 3, facing back",
      { deviceId: "sensor-depth", facingMode: ["environment"], videoKind: "depth",
        width: { min: 1, max: 640 }, height: { min: 1, max: 480 } }));
    list.push(listed({ ...sensor, deviceId: "sensor-tof" }, "camera2 4, facing back",
      { deviceId: "sensor-tof", facingMode: ["environment"],
        width: { min: 1, max: 240 }, height: { min: 1, max: 180 } }));
    return list;
  };
})();
"""


def test_camera_switch_skips_infrared_and_depth_sensors(browser, three_camera_browser, personas, daphne):
    visit = hosted_visit(personas)
    patient = open_page(
        three_camera_browser, daphne.url, signed_in_cookie(personas.patient), init_script=OBSERVE + SENSORS_LISTED
    )
    practitioner = open_page(browser, daphne.url, signed_in_cookie(personas.practitioner), init_script=OBSERVE)
    try:
        admit(patient, practitioner, str(visit.appointment.public_id))
        _video_both_ways(patient, practitioner)
        assert _cameras(patient) == [
            "Integrated Camera (04f2:b6d9)",
            "Integrated IR Camera (04f2:b6da)",
            "USB2.0 HD UVC WebCam (0bda:58b0)",
            "camera2 3, facing back",
            "camera2 4, facing back",
        ]
        # The switch goes between the two cameras that give a picture, never to the infrared one (by its label)
        # nor to the sensors (by their capabilities), and the practitioner keeps decoding.
        assert patient.evaluate(LOCAL_TRACK)["label"] == "fake_device_0"
        _switch_camera(patient, "fake_device_2")
        wait_for_frames(practitioner, above=frames(practitioner) + 24, side="practitioner after the switch")
        _switch_camera(patient, "fake_device_0")
        _switch_camera(patient, "fake_device_2")
        wait_for_frames(practitioner, above=frames(practitioner) + 24, side="practitioner after switching back")
        assert "otra cámara" not in patient.locator("[data-call-notice]").inner_text()
    finally:
        patient.context.close()
        practitioner.context.close()
