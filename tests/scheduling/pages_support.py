"""Shared set-up for the tests of the staff scheduling pages: the clinic (a visit type, the practitioner's week,
two patients) plus one booked appointment tomorrow at 09:00 Lima and one blocked period."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from scheduling.availability import availability_exception_create
from scheduling.models import Appointment, AvailabilityException, AvailabilityRule, ExceptionKind
from scheduling.services import appointment_book
from tests.scheduling.factories import Clinic, local

PERSONAS = ["patient", "treating", "outsider", "coordinator", "admin", "auditor", "anonymous"]


@dataclass
class World:
    personas: object
    clinic: Clinic
    appointment: Appointment
    rule: AvailabilityRule
    exception: AvailabilityException

    def user(self, persona: str):
        p = self.personas
        return {
            "patient": p.patient,
            "treating": p.practitioner,
            "outsider": p.outsider,
            "coordinator": p.coordinator,
            "admin": p.admin,
            "auditor": p.auditor,
            "anonymous": None,
        }[persona]


def build_world(personas, clinic: Clinic) -> World:
    appointment = appointment_book(
        visit_type=clinic.visit_type,
        practitioner=personas.practitioner,
        patient=clinic.patient,
        start=local(clinic.tomorrow, "09:00"),
        booked_by=personas.coordinator,
    )
    later = clinic.tomorrow + dt.timedelta(days=2)
    exception = availability_exception_create(
        practitioner=personas.practitioner,
        establishment=personas.establishment,
        kind=ExceptionKind.BLOCK,
        start=local(later, "10:00"),
        end=local(later, "11:00"),
        label="Reunión de servicio",
        by=personas.admin,
    )
    rule = AvailabilityRule.objects.filter(practitioner=personas.practitioner).order_by("weekday").first()
    return World(personas, clinic, appointment, rule, exception)
