"""Recording of a visit (VID-8, CON-4): the gate, the staff's agreement, start, stop and the stored file's row.

The consent gate: a recording of a kind (video or audio only) starts only when
- the patient's stored consent covers that kind (`records.consent.may_record_visit`), and
- every other staff participant in the call (practitioner, consulted specialist, interpreter) agreed, in the
  call, to this recording; the host who asks agrees by asking.
It stops when anyone's consent goes: a revocation, a participant joining without consent (staff that did not
agree, a patient whose consent lapsed), the host who runs it leaving, the end of the visit, or a host's stop.

Like video.services, every function owns its transaction (the visit's row is the lock), writes its audit event
inside it and returns the pushes it causes for the consumer to send after the commit. The media side (the
aiortc recorder in the host's daphne process) is video/recorder.py.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.core.files.storage import storages
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import User
from audit import services as audit
from audit.actions import AuditAction, Outcome, Purpose
from records.consent import may_record_visit, recording_consent_kinds
from scheduling.models import ParticipantRole
from teleconsult.crypto import key_id_of
from teleconsult.prepared import PreparedRead
from video.models import (
    LIVE_RECORDING_STATES,
    Presence,
    PresenceState,
    Recording,
    RecordingKind,
    RecordingStatus,
    VisitSession,
    VisitStatus,
)
from video.services import ActionError, Push, _audit, _host, _lock, visit_group

logger = logging.getLogger(__name__)

# The purpose authenticated with every chunk of a recording's encrypted file (teleconsult/filecrypto.py).
FILE_PURPOSE = "video.recording.file"

# Why a recording stopped (or a request was withdrawn before it started); sent to every participant.
STOP_REASONS = (
    "host",
    "consent_revoked",
    "participant_without_consent",
    "host_left",
    "visit_ended",
    "recorder_failed",
    "recorder_lost",
)


@dataclass
class Requested:
    recording: Recording
    pushes: list[Push] = field(default_factory=list)
    # Nobody else has to agree: the requester's consumer starts the recorder now.
    start_now: bool = False
    # Refused at once (the patient's consent is missing): the error code for the requester.
    error: str = ""


def _event(visit: VisitSession, event_type: str, **fields: Any) -> Push:
    return Push({"type": "room.event", "event": {"type": event_type, **fields}}, group=visit_group(visit.pk))


def _audit_recording(
    action: AuditAction,
    recording: Recording,
    user: User | None,
    *,
    outcome: Outcome = Outcome.SUCCESS,
    system: bool = False,
    **details: Any,
) -> None:
    _audit(
        action,
        recording.visit.appointment,
        user,
        outcome=outcome,
        system=system,
        recording=str(recording.public_id),
        kind=recording.kind,
        **details,
    )


def _connected(visit: VisitSession) -> list[Presence]:
    return list(visit.presences.select_related("participant").filter(state=PresenceState.CONNECTED))


def _live(visit: VisitSession) -> Recording | None:
    return (
        Recording.objects.select_related("visit__appointment")
        .filter(visit=visit, status__in=LIVE_RECORDING_STATES)
        .first()
    )


def _live_by_id(visit: VisitSession, public_id: str) -> Recording:
    try:
        wanted = uuid.UUID(public_id)
    except ValueError as error:
        raise ActionError("no_recording") from error
    recording = _live(visit)
    if recording is None or recording.public_id != wanted:
        raise ActionError("no_recording")
    return recording


@transaction.atomic
def recording_request(*, visit_id: int, participant_id: int, user: User | None, kind: str) -> Requested:
    """A host asks to record the visit. Refused at once without the patient's consent to this kind; otherwise
    the other staff in the call are asked, or, when there are none, the recording starts now."""
    visit = _lock(visit_id)
    if visit.status != VisitStatus.IN_PROGRESS or visit.encounter is None:
        raise ActionError("not_started")
    if user is None:
        raise ActionError("forbidden")
    host = _host(visit, participant_id)
    if _live(visit) is not None:
        raise ActionError("recording_active")
    kind = RecordingKind(kind)
    connected = _connected(visit)
    awaiting = sorted(
        p.participant_id
        for p in connected
        if p.participant.role != ParticipantRole.PATIENT and p.participant_id != participant_id
    )
    recording = Recording(
        visit=visit,
        encounter=visit.encounter,
        kind=kind,
        requested_by=host,
        started_by=user,
        awaiting=awaiting,
        agreed=[],
    )
    gate = may_record_visit(visit.appointment.patient_id, kind)
    if not gate.allowed:
        # The refused request stays as a row too: what was asked, and why it could not be.
        recording.status = RecordingStatus.REFUSED
        recording.stop_reason = "no_recording_consent"
        recording.save()
        _audit_recording(AuditAction.RECORDING_REQUESTED, recording, user, participant=participant_id)
        _audit_recording(
            AuditAction.RECORDING_REFUSED,
            recording,
            user,
            outcome=Outcome.DENIED,
            reason="no_recording_consent",
            missing=sorted(key.split(":")[-1] for key in gate.missing),
        )
        return Requested(recording, error="no_recording_consent")
    recording.save()
    _audit_recording(AuditAction.RECORDING_REQUESTED, recording, user, participant=participant_id, awaiting=awaiting)
    if not awaiting:
        return Requested(recording, start_now=True)
    event = _event(
        visit,
        "recording_requested",
        recording=str(recording.public_id),
        kind=kind.value,
        by=participant_id,
        awaiting=awaiting,
    )
    return Requested(recording, [event])


@transaction.atomic
def recording_answer(
    *, visit_id: int, participant_id: int, user: User | None, recording_id: str, agree: bool
) -> list[Push]:
    """A staff participant the request waits for agrees or refuses. One refusal ends the request."""
    visit = _lock(visit_id)
    recording = _live_by_id(visit, recording_id)
    if recording.status != RecordingStatus.REQUESTED:
        raise ActionError("no_recording")
    if participant_id not in recording.awaiting or participant_id in recording.agreed:
        raise ActionError("forbidden")
    if not agree:
        recording.status = RecordingStatus.REFUSED
        recording.stop_reason = "refused"
        recording.save(update_fields=["status", "stop_reason"])
        _audit_recording(AuditAction.RECORDING_REFUSED, recording, user, participant=participant_id, reason="refused")
        return [_event(visit, "recording_refused", recording=str(recording.public_id), by=participant_id)]
    recording.agreed = sorted([*recording.agreed, participant_id])
    recording.save(update_fields=["agreed"])
    _audit_recording(AuditAction.RECORDING_AGREED, recording, user, participant=participant_id)
    pushes = [_event(visit, "recording_agreed", recording=str(recording.public_id), by=participant_id)]
    return pushes + _go_if_complete(visit, recording)


@transaction.atomic
def recording_begin(
    *, visit_id: int, participant_id: int, recording_id: str, recorder_channel: str
) -> tuple[list[Push], list[int] | None]:
    """Everyone agreed and the requester's process has a recorder listening on `recorder_channel`: recording
    starts now, and everyone is told (the participants then connect to the recorder). Returns the pushes and
    the participants recorded, or None for them when it could not start after all (then it is withdrawn)."""
    visit = _lock(visit_id)
    recording = _live_by_id(visit, recording_id)
    if recording.status != RecordingStatus.REQUESTED or recording.requested_by_id != participant_id:
        raise ActionError("no_recording")
    if visit.status != VisitStatus.IN_PROGRESS:
        return _stop(visit, recording, reason="visit_ended", user=None), None
    if not may_record_visit(visit.appointment.patient_id, recording.kind).allowed:
        return _stop(visit, recording, reason="consent_revoked", user=None), None
    connected = _connected(visit)
    staff_in = {p.participant_id for p in connected if p.participant.role != ParticipantRole.PATIENT}
    if staff_in - {participant_id} - set(recording.agreed):
        return _stop(visit, recording, reason="participant_without_consent", user=None), None
    recording.status = RecordingStatus.RECORDING
    recording.started_at = timezone.now()
    recording.recorder_channel = recorder_channel
    recording.recorder_seen_at = recording.started_at
    recording.participants = sorted(p.participant_id for p in connected)
    recording.save(update_fields=["status", "started_at", "recorder_channel", "recorder_seen_at", "participants"])
    _audit_recording(
        AuditAction.RECORDING_STARTED,
        recording,
        recording.started_by,
        participant=participant_id,
        participants=recording.participants,
    )
    return [_started_event(visit, recording)], list(recording.participants)


def _started_event(visit: VisitSession, recording: Recording) -> Push:
    return _event(
        visit,
        "recording_started",
        recording=str(recording.public_id),
        kind=recording.kind,
        by=recording.requested_by_id,
        participants=recording.participants,
    )


def _stop(visit: VisitSession, recording: Recording, *, reason: str, user: User | None) -> list[Push]:
    """Stop a recording (or withdraw a request that has not started): the row, the trail, the pushes."""
    was = recording.status
    pushes = [_event(visit, "recording_stopped", recording=str(recording.public_id), reason=reason)]
    if was == RecordingStatus.RECORDING:
        recording.status = RecordingStatus.STOPPED
        recording.stopped_at = timezone.now()
        if recording.recorder_channel:
            pushes.append(
                Push(
                    {"type": "recorder.stop", "recording": str(recording.public_id), "reason": reason},
                    channel=recording.recorder_channel,
                )
            )
    else:
        recording.status = RecordingStatus.CANCELLED
    recording.stop_reason = reason
    recording.save(update_fields=["status", "stopped_at", "stop_reason"])
    _audit_recording(AuditAction.RECORDING_STOPPED, recording, user, system=user is None, reason=reason, was=str(was))
    return pushes


@transaction.atomic
def recording_stop(*, visit_id: int, participant_id: int, user: User | None) -> list[Push]:
    """A host stops the recording (or withdraws the request). Patients and interpreters cannot."""
    visit = _lock(visit_id)
    _host(visit, participant_id)
    recording = _live(visit)
    if recording is None:
        raise ActionError("no_recording")
    return _stop(visit, recording, reason="host", user=user)


@transaction.atomic
def recording_stop_for(*, visit_id: int, reason: str, recording_id: str | None = None) -> list[Push]:
    """Stop the visit's live recording for a reason of the system (host left, visit ended, consent revoked);
    nothing when there is none (or it is another one than `recording_id`)."""
    visit = _lock(visit_id)
    recording = _live(visit)
    if recording is None or (recording_id is not None and str(recording.public_id) != recording_id):
        return []
    return _stop(visit, recording, reason=reason, user=None)


def recording_participant_left(*, visit_id: int, participant_id: int) -> list[Push]:
    """Someone left the call (`leave`, or a drop not followed by a new connection within the reconnect grace: then
    called from services.visit_departure_announce). The host who asked for the live recording: it stops (reason
    host_left). Staff a
    request still waits for: they are not asked any more (whoever is not in the call is not recorded; coming
    back without having agreed stops it, as for any joiner), and the request may now be complete."""
    if not Recording.objects.filter(visit_id=visit_id, status__in=LIVE_RECORDING_STATES).exists():
        return []
    with transaction.atomic():
        visit = _lock(visit_id)
        recording = _live(visit)
        if recording is None:
            return []
        if recording.requested_by_id == participant_id:
            return _stop(visit, recording, reason="host_left", user=None)
        if recording.status != RecordingStatus.REQUESTED or participant_id not in recording.awaiting:
            return []
        if participant_id in recording.agreed:
            return []
        recording.awaiting = [p for p in recording.awaiting if p != participant_id]
        recording.save(update_fields=["awaiting"])
        return _go_if_complete(visit, recording)


def _go_if_complete(visit: VisitSession, recording: Recording) -> list[Push]:
    """Every awaited participant agreed: tell the requester's consumer (on whichever process) to start."""
    if not set(recording.agreed) >= set(recording.awaiting):
        return []
    requester = visit.presences.filter(participant_id=recording.requested_by_id).first()
    if requester is not None and requester.state != PresenceState.CONNECTED and requester.away_since is not None:
        # Dropped, within the reconnect grace: it starts when they come back (recording_request_resume), or is
        # withdrawn with their departure (host_left) if they do not.
        return []
    if requester is None or requester.state != PresenceState.CONNECTED:
        return _stop(visit, recording, reason="host_left", user=None)
    return [
        Push(
            {"type": "recording.go", "recording": str(recording.public_id), "kind": recording.kind},
            channel=requester.channel_name,
        )
    ]


