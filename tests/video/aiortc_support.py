"""An aiortc caller for the pre-call check: synthetic camera and microphone, the probe channel, frame counts."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack


@dataclass
class Outcome:
    result: dict[str, object] | None = None
    frames: dict[str, int] = field(default_factory=lambda: {"audio": 0, "video": 0})
    frame_sizes: set[tuple[int, int]] = field(default_factory=set)


class Caller:
    """One caller: offer, echo the server's probes back, count the frames the server echoes."""

    def __init__(
        self, configuration: RTCConfiguration | None = None, *, drop_every: int = 0, echo_delay: float = 0.0
    ) -> None:
        # A poor link, played by the caller: every `drop_every`-th probe is not echoed, echoes wait `echo_delay`.
        self.drop_every = drop_every
        self.echo_delay = echo_delay
        self.pc = RTCPeerConnection(configuration or RTCConfiguration(iceServers=[]))
        self.pc.addTrack(VideoStreamTrack())
        self.pc.addTrack(AudioStreamTrack())
        self.channel = self.pc.createDataChannel("probe", ordered=False, maxRetransmits=0)
        self.outcome = Outcome()
        self.result_ready = asyncio.Event()
        self.readers: list[asyncio.Task[None]] = []
        self.channel.on("open", lambda: self.channel.send(json.dumps({"type": "start"})))
        self.channel.on("message", self._on_message)
        self.pc.on("track", lambda track: self.readers.append(asyncio.ensure_future(self._read(track))))

    def _on_message(self, data: str) -> None:
        message = json.loads(data)
        if message["type"] == "probe":
            if self.drop_every and message["seq"] % self.drop_every == 0:
                return
            echo = json.dumps({**message, "type": "echo"})
            if self.echo_delay:
                asyncio.get_running_loop().call_later(self.echo_delay, self._send_if_open, echo)
            else:
                self.channel.send(echo)
        elif message["type"] == "result":
            self.outcome.result = message
            self.result_ready.set()

    def _send_if_open(self, data: str) -> None:
        if self.channel.readyState == "open":
            self.channel.send(data)

    async def _read(self, track: object) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()  # type: ignore[attr-defined]
                self.outcome.frames[track.kind] += 1  # type: ignore[attr-defined]
                if track.kind == "video":  # type: ignore[attr-defined]
                    # A decoded picture (av.VideoFrame) with the synthetic track's size.
                    self.outcome.frame_sizes.add((frame.width, frame.height))

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept(self, answer: dict[str, str]) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))

    async def wait(self, *, video_frames: int = 10, timeout: float = 20.0) -> Outcome:
        async def done() -> None:
            await self.result_ready.wait()
            while self.outcome.frames["video"] < video_frames or self.outcome.frames["audio"] < video_frames:
                await asyncio.sleep(0.05)

        try:
            await asyncio.wait_for(done(), timeout)
        except TimeoutError:
            state = self.pc.connectionState
            raise AssertionError(f"No result and frames in {timeout} s: {self.outcome}, {state}") from None
        return self.outcome

    async def connected(self, timeout: float = 10.0) -> None:
        async def done() -> None:
            while self.pc.connectionState != "connected":
                await asyncio.sleep(0.02)

        await asyncio.wait_for(done(), timeout)

    async def close(self) -> None:
        for reader in self.readers:
            reader.cancel()
        await self.pc.close()


async def run_caller(
    answer_for: Callable[[str], Awaitable[dict[str, str]]], caller: Caller | None = None, **wait: float
) -> Outcome:
    caller = caller or Caller()
    try:
        await caller.accept(await answer_for(await caller.offer()))
        return await caller.wait(**wait)  # type: ignore[arg-type]
    finally:
        await caller.close()
