"""Concurrent writers, long transactions and sealers: the trail stays complete and verifiable (AUD-2).

Paired, as races are here: one test shows that a naive horizon (every transaction started so far) loses
an event written by a transaction that was still open while sealing; the other that the real horizon
(the oldest transaction still running) does not.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

import pytest
from django.db import connection, transaction

from audit import sealing
from audit import services as audit
from audit.actions import AuditAction
from audit.models import AuditEvent, AuditSeal
from audit.verification import Problem, verify_trail
from tests.audit.support import seal_everything, write_events

pytestmark = pytest.mark.django_db(transaction=True)

WRITERS = 8
EVENTS_PER_WRITER = 60


class _Rollback(Exception):
    pass


def _in_thread(target: Callable[[], None], errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            target()
        except BaseException as error:  # a failure in a thread must fail the test, not vanish
            errors.append(error)
        finally:
            connection.close()  # each thread has its own connection; the test database must be left free

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _open_transaction_with_event(written: threading.Event, release: threading.Event, ids: list[int]) -> None:
    with transaction.atomic():
        ids.append(audit.record(action=AuditAction.ROLE_CHANGED, object_type="user", object_id=1).pk)
        written.set()
        assert release.wait(30)


def _race_with_an_open_transaction() -> tuple[int, int]:
    """A transaction writes an event and stays open while a later event commits and a sealer runs; then it
    commits. Returns (the open transaction's event id, the later event's id)."""
    written, release = threading.Event(), threading.Event()
    ids: list[int] = []
    errors: list[BaseException] = []
    holder = _in_thread(lambda: _open_transaction_with_event(written, release, ids), errors)
    assert written.wait(30)
    later = write_events(1)[0]
    sealing.seal_pending()
    release.set()
    holder.join(30)
    assert not errors, errors
    return ids[0], later.pk


def test_a_naive_horizon_loses_the_event_of_a_transaction_open_during_sealing(monkeypatch):
    # Protection disabled: seal up to every transaction started so far, finished or not.
    monkeypatch.setattr(sealing, "_HORIZON_SQL", "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
    slow, later = _race_with_an_open_transaction()
    seal_everything()
    sealed = {event_id for seal in AuditSeal.objects.all() for event_id in seal.event_ids}
    assert later in sealed and slow not in sealed
    finding = verify_trail().finding
    assert finding is not None and (finding.problem, finding.event_id) == (Problem.INSERTED, slow)


def test_the_transaction_horizon_waits_for_the_open_transaction():
    slow, later = _race_with_an_open_transaction()
    # While the slow transaction was open, the later event stayed pending rather than being sealed past it.
    assert not AuditSeal.objects.filter(event_ids__contains=[later]).exists()
    seal_everything()
    sealed = [event_id for seal in AuditSeal.objects.order_by("seq") for event_id in seal.event_ids]
    assert sorted(sealed) == sorted([slow, later])
    assert verify_trail().ok


def _writer(number: int, committed: list[int], rolled_back: list[int]) -> None:
    chance = random.Random(number)
    for index in range(EVENTS_PER_WRITER):
        try:
            with transaction.atomic():
                batch = [
                    audit.record(
                        action=AuditAction.TRAIL_VIEWED, actor_user_id=number, object_type="test", object_id=index
                    ).pk
                    for _ in range(chance.choice((1, 1, 1, 2, 3)))
                ]
                if chance.random() < 0.15:
                    raise _Rollback
        except _Rollback:
            rolled_back.extend(batch)
        else:
            committed.extend(batch)


def _sealer(stop: threading.Event, rounds: list[int]) -> None:
    while not stop.is_set():
        rounds.append(sealing.seal_pending(max_events_per_seal=25).events)
        assert verify_trail().ok
        stop.wait(0.01)


def test_concurrent_writers_and_sealers_leave_a_trail_that_verifies():
    committed: list[int] = []
    rolled_back: list[int] = []
    rounds: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    sealers = [_in_thread(lambda: _sealer(stop, rounds), errors) for _ in range(2)]
    writers = [_in_thread(lambda n=n: _writer(n, committed, rolled_back), errors) for n in range(WRITERS)]
    for thread in writers:
        thread.join(120)
    stop.set()
    for thread in sealers:
        thread.join(120)
    assert not errors, errors
    assert sum(rounds) > 0, "the sealers should have sealed while the writers wrote"
    seal_everything()

    assert rolled_back and not AuditEvent.objects.filter(pk__in=rolled_back).exists()
    sealed = [event_id for seal in AuditSeal.objects.order_by("seq") for event_id in seal.event_ids]
    assert sorted(sealed) == sorted(committed), "every committed event sealed exactly once"
    seqs = list(AuditSeal.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    report = verify_trail()
    assert report.ok, report.finding
    assert report.sealed_events == len(committed) and report.pending_events == 0
