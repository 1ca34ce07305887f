"""The server-side peer of the pre-call check (VID-5): echoes the caller's media and measures the link.

A browser (or any WebRTC client) posts an offer with its camera and microphone tracks and a data channel
labelled "probe" (unordered, no retransmissions, so lost packets stay lost). The peer sends each track back
through a MediaRelay, so the caller sees and hears itself after a full round trip, and once the caller
writes {"type": "start"} on the probe channel it sends timestamped, padded probes that the caller writes
back unchanged. From the echoes it computes the round-trip time, the loss and the round-trip throughput,
and writes one {"type": "result", ...} message with a recommendation: "video" or "audio" (THRESHOLDS).

The peer lives inside the daphne process that answered the HTTP request, on daphne's asyncio event loop
(aiortc is asyncio-native; the async view awaits it directly). Its ICE agent never uses STUN, because aiortc
gathers inside setLocalDescription and an unreachable STUN server would hold the answer back for five seconds
(bench/aiortc_setup.py measures this); a server's own addresses need no server-reflexive candidate. Where
daphne's addresses are not reachable from browsers (docker-compose's bridge networks), NETWORK_TEST_RELAY
makes the peer also take a relay candidate from the configured TURN server, which must then be reachable
(aioice gives up on it after five seconds). Every peer is closed after
NETWORK_TEST_SECONDS at the latest, at most NETWORK_TEST_MAX_PEERS run at once per process, and closing
one cancels every task it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, cast

from aiortc import RTCConfiguration, RTCDataChannel, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack
from django.conf import settings

from video.turn import ice_servers_for_token

logger = logging.getLogger(__name__)

PROBE_LABEL = "probe"
# The probe train: PROBE_COUNT packets of PROBE_PADDING bytes every PROBE_INTERVAL seconds, i.e. about
# 800 kbit/s outbound for two seconds: above what the video threshold asks, so a link that echoes it all
# back in time has room for video.
PROBE_COUNT = 200
PROBE_INTERVAL = 0.010
PROBE_PADDING = 1000
# After the last probe, how long late echoes still count (beyond that a probe is lost).
PROBE_GRACE = 1.0
# Bytes a caller's data-channel message may have; longer ones are ignored.
MAX_MESSAGE_BYTES = 4096

# The recommendation: video when every one of these holds, audio otherwise (docs/video-network.md). They follow
# what a 360p call needs: ~300 kbit/s each way, a round trip short enough for conversation, little loss.
THRESHOLDS = {"max_rtt_ms": 400.0, "max_loss": 0.05, "min_bitrate_kbps": 300.0}


class NetworkTestBusy(Exception):
    """Too many network tests are running in this process; the caller should try again shortly."""


class NetworkTestRefused(Exception):
    """The offer cannot be answered (malformed SDP, nothing to echo)."""


def recommend(*, rtt_ms: float | None, loss: float, bitrate_kbps: float) -> str:
    if rtt_ms is None:
        return "audio"
    video = (
        rtt_ms <= THRESHOLDS["max_rtt_ms"]
        and loss <= THRESHOLDS["max_loss"]
        and bitrate_kbps >= THRESHOLDS["min_bitrate_kbps"]
    )
    return "video" if video else "audio"


@dataclass
class ProbeResult:
    sent: int
    received: int
    rtt_ms: float | None
    loss: float
    bitrate_kbps: float

    def as_message(self) -> dict[str, object]:
        return {
            "type": "result",
            "sent": self.sent,
            "received": self.received,
            "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 1),
            "loss": round(self.loss, 4),
            "bitrate_kbps": round(self.bitrate_kbps, 1),
            "recommendation": recommend(rtt_ms=self.rtt_ms, loss=self.loss, bitrate_kbps=self.bitrate_kbps),
            "thresholds": THRESHOLDS,
        }


@dataclass
class _Probe:
    """The server's half of the probe exchange on one data channel."""

    channel: RTCDataChannel
    sent_at: dict[int, float] = field(default_factory=dict)
    rtts: list[float] = field(default_factory=list)
    echoed_bytes: int = 0
    started: bool = False
    first_sent: float = 0.0
    last_echo: float | None = None
    all_echoed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_echo(self, message: dict[str, object], size: int) -> None:
        seq = message.get("seq")
        if not isinstance(seq, int) or seq not in self.sent_at:
            return
        now = time.monotonic()
        self.rtts.append((now - self.sent_at.pop(seq)) * 1000)
        self.echoed_bytes += size
        self.last_echo = now
        if len(self.rtts) == PROBE_COUNT:
            self.all_echoed.set()

    async def run(self) -> ProbeResult:
        padding = "x" * PROBE_PADDING
        self.first_sent = time.monotonic()
        seq = 0
        while seq < PROBE_COUNT and self.channel.readyState == "open":
            # Paced by the clock, not by the sleeps: a busy event loop that wakes late sends what is due at
            # once, so the offered rate (and so the measured throughput) does not depend on the server's load.
            due = min(PROBE_COUNT, int((time.monotonic() - self.first_sent) / PROBE_INTERVAL) + 1)
            while seq < due:
                self.sent_at[seq] = time.monotonic()
                self.channel.send(json.dumps({"type": "probe", "seq": seq, "t": self.sent_at[seq], "pad": padding}))
                seq += 1
            await asyncio.sleep(PROBE_INTERVAL)
        sent = len(self.rtts) + len(self.sent_at)  # echoed so far plus still outstanding
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.all_echoed.wait(), PROBE_GRACE)
        received = len(self.rtts)
        span = (self.last_echo or self.first_sent) - self.first_sent
        bitrate = self.echoed_bytes * 8 / span / 1000 if span > 0 else 0.0
        rtts = sorted(self.rtts)
        return ProbeResult(
            sent=sent,
            received=received,
            rtt_ms=rtts[len(rtts) // 2] if rtts else None,
            loss=1 - received / sent if sent else 1.0,
            bitrate_kbps=bitrate,
        )


def server_ice_servers() -> list[RTCIceServer]:
    """The server peer's own ICE servers: never STUN; the configured TURN server only with NETWORK_TEST_RELAY.

    An empty list, never None: None would make aiortc use a public STUN server (see the module doc).
    """
    if not settings.NETWORK_TEST_RELAY:
        return []
    servers = []
    # A username of its own per peer, so coturn's per-user quota counts peers, not the whole service.
    for server in ice_servers_for_token(f"networktest{secrets.token_hex(6)}"):
        urls = [url for url in cast(list[str], server["urls"]) if url.startswith("turn")]
        if urls:
            username, credential = str(server["username"]), str(server["credential"])
            servers.append(RTCIceServer(urls=urls, username=username, credential=credential))
    return servers


class NetworkTestPeer:
    """One caller's echo peer; `close()` is idempotent and leaves no task behind."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=server_ice_servers()))
        self.relay = MediaRelay()
        self.tasks: set[asyncio.Task[object]] = set()
        self.closed = asyncio.Event()
        self.result: ProbeResult | None = None
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_connection_state)

    def _spawn(self, coroutine: Coroutine[Any, Any, object]) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind in ("audio", "video"):
            self.pc.addTrack(self.relay.subscribe(track))

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != PROBE_LABEL:
            channel.close()
            return
        probe = _Probe(channel)

        def on_message(data: str | bytes) -> None:
            if len(data) > MAX_MESSAGE_BYTES:
                return
            try:
                message = json.loads(data)
            except ValueError:
                return
            if not isinstance(message, dict):
                return
            if message.get("type") == "echo":
                probe.on_echo(message, len(data))
            elif message.get("type") == "start" and not probe.started:
                probe.started = True  # one probe train per peer
                self._spawn(self._probe(probe))

        channel.on("message", on_message)

    async def _probe(self, probe: _Probe) -> None:
        self.result = await probe.run()
        if probe.channel.readyState == "open":
            probe.channel.send(json.dumps(self.result.as_message()))
        logger.info(
            "Network test measured: rtt %s ms, loss %.3f, %.0f kbit/s, %s",
            self.result.rtt_ms and round(self.result.rtt_ms),
            self.result.loss,
            self.result.bitrate_kbps,
            self.result.as_message()["recommendation"],
        )

    def _on_connection_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self._spawn(self.close())

    async def answer(self, offer: RTCSessionDescription) -> RTCSessionDescription:
        await self.pc.setRemoteDescription(offer)
        if not self.pc.getTransceivers() and self.pc.sctp is None:
            # A description with no media and no data channel (a bare "v=0" parses): nothing to echo or measure.
            raise ValueError("the offer has no media and no data channel")
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription

    async def expire(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closed.wait(), seconds)
        await self.close()

    async def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        _peers.discard(self)
        current = asyncio.current_task()
        for task in list(self.tasks):
            if task is not current:
                task.cancel()
        await self.pc.close()


# The peers of this process. The limit is per process, like the event loop they share.
_peers: set[NetworkTestPeer] = set()


def active_peers() -> int:
    return len(_peers)


async def network_test_answer(*, sdp: str, timeout: float = 10.0) -> tuple[RTCSessionDescription, NetworkTestPeer]:
    """Start an echo peer for `sdp` (an offer) and return its answer; it closes itself after NETWORK_TEST_SECONDS."""
    if len(_peers) >= settings.NETWORK_TEST_MAX_PEERS:
        raise NetworkTestBusy
    peer = NetworkTestPeer()
    _peers.add(peer)
    try:
        answer = await asyncio.wait_for(peer.answer(RTCSessionDescription(sdp=sdp, type="offer")), timeout)
    except Exception as exc:
        # aiortc answers malformed SDP with whatever its parser trips on (ValueError, AssertionError,
        # KeyError, InvalidStateError, ...): all of it comes from the caller's input, so the caller gets a 400.
        await peer.close()
        logger.info("Network test offer refused: %s", type(exc).__name__)
        raise NetworkTestRefused(type(exc).__name__) from None
    except BaseException:
        await peer.close()
        raise
    # The expiry task is the peer's anchor: it holds the peer until it closes, whatever the caller does.
    peer._spawn(peer.expire(settings.NETWORK_TEST_SECONDS))
    return answer, peer
