"""Helpers for audit tests: writing events, waiting for the seal horizon, and tampering as a superuser."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from django.db import connection, transaction

from audit import services as audit
from audit.actions import AuditAction, Outcome, Purpose
from audit.models import AuditEvent
from audit.sealing import SealRound, seal_pending

HORIZON_TIMEOUT_SECONDS = 60


def write_events(count: int, **fields: object) -> list[AuditEvent]:
    """`count` events, each committed in its own transaction (as services write them)."""
    written = []
    for number in range(count):
        with transaction.atomic():
            written.append(
                audit.record(
                    action=fields.get("action", AuditAction.TRAIL_VIEWED),  # type: ignore[arg-type]
                    outcome=fields.get("outcome", Outcome.SUCCESS),  # type: ignore[arg-type]
                    purpose=fields.get("purpose", Purpose.OPERATIONS),  # type: ignore[arg-type]
                    actor_user_id=fields.get("actor_user_id", 7),  # type: ignore[arg-type]
                    actor_role="auditor",
                    patient_id=fields.get("patient_id", 1000 + number),  # type: ignore[arg-type]
                    object_type="chart",
                    object_id=number,
                    source_address="192.0.2.10",
                    details={"fields": ["allergies", "problems"], "n": number},
                )
            )
    return written


def current_horizon() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        return cursor.fetchone()[0]


def wait_for_horizon() -> None:
    """Wait until every event written so far is below the horizon, i.e. can be sealed.

    The horizon is cluster-wide: a transaction open in another database on the same server (another
    test run) holds it back. Waiting for it is what production's sealer does too, tick after tick.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT max(txid) FROM audit_auditevent")
        newest = cursor.fetchone()[0]
    deadline = time.monotonic() + HORIZON_TIMEOUT_SECONDS
    while newest is not None and current_horizon() <= newest:
        if time.monotonic() > deadline:
            raise AssertionError("The transaction horizon did not pass the newest event in time.")
        time.sleep(0.05)


def seal_everything(**options: int) -> SealRound:
    """Seal until no committed event is left pending."""
    wait_for_horizon()
    total = seal_pending(**options)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM audit_auditevent"
            " WHERE txid >= coalesce((SELECT max(txid_to) FROM audit_auditseal), 0)"
        )
        assert cursor.fetchone()[0] == 0
    return total


@contextlib.contextmanager
def triggers_off() -> Iterator[object]:
    """Tamper as the database superuser would: with triggers switched off for this session only."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        try:
            yield cursor
        finally:
            cursor.execute("SET session_replication_role = origin")
