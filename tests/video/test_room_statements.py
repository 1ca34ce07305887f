"""How many SQL statements joining a visit and admitting the patient take. Each one lies between a patient
arriving and the call starting (docs/benchmarks.md, join to first frame), so the counts are held here: a change
that adds statements to these paths fails, and says which."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.actions import AuditAction
from audit.models import AuditEvent
from records.models import CareRelationship, CareSource, Encounter
from scheduling.models import AppointmentStatus, ParticipantRole
from tests.video.signalling_support import make_visit
from video.models import Presence, PresenceState, VisitSession, VisitStatus
from video.services import visit_admit, visit_connect, visit_participant_for

pytestmark = pytest.mark.django_db

# Counted inside the test's transaction, where each service's own transaction is a savepoint: SAVEPOINT and
# RELEASE stand for production's BEGIN and COMMIT, so the totals are the same there.
# The practitioner opening the room: second factor, participant (with the room, if any), the room created and
# locked, who is in it, their presence, one audit event.
FIRST_JOIN = 9
# The patient arriving at the open room: participant, consent, the room locked, who is in it, their presence,
# one audit event, the hosts whose day lists hear that someone waits.
PATIENT_JOIN = 9
# The first admit: the room locked (with the appointment's patient and establishment), the hosts, the waiting
# presence, the encounter (lock, look-up, row, modality, participant, care relationship), the appointment in
# progress, the room and the presence changed, and the four audit events in one statement. It was 35.
FIRST_ADMIT = 15


def _staff_session(user):
    device = TOTPDevice.objects.get(user=user, confirmed=True)
    return {DEVICE_ID_SESSION_KEY: device.persistent_id}


def _join(visit, user, session, channel):
    participant, signed_in = visit_participant_for(
        public_id=str(visit.appointment.public_id), user=user, session=session
    )
    return visit_connect(participant=participant, user=signed_in, channel_name=channel)


def test_joining_and_admitting_take_a_fixed_number_of_statements(personas, django_assert_max_num_queries):
    visit = make_visit(personas)
    practitioner = personas.practitioner
    session = _staff_session(practitioner)
    with django_assert_max_num_queries(FIRST_JOIN):
        host = _join(visit, practitioner, session, "test!host")
    with django_assert_max_num_queries(PATIENT_JOIN):
        patient = _join(visit, personas.patient, {}, "test!patient")
    assert patient.state == PresenceState.WAITING
    with CaptureQueriesContext(connection) as admit:
        visit_admit(
            visit_id=host.visit_id,
            by_participant_id=host.participant_id,
            user=practitioner,
            participant_id=patient.participant_id,
        )
    assert len(admit.captured_queries) <= FIRST_ADMIT, "\n".join(q["sql"] for q in admit.captured_queries)
    # Everything the admit did before is still done.
    room = VisitSession.objects.select_related("appointment", "encounter").get(pk=host.visit_id)
    assert room.status == VisitStatus.IN_PROGRESS and room.started_at is not None
    assert room.appointment.status == AppointmentStatus.IN_PROGRESS
    assert room.encounter == Encounter.objects.get(appointment_ref=str(visit.appointment.public_id))
    assert list(room.encounter.participants.values_list("user_id", "role")) == [(practitioner.pk, "attending")]
    assert CareRelationship.objects.filter(
        patient=visit.patient, practitioner=practitioner, source=CareSource.ENCOUNTER, source_id=str(room.encounter.pk)
    ).exists()
    assert Presence.objects.get(visit=room, participant_id=patient.participant_id).state == PresenceState.CONNECTED
    # Its four events went in in one statement, in the order they happened.
    inserts = [q for q in admit.captured_queries if q["sql"].startswith("INSERT INTO audit_auditevent")]
    assert len(inserts) == 1
    events = list(AuditEvent.objects.filter(patient_id=visit.patient.pk).order_by("id").values_list("action"))
    assert [action for (action,) in events[-4:]] == [
        AuditAction.CARE_RELATIONSHIP_STARTED,
        AuditAction.ENCOUNTER_STARTED,
        AuditAction.APPOINTMENT_VISIT_STARTED,
        AuditAction.VISIT_ADMITTED,
    ]


def admitted_call(personas):
    """A visit in progress: the practitioner opened the room and admitted the patient. Returns the room and
    both joins."""
    visit = make_visit(personas)
    host = _join(visit, personas.practitioner, _staff_session(personas.practitioner), "test!host")
    patient = _join(visit, personas.patient, {}, "test!patient")
    visit_admit(
        visit_id=host.visit_id,
        by_participant_id=host.participant_id,
        user=personas.practitioner,
        participant_id=patient.participant_id,
    )
    return visit, host, patient


def test_a_patient_joining_a_running_visit_again_takes_no_more(personas, django_assert_max_num_queries):
    visit, _host, _patient = admitted_call(personas)
    # A second tab (or a phone back from a network change) of the admitted patient comes straight in.
    with django_assert_max_num_queries(PATIENT_JOIN):
        again = _join(visit, personas.patient, {}, "test!patient-again")
    assert again.state == PresenceState.CONNECTED
    assert visit.participant(ParticipantRole.PATIENT).pk == again.participant_id
