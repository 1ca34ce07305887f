"""SEC-1: who may open a chart, table-driven over every role; denied looks like missing; all audited."""

import datetime as dt

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.access import AccessDenied
from audit.models import AuditEvent
from records.access import break_glass, chart_for, demographics_for
from records.care import care_relationship_end, care_relationship_start
from records.models import CareSource, DocumentType, Sex
from records.services import DocumentInput, patient_register
from tests.factories import UserFactory


def verified(user):
    """As after a sign-in with the second factor (what OTPMiddleware sets on request.user)."""
    user.is_verified = lambda: True
    return user


@pytest.fixture
def world(personas):
    now = timezone.now()
    patient_user = personas.patient
    patient = patient_register(
        registered_by=personas.coordinator,
        establishment=personas.establishment,
        given_names="Rosa",
        paternal_surname="Quispe",
        sex=Sex.FEMALE,
        birth_date=dt.date(1984, 3, 9),
        documents=[DocumentInput(DocumentType.DNI, "10117410")],
    )
    patient.user = patient_user
    patient.save(update_fields=["user"])
    other_patient_user = UserFactory(email="otro.paciente@example.test")
    care_relationship_start(
        patient=patient,
        practitioner=personas.practitioner,
        source=CareSource.APPOINTMENT,
        source_id="42",
        valid_from=now - dt.timedelta(hours=1),
        valid_until=now + dt.timedelta(hours=2),
        created_by=personas.coordinator,
    )
    return personas, patient, other_patient_user


ROLES = ["patient_self", "other_patient", "treating", "unrelated", "coordinator", "admin", "auditor", "anonymous"]
CHART_ALLOWED = {"patient_self", "treating"}
DEMOGRAPHICS_ALLOWED = {"patient_self", "treating", "coordinator"}


def user_for(role, personas, other_patient_user):
    from django.contrib.auth.models import AnonymousUser

    return {
        "patient_self": personas.patient,
        "other_patient": other_patient_user,
        "treating": verified(personas.practitioner),
        "unrelated": verified(personas.outsider),
        "coordinator": verified(personas.coordinator),
        "admin": verified(personas.admin),
        "auditor": verified(personas.auditor),
        "anonymous": AnonymousUser(),
    }[role]


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_chart_gate_by_role(world, role):
    personas, patient, other = world
    user = user_for(role, personas, other)
    if role in CHART_ALLOWED:
        access = chart_for(user, patient.pk)
        assert access.patient == patient
        event = AuditEvent.objects.filter(action="records.chart.viewed").latest("id")
        assert event.patient_id == patient.pk
        assert event.purpose == ("patient_request" if role == "patient_self" else "treatment")
    else:
        with pytest.raises(AccessDenied):
            chart_for(user, patient.pk)
        assert AuditEvent.objects.filter(action="records.chart.denied", patient_id=patient.pk).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_demographics_gate_by_role(world, role):
    personas, patient, other = world
    user = user_for(role, personas, other)
    if role in DEMOGRAPHICS_ALLOWED:
        assert demographics_for(user, patient.pk) == patient
    else:
        with pytest.raises(AccessDenied):
            demographics_for(user, patient.pk)


@pytest.mark.django_db
def test_denied_and_missing_look_the_same(world):
    personas, patient, _ = world
    outsider = verified(personas.outsider)
    with pytest.raises(AccessDenied) as forbidden:
        chart_for(outsider, patient.pk)
    with pytest.raises(AccessDenied) as missing:
        chart_for(outsider, 999_999)
    assert type(forbidden.value) is type(missing.value) and str(forbidden.value) == str(missing.value)


@pytest.mark.django_db
def test_unverified_staff_session_is_denied(world):
    personas, patient, _ = world
    practitioner = personas.practitioner
    practitioner.is_verified = lambda: False
    with pytest.raises(AccessDenied):
        chart_for(practitioner, patient.pk)


@pytest.mark.django_db
def test_relationship_window_and_ending(world):
    personas, patient, _ = world
    practitioner = verified(personas.practitioner)
    with pytest.raises(AccessDenied):
        chart_for(practitioner, patient.pk, now=timezone.now() + dt.timedelta(hours=3))
    assert care_relationship_end(source=CareSource.APPOINTMENT, source_id="42", ended_by=personas.coordinator) == 1
    with pytest.raises(AccessDenied):
        chart_for(practitioner, patient.pk)


@pytest.mark.django_db
def test_break_glass_grants_time_limited_emergency_access_and_tells_auditors(world, django_capture_on_commit_callbacks):
    personas, patient, _ = world
    outsider = verified(personas.outsider)
    with pytest.raises(ValidationError):
        break_glass(user=outsider, patient_id=patient.pk, reason="urgente")
    with pytest.raises(AccessDenied):
        break_glass(
            user=verified(personas.coordinator), patient_id=patient.pk, reason="Paciente inconsciente en emergencia"
        )
    with django_capture_on_commit_callbacks(execute=True):
        break_glass(user=outsider, patient_id=patient.pk, reason="Paciente inconsciente en emergencia")
    access = chart_for(outsider, patient.pk)
    assert access.via == "break_glass" and access.purpose == "emergency"
    event = AuditEvent.objects.get(action="records.chart.break_glass")
    assert event.purpose == "emergency" and "inconsciente" not in str(event.details)
    assert len(mail.outbox) == 1 and personas.auditor.email in mail.outbox[0].to
    assert "inconsciente" not in mail.outbox[0].body
    with pytest.raises(AccessDenied):
        chart_for(outsider, patient.pk, now=timezone.now() + dt.timedelta(hours=5))


@pytest.mark.django_db
def test_who_opened_my_record_in_plain_words(world, django_assert_num_queries):
    from records.selectors import record_access_log

    personas, patient, _ = world
    chart_for(verified(personas.practitioner), patient.pk)
    with pytest.raises(AccessDenied):
        chart_for(verified(personas.outsider), patient.pk)
    with django_assert_num_queries(2):
        log = record_access_log(patient)
    opened = next(e for e in log if e.what == "abrió su historia clínica")
    assert opened.who == personas.practitioner.full_name and opened.purpose == "atención de salud"
    assert any(e.what.startswith("intentó abrir") and e.outcome == "denied" for e in log)
    assert log[0].at >= log[-1].at
