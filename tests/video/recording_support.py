"""Helpers for the recording tests: the patient's recording consents, an aiortc participant's send-only connection
to the recorder (as the documented protocol asks), and reading a stored recording back."""

from __future__ import annotations

import asyncio
import base64
import io
from dataclasses import dataclass
from typing import Any

import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from django.core.files.storage import storages
from django.db import connections

from records.consent import consent_document_publish, consent_record, current_document
from records.models import ConsentKind, ConsentMethod, Decision, Patient
from teleconsult import filecrypto
from video.models import Recording
from video.recorder import FILE_PURPOSE

_TEXTS = {
    ConsentKind.RECORDING_VIDEO: (
        ("Grabación de video", "Autorizo grabar el video de mis teleconsultas."),
        ("Video recording", "I authorise recording the video of my visits."),
    ),
    ConsentKind.RECORDING_AUDIO: (
        ("Grabación de audio", "Autorizo grabar el audio de mis teleconsultas."),
        ("Audio recording", "I authorise recording the audio of my visits."),
    ),
}


def _document(personas: Any, kind: str):  # type: ignore[no-untyped-def]
    document = current_document(kind, "es-pe")
    if document is None:
        (es_title, es_text), (en_title, en_text) = _TEXTS[kind]
        consent_document_publish(
            kind=kind,
            texts={"es-pe": (es_title, es_text), "en": (en_title, en_text)},
            validity_days=None,
            published_by=personas.admin,
        )
        document = current_document(kind, "es-pe")
    return document


def decide_recording(
    personas: Any,
    patient: Patient,
    kinds: tuple[str, ...] = (ConsentKind.RECORDING_VIDEO, ConsentKind.RECORDING_AUDIO),
    *,
    decision: Decision = Decision.GRANT,
) -> None:
    """The patient grants (or revokes) recording consents, as the consent page records them."""
    for kind in kinds:
        document = _document(personas, kind)
        consent_record(
            patient=patient,
            document=document,
            decision=decision,
            method=ConsentMethod.TYPED_NAME,
            shown_sha256=document.text_sha256,
            actor=None,
            typed_name="Rosa Quispe",
        )


def in_thread(function: Any) -> Any:
    """`function` for asyncio.to_thread: the database connection it opened in that thread is closed after it."""

    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        finally:
            connections.close_all()

    return run


class ColourTrack(VideoStreamTrack):
    """A synthetic camera: pictures of a given size, one colour (Y, U, V) with a block of another in the middle
    (a square of a third of the shorter side), so a test can tell whose picture it is and whether it kept its shape."""

    def __init__(self, width: int, height: int, colour: tuple[int, int, int], block: tuple[int, int, int]) -> None:
        super().__init__()
        self.picture = coloured_frame(width, height, colour, block)

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(self.picture.width, self.picture.height, "yuv420p")
        for source, target in zip(self.picture.planes, frame.planes, strict=True):
            target.update(bytes(source))
        frame.pts, frame.time_base = pts, time_base
        return frame


def coloured_frame(width: int, height: int, colour: tuple[int, int, int], block: tuple[int, int, int]) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "yuv420p")
    side = min(width, height) // 3 // 2 * 2
    left, top = (width - side) // 4 * 2, (height - side) // 4 * 2
    for index, plane in enumerate(frame.planes):
        shift = 0 if index == 0 else 1
        data = bytearray([colour[index]]) * plane.buffer_size
        for row in range((top >> shift), (top + side) >> shift):
            start = row * plane.line_size + (left >> shift)
            data[start : start + (side >> shift)] = bytes([block[index]]) * (side >> shift)
        plane.update(bytes(data))
    return frame


def rgb_at(frame: av.VideoFrame, x: int, y: int) -> tuple[int, int, int]:
    """The colour of one pixel of a decoded picture (red, green, blue)."""
    rgb = frame.reformat(format="rgb24")
    plane = rgb.planes[0]
    start = y * plane.line_size + x * 3
    red, green, blue = bytes(plane)[start : start + 3]
    return red, green, blue


def block_extent(frame: av.VideoFrame, test: Any) -> tuple[int, int]:
    """The width of the run of pixels passing `test` across the picture's middle row, and its height down the
    middle column: the size of the block in the middle of a ColourTrack picture, as the file shows it."""
    rgb = frame.reformat(format="rgb24")
    plane, data = rgb.planes[0], bytes(rgb.planes[0])

    def pixel(x: int, y: int) -> tuple[int, int, int]:
        start = y * plane.line_size + x * 3
        return data[start], data[start + 1], data[start + 2]

    middle_x, middle_y = frame.width // 2, frame.height // 2
    width = sum(1 for x in range(frame.width) if test(pixel(x, middle_y)))
    height = sum(1 for y in range(frame.height) if test(pixel(middle_x, y)))
    return width, height


