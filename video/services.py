"""Video visit services: who may connect, joining and leaving, the waiting room, modality, chat and the end.

Each service owns its transaction (one lock: the visit's row) and writes its audit events inside it. Pushes to
other connections are *returned* (`Push`), not sent: the consumer sends them once the service has returned,
which is after the commit, so nobody hears of a change that then rolled back.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.middleware import OTPMiddleware
from django_otp.models import Device

from accounts.models import Role, User
from accounts.signin_state import LAST_ACTIVITY_KEY, idle_timeout_seconds
from audit import services as audit
from audit.actions import AuditAction, Outcome, Purpose
from records.consent import may_start_visit
from records.encounters import encounter_finish, encounter_record_modality, encounter_start
from records.models import EncounterModalityChange, Modality
from records.models import ParticipantRole as EncounterRole
from scheduling.joinlinks import join_link_window, participant_from_link_session
from scheduling.models import Appointment, AppointmentParticipant, AppointmentStatus, ParticipantRole, ServiceType
from scheduling.visits import appointment_finish_visit, appointment_start_visit
from teleconsult.channel_layer import process_of
from teleconsult.prepared import PreparedRead
from video.models import (
    LIVE_RECORDING_STATES,
    LIVE_STATES,
    ChatMessage,
    Presence,
    PresenceState,
    Recording,
    VisitSession,
    VisitStatus,
)
from video.protocol import MAX_PARTICIPANTS, CloseCode

# Who may admit, decline and end.
_HOSTS = (ParticipantRole.PRACTITIONER, ParticipantRole.CONSULTED)
_ENCOUNTER_ROLES = {
    ParticipantRole.PRACTITIONER: EncounterRole.ATTENDING,
    ParticipantRole.CONSULTED: EncounterRole.CONSULTANT,
}


def empty_timeout() -> dt.timedelta:
    return dt.timedelta(seconds=settings.VIDEO_EMPTY_VISIT_TIMEOUT_SECONDS)


def reconnect_grace() -> dt.timedelta:
    return dt.timedelta(seconds=settings.VIDEO_RECONNECT_GRACE_SECONDS)


def visit_group(visit_id: int) -> str:
    """Every connection of one visit (waiting ones too: they hear of admission, decline and the end)."""
    return f"video.visit.{visit_id}"


def practitioner_group(user_id: int) -> str:
    """A practitioner's own pages (the day list) hear who is waiting, live."""
    return f"video.practitioner.{user_id}"


def _waiting_over(appointment: Appointment, user_ids: list[int] | None = None) -> list[Push]:
    """Tell the hosts' day lists that someone stopped waiting (admitted, declined or gone). `user_ids`: the hosts'
    users when the caller has read them already."""
    return [
        Push({"type": "visit.waiting_over", "appointment": str(appointment.public_id)}, group=practitioner_group(uid))
        for uid in (_hosts_user_ids(appointment) if user_ids is None else user_ids)
    ]


class Refused(Exception):
    """The connection or action is refused; the consumer closes with `code`."""

    def __init__(self, code: CloseCode, reason: str = "") -> None:
        super().__init__(reason or code.name.lower())
        self.code = code
        self.reason = reason or code.name.lower()


class ActionError(Exception):
    """A message the server does not carry out; the sender gets an error frame and stays connected."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class Push:
    """A message for the channel layer: to one channel or to a group."""

    message: dict[str, Any]
    channel: str = ""
    group: str = ""


@dataclass
class Joined:
    visit_id: int
    participant_id: int
    role: str
    state: str
    connection: int
    peers: list[dict[str, Any]]
    waiting: list[dict[str, Any]]
    pushes: list[Push] = field(default_factory=list)


# --- Who is connecting (the access gate of the visit's websocket) ---


# A read per kind of second-factor device, compiled once (teleconsult.prepared): only what the check below uses.
_DEVICE_READS: dict[type[Device], PreparedRead[Device]] = {}


def _device(persistent_id: str) -> Device | None:
    """django_otp's Device.from_persistent_id ("app_label.model_name/id"), its read compiled once per device model."""
    try:
        label, device_id = persistent_id.rsplit("/", 1)
        app_label, model_name = label.split(".")
        model = apps.get_model(app_label, model_name)
        pk = int(device_id)
    except (ValueError, LookupError, TypeError):
        return None
    if not issubclass(model, Device):
        return None
    read = _DEVICE_READS.get(model)
    if read is None:
        read = _DEVICE_READS.setdefault(
            model,
            PreparedRead(
                lambda device_id, kind=model: kind.objects.filter(pk=device_id).only("pk", "user_id", "confirmed"),
                device_id=int,
            ),
        )
    return read.first(device_id=pk)


