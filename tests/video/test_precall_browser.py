"""The pre-call check in Chromium on a phone-sized screen, against a real daphne process (the echo peer lives
there): the fake camera plays in the preview, the fake microphone moves the meter, the network test ends with
a recommendation and its figures, kept for the call page; a refusal (rate limit, no session) shows the
server's message; the page passes axe-core."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore

from scheduling import joinlinks
from scheduling.models import ParticipantRole
from tests.browser_checks import assert_accessible
from tests.frontend.conftest import register
from tests.scheduling.test_joinlinks import make_appointment
from tests.video.network_support import daphne_on_test_database
from video.views import RATE_LIMIT

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        yield from daphne_on_test_database()


def _verified_link_session(personas) -> tuple[str, str]:
    """A patient's verified join-link session (what frontend/patient/visit.py leaves after verification)."""
    appointment = make_appointment(personas, register(personas))
    participant = appointment.participants.get(role=ParticipantRole.PATIENT)
    joinlinks.join_link_issue(participant=participant, by=personas.coordinator)
    session = SessionStore()
    session[joinlinks.LINK_SESSION_KEY] = {
        "participant": participant.pk,
        "appointment": str(appointment.public_id),
        "link": participant.join_links.get().pk,
        "verified": True,
    }
    session.create()
    return str(appointment.public_id), session.session_key


def test_precall_check_on_a_phone(server, browser, personas):
    public_id, session_key = _verified_link_session(personas)
    context = browser.new_context(
        locale="es-PE", base_url=server, viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2
    )
    context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session_key, "url": server}])
    context.grant_permissions(["camera", "microphone"], origin=server)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        response = page.goto(f"/visit/{public_id}/check/")
        assert response.status == 200
        assert_accessible(page, context="before the check")
        assert page.locator("[data-network-result]").is_hidden()

        page.get_by_role("button", name="Probar cámara y micrófono").click()
        page.wait_for_function(
            "() => { const v = document.querySelector('[data-preview]'); return v.videoWidth > 0 && !v.paused; }"
        )
        page.wait_for_function("() => Number(document.querySelector('[data-mic-level]').dataset.peak || 0) > 0")
        assert "funcionan" in page.locator("[data-device-status]").inner_text()

        # The network test starts by itself once the devices are open.
        page.wait_for_selector("[data-network-result]:not([hidden])", timeout=30_000)
        recommendation = page.locator("[data-precall]").get_attribute("data-recommendation-value")
        assert recommendation == "video"  # loopback
        assert page.locator("[data-recommendation-short]").inner_text() == "Video"
        assert page.locator("[data-recommendation]").inner_text().startswith("Su conexión es buena")
        rtt = page.locator("[data-rtt]").inner_text()
        assert rtt.endswith(" ms") and rtt[:-3].replace(",", "").isdigit()
        assert page.locator("[data-loss]").inner_text().endswith("%")
        assert page.locator("[data-bitrate]").inner_text().endswith("kbit/s")
        stored = json.loads(page.evaluate("sessionStorage.getItem('teleconsult.precall.recommendation')"))
        assert stored["recommendation"] == "video" and stored["bitrate_kbps"] > 300

        # No consent yet: the way on leads back to the lobby, where the consents are given.
        onward = page.get_by_role("link", name="Volver a los datos de la cita")
        assert onward.get_attribute("href") == f"/visit/{public_id}/"
        assert_accessible(page, context="with the results")

        # Too many tests from one session: the rate limit's words. The session's other five tests are spent
        # here with bare offers that reach the peer (every offer that does counts, docs/video-network.md).
        token = page.locator("[data-precall] [name=csrfmiddlewaretoken]").input_value()
        for _ in range(RATE_LIMIT - 1):
            refused = page.request.post(
                "/visit/network-test/offer",
                data=json.dumps({"sdp": "v=0\r\n", "type": "offer"}),
                headers={"Content-Type": "application/json", "X-CSRFToken": token},
            )
            assert refused.status in (200, 400)  # answered or refused by aiortc: either way it counts
        page.get_by_role("button", name="Probar mi conexión").click()
        status = page.locator("[data-network-status]")
        status.filter(has_text="Hizo demasiadas pruebas seguidas").wait_for()
        assert page.locator("[data-network-result]").is_hidden()

        # The session ends (link replaced, signed out…): the endpoint's refusal is shown in its own words.
        context.clear_cookies(name=settings.SESSION_COOKIE_NAME)
        page.get_by_role("button", name="Probar mi conexión").click()
        status.filter(has_text="Ingrese o abra su enlace de cita").wait_for()
    finally:
        context.close()
