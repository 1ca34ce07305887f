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


class RecorderClient:
    """One participant's connection to the recorder: synthetic camera and microphone, sent only."""

    def __init__(self, *, audio_only: bool = False) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        if not audio_only:
            self.pc.addTransceiver(VideoStreamTrack(), direction="sendonly")

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


def decode(data: bytes) -> Decoded:
    """Every frame of a media file, decoded (raises if it is not one)."""
    with av.open(io.BytesIO(data), mode="r") as container:
        video = sum(1 for s in container.streams if s.type == "video")
        audio = sum(1 for s in container.streams if s.type == "audio")
        counts = {"video": 0, "audio": 0}
        for frame in container.decode(*container.streams):
            counts["video" if isinstance(frame, av.VideoFrame) else "audio"] += 1
    return Decoded(counts["video"], counts["audio"], video, audio)
