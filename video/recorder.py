"""The server-side recorder of a visit (VID-8): an aiortc peer per participant, one file, encrypted at rest.

It lives in the daphne process of the host who started the recording, listening on a channel of its own
(`recorder_channel` of the Recording row); participants' consumers, on any process, forward `recorder.offer`
messages to it and it answers each on that participant's channel. Each participant's page offers one
send-only connection with its SDP complete (every candidate in it: the recorder takes no trickled ones).

Media: decoded frames from every recorded track go, through a bounded queue, to a writer thread that encodes
and muxes them into one Matroska file (H.264 640×360 at most 15 frames a second per participant, Opus audio),
timestamped by arrival on one clock so the participants stay in step. Encoding never runs on the event loop:
the loop carries everyone's signalling. Matroska needs all its streams before the first packet, so the file
opens once every participant recorded at the start has connected (or after RECORDING_GATHER_SECONDS); a
connection that arrives later is told `recording_late` and is not recorded (docs/recording.md).

On stop the file is closed, encrypted with a fresh file key (teleconsult/filecrypto.py; the key stored in the
row encrypted by the keyring), saved in the "recordings" storage, the plaintext deleted, and the row updated
(video.recording.recording_store), all off the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import queue
import tempfile
import threading
import time
from fractions import Fraction
from typing import Any

import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.files import File
from django.core.files.storage import storages
from django.utils import timezone

from teleconsult import filecrypto
from video import recording as recordings
from video.network_test import server_ice_servers

logger = logging.getLogger(__name__)

FILE_PURPOSE = recordings.FILE_PURPOSE
WIDTH, HEIGHT = 640, 360
MAX_FPS = 15
AUDIO_RATE = 48_000
# Frames waiting for the writer; beyond this, video frames are dropped (a slow disk or CPU must not grow memory).
QUEUE_FRAMES = 400
# Offers a participant may make per recording (a page retrying after a failure); each costs the host's process a
# peer connection with its DTLS certificate, so a page cannot make it churn them.
MAX_OFFERS = 3

# The recorders running in this process, by recording id.
running: dict[str, Recorder] = {}
# A plaintext file nobody has written to for this long belongs to a recorder that died (a live one writes every
# frame; before its file opens it waits RECORDING_GATHER_SECONDS, at most 120 s).
ORPHAN_AFTER_SECONDS = 600
PLAINTEXT_PREFIX = "rec-"


def plaintext_sweep(*, now: float | None = None) -> int:
    """Delete plaintext recordings left in RECORDINGS_TMP_DIR by a recorder whose process died (they are
    never finished: the row is marked failed by video.recording.recordings_fail_lost). Returns how many."""
    now = time.time() if now is None else now
    removed = 0
    try:
        entries = list(os.scandir(settings.RECORDINGS_TMP_DIR))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if not (entry.name.startswith(PLAINTEXT_PREFIX) and entry.is_file(follow_symlinks=False)):
            continue
        with contextlib.suppress(FileNotFoundError):
            if now - entry.stat().st_mtime > ORPHAN_AFTER_SECONDS:
                os.remove(entry.path)
                removed += 1
    if removed:
        logger.warning("removed %d plaintext recording(s) left by a recorder that died", removed)
    return removed


class _Writer:
    """Encodes and muxes frames in a thread of its own. `put` is called from the event loop."""

    def __init__(self, path: str, kinds: list[str]) -> None:
        self.path = path
        self.kinds = kinds
        self.queue: queue.Queue[tuple[int, Any, float] | None] = queue.Queue(QUEUE_FRAMES)
        self.t0 = time.monotonic()
        self.last_put: dict[int, float] = {}
        self.frames = [0 for _ in kinds]
        self.dropped = 0
        self.error: str = ""
        self.thread = threading.Thread(target=self._run, name="recording-writer", daemon=True)
        self.thread.start()

    def put(self, index: int, frame: Any) -> None:
        now = time.monotonic()
        if self.kinds[index] == "video":
            if now - self.last_put.get(index, -1.0) < 1 / MAX_FPS:
                return
            self.last_put[index] = now
        try:
            self.queue.put_nowait((index, frame, now))
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        """Flush and close the file (blocking: call it off the event loop)."""
        self.queue.put(None)
        self.thread.join()

    def _run(self) -> None:
        try:
            container = av.open(self.path, mode="w", format="matroska")
        except Exception as error:  # pragma: no cover - a full or unwritable disk
            self.error = type(error).__name__
            return
        streams: list[Any] = []
        stream: Any
        for kind in self.kinds:
            if kind == "video":
                stream = container.add_stream("libx264", rate=MAX_FPS, options={"preset": "ultrafast"})
                stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
                stream.codec_context.time_base = Fraction(1, 1000)
            else:
                stream = container.add_stream("libopus", rate=AUDIO_RATE)
            streams.append(stream)
        last_pts: dict[int, int] = {}
        audio_samples: dict[int, int] = {}
        try:
            while True:
                item = self.queue.get()
                if item is None:
                    break
                index, frame, at = item
                try:
                    if self.kinds[index] == "video":
                        frame = frame.reformat(width=WIDTH, height=HEIGHT, format="yuv420p")
                        pts = max(int((at - self.t0) * 1000), last_pts.get(index, -1) + 1)
                        last_pts[index] = pts
                        frame.pts, frame.time_base = pts, Fraction(1, 1000)
                    else:
                        rate = frame.sample_rate
                        if index not in audio_samples:
                            # The first sound of this participant starts where it arrived on the common clock.
                            audio_samples[index] = int((at - self.t0) * rate)
                        frame.pts, frame.time_base = audio_samples[index], Fraction(1, rate)
                        audio_samples[index] += frame.samples
                    for packet in streams[index].encode(frame):
                        container.mux(packet)
                    self.frames[index] += 1
                except (av.FFmpegError, ValueError) as error:
                    # One bad frame (a size change mid-stream, a codec hiccup) costs that frame, not the file.
                    logger.warning("recording frame skipped: %s", type(error).__name__)
            for stream in streams:
                with contextlib.suppress(av.FFmpegError):
                    for packet in stream.encode(None):
                        container.mux(packet)
        finally:
            container.close()


class Recorder:
    """One recording's peers and writer, in this process. Every method runs on the event loop."""

    def __init__(self, *, recording_id: str, kind: str, layer: Any) -> None:
        self.recording_id = recording_id
        self.kind = kind
        self.layer = layer
        self.channel = ""
        self.expected: set[int] = set()
        self.pcs: dict[int, RTCPeerConnection] = {}
        self.offers: dict[int, int] = {}
        self.tracks: list[tuple[int, MediaStreamTrack]] = []
        self.writer: _Writer | None = None
        self.writer_tracks: dict[MediaStreamTrack, int] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.gather: asyncio.TimerHandle | None = None
        self.stopping = False
        self.done = asyncio.Event()
        self.listener: asyncio.Task[None] | None = None
        tmp_dir = settings.RECORDINGS_TMP_DIR
        os.makedirs(tmp_dir, mode=0o700, exist_ok=True)
        plaintext_sweep()
        handle, self.path = tempfile.mkstemp(prefix=PLAINTEXT_PREFIX, suffix=".mkv", dir=tmp_dir)
        os.close(handle)

    async def open(self) -> str:
        """Listen on a channel of its own; returns its name (stored in the row for the consumers)."""
        # The layer's default prefix: channels_redis reads every "specific." channel of this process with one
        # connection and hands each message to its channel's buffer; another prefix would compete for the lock.
        self.channel = await self.layer.new_channel()
        running[self.recording_id] = self
        self.listener = asyncio.get_running_loop().create_task(self._listen())
        return self.channel

    def expect(self, participants: list[int]) -> None:
        """Recording started with these participants in the call: wait for their connections, then write."""
        self.expected = set(participants)
        self.gather = asyncio.get_running_loop().call_later(settings.RECORDING_GATHER_SECONDS, self._open_writer)

    async def discard(self) -> None:
        """Never started (the begin was refused): nothing was recorded, nothing is kept."""
        self.stopping = True
        running.pop(self.recording_id, None)
        if self.listener is not None:
            self.listener.cancel()
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)

    async def _listen(self) -> None:
        while not self.stopping:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                return
            kind = message.get("type")
            try:
                if kind == "recorder.offer":
                    await self._offer(message)
                elif kind == "recorder.stop":
                    await self.stop()
                    return
            except Exception:  # one participant's broken offer must not end the recording for everyone
                logger.exception("recorder message failed")

    async def _reply(self, channel: str, event: dict[str, Any]) -> None:
        await self.layer.send(channel, {"type": "recorder.reply", "event": event})

    async def _offer(self, message: dict[str, Any]) -> None:
        participant, reply = int(message["participant"]), str(message["reply"])
        if self.stopping:
            return
        if participant not in self.expected or self.writer is not None:
            await self._reply(reply, {"type": "error", "code": "recording_late", "about": "recording_offer"})
            return
        self.offers[participant] = self.offers.get(participant, 0) + 1
        if self.offers[participant] > MAX_OFFERS:
            await self._reply(reply, {"type": "error", "code": "bad_recording_offer", "about": "recording_offer"})
            return
        old = self.pcs.pop(participant, None)
        if old is not None:
            self.tracks = [(p, t) for p, t in self.tracks if p != participant]
            await old.close()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=server_ice_servers()))
        self.pcs[participant] = pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video" and self.kind == "audio":
                self._drain(track, None)  # an audio-only recording takes no picture, even if one is sent
                return
            self.tracks.append((participant, track))
            self._drain(track, participant)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=str(message["sdp"]), type="offer"))
            if not any(t.kind == "audio" for t in pc.getTransceivers()):
                raise ValueError("an offer without sound")  # aiortc takes even an SDP without media
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as error:  # an SDP aiortc cannot take: the page is told, the recording goes on
            logger.info("recorder refused an offer: %s", type(error).__name__)
            self.pcs.pop(participant, None)
            self.tracks = [(p, t) for p, t in self.tracks if p != participant]
            await pc.close()
            await self._reply(reply, {"type": "error", "code": "bad_recording_offer", "about": "recording_offer"})
            return
        await self._reply(
            reply, {"type": "recording_answer", "recording": self.recording_id, "sdp": pc.localDescription.sdp}
        )
        if self.expected <= set(self.pcs):
            self._open_writer()

    def _drain(self, track: MediaStreamTrack, participant: int | None) -> None:
        """Read the track from the start (an unread track queues decoded frames without bound); its frames go to
        the writer once it is open and if the track is part of the file."""

        async def read() -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    frame = await track.recv()
                    writer = self.writer
                    index = self.writer_tracks.get(track)
                    if writer is not None and index is not None and not self.stopping:
                        writer.put(index, frame)

        task = asyncio.get_running_loop().create_task(read())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _open_writer(self) -> None:
        if self.writer is not None or self.stopping:
            return
        if self.gather is not None:
            self.gather.cancel()
        if not self.tracks:
            return  # nobody connected in time: stop() records the failure
        kinds = []
        for index, (_participant, track) in enumerate(self.tracks):
            self.writer_tracks[track] = index
            kinds.append(track.kind)
        self.writer = _Writer(self.path, kinds)

    async def stop(self) -> None:
        """Close the peers and the file, encrypt and store it (off the loop), update the row. Idempotent."""
        if self.stopping:
            await self.done.wait()
            return
        self.stopping = True
        if self.gather is not None:
            self.gather.cancel()
        for pc in list(self.pcs.values()):
            await pc.close()
        for task in list(self.tasks):
            task.cancel()
        recorded = sorted({self.tracks[i][0] for i in self.writer_tracks.values()})
        writer = self.writer
        try:
            if writer is not None:
                await asyncio.to_thread(writer.close)
            frames = sum(writer.frames) if writer is not None else 0
            await database_sync_to_async(_finalise, thread_sensitive=False)(
                recording_id=self.recording_id, path=self.path, frames=frames, participants=recorded
            )
        except Exception:
            logger.exception("finalising a recording failed")
            await database_sync_to_async(recordings.recording_fail)(
                recording_id=self.recording_id, reason="store_failed"
            )
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
            running.pop(self.recording_id, None)
            if self.listener is not None and self.listener is not asyncio.current_task():
                self.listener.cancel()
            self.done.set()


def _finalise(*, recording_id: str, path: str, frames: int, participants: list[int]) -> None:
    """Encrypt the plaintext file into the recordings storage and attach it; delete the plaintext either way."""
    try:
        if frames == 0:
            recordings.recording_fail(recording_id=recording_id, reason="no_media")
            return
        key = filecrypto.new_file_key()
        storage = storages["recordings"]
        now = timezone.now()
        name = f"{now:%Y/%m}/{recording_id}.tcf"
        with tempfile.TemporaryFile(dir=settings.RECORDINGS_TMP_DIR) as sealed:
            with open(path, "rb") as plain:
                encrypted = filecrypto.encrypt_stream(plain, sealed, key=key, purpose=FILE_PURPOSE)
            # The plaintext goes as soon as the ciphertext exists, before the (possibly slower) copy to storage.
            os.remove(path)
            sealed.seek(0)
            name = storage.save(name, File(sealed, name=name))
        recordings.recording_store(
            recording_id=recording_id,
            file_name=name,
            size=encrypted.size,
            sha256=encrypted.sha256,
            file_key=base64.b64encode(key).decode(),
            participants=participants,
        )
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
