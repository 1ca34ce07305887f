"""An appointment's visit taking place: booked → in progress when the practitioner admits, → completed at its end."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from audit import services as audit
from audit.actions import AuditAction
from scheduling.errors import NotChangeable
from scheduling.models import Appointment, AppointmentStatus


def _actor(by: User | None) -> audit.Actor:
    return {"actor_user_id": by.pk if by else None, "actor_role": by.role if by else "system"}


def appointment_start_visit(*, appointment: Appointment, by: User | None, savepoint: bool = True) -> Appointment:
    """The visit began. Idempotent: an appointment already in progress stays so (a second admit, a retry).

    Inside a caller's transaction it runs in a savepoint, so a caller may catch its error and carry on; a caller
    that lets every error roll its own transaction back (the visit's admit) passes `savepoint=False`."""
    with transaction.atomic(savepoint=savepoint):
        # The change itself, in one statement that locks the row as it writes it: only a booked appointment starts
        # (PostgreSQL checks the condition again on the latest row when another transaction changed it meanwhile).
        started = Appointment.objects.filter(pk=appointment.pk, status=AppointmentStatus.BOOKED).update(
            status=AppointmentStatus.IN_PROGRESS
        )
        if not started:
            locked = Appointment.objects.select_for_update().get(pk=appointment.pk)
            if locked.status == AppointmentStatus.IN_PROGRESS:
                return locked
            raise NotChangeable
        appointment.status = AppointmentStatus.IN_PROGRESS
        audit.record(
            action=AuditAction.APPOINTMENT_VISIT_STARTED,
            patient_id=appointment.patient_id,  # an appointment's patient never changes (a reschedule books anew)
            object_type="appointment",
            object_id=appointment.pk,
            details={"at": timezone.now().isoformat()},
            **_actor(by),
        )
        return appointment


@transaction.atomic
def appointment_finish_visit(*, appointment: Appointment, by: User | None) -> Appointment:
    """The visit ended: the appointment was attended. Idempotent for one already completed."""
    locked = Appointment.objects.select_for_update().get(pk=appointment.pk)
    if locked.status == AppointmentStatus.COMPLETED:
        return locked
    if locked.status not in (AppointmentStatus.IN_PROGRESS, AppointmentStatus.BOOKED):
        raise NotChangeable
    locked.status = AppointmentStatus.COMPLETED
    locked.save(update_fields=["status"])
    audit.record(
        action=AuditAction.APPOINTMENT_VISIT_FINISHED,
        patient_id=locked.patient_id,
        object_type="appointment",
        object_id=locked.pk,
        **_actor(by),
    )
    return locked
