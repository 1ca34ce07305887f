"""The canonical byte form of an audit event and its keyed MAC (what sealing and verification rest on)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from typing import Any

from django.conf import settings

# The fields that the MAC covers, in order. `id` and `txid` are assigned by the database and are
# covered by the seal instead (docs/audit.md).
MAC_FIELDS = (
    "event_uuid",
    "occurred_at",
    "action",
    "outcome",
    "actor_user_id",
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


def _encode(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        # Integer microseconds since the epoch: exact, and identical before and after a database round trip.
        delta = value.astimezone(dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if value is None or isinstance(value, (str, int, bool, list, dict)):
        return value
    return str(value)


def canonical_bytes(values: dict[str, Any]) -> bytes:
    ordered = [_encode(values[name]) for name in MAC_FIELDS]
    return json.dumps(ordered, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def row_mac(values: dict[str, Any], key: bytes | None = None) -> bytes:
    return hmac.new(key or settings.TELECONSULT_AUDIT_KEY, canonical_bytes(values), hashlib.sha256).digest()
