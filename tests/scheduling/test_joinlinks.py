"""Join links from the patient's side (SCH-7): opening inside the window, verification with its lock, and the
lost-link recovery that answers everyone alike. Also the helpers other join-link tests build on."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.utils import timezone

from audit.actions import AuditAction, Outcome
from audit.models import AuditEvent
from records.models import DocumentType
from scheduling.errors import LinkClosed, LinkInvalid, LinkLocked, LinkNotOpenYet, VerificationFailed
from scheduling.joinlinks import (
    VERIFICATION_LIMIT,
    join_link_issue,
    join_link_open,
    join_link_recover,
    join_link_revoke,
    join_link_verify,
    join_link_window,
)
from scheduling.models import (
    Appointment,
    AppointmentParticipant,
    AppointmentStatus,
    JoinLink,
    Modality,
    Notification,
    NotificationKind,
    ParticipantRole,
    ServiceType,
    VisitType,
)
from tests.frontend.conftest import register

BIRTH = dt.date(1984, 3, 9)
DNI = "10117410"


def make_appointment(personas, patient, *, start=None, minutes=20, status=AppointmentStatus.BOOKED):
    """A booked appointment of `patient` with the practitioner persona, built directly in the database."""
    start = start or timezone.now() + dt.timedelta(minutes=10)
    visit_type, _ = VisitType.objects.get_or_create(
        establishment=personas.establishment,
        name="Consulta de medicina general",
        defaults={
            "specialty": "Medicina general",
            "service_type": ServiceType.TELECONSULTA,
            "modality": Modality.VIDEO,
            "duration_minutes": minutes,
        },
    )
    appointment = Appointment.objects.create(
        establishment=personas.establishment,
        visit_type=visit_type,
        service_type=visit_type.service_type,
        modality=visit_type.modality,
        patient=patient,
        start=start,
        end=start + dt.timedelta(minutes=minutes),
        status=status,
        hold_expires_at=start if status == AppointmentStatus.HELD else None,
        booked_by=personas.coordinator,
    )
    during = DateTimeTZRange(appointment.start, appointment.end)
    AppointmentParticipant.objects.create(
        appointment=appointment,
        role=ParticipantRole.PATIENT,
        patient=patient,
        user=patient.user,
        establishment=personas.establishment,
        calendar=f"patient:{patient.pk}",
        during=during,
    )
    AppointmentParticipant.objects.create(
        appointment=appointment,
        role=ParticipantRole.PRACTITIONER,
        user=personas.practitioner,
        establishment=personas.establishment,
        calendar=f"user:{personas.practitioner.pk}",
        during=during,
    )
    return appointment


def patient_participant(appointment):
    return appointment.participants.get(role=ParticipantRole.PATIENT)


def issue(appointment, role=ParticipantRole.PATIENT, by=None):
    return join_link_issue(participant=appointment.participants.get(role=role), by=by)


@pytest.fixture
def walk_in(personas):
    """A patient without an account: Rosa Quispe, DNI 10117410, born 1984-03-09."""
    return register(personas)


@pytest.fixture
def appointment(personas, walk_in):
    return make_appointment(personas, walk_in)


def refusals(reason):
    return AuditEvent.objects.filter(action=AuditAction.JOIN_LINK_REFUSED, details__reason=reason)


def test_open_records_the_use_and_audits(appointment):
    token = issue(appointment)
    link = join_link_open(token=token)
    assert link.participant.appointment == appointment
    assert link.first_used_at is not None and link.last_used_at == link.first_used_at
    event = AuditEvent.objects.get(action=AuditAction.JOIN_LINK_OPENED)
    assert event.patient_id == appointment.patient_id and token not in str(event.details)
    again = join_link_open(token=token, now=timezone.now() + dt.timedelta(minutes=1))
    again.refresh_from_db()
    assert again.first_used_at == link.first_used_at and again.last_used_at > link.first_used_at


@pytest.mark.parametrize("token", ["", "x", "a" * 43, "a" * 5000])
def test_unknown_token(db, token):
    with pytest.raises(LinkInvalid) as caught:
        join_link_open(token=token)
    assert not getattr(caught.value, "gone", False) and caught.value.code == "link_invalid"
    assert refusals("unknown").count() == 1


def test_revoked_token_and_reuse_after_reissue(appointment):
    first = issue(appointment)
    join_link_open(token=first)
    second = issue(appointment)  # a new link revokes the first
    with pytest.raises(LinkInvalid) as caught:
        join_link_open(token=first)
    assert caught.value.gone
    assert join_link_open(token=second)
    join_link_revoke(participant=patient_participant(appointment), by=None)
    with pytest.raises(LinkInvalid):
        join_link_open(token=second)
    assert refusals("revoked").count() == 2
    assert not AuditEvent.objects.filter(details__icontains=first).exists()


@pytest.mark.parametrize("status", [AppointmentStatus.CANCELLED, AppointmentStatus.RESCHEDULED])
def test_link_of_an_appointment_that_no_longer_stands(appointment, status):
    token = issue(appointment)
    Appointment.objects.filter(pk=appointment.pk).update(status=status)
    with pytest.raises(LinkInvalid) as caught:
        join_link_open(token=token)
    assert caught.value.gone and refusals("appointment_not_active").count() == 1


def test_window_early_and_late(appointment, settings):
    settings.JOIN_LINK_OPENS_MINUTES_BEFORE = 15
    settings.JOIN_LINK_GRACE_MINUTES_AFTER = 30
    opens_at, closes_at = join_link_window(appointment)
    assert opens_at == appointment.start - dt.timedelta(minutes=15)
    assert closes_at == appointment.end + dt.timedelta(minutes=30)
    token = issue(appointment)
    with pytest.raises(LinkNotOpenYet) as early:
        join_link_open(token=token, now=opens_at - dt.timedelta(seconds=1))
    assert early.value.opens_at == opens_at
    assert join_link_open(token=token, now=opens_at)
    assert join_link_open(token=token, now=closes_at)
    with pytest.raises(LinkClosed):
        join_link_open(token=token, now=closes_at + dt.timedelta(seconds=1))
    assert refusals("not_open_yet").count() == 1 and refusals("closed").count() == 1
    assert JoinLink.objects.get().verified_at is None


def test_verify_with_birth_date_and_document_digits(appointment):
    link = join_link_open(token=issue(appointment))
    join_link_verify(link=link, birth_date=BIRTH, document_last_digits=" 7410 ")
    link.refresh_from_db()
    assert link.verified_at is not None and link.verification_failures == 0
    assert AuditEvent.objects.filter(action=AuditAction.JOIN_LINK_VERIFIED, patient_id=appointment.patient_id).exists()


@pytest.mark.parametrize(
    ("birth", "digits"),
    [(BIRTH, "7411"), (BIRTH + dt.timedelta(days=1), "7410"), (None, "7410"), (BIRTH, ""), (BIRTH, "17410")],
)
def test_wrong_verification_counts_a_failure(appointment, birth, digits):
    link = join_link_open(token=issue(appointment))
    with pytest.raises(VerificationFailed) as caught:
        join_link_verify(link=link, birth_date=birth, document_last_digits=digits)
    assert caught.value.code == "verification_failed"
    link.refresh_from_db()
    assert link.verification_failures == 1 and link.verified_at is None
    event = AuditEvent.objects.get(action=AuditAction.JOIN_LINK_VERIFICATION_FAILED)
    assert event.outcome == Outcome.FAILURE and "7410" not in str(event.details)


def test_five_failures_lock_the_link_until_a_new_one_is_issued(appointment):
    link = join_link_open(token=issue(appointment))
    for _ in range(1, VERIFICATION_LIMIT):
        with pytest.raises(VerificationFailed):
            join_link_verify(link=link, birth_date=BIRTH, document_last_digits="0000")
    with pytest.raises(LinkLocked):
        join_link_verify(link=link, birth_date=BIRTH, document_last_digits="0000")
    # Locked: even the right answer is refused now.
    with pytest.raises(LinkLocked):
        join_link_verify(link=link, birth_date=BIRTH, document_last_digits="7410")
    link.refresh_from_db()
    assert link.verified_at is None and link.verification_failures == VERIFICATION_LIMIT
    fresh = join_link_open(token=issue(appointment))
    join_link_verify(link=fresh, birth_date=BIRTH, document_last_digits="7410")


def test_verification_of_a_revoked_link(appointment):
    link = join_link_open(token=issue(appointment))
    issue(appointment)
    with pytest.raises(LinkInvalid):
        join_link_verify(link=link, birth_date=BIRTH, document_last_digits="7410")


def _recover(**overrides):
    values = {"document_type": DocumentType.DNI, "number": DNI, "birth_date": BIRTH, "source_address": "198.51.100.7"}
    return join_link_recover(**{**values, **overrides})


def test_recovery_issues_a_fresh_link_and_sends_it(appointment, django_capture_on_commit_callbacks):
    old = issue(appointment)
    with django_capture_on_commit_callbacks(execute=True):
        assert _recover() is None
    # After commit, the fresh link is queued for the contact on file (never shown on the page).
    sent = Notification.objects.filter(participant=patient_participant(appointment), kind=NotificationKind.JOIN_LINK)
    assert sent.exists()
    with pytest.raises(LinkInvalid):
        join_link_open(token=old)
    live = JoinLink.objects.get(revoked_at__isnull=True)
    assert live.participant == patient_participant(appointment) and join_link_open(token=live.token)
    event = AuditEvent.objects.get(action=AuditAction.JOIN_LINK_RECOVERY_REQUESTED)
    assert event.outcome == Outcome.SUCCESS and event.details == {"reason": "sent"}
    assert event.source_address == "198.51.100.7" and DNI not in str(event.details)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"birth_date": BIRTH + dt.timedelta(days=1)}, "no_match"),
        ({"number": "44556677"}, "no_match"),
        ({"document_type": DocumentType.FOREIGNER_CARD, "number": "X1234567"}, "no_match"),
        ({"birth_date": None}, "no_match"),
    ],
)
def test_recovery_without_a_match_answers_the_same_and_issues_nothing(appointment, overrides, reason):
    issue(appointment)
    assert _recover(**overrides) is None
    assert JoinLink.objects.count() == 1
    event = AuditEvent.objects.get(action=AuditAction.JOIN_LINK_RECOVERY_REQUESTED)
    assert event.details == {"reason": reason} and event.patient_id is None


def test_recovery_without_an_upcoming_appointment(personas, walk_in):
    make_appointment(personas, walk_in, start=timezone.now() - dt.timedelta(days=2))
    assert _recover() is None
    assert not JoinLink.objects.exists()
    assert AuditEvent.objects.get(action=AuditAction.JOIN_LINK_RECOVERY_REQUESTED).details == {
        "reason": "no_upcoming_appointment"
    }


def test_recovery_with_a_malformed_document_is_a_form_error(db):
    with pytest.raises(ValidationError):
        _recover(number="12")
    assert not AuditEvent.objects.filter(action=AuditAction.JOIN_LINK_RECOVERY_REQUESTED).exists()


def test_recovery_is_throttled_per_address_and_per_patient(appointment):
    for _ in range(3):
        _recover(source_address="203.0.113.9")
    assert JoinLink.objects.count() == 3
    _recover(source_address="203.0.113.10")  # the patient's own limit
    assert JoinLink.objects.count() == 3
    for _ in range(2):
        _recover(number="44556677", source_address="203.0.113.9")
    _recover(source_address="203.0.113.9")  # the address's limit, even with the right data
    assert JoinLink.objects.count() == 3
    reasons = list(
        AuditEvent.objects.filter(action=AuditAction.JOIN_LINK_RECOVERY_REQUESTED)
        .order_by("id")
        .values_list("details__reason", flat=True)
    )
    assert reasons == ["sent", "sent", "sent", "throttled", "no_match", "no_match", "throttled"]
