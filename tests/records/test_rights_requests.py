"""Law 29733 rights requests: due dates in Peruvian business days, one extension, queue, audit."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError

from audit.models import AuditEvent
from records.models import DocumentType, RightsKind, RightsStatus, Sex
from records.rights import (
    add_business_days,
    is_business_day,
    rights_queue,
    rights_request_extend,
    rights_request_file,
    rights_request_resolve,
)
from records.services import DocumentInput, patient_register

LIMA = ZoneInfo("America/Lima")


@pytest.fixture
def patient(personas):
    patient = patient_register(
        registered_by=personas.coordinator,
        establishment=personas.establishment,
        given_names="Rosa",
        paternal_surname="Quispe",
        sex=Sex.FEMALE,
        birth_date=dt.date(1984, 3, 9),
        documents=[DocumentInput(DocumentType.DNI, "10117410")],
    )
    patient.user = personas.patient
    patient.save(update_fields=["user"])
    return patient


def test_business_days_skip_weekends_and_peruvian_holidays():
    assert not is_business_day(dt.date(2026, 7, 28))  # Independence Day
    assert not is_business_day(dt.date(2026, 11, 22))  # a Sunday
    # Filed Monday 27 July 2026: 28 and 29 July and 6 August (Battle of Junín) are holidays.
    days = []
    current = dt.date(2026, 7, 27)
    while len(days) < 10:
        current += dt.timedelta(days=1)
        if current.weekday() < 5 and current not in {dt.date(2026, 7, 28), dt.date(2026, 7, 29), dt.date(2026, 8, 6)}:
            days.append(current)
    assert add_business_days(dt.date(2026, 7, 27), 10) == days[-1] == dt.date(2026, 8, 13)


@pytest.mark.django_db
def test_access_gets_20_business_days_others_10(personas, patient):
    filed = dt.datetime(2026, 11, 23, 9, 0, tzinfo=LIMA)  # a Monday
    access = rights_request_file(
        patient=patient,
        kind=RightsKind.ACCESS,
        description="Quiero una copia de mis datos.",
        filed_by=personas.patient,
        now=filed,
    )
    opposition = rights_request_file(
        patient=patient,
        kind=RightsKind.OPPOSITION,
        description="Me opongo al uso para publicidad.",
        filed_by=personas.patient,
        now=filed,
    )
    # 8 December (Immaculate Conception) and 9 December (Ayacucho) are holidays.
    assert access.due_date == dt.date(2026, 12, 23)
    assert opposition.due_date == dt.date(2026, 12, 7)
    event = AuditEvent.objects.filter(action="records.rights_request.filed").latest("id")
    assert event.patient_id == patient.pk and event.purpose == "patient_request"
    assert "publicidad" not in str(event.details)


@pytest.mark.django_db
def test_late_evening_filing_counts_from_the_lima_date(personas, patient):
    # 23:30 in Lima on Friday is already Saturday in UTC: the term runs from Friday.
    filed = dt.datetime(2026, 11, 27, 23, 30, tzinfo=LIMA)
    request = rights_request_file(
        patient=patient,
        kind=RightsKind.CANCELLATION,
        description="Cancelar mis datos de contacto.",
        filed_by=personas.patient,
        now=filed,
    )
    assert request.due_date == add_business_days(dt.date(2026, 11, 27), 10)


@pytest.mark.django_db
def test_one_extension_of_equal_length_with_reason(personas, patient):
    request = rights_request_file(
        patient=patient, kind=RightsKind.ACCESS, description="Copia completa.", filed_by=personas.patient
    )
    with pytest.raises(ValidationError):
        rights_request_extend(request=request, reason="", by=personas.coordinator)
    extended = rights_request_extend(request=request, reason="Volumen de información elevado.", by=personas.coordinator)
    assert extended.extended_due_date == add_business_days(request.due_date, 20)
    with pytest.raises(ValidationError) as raised:
        rights_request_extend(request=extended, reason="Otra vez, por favor.", by=personas.coordinator)
    assert raised.value.code == "already_extended"


@pytest.mark.django_db
def test_patients_file_only_for_themselves(personas, patient):
    from tests.factories import UserFactory

    stranger = UserFactory(email="extrano@example.test")
    with pytest.raises(ValidationError) as raised:
        rights_request_file(
            patient=patient, kind=RightsKind.ACCESS, description="Datos de otra persona.", filed_by=stranger
        )
    assert raised.value.code == "not_own"


@pytest.mark.django_db
def test_queue_orders_by_due_date_and_flags_overdue(personas, patient):
    old = rights_request_file(
        patient=patient,
        kind=RightsKind.OPPOSITION,
        description="Antigua.",
        filed_by=personas.patient,
        now=dt.datetime(2026, 1, 5, 10, tzinfo=LIMA),
    )
    new = rights_request_file(
        patient=patient,
        kind=RightsKind.ACCESS,
        description="Nueva.",
        filed_by=personas.patient,
        now=dt.datetime(2026, 11, 23, 10, tzinfo=LIMA),
    )
    queue = list(rights_queue(today=dt.date(2026, 11, 24)))
    assert [r.pk for r in queue] == [old.pk, new.pk]
    assert queue[0].overdue and not queue[1].overdue
    rights_request_resolve(
        request=old, status=RightsStatus.COMPLETED, resolution="Se atendió la oposición.", by=personas.coordinator
    )
    assert [r.pk for r in rights_queue(today=dt.date(2026, 11, 24))] == [new.pk]
    with pytest.raises(ValidationError):
        rights_request_resolve(
            request=old, status=RightsStatus.REJECTED, resolution="Ya cerrada, no procede.", by=personas.coordinator
        )
