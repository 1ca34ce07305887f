"""Shared infrastructure models: the data keys of envelope encryption (see teleconsult/crypto.py)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class DataKeyStatus(models.TextChoices):
    ACTIVE = "active"  # encrypts new values; exactly one at a time
    RETIRING = "retiring"  # still decrypts; values are being re-encrypted under the active key
    # Nothing used it when it was retired; kept wrapped so a late write under it still decrypts.
    RETIRED = "retired"


class DataKey(models.Model):
    """An AES-256 data key, stored only wrapped by a key-encryption key (KEK) from configuration."""

    id = models.AutoField(primary_key=True)
    # Which KEK wrapped it: a fingerprint, so the right KEK is used after a KEK rotation.
    kek_id = models.CharField(max_length=32)
    wrapped_key = models.BinaryField()
    status = models.CharField(max_length=16, choices=DataKeyStatus.choices, default=DataKeyStatus.ACTIVE)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # The database, not the application, guarantees a single active key even when two processes
            # race to create the first one.
            models.UniqueConstraint(
                fields=["status"], condition=Q(status="active"), name="teleconsult_datakey_one_active"
            ),
        ]

    def __str__(self) -> str:
        return f"data key #{self.pk} ({self.status})"