def _otp_verified(user: User, session: Any) -> bool:
    """What django_otp's OTPMiddleware decides for a request, decided from the websocket's session: the device
    the session names belongs to this user and is confirmed. (The middleware does not run for consumers.)"""
    persistent_id = session.get(DEVICE_ID_SESSION_KEY) if session is not None else None
    if not isinstance(persistent_id, str) or not persistent_id:
        return False
    device = _device(OTPMiddleware._normalize_persistent_id(persistent_id))
    return device is not None and device.user_id == user.pk and bool(device.confirmed)


def _signed_in(user: Any, session: Any) -> User | None:
    if user is None or isinstance(user, AnonymousUser) or not getattr(user, "is_authenticated", False):
        return None
    if not user.is_active:
        return None
    if user.is_staff_member and not _otp_verified(user, session):
        return None
    last = session.get(LAST_ACTIVITY_KEY) if session is not None else None
    if isinstance(last, int) and time.time() - last > idle_timeout_seconds(user):
        return None
    return user


def signed_in_user(user: Any, session: Any) -> User | None:
    """The websocket's signed-in user if the session still counts (active, second factor for staff, not idle)."""
    return _signed_in(user, session)


# With the visit's room when it exists, so joining does not look it up again (_visit_id). Nothing more is read along:
# a join needs the appointment's times, status and patient id, not the patient's record, the establishment or the
# user's row (the rare path that does, a specialist joining a running visit, loads them then).
_PARTICIPANT = PreparedRead(
    lambda public_id, user_id: (
        AppointmentParticipant.objects.select_related("appointment__visit_session")
        .filter(appointment__public_id=public_id)
        .filter(Q(user_id=user_id) | Q(patient__user_id=user_id))
        .order_by("-active", "pk")[:1]
    ),
    public_id=uuid.UUID,
    user_id=int,
)


def visit_participant_for(*, public_id: str, user: Any, session: Any) -> tuple[AppointmentParticipant, User | None]:
    """The participant this websocket speaks for, and the signed-in user (None for a link session).

    Refused(UNAUTHENTICATED) with neither a signed-in (and, for staff, second-factor verified) user nor a
    verified link session; Refused(NOT_PARTICIPANT) for anyone else, whether or not the visit exists, so the
    answer reveals nothing about other people's appointments."""
    signed_in = _signed_in(user, session)
    link_participant = participant_from_link_session(session)
    if signed_in is None and link_participant is None:
        raise Refused(CloseCode.UNAUTHENTICATED)
    try:
        wanted = uuid.UUID(str(public_id))
    except ValueError as error:
        raise Refused(CloseCode.NOT_PARTICIPANT) from error
    participant = None
    if signed_in is not None:
        participant = _PARTICIPANT.first(public_id=wanted, user_id=signed_in.pk)
        if participant is not None and participant.user_id == signed_in.pk:
            participant.user = signed_in  # the same row, read already
    if participant is None and link_participant is not None and link_participant.appointment.public_id == wanted:
        participant = link_participant
    if participant is None:
        raise Refused(CloseCode.NOT_PARTICIPANT)
    return participant, signed_in


def _check_admissible(participant: AppointmentParticipant, now: dt.datetime) -> None:
    appointment = participant.appointment
    if appointment.status == AppointmentStatus.COMPLETED:
        raise Refused(CloseCode.ENDED)
    if appointment.status not in (AppointmentStatus.BOOKED, AppointmentStatus.IN_PROGRESS):
        raise Refused(CloseCode.UNKNOWN_VISIT)
    if not participant.active:
        raise Refused(CloseCode.NOT_PARTICIPANT)
    opens_at, closes_at = join_link_window(appointment)
    if not opens_at <= now <= closes_at:
        raise Refused(CloseCode.OUTSIDE_WINDOW)
    if participant.role == ParticipantRole.PATIENT and not may_start_visit(appointment.patient_id, at=now).allowed:
        raise Refused(CloseCode.CONSENT_MISSING)


# --- Audit helpers: ids and codes only ---


def _actor(user: User | None) -> dict[str, Any]:
    if user is None:
        return {"actor_user_id": None, "actor_role": "link"}
    return {"actor_user_id": user.pk, "actor_role": user.role}


def _audit(
    action: AuditAction,
    appointment: Appointment,
    user: User | None,
    *,
    outcome: Outcome = Outcome.SUCCESS,
    system: bool = False,
    **details: Any,
) -> None:
    actor = {"actor_user_id": None, "actor_role": "system"} if system else _actor(user)
    audit.record(
        action=action,
        outcome=outcome,
        purpose=Purpose.TREATMENT,
        patient_id=appointment.patient_id,
        object_type="appointment",
        object_id=appointment.pk,
        details=details,
        **actor,
    )


