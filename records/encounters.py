"""Encounter services (EHR-1): start (from an appointment or unscheduled), modality changes, finish, cancel.

Scheduling and video call these; records never imports them, so an appointment is referred to by its public id.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Establishment, PractitionerProfile, Role, User
from audit import services as audit
from audit.actions import AuditAction, Purpose
from records.care import care_relationship_start
from records.models import (
    CareSource,
    Encounter,
    EncounterModalityChange,
    EncounterParticipant,
    EncounterStatus,
    Modality,
    ParticipantRole,
    Patient,
    ServiceType,
)
from teleconsult.prepared import PreparedRead

# The treating practitioners keep access for a while after the visit: to finish and sign the note,
# read results and amend. Longer care goes through appointments, referrals or admin assignments.
CARE_BEFORE_ENCOUNTER = dt.timedelta(minutes=5)
CARE_AFTER_ENCOUNTER = dt.timedelta(days=30)

Participant = tuple[User, str, Establishment | None]


def _actor(by: User | None) -> audit.Actor:
    return {"actor_user_id": by.pk if by else None, "actor_role": by.role if by else "system"}


def _check_choice(value: str, choices: type[ServiceType] | type[Modality], field: str) -> None:
    if value not in choices.values:
        raise ValidationError({field: _("Valor no válido.")}, code="invalid_choice")


def _profiles(users: list[User]) -> dict[int, PractitionerProfile | None]:
    """Each user's practitioner profile (None without one): taken from the user when the caller loaded it with
    the user (select_related("user__practitioner_profile")), the others in one query."""
    profiles: dict[int, PractitionerProfile | None] = {}
    missing = []
    for user in users:
        if User.practitioner_profile.is_cached(user):
            profiles[user.pk] = getattr(user, "practitioner_profile", None)  # None cached: the user has none
        else:
            missing.append(user.pk)
    if missing:
        for profile in PractitionerProfile.objects.filter(user_id__in=missing):
            profiles[profile.user_id] = profile
    return profiles


def _add_participants(
    encounter: Encounter, participants: Iterable[Participant], by: User | None, *, new: bool = False
) -> None:
    # A just-created encounter has nobody in it yet: no need to ask.
    present = set() if new else set(encounter.participants.values_list("user_id", flat=True))
    participants = list(participants)
    profiles = _profiles([user for user, _role, _establishment in participants if user.role == Role.PRACTITIONER])
    now = timezone.now()
    for user, role, establishment in participants:
        if role not in ParticipantRole.values:
            raise ValidationError({"role": _("Rol de participante no válido.")}, code="invalid_choice")
        if user.role != Role.PRACTITIONER:
            raise ValidationError(_("Solo los profesionales de salud participan en una atención."), code="role")
        profile = profiles.get(user.pk)
        if profile is None:
            raise ValidationError(
                _("El profesional no tiene registrado su colegio profesional ni su número de colegiatura."),
                code="no_registry",
            )
        if user.pk not in present:
            EncounterParticipant.objects.create(
                encounter=encounter,
                user=user,
                role=role,
                establishment=establishment or encounter.origin_establishment,
                full_name=user.full_name,
                profession=profile.profession,
                registry_body=profile.registry_body,
                registry_number=profile.registry_number,
                rne=profile.rne,
                joined_at=now,
            )
            present.add(user.pk)
        care_relationship_start(
            patient=encounter.patient,
            practitioner=user,
            source=CareSource.ENCOUNTER,
            source_id=str(encounter.pk),
            valid_from=now - CARE_BEFORE_ENCOUNTER,
            valid_until=now + CARE_AFTER_ENCOUNTER,
            created_by=by,
            savepoint=False,  # inside the encounter's own transaction or savepoint: an error undoes it whole
        )


def _create(
    *,
    patient: Patient,
    appointment_ref: str,
    service_type: str,
    modality_planned: str,
    origin_establishment: Establishment,
    consulted_establishment: Establishment | None,
    participants: Sequence[Participant],
    by: User,
) -> Encounter:
    _check_choice(service_type, ServiceType, "service_type")
    _check_choice(modality_planned, Modality, "modality_planned")
    if service_type == ServiceType.TELEINTERCONSULTA and consulted_establishment is None:
        raise ValidationError(
            {"consulted_establishment": _("Una teleinterconsulta indica el establecimiento consultado.")},
            code="required",
        )
    if not participants:
        raise ValidationError(_("Una atención tiene al menos un profesional."), code="no_participants")
    now = timezone.now()
    encounter = Encounter.objects.create(
        patient=patient,
        appointment_ref=appointment_ref,
        service_type=service_type,
        modality_planned=modality_planned,
        status=EncounterStatus.IN_PROGRESS,
        origin_establishment=origin_establishment,
        consulted_establishment=consulted_establishment,
        started_at=now,
        created_by=by,
    )
    EncounterModalityChange.objects.create(
        encounter=encounter, modality=modality_planned, changed_at=now, changed_by=by
    )
    _add_participants(encounter, participants, by, new=True)
    audit.record(
        action=AuditAction.ENCOUNTER_STARTED,
        purpose=Purpose.TREATMENT,
        patient_id=patient.pk,
        object_type="encounter",
        object_id=encounter.pk,
        details={
            "service_type": service_type,
            "modality": modality_planned,
            "scheduled": bool(appointment_ref),
            "participants": sorted(user.pk for user, _role, _est in participants),
        },
        **_actor(by),
    )
    return encounter


# Asked at every visit's admit (teleconsult.prepared: compiled once).
_BY_APPOINTMENT = PreparedRead(
    lambda appointment_ref: (
        Encounter.objects.select_related("patient").filter(appointment_ref=appointment_ref).order_by("pk")[:1]
    ),
    appointment_ref=str,
)


def encounter_start(
    *,
    patient: Patient,
    appointment_ref: str,
    service_type: str,
    modality_planned: str,
    origin_establishment: Establishment,
    consulted_establishment: Establishment | None = None,
    participants: Sequence[Participant],
    by: User,
    savepoint: bool = True,
) -> Encounter:
    """Start the encounter of an appointment when its visit begins. Idempotent per appointment: a second
    call (the other participant joining, a retry) returns the same encounter, adding participants it lacks.

    Inside a caller's transaction it runs in a savepoint, so a caller may catch its error and carry on; a caller
    that lets every error roll its own transaction back (the visit's admit) passes `savepoint=False`."""
    appointment_ref = str(appointment_ref).strip()
    if not appointment_ref:
        raise ValidationError({"appointment_ref": _("Falta la cita de la atención.")}, code="required")
    with transaction.atomic(savepoint=savepoint):
        # One lock per appointment reference: concurrent starts queue here instead of racing on the unique index.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtext('records.encounter'), hashtext(%s))", [appointment_ref]
            )
        # Its events (the encounter, each new care relationship) are written in one statement.
        with audit.batched():
            existing = _BY_APPOINTMENT.first(appointment_ref=appointment_ref)
            if existing is not None:
                if existing.patient_id != patient.pk:
                    raise ValidationError(_("La cita pertenece a otro paciente."), code="patient_mismatch")
                if existing.status in (EncounterStatus.PLANNED, EncounterStatus.IN_PROGRESS):
                    _add_participants(existing, participants, by)
                return existing
            return _create(
                patient=patient,
                appointment_ref=appointment_ref,
                service_type=service_type,
                modality_planned=modality_planned,
                origin_establishment=origin_establishment,
                consulted_establishment=consulted_establishment,
                participants=participants,
                by=by,
            )


