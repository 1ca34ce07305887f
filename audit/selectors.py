"""Reading the audit trail: filtered, sorted, keyset-paginated lists, CSV rows and the sealing status (AUD-3)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import BooleanField, F, Q, QuerySet
from django.db.models.expressions import RawSQL

from audit.integrity import MAC_FIELDS
from audit.models import AuditEvent

PAGE_SIZE = 50
EXPORT_CHUNK = 2_000


@dataclass(frozen=True)
class EventFilter:
    """What the auditor asked for. Ids, codes and values only; who is behind an e-mail is resolved by the caller.

    The period is half-open: occurred_from <= occurred_at < occurred_before.
    """

    occurred_from: dt.datetime | None = None
    occurred_before: dt.datetime | None = None
    action: str = ""
    action_prefix: str = ""
    outcome: str = ""
    actor_user_id: int | None = None
    actor_role: str = ""
    establishment_id: int | None = None
    patient_id: int | None = None
    object_type: str = ""
    object_id: str = ""
    purpose: str = ""
    # An address or a network in CIDR notation.
    source_network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    request_id: str = ""

    def q(self) -> Q:
        condition = Q()
        if self.occurred_from is not None:
            condition &= Q(occurred_at__gte=self.occurred_from)
        if self.occurred_before is not None:
            condition &= Q(occurred_at__lt=self.occurred_before)
        if self.action:
            condition &= Q(action=self.action)
        if self.action_prefix:
            condition &= Q(action__startswith=self.action_prefix)
        if self.outcome:
            condition &= Q(outcome=self.outcome)
        if self.actor_user_id is not None:
            condition &= Q(actor_user_id=self.actor_user_id)
        if self.actor_role:
            condition &= Q(actor_role=self.actor_role)
        if self.establishment_id is not None:
            condition &= Q(actor_establishment_id=self.establishment_id)
        if self.patient_id is not None:
            condition &= Q(patient_id=self.patient_id)
        if self.object_type:
            condition &= Q(object_type=self.object_type)
        if self.object_id:
            condition &= Q(object_id=self.object_id)
        if self.purpose:
            condition &= Q(purpose=self.purpose)
        if self.source_network is not None:
            if self.source_network.num_addresses == 1:
                condition &= Q(source_address=str(self.source_network.network_address))
            else:
                # inet <<= cidr: the address is in the network (PostgreSQL's network operators).
                condition &= Q(
                    RawSQL("source_address <<= %s::cidr", [str(self.source_network)], output_field=BooleanField())
                )
        if self.request_id:
            condition &= Q(request_id=self.request_id)
        return condition


# Sort keys the page may ask for, mapped to columns; anything else is refused by the caller. The event id
# always breaks ties, which also makes keyset pagination exact.
SORTS: dict[str, str] = {
    "id": "id",
    "occurred_at": "occurred_at",
    "action": "action",
    "outcome": "outcome",
    "actor": "actor_user_id",
    "role": "actor_role",
    "establishment": "actor_establishment_id",
    "patient": "patient_id",
    "object_type": "object_type",
    "object_id": "object_id",
    "purpose": "purpose",
    "source_address": "source_address",
    "request_id": "request_id",
}
DEFAULT_SORT = "occurred_at"

# What the auditor pages show: every stored field except the internal uuid (the id identifies the event).
_LIST_FIELDS = ("id", *(name for name in MAC_FIELDS if name != "event_uuid"))


@dataclass(frozen=True)
class EventPage:
    rows: list[dict[str, Any]]
    has_next: bool
    has_previous: bool

    @property
    def first_id(self) -> int | None:
        return self.rows[0]["id"] if self.rows else None

    @property
    def last_id(self) -> int | None:
        return self.rows[-1]["id"] if self.rows else None


def _ordered(queryset: QuerySet[AuditEvent], column: str, descending: bool) -> QuerySet[AuditEvent]:
    # Ascending is (column NULLS FIRST, id); descending is exactly its reverse, which keyset paging needs.
    if column == "id":
        return queryset.order_by("-id" if descending else "id")
    if descending:
        return queryset.order_by(F(column).desc(nulls_last=True), "-id")
    return queryset.order_by(F(column).asc(nulls_first=True), "id")


def _beyond(column: str, value: Any, event_id: int, *, forward: bool) -> Q:
    """Rows strictly after (forward) or before the row (value, event_id) in the ascending order of `_ordered`."""
    if column == "id":
        return Q(id__gt=event_id) if forward else Q(id__lt=event_id)
    null = Q(**{f"{column}__isnull": True})
    if value is None:
        return (null & Q(id__gt=event_id)) | ~null if forward else null & Q(id__lt=event_id)
    same = Q(**{column: value})
    if forward:
        return Q(**{f"{column}__gt": value}) | (same & Q(id__gt=event_id))
    return null | Q(**{f"{column}__lt": value}) | (same & Q(id__lt=event_id))


class UnknownCursor(LookupError):
    """The page cursor names no event (a stale or hand-edited link)."""


def events_page(
    event_filter: EventFilter,
    *,
    sort: str = DEFAULT_SORT,
    descending: bool = True,
    after: int | None = None,
    before: int | None = None,
    size: int = PAGE_SIZE,
) -> EventPage:
    """One page of the filtered trail. `after` / `before` is the id of the last / first row of the page seen:
    keyset pagination, so a page of any period costs the same and only event ids go in URLs.
    Two queries with a cursor (its sort value, then the page), one without."""
    column = SORTS[sort]
    queryset = AuditEvent.objects.filter(event_filter.q())
    cursor_id = after if after is not None else before
    backwards = after is None and before is not None
    if cursor_id is not None:
        anchor = AuditEvent.objects.filter(pk=cursor_id).values_list(column).first()
        if anchor is None:
            raise UnknownCursor(cursor_id)
        # "After" in a descending list, or "before" in an ascending one, is "before" in ascending order.
        queryset = queryset.filter(_beyond(column, anchor[0], cursor_id, forward=backwards == descending))
    # Pages backwards are read in reverse display order (nearest rows first), then turned round.
    rows = list(_ordered(queryset, column, descending != backwards).values(*_LIST_FIELDS)[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    if backwards:
        rows.reverse()
        return EventPage(rows=rows, has_next=True, has_previous=more)
    return EventPage(rows=rows, has_next=more, has_previous=cursor_id is not None)


@dataclass(frozen=True)
class TrailStatus:
    last_seal_seq: int | None
    last_sealed_at: dt.datetime | None
    pending_events: int
    last_verified_at: dt.datetime | None
    last_verification_ok: bool | None


def trail_status() -> TrailStatus:
    """Sealing and verification status, in one query: the newest seal, how many events await a seal, and the
    newest TRAIL_VERIFIED event."""
    from audit.actions import AuditAction, Outcome

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT s.seq, s.sealed_at,
                   (SELECT count(*) FROM audit_auditevent e WHERE e.txid >= coalesce(s.txid_to, 0)),
                   v.occurred_at, v.outcome
            FROM (SELECT 1) AS one
            LEFT JOIN LATERAL (SELECT seq, sealed_at, txid_to FROM audit_auditseal ORDER BY seq DESC LIMIT 1) s
                ON true
            LEFT JOIN LATERAL (
                SELECT occurred_at, outcome FROM audit_auditevent WHERE action = %s ORDER BY occurred_at DESC LIMIT 1
            ) v ON true
            """,
            [AuditAction.TRAIL_VERIFIED.value],
        )
        seq, sealed_at, pending, verified_at, outcome = cursor.fetchone()
    return TrailStatus(
        last_seal_seq=seq,
        last_sealed_at=sealed_at,
        pending_events=pending,
        last_verified_at=verified_at,
        last_verification_ok=None if outcome is None else outcome == Outcome.SUCCESS.value,
    )


