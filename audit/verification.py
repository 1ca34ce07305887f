"""Verification of the whole trail in one streaming pass: row MACs, seal contents and the seal chain.

Seals listed in seq order, concatenated, must equal the events in (txid, id) order up to the last seal's
horizon; events after it are pending and checked by their row MAC alone (docs/audit.md).
Rows are read through raw server-side cursors, not ORM objects: the pass must reach tens of thousands
of events a second.
"""

from __future__ import annotations

import hmac
import json
import queue
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.db import connection, transaction

from audit.integrity import (
    ADDRESS_FIELD,
    GENESIS_MAC,
    MAC_FIELDS,
    MAC_SIZE,
    canonical_address,
    canonical_json,
    keyed_hmac,
    seal_mac,
)


class Problem(StrEnum):
    EDITED = "edited"
    DELETED = "deleted"
    INSERTED = "inserted"
    REORDERED = "reordered"
    SEAL_BROKEN = "seal_broken"


@dataclass(frozen=True)
class Finding:
    problem: Problem
    message: str
    event_id: int | None
    seal_seq: int | None


@dataclass(frozen=True)
class VerificationReport:
    seals: int
    sealed_events: int
    pending_events: int
    head_seq: int
    head_mac: bytes
    seconds: float
    finding: Finding | None

    @property
    def ok(self) -> bool:
        return self.finding is None

    @property
    def events(self) -> int:
        return self.sealed_events + self.pending_events


class _Broken(Exception):
    """Internal control flow: carries the first finding out of the nested loops."""

    def __init__(self, finding: Finding) -> None:
        self.finding = finding


# Text and integer forms chosen so canonical_bytes gives the same result as at write time, without
# building datetime or UUID objects for every row.
_EVENTS_SQL = (
    "SELECT id, txid, event_uuid::text, (extract(epoch FROM occurred_at) * 1000000)::bigint, action, outcome,"
    " actor_user_id, actor_role, actor_establishment_id, patient_id, object_type, object_id, purpose,"
    " host(source_address), user_agent, request_id, details::text, row_mac"
    " FROM audit_auditevent ORDER BY txid, id"
)
_EVENT_BATCH = 5_000


_DETAILS = MAC_FIELDS.index("details")


def _mac_of_row(row: tuple[Any, ...], keyed: hmac.HMAC) -> bytes:
    """integrity.mac_of_fields(canonical_fields(...)) straight from a row of _EVENTS_SQL, inlined: this runs
    for every event of the trail."""
    fields = list(row[2:17])
    address = fields[ADDRESS_FIELD]
    # PostgreSQL prints IPv4 addresses as Python does; only IPv6 needs parsing (and the parse is cached).
    if address is not None and ":" in address:
        fields[ADDRESS_FIELD] = canonical_address(address)
    fields[_DETAILS] = json.loads(fields[_DETAILS])
    state = keyed.copy()
    state.update(canonical_json(fields).encode())
    return state.digest()


def _check_row(row: tuple[Any, ...], keyed: hmac.HMAC, seal_seq: int | None) -> bytes:
    stored = bytes(row[17] or b"")
    if not hmac.compare_digest(_mac_of_row(row, keyed), stored):
        raise _Broken(
            Finding(
                Problem.EDITED,
                f"Event {row[0]}: row edited (its content does not match its MAC).",
                row[0],
                seal_seq,
            )
        )
    return stored


