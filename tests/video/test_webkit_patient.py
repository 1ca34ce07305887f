"""The patient's whole way in on WebKit, Safari's engine (Debian's WebKitGTK, an iPhone's user agent; see
tests/webkit_support.py), on a real daphne process with the Redis layer; the practitioner in Chromium. This WebKit
has no WebRTC, so it is also the browser that cannot make video calls: the link, the verification, the consents,
the display preferences and the pre-call check work and say so, the waiting room tells the patient the visit will
be by chat, the practitioner admits them, both chat, the practitioner's page stops offering them media and says
why, the encounter records a chat visit, and the end reaches the patient. Each page passes axe-core in WebKit."""

from __future__ import annotations

import time

import pytest
from selenium.webdriver.common.by import By

from audit.actions import AuditAction
from audit.models import AuditEvent
from records.models import Encounter
from scheduling.models import Appointment, AppointmentStatus
from tests.browser_checks import assert_accessible
from tests.frontend.conftest import documents  # noqa: F401  (the consent texts fixture)
from tests.video.call_network_support import wait_until
from tests.video.signalling_support import signed_in_cookie
from tests.video.test_call_browser import STATS, _page, _wait_for_media, daphne  # noqa: F401
from tests.video.test_full_flow_browser import _phone, open_link_and_verify, walk_in_visit
from tests.webkit_support import (
    assert_accessible_in_webkit,
    by_label,
    by_role,
    text_of,
    wait_for_path,
    webkit,  # noqa: F401
    webkit_display,  # noqa: F401
)
from video.call_strings import CALL_STRINGS
from video.models import ChatMessage

pytestmark = [pytest.mark.browser, pytest.mark.webkit, pytest.mark.django_db(transaction=True)]

WEBKIT_STATS = """
const done = arguments[arguments.length - 1];
window.teleconsultCall.stats().then(done, (error) => done({ error: String(error) }));
"""


def _until(check, what: str):
    return wait_until(check, timeout=20, message=f"not seen: {what}")


def _stats(driver) -> dict:
    return driver.execute_async_script(WEBKIT_STATS)


