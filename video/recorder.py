"""The server-side recorder of a visit (VID-8): an aiortc peer per participant, one file, encrypted at rest.

It lives in the daphne process of the host who started the recording, listening on a channel of its own
(`recorder_channel` of the Recording row); participants' consumers, on any process, forward `recorder.offer`
messages to it and it answers each on that participant's channel. Each participant's page offers one
send-only connection with its SDP complete (every candidate in it: the recorder takes no trickled ones).

Media: decoded frames from every recorded track go, through a bounded queue, to a writer thread that encodes
and muxes them into one Matroska file (H.264 640×360 at most 15 frames a second per participant, each picture
fitted inside with black bars so its shape is kept; Opus audio), timestamped by arrival on one clock so the
participants stay in step. Encoding never runs on the event loop: the loop carries everyone's signalling.
Matroska needs all its streams before the first packet, so the file declares at the start a sound stream (and,
for a video recording, a picture stream) for every participant recorded: a participant's connection, the first
or a new one after their page reloaded, feeds their own streams whenever it arrives. Only someone who was not in
the call when the recording started has no stream, and is told `recording_late` (docs/recording.md).

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
# Offers a participant may make per recording (the first, a page reloaded or reconnecting, a retry after a failure);
# each costs the host's process a peer connection with its DTLS certificate (the previous one is closed), so a page
# cannot make it churn them.
MAX_OFFERS = 8
# A participant's sound is placed by sample count from its first frame; when it arrives this much later than that
# count says (a new connection after a reload, a long loss), it is placed at its arrival instead.
AUDIO_RESYNC_SECONDS = 0.5

# The recorders running in this process, by recording id.
running: dict[str, Recorder] = {}
# A plaintext file nobody has written to for this long belongs to a recorder that died: a live one writes every
# frame it receives, and the host whose leaving stops the recording sends sound all along (silence included).
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


def _even(value: float) -> int:
    return max(2, int(value) // 2 * 2)


class _Canvas:
    """Fits pictures of any size inside WIDTH×HEIGHT keeping their shape (scaled, centred, black bars), so a
    portrait phone's picture is not squeezed. yuv420p, whose chroma planes are half the size each way."""

    def __init__(self) -> None:
        blank = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        self.blank = [
            bytes([value]) * plane.buffer_size for plane, value in zip(blank.planes, (16, 128, 128), strict=True)
        ]

    def fit(self, frame: Any) -> Any:
        scale = min(WIDTH / frame.width, HEIGHT / frame.height)
        width, height = min(WIDTH, _even(frame.width * scale)), min(HEIGHT, _even(frame.height * scale))
        scaled = frame.reformat(width=width, height=height, format="yuv420p")
        if (width, height) == (WIDTH, HEIGHT):
            return scaled
        out = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        left, top = (WIDTH - width) // 4 * 2, (HEIGHT - height) // 4 * 2  # centred, on even pixels
        for index, (source, target) in enumerate(zip(scaled.planes, out.planes, strict=True)):
            shift = 0 if index == 0 else 1  # the chroma planes are half as wide and half as high
            rows, columns = height >> shift, width >> shift
            x, y = left >> shift, top >> shift
            data = bytearray(self.blank[index])
            src = memoryview(source)
            for row in range(rows):
                start = (y + row) * target.line_size + x
                data[start : start + columns] = src[row * source.line_size : row * source.line_size + columns]
            target.update(bytes(data))
        return out