def recording_request_resume(*, visit_id: int, participant_id: int) -> list[Push]:
    """The host whose request is pending is back from a drop: if everybody agreed meanwhile, it starts now."""
    if not Recording.objects.filter(
        visit_id=visit_id, status=RecordingStatus.REQUESTED, requested_by_id=participant_id
    ).exists():
        return []
    with transaction.atomic():
        visit = _lock(visit_id)
        recording = _live(visit)
        if recording is None or recording.status != RecordingStatus.REQUESTED:
            return []
        if recording.requested_by_id != participant_id:
            return []
        return _go_if_complete(visit, recording)


_LIVE = PreparedRead(
    lambda visit_id: Recording.objects.filter(visit_id=visit_id, status__in=LIVE_RECORDING_STATES).only("pk")[:1],
    visit_id=int,
)


def recording_live_exists(*, visit_id: int) -> bool:
    """Whether the visit has a recording running or asked for (one indexed query; what every connection asks)."""
    return _LIVE.first(visit_id=visit_id) is not None


def recording_check_joiner(*, visit_id: int, participant_id: int) -> list[Push]:
    """Someone connected: a live recording (or request) they have not consented to stops. A patient needs a
    valid stored consent to the kind; staff must be the requester or have agreed to this very recording."""
    recording = Recording.objects.filter(visit_id=visit_id, status__in=LIVE_RECORDING_STATES).first()
    if recording is None:
        return []
    with transaction.atomic():
        visit = _lock(visit_id)
        recording = _live(visit)
        if recording is None:
            return []
        participant = visit.appointment.participants.get(pk=participant_id)
        if participant.role == ParticipantRole.PATIENT:
            consented = may_record_visit(visit.appointment.patient_id, recording.kind).allowed
        else:
            consented = participant_id == recording.requested_by_id or participant_id in recording.agreed
            # Asked and not answered yet, back from a drop within the grace (still asked: they may answer now).
            consented = consented or (
                recording.status == RecordingStatus.REQUESTED and participant_id in recording.awaiting
            )
        if consented:
            return []
        return _stop(visit, recording, reason="participant_without_consent", user=None)