@transaction.atomic
def encounter_unscheduled(
    *,
    patient: Patient,
    by: User,
    origin_establishment: Establishment,
    service_type: str = ServiceType.TELECONSULTA,
    modality: str = Modality.AUDIO,
    consulted_establishment: Establishment | None = None,
    participants: list[Participant] | None = None,
) -> Encounter:
    """A contact without appointment (the patient phoned, a monitoring call): started by the practitioner."""
    if by.role != Role.PRACTITIONER:
        raise ValidationError(_("Solo un profesional de salud registra una atención sin cita."), code="role")
    participants = list(participants or [])
    if by.pk not in {user.pk for user, _role, _est in participants}:
        participants.insert(0, (by, ParticipantRole.ATTENDING, origin_establishment))
    return _create(
        patient=patient,
        appointment_ref="",
        service_type=service_type,
        modality_planned=modality,
        origin_establishment=origin_establishment,
        consulted_establishment=consulted_establishment,
        participants=participants,
        by=by,
    )


def _lock_open(encounter: Encounter) -> Encounter:
    locked = Encounter.objects.select_for_update().get(pk=encounter.pk)
    if locked.status not in (EncounterStatus.PLANNED, EncounterStatus.IN_PROGRESS):
        raise ValidationError(_("La atención ya terminó o fue cancelada."), code="closed")
    return locked