def test_a_patient_on_webkit_without_webrtc_is_seen_by_chat(browser, webkit, personas, documents, daphne):  # noqa: F811
    appointment, token = walk_in_visit(personas)
    public_id = appointment.public_id
    patient = webkit()
    practitioner = _page(browser, daphne, signed_in_cookie(personas.practitioner))
    phone = None
    try:
        # The link → verification (the token leaves the address at once) → the visit's page.
        patient.get(f"{daphne}/j/{token}")
        wait_for_path(patient, f"/visit/{public_id}/")
        assert token not in patient.current_url
        # The engine is the one a phone's Safari runs; it can open a camera but has no WebRTC (what this test
        # stands for).
        assert patient.execute_script("return typeof RTCPeerConnection") == "undefined"
        assert patient.execute_script("return !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)")
        assert_accessible_in_webkit(patient, context="on the verification page")
        # A date field is filled with its picker on a phone: the value is set as the picker sets it (typed keys
        # go into WebKit's fields in the order of the machine's locale).
        birth = by_label(patient, "Fecha de nacimiento del paciente")
        assert birth.get_attribute("type") == "date"
        patient.execute_script(
            "arguments[0].value = '1984-03-09';"
            "arguments[0].dispatchEvent(new Event('input', { bubbles: true }));"
            "arguments[0].dispatchEvent(new Event('change', { bubbles: true }));",
            birth,
        )
        by_label(patient, "Últimos 4 dígitos de su documento (DNI, carné o pasaporte)").send_keys("7410")
        by_role(patient, "button", "Continuar").click()
        consents = by_role(patient, "link", "Dar mis consentimientos")

        # Display preferences work in WebKit too: a larger font, at once and after a reload (the cookie).
        patient.execute_script(
            "const s = document.getElementById('font-select'); s.value = 'large';"
            "s.dispatchEvent(new Event('change', { bubbles: true }));"
        )
        assert patient.execute_script("return document.documentElement.getAttribute('data-font')") == "large"
        patient.refresh()
        _until(
            lambda: patient.execute_script("return document.documentElement.getAttribute('data-font')") == "large",
            "the font size kept after a reload",
        )

        # Consents.
        consents = by_role(patient, "link", "Dar mis consentimientos")
        consents.click()
        wait_for_path(patient, "/consents/")
        assert_accessible_in_webkit(patient, context="on the consent page")
        by_label(patient, "He leído y acepto el consentimiento para telemedicina").click()
        by_label(patient, "He leído y acepto el tratamiento de mis datos personales").click()
        by_label(patient, "Nombre completo de quien firma").send_keys("Rosa Quispe")
        by_role(patient, "button", "Aceptar y continuar").click()
        _until(lambda: patient.current_url.endswith(f"/visit/{public_id}/"), "back on the visit's page")

        # The pre-call check says plainly that this browser cannot make the video call, and lets them go on.
        by_role(patient, "link", "Probar mi cámara y conexión").click()
        wait_for_path(patient, "/check/")
        status = _until(lambda: text_of(patient, "[data-device-status]"), "the device check's words")
        assert status.startswith("Este navegador no permite videollamadas"), status
        assert not patient.find_element(By.CSS_SELECTOR, "[data-start-devices]").is_enabled()
        assert_accessible_in_webkit(patient, context="on the pre-call check")
        by_role(patient, "link", "Continuar a la sala de espera").click()
        wait_for_path(patient, "/waiting/")

        # The waiting room: in the room (the practitioner sees them waiting), told the visit will be by chat,
        # no camera opened for a preview nobody could receive.
        waiting_words = str(CALL_STRINGS["chat_only_waiting"])
        _until(lambda: text_of(patient, "[data-preview-status]") == waiting_words, "the chat-only notice")
        assert not patient.find_element(By.CSS_SELECTOR, "[data-preview-tile]").is_displayed()
        stats = _stats(patient)
        assert stats["phase"] == "waiting" and stats["chatOnly"] is True
        assert stats["local"] == {"audio": False, "video": False}
        assert_accessible_in_webkit(patient, context="in the waiting room")

        practitioner.goto("/scheduling/my-day/")
        row = practitioner.locator(f'tr[data-appointment="{public_id}"]')
        row.locator(".room-waiting").wait_for(state="visible")
        row.get_by_role("link", name="Abrir la sala").click()
        practitioner.wait_for_url(f"**/visit/{public_id}/room/")
        practitioner.get_by_role("button", name="Admitir", exact=True).click()

        # In the call by chat: the page says so and shows no self-view or device buttons.
        _until(lambda: patient.find_element(By.CSS_SELECTOR, "[data-call-stage]").is_displayed(), "the call stage")
        assert text_of(patient, "[data-call-notice]") == str(CALL_STRINGS["chat_only"])
        for hidden in (".call-self", '[data-call-stage] [data-action="mute"]', "[data-quality]"):
            assert not patient.find_element(By.CSS_SELECTOR, hidden).is_displayed(), hidden
        assert_accessible_in_webkit(patient, context="in the call, by chat")

        # The practitioner's page shows the patient by chat only and, once told, keeps no connection to them
        # (none comes back after its watchdog's period of 3 s).
        tile = practitioner.locator("[data-chat-only]")
        tile.get_by_text(str(CALL_STRINGS["peer_chat_only"])).wait_for()
        assert tile.locator("[data-peer-name]").inner_text() == "Paciente"
        assert_accessible(practitioner, context="the room with a patient by chat only")
        time.sleep(4)
        doctor = practitioner.evaluate(STATS)
        assert doctor["peers"] == [] and len(doctor["chatOnlyPeers"]) == 1, doctor

        # Chat both ways.
        by_label(patient, "Mensaje").send_keys("Tengo fiebre desde ayer.")
        by_role(patient, "button", "Enviar").click()
        practitioner.locator("[data-chat-log]").get_by_text("Tengo fiebre desde ayer.").wait_for()
        practitioner.get_by_label("Mensaje").fill("¿Cuánto de temperatura?")
        practitioner.get_by_role("button", name="Enviar").click()
        _until(lambda: "¿Cuánto de temperatura?" in text_of(patient, "[data-chat-log]"), "the reply in WebKit")
        assert ChatMessage.objects.count() == 2

        # The encounter says the visit was by chat, and the trail that the patient's browser decided it.
        encounter = Encounter.objects.get(appointment_ref=str(public_id))
        _until(
            lambda: list(encounter.modality_changes.values_list("modality", flat=True)) == ["video", "chat"],
            "the chat modality in the encounter",
        )
        changed = AuditEvent.objects.get(action=AuditAction.VISIT_MODALITY_CHANGED)
        assert changed.details["modality"] == "chat" and changed.details["automatic"] is True

        # As the page advised, the patient opens the link again in a browser that makes video calls: that page
        # takes the place of the WebKit one, comes straight into the call, and the practitioner's page, which
        # had them as chat only, connects to it: both decode each other's video and hear audio.
        phone = _phone(browser, daphne)
        open_link_and_verify(phone, token, public_id)
        phone.get_by_role("link", name="Probar mi cámara y conexión").wait_for()
        phone.goto(f"/visit/{public_id}/waiting/")
        phone.locator("[data-call-stage]").wait_for(state="visible")
        replaced = str(CALL_STRINGS["closed_replaced"])
        _until(lambda: text_of(patient, "[data-ended-text]") == replaced, "the WebKit page told it was replaced")
        for page in (phone, practitioner):
            first = _wait_for_media(page)
            assert _wait_for_media(page, frames_above=first["framesDecoded"])["framesDecoded"] > first["framesDecoded"]
        practitioner.locator("[data-chat-only]").wait_for(state="detached")
        _until(
            lambda: list(encounter.modality_changes.values_list("modality", flat=True)) == ["video", "chat", "video"],
            "the video modality back in the encounter",
        )

        practitioner.get_by_role("button", name="Terminar la teleconsulta").click()
        phone.get_by_text(str(CALL_STRINGS["closed_ended"])).first.wait_for()
        deadline = time.monotonic() + 10
        while Appointment.objects.get(pk=appointment.pk).status != AppointmentStatus.COMPLETED:
            assert time.monotonic() < deadline, "the appointment was not completed"
            time.sleep(0.2)
        encounter.refresh_from_db()
        assert encounter.modality_used == "video"
    finally:
        practitioner.context.close()
        if phone is not None:
            phone.context.close()
