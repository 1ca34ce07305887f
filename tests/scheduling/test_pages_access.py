"""SEC-1 on the staff scheduling pages: every page × every persona, allowed or denied exactly as the policy
says (denied looks like missing: 404; anonymous goes to sign-in); reads of patient data are audited."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from scheduling.models import AppointmentStatus, AvailabilityException, AvailabilityRule, JoinLink
from tests.scheduling.pages_support import PERSONAS, build_world


@pytest.fixture
def world(personas, clinic):
    return build_world(personas, clinic)


BOOKERS = {"coordinator", "admin"}
EDITORS = {"treating", "coordinator", "admin"}


def _appt(name):
    return lambda w: reverse(f"scheduling:{name}", args=[w.appointment.public_id])


PAGES = [
    ("calendar", lambda w: reverse("scheduling:calendar"), BOOKERS),
    ("calendar_week", lambda w: reverse("scheduling:calendar") + "?view=week", BOOKERS),
    ("today", lambda w: reverse("scheduling:today"), BOOKERS),
    # Every practitioner has a day of their own (the outsider's is empty: see below).
    ("my_day", lambda w: reverse("scheduling:my_day"), {"treating", "outsider"}),
    ("book", lambda w: reverse("scheduling:book"), BOOKERS),
    ("interconsultation", lambda w: reverse("scheduling:book_interconsultation"), BOOKERS),
    ("appointment", _appt("appointment"), EDITORS),
    ("appointment_cancel", _appt("appointment_cancel"), EDITORS),
    ("appointment_reschedule", _appt("appointment_reschedule"), EDITORS),
    # Own availability for practitioners; the chooser for coordinators and admins.
    ("my_availability", lambda w: reverse("scheduling:my_availability"), EDITORS | {"outsider"}),
    (
        "availability",
        lambda w: reverse("scheduling:availability", args=[w.personas.practitioner.pk]),
        EDITORS,
    ),
    ("visit_types", lambda w: reverse("scheduling:visit_types"), {"admin"}),
    ("visit_type_edit", lambda w: reverse("scheduling:visit_type_edit", args=[w.clinic.visit_type.pk]), {"admin"}),
]


def client_for(world, persona, login_as):
    user = world.user(persona)
    return Client() if user is None else login_as(user)


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize(("page", "url", "allowed"), PAGES, ids=[p[0] for p in PAGES])
def test_page_by_persona(world, login_as, persona, page, url, allowed):
    response = client_for(world, persona, login_as).get(url(world))
    if persona == "anonymous":
        assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:login"))
        return
    expected = 200 if persona in allowed else 404
    assert response.status_code == expected, (page, persona, response.status_code)


def test_outsiders_day_does_not_show_other_patients(world, login_as):
    response = login_as(world.personas.outsider).get(
        reverse("scheduling:my_day") + f"?date={world.clinic.tomorrow.isoformat()}"
    )
    assert response.status_code == 200
    assert "Quispe" not in response.content.decode()


def test_treating_practitioner_sees_the_appointment_in_their_day_with_the_chart_link(world, login_as):
    response = login_as(world.personas.practitioner).get(
        reverse("scheduling:my_day") + f"?date={world.clinic.tomorrow.isoformat()}"
    )
    html = response.content.decode()
    assert "Quispe" in html
    assert reverse("records:patient_chart", args=[world.clinic.patient.pk]) in html
    event = AuditEvent.objects.filter(action="scheduling.calendar.viewed", actor_user_id=world.personas.practitioner.pk)
    assert event.get().details["patients"] == [world.clinic.patient.pk]


def test_missing_appointment_looks_like_a_forbidden_one(world, login_as):
    client = login_as(world.personas.coordinator)
    assert client.get(reverse("scheduling:appointment", args=[uuid.uuid4()])).status_code == 404


def test_calendar_read_is_audited_with_patient_ids(world, login_as):
    client = login_as(world.personas.coordinator)
    url = reverse("scheduling:calendar") + f"?view=day&date={world.clinic.tomorrow.isoformat()}"
    response = client.get(url)
    assert "Quispe" in response.content.decode()
    event = AuditEvent.objects.filter(action="scheduling.calendar.viewed").latest("occurred_at")
    assert event.details["patients"] == [world.clinic.patient.pk]
    assert "Quispe" not in str(event.details)


def test_appointment_page_read_is_audited(world, login_as):
    login_as(world.personas.coordinator).get(reverse("scheduling:appointment", args=[world.appointment.public_id]))
    assert AuditEvent.objects.filter(
        action="scheduling.appointment.viewed", patient_id=world.clinic.patient.pk
    ).exists()


# POST-only actions: each persona outside the policy gets 404 and nothing changes.
ACTIONS = [
    ("no_show", lambda w: reverse("scheduling:appointment_no_show", args=[w.appointment.public_id]), EDITORS),
    (
        "resend_link",
        lambda w: reverse(
            "scheduling:join_link_resend",
            args=[w.appointment.public_id, w.appointment.participants.get(role="patient").pk],
        ),
        BOOKERS,
    ),
    (
        "revoke_link",
        lambda w: reverse(
            "scheduling:join_link_revoke",
            args=[w.appointment.public_id, w.appointment.participants.get(role="patient").pk],
        ),
        BOOKERS,
    ),
    (
        "rule_remove",
        lambda w: reverse("scheduling:availability_rule_remove", args=[w.personas.practitioner.pk, w.rule.pk]),
        EDITORS,
    ),
    (
        "exception_remove",
        lambda w: reverse(
            "scheduling:availability_exception_remove", args=[w.personas.practitioner.pk, w.exception.pk]
        ),
        EDITORS,
    ),
]


def _state(world):
    world.appointment.refresh_from_db()
    return (
        world.appointment.status,
        JoinLink.objects.filter(revoked_at__isnull=True).count(),
        JoinLink.objects.count(),
        AvailabilityRule.objects.count(),
        AvailabilityException.objects.count(),
    )


@pytest.mark.parametrize("persona", [p for p in PERSONAS if p not in EDITORS])
@pytest.mark.parametrize(("action", "url", "allowed"), ACTIONS, ids=[a[0] for a in ACTIONS])
def test_actions_denied(world, login_as, persona, action, url, allowed):
    before = _state(world)
    response = client_for(world, persona, login_as).post(url(world))
    if persona == "anonymous":
        assert response.status_code == 302
    else:
        assert response.status_code == 404
    assert _state(world) == before
    assert world.appointment.status == AppointmentStatus.BOOKED


def test_practitioner_cannot_resend_links(world, login_as):
    participant = world.appointment.participants.get(role="patient")
    url = reverse("scheduling:join_link_resend", args=[world.appointment.public_id, participant.pk])
    assert login_as(world.personas.practitioner).post(url).status_code == 404


def test_coordinator_elsewhere_cannot_see_or_manage(world, login_as):
    from accounts.models import Role
    from tests.factories import StaffMembershipFactory, confirmed_totp_device

    stranger = StaffMembershipFactory(
        user__email="coord.sur@example.test",
        user__role=Role.COORDINATOR,
        establishment=world.personas.other_establishment,
    ).user
    confirmed_totp_device(stranger)
    client = login_as(stranger)
    assert client.get(reverse("scheduling:appointment", args=[world.appointment.public_id])).status_code == 404
    assert client.get(reverse("scheduling:availability", args=[world.personas.practitioner.pk])).status_code == 404
    response = client.get(reverse("scheduling:calendar") + f"?establishment={world.personas.establishment.pk}")
    assert response.status_code == 400
    assert "Quispe" not in response.content.decode()


def test_coordinators_never_get_a_way_into_the_chart(world, login_as):
    chart = reverse("records:patient_chart", args=[world.clinic.patient.pk])
    page = login_as(world.personas.coordinator).get(
        reverse("scheduling:appointment", args=[world.appointment.public_id])
    )
    assert chart not in page.content.decode()
    page = login_as(world.personas.practitioner).get(
        reverse("scheduling:appointment", args=[world.appointment.public_id])
    )
    assert chart in page.content.decode()


def test_calendar_per_practitioner_only_offers_the_establishments_practitioners(world, login_as):
    client = login_as(world.personas.coordinator)
    day = world.clinic.tomorrow.isoformat()
    own = client.get(reverse("scheduling:calendar") + f"?practitioner={world.personas.practitioner.pk}&date={day}")
    assert own.status_code == 200 and "Quispe, Rosa" in own.content.decode()
    other = client.get(reverse("scheduling:calendar") + f"?practitioner={world.personas.outsider.pk}&date={day}")
    assert other.status_code == 400
    assert "Elija un profesional de la lista." in other.content.decode()
