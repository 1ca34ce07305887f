"""teleconsult.prepared: reads compiled once give what the ORM gives, with each call's own values."""

from __future__ import annotations

import datetime as dt
import uuid
from unittest import mock

import pytest
from django.db import DataError, connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.db.models.sql.compiler import SQLCompiler
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from scheduling.models import Appointment, AppointmentParticipant, AppointmentStatus, ParticipantRole
from teleconsult.prepared import PreparedRead, statement_cursor
from tests.video.signalling_support import make_visit
from video.models import Presence, PresenceState, VisitSession

pytestmark = pytest.mark.django_db


def _participant_read() -> PreparedRead[AppointmentParticipant]:
    return PreparedRead(
        lambda public_id, user_id: (
            AppointmentParticipant.objects.select_related("appointment__visit_session", "user")
            .filter(appointment__public_id=public_id)
            .filter(Q(user_id=user_id) | Q(patient__user_id=user_id))
            .order_by("-active", "pk")[:1]
        ),
        public_id=uuid.UUID,
        user_id=int,
    )


def _fields(instance: object) -> dict[str, object]:
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.concrete_fields}


def test_the_same_rows_and_related_objects_as_the_orm(personas):
    visit = make_visit(personas)
    appointment = visit.appointment
    read = _participant_read()
    for user in (personas.practitioner, personas.patient):
        found = read.first(public_id=appointment.public_id, user_id=user.pk)
        expected = (
            AppointmentParticipant.objects.select_related("appointment__visit_session", "user")
            .filter(appointment__public_id=appointment.public_id)
            .filter(Q(user=user) | Q(patient__user=user))
            .order_by("-active", "pk")
            .first()
        )
        assert found is not None and expected is not None
        assert _fields(found) == _fields(expected)
        assert _fields(found.appointment) == _fields(expected.appointment)
        # The room does not exist yet: the reverse one-to-one is known to be empty, no query to find out.
        with CaptureQueriesContext(connection) as queries:
            assert getattr(found.appointment, "visit_session", None) is None
        assert len(queries) == 0
        assert found.user is not None and found.user.pk == user.pk
    room = VisitSession.objects.create(appointment=appointment)
    found = read.first(public_id=appointment.public_id, user_id=personas.practitioner.pk)
    assert found is not None and found.appointment.visit_session.pk == room.pk


def test_each_call_runs_its_own_values_in_one_statement_without_compiling_again(personas):
    first = make_visit(personas)
    second = make_visit(personas, start=first.appointment.end + dt.timedelta(minutes=30))
    read = _participant_read()
    assert read.first(public_id=first.appointment.public_id, user_id=personas.patient.pk).appointment_id == (
        first.appointment.pk
    )
    with (
        mock.patch.object(SQLCompiler, "as_sql", side_effect=AssertionError("compiled again")),
        CaptureQueriesContext(connection) as queries,
    ):
        found = read.first(public_id=second.appointment.public_id, user_id=personas.patient.pk)
        nobody = read.first(public_id=second.appointment.public_id, user_id=personas.outsider.pk)
        unknown = read.first(public_id=uuid.uuid4(), user_id=personas.patient.pk)
    assert found is not None and found.appointment_id == second.appointment.pk
    assert found.role == ParticipantRole.PATIENT  # found through the patient's record (the user used twice)
    assert nobody is None and unknown is None
    assert len(queries) == 3


def test_annotations_and_deferred_fields(personas):
    visit = make_visit(personas)
    room = VisitSession.objects.create(appointment=visit.appointment)
    doctor = visit.participant(ParticipantRole.PRACTITIONER)
    Presence.objects.create(
        visit=room, participant=doctor, state=PresenceState.CONNECTED, channel_name="test!1", joined_at=room.created_at
    )
    read = PreparedRead(
        lambda appointment_id, visit_id: (
            AppointmentParticipant.objects.filter(appointment_id=appointment_id)
            .only("pk", "role")
            .annotate(
                in_call=Exists(
                    Presence.objects.filter(
                        visit_id=visit_id, participant=OuterRef("pk"), state=PresenceState.CONNECTED
                    )
                )
            )
            .order_by("pk")
        ),
        appointment_id=int,
        visit_id=int,
    )
    rows = read.all(appointment_id=visit.appointment.pk, visit_id=room.pk)
    assert {row.role: row.in_call for row in rows} == {
        ParticipantRole.PRACTITIONER: True,
        ParticipantRole.PATIENT: False,
    }
    assert all(row.get_deferred_fields() >= {"calendar", "during"} for row in rows)