def visit_refusal_record(
    *, public_id: str, code: CloseCode, participant: AppointmentParticipant | None, user: Any
) -> None:
    """A refused connection, in the trail (which visit only when the person is one of its participants)."""
    signed_in = user if getattr(user, "is_authenticated", False) else None
    details: dict[str, Any] = {"code": int(code), "reason": code.name.lower()}
    if participant is not None:
        details["participant"] = participant.pk
        _audit(AuditAction.VISIT_REFUSED, participant.appointment, signed_in, outcome=Outcome.DENIED, **details)
        return
    audit.record(
        action=AuditAction.VISIT_REFUSED,
        outcome=Outcome.DENIED,
        object_type="appointment",
        details=details,
        **_actor(signed_in) if signed_in else {"actor_role": "anonymous"},
    )


# --- The room ---


def _peer(presence: Presence) -> dict[str, Any]:
    return {
        "participant": presence.participant_id,
        "role": presence.participant.role,
        "state": presence.state,
        "channel": presence.channel_name,
    }


def connected_peer(*, visit_id: int, participant_id: int) -> dict[str, Any] | None:
    """A participant in the call of this visit (never of another), with their channel; None otherwise."""
    presence = (
        Presence.objects.select_related("participant")
        .filter(visit_id=visit_id, participant_id=participant_id, state=PresenceState.CONNECTED)
        .first()
    )
    return _peer(presence) if presence is not None else None


_HOST_USERS = PreparedRead(
    lambda appointment_id: (
        AppointmentParticipant.objects.filter(
            appointment_id=appointment_id, role__in=_HOSTS, active=True, user__isnull=False
        )
        .only("pk", "user_id")
        .order_by("pk")
    ),
    appointment_id=int,
)


def _hosts_user_ids(appointment: Appointment) -> list[int]:
    return [host.user_id for host in _HOST_USERS.all(appointment_id=appointment.pk) if host.user_id is not None]


_LOCKS: dict[tuple[str, ...], PreparedRead[VisitSession]] = {}


def _lock_read(shape: tuple[str, ...]) -> PreparedRead[VisitSession]:
    read = _LOCKS.get(shape)
    if read is None:

        def build(visit_id: int) -> Any:
            rooms = VisitSession.objects.select_for_update(of=("self",))
            return (rooms.select_related(*shape) if shape else rooms).filter(pk=visit_id)

        read = _LOCKS.setdefault(shape, PreparedRead(build, visit_id=int))
    return read


def _lock(visit_id: int, *related: str, along: tuple[str, ...] = ("appointment", "encounter")) -> VisitSession:
    """The visit's row, locked: the one lock every room change takes. `along` and `related`: what to read with it
    (a handful of shapes, each compiled once: teleconsult.prepared)."""
    visit = _lock_read((*along, *related)).first(visit_id=visit_id)
    if visit is None:
        raise VisitSession.DoesNotExist("no such visit")
    return visit


# The room of an appointment, created by its first connection. ON CONFLICT: a connection of another participant
# may be creating it at the same moment; then that one is taken (no savepoint needed to recover from a duplicate).
_CREATE_ROOM = (
    "INSERT INTO video_visitsession (appointment_id, status, encounter_id, created_at, started_at, ended_at,"
    " empty_since) VALUES (%s, %s, NULL, %s, NULL, NULL, NULL) ON CONFLICT (appointment_id) DO NOTHING RETURNING id"
)


def _visit_id(appointment: Appointment) -> int:
    """The id of the appointment's room, created if need be (its row is locked afterwards, by id)."""
    if Appointment.visit_session.is_cached(appointment):  # read with the participant (visit_participant_for)
        known = getattr(appointment, "visit_session", None)  # None cached: there was none then
        if known is not None:
            return known.pk
    else:
        found = VisitSession.objects.filter(appointment=appointment).values_list("pk", flat=True).first()
        if found is not None:
            return found
    with connection.cursor() as cursor:
        cursor.execute(_CREATE_ROOM, [appointment.pk, VisitStatus.WAITING.value, timezone.now()])
        created = cursor.fetchone()
    if created is not None:
        return int(created[0])
    return VisitSession.objects.filter(appointment=appointment).values_list("pk", flat=True).get()


_ADMIT_LOCK = PreparedRead(
    lambda visit_id: (
        VisitSession.objects.select_for_update(of=("self",))
        .select_related("appointment", "encounter", "appointment__patient", "appointment__establishment")
        .annotate(
            recording_live=Exists(Recording.objects.filter(visit_id=OuterRef("pk"), status__in=LIVE_RECORDING_STATES))
        )
        .filter(pk=visit_id)
    ),
    visit_id=int,
)
_PRESENCES = PreparedRead(
    lambda visit_id: Presence.objects.filter(visit_id=visit_id).select_related("participant").order_by("pk"),
    visit_id=int,
)
_HOSTS_READ = PreparedRead(
    lambda appointment_id, visit_id: (
        AppointmentParticipant.objects.filter(appointment_id=appointment_id, role__in=_HOSTS)
        .select_related("user__practitioner_profile", "establishment")
        .annotate(
            in_call=Exists(
                Presence.objects.filter(visit_id=visit_id, participant=OuterRef("pk"), state=PresenceState.CONNECTED)
            )
        )
        .order_by("pk")
    ),
    appointment_id=int,
    visit_id=int,
)


