"""Appointment writes (SCH-3, SCH-4, SCH-5): hold, confirm, book, reschedule, cancel, no-show.

Each function owns its transaction and writes its audit event inside it. Double booking is made impossible
by PostgreSQL (the exclusion constraint on AppointmentParticipant), not by checks here: two people racing
for one slot both get past every application check, and the database lets exactly one of them in.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Establishment, Role, User
from audit import services as audit
from audit.actions import AuditAction, Outcome
from records.care import care_relationship_end, care_relationship_start
from records.models import CareSource, Patient
from scheduling import notifications
from scheduling.errors import (
    HoldExpired,
    NotChangeable,
    OutsideAvailability,
    ParticipantBusy,
    SlotInPast,
    SlotTaken,
)
from scheduling.joinlinks import join_link_issue, join_link_revoke
from scheduling.models import (
    ACTIVE_STATUSES,
    Appointment,
    AppointmentParticipant,
    AppointmentStatus,
    CancelReason,
    ParticipantRole,
    ServiceType,
    VisitType,
)
from scheduling.slots import fits_availability, patient_calendar, user_calendar

NO_DOUBLE_BOOKING = "scheduling_no_double_booking"
MAX_NOTE_LENGTH = 500
# A care relationship from an appointment lets its practitioners prepare the day before and finish the
# note in the week after (records.access checks the window).
CARE_BEFORE = dt.timedelta(hours=24)
CARE_AFTER = dt.timedelta(days=7)


@dataclass(frozen=True)
class Seat:
    """Who takes part, before the appointment exists."""

    role: ParticipantRole
    user: User | None = None
    patient: Patient | None = None
    establishment: Establishment | None = None

    @property
    def calendar(self) -> str:
        if self.role == ParticipantRole.PATIENT:
            assert self.patient is not None
            return patient_calendar(self.patient.pk)
        assert self.user is not None
        return user_calendar(self.user.pk)


def _actor(by: User | None) -> audit.Actor:
    return {"actor_user_id": by.pk if by else None, "actor_role": by.role if by else "system"}


def _utc(value: dt.datetime) -> dt.datetime:
    if timezone.is_naive(value):
        raise ValidationError(_("La hora debe indicar su zona horaria."), code="naive_datetime")
    return value.astimezone(dt.UTC)


def _check_bookable(*, visit_type: VisitType, patient: Patient, start: dt.datetime, now: dt.datetime) -> None:
    if not visit_type.is_active:
        raise ValidationError(_("Ese tipo de cita ya no se ofrece."), code="visit_type_inactive")
    if patient.blocked_at is not None or patient.anonymised_at is not None:
        raise ValidationError(_("Este paciente no puede recibir citas."), code="patient_unavailable")
    if start < now + dt.timedelta(minutes=settings.BOOKING_MIN_NOTICE_MINUTES):
        raise SlotInPast


def _check_practitioner(user: User | None) -> User:
    if user is None or user.role != Role.PRACTITIONER or not user.is_active:
        raise ValidationError(_("Elija un profesional de salud activo."), code="not_a_practitioner")
    return user


def _busy_calendar(error: IntegrityError) -> str | None:
    """Which calendar the exclusion constraint found taken, from PostgreSQL's detail message."""
    cause = error.__cause__
    diag = getattr(cause, "diag", None)
    if getattr(diag, "constraint_name", None) != NO_DOUBLE_BOOKING:
        return None
    match = re.search(r"=\(((?:user|patient):\d+),", getattr(diag, "message_detail", "") or "")
    return match.group(1) if match else ""


def _release_expired_holds(calendars: list[str], start: dt.datetime, end: dt.datetime, now: dt.datetime) -> None:
    """Lapsed holds free their time for whoever books next (the constraint still sees them as active)."""
    lapsed = list(
        Appointment.objects.filter(
            status=AppointmentStatus.HELD,
            hold_expires_at__lte=now,
            participants__calendar__in=calendars,
            participants__during__overlap=(start, end),
        )
        .values_list("pk", flat=True)
        .distinct()
    )
    if lapsed:
        _expire(lapsed, now)


