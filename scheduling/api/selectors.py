"""Reads behind the API's lists: what each role may see, with what the answers show loaded in constant queries."""

from __future__ import annotations

import datetime as dt

from django.db.models import Exists, OuterRef, Prefetch, QuerySet

from accounts.models import Role, StaffMembership, User
from scheduling import access
from scheduling.models import Appointment, AppointmentParticipant, VisitType


def visit_types_visible_to(user: User) -> QuerySet[VisitType]:
    """Active visit types: all of them for a patient choosing where to book; staff see their establishments'."""
    visit_types = VisitType.objects.filter(is_active=True, establishment__is_active=True)
    if user.role != Role.PATIENT:
        visit_types = visit_types.filter(establishment__in=access.establishments_for(user))
    return visit_types.select_related("establishment").order_by("specialty", "name", "pk")


def practitioners_visible_to(user: User) -> QuerySet[User]:
    """Whose slots a user may search and book: any practitioner for a patient, those of their establishments
    for a coordinator or admin, and only themself for a practitioner."""
    practitioners = User.objects.filter(role=Role.PRACTITIONER, is_active=True)
    if user.role == Role.PATIENT:
        return practitioners
    if user.role == Role.PRACTITIONER:
        return practitioners.filter(pk=user.pk)
    colleagues = StaffMembership.objects.filter(user=OuterRef("pk"), establishment__in=access.establishments_for(user))
    return practitioners.filter(Exists(colleagues))


def with_details(appointments: QuerySet[Appointment]) -> QuerySet[Appointment]:
    """Everything AppointmentSerializer shows, in a fixed number of queries whatever the number of rows."""
    participants = AppointmentParticipant.objects.select_related("user").order_by("pk")
    return appointments.select_related("establishment", "visit_type", "patient", "rescheduled_from").prefetch_related(
        Prefetch("participants", queryset=participants)
    )


def appointments_between(
    user: User, *, start: dt.datetime, end: dt.datetime, practitioner_id: int | None = None, limit: int
) -> list[Appointment]:
    # The same filter the single-appointment gate (scheduling.access.appointment_for) applies.
    appointments = with_details(access.appointments_visible_to(user)).filter(start__lt=end, end__gt=start)
    if practitioner_id is not None:
        appointments = appointments.filter(
            Exists(AppointmentParticipant.objects.filter(appointment=OuterRef("pk"), user_id=practitioner_id))
        )
    return list(appointments.order_by("start", "pk")[:limit])