def _hosts(visit: VisitSession) -> tuple[list[AppointmentParticipant], set[int]]:
    """Every host of the visit's appointment (active or not), with their user, practitioner profile and
    establishment, and the ids of those connected to the room: what an admit needs, read at once."""
    hosts: list[Any] = _HOSTS_READ.all(appointment_id=visit.appointment_id, visit_id=visit.pk)
    # Handed on as plain participants; `in_call` only says who is connected.
    return [host for host in hosts], {host.pk for host in hosts if host.in_call}


def _start_encounter(visit: VisitSession, participants: list[AppointmentParticipant], by: User) -> None:
    """Start (or join) the encounter of the visit with the health professionals in it."""
    appointment = visit.appointment
    members = [
        (p.user, _ENCOUNTER_ROLES[ParticipantRole(p.role)], p.establishment)
        for p in participants
        if p.role in _ENCOUNTER_ROLES and p.user is not None and p.user.role == Role.PRACTITIONER
    ]
    if not members:
        return
    consulted = next((p.establishment for p in participants if p.role == ParticipantRole.CONSULTED), None)
    encounter = encounter_start(
        patient=appointment.patient,
        appointment_ref=str(appointment.public_id),
        service_type=appointment.service_type,
        modality_planned=appointment.modality,
        origin_establishment=appointment.establishment,
        consulted_establishment=consulted if appointment.service_type == ServiceType.TELEINTERCONSULTA else None,
        participants=members,
        by=by,
        savepoint=False,  # any refusal rolls the whole room change back (an admit's sender gets `refused`)
    )
    if visit.encounter_id is None:
        visit.encounter = encounter


@transaction.atomic
def visit_connect(
    *, participant: AppointmentParticipant, user: User | None, channel_name: str, now: dt.datetime | None = None
) -> Joined:
    """A participant's websocket joins the visit: the patient waits unless already admitted, the others are in.

    A second connection of the same participant replaces the first (the newest tab wins: the old one is told
    and closed with REPLACED), so a phone that lost its network and comes back is never locked out by its own
    stale connection."""
    now = now or timezone.now()
    _check_admissible(participant, now)
    appointment = participant.appointment
    # The room's row alone: its appointment was read with the participant (what a join uses of it does not change
    # while the visit lasts: patient, times, kind).
    visit = _lock(_visit_id(appointment), along=())
    visit.appointment = appointment
    if visit.status == VisitStatus.ENDED:
        raise Refused(CloseCode.ENDED)
    presences = {p.participant_id: p for p in _PRESENCES.all(visit_id=visit.pk)}
    mine = presences.get(participant.pk)
    others_live = [p for p in presences.values() if p.state in LIVE_STATES and p.participant_id != participant.pk]
    if len(others_live) >= MAX_PARTICIPANTS:
        raise Refused(CloseCode.ROOM_FULL)
    pushes: list[Push] = []
    if mine is not None and mine.state in LIVE_STATES:
        pushes.append(Push({"type": "room.replaced", "connection": mine.connection}, channel=mine.channel_name))
    was_in = mine is not None and mine.state != PresenceState.LEFT
    # Back within the grace after a drop (the others were not told it left), or a new connection replacing one
    # still in the call: the others keep their connections to this participant and only restart ICE.
    resumed = mine is not None and (mine.away_since is not None or mine.state == PresenceState.CONNECTED)
    if participant.role == ParticipantRole.PATIENT:
        comes_back = (
            visit.status == VisitStatus.IN_PROGRESS
            and mine is not None
            and mine.admitted_at is not None
            and mine.state in (PresenceState.ADMITTED, PresenceState.CONNECTED)
        )
        state = PresenceState.CONNECTED if comes_back else PresenceState.WAITING
    else:
        state = PresenceState.CONNECTED
    if mine is None:
        mine = Presence(visit=visit, participant=participant, joined_at=now)
    mine.state = state
    mine.channel_name = channel_name
    mine.connection += 1
    mine.last_seen = now
    mine.away_since = None
    if state == PresenceState.CONNECTED and mine.admitted_at is None:
        mine.admitted_at = now
    mine.save()
    changed = []
    if visit.empty_since is not None:
        visit.empty_since = None
        changed.append("empty_since")
    if participant.role != ParticipantRole.PATIENT and user is not None and visit.status == VisitStatus.IN_PROGRESS:
        # A consulted specialist or interpreter joining a running visit takes part in its encounter.
        encounter_id = visit.encounter_id
        _start_encounter(visit, [participant], user)
        if visit.encounter_id != encounter_id:
            changed.append("encounter")
    if changed:  # most joins change nothing of the room's own row
        visit.save(update_fields=changed)
    _audit(
        AuditAction.VISIT_REJOINED if was_in else AuditAction.VISIT_JOINED,
        appointment,
        user,
        participant=participant.pk,
        role=participant.role,
        state=state,
        connection=mine.connection,
        resumed=resumed and state == PresenceState.CONNECTED,
    )
    mine.participant = participant
    event = {"participant": participant.pk, "role": participant.role, "channel": channel_name}
    if state == PresenceState.WAITING:
        pushes.append(Push({"type": "room.event", "event": {"type": "waiting", **event}}, group=visit_group(visit.pk)))
        for user_id in _hosts_user_ids(appointment):
            pushes.append(
                Push(
                    {"type": "visit.waiting", "appointment": str(appointment.public_id), "participant": participant.pk},
                    group=practitioner_group(user_id),
                )
            )
    else:
        if resumed:
            event["resumed"] = True
        pushes.append(
            Push({"type": "room.event", "event": {"type": "peer_joined", **event}}, group=visit_group(visit.pk))
        )
    peers = [_peer(p) for p in presences.values() if p.state in LIVE_STATES and p.participant_id != participant.pk]
    return Joined(
        visit_id=visit.pk,
        participant_id=participant.pk,
        role=participant.role,
        state=state,
        connection=mine.connection,
        peers=[p for p in peers if p["state"] == PresenceState.CONNECTED],
        waiting=[p for p in peers if p["state"] == PresenceState.WAITING],
        pushes=pushes,
    )