def _stream(raw: Any, name: str, sql: str, itersize: int) -> Generator[tuple[Any, ...], None, None]:
    """Rows of `sql` through a server-side cursor, the next batch fetched in a background thread while this
    one is checked: PostgreSQL producing rows and Python checking MACs then overlap instead of taking turns.
    (psycopg connections are thread-safe; the thread only ever runs FETCH.)"""
    # Binary results: no text parsing of integers and no hex decoding of MACs.
    cursor = raw.cursor(name=name, binary=True)
    cursor.execute(sql)
    batches: queue.Queue[list[tuple[Any, ...]] | BaseException] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def fetch() -> None:
        while not stop.is_set():
            try:
                rows: list[tuple[Any, ...]] | BaseException = cursor.fetchmany(itersize)
            except BaseException as error:  # handed to the consumer, which raises it
                rows = error
            while not stop.is_set():
                try:
                    batches.put(rows, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if not isinstance(rows, list) or not rows:
                return

    fetcher = threading.Thread(target=fetch, name=f"{name}-fetch", daemon=True)
    fetcher.start()
    try:
        while True:
            batch = batches.get()
            if isinstance(batch, BaseException):
                raise batch
            if not batch:
                return
            yield from batch
    finally:
        stop.set()
        fetcher.join()
        cursor.close()


def _diagnose_gap(expected: int, found: tuple[Any, ...] | None, seal: tuple[Any, ...], position: int) -> Finding:
    """The event stream and the seal disagree on which event comes next: say which way, naming the event."""
    seq = seal[0]
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM audit_auditevent WHERE id = %s", [expected])
        if cursor.fetchone() is None:
            return Finding(
                Problem.DELETED,
                f"Event {expected}: row deleted (listed in seal #{seq}, missing from the table).",
                expected,
                seq,
            )
        if found is not None:
            cursor.execute("SELECT 1 FROM audit_auditseal WHERE event_ids @> ARRAY[%s]::bigint[] LIMIT 1", [found[0]])
            if cursor.fetchone() is None:
                return Finding(
                    Problem.INSERTED,
                    f"Event {found[0]}: row inserted (transaction {found[1]} is in a sealed range, but no seal"
                    f" lists the event).",
                    found[0],
                    seq,
                )
    actual = f"event {found[0]}" if found is not None else "no further event"
    return Finding(
        Problem.REORDERED,
        f"Event {expected}: rows reordered (seal #{seq} lists it at position {position + 1}; the table has"
        f" {actual} there, so a transaction id was changed).",
        expected,
        seq,
    )


def verify_trail(*, key: bytes | None = None, anchor: tuple[int, bytes] | None = None) -> VerificationReport:
    """Check the whole trail; the report names the first bad event in trail order, or says it is intact.

    `anchor` is a (seq, seal MAC) recorded outside the database earlier: the chain must still contain it,
    which catches the removal of the newest seals (the one change the chain cannot show by itself).
    """
    from django.conf import settings

    key = key or settings.TELECONSULT_AUDIT_KEY
    keyed = keyed_hmac(key)
    started = time.perf_counter()
    seals = sealed = pending = 0
    head_seq, head_mac = 0, GENESIS_MAC
    finding: Finding | None = None
    nested = connection.in_atomic_block
    with transaction.atomic():
        if not nested:
            # One snapshot for seals and events alike, so a seal committed meanwhile cannot make its own
            # events look inserted or deleted.
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        raw = connection.connection
        events = _stream(raw, "audit_verify_events", _EVENTS_SQL, _EVENT_BATCH)
        seal_rows = _stream(
            raw,
            "audit_verify_seals",
            "SELECT seq, sealed_at, txid_from, txid_to, event_ids, row_macs, seal_mac FROM audit_auditseal"
            " ORDER BY seq",
            4,
        )
        try:
            horizon = 0
            previous_range: tuple[int, int] | None = None
            for seal in seal_rows:
                seq, sealed_at, txid_from, txid_to, event_ids, row_macs, stored_seal_mac = seal
                row_macs = bytes(row_macs)
                if seq != head_seq + 1:
                    raise _Broken(
                        Finding(
                            Problem.SEAL_BROKEN,
                            f"Seal chain broken: seal #{head_seq + 1} is missing (next is #{seq}).",
                            event_ids[0] if event_ids else None,
                            seq,
                        )
                    )
                expected_mac = seal_mac(
                    previous_mac=head_mac,
                    seq=seq,
                    sealed_at=sealed_at,
                    txid_from=txid_from,
                    txid_to=txid_to,
                    event_ids=event_ids,
                    row_macs=row_macs,
                    key=key,
                )
                # A round starts where the previous one ended; seals of one round share its range.
                if previous_range is None:
                    contiguous = txid_from == 0
                else:
                    contiguous = txid_from == previous_range[1] or (txid_from, txid_to) == previous_range
                if (
                    not hmac.compare_digest(expected_mac, bytes(stored_seal_mac))
                    or len(row_macs) != MAC_SIZE * len(event_ids)
                    or not event_ids
                    or not contiguous
                ):
                    raise _Broken(
                        Finding(
                            Problem.SEAL_BROKEN,
                            f"Seal chain broken at seal #{seq}: the seal was altered or does not follow seal"
                            f" #{head_seq}.",
                            event_ids[0] if event_ids else None,
                            seq,
                        )
                    )
                for position, expected_id in enumerate(event_ids):
                    row = next(events, None)
                    if row is None or row[0] != expected_id:
                        raise _Broken(_diagnose_gap(expected_id, row, seal, position))
                    stored = _check_row(row, keyed, seq)
                    if not (txid_from <= row[1] < txid_to) or not hmac.compare_digest(
                        stored, row_macs[position * MAC_SIZE : (position + 1) * MAC_SIZE]
                    ):
                        raise _Broken(
                            Finding(
                                Problem.REORDERED,
                                f"Event {expected_id}: rows swapped or reordered (the row holds content other"
                                f" than what seal #{seq} sealed for it).",
                                expected_id,
                                seq,
                            )
                        )
                if (
                    anchor is not None
                    and seq == anchor[0]
                    and not hmac.compare_digest(anchor[1], bytes(stored_seal_mac))
                ):
                    raise _Broken(
                        Finding(
                            Problem.SEAL_BROKEN,
                            f"Seal chain broken: seal #{seq} differs from the anchor recorded earlier.",
                            event_ids[0],
                            seq,
                        )
                    )
                sealed += len(event_ids)
                seals += 1
                head_seq, head_mac = seq, bytes(stored_seal_mac)
                horizon = txid_to
                previous_range = (txid_from, txid_to)
            if anchor is not None and head_seq < anchor[0]:
                raise _Broken(
                    Finding(
                        Problem.SEAL_BROKEN,
                        f"Seal chain broken: seal #{anchor[0]}, recorded earlier as an anchor, is missing"
                        f" (the newest seal is #{head_seq}).",
                        None,
                        anchor[0],
                    )
                )
            for row in events:
                if row[1] < horizon:
                    raise _Broken(
                        Finding(
                            Problem.INSERTED,
                            f"Event {row[0]}: row inserted (transaction {row[1]} is in a sealed range, but no"
                            f" seal lists the event; or the seal listing it was removed).",
                            row[0],
                            head_seq,
                        )
                    )
                _check_row(row, keyed, None)
                pending += 1
        except _Broken as broken:
            finding = broken.finding
        finally:
            events.close()
            seal_rows.close()
    return VerificationReport(
        seals=seals,
        sealed_events=sealed,
        pending_events=pending,
        head_seq=head_seq,
        head_mac=head_mac,
        seconds=time.perf_counter() - started,
        finding=finding,
    )
