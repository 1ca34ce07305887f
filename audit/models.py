"""The audit trail: one append-only, sealed table of events (AUD-1, AUD-2)."""

from __future__ import annotations

import uuid

from django.db import models


class AuditEvent(models.Model):
    """Who did what to which record, when, from where and why. Ids and field names only: no clinical text.

    Actor, patient and establishment are plain ids rather than foreign keys: the trail must outlive any
    row it mentions and must never be touched by a cascade (audit is the lowest app, too).
    """

    id = models.BigAutoField(primary_key=True)
    event_uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    occurred_at = models.DateTimeField(db_index=True)
    # The writing transaction's id, set by a database trigger; sealing uses it to know which rows
    # are final (see docs/audit.md).
    txid = models.BigIntegerField(null=True, editable=False)
    action = models.CharField(max_length=100, db_index=True)
    outcome = models.CharField(max_length=16)
    actor_user_id = models.BigIntegerField(null=True, db_index=True)
    actor_role = models.CharField(max_length=32, blank=True)
    actor_establishment_id = models.BigIntegerField(null=True)
    patient_id = models.BigIntegerField(null=True, db_index=True)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    purpose = models.CharField(max_length=32)
    source_address = models.GenericIPAddressField(null=True)
    user_agent = models.CharField(max_length=300, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)
    # HMAC-SHA256 of the canonical form of this row under the audit key.
    row_mac = models.BinaryField(max_length=32)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["patient_id", "occurred_at"], name="audit_patient_time"),
            models.Index(fields=["txid"], name="audit_txid"),
        ]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M:%S} {self.action} ({self.outcome})"