def _expire(appointment_ids: list[int], now: dt.datetime) -> int:
    # Only rows still held when the lock is taken: a concurrent booker may have expired them first.
    expired = list(
        Appointment.objects.select_for_update()
        .filter(pk__in=appointment_ids, status=AppointmentStatus.HELD, hold_expires_at__lte=now)
        .values_list("pk", "patient_id")
    )
    if not expired:
        return 0
    ids = [pk for pk, _ in expired]
    Appointment.objects.filter(pk__in=ids).update(status=AppointmentStatus.EXPIRED)
    AppointmentParticipant.objects.filter(appointment_id__in=ids).update(active=False)
    for pk, patient_id in expired:
        audit.record(
            action=AuditAction.APPOINTMENT_HOLD_EXPIRED,
            actor_role="system",
            patient_id=patient_id,
            object_type="appointment",
            object_id=pk,
        )
    return len(ids)


def _create(
    *,
    visit_type: VisitType,
    establishment: Establishment,
    patient: Patient,
    start: dt.datetime,
    seats: list[Seat],
    status: AppointmentStatus,
    booked_by: User,
    now: dt.datetime,
    rescheduled_from: Appointment | None = None,
) -> Appointment:
    end = start + dt.timedelta(minutes=visit_type.duration_minutes)
    staff_end = end + dt.timedelta(minutes=visit_type.buffer_minutes)
    calendars = [seat.calendar for seat in seats]
    with transaction.atomic():
        _release_expired_holds(calendars, start, staff_end, now)
    appointment = Appointment.objects.create(
        establishment=establishment,
        visit_type=visit_type,
        service_type=visit_type.service_type,
        modality=visit_type.modality,
        patient=patient,
        start=start,
        end=end,
        status=status,
        hold_expires_at=now + dt.timedelta(minutes=settings.APPOINTMENT_HOLD_MINUTES)
        if status == AppointmentStatus.HELD
        else None,
        confirmed_at=now if status == AppointmentStatus.BOOKED else None,
        booked_by=booked_by,
        rescheduled_from=rescheduled_from,
        sequence=rescheduled_from.sequence + 1 if rescheduled_from else 0,
    )
    rows = [
        AppointmentParticipant(
            appointment=appointment,
            role=seat.role,
            user=seat.user,
            patient=seat.patient,
            establishment=seat.establishment,
            calendar=seat.calendar,
            # Staff keep the pause after the visit free; the patient's calendar is blocked for the visit only.
            during=(start, end if seat.role == ParticipantRole.PATIENT else staff_end),
        )
        for seat in seats
    ]
    try:
        with transaction.atomic():
            AppointmentParticipant.objects.bulk_create(rows)
    except IntegrityError as error:
        busy = _busy_calendar(error)
        if busy is None:
            raise
        # The treating practitioner's calendar is the slot itself: someone else took it. Anyone else's means
        # that person already has another appointment then.
        slot_owner = next(seat.calendar for seat in seats if seat.role == ParticipantRole.PRACTITIONER)
        if busy == slot_owner:
            raise SlotTaken from error
        raise ParticipantBusy from error
    return appointment


def _after_booking(appointment: Appointment, by: User, *, event: str) -> None:
    """What every booked appointment gets: care relationships, join links, and its notifications."""
    participants = list(appointment.participants.select_related("user", "appointment"))
    for participant in participants:
        if participant.user is not None and participant.user.role == Role.PRACTITIONER:
            care_relationship_start(
                patient=appointment.patient,
                practitioner=participant.user,
                source=CareSource.APPOINTMENT,
                source_id=str(appointment.pk),
                valid_from=appointment.start - CARE_BEFORE,
                valid_until=appointment.end + CARE_AFTER,
                created_by=by,
            )
        join_link_issue(participant=participant, by=by)
    # Planned in this transaction (the messages exist exactly when the booking does); queued for the worker
    # after commit.
    notifications.appointment_event(appointment_id=appointment.pk, event=event)


def _audit_booking(action: AuditAction, appointment: Appointment, by: User, **details: object) -> None:
    audit.record(
        action=action,
        patient_id=appointment.patient_id,
        object_type="appointment",
        object_id=appointment.pk,
        actor_establishment_id=appointment.establishment_id,
        details={"visit_type": appointment.visit_type_id, "status": appointment.status, **details},
        **_actor(by),
    )


def _simple_seats(visit_type: VisitType, practitioner: User, patient: Patient) -> list[Seat]:
    return [
        Seat(ParticipantRole.PATIENT, patient=patient, user=patient.user),
        Seat(ParticipantRole.PRACTITIONER, user=practitioner, establishment=visit_type.establishment),
    ]


