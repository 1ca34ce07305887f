"""TURN over TCP and over TLS (VID-6): the paths of patients whose networks let only TCP, or only TLS on 443, out.

coturn (Debian's /usr/bin/turnserver) runs on loopback from deploy/turnserver.conf itself, with its UDP listeners
off, a plain TCP listener (3478 in production) and a TLS one (443) holding a certificate for `localhost` signed by a
certificate authority made for this run (tests/video/coturn_support.py). Two Chromium participants restricted to
relay candidates, given only one `turn:…?transport=tcp` or only one `turns:localhost:…?transport=tcp` server, decode
each other's video, and the selected pair says which way each reached coturn (getStats' `relayProtocol`).

Chromium checks the TURN server's certificate as it checks a web site's: the browser that connects trusts the
authority through its NSS database; one that does not, or a `turns:` URL naming a host the certificate is not for,
gets no relay candidate at all.
"""

from __future__ import annotations

import json
import os
import re
import ssl
from collections.abc import Iterator

import pytest

from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.video.call_network_support import Daphne, admit, frames, open_page, wait_for_frames
from tests.video.coturn_support import (
    Certificates,
    Coturn,
    answers_stun,
    make_certificates,
    start_coturn,
    tls_handshake,
    trusting_home,
)
from tests.video.signalling_support import signed_in_cookie
from tests.video.test_call_network import OBSERVE, PATH
from tests.video.test_call_pages import hosted_visit
from video.turn import ice_servers_for_token

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SECRET = "loopback-turn-tls-secret-0123456789"


@pytest.fixture(scope="module")
def turn_tls(tmp_path_factory) -> Iterator[tuple[Coturn, Certificates]]:
    directory = tmp_path_factory.mktemp("coturn-tls")
    certificates = make_certificates(directory)
    process, server = start_coturn(directory, secret=SECRET, certificates=certificates, udp=False)
    try:
        yield server, certificates
    finally:
        process.terminate()
        process.wait(timeout=10)


def _chromium(browser, home) -> object:
    """Another Chromium from the module's Playwright, whose user's NSS database is the one under `home`."""
    return browser.browser_type.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, env={**os.environ, "HOME": str(home)}
    )


@pytest.fixture(scope="module")
def trusting_browser(browser, turn_tls, tmp_path_factory) -> Iterator[object]:
    """Chromium that trusts this run's certificate authority, as a patient's browser trusts a public one."""
    _, certificates = turn_tls
    launched = _chromium(browser, trusting_home(tmp_path_factory.mktemp("home-trusting"), certificates.authority))
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture(scope="module")
def untrusting_browser(browser, tmp_path_factory) -> Iterator[object]:
    """Chromium that trusts only the system's authorities (an empty NSS database of its own)."""
    launched = _chromium(browser, trusting_home(tmp_path_factory.mktemp("home-untrusting"), None))
    try:
        yield launched
    finally:
        launched.close()


def _relay_only_daphne(redis_url: str, turn_url: str) -> Daphne:
    server = Daphne(
        redis_url=redis_url,
        extra_env={
            "ICE_SERVERS": json.dumps([{"urls": [turn_url]}]),
            "STUN_URLS": "",
            "TURN_URLS": "",
            "TURN_SECRET": SECRET,
            "ICE_TRANSPORT_POLICY": "relay",
        },
    )
    server.start()
    return server


def _call_through(browser, personas, redis_url: str, turn_url: str) -> list[dict[str, object]]:
    """A visit between two pages of `browser` whose only ICE server is `turn_url`, relay candidates only: video
    decodes both ways; returns each side's selected path (PATH) with its description's candidate types."""
    server = _relay_only_daphne(redis_url, turn_url)
    patient = practitioner = None
    try:
        visit = hosted_visit(personas)
        patient = open_page(browser, server.url, signed_in_cookie(personas.patient), init_script=OBSERVE)
        practitioner = open_page(browser, server.url, signed_in_cookie(personas.practitioner), init_script=OBSERVE)
        admit(patient, practitioner, str(visit.appointment.public_id))
        paths = []
        for side, page in (("patient", patient), ("practitioner", practitioner)):
            wait_for_frames(page, above=frames(page) + 24, side=side)
        for page in (patient, practitioner):
            path = page.evaluate(PATH)
            sdp = page.evaluate(
                "() => window.tcPeers.filter((p) => p.connectionState === 'connected').pop().localDescription.sdp"
            )
            path["kinds"] = {line.split(" typ ")[1].split()[0] for line in sdp.splitlines() if "a=candidate:" in line}
            paths.append(path)
        return paths
    finally:
        for page in (patient, practitioner):
            if page is not None:
                page.context.close()
        server.stop()