def _host(visit: VisitSession, participant_id: int) -> AppointmentParticipant:
    host = (
        AppointmentParticipant.objects.select_related("user")
        .filter(pk=participant_id, appointment_id=visit.appointment_id, role__in=_HOSTS, active=True)
        .first()
    )
    if host is None:
        raise ActionError("forbidden")
    return host


_WAITING = PreparedRead(
    lambda visit_id, participant_id: (
        Presence.objects.filter(visit_id=visit_id, participant_id=participant_id, state=PresenceState.WAITING)
        .select_related("participant")
        .order_by("pk")[:1]
    ),
    visit_id=int,
    participant_id=int,
)


def _waiting(visit: VisitSession, participant_id: int) -> Presence:
    presence = _WAITING.first(visit_id=visit.pk, participant_id=participant_id)
    if presence is None:
        raise ActionError("not_waiting")
    return presence


@transaction.atomic
def visit_admit(*, visit_id: int, by_participant_id: int, user: User, participant_id: int) -> list[Push]:
    """The practitioner lets the waiting patient in: the visit (its encounter and the appointment) starts."""
    # The first admit starts the encounter of the appointment's patient at its establishment: read with the lock,
    # and whether a recording is running or asked for (the admitted patient is told of it).
    visit = _ADMIT_LOCK.first(visit_id=visit_id)
    if visit is None:
        raise VisitSession.DoesNotExist("no such visit")
    if visit.status == VisitStatus.ENDED:
        raise ActionError("ended")
    hosts, in_call = _hosts(visit)
    # What _host() asks, answered from the hosts just read.
    host = next((h for h in hosts if h.pk == by_participant_id and h.active), None)
    if host is None:
        raise ActionError("forbidden")
    presence = _waiting(visit, participant_id)
    now = timezone.now()
    # The events of the encounter, its care relationships, the appointment and the admit: one statement.
    with audit.batched():
        if visit.status == VisitStatus.WAITING:
            hosts_in = [h for h in hosts if h.pk in in_call]
            _start_encounter(visit, hosts_in or [host], user)
            if visit.encounter_id is None:
                raise ActionError("no_practitioner")
            appointment_start_visit(appointment=visit.appointment, by=user, savepoint=False)  # as encounter_start
            visit.status = VisitStatus.IN_PROGRESS
            visit.started_at = now
            visit.save(update_fields=["status", "started_at", "encounter"])
        presence.state = PresenceState.CONNECTED
        presence.admitted_at = now
        presence.last_seen = now
        presence.save(update_fields=["state", "admitted_at", "last_seen"])
        _audit(AuditAction.VISIT_ADMITTED, visit.appointment, user, participant=participant_id, by=host.pk)
    role = presence.participant.role
    hosts_user_ids = [h.user_id for h in hosts if h.active and h.user_id is not None]
    # The patient first: its media waits on this message; the day lists' update can come a moment later.
    return [
        Push(
            {
                "type": "room.admitted",
                "connection": presence.connection,
                "recording": bool(cast(Any, visit).recording_live),
            },
            channel=presence.channel_name,
        ),
        Push(
            {
                "type": "room.event",
                "event": {
                    "type": "peer_joined",
                    "participant": participant_id,
                    "role": role,
                    "channel": presence.channel_name,
                },
            },
            group=visit_group(visit.pk),
        ),
        *_waiting_over(visit.appointment, hosts_user_ids),
    ]