@transaction.atomic
def encounter_record_modality(*, encounter: Encounter, modality: str, by: User | None) -> EncounterModalityChange:
    """The visit changed modality (video lost → audio only → chat). A repeat of the current one is a no-op."""
    _check_choice(modality, Modality, "modality")
    locked = _lock_open(encounter)
    last = locked.modality_changes.order_by("-changed_at", "-pk").first()
    if last is not None and last.modality == modality:
        return last
    change = EncounterModalityChange.objects.create(encounter=locked, modality=modality, changed_by=by)
    audit.record(
        action=AuditAction.ENCOUNTER_MODALITY_CHANGED,
        purpose=Purpose.TREATMENT,
        patient_id=locked.patient_id,
        object_type="encounter",
        object_id=locked.pk,
        details={"modality": modality, "previous": last.modality if last else ""},
        **_actor(by),
    )
    return change


@transaction.atomic
def encounter_finish(*, encounter: Encounter, by: User | None, ended_at: dt.datetime | None = None) -> Encounter:
    """End the visit: the modality used is the last one in effect; the patient's retention clock restarts."""
    locked = _lock_open(encounter)
    now = timezone.now()
    ended_at = ended_at or now
    if locked.started_at is None:
        locked.started_at = ended_at
    if ended_at < locked.started_at:
        raise ValidationError({"ended_at": _("La atención no puede terminar antes de empezar.")}, code="period")
    last = locked.modality_changes.order_by("-changed_at", "-pk").first()
    locked.modality_used = last.modality if last else locked.modality_planned
    locked.status = EncounterStatus.FINISHED
    locked.ended_at = ended_at
    locked.save(update_fields=["started_at", "modality_used", "status", "ended_at"])
    # Retention (SEC-5) counts from the last encounter; never moved backwards by a late finish of an older one.
    Patient.objects.filter(pk=locked.patient_id).exclude(last_encounter_at__gte=ended_at).update(
        last_encounter_at=ended_at
    )
    audit.record(
        action=AuditAction.ENCOUNTER_FINISHED,
        purpose=Purpose.TREATMENT,
        patient_id=locked.patient_id,
        object_type="encounter",
        object_id=locked.pk,
        details={"modality_used": locked.modality_used},
        **_actor(by),
    )
    return locked


@transaction.atomic
def encounter_cancel(*, encounter: Encounter, by: User | None) -> Encounter:
    """The visit did not take place (cancelled appointment, no-show). The row stays; clinical rows are never deleted."""
    locked = _lock_open(encounter)
    locked.status = EncounterStatus.CANCELLED
    locked.save(update_fields=["status"])
    audit.record(
        action=AuditAction.ENCOUNTER_CANCELLED,
        purpose=Purpose.TREATMENT,
        patient_id=locked.patient_id,
        object_type="encounter",
        object_id=locked.pk,
        **_actor(by),
    )
    return locked
