"""SCH-1 availability rules (bad input refused, audited) and the appointment gates (outsider denied)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from accounts.access import AccessDenied
from accounts.models import Establishment
from audit.models import AuditEvent
from scheduling import services
from scheduling.access import (
    appointment_for,
    appointments_visible_to,
    may_manage_availability,
    patient_for_booking,
    practitioners_managed_by,
)
from scheduling.availability import availability_rule_create, visit_type_create, visit_type_update
from scheduling.errors import InvalidRange, OverlappingRule
from scheduling.models import AvailabilityRule
from tests.scheduling.factories import local


def rule(personas, clinic, start, end, weekday=0, **extra):
    return availability_rule_create(
        practitioner=personas.practitioner,
        establishment=personas.establishment,
        weekday=weekday,
        start_time=dt.time.fromisoformat(start),
        end_time=dt.time.fromisoformat(end),
        valid_from=extra.pop("valid_from", dt.date(2027, 1, 1)),
        visit_types=[clinic.visit_type],
        by=personas.practitioner,
        **extra,
    )


@pytest.mark.django_db
def test_rule_bad_input_is_refused_and_saves_nothing(personas, clinic):
    before = AvailabilityRule.objects.count()
    with pytest.raises(InvalidRange):
        rule(personas, clinic, "14:00", "13:00")
    with pytest.raises(OverlappingRule):
        rule(personas, clinic, "11:00", "13:00")  # the clinic fixture has 08:00-12:00 every day
    with pytest.raises(ValidationError) as validity:
        rule(personas, clinic, "14:00", "15:00", valid_until=dt.date(2026, 1, 1))
    assert validity.value.code == "invalid_validity"
    with pytest.raises(ValidationError) as elsewhere:
        availability_rule_create(
            practitioner=personas.practitioner,
            establishment=personas.other_establishment,
            weekday=0,
            start_time=dt.time(14),
            end_time=dt.time(15),
            valid_from=dt.date(2027, 1, 1),
            visit_types=[clinic.visit_type],
            by=personas.admin,
        )
    assert elsewhere.value.code == "visit_type_establishment"
    assert AvailabilityRule.objects.count() == before
    created = rule(personas, clinic, "14:00", "16:00")
    event = AuditEvent.objects.get(action="scheduling.availability_rule.created", object_id=str(created.pk))
    assert event.actor_user_id == personas.practitioner.pk


@pytest.mark.django_db
def test_visit_type_validation_and_unknown_time_zone(personas):
    with pytest.raises(ValidationError):
        visit_type_create(
            establishment=personas.establishment,
            name="Demasiado larga",
            specialty="Medicina general",
            service_type="teleconsulta",
            modality="video",
            duration_minutes=600,
            by=personas.admin,
        )
    with pytest.raises(ValidationError):
        visit_type_create(
            establishment=personas.establishment,
            name="Servicio raro",
            specialty="Medicina general",
            service_type="telemagia",
            modality="video",
            duration_minutes=30,
            by=personas.admin,
        )
    visit_type = visit_type_create(
        establishment=personas.establishment,
        name="Teleorientación",
        specialty="Medicina general",
        service_type="teleorientacion",
        modality="audio",
        duration_minutes=15,
        by=personas.admin,
    )
    assert visit_type_update(visit_type=visit_type, by=personas.admin, buffer_minutes=5).buffer_minutes == 5
    establishment = Establishment(name="Posta", renipress_code="123", time_zone="America/Atlantis")
    with pytest.raises(ValidationError) as zone:
        establishment.full_clean()
    assert "time_zone" in zone.value.message_dict


@pytest.mark.django_db
def test_who_manages_whose_availability(personas, clinic):
    for user in (personas.practitioner, personas.coordinator, personas.admin):
        user.is_verified = lambda: True
        assert may_manage_availability(user, personas.practitioner)
    personas.outsider.is_verified = lambda: True  # a practitioner elsewhere
    personas.auditor.is_verified = lambda: True
    assert not may_manage_availability(personas.outsider, personas.practitioner)
    assert not may_manage_availability(personas.auditor, personas.practitioner)
    assert not may_manage_availability(personas.patient, personas.practitioner)
    assert list(practitioners_managed_by(personas.coordinator)) == [personas.practitioner]
    assert not practitioners_managed_by(personas.auditor).exists()


@pytest.mark.django_db
def test_appointment_gate(personas, clinic):
    appointment = services.appointment_book(
        visit_type=clinic.visit_type,
        practitioner=personas.practitioner,
        patient=clinic.patient,
        start=local(clinic.tomorrow, "09:00"),
        booked_by=personas.coordinator,
    )
    for user in (personas.practitioner, personas.coordinator, personas.admin, personas.outsider, personas.auditor):
        user.is_verified = lambda: True
    for allowed in (personas.patient, personas.practitioner, personas.coordinator, personas.admin):
        assert appointment_for(allowed, appointment.public_id) == appointment
        assert appointment_for(allowed, str(appointment.public_id), to_change=True) == appointment
    for denied in (personas.outsider, personas.auditor):
        with pytest.raises(AccessDenied):
            appointment_for(denied, appointment.public_id)
        assert not appointments_visible_to(denied).exists()
    with pytest.raises(AccessDenied):
        appointment_for(personas.coordinator, "not-a-uuid")
    # Staff who have not passed the second factor see nothing.
    personas.coordinator.is_verified = lambda: False
    with pytest.raises(AccessDenied):
        appointment_for(personas.coordinator, appointment.public_id)
    viewed = AuditEvent.objects.filter(action="scheduling.appointment.viewed", patient_id=clinic.patient.pk)
    assert viewed.count() == 8
    assert AuditEvent.objects.filter(action="scheduling.appointment.denied").count() == 4


@pytest.mark.django_db
def test_patient_for_booking(personas, clinic):
    personas.coordinator.is_verified = lambda: True
    assert patient_for_booking(personas.coordinator, clinic.other_patient.pk) == clinic.other_patient
    assert patient_for_booking(personas.patient, clinic.patient.pk) == clinic.patient
    with pytest.raises(AccessDenied):
        patient_for_booking(personas.patient, clinic.other_patient.pk)
    personas.auditor.is_verified = lambda: True
    with pytest.raises(AccessDenied):
        patient_for_booking(personas.auditor, clinic.patient.pk)