def test_field_converters_apply_to_related_rows(personas):
    # The patient's phone is an encrypted column: read along with the appointment, it arrives decrypted.
    visit = make_visit(personas)
    visit.patient.phone = "+51 987 654 321"
    visit.patient.save()
    read = PreparedRead(
        lambda public_id: Appointment.objects.select_related("patient").filter(public_id=public_id),
        public_id=uuid.UUID,
    )
    found = read.first(public_id=visit.appointment.public_id)
    assert found is not None
    assert found.patient.phone == "+51 987 654 321"
    assert found.start == visit.appointment.start and found.start.tzinfo is not None


@pytest.mark.django_db(transaction=True)  # outside the test's own transaction, to see the refusal
def test_locking_reads_need_a_transaction(personas):
    visit = make_visit(personas)
    room = VisitSession.objects.create(appointment=visit.appointment)
    read = PreparedRead(lambda visit_id: VisitSession.objects.select_for_update().filter(pk=visit_id), visit_id=int)
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        assert read.first(visit_id=room.pk).pk == room.pk
    assert "FOR UPDATE" in queries[-1]["sql"]
    with pytest.raises(TransactionManagementError):
        read.first(visit_id=room.pk)


def test_misuse_is_refused():
    unused = PreparedRead(lambda visit_id: VisitSession.objects.filter(pk=1), visit_id=int)
    with pytest.raises(ValueError, match="visit_id"):
        unused.first(visit_id=1)
    values = PreparedRead(lambda visit_id: VisitSession.objects.filter(pk=visit_id).values("pk"), visit_id=int)
    with pytest.raises(TypeError):
        values.all(visit_id=1)
    read = PreparedRead(lambda visit_id: VisitSession.objects.filter(pk=visit_id), visit_id=int)
    with pytest.raises(TypeError):
        read.all(room=1)
    with pytest.raises(TypeError):
        PreparedRead(lambda when: VisitSession.objects.filter(created_at=when), when=float).all(when=1.0)


def _prepared_statements() -> set[str]:
    with connection.cursor() as cursor:  # a plain cursor: this session's prepared statements, as the server sees them
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return {row[0] for row in cursor.fetchall()}


def test_statement_cursor_has_the_server_keep_its_statements_planned(personas):
    visit = make_visit(personas)
    sql = "SELECT id FROM scheduling_appointment WHERE id = %s AND status = ANY(%s)"
    cursor = statement_cursor(connection)
    cursor.execute(sql, [visit.appointment.pk, [AppointmentStatus.BOOKED.value, AppointmentStatus.IN_PROGRESS.value]])
    assert cursor.fetchall() == [(visit.appointment.pk,)]
    assert "SELECT id FROM scheduling_appointment WHERE id = $1 AND status = ANY($2)" in _prepared_statements()
    cursor.execute(sql, [visit.appointment.pk + 1, [AppointmentStatus.BOOKED.value]])
    assert cursor.fetchall() == []
    # Django's own cursors are not prepared: only what went through statement_cursor is kept by the server.
    with connection.cursor() as plain:
        plain.execute("SELECT id, status FROM scheduling_appointment WHERE id = %s", [visit.appointment.pk])
    assert not any(statement.startswith("SELECT id, status") for statement in _prepared_statements())


def test_prepared_reads_are_logged_with_their_values_and_seen_by_execute_wrappers(personas):
    visit = make_visit(personas)
    read = _participant_read()
    seen: list[str] = []

    def wrapper(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        seen.append(sql)
        return execute(sql, params, many, context)

    with CaptureQueriesContext(connection) as queries, connection.execute_wrapper(wrapper):
        read.first(public_id=visit.appointment.public_id, user_id=personas.patient.pk)
        read.first(public_id=visit.appointment.public_id, user_id=personas.patient.pk)
    assert len(seen) == 2 and len(queries) == 2
    # The log shows the statement with this call's values (psycopg keeps no text of a prepared statement's run).
    assert all(str(visit.appointment.public_id).replace("-", "") in query["sql"].replace("-", "") for query in queries)
    assert any(
        statement.startswith('SELECT "scheduling_appointmentparticipant"') for statement in _prepared_statements()
    )


def test_a_failed_statement_leaves_the_connection_usable(personas):
    visit = make_visit(personas)
    cursor = statement_cursor(connection)
    with pytest.raises(DataError), transaction.atomic():
        cursor.execute("SELECT %s::int / 0", [1])
    cursor.execute("SELECT id FROM scheduling_appointment WHERE id = %s", [visit.appointment.pk])
    assert cursor.fetchall() == [(visit.appointment.pk,)]
