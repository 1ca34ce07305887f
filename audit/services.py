"""Writing to the audit trail: `record()` is the single entry point every app uses."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import uuid
from typing import Any

from django.db import transaction

from audit.actions import AuditAction, Outcome, Purpose
from audit.integrity import row_mac
from audit.models import AuditEvent
from teleconsult import request_context

# Keys whose values are always masked: an audit event records that a secret was involved, never the secret.
_SECRET_KEY = re.compile(r"(pass|secret|token|otp|code|key|signature)", re.IGNORECASE)
_MAX_DETAIL_STRING = 200


class AuditError(ValueError):
    """An audit call was malformed (unknown action code, bad detail value). Raised at the call site."""


def _clean_details(details: dict[str, Any] | None) -> dict[str, Any]:
    if not details:
        return {}
    if not isinstance(details, dict):
        raise AuditError("Audit details must be a dict of ids and field names.")
    cleaned: dict[str, Any] = {}
    for key, value in details.items():
        if not isinstance(key, str) or len(key) > 64:
            raise AuditError("Audit detail keys must be short strings.")
        if _SECRET_KEY.search(key):
            cleaned[key] = "***"
            continue
        if isinstance(value, (list, tuple)):
            if not all(isinstance(v, (str, int, bool)) or v is None for v in value):
                raise AuditError(f"Audit detail {key!r} must hold only ids, codes or field names.")
            cleaned[key] = [v[:_MAX_DETAIL_STRING] if isinstance(v, str) else v for v in value][:100]
        elif isinstance(value, str):
            cleaned[key] = value[:_MAX_DETAIL_STRING]
        elif value is None or isinstance(value, (bool, int)):
            cleaned[key] = value
        else:
            # Floats and nested objects are refused: they do not round-trip exactly through jsonb.
            raise AuditError(f"Audit detail {key!r} has an unsupported type {type(value).__name__}.")
    return cleaned


def _valid_address(address: str | None) -> str | None:
    if not address:
        return None
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


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
    context = request_context.current()
    values: dict[str, Any] = {
        "event_uuid": uuid.uuid4(),
        "occurred_at": dt.datetime.now(dt.UTC),
        "action": action.value,
        "outcome": outcome.value,
        "actor_user_id": actor_user_id,
        "actor_role": actor_role[:32],
        "actor_establishment_id": actor_establishment_id,
        "patient_id": patient_id,
        "object_type": object_type[:64],
        "object_id": str(object_id)[:64],
        "purpose": purpose.value,
        "source_address": _valid_address(source_address or (context.source_address if context else None)),
        "user_agent": (user_agent if user_agent is not None else (context.user_agent if context else ""))[:300],
        "request_id": (request_id or (context.request_id if context else ""))[:64],
        "details": _clean_details(details),
    }
    event = AuditEvent(**values, row_mac=row_mac(values))
    with transaction.atomic():
        event.save(force_insert=True)
    return event