# --- CSV export ---

CSV_COLUMNS = (
    "id",
    "occurred_at_utc",
    "action",
    "outcome",
    "actor_user_id",
    "actor",
    "actor_role",
    "actor_establishment_id",
    "patient_id",
    "object_type",
    "object_id",
    "purpose",
    "source_address",
    "user_agent",
    "request_id",
    "details",
)
# Spreadsheets run a cell that starts with one of these as a formula; user agents and object ids are
# written by clients, so such cells are defused with a leading apostrophe (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def export_rows(
    event_filter: EventFilter,
    *,
    sort: str = DEFAULT_SORT,
    descending: bool = True,
    actor_labels: Callable[[Iterable[int]], Mapping[int, str]],
) -> Iterator[list[str]]:
    """Every row of the filtered trail (not just a page), in the page's order, as CSV cells.

    Streams through a server-side cursor in chunks; `actor_labels` turns a chunk's actor ids into names with
    one lookup per chunk (accounts lives above audit, so the caller supplies it).
    """
    queryset = _ordered(AuditEvent.objects.filter(event_filter.q()), SORTS[sort], descending)
    chunk: list[dict[str, Any]] = []
    for row in queryset.values(*_LIST_FIELDS).iterator(chunk_size=EXPORT_CHUNK):
        chunk.append(row)
        if len(chunk) >= EXPORT_CHUNK:
            yield from _csv_chunk(chunk, actor_labels)
            chunk = []
    if chunk:
        yield from _csv_chunk(chunk, actor_labels)


def _csv_chunk(
    chunk: list[dict[str, Any]], actor_labels: Callable[[Iterable[int]], Mapping[int, str]]
) -> Iterator[list[str]]:
    labels = actor_labels({row["actor_user_id"] for row in chunk if row["actor_user_id"] is not None})
    for row in chunk:
        yield [
            _cell(row["id"]),
            row["occurred_at"].astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
            _cell(row["action"]),
            _cell(row["outcome"]),
            _cell(row["actor_user_id"]),
            _cell(labels.get(row["actor_user_id"], "")),
            _cell(row["actor_role"]),
            _cell(row["actor_establishment_id"]),
            _cell(row["patient_id"]),
            _cell(row["object_type"]),
            _cell(row["object_id"]),
            _cell(row["purpose"]),
            _cell(row["source_address"]),
            _cell(row["user_agent"]),
            _cell(row["request_id"]),
            _cell(json.dumps(row["details"], ensure_ascii=False, sort_keys=True) if row["details"] else ""),
        ]