def recordings_stop_for_revoked_consent(*, patient_id: int, kind: str) -> list[Push]:
    """A patient revoked a recording consent: every live recording of their visits that needed it stops."""
    pushes: list[Push] = []
    live = Recording.objects.filter(
        visit__appointment__patient_id=patient_id, status__in=LIVE_RECORDING_STATES
    ).values_list("visit_id", "public_id", "kind")
    for visit_id, public_id, recording_kind in list(live):
        if kind in recording_consent_kinds(recording_kind):
            pushes += recording_stop_for(visit_id=visit_id, reason="consent_revoked", recording_id=str(public_id))
    return pushes


def recordings_stop_for_ended_visit(visit: VisitSession) -> list[Push]:
    """Inside the end of a visit (its transaction, its lock): a live recording stops with the visit."""
    recording = _live(visit)
    return [] if recording is None else _stop(visit, recording, reason="visit_ended", user=None)


def live_recording_event(*, visit_id: int, participant_id: int | None = None) -> dict[str, Any] | None:
    """For a participant connecting while a recording runs: the `recording_started` event they missed (or, back
    from a drop while a request waits, to its requester and to staff it still waits for, `recording_requested`)."""
    recording = Recording.objects.filter(visit_id=visit_id, status__in=LIVE_RECORDING_STATES).first()
    if recording is None:
        return None
    if recording.status == RecordingStatus.REQUESTED:
        asked = participant_id in recording.awaiting and participant_id not in recording.agreed
        if not asked and participant_id != recording.requested_by_id:
            return None
        return {
            "type": "recording_requested",
            "recording": str(recording.public_id),
            "kind": recording.kind,
            "by": recording.requested_by_id,
            "awaiting": recording.awaiting,
        }
    return {
        "type": "recording_started",
        "recording": str(recording.public_id),
        "kind": recording.kind,
        "by": recording.requested_by_id,
        "participants": recording.participants,
    }