class _Writer:
    """Encodes and muxes frames in a thread of its own. `put` is called from the event loop. Its streams are
    fixed when it opens: one per (participant, kind), named after the participant."""

    def __init__(self, path: str, slots: list[tuple[int, str]]) -> None:
        self.path = path
        self.slots = slots
        self.kinds = [kind for _participant, kind in slots]
        self.queue: queue.Queue[tuple[int, Any, float] | None] = queue.Queue(QUEUE_FRAMES)
        self.t0 = time.monotonic()
        self.last_put: dict[int, float] = {}
        self.frames = [0 for _ in slots]
        self.dropped = 0
        self.error: str = ""
        self.thread = threading.Thread(target=self._run, name="recording-writer", daemon=True)
        self.thread.start()

    def put(self, index: int, frame: Any, *, at: float | None = None) -> None:
        now = time.monotonic() if at is None else at
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
        for participant, kind in self.slots:
            if kind == "video":
                stream = container.add_stream("libx264", rate=MAX_FPS, options={"preset": "ultrafast"})
                stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
                stream.codec_context.time_base = Fraction(1, 1000)
            else:
                stream = container.add_stream("libopus", rate=AUDIO_RATE)
            # The participant's id (an internal number, no name): which stream is whose, for whoever reads it.
            stream.metadata["title"] = f"participant {participant} {kind}"
            streams.append(stream)
        canvas = _Canvas()
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
                        frame = canvas.fit(frame)
                        pts = max(int((at - self.t0) * 1000), last_pts.get(index, -1) + 1)
                        last_pts[index] = pts
                        frame.pts, frame.time_base = pts, Fraction(1, 1000)
                    else:
                        rate = frame.sample_rate
                        arrived = int((at - self.t0) * rate)
                        if arrived - audio_samples.get(index, -rate) > AUDIO_RESYNC_SECONDS * rate:
                            # This participant's first sound, or sound after a gap (a new connection after a
                            # reload): it starts where it arrived on the common clock.
                            audio_samples[index] = max(arrived, audio_samples.get(index, 0))
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
        self.writer: _Writer | None = None
        # The writer's stream for each (participant, kind), and the track that feeds it now (a participant's newer
        # connection takes over from the older one).
        self.slots: dict[tuple[int, str], int] = {}
        self.writer_tracks: dict[MediaStreamTrack, int] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = False
        self.done = asyncio.Event()
        self.listener: asyncio.Task[None] | None = None
        self.beat: asyncio.Task[None] | None = None
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
        """Recording started with these participants in the call: the file opens now with a stream for each of
        them (sound, and a picture for a video recording), fed by their connections whenever they arrive."""
        self.expected = set(participants)
        kinds = ["audio", "video"] if self.kind == "video" else ["audio"]
        slots = [(participant, kind) for participant in sorted(self.expected) for kind in kinds]
        self.slots = {slot: index for index, slot in enumerate(slots)}
        self.writer = _Writer(self.path, slots)
        self.beat = asyncio.get_running_loop().create_task(self._beat())

    async def _beat(self) -> None:
        """Say in the row, every RECORDER_BEAT, that this recorder is alive: if its process dies, the periodic
        sweep stops the recording as lost (nothing else would when its host came back on another process)."""
        interval = recordings.RECORDER_BEAT.total_seconds()
        while not self.stopping:
            await asyncio.sleep(interval)
            try:
                await database_sync_to_async(recordings.recorder_beat, thread_sensitive=False)(
                    recording_id=self.recording_id
                )
            except Exception:  # a database blip costs one beat; the sweep allows several
                logger.warning("the recorder's beat failed")

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

    def _release(self, participant: int) -> None:
        """The participant's tracks stop feeding their streams (their connection is being replaced or refused)."""
        for track, index in list(self.writer_tracks.items()):
            if self.writer is not None and self.writer.slots[index][0] == participant:
                del self.writer_tracks[track]

    async def _offer(self, message: dict[str, Any]) -> None:
        participant, reply = int(message["participant"]), str(message["reply"])
        if self.stopping:
            return
        if participant not in self.expected:
            # Not in the call when it started: the file has no stream for them.
            await self._reply(reply, {"type": "error", "code": "recording_late", "about": "recording_offer"})
            return
        self.offers[participant] = self.offers.get(participant, 0) + 1
        if self.offers[participant] > MAX_OFFERS:
            await self._reply(reply, {"type": "error", "code": "bad_recording_offer", "about": "recording_offer"})
            return
        # A new offer of the same participant (a reloaded page, a reconnected one, a retry) replaces the previous
        # connection: its tracks take over the participant's streams in the same file.
        old = self.pcs.pop(participant, None)
        if old is not None:
            self._release(participant)
            await old.close()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=server_ice_servers()))
        self.pcs[participant] = pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            index = self.slots.get((participant, track.kind))
            if index is not None and self.pcs.get(participant) is pc:
                self.writer_tracks[track] = index
            # Every track is read, even one not recorded (a picture sent to an audio-only recording).
            self._drain(track)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=str(message["sdp"]), type="offer"))
            if not any(t.kind == "audio" for t in pc.getTransceivers()):
                raise ValueError("an offer without sound")  # aiortc takes even an SDP without media
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as error:  # an SDP aiortc cannot take: the page is told, the recording goes on
            logger.info("recorder refused an offer: %s", type(error).__name__)
            if self.pcs.get(participant) is pc:
                self.pcs.pop(participant, None)
                self._release(participant)
            await pc.close()
            await self._reply(reply, {"type": "error", "code": "bad_recording_offer", "about": "recording_offer"})
            return
        await self._reply(
            reply, {"type": "recording_answer", "recording": self.recording_id, "sdp": pc.localDescription.sdp}
        )

    def _drain(self, track: MediaStreamTrack) -> None:
        """Read the track from the start (an unread aiortc track queues decoded frames without bound); its frames
        go to the writer while the track feeds one of its streams."""

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

    async def stop(self) -> None:
        """Close the peers and the file, encrypt and store it (off the loop), update the row. Idempotent."""
        if self.stopping:
            await self.done.wait()
            return
        self.stopping = True
        if self.beat is not None:
            self.beat.cancel()
        for pc in list(self.pcs.values()):
            await pc.close()
        for task in list(self.tasks):
            task.cancel()
        writer = self.writer
        try:
            if writer is not None:
                await asyncio.to_thread(writer.close)
            frames = sum(writer.frames) if writer is not None else 0
            # The participants actually in the file: those whose streams received something.
            recorded = (
                sorted({writer.slots[i][0] for i, count in enumerate(writer.frames) if count})
                if writer is not None
                else []
            )
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
