"""The canonical form the MACs are computed over: stable, unambiguous, independent of how values are typed."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from audit.integrity import (
    GENESIS_MAC,
    MAC_FIELDS,
    canonical_bytes,
    canonical_json,
    epoch_microseconds,
    row_mac,
    seal_mac,
)

KEY = bytes(range(32))


def _values(**changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "event_uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "occurred_at": dt.datetime(2026, 11, 22, 12, 0, 0, 123456, tzinfo=dt.UTC),
        "action": "accounts.signin.succeeded",
        "outcome": "success",
        "actor_user_id": 4,
        "actor_role": "auditor",
        "actor_establishment_id": None,
        "patient_id": None,
        "object_type": "",
        "object_id": "",
        "purpose": "operations",
        "source_address": "::ffff:192.0.2.1",
        "user_agent": "",
        "request_id": "abc",
        "details": {"b": 1, "a": ["x", None]},
    }
    values.update(changes)
    return values


def test_canonical_json_matches_the_json_module():
    value = ["ñ", "💊", 'q"\\\n\u2028', 0, -1, 2**70, None, True, {"z": 1, "a": {"b": []}}]
    assert canonical_json(value) == json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_canonical_bytes_do_not_depend_on_value_types_or_address_spelling():
    base = canonical_bytes(_values())
    micros = epoch_microseconds(dt.datetime(2026, 11, 22, 12, 0, 0, 123456, tzinfo=dt.UTC))
    lima = dt.timezone(dt.timedelta(hours=-5))
    assert canonical_bytes(_values(occurred_at=micros)) == base
    assert canonical_bytes(_values(occurred_at=dt.datetime(2026, 11, 22, 7, 0, 0, 123456, tzinfo=lima))) == base
    assert canonical_bytes(_values(event_uuid="12345678-1234-5678-1234-567812345678")) == base
    assert canonical_bytes(_values(source_address="::ffff:c000:201")) == base
    assert canonical_bytes(_values(details={"a": ["x", None], "b": 1})) == base


@pytest.mark.parametrize("field", MAC_FIELDS)
def test_every_field_is_covered_by_the_mac(field):
    changed = {
        "event_uuid": uuid.uuid4(),
        "occurred_at": dt.datetime(2026, 11, 22, 12, 0, 0, 123457, tzinfo=dt.UTC),
        "actor_user_id": 5,
        "actor_establishment_id": 1,
        "patient_id": 1,
        "source_address": "192.0.2.2",
        "details": {"b": 2, "a": ["x", None]},
    }.get(field, "other")
    assert row_mac(_values(**{field: changed}), KEY) != row_mac(_values(), KEY)


def test_values_of_other_types_are_refused():
    with pytest.raises(TypeError):
        canonical_bytes(_values(details={"weight": object()}))


def test_the_seal_mac_covers_its_chain_and_contents():
    arguments = {
        "previous_mac": GENESIS_MAC,
        "seq": 1,
        "sealed_at": dt.datetime(2026, 11, 22, tzinfo=dt.UTC),
        "txid_from": 0,
        "txid_to": 10,
        "event_ids": [1, 2],
        "row_macs": bytes(64),
        "key": KEY,
    }
    mac = seal_mac(**arguments)
    for name, other in [
        ("previous_mac", b"\x01" * 32),
        ("seq", 2),
        ("sealed_at", dt.datetime(2026, 11, 22, 0, 0, 1, tzinfo=dt.UTC)),
        ("txid_from", 1),
        ("txid_to", 11),
        ("event_ids", [2, 1]),
        ("row_macs", b"\x00" * 63 + b"\x01"),
        ("key", b"k" * 32),
    ]:
        assert seal_mac(**{**arguments, name: other}) != mac, name
