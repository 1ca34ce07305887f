"""Sealing and verification: an intact trail verifies, and every kind of tampering is named (AUD-2).

Tampering is done as the database superuser with triggers switched off (session_replication_role =
replica), the strongest attacker short of one holding the audit key. These tests commit for real
(transaction=True): sealing only covers transactions that have ended.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.db import transaction

from audit import services as audit
from audit.actions import AuditAction
from audit.integrity import GENESIS_MAC, seal_mac
from audit.models import AuditEvent, AuditSeal
from audit.verification import Problem, verify_trail
from tests.audit.support import seal_everything, triggers_off, write_events

pytestmark = pytest.mark.django_db(transaction=True)

_CONTENT = (
    "event_uuid, occurred_at, action, outcome, actor_user_id, actor_role, actor_establishment_id, patient_id,"
    " object_type, object_id, purpose, source_address, user_agent, request_id, details, row_mac"
)


def _sealed_trail(count: int = 12, per_seal: int = 5) -> list[AuditEvent]:
    events = write_events(count)
    seal_everything(max_events_per_seal=per_seal)
    return events


def _in_trail_order(events: list[AuditEvent]) -> list[int]:
    return list(
        AuditEvent.objects.filter(pk__in=[e.pk for e in events]).order_by("txid", "id").values_list("pk", flat=True)
    )


def test_an_intact_trail_verifies_with_seals_and_pending_events():
    events = _sealed_trail(12, per_seal=5)
    assert AuditSeal.objects.count() == 3  # 5 + 5 + 2
    write_events(2)  # written after the last seal: pending, checked by their MAC only
    report = verify_trail()
    assert report.ok, report.finding
    assert (report.seals, report.sealed_events, report.pending_events) == (3, 12, 2)
    listed = [event_id for seal in AuditSeal.objects.order_by("seq") for event_id in seal.event_ids]
    assert listed == _in_trail_order(events)


def test_sealing_continues_the_chain_and_never_seals_an_event_twice():
    _sealed_trail(4)
    write_events(3)
    second = seal_everything()
    assert (second.seals, second.events) == (1, 3)
    seals = list(AuditSeal.objects.order_by("seq"))
    assert [s.seq for s in seals] == [1, 2]
    assert seals[1].txid_from == seals[0].txid_to
    assert seal_everything().seals == 0
    assert verify_trail().ok


def test_an_edited_row_is_named():
    events = _sealed_trail()
    with triggers_off() as cursor:
        cursor.execute("UPDATE audit_auditevent SET object_id = '999' WHERE id = %s", [events[6].pk])
    report = verify_trail()
    assert report.finding is not None
    assert (report.finding.problem, report.finding.event_id) == (Problem.EDITED, events[6].pk)
    assert f"Event {events[6].pk}: row edited" in report.finding.message


def test_the_first_bad_event_in_trail_order_is_named():
    events = _sealed_trail()
    order = _in_trail_order(events)
    with triggers_off() as cursor:
        cursor.execute("UPDATE audit_auditevent SET outcome = 'failure' WHERE id = ANY(%s)", [[order[8], order[3]]])
    assert verify_trail().finding.event_id == order[3]


def test_an_edited_pending_row_is_named():
    _sealed_trail(3)
    pending = write_events(2)
    with triggers_off() as cursor:
        cursor.execute("UPDATE audit_auditevent SET details = '{}' WHERE id = %s", [pending[1].pk])
    finding = verify_trail().finding
    assert (finding.problem, finding.event_id) == (Problem.EDITED, pending[1].pk)


def test_a_deleted_row_is_named():
    events = _sealed_trail()
    with triggers_off() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [events[7].pk])
    finding = verify_trail().finding
    assert (finding.problem, finding.event_id) == (Problem.DELETED, events[7].pk)
    assert "listed in seal #2, missing from the table" in finding.message


def test_the_last_sealed_row_deleted_is_named():
    events = _sealed_trail()
    last = _in_trail_order(events)[-1]
    with triggers_off() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [last])
    finding = verify_trail().finding
    assert (finding.problem, finding.event_id) == (Problem.DELETED, last)


def test_a_row_inserted_into_a_sealed_range_is_named():
    events = _sealed_trail()
    victim = AuditEvent.objects.get(pk=events[4].pk)
    with triggers_off() as cursor:
        # A copy of a sealed row under a new uuid, placed in the sealed range by its transaction id.
        cursor.execute(
            f"INSERT INTO audit_auditevent (txid, {_CONTENT}) SELECT txid, %s, occurred_at, action, outcome,"
            " actor_user_id, actor_role, actor_establishment_id, patient_id, object_type, object_id, purpose,"
            " source_address, user_agent, request_id, details, row_mac FROM audit_auditevent WHERE id = %s"
            " RETURNING id",
            [uuid.uuid4(), victim.pk],
        )
        forged = cursor.fetchone()[0]
    finding = verify_trail().finding
    assert (finding.problem, finding.event_id) == (Problem.INSERTED, forged)
    assert "row inserted" in finding.message


def test_a_row_inserted_below_the_horizon_after_the_last_seal_is_named():
    events = _sealed_trail(3)
    with triggers_off() as cursor:
        cursor.execute(
            f"INSERT INTO audit_auditevent (id, txid, {_CONTENT}) SELECT id + 1000, txid, %s, occurred_at, action,"
            " outcome, actor_user_id, actor_role, actor_establishment_id, patient_id, object_type, object_id,"
            " purpose, source_address, user_agent, request_id, details, row_mac FROM audit_auditevent"
            " WHERE id = %s RETURNING id",
            [uuid.uuid4(), _in_trail_order(events)[-1]],
        )
        forged = cursor.fetchone()[0]
    finding = verify_trail().finding
    assert (finding.problem, finding.event_id) == (Problem.INSERTED, forged)


def test_rows_swapped_are_named():
    events = _sealed_trail()
    first, second = _in_trail_order(events)[2], _in_trail_order(events)[5]
    columns = [c.strip() for c in _CONTENT.split(",")]
    assignments = ", ".join(f"{c} = other.{c}" for c in columns)
    with triggers_off() as cursor:
        # Whole contents, MACs included, exchanged between two ids (via a placeholder uuid: it is unique).
        cursor.execute("CREATE TEMP TABLE swap AS SELECT * FROM audit_auditevent WHERE id = ANY(%s)", [[first, second]])
        cursor.execute("UPDATE audit_auditevent SET event_uuid = %s WHERE id = %s", [uuid.uuid4(), first])
        for target, source in ((second, first), (first, second)):
            cursor.execute(
                f"UPDATE audit_auditevent SET {assignments} FROM swap AS other"
                " WHERE audit_auditevent.id = %s AND other.id = %s",
                [target, source],
            )
    assert AuditEvent.objects.get(pk=first).object_id == str(events[[e.pk for e in events].index(second)].object_id)
    finding = verify_trail().finding
    assert (finding.problem, finding.event_id) == (Problem.REORDERED, first)
    assert "swapped or reordered" in finding.message


def test_a_changed_transaction_id_reorders_the_trail_and_is_named():
    events = _sealed_trail()
    order = _in_trail_order(events)
    with triggers_off() as cursor:
        cursor.execute("UPDATE audit_auditevent SET txid = txid + 1000000 WHERE id = %s", [order[1]])
    finding = verify_trail().finding
    assert finding.problem == Problem.REORDERED
    assert finding.event_id == order[1]


def test_an_altered_seal_breaks_the_chain():
    _sealed_trail()
    with triggers_off() as cursor:
        cursor.execute("UPDATE audit_auditseal SET event_ids = event_ids[1:4] WHERE seq = 2")
    finding = verify_trail().finding
    assert (finding.problem, finding.seal_seq) == (Problem.SEAL_BROKEN, 2)
    assert "Seal chain broken at seal #2" in finding.message


def test_a_missing_seal_breaks_the_chain():
    _sealed_trail()
    with triggers_off() as cursor:
        cursor.execute("DELETE FROM audit_auditseal WHERE seq = 2")
    finding = verify_trail().finding
    assert finding.problem == Problem.SEAL_BROKEN
    assert "seal #2 is missing" in finding.message


def test_a_seal_forged_without_the_key_breaks_the_chain():
    events = _sealed_trail(3)
    seal = AuditSeal.objects.get(seq=1)
    forged_mac = seal_mac(
        previous_mac=GENESIS_MAC,
        seq=1,
        sealed_at=seal.sealed_at,
        txid_from=seal.txid_from,
        txid_to=seal.txid_to,
        event_ids=seal.event_ids[:2],
        row_macs=bytes(seal.row_macs)[:64],
        key=b"k" * 32,
    )
    with triggers_off() as cursor:
        cursor.execute(
            "UPDATE audit_auditseal SET event_ids = %s, row_macs = %s, seal_mac = %s WHERE seq = 1",
            [seal.event_ids[:2], bytes(seal.row_macs)[:64], forged_mac],
        )
        cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [_in_trail_order(events)[-1]])
    assert verify_trail().finding.problem == Problem.SEAL_BROKEN


def test_removing_the_newest_round_of_seals_needs_an_anchor_to_be_seen():
    _sealed_trail(5)
    write_events(5)
    seal_everything()
    head = verify_trail()
    assert head.head_seq == 2
    with triggers_off() as cursor:
        cursor.execute("DELETE FROM audit_auditseal WHERE seq = 2")
    # The chain alone cannot tell: the second round's events now look pending, and their MACs are fine
    # (a documented limit, docs/audit.md). An anchor recorded outside the database can.
    assert verify_trail().ok
    finding = verify_trail(anchor=(head.head_seq, head.head_mac)).finding
    assert finding is not None and finding.problem == Problem.SEAL_BROKEN
    assert "seal #2, recorded earlier as an anchor, is missing" in finding.message


def test_removing_the_last_seal_of_a_round_is_seen_without_an_anchor():
    events = _sealed_trail(10, per_seal=5)
    with triggers_off() as cursor:
        cursor.execute("DELETE FROM audit_auditseal WHERE seq = 2")
    # A round is committed whole, so its range promises that every event in it is listed.
    finding = verify_trail().finding
    assert (finding.problem, finding.event_id) == (Problem.INSERTED, _in_trail_order(events)[5])


def test_a_wrong_anchor_is_refused():
    _sealed_trail(3)
    assert verify_trail(anchor=(1, bytes(32))).finding.problem == Problem.SEAL_BROKEN


def test_a_rolled_back_event_is_absent_and_does_not_break_the_chain():
    write_events(2)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        doomed = audit.record(action=AuditAction.ROLE_CHANGED, object_type="user", object_id=1)
        raise Boom
    write_events(2)
    seal_everything()
    assert not AuditEvent.objects.filter(pk=doomed.pk).exists()
    assert all(doomed.pk not in seal.event_ids for seal in AuditSeal.objects.all())
    report = verify_trail()
    assert report.ok and report.sealed_events == 4


def test_an_empty_trail_verifies():
    report = verify_trail()
    assert report.ok and report.events == 0 and report.head_seq == 0


def test_seal_times_are_recent():
    _sealed_trail(2)
    assert dt.datetime.now(dt.UTC) - AuditSeal.objects.get(seq=1).sealed_at < dt.timedelta(minutes=1)


def test_varied_content_survives_the_database_round_trip():
    # Whatever the database hands back (addresses, text, JSON) must give the MAC computed at write time.
    addresses = ["203.0.113.9", "2001:db8::1", "::ffff:198.51.100.3", "::1.2.3.4", "fe80::1:0:0:1", None]
    for number, address in enumerate(addresses):
        audit.record(
            action=AuditAction.USER_CREATED,
            actor_user_id=-5 if number == 0 else 2**62,
            actor_role="clinic_admin",
            object_id='ñandú/💊 "quoted" \\ back\nslash',
            source_address=address,
            user_agent="Mozilla/5.0 (Linux; Android 13; SM-A145M) \u2028",
            details={"nombre_campo": "teléfono", "ids": [1, -2, 2**60, None, True], "vacío": "", "z": False},
        )
    audit.record(action=AuditAction.SIGNOUT)
    seal_everything()
    report = verify_trail()
    assert report.ok, report.finding
    assert report.sealed_events == len(addresses) + 1
