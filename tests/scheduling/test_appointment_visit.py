"""The appointment's status as its visit takes place: booked → in progress (audited once) → completed."""

from __future__ import annotations

import pytest
from django.db import transaction

from audit.actions import AuditAction
from audit.models import AuditEvent
from scheduling.errors import NotChangeable
from scheduling.models import Appointment, AppointmentStatus
from scheduling.visits import appointment_finish_visit, appointment_start_visit
from tests.frontend.conftest import register
from tests.scheduling.test_joinlinks import make_appointment

pytestmark = pytest.mark.django_db


def _started_events(appointment: Appointment) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=AuditAction.APPOINTMENT_VISIT_STARTED, object_id=str(appointment.pk)))


def test_a_booked_appointment_starts_once_and_a_retry_changes_nothing(personas):
    appointment = make_appointment(personas, register(personas))
    started = appointment_start_visit(appointment=appointment, by=personas.practitioner)
    assert started.status == AppointmentStatus.IN_PROGRESS
    assert Appointment.objects.get(pk=appointment.pk).status == AppointmentStatus.IN_PROGRESS
    [event] = _started_events(appointment)
    assert (event.patient_id, event.actor_user_id) == (appointment.patient_id, personas.practitioner.pk)
    # A second admit, a retry: still in progress, no second event.
    again = appointment_start_visit(appointment=Appointment.objects.get(pk=appointment.pk), by=personas.practitioner)
    assert again.status == AppointmentStatus.IN_PROGRESS
    assert len(_started_events(appointment)) == 1


@pytest.mark.parametrize(
    "status", [AppointmentStatus.CANCELLED, AppointmentStatus.COMPLETED, AppointmentStatus.NO_SHOW]
)
def test_an_appointment_that_no_longer_stands_does_not_start(personas, status):
    appointment = make_appointment(personas, register(personas))
    stale = Appointment.objects.get(pk=appointment.pk)  # read while it was still booked
    Appointment.objects.filter(pk=appointment.pk).update(status=status)
    with pytest.raises(NotChangeable):
        appointment_start_visit(appointment=stale, by=personas.practitioner)
    assert Appointment.objects.get(pk=appointment.pk).status == status
    assert _started_events(appointment) == []


def test_a_refusal_inside_a_callers_transaction_leaves_it_usable_unless_it_opts_out(personas):
    appointment = make_appointment(personas, register(personas))
    appointment_finish_visit(appointment=appointment, by=personas.practitioner)
    with transaction.atomic():
        with pytest.raises(NotChangeable):
            appointment_start_visit(appointment=appointment, by=personas.practitioner)
        # Its own savepoint rolled back: the caller's transaction goes on.
        assert Appointment.objects.get(pk=appointment.pk).status == AppointmentStatus.COMPLETED
    # Without one (a caller that lets every error through) the caller's transaction is done for.
    with pytest.raises(NotChangeable), transaction.atomic():
        appointment_start_visit(appointment=appointment, by=personas.practitioner, savepoint=False)
    assert Appointment.objects.get(pk=appointment.pk).status == AppointmentStatus.COMPLETED
