"""SCH-3/SCH-4: booking, holds, confirmation, reschedule, cancel, no-show: each audited, each refusal specific."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from audit.models import AuditEvent
from records.access import chart_for
from records.models import CareRelationship
from scheduling import services
from scheduling.errors import HoldExpired, NotChangeable, OutsideAvailability, ParticipantBusy, SlotInPast, SlotTaken
from scheduling.models import AppointmentParticipant, AppointmentStatus, CancelReason, JoinLink
from tests.scheduling.factories import local


def book(personas, clinic, hhmm="09:00", patient=None, day=None):
    return services.appointment_book(
        visit_type=clinic.visit_type,
        practitioner=personas.practitioner,
        patient=patient or clinic.patient,
        start=local(day or clinic.tomorrow, hhmm),
        booked_by=personas.coordinator,
    )


def actions(appointment):
    return list(
        AuditEvent.objects.filter(object_type="appointment", object_id=str(appointment.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )


@pytest.mark.django_db(transaction=True)
def test_coordinator_books_blocks_both_calendars_and_opens_the_chart_to_the_practitioner(personas, clinic):
    appointment = book(personas, clinic)
    assert appointment.status == AppointmentStatus.BOOKED
    assert appointment.end - appointment.start == dt.timedelta(minutes=30)
    calendars = sorted(AppointmentParticipant.objects.filter(appointment=appointment).values_list("calendar", "active"))
    assert calendars == [(f"patient:{clinic.patient.pk}", True), (f"user:{personas.practitioner.pk}", True)]
    assert JoinLink.objects.filter(participant__appointment=appointment, revoked_at__isnull=True).count() == 2
    relationship = CareRelationship.objects.get(practitioner=personas.practitioner, patient=clinic.patient)
    assert relationship.valid_from <= appointment.start <= appointment.end <= relationship.valid_until
    personas.practitioner.is_verified = lambda: True
    # At the time of the visit the practitioner has the patient's chart (the relationship starts 24 h before).
    assert chart_for(personas.practitioner, clinic.patient.pk, now=appointment.start).via == "care_relationship"
    assert actions(appointment) == ["scheduling.appointment.booked"]


@pytest.mark.django_db
def test_the_same_slot_cannot_be_booked_twice(personas, clinic):
    book(personas, clinic)
    with pytest.raises(SlotTaken) as refused:
        book(personas, clinic, patient=clinic.other_patient)
    assert refused.value.code == "slot_taken"
    # An overlapping start is the same conflict.
    with pytest.raises(SlotTaken):
        book(personas, clinic, hhmm="09:15", patient=clinic.other_patient)
    assert AuditEvent.objects.filter(action="scheduling.appointment.booking_refused").count() == 2


@pytest.mark.django_db
def test_a_patient_already_busy_is_refused(personas, clinic, django_user_model):
    from tests.factories import PractitionerProfileFactory, StaffMembershipFactory
    from tests.scheduling.factories import weekly_rules

    colleague = PractitionerProfileFactory().user
    StaffMembershipFactory(user=colleague, establishment=personas.establishment)
    weekly_rules(
        practitioner=colleague, establishment=personas.establishment, visit_types=[clinic.visit_type], by=personas.admin
    )
    book(personas, clinic)
    with pytest.raises(ParticipantBusy) as refused:
        services.appointment_book(
            visit_type=clinic.visit_type,
            practitioner=colleague,
            patient=clinic.patient,
            start=local(clinic.tomorrow, "09:00"),
            booked_by=personas.coordinator,
        )
    assert refused.value.code == "participant_busy"


@pytest.mark.django_db
def test_bad_times_are_refused_with_their_own_reason_and_nothing_is_saved(personas, clinic):
    yesterday = clinic.tomorrow - dt.timedelta(days=2)
    with pytest.raises(SlotInPast):
        book(personas, clinic, day=yesterday)
    with pytest.raises(OutsideAvailability):
        book(personas, clinic, hhmm="15:00")  # the rules end at 12:00
    with pytest.raises(OutsideAvailability):
        book(personas, clinic, hhmm="11:45")  # would end at 12:15
    with pytest.raises(ValidationError) as naive:
        services.appointment_book(
            visit_type=clinic.visit_type,
            practitioner=personas.practitioner,
            patient=clinic.patient,
            start=dt.datetime.combine(clinic.tomorrow, dt.time(9)),
            booked_by=personas.coordinator,
        )
    assert naive.value.code == "naive_datetime"
    with pytest.raises(ValidationError) as not_practitioner:
        services.appointment_book(
            visit_type=clinic.visit_type,
            practitioner=personas.coordinator,
            patient=clinic.patient,
            start=local(clinic.tomorrow, "09:00"),
            booked_by=personas.coordinator,
        )
    assert not_practitioner.value.code == "not_a_practitioner"
    assert not AppointmentParticipant.objects.exists()


@pytest.mark.django_db
def test_hold_then_confirm_and_an_expired_hold_frees_the_slot(personas, clinic, settings):
    held = services.appointment_hold(
        visit_type=clinic.visit_type,
        practitioner=personas.practitioner,
        patient=clinic.patient,
        start=local(clinic.tomorrow, "10:00"),
        booked_by=personas.patient,
    )
    assert held.status == AppointmentStatus.HELD
    assert held.hold_expires_at - held.created_at <= dt.timedelta(minutes=settings.APPOINTMENT_HOLD_MINUTES, seconds=1)
    assert not JoinLink.objects.filter(participant__appointment=held).exists()  # links come with confirmation
    # While held, nobody else can take it.
    with pytest.raises(SlotTaken):
        book(personas, clinic, hhmm="10:00", patient=clinic.other_patient)
    confirmed = services.appointment_confirm(appointment=held, by=personas.patient)
    assert confirmed.status == AppointmentStatus.BOOKED
    assert services.appointment_confirm(appointment=held, by=personas.patient).status == AppointmentStatus.BOOKED

    second = services.appointment_hold(
        visit_type=clinic.visit_type,
        practitioner=personas.practitioner,
        patient=clinic.other_patient,
        start=local(clinic.tomorrow, "10:30"),
        booked_by=personas.coordinator,
    )
    type(second).objects.filter(pk=second.pk).update(hold_expires_at=timezone.now() - dt.timedelta(seconds=1))
    with pytest.raises(HoldExpired) as expired:
        services.appointment_confirm(appointment=second, by=personas.coordinator)
    assert expired.value.code == "hold_expired"
    # Someone else books the lapsed hold's time: the hold is expired on the way.
    taken = book(personas, clinic, hhmm="10:30", patient=clinic.patient)
    second.refresh_from_db()
    assert second.status == AppointmentStatus.EXPIRED
    assert taken.status == AppointmentStatus.BOOKED


@pytest.mark.django_db
def test_holds_release_expired_expires_only_lapsed_holds(personas, clinic):
    lapsed = services.appointment_hold(
        visit_type=clinic.visit_type,
        practitioner=personas.practitioner,
        patient=clinic.patient,
        start=local(clinic.tomorrow, "08:00"),
        booked_by=personas.patient,
    )
    fresh = services.appointment_hold(
        visit_type=clinic.visit_type,
        practitioner=personas.practitioner,
        patient=clinic.other_patient,
        start=local(clinic.tomorrow, "08:30"),
        booked_by=personas.coordinator,
    )
    type(lapsed).objects.filter(pk=lapsed.pk).update(hold_expires_at=timezone.now() - dt.timedelta(minutes=1))
    assert services.holds_release_expired() == 1
    lapsed.refresh_from_db()
    fresh.refresh_from_db()
    assert (lapsed.status, fresh.status) == (AppointmentStatus.EXPIRED, AppointmentStatus.HELD)
    assert not lapsed.participants.filter(active=True).exists()
    assert "scheduling.appointment.hold_expired" in actions(lapsed)


@pytest.mark.django_db
def test_reschedule_moves_every_calendar_and_keeps_the_history(personas, clinic):
    first = book(personas, clinic, hhmm="09:00")
    old_links = set(JoinLink.objects.filter(participant__appointment=first).values_list("pk", flat=True))
    moved = services.appointment_reschedule(
        appointment=first, start=local(clinic.tomorrow, "09:15"), by=personas.coordinator
    )
    first.refresh_from_db()
    assert first.status == AppointmentStatus.RESCHEDULED
    assert moved.rescheduled_from == first and moved.sequence == first.sequence + 1
    assert moved.start == local(clinic.tomorrow, "09:15")
    assert not first.participants.filter(active=True).exists()
    assert JoinLink.objects.filter(pk__in=old_links, revoked_at__isnull=True).count() == 0
    assert JoinLink.objects.filter(participant__appointment=moved, revoked_at__isnull=True).count() == 2
    # The freed time can be booked by someone else.
    book(personas, clinic, hhmm="09:45", patient=clinic.other_patient)
    with pytest.raises(NotChangeable):
        services.appointment_reschedule(
            appointment=first, start=local(clinic.tomorrow, "11:00"), by=personas.coordinator
        )
    assert actions(first)[-1] == "scheduling.appointment.rescheduled"


@pytest.mark.django_db
def test_a_failed_reschedule_changes_nothing(personas, clinic):
    first = book(personas, clinic, hhmm="09:00")
    book(personas, clinic, hhmm="10:00", patient=clinic.other_patient)
    with pytest.raises(SlotTaken):
        services.appointment_reschedule(
            appointment=first, start=local(clinic.tomorrow, "10:00"), by=personas.coordinator
        )
    first.refresh_from_db()
    assert first.status == AppointmentStatus.BOOKED
    assert first.participants.filter(active=True).count() == 2
    assert JoinLink.objects.filter(participant__appointment=first, revoked_at__isnull=True).count() == 2


@pytest.mark.django_db
def test_cancel_frees_the_time_ends_care_and_revokes_links(personas, clinic):
    appointment = book(personas, clinic)
    cancelled = services.appointment_cancel(
        appointment=appointment,
        reason=CancelReason.PATIENT_REQUEST,
        note="Viaja fuera de la ciudad",
        by=personas.coordinator,
    )
    assert cancelled.status == AppointmentStatus.CANCELLED and cancelled.cancel_note == "Viaja fuera de la ciudad"
    assert not JoinLink.objects.filter(participant__appointment=appointment, revoked_at__isnull=True).exists()
    assert CareRelationship.objects.get(patient=clinic.patient).ended_at is not None
    book(personas, clinic, patient=clinic.other_patient)  # the time is free again
    with pytest.raises(NotChangeable):
        services.appointment_cancel(appointment=appointment, reason=CancelReason.OTHER, by=personas.coordinator)
    with pytest.raises(ValidationError) as bad_reason:
        services.appointment_cancel(appointment=appointment, reason="because", by=personas.coordinator)
    assert bad_reason.value.code == "cancel_reason"
    event = AuditEvent.objects.get(action="scheduling.appointment.cancelled")
    assert "Viaja" not in str(event.details)  # free text never enters the trail


@pytest.mark.django_db
def test_no_show_only_after_the_start(personas, clinic):
    appointment = book(personas, clinic)
    with pytest.raises(ValidationError) as early:
        services.appointment_mark_no_show(appointment=appointment, by=personas.coordinator)
    assert early.value.code == "not_started"
    type(appointment).objects.filter(pk=appointment.pk).update(
        start=timezone.now() - dt.timedelta(minutes=20), end=timezone.now() + dt.timedelta(minutes=10)
    )
    marked = services.appointment_mark_no_show(appointment=appointment, by=personas.coordinator)
    assert marked.status == AppointmentStatus.NO_SHOW and marked.no_show_by == personas.coordinator
    assert actions(appointment)[-1] == "scheduling.appointment.no_show"
