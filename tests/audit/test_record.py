"""audit.record(): what it stores, what it refuses at the call site, and that it lives and dies with its transaction."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from audit import services as audit
from audit.actions import AuditAction, Outcome, Purpose
from audit.integrity import MAC_FIELDS, row_mac
from audit.models import AuditEvent
from audit.services import AuditError
from teleconsult import request_context

pytestmark = pytest.mark.django_db


def _stored_values(event: AuditEvent) -> dict[str, object]:
    fresh = AuditEvent.objects.get(pk=event.pk)
    return {name: getattr(fresh, name) for name in MAC_FIELDS}


def test_record_stores_the_event_with_its_mac_and_transaction_id():
    event = audit.record(
        action=AuditAction.USER_CREATED,
        actor_user_id=3,
        actor_role="clinic_admin",
        actor_establishment_id=9,
        patient_id=44,
        object_type="user",
        object_id=12,
        purpose=Purpose.OPERATIONS,
        details={"role": "coordinator", "establishments": [9]},
        source_address="203.0.113.5",
        request_id="req-12345678",
        user_agent="Mozilla/5.0",
    )
    fresh = AuditEvent.objects.get(pk=event.pk)
    assert (fresh.action, fresh.outcome, fresh.object_id) == ("accounts.user.created", "success", "12")
    assert fresh.details == {"role": "coordinator", "establishments": [9]}
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_xact_id()::text::bigint")
        assert fresh.txid == event.txid == cursor.fetchone()[0]
    # The MAC recomputed from what the database gives back equals the one written.
    assert bytes(fresh.row_mac) == event.row_mac == row_mac(_stored_values(event))


def test_record_takes_request_id_address_and_agent_from_the_request_context():
    token = request_context.activate(
        request_context.RequestContext(request_id="abcdef123456", source_address="::ffff:198.51.100.7", user_agent="UA")
    )
    try:
        event = audit.record(action=AuditAction.SIGNOUT)
    finally:
        request_context.deactivate(token)
    fresh = AuditEvent.objects.get(pk=event.pk)
    # IPv4 clients seen through a dual-stack socket are recorded as IPv4.
    assert (fresh.request_id, fresh.source_address, fresh.user_agent) == ("abcdef123456", "198.51.100.7", "UA")
    assert bytes(fresh.row_mac) == row_mac(_stored_values(event))


def test_secret_details_are_masked():
    event = audit.record(
        action=AuditAction.OTP_FAILED, details={"otp_code": "123456", "password": "hunter2", "reason": "x"}
    )
    assert AuditEvent.objects.get(pk=event.pk).details == {"otp_code": "***", "password": "***", "reason": "x"}


@pytest.mark.parametrize(
    "arguments",
    [
        {"action": "accounts.signin.succeeded"},  # a string, not the enum: codes come from AuditAction only
        {"action": "made.up.code"},
        {"action": AuditAction.SIGNOUT, "outcome": "ok"},
        {"action": AuditAction.SIGNOUT, "purpose": "curiosity"},
        {"action": AuditAction.SIGNOUT, "details": {"weight": 70.5}},
        {"action": AuditAction.SIGNOUT, "details": {"note": {"text": "nested"}}},
        {"action": AuditAction.SIGNOUT, "details": {"ids": [1, {"a": 2}]}},
        {"action": AuditAction.SIGNOUT, "details": ["not", "a", "dict"]},
        {"action": AuditAction.SIGNOUT, "details": {"x" * 65: 1}},
        {"action": AuditAction.SIGNOUT, "details": {"field": "nul\x00byte"}},
        {"action": AuditAction.SIGNOUT, "actor_user_id": "12"},
        {"action": AuditAction.SIGNOUT, "patient_id": True},
        {"action": AuditAction.SIGNOUT, "patient_id": 2**63},
        {"action": AuditAction.SIGNOUT, "object_id": 1.5},
        {"action": AuditAction.SIGNOUT, "actor_role": None},
    ],
)
def test_malformed_calls_are_refused_at_the_call_site(arguments):
    before = AuditEvent.objects.count()
    with pytest.raises(AuditError):
        audit.record(**arguments)
    assert AuditEvent.objects.count() == before


def test_an_event_rolls_back_with_its_transaction():
    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        audit.record(action=AuditAction.ROLE_CHANGED, object_type="user", object_id=5)
        raise Boom
    assert not AuditEvent.objects.filter(action=AuditAction.ROLE_CHANGED).exists()


def test_failure_outcome_and_purpose_are_stored():
    event = audit.record(action=AuditAction.SIGNIN_FAILED, outcome=Outcome.FAILURE, purpose=Purpose.EMERGENCY)
    fresh = AuditEvent.objects.get(pk=event.pk)
    assert (fresh.outcome, fresh.purpose) == ("failure", "emergency")
