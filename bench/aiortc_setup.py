"""Setting up aiortc peers: the network-test server peer's answer when the configured STUN server is unreachable,
and join to first decoded frame for two aiortc peers connected directly (the baseline for signalling benchmarks).

    .venv/bin/python -m bench.aiortc_setup [--answers 200] [--joins 20]

1. The server peer (video.network_test) answers offers with the production ICE configuration pointing at a STUN
   and a TURN server that never reply (TEST-NET addresses), and with no ICE servers at all; setLocalDescription
   is timed alone and with the whole answer (setRemoteDescription + createAnswer + setLocalDescription).
   Target: setLocalDescription p99 <= 100 ms. For contrast, a peer that does use the unreachable STUN server,
   as aiortc would by default, is timed a few times.
2. Two aiortc peers in one process, each sending a synthetic video track, signalled in memory: from creating
   the peers to the first decoded frame on both sides.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time

UNREACHABLE_STUN = "stun:198.51.100.1:3478"
UNREACHABLE_TURN = "turn:198.51.100.2:3478?transport=udp"


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _line(label: str, values: list[float]) -> str:
    return (
        f"  {label:<48} p50 {statistics.median(values):7.1f} ms  p95 {_percentile(values, 0.95):7.1f} ms"
        f"  p99 {_percentile(values, 0.99):7.1f} ms  max {max(values):7.1f} ms  (n={len(values)})"
    )


async def _offer() -> str:
    from aiortc import RTCConfiguration, RTCPeerConnection
    from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

    caller = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    caller.addTrack(VideoStreamTrack())
    caller.addTrack(AudioStreamTrack())
    caller.createDataChannel("probe", ordered=False, maxRetransmits=0)
    await caller.setLocalDescription(await caller.createOffer())
    sdp = caller.localDescription.sdp
    await caller.close()
    return sdp


async def _server_answers(count: int, ice_servers: list[dict[str, list[str]]]) -> tuple[list[float], list[float]]:
    from aiortc import RTCSessionDescription
    from django.conf import settings

    from video.network_test import NetworkTestPeer

    settings.ICE_SERVERS = ice_servers
    set_local: list[float] = []
    whole: list[float] = []
    for _ in range(count):
        sdp = await _offer()
        peer = NetworkTestPeer()
        started = time.perf_counter()
        await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        answer = await peer.pc.createAnswer()
        before_local = time.perf_counter()
        await peer.pc.setLocalDescription(answer)
        done = time.perf_counter()
        set_local.append((done - before_local) * 1000)
        whole.append((done - started) * 1000)
        await peer.close()
    return set_local, whole


async def _naive_stun(count: int) -> list[float]:
    from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

    timings = []
    for _ in range(count):
        sdp = await _offer()
        peer = RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(UNREACHABLE_STUN)]))
        await peer.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        answer = await peer.createAnswer()
        started = time.perf_counter()
        await peer.setLocalDescription(answer)
        timings.append((time.perf_counter() - started) * 1000)
        await peer.close()
    return timings


async def _join_to_first_frame() -> float:
    from aiortc import RTCConfiguration, RTCPeerConnection
    from aiortc.mediastreams import VideoStreamTrack

    started = time.perf_counter()
    a = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    b = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    a.addTrack(VideoStreamTrack())
    b.addTrack(VideoStreamTrack())
    first: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    both = loop.create_future()
    readers: list[asyncio.Task[None]] = []

    def reader(side: str):
        def on_track(track) -> None:
            async def read() -> None:
                await track.recv()  # a decoded av.VideoFrame
                first[side] = time.perf_counter()
                if len(first) == 2 and not both.done():
                    both.set_result(None)

            readers.append(asyncio.ensure_future(read()))

        return on_track

    a.on("track", reader("a"))
    b.on("track", reader("b"))
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    try:
        await asyncio.wait_for(both, 20)
    finally:
        for task in readers:
            task.cancel()
        await a.close()
        await b.close()
    return (max(first.values()) - started) * 1000


async def _main(args: argparse.Namespace) -> int:
    print(f"aiortc on {os.cpu_count()} CPUs; unreachable servers: {UNREACHABLE_STUN}, {UNREACHABLE_TURN}")
    await _offer()  # warm codecs and imports up
    print("1. Network-test server peer: answer to an offer (audio, video, data channel)")
    production = [{"urls": [UNREACHABLE_STUN]}, {"urls": [UNREACHABLE_TURN]}]
    local_unreachable, whole_unreachable = await _server_answers(args.answers, production)
    local_none, whole_none = await _server_answers(args.answers, [])
    print(_line("setLocalDescription, STUN+TURN unreachable", local_unreachable))
    print(_line("setLocalDescription, no ICE servers", local_none))
    print(_line("whole answer, STUN+TURN unreachable", whole_unreachable))
    print(_line("whole answer, no ICE servers", whole_none))
    naive = await _naive_stun(args.naive)
    print(_line("for contrast: a peer that uses the STUN server", naive))
    p99 = _percentile(local_unreachable, 0.99)
    verdict = "meets" if p99 <= 100 else "MISSES"
    print(f"  setLocalDescription p99 with unreachable STUN: {p99:.1f} ms, {verdict} the target (<= 100 ms)")

    print("2. Two aiortc peers connected directly (in memory signalling, loopback media)")
    joins = [await _join_to_first_frame() for _ in range(args.joins)]
    print(_line("join to first decoded frame on both sides", joins))
    return 0 if p99 <= 100 else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=200, help="answers per ICE configuration")
    parser.add_argument("--naive", type=int, default=2, help="answers by a peer that waits on the STUN server")
    parser.add_argument("--joins", type=int, default=20, help="direct peer pairs to connect")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "teleconsult.settings")
    import logging

    import django

    django.setup()
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.WARNING)
    sys.exit(asyncio.run(_main(args)))


if __name__ == "__main__":
    main()
