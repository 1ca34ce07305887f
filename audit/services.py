"""Writing to the audit trail: `record()` is the single entry point every app uses."""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import functools
import ipaddress
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypedDict

from django.db import DEFAULT_DB_ALIAS, connections

from audit.actions import AuditAction, Outcome, Purpose
from audit.integrity import MAC_FIELDS, epoch_microseconds, mac_of_fields
from audit.models import AuditEvent
from teleconsult import request_context
from teleconsult.prepared import statement_cursor

# Keys whose values are always masked: an audit event records that a secret was involved, never the secret.
_SECRET_KEY = re.compile(r"(pass|secret|token|otp|code|key|signature)", re.IGNORECASE)
_MAX_DETAIL_STRING = 200
_BIGINT_MIN, _BIGINT_MAX = -(2**63), 2**63 - 1

# One statement, no ORM: the trail is written on every request that touches health data, so the write
# path is kept short (docs/benchmarks.md). `txid` is left out: the database trigger sets it.
# Bound server-side and prepared once per connection (teleconsult.prepared.statement_cursor): Django's own cursors
# bind client-side, which for sixteen parameters cost more CPU than the rest of record(), and plan it every time.
_INSERT_INTO = (
    "INSERT INTO audit_auditevent (event_uuid, occurred_at, action, outcome, actor_user_id, actor_role,"
    " actor_establishment_id, patient_id, object_type, object_id, purpose, source_address, user_agent,"
    " request_id, details, row_mac) VALUES "
)
_ROW = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s)"
_RETURNING = " RETURNING id, txid"
_INSERT = _INSERT_INTO + _ROW + _RETURNING


_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_FIELD_NAMES = [field.attname for field in AuditEvent._meta.concrete_fields]


class Actor(TypedDict):
    """Who acted, shaped as `record()`'s keyword arguments so callers build it once and spread it in."""

    actor_user_id: int | None
    actor_role: str


class Subject(TypedDict, total=False):
    """What an event is about, shaped as `record()`'s keyword arguments (each key optional, as there)."""

    patient_id: int | None
    object_type: str
    object_id: str | int


class AuditError(ValueError):
    """An audit call was malformed (unknown action code, bad detail value). Raised at the call site."""


def _clean_details(details: dict[str, Any] | None) -> dict[str, Any]:
    if not details:
        return {}
    if not isinstance(details, dict):
        raise AuditError("Audit details must be a dict of ids and field names.")
    cleaned: dict[str, Any] = {}
    for key, value in details.items():
        if not isinstance(key, str) or not key or len(key) > 64 or "\x00" in key:
            raise AuditError("Audit detail keys must be short strings.")
        if _SECRET_KEY.search(key):
            cleaned[key] = "***"
            continue
        if isinstance(value, (list, tuple)):
            if not all(isinstance(v, (str, int, bool)) or v is None for v in value):
                raise AuditError(f"Audit detail {key!r} must hold only ids, codes or field names.")
            cleaned[key] = [_text(v, _MAX_DETAIL_STRING) if isinstance(v, str) else v for v in value][:100]
        elif isinstance(value, str):
            cleaned[key] = _text(value, _MAX_DETAIL_STRING)
        elif value is None or isinstance(value, (bool, int)):
            cleaned[key] = value
        else:
            # Floats and nested objects are refused: they do not round-trip exactly through jsonb.
            raise AuditError(f"Audit detail {key!r} has an unsupported type {type(value).__name__}.")
    return cleaned


@functools.lru_cache(maxsize=4096)
def _valid_address(address: str) -> str | None:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return None
    # A dual-stack socket reports IPv4 clients as IPv4-mapped IPv6; the trail records the IPv4 address.
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return str(parsed)


def _address(address: object) -> str | None:
    return _valid_address(str(address)) if address else None


def _text(value: str, limit: int) -> str:
    if not isinstance(value, str):
        raise AuditError(f"Audit text fields must be strings, not {type(value).__name__}.")
    # PostgreSQL text cannot hold NUL; refuse here rather than fail later with a database error.
    if "\x00" in value:
        raise AuditError("Audit values cannot contain NUL characters.")
    return value[:limit]


def _id(value: int | None, name: str) -> int | None:
    # Exactly an int (or None): a "12" would be stored as 12 but MACed as "12", and fail verification.
    if value is None or (type(value) is int and _BIGINT_MIN <= value <= _BIGINT_MAX):
        return value
    raise AuditError(f"Audit field {name} must be an integer id or None.")


