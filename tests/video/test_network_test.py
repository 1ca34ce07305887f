"""The pre-call check end to end: an aiortc caller posts its offer to a real daphne process, gets its own
media back, decoded, and the server peer's measurements and recommendation (VID-5); bad input is refused."""

from __future__ import annotations

import asyncio
import json
import secrets
import urllib.error
import urllib.request

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django_otp.plugins.otp_totp.models import TOTPDevice

from scheduling import joinlinks
from scheduling.models import ParticipantRole
from tests.frontend.conftest import register
from tests.scheduling.test_joinlinks import make_appointment
from tests.video.aiortc_support import Caller, run_caller
from tests.video.network_support import Browser, anonymous, daphne_on_test_database, post, post_offer, signed_in
from video.views import MAX_SDP_CHARS, RATE_LIMIT

pytestmark = pytest.mark.django_db(transaction=True)

MAX_PEERS = 2


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        # A short life for each peer, so the capacity test below frees its places quickly.
        yield from daphne_on_test_database(NETWORK_TEST_MAX_PEERS=MAX_PEERS, NETWORK_TEST_SECONDS=10)


@pytest.fixture(scope="module")
def offer_sdp() -> str:
    """A real aiortc offer, for tests about the endpoint rather than the media."""

    async def make() -> str:
        caller = Caller()
        try:
            return await caller.offer()
        finally:
            await caller.close()

    return asyncio.run(make())


@pytest.fixture
def patient_browsers(personas):
    """Signed-in patient sessions, made before an async test starts (the ORM stays out of its event loop)."""
    return [signed_in(personas.patient) for _ in range(MAX_PEERS + 1)]


@pytest.fixture
def practitioner_browser(personas):
    return signed_in(personas.practitioner, otp_device=TOTPDevice.objects.get(user=personas.practitioner))


def _answer_through(server: str, browser):
    async def answer_for(sdp: str) -> dict[str, str]:
        status, payload = await asyncio.to_thread(post_offer, server, browser, sdp)
        assert status == 200, payload
        assert payload["type"] == "answer"
        return payload  # type: ignore[return-value]

    return answer_for


@pytest.mark.asyncio
async def test_patient_gets_media_back_and_a_recommendation(server, patient_browsers):
    outcome = await run_caller(_answer_through(server, patient_browsers[0]))

    # The echo: frames of both kinds came back through the server and were decoded.
    assert outcome.frames["video"] >= 10
    assert outcome.frames["audio"] >= 10
    assert outcome.frame_sizes == {(640, 480)}  # aiortc's synthetic VideoStreamTrack size
    result = outcome.result
    assert result is not None
    assert result["sent"] == 200
    # Loopback: nothing lost, a short round trip, the whole probe train echoed.
    assert result["loss"] <= 0.05
    assert 0 < result["rtt_ms"] < 200
    assert result["bitrate_kbps"] > 300
    assert result["recommendation"] == "video"
    assert set(result["thresholds"]) == {"max_rtt_ms", "max_loss", "min_bitrate_kbps"}


@pytest.mark.asyncio
async def test_practitioner_with_second_factor_may_test(server, practitioner_browser):
    caller = Caller()
    try:
        status, payload = await asyncio.to_thread(post_offer, server, practitioner_browser, await caller.offer())
        assert status == 200, payload
        await caller.accept(payload)  # type: ignore[arg-type]
        await caller.connected()
    finally:
        await caller.close()


def test_anonymous_is_refused(server, personas):
    status, payload = post_offer(server, anonymous(), "v=0\r\n")
    assert status == 403
    assert payload["error"] == "forbidden"
    assert "enlace" in payload["message"]


def test_staff_without_second_factor_is_sent_to_it(server, personas):
    status, _ = post_offer(server, signed_in(personas.outsider), "v=0\r\n")
    assert status == 302


def _link_browser(personas, *, verified: bool, revoked: bool = False) -> Browser:
    """The session a patient's join link leaves in their browser (frontend/patient/visit.py binds it)."""
    appointment = make_appointment(personas, register(personas))
    participant = appointment.participants.get(role=ParticipantRole.PATIENT)
    joinlinks.join_link_issue(participant=participant, by=personas.coordinator)
    link = participant.join_links.get()
    if revoked:
        joinlinks.join_link_revoke(participant=participant, by=personas.coordinator)
    session = SessionStore()
    session["visit_link"] = {
        "participant": participant.pk,
        "appointment": str(appointment.public_id),
        "link": link.pk,
        "verified": verified,
    }
    session.create()
    return Browser(session.session_key, secrets.token_hex(16))