def recorder_target(*, visit_id: int, recording_id: str) -> str | None:
    """The recorder's channel for a participant's connection to it, while the recording runs."""
    try:
        wanted = uuid.UUID(recording_id)
    except ValueError:
        return None
    recording = Recording.objects.filter(visit_id=visit_id, public_id=wanted, status=RecordingStatus.RECORDING).first()
    return recording.recorder_channel if recording is not None and recording.recorder_channel else None


# --- The recorder's results ---


@transaction.atomic
def recording_store(
    *,
    recording_id: str,
    file_name: str,
    size: int,
    sha256: str,
    file_key: str,
    participants: list[int],
    now: dt.datetime | None = None,
) -> Recording:
    """The recorder wrote, encrypted and stored the file: attach it to the recording (and so the encounter)."""
    recording = Recording.objects.select_for_update().select_related("visit__appointment").get(public_id=recording_id)
    if recording.status == RecordingStatus.RECORDING:
        # Stopped by the recorder's own process (its host left) before the row said so.
        recording.status = RecordingStatus.STOPPED
        recording.stopped_at = now or timezone.now()
    recording.status = RecordingStatus.STORED
    recording.stored_at = now or timezone.now()
    recording.file_name = file_name
    recording.size = size
    recording.sha256 = sha256
    recording.file_key = file_key
    recording.participants = sorted(participants)
    recording.recorder_channel = ""
    recording.save()
    _audit_recording(
        AuditAction.RECORDING_STORED,
        recording,
        None,
        system=True,
        size=size,
        sha256=sha256,
        participants=recording.participants,
    )
    return recording