def record(
    *,
    action: AuditAction,
    outcome: Outcome = Outcome.SUCCESS,
    purpose: Purpose = Purpose.OPERATIONS,
    actor_user_id: int | None = None,
    actor_role: str = "",
    actor_establishment_id: int | None = None,
    patient_id: int | None = None,
    object_type: str = "",
    object_id: str | int = "",
    details: dict[str, Any] | None = None,
    source_address: str | None = None,
    user_agent: str | None = None,
    request_id: str | None = None,
) -> AuditEvent:
    """Append one event inside the caller's transaction: it commits or rolls back with the action it records."""
    if not isinstance(action, AuditAction):
        raise AuditError(f"Unknown audit action code: {action!r}")
    if not isinstance(outcome, Outcome):
        raise AuditError(f"Unknown audit outcome: {outcome!r}")
    if not isinstance(purpose, Purpose):
        raise AuditError(f"Unknown purpose of use: {purpose!r}")
    if isinstance(object_id, bool) or not isinstance(object_id, (str, int)):
        raise AuditError("Audit object ids must be strings or integers.")
    context = request_context.current()
    values: dict[str, Any] = {
        "event_uuid": uuid.uuid4(),
        "occurred_at": dt.datetime.now(dt.UTC),
        "action": action.value,
        "outcome": outcome.value,
        "actor_user_id": _id(actor_user_id, "actor_user_id"),
        "actor_role": _text(actor_role, 32),
        "actor_establishment_id": _id(actor_establishment_id, "actor_establishment_id"),
        "patient_id": _id(patient_id, "patient_id"),
        "object_type": _text(object_type, 64),
        "object_id": _text(str(object_id), 64),
        "purpose": purpose.value,
        "source_address": _address(source_address or (context.source_address if context else None)),
        "user_agent": _text(user_agent if user_agent is not None else (context.user_agent if context else ""), 300),
        "request_id": _text(request_id or (context.request_id if context else ""), 64),
        "details": _clean_details(details),
    }
    # The canonical fields (integrity.canonical_fields) built directly: the values' types are known here.
    # tests/audit/test_record.py checks the result against the general definition.
    mac = mac_of_fields(
        [
            str(values["event_uuid"]),
            epoch_microseconds(values["occurred_at"]),
            *(values[name] for name in MAC_FIELDS[2:]),
        ]
    )
    values.update(id=None, txid=None, row_mac=mac)
    # The connection itself, not Django's `connection` proxy, which costs a lookup per attribute.
    db = connections[DEFAULT_DB_ALIAS]
    # from_db with every concrete field in order: the positional fast path of Model.__init__, and the
    # instance is marked as saved (its id and txid are filled in once the row is written).
    event = AuditEvent.from_db(db.alias, _FIELD_NAMES, [values[name] for name in _FIELD_NAMES])
    batch = _batch.get()
    if batch is not None and batch.takes(db):
        batch.events.append(event)
        return event
    # No savepoint of our own: inside the caller's transaction a failed audit write aborts the whole
    # transaction, so an action can never commit without its event; outside one, the INSERT is atomic.
    _write(db, [event])
    return event


def _parameters(event: AuditEvent) -> list[Any]:
    return [
        event.event_uuid,
        event.occurred_at,
        event.action,
        event.outcome,
        event.actor_user_id,
        event.actor_role,
        event.actor_establishment_id,
        event.patient_id,
        event.object_type,
        event.object_id,
        event.purpose,
        event.source_address,
        event.user_agent,
        event.request_id,
        _JSON.encode(event.details),
        event.row_mac,
    ]


def _write(db: Any, events: list[AuditEvent]) -> None:
    """One INSERT for the events, in their order (PostgreSQL numbers and returns the rows of a VALUES list in
    order, as Django's bulk_create relies on too)."""
    sql = _INSERT if len(events) == 1 else _INSERT_INTO + ", ".join([_ROW] * len(events)) + _RETURNING
    cursor = statement_cursor(db)
    cursor.execute(sql, [value for event in events for value in _parameters(event)])
    for event, (event_id, txid) in zip(events, cursor.fetchall(), strict=True):
        event.id, event.txid = event_id, txid


@dataclass
class _Batch:
    db: Any
    # The savepoints open when the batch began: events are held back only at that level (see takes()).
    savepoints: list[str]
    events: list[AuditEvent] = field(default_factory=list)

    def takes(self, db: Any) -> bool:
        # An event recorded inside a savepoint opened since the batch began is written at once: that savepoint
        # may be rolled back while the batch goes on, and the event must go with it, as it always did. At the
        # batch's own level nothing can roll back an event without the exception leaving batched() too.
        return db is self.db and _open_savepoints(db) == self.savepoints


def _open_savepoints(db: Any) -> list[str]:
    # Django's own bookkeeping of nested atomic blocks (None for a block without a savepoint), the same list it
    # uses to drop the on_commit callbacks of a savepoint that rolls back.
    return [sid for sid in db.savepoint_ids if sid is not None]


_batch: contextvars.ContextVar[_Batch | None] = contextvars.ContextVar("audit_batch", default=None)


@contextlib.contextmanager
def batched() -> Iterator[None]:
    """Inside the caller's transaction: the events recorded in the block are written together, in one INSERT,
    when the block ends (a visit's admit records four; each would otherwise be a statement of its own).

    Nothing else changes: each event is built, checked and MACed when it is recorded (its occurred_at is that
    moment), the INSERT runs inside the same transaction before it can commit, and an exception leaving the
    block writes nothing (the transaction rolls back with it). The events returned by record() get their id
    and txid when the block ends. A block inside another at the same savepoint level joins the outer one; inside
    a savepoint opened since, it is a batch of its own, written when it ends (inside that savepoint)."""
    db = connections[DEFAULT_DB_ALIAS]
    if not db.in_atomic_block:
        # Outside a transaction each action commits on its own: its event must be written with it, not later.
        raise AuditError("audit.batched() is for use inside a transaction (transaction.atomic).")
    outer = _batch.get()
    if outer is not None and outer.takes(db):
        yield
        return
    batch = _Batch(db=db, savepoints=_open_savepoints(db))
    token = _batch.set(batch)
    try:
        yield
    finally:
        _batch.reset(token)
    if batch.events:
        _write(db, batch.events)