class RecorderClient:
    """One participant's connection to the recorder: synthetic camera and microphone, sent only."""

    def __init__(self, *, audio_only: bool = False, video: VideoStreamTrack | None = None) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        if not audio_only:
            self.pc.addTransceiver(video or VideoStreamTrack(), direction="sendonly")

    async def offer(self) -> str:
        # aiortc gathers every candidate inside setLocalDescription: the SDP is complete, as the recorder wants.
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def sent_packets(self, kind: str) -> int:
        report = await self.pc.getStats()
        return sum(
            getattr(stats, "packetsSent", 0)
            for stats in report.values()
            if stats.type == "outbound-rtp" and stats.kind == kind
        )

    async def until_sent(self, kind: str, packets: int, timeout: float = 60) -> None:
        async def sent() -> None:
            while await self.sent_packets(kind) < packets:
                await asyncio.sleep(0.1)

        await asyncio.wait_for(sent(), timeout)

    async def close(self) -> None:
        await self.pc.close()


@dataclass
class Decoded:
    video_frames: int
    audio_frames: int
    video_streams: int
    audio_streams: int


def ciphertext(recording: Recording) -> bytes:
    with storages["recordings"].open(recording.file_name, "rb") as stored:
        return stored.read()


def plaintext(recording: Recording) -> bytes:
    key = base64.b64decode(recording.file_key)
    return b"".join(filecrypto.decrypt_stream(io.BytesIO(ciphertext(recording)), key=key, purpose=FILE_PURPOSE))


def frames_by_stream(data: bytes) -> dict[str, list[Any]]:
    """Every decoded frame of a media file by its stream's title ("participant <id> video|audio"), each with its
    time in seconds as `.time`."""
    found: dict[str, list[Any]] = {}
    with av.open(io.BytesIO(data), mode="r") as container:
        titles = {stream.index: stream.metadata.get("title", str(stream.index)) for stream in container.streams}
        for packet in container.demux(*container.streams):
            for frame in packet.decode():
                found.setdefault(titles[packet.stream.index], []).append(frame)
    return found


def decode(data: bytes) -> Decoded:
    """Every frame of a media file, decoded (raises if it is not one)."""
    with av.open(io.BytesIO(data), mode="r") as container:
        video = sum(1 for s in container.streams if s.type == "video")
        audio = sum(1 for s in container.streams if s.type == "audio")
        counts = {"video": 0, "audio": 0}
        for frame in container.decode(*container.streams):
            counts["video" if isinstance(frame, av.VideoFrame) else "audio"] += 1
    return Decoded(counts["video"], counts["audio"], video, audio)


def stored_recording(personas: Any, visit: Any, media: bytes = b"\x1aE\xdf\xa3 a recording") -> Recording:
    """A recording of `visit` as the recorder leaves it once stored: the visit ended, its encounter, the media
    encrypted with a fresh file key in the recordings storage, the row `stored` (for tests of what happens to it
    afterwards, without a call)."""
    from django.core.files.base import ContentFile
    from django.utils import timezone

    from scheduling.models import ParticipantRole
    from video.models import RecordingStatus, VisitSession, VisitStatus
    from video.services import _start_encounter

    appointment = visit.appointment
    session = VisitSession.objects.filter(appointment=appointment).first()
    if session is None:
        session = VisitSession(appointment=appointment)
        _start_encounter(session, list(appointment.participants.all()), personas.practitioner)
        now = timezone.now()
        session.status, session.started_at, session.ended_at = VisitStatus.ENDED, now, now
        session.save()
    key = filecrypto.new_file_key()
    sealed = io.BytesIO()
    encrypted = filecrypto.encrypt_stream(io.BytesIO(media), sealed, key=key, purpose=FILE_PURPOSE)
    recording = Recording(
        visit=session,
        encounter=session.encounter,
        kind="video",
        status=RecordingStatus.STORED,
        requested_by=appointment.participants.get(role=ParticipantRole.PRACTITIONER),
        started_by=personas.practitioner,
        started_at=timezone.now(),
        stopped_at=timezone.now(),
        stored_at=timezone.now(),
        size=encrypted.size,
        sha256=encrypted.sha256,
        file_key=base64.b64encode(key).decode(),
    )
    recording.file_name = storages["recordings"].save(
        f"2026/12/{recording.public_id}.tcf", ContentFile(sealed.getvalue())
    )
    recording.save()
    return recording
