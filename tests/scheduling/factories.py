"""Scheduling test data: patients, visit types and weekly availability, built through the real services."""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo
from dataclasses import dataclass

import pytest

from accounts.models import Establishment, User
from records.models import DocumentType, Patient, Sex
from records.services import DocumentInput, patient_register
from scheduling.availability import availability_rule_create, visit_type_create
from scheduling.models import Modality, ServiceType, VisitType

_dni = itertools.count(40_000_000)


def make_patient(
    *,
    establishment: Establishment,
    registered_by: User | None,
    user: User | None = None,
    given_names: str = "Rosa",
    surname: str = "Quispe",
    birth_date: dt.date = dt.date(1984, 3, 9),
    dni: str | None = None,
    email: str | None = None,
    phone: str | None = None,
) -> Patient:
    return patient_register(
        registered_by=registered_by,
        establishment=establishment,
        given_names=given_names,
        paternal_surname=surname,
        sex=Sex.FEMALE,
        birth_date=birth_date,
        documents=[DocumentInput(DocumentType.DNI, dni or f"{next(_dni):08d}")],
        email=email,
        phone=phone,
        user=user,
    )


def make_visit_type(
    *,
    establishment: Establishment,
    by: User,
    name: str = "Consulta de medicina general",
    specialty: str = "Medicina general",
    service_type: str = ServiceType.TELECONSULTA,
    duration_minutes: int = 30,
    buffer_minutes: int = 0,
    modality: str = Modality.VIDEO,
) -> VisitType:
    return visit_type_create(
        establishment=establishment,
        name=name,
        specialty=specialty,
        service_type=service_type,
        modality=modality,
        duration_minutes=duration_minutes,
        buffer_minutes=buffer_minutes,
        by=by,
    )


def weekly_rules(
    *,
    practitioner: User,
    establishment: Establishment,
    visit_types: list[VisitType],
    by: User,
    start: str = "08:00",
    end: str = "12:00",
    weekdays=range(7),
    valid_from: dt.date | None = None,
) -> None:
    for weekday in weekdays:
        availability_rule_create(
            practitioner=practitioner,
            establishment=establishment,
            weekday=weekday,
            start_time=dt.time.fromisoformat(start),
            end_time=dt.time.fromisoformat(end),
            valid_from=valid_from or dt.date.today() - dt.timedelta(days=7),
            visit_types=visit_types,
            by=by,
        )


def local(day: dt.date, hhmm: str, zone: str = "America/Lima") -> dt.datetime:
    return dt.datetime.combine(day, dt.time.fromisoformat(hhmm), tzinfo=zoneinfo.ZoneInfo(zone))


def lima_today() -> dt.date:
    return dt.datetime.now(zoneinfo.ZoneInfo("America/Lima")).date()


@dataclass
class Clinic:
    """The personas' establishment with one 30-minute video visit type the practitioner offers 08:00-12:00 daily."""

    visit_type: VisitType
    patient: Patient  # linked to personas.patient's login
    other_patient: Patient  # no login
    tomorrow: dt.date


@pytest.fixture
def clinic(personas) -> Clinic:
    visit_type = make_visit_type(establishment=personas.establishment, by=personas.admin)
    weekly_rules(
        practitioner=personas.practitioner,
        establishment=personas.establishment,
        visit_types=[visit_type],
        by=personas.admin,
    )
    patient = make_patient(
        establishment=personas.establishment,
        registered_by=personas.coordinator,
        user=personas.patient,
        email="rosa@example.test",
    )
    other = make_patient(
        establishment=personas.establishment,
        registered_by=personas.coordinator,
        given_names="Luis",
        surname="Mamani",
        birth_date=dt.date(1990, 1, 2),
    )
    return Clinic(visit_type, patient, other, lima_today() + dt.timedelta(days=1))
