"""Two aiortc peers restricted to relay candidates (iceTransportPolicy "relay") connect through Debian's coturn on
loopback, run from deploy/turnserver.conf (use-auth-secret), using the credentials video.turn mints (VID-6)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.mediastreams import VideoStreamTrack
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from tests.video.aiortc_support import Caller
from tests.video.coturn_support import make_certificates, start_coturn
from video.network_test import network_test_answer
from video.turn import ice_servers_for_token

SECRET = "loopback-turn-secret-0123456789"


@pytest.fixture(scope="module")
def coturn(tmp_path_factory) -> Iterator[tuple[int, int]]:
    """coturn from deploy/turnserver.conf (tests/video/coturn_support.py); its plain port and relay range."""
    directory = tmp_path_factory.mktemp("coturn")
    process, server = start_coturn(directory, secret=SECRET, certificates=make_certificates(directory), udp=True)
    try:
        yield server.port, server.relay_base
    finally:
        process.terminate()
        process.wait(timeout=10)


def _relay_only(ice_servers: list[dict[str, object]]) -> RTCConfiguration:
    return RTCConfiguration(
        iceServers=[RTCIceServer(**server) for server in ice_servers],  # type: ignore[arg-type]
        iceTransportPolicy=RTCIceTransportPolicy.RELAY,
    )


async def _connect(config_a: RTCConfiguration, config_b: RTCConfiguration, timeout: float = 15.0):
    """Offer/answer between two peers in this process; returns both, the data channel pair and candidates."""
    a, b = RTCPeerConnection(config_a), RTCPeerConnection(config_b)
    a.addTrack(VideoStreamTrack())
    channel = a.createDataChannel("chat")
    received: asyncio.Queue[str] = asyncio.Queue()
    frames: asyncio.Queue[object] = asyncio.Queue()

    @b.on("track")
    def on_track(track) -> None:
        async def first_frame() -> None:
            frames.put_nowait(await track.recv())

        readers.append(asyncio.ensure_future(first_frame()))

    readers: list[asyncio.Task[None]] = []

    @b.on("datachannel")
    def on_datachannel(remote_channel) -> None:
        remote_channel.on("message", lambda message: remote_channel.send(f"echo:{message}"))

    channel.on("message", lambda message: received.put_nowait(message))
    opened = asyncio.Event()
    channel.on("open", opened.set)
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    try:
        await asyncio.wait_for(opened.wait(), timeout)
        channel.send(json.dumps({"hello": "relay"}))
        reply = await asyncio.wait_for(received.get(), timeout)
        frame = await asyncio.wait_for(frames.get(), timeout)
    except TimeoutError:
        reply = frame = None
    for reader in readers:
        reader.cancel()
    return a, b, reply, frame


def _candidate_addresses(sdp: str) -> list[tuple[str, int]]:
    # a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...
    fields = [line.split() for line in sdp.splitlines() if line.startswith("a=candidate:")]
    return [(parts[4], int(parts[5])) for parts in fields]


def _candidate_types(sdp: str) -> set[str]:
    return {line.split(" typ ")[1].split()[0] for line in sdp.splitlines() if line.startswith("a=candidate:")}


@pytest.mark.asyncio
async def test_relay_only_peers_connect_through_coturn(coturn, settings):
    port, base = coturn
    settings.TURN_SECRET = SECRET
    settings.TURN_CREDENTIAL_TTL = 300
    settings.ICE_SERVERS = [{"urls": [f"turn:127.0.0.1:{port}?transport=udp"]}]

    a, b, reply, frame = await _connect(
        _relay_only(ice_servers_for_token("patienttoken")), _relay_only(ice_servers_for_token("doctortoken"))
    )
    try:
        # Only relay candidates were offered and answered: the media path is through coturn.
        assert _candidate_types(a.localDescription.sdp) == {"relay"}
        assert _candidate_types(b.localDescription.sdp) == {"relay"}
        # ... allocated by this coturn, on its relay address and port range.
        for sdp in (a.localDescription.sdp, b.localDescription.sdp):
            for address, relay_port in _candidate_addresses(sdp):
                assert address == "127.0.0.1"
                assert base <= relay_port <= base + 999
        assert a.connectionState == b.connectionState == "connected"
        assert reply == 'echo:{"hello": "relay"}'
        # A decoded video frame came through the relay.
        assert (frame.width, frame.height) == (640, 480)
    finally:
        await a.close()
        await b.close()


@pytest.mark.asyncio
async def test_expired_credentials_get_no_relay(coturn, settings):
    port, _ = coturn
    settings.TURN_SECRET = SECRET
    settings.ICE_SERVERS = [{"urls": [f"turn:127.0.0.1:{port}?transport=udp"]}]
    expired = ice_servers_for_token("latecomer", now=time.time() - 2 * settings.TURN_CREDENTIAL_TTL)
    a = RTCPeerConnection(_relay_only(expired))
    a.createDataChannel("chat")
    try:
        await a.setLocalDescription(await a.createOffer())
        # coturn refused the allocation (401): no relay candidate, so nothing at all under the relay policy.
        assert _candidate_types(a.localDescription.sdp) == set()
    finally:
        await a.close()


@pytest.mark.asyncio
async def test_wrong_secret_gets_no_relay(coturn, settings):
    port, _ = coturn
    settings.TURN_SECRET = "not-the-secret-coturn-has-0000"
    settings.ICE_SERVERS = [{"urls": [f"turn:127.0.0.1:{port}?transport=udp"]}]
    a = RTCPeerConnection(_relay_only(ice_servers_for_token("intruder")))
    a.createDataChannel("chat")
    try:
        await a.setLocalDescription(await a.createOffer())
        assert _candidate_types(a.localDescription.sdp) == set()
    finally:
        await a.close()


@pytest.mark.asyncio
async def test_network_test_peer_takes_a_relay_candidate_when_told(coturn, settings):
    """NETWORK_TEST_RELAY (docker-compose): the server peer offers a relay candidate from coturn, and a caller
    restricted to relay candidates completes the whole pre-call check through it."""
    port, _ = coturn
    settings.TURN_SECRET = SECRET
    settings.ICE_SERVERS = [{"urls": [f"turn:127.0.0.1:{port}?transport=udp"]}]
    settings.NETWORK_TEST_RELAY = True
    caller = Caller(_relay_only(ice_servers_for_token("caller")))
    peer = None
    try:
        answer, peer = await network_test_answer(sdp=await caller.offer())
        assert "relay" in _candidate_types(answer.sdp)
        assert _candidate_types(caller.pc.localDescription.sdp) == {"relay"}
        await caller.accept({"sdp": answer.sdp, "type": answer.type})
        outcome = await caller.wait(video_frames=5)
    finally:
        await caller.close()
        if peer is not None:
            await peer.close()  # this test's event loop ends with the test
    assert outcome.result is not None
    assert outcome.result["received"] > 0
    assert outcome.frames["video"] >= 5