def _book_simple(
    *,
    visit_type: VisitType,
    practitioner: User,
    patient: Patient,
    start: dt.datetime,
    booked_by: User,
    status: AppointmentStatus,
    rescheduled_from: Appointment | None = None,
) -> Appointment:
    now = timezone.now()
    start = _utc(start)
    practitioner = _check_practitioner(practitioner)
    _check_bookable(visit_type=visit_type, patient=patient, start=start, now=now)
    if visit_type.service_type == ServiceType.TELEINTERCONSULTA:
        raise ValidationError(
            _("Una teleinterconsulta se agenda con el profesional que consulta y el especialista."),
            code="needs_interconsultation",
        )
    end = start + dt.timedelta(minutes=visit_type.duration_minutes)
    if not fits_availability(
        practitioner_id=practitioner.pk,
        establishment_id=visit_type.establishment_id,
        visit_type_id=visit_type.pk,
        start=start,
        end=end,
    ):
        raise OutsideAvailability
    return _create(
        visit_type=visit_type,
        establishment=visit_type.establishment,
        patient=patient,
        start=start,
        seats=_simple_seats(visit_type, practitioner, patient),
        status=status,
        booked_by=booked_by,
        now=now,
        rescheduled_from=rescheduled_from,
    )


def _refused(by: User, error: ValidationError, patient: Patient) -> None:
    # A refused booking is recorded too (who tried, why), in its own transaction so it survives the rollback.
    audit.record(
        action=AuditAction.APPOINTMENT_BOOKING_REFUSED,
        outcome=Outcome.FAILURE,
        patient_id=patient.pk,
        object_type="appointment",
        details={"reason": getattr(error, "code", "") or "invalid"},
        **_actor(by),
    )


@contextmanager
def _audited_refusal(by: User, patient: Patient) -> Iterator[None]:
    """Record a refused booking (who tried, why) after the booking's own transaction has rolled back."""
    try:
        yield
    except ValidationError as error:
        with transaction.atomic():
            _refused(by, error, patient)
        raise


def appointment_hold(
    *, visit_type: VisitType, practitioner: User, patient: Patient, start: dt.datetime, booked_by: User
) -> Appointment:
    """A patient picked a slot: it is theirs for APPOINTMENT_HOLD_MINUTES while they confirm."""
    with _audited_refusal(booked_by, patient), transaction.atomic():
        appointment = _book_simple(
            visit_type=visit_type,
            practitioner=practitioner,
            patient=patient,
            start=start,
            booked_by=booked_by,
            status=AppointmentStatus.HELD,
        )
        _audit_booking(AuditAction.APPOINTMENT_HELD, appointment, booked_by)
    return appointment


def appointment_confirm(*, appointment: Appointment, by: User) -> Appointment:
    with transaction.atomic():
        locked = Appointment.objects.select_for_update().select_related("patient").get(pk=appointment.pk)
        now = timezone.now()
        if locked.status == AppointmentStatus.BOOKED:
            return locked  # confirming twice (a double tap) is harmless
        if locked.status == AppointmentStatus.EXPIRED or (
            locked.status == AppointmentStatus.HELD and locked.hold_expires_at <= now  # type: ignore[operator]
        ):
            raise HoldExpired
        if locked.status != AppointmentStatus.HELD:
            raise NotChangeable
        locked.status = AppointmentStatus.BOOKED
        locked.confirmed_at = now
        locked.save(update_fields=["status", "confirmed_at"])
        _audit_booking(AuditAction.APPOINTMENT_BOOKED, locked, by)
        _after_booking(locked, by, event="booked")
    return locked


def appointment_book(
    *, visit_type: VisitType, practitioner: User, patient: Patient, start: dt.datetime, booked_by: User
) -> Appointment:
    """A coordinator books for a patient: straight to booked, in one transaction."""
    with _audited_refusal(booked_by, patient), transaction.atomic():
        appointment = _book_simple(
            visit_type=visit_type,
            practitioner=practitioner,
            patient=patient,
            start=start,
            booked_by=booked_by,
            status=AppointmentStatus.BOOKED,
        )
        _audit_booking(AuditAction.APPOINTMENT_BOOKED, appointment, booked_by)
        _after_booking(appointment, booked_by, event="booked")
    return appointment


