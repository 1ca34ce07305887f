"""An aiortc participant of a video visit speaking the protocol of docs/signalling.md over a real websocket.

It joins with a session cookie, admits the waiting patient when it hosts (`admit=True`), and negotiates one
RTCPeerConnection per other participant with a synthetic video track. The host that admits offers: it sends
`admit`, prepares the offer while the server carries the admit out, and sends it right behind, so the patient
finds it on arrival (the consumer handles a connection's frames in order, so the offer is relayed after the
admit committed). Someone
entering a running call offers to those in it. The others answer. (Two-party benchmarks only: no glare
handling, which the browser client's perfect negotiation provides.) Candidates travel as `ice` frames, not inside the
descriptions, as a browser trickles them: aiortc gathers its candidates inside setLocalDescription, so they are
taken out of the SDP and sent one by one after it, then `""` for the end. Every step is time-stamped
(`marks`) so a benchmark can say where the time goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, VideoStreamTrack
from aiortc.sdp import candidate_from_sdp


def split_candidates(sdp: str) -> tuple[str, list[dict[str, Any]]]:
    """The description without its candidate lines, and those candidates as `ice` frame fields."""
    lines, candidates = [], []
    mline, mid = -1, None
    for line in sdp.splitlines():
        if line.startswith("m="):
            mline, mid = mline + 1, None
        elif line.startswith("a=mid:"):
            mid = line[len("a=mid:") :]
        if line.startswith("a=candidate:"):
            candidates.append({"candidate": line[2:], "sdpMLineIndex": mline, **({"sdpMid": mid} if mid else {})})
        elif line != "a=end-of-candidates":
            lines.append(line)
    return "\r\n".join(lines) + "\r\n", candidates


class Participant:
    def __init__(self, http: Any, base_url: str, path: str, cookie: str, *, admit: bool = False) -> None:
        self.http = http
        self.url = base_url.replace("http://", "ws://") + path
        self.origin = base_url
        self.cookie = cookie
        self.admit = admit
        self.me: int | None = None
        self.pcs: dict[int, RTCPeerConnection] = {}
        self.ice_servers: list[RTCIceServer] = []
        self.marks: dict[str, float] = {}
        self.welcomed = asyncio.Event()
        self.first_frame = asyncio.get_running_loop().create_future()
        self.errors: list[str] = []
        self.frames = 0  # decoded video frames received, from every peer
        self._tasks: list[asyncio.Task[None]] = []
        self.ws: Any = None

    def mark(self, name: str) -> None:
        self.marks.setdefault(name, time.perf_counter())

    async def join(self) -> None:
        self.mark("connect")
        self.ws = await self.http.ws_connect(
            self.url, headers={"Cookie": self.cookie, "Origin": self.origin}, max_msg_size=0
        )
        self.mark("open")
        self._tasks.append(asyncio.create_task(self._read_socket()))

    async def _send(self, kind: str, **fields: Any) -> None:
        await self.ws.send_str(json.dumps({"v": 1, "type": kind, **fields}))

    async def _read_socket(self) -> None:
        import aiohttp

        try:
            async for message in self.ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                # One message at a time, in arrival order, as the browser client handles negotiation.
                await self._handle(json.loads(message.data))
        except Exception as error:  # reported by the benchmark, never swallowed silently
            self.errors.append(repr(error))
            if not self.first_frame.done():
                self.first_frame.set_exception(error)

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "welcome":
            self.mark("welcome")
            self.welcomed.set()
            self.me = message["participant"]
            self.ice_servers = [RTCIceServer(**server) for server in message.get("iceServers", [])]
            if message["state"] == "connected":
                for peer in message["peers"]:
                    await self._offer(peer["participant"])
        elif kind == "waiting" and "participant" in message and self.admit:
            self.mark("waiting")
            # Admit first, then prepare the offer while the server carries the admit out: the offer is relayed
            # only once the admit committed anyway (the consumer handles a connection's frames in order), so
            # preparing it before would only hold the admit back by that long. (A person clicks Admit long after
            # the patient arrived; here the admit follows at once.)
            self.mark("admit")
            await self._send("admit", participant=message["participant"])
            pc = self._connection(message["participant"])
            self.mark("offer_start")
            await pc.setLocalDescription(await pc.createOffer())
            self.mark("offer_ready")
            await self._describe("offer", message["participant"], pc)
        elif kind == "admitted":
            self.mark("admitted")  # the host that admitted us offers
        elif kind == "peer_joined":
            self.mark("peer_joined")
        elif kind == "offer":
            self.mark("offer_received")
            pc = self._connection(message["from"])
            await pc.setRemoteDescription(RTCSessionDescription(sdp=message["sdp"], type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            self.mark("answer_ready")
            await self._describe("answer", message["from"], pc)
        elif kind == "answer":
            self.mark("answer_received")
            await self.pcs[message["from"]].setRemoteDescription(
                RTCSessionDescription(sdp=message["sdp"], type="answer")
            )
        elif kind == "ice":
            self.mark("ice_received")
            pc = self.pcs.get(message["from"])
            if pc is None:
                return
            if not message["candidate"]:
                await pc.addIceCandidate(None)
                return
            candidate = candidate_from_sdp(message["candidate"].split(":", 1)[1])
            candidate.sdpMid = message.get("sdpMid")
            candidate.sdpMLineIndex = message.get("sdpMLineIndex")
            await pc.addIceCandidate(candidate)
        elif kind == "error":
            self.errors.append(f"error frame {message}")

    def _connection(self, peer: int) -> RTCPeerConnection:
        pc = self.pcs.get(peer)
        if pc is not None:
            return pc
        pc = RTCPeerConnection(RTCConfiguration(iceServers=self.ice_servers))
        pc.addTrack(VideoStreamTrack())

        @pc.on("connectionstatechange")
        def state() -> None:
            if pc.connectionState == "connected":
                self.mark("media_connected")

        @pc.on("track")
        def track(received: Any) -> None:
            self._tasks.append(asyncio.ensure_future(self._read_track(received)))

        self.pcs[peer] = pc
        return pc

    async def _read_track(self, track: Any) -> None:
        with contextlib.suppress(MediaStreamError):
            await track.recv()  # a decoded av.VideoFrame
            self.frames += 1
            self.mark("first_frame")
            if not self.first_frame.done():
                self.first_frame.set_result(self.marks["first_frame"])
            while True:
                await track.recv()
                self.frames += 1

    async def _offer(self, peer: int) -> None:
        pc = self._connection(peer)
        self.mark("offer_start")
        await pc.setLocalDescription(await pc.createOffer())
        self.mark("offer_ready")
        await self._describe("offer", peer, pc)

    async def _describe(self, kind: str, peer: int, pc: RTCPeerConnection) -> None:
        sdp, candidates = split_candidates(pc.localDescription.sdp)
        await self._send(kind, to=peer, sdp=sdp)
        for fields in candidates:
            await self._send("ice", to=peer, **fields)
        await self._send("ice", to=peer, candidate="")

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(Exception):
                await self._send("leave")
            await self.ws.close()
        for task in self._tasks:
            task.cancel()
        for pc in self.pcs.values():
            await pc.close()
