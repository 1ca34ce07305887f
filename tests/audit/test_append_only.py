"""The database itself refuses to change or remove audit rows, whoever asks (AUD-2)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction

from audit.actions import AuditAction
from audit.models import AuditEvent, AuditSeal
from tests.audit.support import write_events

pytestmark = pytest.mark.django_db


def _refused(sql: str, params: list[Any] | None = None) -> str:
    """Run `sql` in a savepoint and return the database's refusal message."""
    with pytest.raises(DatabaseError) as refused, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
    return str(refused.value)


def _a_seal() -> AuditSeal:
    return AuditSeal.objects.create(
        seq=1,
        sealed_at=dt.datetime.now(dt.UTC),
        txid_from=0,
        txid_to=10,
        event_ids=[1],
        row_macs=bytes(32),
        seal_mac=bytes(32),
    )


def test_the_test_user_is_a_superuser_so_nothing_is_exempted_by_privileges():
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        assert cursor.fetchone()[0] is True


def test_events_cannot_be_updated_deleted_or_truncated():
    event = write_events(1)[0]
    assert "append-only: UPDATE on audit_auditevent" in _refused(
        "UPDATE audit_auditevent SET action = 'x' WHERE id = %s", [event.pk]
    )
    assert "append-only: DELETE on audit_auditevent" in _refused(
        "DELETE FROM audit_auditevent WHERE id = %s", [event.pk]
    )
    assert "append-only: TRUNCATE on audit_auditevent" in _refused("TRUNCATE audit_auditevent")
    # Nor through the ORM.
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(outcome="failure")
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    assert AuditEvent.objects.get(pk=event.pk).action == AuditAction.TRAIL_VIEWED


def test_truncate_is_refused_even_when_the_table_is_empty():
    assert not AuditEvent.objects.exists()
    assert "TRUNCATE" in _refused("TRUNCATE audit_auditevent, audit_auditseal")


def test_seals_cannot_be_updated_deleted_or_truncated():
    seal = _a_seal()
    assert "UPDATE on audit_auditseal" in _refused("UPDATE audit_auditseal SET txid_to = 11 WHERE seq = %s", [seal.seq])
    assert "DELETE on audit_auditseal" in _refused("DELETE FROM audit_auditseal WHERE seq = %s", [seal.seq])
    assert "TRUNCATE on audit_auditseal" in _refused("TRUNCATE audit_auditseal")


def test_the_database_sets_txid_whatever_the_application_passes():
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_auditevent (event_uuid, occurred_at, txid, action, outcome, actor_role, object_type,"
            " object_id, purpose, user_agent, request_id, details, row_mac)"
            " VALUES (%s, now(), 1, 'x', 'success', '', '', '', 'operations', '', '', '{}', %s) RETURNING txid",
            [uuid.uuid4(), bytes(32)],
        )
        stored = cursor.fetchone()[0]
        cursor.execute("SELECT pg_current_xact_id()::text::bigint")
        assert stored == cursor.fetchone()[0] != 1


def test_seal_ranges_and_numbers_are_constrained():
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditSeal.objects.create(
            seq=0, sealed_at=dt.datetime.now(dt.UTC), txid_from=0, txid_to=1, event_ids=[1], row_macs=b"", seal_mac=b""
        )
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditSeal.objects.create(
            seq=1, sealed_at=dt.datetime.now(dt.UTC), txid_from=5, txid_to=5, event_ids=[1], row_macs=b"", seal_mac=b""
        )