@transaction.atomic
def recording_fail(*, recording_id: str, reason: str) -> None:
    """Nothing usable was written (no media arrived) or the recorder was lost: the row says so, for ever."""
    recording = Recording.objects.select_for_update().select_related("visit__appointment").get(public_id=recording_id)
    if recording.status in (RecordingStatus.STORED, RecordingStatus.FAILED):
        return
    if recording.stopped_at is None and recording.started_at is not None:
        recording.stopped_at = timezone.now()
    recording.status = RecordingStatus.FAILED
    recording.stop_reason = recording.stop_reason or reason
    recording.recorder_channel = ""
    recording.save(update_fields=["status", "stopped_at", "stop_reason", "recorder_channel"])
    _audit_recording(AuditAction.RECORDING_FAILED, recording, None, outcome=Outcome.FAILURE, system=True, reason=reason)


# The recorder says it is alive in its row this often; a recording whose recorder has been silent for RECORDER_LOST
# is taken as lost (its process died) by the periodic sweep.
RECORDER_BEAT = dt.timedelta(seconds=5)
RECORDER_LOST = dt.timedelta(seconds=30)


def recorder_beat(*, recording_id: str) -> bool:
    """The recorder is alive (called from its process every RECORDER_BEAT). False once the recording is not
    running any more."""
    return bool(
        Recording.objects.filter(public_id=recording_id, status=RecordingStatus.RECORDING).update(
            recorder_seen_at=timezone.now()
        )
    )


