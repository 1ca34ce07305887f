"""Room state of video visits, shared by every daphne process: the visit, who is in it, and its chat."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from records.models import Encounter
from scheduling.models import Appointment, AppointmentParticipant
from teleconsult.fields import EncryptedTextField


class VisitStatus(models.TextChoices):
    WAITING = "waiting", "waiting"
    IN_PROGRESS = "in_progress", "in progress"
    ENDED = "ended", "ended"


class VisitSession(models.Model):
    """The live side of one appointment's visit. Its row is the lock every change of the room takes."""

    appointment = models.OneToOneField(Appointment, on_delete=models.PROTECT, related_name="visit_session")
    status = models.CharField(max_length=16, choices=VisitStatus.choices, default=VisitStatus.WAITING)
    encounter = models.ForeignKey(Encounter, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # When the last participant left a visit in progress; it ends by itself after a timeout (VID-9).
    empty_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status="waiting") | Q(started_at__isnull=False, encounter__isnull=False),
                name="video_visitsession_started_has_encounter",
            ),
            models.CheckConstraint(
                condition=~Q(status="ended") | Q(ended_at__isnull=False), name="video_visitsession_ended_at"
            ),
        ]

    def __str__(self) -> str:
        return f"visit {self.pk} ({self.status})"


class PresenceState(models.TextChoices):
    WAITING = "waiting", "waiting"  # a patient in the lobby
    ADMITTED = "admitted", "admitted"  # admitted, momentarily disconnected (may come back without waiting)
    CONNECTED = "connected", "connected"
    LEFT = "left", "left"


# States that hold a websocket (and count towards the room's size).
LIVE_STATES = (PresenceState.WAITING, PresenceState.CONNECTED)


class Presence(models.Model):
    """One participant's place in a visit. `connection` counts their connections: a disconnect that is not
    the latest connection's (an older tab, replaced) changes nothing."""

    visit = models.ForeignKey(VisitSession, on_delete=models.PROTECT, related_name="presences")
    participant = models.ForeignKey(AppointmentParticipant, on_delete=models.PROTECT, related_name="+")
    state = models.CharField(max_length=16, choices=PresenceState.choices)
    channel_name = models.CharField(max_length=200, blank=True)
    connection = models.PositiveIntegerField(default=0)
    admitted_at = models.DateTimeField(null=True, blank=True)
    joined_at = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)
    # Set when the connection of a participant in the call dropped and the others have not been told yet: they
    # are, once VIDEO_RECONNECT_GRACE_SECONDS have passed without a new connection (video.services).
    away_since = models.DateTimeField(null=True, blank=True)
    # The modality this participant's page last said it uses (`media_state`): video, audio or chat (a browser
    # without WebRTC); blank until it says. The visit's modality is the most limited one in use (video.services).
    modality = models.CharField(max_length=8, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["visit", "participant"], name="video_presence_once_per_visit"),
            models.CheckConstraint(
                condition=~Q(state__in=["waiting", "connected"]) | ~Q(channel_name=""),
                name="video_presence_live_has_channel",
            ),
        ]

    def __str__(self) -> str:
        return f"participant {self.participant_id} in visit {self.visit_id} ({self.state})"


class ChatMessage(models.Model):
    """In-call chat (VID-4's last fallback): part of the encounter, stored encrypted, never in the audit text."""

    visit = models.ForeignKey(VisitSession, on_delete=models.PROTECT, related_name="chat_messages")
    encounter = models.ForeignKey(Encounter, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    sender = models.ForeignKey(AppointmentParticipant, on_delete=models.PROTECT, related_name="+")
    body = EncryptedTextField(purpose="video.chat_message.body")
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["visit", "sent_at"], name="video_chat_visit_sent")]

    def __str__(self) -> str:
        return f"chat message {self.pk}"


class RecordingKind(models.TextChoices):
    VIDEO = "video", "video"  # video and audio
    AUDIO = "audio", "audio only"


class RecordingStatus(models.TextChoices):
    REQUESTED = "requested", "requested"  # waiting for the other staff in the call to agree
    REFUSED = "refused", "refused"  # a participant refused: it never started
    CANCELLED = "cancelled", "cancelled"  # withdrawn before it started (the host, a joiner without consent, the end)
    RECORDING = "recording", "recording"
    STOPPED = "stopped", "stopped"  # stopped, being finalised (encrypted and stored)
    STORED = "stored", "stored"  # the encrypted file is kept and attached to the encounter
    FAILED = "failed", "failed"  # nothing usable was written (no media arrived, or the recorder was lost)
    # Past the patient's retention (SEC-5), with their record's identity: the file and its key were destroyed;
    # the row stays as the trace (times, kind, size and SHA-256 of what was kept).
    DESTROYED = "destroyed", "destroyed"


# A visit has at most one recording in these states at a time.
LIVE_RECORDING_STATES = (RecordingStatus.REQUESTED, RecordingStatus.RECORDING)


class Recording(models.Model):
    """A consented recording of a visit (VID-8), attached to its encounter. Rows are never deleted (a database
    trigger refuses it): a request that was refused or cancelled stays as evidence of what was asked."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    visit = models.ForeignKey(VisitSession, on_delete=models.PROTECT, related_name="recordings")
    encounter = models.ForeignKey(Encounter, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=8, choices=RecordingKind.choices)
    status = models.CharField(max_length=12, choices=RecordingStatus.choices, default=RecordingStatus.REQUESTED)
    requested_by = models.ForeignKey(AppointmentParticipant, on_delete=models.PROTECT, related_name="+")
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    stored_at = models.DateTimeField(null=True, blank=True)
    destroyed_at = models.DateTimeField(null=True, blank=True)
    # host, consent_revoked, participant_without_consent, host_left, visit_ended (stopped or cancelled),
    # refused, no_media, recorder_lost.
    stop_reason = models.CharField(max_length=40, blank=True)
    # Participant ids: staff whose agreement is needed, who agreed, and whose media went into the file.
    awaiting = models.JSONField(default=list)
    agreed = models.JSONField(default=list)
    participants = models.JSONField(default=list)
    # The recorder's channel (in the daphne process of the host who started it) while recording.
    recorder_channel = models.CharField(max_length=200, blank=True)
    # When the recorder last said it was alive, while recording (a silent one is lost: its process died).
    recorder_seen_at = models.DateTimeField(null=True, blank=True)
    # The encrypted file (teleconsult/filecrypto.py) in the "recordings" storage, its size and SHA-256, and its
    # file key, itself encrypted by the keyring's active data key (so key rotation covers it).
    file_name = models.CharField(max_length=200, blank=True)
    container = models.CharField(max_length=16, default="matroska")
    size = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    file_key = EncryptedTextField(purpose="video.recording.file_key", null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["visit"],
                condition=Q(status__in=["requested", "recording"]),
                name="video_recording_one_live_per_visit",
            ),
            models.CheckConstraint(
                condition=~Q(status="stored") | (Q(size__isnull=False) & ~Q(sha256="") & Q(file_key__isnull=False)),
                name="video_recording_stored_has_file",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["requested", "refused", "cancelled"]) | Q(started_at__isnull=False),
                name="video_recording_started_at",
            ),
            models.CheckConstraint(
                condition=~Q(status="destroyed") | (Q(destroyed_at__isnull=False) & Q(file_key__isnull=True)),
                name="video_recording_destroyed_has_no_key",
            ),
        ]
        indexes = [models.Index(fields=["encounter", "requested_at"], name="video_recording_encounter")]

    def __str__(self) -> str:
        return f"recording {self.public_id} ({self.status})"
