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


@transaction.atomic
def appointment_start_visit(*, appointment: Appointment, by: User | None) -> Appointment:
    """The visit began. Idempotent: an appointment already in progress stays so (a second admit, a retry)."""
    locked = Appointment.objects.select_for_update().get(pk=appointment.pk)
    if locked.status == AppointmentStatus.IN_PROGRESS:
        return locked
    if locked.status != AppointmentStatus.BOOKED:
        raise NotChangeable
    locked.status = AppointmentStatus.IN_PROGRESS
    locked.save(update_fields=["status"])
    audit.record(
        action=AuditAction.APPOINTMENT_VISIT_STARTED,
        patient_id=locked.patient_id,
        object_type="appointment",
        object_id=locked.pk,
        details={"at": timezone.now().isoformat()},
        **_actor(by),
    )
    return locked


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