@transaction.atomic
def visit_decline(*, visit_id: int, by_participant_id: int, user: User, participant_id: int) -> list[Push]:
    """The practitioner turns the waiting person away (they may come back and wait again while the window lasts)."""
    visit = _lock(visit_id)
    host = _host(visit, by_participant_id)
    presence = _waiting(visit, participant_id)
    channel = presence.channel_name
    presence.state = PresenceState.LEFT
    presence.channel_name = ""
    presence.save(update_fields=["state", "channel_name"])
    _audit(AuditAction.VISIT_DECLINED, visit.appointment, user, participant=participant_id, by=host.pk)
    return [
        *_waiting_over(visit.appointment),
        Push({"type": "room.declined", "connection": presence.connection}, channel=channel),
        Push(
            {"type": "room.event", "event": {"type": "peer_left", "participant": participant_id}},
            group=visit_group(visit.pk),
        ),
    ]


@dataclass
class Left:
    pushes: list[Push]
    # The visit is in progress and nobody is left in it: it ends by itself after empty_timeout().
    empty: bool
    # The others are not told yet: call visit_departure_announce after reconnect_grace().
    announce_later: bool = False
    # False: not the participant's latest connection any more (a newer one holds the presence); nothing changed.
    current: bool = True


def _peer_left(visit: VisitSession, participant_id: int) -> Push:
    return Push(
        {"type": "room.event", "event": {"type": "peer_left", "participant": participant_id}},
        group=visit_group(visit.pk),
    )


@transaction.atomic
def visit_leave(
    *,
    visit_id: int,
    participant_id: int,
    connection: int,
    user: User | None,
    explicit: bool,
    lost_at: dt.datetime | None = None,
) -> Left:
    """A connection ends (a "leave" message or a dropped websocket). Only the participant's latest connection
    counts: a tab replaced by a newer one leaves nothing behind.

    `lost_at`: the connection's daphne process died without running its disconnect (visits_drop_lost_connections);
    the drop counts from when that process was last seen alive."""
    visit = _lock(visit_id)
    presence = visit.presences.select_related("participant").filter(participant_id=participant_id).first()
    if presence is None or presence.connection != connection or presence.state not in LIVE_STATES:
        return Left([], False, current=False)
    now = lost_at or timezone.now()
    was_waiting = presence.state == PresenceState.WAITING
    # Dropped (not left on purpose) after being let in: may come back without waiting again (a reconnect).
    admitted = presence.state == PresenceState.CONNECTED and visit.status == VisitStatus.IN_PROGRESS
    # Dropped from the call: the others hear of it only if no new connection comes within the grace, so a blip
    # does not make them tear down their media connections to this participant.
    hold = presence.state == PresenceState.CONNECTED and not explicit and reconnect_grace() > dt.timedelta(0)
    presence.state = PresenceState.ADMITTED if admitted and not explicit else PresenceState.LEFT
    presence.channel_name = ""
    presence.last_seen = now
    presence.away_since = now if hold else None
    presence.save(update_fields=["state", "channel_name", "last_seen", "away_since"])
    if not hold:
        _departure_settles_modality(visit, presence, user)
    empty = (
        visit.status == VisitStatus.IN_PROGRESS
        and not visit.presences.filter(state__in=LIVE_STATES).exclude(pk=presence.pk).exists()
    )
    if empty:
        visit.empty_since = now
        visit.save(update_fields=["empty_since"])
    _audit(
        AuditAction.VISIT_LEFT,
        visit.appointment,
        user,
        participant=participant_id,
        # A lost process's connections are dropped by the sweep: the system's act, said so in the trail.
        system=lost_at is not None,
        explicit=explicit,
        connection=connection,
        **cast(dict[str, Any], {"process_lost": True} if lost_at is not None else {}),
    )
    return Left(
        [
            *(_waiting_over(visit.appointment) if was_waiting else []),
            *([] if hold else [_peer_left(visit, participant_id)]),
        ],
        empty,
        announce_later=hold,
    )


