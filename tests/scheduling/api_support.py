"""A small clinic for the API tests: visit types, weekly availability and patients, made with the ORM."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.utils import timezone

from accounts.models import Role, User
from records.models import Patient, Sex
from records.services import search_name
from scheduling import slots
from scheduling.models import Appointment, AppointmentParticipant, AvailabilityRule, ServiceType, VisitType
from tests.factories import UserFactory

API = "/api/v1"


def patient_record(user: User | None, given: str, surname: str) -> Patient:
    return Patient.objects.create(
        user=user,
        given_names=given,
        paternal_surname=surname,
        search_name=search_name(f"{surname} {given}"),
        sex=Sex.FEMALE,
        birth_date=dt.date(1984, 3, 9),
    )


def visit_type(establishment, *, name: str, specialty: str, minutes: int = 20) -> VisitType:
    return VisitType.objects.create(
        establishment=establishment,
        name=name,
        specialty=specialty,
        service_type=ServiceType.TELECONSULTA,
        duration_minutes=minutes,
    )


def every_day(practitioner: User, establishment, types: list[VisitType], *, by: User) -> AvailabilityRule:
    """08:00 to 18:00 (the establishment's zone) on every weekday, from yesterday on."""
    rule = None
    for weekday in range(7):
        rule = AvailabilityRule.objects.create(
            practitioner=practitioner,
            establishment=establishment,
            weekday=weekday,
            start_time=dt.time(8, 0),
            end_time=dt.time(18, 0),
            valid_from=timezone.localdate() - dt.timedelta(days=1),
            created_by=by,
        )
        rule.visit_types.set(types)
    assert rule is not None
    return rule


@dataclass
class Clinic:
    personas: object
    patient: Patient  # personas.patient's record
    other_user: User  # another patient with a login
    other: Patient
    walk_in: Patient  # a patient without a login, booked by the coordinator
    general: VisitType  # at the home establishment
    cardiology: VisitType  # at the outsider's establishment

    def free_slots(
        self, *, visit_type: VisitType | None = None, count: int = 3, start: dt.datetime | None = None
    ) -> list[slots.Slot]:
        start = start or timezone.now() + dt.timedelta(days=1)
        found = slots.find_slots(
            visit_type=visit_type or self.general, start=start, end=start + dt.timedelta(days=7), limit=count
        )
        assert len(found) == count
        return found


def make_clinic(personas) -> Clinic:
    patient = patient_record(personas.patient, "Rosa", "Quispe")
    other_user = UserFactory(email="otra.paciente@example.test", role=Role.PATIENT)
    other = patient_record(other_user, "Ana", "Mamani")
    walk_in = patient_record(None, "Luis", "Huamán")
    general = visit_type(personas.establishment, name="Consulta general", specialty="Medicina general")
    cardiology = visit_type(personas.other_establishment, name="Consulta cardiología", specialty="Cardiología")
    every_day(personas.practitioner, personas.establishment, [general], by=personas.admin)
    every_day(personas.outsider, personas.other_establishment, [cardiology], by=personas.outsider)
    return Clinic(personas, patient, other_user, other, walk_in, general, cardiology)


def move_to_past(appointment: Appointment, *, minutes_ago: int = 10) -> Appointment:
    """Put an appointment's start a few minutes ago (the services refuse to book in the past)."""
    length = appointment.end - appointment.start
    start = timezone.now() - dt.timedelta(minutes=minutes_ago)
    Appointment.objects.filter(pk=appointment.pk).update(start=start, end=start + length)
    for participant in AppointmentParticipant.objects.filter(appointment=appointment):
        participant.during = DateTimeTZRange(start, start + length)
        participant.save(update_fields=["during"])
    appointment.refresh_from_db()
    return appointment


def iso(moment: dt.datetime) -> str:
    return moment.isoformat()