def appointment_book_interconsultation(
    *,
    visit_type: VisitType,
    patient: Patient,
    requesting: User,
    requesting_establishment: Establishment,
    consulted: User,
    consulted_establishment: Establishment,
    interpreter: User | None = None,
    start: dt.datetime,
    booked_by: User,
) -> Appointment:
    """Teleinterconsulta (SCH-5): patient, requesting practitioner, consulted specialist and an optional
    interpreter; every calendar is blocked in one transaction, or none is."""
    with _audited_refusal(booked_by, patient), transaction.atomic():
        now = timezone.now()
        start = _utc(start)
        requesting, consulted = _check_practitioner(requesting), _check_practitioner(consulted)
        if requesting.pk == consulted.pk:
            raise ValidationError(_("El especialista consultado debe ser otra persona."), code="same_practitioner")
        if visit_type.service_type != ServiceType.TELEINTERCONSULTA:
            raise ValidationError(_("Elija un tipo de cita de teleinterconsulta."), code="not_interconsultation")
        if visit_type.establishment_id != requesting_establishment.pk:
            raise ValidationError(
                _("El tipo de cita debe ser del establecimiento que solicita."), code="visit_type_establishment"
            )
        if interpreter is not None and (
            not interpreter.is_active
            or interpreter.role == Role.PATIENT
            or interpreter.pk in (requesting.pk, consulted.pk)
        ):
            raise ValidationError(
                _("Elija un intérprete del personal, distinto de los profesionales."), code="interpreter"
            )
        _check_bookable(visit_type=visit_type, patient=patient, start=start, now=now)
        end = start + dt.timedelta(minutes=visit_type.duration_minutes)
        for user, establishment in ((requesting, requesting_establishment), (consulted, consulted_establishment)):
            if not fits_availability(
                practitioner_id=user.pk, establishment_id=establishment.pk, visit_type_id=None, start=start, end=end
            ):
                raise OutsideAvailability
        seats = [
            Seat(ParticipantRole.PATIENT, patient=patient, user=patient.user),
            Seat(ParticipantRole.PRACTITIONER, user=requesting, establishment=requesting_establishment),
            Seat(ParticipantRole.CONSULTED, user=consulted, establishment=consulted_establishment),
        ]
        if interpreter is not None:
            seats.append(Seat(ParticipantRole.INTERPRETER, user=interpreter))
        appointment = _create(
            visit_type=visit_type,
            establishment=requesting_establishment,
            patient=patient,
            start=start,
            seats=seats,
            status=AppointmentStatus.BOOKED,
            booked_by=booked_by,
            now=now,
        )
        _audit_booking(
            AuditAction.APPOINTMENT_BOOKED,
            appointment,
            booked_by,
            consulted_establishment=consulted_establishment.pk,
            interpreter=bool(interpreter),
        )
        _after_booking(appointment, booked_by, event="booked")
    return appointment


def _end_calendar_blocks(appointment: Appointment, by: User) -> None:
    AppointmentParticipant.objects.filter(appointment=appointment).update(active=False)
    for participant in appointment.participants.select_related("appointment"):
        join_link_revoke(participant=participant, by=by)
    care_relationship_end(source=CareSource.APPOINTMENT, source_id=str(appointment.pk), ended_by=by)


def _lock_changeable(appointment: Appointment, *statuses: AppointmentStatus) -> Appointment:
    locked = Appointment.objects.select_for_update().select_related("visit_type", "patient").get(pk=appointment.pk)
    if locked.status not in statuses:
        raise NotChangeable
    return locked