@transaction.atomic
def visit_departure_announce(*, visit_id: int, participant_id: int, connection: int) -> list[Push]:
    """The grace after a drop is over: tell the others the participant left, unless a newer connection of theirs
    came in meanwhile (in this process or any other: the presence row says) or the others were told already."""
    visit = _lock(visit_id)
    presence = visit.presences.filter(participant_id=participant_id).first()
    if presence is None or presence.connection != connection or presence.away_since is None:
        return []
    presence.away_since = None
    presence.save(update_fields=["away_since"])
    _departure_settles_modality(visit, presence, None)
    # The recording side of the departure, held with it: the host who runs a recording stops it now (host_left).
    from video.recording import recording_participant_left  # the recording module builds on this one

    return [
        _peer_left(visit, participant_id),
        *recording_participant_left(visit_id=visit_id, participant_id=participant_id),
    ]


def visits_announce_departures(*, now: dt.datetime | None = None) -> list[Push]:
    """For a periodic sweep: departures whose grace is long over and whose process died before announcing them."""
    now = now or timezone.now()
    overdue = Presence.objects.filter(away_since__lte=now - reconnect_grace() - dt.timedelta(seconds=5))
    pushes: list[Push] = []
    for visit_id, participant_id, number in overdue.values_list("visit_id", "participant_id", "connection"):
        pushes += visit_departure_announce(visit_id=visit_id, participant_id=participant_id, connection=number)
    return pushes


def process_lost_after() -> dt.timedelta:
    return dt.timedelta(seconds=settings.CHANNEL_LAYER_PROCESS_LOST_SECONDS)


@dataclass
class LostConnections:
    pushes: list[Push]
    # (group, channel) memberships of the lost connections, for the channel layer to discard.
    discards: list[tuple[str, str]]


def visits_drop_lost_connections(
    *, processes_seen: Mapping[str, dt.datetime], now: dt.datetime | None = None
) -> LostConnections:
    """For the periodic sweep: the connections of a daphne process that stopped beating (killed outright, out of
    memory, its machine lost) never ran their disconnect. Each is handled as a drop when that process was last
    seen: the grace, the announcement (visits_announce_departures) and the end of an abandoned visit follow as
    for any drop. `processes_seen`: client prefix → last beat (teleconsult.channel_layer); a channel of a process
    missing from it (one that never beat, e.g. of an older release) is left alone, as is one of a live process."""
    now = now or timezone.now()
    dead = {name: seen for name, seen in processes_seen.items() if seen < now - process_lost_after()}
    lost = LostConnections([], [])
    if not dead:
        return lost
    live = Presence.objects.filter(state__in=LIVE_STATES).values_list(
        "visit_id", "participant_id", "connection", "channel_name"
    )
    for visit_id, participant_id, number, channel in list(live):
        seen = dead.get(process_of(channel))
        if seen is None:
            continue
        left = visit_leave(
            visit_id=visit_id, participant_id=participant_id, connection=number, user=None, explicit=False, lost_at=seen
        )
        if not left.current:  # a newer connection took the presence meanwhile
            continue
        lost.pushes += left.pushes
        lost.discards.append((visit_group(visit_id), channel))
        if not left.announce_later:  # as the consumer does for a departure told at once
            from video.recording import recording_participant_left  # the recording module builds on this one

            lost.pushes += recording_participant_left(visit_id=visit_id, participant_id=participant_id)
    return lost


def _finish(visit: VisitSession, *, by: User | None, ended_at: dt.datetime, reason: str) -> list[Push]:
    from video.recording import recordings_stop_for_ended_visit  # the recording module builds on this one

    recording_pushes = recordings_stop_for_ended_visit(visit)
    if visit.encounter is not None:
        started_at = visit.encounter.started_at
        encounter_finish(
            encounter=visit.encounter, by=by, ended_at=max(ended_at, started_at) if started_at else ended_at
        )
    if visit.appointment.status in (AppointmentStatus.IN_PROGRESS, AppointmentStatus.BOOKED):
        appointment_finish_visit(appointment=visit.appointment, by=by)
    visit.status = VisitStatus.ENDED
    visit.ended_at = ended_at
    visit.save(update_fields=["status", "ended_at"])
    visit.presences.exclude(state=PresenceState.LEFT, away_since=None).update(
        state=PresenceState.LEFT, channel_name="", away_since=None
    )
    _audit(AuditAction.VISIT_ENDED, visit.appointment, by, system=by is None, reason=reason)
    return [*recording_pushes, Push({"type": "room.ended", "reason": reason}, group=visit_group(visit.pk))]


@transaction.atomic
def visit_end(*, visit_id: int, by_participant_id: int, user: User) -> list[Push]:
    """The practitioner ends the visit for everyone: the encounter finishes now, the appointment is attended."""
    visit = _lock(visit_id)
    _host(visit, by_participant_id)
    if visit.status == VisitStatus.ENDED:
        return []
    if visit.status != VisitStatus.IN_PROGRESS:
        raise ActionError("not_started")
    return _finish(visit, by=user, ended_at=timezone.now(), reason="ended")


