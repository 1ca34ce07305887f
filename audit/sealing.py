"""Sealing: chaining keyed seals over every event that can no longer change or appear (docs/audit.md).

Writers never wait for the sealer and take no lock; the sealer only seals rows below the transaction
horizon, which no running or future transaction can write below.
"""

from __future__ import annotations

import datetime as dt
import logging
import zlib
from dataclasses import dataclass

from django.db import connection, transaction

from audit.integrity import GENESIS_MAC, seal_mac

logger = logging.getLogger(__name__)

# Bounds the memory of sealing and verifying: a round with more events is split over several seals.
MAX_EVENTS_PER_SEAL = 10_000
# Transaction-level advisory lock that serialises sealers (two workers, or the worker and audit_verify).
SEAL_LOCK_KEY = zlib.crc32(b"teleconsult.audit.seal")
# The horizon: every transaction with a smaller id has committed or aborted (docs/audit.md).
_HORIZON_SQL = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"


@dataclass(frozen=True)
class SealRound:
    seals: int
    events: int
    horizon: int


def seal_pending(*, max_events_per_seal: int = MAX_EVENTS_PER_SEAL) -> SealRound:
    """Seal every not-yet-sealed event whose transaction ended before the current horizon, in one round.

    The whole round commits at once, so a committed seal range [txid_from, txid_to) is always complete:
    the verifier may then treat any unlisted row below the last horizon as inserted behind our back.
    """
    if max_events_per_seal < 1:
        raise ValueError("max_events_per_seal must be positive.")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SEAL_LOCK_KEY])
        # Read after the lock, in a fresh statement snapshot: a sealer that held the lock before us has
        # committed, and we see its seals.
        cursor.execute("SELECT seq, txid_to, seal_mac FROM audit_auditseal ORDER BY seq DESC LIMIT 1")
        last = cursor.fetchone()
        seq, txid_from, previous_mac = (last[0], last[1], bytes(last[2])) if last else (0, 0, GENESIS_MAC)
        # Every transaction with a smaller id has committed or aborted; since the trigger stamps each row
        # with its writer's id, no row with txid < horizon can appear any more. Computed once per round:
        # our own transaction gets an id only at its first insert, above the horizon.
        cursor.execute(_HORIZON_SQL)
        horizon = cursor.fetchone()[0]
        if horizon <= txid_from:
            return SealRound(seals=0, events=0, horizon=txid_from)
        seals = events = 0
        after: tuple[int, int] | None = None
        while True:
            # Each statement has a new snapshot (READ COMMITTED), which sees every transaction below the
            # horizon, since all of them had finished before the horizon was read.
            if after is None:
                cursor.execute(
                    "SELECT id, txid, row_mac FROM audit_auditevent WHERE txid >= %s AND txid < %s"
                    " ORDER BY txid, id LIMIT %s",
                    [txid_from, horizon, max_events_per_seal],
                )
            else:
                cursor.execute(
                    "SELECT id, txid, row_mac FROM audit_auditevent WHERE (txid, id) > (%s, %s) AND txid < %s"
                    " ORDER BY txid, id LIMIT %s",
                    [after[0], after[1], horizon, max_events_per_seal],
                )
            rows = cursor.fetchall()
            if not rows:
                break
            event_ids = [row[0] for row in rows]
            row_macs = b"".join(bytes(row[2]) for row in rows)
            seq += 1
            sealed_at = dt.datetime.now(dt.UTC)
            previous_mac = seal_mac(
                previous_mac=previous_mac,
                seq=seq,
                sealed_at=sealed_at,
                txid_from=txid_from,
                txid_to=horizon,
                event_ids=event_ids,
                row_macs=row_macs,
            )
            cursor.execute(
                "INSERT INTO audit_auditseal (seq, sealed_at, txid_from, txid_to, event_ids, row_macs, seal_mac)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [seq, sealed_at, txid_from, horizon, event_ids, row_macs, previous_mac],
            )
            seals += 1
            events += len(rows)
            after = (rows[-1][1], rows[-1][0])
            if len(rows) < max_events_per_seal:
                break
    if seals:
        logger.info("Sealed %d audit events in %d seals up to transaction %d.", events, seals, horizon)
    return SealRound(seals=seals, events=events, horizon=horizon)