def appointment_reschedule(
    *, appointment: Appointment, start: dt.datetime, by: User, practitioner: User | None = None
) -> Appointment:
    """Move a booked appointment: the old one ends as "rescheduled", a new one (same participants, or another
    practitioner for a simple visit) is booked and points back to it. All or nothing."""
    patient = appointment.patient
    with _audited_refusal(by, patient), transaction.atomic():
        old = _lock_changeable(appointment, AppointmentStatus.BOOKED)
        now = timezone.now()
        start = _utc(start)
        old_participants = list(old.participants.select_related("user", "patient", "establishment"))
        # Free the old times first: the new ones may overlap them (moving a visit by a quarter of an hour).
        _end_calendar_blocks(old, by)
        if old.service_type == ServiceType.TELEINTERCONSULTA:
            _check_bookable(visit_type=old.visit_type, patient=old.patient, start=start, now=now)
            end = start + dt.timedelta(minutes=old.visit_type.duration_minutes)
            seats = [Seat(ParticipantRole(p.role), p.user, p.patient, p.establishment) for p in old_participants]
            for seat in seats:
                if seat.role in (ParticipantRole.PRACTITIONER, ParticipantRole.CONSULTED) and not fits_availability(
                    practitioner_id=seat.user.pk,  # type: ignore[union-attr]
                    establishment_id=seat.establishment.pk if seat.establishment else None,
                    visit_type_id=None,
                    start=start,
                    end=end,
                ):
                    raise OutsideAvailability
            new = _create(
                visit_type=old.visit_type,
                establishment=old.establishment,
                patient=old.patient,
                start=start,
                seats=seats,
                status=AppointmentStatus.BOOKED,
                booked_by=by,
                now=now,
                rescheduled_from=old,
            )
        else:
            current = next(p.user for p in old_participants if p.role == ParticipantRole.PRACTITIONER)
            new = _book_simple(
                visit_type=old.visit_type,
                practitioner=practitioner or current,  # type: ignore[arg-type]
                patient=old.patient,
                start=start,
                booked_by=by,
                status=AppointmentStatus.BOOKED,
                rescheduled_from=old,
            )
        old.status = AppointmentStatus.RESCHEDULED
        old.save(update_fields=["status"])
        _audit_booking(AuditAction.APPOINTMENT_RESCHEDULED, old, by, new_appointment=new.pk)
        _audit_booking(AuditAction.APPOINTMENT_BOOKED, new, by, rescheduled_from=old.pk)
        _after_booking(new, by, event="rescheduled")
    return new


def appointment_cancel(
    *, appointment: Appointment, reason: CancelReason | str, note: str = "", by: User
) -> Appointment:
    if reason not in CancelReason.values:
        raise ValidationError(_("Elija el motivo de la cancelación."), code="cancel_reason")
    note = (note or "").strip()
    if len(note) > MAX_NOTE_LENGTH:
        raise ValidationError(
            _("La nota puede tener hasta %(max)d caracteres.") % {"max": MAX_NOTE_LENGTH}, code="note_too_long"
        )
    with transaction.atomic():
        locked = _lock_changeable(appointment, AppointmentStatus.HELD, AppointmentStatus.BOOKED)
        was_booked = locked.status == AppointmentStatus.BOOKED
        locked.status = AppointmentStatus.CANCELLED
        locked.cancelled_at = timezone.now()
        locked.cancelled_by = by
        locked.cancel_reason = str(reason)
        locked.cancel_note = note or None
        locked.sequence += 1
        locked.save(
            update_fields=["status", "cancelled_at", "cancelled_by", "cancel_reason", "cancel_note", "sequence"]
        )
        _end_calendar_blocks(locked, by)
        _audit_booking(AuditAction.APPOINTMENT_CANCELLED, locked, by, reason=str(reason))
        if was_booked:
            notifications.appointment_event(appointment_id=locked.pk, event="cancelled")
    return locked


def appointment_mark_no_show(*, appointment: Appointment, by: User) -> Appointment:
    """The patient did not come. Only once the visit has started; the time stays on the calendars."""
    with transaction.atomic():
        locked = _lock_changeable(appointment, AppointmentStatus.BOOKED)
        now = timezone.now()
        if locked.start > now:
            raise ValidationError(_("Solo se puede marcar inasistencia cuando la cita ya comenzó."), code="not_started")
        locked.status = AppointmentStatus.NO_SHOW
        locked.no_show_at = now
        locked.no_show_by = by
        locked.save(update_fields=["status", "no_show_at", "no_show_by"])
        _audit_booking(AuditAction.APPOINTMENT_NO_SHOW, locked, by)
    return locked


def holds_release_expired(*, now: dt.datetime | None = None) -> int:
    """Expire every lapsed hold (the worker runs this; booking also frees lapsed holds it runs into)."""
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(
            Appointment.objects.filter(status=AppointmentStatus.HELD, hold_expires_at__lte=now).values_list(
                "pk", flat=True
            )[:1000]
        )
        return _expire(ids, now) if ids else 0


__all__ = [
    "ACTIVE_STATUSES",
    "appointment_book",
    "appointment_book_interconsultation",
    "appointment_cancel",
    "appointment_confirm",
    "appointment_hold",
    "appointment_mark_no_show",
    "appointment_reschedule",
    "holds_release_expired",
]
