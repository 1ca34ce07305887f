"""audit.batched(): events written together in one INSERT at the end of the block, and otherwise exactly as
record() writes them one by one: same rows, same MACs, same transaction, gone with whatever rolls back."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from audit import services as audit
from audit.actions import AuditAction
from audit.integrity import MAC_FIELDS, row_mac
from audit.models import AuditEvent
from audit.services import AuditError

pytestmark = pytest.mark.django_db


def _inserts(queries: CaptureQueriesContext) -> int:
    return sum(1 for query in queries.captured_queries if query["sql"].startswith("INSERT INTO audit_auditevent"))


def _record(object_id: int) -> AuditEvent:
    return audit.record(action=AuditAction.USER_CREATED, object_type="user", object_id=object_id)


def test_a_batch_is_one_insert_of_rows_like_those_record_writes():
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        with audit.batched():
            events = [_record(number) for number in (1, 2, 3)]
            assert [event.pk for event in events] == [None, None, None]  # not written yet
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_current_xact_id()::text::bigint")
            txid = cursor.fetchone()[0]
    assert _inserts(queries) == 1
    stored = list(AuditEvent.objects.filter(pk__in=[event.pk for event in events]).order_by("id"))
    # Numbered in the order recorded, in the caller's transaction, each with the MAC of what was stored.
    assert [event.object_id for event in stored] == ["1", "2", "3"]
    assert [event.pk for event in stored] == [event.pk for event in events]
    assert {event.txid for event in stored} == {txid} == {event.txid for event in events}
    for written, fresh in zip(events, stored, strict=True):
        assert bytes(fresh.row_mac) == written.row_mac == row_mac({name: getattr(fresh, name) for name in MAC_FIELDS})
        assert fresh.occurred_at == written.occurred_at  # when it was recorded, not when the batch was written


def test_an_error_leaving_the_block_writes_nothing():
    before = AuditEvent.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic(), audit.batched():
        _record(1)
        raise RuntimeError("the action failed")
    assert AuditEvent.objects.count() == before


def test_an_event_of_a_savepoint_rolled_back_meanwhile_is_not_written():
    # The batch goes on after an inner block failed and was caught: that block's event must go with it, as it
    # would have without the batch.
    with transaction.atomic(), audit.batched():
        kept = _record(1)
        try:
            with transaction.atomic():
                _record(2)
                raise RuntimeError("the inner action failed")
        except RuntimeError:
            pass
        also_kept = _record(3)
    assert list(AuditEvent.objects.filter(object_type="user").values_list("object_id", flat=True)) == ["1", "3"]
    assert kept.pk is not None and also_kept.pk is not None


def test_a_block_inside_another_joins_it_and_one_inside_a_savepoint_is_its_own():
    with transaction.atomic(), CaptureQueriesContext(connection) as queries, audit.batched():
        _record(1)
        with audit.batched():
            _record(2)
        with transaction.atomic(), audit.batched():  # a savepoint: written when its block ends, inside it
            _record(3)
            _record(4)
        _record(5)
    assert _inserts(queries) == 2
    assert list(AuditEvent.objects.filter(object_type="user").values_list("object_id", flat=True)) == [
        "3",
        "4",
        "1",
        "2",
        "5",
    ]


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_a_batch_is_refused():
    # Each action would commit on its own while its event waited: the trail could then miss it.
    with pytest.raises(AuditError), audit.batched():
        pass