def test_verified_link_session_may_test(server, personas, offer_sdp):
    status, payload = post_offer(server, _link_browser(personas, verified=True), offer_sdp)
    assert status == 200, payload
    assert payload["type"] == "answer"


@pytest.mark.parametrize("revoked", [False, True], ids=["unverified", "revoked"])
def test_unverified_or_revoked_link_session_is_refused(server, personas, revoked):
    browser = _link_browser(personas, verified=revoked, revoked=revoked)
    status, payload = post_offer(server, browser, "v=0\r\n")
    assert status == 403, payload


def test_only_post(server, personas):
    browser = signed_in(personas.patient)
    request = urllib.request.Request(  # noqa: S310 (the test server's own http:// URL)
        server + "/visit/network-test/offer", headers={"Cookie": browser.cookie_header()}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310
    assert refused.value.code == 405


def test_post_without_csrf_token_is_refused(server, personas):
    browser = signed_in(personas.patient)
    status, _ = post(server, browser, b'{"sdp": "v=0", "type": "offer"}', csrf_header=False)
    assert status == 403


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "malformed"),
        (b"\xff\xfe", "malformed"),
        (b"[1, 2]", "malformed"),
        (b'{"sdp": "v=0"}', "malformed"),
        (b'{"sdp": "v=0", "type": "offer", "extra": 1}', "malformed"),
        (b'{"sdp": "v=0", "type": "answer"}', "wrong_type"),
        (b'{"sdp": 5, "type": "offer"}', "malformed"),
        (b'{"sdp": "hello", "type": "offer"}', "malformed"),
        # Parses, but offers nothing to echo or measure (no media, no data channel).
        (b'{"sdp": "v=0", "type": "offer"}', "malformed"),
        (
            json.dumps({"sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "type": "offer"}).encode(),
            "malformed",
        ),
        (json.dumps({"sdp": "v=0\r\n" + "a=x\r\n" * MAX_SDP_CHARS, "type": "offer"}).encode(), "too_large"),
    ],
)
def test_bad_input_is_a_clear_400_and_the_server_goes_on(server, personas, body, error):
    browser = signed_in(personas.patient)
    status, payload = post(server, browser, body)
    assert status == 400, payload
    assert payload["error"] == error
    assert payload["message"]
    # The process goes on serving.
    assert urllib.request.urlopen(server + "/healthz", timeout=10).status == 200  # noqa: S310 (the test server)


def test_unparseable_sdp_is_a_400_and_counts_towards_the_rate_limit(server, personas):
    browser = signed_in(personas.patient)
    for _ in range(RATE_LIMIT):
        status, payload = post_offer(server, browser, "v=0\r\nm=nonsense\r\n")
        assert status == 400, payload
    status, payload = post_offer(server, browser, "v=0\r\nm=nonsense\r\n")
    assert status == 429
    assert payload["error"] == "rate_limited"
    # Another session is not affected.
    assert post_offer(server, signed_in(personas.patient), "v=0\r\nm=nonsense\r\n")[0] == 400


def test_refusals_are_translated(server, personas):
    status, payload = post(server, anonymous(), b"{}", language="en")
    assert status == 403
    assert payload["message"] == "Sign in or open your appointment link to test your connection."


@pytest.mark.asyncio
async def test_beyond_the_limit_of_concurrent_tests_a_clear_503(server, patient_browsers, offer_sdp):
    callers = [Caller() for _ in range(MAX_PEERS)]
    try:
        for caller, browser in zip(callers, patient_browsers, strict=False):
            offer = await caller.offer()
            # Offers posted by earlier tests without connecting hold places until their peers time out
            # (NETWORK_TEST_SECONDS=10 here): wait for those to go.
            for _ in range(150):
                status, payload = await asyncio.to_thread(post_offer, server, browser, offer)
                if status != 503:
                    break
                await asyncio.sleep(0.1)
            assert status == 200, payload
            await caller.accept(payload)  # type: ignore[arg-type]
        for caller in callers:
            await caller.connected()
        browser = patient_browsers[-1]
        status, payload = await asyncio.to_thread(post_offer, server, browser, offer_sdp)
        assert status == 503
        assert payload["error"] == "busy"
    finally:
        for caller in callers:
            await caller.close()
    # Closing the callers frees their places: the server peers notice and close themselves.
    for _ in range(50):
        status, payload = await asyncio.to_thread(post_offer, server, browser, offer_sdp)
        if status == 200:
            break
        await asyncio.sleep(0.1)
    assert status == 200, payload