def _assert_relayed(paths: list[dict[str, object]], server: Coturn, protocol: str) -> None:
    for side, path in zip(("patient", "practitioner"), paths, strict=True):
        # Both ends of the selected pair are relay candidates, allocated by this coturn over `protocol`.
        assert (path["local"], path["remote"]) == ("relay", "relay"), (side, path)
        assert path["relayProtocol"] == protocol, (side, path)
        assert path["localAddress"] == "127.0.0.1", (side, path)
        assert server.relay_base <= int(path["localPort"]) <= server.relay_base + 999, (side, path)
        # Chromium put no other kind of candidate in its description.
        assert path["kinds"] == {"relay"}, (side, path)


def test_participants_connect_through_turn_over_tcp(trusting_browser, personas, turn_tls, redis_url):
    server, _ = turn_tls
    paths = _call_through(trusting_browser, personas, redis_url, f"turn:127.0.0.1:{server.port}?transport=tcp")
    _assert_relayed(paths, server, "tcp")


def test_participants_connect_through_turn_over_tls(trusting_browser, personas, turn_tls, redis_url):
    server, _ = turn_tls
    before = len(_tls_sessions(server))
    paths = _call_through(trusting_browser, personas, redis_url, f"turns:localhost:{server.tls_port}?transport=tcp")
    _assert_relayed(paths, server, "tls")
    # coturn's side: the allocations came over TLS 1.2 or 1.3, under the file's protocol settings.
    sessions = _tls_sessions(server)[before:]
    assert sessions, server.log.read_text()[-2000:]
    assert {method for _cipher, method in sessions} <= {"TLSv1.2", "TLSv1.3"}, sessions


def _tls_sessions(server: Coturn) -> list[tuple[str, str]]:
    """(cipher, protocol) of each session coturn opened over TLS, from its log."""
    return re.findall(r"new, realm=.*?, cipher=([^,]+), method=(TLSv[\d.]+)", server.log.read_text())


# Gathers relay candidates in a blank page (no visit needed): the relay candidates' protocols and the ICE
# errors, once gathering is complete.
GATHER = """async (iceServers) => {
  const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: "relay" });
  pc.createDataChannel("probe");
  const relays = [], errors = [];
  pc.onicecandidate = (event) => { if (event.candidate) { relays.push(event.candidate.relayProtocol); } };
  pc.onicecandidateerror = (event) => errors.push(event.errorCode);
  const complete = new Promise((resolve) => {
    pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === "complete") { resolve(); } };
  });
  await pc.setLocalDescription(await pc.createOffer());
  await complete;
  pc.close();
  return { relays, errors };
}"""


def _gather(browser, ice_servers: list[dict[str, object]]) -> dict[str, list[object]]:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        return page.evaluate(GATHER, ice_servers)
    finally:
        context.close()


def test_turn_over_tls_needs_a_certificate_the_browser_trusts_for_that_name(
    trusting_browser, untrusting_browser, turn_tls, settings
):
    server, _ = turn_tls
    settings.TURN_SECRET = SECRET

    def servers(url: str) -> list[dict[str, object]]:
        settings.ICE_SERVERS = [{"urls": [url]}]
        return ice_servers_for_token("tlsprobe")

    by_name = servers(f"turns:localhost:{server.tls_port}?transport=tcp")
    # The browser that trusts the authority gets a relay over TLS (so what follows fails for the reason stated).
    trusted = _gather(trusting_browser, by_name)
    assert trusted["relays"] and set(trusted["relays"]) == {"tls"}, trusted
    # A browser that does not trust it refuses the handshake: no relay candidate, ICE error 701.
    untrusted = _gather(untrusting_browser, by_name)
    assert untrusted["relays"] == [] and 701 in untrusted["errors"], untrusted
    # A trusted certificate for another name does not do either: the URL's host must be in the certificate.
    by_address = _gather(trusting_browser, servers(f"turns:127.0.0.1:{server.tls_port}?transport=tcp"))
    assert by_address["relays"] == [] and 701 in by_address["errors"], by_address


def test_tls_listener_follows_the_deployed_configuration(turn_tls):
    server, certificates = turn_tls
    # TLS 1.2 with forward secrecy (the file's cipher-list) ...
    with tls_handshake(
        server.tls_port, authority=certificates.authority, maximum_version=ssl.TLSVersion.TLSv1_2
    ) as connection:
        assert connection.version() == "TLSv1.2"
        assert connection.cipher()[0].startswith("ECDHE-"), connection.cipher()
    # ... and not without: a client offering only static-RSA key exchange (which coturn's default list accepts
    # with this RSA certificate) is refused.
    with pytest.raises(ssl.SSLError):
        tls_handshake(
            server.tls_port,
            authority=certificates.authority,
            maximum_version=ssl.TLSVersion.TLSv1_2,
            ciphers="AES256-GCM-SHA384:AES128-GCM-SHA256",
        ).close()
    # Nothing listens on UDP (no-udp here, no-dtls in the file): the relays above came over TCP or TLS.
    assert not answers_stun(server.port)
    assert not answers_stun(server.tls_port)