def recordings_stop_lost(*, now: dt.datetime | None = None) -> list[Push]:
    """For the periodic sweep: running recordings whose recorder stopped beating (the daphne process holding it
    died — its host may have come back on another process within the reconnect grace, so nothing else would stop
    it). Each stops for everyone (reason recorder_lost) and is failed: nothing was stored; the plaintext its
    process left is swept as for any recorder that died."""
    cutoff = (now or timezone.now()) - RECORDER_LOST
    lost = Recording.objects.filter(status=RecordingStatus.RECORDING, recorder_seen_at__lt=cutoff)
    pushes: list[Push] = []
    for visit_id, public_id in list(lost.values_list("visit_id", "public_id")):
        with transaction.atomic():
            visit = _lock(visit_id)
            recording = _live(visit)
            if recording is None or recording.public_id != public_id or recording.status != RecordingStatus.RECORDING:
                continue
            if recording.recorder_seen_at is not None and recording.recorder_seen_at >= cutoff:
                continue
            pushes += _stop(visit, recording, reason="recorder_lost", user=None)
            recording_fail(recording_id=str(public_id), reason="recorder_lost")
    return pushes


def recordings_fail_lost(*, older_than: dt.timedelta = dt.timedelta(minutes=10)) -> int:
    """For the periodic sweep: recordings whose visit ended (or that were stopped) long ago but were never
    stored — the recorder's process died. They are marked failed; whatever plaintext it left is on its host's
    RECORDINGS_TMP_DIR (see docs/recording.md)."""
    cutoff = timezone.now() - older_than
    lost = Recording.objects.filter(
        status__in=[RecordingStatus.RECORDING, RecordingStatus.STOPPED], visit__status=VisitStatus.ENDED
    ).filter(visit__ended_at__lt=cutoff)
    count = 0
    for public_id in list(lost.values_list("public_id", flat=True)):
        recording_fail(recording_id=str(public_id), reason="recorder_lost")
        count += 1
    return count


def recording_data_key_id(recording: Recording) -> int | None:
    """The id of the keyring's data key that encrypts this recording's file key now (read from the encrypted
    column's header, so it follows key rotation); None before the file is stored."""
    # Raw SQL: the ORM would decrypt the column; its header is what is wanted.
    with connection.cursor() as cursor:
        cursor.execute("SELECT file_key FROM video_recording WHERE id = %s", [recording.pk])
        row = cursor.fetchone()
    return key_id_of(bytes(row[0])) if row and row[0] is not None else None


def recordings_destroy_past_retention(*, patient_id: int, now: dt.datetime) -> int:
    """Inside the purge of a patient's record past retention (records.retention.purge_expired, its transaction and
    its checks: retention over, no legal hold): each stored recording of their visits is destroyed by destroying
    its file key (crypto-shredding: the ciphertext cannot be read any more, in storage or in any copy of it) and,
    once the purge commits, its file. The row stays, `destroyed`, with its times, kind, size and SHA-256, and the
    trail says so. Returns how many."""
    destroyed = 0
    stored = (
        Recording.objects.select_for_update(of=("self",))
        .select_related("visit__appointment")
        .filter(visit__appointment__patient_id=patient_id, status=RecordingStatus.STORED)
        .order_by("pk")
    )
    for recording in stored:
        recording.status = RecordingStatus.DESTROYED
        recording.destroyed_at = now
        recording.file_key = None
        recording.save(update_fields=["status", "destroyed_at", "file_key"])
        audit.record(
            action=AuditAction.RECORDING_DESTROYED,
            purpose=Purpose.OPERATIONS,
            actor_role="system",
            patient_id=patient_id,
            object_type="recording",
            object_id=recording.pk,
            details={
                "recording": str(recording.public_id),
                "kind": recording.kind,
                "reason": "retention_expired",
                "sha256": recording.sha256,
            },
        )
        transaction.on_commit(functools.partial(_delete_file, recording.pk, recording.file_name))
        destroyed += 1
    return destroyed


def _delete_file(pk: int, name: str) -> None:
    """After the purge committed (the key is gone already): the ciphertext goes from the recordings storage."""
    try:
        storages["recordings"].delete(name)
    except OSError:
        # Unreadable without its key; the operator removes it (docs/recording.md). The row's id only.
        logger.error("a destroyed recording's file could not be deleted", extra={"recording": pk})
