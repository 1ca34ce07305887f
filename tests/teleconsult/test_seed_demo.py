"""`manage.py seed_demo`: the demonstration data, created through the audited services, idempotently."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Establishment, PractitionerProfile, Role, StaffMembership, User
from audit.models import AuditEvent
from records.models import ConsentDocument, ConsentKind, Patient
from records.selectors import patient_by_document
from scheduling.models import Appointment
from teleconsult import demo
from tests.factories import current_totp_token

pytestmark = pytest.mark.django_db


def _seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def _snapshot() -> dict[str, object]:
    return {
        "establishments": list(Establishment.objects.order_by("pk").values()),
        "users": list(User.objects.order_by("pk").values()),
        "memberships": list(StaffMembership.objects.order_by("pk").values_list("user_id", "establishment_id")),
        "profiles": list(PractitionerProfile.objects.order_by("pk").values()),
        "devices": list(TOTPDevice.objects.order_by("pk").values("pk", "user_id", "key", "confirmed")),
        "audit_events": AuditEvent.objects.count(),
        "patients": list(Patient.objects.order_by("pk").values("pk", "user_id", "search_name", "birth_date")),
        "consent_documents": list(ConsentDocument.objects.order_by("pk").values("pk", "kind", "version", "language")),
        "appointments": list(Appointment.objects.order_by("pk").values_list("pk", "start", "status")),
    }


def test_seed_creates_the_demo_people_with_their_roles_and_registry_data():
    output = _seed()
    home = Establishment.objects.get(renipress_code="00099901")
    referral = Establishment.objects.get(renipress_code="00099902")
    assert home.name == "Centro de Salud Demo" and home.time_zone == "America/Lima"
    roles = dict(User.objects.values_list("email", "role"))
    assert roles["medico@demo.test"] == Role.PRACTITIONER
    assert roles["coordinacion@demo.test"] == Role.COORDINATOR
    assert roles["admin@demo.test"] == Role.CLINIC_ADMIN
    assert roles["auditoria@demo.test"] == Role.AUDITOR
    assert sorted(e for e, r in roles.items() if r == Role.PATIENT) == [
        "paciente1@demo.test",
        "paciente2@demo.test",
        "paciente3@demo.test",
    ]
    gp = PractitionerProfile.objects.get(user__email="medico@demo.test")
    assert (gp.registry_body, gp.rne) == ("CMP", "")
    specialist = User.objects.get(email="especialista@demo.test")
    assert specialist.practitioner_profile.rne
    assert set(specialist.memberships.values_list("establishment", flat=True)) == {home.pk, referral.pk}
    assert User.objects.get(email="paciente1@demo.test").check_password(demo.DEMO_PASSWORD)
    for line in demo.sign_in_lines():
        assert line in output


def test_staff_authenticators_use_the_printed_secrets():
    output = _seed()
    for person in demo.STAFF:
        device = TOTPDevice.objects.get(user__email=person.email, confirmed=True)
        assert person.totp_secret in output
        assert person.otpauth_uri in output
        # A code computed from the printed secret is accepted by the stored device.
        assert device.verify_token(current_totp_token(device))
        assert device.key == person.totp_key_hex
    assert not TOTPDevice.objects.filter(user__role=Role.PATIENT).exists()


def test_creation_is_audited_with_the_system_as_actor():
    _seed()
    created = AuditEvent.objects.filter(action__in=["accounts.user.created", "accounts.establishment.created"])
    assert created.count() == len(demo.PEOPLE) + len(demo.ESTABLISHMENTS)
    assert set(created.values_list("actor_role", flat=True)) == {"system"}
    assert set(created.values_list("actor_user_id", flat=True)) == {None}
    enrolled = AuditEvent.objects.filter(action="accounts.otp.enrolled")
    assert enrolled.count() == len(demo.STAFF)


def test_running_twice_changes_nothing_and_prints_the_same_sign_ins():
    first_output = _seed()
    before = _snapshot()
    second_output = _seed()
    assert _snapshot() == before
    assert (
        second_output.splitlines()[-len(demo.sign_in_lines()) :]
        == first_output.splitlines()[-len(demo.sign_in_lines()) :]
    )
    assert "Created" not in second_output


def test_demo_patients_have_records_and_the_clinic_has_consent_texts():
    _seed()
    home = Establishment.objects.get(renipress_code="00099901")
    for item in demo.PATIENT_RECORDS:
        patient = Patient.objects.get(user__email=item.email)
        # Found by DNI through the blind index, as staff would search.
        assert patient_by_document("dni", item.dni) == patient
        assert patient.history_numbers.get(establishment=home).number == item.history_number
    for kind in ConsentKind:
        languages = set(ConsentDocument.objects.filter(kind=kind, version=1).values_list("language", flat=True))
        assert languages == {"es-pe", "en"}, kind
    registered = AuditEvent.objects.filter(action="records.patient.registered")
    assert registered.count() == len(demo.PATIENT_RECORDS)
    assert set(registered.values_list("actor_role", flat=True)) == {"system"}


def test_demo_clinic_has_a_bookable_schedule_with_appointments():
    import datetime as dt

    from django.utils import timezone

    from scheduling.models import Appointment, AppointmentStatus, AvailabilityRule, VisitType
    from scheduling.slots import find_slots, specialties

    _seed()
    assert VisitType.objects.count() == len(demo.VISIT_TYPES)
    assert AvailabilityRule.objects.exists()
    assert {"Medicina general", "Cardiología"} <= set(specialties())
    booked = Appointment.objects.filter(status=AppointmentStatus.BOOKED)
    assert booked.count() == 3
    assert all(a.participants.filter(active=True).count() == 2 for a in booked)
    now = timezone.now()
    assert find_slots(specialty="Cardiología", start=now, end=now + dt.timedelta(days=14))


def test_refuses_to_run_in_production(settings):
    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="production"):
        _seed()
    assert not User.objects.exists()
