"""The audit trail: one append-only table of events and a chain of seals over it (AUD-1, AUD-2)."""

from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models


class AuditEvent(models.Model):
    """Who did what to which record, when, from where and why. Ids and field names only: no clinical text.

    Actor, patient and establishment are plain ids rather than foreign keys: the trail must outlive any
    row it mentions and must never be touched by a cascade (audit is the lowest app, too).
    Rows are never updated or deleted; database triggers refuse it (migration 0002).
    """

    id = models.BigAutoField(primary_key=True)
    event_uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    occurred_at = models.DateTimeField(db_index=True)
    # The writing transaction's id, always set by a database trigger whatever the application passes;
    # sealing uses it to know which rows are final (docs/audit.md).
    txid = models.BigIntegerField(editable=False)
    action = models.CharField(max_length=100)
    outcome = models.CharField(max_length=16)
    actor_user_id = models.BigIntegerField(null=True, db_index=True)
    actor_role = models.CharField(max_length=32, blank=True)
    actor_establishment_id = models.BigIntegerField(null=True)
    patient_id = models.BigIntegerField(null=True)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    purpose = models.CharField(max_length=32)
    source_address = models.GenericIPAddressField(null=True)
    user_agent = models.CharField(max_length=300, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)
    # HMAC-SHA256 of the canonical form of this row under the audit key (audit/integrity.py).
    row_mac = models.BinaryField(max_length=32)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["patient_id", "occurred_at"], name="audit_patient_time"),
            # One index for both "action = x" and "action LIKE 'accounts.%'" (db_index would add a second
            # one for the prefix search, and every index slows the append path).
            models.Index(fields=["action"], name="audit_action", opclasses=["varchar_pattern_ops"]),
            # Sealing and verification walk the trail in (txid, id) order (docs/audit.md).
            models.Index(fields=["txid", "id"], name="audit_txid_id"),
        ]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M:%S} {self.action} ({self.outcome})"


class AuditSeal(models.Model):
    """A keyed seal over a batch of final events, chained to the seal before it (audit/sealing.py).

    Seals written in one sealing round share the round's transaction-id range [txid_from, txid_to);
    together they list every event in that range, in (txid, id) order.
    """

    seq = models.BigIntegerField(primary_key=True)
    sealed_at = models.DateTimeField()
    txid_from = models.BigIntegerField()
    txid_to = models.BigIntegerField()
    event_ids = ArrayField(models.BigIntegerField())
    # The events' row MACs, 32 bytes each, concatenated in the order of event_ids.
    row_macs = models.BinaryField()
    # HMAC-SHA256 over the previous seal's MAC and this seal's content: the chain.
    seal_mac = models.BinaryField(max_length=32)

    class Meta:
        ordering = ["seq"]
        constraints = [
            models.CheckConstraint(condition=models.Q(seq__gte=1), name="audit_seal_seq_positive"),
            models.CheckConstraint(condition=models.Q(txid_from__lt=models.F("txid_to")), name="audit_seal_txid_range"),
        ]

    def __str__(self) -> str:
        return f"seal #{self.seq}"
