"""Access gates for appointments and calendars: every view, API endpoint and consumer goes through these.

Each gate raises AccessDenied alike for "missing" and "forbidden", so a denial never reveals that an
appointment exists. Reads of an appointment are audited (it names a patient and a service).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Q, QuerySet

from accounts.access import AccessDenied, require_role
from accounts.models import Establishment, Role, User
from audit import services as audit
from audit.actions import AuditAction, Outcome, Purpose
from records.access import demographics_for
from records.models import Patient
from scheduling.models import Appointment

STAFF_WHO_BOOK = (Role.COORDINATOR, Role.CLINIC_ADMIN)


def establishments_for(user: User) -> QuerySet[Establishment]:
    """Where a staff member works (their memberships)."""
    return Establishment.objects.filter(memberships__user=user, is_active=True).distinct()


def _verified(user: Any) -> bool:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return not user.is_staff_member or user.is_verified()


def appointments_visible_to(user: User) -> QuerySet[Appointment]:
    """Every appointment the user may see, as one filter (for lists and for the single-object gate)."""
    if not _verified(user):
        return Appointment.objects.none()
    if user.role == Role.PATIENT:
        return Appointment.objects.filter(patient__user=user)
    if user.role == Role.PRACTITIONER:
        return Appointment.objects.filter(participants__user=user).distinct()
    if user.role in STAFF_WHO_BOOK:
        # The appointment's establishment, or the establishment a participant takes part from
        # (the consulted establishment's coordinators see a teleinterconsulta too).
        mine = establishments_for(user)
        return Appointment.objects.filter(
            Q(establishment__in=mine) | Q(participants__establishment__in=mine)
        ).distinct()
    return Appointment.objects.none()


def _may_change(user: User, appointment: Appointment) -> bool:
    if user.role in (Role.PATIENT, *STAFF_WHO_BOOK):
        return True
    if user.role == Role.PRACTITIONER:
        return appointment.participants.filter(user=user).exists()
    return False


def appointment_for(user: User, public_id: uuid.UUID | str, *, to_change: bool = False) -> Appointment:
    """One appointment, if the user may see it (and change it, with `to_change`); the read is audited."""
    try:
        key = uuid.UUID(str(public_id))
    except ValueError:
        key = None
    appointment = (
        appointments_visible_to(user).select_related("establishment", "visit_type").filter(public_id=key).first()
        if key is not None
        else None
    )
    actor: audit.Actor = {
        "actor_user_id": getattr(user, "pk", None),
        "actor_role": getattr(user, "role", "") or "anonymous",
    }
    if appointment is None or (to_change and not _may_change(user, appointment)):
        audit.record(
            action=AuditAction.APPOINTMENT_ACCESS_DENIED,
            outcome=Outcome.DENIED,
            object_type="appointment",
            object_id=str(key) if key else "",
            **actor,
        )
        raise AccessDenied
    audit.record(
        action=AuditAction.APPOINTMENT_VIEWED,
        purpose=_purpose(user),
        patient_id=appointment.patient_id,
        object_type="appointment",
        object_id=appointment.pk,
        **actor,
    )
    return appointment


def _purpose(user: User) -> Purpose:
    if user.role == Role.PATIENT:
        return Purpose.PATIENT_REQUEST
    if user.role == Role.PRACTITIONER:
        return Purpose.TREATMENT
    return Purpose.OPERATIONS


def may_manage_availability(user: Any, practitioner: User) -> bool:
    """The practitioner themself, or a coordinator or clinic admin of an establishment they work at."""
    if not _verified(user) or practitioner.role != Role.PRACTITIONER:
        return False
    if user.pk == practitioner.pk:
        return True
    if user.role in STAFF_WHO_BOOK:
        return establishments_for(user).filter(memberships__user=practitioner).exists()
    return False


def practitioners_managed_by(user: User) -> QuerySet[User]:
    """Practitioners whose availability `user` may edit."""
    if not _verified(user):
        return User.objects.none()
    if user.role == Role.PRACTITIONER:
        return User.objects.filter(pk=user.pk)
    if user.role in STAFF_WHO_BOOK:
        return (
            User.objects.filter(
                role=Role.PRACTITIONER, is_active=True, memberships__establishment__in=establishments_for(user)
            )
            .distinct()
            .order_by("full_name")
        )
    return User.objects.none()


def patient_for_booking(user: User, patient_id: int) -> Patient:
    """The patient an appointment is booked for: anyone for a coordinator (audited demographics read),
    only themself for a patient."""
    require_role(user, Role.PATIENT, Role.COORDINATOR, Role.CLINIC_ADMIN)
    if user.role == Role.CLINIC_ADMIN:
        # Clinic admins book like coordinators; demographics_for knows coordinators and practitioners only.
        patient = Patient.objects.filter(pk=patient_id, blocked_at__isnull=True).first()
        if patient is None:
            raise AccessDenied
        audit.record(
            action=AuditAction.DEMOGRAPHICS_VIEWED,
            purpose=Purpose.OPERATIONS,
            actor_user_id=user.pk,
            actor_role=user.role,
            patient_id=patient.pk,
            object_type="patient",
            object_id=patient.pk,
        )
        return patient
    patient = demographics_for(user, patient_id)
    if patient.blocked_at is not None:
        raise AccessDenied
    return patient
