"""The canonical byte form of an audit event, its keyed MAC, and the MAC that chains seals (docs/audit.md)."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import ipaddress
import json
import struct
import uuid
from collections.abc import Sequence
from typing import Any

from django.conf import settings

# The fields that the row MAC covers, in order. `id` and `txid` are assigned by the database and are
# covered by the seal instead: a seal lists ids in (txid, id) order next to their row MACs.
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
MAC_SIZE = 32
# The first seal chains to this instead of a previous seal's MAC.
GENESIS_MAC = bytes(MAC_SIZE)
_SEAL_DOMAIN = b"teleconsult-audit-seal-v1"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
ADDRESS_FIELD = MAC_FIELDS.index("source_address")
_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_C_MAKE_ENCODER = getattr(json.encoder, "c_make_encoder", None)


def _not_json(value: Any) -> Any:
    raise TypeError(f"Audit field values cannot be {type(value).__name__}.")


if _C_MAKE_ENCODER is not None:
    # JSONEncoder.encode() builds this C encoder anew on every call; built once, encoding takes half the
    # time, which verification (tens of thousands of rows a second) feels. Same output: the arguments are
    # those JSONEncoder passes for _JSON's options (no circular-reference markers: fields are flat).
    _C_ENCODER = _C_MAKE_ENCODER(None, _not_json, json.encoder.encode_basestring, None, ":", ",", True, False, True)

    def canonical_json(value: Any) -> str:
        """Compact JSON with sorted keys and raw UTF-8 (what the MACs are computed over)."""
        return "".join(_C_ENCODER(value, 0))

else:  # pragma: no cover - CPython always has the C accelerator

    def canonical_json(value: Any) -> str:
        """Compact JSON with sorted keys and raw UTF-8 (what the MACs are computed over)."""
        return _JSON.encode(value)


def epoch_microseconds(value: dt.datetime) -> int:
    """Integer microseconds since the epoch: exact, and identical before and after a database round trip."""
    delta = value.astimezone(dt.UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _encode(value: Any) -> Any:
    if value is None or type(value) in (str, int, bool, list, dict):
        return value
    if isinstance(value, dt.datetime):
        return epoch_microseconds(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"Audit field values cannot be {type(value).__name__}.")


@functools.lru_cache(maxsize=65_536)
def canonical_address(text: str) -> str:
    """Parsed, not taken as text: PostgreSQL and Python print some addresses differently (an IPv4-mapped
    IPv6 address is "::ffff:1.2.3.4" in one and "::ffff:102:304" in the other); the MAC must not care.
    Cached: the same few client addresses recur all through a trail."""
    return str(ipaddress.ip_address(text))


def canonical_fields(values: dict[str, Any]) -> list[Any]:
    """MAC_FIELDS' values in order, as JSON-ready values. Datetimes may also be given as epoch
    microseconds and UUIDs as text (the verifier reads them so), with the same result."""
    fields = [_encode(values[name]) for name in MAC_FIELDS]
    if fields[ADDRESS_FIELD] is not None:
        fields[ADDRESS_FIELD] = canonical_address(str(fields[ADDRESS_FIELD]))
    return fields


@functools.lru_cache(maxsize=4)
def keyed_hmac(key: bytes) -> hmac.HMAC:
    """An HMAC-SHA256 state with the key already absorbed; copy it per message (saves two hash blocks)."""
    return hmac.new(key, digestmod=hashlib.sha256)


def mac_of_fields(fields: list[Any], key: bytes | None = None) -> bytes:
    """HMAC-SHA256 over the canonical JSON of canonical fields (see canonical_fields)."""
    state = keyed_hmac(key or settings.TELECONSULT_AUDIT_KEY).copy()
    state.update(canonical_json(fields).encode())
    return state.digest()


def canonical_bytes(values: dict[str, Any]) -> bytes:
    """The MAC input of an event."""
    return canonical_json(canonical_fields(values)).encode()


def row_mac(values: dict[str, Any], key: bytes | None = None) -> bytes:
    return mac_of_fields(canonical_fields(values), key)


def seal_mac(
    *,
    previous_mac: bytes,
    seq: int,
    sealed_at: dt.datetime,
    txid_from: int,
    txid_to: int,
    event_ids: Sequence[int],
    row_macs: bytes,
    key: bytes | None = None,
) -> bytes:
    """HMAC(key, previous seal MAC || seq || sealed_at || txid range || count || ids || row MACs).

    Fixed-width big-endian fields, so no two different seals have the same MAC input.
    """
    message = b"".join(
        (
            _SEAL_DOMAIN,
            previous_mac,
            struct.pack(">qqqqI", seq, epoch_microseconds(sealed_at), txid_from, txid_to, len(event_ids)),
            struct.pack(f">{len(event_ids)}q", *event_ids),
            row_macs,
        )
    )
    return hmac.digest(key or settings.TELECONSULT_AUDIT_KEY, message, hashlib.sha256)