@transaction.atomic
def visit_finish_if_abandoned(*, visit_id: int, now: dt.datetime | None = None) -> list[Push]:
    """A visit in progress that has been empty for the timeout ends, at the time the last participant left."""
    now = now or timezone.now()
    visit = _lock(visit_id)
    if visit.status != VisitStatus.IN_PROGRESS or visit.empty_since is None:
        return []
    if now - visit.empty_since < empty_timeout():
        return []
    if visit.presences.filter(state__in=LIVE_STATES).exists():
        return []
    return _finish(visit, by=None, ended_at=visit.empty_since, reason="abandoned")


def visits_finish_abandoned(*, now: dt.datetime | None = None) -> int:
    """For a periodic sweep: end every visit left empty past the timeout (when no process was there to)."""
    now = now or timezone.now()
    ids = VisitSession.objects.filter(
        status=VisitStatus.IN_PROGRESS, empty_since__lte=now - empty_timeout()
    ).values_list("pk", flat=True)
    return sum(1 for visit_id in list(ids) if visit_finish_if_abandoned(visit_id=visit_id, now=now))


# From the most limited modality to the fullest (`visit_media_state`).
MODALITY_RANK: dict[str, int] = {Modality.CHAT: 0, Modality.AUDIO: 1, Modality.VIDEO: 2}


@transaction.atomic
def visit_media_state(
    *, visit_id: int, participant_id: int, user: User | None, modality: str | None, automatic: bool = False
) -> bool:
    """A participant's media changed; a change of the visit's modality goes into the encounter. True if recorded.

    The visit's modality is the most limited one its participants in the call use: a patient whose link allows
    only audio, or whose browser allows only chat, makes it an audio or a chat visit however the others' pages
    run. (Each page says its own modality, so the last sender's alone would flip the record between them.)
    `automatic`: the client stepped down or up by itself on the link's quality (not a person's choice)."""
    if modality is None:
        return False
    visit = _lock(visit_id)
    if visit.status != VisitStatus.IN_PROGRESS or visit.encounter is None:
        return False
    Presence.objects.filter(visit=visit, participant_id=participant_id).update(modality=modality)
    return _record_visit_modality(visit, user, participant_id=participant_id, automatic=automatic)


def _record_visit_modality(visit: VisitSession, user: User | None, *, participant_id: int, automatic: bool) -> bool:
    """The visit's modality now (the most limited among the participants in the call who said theirs) into the
    encounter, if it changed. Inside the caller's transaction, with the visit locked. True if recorded."""
    if visit.status != VisitStatus.IN_PROGRESS or visit.encounter is None:
        return False
    # Whose modality counts: those in the call, and those away whose departure is not announced yet (within the
    # reconnection grace: they may come back as they were).
    in_call = Q(state=PresenceState.CONNECTED) | Q(state=PresenceState.ADMITTED, away_since__isnull=False)
    in_use = Presence.objects.filter(in_call, visit=visit).exclude(modality="").values_list("modality", flat=True)
    modality = min(in_use, key=MODALITY_RANK.__getitem__, default=None)
    if modality is None:
        return False
    last = EncounterModalityChange.objects.filter(encounter=visit.encounter).order_by("-changed_at", "-pk").first()
    if last is not None and last.modality == modality:
        return False
    encounter_record_modality(encounter=visit.encounter, modality=modality, by=user)
    _audit(
        AuditAction.VISIT_MODALITY_CHANGED,
        visit.appointment,
        user,
        participant=participant_id,
        modality=modality,
        previous=last.modality if last else "",
        automatic=automatic,
    )
    return True


def _departure_settles_modality(visit: VisitSession, presence: Presence, user: User | None) -> None:
    """One who limited the visit's modality (audio only, chat only) is gone: the rest may have more. Only then
    is it looked at again (a departure of one in video changes nothing)."""
    if presence.modality and presence.modality != Modality.VIDEO:
        _record_visit_modality(visit, user, participant_id=presence.participant_id, automatic=True)


@transaction.atomic
def visit_chat(*, visit_id: int, participant_id: int, user: User | None, text: str) -> tuple[ChatMessage, list[Push]]:
    """An in-call chat message: stored encrypted with the encounter, audited (its id, never its text), relayed."""
    visit = _lock(visit_id)
    if visit.status != VisitStatus.IN_PROGRESS:
        raise ActionError("not_started")
    message = ChatMessage.objects.create(
        visit=visit, encounter=visit.encounter, sender_id=participant_id, body=text, sent_at=timezone.now()
    )
    _audit(AuditAction.VISIT_CHAT_SENT, visit.appointment, user, participant=participant_id, message=message.pk)
    event = {
        "type": "chat",
        "from": participant_id,
        "id": message.pk,
        "text": text,
        "at": message.sent_at.isoformat(),
    }
    return message, [Push({"type": "room.event", "event": event}, group=visit_group(visit.pk))]
